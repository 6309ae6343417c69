"""SGLang 0.5's DeepSeek decoder-layer fusions, priced as its model code runs them, each on the devices it runs on: the
shared expert inside the routed experts' fused MoE (CUDA before SM100, no expert parallelism), on a second stream
beside them where it is not fused (CUDA, steps of at most 1,024 tokens), and the norms inside FlashInfer's all-reduce
(SM100, at most 2,048 tokens). By hand from the ops' own traffic and the per-kernel gap."""

from dataclasses import replace

import numpy as np
import pytest

from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Op, Step, kernel_calls
from planner.specs.engine import Engine, EngineSpec, get_engine
from planner.specs.loader import get_hardware, get_model


def op(sc, name):
    return next(o for o in sc.ops if o.name == name)


def first(x):
    return float(np.ravel(x)[0])


@pytest.fixture(scope="module")
def sgl():
    return get_engine("sglang")


def test_each_fusion_applies_on_the_devices_its_code_names(sgl):
    h200, b200, mi300x, rtx, mi355x, mi250 = (get_hardware(h) for h in ("h200-sxm", "b200", "mi300x", "rtx-pro-6000",
                                                                         "mi355x", "mi250"))
    listed = lambda field, m, hw: Engine.model_listed(getattr(sgl, field), m, hw)  # noqa: E731
    # the fused shared expert: CUDA before SM100 (B200's FP8/NVFP4 checkpoints take the flashinfer_trtllm runner,
    # which turns it off), ROCm from capability 9.4 (gfx942, gfx950: sglang PR 12201), not CDNA2 (gfx90a), and only
    # DeepSeek-V3's architecture with 256 routed experts
    assert listed("shared_expert_fusion", "deepseek-r1", h200) and listed("shared_expert_fusion", "deepseek-v3", rtx)
    assert not listed("shared_expert_fusion", "deepseek-r1", b200)
    assert listed("shared_expert_fusion", "deepseek-r1", mi300x) and listed("shared_expert_fusion", "deepseek-r1", mi355x)
    assert not listed("shared_expert_fusion", "deepseek-r1", mi250)
    assert not listed("shared_expert_fusion", "kimi-k2", mi300x)
    assert not listed("shared_expert_fusion", "kimi-k2", h200)  # 384 routed experts
    # the second stream: wherever CUDA runs (ROCm builds no alt_stream)
    assert listed("shared_expert_stream", "deepseek-r1", b200) and listed("shared_expert_stream", "kimi-k2", h200)
    assert not listed("shared_expert_stream", "deepseek-r1", mi300x)
    # the all-reduce norm fusion: SM100 only
    assert listed("allreduce_norm_fusion", "deepseek-r1", b200) and not listed("allreduce_norm_fusion", "deepseek-r1", h200)
    # an entry for an architecture never matches without a device
    assert not Engine.model_listed(sgl.allreduce_norm_fusion, "deepseek-r1")
    # the other engines' lists are unchanged
    assert get_engine("vllm").shared_expert_fusion == () and get_engine("trtllm@1.1").shared_expert_fusion == ()


def test_a_fused_shared_expert_is_one_more_expert_in_the_grouped_gemm(sgl):
    m, hw = get_model("deepseek-r1"), get_hardware("h200-sxm")
    p = make_plans(m, hw, tp=8, weights="fp8", kv="bf16", engine=sgl)
    fused, plain = CostModel(m, hw, engine=sgl), CostModel(m, hw, engine=replace(sgl, shared_expert_fusion=()))
    step = Step(decode_seqs=4, decode_ctx=1500)
    sc, base = fused.step(p, step), plain.step(p, step)
    sh, sh0 = op(sc, Op.SHARED_EXPERT), op(base, Op.SHARED_EXPERT)
    # its own op does nothing: no time, traffic or kernel
    assert first(sh.time_s) == 0.0 and first(sh.bytes) == 0.0 and first(sh.launches) == 0.0
    # its weights (3 x 7,168 x 2,048 FP8 over 8 GPUs) are read by the grouped GEMM as one more touched expert's
    w_shared = 3 * 7168 * 2048 / 8
    assert first(sh0.weight_bytes) == pytest.approx(w_shared, rel=0.02)
    ex, ex0 = op(sc, Op.EXPERTS), op(base, Op.EXPERTS)
    assert first(ex.weight_bytes) - first(ex0.weight_bytes) == pytest.approx(first(sh0.weight_bytes), rel=1e-9)
    # the host issues the shared expert's GEMM and its two activation quantizations no more: 3 calls a MoE layer
    assert first(kernel_calls(base.ops)) - first(kernel_calls(sc.ops)) == pytest.approx(3 * m.num_moe_layers)
    # under expert parallelism SGLang does not fuse: the shared expert is an op of its own again
    ep = make_plans(m, hw, tp=8, ep=8, weights="fp8", kv="bf16", engine=sgl)
    assert first(op(fused.step(ep, step), Op.SHARED_EXPERT).time_s) > 0.0


