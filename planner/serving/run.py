"""Run one simulation scenario (single deployment, disaggregated pools or a fleet of model sizes)
from plain arguments: the library behind ``planner simulate`` and study points."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planner.errors import PlannerError


def parse_rate(text: str | None) -> float | None:
    if text is None:
        return None
    t = text.strip().lower()
    if t in ("inf", "infinity", "max"):
        return math.inf
    try:
        v = float(t)
    except ValueError:
        raise PlannerError(f"--rate takes requests per second or 'inf', got {text!r}") from None
    if not v > 0:
        raise PlannerError(f"--rate must be positive, got {text}")
    return v


def parse_spec(text: str | None) -> tuple[int, float]:
    if not text or text == "none":
        return 0, 0.0
    try:
        k, a = text.split(":")
        k_i, a_f = int(k), float(a)
    except ValueError:
        raise PlannerError(f"--spec takes DRAFT_TOKENS:ACCEPTANCE such as 3:0.7, got {text!r}") from None
    if k_i < 1 or not 0 <= a_f <= 1:
        raise PlannerError(f"--spec {text}: draft tokens must be >= 1 and acceptance in [0, 1]")
    return k_i, a_f


def load_requests(workload: str | None, trace: str | None, isl: int, osl: int, rate: float | None, requests: int,
                  seed: int, arrival: str, cv: float, shared_prefix: float | None):
    """(requests, workload spec or None, description) from the workload flags."""
    from planner.serving.workload import fixed_workload, generate, get_workload, read_trace

    if workload and trace:
        raise PlannerError("give --workload or --trace, not both")
    if arrival not in ("poisson", "gamma"):
        raise PlannerError(f"--arrival takes poisson or gamma, not {arrival!r}")
    if trace:
        if not Path(trace).is_file():
            raise PlannerError(f"trace file {trace} does not exist")
        reqs = read_trace(trace, rate=rate, requests=requests, shared_prefix=shared_prefix or 0.0)
        return reqs, None, reqs.notes[0]
    if workload:
        spec = get_workload(workload)
        upd = {}
        if shared_prefix is not None:
            upd["shared_prefix"] = shared_prefix
        if arrival == "gamma" or cv != 1.0:
            upd["arrival"] = spec.arrival.model_copy(update={"process": arrival, "cv": cv})
        if upd:
            spec = spec.model_copy(update=upd)
    else:
        spec = fixed_workload(isl, osl, process=arrival, cv=cv, shared_prefix=shared_prefix or 0.0)
    reqs = generate(spec, requests, rate=rate, seed=seed)
    return reqs, spec, f"{spec.name}: {spec.describe()} -- {spec.source}"


@dataclass
class Outcome:
    out: dict  # JSON-able summary
    res: object | None = None  # SimResult of a single deployment
    runs: dict = field(default_factory=dict)  # router label -> SimResult, for fleets
    pools: list = field(default_factory=list)
    slo: object | None = None


def _downsample(t, *ys, n: int = 200):
    if len(t) <= n:
        return [list(map(float, t))] + [list(map(float, y)) for y in ys]
    idx = np.linspace(0, len(t) - 1, n).astype(int)
    return [list(map(float, np.asarray(t)[idx]))] + [list(map(float, np.asarray(y)[idx])) for y in ys]


def simulate_scenario(*, model=None, hardware, gpus=None, tp=None, pp=None, ep=None, dp=None, weights="bf16",
                      activations=None, kv=None, engine="trtllm", workload=None, trace=None, isl=1024, osl=256,
                      arrival="poisson", cv=1.0, shared_prefix=None, rate=None, requests=1000, seed=0, ttft_slo=None,
                      tpot_slo=None, router="least-outstanding", chunked_prefill=None, max_seqs=None,
                      max_batched_tokens=None, kv_admission=None, preemption="recompute", spec=None, disagg=None,
                      prefill_tp=None, fleet=None, link=None, cp=1, draft_model=None, context_extension=None,
                      prompt_compression=None, sparse_attention=None, progress_factory=None) -> Outcome:
    """``rate`` is requests/s, 'inf' or None; ``spec`` 'K:ALPHA'; ``disagg`` 'P:D'; ``fleet`` 'MODEL:N[:TP],...'."""
    import contextlib

    from planner.serving.predict import PlanSpec, resolve_parallel
    from planner.serving.fleet import fleet_pools, parse_fleet
    from planner.serving.sim import SLO, Router, Scheduler, Simulator

    def plan_options(gpus, tp, pp, ep, dp, weights, kv, activations):
        tp_, pp_, ep_, dp_ = resolve_parallel(gpus, tp, pp, ep, dp)
        return PlanSpec(tp=tp_, pp=pp_, ep=ep_, dp=dp_, weights=weights, kv=kv, activations=activations)

    def _progress(total, label="simulating"):
        return progress_factory(total, label) if progress_factory and total > 20000 else contextlib.nullcontext(None)

    if link is not None:  # edge clusters: devices joined by a Wi-Fi / Ethernet network (costmodel/collectives.py)
        if fleet is not None:
            raise PlannerError("--link applies to one deployment, not to a --fleet")
        from planner.costmodel.collectives import with_link
        from planner.specs.loader import get_hardware

        hardware = with_link(get_hardware(hardware) if isinstance(hardware, str) else hardware, link)
    if requests < 1:
        raise PlannerError("--requests must be at least 1")
    if cv <= 0:
        raise PlannerError("--cv must be positive")
    if shared_prefix is not None and not 0 <= shared_prefix < 1:
        raise PlannerError("--shared-prefix must be in [0, 1)")
    if fleet is None and model is None:
        raise PlannerError("give --model (or --fleet MODEL:N,...)")
    r = parse_rate(rate) if isinstance(rate, str) or rate is None else float(rate)
    k, alpha = parse_spec(spec)
    sched = Scheduler(max_seqs=max_seqs, max_batched_tokens=max_batched_tokens, chunked_prefill=chunked_prefill,
                      admission=kv_admission, preemption=preemption, spec_k=k, spec_alpha=alpha)
    sched.check()
    router_ = Router(router if fleet is None or router != "least-outstanding" else "threshold:8")
    slo = SLO(ttft_slo, tpot_slo)
    reqs, wspec, wdesc = load_requests(workload, trace, isl, osl, r, requests, seed, arrival, cv, shared_prefix)
    max_input = float(reqs.input_tokens.max()) + float(reqs.output_tokens.max())
    notes: list[str] = []
    if fleet is not None:
        if any(v is not None for v in (gpus, tp, pp, ep, dp, disagg)):
            raise PlannerError("--fleet sets its own replicas: drop --gpus/--tp/--pp/--ep/--dp/--disagg (use MODEL:N:TP)")
        if slo.ttft_s is None and slo.tpot_s is None:
            slo = SLO(2.0, 0.2)
            notes.append("no SLO given: TTFT 2 s and TPOT 200 ms (the MLPerf server limits) for attainment")
        ctx = float(np.mean(reqs.input_tokens) + np.mean(reqs.output_tokens))
        pools, fnotes = fleet_pools(parse_fleet(fleet), hardware, weights=weights, kv=kv, engine=engine, sched=sched,
                                    max_input=max_input, ctx=ctx)
        notes += fnotes
        runs = {}
        for lab, rt in ((router_.label(), router_), ("static", Router("static"))):
            with _progress(len(reqs), f"fleet, router {lab}") as prog:
                runs[lab] = Simulator(pools, reqs, router=rt, progress=prog).run()
        return Outcome(_fleet_summary(runs, slo, pools, wdesc, r, seed, notes), runs=runs, pools=pools, slo=slo)
    plan = plan_options(gpus // cp if gpus else gpus, tp, pp, ep, dp, weights, kv, activations)
    techniques = None
    if cp > 1 or draft_model or context_extension or prompt_compression or sparse_attention:
        from dataclasses import replace

        from planner.serving.captech import parse_compression_text

        techniques = replace(plan, cp=cp, draft_model=draft_model, spec_k=k, spec_alpha=alpha, context_extension=context_extension,
                             prompt_compression=prompt_compression, sparse_attention=sparse_attention)
        comp = parse_compression_text(prompt_compression)
        if comp and comp[1] > 1:  # the model sees the compressed prompts; the compressor's own time is estimate's term
            reqs.input_tokens = np.ceil(reqs.input_tokens / comp[1])
            reqs.prefix_tokens = np.minimum(reqs.prefix_tokens, reqs.input_tokens)
            max_input = float(reqs.input_tokens.max()) + float(reqs.output_tokens.max())
            notes.append(f"{comp[0]} x{comp[1]:g}: prompts enter at 1/{comp[1]:g} of their tokens; the compressor's "
                         "device time is not simulated (planner estimate adds it to TTFT)")
    common = dict(weights=plan.weights, kv=plan.kv_format(), activations=plan.activations, engine=engine, max_input=max_input,
                  techniques=techniques)
    pools = _deployment_pools(model, hardware, plan, sched, disagg, prefill_tp, common)
    with _progress(len(reqs)) as prog:
        res = Simulator(pools, reqs, router=router_, progress=prog).run()
    summ = res.summary(slo)
    out = {"model": pools[0].replica.model_id, "hardware": pools[0].replica.hardware_id,
           "pools": [{"name": p.replica.name, "role": p.role, "replicas": p.count, "gpus_per_replica": p.replica.gpus,
                      "plan": p.replica.plan} for p in pools],
           "gpus": sum(p.count * p.replica.gpus for p in pools), "router": res.router,
           "workload": wdesc, "rate": r, "requests": len(reqs), "seed": seed, **summ,
           "queue_over_time": dict(zip(("t_s", "waiting", "running"), _downsample(res.queue_t, res.queue_waiting, res.queue_running))),
           "simulator": {"events": res.events, "wall_s": res.wall_s}, "notes": notes + res.notes}
    return Outcome(out, res=res, pools=pools, slo=slo)


def _deployment_pools(model, hardware, plan, sched, disagg: str | None, prefill_tp: int | None, common: dict) -> list:
    """One pool of ``plan.dp`` replicas, or disaggregated prefill and decode pools (``disagg`` 'P:D')."""
    from planner.serving.sim import Pool, replica_for

    if not disagg:
        return [Pool(replica_for(model, hardware, tp=plan.tp, pp=plan.pp, ep=plan.ep, sched=sched, **common), plan.dp)]
    try:
        xp, yd = (int(x) for x in disagg.split(":"))
    except ValueError:
        raise PlannerError(f"--disagg takes PREFILL:DECODE replica counts such as 1:2, got {disagg!r}") from None
    if xp < 1 or yd < 1:
        raise PlannerError("--disagg needs at least one prefill and one decode replica")
    ptp = prefill_tp or plan.tp
    group = ptp * plan.pp * xp + plan.tp * plan.pp * yd
    pre = replica_for(model, hardware, tp=ptp, pp=plan.pp, ep=plan.ep, sched=sched, disagg_group_gpus=group,
                      name=f"prefill tp{ptp}", **common)
    dec = replica_for(model, hardware, tp=plan.tp, pp=plan.pp, ep=plan.ep, sched=sched, disagg_group_gpus=group,
                      name=f"decode tp{plan.tp}", **common)
    return [Pool(pre, xp, "prefill"), Pool(dec, yd, "decode")]


def _fleet_summary(runs: dict, slo, pools, wdesc, rate, seed, notes) -> dict:
    from planner.serving.fleet import fleet_report

    first = next(iter(runs.values()))
    out = {"fleet": [{"model": p.replica.model_id, "replicas": p.count, "gpus_per_replica": p.replica.gpus,
                      "plan": p.replica.plan, "accuracy": p.replica.accuracy} for p in pools],
           "gpus": sum(p.count * p.replica.gpus for p in pools), "workload": wdesc, "rate": rate, "seed": seed,
           "requests": int(len(first.arrival_s)), "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s}, "runs": {}, "notes": notes}
    for lab, res in runs.items():
        s = res.summary(slo)
        out["runs"][lab] = {**fleet_report(res, slo), "requests_per_s": s["requests_per_s"], "ttft_s": s["ttft_s"],
                            "tpot_s": s["tpot_s"], "e2e_latency_s": s["e2e_latency_s"],
                            "goodput_requests_per_s": s["slo"]["goodput_requests_per_s"]}
    return out
