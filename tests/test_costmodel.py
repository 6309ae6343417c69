"""Physics of the cost model: hand-computed FLOPs and bytes, units, invariants."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.costmodel.collectives import Fabric, all_reduce_time
from planner.costmodel.memory import kv_bytes_per_seq, memory, weight_bytes_per_device
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step, _pairs
from planner.specs.engine import Engine
from planner.errors import PlannerError
from planner.specs.loader import get_hardware, get_interconnect, get_model


@pytest.fixture(scope="module")
def l70():
    return get_model("llama-3.1-70b")


@pytest.fixture(scope="module")
def h100():
    return get_hardware("h100-sxm")


def op(sc, name):
    return next(o for o in sc.ops if o.name == name)


def test_causal_pairs_by_hand():
    # 4 new tokens on 0 cached: keys per query 1+2+3+4 = 10; on 3 cached: 4+5+6+7 = 22
    assert _pairs(np.float64(4), np.float64(0)) == 10
    assert _pairs(np.float64(4), np.float64(3)) == 22
    # window 5 on 3 cached: min(4,5)+min(5,5)+min(6,5)+min(7,5) = 19
    assert _pairs(np.float64(4), np.float64(3), 5) == 19


def test_gemm_flops_and_weight_bytes_by_hand(l70, h100):
    p = make_plans(l70, h100, tp=1, weights="fp8", kv="fp8")
    sc = CostModel(l70, h100).step(p, Step(decode_seqs=8, decode_ctx=1000))
    # qkv: hidden 8192 x (64 + 2*8) heads x 128 = 83,886,080 weights; 2 FLOPs per MAC per token
    w_qkv = 8192 * (64 + 16) * 128
    assert op(sc, "qkv_proj").flops[0] == pytest.approx(2 * 8 * w_qkv)
    # fp8 weights are one byte each; activations in and out 2 bytes per element
    assert op(sc, "qkv_proj").bytes[0] == pytest.approx(w_qkv * 1.0 + 8 * (8192 + 80 * 128) * 2.0)
    # gated MLP: gate+up (2 x 8192 x 28672) then down (28672 x 8192)
    assert op(sc, "mlp_up").flops[0] == pytest.approx(2 * 8 * 2 * 8192 * 28672)
    assert op(sc, "mlp_down").flops[0] == pytest.approx(2 * 8 * 8192 * 28672)
    assert op(sc, "mlp_up").count[0] == op(sc, "mlp_down").count[0] == 80


def test_decode_attention_reads_whole_kv_cache(l70, h100):
    p = make_plans(l70, h100, tp=1, weights="bf16", kv="fp8")
    sc = CostModel(l70, h100).step(p, Step(decode_seqs=4, decode_ctx=2000))
    att = op(sc, "attention")
    kv_read = 4 * 2000 * (2 * 8 * 128) * 1.0  # seqs x ctx x (K and V of 8 heads x 128) x fp8
    q_o = 4 * 64 * 256 * 2.0
    kv_write = 4 * 2 * 8 * 128 * 1.0
    assert att.bytes[0] == pytest.approx(kv_read + q_o + kv_write)
    # 4 FLOPs per head-dim element per key (QK and PV multiply-adds)
    assert att.flops[0] == pytest.approx(2 * 64 * 4 * 2000 * (128 + 128))


def test_kv_per_token_gqa_mla_and_replication(h100):
    l70 = get_model("llama-3.1-70b")
    p = make_plans(l70, h100, tp=[1, 8, 16], weights="bf16", kv="bf16", check=False)
    per_tok = kv_bytes_per_seq(l70, p, 1)
    # 80 layers x 2 x 8 KV heads x 128 x 2 bytes = 320 KiB at tp=1; tp=8 -> one KV head per GPU
    assert per_tok[0] == 320 * 1024
    assert per_tok[1] == 40 * 1024
    # tp=16 > 8 KV heads: heads replicated, each GPU still holds one
    assert per_tok[2] == 40 * 1024
    ds = get_model("deepseek-v3")
    pd = make_plans(ds, h100, tp=[1, 8], weights="fp8", kv="bf16")
    # MLA latent 512 + 64 per layer, 61 layers, 2 bytes; not split by TP
    assert kv_bytes_per_seq(ds, pd, 1)[0] == 61 * 576 * 2 == kv_bytes_per_seq(ds, pd, 1)[1]


def test_sliding_window_caps_kv():
    m = get_model("mistral-7b")
    hw = get_hardware("h100-sxm")
    p = make_plans(m, hw, weights="bf16", kv="bf16")
    assert kv_bytes_per_seq(m, p, 10000)[0] == kv_bytes_per_seq(m, p, m.attention.sliding_window)[0]


def test_weights_split_by_tp(l70, h100):
    p = make_plans(l70, h100, tp=[1, 2, 4, 8], weights="bf16", kv="bf16")
    w = weight_bytes_per_device(l70, p)
    assert w[0] == pytest.approx(l70.total_params * 2, rel=1e-9)
    assert w[0] / w[3] == pytest.approx(8, rel=0.01)


def test_moe_touches_expected_distinct_experts(h100):
    m = get_model("mixtral-8x7b")
    p = make_plans(m, h100, tp=1, weights="bf16", kv="bf16")
    cm = CostModel(m, h100)
    one = op(cm.step(p, Step(decode_seqs=1, decode_ctx=100)), "experts")
    many = op(cm.step(p, Step(decode_seqs=256, decode_ctx=100)), "experts")
    e_bytes = m.expert_params() * 2.0
    # each routed row's activations in and out: the hidden state read and written (2 x 4096) and the intermediate
    # written as gate and up, then read back for the down GEMM (3 x 14336), bf16
    row = (2 * 4096 + 3 * 14336) * 2.0
    # one token touches top_k = 2 experts; 256 tokens touch (almost) all 8
    assert one.bytes[0] == pytest.approx(2 * e_bytes + 2 * row, rel=1e-9)
    assert many.bytes[0] == pytest.approx(8 * e_bytes + 256 * 2 * row, rel=1e-6)


def test_allreduce_latency_plus_bandwidth(h100):
    fab = Fabric.of(h100)
    n = np.array([1.0, 2.0, 8.0])
    t, _ = all_reduce_time(fab, n, np.array([1e9, 1e9, 1e9]))
    assert t[0] == 0.0
    # 2 GPUs: every algorithm moves 1 GB over 450 GB/s x the measured fraction; one-shot does it in 1 hop
    link = fab.scale_up
    expect = link.latency_s + 1e9 / (450e9 * link.ring_fraction)
    assert t[1] == pytest.approx(expect)
    assert t[2] > t[1] * 0.5


def test_allreduce_algorithm_follows_message_size_and_topology(h100):
    fab = Fabric.of(h100)
    lat, busbw = fab.scale_up.latency_s, 450e9 * fab.scale_up.ring_fraction
    # a decode-sized message on 4 NVLink GPUs: one hop, each GPU reads 3 peers' 16 KiB buffers
    small = 16 * 1024.0
    t, algo = all_reduce_time(fab, np.array([4.0]), np.array([small]))
    assert algo == "one-shot"
    assert t[0] == pytest.approx(lat + 3 * small / busbw)
    # a large message on 4 GPUs: reduce-scatter + all-gather (2 hops, 2(n-1)/n of the message)
    t, algo = all_reduce_time(fab, np.array([4.0]), np.array([1e9]))
    assert algo == "two-shot"
    assert t[0] == pytest.approx(2 * lat + 1.5e9 / busbw)
    # a per-call synchronisation cost adds once per call
    t2, _ = all_reduce_time(fab, np.array([4.0]), np.array([1e9]), call_s=5e-6)
    assert t2[0] - t[0] == pytest.approx(5e-6)
    # PCIe through the host: only the ring, 2(n-1) hops; tp8 pays 14 hops of latency
    pcie = Fabric.of(get_hardware("l40s"))
    t, algo = all_reduce_time(pcie, np.array([8.0]), np.array([small]))
    assert algo == "ring"
    assert t[0] >= 14 * pcie.scale_up.latency_s


def test_units_of_step_time(l70, h100):
    # decode of a 70B fp8 model on one H100 is bounded below by reading the weights once
    p = make_plans(l70, h100, tp=1, weights="fp8", kv="fp8")
    sc = CostModel(l70, h100).step(p, Step(decode_seqs=1, decode_ctx=128))
    floor_s = l70.total_params * 1.0 / h100.memory_bandwidth_bytes_per_s
    assert sc.time_s[0] > floor_s
    assert sc.time_s[0] < 10 * floor_s


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 512), ctx=st.integers(1, 8192))
def test_monotonic_in_batch_and_context(b, ctx):
    m, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    p = make_plans(m, hw, weights="bf16", kv="bf16")
    cm = CostModel(m, hw)
    t = cm.step(p, Step(decode_seqs=b, decode_ctx=ctx)).time_s[0]
    assert cm.step(p, Step(decode_seqs=b + 1, decode_ctx=ctx)).time_s[0] >= t
    assert cm.step(p, Step(decode_seqs=b, decode_ctx=ctx + 64)).time_s[0] >= t


def test_vectorized_equals_one_by_one(l70, h100):
    tps = [1, 2, 4, 8]
    p = make_plans(l70, h100, tp=tps, weights="fp8", kv="fp8")
    cm = CostModel(l70, h100)
    many = cm.step(p, Step(decode_seqs=32, decode_ctx=1024)).time_s
    for i, tp in enumerate(tps):
        one = cm.step(make_plans(l70, h100, tp=tp, weights="fp8", kv="fp8"), Step(decode_seqs=32, decode_ctx=1024)).time_s[0]
        assert many[i] == pytest.approx(one)


def test_memory_budget_engine_policies(l70, h100):
    p = make_plans(l70, h100, tp=1, weights="fp8", kv="fp8")
    free = memory(l70, h100, p, Engine(kv_policy="free"))
    total = memory(l70, h100, p, Engine(kv_policy="total"))
    # TensorRT-LLM style gives the KV cache 90 % of what is free, vLLM style 90 % of the device
    assert free.kv_capacity_bytes[0] > total.kv_capacity_bytes[0]


def test_in_switch_allreduce_uses_each_links_measured_fraction():
    # 8 GPUs reduce in the switch at the link's own measured bus bandwidth (NVLink4 480/450, NVLink5 838/900)
    for hw_id, busbw in (("h100-sxm", 480e9), ("b200", 838e9)):
        fab = Fabric.of(get_hardware(hw_id))
        size = 8e9
        t, algo = all_reduce_time(fab, np.array([8.0]), np.array([size]))
        assert algo == "in-switch"
        expect = 2 * fab.scale_up.latency_s + size * 2 * 7 / 8 / busbw
        assert t[0] == pytest.approx(expect, rel=2e-3)
    # 4 GPUs: NCCL stays on the ring below the NVLS threshold
    t4, algo4 = all_reduce_time(Fabric.of(get_hardware("h100-sxm")), np.array([4.0]), np.array([1e9]))
    assert algo4 != "in-switch"


def test_weight_streaming_exposes_link_time_beyond_compute():
    m, hw = get_model("llama-3.1-70b"), get_hardware("rtx-4090")
    p = make_plans(m, hw, weights="int4", kv="fp16")
    base = CostModel(m, hw).step(p, Step(decode_seqs=1, decode_ctx=512))
    link_bw = 25e9
    streamed = CostModel(m, hw, weight_stream=(0.5, link_bw)).step(p, Step(decode_seqs=1, decode_ctx=512))
    op = next(o for o in streamed.ops if o.name == "weight_stream")
    w = sum(np.asarray(o.weight_bytes) * o.count for o in base.ops)
    # half of every weight read crosses the link; the part the step's own time covers is hidden
    assert op.bytes[0] == pytest.approx(0.5 * w[0], rel=1e-9)
    assert streamed.time_s[0] == pytest.approx(max(base.time_s[0], 0.5 * w[0] / link_bw), rel=1e-6)


def test_moe_streams_only_touched_experts():
    m, hw = get_model("mixtral-8x7b"), get_hardware("rtx-4090")
    p = make_plans(m, hw, weights="int4", kv="fp16")
    one = CostModel(m, hw, weight_stream=(1.0, 1e9)).step(p, Step(decode_seqs=1, decode_ctx=128))
    many = CostModel(m, hw, weight_stream=(1.0, 1e9)).step(p, Step(decode_seqs=64, decode_ctx=128))
    s1 = next(o for o in one.ops if o.name == "weight_stream").bytes[0]
    s64 = next(o for o in many.ops if o.name == "weight_stream").bytes[0]
    # one token routes to 2 of 8 experts; 64 tokens touch nearly all of them
    assert s64 > 2.5 * s1


def test_qk_norm_models_pay_one_norm_kernel_over_their_queries_and_keys_per_layer():
    """Qwen3's per-head q/k RMSNorm: one elementwise op per layer reading and writing the device's q and k heads
    (Llama has none); at one decode token it adds about a kernel's gap per layer to the step."""
    h100 = get_hardware("h100-sxm")
    q3, l3 = get_model("qwen3-8b"), get_model("llama-3.1-8b")
    for tp in (1, 2):
        cm = CostModel(q3, h100, engine=Engine())
        p = make_plans(q3, h100, tp=tp)
        s = cm.step(p, Step(decode_seqs=4, decode_ctx=1000))
        op = next(o for o in s.ops if str(o.name) == "qk_norm")
        kvh = max(q3.num_kv_heads / tp, 1)
        elems = 4 * (q3.num_heads / tp + kvh) * q3.head_dim
        assert float(np.ravel(op.bytes)[0]) == pytest.approx(elems * 2.0 * 2, rel=1e-9)  # bf16, read + write
        assert op.count == q3.num_layers
    cm = CostModel(l3, h100, engine=Engine())
    assert not any(str(o.name) == "qk_norm" for o in cm.step(make_plans(l3, h100, tp=1), Step(decode_seqs=4, decode_ctx=1000)).ops)


