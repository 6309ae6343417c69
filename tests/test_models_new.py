"""The models users run today, checked layer by layer against their config.json values.

Each layer-by-layer test restates the numbers of the model's config.json (Hugging Face) and
derives what follows from them by hand: which layers are MoE, which attend locally, how many
elements each block holds. The importer tests feed small config dicts shaped like the real
ones (no network) and require the same architecture as the built-in spec.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from planner.costmodel.memory import kv_bytes_per_seq, weight_bytes_per_device
from planner.costmodel.plans import make_plans
from planner.errors import PlannerError
from planner.specs.hf_import import spec_from_hf_config
from planner.specs.loader import get_hardware, get_model, model_ids
from planner.specs.model import Model

GiB = 2.0**30


# ---- ids the published measurements use ----------------------------------------------------

# `model` column of the validation tables (vllm_rate.csv, modern_per_gpu.csv)
VALIDATION_IDS = ["codellama-34b", "llama-2-70b", "llama-2-7b", "llama-3.1-70b", "llama-4-scout-17b-16e",
                  "mistral-nemo-12b", "qwen2.5-7b", "yi-34b", "gpt-oss-120b", "gpt-oss-20b", "llama-3.3-70b",
                  "qwen3-235b-a22b"]


@pytest.mark.parametrize("ident", VALIDATION_IDS)
def test_validation_ids_resolve(ident):
    assert get_model(ident).id == ident


def test_ids_in_copied_measurement_tables_resolve():
    root = Path(__file__).resolve().parents[1] / "measurements" / "published"
    seen = set()
    for path in sorted(root.glob("*.csv")):
        with path.open() as f:
            seen |= {row["model"] for row in csv.DictReader(f) if row.get("model")}
    for ident in sorted(seen):
        get_model(ident)  # raises PlannerError for an unknown id


@pytest.mark.parametrize(("alias", "ident"), [("llama-4-scout", "llama-4-scout-17b-16e"),
                                              ("llama-4-maverick", "llama-4-maverick-17b-128e")])
def test_short_aliases_resolve_to_the_spec(alias, ident):
    assert get_model(alias) is get_model(ident)
    assert alias not in model_ids()


def test_unknown_id_still_fails_with_a_suggestion():
    with pytest.raises(PlannerError, match="llama-4-scout"):
        get_model("llama-4-scot")


@pytest.mark.parametrize("ident", model_ids())
def test_every_model_names_a_checkpoint(ident):
    repo = get_model(ident).hf_repo
    assert repo and "/" in repo


# ---- DeepSeek-R1 -------------------------------------------------------------------------------


def test_deepseek_r1_layer_by_layer():
    """config.json: 61 layers, first_k_dense_replace 3, hidden 7168, 128 heads, MLA ranks 1536/512,
    qk 128 + 64 rope, v 128, 256 routed experts top-8 + 1 shared of 2048, dense MLP 18432."""
    m = get_model("deepseek-r1")
    assert (m.num_layers, m.hidden_size, m.num_heads, m.vocab_size) == (61, 7168, 128, 129280)
    mla = m.attention.mla
    assert (mla.q_lora_rank, mla.kv_lora_rank, mla.qk_nope_head_dim, mla.qk_rope_head_dim, mla.v_head_dim) == (1536, 512, 128, 64, 128)
    assert m.moe_layer_indices() == list(range(3, 61)) and m.num_dense_layers == 3
    assert (m.moe.num_experts, m.moe.top_k, m.moe.num_shared_experts) == (256, 8, 1)
    assert (m.moe.expert_intermediate_size, m.intermediate_size) == (2048, 18432)
    h = 7168
    q = h * 1536 + 1536 + 1536 * 128 * 192  # q_a, its norm, q_b to 128 heads x (128 + 64)
    kv = h * (512 + 64) + 512 + 512 * 128 * (128 + 128)  # kv_a (latent + rope key), norm, kv_b to k_nope and v
    o = 128 * 128 * h
    assert m.attention_params() == q + kv + o
    assert m.expert_params() == 3 * h * 2048 and m.shared_expert_params() == 3 * h * 2048
    assert m.kv_elements_per_token_per_layer() == 512 + 64  # the latent, not 2 x 128 heads x 192
    assert m.local_layer_indices() == []
    # R1 is V3's architecture: the same count to the element
    assert m.total_params == get_model("deepseek-v3").total_params
    assert m.native_weights.experts == m.native_weights.dense == "fp8"


# ---- Llama-4 -----------------------------------------------------------------------------------


def test_llama_4_maverick_layer_by_layer():
    """config.json text_config: 48 layers, hidden 5120, 40 q / 8 kv heads, head_dim 128,
    128 experts top-1 + shared, intermediate_size 8192 (experts), intermediate_size_mlp 16384 (dense),
    interleave_moe_layer_step 2, attention_chunk_size 8192, no_rope_layer_interval 4, vocab 202048."""
    m = get_model("llama-4-maverick-17b-128e")
    h = 5120
    assert (m.num_layers, h, m.num_heads, m.num_kv_heads, m.head_dim) == (48, m.hidden_size, 40, 8, 128)
    # transformers: moe_layers = range(interleave_moe_layer_step - 1, num_layers, step)
    assert m.moe_layer_indices() == list(range(1, 48, 2))
    assert m.num_moe_layers == 24 and m.num_dense_layers == 24
    assert (m.moe.num_experts, m.moe.top_k, m.moe.num_shared_experts) == (128, 1, 1)
    assert (m.moe.expert_intermediate_size, m.moe.shared_expert_intermediate_size, m.intermediate_size) == (8192, 8192, 16384)
    # chunked attention on layers where (i + 1) % 4 != 0; the rest are global NoPE layers
    a = m.attention
    assert a.chunk_size == 8192 and a.sliding_window is None and a.nope_global_layers
    assert m.local_layer_indices() == [i for i in range(48) if (i + 1) % 4 != 0]
    assert m.num_chunked_layers() == 36 and m.num_sliding_layers() == 0
    # parameters, block by block
    attn = h * 40 * 128 + 2 * h * 8 * 128 + 40 * 128 * h
    assert m.attention_params() == attn
    dense_layer = attn + 3 * h * 16384 + 2 * h
    moe_layer = attn + 128 * 3 * h * 8192 + 3 * h * 8192 + h * 128 + 2 * h  # routed, shared, router, norms
    text = 24 * dense_layer + 24 * moe_layer + 2 * 202048 * h + h
    assert m.total_params - m.vision_params() == text
    # one token: attention everywhere, dense MLP on 24 layers, one routed + the shared expert on 24
    active = text - 24 * 127 * 3 * h * 8192
    assert m.active_params == active


def test_llama_4_scout_layer_by_layer():
    m = get_model("llama-4-scout-17b-16e")
    assert m.moe_layer_indices() == list(range(48))  # interleave_moe_layer_step 1
    assert (m.moe.num_experts, m.moe.top_k) == (16, 1)
    assert m.num_dense_layers == 0
    assert m.local_layer_indices() == get_model("llama-4-maverick").local_layer_indices()
    assert m.max_context == 10485760  # 10M tokens; Maverick's config says 1048576
    # attention and vision are Maverick's; only the MLP layout differs
    mav = get_model("llama-4-maverick")
    assert m.attention_params() == mav.attention_params() and m.vision_params() == mav.vision_params()


def test_llama_4_vision_encoder_count_by_hand():
    """vision_config: 34 layers, hidden 1408, intermediate 5632, patch 14 on 336-pixel tiles (24 x 24
    patches + a class token), pixel-shuffle MLP 5632 -> 4096 -> 4096, projector 4096 -> 5120."""
    v = get_model("llama-4-scout").vision_params()
    h, f = 1408, 5632
    layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
    embed = 3 * 14 * 14 * h + h + (24 * 24 + 1) * h + 4 * h
    expected = 34 * layer + embed + (f * 4096 + 4096 * 4096) + 4096 * 5120
    assert v == expected
    assert 0.85e9 < v < 0.90e9  # under 1 % of the 109B total, yet 1.7 GB of bf16 memory


def test_vision_weights_are_held_in_memory_but_never_active():
    m = get_model("llama-4-scout")
    plans = make_plans(m, get_hardware("h100-sxm"), tp=1, weights="bf16", check=False)
    held = float(weight_bytes_per_device(m, plans)[0])
    assert held == pytest.approx(2.0 * m.total_params, rel=1e-9)  # every element, the encoder included, in bf16
    assert m.total_params - m.active_params == 48 * 15 * m.expert_params() + m.vision_params()


def test_chunked_layers_hold_at_most_one_chunk_of_kv():
    """36 of Scout's 48 layers are chunked: past 8192 tokens only its 12 global layers keep growing."""
    m = get_model("llama-4-scout")
    plans = make_plans(m, get_hardware("h100-sxm"), tp=1, weights="bf16", kv="bf16", check=False)
    per_token_layer = 2 * 8 * 128 * 2.0  # K and V, 8 kv heads x 128, bf16
    for ctx in (4096, 8192, 100_000):
        expected = per_token_layer * (12 * ctx + 36 * min(ctx, 8192))
        assert float(kv_bytes_per_seq(m, plans, ctx)[0]) == pytest.approx(expected)


