"""One GPU shared by prefill and decode (semi-PD, arXiv 2504.19867; Nexus, arXiv 2507.06608): a fraction f of the
SMs runs a prefill worker and 1 - f a decode worker, both over the same weights and KV cache (no KV transfer).

* Compute scales with the SM share: every compute rate (GEMM, attention, vector units) of a worker is f (or 1 - f)
  of the device's.
* Memory bandwidth is shared in proportion to demand: each worker's demand is its step bytes over its step time (at
  the whole bandwidth, prefill weighted by its busy share); when the sum exceeds the device bandwidth each gets its
  demand's share of it, and its steps are re-timed at that bandwidth (one fixed-point pass).
* The decode worker runs the running batch in pure decode steps: TPOT = its step time. The prefill worker takes one
  prompt at a time: its service time t_p; prompts arrive at the decode worker's completion rate lambda = running /
  (TPOT x osl), capped at what the prefill worker can serve (1 / t_p); TTFT = t_p + the M/D/1 wait
  rho t_p / (2 (1 - rho)) (rho = lambda t_p, held below 1) + the engine's per-request overhead.
f -> 1 leaves decode no SMs (no decode capacity); the prefill worker then has the whole GPU: the prefill-only limit.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from planner.costmodel.plans import PlanArrays
from planner.costmodel.step import CostModel, Step

AUTO_SHARES = tuple(np.round(np.arange(0.1, 0.95, 0.1), 2))  # the SM shares `auto` tries
RHO_MAX = 0.99  # the prefill worker's utilization is held below 1 (the queue would grow without bound)


def parse_share(text: str | float | None):
    """``F`` in (0, 1), or ``auto``; None when not given."""
    from planner.errors import PlannerError

    if text is None:
        return None
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        f = float(text)
    except ValueError:
        raise PlannerError(f"--intra-gpu-pd takes a prefill SM share F in (0, 1) or auto, got {text!r}") from None
    if not 0.0 < f < 1.0:
        raise PlannerError(f"--intra-gpu-pd {text}: the prefill SM share must be inside (0, 1)")
    return f


def share(cm: CostModel, plans: PlanArrays, compute, bandwidth) -> tuple[CostModel, PlanArrays]:
    """The cost model of a worker with ``compute`` of the SMs and ``bandwidth`` of the memory bandwidth."""
    w = copy.copy(cm)
    w.bw, w.kv_bw = cm.bw * bandwidth, cm.kv_bw * bandwidth
    w.elem_rate = cm.elem_rate * compute if cm.elem_rate else cm.elem_rate
    w.vec_rate = cm.vec_rate * compute if cm.vec_rate else cm.vec_rate
    p = replace(plans, gemm_flops=plans.gemm_flops * compute, gemm_peak_flops=plans.gemm_peak_flops * compute,
                attn_flops=plans.attn_flops * compute,
                head_gemm_flops=None if plans.head_gemm_flops is None else plans.head_gemm_flops * compute)
    return w, p


def _bytes(sc) -> np.ndarray:
    return sum(np.asarray(o.bytes, float) * o.count for o in sc.ops)


def _times(cm, plans, f, b_p, b_d, run, isl, ctx):
    cp_, pp_ = share(cm, plans, f, b_p)
    cd_, pd_ = share(cm, plans, 1.0 - f, b_d)
    pf = cp_.step(pp_, Step(prefill_seqs=1.0, prefill_tokens=isl))
    dec = cd_.step(pd_, Step(decode_seqs=run, decode_ctx=ctx))
    return pf, dec


def intra_gpu_pd(cm: CostModel, plans: PlanArrays, running, isl, osl, f, *, overhead_s: float = 0.0,
                 extra_ttft_s=0.0) -> dict:
    """TTFT, TPOT and throughput (per replica, arrays over plans) of the SM split ``f`` with ``running`` sequences."""
    run, isl, osl, f = (np.asarray(x, float) for x in (running, isl, osl, f))
    ctx = isl + osl / 2.0
    pf, dec = _times(cm, plans, f, 1.0, 1.0, run, isl, ctx)
    t_p, t_d = pf.time_s, dec.time_s
    lam = np.minimum(run / (t_d * osl), 1.0 / t_p)
    rho = np.minimum(lam * t_p, RHO_MAX)
    demand_p, demand_d = rho * _bytes(pf) / t_p, _bytes(dec) / t_d
    total = demand_p + demand_d
    over = total > cm.bw
    if np.any(over):  # contended: each worker gets its share of the bandwidth by demand
        b_p = np.where(over, demand_p / total, 1.0)
        b_d = np.where(over, demand_d / total, 1.0)
        pf, dec = _times(cm, plans, f, b_p, b_d, run, isl, ctx)
        t_p, t_d = pf.time_s, dec.time_s
        lam = np.minimum(run / (t_d * osl), 1.0 / t_p)
        rho = np.minimum(lam * t_p, RHO_MAX)
    wait = rho * t_p / (2.0 * (1.0 - rho))
    ttft = t_p + wait + overhead_s + np.asarray(extra_ttft_s, float)
    return {"prefill_share": f, "ttft_s": ttft, "tpot_s": t_d, "requests_per_s": lam, "output_tokens_per_s": lam * osl,
            "prefill_utilization": rho, "prefill_s": t_p, "bandwidth_contended": over}


def best_share(cm: CostModel, plans: PlanArrays, running, isl, osl, *, ttft_s=None, tpot_s=None, overhead_s=0.0,
               extra_ttft_s=0.0, shares=AUTO_SHARES) -> dict:
    """``auto``: the share with the most tokens/s whose prefill worker keeps up and that meets the SLOs given (where
    none does: the share closest to it, the most tokens/s among the rest ranked after every share that does)."""
    best = None
    for f in shares:
        r = intra_gpu_pd(cm, plans, running, isl, osl, f, overhead_s=overhead_s, extra_ttft_s=extra_ttft_s)
        ok = r["prefill_utilization"] < RHO_MAX  # a saturated prefill worker queues without bound
        if ttft_s is not None:
            ok &= r["ttft_s"] <= ttft_s
        if tpot_s is not None:
            ok &= r["tpot_s"] <= tpot_s
        score = np.where(ok, r["output_tokens_per_s"], -1.0 / np.maximum(r["output_tokens_per_s"], 1e-30))
        if best is None:
            best, best_score = r, score
            continue
        better = score > best_score
        best = {k: np.where(better, v, best[k]) for k, v in r.items()}
        best_score = np.where(better, score, best_score)
    return best
