"""The accuracy (A) side of the C/A/P trade: how much of the bf16 model's quality a plan keeps.

``A = prod_i r_i'`` over the lossy techniques a plan uses, with ``r_i' = max(0, 1 - k * s * (1 - r_i))``:

* ``r_i`` -- published recovery of technique i against the unmodified bf16 model (= 1.0), from
  ``accuracy/accuracy.yaml``, where every row names its source, evidence and basis. Formats
  (weights, KV cache) are single numbers; KV eviction, context extension past the trained context,
  prompt compression and sparse attention are curves of one knob (``planner.cap.techniques``);
* ``k`` -- task-class sensitivity (knowledge/general 1, math/code/reasoning 2.5);
* ``s`` -- model-size factor, weight formats only: ``clip((params / 8e9) ** -0.2, 0.5, 1.5)``,
  a fit to QServe's Llama-2 7B vs 70B rows (1 when the size is unknown).

MoE experts at a lower precision mix the two formats' losses by the expert fraction; routing a
share of requests to a smaller model (IC-Cache) multiplies by ``1 - f (1 - q)`` with the small
model's quality q given by the user. Speculative decoding, TP/PP/EP/CP, disaggregation, prefix
caching, KV offload, distributed KV pools, LoRA adapters, co-location, intra-GPU prefill/decode
split and migration leave the output unchanged: ``lossless_factor`` returns exactly 1.0.

The score is relative to the same model in bf16 on the same task class; it says nothing about
the base model's own quality (a quantized 70B usually beats a bf16 8B, see the reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from planner.cap.accuracy_data import (  # noqa: F401  (re-exported: the schema lived here)
    AccuracyData, EvictionMethod, EvictionTable, Lossless, Recovery, SizeAdjustment, TaskClass, data, data_path)
from planner.cap.techniques import (  # noqa: F401  (re-exported)
    cap_trade, compression_method, compression_recovery, eviction_method, eviction_recovery, extension_method,
    extension_recovery, known_methods, parse_knob, routing_factor, sparse_method, sparse_recovery)
from planner.errors import PlannerError, unknown
from planner.specs.quant import canonical, get_format

RELATIVE_TO = "bf16 model = 1.0"
LOSSLESS_FACTOR = 1.0
_method = eviction_method  # the old private name


# ---------------------------------------------------------------- lookups

def task_class(task: str) -> TaskClass:
    t = data().tasks
    if task not in t:
        raise unknown("task class", task, t)
    return t[task]


def weight_recovery(fmt: str) -> Recovery:
    w = data().weights
    key = fmt if fmt in w else canonical(fmt)
    if key not in w:
        raise unknown("weight precision", fmt, w)
    return w[key]


def kv_recovery(fmt: str) -> Recovery:
    k = data().kv
    key = fmt if fmt in k else canonical(fmt)
    if key not in k:
        raise unknown("KV-cache precision", fmt, k)
    return k[key]


def lossless_techniques() -> dict[str, str]:
    """Techniques that change P (and C) but never A, each with why: factor exactly 1.0."""
    return {k: f"{v.evidence} ({v.source})" for k, v in data().lossless.items()}


def lossless_factor(technique: str) -> float:
    """Accuracy factor of a lossless technique: exactly 1.0 (unknown names raise)."""
    t = data().lossless
    if technique not in t:
        raise unknown("lossless technique", technique, t)
    return LOSSLESS_FACTOR


def lossless_trade(technique: str) -> str:
    """The C/A/P phrase of a lossless technique: ``"A unchanged (prefix_caching: exact reuse ...)"``."""
    lossless_factor(technique)
    why = data().lossless[technique].evidence.split(";")[0].split(". ")[0]
    return f"A unchanged ({technique}: {why})"


# ---------------------------------------------------------------- the model

def effective(r, k: float, s=1.0):
    """r' = max(0, 1 - k * s * (1 - r)); works on floats and arrays."""
    out = np.maximum(0.0, 1.0 - k * np.asarray(s, dtype=float) * (1.0 - np.asarray(r, dtype=float)))
    return float(out) if out.ndim == 0 else out


