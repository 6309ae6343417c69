"""Z.ai GLM-5 (GlmMoeDsaForCausalLM, model_type glm_moe_dsa), checked layer by layer against its config.json values.

zai-org/GLM-5 config.json: 78 layers (first_k_dense_replace 3), hidden 6144, 64 MLA heads, q_lora_rank 2048,
kv_lora_rank 512, qk_nope_head_dim 192, qk_rope_head_dim 64, v_head_dim 256, 256 routed experts top-8 + 1 shared of
2048, dense intermediate 12288, vocab 154880, untied, max_position_embeddings 202752, DeepSeek Sparse Attention with
index_topk 2048, index_n_heads 32, index_head_dim 128 on every layer, num_nextn_predict_layers 1. The parameter counts
are held to the published 744B / 40B with the rule tests/test_model_params.py applies to every spec, and the count with
the MTP layer to the element count of the GLM-5.1 checkpoint (the same network).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from planner.costmodel.memory import kv_bytes_per_seq
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Op, Step
from planner.specs.hf_import import spec_from_hf_config
from planner.specs.loader import get_hardware, get_model, model_ids

from test_model_params import _consistent, _published_active_comparable

GLM_5 = dict(layers=78, hidden=6144, heads=64, kv_heads=64, q_lora=2048, kv_lora=512, qk_nope=192, qk_rope=64,
             v_head=256,
             intermediate=12288, moe_intermediate=2048, routed=256, shared=1, top_k=8, first_k_dense_replace=3,
             vocab=154880, max_position_embeddings=202752, index_topk=2048, index_n_heads=32, index_head_dim=128,
             nextn=1, tied=False)

H, LAYERS = GLM_5["hidden"], GLM_5["layers"]
IH, ID = GLM_5["index_n_heads"], GLM_5["index_head_dim"]


def test_glm5_dimensions_match_config():
    m, c = get_model("glm-5"), GLM_5
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads) == \
        (c["layers"], c["hidden"], c["heads"], c["kv_heads"])
    assert m.head_dim == c["qk_nope"] + c["qk_rope"] == 256  # config.json qk_head_dim
    assert (m.intermediate_size, m.vocab_size, m.max_context) == \
        (c["intermediate"], c["vocab"], c["max_position_embeddings"])
    assert m.tied_embeddings is c["tied"] and m.ffn_gated and not m.mlp_bias and m.norm == "rmsnorm"
    a = m.attention
    assert a.kind == "mla" and not a.qkv_bias and not a.o_bias and a.local_window is None and a.linear is None
    assert (a.mla.q_lora_rank, a.mla.kv_lora_rank) == (c["q_lora"], c["kv_lora"])
    assert (a.mla.qk_nope_head_dim, a.mla.qk_rope_head_dim, a.mla.v_head_dim) == \
        (c["qk_nope"], c["qk_rope"], c["v_head"])
    assert (a.index.topk, a.index.heads, a.index.head_dim) == (c["index_topk"], c["index_n_heads"], c["index_head_dim"])
    assert (m.moe.num_experts, m.moe.top_k, m.moe.num_shared_experts) == (c["routed"], c["top_k"], c["shared"])
    assert m.moe.expert_intermediate_size == c["moe_intermediate"] and m.moe.shared_expert_intermediate_size is None
    assert m.moe.first_dense_layers == c["first_k_dense_replace"] and m.moe.interleave_step == 1
    assert m.mtp_layers == c["nextn"] and m.native_weights is None  # zai-org/GLM-5 is bf16
    assert m.hf_repo == "zai-org/GLM-5"


def _by_hand() -> dict[str, int]:
    """Elements of each kind of layer, from the config.json values (HF GlmMoeDsa module shapes)."""
    q_lora, kv_lora, nope, rope, v, heads = 2048, 512, 192, 64, 256, 64
    q = H * q_lora + q_lora + q_lora * heads * (nope + rope)  # q_a_proj, q_a_layernorm, q_b_proj (2048 -> 16384)
    kv = H * (kv_lora + rope) + kv_lora + kv_lora * heads * (nope + v)  # kv_a_proj_with_mqa (576), norm, kv_b_proj
    o = heads * v * H  # o_proj 16384 -> 6144
    indexer = q_lora * IH * ID + H * ID + 2 * ID + H * IH  # wq_b, wk, k_norm (LayerNorm: weight + bias), weights_proj
    attn = q + kv + o + indexer
    expert = 3 * H * 2048
    dense_layer = attn + 3 * H * 12288 + 2 * H  # + input / post-attention RMSNorms
    moe_layer = attn + 256 * expert + expert + H * 256 + 2 * H  # routed, shared, router, norms
    return dict(indexer=indexer, attn=attn, expert=expert, dense_layer=dense_layer, moe_layer=moe_layer)


def test_glm5_parameters_layer_by_layer():
    m, b = get_model("glm-5"), _by_hand()
    assert b["indexer"] == 9_371_904 and b["attn"] == 174_394_112
    # a layer's MLA, and its indexer counted over the layers that run one (all 78 here)
    assert m.attention_params() + m.attention.index.params(H, 2048) == b["attn"]
    assert m.attention.index.params(H, 2048) == b["indexer"] and m.indexer_params() == 78 * b["indexer"]
    assert m.expert_params() == m.shared_expert_params() == b["expert"]
    # HF GlmMoeDsa: mlp_layer_types 3 x dense + 75 x sparse
    assert m.moe_layer_indices() == list(range(3, 78)) and m.num_dense_layers == 3 and m.num_moe_layers == 75
    embeddings = 2 * 154880 * H  # embed_tokens and an untied lm_head
    total = 3 * b["dense_layer"] + 75 * b["moe_layer"] + embeddings + H  # + final norm
    assert m.total_params == total == 743_911_199_232
    assert m.active_params == total - 75 * (256 - 8) * b["expert"] == 41_784_709_632
    assert m.param_counts()["attention"] == 78 * b["attn"]  # an indexer on every layer (no index_topk_freq)


def test_glm5_checkpoint_count_with_the_mtp_layer():
    """The MTP layer (model.layers.78) is a MoE decoder layer with its indexer plus eh_proj (12288 -> 6144), enorm,
    hnorm and shared_head.norm; with it and the 76 float32 e_score_correction_bias vectors of 256 (75 MoE layers + MTP)
    the checkpoint holds 753,864,139,008 elements, the GLM-5.1 checkpoint's tensor sum (the Hub lists GLM-5 as 754B)."""
    m, b = get_model("glm-5"), _by_hand()
    mtp = b["moe_layer"] + H * 2 * H + 3 * H
    assert m.total_params + m.mtp_layers * mtp + 76 * 256 == 753_864_139_008


