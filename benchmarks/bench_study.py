"""A 1,000-point study on built-in data (issue 14 target: under 2 s).

Reports the whole study (its points share one plan, so the runner prices them in one vectorized pass:
serving/predict_many.py) and the cost of one point priced alone by `estimate` in this process.
Run: python benchmarks/bench_study.py
"""

from __future__ import annotations

import time

from machine import describe
from planner.studies.runner import run_point, run_study
from planner.studies.schema import Study

study = Study.model_validate({
    "name": "bench-1000", "command": "estimate",
    "base": {"model": "llama-3.1-70b", "hardware": "h100-sxm", "gpus": 4, "weights": "fp8"},
    "sweep": {"mode": "product", "axes": {
        "isl": [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
        "osl": [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768],
        "concurrency": [1, 4, 16, 64, 128, 256, 512, 1024, 2048, "max"]}},
})

if __name__ == "__main__":
    print(describe())
    pts = study.point_params()[:100]
    run_point(study.command, pts[0])  # imports and specs, once
    t0 = time.perf_counter()
    for p in pts:
        run_point(study.command, p)
    per = (time.perf_counter() - t0) / len(pts)
    print(f"one point in this process: {per * 1e3:.1f} ms (serial: {per * 1000:.1f} s per 1,000 points)")
    t0 = time.perf_counter()
    rows = run_study(study)
    dt = time.perf_counter() - t0
    errors = sum(1 for r in rows if r.get("error"))
    print(f"{len(rows)} points in {dt:.2f} s ({len(rows) / dt:.0f} points/s, target < 2 s); "
          f"{errors} points answered with an error")