def size_factor(model_params=None):
    """Multiplier on a weight format's loss for a model of ``model_params`` parameters.

    ``clip((params / 8e9) ** -0.2, 0.5, 1.5)``; 1.0 for None or NaN (size unknown). Arrays in, array out.
    """
    if model_params is None:
        return 1.0
    sa = data().size_adjustment
    if isinstance(model_params, (int, float)) and model_params == model_params:  # a plain number: no numpy
        if model_params <= 0:
            raise PlannerError("model_params must be a positive parameter count")
        return min(max((model_params / sa.reference_params) ** sa.exponent, sa.clip[0]), sa.clip[1])
    p = np.asarray(model_params, dtype=float)
    if np.any(p[~np.isnan(p)] <= 0):
        raise PlannerError("model_params must be a positive parameter count")
    with np.errstate(invalid="ignore"):
        f = np.clip((p / sa.reference_params) ** sa.exponent, *sa.clip)
    f = np.where(np.isnan(p), 1.0, f)
    return float(f) if f.ndim == 0 else f


def budget_fraction(budget_tokens: float, context_tokens: float) -> float:
    if context_tokens <= 0 or budget_tokens <= 0:
        raise PlannerError("KV eviction budget and context must be positive token counts")
    return min(1.0, budget_tokens / context_tokens)


def parse_eviction(eviction) -> tuple[str, float] | None:
    """Normalize an eviction spec to (method, budget fraction), or None.

    Accepts None; ``(method, fraction)``; ``(method, budget_tokens, context_tokens)``;
    ``"snapkv@0.25"`` or ``"snapkv@128/8192"``; or a dict with ``method`` and either
    ``budget_fraction`` or ``budget_tokens`` + ``context_tokens``.
    """
    if eviction is None:
        return None
    bad = PlannerError(f"cannot read KV eviction {eviction!r}: use (method, fraction), 'snapkv@0.25' or 'snapkv@128/8192'")
    if isinstance(eviction, str):
        if "@" not in eviction:
            raise bad
        method, _, b = eviction.partition("@")
        try:
            frac = budget_fraction(*(float(v) for v in b.split("/"))) if "/" in b else float(b)
        except (TypeError, ValueError):
            raise bad from None
    elif isinstance(eviction, dict):
        method = eviction.get("method")
        if "budget_fraction" in eviction:
            frac = float(eviction["budget_fraction"])
        elif "budget_tokens" in eviction and "context_tokens" in eviction:
            frac = budget_fraction(eviction["budget_tokens"], eviction["context_tokens"])
        else:
            raise bad
    elif isinstance(eviction, (tuple, list)) and len(eviction) in (2, 3):
        method = eviction[0]
        frac = float(eviction[1]) if len(eviction) == 2 else budget_fraction(eviction[1], eviction[2])
    else:
        raise bad
    if not isinstance(method, str):
        raise bad
    method = method.strip().lower()
    eviction_method(method)
    if not frac > 0:
        raise PlannerError("KV eviction budget fraction must be above 0")
    return method, min(frac, 1.0)


def parse_extension(spec) -> tuple[str, float] | None:
    """``(method, factor)``, ``"yarn@4"`` or ``{"method": .., "factor": ..}`` (or ``context_tokens`` +
    ``trained_tokens``) -> (canonical method, factor), or None."""
    if isinstance(spec, dict) and "factor" not in spec and {"context_tokens", "trained_tokens"} <= set(spec):
        if not spec["trained_tokens"] > 0:
            raise PlannerError("context extension: trained_tokens must be a positive token count")
        spec = {"method": spec.get("method"), "factor": spec["context_tokens"] / spec["trained_tokens"]}
    p = parse_knob(spec, "context extension", "factor", "yarn@4")
    if p is None:
        return None
    extension_recovery(p[0], p[1])  # checks the name and the factor
    return extension_method(p[0]), p[1]


def parse_compression(spec) -> tuple[str, float] | None:
    p = parse_knob(spec, "prompt compression", "ratio", "llmlingua-2@3")
    if p is None:
        return None
    compression_recovery(p[0], p[1])
    return compression_method(p[0]), p[1]


