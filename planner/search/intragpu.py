"""Plan-table rows for one GPU split between prefill and decode (semi-PD, Nexus; serving/intragpu.py): a third plan
mode beside aggregated replicas and disaggregated pools, on the same GPUs and layouts.

Each plain aggregated row (no chunking, speculation, offload, eviction or context technique; one pipeline stage, no
attention data parallelism) is re-priced with F of its SMs prefilling and 1 - F decoding: a fixed F, or ``auto``, the
F in 0.1..0.9 with the most tokens/s that keeps the prefill worker up with arrivals and meets the plan's SLOs.
"""

from __future__ import annotations

import numpy as np

from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel
from planner.search.evaluate import PlanTable, Workload, lora_of
from planner.search.space import SpaceOptions
from planner.serving.intragpu import best_share, intra_gpu_pd, parse_share
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.model import Model


def evaluate_intragpu(model: Model, hw: Hardware, agg: PlanTable, wl: Workload, opts: SpaceOptions, engine: Engine,
                      ttft_s: float | None = None, tpot_s: float | None = None) -> PlanTable:
    f = parse_share(opts.intra_gpu_pd)
    c = agg.cols
    if f is None or not len(agg):
        return PlanTable({}, [], [], [hw.id])
    plain = (c["chunk_tokens"] == 0) & (c["spec_k"] == 0) & ~c["spec_auto"].astype(bool) & ~c["kv_offload"].astype(bool) \
        & (c["kv_budget"] == 0) & (c["cp"] == 1) & (c["pp"] == 1) & (c["adp"] == 1) & ~c["disagg"].astype(bool)
    for k in ("ctx_ext", "sparse", "compress", "draft"):
        plain &= c[k] == 0
    idx = np.nonzero(plain)[0]
    if not len(idx):
        return PlanTable({}, [], [], [hw.id])
    t = agg.take(idx)
    c = t.cols
    engine = engine.for_hardware(hw)
    plans = make_plans(model, hw, tp=c["tp"], pp=c["pp"], ep=c["ep"], adp=c["adp"], weights=[t.weights[int(i)] for i in c["weights"]],
                       kv=[t.kv[int(i)] for i in c["kv"]], check=False, engine=engine, eplb_redundant=c["eplb"])
    cm = CostModel(model, hw, engine=engine)
    lora = cm.lora = lora_of(model, hw, opts)
    kw = dict(overhead_s=float(getattr(engine, "request_overhead_s", 0.0) or 0.0),
              extra_ttft_s=0.0 if lora is None else lora.ttft_s(plans.tp, plans.pp))
    if f == "auto":
        r = best_share(cm, plans, c["concurrency"], wl.isl, wl.osl, ttft_s=ttft_s, tpot_s=tpot_s, **kw)
    else:
        r = intra_gpu_pd(cm, plans, c["concurrency"], wl.isl, wl.osl, f, **kw)
    ok = np.asarray(r["prefill_utilization"] < 0.99) & (np.asarray(r["output_tokens_per_s"]) > 0)
    gpus_rep = c["gpus_per_replica"]
    tok = np.asarray(r["output_tokens_per_s"], float)
    price = hw.price.usd_per_hour if hw.price else np.nan
    cols = dict(c)
    cols.update({"ttft_s": np.asarray(r["ttft_s"], float), "tpot_s": np.asarray(r["tpot_s"], float) + 0 * tok,
                 "e2e_s": r["ttft_s"] + (wl.osl - 1) * r["tpot_s"], "tok_s_per_gpu": tok / gpus_rep,
                 "tok_s_per_user": 1.0 / r["tpot_s"], "usd_per_mtok": price * gpus_rep / (tok * 3600.0) * 1e6,
                 "intra_f": np.asarray(r["prefill_share"], float) + 0 * tok})
    out = PlanTable(cols, t.weights, t.kv, t.hardware, evaluated=len(idx), costed=len(idx), evict=t.evict, techs=t.techs)
    return out.take(np.nonzero(ok)[0])
