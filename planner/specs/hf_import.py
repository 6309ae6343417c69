"""Turn a Hugging Face ``config.json`` into a model spec (no network)."""

from __future__ import annotations

from pathlib import Path

from planner.errors import PlannerError
from planner.specs.loader import read_json, validate_file
from planner.specs.model import Model


def _need(cfg: dict, *keys, default=None):
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    if default is not None:
        return default
    raise PlannerError(f"config.json lacks {keys[0]!r} (looked for {', '.join(keys)})")


def spec_from_hf_config(path: Path, model_id: str | None = None) -> tuple[Model, dict]:
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise PlannerError(f"{path} does not hold a JSON object")
    if "text_config" in cfg and "hidden_size" not in cfg:
        cfg = {**cfg, **cfg["text_config"]}
    arch = (cfg.get("architectures") or ["unknown"])[0]
    h = int(_need(cfg, "hidden_size", "n_embd", "d_model"))
    heads = int(_need(cfg, "num_attention_heads", "n_head", "num_heads"))
    kv_heads = int(_need(cfg, "num_key_value_heads", "num_kv_heads", default=heads))
    head_dim = int(cfg.get("head_dim") or h // heads)
    layers = int(_need(cfg, "num_hidden_layers", "n_layer", "num_layers"))
    inter = int(_need(cfg, "intermediate_size", "n_inner", "ffn_hidden_size", default=4 * h))
    act = str(cfg.get("hidden_act") or cfg.get("activation_function") or "silu")
    gated = act in ("silu", "swiglu", "geglu") or "llama" in arch.lower() or "mistral" in arch.lower()
    ident = model_id or str(cfg.get("_name_or_path") or path.stem).split("/")[-1].lower()
    spec: dict = {
        "id": ident,
        "name": cfg.get("_name_or_path") or ident,
        "source": f"imported from {path.name} ({arch})",
        "num_layers": layers,
        "hidden_size": h,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate_size": inter,
        "ffn_gated": gated,
        "vocab_size": int(_need(cfg, "vocab_size")),
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "max_context": int(_need(cfg, "max_position_embeddings", "n_positions", "seq_length", default=4096)),
        "attention": {"kind": "mha" if kv_heads == heads else ("mqa" if kv_heads == 1 else "gqa")},
    }
    att = spec["attention"]
    if cfg.get("attention_bias") or cfg.get("qkv_bias"):
        att["qkv_bias"] = True
    if "qwen2" in arch.lower():
        att["qkv_bias"] = True
    if cfg.get("sliding_window") and cfg.get("use_sliding_window", True):
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
        spec["num_kv_heads"] = heads
        spec["head_dim"] = int(cfg["qk_nope_head_dim"]) + int(cfg["qk_rope_head_dim"])
    n_exp = cfg.get("n_routed_experts") or cfg.get("num_local_experts") or cfg.get("num_experts")
    if n_exp:
        spec["moe"] = {
            "num_experts": int(n_exp),
            "top_k": int(_need(cfg, "num_experts_per_tok", "num_experts_per_token", "top_k")),
            "expert_intermediate_size": int(cfg.get("moe_intermediate_size") or inter),
            "num_shared_experts": int(cfg.get("n_shared_experts") or 0),
            "first_dense_layers": int(cfg.get("first_k_dense_replace") or 0),
        }
    model = validate_file(Model, path, spec)
    return model, spec