def parse_sparse(spec) -> tuple[str, float] | None:
    p = parse_knob(spec, "sparse attention", "kept_fraction", "duoattention@0.25")
    if p is None:
        return None
    sparse_recovery(p[0], p[1])
    return sparse_method(p[0]), p[1]


def parse_expert_weights(spec) -> tuple[str, float] | None:
    """``(format, fraction of experts at it)`` or ``"int4@0.5"`` -> (format, fraction), or None."""
    p = parse_knob(spec, "expert weights", "fraction", "int4@0.5")
    if p is None:
        return None
    fmt, f = p
    weight_recovery(fmt)
    if not 0.0 <= f <= 1.0:
        raise PlannerError("expert weights: the fraction of experts at the lower precision must lie in [0, 1]")
    return fmt, f


def parse_routing(spec) -> dict | None:
    """``{"offload_fraction", "small_quality", ["small_quality_without_examples", "example_hit_rate"]}`` or
    ``(offload_fraction, small_quality)`` -> that dict (validated), or None."""
    if spec is None:
        return None
    keys = ("offload_fraction", "small_quality", "small_quality_without_examples", "example_hit_rate")
    if isinstance(spec, (tuple, list)) and 1 <= len(spec) <= 4:
        spec = dict(zip(keys, spec))
    if not isinstance(spec, dict) or "offload_fraction" not in spec or set(spec) - set(keys):
        raise PlannerError(f"cannot read cache routing {spec!r}: give offload_fraction and small_quality "
                           "(optionally small_quality_without_examples, example_hit_rate)")
    routing_factor(**spec)
    return dict(spec)


def _params_phrase(p: float) -> str:
    return f"{p / 1e9:.0f}B" if p >= 1e9 else f"{p / 1e6:.0f}M"


def _weight_term(weights: str, expert, s: float) -> tuple[str, str, float, str]:
    """(label, trade label, r, source) of the weight format, mixed with the expert format if given."""
    w = weight_recovery(weights)
    ex = parse_expert_weights(expert)
    if ex is None or ex[1] == 0.0:
        return f"weights {weights}", f"{weights} weights", w.r, w.source
    fmt, f = ex
    lo = weight_recovery(fmt)
    r = 1.0 - ((1.0 - f) * (1.0 - w.r) + f * (1.0 - lo.r))
    label = f"weights {weights} with {f:.0%} of experts in {fmt}"
    return label, label, r, f"{w.source}; {lo.source}; expert mixing: {data().expert_precision.source}"


def _curve_terms(eviction, context_extension, prompt_compression, sparse_attention) -> list:
    """(label, trade label, r, source) of each knob-driven technique in use."""
    d = data()
    out = []
    ev = parse_eviction(eviction)
    if ev is not None:
        m = eviction_method(ev[0])
        lab = f"KV eviction {m.name} keeping {ev[1]:.1%} of the context"
        out.append((lab, lab, eviction_recovery(*ev), m.source))
    ce = parse_extension(context_extension)
    if ce is not None:
        m = d.context_extension.methods[ce[0]]
        out.append((f"context extension {m.name} x{ce[1]:g}", f"{m.name} x{ce[1]:g} context",
                    extension_recovery(*ce), m.source))
    pc = parse_compression(prompt_compression)
    if pc is not None:
        m = d.prompt_compression.methods[pc[0]]
        lab = f"{m.name} prompt compression x{pc[1]:g}"
        out.append((lab, lab, compression_recovery(*pc), m.source))
    sa = parse_sparse(sparse_attention)
    if sa is not None:
        m = d.sparse_attention.methods[sa[0]]
        lab = f"{m.name} sparse attention keeping {sa[1]:.0%}"
        out.append((lab, lab, sparse_recovery(*sa), m.source))
    return out


def _narrow_release(native: str | None) -> bool:
    """Whether a model is released narrower than 16 bit (``native``: its released weight format, None for 16 bit)."""
    return native is not None and native not in ("bf16", "fp16", "fp32")


