"""Every table of the accuracy model, for ``planner accuracy`` and its ``--json``."""

from __future__ import annotations

from collections.abc import Sequence

from planner.cap.accuracy import (LOSSLESS_FACTOR, RELATIVE_TO, Recovery, data, effective, eviction_recovery,
                                  size_factor, task_class)
from planner.cap.techniques import compression_recovery, extension_recovery, sparse_recovery

EXTENSION_FACTORS = (2, 4, 8, 16, 32)
COMPRESSION_RATIOS = (2, 3, 5, 10, 20)
KEPT_FRACTIONS = (0.5, 0.25, 0.1, 0.05)


def _row(fid: str, rec: Recovery, k: float, s: float = 1.0) -> dict:
    return {"id": fid, "r": rec.r, "low": rec.low, "high": rec.high, "effective": round(effective(rec.r, k, s), 4),
            "basis": rec.basis, "evidence": rec.evidence, "source": rec.source}


def _points(fn, mid: str, knobs, k: float, measured: set) -> list[dict]:
    out = []
    for v in knobs:
        r = float(fn(mid, v))
        out.append({"knob": v, "r": round(r, 4), "effective": round(effective(r, k), 4),
                    "measured": any(abs(v - m) <= 0.02 * m for m in measured)})
    return out


def _curves(k: float) -> list[dict]:
    """The knob-driven techniques as generic tables: one row per method, one cell per knob value."""
    d = data()
    ce, pc, sa = d.context_extension, d.prompt_compression, d.sparse_attention
    ext = [{"id": i, "name": m.name, "basis": m.basis, "evidence": m.evidence, "source": m.source,
            "points": _points(extension_recovery, i, EXTENSION_FACTORS, k,
                              {p[0] for p in (m.points or m.ppl)})} for i, m in ce.methods.items()]
    comp = [{"id": i, "name": m.name, "basis": m.basis, "evidence": m.evidence, "source": m.source,
             "points": _points(compression_recovery, i, COMPRESSION_RATIOS, k,
                               {pc.original_tokens / t for t in m.tokens})} for i, m in pc.methods.items()]
    ev = d.eviction
    sparse = []
    for i, m in sa.methods.items():
        measured = ({p[0] for p in m.points} if m.points is not None
                    else {b / ev.context_tokens for b in ev.budgets_tokens})
        sparse.append({"id": i, "name": m.name, "basis": m.basis, "knob": m.knob, "evidence": m.evidence,
                       "source": m.source, "points": _points(sparse_recovery, i, KEPT_FRACTIONS, k, measured)})
    return [
        {"id": "context_extension", "knob": "factor = context / trained context", "unit": "x",
         "title": "context extension past the trained context (RoPE scaling)", "source": ce.source,
         "note": (f"serve-time rows derived from PPL: loss = {ce.ppl_to_loss:g} x relative PPL rise. "
                  + ce.ppl_to_loss_evidence), "aliases": ce.aliases, "methods": ext},
        {"id": "prompt_compression", "knob": "ratio = original tokens / compressed tokens", "unit": "x",
         "title": f"prompt compression ({pc.benchmark}, target {pc.target_model})", "source": pc.source,
         "note": f"floor: {pc.floor_evidence}, held beyond", "aliases": pc.aliases, "methods": comp},
        {"id": "sparse_attention", "knob": "kept fraction", "unit": "%",
         "title": "sparse attention", "source": "per method", "note": "", "aliases": sa.aliases,
         "methods": sparse},
    ]


def tables(task: str = "general", model_params: float | None = None,
           eviction_budgets: Sequence[int] = (64, 128, 512, 2048)) -> dict:
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
    rules = {name: {"rule": r.rule, "basis": r.basis, "evidence": r.evidence, "source": r.source}
             for name, r in (("expert_precision", d.expert_precision), ("cache_routing", d.cache_routing))}
    return {
        "task": task, "k": t.k, "relative_to": RELATIVE_TO, "model_params": model_params, "size_factor": s,
        "formula": "r' = max(0, 1 - k * s * (1 - r)); score = product of r' over weights, KV format, KV eviction, "
                   "context extension, prompt compression and sparse attention",
        "weights": [_row(i, r, t.k, s) for i, r in d.weights.items()],
        "kv": [_row(i, r, t.k) for i, r in d.kv.items()],
        "eviction": {"model": ev.model, "benchmark": ev.benchmark, "context_tokens": ev.context_tokens,
                     "full_kv_score": ev.full_kv_score, "source": ev.source, "methods": evict},
        "curves": _curves(t.k),
        "rules": rules,
        "tasks": [{"id": i, "k": c.k, "low": c.low, "high": c.high, "evidence": c.evidence, "source": c.source}
                  for i, c in d.tasks.items()],
        "size_adjustment": {"applies_to": sa.applies_to, "reference_params": sa.reference_params,
                            "exponent": sa.exponent, "clip": list(sa.clip), "evidence": sa.evidence, "source": sa.source},
        "lossless": [{"id": i, "factor": LOSSLESS_FACTOR, "evidence": v.evidence, "source": v.source}
                     for i, v in d.lossless.items()],
    }
