"""Library entry points: ``estimate`` and ``fit`` return typed results without the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.cap.accuracy import accuracy as accuracy_of
from planner.costmodel.memory import kv_bytes_per_seq, max_concurrency, max_context, memory
from planner.specs.engine import Engine, get_engine
from planner.costmodel.plans import make_plans
from planner.costmodel.step import BOUND_NAMES, CostModel, StepCost
from planner.errors import PlannerError
from planner.serving.batching import inflight, static_batch
from planner.specs.hardware import Hardware
from planner.specs.loader import get_hardware, get_model
from planner.specs.model import Model
from planner.specs.quant import get_format, kv_bytes_per_element, resolve


@dataclass
class PlanSpec:
    """One deployment plan: parallel sizes and precisions."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1
    weights: str = "bf16"
    kv: str | None = None  # defaults to the weight format's natural KV (16 bit, or fp8 with fp8 weights)
    activations: str | None = None
    weight_offload: str | None = None  # "host" or "disk": stream weights that do not fit (TPI-LLM / EdgeMoE style)

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    def kv_format(self) -> str:
        if self.kv:
            return self.kv
        return "fp8" if self.weights == "fp8" else ("fp16" if self.weights == "fp16" else "bf16")


def _stream_link(hw: Hardware, where: str) -> tuple[str, float]:
    """(name, achievable bytes/s) of the link weights stream over: the host link, or an NVMe disk."""
    from planner.specs.loader import get_interconnect

    if where == "host":
        if hw.kind != "gpu" or hw.links.host is None:
            raise PlannerError(f"{hw.id} has no separate host memory link; stream weights from disk instead")
        link = get_interconnect(hw.links.host.interconnect)
    elif where == "disk":
        link = get_interconnect("nvme-gen4")
    else:
        raise PlannerError(f"weight offload goes to host or disk, not {where!r}")
    frac = link.achievable.fraction if link.achievable else 1.0
    return link.id, link.bandwidth_per_direction.value * frac


def resolve_parallel(gpus: int | None, tp: int | None, pp: int | None, ep: int | None, dp: int | None) -> tuple[int, int, int, int]:
    """Fill parallel sizes from ``--gpus``: tensor parallel over all GPUs unless told otherwise."""
    for name, v in (("gpus", gpus), ("tp", tp), ("pp", pp), ("ep", ep), ("dp", dp)):
        if v is not None and v < 1:
            raise PlannerError(f"--{name} must be a positive integer, got {v}")
    pp_, dp_, ep_ = pp or 1, dp or 1, ep or 1
    if tp is None:
        if gpus is None:
            tp_ = 1
        else:
            if gpus % (pp_ * dp_):
                raise PlannerError(f"--gpus {gpus} is not divisible by pp x dp = {pp_ * dp_}")
            tp_ = gpus // (pp_ * dp_)
    else:
        tp_ = tp
    if gpus is not None and tp_ * pp_ * dp_ != gpus:
        raise PlannerError(f"tp x pp x dp = {tp_ * pp_ * dp_} does not equal --gpus {gpus}")
    return tp_, pp_, ep_, dp_


@dataclass
class Estimate:
    model: str
    hardware: str
    plan: dict
    gpus: int
    fits: bool
    reason: str
    ttft_s: float
    tpot_s: float
    e2e_latency_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    requests_per_s: float
    memory: dict
    max_context_tokens: int
    max_concurrency: int
    concurrency_cap: str
    accuracy: dict
    cost: dict
    breakdown: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _breakdown(sc: StepCost) -> list[dict]:
    rows = []
    total = float(sc.time_s[0])
    for o in sc.ops:
        t = float((o.time_s * o.count)[0])
        if t <= 0:
            continue
        rows.append({
            "op": o.name, "kind": o.kind, "time_s": t, "share": t / total if total else 0.0,
            "flops": float((o.flops * o.count)[0]), "bytes": float((o.bytes * o.count)[0]),
            "bound": BOUND_NAMES[int(o.bound[0])], "source": o.source,
            **({"algorithm": o.algorithm} if o.algorithm else {}),
        })
    return rows


