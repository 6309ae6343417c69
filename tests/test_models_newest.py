"""MiniMax-M2 and Mistral Large 2.1 (2411), checked layer by layer against their config.json values.

Each test restates the numbers of the model's config.json (Hugging Face; the sources each spec's `source` names) and
derives what follows from them by hand; the parameter counts are held to the published figures with the rule
tests/test_model_params.py applies to every spec.
"""

from __future__ import annotations

import pytest

from planner.costmodel.memory import kv_bytes_per_seq
from planner.costmodel.plans import make_plans
from planner.specs.loader import get_hardware, get_model, model_ids

from test_model_params import _consistent, _published_active_comparable
from test_models_more import assert_layer_shape

# ---- MiniMax-M2 ----------------------------------------------------------------------------------

# MiniMaxAI/MiniMax-M2 config.json (MiniMaxM2ForCausalLM); intermediate_size is the expert width (no dense MLP)
MINIMAX_M2 = dict(layers=62, hidden=3072, heads=48, kv_heads=8, head_dim=128, intermediate=1536, experts=256, top_k=8,
                  shared_intermediate=0, vocab=200064, max_position_embeddings=196608, rotary_dim=64, tied=False,
                  attn_type_list=[1] * 62, weight_block_size=[128, 128])


def test_minimax_m2_dimensions_match_config():
    m, c = get_model("minimax-m2"), MINIMAX_M2
    assert_layer_shape(m, c)
    assert (m.vocab_size, m.max_context) == (c["vocab"], c["max_position_embeddings"])
    assert (m.moe.num_experts, m.moe.top_k, m.moe.expert_intermediate_size) == (c["experts"], c["top_k"], c["intermediate"])
    assert m.moe.num_shared_experts == c["shared_intermediate"] == 0 and m.moe.shared_expert_intermediate_size is None
    assert m.moe.first_dense_layers == 0 and m.moe.interleave_step == 1 and not m.moe.expert_bias
    assert m.tied_embeddings is c["tied"] and m.ffn_gated and not m.mlp_bias
    assert m.norm == "rmsnorm" and m.norms_per_layer == 2
    # head_dim is explicit: 48 x 128 = 6144 is twice the hidden width
    assert m.q_dim == 6144 == 2 * m.hidden_size
    # the checkpoint's MTP modules are declared but unreleased: nothing counted
    assert m.mtp_layers == 0 and m.vision is None


def test_minimax_m2_every_layer_is_full_softmax_attention():
    """attn_type_list 1 on every layer (0 would be MiniMax-Text-01's lightning attention, which the planner cannot
    express): no local layers, one KV entry per token on all 62."""
    m, c = get_model("minimax-m2"), MINIMAX_M2
    assert len(c["attn_type_list"]) == c["layers"] and set(c["attn_type_list"]) == {1}
    a = m.attention
    assert a.kind == "gqa" and a.qk_norm and not a.qkv_bias and not a.o_bias and not a.sinks
    assert a.sliding_window is None and a.chunk_size is None and a.local_window is None
    assert m.local_layer_indices() == [] and m.num_sliding_layers() == m.num_chunked_layers() == 0
    assert m.moe_layer_indices() == list(range(62)) and m.num_dense_layers == 0


def test_minimax_m2_layer_by_layer():
    m = get_model("minimax-m2")
    h, q, kv, e = 3072, 48 * 128, 8 * 128, 1536
    attn = 2 * h * q + 2 * h * kv + 2 * 128  # q, o, k, v (no biases) + the schema's head_dim-wide q/k norms
    assert m.attention_params() == attn == 44_040_448
    expert = 3 * h * e  # w1 (gate), w3 (up), w2 (down)
    assert m.expert_params() == expert == 14_155_776 and m.shared_expert_params() == 0
    assert m.router_params() == h * 256
    layer = attn + 256 * expert + h * 256 + 2 * h  # routed experts, router, two RMSNorms
    total = 62 * layer + 2 * 200064 * h + h  # untied embedding and lm_head, final norm
    assert m.total_params == total == 228_689_320_448
    assert m.active_params == total - 62 * (256 - 8) * expert == 11_030_108_672
    # the real per-layer q/k norms span the whole projections (6144 + 1024): 428,544 elements the schema leaves out
    assert 62 * ((q + kv) - 2 * 128) == 428_544
    assert 428_544 / m.total_params < 2e-6


def test_minimax_m2_against_the_published_counts():
    """230B total / 10B activated (MiniMax-M2 README and model card)."""
    m = get_model("minimax-m2")
    ok, how = _consistent(m.total_params, m.published_params.total)
    assert ok, how
    assert 228.5e9 < m.total_params < 229e9  # 0.57% under 230B
    assert m.published_params.active_excludes_embedding
    ok, how = _consistent(_published_active_comparable(m), m.published_params.active)
    assert ok, how
    # the three footings: with everything 11.03B, without the input embedding 10.42B, without lm_head too 9.80B
    assert _published_active_comparable(m) == m.active_params - 200064 * 3072 == 10_415_512_064
    assert m.active_params - m.embedding_params() - m.lm_head_params() == 9_800_915_456


