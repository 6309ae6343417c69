"""One MoE layer by hand: the FLOPs, bytes and kernel launches of the router, the token permutation and the grouped
expert GEMMs, from the model's config (gpt-oss-20b: hidden 2880, 32 experts of width 2880, top-4, MXFP4 experts;
mixtral-8x7b: hidden 4096, 8 experts of width 14336, top-2) and nothing the step model computes itself."""

import numpy as np
import pytest

from planner.costmodel.plans import make_plans
from planner.costmodel.step import (GROUPED_MOE_LAUNCHES, CostModel, Op, Step, ep_imbalance, experts_touched,
                                    rank_touched, routing_skew)
from planner.specs.engine import Engine
from planner.specs.loader import get_hardware, get_model
from planner.specs.quant import FORMATS


def op(sc, name):
    return next(o for o in sc.ops if o.name == name)


def test_gpt_oss_experts_flops_and_weight_bytes_by_hand():
    m, hw = get_model("gpt-oss-20b"), get_hardware("h100-sxm")
    p = make_plans(m, hw, tp=1, weights="mxfp4", kv="bf16")
    T = 512  # decoding tokens in the step
    sc = CostModel(m, hw).step(p, Step(decode_seqs=T, decode_ctx=1000))
    h, inter, E, k = 2880, 2880, 32, 4
    # one expert: gate and up (h x 2 inter) and down (inter x h) = 3 h inter weights, plus its biases (2 inter + h,
    # expert_bias: counted with the expert's parameters; 0.03 % of them)
    per_expert = 3 * h * inter + 2 * inter + h
    ex = op(sc, Op.EXPERTS)
    # every token runs k experts: 2 FLOPs per weight per routed row
    assert ex.flops[0] == pytest.approx(2.0 * T * k * per_expert, rel=1e-9)
    # 512 x 4 = 2048 assignments over 32 experts: all touched (1 - (28/32)^512 ~ 1), each read once at MXFP4's
    # 4 + 8/32 bits per weight (E2M1 plus one E8M0 scale per 32)
    bits = 4 + 8 / 32
    assert FORMATS["mxfp4"].bits == pytest.approx(bits)
    # (skewed routing, experts_touched, leaves the rarest expert unread with a chance of a few in a million here)
    assert float(np.ravel(ex.weight_bytes)[0]) == pytest.approx(E * per_expert * bits / 8, rel=1e-5)
    assert ex.count == pytest.approx(m.num_layers)  # every gpt-oss layer is MoE
    # router: a bf16-stored (2-byte) h x E GEMM per token
    r = op(sc, Op.ROUTER)
    assert r.flops[0] == pytest.approx(2.0 * T * h * E)
    assert float(np.ravel(r.weight_bytes)[0]) == pytest.approx(h * E * 2.0)


def test_few_tokens_read_only_the_experts_they_touch():
    m, hw = get_model("mixtral-8x7b"), get_hardware("h100-sxm")
    p = make_plans(m, hw, tp=1, weights="bf16", kv="bf16")
    cm = CostModel(m, hw)
    one = op(cm.step(p, Step(decode_seqs=1, decode_ctx=100)), Op.EXPERTS)
    many = op(cm.step(p, Step(decode_seqs=4096, decode_ctx=100)), Op.EXPERTS)
    per_expert = 3 * 4096 * 14336 * 2.0  # bf16 bytes of one expert
    # one token: its top-2 experts, E (1 - (1 - k/E)^1) = k = 2; thousands of tokens: all 8
    assert float(np.ravel(one.weight_bytes)[0]) == pytest.approx(2 * per_expert, rel=1e-9)
    assert float(np.ravel(many.weight_bytes)[0]) == pytest.approx(8 * per_expert, rel=1e-6)