def test_node_tier_joins_bridged_cards_over_pcie():
    # H100 NVL: NVLink bridges pair the cards, a server holds 8: a group of 2 stays on the bridge, 4 and 8 cross
    # PCIe Gen5 between the pairs, 16 has no link (no scale-out network)
    nvl = get_hardware("h100-nvl")
    fab = Fabric.of(nvl)
    assert fab.scale_up.domain_size == 2 and fab.node.domain_size == 8 and fab.scale_out is None
    assert nvl.node_size == 8 and fab.max_group() == 8
    pcie5 = get_interconnect("pcie5")
    bw, lat, frac, sw = fab.tier_for(np.array([2.0, 4.0, 8.0, 16.0]))
    assert bw[0] == pytest.approx(fab.scale_up.bandwidth_bytes_per_s)
    assert bw[1] == bw[2] == pytest.approx(pcie5.bandwidth_per_direction.value)
    assert lat[1] == pytest.approx(pcie5.latency.value) and frac[1] == pytest.approx(pcie5.achievable.fraction)
    assert bw[3] == 0.0 and np.all(sw == 0.0)
    # only the ring runs over PCIe: tp4 pays 2(n-1) = 6 PCIe hops, tp2 one bridge hop
    msg = np.array([1e8, 1e8])
    t, _ = all_reduce_time(fab, np.array([2.0, 4.0]), msg)
    busbw = pcie5.bandwidth_per_direction.value * pcie5.achievable.fraction
    assert t[1] == pytest.approx(6 * pcie5.latency.value + 1e8 * 1.5 / busbw)
    assert t[1] > 5 * t[0]
    # the NVLink all-to-all kernels reach only the bridged pair
    assert fab.peer_all_to_all(np.array([2.0, 4.0, 8.0])).tolist() == [True, False, False]
    with pytest.raises(PlannerError, match="one of its nodes holds 8"):
        fab.check_reaches(16, "tp x pp", nvl.id)


