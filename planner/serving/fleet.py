"""Fleets of model sizes behind one router: each pool's quality score (plan accuracy x the published
quality ratio of a smaller model to the biggest) and the report of a fleet run. ``parse_fleet`` reads
the ``MODEL:REPLICAS[:TP],...`` text form into plain tuples (no simulator state)."""

from __future__ import annotations

import numpy as np

from planner.costmodel.memory import memory
from planner.costmodel.plans import make_plans
from planner.errors import PlannerError
from planner.serving.sim.config import Pool, Scheduler, replica_for
from planner.serving.sim.metrics import SLO, SimResult
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.model import Model
from planner.specs.quant import default_kv

# Quality of a smaller model standing in for a bigger one of the same family: ratio of published
# scores. Llama-3 instruct MMLU 68.4 (8B) vs 82.0 (70B) and Llama-2 base MMLU 45.7 (7B), 53.8 (13B),
# 69.7 (70B): Meta model cards as reproduced in the project reference (cap_accuracy_and_seed_systems.md
# section 2e). Llama-3.1/3.3 70B and 3.1 8B are taken to keep the Llama-3 ratio.
_MMLU = {
    "llama-3-8b": (68.4, "llama3"), "llama-3.1-8b": (68.4, "llama3"),
    "llama-3-70b": (82.0, "llama3"), "llama-3.1-70b": (82.0, "llama3"), "llama-3.3-70b": (82.0, "llama3"),
    "llama-2-7b": (45.7, "llama2"), "llama-2-13b": (53.8, "llama2"), "llama-2-70b": (69.7, "llama2"),
}
SIZE_SUBSTITUTION_SOURCE = ("MMLU of the smaller model / MMLU of the biggest in the fleet: Llama-3 instruct 68.4 (8B) vs 82.0 (70B) "
                            "= 0.83; Llama-2 base 45.7 (7B), 53.8 (13B), 69.7 (70B); Meta Llama-3 / Llama-2 model cards "
                            "(reference section 2e)")


def size_substitution(small: str, big: str) -> float | None:
    """Quality of ``small`` relative to ``big`` (1.0 for the same model); None when unpublished."""
    if small == big:
        return 1.0
    a, b = _MMLU.get(small), _MMLU.get(big)
    if a is None or b is None or a[1] != b[1]:
        return None
    return a[0] / b[0]


def default_tp(model: str | Model, hardware: str | Hardware, *, weights: str = "bf16", kv: str | None = None,
               engine: str | Engine = "trtllm", ctx: float = 2048, min_seqs: int = 64) -> int:
    """Smallest power-of-two tensor-parallel size (inside the scale-up domain) whose KV cache holds
    ``min_seqs`` sequences of ``ctx`` tokens (or the largest that fits at all)."""
    from planner.costmodel.memory import kv_bytes_per_seq
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware, get_model

    m = get_model(model) if isinstance(model, str) else model
    hw = get_hardware(hardware) if isinstance(hardware, str) else hardware
    eng = get_engine(engine)
    kv = kv or default_kv(weights, eng, m)
    domain = hw.node_size
    best = None
    tp = 1
    while tp <= max(domain, 1):
        if m.num_heads % tp == 0 and (m.num_kv_heads % tp == 0 or tp % m.num_kv_heads == 0):
            p = make_plans(m, hw, tp=tp, weights=weights, kv=kv)
            mem = memory(m, hw, p, eng)
            cap = float(mem.kv_capacity_bytes[0])
            if cap > 0:
                n = cap / float(kv_bytes_per_seq(m, p, ctx, eng.kv_block_tokens)[0])
                best = tp
                if n >= min_seqs:
                    return tp
        tp *= 2
    if best is None:
        raise PlannerError(f"{m.id} does not fit on {domain} x {hw.id} in {weights}")
    return best