def test_the_busiest_expert_parallel_rank_reads_the_experts_its_rows_touch():
    """A rank holding k experts that r rows route to touches k (1 - exp(-r / k)) of them. By hand for 8 ranks of 32
    experts each (DeepSeek-R1's 256 over EP8): at one row a rank every row lands on a new expert, so the rank with imb
    times the mean rows reads about imb times the mean rank's weights; with every expert a rank holds touched the ranks
    read alike; one rank reads what the group touches."""
    # 4 tokens x top-8 = 32 assignments, 4 a rank on average; the busiest has 2.05x the rows (8.2). Reach of a rank of
    # 32 experts, worked by hand: 32 (1 - e^-0.125) = 3.7601 at 4 rows, 32 (1 - e^-0.25625) = 7.2336 at 8.2 rows; the
    # mean rank's 30 / 8 = 3.75 touched experts times 7.2336 / 3.7601 = 1.9238 is 7.2142
    touched, assigned, imb = 30.0, 32.0, 2.05
    got = float(rank_touched(touched, assigned, 8, imb, 256))
    assert got == pytest.approx(7.2142, abs=1e-4)
    assert 1.8 < got / (touched / 8) < imb  # close to imb at a few rows, below it as rows start to share experts
    # saturated: every expert touched, so every rank reads its 32 whatever its rows
    assert float(rank_touched(256.0, 256.0 * 64, 8, 1.4, 256)) == pytest.approx(32.0, rel=1e-6)
    # a balancer's 32 replicas: each of the 8 ranks holds 36 slots, and reads all 36 once they are all touched
    assert float(rank_touched(288.0, 288.0 * 64, 8, 1.1, 288)) == pytest.approx(36.0, rel=1e-6)
    # and with more slots a rank its busiest rows share fewer of them: a little closer to imb x the mean
    assert got < float(rank_touched(30.0, 32.0, 8, imb, 288)) < touched / 8 * imb
    # no expert parallelism: the touched experts, as before
    assert float(rank_touched(30.0, 32.0, 1, 1.0, 256)) == pytest.approx(30.0)
    # one expert a rank (Mixtral's 8 over EP8) and one token's 2 rows: the mean rank touches 0.25 of its expert, the
    # busiest (about 3x the mean rows) more, never more than the one it holds
    one = float(rank_touched(2.0, 2.0, 8, 3.0, 8))
    assert 0.25 < one <= 1.0


def test_rank_touched_follows_a_monte_carlo_of_top_k_routing():
    """Draw each token's top-8 of 256 experts (8 ranks of 32, even routing), count the rows and the touched experts of
    every rank, and compare the busiest rank's touched experts over the mean rank's with rank_touched given the busiest
    rank's rows as drawn: the reach law alone, within 5 % from one token a rank to every expert touched."""
    rng = np.random.default_rng(7)
    E, k, ep, trials = 256, 8, 8, 400
    for T in (2, 4, 16, 64):
        busiest_rows, mean_rows, busiest_touched, mean_touched = [], [], [], []
        for _ in range(trials):
            rows = np.zeros(E)
            for _ in range(T):
                rows[rng.choice(E, size=k, replace=False)] += 1
            per_rank = rows.reshape(ep, -1)
            r, t = per_rank.sum(1), (per_rank > 0).sum(1)
            busiest_rows.append(r.max())
            mean_rows.append(r.mean())
            busiest_touched.append(t.max())
            mean_touched.append(t.mean())
        imb = np.mean(busiest_rows) / np.mean(mean_rows)
        touched = np.mean(mean_touched) * ep
        got = float(rank_touched(touched, T * k, ep, imb, E)) / (touched / ep)
        assert got == pytest.approx(np.mean(busiest_touched) / np.mean(mean_touched), rel=0.05), T


def test_expert_parallel_decode_streams_the_busiest_ranks_experts():
    """DeepSeek-R1 at 4 decoding tokens on 8 B200s: the expert GEMM's weight bytes are the busiest EP rank's touched
    experts (rank_touched over the layer's touched experts and ep_imbalance), about twice the mean rank's, where
    tensor-parallel experts read a 1/8 slice of every touched expert."""
    m, hw = get_model("deepseek-r1"), get_hardware("b200")
    mo = m.moe
    st = Step(decode_seqs=4, decode_ctx=1500)
    skew = routing_skew(mo)
    touched = float(experts_touched(4, mo.num_experts, mo.top_k, skew))
    imb = float(ep_imbalance(4 * mo.top_k, 8, mo.num_experts, skew))
    w_bytes = m.expert_params() * FORMATS["fp4"].bits / 8  # one whole expert
    ep = op(CostModel(m, hw).step(make_plans(m, hw, tp=8, ep=8, weights="fp4", kv="fp8"), st), Op.EXPERTS)
    tp = op(CostModel(m, hw).step(make_plans(m, hw, tp=8, weights="fp4", kv="fp8"), st), Op.EXPERTS)
    busiest = float(rank_touched(touched, 4 * mo.top_k, 8, imb, mo.num_experts))
    assert float(np.ravel(ep.weight_bytes)[0]) == pytest.approx(busiest * w_bytes, rel=1e-6)
    assert float(np.ravel(tp.weight_bytes)[0]) == pytest.approx(touched / 8 * w_bytes, rel=1e-6)
    assert busiest / (touched / 8) > 1.8


