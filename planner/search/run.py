"""Search the plan space of one or more devices, apply constraints, find the C/A/P
frontier and recommend one plan with the reason it beat the runner-up."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from planner.cap.accuracy import accuracy as accuracy_of
from planner.cap.accuracy import keeps_release, model_terms
from planner.cap.cost import TcoAssumptions, owned, tco_defaults, usd_per_million_tokens
from planner.errors import PlannerError
from planner.search.evaluate import (CODE_COLUMNS, PlanTable, Workload, aggregated_blocks, evaluate_aggregated,
                                     evaluate_disaggregated)
from planner.search.pareto import pareto_mask
from planner.search.space import SpaceOptions, enumerate_configs
from planner.specs.engine import Engine, era_notes, get_engine
from planner.specs.loader import get_hardware, get_model

OBJECTIVES = {
    "throughput": ("tok_s_per_gpu", +1),  # output tokens/s per GPU
    "cost": ("usd_per_mtok", -1),
    "latency": ("e2e_s", -1),
}


# $/M output tokens column per cost basis: rented (on-demand price) or owned (planner/cap/cost.py)
COST_KEYS = {"rented": "usd_per_mtok", "owned": "usd_per_mtok_owned"}


def pick_cost_basis(hardware: list[str], basis: str | None, tco: TcoAssumptions, needed: bool) -> str:
    """The cost basis: the one asked for, else rented when every device has an on-demand price, else owned when
    every device has a purchase price. When cost ranks or limits plans, a device without the basis's price is an error."""
    if basis is not None and basis not in COST_KEYS:
        raise PlannerError(f"unknown cost basis {basis!r} (use rented or owned)")
    hws = [get_hardware(h) for h in hardware]
    missing = {"rented": [h.id for h in hws if h.price is None], "owned": [h.id for h in hws if owned(h, tco) is None]}
    pick = basis or ("rented" if not missing["rented"] or missing["owned"] else "owned")
    if needed and missing[pick]:
        what = "on-demand price" if pick == "rented" else "purchase price"
        other = "owned" if pick == "rented" else "rented"
        hint = f"; --cost-basis {other} covers them all" if not missing[other] else ""
        raise PlannerError(f"{', '.join(missing[pick])} has no published {what}, so {pick} cost cannot rank or limit "
                           f"its plans{hint}")
    return pick


def owned_caveat(hardware: list[str], basis: str, objective: str, tco: TcoAssumptions) -> str:
    """When owned cost ranks devices, name those priced as the card alone (their host server is not in the capital)."""
    if basis != "owned" or objective != "cost" or len(hardware) < 2:
        return ""
    alone = [h for h in hardware if (o := owned(get_hardware(h), tco)) and any("host server" in n for n in o.notes)]
    return (f"; note: {', '.join(alone)} owned cost counts the device alone (no public server price), so it is low "
            "against devices priced as whole servers") if alone else ""


def online_caveat(rec: dict) -> str:
    """An aggregated data-parallel-attention recommendation is priced with one prompt per rank in each prompt step
    (offline load, or TensorRT-LLM's attention-DP balancing); say where online arrivals cost more."""
    p = rec["plan"]
    if p["mode"] != "aggregated" or p["attention_dp"] < 2:
        return ""
    return ("; note: its attention DP is priced with one prompt per rank in each prompt step (offline load or "
            "balanced scheduling); at Poisson arrivals a prompt step waits on one rank's prefill, so size it with "
            f"`planner capacity` or `planner simulate --attention-dp {p['attention_dp']} --ep {p['ep']}`")


def add_owned_cost(t: PlanTable, tco: TcoAssumptions) -> None:
    """The owned $/M output tokens column, from each row's device and tokens/s per device (NaN without a purchase price)."""
    if not len(t):
        return
    rate = np.array([(o.usd_per_hour if (o := owned(get_hardware(h), tco)) else np.nan) for h in t.hardware], dtype=float)
    t.cols["usd_per_mtok_owned"] = usd_per_million_tokens(rate[t.cols["hardware"].astype(int)], t.cols["tok_s_per_gpu"])


