"""Run every point of a study (in parallel across cores) and collect one flat row per point."""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

from planner.errors import PlannerError
from planner.studies.schema import PARAMS, Study


def _estimate(p: dict) -> dict:
    from planner.api import PlanSpec, estimate, resolve_parallel

    tp, pp, ep, dp = resolve_parallel(p.get("gpus"), p.get("tp"), p.get("pp"), p.get("ep"), p.get("dp"))
    plan = PlanSpec(tp=tp, pp=pp, ep=ep, dp=dp, weights=p.get("weights", "bf16"), kv=p.get("kv"), activations=p.get("activations"),
                    weight_offload=p.get("weight_offload"))
    if p.get("rate"):
        from planner.api import estimate_at_rate  # the serving simulator

        e = estimate_at_rate(p["model"], p["hardware"], plan, rate=p["rate"], isl=p.get("isl", 1024), osl=p.get("osl", 256),
                             workload=p.get("workload"), engine=p.get("engine", "trtllm"))
        d = e if isinstance(e, dict) else e.to_dict()
    else:
        d = estimate(p["model"], p["hardware"], plan, isl=p.get("isl", 1024), osl=p.get("osl", 256),
                     batching=p.get("batching", "inflight"), batch=p.get("batch"), concurrency=p.get("concurrency"),
                     engine=p.get("engine", "trtllm")).to_dict()
    out = {k: d[k] for k in ("gpus", "fits", "ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s",
                             "output_tokens_per_s_per_gpu", "requests_per_s", "max_context_tokens", "max_concurrency")}
    out.update(tp=tp, pp=pp, ep=ep, dp=dp, accuracy=d["accuracy"]["score"], weights_bytes=d["memory"]["weights_bytes"],
               kv_cache_bytes=d["memory"]["kv_cache_bytes"], usd_per_hour=d["cost"]["usd_per_hour"],
               usd_per_million_output_tokens=d["cost"]["usd_per_million_output_tokens"],
               concurrency_used=d["plan"]["batch_or_concurrency"])
    for k, v in (d.get("serving") or {}).items():
        if isinstance(v, (int, float)):
            out[f"serving_{k}"] = v
    return out


def _plan(p: dict) -> dict:
    from planner.cli.plan import _eviction, _spec
    from planner.search.evaluate import Workload
    from planner.search.run import Constraints, search
    from planner.search.space import SpaceOptions

    hw = p["hardware"] if isinstance(p["hardware"], list) else [h.strip() for h in str(p["hardware"]).split(",")]
    kw = {}
    if p.get("concurrency"):
        kw["concurrency"] = tuple(p["concurrency"])
    opts = SpaceOptions(weights=tuple(p["weights"]) if p.get("weights") else None, kv=tuple(p["kv"]) if p.get("kv") else None,
                        speculative=_spec(p.get("spec")), eviction=_eviction(p.get("eviction")), offload=p.get("offload", True),
                        disaggregated=p.get("disagg", True), **kw)
    cons = Constraints(gpus=p["gpus"], ttft_s=p.get("ttft"), tpot_s=p.get("tpot"), min_context=p.get("min_context"),
                       min_accuracy=p.get("min_accuracy"), max_usd_per_mtok=p.get("max_cost"))
    r = search(p["model"], hw, p["gpus"], Workload(p.get("isl", 1024), p.get("osl", 256)), cons,
               objective=p.get("objective", "throughput"), opts=opts, engine=p.get("engine", "trtllm"), task=p.get("task", "general"))
    out: dict[str, Any] = {"plans_evaluated": r.plans_evaluated, "frontier_size": len(r.frontier), "feasible": r.recommended is not None}
    if r.recommended is None:
        out["infeasible"] = "; ".join(r.infeasible)
        return out
    rec = r.recommended
    out.update(recommended=rec["label"], gpus=rec["gpus"], ttft_s=rec["ttft_s"], tpot_s=rec["tpot_s"],
               output_tokens_per_s_per_gpu=rec["output_tokens_per_s_per_gpu"],
               output_tokens_per_s_per_user=rec["output_tokens_per_s_per_user"], accuracy=rec["accuracy"],
               max_context_tokens=rec["max_context_tokens"], usd_per_million_output_tokens=rec["usd_per_million_output_tokens"],
               mode=rec["plan"]["mode"], weights_used=rec["plan"]["weights"], kv_used=rec["plan"]["kv"], trade=rec["trade"])
    return out


