"""Calibrate a device from the kernel rows of a harness capture (never its e2e rows).

Fitted by scipy least squares on log(predicted / measured) over kernels.csv:
matmul fraction per dtype and the token count at which GEMM efficiency halves, the
streaming-memory fraction, the attention fraction, the KV-read fraction and a fixed
per-kernel overhead. Peaks come from the base spec (a datasheet device) or, for a
machine without one, from the capture itself (the fastest GEMM and copy measured).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares

from planner.costmodel.roofline import gemm_efficiency
from planner.errors import PlannerError
from planner.specs.hardware import Hardware
from planner.specs.loader import read_yaml, validate_file

BOUNDS = {"matmul": (0.02, 1.5), "half_m": (0.0, 4096.0), "memory": (0.05, 1.5), "attention": (0.005, 1.5),
          "kv_read": (0.02, 1.5), "kernel_s": (0.0, 5e-3), "elementwise": (1e-4, 1.5)}
MEMORY_OPS = ("copy", "read", "write")
ELEMENTWISE_OPS = ("rmsnorm", "silu_mul", "add")


def read_kernels(folder: Path) -> list[dict]:
    path = folder / "kernels.csv"
    if not path.is_file():
        raise PlannerError(f"{folder} holds no kernels.csv (is it a planner profile capture?)")
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["op"] != "allreduce" and r["median_s"]]
    if not rows:
        raise PlannerError(f"{path} has no kernel rows to fit")
    return rows


def _num(r, k):
    v = r.get(k)
    return float(v) if v not in (None, "") else 0.0


@dataclass
class KernelData:
    op: np.ndarray
    dtype: np.ndarray
    m: np.ndarray
    n: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    kv_bytes: np.ndarray
    t: np.ndarray

    @classmethod
    def of(cls, rows: list[dict]) -> "KernelData":
        op = np.array([r["op"] for r in rows])
        size = np.array([4.0 if r["dtype"] == "fp32" else (1.0 if r["dtype"] in ("fp8", "int8") else 2.0) for r in rows])
        kv = np.array([_num(r, "batch") * _num(r, "seq_kv") * _num(r, "kv_heads") * _num(r, "head_dim") * 2 for r in rows]) * size
        kv = np.where(op == "attn_decode", kv, 0.0)
        return cls(op, np.array([r["dtype"] for r in rows]), np.array([_num(r, "m") for r in rows]),
                   np.array([_num(r, "n") for r in rows]),
                   np.array([_num(r, "flops") for r in rows]), np.array([_num(r, "bytes") for r in rows]), kv,
                   np.array([float(r["median_s"]) for r in rows]))


def predict(d: KernelData, peaks: dict[str, float], bw: float, p: dict) -> np.ndarray:
    """Kernel times under the cost model's roofline (same formulas as CostModel)."""
    t = np.zeros(len(d.t))
    mem = bw * p["memory"]
    for dt in np.unique(d.dtype):
        sel = (d.op == "gemm") & (d.dtype == dt)
        if sel.any():
            rate = peaks[dt] * p[f"matmul:{dt}"] * gemm_efficiency(d.m[sel], p["half_m"])
            t[sel] = np.maximum(d.flops[sel] / rate, d.bytes[sel] / mem)
        for kind in ("attn_prefill", "attn_decode"):
            sel = (d.op == kind) & (d.dtype == dt)
            if sel.any():
                rate = peaks[dt] * p["attention"]
                mem_t = (d.bytes[sel] - d.kv_bytes[sel]) / mem + d.kv_bytes[sel] / (bw * p["kv_read"])
                t[sel] = np.maximum(d.flops[sel] / rate, mem_t)
    sel = np.isin(d.op, MEMORY_OPS)
    t[sel] = d.bytes[sel] / mem
    # norms and activations: memory traffic, or per-element compute where that is slower (CPU exp/div);
    # (FLOPs per element as the harness and the cost model count them: norm 4, SiLU x mul 5, add 1)
    sel = np.isin(d.op, ELEMENTWISE_OPS)
    if sel.any() and "elementwise" in p and "fp32" in peaks:  # the same fp32 peak the cost model scales
        t[sel] = np.maximum(d.flops[sel] / (peaks["fp32"] * p["elementwise"]), d.bytes[sel] / mem)
    return t + p["kernel_s"]



@dataclass
class KernelFit:
    hardware: Hardware
    params: dict[str, float]
    rows: int
    median_ape: float
    per_op: dict[str, float]