@dataclass
class Constraints:
    gpus: int
    ttft_s: float | None = None
    tpot_s: float | None = None
    min_context: int | None = None
    min_accuracy: float | None = None
    max_usd_per_mtok: float | None = None
    cost_key: str = "usd_per_mtok"  # the $/M tokens column the cost limit reads (rented or owned)

    def checks(self, t: PlanTable) -> dict[str, tuple[np.ndarray, np.ndarray, float, str]]:
        """name -> (passes, value, limit, direction) for every active constraint."""
        c = t.cols
        out = {}
        if self.ttft_s is not None:
            out["ttft"] = (c["ttft_s"] <= self.ttft_s, c["ttft_s"], self.ttft_s, "<=")
        if self.tpot_s is not None:
            out["tpot"] = (c["tpot_s"] <= self.tpot_s, c["tpot_s"], self.tpot_s, "<=")
        if self.min_context is not None:
            out["min-context"] = (c["max_context"] >= self.min_context, c["max_context"], self.min_context, ">=")
        if self.min_accuracy is not None:
            out["min-accuracy"] = (c["accuracy"] >= self.min_accuracy, c["accuracy"], self.min_accuracy, ">=")
        if self.max_usd_per_mtok is not None:
            usd = np.nan_to_num(c[self.cost_key], nan=np.inf)
            out["max-cost"] = (usd <= self.max_usd_per_mtok, usd, self.max_usd_per_mtok, "<=")
        return out


@dataclass
class PlanResult:
    table: PlanTable  # every feasible (constraint-meeting) plan
    frontier: list[dict]
    recommended: dict | None
    runner_up: dict | None
    why: str
    plans_evaluated: int
    plans_costed: int
    seconds: float
    infeasible: list[str] = field(default_factory=list)  # which constraint binds and by how much
    nearest: list[dict] = field(default_factory=list)
    pruned: dict = field(default_factory=dict)
    model: str = ""
    task: str = "general"
    cost_basis: str = "rented"  # which $/M tokens --objective cost and --max-cost used
    skipped: dict = field(default_factory=dict)  # device -> why the engine does not run there (left out of the search)
    notes: list[str] = field(default_factory=list)  # what the answer rests on that the user did not say (Engine.era_note)

    def to_dict(self) -> dict:
        return {"search": {"plans_evaluated": self.plans_evaluated, "plans_costed": self.plans_costed, "pruned": self.pruned,
                           "feasible": len(self.table), "cost_basis": self.cost_basis, "skipped_hardware": self.skipped},
                "timing": {"wall_s": round(self.seconds, 4)},
                "frontier": self.frontier, "recommended": self.recommended, "runner_up": self.runner_up, "why": self.why,
                "infeasible": self.infeasible, "nearest": self.nearest, "notes": self.notes}


def _accuracy_fn(model, task):
    cache: dict[tuple, float] = {}

    def f(cfg, idx, eviction=None, **knobs):  # knobs: context_extension, sparse_attention, prompt_compression
        kk = tuple(sorted(knobs.items()))

        def one(w, kv):
            key = (w, kv, eviction, kk)
            if key not in cache:
                cache[key] = accuracy_of(w, kv, task=task, eviction=eviction, **model_terms(model), **knobs)["score"]
            return cache[key]

        return cfg.per_format(one)[np.asarray(idx, dtype=np.int64)]

    return f


