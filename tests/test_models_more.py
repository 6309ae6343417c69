"""Gemma 3 27B and GLM-4.6, checked layer by layer against their config.json values.

Each test restates the numbers of the model's config.json (Hugging Face; for Gemma 3 the text_config of
Gemma3ForConditionalGeneration, with transformers' Gemma3TextConfig defaults for the keys it leaves out)
and derives what follows from them by hand; the parameter counts are held to the published figures
with the rule tests/test_model_params.py applies to every spec.
"""

from __future__ import annotations

import json

import pytest

from planner.costmodel.memory import kv_bytes_per_seq
from planner.costmodel.plans import make_plans
from planner.specs.loader import get_hardware, get_model, model_ids

from test_model_params import _consistent, _published_active_comparable


def assert_layer_shape(m, c: dict) -> None:
    """A spec's layers, hidden size, heads, KV heads and head size against the config.json values of dict ``c``
    (keys layers, hidden, heads, kv_heads, head_dim): the restatement every model test starts with."""
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == \
        (c["layers"], c["hidden"], c["heads"], c["kv_heads"], c["head_dim"])


# ---- Gemma 3 27B ---------------------------------------------------------------------------------

# google/gemma-3-27b-it config.json, text_config; the last four are Gemma3TextConfig defaults (absent keys)
GEMMA3_27B = dict(layers=62, hidden=5376, heads=32, kv_heads=16, head_dim=128, intermediate=21504, sliding_window=1024,
                  vocab=262208, max_position_embeddings=131072, sliding_window_pattern=6, tied=True)


def _gemma3_sliding_by_hf_rule(layers: int, pattern: int) -> list[int]:
    """transformers Gemma 3: layer i is 'sliding_attention' when bool((i + 1) % sliding_window_pattern), else full."""
    return [i for i in range(layers) if (i + 1) % pattern]


def test_gemma3_27b_dimensions_match_config():
    m, c = get_model("gemma-3-27b"), GEMMA3_27B
    assert_layer_shape(m, c)
    assert (m.intermediate_size, m.vocab_size, m.max_context) == (c["intermediate"], c["vocab"], c["max_position_embeddings"])
    assert m.tied_embeddings is c["tied"] and m.ffn_gated and not m.mlp_bias
    assert m.norm == "rmsnorm" and m.norms_per_layer == 4
    a = m.attention
    assert a.kind == "gqa" and a.qk_norm and not a.qkv_bias and not a.o_bias and a.chunk_size is None
    assert a.sliding_window == c["sliding_window"]
    assert not m.is_moe and m.vision is None and m.mtp_layers == 0
    # head_dim is explicit: 32 x 128 = 4096 is narrower than hidden 5376 (5376 / 32 = 168 = query_pre_attn_scalar)
    assert m.q_dim == 4096 < m.hidden_size and m.hidden_size // m.num_heads == 168


def test_gemma3_27b_local_and_global_layers_follow_the_hf_rule():
    m = get_model("gemma-3-27b")
    sliding = _gemma3_sliding_by_hf_rule(62, 6)
    full = [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]  # (i + 1) % 6 == 0, by hand
    assert sorted(sliding + full) == list(range(62)) and not set(sliding) & set(full)
    assert m.local_layer_indices() == sliding
    assert [i for i in range(62) if i not in m.local_layer_indices()] == full
    assert m.num_sliding_layers() == 52 and m.num_chunked_layers() == 0
    assert 60 in sliding and 61 in sliding  # 62 = 10 x 6 + 2: the last two layers are local
    assert m.attention.local_window == 1024


def test_gemma3_27b_parameters_block_by_block():
    m = get_model("gemma-3-27b")
    h, q, kv, f = 5376, 32 * 128, 16 * 128, 21504
    attn = h * q + 2 * h * kv + q * h + 2 * 128  # q, k, v, o (no biases) + q_norm, k_norm of head_dim
    assert m.attention_params() == attn == 66_060_544
    layer = attn + 3 * h * f + 4 * h  # GeGLU gate/up/down + four RMSNorms
    assert layer == 412_898_560
    embedding = 262208 * h
    assert m.embedding_params() == embedding and m.lm_head_params() == 0  # tied
    total = 62 * layer + embedding + h  # + final norm
    assert m.total_params == m.active_params == total == 27_009_346_304


