"""Moonshot AI Kimi-K2-Thinking and Kimi-K2.5: Kimi K2's network released with INT4 routed experts.

moonshotai/Kimi-K2.5 config.json text_config (DeepseekV3ForCausalLM): 61 layers (first_k_dense_replace 1), hidden
7168, 64 MLA heads, q_lora_rank 1536, kv_lora_rank 512, qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128,
384 routed experts top-8 + 1 shared of 2048, dense intermediate 18432, vocab 163840, untied, max_position_embeddings
262144, num_nextn_predict_layers 0; quantization_config compressed-tensors pack-quantized, int 4 bits, symmetric,
group_size 32, ignore lm_head / self_attn / shared_experts / the dense MLP: only the routed experts are INT4.
Kimi-K2-Thinking has the same layers and release format (its model card and its quantization_config's ignore list;
the specs' sources name the rest). The parameter counts are held to the published 1T / 32B with the rule
tests/test_model_params.py applies to every spec.
"""

from __future__ import annotations

import pytest

from planner.specs import loader
from planner.specs.checkpoint import checkpoint_weights
from planner.specs.loader import get_model, model_ids
from planner.specs.quant import get_format

from test_model_params import _consistent, _published_active_comparable

GiB = 2**30

# the text_config of moonshotai/Kimi-K2.5 (and Kimi K2's layers, Kimi-K2-Thinking's context)
KIMI_K2X = dict(layers=61, hidden=7168, heads=64, kv_heads=64, q_lora=1536, kv_lora=512, qk_nope=128, qk_rope=64,
                v_head=128, intermediate=18432, moe_intermediate=2048, routed=384, shared=1, top_k=8,
                first_k_dense_replace=1, vocab=163840, max_position_embeddings=262144, nextn=0, tied=False)

SPECS = [("kimi-k2-thinking", "moonshotai/Kimi-K2-Thinking"), ("kimi-k2.5", "moonshotai/Kimi-K2.5")]
IDS = [ident for ident, _ in SPECS]

# the routed experts: layers 1-60, 384 experts, gate / up / down of 2048 x 7168
EXPERT_ELEMENTS = 60 * 384 * 3 * 2048 * 7168


@pytest.mark.parametrize("ident", IDS)
def test_dimensions_match_config(ident):
    m, c = get_model(ident), KIMI_K2X
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads) == \
        (c["layers"], c["hidden"], c["heads"], c["kv_heads"])
    assert m.head_dim == c["qk_nope"] + c["qk_rope"] == 192
    assert (m.intermediate_size, m.vocab_size, m.max_context) == \
        (c["intermediate"], c["vocab"], c["max_position_embeddings"])
    assert m.tied_embeddings is c["tied"] and m.ffn_gated and not m.mlp_bias and m.norm == "rmsnorm"
    a = m.attention
    assert a.kind == "mla" and not a.qkv_bias and not a.o_bias and a.local_window is None
    assert a.linear is None and a.index is None
    assert (a.mla.q_lora_rank, a.mla.kv_lora_rank) == (c["q_lora"], c["kv_lora"])
    assert (a.mla.qk_nope_head_dim, a.mla.qk_rope_head_dim, a.mla.v_head_dim) == \
        (c["qk_nope"], c["qk_rope"], c["v_head"])
    assert (m.moe.num_experts, m.moe.top_k, m.moe.num_shared_experts) == (c["routed"], c["top_k"], c["shared"])
    assert m.moe.expert_intermediate_size == c["moe_intermediate"] and m.moe.shared_expert_intermediate_size is None
    assert m.moe.first_dense_layers == c["first_k_dense_replace"] and m.moe.interleave_step == 1
    assert not m.moe.expert_bias
    assert m.moe_layer_indices() == list(range(1, 61)) and m.num_dense_layers == 1
    assert m.mtp_layers == c["nextn"]
    # Kimi-K2.5's MoonViT encoder is not in the schema (it describes only Llama-4's): text model only
    assert m.vision is None and m.vision_params() == 0
    # MLA cache: the 512-wide latent and the 64-wide rope key per token per layer
    assert m.kv_elements_per_token_per_layer() == 512 + 64