def row(t: PlanTable, i: int, model_max_context: int, best_tok: float, model_id: str) -> dict:
    c = t.at(i)
    w, kv, hw = t.weights[int(c["weights"])], t.kv[int(c["kv"])], t.hardware[int(c["hardware"])]
    plan = {"hardware": hw, "mode": "disaggregated" if c["disagg"] else "intra-gpu-pd" if c.get("intra_f", 0) > 0 else "aggregated",
            "tp": int(c["tp"]), "pp": int(c["pp"]), "ep": int(c["ep"]), "attention_dp": int(c["adp"]),
            "replicas": int(c["dp"]), "weights": w, "kv": kv, "concurrency_per_replica": int(c["concurrency"]),
            "chunked_prefill_tokens": int(c["chunk_tokens"]) or None,
            "speculative": {"draft_tokens": int(c["spec_k"]), "acceptance": float(c["spec_alpha"])} if c["spec_k"] > 0 else None,
            "kv_offload_to_host": bool(c["kv_offload"]),
            "kv_eviction": {"method": t.evict[int(c["evict"])], "kept_tokens": int(c["kv_budget"])} if c["kv_budget"] > 0 else None}
    plan.update(_cap_plan(t, c))
    if c.get("eplb", -1) >= 0:  # a balanced expert-parallel replica (costmodel/eplb.py)
        plan["eplb_redundant_experts"] = int(c["eplb"])
    if c.get("intra_f", 0) > 0:
        plan["intra_gpu_pd"] = {"prefill_share": float(c["intra_f"])}
    if c["disagg"]:
        plan["disaggregated"] = {"prefill_workers": int(c["x_prefill"]), "prefill_gpus_per_worker": int(c["prefill_gpus"]),
                                 "prefill_tp": int(c["prefill_tp"]), "prefill_pp": int(c["prefill_pp"]),
                                 "prefill_ep": int(c["prefill_ep"]), "prefill_attention_dp": int(c["prefill_adp"]),
                                 "decode_workers": int(c["y_decode"]), "decode_gpus_per_worker": int(c["gpus_per_replica"]),
                                 "kv_transfer_s": float(c["kv_transfer_s"]),
                                 "prefill_wait_s": float(c["prefill_wait_s"])}
        if c.get("prefill_eplb", -1) >= 0:
            plan["disaggregated"]["prefill_eplb_redundant_experts"] = int(c["prefill_eplb"])
    d = {
        "gpus": int(c["gpus"]), "plan": plan, "ttft_s": float(c["ttft_s"]), "tpot_s": float(c["tpot_s"]),
        "e2e_latency_s": float(c["e2e_s"]),
        "output_tokens_per_s_per_gpu": float(c["tok_s_per_gpu"]), "output_tokens_per_s_per_user": float(c["tok_s_per_user"]),
        "accuracy": float(c["accuracy"]), "max_context_tokens": int(c["max_context"]),
        "usd_per_million_output_tokens": None if np.isnan(c["usd_per_mtok"]) else float(c["usd_per_mtok"]),
        "usd_per_million_output_tokens_owned": (None if np.isnan(c.get("usd_per_mtok_owned", np.nan))
                                                else float(c["usd_per_mtok_owned"])),
    }
    d["label"] = label(d)
    d["trade"] = cap_trade(d, model_max_context, best_tok, get_model(model_id).released_weights())
    return d


def _cap_plan(t: PlanTable, c: dict) -> dict:
    """The context/attention techniques of a row (search/cap_axes.py columns), for the plan dict."""
    if "cp" not in c:
        return {}
    out = {"context_parallel": int(c["cp"]) if c["cp"] > 1 else None,
           "context_extension": {"method": t.techs[int(c["ctx_ext"])], "factor": float(c["ext_factor"])} if c["ctx_ext"] else None,
           "sparse_attention": {"method": t.techs[int(c["sparse"])], "kept": float(c["sparse_kept"])} if c["sparse"] else None,
           "prompt_compression": {"method": t.techs[int(c["compress"])], "ratio": float(c["compress_ratio"])} if c["compress"] else None}
    if c.get("spec_auto") and c["spec_k"] >= 0:
        out["speculative_adaptive"] = True
    if c.get("draft"):
        out["draft_model"] = t.techs[int(c["draft"])]
    return out


def _layout(tp: int, pp: int, ep: int, adp: int, eplb: int | None) -> str:
    """A replica's parallel layout in a label: tp, then pp, ep and attention-DP where above 1, and the balancer's
    redundant expert slots where it has one."""
    return f"tp{tp}" + "".join(f" {name}{v}" for name, v in (("pp", pp), ("ep", ep), ("adp", adp)) if v > 1) + \
        (f" eplb{eplb}" if eplb is not None else "")


def label(d: dict) -> str:
    p = d["plan"]
    par = _layout(p["tp"], p["pp"], p["ep"], p["attention_dp"], p.get("eplb_redundant_experts"))
    s = f"{p['hardware']} {par} {p['weights']}/kv-{p['kv']} c={p['concurrency_per_replica']}"
    if p["mode"] == "disaggregated":
        dg = p["disaggregated"]
        pre = _layout(dg["prefill_tp"], dg["prefill_pp"], dg["prefill_ep"], dg["prefill_attention_dp"],
                      dg.get("prefill_eplb_redundant_experts"))
        s += f" disagg {dg['prefill_workers']}P({pre}):{dg['decode_workers']}D"
    else:
        s += f" x{p['replicas']}" + (f" intra-pd{p['intra_gpu_pd']['prefill_share']:g}" if p.get("intra_gpu_pd") else "")
    if p["chunked_prefill_tokens"]:
        s += f" chunk{p['chunked_prefill_tokens']}"
    if p["speculative"]:
        s += f" spec{p['speculative']['draft_tokens']}"
    if p["kv_offload_to_host"]:
        s += " kv-offload"
    if p.get("kv_eviction"):
        s += f" {p['kv_eviction']['method']}@{p['kv_eviction']['kept_tokens']}"
    if p.get("speculative_adaptive"):
        s += "(auto)" if p["speculative"] else " spec0(auto)"
    if p.get("draft_model"):
        s += f" draft:{p['draft_model']}"
    if p.get("context_parallel"):
        s += f" cp{p['context_parallel']}"
    for key, knob in (("context_extension", "factor"), ("sparse_attention", "kept"), ("prompt_compression", "ratio")):
        if p.get(key):
            s += f" {p[key]['method']}:{p[key][knob]:g}"
    return s