# ---- gpt-oss -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ident", "layers", "experts", "gib"), [("gpt-oss-120b", 36, 128, 60.8), ("gpt-oss-20b", 24, 32, 12.8)])
def test_gpt_oss_layer_by_layer(ident, layers, experts, gib):
    """config.json: hidden 2880, 64 q / 8 kv heads, head_dim 64, experts_per_token 4, intermediate 2880,
    sliding_window 128, layer_types alternating sliding / full from layer 0, attention_bias, sinks."""
    m = get_model(ident)
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == (layers, 2880, 64, 8, 64)
    assert (m.moe.num_experts, m.moe.top_k, m.moe.expert_intermediate_size) == (experts, 4, 2880)
    assert m.moe_layer_indices() == list(range(layers)) and m.num_dense_layers == 0
    a = m.attention
    assert a.sliding_window == 128 and a.sinks and a.qkv_bias and a.o_bias
    assert m.local_layer_indices() == list(range(0, layers, 2))  # sliding on 0, 2, 4, ...; full on 1, 3, 5, ...
    assert m.num_sliding_layers() == layers // 2
    # the sinks: one learned logit per query head per layer, nothing per token
    no_sinks = m.model_copy(update={"attention": a.model_copy(update={"sinks": False})})
    assert m.attention_params() - no_sinks.attention_params() == 64
    # native MXFP4 experts (4.25 bits with the E8M0 scale per 32), everything else bf16: the published checkpoint size
    assert m.native_weights.experts == "mxfp4" and m.native_weights.dense == "bf16"
    assert m.native_weights.checkpoint.value == pytest.approx(gib * GiB)
    assert m.native_weight_bytes() == pytest.approx(gib * GiB, rel=0.01)