def test_a_grouped_moe_layer_pays_a_kernel_gap_per_launch():
    """Router GEMM + top-k; sort/align, gather and combine; gate/up GEMM, activation, down GEMM: each kernel beyond an
    op's first adds the engine's per-kernel gap, so a small decode step of a MoE model pays 8 gaps per layer."""
    m, hw = get_model("mixtral-8x7b"), get_hardware("h100-sxm")
    p = make_plans(m, hw, tp=1, weights="bf16", kv="bf16")
    st = Step(decode_seqs=4, decode_ctx=100)
    gap = 10e-6
    with_gap = CostModel(m, hw, engine=Engine(kernel_overhead_s=gap))
    no_gap = CostModel(m, hw, engine=Engine())
    a, b = with_gap.step(p, st), no_gap.step(p, st)
    assert sum(GROUPED_MOE_LAUNCHES.values()) == 8.0
    for name in (Op.ROUTER, Op.MOE_PERMUTE, Op.EXPERTS):
        n = GROUPED_MOE_LAUNCHES[str(name)]
        assert float(np.ravel(op(a, name).launches)[0]) == n
        extra = (with_gap.kernel_s - no_gap.kernel_s) * n
        assert op(a, name).time_s[0] - op(b, name).time_s[0] == pytest.approx(extra, rel=1e-6)


def test_attention_dp_moe_traffic_by_fabric():
    """Attention-DP ranks hand tokens to the experts' ranks. Over NVLink/Infinity Fabric (peer-to-peer) an all-to-all
    sends each token to its top-k experts (dispatch) and back (combine); over PCIe, where TensorRT-LLM's peer-to-peer
    all-to-alls are unavailable, the fallback all-gathers every rank's tokens and reduce-scatters the outputs."""
    m = get_model("qwen3-30b-a3b")  # hidden 2048, 128 experts, top-8
    h, k, T = m.hidden_size, m.moe.top_k, 512.0  # T tokens per rank in the step
    got = {}
    for hw_id, ep, per_token in (("h200-sxm", 2, k * (2 - 1) / 2 * 2), ("h200-sxm", 8, k * 7 / 8 * 2),
                                 ("rtx-pro-6000", 2, (2 - 1) * 2), ("rtx-pro-6000", 8, (8 - 1) * 2)):
        hw = get_hardware(hw_id)
        p = make_plans(m, hw, tp=1, ep=ep, adp=ep, weights="fp8", kv="fp8")
        sc = CostModel(m, hw).step(p, Step(decode_seqs=T * ep, decode_ctx=1000))
        a2a = op(sc, Op.EP_ALLTOALL)
        bytes_per_layer = float(np.ravel(a2a.bytes)[0])
        imb = 1.0 if hw_id.startswith("rtx") else bytes_per_layer / (T * per_token * h * 2.0)
        if not hw_id.startswith("rtx"):  # the busiest rank's share of an all-to-all (sampling and routing skew)
            busiest = ep_imbalance(T * ep * k, ep, m.moe.num_experts, routing_skew(m.moe))[()]
            assert imb == pytest.approx(busiest, rel=1e-9) and 1.0 < imb < 1.5, (hw_id, ep)
        assert bytes_per_layer == pytest.approx(T * per_token * h * 2.0 * imb, rel=1e-9), (hw_id, ep)
        got[hw_id, ep] = bytes_per_layer / imb
    # two ranks: one copy of each token each way over PCIe, a quarter of the top-8 all-to-all's four copies each way;
    # at eight ranks the two send about the same (7 copies against 8 x 7/8)
    assert got["h200-sxm", 2] / got["rtx-pro-6000", 2] == pytest.approx(4.0)
    assert got["h200-sxm", 8] / got["rtx-pro-6000", 8] == pytest.approx(1.0)