@pytest.mark.parametrize("ident", IDS)
def test_same_layers_as_kimi_k2(ident):
    """Kimi K2's network to the element: only the context and the release format differ."""
    m, k2 = get_model(ident), get_model("kimi-k2")
    assert m.param_counts() == k2.param_counts()
    assert m.total_params == k2.total_params and m.active_params == k2.active_params
    assert k2.max_context == 131072 and m.max_context == 2 * k2.max_context
    assert k2.native_weights.experts == "fp8" and k2.native_weights.scale_block == 128


@pytest.mark.parametrize("ident", IDS)
def test_layer_by_layer(ident):
    m = get_model(ident)
    h, heads, q_lora, kv_lora, nope, rope, v = 7168, 64, 1536, 512, 128, 64, 128
    attn = (h * q_lora + q_lora + q_lora * heads * (nope + rope)  # q_a_proj, q_a_layernorm, q_b_proj
            + h * (kv_lora + rope) + kv_lora + kv_lora * heads * (nope + v)  # kv_a_proj_with_mqa, its norm, kv_b_proj
            + heads * v * h)  # o_proj
    assert m.attention_params() == attn == 101_124_096
    expert = 3 * h * 2048
    assert m.expert_params() == expert == 44_040_192 and m.shared_expert_params() == expert
    assert m.router_params() == h * 384
    dense_layer = attn + 3 * h * 18432 + 2 * h
    moe_layer = attn + 384 * expert + expert + h * 384 + 2 * h
    total = dense_layer + 60 * moe_layer + 2 * 163840 * h + h
    assert m.total_params == total == 1_026_408_209_408
    assert m.param_counts()["experts"] == 60 * 384 * expert == EXPERT_ELEMENTS
    assert m.active_params == total - 60 * (384 - 8) * expert == 32_861_477_888


@pytest.mark.parametrize("ident", IDS)
def test_against_the_published_counts(ident):
    """1T total / 32B activated (the model cards, as Kimi K2's)."""
    m = get_model(ident)
    assert (m.published_params.total, m.published_params.active) == (1.0e12, 32e9)
    ok, how = _consistent(m.total_params, m.published_params.total)
    assert ok, how
    assert 1.026e12 < m.total_params < 1.027e12  # 2.6 % over 1T: consistent with the one quoted digit
    assert not m.published_params.active_excludes_embedding  # kimi-k2's footing
    ok, how = _consistent(_published_active_comparable(m), m.published_params.active)
    assert ok, how  # 32.86B truncates to 32B
    # without the input embedding 31.69B, also within 1 % of 32B: the card's footing is not determined by the count
    assert abs(m.active_params - m.embedding_params() - 32e9) / 32e9 < 0.01


@pytest.mark.parametrize("ident", IDS)
def test_native_weights_are_int4_experts_and_bf16_rest(ident):
    nw = get_model(ident).native_weights
    assert (nw.experts, nw.dense, nw.embeddings) == ("int4-g32", "bf16", "bf16")
    assert nw.scale_block is None  # not block-scaled FP8: no per-block activation quantization
    assert get_model(ident).released_weights() == "int4-g32"  # the accuracy model's reference
    assert nw.source.strip()
    # weight-only (W4A16), as the released compressed-tensors scheme (input_activations null): int4's GEMM, with a
    # bf16 scale per 32 weights and no zero point
    fmt, int4 = get_format("int4-g32"), get_format("int4")
    assert fmt.weight_only and fmt.compute == int4.compute == "fp16" and fmt.bits == 4 + 16 / 32


@pytest.mark.parametrize("ident", IDS)
def test_native_weight_bytes_by_hand(ident):
    """Experts at the int4-g32 format's 4.5 bits, everything else 2 bytes."""
    m = get_model(ident)
    h, vocab = 7168, 163840
    attn = 61 * 101_124_096
    dense_mlp = 3 * h * 18432
    shared = 60 * 3 * h * 2048
    embed = 2 * vocab * h  # untied embedding and lm_head
    small = 61 * 2 * h + h + 60 * h * 384  # RMSNorms (layer and final) and the router, kept 16 bit
    experts = EXPERT_ELEMENTS * 4.5 / 8
    expected = experts + 2.0 * (attn + dense_mlp + shared + embed + small)
    assert m.native_weight_bytes() == pytest.approx(expected, rel=1e-12)
    assert m.native_weight_bytes() == pytest.approx(594.205e9, rel=1e-5)
    # against kimi-k2's block-scaled FP8 release (1 byte an expert weight, scales left out): 44 % fewer expert bytes
    assert get_model("kimi-k2").native_weight_bytes() - m.native_weight_bytes() == pytest.approx(
        EXPERT_ELEMENTS * (1 - 4.5 / 8) + (attn + dense_mlp + shared) * (1 - 2), rel=1e-9)


