"""Pareto frontier over several objectives (all maximized), vectorized."""

from __future__ import annotations

import numpy as np


def dominated_by_any(points: np.ndarray, others: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each row of ``points``: does some row of ``others`` weakly beat it everywhere and strictly somewhere?"""
    out = np.zeros(len(points), dtype=bool)
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk, None, :]
        ge = (others[None, :, :] >= p).all(axis=2)
        gt = (others[None, :, :] > p).any(axis=2)
        out[s:s + chunk] = (ge & gt).any(axis=1)
    return out


def pareto_mask(obj: np.ndarray, group: np.ndarray | None = None) -> np.ndarray:
    """Non-dominated rows of ``obj`` (n x d, maximize every column).

    The first two columns are reduced first inside groups of equal remaining columns
    (a sort and a running maximum), so the all-pairs check only sees the survivors.
    """
    n = len(obj)
    if n == 0:
        return np.zeros(0, bool)
    rest = obj[:, 2:]
    if group is None:
        _, group = np.unique(rest, axis=0, return_inverse=True) if rest.shape[1] else (None, np.zeros(n, np.int64))
    group = np.asarray(group).ravel()
    # inside each group: sort by column 0 desc, then column 1 desc; keep strict new maxima of column 1
    order = np.lexsort((-obj[:, 1], -obj[:, 0], group))
    g, c1 = group[order], obj[order, 1]
    start = np.r_[True, g[1:] != g[:-1]]
    seg = np.cumsum(start) - 1
    # running maximum of column 1 before each row within its group
    prev = np.full(n, -np.inf)
    # segment-wise cumulative max: offset by group so groups do not mix
    offs = seg * (np.nanmax(np.abs(c1)) * 4 + 1.0)
    run = np.maximum.accumulate(c1 + offs) - offs
    prev[1:] = run[:-1]
    prev[start] = -np.inf
    keep_sorted = c1 >= prev  # ties stay candidates: exact duplicates are not dominated
    cand = np.zeros(n, bool)
    cand[order[keep_sorted]] = True
    idx = np.nonzero(cand)[0]
    dom = dominated_by_any(obj[idx], obj[idx])
    mask = np.zeros(n, bool)
    mask[idx[~dom]] = True
    return mask
