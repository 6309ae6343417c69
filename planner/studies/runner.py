"""Run every point of a study (in parallel across cores) and collect one flat row per point."""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

from planner.errors import PlannerError
from planner.studies.params import (CapacityRequest, EstimateRequest, PlanRequest, SimulateRequest, capacity_max_gpus, check_specs,
                                    estimate_techniques, plan_search, request_engine, simulated_point)
from planner.studies.schema import PARAMS, Study


def _setup(r: EstimateRequest):
    """(hardware, plan, (tp, pp, ep, dp)) of an estimate point."""
    from planner.api import PlanSpec, resolve_parallel
    from planner.costmodel.collectives import hardware_with_link

    tp, pp, ep, dp = resolve_parallel(r.gpus, r.tp, r.pp, r.ep, r.dp, r.attention_dp)  # --gpus counts attention-DP ranks
    plan = PlanSpec(tp=tp, pp=pp, ep=ep, dp=dp, weights=r.weights, kv=r.kv, activations=r.activations, weight_offload=r.weight_offload)
    plan = estimate_techniques(plan, r)  # chunking, speculation, KV policies, context/attention techniques
    hw = hardware_with_link(r.hardware, r.link)  # edge clusters: devices joined over Wi-Fi / Ethernet
    return hw, plan, (tp, pp, ep, dp)


def _predict(r: EstimateRequest, hw, plan) -> dict:
    """``estimate`` (or, where the request asks for the simulator, simulated_point) of one point, as a dict."""
    d = simulated_point(r, hw, plan)
    if d is not None:
        return d
    from planner.api import estimate

    return estimate(r.model, hw, plan, isl=r.isl, osl=r.osl, batching=r.batching, batch=r.batch,
                    concurrency=r.concurrency, engine=request_engine(r), adp_balance=r.attention_dp_balance).to_dict()


def _row(d: dict, parallel: tuple[int, int, int, int]) -> dict:
    """The study columns of one estimate dict."""
    tp, pp, ep, dp = parallel
    out = {k: d[k] for k in ("gpus", "fits", "ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s",
                             "output_tokens_per_s_per_gpu", "requests_per_s", "max_context_tokens", "max_concurrency")}
    out.update(tp=tp, pp=pp, ep=ep, dp=dp, accuracy=d["accuracy"]["score"], weights_bytes=d["memory"]["weights_bytes"],
               kv_cache_bytes=d["memory"]["kv_cache_bytes"], usd_per_hour=d["cost"]["usd_per_hour"],
               usd_per_million_output_tokens=d["cost"]["usd_per_million_output_tokens"],
               concurrency_used=d["plan"]["batch_or_concurrency"],
               spec_k_used=d["plan"].get("techniques", {}).get("spec_k_used"))
    for k, v in (d.get("serving") or {}).items():
        if isinstance(v, (int, float)):
            out[f"serving_{k}"] = v
    for group in ("lora", "intra_gpu_pd", "finetune", "variants"):  # multi-tenant what-ifs: lora_miss_rate, ...
        for k, v in (d.get(group) or {}).items():
            for kk, vv in (v.items() if isinstance(v, dict) else [("", v)]):
                if isinstance(vv, (int, float)) and not isinstance(vv, bool):
                    out[f"{group}_{k}" + (f"_{kk}" if kk else "")] = vv
    return out


def _estimate(r: EstimateRequest) -> dict:
    hw, plan, parallel = _setup(r)
    return _row(_predict(r, hw, plan), parallel)


def _plan(req: PlanRequest) -> dict:
    if req.models:  # several models on one pool (search/placement.py): the placement's totals, one row per point
        return _placement(req)
    r = plan_search(req)
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


def _placement(req: PlanRequest) -> dict:
    from planner.studies.params import plan_placement

    d = plan_placement(req)
    met = [m["slo_met"] for g in d["placement"] for m in g["models"].values()]
    return {"feasible": True, "gpus_used": d["gpus"], "gpus_one_pool_per_model": d["gpus_one_pool_per_model"],
            "gpus_saved": d["gpus_saved"], "shared_gpus": sum(g["gpus"] for g in d["placement"] if g["shared"]),
            "models_meeting_slo": sum(met), "model_count": len(d["models"])}


