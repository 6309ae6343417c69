"""Pareto frontier over several objectives (every column maximized), vectorized.

A row is on the frontier when no other row is at least as good in every column and strictly better in one.
Exact duplicates share their fate (neither dominates the other). NaN counts as -inf: a plan missing a value
is no better on that objective than any plan that has one.

The work grows like n log n in the number of rows for the shapes the planner produces:

1. pivot pruning (3+ columns): a handful of strong rows (best per column, best scaled sum) drop every row they
   dominate, O(n) per pivot -- most rows on independent or correlated objectives, few on a trade-off curve;
2. columns replaced by their integer ranks and constant columns dropped; rows merged and ordered by one integer
   key (one sort), so exact duplicates are handled once;
3. the two columns with the most distinct values are the fine ones, the rest define cells. Few cells (accuracy
   levels x context caps): a 2-D staircase per cell (a running maximum) and a binary-search query of each
   survivor against the staircases of the cells at least as good on every coarse column. Many cells: a column
   that is a non-decreasing function of another is dropped first (it cannot change who dominates whom; within
   one device, $ per token is such a function of tokens/s per GPU); then 3 columns: a sweep in lexicographic
   order over a sorted staircase (a binary search per row); 4+: sort-filter-skyline in blocks, in an order
   where no row can precede one that dominates it, stopping once a frontier row beats every remaining row in
   every column (O(n x frontier) at worst, when three or more columns have many distinct values).

``blocks`` (e.g. the device of each plan) finds frontiers inside each block first -- a row dominated within its
block is dominated overall -- and then across the union of the block frontiers.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

import numpy as np

MAX_CELLS = 512  # coarse-column cells above which the cell method gives way to the sweep / SFS
SFS_BLOCK = 512


def dominated_by_any(points: np.ndarray, others: np.ndarray, cells: int = 1 << 22) -> np.ndarray:
    """For each row of ``points``: does some row of ``others`` weakly beat it everywhere and strictly somewhere?

    The all-pairs check, column by column over blocks of ``cells`` point-other pairs: the reference the fast
    paths are tested against, and the inner step of the skyline scan."""
    out = np.zeros(len(points), dtype=bool)
    if len(others) == 0 or len(points) == 0:
        return out
    others = np.asarray(others)
    cols = [others[None, :, j] for j in range(others.shape[1])]
    step = max(1, cells // len(others))
    for s in range(0, len(points), step):
        p = points[s:s + step]
        ge = cols[0] >= p[:, :1]
        gt = cols[0] > p[:, :1]
        for j in range(1, len(cols)):
            ge &= cols[j] >= p[:, j:j + 1]
            gt |= cols[j] > p[:, j:j + 1]
        out[s:s + step] = (ge & gt).any(axis=1)
    return out


def pareto_mask(obj: np.ndarray, blocks: np.ndarray | None = None) -> np.ndarray:
    """Non-dominated rows of ``obj`` (n x d, maximize every column); NaN counts as -inf."""
    x = np.asarray(obj, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    n = len(x)
    if n == 0:
        return np.zeros(0, bool)
    if np.isnan(x).any():
        x = np.where(np.isnan(x), -np.inf, x)
    if blocks is None:
        return _mask(x)
    blocks = np.asarray(blocks).ravel()
    order = np.argsort(blocks, kind="stable")
    cuts = np.nonzero(blocks[order][1:] != blocks[order][:-1])[0] + 1
    cand = np.zeros(n, bool)
    for idx in np.split(order, cuts):
        cand[idx[_mask(x[idx])]] = True
    idx = np.nonzero(cand)[0]
    out = np.zeros(n, bool)
    out[idx[_mask(x[idx])]] = True
    return out


def _mask(x: np.ndarray) -> np.ndarray:
    cols = x.T.copy()  # column-major: reductions and passes over one column are contiguous
    cols = cols[cols.min(axis=1) < cols.max(axis=1)]  # a constant column decides nothing
    n, d = len(x), len(cols)
    if d == 0:
        return np.ones(n, bool)
    alive = np.arange(n)
    if d >= 3 and n > 4096:
        cols, alive = _pivot_prune(cols)
    out = np.zeros(n, bool)
    out[alive[_front_ranked(np.column_stack([_column_rank(c) for c in cols]))]] = True
    return out


def _column_rank(v: np.ndarray) -> np.ndarray:
    """Dense ranks of one column. A column with few distinct values (accuracy levels, context caps) is ranked by
    binary search against the distinct values of a sample, once every value is checked to be among them;
    otherwise by a full sort."""
    if len(v) > 4096:
        levels = np.unique(v[:: len(v) // 2048])
        if len(levels) <= 256:
            pos = np.searchsorted(levels, v)
            if (levels[np.minimum(pos, len(levels) - 1)] == v).all():
                return pos.astype(np.int64)
    return _dense_rank(v)[0]


def _dense_rank(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense rank of each value (ties share a rank) and the sorted distinct values' first positions in sort order."""
    o = np.argsort(v)
    sv = v[o]
    first = np.r_[True, sv[1:] != sv[:-1]]
    rk = np.empty(len(v), np.int64)
    rk[o] = np.cumsum(first) - 1
    return rk, o[first]


