"""Several models on one pool of GPUs (Nexus, BlockLLM-style consolidation): place each model's traffic on dedicated
replicas, and pack what is left of every model onto shared GPUs where they fit together.

* One model alone on a replica: the in-flight steady state (serving/batching.py) over a concurrency grid; its capacity
  is the most requests/s at a concurrency whose mean TTFT and TPOT meet the SLOs and whose KV fits. A model needs
  the smallest power-of-two tensor parallelism its weights fit in; one that fits nowhere within the pool is an error.
* Co-located on one GPU (single-GPU models only): memory partitioned (every model's weights, its running sequences'
  KV, the largest activation buffer and one runtime), compute time-sliced: the engine runs one step of each model in
  turn, so a round lasts T = sum of the models' step times and each model emits one token per round (TPOT = T); a
  new prompt also waits out the others' steps (TTFT = its own + the others' step times). Each model's running batch
  is what its rate needs, c_i = R_i x T x osl (Little's law), solved by fixed-point iteration.
* Placement: floor(R_i / capacity_i) dedicated replicas per model; the remainders, largest first, go first-fit onto
  shared GPUs (a remainder that fits on no shared GPU opens one). GPUs saved = one pool per model (ceil(R_i /
  capacity_i) replicas each) minus the placement's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.costmodel.memory import kv_bytes_per_seq, memory
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel
from planner.errors import PlannerError
from planner.serving.batching import inflight
from planner.specs.engine import Engine, get_engine
from planner.specs.loader import get_hardware, get_model
from planner.specs.quant import default_kv

MAX_ITER = 50


@dataclass
class Tenant:
    """One model on one replica of ``tp`` GPUs: its steady state over running batches 1..max_c."""

    model: str
    rate: float
    tp: int
    weights_bytes: float
    fixed_bytes: float  # activations + runtime
    usable_bytes: float
    per_seq_bytes: float
    conc: np.ndarray  # 1..max_c (what fits alone)
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    rps: np.ndarray
    capacity_rps: float = 0.0  # most requests/s alone under the SLOs
    best_c: int = 0

    def at(self, c: float) -> tuple[float, float]:
        """(TTFT, step time) at a running batch of c sequences (interpolated; c <= max_c)."""
        return float(np.interp(c, self.conc, self.ttft_s)), float(np.interp(c, self.conc, self.tpot_s))


def tenant(model_id: str, rate: float, hw, engine: Engine, weights: str, isl: int, osl: int, ttft_s, tpot_s,
           max_gpus: int) -> Tenant:
    m = get_model(model_id)
    kv = default_kv(weights, engine, m)
    tp = 1
    while True:
        eng = engine.for_hardware(hw, tp, 1)
        p = make_plans(m, hw, tp=tp, pp=1, ep=1, adp=1, weights=weights, kv=kv, engine=eng)
        mem = memory(m, hw, p, eng)
        per_seq = float(kv_bytes_per_seq(m, p, isl + osl, eng.kv_block_tokens)[0])
        max_c = int(min(np.floor(max(float(mem.kv_capacity_bytes[0]), 0.0) / per_seq), eng.max_seqs))
        if max_c >= 1:
            break
        tp *= 2
        if tp > max_gpus:
            raise PlannerError(f"{m.id} fits nowhere: not even one sequence of {isl + osl} tokens fits on "
                               f"{max_gpus} x {hw.id} ({weights} weights)")
    c = np.arange(1, max_c + 1, dtype=float)
    t = inflight(CostModel(m, hw, engine=eng), p.take(np.zeros(len(c), dtype=np.int64)), c, isl, osl, breakdown=False)
    ten = Tenant(m.id, rate, tp, float(mem.weights_bytes[0]), float(mem.activation_bytes[0] + mem.runtime_bytes[0]),
                 float(mem.usable_bytes[0]), per_seq, c, t.ttft_s, t.tpot_s, t.requests_per_s)
    ok = np.ones(len(c), bool)
    if ttft_s is not None:
        ok &= t.ttft_s <= ttft_s
    if tpot_s is not None:
        ok &= t.tpot_s <= tpot_s
    if not ok.any():
        raise PlannerError(f"{m.id} meets the SLO nowhere on {hw.id}: at one sequence TTFT {t.ttft_s[0] * 1e3:.0f} ms, "
                           f"TPOT {t.tpot_s[0] * 1e3:.1f} ms")
    i = int(np.argmax(np.where(ok, t.requests_per_s, -1.0)))
    ten.capacity_rps, ten.best_c = float(t.requests_per_s[i]), int(c[i])
    return ten


def colocate(tenants: list[Tenant], rates: list[float], osl: int, ttft_s, tpot_s) -> dict | None:
    """Serve ``rates`` of single-GPU ``tenants`` on one GPU, time-sliced; None where memory or the SLOs say no."""
    c = np.ones(len(tenants))
    for _ in range(MAX_ITER):
        steps = np.array([t.at(ci)[1] for t, ci in zip(tenants, c)])
        T = float(steps.sum())
        need = np.maximum(np.ceil(np.array(rates) * T * osl), 1.0)
        if any(n > t.conc[-1] for n, t in zip(need, tenants)):
            return None
        if np.array_equal(need, c):
            break
        c = np.maximum(c, need)  # monotone: the batch a rate needs only grows with the round
    else:
        return None
    usable = min(t.usable_bytes for t in tenants)
    used = sum(t.weights_bytes for t in tenants) + max(t.fixed_bytes for t in tenants) + \
        sum(ci * t.per_seq_bytes for t, ci in zip(tenants, c))
    if used > usable:
        return None
    out = {}
    for j, (t, ci) in enumerate(zip(tenants, c)):
        ttft = t.at(ci)[0] + T - steps[j]
        ok = (ttft_s is None or ttft <= ttft_s) and (tpot_s is None or T <= tpot_s)
        if not ok:
            return None
        out[t.model] = {"rate": rates[j], "concurrency": int(ci), "ttft_s": ttft, "tpot_s": T, "slo_met": True,
                        "requests_per_s_capacity": ci / (T * osl)}
    return {"memory_bytes": used, "usable_bytes": usable, "models": out}


def place(models: list[str], rates: list[float], hardware: str, *, isl: int = 1024, osl: int = 256, ttft_s=None,
          tpot_s=None, weights: str = "bf16", engine: str | Engine = "trtllm", max_gpus: int = 64) -> dict:
    if len(models) != len(rates):
        raise PlannerError(f"--models names {len(models)} models but --rates gives {len(rates)} rates")
    if len(set(models)) != len(models):
        raise PlannerError("--models names a model twice")
    if any(not (r > 0) or math.isinf(r) for r in rates):
        raise PlannerError("--rates must be positive, finite requests/s")
    hw = get_hardware(hardware)
    eng = get_engine(engine)
    ten = [tenant(m, r, hw, eng, weights, isl, osl, ttft_s, tpot_s, max_gpus) for m, r in zip(models, rates)]
    groups, apart = [], 0
    residual = []
    for t in ten:
        full = int(math.floor(t.rate / t.capacity_rps))
        rest = t.rate - full * t.capacity_rps
        apart += int(math.ceil(t.rate / t.capacity_rps)) * t.tp
        if full:
            ttft, tpot = t.at(t.best_c)
            groups.append({"gpus": full * t.tp, "replicas": full, "tp": t.tp, "shared": False,
                           "models": {t.model: {"rate": full * t.capacity_rps, "concurrency": t.best_c, "ttft_s": ttft,
                                                "tpot_s": tpot, "slo_met": True}}})
        if rest > 1e-12:
            residual.append((rest / t.capacity_rps, rest, t))
    shared: list[tuple[list[Tenant], list[float], dict]] = []
    for _, rest, t in sorted(residual, key=lambda x: -x[0]):
        done = False
        if t.tp == 1:
            for k, (ts, rs, _) in enumerate(shared):
                trial = colocate(ts + [t], rs + [rest], osl, ttft_s, tpot_s)
                if trial is not None:
                    shared[k] = (ts + [t], rs + [rest], trial)
                    done = True
                    break
        if not done:
            alone = colocate([t], [rest], osl, ttft_s, tpot_s) if t.tp == 1 else None
            if t.tp == 1 and alone is not None:
                shared.append(([t], [rest], alone))
            else:  # a multi-GPU model, or a remainder the time-slice model cannot hold: one more dedicated replica
                ttft, tpot = t.at(t.best_c)
                groups.append({"gpus": t.tp, "replicas": 1, "tp": t.tp, "shared": False,
                               "models": {t.model: {"rate": rest, "concurrency": t.best_c, "ttft_s": ttft, "tpot_s": tpot,
                                                    "slo_met": True}}})
    for ts, rs, trial in shared:
        groups.append({"gpus": 1, "replicas": 1, "tp": 1, "shared": len(ts) > 1, "models": trial["models"],
                       "memory_bytes": trial["memory_bytes"], "usable_bytes": trial["usable_bytes"]})
    total = sum(g["gpus"] for g in groups)
    if total > max_gpus:
        raise PlannerError(f"the placement needs {total} x {hw.id}, more than the --gpus {max_gpus} budget")
    per_model = {t.model: {"rate": t.rate, "tp": t.tp, "capacity_rps_per_replica": t.capacity_rps,
                           "concurrency_alone": t.best_c, "gpus_alone": int(math.ceil(t.rate / t.capacity_rps)) * t.tp,
                           "slo_met": all(g["models"][t.model]["slo_met"] for g in groups if t.model in g["models"])}
                 for t in ten}
    return {"hardware": hw.id, "isl": isl, "osl": osl, "slo": {"ttft_s": ttft_s, "tpot_s": tpot_s}, "weights": weights,
            "placement": groups, "models": per_model, "gpus": total, "gpus_one_pool_per_model": apart,
            "gpus_saved": apart - total,
            "method": "dedicated replicas at each model's SLO capacity; remainders packed first-fit on shared GPUs, "
                      "memory partitioned and steps time-sliced (search/placement.py)"}