def _latency(prefix: str, d: dict) -> dict:
    return {f"{prefix}_{q}_s": d.get(q) for q in ("mean", "p50", "p90", "p99")}


def _simulate(p: dict) -> dict:
    from planner.serving.run import simulate_scenario

    o = simulate_scenario(**p)
    if o.runs:  # a fleet: one row per router, flattened with the router as prefix
        out: dict[str, Any] = {"gpus": o.out["gpus"]}
        for lab, d in o.out["runs"].items():
            key = lab.split(":")[0]
            out[f"{key}_slo_attainment"] = d["slo_attainment"]
            out[f"{key}_mean_accuracy"] = d["mean_accuracy"]
            out[f"{key}_goodput_rps"] = d["goodput_requests_per_s"]
        return out
    s = o.out
    out = {"gpus": s["gpus"], "throughput_rps": s["requests_per_s"], "output_tokens_per_s": s["output_tokens_per_s"],
           "output_tokens_per_s_per_gpu": s["output_tokens_per_s_per_gpu"], "preemptions": s["preemptions"],
           **_latency("ttft", s["ttft_s"]), **_latency("tpot", s["tpot_s"]), **_latency("e2e", s["e2e_latency_s"])}
    if "slo" in s:
        out.update(slo_attainment=s["slo"]["attainment"], goodput_rps=s["slo"]["goodput_requests_per_s"])
    return out


def _capacity(p: dict) -> dict:
    from planner.search.capacity import capacity
    from planner.serving.workload import fixed_workload, get_workload

    spec = get_workload(p["workload"]) if p.get("workload") else fixed_workload(p.get("isl", 1024), p.get("osl", 256))
    r = capacity(p["model"], p["hardware"], p["rate"], spec, ttft_s=p.get("ttft_p99"), tpot_s=p.get("tpot_p99"),
                 max_gpus=p.get("max_gpus", 64), weights=p.get("weights", "bf16"), kv=p.get("kv"), engine=p.get("engine", "trtllm"),
                 requests=p.get("requests"), seed=p.get("seed", 0), curve=False)
    if not r.feasible:
        return {"feasible": False, "infeasible": r.reason}
    a = r.at_rate or {}
    return {"feasible": True, "gpus": r.gpus, "replicas": r.replicas, "plan": r.plan["label"], "usd_per_hour": r.usd_per_hour,
            "usd_per_month": r.usd_per_month, "ttft_p99_s": a.get("ttft_s", {}).get("p99"), "tpot_p99_s": a.get("tpot_s", {}).get("p99")}


RUNNERS: dict[str, Callable[[dict], dict]] = {"estimate": _estimate, "plan": _plan, "capacity": _capacity, "simulate": _simulate}


def run_point(command: str, params: dict) -> dict:
    """One study point: its parameters plus the command's metrics, or an `error` column."""
    clean = PARAMS[command].model_validate(params).model_dump(exclude_none=True)
    try:
        metrics = RUNNERS[command](clean)
        return {**params, **metrics, "error": ""}
    except PlannerError as e:
        return {**params, "error": str(e)}


def _run_chunk(args: tuple[str, list[dict]]) -> list[dict]:
    command, points = args
    return [run_point(command, p) for p in points]


def run_study(study: Study, workers: int | None = None, progress: Callable[[int], None] | None = None) -> list[dict]:
    points = study.point_params()
    workers = max(1, min(workers or os.cpu_count() or 1, len(points)))
    if workers == 1 or len(points) < 8:
        rows = []
        for p in points:
            rows.append(run_point(study.command, p))
            if progress:
                progress(1)
        return rows
    size = max(1, math.ceil(len(points) / (workers * 8)))
    chunks = [(study.command, points[i:i + size]) for i in range(0, len(points), size)]
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for part in ex.map(_run_chunk, chunks):
            rows.extend(part)
            if progress:
                progress(len(part))
    return rows
