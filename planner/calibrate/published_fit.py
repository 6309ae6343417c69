"""Fit a device's achievable fractions and fixed overheads to published measurements.

One set of physically meaningful parameters per hardware (matmul fraction per compute
dtype, streaming-memory fraction, KV-read fraction, per-kernel and per-step overhead)
is fitted by robust least squares on log(predicted / measured) over every published row
of that device run by one engine. No per-row correction exists anywhere.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from planner.calibrate.validate import builtin_published, predict_row
from planner.specs.hardware import Hardware
from planner.specs.loader import get_hardware

BOUNDS = {  # physical ranges: fractions of a datasheet peak, overheads in seconds
    "matmul": (0.2, 0.95),
    "memory": (0.5, 0.95),
    "kv_read": (0.2, 0.95),
    "kernel_s": (0.0, 30e-6),
    "step_s": (0.0, 5e-3),
}


@dataclass
class FitResult:
    hardware: Hardware
    names: list[str]
    values: list[float]
    rows: int
    median_ape_before: float
    median_ape_after: float


def _rows_for(hw_id: str, files: list[Path], exclude_engine: str = "llama.cpp") -> list[tuple[dict, Path, int]]:
    out = []
    for f in files:
        with f.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if {"request_rate", "scenario"} & set(reader.fieldnames or []):
                continue
            for i, row in enumerate(reader, start=2):
                if row["hardware"] == hw_id and exclude_engine not in row.get("source", ""):
                    out.append((row, f, i))
    return out


# dtypes that run on the same tensor-core path at the same peak: a fit of one holds for the other
SIBLINGS = {"fp16": ("bf16",), "bf16": ("fp16",), "fp8": ("int8",)}


def apply(hw: Hardware, names: list[str], x: np.ndarray, source: str) -> Hardware:
    ach = hw.achievable.model_dump()
    ov = hw.overheads.model_dump()
    fitted = {n.partition(":")[2] for n in names if n.startswith("matmul:")}
    for name, v in zip(names, x):
        kind, _, dtype = name.partition(":")
        if kind == "matmul":
            ach["matmul"][dtype] = {"fraction": float(v), "source": source, "kind": "calibrated"}
            for sib in SIBLINGS.get(dtype, ()):
                if sib not in fitted and hw.supports(sib) and hw.peak(sib) == hw.peak(dtype):
                    ach["matmul"][sib] = {"fraction": float(v), "kind": "calibrated",
                                          "source": f"as {dtype} (same tensor-core peak); {source}"}
        elif kind in ("memory", "kv_read"):
            ach[kind] = {"fraction": float(v), "source": source, "kind": "calibrated"}
        else:
            ov[kind] = {"value": float(v), "source": source}
    return hw.model_copy(update={
        "achievable": type(hw.achievable).model_validate(ach),
        "overheads": type(hw.overheads).model_validate(ov),
    })


def fit_hardware(hw_id: str, files: list[Path] | None = None, progress=None) -> FitResult:
    files = files or builtin_published()
    base = get_hardware(hw_id)
    rows = _rows_for(hw_id, files)
    if not rows:
        raise ValueError(f"no published rows for {hw_id}")
    from planner.specs.quant import get_format, resolve

    dtypes = sorted({resolve(get_format(r["weights"]), base).compute_dtype for r, _, _ in rows})
    # the streaming-memory fraction stays at its published measurement (STREAM-class copy);
    # fitting it beside kv_read and the overheads is not identifiable from end-to-end rows
    names = [f"matmul:{d}" for d in dtypes] + ["kv_read", "kernel_s", "step_s"]
    x0 = [base.matmul_efficiency(d) for d in dtypes]
    x0 += [base.achievable.kv_read.fraction if base.achievable.kv_read else base.achievable.memory.fraction]
    x0 += [base.overheads.kernel_s.value if base.overheads.kernel_s else 2e-6, base.overheads.step_s.value if base.overheads.step_s else 2e-4]
    lo = [BOUNDS[n.partition(":")[0]][0] for n in names]
    hi = [BOUNDS[n.partition(":")[0]][1] for n in names]
    x0 = np.clip(x0, lo, hi)
    meas = np.array([predict_row(r, f, i)[2] for r, f, i in rows])
    # every file weighs the same, so 166 throughput rows do not drown 10 latency rows
    names_f = [f.name for _, f, _ in rows]
    per_file = {n: names_f.count(n) for n in set(names_f)}
    weight = np.sqrt(np.array([len(rows) / (len(per_file) * per_file[n]) for n in names_f]))
    src = f"fitted to {len(rows)} published rows of {hw_id} (planner calibrate --published)"

    def residuals(x):
        hw = apply(base, names, x, src)
        pred = np.array([predict_row(r, f, i, hardware=hw)[3] for r, f, i in rows])
        if progress:
            progress()
        pred = np.where(np.isfinite(pred) & (pred > 0), pred, meas * 0.05)
        return np.log(pred / meas) * weight

    r0 = residuals(x0)
    sol = least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.2, diff_step=0.02, max_nfev=60)
    r1 = residuals(sol.x)
    ape = lambda r: float(np.median(np.abs(np.exp(r / weight) - 1)))  # noqa: E731
    return FitResult(apply(base, names, sol.x, src), names, list(sol.x), len(rows), ape(r0), ape(r1))


def _block(hw: Hardware) -> str:
    """YAML text of the achievable and overheads sections of ``hw``."""
    import yaml

    ach = hw.achievable.model_dump(exclude_none=True)
    ov = {k: {"value": f"{v['value'] * 1e6:.3g} us", "source": v["source"]} for k, v in hw.overheads.model_dump(exclude_none=True).items()}
    text = yaml.safe_dump({"achievable": ach}, sort_keys=False, width=200)
    if ov:
        text += yaml.safe_dump({"overheads": ov}, sort_keys=False, width=200)
    return text


def write_calibrated(path: Path, fitted: Hardware, original_text: str) -> None:
    """Replace the achievable/overheads sections of a hardware YAML, keeping the rest verbatim."""
    lines = original_text.splitlines(keepends=True)
    out, skip = [], False
    for line in lines:
        top = line[:1] not in (" ", "#", "\n", "") and ":" in line
        if top:
            key = line.split(":", 1)[0]
            skip = key in ("achievable", "overheads")
        if not skip:
            out.append(line)
    text = "".join(out).rstrip("\n") + "\n" + _block(fitted)
    path.write_text(text)
