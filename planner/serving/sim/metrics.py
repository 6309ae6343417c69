"""What a simulation run returns: per-request times (typed numpy columns), per-replica use, the
queue over time, and the summaries built from them (percentiles, SLO attainment, goodput, Little's law)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SLO:
    ttft_s: float | None = None
    tpot_s: float | None = None


_trapz = getattr(np, "trapezoid", None) or np.trapz


def _pct(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if not len(x):
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    p = np.percentile(x, [50, 90, 99])
    return {"mean": float(x.mean()), "p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]), "max": float(x.max())}


@dataclass
class SimResult:
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    replica: np.ndarray
    pool: np.ndarray
    preemptions: np.ndarray
    rejected: np.ndarray
    pools: list[dict]
    replica_busy_s: np.ndarray
    replica_pool: np.ndarray
    replica_mean_batch: np.ndarray
    queue_t: np.ndarray
    queue_waiting: np.ndarray
    queue_running: np.ndarray
    events: int
    wall_s: float
    cache_hit_tokens: int
    router: str
    notes: list[str] = field(default_factory=list)
    cache_hit_requests: int = 0
    steps: int = 0
    extras: dict = field(default_factory=dict)  # technique blocks of the summary (lora, migration)
    augmented: np.ndarray | None = None  # IC-Cache: requests served by the small model with cached examples
    klass: np.ndarray | None = None  # service class of each request (index into ``classes``)
    classes: list = field(default_factory=list)  # planner.serving.classes.ServiceClass
    core: str = "python"  # the event loop that ran: c (planner.serving.sim.fastcore) or python

    @property
    def done(self) -> np.ndarray:
        return np.isfinite(self.finish_s) & ~self.rejected

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Mean inter-token latency of each request after its first token (NaN for 1-token outputs)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.output_tokens > 1, (self.finish_s - self.first_token_s) / (self.output_tokens - 1), np.nan)

    @property
    def e2e_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    @property
    def duration_s(self) -> float:
        d = self.done
        if not d.any():
            return 0.0
        return float(self.finish_s[d].max() - np.nanmin(self.arrival_s))

    def meets(self, slo: SLO) -> np.ndarray:
        ok = self.done.copy()
        if slo.ttft_s is not None:
            ok &= self.ttft_s <= slo.ttft_s
        if slo.tpot_s is not None:
            ok &= np.nan_to_num(self.tpot_s, nan=0.0) <= slo.tpot_s
        return ok

    def summary(self, slo: SLO | None = None) -> dict:
        d = self.done
        dur = self.duration_s
        n_done = int(d.sum())
        out_tok = float(self.output_tokens[d].sum())
        in_tok = float(self.input_tokens[d].sum())
        gpus = sum(p["gpus"] * p["count"] for p in self.pools)
        s = {
            "requests": int(len(d)), "completed": n_done, "rejected": int(self.rejected.sum()),
            "duration_s": dur,
            "requests_per_s": n_done / dur if dur > 0 else None,
            "output_tokens_per_s": out_tok / dur if dur > 0 else None,
            "output_tokens_per_s_per_gpu": out_tok / dur / gpus if dur > 0 and gpus else None,
            # prompt and output tokens of the completed requests over the run (vLLM bench serve's "Total Token throughput")
            "total_tokens_per_s": (in_tok + out_tok) / dur if dur > 0 else None,
            "ttft_s": _pct(self.ttft_s[d]), "tpot_s": _pct(self.tpot_s[d]), "e2e_latency_s": _pct(self.e2e_s[d]),
            "mean_input_tokens": float(self.input_tokens.mean()), "mean_output_tokens": float(self.output_tokens.mean()),
            "preemptions": int(self.preemptions.sum()), "requests_preempted": int((self.preemptions > 0).sum()),
            "prefix_cache_hit_tokens": int(self.cache_hit_tokens), "prefix_cache_hit_requests": int(self.cache_hit_requests),
        }
        busy = self.replica_busy_s / dur if dur > 0 else self.replica_busy_s * 0
        s["utilization"] = {"mean_busy_fraction": float(busy.mean()) if len(busy) else None,
                            "per_replica_busy_fraction": [float(x) for x in busy],
                            "mean_decode_batch": [float(x) for x in self.replica_mean_batch]}
        s["queue"] = {"mean_waiting": float(self.queue_waiting.mean()) if len(self.queue_waiting) else 0.0,
                      "max_waiting": int(self.queue_waiting.max()) if len(self.queue_waiting) else 0,
                      "mean_in_system": float(_trapz(self.queue_waiting + self.queue_running, self.queue_t) / (self.queue_t[-1] - self.queue_t[0]))
                      if len(self.queue_t) > 1 and self.queue_t[-1] > self.queue_t[0] else None}
        if slo is not None and (slo.ttft_s is not None or slo.tpot_s is not None):
            ok = self.meets(slo)
            s["slo"] = {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "attainment": float(ok.sum() / max(len(ok), 1)),
                        "goodput_requests_per_s": float(ok.sum()) / dur if dur > 0 else None}
        if self.classes:
            s["classes"] = self.class_summary()
        s.update(self.extras)
        if len(self.pools) > 1:
            per = []
            for i, p in enumerate(self.pools):
                sel = d & (self.pool == i)
                per.append({"name": p["name"], "role": p["role"], "replicas": p["count"], "requests": int(sel.sum()),
                            "share": float(sel.sum() / max(n_done, 1))})
            s["pools"] = per
        return s

    def class_summary(self) -> dict:
        """Per service class: its requests, percentiles and attainment of its own SLOs."""
        d, out = self.done, {}
        for i, c in enumerate(self.classes):
            sel = d & (self.klass == i)
            row = {"priority": c.priority, "share": c.share, "requests": int((self.klass == i).sum()), "completed": int(sel.sum()),
                   "ttft_s": _pct(self.ttft_s[sel]), "tpot_s": _pct(self.tpot_s[sel]), "e2e_latency_s": _pct(self.e2e_s[sel])}
            if c.ttft_slo_s is not None or c.tpot_slo_s is not None:
                ok = self.meets(SLO(c.ttft_slo_s, c.tpot_slo_s))[self.klass == i]
                row["slo"] = {"ttft_s": c.ttft_slo_s, "tpot_s": c.tpot_slo_s, "attainment": float(ok.mean()) if len(ok) else None}
            out[c.name] = row
        return out

    def steady_throughput(self) -> float:
        """Completions per second between the 10th and 90th percentile of finish times: the
        sustained rate, without the ramp-up and the drain of a finite run's last (longest) requests."""
        f = np.sort(self.finish_s[self.done])
        if len(f) < 10:
            d = self.duration_s
            return len(f) / d if d > 0 else 0.0
        i0, i1 = int(0.1 * len(f)), int(0.9 * len(f))
        dt = f[i1] - f[i0]
        return (i1 - i0) / dt if dt > 0 else math.inf

    def mean_in_system(self) -> float:
        """Time-average of requests in the system (exact, from arrival and finish times)."""
        d = self.done
        a, f = self.arrival_s[d], self.finish_s[d]
        t0, t1 = a.min(), f.max()
        return float((f - a).sum() / (t1 - t0)) if t1 > t0 else 0.0


