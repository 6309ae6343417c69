"""Capacity: the fewest GPUs (replica plan x replica count) that hold SLO percentiles at a rate.

1. Candidate replica layouts: for each replica size (1, 2, 4, ... GPUs, inside one scale-up
   domain) the plan search picks the layout with the most tokens/s per GPU whose *mean* TTFT
   and TPOT meet the SLO (it also names the concurrency that does so), and the best with
   data-parallel attention apart. Disaggregated groups (x prefill and y decode workers over the
   scale-out network) are candidates too: the search's best group within 2 and within 4 scale-up
   domains, sized in whole groups.
2. Each candidate is sized with the event simulator: a first replica count from the search's
   per-replica throughput, then the simulator checks the p99 (or chosen percentile) TTFT and
   TPOT at the target rate, and the count is raised (and, once it holds, lowered by bisection)
   until it is the smallest that holds. The replica's batch cap is the search's concurrency or
   the engine's default, whichever needs fewer replicas.
3. The fewest GPUs win; cost per hour and per month (730 h) from the hardware price; the chosen
   deployment's latency-versus-load curve is swept up to saturation (all requests at once).
A daily profile of hourly rates is sized for its peak and reports the average utilization
(mean rate / the highest rate the deployment holds the SLO at) and what per-hour autoscaling
would need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from planner.errors import PlannerError
from planner.serving.simulator import SLO, Pool, Scheduler, Simulator, _percentile, keeps_up, replica_for
from planner.serving.workload import WorkloadSpec, generate
from planner.specs.engine import get_engine
from planner.specs.quant import default_kv

HOURS_PER_MONTH = 730.0


@dataclass
class Check:
    replicas: int
    rate: float
    p_ttft_s: float
    p_tpot_s: float
    throughput: float
    ok: bool


@dataclass
class Candidate:
    label: str
    plan: dict
    gpus_per_replica: int
    max_seqs: int
    replicas: int | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def gpus(self) -> int | None:
        return None if self.replicas is None else self.replicas * self.gpus_per_replica


@dataclass
class CapacityResult:
    model: str
    hardware: str
    rate: float
    workload: str
    slo: dict
    feasible: bool
    reason: str
    gpus: int | None
    replicas: int | None
    plan: dict | None
    usd_per_hour: float | None
    usd_per_month: float | None
    at_rate: dict | None
    candidates: list[dict]
    load_curve: list[dict]
    saturation_rate: float | None
    daily: dict | None
    notes: list[str]
    usd_per_hour_owned: float | None = None  # purchase amortized + power x PUE x electricity (planner/cap/cost.py)
    usd_per_month_owned: float | None = None
    owned_cost: dict | None = None  # its parts and assumptions
    # the fleet's cost over the output tokens it serves at the rate (the mean rate of a daily profile)
    usd_per_million_output_tokens: float | None = None
    usd_per_million_output_tokens_owned: float | None = None
    # the GPU count as a range: the replicas needed if the device serves at the high / low end of the error band of
    # its situation (planner.calibrate.uncertainty: cross-validated residuals of the published rows)
    gpus_low: int | None = None
    gpus_high: int | None = None
    uncertainty: dict | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Sizer:
    """Simulate one replica plan at a rate with a replica count (cached)."""

    def __init__(self, model: str, hardware: str, plan: dict, spec: WorkloadSpec, *, engine: str, max_seqs: int | None,
                 percentile: float, slo: SLO, requests: int | None, seed: int, max_input: float, lora=None,
                 adp_balance: int | None = None):
        from planner.serving.predict import adp_balance_for
        from planner.specs.engine import get_engine

        adp = int(plan.get("attention_dp", 1))
        # a batch cap counts the replica's sequences; the engine's knob (the scheduler's) is per attention-DP rank;
        # attention-DP ranks hold prompts as the request asks, else as the engine profile's deployment does
        eng = get_engine(engine)
        self.sched = Scheduler(max_seqs=-(-max_seqs // adp) if max_seqs else None,
                               adp_balance=adp_balance_for(eng, adp, adp_balance) or None)
        # a disaggregated group: x prefill workers and y decode workers (the replica above is a decode worker)
        self.disagg = dg = plan.get("disaggregated")
        group = plan["gpus_per_replica"] if dg else None  # the group's GPUs
        if dg:
            padp = dg["prefill_attention_dp"]
            self.pre = replica_for(model, hardware, tp=dg["prefill_tp"], pp=dg["prefill_pp"], ep=dg["prefill_ep"],
                                   adp=padp, weights=plan["weights"], kv=plan["kv"], engine=engine, max_input=max_input,
                                   eplb=dg.get("prefill_eplb_redundant_experts"),
                                   disagg_group_gpus=group, name=f"prefill of {plan['label']}",
                                   sched=Scheduler(adp_balance=adp_balance_for(eng, padp, adp_balance) or None))
        self.rep = replica_for(model, hardware, tp=plan["tp"], pp=plan["pp"], ep=plan["ep"], adp=adp,
                               weights=plan["weights"], kv=plan["kv"], engine=engine, sched=self.sched,
                               max_input=max_input, lora=lora, disagg_group_gpus=group,
                               eplb=plan.get("eplb_redundant_experts"))
        self.lora = lora  # a costmodel.lora.LoraSpec: every request names an adapter (its popularity)
        self.spec, self.q, self.slo, self.requests, self.seed = spec, percentile, slo, requests, seed
        self.cache: dict[tuple[int, float], tuple[Check, object]] = {}

    def n_requests(self, rate: float) -> int:
        if self.requests:
            return self.requests
        return int(np.clip(rate * 300.0, 1000, 10000)) if math.isfinite(rate) else 3000

    def run(self, replicas: int, rate: float):
        key = (replicas, rate)
        if key not in self.cache:
            reqs = generate(self.spec, self.n_requests(rate), rate=rate, seed=self.seed)
            if self.lora is not None:
                from planner.serving.sim.adapters import assign_adapters

                a = assign_adapters(len(reqs), self.lora, self.seed)
                for i in np.nonzero(reqs.parent >= 0)[0]:  # a conversation keeps its first turn's adapter
                    a[i] = a[reqs.parent[i]]
                reqs.adapter = a
            dg = self.disagg
            pools = ([Pool(self.pre, dg["prefill_workers"] * replicas, "prefill"),
                      Pool(self.rep, dg["decode_workers"] * replicas, "decode")] if dg else [Pool(self.rep, replicas)])
            res = Simulator(pools, reqs).run()
            d = res.done
            pt = _percentile(res.ttft_s[d], self.q)
            pp = _percentile(res.tpot_s[d], self.q)
            thr = float(res.steady_throughput())
            ok = keeps_up(res) and not res.rejected.any()
            if self.slo.ttft_s is not None:
                ok &= pt <= self.slo.ttft_s
            if self.slo.tpot_s is not None:
                ok &= pp <= self.slo.tpot_s
            self.cache[key] = (Check(replicas, rate, pt, pp, thr, bool(ok)), res)
        return self.cache[key]

    def slo_met(self, chk: Check, res) -> bool:
        """The SLO percentiles alone (no request rejected), apart from whether the queue keeps up."""
        ok = not res.rejected.any()
        if self.slo.ttft_s is not None:
            ok &= chk.p_ttft_s <= self.slo.ttft_s
        if self.slo.tpot_s is not None:
            ok &= chk.p_tpot_s <= self.slo.tpot_s
        return bool(ok)

    def size(self, rate: float, start: int, max_replicas: int) -> int | None:
        """Smallest replica count that holds the SLO percentiles at ``rate`` (None above the cap)."""
        ok = lambda k: self.run(k, rate)[0].ok  # noqa: E731
        n = max(1, min(start, max_replicas))
        if ok(n):
            hi, m = n, n // 2
            while m >= 1 and ok(m):
                hi, m = m, m // 2
            lo = m  # fails (or 0)
        else:
            lo = n
            while True:
                if n >= max_replicas:
                    return None
                n = min(max_replicas, max(n + 1, int(math.ceil(n * 1.25))))
                if ok(n):
                    break
                lo = n
            hi = n
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
        return hi


def _candidates(model: str, hardware: str, spec: WorkloadSpec, slo: SLO, max_gpus: int, weights: str, kv: str | None,
                engine: str, isl: float, osl: float, lora=None, eplb: int | None = None) -> tuple[list[dict], list[str]]:
    """The plan search's best layout per replica size (throughput per GPU under the mean SLO), the best with
    data-parallel attention apart, and (without adapters) the best disaggregated groups."""
    from planner.specs.loader import get_hardware

    hw = get_hardware(hardware)
    domain = hw.node_size
    kv_opts = (kv or default_kv(weights, engine, model),)
    out, notes = [], []
    find = lambda budget, disagg: _search(model, hardware, budget, slo, weights, kv_opts, engine, isl, osl,  # noqa: E731
                                          disagg, lora, eplb)
    g = 1
    while g <= min(max_gpus, domain):
        try:
            res = find(g, False)
        except PlannerError:
            g *= 2
            continue
        t = res.table
        if len(t) == 0:
            if res.infeasible:
                notes.append(f"{g} GPU(s) per replica: " + "; ".join(res.infeasible))
            g *= 2
            continue
        c = t.cols
        # the best layout of this size, and the best with data-parallel attention apart: the search's steady state
        # lines one prompt up per attention-DP rank (offline benchmarks, balancing); at Poisson arrivals a prompt step
        # waits on one rank's prefill, so which of the two holds a percentile SLO on fewer GPUs is the simulator's call
        size = (c["gpus_per_replica"] == g) & ~c["disagg"].astype(bool)
        out += [_candidate(t, mine, model, osl) for mine in (np.nonzero(size & (c["adp"] == 1))[0],
                                                            np.nonzero(size & (c["adp"] > 1))[0]) if len(mine)]
        g *= 2
    # disaggregated groups (prefill and decode pools over the scale-out network): the search's best group within 2
    # and within 4 scale-up domains, sized in whole groups
    budgets = sorted({min(max_gpus, 2 * domain), min(max_gpus, 4 * domain)}) if lora is None else []
    for budget in budgets:
        if budget < 2:
            continue
        try:
            t = find(budget, True).table
        except PlannerError as e:
            notes.append(f"disaggregated within {budget} GPUs: {e}")
            continue
        mine = np.nonzero(t.cols["disagg"].astype(bool))[0] if len(t) else []
        if len(mine):
            out.append(_candidate(t, mine, model, osl))
    unique: dict = {}  # one candidate per layout and size
    for cand in out:
        unique.setdefault((cand["label"], cand["gpus_per_replica"]), cand)
    return list(unique.values()), notes


def _search(model, hardware, budget, slo, weights, kv_opts, engine, isl, osl, disaggregated: bool, lora, eplb=None):
    """The plan search within ``budget`` GPUs at the candidates' settings (one weight and KV format, no offload, whole
    prompts), aggregated or disaggregated layouts."""
    # capacity sits above the plan search (it sizes what the search recommends)
    from planner.search.evaluate import Workload
    from planner.search.run import Constraints, search
    from planner.search.space import SpaceOptions

    opts = SpaceOptions(weights=(weights,), kv=kv_opts, offload=False, disaggregated=disaggregated, chunk_tokens=(0,),
                        lora=lora, eplb=eplb)
    return search(model, [hardware], budget, Workload(max(int(round(isl)), 1), max(int(round(osl)), 1)),
                  Constraints(gpus=budget, ttft_s=slo.ttft_s, tpot_s=slo.tpot_s), opts=opts, engine=engine)


# the plan keys that name a candidate's replica layout (a disaggregated one adds its "disaggregated" pools)
LAYOUT_KEYS = ("tp", "pp", "ep", "attention_dp", "weights", "kv", "eplb_redundant_experts")


def _candidate(t, rows: np.ndarray, model: str, osl: float) -> dict:
    """The row of ``rows`` with the most tokens/s per GPU as a candidate: its layout, the GPUs of one replica (of one
    prefill/decode group when disaggregated, with the group's pools), its concurrency and requests/s."""
    from planner.search.run import row

    c = t.cols
    i = int(rows[np.argmax(c["tok_s_per_gpu"][rows])])
    rec = row(t, i, 0, float(c["tok_s_per_gpu"].max()), model)
    p = rec["plan"]
    dg = p.get("disaggregated")
    gpus = rec["gpus"] if dg else int(c["gpus_per_replica"][i])
    out = {k: p[k] for k in LAYOUT_KEYS if k in p}
    out.update(gpus_per_replica=gpus, concurrency=p["concurrency_per_replica"],
               requests_per_s_per_replica=rec["output_tokens_per_s_per_gpu"] * gpus / osl, label=rec["label"].split(" x")[0])
    if dg:
        out["disaggregated"] = dg
    return out


def saturation_rate(sizer: Sizer, replicas: int, iters: int = 6) -> float:
    """The highest arrival rate the replicas keep up with (no SLO): bisection around the throughput of
    a run with every request queued at once (that run's drain of its longest requests biases it low)."""
    _, res = sizer.run(replicas, math.inf)
    rough = res.summary()["requests_per_s"] or 1e-3
    lo, hi = 0.5 * rough, 2.0 * rough
    up = lambda r: keeps_up(sizer.run(replicas, float(f"{r:.6g}"))[1])  # noqa: E731
    if not up(lo):
        return lo
    if up(hi):
        return hi
    for _ in range(iters):
        mid = (lo + hi) / 2.0
        if up(mid):
            lo = mid
        else:
            hi = mid
    return float(f"{lo:.6g}")


def load_curve(sizer: Sizer, replicas: int, fractions=(0.1, 0.25, 0.4, 0.55, 0.7, 0.8, 0.9, 1.0, 1.15)) -> tuple[float, list[dict]]:
    """Saturation rate and latency percentiles at fractions of it."""
    sat = saturation_rate(sizer, replicas)
    rows = []
    for f in fractions:
        r = sat * f
        chk, res = sizer.run(replicas, float(f"{r:.6g}"))
        s = res.summary(sizer.slo)
        rows.append({"rate": chk.rate, "load": f, "throughput": chk.throughput,
                     "ttft_p50_s": s["ttft_s"]["p50"], "ttft_p99_s": s["ttft_s"]["p99"],
                     "tpot_p50_s": s["tpot_s"]["p50"], "tpot_p99_s": s["tpot_s"]["p99"],
                     "e2e_p50_s": s["e2e_latency_s"]["p50"], "e2e_p99_s": s["e2e_latency_s"]["p99"],
                     "slo_attainment": s.get("slo", {}).get("attainment"),
                     # the percentiles against the SLO; whether the queue keeps up is its own column (a bursty trace
                     # can leave a backlog at low mean load while every percentile is inside the SLO)
                     "meets_slo": sizer.slo_met(chk, res), "keeps_up": bool(keeps_up(res))})
    return sat, rows


def max_rate(sizer: Sizer, replicas: int, lo: float, hi: float, iters: int = 7) -> float:
    """Highest rate in [lo, hi] at which ``replicas`` hold the SLO (bisection; lo must hold)."""
    if sizer.run(replicas, hi)[0].ok:
        return hi
    for _ in range(iters):
        mid = float(f"{(lo + hi) / 2:.6g}")
        if sizer.run(replicas, mid)[0].ok:
            lo = mid
        else:
            hi = mid
    return lo


def capacity(model: str, hardware: str, rate: float, spec: WorkloadSpec, *, ttft_s: float | None = None,
             tpot_s: float | None = None, percentile: float = 99.0, max_gpus: int = 64, weights: str = "bf16",
             kv: str | None = None, engine: str = "trtllm", requests: int | None = None, seed: int = 0,
             hourly: list[float] | None = None, curve: bool = True, progress=None, tco=None, lora=None,
             adp_balance: int | None = None, eplb: int | None = None) -> CapacityResult:
    """``lora``: a costmodel.lora.LoraSpec; candidates and the simulated replicas serve those adapters.
    ``adp_balance``: attention-DP candidates hold prompts until every rank can take one, at most this many decode
    steps (Scheduler.adp_balance; 0: they enter as they arrive); None: the engine profile's (Engine.attention_dp_balance)."""
    if hourly:
        if any((not math.isfinite(x)) or x < 0 for x in hourly):
            raise PlannerError("hourly rates must be finite and not negative")
        rate = max(hourly)
    if not (rate > 0) or math.isinf(rate):
        raise PlannerError("--rate must be a positive, finite number of requests per second")
    if max_gpus < 1:
        raise PlannerError("--max-gpus must be at least 1")
    if not 0 < percentile < 100:
        raise PlannerError("the SLO percentile must be in (0, 100)")
    from planner.specs.loader import get_hardware, get_model

    m, hw = get_model(model), get_hardware(hardware)
    eng = get_engine(engine)
    eng.check_weights(weights, hw)  # a format the engine has no kernel for, or a cache it cannot store: refused up front
    if kv is not None:
        eng.check_kv(kv)
    slo = SLO(ttft_s, tpot_s)
    isl, osl = spec.mean_lengths()
    probe = generate(spec, 3000, rate=1.0, seed=seed)
    max_input = float(probe.input_tokens.max())
    from planner.specs.engine import era_notes

    notes = era_notes(engine) + [f"workload {spec.name}: {spec.describe()} (mean input {isl:.0f}, output {osl:.0f} tokens); {spec.source}"]
    if ttft_s is None and tpot_s is None:
        notes.append("no SLO given: sized only to keep up with the rate")
    cands, search_notes = _candidates(m.id, hw.id, spec, slo, max_gpus, weights, kv, engine, isl, osl, lora, eplb)
    notes += search_notes
    if not cands:
        raise PlannerError(f"no plan of {m.id} on {hw.id} meets the mean SLO within {max_gpus} GPUs per replica"
                           + (f" ({search_notes[0]})" if search_notes else ""))
    tried = _size_candidates(m, hw, cands, spec, rate, engine, percentile, slo, requests, seed, max_input, lora,
                             max_gpus, notes, progress, adp_balance)
    ok = [(c, s) for c, s in tried if c.replicas is not None]
    cand_rows = [{"plan": c.label, "batch_cap": c.max_seqs, "gpus_per_replica": c.gpus_per_replica, "replicas": c.replicas,
                  "gpus": c.gpus, "checks": [{"replicas": k.replicas, "p_ttft_s": k.p_ttft_s, "p_tpot_s": k.p_tpot_s,
                                              "throughput": k.throughput, "ok": k.ok} for k in c.checks if k.rate == rate]}
                 for c, _ in tried]
    slo_d = {"ttft_s": ttft_s, "tpot_s": tpot_s, "percentile": percentile}
    if not ok:
        return CapacityResult(m.id, hw.id, rate, spec.name, slo_d, False,
                              f"no deployment within {max_gpus} GPUs holds the p{percentile:g} SLO at {rate:g} req/s",
                              None, None, None, None, None, None, cand_rows, [], None, None, notes)
    ok.sort(key=lambda cs: (cs[0].gpus, cs[1].run(cs[0].replicas, rate)[0].p_ttft_s))
    best, sizer = ok[0]
    chk, res = sizer.run(best.replicas, rate)
    at_rate = res.summary(slo)
    price = hw.price.usd_per_hour if hw.price else None
    usd_h = price * best.gpus if price else None
    if not price:
        notes.append(f"no published price for {hw.id}")
    sat, rows = (None, [])
    if curve:
        if progress:
            progress("latency-versus-load curve")
        sat, rows = load_curve(sizer, best.replicas)
    daily = _daily(sizer, best, rate, sat, hourly, progress) if hourly else None
    plan = {**best.plan, "replicas": best.replicas, "gpus_per_replica": best.gpus_per_replica, "batch_cap": best.max_seqs,
            "engine": get_engine(engine).name, "label": best.label}
    from planner.cap.cost import owned_cost_keys

    own = owned_cost_keys(hw, best.gpus, None, tco)
    own_h = own["usd_per_hour_owned"]
    if own_h is None:
        notes.append(f"no purchase price for {hw.id}: no owned cost")
    tok_h = (daily["mean_rate"] if daily else rate) * osl * 3600.0  # output tokens served per hour
    per_m = [u / tok_h * 1e6 if u and tok_h > 0 else None for u in (usd_h, own_h)]
    lo, hi, band = gpu_range(hw.id, m, best.replicas, best.gpus_per_replica, plan["engine"])
    return CapacityResult(m.id, hw.id, rate, spec.name, slo_d, True, "", best.gpus, best.replicas, plan, usd_h,
                          usd_h * HOURS_PER_MONTH if usd_h else None, at_rate, cand_rows, rows, sat, daily, notes,
                          own_h, own_h * HOURS_PER_MONTH if own_h else None, own["owned"], *per_m, lo, hi, band)


def _size_candidates(m, hw, cands, spec, rate, engine, percentile, slo, requests, seed, max_input, lora, max_gpus,
                     notes, progress, adp_balance=None) -> list:
    """Each candidate replica layout (at its planned batch and at the engine's cap), sized by simulation: the fewest
    replicas that hold the SLO at the rate."""
    tried: list[tuple[Candidate, Sizer]] = []
    for i, c in enumerate(cands):
        for cap in dict.fromkeys((int(c["concurrency"]), None)):
            if progress:
                progress(f"sizing {c['label']} (batch cap {cap or 'engine'})")
            try:
                sizer = Sizer(m.id, hw.id, c, spec, engine=engine, max_seqs=cap, percentile=percentile, slo=slo,
                              requests=requests, seed=seed, max_input=max_input, lora=lora, adp_balance=adp_balance)
            except PlannerError as e:
                notes.append(f"{c['label']}: {e}")
                continue
            cand = Candidate(c["label"], {k: c[k] for k in (*LAYOUT_KEYS, "disaggregated") if k in c}, c["gpus_per_replica"],
                             sizer.rep.max_seqs)
            max_rep = max_gpus // c["gpus_per_replica"]
            if max_rep < 1:
                continue
            start = max(1, int(math.floor(rate / max(c["requests_per_s_per_replica"], 1e-9) * 0.8)))
            cand.replicas = sizer.size(rate, start, max_rep)
            cand.checks = [v[0] for v in sizer.cache.values()]
            tried.append((cand, sizer))
    return tried


def _daily(sizer, best, rate: float, sat, hourly: list[float], progress) -> dict:
    """Autoscaled replicas per hour of a daily profile, against a static fleet sized for the peak."""
    if progress:
        progress("daily profile")
    hold = max_rate(sizer, best.replicas, rate, max(sat or rate * 2, rate * 1.01))
    per_rep = hold / best.replicas
    need = [int(math.ceil(r / per_rep)) if r > 0 else 0 for r in hourly]
    return {"hours": len(hourly), "peak_rate": rate, "mean_rate": float(np.mean(hourly)),
            "max_rate_at_slo": hold, "average_utilization": float(np.mean(hourly)) / hold,
            "autoscaled_replicas_per_hour": need,
            "autoscaled_gpu_hours_per_day": float(sum(need) * best.gpus_per_replica * 24.0 / len(hourly)),
            "static_gpu_hours_per_day": float(best.gpus * 24.0)}


def gpu_range(hw_id: str, m, replicas: int, gpus_per_replica: int, engine=None) -> tuple[int, int, dict]:
    """(gpus_low, gpus_high, band): replicas scale with 1 / throughput, so a device that really serves (1 + high) times
    the predicted throughput needs replicas / (1 + high) of them, and one at (1 + low) needs replicas / (1 + low)."""
    from planner.calibrate.uncertainty import uncertainty_for

    band = uncertainty_for(hw_id, "decode", m.moe is not None, engine).get("throughput")
    if not band:
        return replicas * gpus_per_replica, replicas * gpus_per_replica, {}
    lo_r = max(1, math.ceil(replicas / (1.0 + band["high"]) - 1e-9))
    hi_r = max(lo_r, math.ceil(replicas / max(1.0 + band["low"], 0.05) - 1e-9))
    return lo_r * gpus_per_replica, hi_r * gpus_per_replica, {"throughput": band}


def read_daily(path: str) -> list[float]:
    """Hourly rates: a CSV with a ``rate`` column (any other columns ignored), or one number per line."""
    import csv
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise PlannerError(f"cannot read {p}: {e.strerror}") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise PlannerError(f"{p} holds no rates")
    try:
        return [float(x.split(",")[0]) for x in lines]
    except ValueError:
        pass
    rows = list(csv.DictReader(lines))
    col = next((c for c in (rows[0].keys() if rows else []) if c and c.strip().lower() in ("rate", "requests_per_s", "rps")), None)
    if col is None:
        raise PlannerError(f"{p}: give one rate per line, or a CSV with a 'rate' column")
    try:
        return [float(r[col]) for r in rows]
    except (TypeError, ValueError):
        raise PlannerError(f"{p}: column {col!r} holds a value that is not a number") from None


def parse_hourly(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PlannerError(f"--hourly takes comma-separated rates such as 2,3,5, got {text!r}") from None
    if not vals:
        raise PlannerError("--hourly needs at least one rate")
    return vals
