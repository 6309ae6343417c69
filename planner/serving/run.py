"""Run one simulation scenario (single deployment, disaggregated pools or a fleet of model sizes)
from plain arguments: the library behind ``planner simulate`` and study points."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
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


def _check_closed_loop(clients: int, rate, trace) -> None:
    """``--clients`` checked against the flags it replaces."""
    if clients < 1:
        raise PlannerError("--clients must be at least 1")
    if rate is not None:
        raise PlannerError("give --rate or --clients, not both: N clients send each request when their last one ends")
    if trace:
        raise PlannerError("--clients draws lengths from a workload; a --trace brings its own arrivals")


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


def simulate_scenario(*, model=None, hardware, gpus=None, tp=None, pp=None, ep=None, attention_dp=None,
                      attention_dp_balance=None, dp=None, weights="bf16", activations=None, kv=None, engine="trtllm",
                      workload=None, trace=None, isl=1024, osl=256, arrival="poisson", cv=1.0, shared_prefix=None,
                      rate=None, requests=1000, clients=None, dataset_entries=None, dataset_sampling="shuffle", seed=0,
                      ttft_slo=None, tpot_slo=None, router="least-outstanding",
                      recv_interval=None, stream_interval=None, chunked_prefill=None, max_seqs=None, max_batched_tokens=None, kv_admission=None,
                      preemption="recompute", spec=None, disagg=None, prefill_tp=None, prefill_attention_dp=None,
                      prefill_ep=None, fleet=None, link=None, cp=1, draft_model=None, context_extension=None,
                      prompt_compression=None, sparse_attention=None, lora=None, lora_resident=None,
                      lora_popularity=None, migrate=None, priority_preemption=False, swap_group=None, ic_cache=None,
                      eplb=None, progress_factory=None) -> Outcome:
    """``rate`` is requests/s, 'inf' or None; ``clients`` N clients in a closed loop instead of a rate; ``spec`` 'K:ALPHA';
    ``disagg`` 'P:D'; ``fleet`` 'MODEL:N[:TP],...'."""
    import contextlib

    from planner.serving.planspec import PlanSpec, check_eplb, resolve_parallel
    from planner.serving.sim import SLO, Router, Scheduler, Simulator
    from planner.specs.engine import get_engine

    def plan_options(gpus, tp, pp, ep, dp, weights, kv, activations):
        tp_, pp_, ep_, dp_ = resolve_parallel(gpus, tp, pp, ep, dp, attention_dp)
        return PlanSpec(tp=tp_, pp=pp_, ep=ep_, dp=dp_, attention_dp=attention_dp or 1, weights=weights, kv=kv,
                        activations=activations)

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
    if dataset_entries is not None:
        if trace:
            raise PlannerError("--dataset-entries reuses drawn prompts; a --trace brings its own requests")
        if shared_prefix:
            raise PlannerError("--dataset-entries and --shared-prefix both price prefix-cache hits: give one")
        if fleet is not None or disagg is not None or migrate is not None:
            raise PlannerError("--dataset-entries is simulated on one aggregated deployment (no --fleet, --disagg or --migrate)")
    # the scheduler's polling interval (SGLang --scheduler-recv-interval) and the steps between streamed chunks the user set
    pins = {k: int(v) for k, v in (("recv_interval", recv_interval), ("stream_interval", stream_interval)) if v is not None}
    if pins:
        engine = get_engine(engine).set_by_user(**pins)
    if clients is not None:
        _check_closed_loop(clients, rate, trace)
        rate = "inf"  # lengths are drawn as for a burst; the loop sets when each request arrives
    r = parse_rate(rate) if isinstance(rate, str) or rate is None else float(rate)
    k, alpha = parse_spec(spec)
    from planner.serving.predict import check_adp_balance

    check_adp_balance(attention_dp_balance, attention_dp or 1)
    # the balance as asked (a fleet's); a deployment's pools resolve theirs against the engine profile (_deployment_pools)
    sched = Scheduler(max_seqs=max_seqs, max_batched_tokens=max_batched_tokens, chunked_prefill=chunked_prefill,
                      admission=kv_admission, preemption=preemption, spec_k=k, spec_alpha=alpha,
                      priority_preemption=priority_preemption, swap_group=swap_group, adp_balance=attention_dp_balance or None)
    sched.check()
    router_ = Router(router if fleet is None or router != "least-outstanding" else "threshold:8")
    slo = SLO(ttft_slo, tpot_slo)
    reqs, wspec, wdesc = load_requests(workload, trace, isl, osl, r, requests, seed, arrival, cv, shared_prefix)
    if dataset_entries is not None:
        if reqs.has_turns or (wspec is not None and wspec.shared_prefix):
            raise PlannerError("--dataset-entries reuses single prompts: use a workload without conversations or a shared prefix")
        from planner.serving.workload import reused_prompts

        reqs = reused_prompts(reqs, dataset_entries, dataset_sampling, seed)
        wdesc = f"{wdesc}; {dataset_entries} distinct prompts sent again and again ({dataset_sampling})"
    if clients is not None:
        if reqs.has_turns:
            raise PlannerError("--clients sends independent requests: use a workload without conversations")
        if dataset_entries is None and not np.asarray(reqs.prefix_tokens).any():
            # independent prompts: nothing of one is another's, so the prefix cache is off (it stays on for prompts a
            # client sends again, --dataset-entries, and for a prefix every prompt starts with, --shared-prefix)
            engine = get_engine(engine).with_(prefix_caching=False)
        from planner.serving.workload import shared_closed_loop

        reqs = shared_closed_loop(reqs, clients)
        wdesc = f"{wdesc}; {min(clients, len(reqs))} clients in a closed loop (each completion sends the next request)"
        r = None
    max_input = float(reqs.input_tokens.max()) + float(reqs.output_tokens.max())
    from planner.specs.engine import era_notes

    notes: list[str] = era_notes(engine)
    if dataset_entries is not None:
        eng_ = get_engine(engine)
        if not eng_.prefix_caching:
            notes.append(f"{eng_.id}@{eng_.version}'s prefix cache is off (its engine profile), so every prompt sent again "
                         "is prefilled again: --dataset-entries changes nothing")
    lora_spec = request_adapters(reqs, lora, lora_resident, lora_popularity, seed, fleet or disagg)
    if reqs.classes and sched.policy == "fcfs":  # service classes: the waiting queue goes by class priority
        sched.policy = "priority"
    if ic_cache is not None and fleet is None:
        raise PlannerError("--ic-cache routes between the models of a --fleet BIG:N,SMALL:M")
    if fleet is not None:
        if any(v is not None for v in (gpus, tp, pp, ep, attention_dp, dp, disagg)):
            raise PlannerError("--fleet sets its own replicas: drop --gpus/--tp/--pp/--ep/--attention-dp/--dp/--disagg "
                               "(use MODEL:N:TP)")
        if slo.ttft_s is None and slo.tpot_s is None:
            slo = SLO(2.0, 0.2)
            notes.append("no SLO given: TTFT 2 s and TPOT 200 ms (the MLPerf server limits) for attainment")
        return _fleet_run(fleet, hardware, reqs, router_, slo, notes, wdesc, r, seed, ic_cache, _progress, weights=weights,
                          kv=kv, engine=engine, sched=sched, max_input=max_input)
    plan = plan_options(gpus // cp if gpus else gpus, tp, pp, ep, dp, weights, kv, activations)
    techniques, max_input = plan_techniques(plan, reqs, notes, max_input, cp=cp, draft_model=draft_model, k=k,
                                            alpha=alpha, context_extension=context_extension,
                                            prompt_compression=prompt_compression, sparse_attention=sparse_attention)
    common = dict(weights=plan.weights, kv=plan.kv_format(engine, model), activations=plan.activations, engine=engine, max_input=max_input,
                  techniques=techniques, lora=lora_spec, eplb=eplb, min_prompt=float(reqs.input_tokens.min()))
    prefill = {"tp": prefill_tp, "attention_dp": prefill_attention_dp, "ep": prefill_ep}
    if eplb is not None:  # the balancer's conditions, on the widest expert-parallel pool of the deployment
        from planner.specs.loader import get_model

        check_eplb(replace(plan, ep=max(plan.ep, prefill_ep or 1), eplb=eplb),
                   get_model(model) if isinstance(model, str) else model,
                   get_engine(engine))
    if not disagg and any(v is not None for v in prefill.values()):
        given = next(k for k, v in prefill.items() if v is not None)
        raise PlannerError(f"--prefill-{given.replace('_', '-')} sets the prefill pool of --disagg PREFILL:DECODE; "
                           "without --disagg there is none")
    pools = _deployment_pools(model, hardware, plan, sched, disagg, prefill, common, attention_dp_balance)
    notes += _long_prompt_notes(pools, float(reqs.input_tokens.max()))
    with _progress(len(reqs)) as prog:
        res = Simulator(pools, reqs, router=router_, progress=prog, migrate=migrate).run()
    summ = res.summary(slo)
    # each pool's layout, with what the run measured of it (a disaggregated run's summary has its pools' shares)
    served = {i: d for i, d in enumerate(summ.pop("pools", None) or [])}
    out = {"model": pools[0].replica.model_id, "hardware": pools[0].replica.hardware_id,
           "pools": [{"name": p.replica.name, "role": p.role, "replicas": p.count, "gpus_per_replica": p.replica.gpus,
                      "plan": p.replica.plan, **served.get(i, {})} for i, p in enumerate(pools)],
           "gpus": sum(p.count * p.replica.gpus for p in pools), "router": res.router,
           "workload": wdesc, "rate": r, "clients": clients, "requests": len(reqs), "seed": seed, **summ,
           "queue_over_time": dict(zip(("t_s", "waiting", "running"), _downsample(res.queue_t, res.queue_waiting, res.queue_running))),
           "simulator": {"events": res.events, "wall_s": res.wall_s, "core": res.core}, "notes": notes + res.notes}
    if lora_spec is not None:
        out["lora"] = {"adapters": lora_spec.adapters, "rank": lora_spec.rank, "targets": list(lora_spec.targets),
                       "popularity": lora_spec.popularity, **out["lora"]}
    return Outcome(out, res=res, pools=pools, slo=slo)


def _long_prompt_notes(pools, longest: float) -> list[str]:
    """The note of an engine that would refuse the run's longest prompt (Engine.long_prompt_note): the simulator splits
    a prompt longer than one rank's token budget into budget-sized pieces, as chunked prefill would."""
    from planner.specs.engine import get_engine

    for pool in pools:
        rep = pool.replica
        if pool.role == "decode":
            continue
        note = get_engine(rep.plan["engine"]).long_prompt_note(longest, rep.max_batched_tokens / rep.attention_dp,
                                                               rep.chunked_prefill)
        if note:
            return [f"{note}; simulated in budget-sized pieces, as with chunked prefill on"]
    return []


