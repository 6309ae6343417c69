"""Recovery curves of the knob-driven CAP techniques, each a function of one number:

* KV eviction at a budget fraction (PyramidKV LongBench points);
* context extension past the trained context at a factor s = context / trained context (YaRN's
  ablation for serve-time RoPE scaling, benchmark rows for fine-tuned checkpoints);
* prompt compression at a ratio = original tokens / compressed tokens (LLMLingua-2's LongBench table);
* sparse attention keeping a fraction of the heads or of the attention (DuoAttention, LServe,
  MInference; StreamingLLM reuses the eviction curve);
* cache-aware routing to a smaller model (IC-Cache), from qualities the user gives.

Every curve is 1.0 exactly at the lossless end (s = 1, ratio = 1, kept = 1), piecewise linear in the
log of the knob between published points, and never rises as the technique gets more aggressive.
Methods and knobs may be arrays (one value per plan); the knots are built once per method and cached.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from planner.cap.accuracy_data import data
from planner.errors import PlannerError, unknown


def _out(a):
    a = np.asarray(a, dtype=float)
    return float(a) if a.ndim == 0 else a


def _resolve(kind: str, section, method) -> str:
    if not isinstance(method, str):
        raise PlannerError(f"{kind} method must be a name, got {method!r}")
    m = method.strip().lower()
    m = section.aliases.get(m, m)
    if m not in section.methods:
        raise unknown(f"{kind} method", method, list(section.methods) + list(section.aliases))
    return m


def _check(v, ok, msg: str) -> None:
    if np.ndim(v) == 0:
        if not ok(float(v)):
            raise PlannerError(msg)
    elif not np.all(ok(np.asarray(v, dtype=float))):
        raise PlannerError(msg)


def _evaluate(x: np.ndarray, y: np.ndarray, lu: np.ndarray, beyond: str) -> np.ndarray:
    """Piecewise linear in log(knob) through (x, y), x[0] = 0 (lossless), y[0] = 1.

    Past the last knot: ``slope`` extends the last segment (floored at 0), ``hold`` keeps its value.
    """
    inside = np.interp(lu, x, y)
    if beyond == "hold":
        return inside
    slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
    return np.where(lu > x[-1], np.maximum(0.0, y[-1] + slope * (lu - x[-1])), inside)


# ---------------------------------------------------------------- KV eviction

def eviction_method(method: str):
    m = data().eviction.methods
    if method not in m:
        raise unknown("KV eviction method", method, m)
    return m[method]


@functools.cache
def _eviction_curve(method: str) -> tuple[np.ndarray, np.ndarray]:
    """(log budget fraction, recovery) knots: the measured budgets and (1.0, 1.0)."""
    ev = data().eviction
    m = eviction_method(method)
    x = np.log(np.array([b / ev.context_tokens for b in ev.budgets_tokens] + [1.0]))
    y = np.minimum(1.0, np.array(m.scores + [ev.full_kv_score]) / ev.full_kv_score)
    return x, y


def eviction_recovery(method: str, budget_fraction):
    """Recovery r of an eviction method keeping ``budget_fraction`` of the context's KV.

    Linear in log(budget fraction) between the PyramidKV points; 1.0 at and above the full
    cache; below the smallest measured budget the first segment's slope is extended (an
    extrapolation no row measures), floored at 0. Floats and arrays.
    """
    x, y = _eviction_curve(method)
    f = np.asarray(budget_fraction, dtype=float)
    if np.any(~(f > 0)):
        raise PlannerError("KV eviction budget fraction must be above 0")
    # mirror to the shared form: knob u = 1 / fraction >= 1, knots in log u rising from 0
    r = _evaluate(-x[::-1], y[::-1], -np.log(np.minimum(f, 1.0)), "slope")
    return _out(r)


# ---------------------------------------------------------------- context extension

@functools.cache
def _extension_curve(mid: str) -> tuple[np.ndarray, np.ndarray]:
    ce = data().context_extension
    m = ce.methods[mid]
    if m.points is not None:
        s = [p[0] for p in m.points]
        r = [p[1] for p in m.points]
    else:
        c, base = ce.ppl_to_loss, ce.base_ppl
        s, r = [], []
        for factor, p_short, p_target in m.ppl:
            r_short = 0.0 if p_short is None else 1.0 - c * (p_short / base - 1.0)
            r_long = 0.0 if p_target is None else 1.0 - c * max(0.0, p_target / base - 1.0)
            s.append(factor)
            r.append(min(1.0, max(0.0, min(r_short, r_long))))
        r = list(np.minimum.accumulate(r))  # a larger factor never recovers what a smaller one lost
    return np.log(np.array([1.0] + s)), np.array([1.0] + r)


@functools.lru_cache(maxsize=256)
def extension_method(method: str) -> str:
    """Canonical id of a context-extension method (aliases resolved; unknown names raise)."""
    return _resolve("context-extension", data().context_extension, method)


def extension_recovery(method: str, factor):
    """Recovery of serving ``factor`` x the trained context with ``method`` (floats and arrays)."""
    mid = extension_method(method)
    _check(factor, lambda s: (s >= 1.0) & (s < np.inf),
           "context-extension factor (context / trained context) must be a finite number of at "
           "least 1; at or below the trained context no extension is needed")
    if np.ndim(factor) == 0:
        return _scalar("extension", mid, float(factor))
    x, y = _extension_curve(mid)
    return _out(_evaluate(x, y, np.log(np.asarray(factor, dtype=float)), "slope"))


# ---------------------------------------------------------------- prompt compression

@functools.cache
def _compression_curve(mid: str) -> tuple[np.ndarray, np.ndarray]:
    pc = data().prompt_compression
    m = pc.methods[mid]
    ratio = [pc.original_tokens / t for t in m.tokens] + [pc.original_tokens / pc.floor_tokens]
    r = [min(1.0, v / pc.original_score) for v in m.scores] + [pc.floor_score / pc.original_score]
    return np.log(np.array([1.0] + ratio)), np.array([1.0] + r)


@functools.lru_cache(maxsize=256)
def compression_method(method: str) -> str:
    return _resolve("prompt-compression", data().prompt_compression, method)


def compression_recovery(method: str, ratio):
    """Recovery of compressing prompts ``ratio``-fold (original / compressed tokens) with ``method``.

    Past the zero-shot floor (the whole context dropped) it holds at the floor.
    """
    mid = compression_method(method)
    _check(ratio, lambda q: (q >= 1.0) & (q < np.inf),
           "prompt-compression ratio (original tokens / compressed tokens) must be a finite number of at least 1")
    if np.ndim(ratio) == 0:
        return _scalar("compression", mid, float(ratio))
    x, y = _compression_curve(mid)
    return _out(_evaluate(x, y, np.log(np.asarray(ratio, dtype=float)), "hold"))


# ---------------------------------------------------------------- sparse attention

@functools.lru_cache(maxsize=256)
def sparse_method(method: str) -> str:
    return _resolve("sparse-attention", data().sparse_attention, method)


@functools.cache
def _sparse_curve(mid: str) -> tuple[np.ndarray, np.ndarray]:
    pts = data().sparse_attention.methods[mid].points
    return np.log(1.0 / np.array([1.0] + [p[0] for p in pts])), np.array([1.0] + [p[1] for p in pts])


def sparse_recovery(method: str, kept_fraction):
    """Recovery of sparse attention ``method`` keeping ``kept_fraction`` (0 < kept <= 1) of its unit."""
    mid = sparse_method(method)
    _check(kept_fraction, lambda f: (f > 0.0) & (f <= 1.0),
           "sparse-attention kept fraction must lie in (0, 1]; 1 is dense attention")
    m = data().sparse_attention.methods[mid]
    if m.eviction is not None:
        return eviction_recovery(m.eviction, kept_fraction)
    if np.ndim(kept_fraction) == 0:
        return _scalar("sparse", mid, float(kept_fraction))
    x, y = _sparse_curve(mid)
    return _out(_evaluate(x, y, -np.log(np.asarray(kept_fraction, dtype=float)), "slope"))


_CURVES = {"extension": (_extension_curve, math.log, "slope"), "compression": (_compression_curve, math.log, "hold"),
           "sparse": (_sparse_curve, lambda f: -math.log(f), "slope")}


@functools.lru_cache(maxsize=65536)
def _scalar(kind: str, mid: str, v: float) -> float:
    """One checked knob value of one curve (the search asks for the same few values many times)."""
    curve, to_log, beyond = _CURVES[kind]
    x, y = curve(mid)
    return float(_evaluate(x, y, np.asarray(to_log(v)), beyond))


# ---------------------------------------------------------------- routing to a smaller model (IC-Cache)

def routing_factor(offload_fraction: float, small_quality=None, small_quality_without_examples=None,
                   example_hit_rate: float = 1.0) -> float:
    """Quality kept when ``offload_fraction`` of requests go to a smaller model (IC-Cache).

    ``small_quality``: the small model with cached in-context examples, relative to the big model
    (1.0 = as good). ``example_hit_rate``: the share of offloaded requests that find examples; the
    rest run at ``small_quality_without_examples``. The reference has no per-model numbers, so the
    qualities are inputs.
    """
    f = float(offload_fraction)
    if not 0.0 <= f <= 1.0:
        raise PlannerError("cache routing offload fraction must lie in [0, 1]")
    if f == 0.0:
        return 1.0
    if small_quality is None:
        raise PlannerError("cache routing needs small_quality: the small model's quality with cached examples relative "
                           "to the big model (IC-Cache publishes no per-model number; 1.0 reproduces its claim)")
    h = float(example_hit_rate)
    if not 0.0 <= h <= 1.0:
        raise PlannerError("cache routing example hit rate must lie in [0, 1]")
    if h < 1.0 and small_quality_without_examples is None:
        raise PlannerError("cache routing with example_hit_rate below 1 needs small_quality_without_examples "
                           "(the small model's quality with no cached examples, relative to the big model)")
    q_wo = 1.0 if h == 1.0 else float(small_quality_without_examples)
    for q in (float(small_quality), q_wo):
        if not 0.0 <= q <= 1.0 or math.isnan(q):
            raise PlannerError("cache routing qualities must lie in [0, 1] (relative to the big model)")
    return 1.0 - f * (h * (1.0 - float(small_quality)) + (1.0 - h) * (1.0 - q_wo))


# ---------------------------------------------------------------- spec parsing

def parse_knob(spec, kind: str, key: str, example: str) -> tuple[str, float] | None:
    """Normalize ``(method, value)``, ``"method@value"`` or ``{"method": ..., key: value}`` to a pair."""
    if spec is None:
        return None
    bad = PlannerError(f"cannot read {kind} {spec!r}: use (method, {key}) or '{example}'")
    if isinstance(spec, str):
        method, sep, v = spec.partition("@")
        if not sep:
            raise bad
    elif isinstance(spec, dict):
        if "method" not in spec or key not in spec:
            raise bad
        method, v = spec["method"], spec[key]
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        method, v = spec
    else:
        raise bad
    try:
        value = float(str(v).strip().lstrip("xX")) if isinstance(v, str) else float(v)
    except (TypeError, ValueError):
        raise bad from None
    if not isinstance(method, str):
        raise bad
    return method.strip().lower(), value


def cap_trade(factor: float, label: str) -> str:
    """What a technique gives up, as a phrase: ``"A -3.5% (YaRN x4 context)"``."""
    pct = 100.0 * (factor - 1.0)
    return f"A {pct:+.1f}% ({label})" if abs(pct) >= 0.05 or pct == 0 else f"A {pct:+.2f}% ({label})"


def known_methods() -> dict[str, dict[str, list[str]]]:
    """Method ids and aliases per knob-driven family, for CLI choices and plan-search axes."""
    d = data()
    out = {"eviction": {"methods": list(d.eviction.methods), "aliases": []}}
    for fam, sec in (("context_extension", d.context_extension), ("prompt_compression", d.prompt_compression),
                     ("sparse_attention", d.sparse_attention)):
        out[fam] = {"methods": list(sec.methods), "aliases": list(sec.aliases)}
    return out