def test_native_weights_default_is_bf16_everywhere():
    m = get_model("llama-3.1-8b")
    assert m.native_weights is None and m.native_weight_bytes() == pytest.approx(2.0 * m.total_params)


# ---- Qwen3 family and the vLLM table's dense models ----------------------------------------------


@pytest.mark.parametrize(("ident", "layers", "hidden", "heads", "inter", "tied"), [
    ("qwen3-0.6b", 28, 1024, 16, 3072, True), ("qwen3-1.7b", 28, 2048, 16, 6144, True),
    ("qwen3-4b", 36, 2560, 32, 9728, True), ("qwen3-8b", 36, 4096, 32, 12288, False),
    ("qwen3-14b", 40, 5120, 40, 17408, False), ("qwen3-32b", 64, 5120, 64, 25600, False),
])
def test_qwen3_dense_family(ident, layers, hidden, heads, inter, tied):
    m = get_model(ident)
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == (layers, hidden, heads, 8, 128)
    assert m.intermediate_size == inter and m.tied_embeddings is tied and m.attention.qk_norm
    per_layer = hidden * heads * 128 * 2 + 2 * hidden * 8 * 128 + 2 * 128 + 3 * hidden * inter + 2 * hidden
    assert m.total_params == layers * per_layer + (1 if tied else 2) * 151936 * hidden + hidden


