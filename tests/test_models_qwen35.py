"""Qwen3.5 397B-A17B and 35B-A3B (Gated DeltaNet between gated-attention layers, MoE on every layer), checked by hand.

Each config below restates the text_config of the model's config.json (Hugging Face Qwen/Qwen3.5-397B-A17B and
Qwen/Qwen3.5-35B-A3B, Qwen3_5MoeForConditionalGeneration, as the specs' `source` fields cite); what follows is derived
from those numbers. The vision encoder and the multi-token-prediction layer the checkpoints also hold are not part of
the spec (see its notes); the parameter counts are held to the published figures with the rule of
tests/test_model_params.py.
"""

from __future__ import annotations

import json

import pytest

from planner.costmodel.memory import LINEAR_STATE_BYTES, kv_bytes_per_seq, memory
from planner.costmodel.plans import make_plans
from planner.specs.hf_import import spec_from_hf_config
from planner.specs.loader import get_hardware, get_model, model_ids

from test_model_params import _consistent, _published_active_comparable


def _layer_types(n: int, every: int = 4) -> list[str]:
    return ["full_attention" if (i + 1) % every == 0 else "linear_attention" for i in range(n)]


# text_config of each config.json (the keys the planner reads, with their values)
TEXT_CONFIGS = {
    "qwen3.5-397b-a17b": dict(
        model_type="qwen3_5_moe_text", hidden_size=4096, num_hidden_layers=60, layer_types=_layer_types(60),
        full_attention_interval=4, num_attention_heads=32, num_key_value_heads=2, head_dim=256, attn_output_gate=True,
        linear_num_key_heads=16, linear_num_value_heads=64, linear_key_head_dim=128, linear_value_head_dim=128,
        linear_conv_kernel_dim=4, num_experts=512, num_experts_per_tok=10, moe_intermediate_size=1024,
        shared_expert_intermediate_size=1024, vocab_size=248320, max_position_embeddings=262144,
        tie_word_embeddings=False, mtp_num_hidden_layers=1, hidden_act="silu", partial_rotary_factor=0.25,
        mamba_ssm_dtype="float32"),
    "qwen3.5-35b-a3b": dict(
        model_type="qwen3_5_moe_text", hidden_size=2048, num_hidden_layers=40, layer_types=_layer_types(40),
        full_attention_interval=4, num_attention_heads=16, num_key_value_heads=2, head_dim=256, attn_output_gate=True,
        linear_num_key_heads=16, linear_num_value_heads=32, linear_key_head_dim=128, linear_value_head_dim=128,
        linear_conv_kernel_dim=4, num_experts=256, num_experts_per_tok=8, moe_intermediate_size=512,
        shared_expert_intermediate_size=512, vocab_size=248320, max_position_embeddings=262144,
        tie_word_embeddings=False, mtp_num_hidden_layers=1, hidden_act="silu", partial_rotary_factor=0.25,
        mamba_ssm_dtype="float32"),
}
# vision_config: 27 blocks of 1152 (MLP 4304), patch 16 over 2 frames, 2304 position embeddings, a 2 x 2 merger to the
# text width; not part of the spec (the schema counts only Llama-4's encoder)
VISION_CONFIG = dict(model_type="qwen3_5_moe", depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                     in_channels=3, patch_size=16, temporal_patch_size=2, spatial_merge_size=2,
                     num_position_embeddings=2304)
REPOS = {"qwen3.5-397b-a17b": "Qwen/Qwen3.5-397B-A17B", "qwen3.5-35b-a3b": "Qwen/Qwen3.5-35B-A3B"}
IDS = list(TEXT_CONFIGS)


def _config_json(ident: str) -> dict:
    c = TEXT_CONFIGS[ident]
    return {"architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe",
            "tie_word_embeddings": c["tie_word_embeddings"], "text_config": c,
            "vision_config": {**VISION_CONFIG, "out_hidden_size": c["hidden_size"]}}