def test_tensor_parallel_experts_move_every_row_and_split_only_the_flops():
    """Mixtral-8x7b (hidden 4096, 8 experts of width 14336, top-2) on 8 GPUs. Expert-parallel (ep 8): each device
    holds one whole expert and gets the rows routed to it (2T/8 on average, the busiest rank a little more).
    Tensor-parallel (ep 1): each device holds 1/8 of every expert, so it reads the hidden state of all 2T rows and
    writes a full-width partial output for each: 8x the activation traffic for the same FLOPs per device."""
    m, hw = get_model("mixtral-8x7b"), get_hardware("h100-sxm")
    h, inter, k, T = 4096, 14336, 2, 1024
    per_expert = 3 * h * inter
    cm = CostModel(m, hw, engine=Engine())
    got = {}
    for ep in (1, 8):
        p = make_plans(m, hw, tp=8, ep=ep, weights="bf16", kv="bf16")
        sc = cm.step(p, Step(decode_seqs=T, decode_ctx=100))
        perm, ex = op(sc, Op.MOE_PERMUTE), op(sc, Op.EXPERTS)
        # a gather kernel reads each token once and writes a row per chosen expert; the combine reads the rows back
        # and writes each token once: (1 + 1/k) reads and (1 + 1/k) writes of every row, 2 bytes per element
        rows = float(np.ravel(perm.bytes)[0]) / (h * 2.0 * 2 * (1 + 1 / k))
        got[ep] = rows, float(np.ravel(ex.flops)[0])
    rows_tp, flops_tp = got[1]
    rows_ep, flops_ep = got[8]
    assert rows_tp == pytest.approx(k * T, rel=1e-9)  # ep 1: every assignment passes every device
    imb = rows_ep / (k * T / 8)
    # ep 8: the busiest rank's share, by sampling and by the skew of Mixtral's routing (0.23 over its 8 experts)
    assert imb == pytest.approx(ep_imbalance(k * T, 8, 8, routing_skew(m.moe))[()], rel=1e-9) and 1.0 < imb < 1.6
    assert flops_tp == pytest.approx(2.0 * k * T * per_expert / 8, rel=1e-9)  # 1/8 of every expert
    assert flops_ep == pytest.approx(flops_tp * imb, rel=1e-9)


def test_mla_projections_and_latent_norms_launch_their_own_kernels():
    """DeepSeek-V3's MLA layer: the fused q/kv down-projection, q_b and the key half of kv_b (absorbed into the query
    in decode) on the way in, the value half of kv_b and o_proj on the way out, and an RMSNorm on each latent
    (q_lora_rank 1536, kv_lora_rank 512) in between; a GQA model has none of these extra kernels."""
    from planner.costmodel.step import MLA_PROJ_LAUNCHES

    hw = get_hardware("h200-sxm")
    m = get_model("deepseek-v3")
    cm = CostModel(m, hw, engine=Engine(kernel_overhead_s=5e-6))
    sc = cm.step(make_plans(m, hw, tp=8, weights="fp8", kv="fp8"), Step(decode_seqs=4, decode_ctx=1000))
    assert float(np.ravel(op(sc, Op.QKV_PROJ).launches)[0]) == MLA_PROJ_LAUNCHES["qkv_proj"] == 3.0
    assert float(np.ravel(op(sc, Op.O_PROJ).launches)[0]) == MLA_PROJ_LAUNCHES["o_proj"] == 2.0
    norm = op(sc, Op.LATENT_NORM)
    assert float(np.ravel(norm.launches)[0]) == 2.0
    assert float(np.ravel(norm.bytes)[0]) == pytest.approx(4 * (1536 + 512) * 2.0 * 2, rel=1e-9)  # bf16, read + write
    assert norm.count == m.num_layers
    l3 = get_model("llama-3.1-8b")
    g = CostModel(l3, hw, engine=Engine(kernel_overhead_s=5e-6)).step(make_plans(l3, hw, tp=1), Step(decode_seqs=4, decode_ctx=1000))
    assert not any(o.name == Op.LATENT_NORM for o in g.ops)
    assert float(np.ravel(op(g, Op.QKV_PROJ).launches)[0]) == 1.0


