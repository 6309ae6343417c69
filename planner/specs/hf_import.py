"""Turn a Hugging Face ``config.json`` into a model spec (no network).

Reads the shapes of the families users serve today: Llama 2/3 and Code Llama, Mistral / NeMo,
Qwen2.5 and Qwen3 (dense and MoE), Yi, Mixtral, DeepSeek-V3/R1 (MLA, shared experts, dense
prefix), gpt-oss (attention sinks, alternating sliding window, biased experts, MXFP4), Gemma 2 and 3
(GeGLU, four norms per layer, alternating or 5:1 local layers, Gemma 3's ``text_config`` and its defaults), and
Llama-4 (``text_config`` / ``vision_config``, interleaved MoE, chunked attention, NoPE layers).
A layer pattern the schema cannot express is an error, never a silent approximation.
"""

from __future__ import annotations

from pathlib import Path

from planner.errors import PlannerError
from planner.specs.loader import read_json, validate_file
from planner.specs.model import Model, SparseIndex

_LOCAL_TYPES = {"sliding_attention": "sliding", "chunked_attention": "chunked", "linear_attention": "linear"}


def _need(cfg: dict, *keys, default=None):
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    if default is not None:
        return default
    raise PlannerError(f"config.json lacks {keys[0]!r} (looked for {', '.join(keys)})")


def _period(flags: list[bool], what: str) -> int | None:
    """n such that flags[i] is True exactly where (i + 1) % n == 0; None when no flag is set."""
    hits = [i for i, f in enumerate(flags) if f]
    if not hits:
        return None
    n = hits[0] + 1
    if [(i + 1) % n == 0 for i in range(len(flags))] != list(flags):
        raise PlannerError(f"config.json {what} {hits} is not every n-th layer; the spec cannot express it")
    return n


def _layer_types(cfg: dict, layers: int) -> list[str] | None:
    """'full' | 'sliding' | 'chunked' | 'linear' per layer, from layer_types, Qwen3-Next's full_attention_interval or
    Llama-4's no_rope_layers."""
    types = cfg.get("layer_types")
    if types:
        out = []
        for t in types[:layers]:
            if t != "full_attention" and t not in _LOCAL_TYPES:
                raise PlannerError(f"config.json layer_types has {t!r}; only full, sliding, chunked and linear (Gated DeltaNet) "
                                   "attention are modelled")
            out.append(_LOCAL_TYPES.get(t, "full"))
        return out
    if str(cfg.get("model_type", "")) == "gemma2" and cfg.get("sliding_window"):
        # Gemma 2 has no layer_types: HF Gemma2DecoderLayer is_sliding = not bool(layer_idx % 2), local layers first
        return ["sliding" if i % 2 == 0 else "full" for i in range(layers)]
    if _is_gemma3(cfg) and cfg.get("sliding_window"):
        # Gemma 3 configs written before layer_types: layer i is sliding unless (i + 1) % sliding_window_pattern == 0
        # (Gemma3TextConfig's default pattern 6: five local layers, then a global one)
        every = int(cfg.get("sliding_window_pattern") or 6)
        return ["full" if (i + 1) % every == 0 else "sliding" for i in range(layers)]
    if cfg.get("linear_num_value_heads") and cfg.get("full_attention_interval"):
        # Qwen3-Next: layer i is full attention when (i + 1) % full_attention_interval == 0, else Gated DeltaNet
        every = int(cfg["full_attention_interval"])
        return ["full" if (i + 1) % every == 0 else "linear" for i in range(layers)]
    if cfg.get("attention_chunk_size") and str(cfg.get("model_type", "")).startswith("llama4"):
        every = int(cfg.get("no_rope_layer_interval") or 4)  # Llama4TextConfig's default
        rope = cfg.get("no_rope_layers") or [int((i + 1) % every != 0) for i in range(layers)]
        return ["chunked" if r else "full" for r in rope[:layers]]  # Llama-4: RoPE layers are the chunked ones
    return None