def test_qwen3_0_6b_head_dim_is_not_hidden_over_heads():
    m = get_model("qwen3-0.6b")
    assert m.hidden_size // m.num_heads == 64 and m.head_dim == 128
    assert m.kv_elements_per_token_per_layer() == 2 * 8 * 128


@pytest.mark.parametrize(("ident", "layers", "hidden", "heads", "kv", "inter", "vocab"), [
    ("codellama-34b", 48, 8192, 64, 8, 22016, 32000), ("yi-34b", 60, 7168, 56, 8, 20480, 64000),
    ("mistral-nemo-12b", 40, 5120, 32, 8, 14336, 131072), ("qwen2.5-7b", 28, 3584, 28, 4, 18944, 152064),
])
def test_vllm_table_dense_models(ident, layers, hidden, heads, kv, inter, vocab):
    m = get_model(ident)
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == (layers, hidden, heads, kv, 128)
    assert (m.intermediate_size, m.vocab_size) == (inter, vocab)
    assert not m.is_moe and m.local_layer_indices() == []
    bias = (heads + 2 * kv) * 128 if m.attention.qkv_bias else 0
    per_layer = 2 * hidden * heads * 128 + 2 * hidden * kv * 128 + bias + 3 * hidden * inter + 2 * hidden
    assert m.total_params == layers * per_layer + 2 * vocab * hidden + hidden


def test_mistral_nemo_q_width_is_narrower_than_hidden():
    m = get_model("mistral-nemo-12b")
    assert m.q_dim == 4096 < m.hidden_size == 5120


# ---- schema rules for the new features ----------------------------------------------------------


def _tiny(**attention) -> dict:
    return dict(id="t", name="t", source="test", num_layers=8, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16,
                intermediate_size=128, vocab_size=100, max_context=1024, attention={"kind": "gqa", **attention})


@pytest.mark.parametrize("attention", [
    {"sliding_window": 16, "chunk_size": 32},  # one local kind per model
    {"global_every": 4},  # a pattern with no local attention
    {"sliding_window": 16, "sliding_layers": "alternate", "global_every": 4},  # contradictory patterns
    {"nope_global_layers": True},
])
def test_inconsistent_local_attention_is_rejected(attention):
    with pytest.raises(ValueError):
        Model.model_validate(_tiny(**attention))


def test_alternate_is_global_every_two():
    a = Model.model_validate(_tiny(sliding_window=16, sliding_layers="alternate"))
    b = Model.model_validate(_tiny(sliding_window=16, global_every=2))
    assert a.local_layer_indices() == b.local_layer_indices() == [0, 2, 4, 6]


def test_interleaved_moe_keeps_dense_layers_dense():
    m = Model.model_validate(dict(_tiny(), moe={"num_experts": 4, "top_k": 1, "expert_intermediate_size": 32,
                                                 "interleave_step": 2, "first_dense_layers": 2}))
    assert m.moe_layer_indices() == [3, 5, 7]
    assert m.param_counts()["dense_mlp"] == 5 * m.mlp_params(128)


def test_unknown_native_format_is_rejected():
    with pytest.raises(ValueError, match="mxfp5"):
        Model.model_validate(dict(_tiny(), native_weights={"experts": "mxfp5", "source": "x"}))


# ---- importing config.json shapes (no network) ----------------------------------------------------