def cap_trade(d: dict, model_max_context: int, best_tok: float, released: str | None = None) -> str:
    """One line naming what the plan gives up among C, A and P (``released``: the model's released weight format)."""
    p = d["plan"]
    gives = []
    if d["accuracy"] < 0.9995:
        lossy_w = p["weights"] not in ("bf16", "fp16") and not keeps_release(p["weights"], released)
        why = [x for x in (f"{p['weights']} weights" if lossy_w else "",
                          f"{p['kv']} KV" if p["kv"] not in ("bf16", "fp16") else "",
                          f"{p['kv_eviction']['method']} eviction" if p.get("kv_eviction") else "",
                          f"{p['context_extension']['method']} x{p['context_extension']['factor']:g} context" if p.get("context_extension") else "",
                          f"{p['sparse_attention']['method']} sparse attention" if p.get("sparse_attention") else "",
                          f"{p['prompt_compression']['method']} prompt compression" if p.get("prompt_compression") else "") if x]
        gives.append(f"A {d['accuracy'] - 1:+.1%} ({', '.join(why)})")
    if d["max_context_tokens"] < model_max_context:
        gives.append(f"C capped at {d['max_context_tokens']:,} of {model_max_context:,} tokens by KV memory")
    share = d["output_tokens_per_s_per_gpu"] / best_tok if best_tok > 0 else 1.0
    if share < 0.95:
        gives.append(f"P {share:.0%} of the best tokens/s per GPU")
    gains = []
    if p["kv_offload_to_host"]:
        gains.append("host KV offload buys C/concurrency with host-link reads")
    if p["speculative"]:
        gains.append("speculation buys tokens/s per user at no A cost")
    if p.get("kv_eviction"):
        gains.append(f"keeping {p['kv_eviction']['kept_tokens']} KV tokens per sequence buys C and concurrency with A")
    if p.get("context_extension"):
        gains.append(f"RoPE scaling ({p['context_extension']['method']}) buys C past the trained context with A")
    if p.get("context_parallel"):
        gains.append(f"context parallelism over {p['context_parallel']} GPUs buys C (KV spread) with ring-attention traffic")
    if p.get("sparse_attention"):
        gains.append("sparse attention buys P (attention FLOPs and KV reads) with A")
    if p.get("prompt_compression"):
        gains.append("prompt compression buys TTFT and KV with A (the compressor's time is in TTFT)")
    if not gives:
        return "gives up nothing measured here" + (f"; {'; '.join(gains)}" if gains else "")
    return "gives up " + "; ".join(gives) + (f"; {'; '.join(gains)}" if gains else "")


class _Found:
    """The search's tables as they are evaluated, each cut to its rows that meet every constraint at once: only those
    are kept and copied into one table (the same rows in the same order as filtering the whole table). The whole
    tables are kept only while no row is feasible, for explain_infeasible; the first feasible row frees them."""

    def __init__(self, cons: Constraints, tco: TcoAssumptions):
        self.cons, self.tco = cons, tco
        self.feasible: list[PlanTable] = []
        self.every: list[PlanTable] = []
        self.evaluated = self.costed = self.rows = self.feasible_rows = 0

    def add(self, t: PlanTable) -> None:
        self.evaluated += t.evaluated
        self.costed += t.costed
        self.rows += len(t)
        add_owned_cost(t, self.tco)
        f = _feasible(t, self.cons)
        self.feasible.append(f)
        self.feasible_rows += len(f)
        self.every = [] if self.feasible_rows else self.every + [t]


def _feasible(t: PlanTable, cons: Constraints) -> PlanTable:
    """The rows of ``t`` that meet every active constraint."""
    if not len(t):
        return t
    ok = np.ones(len(t), bool)
    for passes, *_ in cons.checks(t).values():
        ok &= passes
    return t if ok.all() else t.rows_view(np.nonzero(ok)[0])