def _latency(prefix: str, d: dict) -> dict:
    return {f"{prefix}_{q}_s": d.get(q) for q in ("mean", "p50", "p90", "p99")}


def _simulate(req: SimulateRequest) -> dict:
    from planner.serving.run import simulate_scenario

    o = simulate_scenario(**req.model_dump())
    if o.runs:  # a fleet: one row per router, flattened with the router as prefix
        out: dict[str, Any] = {"gpus": o.out["gpus"]}
        for lab, d in o.out["runs"].items():
            key = lab.split(":")[0]
            out[f"{key}_slo_attainment"] = d["slo_attainment"]
            out[f"{key}_mean_accuracy"] = d["mean_accuracy"]
            out[f"{key}_goodput_rps"] = d["goodput_requests_per_s"]
            out[f"{key}_usd_per_1k_requests"] = d.get("usd_per_1k_requests")
            out[f"{key}_ttft_p99_s"] = d["ttft_s"]["p99"]
            if "served_with_examples" in d:
                out[f"{key}_served_with_examples"] = d["served_with_examples"]
        return out
    s = o.out
    out = {"gpus": s["gpus"], "throughput_rps": s["requests_per_s"], "output_tokens_per_s": s["output_tokens_per_s"],
           "output_tokens_per_s_per_gpu": s["output_tokens_per_s_per_gpu"], "preemptions": s["preemptions"],
           **_latency("ttft", s["ttft_s"]), **_latency("tpot", s["tpot_s"]), **_latency("e2e", s["e2e_latency_s"])}
    if "slo" in s:
        out.update(slo_attainment=s["slo"]["attainment"], goodput_rps=s["slo"]["goodput_requests_per_s"])
    out.update(_tenant_columns(s))
    return out


def _tenant_columns(s: dict) -> dict:
    """Multi-tenant columns of a simulate point: adapters, live migration, per-class tails."""
    out: dict[str, Any] = {}
    if "lora" in s:
        lo = s["lora"]
        out.update(lora_miss_rate=lo["miss_rate"], lora_decode_step_cost_s=lo["decode_step_cost_s"],
                   lora_resident_gib=lo["resident_bytes_per_gpu"] / 2**30)
    if "migration" in s:
        out["migrations"] = s["migration"]["migrations"]
    for name, c in s.get("classes", {}).items():
        out[f"{name}_ttft_p99_s"] = c["ttft_s"]["p99"]
        out[f"{name}_tpot_p99_s"] = c["tpot_s"]["p99"]
        if "slo" in c:
            out[f"{name}_slo_attainment"] = c["slo"]["attainment"]
    return out


def _capacity(r: CapacityRequest) -> dict:
    from planner.search.capacity import capacity, parse_hourly, read_daily
    from planner.serving.workload import fixed_workload, get_workload

    spec = get_workload(r.workload) if r.workload else fixed_workload(r.isl, r.osl)
    if r.arrival != "poisson" or r.cv != 1.0:
        spec = spec.model_copy(update={"arrival": spec.arrival.model_copy(update={"process": r.arrival, "cv": r.cv})})
    profile = parse_hourly(r.hourly) if r.hourly else (read_daily(r.daily) if r.daily else None)
    res = capacity(r.model, r.hardware, r.rate if r.rate is not None else 0.0, spec, ttft_s=r.ttft_p99, tpot_s=r.tpot_p99,
                   percentile=r.percentile, max_gpus=capacity_max_gpus(r), weights=r.weights, kv=r.kv, engine=request_engine(r),
                   requests=r.requests, seed=r.seed, hourly=profile, curve=False, adp_balance=r.attention_dp_balance)
    if not res.feasible:
        return {"feasible": False, "infeasible": res.reason}
    a = res.at_rate or {}
    return {"feasible": True, "gpus": res.gpus, "replicas": res.replicas, "plan": res.plan["label"], "usd_per_hour": res.usd_per_hour,
            "usd_per_month": res.usd_per_month, "ttft_p99_s": a.get("ttft_s", {}).get("p99"), "tpot_p99_s": a.get("tpot_s", {}).get("p99")}