# Gemma3TextConfig's defaults for keys the 4B-27B checkpoints' text_config leaves out (transformers
# models/gemma3/configuration_gemma3.py): the vocabulary, the context, tied embeddings, the local window, and the
# heads (8 query, 4 key-value, head_dim 256), which the 4B's text_config does not restate (its mirrors' config.json
# and Megatron-Bridge's gemma3 4B config dict agree)
GEMMA3_DEFAULTS = {"vocab_size": 262208, "max_position_embeddings": 131072, "tie_word_embeddings": True,
                   "sliding_window": 4096, "hidden_activation": "gelu_pytorch_tanh", "num_attention_heads": 8,
                   "num_key_value_heads": 4, "head_dim": 256}


def _is_gemma3(cfg: dict, arch: str = "") -> bool:
    return str(cfg.get("model_type", "")) in ("gemma3", "gemma3_text") or "gemma3" in arch.lower()


def _attention(cfg: dict, arch: str, model_type: str, heads: int, kv_heads: int, layers: int) -> dict:
    att: dict = {"kind": "mha" if kv_heads == heads else ("mqa" if kv_heads == 1 else "gqa")}
    if "qwen2" in arch.lower() or model_type == "qwen2":
        att["qkv_bias"] = True  # q, k, v biased; o_proj is not
    elif cfg.get("attention_bias") or cfg.get("qkv_bias"):
        att["qkv_bias"] = True
        att["o_bias"] = bool(cfg.get("attention_bias"))  # Llama/gpt-oss attention_bias covers o_proj too
    if model_type in ("qwen3", "qwen3_moe") or "qwen3" in arch.lower() or _is_gemma3(cfg, arch):
        att["qk_norm"] = True  # per-head RMSNorm on q and k (Qwen3, Gemma 3)
    if model_type == "gpt_oss" or "gptoss" in arch.lower():
        att["sinks"] = True  # learned per-head sink logits
    if cfg.get("attn_output_gate") or model_type.startswith(("qwen3_next", "qwen3_5")):
        att["output_gate"] = True  # q_proj emits the query and a per-head sigmoid output gate
    types = _layer_types(cfg, layers)
    if types is not None and "linear" in types:
        if {t for t in types} - {"full", "linear"}:
            raise PlannerError("config.json mixes linear-attention and local (sliding or chunked) layers; not modelled")
        att["linear"] = {
            "kind": "gated_deltanet",
            "full_every": _period([t == "full" for t in types], "full-attention layers") or layers + 1,
            "key_heads": int(_need(cfg, "linear_num_key_heads")),
            "value_heads": int(_need(cfg, "linear_num_value_heads")),
            "key_head_dim": int(_need(cfg, "linear_key_head_dim")),
            "value_head_dim": int(_need(cfg, "linear_value_head_dim")),
            "conv_kernel": int(cfg.get("linear_conv_kernel_dim") or 4),
        }
        if str(cfg.get("mamba_ssm_dtype") or "").lower() in ("float32", "fp32"):  # Qwen3.5: an fp32 recurrent state
            att["linear"]["state_dtype"] = "fp32"
    elif types is not None:
        kinds = {t for t in types if t != "full"}
        if len(kinds) > 1:
            raise PlannerError("config.json mixes sliding and chunked layers; the spec has one local kind")
        if kinds:
            if kinds == {"chunked"}:
                att["chunk_size"] = int(_need(cfg, "attention_chunk_size"))
            else:
                att["sliding_window"] = int(_need(cfg, "sliding_window"))
            n = _period([t == "full" for t in types], "full-attention layers")
            if n is not None:
                att["global_every"] = n
                if model_type.startswith("llama4"):  # its full-attention layers are the NoPE ones
                    att["nope_global_layers"] = True
    elif cfg.get("sliding_window") and cfg.get("use_sliding_window", True):
        att["sliding_window"] = int(cfg["sliding_window"])
    if cfg.get("kv_lora_rank"):
        att["kind"] = "mla"
        att["mla"] = {
            "q_lora_rank": cfg.get("q_lora_rank"),
            "kv_lora_rank": int(cfg["kv_lora_rank"]),
            "qk_nope_head_dim": int(cfg["qk_nope_head_dim"]),
            "qk_rope_head_dim": int(cfg["qk_rope_head_dim"]),
            "v_head_dim": int(cfg["v_head_dim"]),
        }
        if cfg.get("index_topk"):  # DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5): the lightning indexer's keys
            att["index"] = {"topk": int(cfg["index_topk"]), "heads": int(_need(cfg, "index_n_heads")),
                            "head_dim": int(_need(cfg, "index_head_dim"))}
            if cfg.get("index_topk_freq"):  # IndexShare (GLM-5.2): an indexer every freq layers after the offset
                att["index"]["topk_freq"] = int(cfg["index_topk_freq"])
                if cfg.get("index_skip_topk_offset") is not None:
                    att["index"]["skip_topk_offset"] = int(cfg["index_skip_topk_offset"])
            _check_indexer_types(cfg, att["index"])
    return att