LLAMA4_TEXT = {"model_type": "llama4_text", "hidden_size": 5120, "num_hidden_layers": 48, "num_attention_heads": 40,
               "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
               "num_local_experts": 128, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2,
               "attention_chunk_size": 8192, "no_rope_layer_interval": 4, "use_qk_norm": False, "vocab_size": 202048,
               "max_position_embeddings": 1048576, "hidden_act": "silu", "tie_word_embeddings": False}
LLAMA4_VISION = {"model_type": "llama4_vision_model", "hidden_size": 1408, "num_hidden_layers": 34, "intermediate_size": 5632,
                 "patch_size": 14, "image_size": 336, "num_channels": 3, "vision_output_dim": 4096,
                 "projector_input_dim": 4096, "projector_output_dim": 4096}
CONFIGS = {
    "llama-4-maverick-17b-128e": {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
                                  "text_config": LLAMA4_TEXT, "vision_config": LLAMA4_VISION},
    "llama-4-scout-17b-16e": {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
                              "text_config": {**LLAMA4_TEXT, "num_local_experts": 16, "interleave_moe_layer_step": 1,
                                              "no_rope_layers": [int((i + 1) % 4 != 0) for i in range(48)],
                                              "use_qk_norm": True, "max_position_embeddings": 10485760},
                              "vision_config": LLAMA4_VISION},
    "deepseek-r1": {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 7168,
                    "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
                    "intermediate_size": 18432, "moe_intermediate_size": 2048, "n_routed_experts": 256,
                    "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "moe_layer_freq": 1,
                    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                    "v_head_dim": 128, "vocab_size": 129280, "max_position_embeddings": 163840, "hidden_act": "silu",
                    "tie_word_embeddings": False, "num_nextn_predict_layers": 1,
                    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}},
    "gpt-oss-120b": {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": 2880,
                     "num_hidden_layers": 36, "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
                     "intermediate_size": 2880, "num_local_experts": 128, "experts_per_token": 4,
                     "sliding_window": 128, "layer_types": ["sliding_attention", "full_attention"] * 18,
                     "attention_bias": True, "vocab_size": 201088, "max_position_embeddings": 131072,
                     "hidden_act": "silu", "tie_word_embeddings": False,
                     "quantization_config": {"quant_method": "mxfp4",
                                             "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                                        "model.embed_tokens", "lm_head"]}},
    "qwen3-30b-a3b": {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
                      "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                      "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
                      "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [], "vocab_size": 151936,
                      "max_position_embeddings": 40960, "sliding_window": None, "use_sliding_window": False,
                      "tie_word_embeddings": False, "hidden_act": "silu"},
    "qwen3-0.6b": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024,
                   "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                   "intermediate_size": 3072, "vocab_size": 151936, "max_position_embeddings": 40960,
                   "tie_word_embeddings": True, "attention_bias": False, "hidden_act": "silu"},
    "qwen2.5-7b": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
                   "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                   "intermediate_size": 18944, "vocab_size": 152064, "max_position_embeddings": 131072,
                   "sliding_window": 131072, "use_sliding_window": False, "tie_word_embeddings": False, "hidden_act": "silu"},
    "mistral-nemo-12b": {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 5120,
                         "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                         "intermediate_size": 14336, "vocab_size": 131072, "max_position_embeddings": 1024000,
                         "sliding_window": None, "tie_word_embeddings": False, "hidden_act": "silu"},
    "yi-34b": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 7168, "num_hidden_layers": 60,
               "num_attention_heads": 56, "num_key_value_heads": 8, "intermediate_size": 20480, "vocab_size": 64000,
               "max_position_embeddings": 4096, "tie_word_embeddings": False, "hidden_act": "silu"},
    "codellama-34b": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
                      "num_hidden_layers": 48, "num_attention_heads": 64, "num_key_value_heads": 8,
                      "intermediate_size": 22016, "vocab_size": 32000, "max_position_embeddings": 16384,
                      "tie_word_embeddings": False, "hidden_act": "silu"},
}


