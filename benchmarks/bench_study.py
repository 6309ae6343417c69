"""A 1,000-point study on built-in data (target: under 30 s on this 2-core machine).

Run: python benchmarks/bench_study.py
"""

from __future__ import annotations

import time

from planner.studies.runner import run_study
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
    t0 = time.perf_counter()
    rows = run_study(study)
    dt = time.perf_counter() - t0
    errors = sum(1 for r in rows if r.get("error"))
    print(f"{len(rows)} points in {dt:.2f} s ({len(rows) / dt:.0f} points/s); {errors} points answered with an error")