def test_without_a_node_tier_nothing_changes():
    # an NVSwitch node has no node tier: its all-to-all stays peer to peer across nodes too (RDMA)
    fab = Fabric.of(get_hardware("h100-sxm"))
    assert fab.node is None and fab.node_size == 8
    assert fab.peer_all_to_all(np.array([8.0, 16.0])).tolist() == [True, True]
    assert Fabric.of(get_hardware("l40s")).peer_all_to_all(np.array([4.0])).tolist() == [False]


def test_static_batch_pipeline_fill_counts_the_micro_batches_it_has():
    """A static batch splits into at most pp micro-batches, and never splits one request: at batch 1 (llama.cpp's
    layer split over several GPUs) the prompt walks the stages one after another, so TTFT is one pass through the
    pipe; a batch of at least pp adds one stage time per further micro-batch."""
    from planner.serving.batching import static_batch

    m, hw = get_model("llama-3-70b"), get_hardware("rtx-4090")
    p = make_plans(m, hw, pp=4, weights="q4_k_m", kv="fp16")
    cm = CostModel(m, hw)
    one = static_batch(cm, p, 1, 512, 2)
    pf = cm.step(p, Step(prefill_seqs=1.0, prefill_tokens=512.0))
    assert one.ttft_s[0] == pytest.approx(pf.time_s[0])
    assert pf.time_s[0] == pytest.approx(4 * pf.stage_time_s[0], rel=0.05)  # four stages of 20 layers, one after another
    eight = static_batch(cm, p, 8, 512, 2)
    pf2 = cm.step(p, Step(prefill_seqs=2.0, prefill_tokens=512.0))
    assert eight.ttft_s[0] == pytest.approx(pf2.time_s[0] + 3 * pf2.stage_time_s[0])