def plan_techniques(plan, reqs, notes: list[str], max_input: float, *, cp, draft_model, k, alpha, context_extension,
                    prompt_compression, sparse_attention):
    """The plan with its context/attention techniques (None without any), and the longest sequence; compressed prompts
    enter the simulator shortened (the compressor's own time is estimate's term)."""
    techniques = None
    if cp > 1 or draft_model or context_extension or prompt_compression or sparse_attention:
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
    return techniques, max_input


def request_adapters(reqs, lora, resident, popularity, seed, other):
    """The LoRA spec of a run and each request's adapter (a conversation keeps its first turn's)."""
    if lora is None:
        if resident is not None or popularity is not None:
            raise PlannerError("--lora-resident and --lora-popularity need --lora ADAPTERS:RANK")
        return None
    if other:
        raise PlannerError("--lora applies to one aggregated deployment (not with --fleet or --disagg)")
    from planner.serving.sim.adapters import assign_adapters, parse_lora

    spec = parse_lora(lora, resident, popularity)
    a = assign_adapters(len(reqs), spec, seed, reqs.adapter_column)
    for i in np.nonzero(reqs.parent >= 0)[0]:
        a[i] = a[reqs.parent[i]]
    reqs.adapter = a
    return spec


def _deployment_pools(model, hardware, plan, sched, disagg: str | None, prefill: dict, common: dict,
                      asked_balance: int | None = None) -> list:
    """One pool of ``plan.dp`` replicas, or disaggregated prefill and decode pools (``disagg`` 'P:D'); ``prefill``:
    the prefill replicas' tp, attention_dp and ep where they differ from the plan's (None: the plan's). Each pool's
    attention-DP ranks hold prompts as ``asked_balance`` says (0: they do not), else as the engine profile's deployment
    does (Engine.attention_dp_balance), a pool without attention DP never."""
    from planner.serving.predict import adp_balance_for
    from planner.serving.sim import Pool, replica_for
    from planner.specs.engine import get_engine

    eng = get_engine(common["engine"])

    def held(ranks: int):  # the scheduler of a pool of ``ranks`` attention-DP ranks
        return replace(sched, adp_balance=adp_balance_for(eng, ranks, asked_balance) or None)

    adp = plan.attention_dp
    if not disagg:
        return [Pool(replica_for(model, hardware, tp=plan.tp, pp=plan.pp, ep=plan.ep, adp=adp, sched=held(adp), **common),
                     plan.dp)]
    try:
        xp, yd = (int(x) for x in disagg.split(":"))
    except ValueError:
        raise PlannerError(f"--disagg takes PREFILL:DECODE replica counts such as 1:2, got {disagg!r}") from None
    if xp < 1 or yd < 1:
        raise PlannerError("--disagg needs at least one prefill and one decode replica")
    ptp, padp, pep = prefill["tp"] or plan.tp, prefill["attention_dp"] or adp, prefill["ep"] or plan.ep
    group = (ptp * padp * xp + plan.tp * adp * yd) * plan.pp
    par = lambda tp, a, ep: (f"adp{a} tp{tp} ep{ep}" if a > 1 else f"tp{tp}" + (f" ep{ep}" if ep > 1 else ""))  # noqa: E731
    try:
        pre = replica_for(model, hardware, tp=ptp, pp=plan.pp, ep=pep, adp=padp, sched=held(padp), disagg_group_gpus=group,
                          name=f"prefill {par(ptp, padp, pep)}", **common)
    except PlannerError as e:
        raise PlannerError(f"the prefill pool: {e}") from None
    dec = replica_for(model, hardware, tp=plan.tp, pp=plan.pp, ep=plan.ep, adp=adp, sched=held(adp), disagg_group_gpus=group,
                      name=f"decode {par(plan.tp, adp, plan.ep)}", **common)
    return [Pool(pre, xp, "prefill"), Pool(dec, yd, "decode")]


