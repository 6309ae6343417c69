"""Where start-up goes: ``python -X importtime`` of each command, the least of several runs per module.

A busy machine inflates every figure; the least of N runs per module is the least disturbed one, and the module
count does not depend on load at all. Prints, per command, the modules imported, the sum of their own import
times, the packages that cost most and whether numpy / the cost model / the markdown parser were imported.

Run: python benchmarks/bench_imports.py [--repeat N] [--tree DIR]   (--tree: another checkout's planner)
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys

from machine import installed_like_env, start_up_args

COMMANDS = {
    "planner --version": ["--version"],
    "planner --help": ["--help"],
    "planner estimate (llama-3.1-8b, h100-sxm)": ["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm"],
}
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
WATCH = ("numpy", "planner.costmodel", "markdown_it", "pygments")


def package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "planner" and len(parts) > 1 else parts[0]


def self_times(args: list[str], env: dict, repeat: int) -> dict[str, float]:
    """Each module's least own import time (seconds) over ``repeat`` runs."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "planner", *args], env=env, capture_output=True, text=True)
        for line in r.stderr.splitlines():
            m = LINE.match(line)
            if m:
                t = int(m.group(1)) / 1e6
                best[m.group(4)] = min(best.get(m.group(4), t), t)
    return best


def main() -> None:
    a = start_up_args(5)
    with installed_like_env(a.tree) as env:
        subprocess.run([sys.executable, "-m", "planner", *COMMANDS["planner estimate (llama-3.1-8b, h100-sxm)"]], env=env,
                       capture_output=True)  # bytecode and the parsed-data cache
        for name, args in COMMANDS.items():
            best = self_times(args, env, a.repeat)
            by: dict[str, float] = collections.defaultdict(float)
            for mod, t in best.items():
                by[package(mod)] += t
            top = ", ".join(f"{p} {t * 1e3:.0f}" for p, t in sorted(by.items(), key=lambda x: -x[1])[:10])
            seen = [w for w in WATCH if any(m == w or m.startswith(w + ".") for m in best)]
            print(f"{name}: {len(best)} modules, {sum(best.values()) * 1e3:.0f} ms of imports; "
                  f"imports {', '.join(seen) or 'none of ' + ', '.join(WATCH)}")
            print(f"    by package (ms): {top}")


if __name__ == "__main__":
    main()
