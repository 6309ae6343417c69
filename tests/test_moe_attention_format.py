"""Each linear layer in the format its checkpoint stores it in: a MoE model's NVFP4 checkpoint keeps its attention
projections in bf16 (NVIDIA's ModelOpt exports: quant.NVFP4_MOE_RECIPE), as its MXFP4 one does (AMD's Quark exports:
quant.MXFP4_MOE_RECIPE), a dense model's quantizes them, and a model
released in two precisions (gpt-oss: MXFP4 experts, bf16 attention) computes its attention in bf16. Checked by hand
from the config (Qwen3-30B-A3B: hidden 2048, 32 query heads and 4 KV heads of 128, 48 layers) against the step's
ops and the memory model, not against anything the step model computes itself."""

import numpy as np
import pytest

from planner.calibrate.bench_settings import stored_params
from planner.costmodel.memory import weight_bytes_per_device
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Op, Step
from planner.specs.loader import get_hardware, get_model
from planner.specs.quant import FORMATS, get_format


def op(sc, name):
    return next(o for o in sc.ops if o.name == name)


def _decode(m, hw, weights, seqs=256):
    p = make_plans(m, hw, tp=1, weights=weights, kv="fp8")
    return p, CostModel(m, hw).step(p, Step(decode_seqs=seqs, decode_ctx=1500))


def test_the_recipe_is_the_fp4_formats_and_has_a_source():
    assert "exclude_modules" in get_format("fp4").moe_mixers_16bit_source
    assert "*self_attn*" in get_format("mxfp4").moe_mixers_16bit_source  # Quark's exclude_layers
    # only the two E2M1 formats carry it: the 8-bit formats quantize every layer
    assert [f for f, fmt in FORMATS.items() if fmt.moe_mixers_16bit_source] == ["fp4", "mxfp4"]
    assert all(FORMATS[f].moe_mixers_16bit_by for f in ("fp4", "mxfp4"))


def test_a_quark_mxfp4_moe_checkpoint_holds_its_attention_in_bf16_and_gpt_oss_keeps_its_own_release():
    """DeepSeek-R1 in MXFP4 on an MI355X (amd/DeepSeek-R1-0528-MXFP4-Preview): MLA's projections are the bf16 GEMMs
    (q_a/kv_a 7,168 x 2,112, q_b 1,536 x 24,576, kv_b 512 x 32,768, o 16,384 x 7,168 per layer, whole at TP1), the
    experts MXFP4 at 4 + 8/32 bits; gpt-oss, released with MXFP4 experts and bf16 attention, is what it was."""
    m, hw = get_model("deepseek-r1"), get_hardware("mi355x")
    p4 = make_plans(m, hw, tp=1, weights="mxfp4", kv="fp8")
    p16 = make_plans(m, hw, tp=1, weights="bf16", kv="fp8")
    assert np.all(p4.attn_weight_bytes == 2.0) and p4.dense_weight_bytes is None  # the MLPs stay MXFP4
    assert np.allclose(p4.attn_gemm_flops, p16.gemm_flops)
    s4 = CostModel(m, hw).step(p4, Step(decode_seqs=8, decode_ctx=1500))
    qkv = 7168 * 2112 + 1536 * 24576 + 512 * 32768  # elements a layer
    assert float(np.ravel(op(s4, Op.QKV_PROJ).weight_bytes)[0]) == pytest.approx(qkv * 2.0, rel=0.01)
    assert float(np.ravel(op(s4, Op.O_PROJ).weight_bytes)[0]) == pytest.approx(16384 * 7168 * 2.0, rel=0.01)
    g = get_model("gpt-oss-120b")
    assert g.stored_formats("mxfp4") == ("bf16", "bf16")


def test_nvfp4_moe_attention_is_the_bf16_gemm_and_its_bytes():
    m, hw = get_model("qwen3-30b-a3b"), get_hardware("b200")
    h, heads, kv_heads, d = 2048, 32, 4, 128
    qkv_elems = h * (heads + 2 * kv_heads) * d
    p4, s4 = _decode(m, hw, "fp4")
    p16, s16 = _decode(m, hw, "bf16")
    assert np.all(p4.attn_weight_bytes == 2.0)
    assert np.allclose(p4.attn_gemm_flops, p16.gemm_flops)  # the bf16 plan's own GEMM rate
    for name in (Op.QKV_PROJ, Op.O_PROJ):
        # the same GEMM as the bf16 plan's: same FLOPs, same weight bytes, same time
        assert float(op(s4, name).time_s[0]) == pytest.approx(float(op(s16, name).time_s[0]), rel=1e-12)
    assert float(np.ravel(op(s4, Op.QKV_PROJ).weight_bytes)[0]) == pytest.approx(qkv_elems * 2.0)
    # the experts stay NVFP4: 4 + 8/16 bits a weight, read at 0.5625 bytes
    ex4, ex16 = op(s4, Op.EXPERTS), op(s16, Op.EXPERTS)
    assert float(np.ravel(ex4.weight_bytes)[0]) == pytest.approx(float(np.ravel(ex16.weight_bytes)[0]) * 0.5625 / 2.0, rel=1e-9)


def test_nvfp4_dense_model_quantizes_its_attention():
    m, hw = get_model("llama-3.3-70b"), get_hardware("b200")
    p4, s4 = _decode(m, hw, "fp4")
    assert p4.attn_weight_bytes is None and p4.attn_gemm_flops is None
    q = op(s4, Op.QKV_PROJ)
    assert float(np.ravel(q.weight_bytes)[0]) == pytest.approx(8192 * (64 + 2 * 8) * 128 * 0.5625)