def test_gemma3_27b_against_the_published_counts():
    """Gemma 3 report, Table 1, 27B: 417M vision encoder (not in the spec), 1,416M embedding, 25,600M non-embedding."""
    m = get_model("gemma-3-27b")
    non_embedding = m.total_params - m.embedding_params()
    assert abs(non_embedding - 25_600e6) / 25_600e6 < 0.0001
    # the table's embedding row is 6.2M over vocab x hidden: about the 1152 x 5376 multimodal projector
    assert 1_416e6 - m.embedding_params() == pytest.approx(1152 * 5376, rel=0.05)
    assert m.published_params.total == pytest.approx(1_416e6 + 25_600e6)
    ok, how = _consistent(m.total_params, m.published_params.total)
    assert ok, how
    # with the vision encoder the checkpoint is 27.43B: the text-only count must not be held to that
    assert not _consistent(m.total_params, (417 + 1416 + 25600) * 1e6)[0]


def test_gemma3_27b_local_layers_hold_at_most_their_window_of_kv():
    m = get_model("gemma-3-27b")
    plans = make_plans(m, get_hardware("h100-sxm"), tp=1, weights="bf16", kv="bf16", check=False)
    per_token_layer = 2 * 16 * 128 * 2.0  # K and V, 16 kv heads x 128, bf16
    for ctx in (512, 1024, 32768, 131072):
        expected = per_token_layer * (10 * ctx + 52 * min(ctx, 1024))
        assert float(kv_bytes_per_seq(m, plans, ctx)[0]) == pytest.approx(expected)


# ---- GLM-4.6 -------------------------------------------------------------------------------------

# zai-org/GLM-4.6 config.json
GLM_46 = dict(layers=92, hidden=5120, heads=96, kv_heads=8, head_dim=128, intermediate=12288, moe_intermediate=1536,
              routed=160, shared=1, top_k=8, first_k_dense_replace=3, vocab=151552, max_position_embeddings=202752,
              nextn=1, tied=False)


def test_glm46_dimensions_match_config():
    m, c = get_model("glm-4.6"), GLM_46
    assert_layer_shape(m, c)
    assert (m.intermediate_size, m.vocab_size, m.max_context) == (c["intermediate"], c["vocab"], c["max_position_embeddings"])
    assert (m.moe.num_experts, m.moe.top_k, m.moe.num_shared_experts) == (c["routed"], c["top_k"], c["shared"])
    assert m.moe.expert_intermediate_size == c["moe_intermediate"] and m.moe.shared_expert_intermediate_size is None
    assert m.moe.first_dense_layers == c["first_k_dense_replace"] and m.moe.interleave_step == 1
    assert m.tied_embeddings is c["tied"] and m.mtp_layers == c["nextn"]
    a = m.attention
    assert a.kind == "gqa" and a.qkv_bias and a.qk_norm and not a.o_bias and a.local_window is None
    assert m.local_layer_indices() == []


def test_glm46_layer_by_layer():
    m = get_model("glm-4.6")
    h, q, kv = 5120, 96 * 128, 8 * 128
    # HF Glm4Moe: layers 0-2 dense (layer_idx < first_k_dense_replace), 3-91 MoE
    assert m.moe_layer_indices() == list(range(3, 92)) and m.num_dense_layers == 3 and m.num_moe_layers == 89
    attn = 2 * h * q + 2 * h * kv + (q + 2 * kv) + 2 * 128  # q, o, k, v; q/k/v biases; q_norm, k_norm
    assert m.attention_params() == attn
    expert = 3 * h * 1536
    assert m.expert_params() == m.shared_expert_params() == expert
    dense_layer = attn + 3 * h * 12288 + 2 * h
    moe_layer = attn + 160 * expert + expert + h * 160 + 2 * h  # routed, shared, router, norms
    total = 3 * dense_layer + 89 * moe_layer + 2 * 151552 * h + h
    assert m.total_params == total
    assert m.active_params == total - 89 * (160 - 8) * expert
    assert m.kv_elements_per_token_per_layer() == 2 * 8 * 128


def test_glm46_is_glm45_with_the_longer_context():
    m, ref = get_model("glm-4.6"), get_model("glm-4.5")
    assert m.param_counts() == ref.param_counts() and m.active_params == ref.active_params
    assert (m.max_context, ref.max_context) == (202752, 131072)
    assert m.attention == ref.attention and m.moe == ref.moe and m.mtp_layers == ref.mtp_layers


def test_glm46_against_the_published_counts():
    """355B total / 32B activated (GLM-4.5 report; the published active count leaves out the embedding table)."""
    m = get_model("glm-4.6")
    ok, how = _consistent(m.total_params, m.published_params.total)
    assert ok, how
    assert m.published_params.active_excludes_embedding
    ok, how = _consistent(_published_active_comparable(m), m.published_params.active)
    assert ok, how
    assert 352.5e9 < m.total_params < 353e9  # without the ~4B MTP layer


