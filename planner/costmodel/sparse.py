"""Sparse attention as a plan property: which share of the attention a full-attention layer still computes and
reads, per method and kept fraction. The step cost (step.py) and the KV memory (memory.py) read the fields these
functions set on ``PlanArrays``; the accuracy side is ``planner.cap`` (the same method ids and knob).

* DuoAttention: a kept fraction of heads are retrieval heads (full KV, full attention); the others are streaming
  heads that keep only attention sinks + a recent window, in prefill, decode and memory.
* LServe: DuoAttention's streaming heads; the dense heads keep their whole KV but read a constant token budget of
  selected pages per decode step, after scoring every page by its key summary (min/max keys, Quest style).
* MInference: prefill computes the kept share of each head's causal pairs (vertical-slash / block-sparse patterns),
  after a probe of the last queries against every key picks the pattern; decode and memory stay dense.
* StreamingLLM: every head keeps sinks + a recent window of the kept fraction of the context.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from planner.costmodel.plans import PlanArrays
from planner.errors import PlannerError

# DuoAttention streaming heads keep 64 attention-sink tokens and 256 recent tokens (DuoAttention arXiv 2410.10819,
# experimental setup; mit-han-lab/duo-attention defaults sink_size=64, recent_size=256); LServe reuses them.
STREAM_SINK_TOKENS = 64
STREAM_RECENT_TOKENS = 256
# LServe dense heads read a constant 4096-token budget of KV pages per decode step, chosen by scoring each 16-token
# logical page by its min/max key (LServe arXiv 2502.14866 §4; Quest arXiv 2406.10774 page scoring).
LSERVE_TOKEN_BUDGET = 4096
LSERVE_PAGE_TOKENS = 16
# MInference estimates each head's pattern from the last 64 queries against every key (MInference arXiv 2407.02490
# §3.2, last_q = 64)
MINFERENCE_PROBE_QUERIES = 64

SPARSE_ALIASES = {"duo": "duoattention"}  # the short name the issue uses

FIELDS = ("sa_dense", "sa_window", "sa_prefill_keep", "sa_decode_budget", "sa_select", "sa_probe_q")


def parse_sparse_attention(text: str) -> tuple[str, float]:
    """``METHOD:KEPT`` (``duoattention:0.5``) -> (canonical method, kept fraction in (0, 1])."""
    from planner.cap.techniques import sparse_method

    method, _, kept = str(text).partition(":")
    method = SPARSE_ALIASES.get(method.strip().lower(), method)
    try:
        f = float(kept)
    except ValueError:
        raise PlannerError(f"sparse attention takes METHOD:KEPT_FRACTION such as duoattention:0.5, got {text!r}") from None
    if not 0.0 < f <= 1.0:
        raise PlannerError(f"{text}: the kept fraction must lie in (0, 1]; 1 is dense attention")
    return sparse_method(method), f


def sparse_fields(method: str, kept, context_tokens) -> dict:
    """Plan fields of ``method`` keeping ``kept`` (a number or an array) at ``context_tokens`` of context."""
    kept = np.asarray(kept, dtype=float)
    stream = float(STREAM_SINK_TOKENS + STREAM_RECENT_TOKENS)
    if method in ("duoattention", "lserve"):
        out = {"sa_dense": kept, "sa_window": stream}
        if method == "lserve":
            out.update(sa_decode_budget=float(LSERVE_TOKEN_BUDGET), sa_select=1.0 / LSERVE_PAGE_TOKENS)
        return out
    if method == "minference":
        return {"sa_prefill_keep": kept, "sa_probe_q": float(MINFERENCE_PROBE_QUERIES)}
    if method == "streamingllm":
        return {"sa_dense": np.zeros_like(kept), "sa_window": np.maximum(np.floor(kept * np.asarray(context_tokens, float)),
                                                                         float(STREAM_SINK_TOKENS))}
    raise PlannerError(f"no cost model for sparse attention method {method!r}")


def with_sparse(plans: PlanArrays, method: str | None, kept, context_tokens) -> PlanArrays:
    """``plans`` with ``method`` applied (kept = 1 or no method: unchanged, dense attention)."""
    if not method or np.all(np.asarray(kept) >= 1.0):
        return plans
    return dataclasses.replace(plans, **sparse_fields(method, kept, context_tokens))


def with_sparse_rows(plans: PlanArrays, methods: list[str], code: np.ndarray, kept: np.ndarray, context_tokens) -> PlanArrays:
    """Per-row sparse attention: ``methods[code[i]]`` ("" = dense) keeping ``kept[i]`` on plan row i."""
    n = plans.n
    cols = {f: np.broadcast_to(np.asarray(getattr(plans, f), float), (n,)).copy() for f in FIELDS}
    for j, m in enumerate(methods):
        rows = np.nonzero(code == j)[0]
        if not m or not len(rows):
            continue
        ctx = context_tokens if np.ndim(context_tokens) == 0 else np.asarray(context_tokens, float)[rows]
        for f, v in sparse_fields(m, kept[rows], ctx).items():
            cols[f][rows] = np.broadcast_to(v, (len(rows),))
    return dataclasses.replace(plans, **cols)
