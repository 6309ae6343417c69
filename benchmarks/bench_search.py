"""Speed of the full plan search (plan issue target: DeepSeek-V3 on up to 64 H200 in < 2 s, >= 500k plans/s).

Run: python benchmarks/bench_search.py
"""

from __future__ import annotations

import time

from planner.search.evaluate import Workload
from planner.search.run import Constraints, search


def run(model: str, hw: str, gpus: int, wl: Workload, repeat: int = 3) -> None:
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = search(model, [hw], gpus, wl, Constraints(gpus))
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, r)
    dt, r = best
    print(f"{model} on up to {gpus} x {hw}: {r.plans_evaluated:,} plans scored ({r.plans_costed:,} through the step model), "
          f"{dt:.3f} s wall (best of {repeat}) -> {r.plans_evaluated / dt:,.0f} plans/s, {r.plans_costed / dt:,.0f} costed/s; "
          f"frontier {len(r.frontier)}")


if __name__ == "__main__":
    search("llama-3.1-8b", ["h100-sxm"], 1, Workload(), Constraints(1))  # warm imports
    run("deepseek-v3", "h200-sxm", 64, Workload(2000, 500))
    run("llama-3.1-70b", "h100-sxm", 8, Workload(2000, 500))
    run("qwen3-235b-a22b", "h100-sxm", 16, Workload(2000, 500))