def test_an_unfused_shared_expert_runs_beside_the_routed_ones_up_to_1024_tokens(sgl):
    m, hw = get_model("deepseek-r1"), get_hardware("b200")
    p = make_plans(m, hw, tp=8, weights="fp8", kv="bf16", engine=sgl)
    cm, plain = CostModel(m, hw, engine=sgl), CostModel(m, hw, engine=replace(sgl, shared_expert_stream=()))
    assert not cm.shared_expert_fusion  # B200: the flashinfer_trtllm runner, no fused shared expert
    for tokens, beside in ((512, True), (1024, True), (2048, False)):
        step = Step(prefill_seqs=1, prefill_tokens=tokens)  # a prompt step runs eagerly: the stream still applies
        sh, sh0 = op(cm.step(p, step), Op.SHARED_EXPERT), op(plain.step(p, step), Op.SHARED_EXPERT)
        if beside:
            # shorter than the routed path, it adds its traffic at the bandwidth and none of its kernels' latency
            assert first(sh.time_s) == pytest.approx(first(sh.bytes) / cm.bw, rel=1e-9)
            assert first(sh.time_s) < first(sh0.time_s)
        else:
            assert first(sh.time_s) == pytest.approx(first(sh0.time_s), rel=1e-12)


def test_norms_fuse_into_the_all_reduce_on_sm100_up_to_2048_tokens(sgl):
    m = get_model("deepseek-r1")
    for hw_id, fuses in (("b200", True), ("h200-sxm", False)):
        hw = get_hardware(hw_id)
        cm = CostModel(m, hw, engine=sgl)
        p = make_plans(m, hw, tp=8, weights="fp8", kv="bf16", engine=sgl)
        for tokens in (8, 2048, 4096):
            n = op(cm.step(p, Step(prefill_seqs=1, prefill_tokens=tokens)), Op.MLP_NORM)
            traffic = tokens * 7168 * 2.0 * 2 / cm.bw  # read and written at 16 bit
            if fuses and tokens <= 2048:
                assert first(n.launches) == 0.0 and first(n.time_s) == pytest.approx(traffic, rel=1e-9)
            else:
                assert first(n.launches) == 1.0 and first(n.time_s) == pytest.approx(traffic + cm.kernel_s, rel=1e-9)


def test_a_model_setting_by_architecture_must_map_names_to_lists():
    base = {"id": "x", "version": "1", "name": "x", "source": "s"}
    ok = EngineSpec(**base, settings={"shared_expert_fusion": {"value": {"hopper": ["deepseek-r1"]}, "source": "s"}})
    assert ok.to_engine().shared_expert_fusion == ("hopper:deepseek-r1",)
    for bad in ({"hopper": "deepseek-r1"}, {"hopper": ["a:b"]}, ["hopper:deepseek-r1"]):
        with pytest.raises(ValueError, match="shared_expert_fusion"):
            EngineSpec(**base, settings={"shared_expert_fusion": {"value": bad, "source": "s"}})
    with pytest.raises(ValueError, match="shared_expert_stream_tokens"):
        EngineSpec(**base, settings={"shared_expert_stream_tokens": {"value": -1, "source": "s"}})


def test_block_fp8_compute_fractions_on_amd_are_the_kernel_timings_over_the_plain_fp8_rate(sgl):
    """SGLang's block-FP8 compute fractions on CDNA3 and CDNA4 (engines/sglang-0.5.yaml) are published kernel rates
    over the device spec's plain FP8 GEMM rate (peak x achievable fraction), so a change to either side shows here.
    Rates (TFLOPS): aiter's tuned tables and vLLM PR 56812, as the profile's source quotes them."""
    fr = {a: (d, m) for a, d, m in sgl.block_fp8_compute}
    for hw_id, arch, dense_tflops, moe_tflops in (("mi300x", "cdna3", 736.0, 941.0), ("mi355x", "cdna4", 955.0, 683.9)):
        hw = get_hardware(hw_id)
        plain = hw.peak("fp8") * hw.achievable.matmul["fp8"].fraction / 1e12  # TFLOPS
        assert fr[arch][0] == pytest.approx(dense_tflops / plain, abs=0.006)
        assert fr[arch][1] == pytest.approx(moe_tflops / plain, abs=0.006)
        cm = CostModel(get_model("deepseek-r1"), hw, engine=sgl)
        assert cm.block_fp8_compute == fr[arch]
        # streaming: CDNA3's traced decode GEMMs (the test below), none on CDNA4
        assert cm.block_fp8_bw == ((0.04, 1.0) if arch == "cdna3" else (1.0, 1.0))
    # the MI325X is the MI300X's die (304 CUs, gfx942): the same kernels' fractions
    assert CostModel(get_model("deepseek-r1"), get_hardware("mi325x"), engine=sgl).block_fp8_compute == fr["cdna3"]