def test_memory_holds_nvfp4_moe_attention_in_bf16():
    m, hw = get_model("qwen3-30b-a3b"), get_hardware("b200")
    attn = m.param_counts()["attention"]
    p4 = make_plans(m, hw, tp=1, weights="fp4", kv="fp8")
    w4 = float(weight_bytes_per_device(m, p4)[0])
    # every other layer as before; the attention's 0.91 B weights at 2 bytes instead of 0.5625
    everything_fp4 = w4 - attn * (2.0 - 0.5625)
    assert attn == pytest.approx(48 * (2048 * (32 + 8) * 128 + 32 * 128 * 2048), rel=0.01)
    assert w4 - everything_fp4 == pytest.approx(attn * 1.4375)
    # ... and at tp2 each device holds half of it
    p4t = make_plans(m, hw, tp=2, weights="fp4", kv="fp8")
    assert float(weight_bytes_per_device(m, p4t)[0]) < w4


def test_trtllm_bench_counts_a_moe_exports_attention_unpacked():
    """trtllm-bench sizes its engine from the checkpoint's stored elements: NVFP4 packs two weights per element plus
    a scale per 16, so a MoE export, whose attention stays bf16, stores its attention weights one per element."""
    m = get_model("qwen3-30b-a3b")
    c = m.param_counts()
    packed = c["experts"] + c["dense_mlp"] + c["shared_experts"]
    assert stored_params(m, "fp4") == pytest.approx(sum(c.values()) - packed + (0.5 + 1 / 16) * packed)
    dense = get_model("llama-3.3-70b")
    cd = dense.param_counts()
    linears = cd["attention"] + cd["dense_mlp"]
    assert stored_params(dense, "fp4") == pytest.approx(sum(cd.values()) - linears + (0.5 + 1 / 16) * linears)


def test_two_precision_release_computes_attention_in_its_own_format():
    """gpt-oss served as released (MXFP4 experts, bf16 attention) on an H100, which has no FP4 tensor cores: the
    experts run the mixed-input kernel at 0.61 of the 16-bit rate, the bf16 attention the plain 16-bit GEMM."""
    m, hw = get_model("gpt-oss-20b"), get_hardware("h100-sxm")
    pmx, smx = _decode(m, hw, "mxfp4")
    p16, s16 = _decode(m, hw, "bf16")
    assert np.allclose(pmx.attn_gemm_flops, p16.gemm_flops)
    assert np.all(pmx.gemm_flops < p16.gemm_flops)  # the experts' mixed-input rate
    for name in (Op.QKV_PROJ, Op.O_PROJ):
        assert float(op(smx, name).time_s[0]) == pytest.approx(float(op(s16, name).time_s[0]), rel=1e-12)


def test_estimate_says_so():
    from planner.serving.predict import estimate
    from planner.serving.planspec import PlanSpec

    est = estimate("qwen3-30b-a3b", "b200", PlanSpec(tp=1, weights="fp4", kv="fp8"), isl=1024, osl=256, engine="trtllm")
    assert any("attention projections stay in 16 bit" in n for n in est.notes)
    dense = estimate("llama-3.3-70b", "b200", PlanSpec(tp=1, weights="fp4", kv="fp8"), isl=1024, osl=256, engine="trtllm")
    assert not any("attention projections stay in 16 bit" in n for n in dense.notes)


def test_deepseek_r1_says_its_nvfp4_checkpoint_quantizes_wo_and_how_much_memory_that_is():
    """nvidia/DeepSeek-R1-0528-NVFP4-v2 quantizes wo too (recorded in the model spec, not priced: docs/accuracy.md):
    estimate says so with the memory it leaves out, 61 layers x 128 heads x 128 x 7,168 weights at 2 - 0.5625 bytes,
    whole on every attention-DP rank and an eighth of it at TP8; AMD's MXFP4 export keeps wo in bf16 and says nothing."""
    from planner.serving.planspec import PlanSpec
    from planner.serving.predict import estimate
    from planner.specs.model import Model

    m = get_model("deepseek-r1")
    assert m.quantized_out_proj.formats == ["fp4"] and "wo module" in m.quantized_out_proj.source
    gib = 61 * 128 * 128 * 7168 * (2.0 - 0.5625) / 2**30
    for plan, share in ((PlanSpec(attention_dp=4, ep=4, weights="fp4"), 1.0), (PlanSpec(tp=8, ep=8, weights="fp4"), 1 / 8)):
        est = estimate("deepseek-r1", "b200", plan, isl=1024, osl=256, engine="trtllm")
        said = [n for n in est.notes if "(wo)" in n]
        assert len(said) == 1 and f"{gib * share:.1f} GiB a GPU less" in said[0]
    amd = estimate("deepseek-r1", "mi355x", PlanSpec(tp=8, weights="mxfp4"), isl=1024, osl=256, engine="sglang")
    assert not any("(wo)" in n for n in amd.notes)
    dense = get_model("llama-3.3-70b").model_dump()
    dense["quantized_out_proj"] = {"formats": ["fp4"], "source": "x"}
    with pytest.raises(ValueError, match="MoE"):
        Model.model_validate(dense)
    moe = m.model_dump()
    moe["quantized_out_proj"] = {"formats": ["fp8"], "source": "x"}  # fp8 quantizes every layer already
    with pytest.raises(ValueError, match="only formats whose MoE recipe"):
        Model.model_validate(moe)
