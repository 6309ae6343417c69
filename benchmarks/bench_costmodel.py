"""Speed of the vectorized cost model and of a cold `planner estimate`.

Run: python benchmarks/bench_costmodel.py
Targets (foundation issue): 100,000 plans in one vectorized call < 1 s; estimate cold start < 1 s.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from planner.costmodel.memory import max_concurrency, memory
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step
from planner.specs.engine import Engine
from planner.specs.loader import get_hardware, get_model


def bench_plans(n: int = 100_000) -> float:
    m, hw = get_model("llama-3.1-70b"), get_hardware("h100-sxm")
    rng = np.random.default_rng(0)
    tp = rng.choice([1, 2, 4, 8], n)
    pp = rng.choice([1, 2, 4], n)
    fmts = ["bf16", "fp8", "int4", "int8"]
    w = [fmts[i] for i in rng.integers(0, 4, n)]
    kv = ["fp8" if x == "fp8" else "bf16" for x in w]
    batch = rng.integers(1, 512, n).astype(float)
    ctx = rng.integers(128, 32768, n).astype(float)
    t0 = time.perf_counter()
    plans = make_plans(m, hw, tp=tp, pp=pp, weights=w, kv=kv)
    cm = CostModel(m, hw)
    dec = cm.step(plans, Step(decode_seqs=batch, decode_ctx=ctx))
    pre = cm.step(plans, Step(prefill_seqs=1, prefill_tokens=ctx))
    mem = memory(m, hw, plans, Engine())
    max_concurrency(m, plans, mem, ctx)
    dt = time.perf_counter() - t0
    assert dec.time_s.shape == (n,) and pre.time_s.shape == (n,)
    return dt


def bench_cold_estimate() -> float:
    cmd = [sys.executable, "-m", "planner", "estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "4", "--weights", "fp8", "--json"]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    bench_plans(1000)  # warm imports
    dt = bench_plans()
    print(f"100,000 plans (decode step + prefill step + memory + concurrency): {dt:.3f} s  -> {100_000 / dt:,.0f} plans/s")
    print(f"planner estimate, cold process (best of 3): {bench_cold_estimate():.3f} s")
