"""The profiling harness as an instrument: time, memory and accuracy of a quick capture.

Run: python benchmarks/bench_harness.py [--threads N] [--keep DIR]
Targets (issue 17): `planner profile --quick` under 1 GiB peak RSS and ~30 s on 2 idle cores; calibration
with every fraction in (0, 1] and fit median < 20 %; end-to-end validation (dense, MoE, MLA) median < 15 %.

It captures into a temporary folder (or --keep DIR), calibrates, validates, and prints one JSON object with
the machine's load while it ran, so a figure taken on a busy machine is never mistaken for a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--keep", type=Path, default=None)
    args = ap.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="bench-harness-"))
    cmd = [sys.executable, "-m", "planner", "profile", "--quick", "--out", str(out)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall_s = time.perf_counter() - t0
    folder = next(out.glob("*/*-quick"))

    import yaml

    from planner.calibrate.kernel_fit import fit_capture, write_spec
    from planner.calibrate.validate import validate

    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    fit = fit_capture(folder)
    write_spec(fit.hardware, folder / "calibrated.yaml")
    report = validate([str(folder)])
    by_family: dict[str, list[float]] = {}
    for r in report.rows:
        if r.ape is not None:
            by_family.setdefault(r.model.split("-")[1] if r.model.startswith("ref-") else r.model, []).append(r.ape)
    import numpy as np

    fractions = {k: v for k, v in fit.params.items() if k not in ("half_m", "kernel_s")}
    print(json.dumps({
        "folder": str(folder),
        "wall_s": round(wall_s, 1),
        "peak_rss_mib": round(meta["peak_rss_bytes"] / 2**20),
        "threads": meta["threads"], "clock": meta.get("clock"),
        "others_cores_at_start": meta.get("others_cores_at_start"),
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "busy_rows": meta.get("busy_rows"),
        "fit_median_ape": round(fit.median_ape, 3),
        "fractions_in_0_1": all(0 < v <= 1 for v in fractions.values()),
        "params": {k: round(v, 4) if not k.endswith("_s") else v for k, v in fit.params.items()},
        "e2e_median_ape": round(float(np.median([a for v in by_family.values() for a in v])), 3),
        "e2e_median_ape_by_family": {k: round(float(np.median(v)), 3) for k, v in by_family.items()},
        "warnings": fit.warnings,
    }, indent=1))


if __name__ == "__main__":
    main()
