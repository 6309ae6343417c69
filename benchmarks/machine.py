"""One line naming the machine a benchmark ran on: CPU model, cores, load, Python and numpy versions."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    try:
        import numpy as np

        npv = np.__version__
    except ImportError:
        npv = "absent"
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: {cpu_model()}, {cores} cores usable ({os.cpu_count()} online), load average {load}; "
            f"Python {platform.python_version()}, numpy {npv}")


@contextlib.contextmanager
def installed_like_env(tree: str | None = None):
    """The environment a start-up benchmark runs `python -m planner` in: another checkout's planner when ``tree`` is
    given, a fresh parsed-data cache, and compiled bytecode kept in a temporary folder (an installed planner has its
    bytecode; where this environment forbids writing it, runs after the first then measure what a user sees)."""
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = os.path.abspath(tree)
    with tempfile.TemporaryDirectory() as cache:
        env["PLANNER_CACHE_DIR"] = cache
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(cache, "pycache")
        yield env


def start_up_args(repeat: int) -> argparse.Namespace:
    """The options the start-up benchmarks share (--repeat, --tree); prints the machine line."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=repeat)
    ap.add_argument("--tree", help="a checkout whose planner package to time instead of the installed one")
    a = ap.parse_args()
    print(describe())
    return a