def parse_fleet(text: str) -> list[tuple[str, int, int | None]]:
    """``llama-3.1-70b:2,llama-3.1-8b:2[:tp]`` -> [(model, replicas, tp or None), ...]."""
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        bits = part.split(":")
        if len(bits) not in (2, 3):
            raise PlannerError(f"--fleet takes MODEL:REPLICAS[:TP] items, got {part!r}")
        try:
            n = int(bits[1])
            tp = int(bits[2]) if len(bits) == 3 else None
        except ValueError:
            raise PlannerError(f"--fleet item {part!r}: replicas and tp must be integers") from None
        if n < 1 or (tp is not None and tp < 1):
            raise PlannerError(f"--fleet item {part!r}: replicas and tp must be positive")
        out.append((bits[0], n, tp))
    if not out:
        raise PlannerError("--fleet needs at least one MODEL:REPLICAS item")
    return out


def fleet_pools(entries: list[tuple[str, int, int | None]], hardware: str, *, weights: str = "bf16", kv: str | None = None,
                engine: str = "trtllm", sched: Scheduler | None = None, max_input: float = 8192,
                ctx: float = 2048) -> tuple[list[Pool], list[str]]:
    """Pools of a multi-model fleet, biggest model first (the threshold router's preferred pool),
    each with its quality score: plan accuracy (planner.cap.accuracy) x size substitution."""
    from planner.cap.accuracy import accuracy as accuracy_of
    from planner.cap.accuracy import model_terms
    from planner.specs.loader import get_model

    models = [(get_model(mid), n, tp) for mid, n, tp in entries]
    models.sort(key=lambda x: -x[0].total_params)
    big = models[0][0].id
    pools, notes = [], []
    for m, n, tp in models:
        tp = tp or default_tp(m, hardware, weights=weights, kv=kv, engine=engine, ctx=ctx)
        kv_ = kv or default_kv(weights, engine, m)
        q = accuracy_of(weights, kv_, **model_terms(m))["score"]
        sub = size_substitution(m.id, big)
        if sub is None:
            notes.append(f"no published quality ratio of {m.id} to {big}: its accuracy is unknown")
            acc = float("nan")
        else:
            acc = q * sub
        rep = replica_for(m, hardware, tp=tp, weights=weights, kv=kv_, engine=engine, sched=sched, max_input=max_input,
                          name=f"{m.id} tp{tp}", accuracy=acc)
        pools.append(Pool(rep, n))
    notes.append("accuracy = plan accuracy (planner.cap.accuracy) x " + SIZE_SUBSTITUTION_SOURCE)
    return pools, notes


def fleet_report(res: SimResult, slo: SLO, aug_accuracy: float | None = None) -> dict:
    """SLO attainment, the mean quality of the requests a fleet served and its cost per 1,000 requests.
    ``aug_accuracy``: the quality of a request the small model served with cached examples (IC-Cache)."""
    d = res.done
    acc = np.array([p["accuracy"] for p in res.pools])
    per = acc[res.pool]
    aug = res.augmented
    if aug is not None and aug_accuracy is not None:
        per = np.where(aug, aug_accuracy, per)
    served_acc = per[d] if d.any() else np.array([])
    ok = res.meets(slo)
    known = len(served_acc) and np.isfinite(served_acc).all()
    usd_h = sum((p["usd_per_hour"] or np.nan) * p["count"] for p in res.pools)
    rps = float(d.sum()) / res.duration_s if res.duration_s > 0 else 0.0
    out = {"router": res.router, "slo_attainment": float(ok.mean()) if len(ok) else None,
           "mean_accuracy": float(served_acc.mean()) if known else None,
           "quality_weighted_attainment": float((ok[d] * served_acc).sum() / len(ok)) if known else None,
           "share": {p["name"]: float((res.pool[d] == i).mean()) if d.any() else 0.0 for i, p in enumerate(res.pools)},
           "usd_per_hour": float(usd_h) if np.isfinite(usd_h) else None,
           "usd_per_1k_requests": float(usd_h / 3600.0 / rps * 1000.0) if np.isfinite(usd_h) and rps > 0 else None}
    out["mean_input_tokens"] = float(res.input_tokens[d].mean()) if d.any() else None
    if aug is not None:
        out["served_with_examples"] = float(aug[d].mean()) if d.any() else 0.0
    return out
