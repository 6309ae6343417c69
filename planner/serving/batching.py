"""Static batching and the in-flight (continuous) batching steady state.

Both are compositions of engine steps from the cost model, vectorized over plans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.costmodel.plans import PlanArrays
from planner.costmodel.step import CostModel, Step, StepCost

DECODE_POINTS = 8  # midpoint rule over the decode contexts; step time is piecewise linear in context


@dataclass
class Timing:
    ttft_s: np.ndarray
    tpot_s: np.ndarray  # mean time between output tokens after the first
    e2e_s: np.ndarray
    output_tokens_per_s: np.ndarray  # per replica
    requests_per_s: np.ndarray  # per replica
    concurrency: np.ndarray
    prefill: StepCost  # a representative prefill step (for the breakdown)
    decode: StepCost  # a representative decode step


def _mean_decode(cm: CostModel, plans: PlanArrays, seqs, ctx0, n_steps) -> tuple[np.ndarray, np.ndarray, StepCost]:
    """Mean step latency and mean stage time over ``n_steps`` decode steps from context ctx0+1."""
    n_steps = np.maximum(np.asarray(n_steps, float), 1.0)
    lat = np.zeros(np.broadcast_shapes(plans.tp.shape, np.shape(seqs), np.shape(ctx0)))
    stage = np.zeros_like(lat)
    mid = None
    for j in range(DECODE_POINTS):
        ctx = ctx0 + 1 + (j + 0.5) / DECODE_POINTS * n_steps
        sc = cm.step(plans, Step(decode_seqs=seqs, decode_ctx=ctx))
        lat = lat + sc.time_s / DECODE_POINTS
        stage = stage + sc.stage_time_s / DECODE_POINTS
        if j == DECODE_POINTS // 2:
            mid = sc
    return lat, stage, mid


def static_batch(cm: CostModel, plans: PlanArrays, batch, isl, osl) -> Timing:
    """All ``batch`` requests start together: one prefill, then ``osl - 1`` decode steps.

    Under pipeline parallelism the batch is split into pp micro-batches that keep every
    stage busy, so a decode round costs pp stage times of batch/pp sequences.
    """
    batch, isl, osl = (np.asarray(x, float) for x in (batch, isl, osl))
    pp = plans.pp.astype(float)
    micro = np.maximum(batch / pp, 1.0)
    pf = cm.step(plans, Step(prefill_seqs=micro, prefill_tokens=isl))
    # prefill of all micro-batches streams through the pipe: (pp - 1) fill + pp micro-batches
    ttft = pf.time_s + (pp - 1) * pf.stage_time_s
    lat, stage, mid = _mean_decode(cm, plans, micro, isl, osl - 1)
    tpot = np.maximum(lat, pp * stage)
    e2e = ttft + (osl - 1) * tpot
    tokens = batch * osl
    return Timing(ttft, tpot, e2e, tokens / e2e, batch / e2e, batch, pf, mid)


def inflight(cm: CostModel, plans: PlanArrays, concurrency, isl, osl) -> Timing:
    """Steady state of continuous batching with ``concurrency`` sequences in flight.

    Each step every running sequence emits one token; on average concurrency/osl
    sequences finish per step and as many new prompts are prefilled in the same step
    (in-flight batching mixes prefill and decode). TTFT is the latency of a step that
    carries one whole prompt beside the running decodes (no queueing).
    """
    c, isl, osl = (np.asarray(x, float) for x in (concurrency, isl, osl))
    pp = plans.pp.astype(float)
    micro = np.maximum(c / pp, 1.0)
    new = micro / osl
    mixed = cm.step(plans, Step(prefill_seqs=new, prefill_tokens=isl, decode_seqs=micro - new, decode_ctx=isl + osl / 2.0))
    tpot = np.maximum(mixed.time_s, pp * mixed.stage_time_s)
    pf = cm.step(plans, Step(prefill_seqs=1.0, prefill_tokens=isl, decode_seqs=np.maximum(micro - 1.0, 0.0), decode_ctx=isl + osl / 2.0))
    ttft = pf.time_s
    tokens_per_s = c / tpot
    e2e = ttft + (osl - 1) * tpot
    dec = cm.step(plans, Step(decode_seqs=micro, decode_ctx=isl + osl / 2.0))
    return Timing(ttft, tpot, e2e, tokens_per_s, tokens_per_s / osl, c, pf, dec)