def test_inflight_pipeline_round_counts_the_requests_in_it():
    """Continuous batching on pp stages: with fewer running requests than stages each is its own micro-batch, so a
    round is one pass through the stages (a lone request's TPOT is one pass, as on one device plus the hops), and
    with pp or more in flight the busiest stage serves pp micro-batches per round."""
    from planner.serving.batching import inflight

    m, hw = get_model("llama-3.1-8b"), get_hardware("rtx-4090")
    p = make_plans(m, hw, pp=4, weights="fp16", kv="fp16")
    cm = CostModel(m, hw)
    one = inflight(cm, p, 1, 512, 256)
    dec = cm.step(p, Step(decode_seqs=1.0, decode_ctx=512 + 128.0))
    assert one.tpot_s[0] == pytest.approx(dec.time_s[0], rel=0.02)
    assert one.tpot_s[0] < 4 * dec.stage_time_s[0]  # not pp stage times, each with the output head
    eight = inflight(cm, p, 8, 512, 256)
    dec8 = cm.step(p, Step(decode_seqs=2.0, decode_ctx=512 + 128.0))
    assert eight.tpot_s[0] >= 4 * dec8.stage_time_s[0] * 0.99


# nccl-tests all_reduce_perf on the stock GeForce driver (no P2P: NCCL stages through host memory), out-of-place
# time in us by message size in bytes: 8 x RTX 4090, two EPYC 7542 (blog.chlc.cc, 2025-02-07); 4 x RTX 5090, an AMD
# Genoa host (NVIDIA/nccl-tests issue 287, 2025-03-14). Sources in hw_specs/interconnects/pcie{4,5}-shm.yaml.
GEFORCE_ALL_REDUCE_US = {
    ("rtx-4090", 8): {8: 38.83, 1048576: 222.8, 16777216: 1972.8},
    ("rtx-5090", 4): {8: 15.60, 1048576: 93.45, 16777216: 935.7},
}