def model_terms(model) -> dict:
    """What ``accuracy`` takes from the model served (a planner.specs.model.Model): its parameter count (the size
    adjustment) and the format its released checkpoint stores (the reference); ``accuracy(w, kv, **model_terms(m))``."""
    return {"model_params": model.total_params, "native": model.released_weights()}


def keeps_release(weights: str, native: str | None) -> bool:
    """Whether serving ``weights`` keeps a model released in the narrower format ``native`` exactly: that format itself,
    or a wider one (an exact upcast of the released weights). False for a model released in 16 bit (``native`` None)."""
    if not _narrow_release(native):
        return False
    return weights == native or get_format(weights).bits > get_format(native).bits


def accuracy(weights: str, kv: str, task: str = "general", eviction=None, model_params: float | None = None, *,
             context_extension=None, prompt_compression=None, sparse_attention=None, expert_weights=None,
             cache_routing=None, native: str | None = None) -> dict:
    """Quality kept by a plan, relative to the same model in bf16 on the same task class, or to the released
    checkpoint where the model is released in a narrower format (``native``: its weights' format, the experts' for
    a MoE; gpt-oss's MXFP4, DeepSeek-V3's FP8). Serving the released format, or any wider one (an exact upcast of
    the released weights), loses nothing against it; a different format of equal or fewer bits requantizes and is
    priced by the published deltas as from bf16.

    Returns ``score`` (0..1), ``relative_to``, ``lowered_by`` (one phrase per lossy technique with
    its factor), ``cap_trade`` (what each gives up: ``"A -3.5% (YaRN x4 context)"``) and ``sources``.
    Knob specs: ``eviction`` see ``parse_eviction``; ``context_extension=(method, factor)``;
    ``prompt_compression=(method, ratio)``; ``sparse_attention=(method, kept_fraction)``;
    ``expert_weights=(format, fraction of experts)``; ``cache_routing`` see ``parse_routing``.
    """
    t = task_class(task)
    s = size_factor(model_params)
    k = kv_recovery(kv)
    wl, wt, wr, ws = _weight_term(weights, expert_weights, s)
    if expert_weights is None and keeps_release(weights, native):
        wr = 1.0  # the released weights themselves, or an exact upcast of them
    # (label, trade label, factor, r, source, size factor)
    terms = [(wl, wt, effective(wr, t.k, s), wr, ws, s), (f"KV {kv}", f"{kv} KV cache", effective(k.r, t.k), k.r, k.source, 1.0)]
    terms += [(a, b, effective(r, t.k), r, src, 1.0) for a, b, r, src in
              _curve_terms(eviction, context_extension, prompt_compression, sparse_attention)]
    route = parse_routing(cache_routing)
    if route is not None:
        g = routing_factor(**route)
        lab = f"cache routing of {route['offload_fraction']:.0%} of requests to a smaller model"
        terms.append((lab, lab, g, g, data().cache_routing.source, 1.0))
    score, lowered_by, trades, sources = 1.0, [], [], []
    for label, trade, f, r, src, sf in terms:
        score *= f
        if f >= 1.0:
            continue
        detail = []
        if t.k != 1.0 or sf != 1.0:
            detail.append(f"r {r:.3f}")
        if t.k != 1.0:
            detail.append(f"{task} k={t.k:g}")
        if sf != 1.0:
            detail.append(f"{_params_phrase(float(model_params))} model, loss x{sf:.2f}")
        lowered_by.append(f"{label} x{f:.3f}" + (f" ({', '.join(detail)})" if detail else ""))
        trades.append(cap_trade(f, trade))
        sources.append(src)
        if sf != 1.0:
            sources.append(f"size adjustment: {data().size_adjustment.source}")
    if lowered_by and t.k != 1.0:
        sources.append(f"task sensitivity ({task}): {t.source}")
    return {"score": round(score, 4), "relative_to": f"released {native} checkpoint = 1.0" if _narrow_release(native) else RELATIVE_TO,
            "lowered_by": lowered_by, "cap_trade": trades,
            "sources": list(dict.fromkeys(sources))}