def search(model_id: str, hardware: list[str], gpus: int, wl: Workload, cons: Constraints, *, objective: str = "throughput",
           opts: SpaceOptions | None = None, engine: Engine | str = "trtllm", task: str = "general", top: int = 10,
           cost_basis: str | None = None, tco: TcoAssumptions | None = None) -> PlanResult:
    if gpus < 1:
        raise PlannerError("--gpus must be a positive integer")
    if wl.isl < 1 or wl.osl < 1:
        raise PlannerError("input and output lengths must be at least 1 token")
    if objective not in OBJECTIVES:
        raise PlannerError(f"unknown objective {objective!r} (use {', '.join(OBJECTIVES)})")
    opts = opts or SpaceOptions()
    engine = get_engine(engine)
    notes = era_notes(engine)
    if engine.request_overhead_s > 0:  # every plan's TTFT holds it: say so once
        from planner.serving.predict import front_end_note

        notes.append(front_end_note(engine))
    model = get_model(model_id)
    from planner.serving.planspec import check_eplb_serving

    check_eplb_serving(opts.eplb, model, engine)  # the search itself adds the balanced layouts (ep > 1) only
    # a device the engine does not run on (TensorRT-LLM on an AMD GPU) is left out and said so; none left: an error
    devices = [get_hardware(h) for h in hardware]
    skipped = {hw.id: why for hw in devices if (why := engine.cannot_run_on(hw))}
    if skipped:
        from planner.specs.engine import engine_ids

        every = sorted({e.split("@")[0] for e in engine_ids()
                        if all(get_engine(e.split("@")[0]).cannot_run_on(hw) is None for hw in devices)})
        hint = f"; --engine {' or '.join(every)} runs on every device asked" if every else ""
        skipped = {h: why + hint for h, why in skipped.items()}
        if len(skipped) == len(devices):
            engine.check_runs_on(devices[0])
    # and one the sampler path the user named cannot run on (--sampler flashinfer on an AMD GPU), likewise
    no_sampler = {hw.id: why for hw in devices if hw.id not in skipped and (why := engine.sampler_cannot_run_on(hw))}
    if no_sampler and len(skipped) + len(no_sampler) == len(devices):
        raise PlannerError(next(iter(no_sampler.values())))
    skipped = {**skipped, **no_sampler}
    hardware = [h for h, hw in zip(hardware, devices) if hw.id not in skipped]
    devices = [hw for hw in devices if hw.id not in skipped]
    tco = tco or tco_defaults()
    basis = pick_cost_basis(hardware, cost_basis, tco, needed=objective == "cost" or cons.max_usd_per_mtok is not None)
    cons = replace(cons, cost_key=COST_KEYS[basis])
    t0 = time.perf_counter()
    wl = Workload(wl.isl, wl.osl, max(wl.min_context, cons.min_context or 0))  # context extension / parallelism need it
    pruned = {}
    acc = _accuracy_fn(model, task)
    found = _Found(cons, tco)
    refused: dict[str, dict[str, str]] = {}  # "int8 weights" / "int8 KV cache" -> device -> why the engine cannot run it
    for hw in devices:
        cfg = enumerate_configs(model, hw, gpus, opts, engine, need_tokens=max(wl.isl + wl.osl, cons.min_context or 0))
        for k, v in cfg.pruned.items():
            pruned[k] = pruned.get(k, 0) + v
        for w, why in cfg.refused.items():
            refused.setdefault(w, {})[hw.id] = why
        # in blocks of configs, whose columns stay in the processor's caches (evaluate.aggregated_blocks)
        agg = [evaluate_aggregated(model, hw, part, wl, opts, engine, acc, gpus) for part in aggregated_blocks(cfg, opts)]
        if opts.intra_gpu_pd:  # one GPU split between prefill and decode (semi-PD / Nexus), from the aggregated rows
            from planner.search.intragpu import evaluate_intragpu

            agg.append(evaluate_intragpu(model, hw, PlanTable.concat(agg), wl, opts, engine, cons.ttft_s, cons.tpot_s))
        for t in agg:
            found.add(t)
        del agg
        if opts.disaggregated:
            found.add(evaluate_disaggregated(model, hw, cfg, wl, opts, engine, acc, gpus))
    evaluated, costed = found.evaluated, found.costed
    by_why: dict[tuple, list[str]] = {}  # one note for the formats one reason leaves out on the same devices
    for what, on in refused.items():
        for why in dict.fromkeys(on.values()):
            by_why.setdefault((why, tuple(d for d, w in on.items() if w == why)), []).append(what)
    notes += [f"{' and '.join(whats)} left out on {', '.join(devs)}: {why}" for (why, devs), whats in by_why.items()]
    if not found.rows:
        raise PlannerError(f"no plan of {model.id} fits in {gpus} x {', '.join(hardware)} (the weights alone exceed memory)")
    feas = PlanTable.concat(found.feasible, lazy=True)  # the columns the answer reads are gathered, the rest on demand
    key, sign = OBJECTIVES[objective]
    key = COST_KEYS[basis] if objective == "cost" else key
    seconds_eval = time.perf_counter() - t0
    if len(feas) == 0:
        allp = PlanTable.concat(found.every)
        infeasible, nearest = explain_infeasible(allp, cons.checks(allp), model, key, sign)
        left_out = pruned.get("pruned: weights do not fit", 0)
        if left_out:  # the plans a constraint wanted may be among them (gpt-oss-120b in MXFP4 on one H100 under vLLM)
            infeasible = infeasible + [f"memory: {left_out:,} layouts x precisions were left out because their weights, "
                                       f"activations and runtime do not fit the device at {engine.name}'s memory fraction "
                                       f"({engine.utilization:g}); --memory-fraction sets another"]
        return PlanResult(feas, [], None, None, "", evaluated, costed, seconds_eval, infeasible, nearest, pruned, model.id, task,
                          basis, skipped=skipped, notes=notes)
    c = feas.cols
    obj = np.column_stack([c["tok_s_per_gpu"], c["tok_s_per_user"], c["accuracy"], c["max_context"],
                           -np.nan_to_num(c[COST_KEYS[basis]], nan=0.0) if len(hardware) > 1 else np.zeros(len(feas))])
    # per device first: there $ per token follows tokens/s per GPU, so each device's frontier is cheap to find
    front = np.nonzero(pareto_mask(obj, blocks=c["hardware"] if len(hardware) > 1 else None))[0]
    best_tok = float(c["tok_s_per_gpu"].max())
    score = sign * np.nan_to_num(c[key], nan=-np.inf if sign > 0 else np.inf)
    rec_i, runner_i = recommend(score, c["accuracy"], c["max_context"], feas)
    rec = row(feas, rec_i, model.max_context, best_tok, model.id)
    runner = None if runner_i is None else row(feas, runner_i, model.max_context, best_tok, model.id)
    why = explain_choice(rec, runner, objective, basis) + owned_caveat(hardware, basis, objective, tco)
    # against the best plan on another device when several are compared ("which GPU should I buy?"), else the runner-up
    rival = runner
    if len(hardware) > 1:
        other = np.nonzero(c["hardware"] != c["hardware"][rec_i])[0]
        if len(other):
            rival = row(feas, int(other[np.argmax(score[other])]), model.max_context, best_tok, model.id)
    rec["robust"] = robust_across_band(rec, rival, objective, model.moe is not None, engine)
    why += "; " + rec["robust"]["why"] + online_caveat(rec)
    f_order = front[np.lexsort((stable_rank(feas, front), -score[front]))]
    # plans equal in every objective (e.g. a chunk budget that changes nothing) appear once
    _, first = np.unique(np.round(obj[f_order], 9), axis=0, return_index=True)
    f_order = f_order[np.sort(first)]
    frontier = [row(feas, int(i), model.max_context, best_tok, model.id) for i in f_order]
    seconds = time.perf_counter() - t0
    return PlanResult(feas, frontier, rec, runner, why, evaluated, costed, seconds, [], [], pruned, model.id, task, basis,
                      skipped=skipped, notes=notes)


