"""Step latency of one replica type on a grid, from ``CostModel.step`` in one vectorized call.

The simulator never prices a step itself: every step time comes from the cost model through this
table (built once per replica type) and linear interpolation between its grid points.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from planner.costmodel.plans import PlanArrays
from planner.costmodel.step import ONCE_PER_STEP, CostModel, Step, micro_batches

# grid points of the step-cost tables (trimmed to what a replica can reach)
N_POINTS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192)
C_POINTS = (1, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576)
P_POINTS = (0, 1, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288)
L_POINTS = (1, 128, 512, 2048, 8192, 32768, 131072, 524288, 2097152)



def _axis(points, hi) -> list[float]:
    a = [float(x) for x in points if x < hi]
    a.append(float(hi))
    if len(a) == 1:
        a.append(float(hi) + 1.0)
    return a


def _loc(ax: list[float], x: float) -> tuple[int, float]:
    """Cell index and weight of ``x`` on axis ``ax`` (clamped cells: linear extrapolation outside)."""
    i = bisect_right(ax, x) - 1
    if i < 0:
        i = 0
    elif i > len(ax) - 2:
        i = len(ax) - 2
    a = ax[i]
    return i, (x - a) / (ax[i + 1] - a)


def spec_tokens_per_step(k: int, alpha: float) -> float:
    """Expected tokens a sequence emits per verification step with k drafts at acceptance alpha."""
    if k <= 0:
        return 1.0
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def _draft_head_s(cm: CostModel, plans: PlanArrays, n: np.ndarray, c: np.ndarray, pp: float, spec_k: int) -> np.ndarray:
    """Time of the speculative draft head (one decoder layer + lm_head per drafted token) over (n, c)."""
    dc = cm.step(plans, Step(decode_seqs=n / pp, decode_ctx=c))
    layer = sum(o.time_s * o.count for o in dc.ops if o.name not in ONCE_PER_STEP)  # the draft head skips the once-per-step ops
    per_layer = layer / max(next(o.count for o in dc.ops if o.name == "qkv_proj"), 1)
    head = next(o.time_s for o in dc.ops if o.name == "lm_head")
    return np.where(n > 0, spec_k * (per_layer + head), 0.0)


class StepTable:
    """``decode(n, ctx)``: a step of ``n`` decoding sequences at mean context ``ctx``.
    ``mixed(n, ctx, p, span)``: the same plus ``p`` prefill tokens whose attention spans ``span``
    keys per token on average x 2 (a whole prompt of L tokens has span ~ L; a chunk of t tokens
    after ``past`` cached ones has span 2 past + t). Under pipeline parallelism the batch is
    split into up to pp micro-batches (one per sequence below pp) and a step is max(latency, micro-batches x stage
    time), as in the in-flight steady state. Linear interpolation between grid points, linear extrapolation
    beyond them."""

    def __init__(self, cm: CostModel, plans: PlanArrays, *, max_seqs: int, max_ctx: float, max_prefill: float,
                 max_span: float, spec_k: int = 0, draft=None):
        self.cm, self.plans = cm, plans  # kept for summaries that price one step on the side (LoRA)
        pp = float(plans.pp[0])
        n_points = N_POINTS
        if cm.eager_call_s:  # decode batches past the largest captured graph run eagerly: a step in the cost, on the grid
            edge = float(cm.graph_max(plans)[0]) * float(plans.adp[0]) * pp
            n_points = sorted(set(N_POINTS) | {edge, edge + 1.0})
        self.n_ax = _axis(n_points, max(max_seqs, 1))
        self.c_ax = _axis(C_POINTS, max(max_ctx, 2.0))
        self.p_ax = _axis(P_POINTS, max(max_prefill, 2.0))
        self.l_ax = _axis(L_POINTS, max(max_span, 2.0))
        n = np.array(self.n_ax)[:, None, None, None]
        c = np.array(self.c_ax)[None, :, None, None]
        p = np.array(self.p_ax)[None, None, :, None]
        L = np.array(self.l_ax)[None, None, None, :]
        # the step's sequences (n decoding, about p / L prompts) split into up to pp micro-batches, one per sequence
        # below that (a sequence, or a prompt chunk, is not split): with fewer sequences than stages the step is one
        # pass through the stages, not pp stage times
        prompts = np.where(p > 0, p / L, 0.0)
        micros = micro_batches(pp, n + prompts)
        seqs = prompts / micros + 0.0 * n * c
        sc = cm.step(plans, Step(prefill_seqs=seqs, prefill_tokens=L + 0.0 * seqs, decode_seqs=n / micros, decode_ctx=c,
                                 decode_tokens=float(spec_k + 1)))
        t = np.maximum(sc.time_s, micros * sc.stage_time_s)
        t = np.broadcast_to(t, (len(self.n_ax), len(self.c_ax), len(self.p_ax), len(self.l_ax))).copy()
        if spec_k > 0:
            # a one-layer draft head, or k decode steps of a draft model (serving/draft.py: DraftModel)
            d = (_draft_head_s(cm, plans, n[:, :, 0, 0], c[:, :, 0, 0], pp, spec_k) if draft is None else
                 np.where(n[:, :, 0, 0] > 0, spec_k * draft.decode_step_s(n[:, :, 0, 0] / pp, c[:, :, 0, 0]), 0.0))
            t = t + np.broadcast_to(d, t.shape[:2])[:, :, None, None]
        self.grid = t
        self._dec = t[:, :, 0, 0].tolist()
        self._mix = t.ravel().tolist()
        self._sc = len(self.l_ax) * len(self.p_ax)
        self._sn = self._sc * len(self.c_ax)
        self._sp = len(self.l_ax)
        self._nlast = len(self.n_ax) - 2
        self._clast = len(self.c_ax) - 2
        self._plast = len(self.p_ax) - 2
        self._llast = len(self.l_ax) - 2
        # the n-axis cell of every whole batch size 0..max_seqs: (row i, row i + 1, weight), as decode() locates it
        rows, ax, last, dec = [], self.n_ax, self._nlast, self._dec
        for n in range(int(max(max_seqs, 1)) + 2):
            i = bisect_right(ax, n) - 1
            i = 0 if i < 0 else (last if i > last else i)
            rows.append((dec[i], dec[i + 1], (n - ax[i]) / (ax[i + 1] - ax[i]), i))
        self._rows = rows

    def decode(self, n: float, ctx: float) -> float:
        ax = self.n_ax
        i = bisect_right(ax, n) - 1
        i = 0 if i < 0 else (self._nlast if i > self._nlast else i)
        wi = (n - ax[i]) / (ax[i + 1] - ax[i])
        ax = self.c_ax
        j = bisect_right(ax, ctx) - 1
        j = 0 if j < 0 else (self._clast if j > self._clast else j)
        wj = (ctx - ax[j]) / (ax[j + 1] - ax[j])
        r0, r1 = self._dec[i], self._dec[i + 1]
        a = r0[j] + wj * (r0[j + 1] - r0[j])
        b = r1[j] + wj * (r1[j + 1] - r1[j])
        return a + wi * (b - a)

    def decode_pair(self, n: int, c0: float, c1: float) -> tuple[float, float]:
        """``decode(n, c0), decode(n, c1)`` for a whole batch size ``n`` (the two ends of a decode jump)."""
        try:
            r0, r1, wi, _ = self._rows[n]
        except IndexError:  # beyond the table's batch sizes (extrapolated from its last cell)
            i = self._nlast
            r0, r1, wi = self._dec[i], self._dec[i + 1], (n - self.n_ax[i]) / (self.n_ax[i + 1] - self.n_ax[i])
        ax, last = self.c_ax, self._clast
        j = bisect_right(ax, c0) - 1
        j = 0 if j < 0 else (last if j > last else j)
        x, y = ax[j], ax[j + 1]
        a0, a1 = r0[j], r1[j]
        d0, d1 = r0[j + 1] - a0, r1[j + 1] - a1
        wj = (c0 - x) / (y - x)
        lo = a0 + wj * d0
        v0 = lo + wi * (a1 + wj * d1 - lo)
        if c1 >= y and j < last:  # the jump's end lies in a later cell of the context axis
            j = bisect_right(ax, c1) - 1
            j = last if j > last else j
            x, y = ax[j], ax[j + 1]
            a0, a1 = r0[j], r1[j]
            d0, d1 = r0[j + 1] - a0, r1[j + 1] - a1
        wj = (c1 - x) / (y - x)
        lo = a0 + wj * d0
        return v0, lo + wi * (a1 + wj * d1 - lo)

    def mixed(self, n: float, ctx: float, p: float, span: float) -> float:
        if n and n.__class__ is int and n < len(self._rows):
            _, _, wi, i = self._rows[n]
        elif n:
            ax = self.n_ax
            i = bisect_right(ax, n) - 1
            if i > self._nlast:
                i = self._nlast
            x = ax[i]
            wi = (n - x) / (ax[i + 1] - x)
        else:
            i, wi = 0, 0.0
        ax, last = self.c_ax, self._clast
        j = bisect_right(ax, ctx) - 1
        j = 0 if j < 0 else (last if j > last else j)
        x = ax[j]
        wj = (ctx - x) / (ax[j + 1] - x)
        ax, last = self.p_ax, self._plast  # the cells of p and span (as _loc: clamped, linear beyond)
        k = bisect_right(ax, p) - 1
        k = 0 if k < 0 else (last if k > last else k)
        x = ax[k]
        wk = (p - x) / (ax[k + 1] - x)
        ax, last = self.l_ax, self._llast
        m = bisect_right(ax, span) - 1
        m = 0 if m < 0 else (last if m > last else m)
        x = ax[m]
        wm = (span - x) / (ax[m + 1] - x)
        g, sn, sc, sp = self._mix, self._sn, self._sc, self._sp
        b0 = i * sn + j * sc + k * sp + m
        out = 0.0
        # the four (n, ctx) corners, each bilinear in (p, span); the same sums in the same order as a loop
        f = (1.0 - wi) * (1.0 - wj)
        if f != 0.0:
            b1 = b0 + sp
            v0 = g[b0] + wm * (g[b0 + 1] - g[b0])
            v1 = g[b1] + wm * (g[b1 + 1] - g[b1])
            out += f * (v0 + wk * (v1 - v0))
        f = (1.0 - wi) * wj
        if f != 0.0:
            b = b0 + sc
            b1 = b + sp
            v0 = g[b] + wm * (g[b + 1] - g[b])
            v1 = g[b1] + wm * (g[b1 + 1] - g[b1])
            out += f * (v0 + wk * (v1 - v0))
        f = wi * (1.0 - wj)
        if f != 0.0:
            b = b0 + sn
            b1 = b + sp
            v0 = g[b] + wm * (g[b + 1] - g[b])
            v1 = g[b1] + wm * (g[b1 + 1] - g[b1])
            out += f * (v0 + wk * (v1 - v0))
        f = wi * wj
        if f != 0.0:
            b = b0 + sn + sc
            b1 = b + sp
            v0 = g[b] + wm * (g[b + 1] - g[b])
            v1 = g[b1] + wm * (g[b1 + 1] - g[b1])
            out += f * (v0 + wk * (v1 - v0))
        return out
