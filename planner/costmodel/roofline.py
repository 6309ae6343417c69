"""Roofline pieces shared by the cost model and the kernel calibration."""

from __future__ import annotations

import numpy as np


def gemm_efficiency(m, half_m: float):
    """Fraction of the achievable GEMM rate reached with ``m`` tokens: m / (m + half_m).

    Few tokens leave most tiles and waves of the device idle; ``half_m`` is the token
    count at which half the rate is reached (0: no penalty)."""
    m = np.asarray(m, dtype=float)
    return m / (m + half_m) if half_m else np.ones_like(m)