SHAPE_COLS = ("hardware", "disagg", "tp", "pp", "ep", "adp", "weights", "kv")
CATEGORICAL = {k: lst for k, lst in CODE_COLUMNS.items() if lst != "techs"}  # ranked by name, not code


def stable_rank(t: PlanTable, idx: np.ndarray | None = None) -> np.ndarray:
    """Each row's position in a canonical order over every column (names, not codes, for the string
    columns): exact ties on the objective break the same way in every run. With ``idx``: the positions of
    those rows among themselves (the same relative order, sorting only them)."""
    if idx is not None:
        t = t.take(np.asarray(idx, dtype=np.int64))
    keys = []
    for name in sorted(t.cols):
        v = t.cols[name]
        if name in CATEGORICAL:
            names = getattr(t, CATEGORICAL[name])
            rank = np.argsort(np.argsort(np.array(names, dtype=object).astype(str), kind="stable"), kind="stable")
            v = rank[v.astype(int)]
        keys.append(np.nan_to_num(np.asarray(v, dtype=float), nan=np.inf))
    order = np.lexsort(keys[::-1]) if keys else np.arange(len(t))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _first_stable(t: PlanTable, rows: np.ndarray) -> int:
    """The row of ``rows`` first in the canonical order (only exact ties get here, so only they are sorted)."""
    return int(rows[0]) if len(rows) == 1 else int(rows[np.argmin(stable_rank(t, rows))])


