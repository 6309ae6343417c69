"""The accuracy (A) side of the C/A/P trade: how much of the bf16 model's quality a plan keeps.

``A = prod_i r_i'`` over the lossy techniques a plan uses (weight format, KV format, KV eviction),
with ``r_i' = max(0, 1 - k * s * (1 - r_i))``:

* ``r_i`` -- published recovery of technique i against bf16 (bf16 = 1.0), from
  ``accuracy/accuracy.yaml``, where every row names its source and evidence;
* ``k`` -- task-class sensitivity (knowledge/general 1, math/code/reasoning 2.5);
* ``s`` -- model-size factor, weight formats only: ``clip((params / 8e9) ** -0.2, 0.5, 1.5)``,
  a fit to QServe's Llama-2 7B vs 70B rows (1 when the size is unknown).

KV eviction recovery is interpolated in log(budget fraction) between the PyramidKV LongBench
points (Llama-3-8B-Instruct, 8K context). Speculative decoding, TP/PP/EP, prefill/decode
disaggregation, prefix caching and KV offload leave the output unchanged: ``lossless_factor``
returns exactly ``LOSSLESS_FACTOR`` (1.0) for them.

The score is relative to the same model in bf16 on the same task class; it says nothing about
the base model's own quality (a quantized 70B usually beats a bf16 8B, see the reference).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.errors import PlannerError, unknown
from planner.specs.loader import data_dir, read_yaml, validate_file

RELATIVE_TO = "bf16 model = 1.0"
LOSSLESS_FACTOR = 1.0


# ---------------------------------------------------------------- data schema

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Recovery(_Strict):
    """One weight or KV format: recovery r against bf16, with the published spread."""

    r: float = Field(ge=0.0, le=1.0)
    low: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    high: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    basis: Literal["measured", "secondary", "derived", "assumption"]
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _range(self):
        if self.low is not None and self.low > self.r:
            raise ValueError(f"low {self.low} above r {self.r}")
        if self.high is not None and self.high < self.r:
            raise ValueError(f"high {self.high} below r {self.r}")
        return self


class EvictionMethod(_Strict):
    name: str
    scores: list[float]
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


class EvictionTable(_Strict):
    model: str
    benchmark: str
    context_tokens: int = Field(gt=0)
    full_kv_score: float = Field(gt=0)
    budgets_tokens: list[int]
    source: str = Field(min_length=1)
    methods: dict[str, EvictionMethod]

    @model_validator(mode="after")
    def _shape(self):
        b = self.budgets_tokens
        if not b or any(x <= 0 for x in b) or any(y <= x for x, y in zip(b, b[1:])) or b[-1] >= self.context_tokens:
            raise ValueError("budgets_tokens must rise strictly, from above 0 to below context_tokens")
        for mid, m in self.methods.items():
            if len(m.scores) != len(b):
                raise ValueError(f"{mid}: {len(m.scores)} scores for {len(b)} budgets")
        return self


class TaskClass(_Strict):
    k: float = Field(ge=0.0)
    low: Optional[float] = None
    high: Optional[float] = None
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


class SizeAdjustment(_Strict):
    applies_to: Literal["weights"]
    reference_params: float = Field(gt=0)
    exponent: float
    clip: tuple[float, float]
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


class Lossless(_Strict):
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


class AccuracyData(_Strict):
    weights: dict[str, Recovery]
    kv: dict[str, Recovery]
    eviction: EvictionTable
    tasks: dict[str, TaskClass]
    size_adjustment: SizeAdjustment
    lossless: dict[str, Lossless]


def data_path():
    return data_dir("accuracy") / "accuracy.yaml"


@functools.cache
def data() -> AccuracyData:
    """The published deltas (validated; cached)."""
    p = data_path()
    return validate_file(AccuracyData, p, read_yaml(p))


# ---------------------------------------------------------------- lookups

def task_class(task: str) -> TaskClass:
    t = data().tasks
    if task not in t:
        raise unknown("task class", task, t)
    return t[task]


def weight_recovery(fmt: str) -> Recovery:
    w = data().weights
    if fmt not in w:
        raise unknown("weight precision", fmt, w)
    return w[fmt]


def kv_recovery(fmt: str) -> Recovery:
    k = data().kv
    if fmt not in k:
        raise unknown("KV-cache precision", fmt, k)
    return k[fmt]


def _method(method: str) -> EvictionMethod:
    m = data().eviction.methods
    if method not in m:
        raise unknown("KV eviction method", method, m)
    return m[method]


def lossless_techniques() -> dict[str, str]:
    """Techniques that change P (and C) but never A, each with why: factor exactly 1.0."""
    return {k: f"{v.evidence} ({v.source})" for k, v in data().lossless.items()}


def lossless_factor(technique: str) -> float:
    """Accuracy factor of a lossless technique: exactly 1.0 (unknown names raise)."""
    t = data().lossless
    if technique not in t:
        raise unknown("lossless technique", technique, t)
    return LOSSLESS_FACTOR


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
    p = np.asarray(model_params, dtype=float)
    if np.any(p[~np.isnan(p)] <= 0):
        raise PlannerError("model_params must be a positive parameter count")
    with np.errstate(invalid="ignore"):
        f = np.clip((p / sa.reference_params) ** sa.exponent, *sa.clip)
    f = np.where(np.isnan(p), 1.0, f)
    return float(f) if f.ndim == 0 else f


@functools.cache
def _eviction_curve(method: str) -> tuple[np.ndarray, np.ndarray]:
    """(log budget fraction, recovery) knots: the measured budgets and (1.0, 1.0)."""
    ev = data().eviction
    m = _method(method)
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
    lf = np.log(np.minimum(f, 1.0))
    slope0 = (y[1] - y[0]) / (x[1] - x[0])
    out = np.where(lf < x[0], np.maximum(0.0, y[0] + slope0 * (lf - x[0])), np.interp(lf, x, y))
    return float(out) if out.ndim == 0 else out


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
    _method(method)
    if not frac > 0:
        raise PlannerError("KV eviction budget fraction must be above 0")
    return method, min(frac, 1.0)


def _params_phrase(p: float) -> str:
    return f"{p / 1e9:.0f}B" if p >= 1e9 else f"{p / 1e6:.0f}M"


def accuracy(weights: str, kv: str, task: str = "general", eviction=None, model_params: float | None = None) -> dict:
    """Quality kept by a plan, relative to the same model in bf16 on the same task class.

    Returns ``score`` (0..1), ``relative_to``, ``lowered_by`` (one phrase per lossy technique
    with its factor) and ``sources`` (of each technique that lowered the score, plus the task
    and size rows when they applied). ``eviction``: see ``parse_eviction``.
    """
    t = task_class(task)
    w, k = weight_recovery(weights), kv_recovery(kv)
    s = size_factor(model_params)
    terms: list[tuple[str, float, float, str, float]] = []  # (label, factor, r, source, size factor)
    terms.append((f"weights {weights}", effective(w.r, t.k, s), w.r, w.source, s))
    terms.append((f"KV {kv}", effective(k.r, t.k), k.r, k.source, 1.0))
    ev = parse_eviction(eviction)
    if ev is not None:
        method, frac = ev
        m = _method(method)
        r_e = eviction_recovery(method, frac)
        terms.append((f"KV eviction {m.name} keeping {frac:.1%} of the context", effective(r_e, t.k), r_e,
                      m.source, 1.0))
    score, lowered_by, sources = 1.0, [], []
    for label, f, r, src, sf in terms:
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
        sources.append(src)
        if sf != 1.0:
            sources.append(f"size adjustment: {data().size_adjustment.source}")
    if lowered_by and t.k != 1.0:
        sources.append(f"task sensitivity ({task}): {t.source}")
    return {"score": round(score, 4), "relative_to": RELATIVE_TO, "lowered_by": lowered_by,
            "sources": list(dict.fromkeys(sources))}


def _broadcast_str(x, n: int, what: str) -> np.ndarray:
    if isinstance(x, str) or x is None:
        return np.full(n, "" if x is None else x, dtype=object).astype(str)
    a = np.array(["" if v is None else str(v) for v in x], dtype=str)
    if a.shape != (n,):
        raise PlannerError(f"accuracy_table: {what} has {a.size} entries, expected {n}")
    return a


def _length(*xs) -> int:
    ns = {len(x) for x in xs if x is not None and not isinstance(x, (str, int, float)) and np.ndim(x) > 0}
    if len(ns) > 1:
        raise PlannerError(f"accuracy_table: inputs have different lengths {sorted(ns)}")
    return ns.pop() if ns else 1


def accuracy_table(weights: Sequence[str] | str, kv: Sequence[str] | str, task: str = "general", *,
                   eviction: Sequence[str | None] | str | None = None, budget_fraction=None,
                   model_params=None) -> np.ndarray:
    """``accuracy(...)["score"]`` for many plans at once (unrounded), as a float array.

    ``weights``, ``kv``, ``eviction`` (method ids, None or "" for none) and ``budget_fraction``
    / ``model_params`` (numbers, NaN for unknown size) are per-plan sequences or scalars that
    broadcast. Formats are looked up once per distinct value and indexed back; the size and
    eviction curves are evaluated as arrays.
    """
    n = _length(weights, kv, eviction, budget_fraction, model_params)
    t = task_class(task)
    w = _broadcast_str(weights, n, "weights")
    uw, iw = np.unique(w, return_inverse=True)
    rw = np.array([weight_recovery(x).r for x in uw])[iw]
    s = np.broadcast_to(np.asarray(size_factor(None if model_params is None else np.asarray(model_params, float)), float), (n,))
    out = effective(rw, t.k, s)
    k = _broadcast_str(kv, n, "kv")
    uk, ik = np.unique(k, return_inverse=True)
    out = out * effective(np.array([kv_recovery(x).r for x in uk])[ik], t.k)
    if eviction is not None:
        e = np.char.lower(np.char.strip(_broadcast_str(eviction, n, "eviction")))
        used = e != ""
        if used.any():
            if budget_fraction is None:
                raise PlannerError("accuracy_table: eviction needs budget_fraction")
            f = np.broadcast_to(np.asarray(budget_fraction, dtype=float), (n,))
            fe = np.ones(n)
            for m in np.unique(e[used]):
                sel = e == m
                fe[sel] = effective(eviction_recovery(str(m), f[sel]), t.k)
            out = out * fe
    return np.asarray(out, dtype=float).reshape(n)


# ---------------------------------------------------------------- tables for display

def _row(fid: str, rec: Recovery, k: float, s: float = 1.0) -> dict:
    return {"id": fid, "r": rec.r, "low": rec.low, "high": rec.high, "effective": round(effective(rec.r, k, s), 4),
            "basis": rec.basis, "evidence": rec.evidence, "source": rec.source}


def tables(task: str = "general", model_params: float | None = None, eviction_budgets: Sequence[int] = (64, 128, 512, 2048)) -> dict:
    """Every table of the model, with each row's effective factor for ``task`` (and size)."""
    d = data()
    t = task_class(task)
    s = size_factor(model_params)
    ev = d.eviction
    measured = set(ev.budgets_tokens)
    evict = []
    for mid, m in ev.methods.items():
        pts = []
        for b in eviction_budgets:
            frac = b / ev.context_tokens
            r = eviction_recovery(mid, frac)
            pts.append({"budget_tokens": b, "fraction": round(frac, 5), "r": round(r, 4),
                        "effective": round(effective(r, t.k), 4), "measured": b in measured})
        evict.append({"id": mid, "name": m.name, "points": pts, "evidence": m.evidence, "source": m.source})
    sa = d.size_adjustment
    return {
        "task": task, "k": t.k, "relative_to": RELATIVE_TO, "model_params": model_params, "size_factor": s,
        "formula": "r' = max(0, 1 - k * s * (1 - r)); score = product of r' over weights, KV format and KV eviction",
        "weights": [_row(i, r, t.k, s) for i, r in d.weights.items()],
        "kv": [_row(i, r, t.k) for i, r in d.kv.items()],
        "eviction": {"model": ev.model, "benchmark": ev.benchmark, "context_tokens": ev.context_tokens,
                     "full_kv_score": ev.full_kv_score, "source": ev.source, "methods": evict},
        "tasks": [{"id": i, "k": c.k, "low": c.low, "high": c.high, "evidence": c.evidence, "source": c.source}
                  for i, c in d.tasks.items()],
        "size_adjustment": {"applies_to": sa.applies_to, "reference_params": sa.reference_params,
                            "exponent": sa.exponent, "clip": list(sa.clip), "evidence": sa.evidence, "source": sa.source},
        "lossless": [{"id": i, "factor": LOSSLESS_FACTOR, "evidence": v.evidence, "source": v.source}
                     for i, v in d.lossless.items()],
    }