def fit_capture(folder: Path, base: Hardware | None = None) -> KernelFit:
    rows = read_kernels(folder)
    d = KernelData.of(rows)
    meta = read_yaml(folder / "meta.yaml") if (folder / "meta.yaml").is_file() else {}
    dtypes = sorted(set(d.dtype[d.op == "gemm"]) | set(d.dtype[np.char.startswith(d.op.astype(str), "attn")]))
    if base is not None:
        missing = [x for x in dtypes if not base.supports(x)]
        if missing:
            raise PlannerError(f"{base.id} has no published peak for {missing}, which the capture measured")
        peaks = {x: base.peak(x) for x in dtypes}
        if base.supports("fp32"):
            peaks["fp32"] = base.peak("fp32")
        bw = base.memory_bandwidth_bytes_per_s
    else:
        peaks = {}
        for x in dtypes:
            g = (d.op == "gemm") & (d.dtype == x)
            src = g if g.any() else (d.dtype == x)
            peaks[x] = float(np.max(d.flops[src] / d.t[src]))
        m = np.isin(d.op, ("copy", "read", "write"))
        if not m.any():
            raise PlannerError(f"{folder}/kernels.csv has no bandwidth rows (copy/read/write)")
        bw = float(np.max(d.bytes[m] / d.t[m]))
    names = [f"matmul:{x}" for x in dtypes] + ["half_m", "memory", "attention", "kv_read", "kernel_s"]
    x0 = [0.8] * len(dtypes) + [16.0, 0.8, 0.3, 0.6, 1e-5]
    if np.isin(d.op, ELEMENTWISE_OPS).any() and "fp32" in peaks:
        names.append("elementwise")
        x0.append(0.02)
    lo = [BOUNDS[n.partition(":")[0]][0] for n in names]
    hi = [BOUNDS[n.partition(":")[0]][1] for n in names]

    def res(x):
        p = dict(zip(names, x))
        return np.log(predict(d, peaks, bw, p) / d.t)

    # the max() of compute and memory terms leaves kinks; start the elementwise rate from a few
    # decades and keep the best fit
    starts = [x0]
    if "elementwise" in names:
        j = names.index("elementwise")
        starts = [x0[:j] + [v] + x0[j + 1:] for v in (0.002, 0.02, 0.2)]
    sol = min((least_squares(res, s0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, x_scale="jac") for s0 in starts),
              key=lambda r: r.cost)
    params = dict(zip(names, map(float, sol.x)))
    err = np.abs(np.exp(res(sol.x)) - 1)
    per_op = {op: float(np.median(err[d.op == op])) for op in np.unique(d.op)}
    hw = _spec(folder, meta, base, peaks, bw, params)
    return KernelFit(hw, params, len(rows), float(np.median(err)), per_op)


def _spec(folder: Path, meta: dict, base: Hardware | None, peaks: dict, bw: float, p: dict) -> Hardware:
    src = f"calibrated from kernel rows of the capture {folder} (planner calibrate)"
    ach = {"matmul": {x: {"fraction": p[f"matmul:{x}"], "source": src, "kind": "calibrated"} for x in peaks if f"matmul:{x}" in p},
           "memory": {"fraction": p["memory"], "source": src, "kind": "calibrated"},
           "attention": {"fraction": p["attention"], "source": src, "kind": "calibrated"},
           "kv_read": {"fraction": p["kv_read"], "source": src, "kind": "calibrated"},
           "matmul_half_m": p["half_m"]}
    if "elementwise" in p:
        ach["elementwise"] = {"fraction": min(p["elementwise"], 1.2), "source": src, "kind": "calibrated"}
    over = {"kernel_s": {"value": p["kernel_s"], "source": src}}
    if base is not None:
        d = base.model_dump(mode="json", exclude_none=True)
        d["achievable"] = {**d["achievable"], **ach, "matmul": {**d["achievable"].get("matmul", {}), **ach["matmul"]}}
        d["overheads"] = {**d.get("overheads", {}), **over}
        d["id"] = f"{base.id}-calibrated"
    else:
        host = str(meta.get("host_id") or folder.parent.name)
        msrc = f"measured by planner profile: {folder}"
        mem_bytes = meta.get("memory_bytes") or meta.get("memory", {}).get("total_bytes") if isinstance(meta.get("memory"), dict) else meta.get("memory_bytes")
        d = {
            "id": f"host-{host}", "name": str(meta.get("cpu_model") or meta.get("cpu", {}).get("model", host) if isinstance(meta.get("cpu"), dict) else meta.get("cpu_model", host)),
            "vendor": "measured", "kind": "cpu" if str(meta.get("device", "cpu")) == "cpu" else "gpu",
            "memory": {"capacity": {"value": float(mem_bytes or 0) or 1.0, "source": msrc},
                       "bandwidth": {"value": bw, "source": f"fastest copy/read/write measured: {msrc}"}},
            "peak_flops": {x: {"value": v, "source": f"fastest {x} GEMM measured (not a datasheet peak): {msrc}"} for x, v in peaks.items()},
            "achievable": ach, "overheads": over,
        }
    d["calibrated_from"] = str(folder)
    d["kernel_profile"] = "."
    return validate_file(Hardware, folder / "calibrated.yaml", d)


def write_spec(hw: Hardware, path: Path) -> None:
    d = hw.model_dump(mode="json", exclude_none=True)
    path.write_text("# written by planner calibrate; kernel_profile is relative to this file\n" + yaml.safe_dump(d, sort_keys=False, width=160))
