"""TensorRT-LLM 1.x's decoder-layer fusions, priced as its modeling code runs them: the norm after each tensor-parallel
all-reduce inside the all-reduce kernel (allreduce_norm_fusion), and DeepSeek's shared experts on a second stream
beside the routed experts in steps replayed as CUDA graphs (shared_expert_stream). By hand from the op's own traffic
and the per-kernel gap, nothing else the step model computes."""

from dataclasses import replace

import numpy as np
import pytest

from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Op, Step, kernel_calls
from planner.specs.engine import Engine, EngineSpec, get_engine
from planner.specs.loader import get_hardware, get_model


def op(sc, name):
    return next(o for o in sc.ops if o.name == name)


@pytest.fixture(scope="module")
def trt():
    return get_engine("trtllm@1.1")


def test_profile_lists_the_models_whose_layers_fuse(trt):
    # the decoder layers that pass RESIDUAL_RMS_NORM to the all-reduce (DeepSeek-V3, the big Llamas, Llama 4,
    # Qwen3-MoE, gpt-oss) and not those that call their norms as modules (dense Qwen3, Mixtral, Llama 3 8B)
    for m in ("deepseek-r1", "llama-3.3-70b", "llama-4-scout-17b-16e", "qwen3-235b-a22b", "gpt-oss-120b", "kimi-k2"):
        assert Engine.model_listed(trt.allreduce_norm_fusion, m), m
    for m in ("qwen3-32b", "mixtral-8x7b", "llama-3.1-8b", "mistral-7b", "deepseek-v3.2"):
        assert not Engine.model_listed(trt.allreduce_norm_fusion, m), m
    assert Engine.model_listed(trt.shared_expert_stream, "deepseek-v3")
    assert not Engine.model_listed(trt.shared_expert_stream, "qwen3-235b-a22b")  # no shared expert
    # the older releases and vLLM fuse nothing (SGLang's own: tests/test_sglang_fusions.py)
    for e in ("trtllm@0.14", "vllm"):
        assert get_engine(e).allreduce_norm_fusion == () and get_engine(e).shared_expert_stream == ()


def test_fused_norms_keep_their_traffic_and_drop_their_kernel(trt):
    m, hw = get_model("llama-3.3-70b"), get_hardware("h100-sxm")
    cm = CostModel(m, hw, engine=trt)
    step = Step(decode_seqs=8, decode_ctx=1000)
    for name in (Op.ATTN_NORM, Op.MLP_NORM):
        tp8 = op(cm.step(make_plans(m, hw, tp=8, weights="fp8", kv="fp8"), step), name)
        tp1 = op(cm.step(make_plans(m, hw, tp=1, weights="fp8", kv="fp8"), step), name)
        # 8 tokens x 8,192 elements read and written at 16 bit: the traffic at the device's bandwidth, no kernel gap
        traffic = 8 * 8192 * 2.0 * 2 / cm.bw
        assert float(tp8.bytes[0]) == pytest.approx(8 * 8192 * 2.0 * 2)
        assert float(tp8.time_s[0]) == pytest.approx(traffic, rel=1e-9)
        assert float(np.ravel(tp8.launches)[0]) == 0.0
        # without tensor parallelism there is no all-reduce: the norm is a kernel of its own
        assert float(tp1.time_s[0]) == pytest.approx(traffic + cm.kernel_s, rel=1e-9)
        assert float(np.ravel(tp1.launches)[0]) == 1.0
    # a model whose layers call the norm as a module keeps the kernel at TP8
    q = get_model("qwen3-32b")
    cq = CostModel(q, hw, engine=trt)
    n = op(cq.step(make_plans(q, hw, tp=8, weights="fp8", kv="fp8"), step), Op.ATTN_NORM)
    assert float(n.time_s[0]) > float(n.bytes[0]) / cq.bw + 0.99 * cq.kernel_s


def test_attention_data_parallel_runs_no_all_reduce_to_fuse_into(trt):
    m, hw = get_model("deepseek-r1"), get_hardware("b200")
    cm = CostModel(m, hw, engine=trt)
    step = Step(decode_seqs=64, decode_ctx=1000)
    adp = op(cm.step(make_plans(m, hw, tp=1, ep=8, adp=8, weights="fp8", kv="fp8"), step), Op.MLP_NORM)
    tp = op(cm.step(make_plans(m, hw, tp=8, ep=8, weights="fp8", kv="fp8"), step), Op.MLP_NORM)
    assert float(np.ravel(adp.launches)[0]) == 1.0 and float(np.ravel(tp.launches)[0]) == 0.0


def test_shared_experts_beside_the_routed_ones_in_graph_steps(trt):
    m, hw = get_model("deepseek-r1"), get_hardware("h200-sxm")
    p = make_plans(m, hw, tp=8, weights="fp8", kv="fp8")
    fused = CostModel(m, hw, engine=trt)
    plain = CostModel(m, hw, engine=replace(trt, shared_expert_stream=()))
    decode = Step(decode_seqs=4, decode_ctx=2000)  # 4 sequences: a captured graph
    sc, base = fused.step(p, decode), plain.step(p, decode)
    sh, sh0 = op(sc, Op.SHARED_EXPERT), op(base, Op.SHARED_EXPERT)
    routed = sum(float(op(base, n).time_s[0]) for n in (Op.ROUTER, Op.MOE_PERMUTE, Op.EXPERTS, Op.MOE_ACT))
    # the shared expert (3 x 7,168 x 2,048 FP8 weights over 8 GPUs: 5.5 MB) is shorter than the routed path, so it
    # adds its weight traffic at the device's bandwidth and nothing of its kernels' latency
    assert float(sh0.time_s[0]) < routed
    assert float(sh.time_s[0]) == pytest.approx(float(sh.bytes[0]) / fused.bw, rel=1e-9)
    assert float(sh.bytes[0]) == pytest.approx(float(sh0.bytes[0]))
    assert float(sh.weight_bytes[0] if np.ndim(sh.weight_bytes) else sh.weight_bytes) == pytest.approx(
        3 * 7168 * 2048 / 8, rel=0.02)
    # a prompt step runs eagerly: the streams are not used and the shared expert costs what it did
    prompt = Step(prefill_seqs=1, prefill_tokens=1024)
    assert float(op(fused.step(p, prompt), Op.SHARED_EXPERT).time_s[0]) == pytest.approx(
        float(op(plain.step(p, prompt), Op.SHARED_EXPERT).time_s[0]), rel=1e-12)
    # the step gets shorter by what the stream hides, and no kernel call is lost from the host's count
    assert float(sc.time_s[0]) < float(base.time_s[0])
    assert float(kernel_calls(sc.ops)[0]) == pytest.approx(float(kernel_calls(base.ops)[0]))


def test_a_model_setting_must_be_a_list_of_ids(trt):
    spec = {"id": "x", "version": "1", "name": "x", "source": "s",
            "settings": {"allreduce_norm_fusion": {"value": "deepseek-r1", "source": "s"}}}
    with pytest.raises(ValueError, match="allreduce_norm_fusion"):
        EngineSpec(**spec)