@pytest.mark.parametrize("ident", IDS)
def test_the_checkpoint_layout_is_group_32_with_a_bf16_scale(ident):
    """The checkpoint's experts are 4 + 16/32 = 4.5 bits (weight_packed int32 and a bf16 weight_scale per 32 inputs),
    the int4-g32 format: the planner counts the checkpoint's text tensors (the int4 format's 4 + 20/128 bits, AWQ's
    group 128 with an fp16 scale and a 4-bit zero, would leave 43.6 GB of expert bytes out, 7.3 % of the checkpoint)."""
    m = get_model(ident)
    released_bits = 4 + 16 / 32
    # weight_scale shapes in the K2.5 tensor list: down_proj 7168 x (2048 / 32), gate/up 2048 x (7168 / 32)
    assert (2048 // 32, 7168 // 32) == (64, 224)
    # weight_packed: 8 int4 a 32-bit word along the input dimension
    assert (2048 // 8, 7168 // 8) == (256, 896)
    assert get_format("int4-g32").bits == released_bits
    short = EXPERT_ELEMENTS * (released_bits - get_format("int4").bits) / 8
    assert short == pytest.approx(43.600e9, rel=1e-4)
    real = m.native_weight_bytes()
    assert real / GiB == pytest.approx(553.40, abs=0.01)  # the text tensors of the K2.5 checkpoint
    assert short / real == pytest.approx(0.0734, abs=0.0005)
    # the experts' packed and scale tensors as the K2.5 tensor list sizes them: 472.5 + 59.06 GiB
    assert EXPERT_ELEMENTS / 2 / GiB == pytest.approx(472.5)
    assert EXPERT_ELEMENTS / 32 * 2 / GiB == pytest.approx(59.0625)


def test_kimi_k25_checkpoint_size_is_the_text_tensors_and_the_vision_tower():
    m = get_model("kimi-k2.5")
    files = m.native_weights.checkpoint.value
    assert files == pytest.approx(554.30 * GiB)
    # MoonViT-3D (27 blocks of width 1152, MLP 4304, biased) and its patchmerger projector, from the tensor list
    h, f = 1152, 4304
    block = (f * h + f) + (h * f + h) + 4 * h + (h * h + h) + (3 * h * h + 3 * h)  # fc0, fc1, 2 LayerNorms, wo, wqkv
    tower = 27 * block + 2 * h + 64 * 64 * h + (h * 3 * 14 * 14 + h)  # final norm, position table, patch embedding
    projector = 2 * h + (4608 * 4608 + 4608) + (7168 * 4608 + 7168)
    assert (tower, projector) == (416_866_032, 54_277_888)
    text = m.native_weight_bytes()
    # safetensors headers and the small fp32 / int32 tensors aside, the files are the text model plus the vision part
    assert files == pytest.approx(text + 2.0 * (tower + projector), rel=5e-4)
    # what the planner counts is the files less the vision part it leaves out of the text model (0.16 %)
    assert m.native_weight_bytes() / files == pytest.approx(0.9984, abs=0.0005)


@pytest.mark.parametrize("ident,repo", SPECS)
def test_hugging_face_repo_resolves_to_the_spec(ident, repo):
    assert ident in model_ids()
    m = get_model(ident)
    assert m.hf_repo == repo
    assert m.published_params.source.strip() and m.source.strip() and m.notes
    # the spec's own hf_repo is matched before any word matching (which sets 'thinking' aside as a variant word)
    assert loader._hf_repos()[repo.lower()] == ident
    assert get_model(repo).id == ident
    assert get_model(repo.lower()).id == ident
    assert get_model(repo.split("/")[1]).id == ident  # the bare repo name, by its words
    # the name states no weight format: the spec's released int4-g32 experts apply
    assert checkpoint_weights(repo) is None


def test_kimi_k2_repos_still_resolve_to_kimi_k2():
    for name in ("moonshotai/Kimi-K2-Instruct", "moonshotai/Kimi-K2", "kimi-k2", "moonshotai/Kimi-K2-Instruct-0905"):
        assert get_model(name).id == "kimi-k2"
