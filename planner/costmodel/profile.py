"""Measured kernel profiles: GEMM times taken by the harness on one machine, looked up
by the cost model instead of the roofline where they apply.

Lookup for a GEMM of ``m`` tokens against a weight of ``w`` = n x k elements:
- a measured family with the same weight size (within 1 %): log-log interpolation in m
  between measured points ("measured" at a measured m, "interpolated" between them;
  beyond the measured range the end point's efficiency is kept);
- otherwise the nearest family (in log weight size) lends its measured efficiency
  (FLOP/s at that m), applied to this GEMM's FLOPs ("roofline+measured efficiency").
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SOURCES = ("roofline", "measured", "interpolated", "roofline+measured efficiency")


@dataclass
class GemmFamily:
    weight_elems: float
    log_m: np.ndarray  # sorted
    log_t: np.ndarray


@dataclass
class KernelProfile:
    path: str
    gemm: dict[str, list[GemmFamily]] = field(default_factory=dict)  # dtype -> families

    @classmethod
    def load(cls, folder: str | Path) -> "KernelProfile":
        folder = Path(folder)
        rows: dict[tuple[str, float], dict[float, list[float]]] = {}
        with (folder / "kernels.csv").open(newline="") as fh:
            for r in csv.DictReader(fh):
                if r["op"] != "gemm":
                    continue
                key = (r["dtype"], float(r["n"]) * float(r["k"]))
                rows.setdefault(key, {}).setdefault(float(r["m"]), []).append(float(r["median_s"]))
        prof = cls(str(folder))
        for (dtype, w), by_m in rows.items():
            ms = np.array(sorted(by_m))
            ts = np.array([np.median(by_m[m]) for m in ms])
            prof.gemm.setdefault(dtype, []).append(GemmFamily(w, np.log(ms), np.log(ts)))
        return prof

    def gemm_time(self, m, weight_elems: float, dtype: str) -> tuple[np.ndarray, int]:
        """Time (s) of a GEMM of m tokens against weight_elems, and the index of its source in SOURCES
        (0 when the profile has nothing for this dtype)."""
        fams = self.gemm.get(dtype)
        m = np.maximum(np.asarray(m, dtype=float), 1.0)
        if not fams or weight_elems <= 0:
            return np.full(m.shape, np.nan), 0
        sizes = np.array([f.weight_elems for f in fams])
        j = int(np.argmin(np.abs(np.log(sizes / weight_elems))))
        f = fams[j]
        lm = np.log(m)
        t = np.exp(np.interp(lm, f.log_m, f.log_t))
        # beyond the measured m range keep the end point's efficiency (time per token-FLOP)
        lo, hi = f.log_m[0], f.log_m[-1]
        t = np.where(lm > hi, np.exp(f.log_t[-1]) * m / np.exp(hi), t)
        t = np.where(lm < lo, np.exp(f.log_t[0]), t)
        if abs(np.log(f.weight_elems / weight_elems)) <= 0.01:
            exact = np.isclose(lm[..., None], f.log_m).any(axis=-1) if lm.ndim else bool(np.isclose(lm, f.log_m).any())
            src = 1 if np.all(exact) else 2
            return t, src
        return t * (weight_elems / f.weight_elems), 3
