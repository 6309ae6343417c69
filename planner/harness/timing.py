"""Repeat a call after warm-up until enough time has been measured; report the median, p10/p90,
the spread (coefficient of variation) and how busy the machine was while the row ran.

"Busy" is measured, not guessed: the CPU time that other processes (and the hypervisor, as steal
time) used during the row, from /proc/stat minus this process's own CPU time, in cores. A row is
flagged busy when others used more than ``BUSY_CORES`` cores on average, or when its timings
spread more than ``BUSY_CV`` (coefficient of variation over at least three repeats).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

BUSY_CV = 0.15  # spread above this: the timings disagree with each other
BUSY_CORES = 0.5  # other work above half a core competes with the measured threads


@dataclass(frozen=True)
class Timing:
    warmup: int = 1  # untimed calls first (page faults, BLAS buffers, CUDA kernels' first launch)
    min_repeats: int = 3
    min_time_s: float = 0.2  # keep repeating until the timed calls add up to this much
    max_repeats: int = 200
    warmup_s: float = 0.0  # ... and keep warming up until this much time has passed


@dataclass(frozen=True)
class Stats:
    repeats: int
    median_s: float
    p10_s: float
    p90_s: float
    cv: float = 0.0  # standard deviation / mean of the timed calls
    others_cores: float | None = None  # CPU used by other processes while the row ran, in cores
    load1: float | None = None  # 1-minute load average when the row ended

    @property
    def busy(self) -> bool:
        return (self.repeats >= 3 and self.cv > BUSY_CV) or (self.others_cores is not None and self.others_cores > BUSY_CORES)


def summarize(times: list[float], others_cores: float | None = None, load1: float | None = None) -> Stats:
    t = np.asarray(times, dtype=np.float64)
    p10, med, p90 = np.percentile(t, [10, 50, 90])
    cv = float(np.std(t, ddof=1) / np.mean(t)) if len(t) > 1 else 0.0
    return Stats(repeats=len(times), median_s=float(med), p10_s=float(p10), p90_s=float(p90), cv=cv,
                 others_cores=others_cores, load1=load1)


class CpuMeter:
    """Other processes' CPU time over an interval, in cores (None where /proc is missing)."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start = self._read()

    @staticmethod
    def _busy_ticks() -> int | None:
        try:
            with open("/proc/stat") as f:
                parts = f.readline().split()
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
        vals = [int(x) for x in parts[1:9]]
        return sum(vals) - vals[3] - vals[4]

    @staticmethod
    def _own_ticks() -> int | None:
        try:
            with open("/proc/self/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])  # utime + stime of every thread

    def _read(self):
        return time.perf_counter(), self._busy_ticks(), self._own_ticks()

    def others_cores(self) -> float | None:
        t1, busy1, own1 = self._read()
        t0, busy0, own0 = self.start
        if None in (busy0, busy1, own0, own1) or t1 <= t0:
            return None
        return round(max(0.0, (busy1 - busy0) - (own1 - own0)) / self.tick / (t1 - t0), 2)


def load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def measure(fn, ops, timing: Timing) -> Stats:
    """Time ``fn()`` with ``ops.time_call`` (wall clock on the CPU, CUDA events on a GPU)."""
    meter = CpuMeter()
    t_warm = time.perf_counter()
    n = 0
    while n < timing.warmup or (time.perf_counter() - t_warm < timing.warmup_s and n < timing.max_repeats):
        ops.time_call(fn)
        n += 1
    times: list[float] = []
    total = 0.0
    while len(times) < timing.min_repeats or (total < timing.min_time_s and len(times) < timing.max_repeats):
        dt = ops.time_call(fn)
        times.append(max(dt, 1e-9))
        total += dt
    return summarize(times, meter.others_cores(), load1())


class SpeedProbe:
    """A fixed small kernel timed again and again through a capture: a matrix-vector product over a weight of
    ``nbytes`` (memory and cache bound, as decode steps are). Rows measured at different moments are comparable
    only while it keeps its time: on a shared host (a cloud VM whose cores, cache or memory bandwidth other tenants
    also use) it can move by tens of percent within seconds, invisibly to the load average and steal time.
    On a GPU the probe is ``fn`` instead: a step of layers at a negligible width, whose time is the host's issuing
    of its kernels (eager PyTorch steps of small models are host-bound there)."""

    REPEATS = 5
    TIMING = Timing(warmup=1, min_repeats=REPEATS, min_time_s=0.0, max_repeats=REPEATS)

    def __init__(self, ops, nbytes: int, rng: np.random.Generator | None, fn=None):
        self.ops = ops
        if fn is None:
            k = 1024
            n = max(1, nbytes // (k * ops.elem_size))
            x, w, out = ops.randn((1, k), 1.0, rng), ops.randn((k, n), k**-0.5, rng), ops.empty((1, n))
            fn = lambda: ops.gemm(x, w, out)  # noqa: E731
        self.fn = fn
        self.samples: list[dict] = []
        self.t0 = time.perf_counter()

    def sample(self, phase: str) -> float:
        """Time the probe now (median of a few calls after one warm-up) and record it under ``phase``."""
        s = measure(self.fn, self.ops, self.TIMING).median_s
        self.samples.append({"at_s": round(time.perf_counter() - self.t0, 2), "phase": phase, "seconds": s})
        return s

    def summary(self) -> dict:
        return probe_summary(self.samples)


def probe_summary(samples: list[dict]) -> dict:
    """Fastest, median and slowest probe time and the spread (slowest / fastest - 1) of a capture's samples."""
    t = np.array([s["seconds"] for s in samples if s.get("seconds")], dtype=float)
    if t.size == 0:
        return {}
    return {"samples": int(t.size), "fastest_s": float(t.min()), "median_s": float(np.median(t)),
            "slowest_s": float(t.max()), "spread": float(t.max() / t.min() - 1.0)}