def test_attention_dp_ranks_all_gather_their_tokens_for_split_experts():
    """Data-parallel attention in front of experts split across the group (ep 1 over 8 ranks: each device holds 1/8
    of every expert) needs every rank's tokens on every device: an all-gather of the other 7 ranks' tokens and a
    reduce-scatter of the partial outputs, 7 copies of each token each way at 16 bit, whatever top-k is. With the
    experts whole on their ranks (ep 8) only the chosen experts' copies move: top-k x 7/8 each way."""
    m, hw = get_model("qwen3-30b-a3b"), get_hardware("h200-sxm")  # hidden 2048, 128 experts, top-8
    h, k, T = m.hidden_size, m.moe.top_k, 256.0  # T tokens per rank
    per_token = {}
    for ep in (1, 8):
        p = make_plans(m, hw, tp=1, ep=ep, adp=8, weights="fp8", kv="fp8")
        a2a = op(CostModel(m, hw).step(p, Step(decode_seqs=T * 8, decode_ctx=1000)), Op.EP_ALLTOALL)
        per_token[ep] = float(np.ravel(a2a.bytes)[0]) / (T * h * 2.0)
        assert a2a.time_s[0] > 0
    assert per_token[1] == pytest.approx(7 * 2.0, rel=1e-9)
    busiest = ep_imbalance(T * 8 * k, 8, m.moe.num_experts, routing_skew(m.moe))[()]  # the busiest rank's share
    assert per_token[8] / (k * 7 / 8 * 2.0) == pytest.approx(busiest, rel=1e-9)


def test_block_scaled_fp8_quantizes_every_gemm_input_with_a_kernel_of_its_own():
    """DeepSeek-V3 served as released (FP8 weights in 128 x 128 blocks, weight_block_size in its config.json) takes
    activations quantized per token and 128 channels at run time, one kernel before each FP8 GEMM: per MLA layer the
    fused q/kv down-projection's input (hidden 7168), q_b's (q_lora_rank 1536) and o_proj's (16 heads x 128 on each of
    8 devices); in each of the 3 dense layers up (7168) and down (18432 / 8); in each of the 58 MoE layers the shared
    expert's up (7168) and down (2048 / 8), the hidden states before the first grouped GEMM (7168) and every routed
    row's activation before the second (2048 / 8 per row). 16-bit read, 8-bit write. The same network in bf16 or
    NVFP4, and Llama-3.1-8B in (per-tensor) FP8, have no such kernel."""
    m, hw = get_model("deepseek-v3"), get_hardware("h200-sxm")
    assert m.native_weights.scale_block == 128
    T = 4
    cm = CostModel(m, hw, engine=Engine(kernel_overhead_s=5e-6))
    sc = cm.step(make_plans(m, hw, tp=8, weights="fp8", kv="fp8"), Step(decode_seqs=T, decode_ctx=1000))
    q = op(sc, Op.ACT_QUANT)
    L, dense, moe = 61, 3, 58
    assert q.count == L
    assert float(np.ravel(q.launches)[0]) == pytest.approx(3 + (2 * dense + 4 * moe) / L, rel=1e-12)
    rows = T * 8  # top-8 of 256 experts, ep 1: every device sees every routed row
    per_layer = (T * (7168 + 1536 + 16 * 128) + dense / L * T * (7168 + 18432 / 8)
                 + moe / L * (T * 7168 + rows * 2048 / 8 + T * (7168 + 2048 / 8)))
    assert float(np.ravel(q.bytes)[0]) == pytest.approx(per_layer * (2.0 + 1.0), rel=1e-9)
    for weights in ("bf16", "fp4"):
        other = cm.step(make_plans(m, hw, tp=8, weights=weights, kv="fp8"), Step(decode_seqs=T, decode_ctx=1000))
        assert float(np.ravel(op(other, Op.ACT_QUANT).time_s)[0]) == 0.0
    l8 = get_model("llama-3.1-8b")
    g = CostModel(l8, hw).step(make_plans(l8, hw, tp=1, weights="fp8", kv="fp8"), Step(decode_seqs=T, decode_ctx=1000))
    assert not any(o.name == Op.ACT_QUANT for o in g.ops)