RUNNERS: dict[str, Callable[[Any], dict]] = {"estimate": _estimate, "plan": _plan, "capacity": _capacity, "simulate": _simulate}


def run_point(command: str, params: dict) -> dict:
    """One study point: its parameters plus the command's metrics, or an `error` column."""
    try:
        req = PARAMS[command].model_validate(params)
        check_specs(command, req)
        metrics = RUNNERS[command](req)
        return {**params, **metrics, "error": ""}
    except PlannerError as e:
        return {**params, "error": str(e)}


def _run_chunk(args: tuple[str, list[dict]]) -> list[dict]:
    command, points = args
    return [run_point(command, p) for p in points]


MIN_GROUP = 8  # estimate points sharing a plan priced in one vectorized pass when at least this many


def _estimate_groups(points: list[dict], rows: list, progress: Callable[[int], None] | None) -> list[int]:
    """Estimate points that share (model, hardware, engine, plan) are priced together: one cost model, memory model
    and accuracy per group and one pass of the serving model over their isl/osl/concurrency (predict_many). The first
    point of a group is also priced by ``estimate`` itself and must agree, else the group falls back to it. Fills
    ``rows``; returns the indices left for one ``estimate`` call each."""
    from planner.serving.predict_many import estimate_points, is_plain, same

    groups: dict[tuple, list] = {}
    rest: list[int] = []
    for i, params in enumerate(points):
        try:
            r = PARAMS["estimate"].model_validate(params)
            check_specs("estimate", r)
            if r.rate or r.requests is not None or r.attention_dp_balance:
                # the simulator (a rate, or a closed loop's request count), or a hold the vectorized path does not price
                rest.append(i)
                continue
            hw, plan, parallel = _setup(r)
        except PlannerError as e:
            rows[i] = {**params, "error": str(e)}
            if progress:
                progress(1)
            continue
        # every request field request_engine reads, so a group prices its points on one engine
        key = (r.model, r.hardware, r.link, r.engine, r.endpoint, r.memory_fraction, r.sampler, r.recv_interval,
               r.stream_interval, r.batching,
               repr(plan))
        groups.setdefault(key, []).append((i, r, hw, plan, parallel))
    for members in groups.values():
        _, r0, hw, plan, _ = members[0]
        if len(members) < MIN_GROUP or not is_plain(plan):
            rest += [i for i, *_ in members]
            continue
        try:
            ds = estimate_points(r0.model, hw, plan, isl=[m[1].isl for m in members], osl=[m[1].osl for m in members],
                                 batching=r0.batching, batch=[m[1].batch for m in members],
                                 concurrency=[m[1].concurrency for m in members], engine=request_engine(r0))
            first = next((j for j, d in enumerate(ds) if d is not None), None)
            if first is not None:
                ref = _predict(members[first][1], hw, plan)
                ds = [None] * len(ds) if not same(ds[first], ref) else ds[:first] + [ref] + ds[first + 1:]
        except PlannerError:
            ds = [None] * len(members)
        for (i, _, _, _, parallel), d in zip(members, ds):
            if d is None:
                rest.append(i)
            else:
                rows[i] = {**points[i], **_row(d, parallel), "error": ""}
        if progress:
            progress(sum(d is not None for d in ds))
    return sorted(rest)


def run_study(study: Study, workers: int | None = None, progress: Callable[[int], None] | None = None) -> list[dict]:
    """Every point's row, in the study's order. Estimate points that share a plan go through one vectorized pass;
    the rest (plan, capacity, simulate points, estimates at a rate) run one by one across a process pool."""
    points = study.point_params()
    rows: list = [None] * len(points)
    todo = _estimate_groups(points, rows, progress) if study.command == "estimate" else list(range(len(points)))
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    if workers == 1 or len(todo) < 8:
        for i in todo:
            rows[i] = run_point(study.command, points[i])
            if progress:
                progress(1)
        return rows
    size = max(1, math.ceil(len(todo) / (workers * 8)))
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for idx, part in zip(chunks, ex.map(_run_chunk, [(study.command, [points[i] for i in c]) for c in chunks])):
            for i, row in zip(idx, part):
                rows[i] = row
            if progress:
                progress(len(part))
    return rows