def _fleet_run(fleet, hardware, reqs, router_, slo, notes, wdesc, rate, seed, ic_cache, progress, *, weights, kv, engine,
               sched, max_input) -> Outcome:
    """A fleet of model sizes under its router and under a static one; with ``ic_cache``, under
    IC-Cache routing and under routing on load alone (the threshold router)."""
    from planner.serving.fleet import fleet_pools, parse_fleet
    from planner.serving.sim import Router, Simulator
    from planner.serving.sim.routers import ICCache, parse_ic_cache

    ic = parse_ic_cache(ic_cache) if ic_cache else None
    if ic is not None:
        max_input += ic[1] * ic[2]
    ctx = float(np.mean(reqs.input_tokens) + np.mean(reqs.output_tokens))
    pools, fnotes = fleet_pools(parse_fleet(fleet), hardware, weights=weights, kv=kv, engine=engine, sched=sched,
                                max_input=max_input, ctx=ctx)
    notes += fnotes
    aug_acc = None
    if ic is None:
        routers = ((router_.label(), router_), ("static", Router("static")))
    else:
        if len(pools) < 2:
            raise PlannerError("--ic-cache needs a fleet of two model sizes (BIG:N,SMALL:M)")
        load = router_ if router_.policy == "threshold" else Router("threshold:8")
        ic_r = ICCache(ic[0], ic[1], ic[2], threshold=load.threshold, seed=seed)
        routers = ((load.label(), load), (ic_r.label(), ic_r), ("static", Router("static")))
        aug_acc = _ic_accuracy(pools, weights, kv, ic[3], engine)
        notes.append(f"IC-Cache: {ic[0]:.0%} of requests have cached twins; served by the small model with {ic[1]} examples x "
                     f"{ic[2]} tokens in front of the prompt, at quality {aug_acc:.3f} (planner.cap.accuracy cache_routing, "
                     f"small-with-examples quality {ic[3]:g} of the big model: an input)")
    runs = {}
    for lab, rt in routers:
        with progress(len(reqs), f"fleet, router {lab}") as prog:
            runs[lab] = Simulator(pools, reqs, router=rt, progress=prog).run()
    out = _fleet_summary(runs, slo, pools, wdesc, rate, seed, notes, aug_acc)
    return Outcome(out, runs=runs, pools=pools, slo=slo)