def estimate(
    model: str | Model,
    hardware: str | Hardware,
    plan: PlanSpec | None = None,
    *,
    isl: int = 1024,
    osl: int = 256,
    batching: str = "inflight",
    batch: int | None = None,
    concurrency: int | str | None = None,
    engine: Engine | str = "trtllm",
    ttft_includes_first_decode: bool = False,
) -> Estimate:
    """Predict one plan. ``batching='static'`` runs ``batch`` requests together;
    ``'inflight'`` is the continuous-batching steady state at ``concurrency`` (an int,
    or ``'max'`` for the most memory allows, capped at the engine's max batch)."""
    m = get_model(model) if isinstance(model, str) else model
    hw = get_hardware(hardware) if isinstance(hardware, str) else hardware
    plan = plan or PlanSpec()
    engine = get_engine(engine) if isinstance(engine, str) else engine
    if isl < 1 or osl < 1:
        raise PlannerError("--isl and --osl must be at least 1 token")
    get_format(plan.weights)
    kv = plan.kv_format()
    kv_bytes_per_element(kv)
    res = resolve(get_format(plan.weights), hw, plan.activations)
    p = make_plans(m, hw, tp=plan.tp, pp=plan.pp, ep=plan.ep, weights=plan.weights, kv=kv, activations=plan.activations)
    cm = CostModel(m, hw, engine=engine)
    mem = memory(m, hw, p, engine)
    ctx_max = int(max_context(m, mem)[0])
    fit_n, capped = max_concurrency(m, p, mem, isl + osl, engine)
    fit_n, capped = int(fit_n[0]), int(capped[0])
    notes = [res.note] if res.note else []
    if isl + osl > m.max_context:
        notes.append(f"isl + osl = {isl + osl} exceeds the trained context of {m.id} ({m.max_context})")

    if batching == "static":
        if batch is None or batch < 1:
            raise PlannerError("--batching static needs --batch N with N >= 1")
        n = batch
        cap_note = ""
    elif batching == "inflight":
        if plan.weight_offload and concurrency in (None, "max") and fit_n < 1:
            n, cap_note = 1, "weights stream from outside device memory: one sequence unless --concurrency says more"
        elif concurrency is None or concurrency == "max":
            n = capped
            cap_note = (f"max concurrency {capped}: memory allows {fit_n}, engine cap {engine.max_seqs}"
                        if fit_n > engine.max_seqs else f"max concurrency {capped}: limited by KV-cache memory")
        else:
            n = int(concurrency)
            if n < 1:
                raise PlannerError("--concurrency must be a positive integer or 'max'")
            cap_note = ""
    else:
        raise PlannerError(f"unknown batching {batching!r} (use static or inflight)")

    weights_b = float(mem.weights_bytes[0])
    kv_per_token = float(mem.kv_full_per_token[0] + mem.kv_swa_per_token[0])
    kv_need = float(kv_bytes_per_seq(m, p, isl + osl, engine.kv_block_tokens)[0]) * max(n, 0)
    other = float(mem.activation_bytes[0] + mem.runtime_bytes[0])
    usable = float(mem.usable_bytes[0])
    total = weights_b + kv_need + other
    fits = n >= 1 and total <= usable
    stream_note = ""
    if not fits and plan.weight_offload and n >= 1:
        usable = engine.utilization * hw.memory_capacity_bytes
        resident = usable - other - kv_need
        if resident > 0:
            frac = max(weights_b - resident, 0.0) / weights_b
            link = _stream_link(hw, plan.weight_offload)
            cm = CostModel(m, hw, engine=engine, weight_stream=(frac, link[1]))
            fits, total = True, usable
            stream_note = (f"{frac:.0%} of the weights ({frac * weights_b / 2**30:.1f} GiB per GPU) stream from {plan.weight_offload} "
                           f"over {link[0]} every forward pass, prefetched under compute")
            notes.append(stream_note)
    if weights_b + other > usable:
        reason = f"does not fit: weights need {weights_b / 2**30:.1f} GiB per GPU (+{other / 2**30:.1f} GiB runtime), usable {usable / 2**30:.1f} GiB of {hw.memory_capacity_bytes / 2**30:.1f} GiB"
    elif not fits:
        reason = f"does not fit: {n} sequences of {isl + osl} tokens need {total / 2**30:.1f} GiB per GPU, usable {usable / 2**30:.1f} GiB (at most {fit_n} fit)"
    else:
        reason = ""
    mem_d = {
        "fits": bool(fits), "weight_streaming": stream_note or None, "weights_bytes": weights_b, "kv_cache_bytes": kv_need,
        "activation_bytes": float(mem.activation_bytes[0]), "runtime_bytes": float(mem.runtime_bytes[0]),
        "total_bytes_per_gpu": total, "capacity_bytes_per_gpu": hw.memory_capacity_bytes,
        "usable_bytes_per_gpu": usable, "kv_bytes_per_token": kv_per_token,
    }
    gpus = plan.gpus
    price = hw.price.usd_per_hour if hw.price else None
    nanv = float("nan")
    if n >= 1:
        t = static_batch(cm, p, n, isl, osl) if batching == "static" else inflight(cm, p, n, isl, osl)
        ttft, tpot = float(t.ttft_s[0]), float(t.tpot_s[0])
        if ttft_includes_first_decode:
            ttft += tpot
        e2e = float(t.e2e_s[0])
        tok = float(t.output_tokens_per_s[0]) * plan.dp
        rps = float(t.requests_per_s[0]) * plan.dp
        breakdown = {"prefill": _breakdown(t.prefill), "decode": _breakdown(t.decode)}
    else:
        ttft = tpot = e2e = tok = rps = nanv
        breakdown = {"prefill": [], "decode": []}
    cost = {
        "usd_per_gpu_hour": price,
        "usd_per_hour": price * gpus if price else None,
        "usd_per_million_output_tokens": (price * gpus / (tok * 3600) * 1e6) if price and fits and tok > 0 else None,
        "price_source": f"{hw.price.source} ({hw.price.date})" if hw.price else f"no published price for {hw.id}",
    }
    return Estimate(
        model=m.id, hardware=hw.id,
        plan={"tp": plan.tp, "pp": plan.pp, "ep": plan.ep, "dp": plan.dp, "weights": plan.weights, "kv": kv,
              "compute_dtype": res.compute_dtype, "engine": engine.id, "batching": batching, "batch_or_concurrency": n, "isl": isl, "osl": osl},
        gpus=gpus, fits=bool(fits), reason=reason, ttft_s=ttft, tpot_s=tpot, e2e_latency_s=e2e,
        output_tokens_per_s=tok, output_tokens_per_s_per_gpu=tok / gpus if gpus else nanv, requests_per_s=rps,
        memory=mem_d, max_context_tokens=ctx_max, max_concurrency=capped * plan.dp, concurrency_cap=cap_note,
        accuracy=accuracy_of(plan.weights, kv), cost=cost, breakdown=breakdown, notes=notes,
    )


def fit(model: str | Model, hardware: str | Hardware, plan: PlanSpec | None = None, *, isl: int = 1024, osl: int = 256,
        engine: Engine | str = "trtllm") -> dict:
    """Memory per GPU and the limits it sets: does the plan fit, max context, max concurrency."""
    est = estimate(model, hardware, plan, isl=isl, osl=osl, batching="inflight", concurrency="max", engine=engine)
    mem = est.memory
    fixed = mem["weights_bytes"] + mem["activation_bytes"] + mem["runtime_bytes"]
    return {
        "model": est.model, "hardware": est.hardware, "plan": est.plan, "gpus": est.gpus,
        "fits": fixed < mem["usable_bytes_per_gpu"] and est.max_concurrency >= 1,
        "memory": {k: mem[k] for k in ("weights_bytes", "activation_bytes", "runtime_bytes", "usable_bytes_per_gpu",
                                       "capacity_bytes_per_gpu", "kv_bytes_per_token")},
        "kv_cache_capacity_bytes": mem["usable_bytes_per_gpu"] - fixed,
        "max_context_tokens": est.max_context_tokens, "max_concurrency": est.max_concurrency,
        "concurrency_cap": est.concurrency_cap, "reason": est.reason,
    }


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