def _block_fp8_steps(field: str, fr: tuple[float, float], step: Step):
    """DeepSeek-V3 in its released block-scaled FP8 at tp8 on an H200: ``step`` costed with an engine that sets
    ``field`` to ``fr`` (dense, experts) on Hopper and with a plain engine. The fractions apply only where they
    should: a bf16 plan, and an architecture the profile does not list (B200), cost the experts as the plain engine."""
    m, hw = get_model("deepseek-v3"), get_hardware("h200-sxm")
    eng = Engine(**{field: (("hopper", *fr),)})
    plans = make_plans(m, hw, tp=8, weights="fp8", kv="fp8")
    cm, plain = CostModel(m, hw, engine=eng), CostModel(m, hw, engine=Engine())
    assert getattr(cm, field) == fr and getattr(plain, field) == (1.0, 1.0)
    bf = make_plans(m, hw, tp=8, weights="bf16", kv="fp8")
    assert np.allclose(op(cm.step(bf, step), Op.EXPERTS).time_s, op(plain.step(bf, step), Op.EXPERTS).time_s)
    b200 = get_hardware("b200")
    pb = make_plans(m, b200, tp=8, weights="fp8", kv="fp8")
    assert np.allclose(op(CostModel(m, b200, engine=eng).step(pb, step), Op.EXPERTS).time_s,
                       op(CostModel(m, b200, engine=Engine()).step(pb, step), Op.EXPERTS).time_s)
    return hw, cm, cm.step(plans, step), plain.step(plans, step)


BLOCK_SCALED_OPS = (Op.QKV_PROJ, Op.O_PROJ, Op.SHARED_EXPERT, Op.EXPERTS)  # the last at the experts' fraction


def test_block_scaled_fp8_weights_stream_at_the_engine_kernels_bandwidth():
    """A memory-bound decode step of DeepSeek-V3 in its released block-scaled FP8: each linear layer's weight read takes
    bytes / (STREAM bandwidth x the engine's block-FP8 fraction), dense layers at one fraction and the grouped experts
    at another (vLLM on Hopper: CUTLASS 0.66, Triton fused_moe 0.48, engines/vllm-0.15.yaml); the activation traffic,
    the 16-bit router and lm_head, other architectures and other formats keep the plain bandwidth."""
    fr = (0.66, 0.48)
    hw, cm, got, base = _block_fp8_steps("block_fp8_bw", fr, Step(decode_seqs=4, decode_ctx=1000))
    bw = hw.memory_bandwidth_bytes_per_s * hw.achievable.memory.fraction * cm.kernels.memory  # bytes/s
    for name in BLOCK_SCALED_OPS:
        f = fr[1] if name == Op.EXPERTS else fr[0]
        o = op(got, name)
        w = float(np.ravel(o.weight_bytes)[0])  # bytes of weights the op reads per layer on one device
        act = float(np.ravel(o.bytes)[0]) - w
        assert w > 0 and act > 0
        t_mem = w / (bw * f) + act / bw  # seconds
        launches = float(np.ravel(getattr(o, "launches", 1.0) or 1.0)[0])  # MLA's projections launch several kernels
        assert float(np.ravel(o.time_s)[0]) == pytest.approx(t_mem + cm.kernel_s * launches, rel=1e-9), name
        assert float(np.ravel(op(base, name).time_s)[0]) < float(np.ravel(o.time_s)[0])
    for name in (Op.ROUTER, Op.LM_HEAD):  # 16-bit weights in the released checkpoint
        assert np.allclose(op(got, name).time_s, op(base, name).time_s)


