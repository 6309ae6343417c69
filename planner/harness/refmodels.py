"""Reference models for end-to-end runs: a dense Llama layout, a mixture of experts (router, top-k
experts, a shared expert) and multi-head latent attention (DeepSeek-V2/V3 MLA), all small enough
for a CPU and sized to the memory the capture may use.

They are synthetic architectures (not released checkpoints): their proportions follow the
families they stand for (GQA 4:1 with 128-wide heads and a ~8/3 gated MLP as in Llama 3; eight
experts of 3/4 the hidden width with top-2 routing and one shared expert, as in fine-grained MoE
models; MLA with 64+32-wide query/key heads, 64-wide values and a latent of 1/4 the hidden width
as in DeepSeek-V2-Lite). ``planner profile`` writes each spec to CAPTURE/models/<id>.yaml so
``planner validate`` predicts the capture's rows from exactly the model that ran.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from planner.harness.transformer import Config
from planner.specs.model import Model

VOCAB = 8192
WIDTHS = (256, 512, 768, 1024, 1536, 2048, 3072)  # hidden sizes tried, largest first that fits
SOURCE = "synthetic reference model of planner.harness.refmodels (random weights; proportions of its family)"


def _round(x: float, to: int = 256) -> int:
    return max(to, int(round(x / to)) * to)


def dense(dim: int) -> Model:
    heads = max(2, dim // 128)
    return Model(id=f"ref-dense-{dim}", name=f"reference dense decoder, hidden {dim}", source=SOURCE, num_layers=4,
                 hidden_size=dim, num_heads=heads, num_kv_heads=max(1, heads // 4), head_dim=128,
                 intermediate_size=_round(8 * dim / 3), vocab_size=VOCAB, max_context=8192,
                 attention={"kind": "gqa"})


def moe(dim: int) -> Model:
    heads = max(2, dim // 128)
    width = _round(0.75 * dim, 128)
    return Model(id=f"ref-moe-{dim}", name=f"reference mixture of experts, hidden {dim}", source=SOURCE, num_layers=3,
                 hidden_size=dim, num_heads=heads, num_kv_heads=max(1, heads // 4), head_dim=128,
                 intermediate_size=width, vocab_size=VOCAB, max_context=8192, attention={"kind": "gqa"},
                 # the harness's router is random weights over random activations: it routes evenly, without the skew
                 # a trained router has (planner.costmodel.step.routing_skew)
                 moe={"num_experts": 8, "top_k": 2, "expert_intermediate_size": width, "num_shared_experts": 1,
                      "routing_skew": 0.0})


def mla(dim: int) -> Model:
    heads = max(2, dim // 64)
    return Model(id=f"ref-mla-{dim}", name=f"reference multi-head latent attention, hidden {dim}", source=SOURCE,
                 num_layers=4, hidden_size=dim, num_heads=heads, num_kv_heads=heads, head_dim=96,
                 intermediate_size=_round(8 * dim / 3), vocab_size=VOCAB, max_context=8192,
                 attention={"kind": "mla", "mla": {"kv_lora_rank": max(64, dim // 4), "qk_nope_head_dim": 64,
                                                   "qk_rope_head_dim": 32, "v_head_dim": 64}})


KINDS = {"dense": dense, "moe": moe, "mla": mla}


def model_bytes(model: Model, elem_size: int, batch: int, length: int, prompt: int) -> int:
    """Weights, a KV cache of ``batch`` x ``length`` and the largest activations of a ``prompt``-token
    prefill (numpy's attention scores, the MLP's gate/up, MLA's decompressed keys and values)."""
    cfg = Config.from_model(model)
    weights = 2 * cfg.vocab_size * cfg.dim + cfg.n_layers * cfg.layer_params()
    b, one, L, d = cfg.cache_shape(batch, length)
    cache = cfg.n_layers * b * one * L * d * (1 if cfg.mla else 2)
    per_token = max(cfg.n_heads * prompt, 2 * max(cfg.intermediate_size, cfg.expert_size) + cfg.dim, 3 * cfg.q_dim)
    acts = 4 * prompt * per_token + batch * cfg.vocab_size
    return (weights + cache + acts) * elem_size


def reference_models(budget_bytes: int, elem_size: int, batch: int, length: int, prompt: int,
                     kinds=tuple(KINDS)) -> list[Model]:
    """The widest models (one per kind) whose e2e run fits ``budget_bytes``."""
    out = []
    for kind in kinds:
        make = KINDS[kind]
        fits = [w for w in WIDTHS if model_bytes(make(w), elem_size, batch, length, prompt) <= budget_bytes]
        out.append(make(fits[-1] if fits else WIDTHS[0]))
    return out


def host_probe(model: Model) -> Model:
    """The same layers at a negligible width (hidden 64, vocabulary 64): a step of it costs the host
    overhead of the layer code (library calls, Python), not arithmetic or memory traffic."""
    kind = next(k for k in KINDS if model.id.startswith(f"ref-{k}-"))
    probe = KINDS[kind](64)
    return probe.model_copy(update={"id": f"host-{kind}", "name": f"host-overhead probe of {model.id}", "vocab_size": 64,
                                    "num_layers": model.num_layers})


def write_model(model: Model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{model.id}.yaml"
    d = model.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    d = {"id": model.id, "name": model.name, "source": model.source, **d}
    path.write_text("# written by planner profile: the reference model its e2e rows ran\n"
                    + yaml.safe_dump(d, sort_keys=False, width=120))
    return path


def load_captured(path: Path) -> Model:
    """The model a capture's rows ran (CAPTURE/models/*.yaml): its MoE layers route evenly, as the harness's random
    router does, unless the spec says otherwise (captures written before the spec had the field leave it unset)."""
    from planner.specs.loader import get_model

    m = get_model(str(path))
    if m.moe is None or m.moe.routing_skew is not None:
        return m
    return m.model_copy(update={"moe": m.moe.model_copy(update={"routing_skew": 0.0})})

