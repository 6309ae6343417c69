"""One line naming the machine a benchmark ran on: CPU model, cores, load, Python and numpy versions."""

from __future__ import annotations

import os
import platform


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