def _by_hand(c: dict) -> dict:
    """Element counts of one layer of each kind, and of the whole text model, from the config numbers."""
    h, hk, hv, dk, dv = (c[k] for k in ("hidden_size", "linear_num_key_heads", "linear_num_value_heads",
                                        "linear_key_head_dim", "linear_value_head_dim"))
    q, kv, hd = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"], c["head_dim"]
    conv = 2 * hk * dk + hv * dv  # q, k and v channels through the causal convolution
    # gated attention: q and its output gate (2 x q), k, v, o, per-head q/k RMSNorm
    attn = h * 2 * q + 2 * h * kv + q * h + 2 * hd
    # Gated DeltaNet: in_proj_qkv, in_proj_z (v width), in_proj_b and in_proj_a (one per value head), conv1d taps,
    # A_log and dt_bias, the gated RMSNorm over a value head, out_proj
    lin = h * conv + h * hv * dv + 2 * h * hv + conv * c["linear_conv_kernel_dim"] + 2 * hv + dv + hv * dv * h
    e, k = c["num_experts"], c["num_experts_per_tok"]
    expert = 3 * h * c["moe_intermediate_size"]  # gate, up, down
    moe = e * expert + 3 * h * c["shared_expert_intermediate_size"] + h * e  # routed, shared, router
    n_full = c["layer_types"].count("full_attention")
    n_lin = c["layer_types"].count("linear_attention")
    layers = c["num_hidden_layers"]
    total = n_full * attn + n_lin * lin + layers * (moe + 2 * h) + 2 * c["vocab_size"] * h + h  # untied; final norm
    return dict(attn=attn, lin=lin, conv=conv, expert=expert, moe=moe, n_full=n_full, n_lin=n_lin, total=total,
                active=total - layers * (e - k) * expert)


