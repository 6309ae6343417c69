"""Parameter counts of the built-in model specs against published figures, and hand-computed checks.

Every spec in model_specs/ must carry a published parameter count, and the schema's
first-principles count must land within 1% of it. A published figure quoted to fewer than three
significant digits ("37B", "3.3B") is only known to that precision; for such a figure the count
must instead round or truncate to exactly the quoted value (a half-unit or one-unit window,
which is still tighter than any architectural error worth catching, e.g. a missing or doubled
embedding).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from planner.specs.loader import get_model, model_ids

REL_TOL = 0.01
IDS = model_ids()
MOE_IDS = [i for i in IDS if get_model(i).is_moe]


def _quoted_unit(value: float) -> Decimal:
    """Place value of the last significant digit of a published figure (37e9 -> 1e9, 3.3e9 -> 1e8)."""
    d = Decimal(repr(float(value))).normalize()
    return Decimal(1).scaleb(d.as_tuple().exponent)


def _significant_digits(value: float) -> int:
    return len(Decimal(repr(float(value))).normalize().as_tuple().digits)


def _consistent(computed: int, published: float) -> tuple[bool, str]:
    rel = abs(computed - published) / published
    if rel <= REL_TOL:
        return True, f"{rel:.2%}"
    if _significant_digits(published) < 3:
        unit = _quoted_unit(published)
        c, p = Decimal(computed), Decimal(repr(float(published)))
        rounded = (c / unit).quantize(Decimal(1), rounding="ROUND_HALF_UP") * unit
        truncated = (c / unit).to_integral_value(rounding="ROUND_DOWN") * unit
        if p in (rounded, truncated):
            return True, f"{rel:.2%}, consistent with a figure quoted to {unit:.0e}"
    return False, f"{rel:.2%}"


def _published_active_comparable(m) -> int:
    """The schema's active count, put on the publisher's footing."""
    active = m.active_params
    if m.published_params.active_excludes_embedding:
        active -= m.embedding_params()
    return active


def test_there_are_specs():
    assert len(IDS) >= 20


@pytest.mark.parametrize("ident", IDS)
def test_every_model_has_published_params(ident):
    m = get_model(ident)
    assert m.published_params is not None, f"{ident} has no published_params"
    assert m.published_params.source.strip()
    assert m.source.strip()
    if m.is_moe:
        assert m.published_params.active is not None, f"MoE {ident} needs a published active count"
        assert m.published_params.active < m.published_params.total


@pytest.mark.parametrize("ident", IDS)
def test_total_params_match_published(ident):
    m = get_model(ident)
    ok, how = _consistent(m.total_params, m.published_params.total)
    assert ok, f"{ident}: computed {m.total_params / 1e9:.3f}B vs published {m.published_params.total / 1e9:.3f}B ({how})"


@pytest.mark.parametrize("ident", [i for i in IDS if get_model(i).published_params.active])
def test_active_params_match_published(ident):
    m = get_model(ident)
    active = _published_active_comparable(m)
    ok, how = _consistent(active, m.published_params.active)
    assert ok, f"{ident}: computed active {active / 1e9:.3f}B vs published {m.published_params.active / 1e9:.3f}B ({how})"


def test_tolerance_rule_is_not_loose():
    # 1% both ways for a figure quoted to three or more digits
    assert _consistent(71_300_000_000, 70.6e9)[0] and _consistent(69_900_000_000, 70.6e9)[0]
    assert not _consistent(71_400_000_000, 70.6e9)[0] and not _consistent(69_800_000_000, 70.6e9)[0]
    # a two-digit figure accepts only counts that round or truncate to it
    assert _consistent(3_353_000_000, 3.3e9)[0]  # truncates to 3.3
    assert _consistent(3_250_000_000, 3.3e9)[0]  # rounds to 3.3
    assert not _consistent(3_400_000_000, 3.3e9)[0]
    assert not _consistent(3_240_000_000, 3.3e9)[0]
    assert not _consistent(38_600_000_000, 37e9)[0]  # e.g. an embedding table counted twice


# ---- physics of the counting ---------------------------------------------------------------


@pytest.mark.parametrize("ident", IDS)
def test_dense_models_activate_everything(ident):
    m = get_model(ident)
    if not m.is_moe:
        assert m.active_params == m.total_params


@pytest.mark.parametrize("ident", MOE_IDS)
def test_moe_inactive_params_are_exactly_the_unrouted_experts(ident):
    """...and an image encoder, which a text token never passes through (Llama-4)."""
    m = get_model(ident)
    idle = (m.moe.num_experts - m.moe.top_k) * m.expert_params() * m.num_moe_layers + m.vision_params()
    assert m.total_params - m.active_params == idle
    assert 0 < m.active_params < m.total_params


def test_llama_2_7b_exact_count_by_hand():
    m = get_model("llama-2-7b")
    h, inter, layers, vocab = 4096, 11008, 32, 32000
    per_layer = 4 * h * h + 3 * h * inter + 2 * h  # q,k,v,o + gate,up,down + 2 RMSNorms
    expected = layers * per_layer + 2 * vocab * h + h  # embed + lm_head + final norm
    assert expected == 6_738_415_616  # the well-known exact size of Llama-2-7B
    assert m.total_params == expected


def test_gpt_j_exact_count_by_hand():
    """Parallel block, one LayerNorm, biased non-gated MLP, biased lm_head, bias-free attention."""
    m = get_model("gpt-j-6b")
    h, ff, layers, vocab = 4096, 16384, 28, 50400
    attn = 4 * h * h
    mlp = h * ff + ff + ff * h + h
    ln = 2 * h
    expected = layers * (attn + mlp + ln) + vocab * h + (vocab * h + vocab) + 2 * h
    assert m.total_params == expected == 6_050_882_784


def test_qwen3_32b_matches_card_breakdown():
    # card: 32.8B total, 31.2B non-embedding; q heads x head_dim (8192) exceeds hidden (5120)
    m = get_model("qwen3-32b")
    assert m.q_dim == 64 * 128 != m.hidden_size
    non_embedding = m.total_params - m.embedding_params() - m.lm_head_params()
    assert abs(non_embedding - 31.2e9) / 31.2e9 <= REL_TOL
    # qk_norm adds one head_dim vector for q and one for k per layer
    h, q, kv = 5120, 64 * 128, 8 * 128
    assert m.attention_params() == h * q + 2 * h * kv + q * h + 2 * 128


def test_qwen2_5_72b_qkv_bias():
    m = get_model("qwen2.5-72b")
    h, q, kv = 8192, 64 * 128, 8 * 128
    assert m.attention_params() == h * q + 2 * h * kv + q * h + (q + 2 * kv)


def test_gpt_oss_120b_matches_model_card_breakdown():
    """Model card table: MLP 114.71B, attention 0.96B, embed+unembed 1.16B, active 5.13B."""
    m = get_model("gpt-oss-120b")
    h, heads, kv_heads, hd = 2880, 64, 8, 64
    q, kv = heads * hd, kv_heads * hd
    attn = (h * q + q) + 2 * (h * kv + kv) + (q * h + h) + heads  # biased q,k,v,o + sinks
    assert m.attention_params() == attn == 26_550_144
    expert = (h * 2 * 2880 + 2 * 2880) + (2880 * h + h)  # fused gate_up and down, with biases
    assert m.expert_params() == expert
    c = m.param_counts()
    mlp = c["experts"] + c["router"]
    assert round(mlp / 1e9, 2) == 114.71
    assert round(c["attention"] / 1e9, 2) == 0.96
    assert round((c["embedding"] + c["lm_head"]) / 1e9, 2) == 1.16
    assert round(_published_active_comparable(m) / 1e9, 2) == 5.13


def test_mixtral_8x7b_active_is_two_of_eight_experts():
    m = get_model("mixtral-8x7b")
    expert = 3 * 4096 * 14336
    assert m.expert_params() == expert
    assert m.total_params - m.active_params == 6 * expert * 32


def test_falcon_180b_ties_embeddings_and_has_two_layernorms():
    m = get_model("falcon-180b")
    assert m.lm_head_params() == 0
    assert m.norm_params_per_layer() == 2 * 2 * 14848  # ln_attn + ln_mlp, weight and bias each


# ---- KV cache --------------------------------------------------------------------------------


def test_kv_elements_llama_3_1_70b():
    m = get_model("llama-3.1-70b")
    assert m.kv_elements_per_token_per_layer() == 2 * 8 * 128 == 2048


def test_kv_elements_deepseek_v3_mla_latent():
    m = get_model("deepseek-v3")
    assert m.kv_elements_per_token_per_layer() == 512 + 64 == 576


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        ("llama-2-7b", 2 * 32 * 128),  # MHA
        ("mistral-7b", 2 * 8 * 128),
        ("qwen3-32b", 2 * 8 * 128),  # explicit head_dim, not hidden/heads
        ("falcon-180b", 2 * 8 * 64),
        ("gpt-j-6b", 2 * 16 * 256),
        ("gpt-oss-120b", 2 * 8 * 64),
    ],
)
def test_kv_elements_per_token_per_layer(ident, expected):
    assert get_model(ident).kv_elements_per_token_per_layer() == expected


def test_sliding_window_layers():
    mistral = get_model("mistral-7b")
    assert mistral.attention.sliding_window == 4096 and mistral.num_sliding_layers() == 32
    oss = get_model("gpt-oss-120b")
    assert oss.attention.sliding_window == 128 and oss.num_sliding_layers() == 18
    assert get_model("llama-3.1-70b").num_sliding_layers() == 0