@pytest.mark.parametrize("hw_id,n", list(GEFORCE_ALL_REDUCE_US))
def test_geforce_all_reduce_goes_through_host_memory_at_the_measured_rate(hw_id, n):
    fab = Fabric.of(get_hardware(hw_id))
    assert fab.scale_up.name.endswith("-shm") and not fab.scale_up.peer_to_peer
    measured = GEFORCE_ALL_REDUCE_US[(hw_id, n)]
    sizes = np.array(sorted(measured), float)
    t, algo = all_reduce_time(fab, np.full(sizes.shape, float(n)), sizes)
    assert algo == "ring"
    got = dict(zip(sorted(measured), t * 1e6))
    # the small-message floor (2(n-1) hops) and the large-message plateau are what the link's two numbers encode
    assert got[8] == pytest.approx(measured[8], rel=0.05)
    assert got[16777216] == pytest.approx(measured[16777216], rel=0.05)
    # at 1 MB NCCL is still between its low-latency and bulk protocols and runs 22-28 % slower than latency plus
    # bandwidth; the model is faster there, not slower
    assert 0.70 * measured[1048576] < got[1048576] < measured[1048576]
    # a datacenter or workstation card on the same PCIe generation moves the same message faster (peer to peer)
    p2p = Fabric.of(get_hardware("l40s" if hw_id == "rtx-4090" else "rtx-pro-6000"))
    t_p2p, _ = all_reduce_time(p2p, np.array([float(n)]), np.array([16777216.0]))
    assert t_p2p[0] < 0.7 * t[-1]