def _import(tmp_path, cfg: dict, ident: str = "imported") -> Model:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return spec_from_hf_config(path, ident)[0]


@pytest.mark.parametrize("ident", sorted(CONFIGS))
def test_import_reproduces_the_built_in_architecture(tmp_path, ident):
    got, want = _import(tmp_path, CONFIGS[ident]), get_model(ident)
    assert got.param_counts() == want.param_counts()
    assert got.active_params == want.active_params
    assert got.moe_layer_indices() == want.moe_layer_indices()
    assert got.local_layer_indices() == want.local_layer_indices()
    assert got.attention.local_window == want.attention.local_window
    assert got.kv_elements_per_token_per_layer() == want.kv_elements_per_token_per_layer()
    for field in ("sinks", "qkv_bias", "o_bias", "qk_norm", "chunk_size", "sliding_window", "nope_global_layers"):
        assert getattr(got.attention, field) == getattr(want.attention, field), field
    assert got.mtp_layers == want.mtp_layers
    if want.native_weights:
        assert (got.native_weights.experts, got.native_weights.dense) == (want.native_weights.experts, want.native_weights.dense)
        assert got.native_weights.scale_block == want.native_weights.scale_block  # weight_block_size [128, 128]: 128


def test_import_explicit_moe_layers_list(tmp_path):
    cfg = json.loads(json.dumps(CONFIGS["llama-4-maverick-17b-128e"]))
    del cfg["text_config"]["interleave_moe_layer_step"]
    cfg["text_config"]["moe_layers"] = list(range(1, 48, 2))
    assert _import(tmp_path, cfg).moe_layer_indices() == list(range(1, 48, 2))


@pytest.mark.parametrize(("patch", "message"), [
    ({"layer_types": ["sliding_attention", "full_attention", "full_attention"] * 12}, "not every n-th layer"),
    # linear-attention layers are modelled (Gated DeltaNet), but only with their linear_* head keys
    ({"layer_types": ["linear_attention", "full_attention"] * 18}, "linear_num_key_heads"),
    ({"layer_types": ["mamba", "full_attention"] * 18}, "mamba"),
    ({"mlp_only_layers": [5, 9]}, "not a leading block"),
])
def test_import_refuses_patterns_it_cannot_express(tmp_path, patch, message):
    base = "qwen3-30b-a3b" if "mlp_only_layers" in patch else "gpt-oss-120b"
    with pytest.raises(PlannerError, match=message):
        _import(tmp_path, {**CONFIGS[base], **patch})


def test_import_leading_dense_block_from_mlp_only_layers(tmp_path):
    m = _import(tmp_path, {**CONFIGS["qwen3-30b-a3b"], "mlp_only_layers": [0, 1]})
    assert m.moe_layer_indices() == list(range(2, 48)) and m.num_dense_layers == 2
    assert np.isclose(m.param_counts()["dense_mlp"], 2 * 3 * 2048 * 6144)


def test_gemma2_config_imports_as_the_built_in_spec(tmp_path):
    """Gemma 2's config.json has no layer_types and no tie_word_embeddings key: the importer alternates the 4096-token
    window starting with layer 0 (HF Gemma2DecoderLayer: is_sliding = not layer_idx % 2), ties the embeddings (the
    Gemma2Config default), counts four norms per layer and a gated GeGLU MLP, as model_specs/gemma-2-9b.yaml does."""
    cfg = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 3584, "num_attention_heads": 16,
           "num_key_value_heads": 8, "head_dim": 256, "num_hidden_layers": 42, "intermediate_size": 14336,
           "hidden_activation": "gelu_pytorch_tanh", "vocab_size": 256000, "max_position_embeddings": 8192,
           "sliding_window": 4096}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    m, _ = spec_from_hf_config(p)
    ref = get_model("gemma-2-9b")
    assert m.total_params == ref.total_params
    assert m.num_sliding_layers() == ref.num_sliding_layers() == 21
    assert m.tied_embeddings and m.ffn_gated and m.norms_per_layer == 4
