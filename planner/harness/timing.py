"""Repeat a call until enough time has been measured; report median and p10/p90."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    warmup: int = 1  # untimed calls first (page faults, BLAS buffers, CUDA kernels' first launch)
    min_repeats: int = 3
    min_time_s: float = 0.2  # keep repeating until the timed calls add up to this much
    max_repeats: int = 200


@dataclass(frozen=True)
class Stats:
    repeats: int
    median_s: float
    p10_s: float
    p90_s: float


def summarize(times: list[float]) -> Stats:
    t = np.asarray(times, dtype=np.float64)
    p10, med, p90 = np.percentile(t, [10, 50, 90])
    return Stats(repeats=len(times), median_s=float(med), p10_s=float(p10), p90_s=float(p90))


def measure(fn, ops, timing: Timing) -> Stats:
    """Time ``fn()`` with ``ops.time_call`` (wall clock on the CPU, CUDA events on a GPU)."""
    for _ in range(timing.warmup):
        ops.time_call(fn)
    times: list[float] = []
    total = 0.0
    while len(times) < timing.min_repeats or (total < timing.min_time_s and len(times) < timing.max_repeats):
        dt = ops.time_call(fn)
        times.append(max(dt, 1e-9))
        total += dt
    return summarize(times)