def recommend(score: np.ndarray, accuracy: np.ndarray, context: np.ndarray, t: PlanTable) -> tuple[int, int | None]:
    """(recommended row, runner-up row). Plans within 0.5 % of the best on the objective tie (a
    model cannot tell 0.5 % apart); among them the more accurate, then the longer-context, then
    the better-scoring plan wins. The runner-up is the best plan on the objective among the other
    layouts and precisions; exact ties break by ``stable_rank``."""
    best = score.max()
    tie = score >= best - 0.005 * abs(best)
    # the first row of the order (tie first, then accuracy, context and score, each highest first), found by
    # narrowing the candidates one key at a time instead of sorting every row; a key holding NaN falls back to the
    # sort, which places NaN last
    keys = (accuracy, context, score)
    same = tie.copy() if tie.any() else np.ones(len(score), bool)
    for v in keys:
        vals = v[same]
        if np.isnan(vals).any():
            same = None
            break
        same &= v == vals.max()
    if same is None:
        top = np.lexsort((-score, -context, -accuracy, ~tie))[0]
        same = (tie == tie[top]) & (accuracy == accuracy[top]) & (context == context[top]) & (score == score[top])
    rec_i = _first_stable(t, np.nonzero(same)[0])
    other = np.zeros(len(score), bool)
    for k in SHAPE_COLS:
        if k in t.cols:
            col = np.asarray(t.cols[k], float)
            other |= col != col[rec_i]
    if not other.any():
        return rec_i, None
    cand = np.nonzero(other)[0]
    runner_i = _first_stable(t, cand[score[cand] == score[cand].max()])
    return rec_i, runner_i


def robust_across_band(rec: dict, runner: dict | None, objective: str, moe: bool, engine=None) -> dict:
    """Does the recommendation stay best across the error band of the predictions (planner.calibrate.uncertainty)?
    Plans on the same device share its systematic error, so their order holds; across devices the errors are not
    shared, so the recommendation is robust only if its pessimistic throughput beats the runner-up's optimistic one."""
    from planner.calibrate.uncertainty import uncertainty_for

    if runner is None:
        return {"robust": True, "why": "no other layout to compare within the error band"}
    hw_a, hw_b = rec["plan"]["hardware"], runner["plan"]["hardware"]
    if hw_a == hw_b:
        return {"robust": True, "why": f"both on {hw_a}: a systematic error of its predictions moves both alike"}
    ba = uncertainty_for(hw_a, "decode", moe, engine).get("throughput")
    bb = uncertainty_for(hw_b, "decode", moe, engine).get("throughput")
    if not ba or not bb or objective == "latency":
        return {"robust": None, "why": "no error band on record to compare the devices"}
    a = rec["output_tokens_per_s_per_gpu"] * (1 + ba["low"])
    b = runner["output_tokens_per_s_per_gpu"] * (1 + bb["high"])
    if objective == "cost":
        pa, pb = rec.get("usd_per_million_output_tokens"), runner.get("usd_per_million_output_tokens")
        if not pa or not pb:
            return {"robust": None, "why": "no error band on record to compare the devices"}
        a, b = 1 / (pa / (1 + ba["low"])), 1 / (pb / (1 + bb["high"]))
    if a >= b:
        return {"robust": True, "why": f"stays best across both devices' error bands ({hw_a} at its 10th percentile beats "
                                      f"the best {hw_b} plan at its 90th)"}
    return {"robust": False, "why": f"within the error band of the best {hw_b} plan ({runner['label']}): measure both before buying "
                                    f"({hw_a} {ba['low']:+.0%}..{ba['high']:+.0%}, {hw_b} {bb['low']:+.0%}..{bb['high']:+.0%})"}