def test_every_geforce_card_and_only_geforce_stages_collectives_through_the_host():
    """The consumer driver (GeForce, and the TITAN cards that run it) enables no PCIe peer-to-peer; professional and
    data-center parts do."""
    from planner.specs.loader import hardware_ids

    for hw in map(get_hardware, hardware_ids()):
        link = hw.links.scale_up.interconnect if hw.links and hw.links.scale_up else ""
        if hw.vendor == "nvidia" and ("GeForce" in hw.name or "TITAN" in hw.name):
            assert link.endswith("-shm"), hw.id
        else:
            assert not link.endswith("-shm"), hw.id


def test_softmax_exponentials_run_at_16_per_sm_clock_and_32_on_blackwell_ultra():
    """The special function units issue 16 exponentials per clock per SM (CUDA C++ Programming Guide, native arithmetic
    throughput) on NVIDIA GPUs; SMs x clock is the FP32 peak over 2 x the FP32 lanes per SM. Blackwell Ultra doubles it
    (NVIDIA, 'Making Softmax More Efficient with NVIDIA Blackwell Ultra'). Other vendors: no rate on record."""
    h100 = get_hardware("h100-sxm")
    assert h100.exp_rate() == pytest.approx(16 * 67e12 / 256)
    assert h100.exp_rate() == pytest.approx(3.9e12, rel=0.1)  # FlashAttention-3's paper: 3.9 TFLOPS of special functions
    assert get_hardware("a100-sxm-80gb").exp_rate() == pytest.approx(16 * 19.5e12 / 128)  # GA100: 64 FP32 lanes per SM
    for ultra in ("b300", "gb300"):
        h = get_hardware(ultra)
        assert h.exp_rate() == pytest.approx(2 * h.exp_rate(16))
    assert get_hardware("b200").exp_rate() == get_hardware("b200").exp_rate(16)
    assert get_hardware("mi300x").exp_rate() is None and get_hardware("m3-max").exp_rate() is None


def test_a_faster_sfu_takes_its_share_of_the_exponentials_off_attention():
    """The fitted attention efficiency holds softmax's exponentials at 16 per SM clock; a part that issues 32 saves half
    their share of the ideal tile time (products at the 16-bit peak, one exponential per score per head). A decode step
    reading its cache is memory-bound and does not move."""
    m = get_model("llama-3.1-8b")
    b200 = get_hardware("b200")
    ultra = b200.model_copy(update={"exp_per_sm_clock": 32})
    assert CostModel(m, b200).exp_saved == 0.0 and CostModel(m, ultra).exp_saved == pytest.approx(0.5)
    plans = [make_plans(m, h, tp=1, weights="bf16", kv="bf16") for h in (b200, ultra)]
    prefill = Step(prefill_seqs=1, prefill_tokens=8192)
    tc = [op(CostModel(m, h).step(p, prefill), "attention").bound_parts[0][0] for h, p in zip((b200, ultra), plans)]
    d = m.head_dim
    mma = 2.0 * (d + d) / b200.peak("bf16")  # one score's two products, per head
    ex = 1.0 / b200.exp_rate(16)
    assert tc[1] / tc[0] == pytest.approx(1.0 - 0.5 * ex / (mma + ex))
    decode = Step(decode_seqs=64, decode_ctx=4096)
    t = [op(CostModel(m, h).step(p, decode), "attention").time_s[0] for h, p in zip((b200, ultra), plans)]
    assert t[1] == pytest.approx(t[0])
