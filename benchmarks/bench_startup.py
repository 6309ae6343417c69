"""Start-up of the command line (issue 14 target: `planner --help` and `planner estimate` under 0.25 s).

Each command runs as a fresh process several times; the figure is the best wall time (the least disturbed run)
with the median beside it, and the child's CPU time (user + system), which a busy machine inflates less than
wall time. The first `estimate` run after a data change also builds the parsed-data cache (and, here, compiles
bytecode); it is reported apart.

Run: python benchmarks/bench_startup.py [--repeat N] [--tree DIR]   (--tree: time another checkout's planner)
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time

from machine import installed_like_env, start_up_args

COMMANDS = {
    "python -c pass (the floor)": ["-c", "pass"],
    "planner --version": ["-m", "planner", "--version"],
    "planner --help": ["-m", "planner", "--help"],
    "planner estimate (llama-3.1-8b, h100-sxm)": ["-m", "planner", "estimate", "--model", "llama-3.1-8b",
                                                  "--hardware", "h100-sxm"],
    "planner estimate --json (deepseek-v3 fp8, 8 x h200-sxm)": ["-m", "planner", "estimate", "--model", "deepseek-v3",
                                                            "--hardware", "h200-sxm", "--gpus", "8", "--weights", "fp8",
                                                            "--json"],
}


def timed(args: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    a = start_up_args(7)
    with installed_like_env(a.tree) as env:
        wall, cpu = timed(COMMANDS["planner estimate (llama-3.1-8b, h100-sxm)"], env)
        print(f"{'first estimate (builds the parsed-data cache)':55s} wall {wall:6.3f} s   cpu {cpu:6.3f} s")
        for name, args in COMMANDS.items():
            try:
                runs = [timed(args, env) for _ in range(a.repeat)]
            except RuntimeError as e:
                print(f"{name:55s} failed: {e}")
                continue
            walls = [w for w, _ in runs]
            print(f"{name:55s} wall {min(walls):6.3f} s (median {statistics.median(walls):.3f})   "
                  f"cpu {min(c for _, c in runs):6.3f} s")


if __name__ == "__main__":
    main()