@pytest.mark.parametrize("ident", ["gemma-3-27b", "glm-4.6"])
def test_new_specs_are_in_the_catalogue_with_a_checkpoint(ident):
    assert ident in model_ids()
    m = get_model(ident)
    assert m.hf_repo in ("google/gemma-3-27b-it", "zai-org/GLM-4.6")
    assert m.published_params.source.strip() and m.source.strip() and m.notes


def _gemma3_import(tmp_path, text: dict):
    """A Gemma3ForConditionalGeneration config.json whose text_config holds ``text`` (plus the 1024-token window and
    linear RoPE scaling x8 every size states) and a SigLIP vision_config, imported."""
    from planner.specs.hf_import import spec_from_hf_config

    cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
           "text_config": {"model_type": "gemma3_text", "sliding_window": 1024,
                           "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, **text},
           "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "num_hidden_layers": 27}}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return spec_from_hf_config(p)[0]


def test_gemma3_config_imports_as_the_built_in_spec(tmp_path):
    """google/gemma-3-27b-it's config.json nests the decoder in text_config (model_type gemma3_text) and leaves the
    vocabulary, the context and tie_word_embeddings to Gemma3TextConfig's defaults (262208, 131072, tied): the
    importer fills them, makes every sixth layer global ((i + 1) % 6 == 0), and counts the q/k norms, four norms per
    layer and the gated GeGLU MLP, as model_specs/gemma-3-27b.yaml does."""
    m = _gemma3_import(tmp_path, {"hidden_size": 5376, "intermediate_size": 21504, "num_attention_heads": 32,
                                  "num_key_value_heads": 16, "head_dim": 128, "num_hidden_layers": 62,
                                  "query_pre_attn_scalar": 168})
    ref = get_model("gemma-3-27b")
    assert m.total_params == ref.total_params
    assert m.vocab_size == 262208 and m.max_context == 131072 and m.tied_embeddings
    assert m.num_sliding_layers() == ref.num_sliding_layers() == 52
    assert m.attention.qk_norm and m.ffn_gated and m.norms_per_layer == 4 and m.vision is None


@pytest.mark.parametrize("ident, layers, hidden, heads, kv, inter, vocab, window, total, non_embedding_report", [
    ("gemma-3-1b", 26, 1152, 4, 1, 6912, 262144, 512, 999_885_952, 698e6),
    ("gemma-3-4b", 34, 2560, 8, 4, 10240, 262208, 1024, 3_880_263_168, 3_209e6),
    ("gemma-3-12b", 48, 3840, 16, 8, 15360, 262208, 1024, 11_766_034_176, 10_759e6),
])
def test_gemma3_small_sizes_block_by_block(ident, layers, hidden, heads, kv, inter, vocab, window, total, non_embedding_report):
    """Gemma 3 1B / 4B / 12B (config.json of google/gemma-3-*-it, text decoder): head_dim 256, q/k norms, four norms per
    layer, GeGLU, tied embeddings, every sixth layer global ((i + 1) % 6 == 0); the count by hand equals the spec's, and
    its non-embedding part the Gemma 3 report's Table 1 (698M, 3,209M, 10,759M)."""
    m = get_model(ident)
    hd = 256
    attn = hidden * heads * hd + 2 * hidden * kv * hd + heads * hd * hidden + 2 * hd
    layer = attn + 3 * hidden * inter + 4 * hidden
    assert m.attention_params() == attn and m.lm_head_params() == 0 and m.tied_embeddings
    assert m.total_params == layers * layer + vocab * hidden + hidden == total
    assert abs((m.total_params - m.embedding_params()) / non_embedding_report - 1) < 0.001
    assert m.local_layer_indices() == _gemma3_sliding_by_hf_rule(layers, 6) and m.attention.local_window == window
    assert m.attention.qk_norm and m.norms_per_layer == 4 and m.ffn_gated and m.vision is None


def test_gemma3_4b_config_with_a_short_text_config_imports_as_the_built_in_spec(tmp_path):
    """The 4B checkpoint's text_config restates only the keys that differ from Gemma3TextConfig's defaults (hidden,
    intermediate, layers, RoPE scaling, window): the heads (8 query, 4 key-value, head_dim 256) are defaults too, and
    the importer fills them, so the config imports as model_specs/gemma-3-4b.yaml."""
    m = _gemma3_import(tmp_path, {"hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34})
    ref = get_model("gemma-3-4b")
    assert (m.num_heads, m.num_kv_heads, m.head_dim) == (8, 4, 256)
    assert m.total_params == ref.total_params and m.local_layer_indices() == ref.local_layer_indices()
