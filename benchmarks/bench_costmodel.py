"""Speed of the vectorized cost model, of one scalar estimate in a warm process, and of a cold `planner estimate`.

Run: python benchmarks/bench_costmodel.py
Targets: 100,000 plans in one vectorized call < 1 s (foundation issue); estimate start-up < 0.25 s (issue 14;
benchmarks/bench_startup.py breaks start-up down per command).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from machine import describe
from planner.api import PlanSpec, estimate
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


def bench_warm_estimate(n: int = 200) -> float:
    """Seconds per scalar `estimate` call once specs are loaded (what a study point costs without batching)."""
    spec = PlanSpec(tp=4, weights="fp8")
    estimate("llama-3.1-70b", "h100-sxm", spec, isl=2000, osl=500)
    t0 = time.perf_counter()
    for i in range(n):
        estimate("llama-3.1-70b", "h100-sxm", spec, isl=256 + i, osl=500)
    return (time.perf_counter() - t0) / n


def bench_cold_estimate() -> float:
    cmd = [sys.executable, "-m", "planner", "estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "4", "--weights", "fp8", "--json"]
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode compiled once (the first run below)
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        env["PYTHONPYCACHEPREFIX"] = tmp
        for _ in range(4):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    print(describe())
    bench_plans(1000)  # warm imports
    dt = bench_plans()
    print(f"100,000 plans (decode step + prefill step + memory + concurrency): {dt:.3f} s  -> {100_000 / dt:,.0f} plans/s")
    print(f"estimate in a warm process: {bench_warm_estimate() * 1e3:.2f} ms per call")
    print(f"planner estimate, cold process (best of 4, bytecode cached): {bench_cold_estimate():.3f} s")
