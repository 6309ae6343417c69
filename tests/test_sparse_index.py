"""DeepSeek Sparse Attention (DeepSeek-V3.2): a lightning indexer scores every cached token, the MLA core reads the top
2048, checked by hand against the DeepSeek-V3 network it extends.

deepseek-ai/DeepSeek-V3.2 config.json: the DeepSeek-V3 keys (hidden 7168, 61 layers, 128 heads, q_lora_rank 1536,
kv_lora_rank 512, qk_rope_head_dim 64) plus index_topk 2048, index_n_heads 64, index_head_dim 128.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from planner.costmodel.memory import kv_bytes_per_seq
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Op, Step
from planner.specs.hf_import import spec_from_hf_config
from planner.specs.loader import get_hardware, get_model

H, Q_LORA, LAYERS = 7168, 1536, 61
TOPK, IH, ID = 2048, 64, 128
LATENT = 512 + 64


def test_indexer_parameters_on_top_of_deepseek_v3():
    v32, v3 = get_model("deepseek-v3.2"), get_model("deepseek-v3")
    per_layer = Q_LORA * IH * ID + H * ID + 2 * ID + H * IH  # wq_b, wk, k LayerNorm, weights_proj
    # the indexer is counted over the layers that run one (all 61 here; IndexShare: fewer), beside each layer's MLA
    assert v32.attention_params() == v3.attention_params() and v32.num_indexer_layers == LAYERS
    assert v32.indexer_params() == LAYERS * per_layer
    assert v32.total_params - v3.total_params == LAYERS * per_layer  # 0.85B
    assert get_model("deepseek-ai/DeepSeek-V3.2-Exp").id == "deepseek-v3.2"


def test_every_token_stays_cached_with_its_indexer_key():
    m, hw = get_model("deepseek-v3.2"), get_hardware("h200-sxm")
    p = make_plans(m, hw, tp=8, weights="fp8", kv="fp8")
    key = ID + 4  # 128 FP8 values and one fp32 scale
    for ctx in (1000, 100000):
        assert float(kv_bytes_per_seq(m, p, ctx)[0]) == pytest.approx(ctx * LAYERS * (LATENT * 1 + key))


def _step(m, ctx=None, prompt=None):
    hw = get_hardware("h200-sxm")
    p = make_plans(m, hw, tp=8, weights="fp8", kv="fp8")
    cm = CostModel(m, hw)
    st = Step(decode_seqs=np.array([32.0]), decode_ctx=np.array([float(ctx)])) if ctx else \
        Step(prefill_seqs=np.array([1.0]), prefill_tokens=np.array([float(prompt)]))
    return {o.name: o for o in cm.step(p, st).ops}


def test_decode_reads_top_k_latents_and_scores_the_whole_context():
    v32, v3 = get_model("deepseek-v3.2"), get_model("deepseek-v3")
    ctx = 64000.0
    a, b = _step(v32, ctx=ctx), _step(v3, ctx=ctx)
    # the MLA core reads 2048 latents per sequence instead of 64000
    kv32 = float(a[Op.ATTENTION].bytes[0])
    assert kv32 < float(b[Op.ATTENTION].bytes[0]) * (TOPK / ctx) * 1.2
    ix = a[Op.INDEXER]
    assert ix.count == LAYERS
    assert float(ix.flops[0]) == pytest.approx(2 * IH * ID * 32 * ctx)  # every head against every cached key
    keys = 32 * ctx * (ID + 4)
    scores = 32 * ctx * 4 * 2  # fp32 scores written and read back by the top-k
    assert float(ix.bytes[0]) == pytest.approx(keys + scores + 32 * IH * ID)
    assert Op.INDEXER not in b


def test_prefill_attention_is_top_k_per_query_and_the_indexer_quadratic():
    m = get_model("deepseek-v3.2")
    f = {n: _step(m, prompt=n) for n in (16384, 32768)}
    att = {n: float(s[Op.ATTENTION].flops[0]) for n, s in f.items()}
    ix = {n: float(s[Op.INDEXER].flops[0]) for n, s in f.items()}
    # past the first 2048 positions each query attends to 2048 keys: close to linear in the prompt
    assert att[32768] / att[16384] == pytest.approx((32768 - 1024) / (16384 - 1024), rel=0.01)
    # the indexer scores all earlier positions: n (n + 1) / 2 pairs
    assert ix[32768] == pytest.approx(2 * IH * ID * 32768 * 32769 / 2)
    assert ix[32768] / ix[16384] == pytest.approx(4.0, rel=0.001)


def test_import_reads_the_index_keys(tmp_path):
    cfg = {"architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32", "hidden_size": H,
           "num_hidden_layers": LAYERS, "intermediate_size": 18432, "moe_intermediate_size": 2048,
           "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": Q_LORA, "kv_lora_rank": 512,
           "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
           "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "vocab_size": 129280,
           "max_position_embeddings": 163840, "index_topk": TOPK, "index_n_heads": IH, "index_head_dim": ID,
           "tie_word_embeddings": False, "hidden_act": "silu"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    got, _ = spec_from_hf_config(path, "v32")
    want = get_model("deepseek-v3.2")
    assert got.attention.index == want.attention.index
    assert got.total_params == want.total_params
