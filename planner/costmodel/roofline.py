"""Roofline pieces shared by the cost model and the kernel calibration."""

from __future__ import annotations

import numpy as np


def gemm_efficiency(m, half_m: float):
    """Fraction of the achievable GEMM rate reached with ``m`` tokens: m / (m + half_m).

    Few tokens leave most tiles and waves of the device idle; ``half_m`` is the token
    count at which half the rate is reached (0: no penalty)."""
    m = np.asarray(m, dtype=float)
    return m / (m + half_m) if half_m else np.ones_like(m)


def tile_efficiency(m, tile):
    """Fraction of the GEMM rate reached with ``m`` tokens by a kernel whose only small-M loss is its tile's idle rows
    (a mixed-input kernel that spreads few tiles over every SM: Marlin): m over m rounded up to whole tiles of
    ``tile`` token rows. ``m`` and ``tile`` broadcast (numpy); m below one counts as one."""
    m = np.asarray(m, dtype=float)
    tile = np.maximum(np.asarray(tile, dtype=float), 1.0)
    return np.minimum(m / (np.ceil(np.maximum(m, 1.0) / tile) * tile), 1.0)


def wave_efficiency(m, widths, sms: int, tile: tuple[int, int]):
    """Fraction of the GEMM rate reached by GEMMs over ``m`` tokens whose outputs are ``widths`` wide (one GEMM each,
    all with the same reduction length) when a library runs each as CTA tiles of ``tile`` = (output rows, tokens),
    one tile per SM at a time on ``sms`` SMs: a GEMM of t = ceil(width / rows) x ceil(m / tokens) tiles takes
    ceil(t / sms) waves, each as long as one tile's work, so its efficiency is width x m / (waves x sms x rows x
    tokens). Partial tiles (a width or an m that is not a multiple of the tile) and an idle share of the last wave
    are both in it. Over several GEMMs the efficiencies combine by their FLOPs (proportional to width). ``m`` and the
    widths broadcast (numpy); m <= 0 gives 1 (no work)."""
    m = np.asarray(m, dtype=float)
    rows, toks = float(tile[0]), float(tile[1])
    num = 0.0
    den = 0.0
    for w in widths:
        w = np.asarray(w, dtype=float)
        tiles = np.ceil(w / rows) * np.ceil(m / toks)
        waves = np.maximum(np.ceil(tiles / float(sms)), 1.0)
        eff = np.where(m > 0, w * m / (waves * float(sms) * rows * toks), 1.0)
        num = num + w
        den = den + w / np.maximum(eff, 1e-12)
    return num / den