def _broadcast_str(x, n: int, what: str) -> np.ndarray:
    if isinstance(x, str) or x is None:
        return np.full(n, "" if x is None else x, dtype=object).astype(str)
    if isinstance(x, np.ndarray) and x.dtype.kind == "U":
        a = x.reshape(-1)
    else:
        a = np.array(["" if v is None else str(v) for v in x], dtype=str)
    if a.shape != (n,):
        raise PlannerError(f"accuracy_table: {what} has {a.size} entries, expected {n}")
    return a


def _length(*xs) -> int:
    ns = {len(x) for x in xs if x is not None and not isinstance(x, (str, int, float)) and np.ndim(x) > 0}
    if len(ns) > 1:
        raise PlannerError(f"accuracy_table: inputs have different lengths {sorted(ns)}")
    return ns.pop() if ns else 1


def _knob_factors(methods, knob, n: int, k: float, fn, what: str, knob_name: str) -> np.ndarray:
    """Per-plan effective factor of a knob-driven technique ('' or None = not used): one curve call per method."""
    out = np.ones(n)
    if methods is None:
        return out
    names, idx = np.unique(_broadcast_str(methods, n, what), return_inverse=True)
    names = [str(m).strip().lower() for m in names]
    if any(names):
        if knob is None:
            raise PlannerError(f"accuracy_table: {what} needs {knob_name}")
        v = np.broadcast_to(np.asarray(knob, dtype=float), (n,))
        for j, m in enumerate(names):
            if m:
                sel = idx == j
                out[sel] = effective(fn(m, v[sel]), k)
    return out


def accuracy_table(weights: Sequence[str] | str, kv: Sequence[str] | str, task: str = "general", *,
                   eviction: Sequence[str | None] | str | None = None, budget_fraction=None,
                   model_params=None, context_extension=None, extension_factor=None,
                   prompt_compression=None, compression_ratio=None, sparse_attention=None,
                   kept_fraction=None) -> np.ndarray:
    """``accuracy(...)["score"]`` for many plans at once (unrounded), as a float array.

    ``weights``, ``kv`` and the method ids (``eviction``, ``context_extension``, ``prompt_compression``,
    ``sparse_attention``; None or "" for none) are per-plan sequences or scalars that broadcast, as are
    their knobs (``budget_fraction``, ``extension_factor``, ``compression_ratio``, ``kept_fraction``)
    and ``model_params`` (NaN for unknown size). Formats are looked up once per distinct value and
    curves evaluated once per distinct method, as arrays.
    """
    n = _length(weights, kv, eviction, budget_fraction, model_params, context_extension, extension_factor,
                prompt_compression, compression_ratio, sparse_attention, kept_fraction)
    t = task_class(task)
    w = _broadcast_str(weights, n, "weights")
    uw, iw = np.unique(w, return_inverse=True)
    rw = np.array([weight_recovery(x).r for x in uw])[iw]
    s = np.broadcast_to(np.asarray(size_factor(None if model_params is None else np.asarray(model_params, float)), float), (n,))
    out = effective(rw, t.k, s)
    k = _broadcast_str(kv, n, "kv")
    uk, ik = np.unique(k, return_inverse=True)
    out = out * effective(np.array([kv_recovery(x).r for x in uk])[ik], t.k)
    out = out * _knob_factors(eviction, budget_fraction, n, t.k, eviction_recovery, "eviction", "budget_fraction")
    out = out * _knob_factors(context_extension, extension_factor, n, t.k, extension_recovery,
                              "context_extension", "extension_factor")
    out = out * _knob_factors(prompt_compression, compression_ratio, n, t.k, compression_recovery,
                              "prompt_compression", "compression_ratio")
    out = out * _knob_factors(sparse_attention, kept_fraction, n, t.k, sparse_recovery,
                              "sparse_attention", "kept_fraction")
    return np.asarray(out, dtype=float).reshape(n)


from planner.cap.accuracy_tables import tables  # noqa: E402,F401  (needs the functions above)