def _percentile(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if len(x) else math.inf


def keeps_up(res) -> bool:
    """The deployment keeps up with the arrivals: the backlog (requests arrived and not finished,
    time-averaged) over the last quarter of the arrivals is not clearly above that over the third
    quarter (past the warm-up of the longest requests), and the last quarter waits for its first token about as long as the second (an
    overloaded continuous-batching engine shows it either as a growing queue or a growing batch)."""
    a = np.sort(res.arrival_s[np.isfinite(res.arrival_s)])
    n = len(a)
    if n < 8 or a[-1] <= a[0]:
        return True
    f = np.sort(np.where(res.done, res.finish_s, np.inf))

    def backlog(q0: float, q1: float) -> float:  # time-averaged requests in the system over a span of arrivals
        t = np.linspace(a[int(q0 * (n - 1))], a[int(q1 * (n - 1))], 64)
        return float(np.mean(np.searchsorted(a, t, side="right") - np.searchsorted(f, t, side="right")))

    if backlog(0.75, 1.0) > 1.25 * backlog(0.5, 0.75) + 5.0:
        return False
    order = np.argsort(res.arrival_s, kind="stable")
    ttft = res.ttft_s[order]
    q2 = np.nanmedian(ttft[n // 4: n // 2])
    q4 = np.nanmedian(ttft[3 * n // 4:])
    return bool(q4 <= 2.0 * q2 + 1.0)