@pytest.mark.parametrize("ident", IDS)
def test_dimensions_match_config(ident):
    m, c = get_model(ident), TEXT_CONFIGS[ident]
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == \
        (c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"])
    assert (m.vocab_size, m.max_context, m.tied_embeddings) == \
        (c["vocab_size"], c["max_position_embeddings"], c["tie_word_embeddings"])
    a = m.attention
    assert a.kind == "gqa" and a.qk_norm and a.output_gate is c["attn_output_gate"]
    assert not a.qkv_bias and not a.o_bias and not a.sinks and a.local_window is None and a.mla is None
    lin = a.linear
    assert (lin.full_every, lin.key_heads, lin.value_heads, lin.key_head_dim, lin.value_head_dim, lin.conv_kernel) == \
        (c["full_attention_interval"], c["linear_num_key_heads"], c["linear_num_value_heads"],
         c["linear_key_head_dim"], c["linear_value_head_dim"], c["linear_conv_kernel_dim"])
    assert (m.moe.num_experts, m.moe.top_k, m.moe.expert_intermediate_size) == \
        (c["num_experts"], c["num_experts_per_tok"], c["moe_intermediate_size"])
    assert (m.moe.num_shared_experts, m.moe.shared_expert_intermediate_size) == (1, c["shared_expert_intermediate_size"])
    assert m.moe.first_dense_layers == 0 and m.moe.interleave_step == 1 and not m.moe.expert_bias
    assert m.ffn_gated and not m.mlp_bias and m.norm == "rmsnorm" and m.norms_per_layer == 2
    assert m.mtp_layers == c["mtp_num_hidden_layers"] == 1
    assert m.vision is None and m.native_weights is None  # released in bf16; the Qwen vision encoder is not modelled
    # the query is wider than the hidden state (32 x 256 = 2 x 4096; 16 x 256 = 2 x 2048)
    assert m.q_dim == 2 * m.hidden_size


@pytest.mark.parametrize("ident", IDS)
def test_layer_pattern_is_the_configs_layer_types(ident):
    m, c = get_model(ident), TEXT_CONFIGS[ident]
    assert m.linear_layer_indices() == [i for i, t in enumerate(c["layer_types"]) if t == "linear_attention"]
    assert m.moe_layer_indices() == list(range(c["num_hidden_layers"])) and m.num_dense_layers == 0
    n = c["num_hidden_layers"]
    assert (m.num_linear_layers, m.num_attention_layers) == (3 * n // 4, n // 4)  # 45 + 15; 30 + 10


@pytest.mark.parametrize("ident", IDS)
def test_parameters_layer_by_layer(ident):
    m, c = get_model(ident), TEXT_CONFIGS[ident]
    want = _by_hand(c)
    assert m.attention_params() == want["attn"]
    assert m.attention.linear.params(m.hidden_size) == want["lin"]
    assert m.attention.linear.conv_dim == want["conv"]
    assert m.expert_params() == want["expert"]
    pc = m.param_counts()
    assert pc["attention"] == want["n_full"] * want["attn"] + want["n_lin"] * want["lin"]
    assert (m.total_params, m.active_params) == (want["total"], want["active"])


def test_exact_counts():
    big, small = get_model("qwen3.5-397b-a17b"), get_model("qwen3.5-35b-a3b")
    assert big.attention_params() == 104_858_112 and big.attention.linear.params(4096) == 118_014_208
    assert (big.total_params, big.active_params) == (396_346_104_576, 17_348_795_136)
    assert small.attention_params() == 27_263_488 and small.attention.linear.params(2048) == 33_718_464
    assert (small.total_params, small.active_params) == (34_660_528_768, 3_454_907_008)


@pytest.mark.parametrize("ident", IDS)
def test_against_the_published_counts(ident):
    """397B / 17B (Qwen3.5-397B-A17B card); 35B / 3B (Qwen3.5-35B-A3B). The figures stand for the language model of a
    release that also ships a vision encoder; the computed count is the text model's."""
    m = get_model(ident)
    ok, how = _consistent(m.total_params, m.published_params.total)
    assert ok, how
    assert abs(m.total_params - m.published_params.total) / m.published_params.total < 0.01
    assert not m.published_params.active_excludes_embedding
    ok, how = _consistent(_published_active_comparable(m), m.published_params.active)
    assert ok, how
    # the active figures are the card's two (17B) and one (3B) digits of a count that includes the embedding:
    # without it 16.33B would not round to 17B
    if ident == "qwen3.5-397b-a17b":
        assert not _consistent(m.active_params - m.embedding_params(), 17e9)[0]


def _vision_params(out_hidden: int, v: dict = VISION_CONFIG) -> int:
    """The Qwen3-VL-layout image encoder without deepstack mergers: a biased 3-D patch embedding, learned positions,
    blocks of LayerNorm, biased fused qkv and proj, LayerNorm, biased two-layer MLP, and a merger (LayerNorm, then two
    biased linears over 2 x 2 merged patches)."""
    h, f = v["hidden_size"], v["intermediate_size"]
    patch = v["in_channels"] * v["temporal_patch_size"] * v["patch_size"] ** 2 * h + h
    block = 2 * h + (3 * h * h + 3 * h) + (h * h + h) + 2 * h + (h * f + f) + (f * h + h)
    wide = h * v["spatial_merge_size"] ** 2
    merger = 2 * h + (wide * wide + wide) + (wide * out_hidden + out_hidden)
    return patch + v["num_position_embeddings"] * h + v["depth"] * block + merger


def _mtp_params(m) -> int:
    """One MTP layer: fc over the concatenated embedding and hidden state, the two pre-fc norms, a gated-attention
    decoder layer with its MoE (and the shared-expert gate), its final norm."""
    h = m.hidden_size
    moe = m.expert_params() * m.moe.num_experts + m.shared_expert_params() + m.router_params() + h
    return 2 * h * h + 2 * h + m.attention_params() + moe + m.norm_params_per_layer() + h


def test_35b_a3b_whole_checkpoint_matches_the_safetensors_count():
    """What the spec leaves out, counted: the shared-expert gates (hidden x 1 a layer), the MTP layer and the vision
    encoder. With them the network holds 35,951,822,704 elements, the safetensors-index count reported for
    Qwen/Qwen3.6-35B-A3B, whose config.json has these dimensions (Qwen3.6 keeps Qwen3.5's architecture and model_type).
    The published 35B is the text model (34.66B) and its encoder (0.45B), the MTP layer aside."""
    m = get_model("qwen3.5-35b-a3b")
    gates = m.hidden_size * m.num_layers
    vision = _vision_params(m.hidden_size)
    assert vision == 446_571_248 and _mtp_params(m) == 844_640_768
    assert m.total_params + gates + _mtp_params(m) + vision == 35_951_822_704
    assert round((m.total_params + vision) / 1e9) == 35


def test_397b_a17b_text_and_vision_round_to_the_published_figure():
    m = get_model("qwen3.5-397b-a17b")
    vision = _vision_params(m.hidden_size)
    assert 0.45e9 < vision < 0.46e9
    assert round((m.total_params + vision) / 1e9) == 397  # 396.80B
    # with the MTP layer (6.6B) the checkpoint holds about 403.4B, the size its safetensors index is reported at
    whole = m.total_params + m.hidden_size * m.num_layers + _mtp_params(m) + vision
    assert round(whole / 1e9) == 403


@pytest.mark.parametrize("ident", IDS)
def test_state_bytes_per_sequence_by_hand(ident):
    """Each linear layer keeps value_heads x value_head_dim x key_head_dim recurrent elements and conv_dim x
    (conv_kernel - 1) convolution elements per sequence, 2 bytes each; kv_bytes_per_seq adds that to the KV of the
    full-attention layers. Qwen3.5's config asks for an fp32 recurrent state (mamba_ssm_dtype float32, which vLLM
    honours): 4 bytes a recurrent element, 2 a convolution one."""
    m, c = get_model(ident), TEXT_CONFIGS[ident]
    hv, dk, dv = c["linear_num_value_heads"], c["linear_key_head_dim"], c["linear_value_head_dim"]
    conv = 2 * c["linear_num_key_heads"] * dk + hv * dv
    n_lin = c["layer_types"].count("linear_attention")
    n_full = c["layer_types"].count("full_attention")
    assert LINEAR_STATE_BYTES == 2.0
    assert c["mamba_ssm_dtype"] == "float32" and m.attention.linear.state_dtype == "fp32"
    state = n_lin * (hv * dv * dk * 4 + conv * (c["linear_conv_kernel_dim"] - 1) * 2)
    per_token = n_full * 2 * c["num_key_value_heads"] * c["head_dim"] * 2  # K and V, bf16
    p = make_plans(m, get_hardware("h200-sxm"), tp=1, weights="bf16", kv="bf16", check=False)
    for ctx in (1, 4096, 131072, 262144):
        assert float(kv_bytes_per_seq(m, p, ctx)[0]) - per_token * ctx == pytest.approx(state)
    assert float(memory(m, get_hardware("h200-sxm"), p).state_per_seq[0]) == pytest.approx(state)


def test_state_and_kv_sizes():
    # 397B-A17B: 45 x (64 x 128 x 128 x 4 + 12288 x 3 x 2) bytes, 192.1 MB a sequence; 15 layers x 2 x 2 x 256 x 2 B =
    # 30 KiB a token. 35B-A3B: 30 x (32 x 128 x 128 x 4 + 8192 x 3 x 2), 64.4 MB; 10 layers, 20 KiB a token.
    for ident, state, per_token in (("qwen3.5-397b-a17b", 192_061_440, 30 * 1024), ("qwen3.5-35b-a3b", 64_389_120, 20 * 1024)):
        m = get_model(ident)
        p = make_plans(m, get_hardware("h200-sxm"), tp=1, weights="bf16", kv="bf16", check=False)
        assert float(kv_bytes_per_seq(m, p, 1)[0]) == pytest.approx(state + per_token)


@pytest.mark.parametrize("ident", IDS)
def test_state_splits_over_tensor_parallel_ranks(ident):
    m, c = get_model(ident), TEXT_CONFIGS[ident]
    hv, hk, dk, dv = (c[k] for k in ("linear_num_value_heads", "linear_num_key_heads", "linear_key_head_dim",
                                     "linear_value_head_dim"))
    n_lin = c["layer_types"].count("linear_attention")
    p = make_plans(m, get_hardware("h200-sxm"), tp=2, weights="bf16", kv="bf16", check=False)
    state = n_lin * ((hv / 2) * dv * dk * 4 + ((2 * hk * dk + hv * dv) / 2) * 3 * LINEAR_STATE_BYTES)
    per_token = c["layer_types"].count("full_attention") * 2 * (c["num_key_value_heads"] / 2) * c["head_dim"] * 2
    assert float(kv_bytes_per_seq(m, p, 1000)[0]) == pytest.approx(per_token * 1000 + state)


@pytest.mark.parametrize("ident", IDS)
def test_hugging_face_repo_resolves(ident):
    assert ident in model_ids()
    m = get_model(ident)
    assert m.hf_repo == REPOS[ident]
    assert get_model(REPOS[ident]).id == ident
    assert get_model(REPOS[ident].lower()).id == ident
    assert m.published_params.source.strip() and m.source.strip() and m.notes


@pytest.mark.parametrize("ident", IDS)
def test_import_of_the_config_gives_the_built_in_network(ident, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_config_json(ident)))
    got, _ = spec_from_hf_config(path, ident)
    want = get_model(ident)
    assert got.attention.linear == want.attention.linear
    assert got.attention.output_gate and got.attention.qk_norm and got.attention.kind == "gqa"
    assert got.moe == want.moe
    assert (got.num_layers, got.hidden_size, got.num_heads, got.num_kv_heads, got.head_dim) == \
        (want.num_layers, want.hidden_size, want.num_heads, want.num_kv_heads, want.head_dim)
    assert (got.vocab_size, got.tied_embeddings, got.max_context) == (want.vocab_size, want.tied_embeddings, want.max_context)
    assert got.vision is None  # a Qwen vision_config is left out, as in the spec
    assert (got.total_params, got.active_params, got.mtp_layers) == (want.total_params, want.active_params, 1)


def test_estimate_runs_end_to_end():
    from planner.api import PlanSpec, estimate

    e = estimate("qwen3.5-35b-a3b", "h200-sxm", PlanSpec(tp=1, weights="bf16"), isl=4000, osl=1000, engine="vllm")
    assert e.memory["fits"] and e.output_tokens_per_s > 0 and e.ttft_s > 0
    assert {"linear_core", "linear_in_proj", "attention"} <= {r["op"] for r in e.breakdown["decode"]}
