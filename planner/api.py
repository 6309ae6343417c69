"""Library entry points: ``estimate``, ``fit``, ``estimate_at_rate`` (and ``plan`` / ``capacity`` / ``simulate``
through their modules) return typed results without the CLI. The prediction of one plan lives in the serving
layer (``planner.serving.predict``), so calibration and validation use the same code without importing upward."""

from __future__ import annotations

import numpy as np

from planner.errors import PlannerError
from planner.serving.predict import Estimate, PlanSpec, estimate, fit, resolve_parallel  # noqa: F401  (re-exported)
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.loader import get_model
from planner.specs.model import Model


def estimate_at_rate(
    model: str | Model,
    hardware: str | Hardware,
    plan: PlanSpec | None = None,
    *,
    rate: float,
    isl: int = 1024,
    osl: int = 256,
    engine: Engine | str = "trtllm",
    requests: int = 1000,
    seed: int = 0,
    progress=None,
) -> dict:
    """``estimate`` at an arrival rate: Poisson arrivals of fixed-length requests through the event
    simulator (``plan.dp`` replicas, least-outstanding routing). Returns estimate's keys with the
    simulated means (``ttft_s`` mean TTFT, ``tpot_s`` mean inter-token latency, ``e2e_latency_s``,
    achieved throughput) and a ``serving`` block with percentiles, goodput inputs and utilization."""
    from planner.serving.simulator import Pool, Simulator, replica_for
    from planner.serving.workload import fixed_workload, generate

    plan = plan or PlanSpec()
    if not rate > 0:
        raise PlannerError(f"--rate must be positive, got {rate:g}")
    base = estimate(model, hardware, plan, isl=isl, osl=osl, batching="inflight", concurrency="max", engine=engine)
    if base.max_concurrency < 1:
        d = base.to_dict()
        d["serving"] = None
        d["notes"] = d["notes"] + ["not simulated: no sequence of isl + osl tokens fits"]
        return d
    m = get_model(model) if isinstance(model, str) else model
    rep = replica_for(m, hardware, tp=plan.tp, pp=plan.pp, ep=plan.ep, weights=plan.weights, kv=plan.kv_format(),
                      activations=plan.activations, engine=engine, max_input=isl + osl)
    reqs = generate(fixed_workload(isl, osl), requests, rate=rate, seed=seed)
    res = Simulator([Pool(rep, plan.dp)], reqs, progress=progress).run()
    s = res.summary()
    # memory and the per-op breakdown at the batch the replicas actually ran (time-averaged)
    batch = max(1, int(round(float(np.mean(res.replica_mean_batch)))))
    d = estimate(m, hardware, plan, isl=isl, osl=osl, batching="inflight", concurrency=min(batch, base.max_concurrency),
                 engine=engine).to_dict()
    d["max_concurrency"], d["concurrency_cap"] = base.max_concurrency, base.concurrency_cap
    tok = s["output_tokens_per_s"] or float("nan")
    d.update(ttft_s=s["ttft_s"]["mean"], tpot_s=s["tpot_s"]["mean"] if s["tpot_s"]["mean"] is not None else float("nan"),
             e2e_latency_s=s["e2e_latency_s"]["mean"], output_tokens_per_s=tok, output_tokens_per_s_per_gpu=tok / plan.gpus,
             requests_per_s=s["requests_per_s"])
    d["plan"] = {**d["plan"], "batching": "simulated", "batch_or_concurrency": batch, "max_seqs": rep.max_seqs, "rate": rate}
    price = d["cost"]["usd_per_hour"]
    d["cost"] = {**d["cost"], "usd_per_million_output_tokens": price / (tok * 3600) * 1e6 if price and tok > 0 else None}
    d["serving"] = {"rate": rate, "requests": requests, "seed": seed, "arrivals": "poisson",
                    **{k: s[k] for k in ("ttft_s", "tpot_s", "e2e_latency_s", "requests_per_s", "output_tokens_per_s",
                                         "utilization", "queue", "preemptions", "completed", "duration_s")},
                    "simulator": {"events": res.events, "wall_s": res.wall_s}}
    d["notes"] = d["notes"] + [f"simulated {requests} requests at {rate:g} req/s (Poisson); TTFT/TPOT are means, percentiles under 'serving'"]
    return d