def test_block_scaled_fp8_gemms_compute_at_the_engine_kernels_rate():
    """A compute-bound prefill step of DeepSeek-V3 in its released block-scaled FP8 (8,192 tokens): each linear
    layer's tensor-core time is FLOPs / (the plain FP8 GEMM rate x the engine's block-FP8 compute fraction), dense
    layers at one fraction and the grouped experts at another (vLLM on Hopper: CUTLASS 0.87, Triton fused_moe 0.37,
    engines/vllm-0.15.yaml); memory time, the 16-bit router and lm_head, other architectures and formats are unchanged."""
    fr = (0.8, 0.4)
    _, _, got, base = _block_fp8_steps("block_fp8_compute", fr, Step(prefill_seqs=1, prefill_tokens=8192))
    for name in BLOCK_SCALED_OPS:
        f = fr[1] if name == Op.EXPERTS else fr[0]
        (tc, tm, _, _), (tc0, tm0, _, _) = op(got, name).bound_parts, op(base, name).bound_parts
        assert float(np.ravel(tc0)[0]) > 0  # seconds of tensor-core work at the plain rate
        assert float(np.ravel(tc)[0]) == pytest.approx(float(np.ravel(tc0)[0]) / f, rel=1e-9), name
        assert np.allclose(tm, tm0), name  # the weight stream is block_fp8_bw's business, unset here
    assert float(np.ravel(op(got, Op.EXPERTS).time_s)[0]) > float(np.ravel(op(base, Op.EXPERTS).time_s)[0])
    for name in (Op.ROUTER, Op.LM_HEAD):  # 16-bit weights in the released checkpoint
        assert np.allclose(op(got, name).time_s, op(base, name).time_s)


def test_block_fp8_fractions_are_checked_where_the_profile_is_read(tmp_path):
    from planner.errors import PlannerError
    from planner.specs.engine import EngineSpec
    from planner.specs.loader import load_spec_file

    bad = tmp_path / "x-1.0.yaml"
    bad.write_text("id: x\nversion: '1.0'\nname: X\nsource: s\nsettings:\n"
                   "  block_fp8_bw: {value: {hopper: {dense: 1.4, moe: 0.5}}, source: s}\n")
    with pytest.raises(PlannerError, match="block_fp8_bw"):
        load_spec_file(EngineSpec, bad)
    bad.write_text("id: x\nversion: '1.0'\nname: X\nsource: s\nsettings:\n"
                   "  block_fp8_compute: {value: {hopper: {dense: 0.9, moe: 0}}, source: s}\n")
    with pytest.raises(PlannerError, match="block_fp8_compute"):
        load_spec_file(EngineSpec, bad)


def test_estimate_says_when_block_fp8_kernels_set_the_pace():
    """estimate names the fractions the engine's block-FP8 kernels stream at, where they apply, and only there."""
    from planner.serving.predict import PlanSpec, estimate

    on = estimate("deepseek-r1", "h200-sxm", PlanSpec(tp=8, weights="fp8"), isl=512, osl=128, engine="vllm@0.15")
    assert any("0.66 (dense layers) and 0.48 (experts)" in n and "hopper" in n for n in on.notes)
    assert any("compute at 0.87 (dense layers) and 0.37 (experts) of the plain FP8 GEMM rate" in n for n in on.notes)
    for hw, weights in (("b200", "fp8"), ("h200-sxm", "fp4")):  # an architecture the profile does not list; not FP8
        off = estimate("deepseek-r1", hw, PlanSpec(tp=8, weights=weights), isl=512, osl=128, engine="vllm@0.15")
        assert not any("block_fp8" in n for n in off.notes)


def test_expert_traffic_between_bridged_pairs_falls_back_to_all_gather():
    """H100 NVL: the NVLink all-to-all reaches the bridged pair only; ep 4 spans two pairs over PCIe, so its tokens
    move as the all-gather / reduce-scatter fallback (ep - 1 copies each way) while ep 2 keeps the all-to-all."""
    m = get_model("qwen3-30b-a3b")
    h, k, T = m.hidden_size, m.moe.top_k, 512.0
    hw = get_hardware("h100-nvl")
    per_rank = {}
    for ep in (2, 4):
        p = make_plans(m, hw, tp=1, ep=ep, adp=ep, weights="fp8", kv="fp8")
        sc = CostModel(m, hw).step(p, Step(decode_seqs=T * ep, decode_ctx=1000))
        per_rank[ep] = float(np.ravel(op(sc, Op.EP_ALLTOALL).bytes)[0])
    assert per_rank[4] == pytest.approx(T * (4 - 1) * h * 2.0 * 2.0, rel=1e-9)
    assert per_rank[2] >= T * k * (2 - 1) / 2 * h * 2.0 * 2.0  # the top-k all-to-all, times the busiest rank's share