def _ic_accuracy(pools, weights, kv, quality: float, engine) -> float:
    """Quality of a request the small model serves with cached examples: the big model's plan accuracy
    with its cache-routing factor at ``quality`` (planner.cap.accuracy)."""
    from planner.cap.accuracy import accuracy, model_terms
    from planner.specs.loader import get_model
    from planner.specs.quant import default_kv

    big = get_model(pools[0].replica.model_id)
    return float(accuracy(weights, kv or default_kv(weights, engine, big), **model_terms(big),
                          cache_routing={"offload_fraction": 1.0, "small_quality": quality})["score"])


def _fleet_summary(runs: dict, slo, pools, wdesc, rate, seed, notes, aug_accuracy=None) -> dict:
    from planner.serving.fleet import fleet_report

    first = next(iter(runs.values()))
    out = {"fleet": [{"model": p.replica.model_id, "replicas": p.count, "gpus_per_replica": p.replica.gpus,
                      "plan": p.replica.plan, "accuracy": p.replica.accuracy} for p in pools],
           "gpus": sum(p.count * p.replica.gpus for p in pools), "workload": wdesc, "rate": rate, "seed": seed,
           "requests": int(len(first.arrival_s)), "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s}, "runs": {}, "notes": notes}
    for lab, res in runs.items():
        s = res.summary(slo)
        out["runs"][lab] = {**fleet_report(res, slo, aug_accuracy), "requests_per_s": s["requests_per_s"], "ttft_s": s["ttft_s"],
                            "tpot_s": s["tpot_s"], "e2e_latency_s": s["e2e_latency_s"],
                            "goodput_requests_per_s": s["slo"]["goodput_requests_per_s"]}
    return out