def explain_choice(rec: dict, runner: dict | None, objective: str, basis: str = "rented") -> str:
    key = {"throughput": "output_tokens_per_s_per_gpu", "cost": "usd_per_million_output_tokens", "latency": "e2e_latency_s"}[objective]
    if objective == "cost":
        key += "_owned" if basis == "owned" else ""
        return f"cost basis {basis}: " + _explain(rec, runner, objective, key)
    return _explain(rec, runner, objective, key)


def _explain(rec: dict, runner: dict | None, objective: str, key: str) -> str:
    if runner is None:
        return f"the only feasible layout and precision; best {objective} among its batch sizes"
    a, b = rec[key], runner[key]
    if a is None or b is None or not b:
        return f"best {objective} of the plans; runner-up: {runner['label']}"
    rel = a / b - 1
    better = {"throughput": f"{rel:+.0%} output tokens/s per GPU", "cost": f"{-(a / b - 1):.0%} cheaper per million tokens",
              "latency": f"{-(a / b - 1):.0%} lower end-to-end latency"}[objective]
    if abs(rel) < 0.005:
        wins = []
        if rec["accuracy"] > runner["accuracy"]:
            wins.append(f"more accurate ({rec['accuracy']:.3f} vs {runner['accuracy']:.3f})")
        if rec["max_context_tokens"] > runner["max_context_tokens"]:
            wins.append(f"longer context ({rec['max_context_tokens']:,} vs {runner['max_context_tokens']:,})")
        if rec["tpot_s"] < runner["tpot_s"] * 0.995:
            wins.append(f"lower TPOT ({rec['tpot_s'] * 1e3:.1f} vs {runner['tpot_s'] * 1e3:.1f} ms)")
        return (f"ties with the runner-up ({runner['label']}) on {objective} within 0.5 %"
                + (f" and is {' and '.join(wins)}" if wins else ""))
    extra = []
    if rec["accuracy"] != runner["accuracy"]:
        extra.append(f"accuracy {rec['accuracy']:.3f} vs {runner['accuracy']:.3f}")
    if rec["max_context_tokens"] != runner["max_context_tokens"]:
        extra.append(f"max context {rec['max_context_tokens']:,} vs {runner['max_context_tokens']:,}")
    extra.append(f"TPOT {rec['tpot_s'] * 1e3:.1f} vs {runner['tpot_s'] * 1e3:.1f} ms")
    return f"{better} over the runner-up ({runner['label']}); " + "; ".join(extra)


def _fmt(constraint: str, v: float) -> str:
    """A constraint's value in the unit a person reads it in."""
    if constraint in ("ttft", "tpot"):
        return f"{v * 1e3:.4g} ms"
    if constraint == "min-context":
        return f"{v:,.0f} tokens"
    if constraint == "max-cost":
        return f"${v:.4g}/M tokens"
    return f"{v:.4g}"


def explain_infeasible(allp: PlanTable, checks: dict, model, key: str, sign: int) -> tuple[list[str], list[dict]]:
    """For each constraint: how close the plans meeting all the others come to it."""
    lines = []
    names = list(checks)
    for n in names:
        others = np.ones(len(allp), bool)
        for m in names:
            if m != n:
                others &= checks[m][0]
        _, val, lim, direction = checks[n]
        pool = val[others] if others.any() else val
        best = pool.min() if direction == "<=" else pool.max()
        scope = "plans meeting every other constraint" if others.any() else "all plans (the others cannot all be met either)"
        if (direction == "<=" and best > lim) or (direction == ">=" and best < lim):
            gap = best / lim - 1 if lim else np.inf
            lines.append(f"{n} binds: best among {scope} is {_fmt(n, best)} vs the limit {_fmt(n, lim)} ({gap:+.0%})")
    # nearest: plans that miss by the smallest total relative violation
    viol = np.zeros(len(allp))
    for passes, val, lim, direction in checks.values():
        r = (val / lim - 1) if direction == "<=" else (lim / np.maximum(val, 1e-12) - 1)
        viol += np.maximum(r, 0)
    k = min(4, len(viol) - 1)
    near = np.nonzero(viol <= np.partition(viol, k)[k])[0]  # the five smallest violations and their exact ties
    idx = near[np.lexsort((stable_rank(allp, near), viol[near]))][:5]
    best_tok = float(allp.cols["tok_s_per_gpu"].max())
    return lines, [row(allp, int(i), model.max_context, best_tok, model.id) for i in idx]