def test_a_block_fp8_prompt_on_an_mi300x_computes_its_experts_at_the_fused_moe_rate(sgl):
    """An 8,192-token DeepSeek-R1 prompt at TP8 on MI300X: the grouped experts' tensor-core time is the plain FP8
    GEMM's over 0.70, the dense projections' over 0.55, and the step is longer than without the fractions."""
    m, hw = get_model("deepseek-r1"), get_hardware("mi300x")
    p = make_plans(m, hw, tp=8, weights="fp8", kv="fp8", engine=sgl)
    cm, plain = CostModel(m, hw, engine=sgl), CostModel(m, hw, engine=replace(sgl, block_fp8_compute=()))
    step = Step(prefill_seqs=1, prefill_tokens=8192)
    sc, base = cm.step(p, step), plain.step(p, step)
    for name, f in ((Op.EXPERTS, 0.70), (Op.QKV_PROJ, 0.55), (Op.O_PROJ, 0.55)):
        tc, tc0 = op(sc, name).bound_parts[0], op(base, name).bound_parts[0]  # seconds on the matrix cores
        assert first(tc0) > 0 and first(tc) == pytest.approx(first(tc0) / f, rel=1e-9), name
    assert first(sc.time_s) > first(base.time_s)


def test_block_fp8_streaming_on_cdna3_is_the_traced_decode_gemms_rate(sgl):
    """SGLang's block-FP8 streaming fraction on CDNA3 (dense 0.04) is the rate of aiter's decode-sized GEMMs in a
    captured MI325X trace (InferenceX issue 863: 64 tokens, one decode step, durations in us as tabulated there) over
    the weights the planner has those ops read, a fraction of the MI325X's STREAM bandwidth; an MI325X decode step's
    MLA projections then take about the traced time."""
    m, hw = get_model("deepseek-r1"), get_hardware("mi325x")
    p = make_plans(m, hw, tp=8, weights="fp8", kv="fp8", engine=sgl)
    cm = CostModel(m, hw, engine=sgl)
    sc = cm.step(p, Step(decode_seqs=64, decode_ctx=1500))
    per_layer = lambda name: first(op(sc, name).weight_bytes)  # noqa: E731  bytes a layer on one GPU
    mla_bytes = per_layer(Op.QKV_PROJ) + per_layer(Op.O_PROJ)
    assert mla_bytes == pytest.approx((7168 * 2112 + 1536 * 24576 / 8 + 512 * 32768 / 8 + 16384 / 8 * 7168), rel=0.03)
    mlp_bytes = (7168 * 36864 / 8 + 18432 / 8 * 7168)  # the first three layers' dense MLP, FP8
    traced_us = {"mla": 123 + 30 + 5.4 + 5.5 + 34, "mlp": 122 + 39}  # q_a, kv_a, q_b, kv_b, o_proj; gate_up, down
    rate = (61 * mla_bytes + 3 * mlp_bytes) / ((61 * traced_us["mla"] + 3 * traced_us["mlp"]) * 1e-6)  # bytes/s
    stream = hw.memory_bandwidth_bytes_per_s * hw.achievable.memory.fraction * cm.kernels.memory
    dense, moe = dict((a, (d, mo)) for a, d, mo in sgl.block_fp8_bw)["cdna3"]
    assert dense == pytest.approx(rate / stream, abs=0.003) and moe == 1.0
    # the priced MLA projections of a layer land near the traced 198 us (weights at the fraction, plus activations
    # and the kernel gaps)
    priced_us = (first(op(sc, Op.QKV_PROJ).time_s) + first(op(sc, Op.O_PROJ).time_s)) * 1e6  # a layer's ops
    assert priced_us == pytest.approx(traced_us["mla"], rel=0.2)
