"""Hybrid linear attention (Gated DeltaNet between gated-attention layers: Qwen3-Next 80B-A3B), checked by hand.

Qwen/Qwen3-Next-80B-A3B-Instruct config.json: 48 layers, full_attention_interval 4, hidden 2048, 16 q / 2 kv heads of
256 with an output gate, linear attention with 16 key heads and 32 value heads of 128, conv kernel 4, 512 experts
top-10 of width 512 plus one shared expert of 512, vocab 151936, untied. What follows is derived from those numbers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from planner.costmodel.memory import LINEAR_STATE_BYTES, kv_bytes_per_seq, max_context, memory
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Op, Step
from planner.specs.hf_import import spec_from_hf_config
from planner.specs.loader import get_hardware, get_model

H, L, EVERY = 2048, 48, 4
HEADS, KV_HEADS, HEAD_DIM = 16, 2, 256
HK, HV, DK, DV, K = 16, 32, 128, 128, 4
CONV = 2 * HK * DK + HV * DV  # 8192 channels through the causal convolution


def _m():
    return get_model("qwen3-next-80b-a3b")


def test_layer_pattern_and_parameters():
    m = _m()
    assert m.linear_layer_indices() == [i for i in range(L) if (i + 1) % EVERY]
    assert (m.num_linear_layers, m.num_attention_layers) == (36, 12)
    # a gated-attention layer: q and its gate (2 x 16 x 256), k and v (2 x 2 x 256), o, per-head q/k norms
    attn = H * 2 * HEADS * HEAD_DIM + 2 * H * KV_HEADS * HEAD_DIM + HEADS * HEAD_DIM * H + 2 * HEAD_DIM
    assert m.attention_params() == attn
    # a Gated DeltaNet layer: in_proj (q, k, v, z, beta, alpha), conv taps, A_log and dt_bias, gated norm, out_proj
    lin = H * (CONV + HV * DV + 2 * HV) + CONV * K + 2 * HV + DV + HV * DV * H
    assert m.attention.linear.params(H) == lin
    assert m.param_counts()["attention"] == 12 * attn + 36 * lin
    assert m.total_params == pytest.approx(80e9, rel=0.01)  # the card's 80B


def test_only_attention_layers_grow_a_cache_and_each_sequence_holds_a_fixed_state():
    m, hw = _m(), get_hardware("h200-sxm")
    for tp in (1, 2):
        p = make_plans(m, hw, tp=tp, weights="fp8", kv="bf16")  # fp8 weights: 80 GB, one H200 holds them
        per_token = 12 * 2 * (KV_HEADS / tp) * HEAD_DIM * 2  # 12 layers, K and V, bf16
        state = 36 * ((HV / tp) * DV * DK + (CONV / tp) * (K - 1)) * LINEAR_STATE_BYTES
        for ctx in (1, 4096, 131072):
            assert float(kv_bytes_per_seq(m, p, ctx)[0]) == pytest.approx(per_token * ctx + state)
        mem = memory(m, hw, p)
        assert float(mem.state_per_seq[0]) == pytest.approx(state)
        # the longest sequence: the state first, then KV for every token
        cap = float(mem.kv_capacity_bytes[0])
        assert float(max_context(m, mem)[0]) == min(np.floor((cap - state) / per_token), m.max_context)
    assert state == pytest.approx(19.76e6, rel=0.01)  # tp 2: about 20 MB a sequence, whatever its length


def test_decode_reads_and_writes_each_state_once_per_token_whatever_the_context():
    m, hw = _m(), get_hardware("h200-sxm")
    p = make_plans(m, hw, tp=1, weights="bf16", kv="bf16")
    cm = CostModel(m, hw)
    seqs = 64.0
    steps = [cm.step(p, Step(decode_seqs=np.array([seqs]), decode_ctx=np.array([ctx]))) for ctx in (1000.0, 64000.0)]
    core = [next(o for o in s.ops if o.name == Op.LINEAR_CORE) for s in steps]
    state = (HV * DV * DK + CONV * (K - 1)) * LINEAR_STATE_BYTES
    io = seqs * (CONV + 2 * HV + HV * DV) * 2.0  # q, k, v, beta, alpha in, o out (bf16)
    assert float(core[0].bytes[0]) == pytest.approx(seqs * 2 * state + io)
    assert core[0].count == 36
    assert float(core[1].bytes[0]) == float(core[0].bytes[0])  # no KV: the context does not enter
    att = [next(o for o in s.ops if o.name == Op.ATTENTION) for s in steps]
    assert att[0].count == 12 and float(att[1].bytes[0]) > 30 * float(att[0].bytes[0])  # the 12 layers' KV does
    # memory bound: its time is at least the bytes over the device's bandwidth
    assert float(core[0].time_s[0]) >= float(core[0].bytes[0]) / float(np.max(cm.bw)) * 0.999


def test_prefill_state_work_grows_with_the_prompt_not_its_square():
    m, hw = _m(), get_hardware("h200-sxm")
    p = make_plans(m, hw, tp=1, weights="bf16", kv="bf16")
    cm = CostModel(m, hw)
    flops = {}
    for n in (4096.0, 8192.0):
        s = cm.step(p, Step(prefill_seqs=np.array([1.0]), prefill_tokens=np.array([n])))
        core = next(o for o in s.ops if o.name == Op.LINEAR_CORE)
        # per token and value head: 4 dk dv multiply-adds of state terms, 64 (2 dk + dv) of intra-chunk terms
        assert float(core.flops[0]) == pytest.approx(2 * HV * n * (4 * DK * DV + 64 * (2 * DK + DV)))
        flops[n] = (float(core.flops[0]), float(next(o for o in s.ops if o.name == Op.ATTENTION).flops[0]))
    assert flops[8192.0][0] == pytest.approx(2 * flops[4096.0][0])  # linear in the prompt
    assert flops[8192.0][1] > 3.9 * flops[4096.0][1]  # the softmax layers: quadratic


def test_import_of_the_config_gives_the_built_in_network(tmp_path):
    cfg = {"architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "hidden_size": H, "num_hidden_layers": L,
           "intermediate_size": 5120, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
           "vocab_size": 151936, "max_position_embeddings": 262144, "linear_num_value_heads": HV,
           "linear_num_key_heads": HK, "linear_key_head_dim": DK, "linear_value_head_dim": DV, "linear_conv_kernel_dim": K,
           "num_experts": 512, "num_experts_per_tok": 10, "decoder_sparse_step": 1, "shared_expert_intermediate_size": 512,
           "moe_intermediate_size": 512, "full_attention_interval": EVERY, "tie_word_embeddings": False,
           "mlp_only_layers": [], "hidden_act": "silu", "mtp_num_hidden_layers": 1}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    got, _ = spec_from_hf_config(path, "qn")
    want = _m()
    assert got.attention.linear == want.attention.linear and got.attention.output_gate and got.attention.qk_norm
    assert (got.total_params, got.active_params, got.mtp_layers) == (want.total_params, want.active_params, 1)
    assert got.moe.num_shared_experts == 1 and got.moe.shared_expert_intermediate_size == 512


def test_estimate_runs_end_to_end():
    from planner.api import PlanSpec, estimate

    e = estimate("qwen3-next-80b-a3b", "h200-sxm", PlanSpec(tp=2, weights="bf16"), isl=4000, osl=1000, engine="vllm")
    assert e.memory["fits"] and e.output_tokens_per_s > 0 and e.ttft_s > 0
    assert {"linear_core", "linear_in_proj", "attention"} <= {r["op"] for r in e.breakdown["decode"]}


def test_an_fp32_state_doubles_the_recurrent_traffic():
    """Qwen3.5's config asks for an fp32 recurrent state (mamba_ssm_dtype): decode reads and writes 4 bytes a recurrent
    element (the convolution window stays 16 bit), and the state a sequence holds grows the same way."""
    m, hw = get_model("qwen3.5-35b-a3b"), get_hardware("h200-sxm")
    lin = m.attention.linear
    assert lin.state_dtype == "fp32" and lin.state_bytes == 4.0
    p = make_plans(m, hw, tp=1, weights="bf16", kv="bf16")
    core = next(o for o in CostModel(m, hw).step(p, Step(decode_seqs=np.array([8.0]), decode_ctx=np.array([2000.0]))).ops
                if o.name == Op.LINEAR_CORE)
    rec = lin.value_heads * lin.value_head_dim * lin.key_head_dim * 4.0
    conv = lin.conv_dim * (lin.conv_kernel - 1) * 2.0
    io = 8 * (lin.conv_dim + 2 * lin.value_heads + lin.value_heads * lin.value_head_dim) * 2.0
    assert float(core.bytes[0]) == pytest.approx(8 * 2 * (rec + conv) + io)