def _check_indexer_types(cfg: dict, index: dict) -> None:
    """A config.json that lists each layer's indexer (indexer_types: "full" or "shared") must list the layers the
    frequency and offset give; another pattern is not modelled."""
    types = cfg.get("indexer_types")
    if not isinstance(types, list):
        return
    ix = SparseIndex(**index)
    if [str(t).lower() for t in types] != ["full" if ix.computes(i) else "shared" for i in range(len(types))]:
        raise PlannerError("config.json's indexer_types lists a pattern of shared indexers other than every "
                           f"index_topk_freq-th layer after index_skip_topk_offset ({ix.topk_freq}, "
                           f"{ix.skip_topk_offset}): not modelled")


def _moe(cfg: dict, model_type: str, inter: int, layers: int) -> dict | None:
    n_exp = cfg.get("n_routed_experts") or cfg.get("num_local_experts") or cfg.get("num_experts")
    if not n_exp:
        return None
    moe = {
        "num_experts": int(n_exp),
        "top_k": int(_need(cfg, "num_experts_per_tok", "num_experts_per_token", "experts_per_token", "top_k")),
        "expert_intermediate_size": int(cfg.get("moe_intermediate_size") or inter),
        "num_shared_experts": int(cfg.get("n_shared_experts") or 0),
        "first_dense_layers": int(cfg.get("first_k_dense_replace") or 0),
    }
    if cfg.get("shared_expert_intermediate_size") and not moe["num_shared_experts"]:
        moe["num_shared_experts"] = 1  # Qwen2-MoE / Qwen3-Next: one gated shared expert of its own width
        moe["shared_expert_intermediate_size"] = int(cfg["shared_expert_intermediate_size"])
    if model_type.startswith("llama4"):
        moe["num_shared_experts"] = 1  # Llama4TextMoe always has one shared expert as wide as a routed one
        moe["shared_expert_intermediate_size"] = moe["expert_intermediate_size"]
    if model_type == "gpt_oss":
        moe["expert_bias"] = True
    if cfg.get("moe_layers") is not None:  # Llama-4's explicit list overrides interleave_moe_layer_step
        explicit = set(cfg["moe_layers"])
        moe["interleave_step"] = _period([i in explicit for i in range(layers)], "moe_layers") or 1
    else:
        step = cfg.get("interleave_moe_layer_step") or cfg.get("decoder_sparse_step") or cfg.get("moe_layer_freq") or 1
        moe["interleave_step"] = int(step)
    dense_only = sorted(cfg.get("mlp_only_layers") or [])
    if dense_only:
        if dense_only != list(range(len(dense_only))):
            raise PlannerError(f"config.json mlp_only_layers {dense_only} are not a leading block of layers")
        moe["first_dense_layers"] = max(moe["first_dense_layers"], len(dense_only))
    return moe


def _vision(cfg: dict) -> dict | None:
    v = cfg.get("vision_config")
    if not isinstance(v, dict) or str(v.get("model_type", "llama4_vision_model")) != "llama4_vision_model":
        return None  # only Llama-4's encoder layout is counted; others are left out (say so in notes)
    return {
        "num_layers": int(v.get("num_hidden_layers", 34)),
        "hidden_size": int(v.get("hidden_size", 768)),
        "intermediate_size": int(v.get("intermediate_size", 5632)),
        "patch_size": int(v.get("patch_size", 14)),
        "image_size": int(v.get("image_size", 448)),
        "num_channels": int(v.get("num_channels", 3)),
        "projector_input_dim": int(v.get("projector_input_dim", 4096)),
        "projector_output_dim": int(v.get("projector_output_dim", 4096)),
        "output_dim": int(v.get("vision_output_dim", 7680)),
    }