def test_minimax_m2_released_weights_are_block_scaled_fp8():
    m, c = get_model("minimax-m2"), MINIMAX_M2
    nw = m.native_weights
    assert (nw.experts, nw.dense, nw.embeddings) == ("fp8", "fp8", "bf16")
    assert [nw.scale_block, nw.scale_block] == c["weight_block_size"]
    assert m.released_weights() == "fp8"


def test_minimax_m2_kv_bytes_per_token_by_hand():
    m = get_model("minimax-m2")
    plans = make_plans(m, get_hardware("h200-sxm"), tp=1, weights="fp8", kv="bf16", check=False)
    per_token_layer = 2 * 8 * 128 * 2.0  # K and V, 8 kv heads x 128, bf16
    assert m.kv_elements_per_token_per_layer() * 2 == per_token_layer
    assert 62 * per_token_layer == 248 * 1024  # 248 KiB a token
    for ctx in (1, 4096, 196608):
        assert float(kv_bytes_per_seq(m, plans, ctx)[0]) == pytest.approx(62 * per_token_layer * ctx)


# ---- Mistral Large 2.1 (2411) --------------------------------------------------------------------

# mistralai/Mistral-Large-Instruct-2411 config.json (MistralForCausalLM)
MISTRAL_LARGE_2411 = dict(layers=88, hidden=12288, heads=96, kv_heads=8, head_dim=128, intermediate=28672, vocab=32768,
                          max_position_embeddings=131072, tied=False, sliding_window=None)


def test_mistral_large_2411_dimensions_match_config():
    m, c = get_model("mistral-large-2411"), MISTRAL_LARGE_2411
    assert_layer_shape(m, c)
    assert (m.intermediate_size, m.vocab_size, m.max_context) == (c["intermediate"], c["vocab"], c["max_position_embeddings"])
    assert m.tied_embeddings is c["tied"] and m.ffn_gated and not m.mlp_bias
    assert m.norm == "rmsnorm" and m.norms_per_layer == 2
    a = m.attention
    assert a.kind == "gqa" and not a.qk_norm and not a.qkv_bias and not a.o_bias
    assert a.sliding_window is c["sliding_window"] and a.chunk_size is None and m.local_layer_indices() == []
    assert not m.is_moe and m.vision is None and m.mtp_layers == 0 and m.native_weights is None
    assert m.hidden_size // m.num_heads == m.head_dim and m.q_dim == m.hidden_size


def test_mistral_large_2411_parameters_block_by_block():
    m = get_model("mistral-large-2411")
    h, q, kv, f = 12288, 96 * 128, 8 * 128, 28672
    attn = 2 * h * q + 2 * h * kv
    assert m.attention_params() == attn == 327_155_712
    layer = attn + 3 * h * f + 2 * h
    assert layer == 1_384_144_896
    total = 88 * layer + 2 * 32768 * h + h
    # the exact dense count quoted from this config.json (122,610,069,504), and bf16 bytes twice that
    assert m.total_params == m.active_params == total == 122_610_069_504
    assert m.native_weight_bytes() == 2 * total


def test_mistral_large_2411_against_the_published_count():
    """123B (Mistral's model catalogue and the model card)."""
    m = get_model("mistral-large-2411")
    ok, how = _consistent(m.total_params, m.published_params.total)
    assert ok, how
    assert m.published_params.active is None
    assert abs(m.total_params - 123e9) / 123e9 < 0.004


def test_mistral_large_2411_kv_bytes_per_token_by_hand():
    m = get_model("mistral-large-2411")
    plans = make_plans(m, get_hardware("h100-sxm"), tp=1, weights="bf16", kv="bf16", check=False)
    per_token_layer = 2 * 8 * 128 * 2.0
    assert 88 * per_token_layer == 352 * 1024  # 352 KiB a token
    for ctx in (1, 32768, 131072):
        assert float(kv_bytes_per_seq(m, plans, ctx)[0]) == pytest.approx(88 * per_token_layer * ctx)
    assert 88 * per_token_layer * 131072 == 44 * 2**30  # one full-context sequence: 44 GiB


# ---- both ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ident,repo", [("minimax-m2", "MiniMaxAI/MiniMax-M2"),
                                        ("mistral-large-2411", "mistralai/Mistral-Large-Instruct-2411")])
def test_new_specs_are_in_the_catalogue_with_a_checkpoint(ident, repo):
    assert ident in model_ids()
    m = get_model(ident)
    assert m.hf_repo == repo
    assert m.published_params.source.strip() and m.source.strip() and m.notes
    assert get_model(repo).id == ident  # the Hugging Face repo resolves to the spec