def test_glm5_against_the_published_counts():
    """744B total / 40B active (zai-org/GLM-5 README and model card, GLM-5 technical report)."""
    m = get_model("glm-5")
    ok, how = _consistent(m.total_params, m.published_params.total)
    assert ok, how
    assert abs(m.total_params - 744e9) / 744e9 < 0.0002  # 743.91B: the 744B leaves the MTP layer out
    assert m.published_params.active_excludes_embedding
    active = _published_active_comparable(m)
    assert active == m.active_params - 154880 * H == 40_833_126_912
    ok, how = _consistent(active, m.published_params.active)
    assert ok, how
    assert abs(active - 40e9) / 40e9 < 0.025  # tighter than the one-digit rule


def test_glm5_hugging_face_names_resolve_to_the_spec():
    assert "glm-5" in model_ids()
    for name in ("zai-org/GLM-5", "zai-org/GLM-5-FP8", "glm-5.1", "zai-org/GLM-5.1"):
        assert get_model(name).id == "glm-5", name
    # GLM-5.2 shares the indexer across layers (IndexShare) and has a 1M context: a spec of its own
    assert get_model("zai-org/GLM-5.2").id == "glm-5.2"
    m = get_model("glm-5")
    assert m.published_params.source.strip() and m.source.strip() and m.notes


def test_glm5_caches_the_latent_and_the_indexer_key_on_every_layer():
    m, hw = get_model("glm-5"), get_hardware("b200")
    assert m.kv_elements_per_token_per_layer() == 512 + 64
    key = ID + 4  # 128 FP8 values and one fp32 scale
    for kv, elem in (("fp8", 1), ("bf16", 2)):
        p = make_plans(m, hw, tp=8, weights="fp8", kv=kv)
        for ctx in (1000, 200000):
            assert float(kv_bytes_per_seq(m, p, ctx)[0]) == pytest.approx(ctx * LAYERS * (576 * elem + key))


def test_glm5_decode_runs_a_32_head_indexer_on_all_78_layers():
    m, hw = get_model("glm-5"), get_hardware("b200")
    p = make_plans(m, hw, tp=8, weights="fp8", kv="fp8")
    ctx = 100000.0
    ops = {o.name: o for o in CostModel(m, hw).step(p, Step(decode_seqs=np.array([16.0]),
                                                               decode_ctx=np.array([ctx]))).ops}
    ix = ops[Op.INDEXER]
    assert ix.count == LAYERS
    assert float(ix.flops[0]) == pytest.approx(2 * IH * ID * 16 * ctx)


def test_glm5_config_imports_as_the_built_in_spec(tmp_path):
    c = GLM_5
    cfg = {"architectures": ["GlmMoeDsaForCausalLM"], "model_type": "glm_moe_dsa", "hidden_size": H,
           "num_hidden_layers": LAYERS, "intermediate_size": c["intermediate"], "moe_intermediate_size": 2048,
           "num_attention_heads": 64, "num_key_value_heads": 64, "head_dim": 64, "q_lora_rank": 2048,
           "kv_lora_rank": 512, "qk_nope_head_dim": 192, "qk_rope_head_dim": 64, "qk_head_dim": 256, "v_head_dim": 256,
           "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
           "moe_layer_freq": 1, "vocab_size": c["vocab"], "max_position_embeddings": c["max_position_embeddings"],
           "index_topk": 2048, "index_n_heads": IH, "index_head_dim": ID, "num_nextn_predict_layers": 1,
           "tie_word_embeddings": False, "attention_bias": False, "hidden_act": "silu"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    got, _ = spec_from_hf_config(path, "glm5")
    want = get_model("glm-5")
    assert got.attention == want.attention and got.moe == want.moe
    assert got.head_dim == want.head_dim == 256  # qk_nope + qk_rope, not config.json's head_dim 64
    assert got.total_params == want.total_params and got.active_params == want.active_params
    assert got.max_context == want.max_context and got.mtp_layers == want.mtp_layers