def _native_weights(cfg: dict, path: Path) -> dict | None:
    q = cfg.get("quantization_config")
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method", "")).lower()
    src = f"{path.name} quantization_config (quant_method {method})"
    if method == "mxfp4":  # gpt-oss: the experts only
        return {"experts": "mxfp4", "dense": "bf16", "embeddings": "bf16", "source": src}
    if method == "fp8":  # DeepSeek-V3/R1 block-scaled FP8 linear layers
        out = {"experts": "fp8", "dense": "fp8", "embeddings": "bf16", "source": src}
        block = q.get("weight_block_size")
        if isinstance(block, list) and block:  # one scale per block x block tile of each weight
            out["scale_block"] = int(block[0])
        return out
    return None


def spec_from_hf_config(path: Path, model_id: str | None = None) -> tuple[Model, dict]:
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise PlannerError(f"{path} does not hold a JSON object")
    top = cfg
    if "text_config" in cfg and "hidden_size" not in cfg:
        cfg = {**cfg, **cfg["text_config"]}
    arch = (top.get("architectures") or cfg.get("architectures") or ["unknown"])[0]
    if _is_gemma3(cfg, arch):
        cfg = {**GEMMA3_DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    model_type = str(cfg.get("model_type") or "")
    h = int(_need(cfg, "hidden_size", "n_embd", "d_model"))
    heads = int(_need(cfg, "num_attention_heads", "n_head", "num_heads"))
    kv_heads = int(_need(cfg, "num_key_value_heads", "num_kv_heads", default=heads))
    head_dim = int(cfg.get("head_dim") or h // heads)
    layers = int(_need(cfg, "num_hidden_layers", "n_layer", "num_layers"))
    inter = int(_need(cfg, "intermediate_size", "n_inner", "ffn_hidden_size", default=4 * h))
    act = str(cfg.get("hidden_activation") or cfg.get("hidden_act") or cfg.get("activation_function") or "silu")
    gemma = model_type == "gemma2" or "gemma2" in arch.lower() or _is_gemma3(cfg, arch)  # Gemma 3 keeps Gemma 2's layout
    # Gemma's GeGLU (gelu_pytorch_tanh on the gate) has gate, up and down matrices like SwiGLU
    gated = act in ("silu", "swiglu", "geglu") or "llama" in arch.lower() or "mistral" in arch.lower() or gemma
    ident = model_id or str(cfg.get("_name_or_path") or path.stem).split("/")[-1].lower()
    moe = _moe(cfg, model_type, inter, layers)
    spec: dict = {
        "id": ident,
        "name": cfg.get("_name_or_path") or ident,
        "source": f"imported from {path.name} ({arch})",
        "num_layers": layers,
        "hidden_size": h,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        # the dense MLP's width: Llama-4 keeps it apart from the expert width
        "intermediate_size": int(cfg.get("intermediate_size_mlp") or inter),
        "ffn_gated": gated,
        "mlp_bias": bool(cfg.get("mlp_bias", False)),
        "vocab_size": int(_need(cfg, "vocab_size")),
        # Gemma2Config defaults tie_word_embeddings to true and its config.json leaves the key out
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", gemma)),
        "max_context": int(_need(cfg, "max_position_embeddings", "n_positions", "seq_length", default=4096)),
        "attention": _attention(cfg, arch, model_type, heads, kv_heads, layers),
    }
    if gemma:
        spec["norms_per_layer"] = 4  # input, post-attention, pre-feedforward and post-feedforward RMSNorm
    if spec["attention"]["kind"] == "mla":
        spec["num_kv_heads"] = heads
        spec["head_dim"] = int(cfg["qk_nope_head_dim"]) + int(cfg["qk_rope_head_dim"])
    if moe:
        spec["moe"] = moe
    mtp = cfg.get("num_nextn_predict_layers") or cfg.get("mtp_num_hidden_layers")
    if mtp:  # DeepSeek-V3/R1's and Qwen3-Next's multi-token-prediction module (not counted)
        spec["mtp_layers"] = int(mtp)
    for key, value in (("vision", _vision(top)), ("native_weights", _native_weights(top, path))):
        if value:
            spec[key] = value
    model = validate_file(Model, path, spec)
    return model, spec