def _row_ids(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense id of each distinct row of a rank matrix (ids in the rows' lexicographic order) and one row per id.
    Columns are packed into as few int64 keys as fit (mixed radix), then sorted once."""
    n, d = r.shape
    width = r.max(axis=0) + 1 if n else np.ones(d, np.int64)
    keys, key, span = [], np.zeros(n, np.int64), 1
    for j in range(d):
        if span * int(width[j]) >= 2 ** 62:
            keys.append(key)
            key, span = np.zeros(n, np.int64), 1
        key = key * int(width[j]) + r[:, j]
        span *= int(width[j])
    keys.append(key)
    if len(keys) == 1:
        return _dense_rank(keys[0])
    order = np.lexsort(keys[::-1])
    new = np.r_[True, np.any([np.diff(k[order]) != 0 for k in keys], axis=0)]
    ids = np.empty(n, np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids, order[new]


def _front_ranked(r: np.ndarray) -> np.ndarray:
    """Frontier mask of rank rows (duplicates allowed). The two columns with the most distinct values are the
    fine ones (a, b); the others define cells. Rows are merged and ordered by one integer key: cell, a desc, b desc."""
    n, d = r.shape
    width = [int(w) for w in r.max(axis=0) + 1]
    if d == 1:
        return r[:, 0] == width[0] - 1
    if sum(w > MAX_CELLS for w in width) >= 3:  # too many cells unless a wide column follows another one
        cols = _non_redundant(r)
        if len(cols) < d:
            return _front_ranked(r[:, cols])
    fine = sorted(range(d), key=lambda j: width[j])[-2:]
    coarse = [j for j in range(d) if j not in fine]
    wa, wb = width[fine[0]], width[fine[1]]
    if math.prod(width) >= 2 ** 62:
        inv, firsts = _row_ids(r)
        return _front_unique(r[firsts], fine, coarse)[inv]
    code = np.zeros(n, np.int64)
    for j in coarse:
        code = code * width[j] + r[:, j]
    key = (code * wa + (wa - 1 - r[:, fine[0]])) * wb + (wb - 1 - r[:, fine[1]])
    inv, firsts = _dense_rank(key)
    uk = key[firsts]
    code = uk // (wa * wb)
    first = np.r_[True, code[1:] != code[:-1]]
    if d == 2 or first.sum() <= MAX_CELLS:
        cvals = np.zeros((int(first.sum()), len(coarse)), np.int64)
        rest = code[first]
        for i in range(len(coarse) - 1, -1, -1):
            rest, cvals[:, i] = np.divmod(rest, width[coarse[i]])
        a = wa - 1 - (uk // wb) % wa
        b = wb - 1 - uk % wb
        return _front_cells(a, b, np.cumsum(first) - 1, cvals, wb)[inv.ravel()]
    u = np.empty((len(uk), d), np.int64)
    u[:, fine[0]] = wa - 1 - (uk // wb) % wa
    u[:, fine[1]] = wb - 1 - uk % wb
    rest = code
    for j in reversed(coarse):
        rest, u[:, j] = np.divmod(rest, width[j])
    return _front_unique(u, fine, coarse, few_cells_possible=False)[inv.ravel()]


def _front_unique(u: np.ndarray, fine: list[int], coarse: list[int], few_cells_possible: bool = True) -> np.ndarray:
    """Frontier mask of distinct rank rows; ``few_cells_possible=False`` when the caller already counted too many
    cells for the cell method."""
    if few_cells_possible:
        cell, firsts = _row_ids(u[:, coarse])
        if len(firsts) <= MAX_CELLS:
            a, b = u[:, fine[0]], u[:, fine[1]]
            order = np.lexsort((-b, -a, cell))
            out = np.zeros(len(u), bool)
            out[order] = _front_cells(a[order], b[order], cell[order], u[firsts][:, coarse], int(b.max()) + 1)
            return out
    cols = _non_redundant(u)
    if len(cols) < u.shape[1]:
        return _front_ranked(u[:, cols])  # still distinct rows: a dropped column followed the others
    alive = _pivot_prune(u.T.copy(), second_round=True)[1] if len(u) > 256 else np.arange(len(u))
    out = np.zeros(len(u), bool)
    out[alive[_sweep_3d(u[alive]) if u.shape[1] == 3 else _sfs(u[alive])]] = True
    return out


def _non_redundant(r: np.ndarray) -> list[int]:
    """Columns left after dropping each column that is a non-decreasing function of another kept column: sorted
    by column j, column k never falls, and does not change where j stays the same (one sort per column j)."""
    d = r.shape[1]
    width = r.max(axis=0) + 1
    cols = list(range(d))
    sorted_by: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in reversed(range(d)):
        if width[k] <= MAX_CELLS:
            continue  # a coarse column: dropping it would not bring the cell count down enough to matter
        for j in cols:
            if j == k or len(cols) <= 2 or width[j] < width[k]:  # a function of j has at most j's distinct values
                continue
            if j not in sorted_by:
                o = np.argsort(r[:, j], kind="stable")
                sorted_by[j] = (o, np.diff(r[o, j]) == 0)
            o, same_j = sorted_by[j]
            dk = np.diff(r[o, k])
            if (dk >= 0).all() and not dk[same_j].any():
                cols.remove(k)
                break
    return cols


def _scaled_sum(cols: np.ndarray) -> np.ndarray:
    """Sum over the columns of each column mapped monotonically onto [0, 1] (infinities clipped to the finite range)."""
    fin = np.isfinite(cols)
    lo = np.where(fin, cols, np.inf).min(axis=1, keepdims=True)
    hi = np.where(fin, cols, -np.inf).max(axis=1, keepdims=True)
    lo, hi = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)
    return ((np.clip(cols, lo, hi) - lo) / np.where(hi > lo, hi - lo, 1.0)).sum(axis=0)


def _drop_dominated_by(cols: np.ndarray, alive: np.ndarray, pivots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove the rows (columns of ``cols``) that some pivot row dominates: a few vectorized passes per pivot."""
    dom = np.zeros(cols.shape[1], bool)
    for v in pivots:
        le = cols[0] <= v[0]
        lt = cols[0] < v[0]
        for j in range(1, len(cols)):
            le &= cols[j] <= v[j]
            lt |= cols[j] < v[j]
        dom |= le & lt
    return cols[:, ~dom], alive[~dom]


def _pivot_prune(cols: np.ndarray, second_round: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Drop the rows a few strong rows dominate: the best of each column and of the scaled sum; with
    ``second_round`` (when many rows survive) also the mutual frontier of the 32 survivors with the largest scaled
    sums. Returns (cols, kept rows)."""
    ssum = _scaled_sum(cols)
    pivots = cols[:, np.unique(np.r_[np.argmax(cols, axis=1), np.argmax(ssum)])].T
    kept, alive = _drop_dominated_by(cols, np.arange(cols.shape[1]), pivots)
    if second_round and len(alive) > 4096:
        top = kept[:, np.argsort(-ssum[alive])[:32]].T
        kept, alive = _drop_dominated_by(kept, alive, top[~dominated_by_any(top, top)])
    return kept, alive


def _front_cells(a: np.ndarray, b: np.ndarray, cell: np.ndarray, cvals: np.ndarray, wb: int) -> np.ndarray:
    """Distinct rows sorted by (cell, a desc, b desc): each cell's 2-D staircase (a row survives if its b beats
    every earlier b of its cell), then each survivor is checked against the staircases of the cells at least as
    good on every coarse column (a row there that is weakly better on (a, b) dominates it)."""
    key = b + cell * (wb + 1)
    prev = np.r_[-1, np.maximum.accumulate(key)[:-1]]
    stair = key > prev
    nc = len(cvals)
    if nc == 1:
        return stair
    beats = (cvals[None, :, :] >= cvals[:, None, :]).all(axis=2)
    np.fill_diagonal(beats, False)
    idx = np.nonzero(stair)[0]
    sc = cell[idx]
    for g in np.nonzero(beats.any(axis=1))[0]:
        mine = idx[sc == g]
        theirs = idx[beats[g][sc]]
        if len(mine) and len(theirs):
            stair[mine[_weakly_beaten_2d(a[mine], b[mine], a[theirs], b[theirs])]] = False
    return stair


def _weakly_beaten_2d(qa: np.ndarray, qb: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """For each query: is there a point with pa >= qa and pb >= qb? (sort, suffix maximum, binary search)"""
    o = np.argsort(pa, kind="stable")
    xs = pa[o]
    suf = np.maximum.accumulate(pb[o][::-1])[::-1]
    i = np.searchsorted(xs, qa, side="left")
    out = np.zeros(len(qa), bool)
    ok = i < len(xs)
    out[ok] = suf[i[ok]] >= qb[ok]
    return out


def _sweep_3d(r: np.ndarray) -> np.ndarray:
    """3 columns, distinct rows: visit rows in descending lexicographic order; a row is dominated iff an earlier
    row is weakly better on columns 1 and 2. The earlier rows' (c1, c2) staircase is kept sorted (c1 rising,
    c2 falling), so each query and update is a binary search."""
    order = np.lexsort((-r[:, 2], -r[:, 1], -r[:, 0]))
    k1: list[int] = []  # staircase c1, ascending
    n2: list[int] = []  # staircase -c2, ascending
    keep = np.zeros(len(r), bool)
    for t, (q1, q2) in enumerate(zip(r[order, 1].tolist(), r[order, 2].tolist())):
        i = bisect_left(k1, q1)
        if i < len(k1) and -n2[i] >= q2:
            continue
        keep[t] = True
        hi = bisect_right(k1, q1)
        lo = bisect_left(n2, -q2, 0, hi)
        k1[lo:hi] = [q1]
        n2[lo:hi] = [-q2]
    out = np.zeros(len(r), bool)
    out[order[keep]] = True
    return out


def _sfs(r: np.ndarray) -> np.ndarray:
    """Sort-filter-skyline over distinct rank rows: in order of (largest scaled rank, then scaled-rank sum), both
    descending, a dominator always comes first; rows are compared in blocks with the frontier so far, and the
    scan stops once a frontier row's smallest scaled rank exceeds the largest of every row still to come."""
    s = r / np.maximum(r.max(axis=0), 1)
    mx, mn = s.max(axis=1), s.min(axis=1)
    order = np.lexsort((-s.sum(axis=1), -mx))
    sky = np.zeros((0, r.shape[1]), r.dtype)
    out = np.zeros(len(r), bool)
    best_min = -1.0
    for start in range(0, len(r), SFS_BLOCK):
        blk = order[start:start + SFS_BLOCK]
        blk = blk[mx[blk] >= best_min]
        if len(blk) == 0:
            break
        blk = blk[~dominated_by_any(r[blk], sky)]
        blk = blk[~dominated_by_any(r[blk], r[blk])]
        if len(blk):
            out[blk] = True
            sky = np.vstack([sky, r[blk]])
            best_min = max(best_min, float(mn[blk].max()))
    return out
