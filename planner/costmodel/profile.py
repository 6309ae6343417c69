"""Measured kernel profiles: kernel times taken by the harness on one machine, looked up
by the cost model instead of the roofline where they apply.

GEMMs. Lookup for a GEMM of ``m`` tokens against a weight of ``w`` = n x k elements:
- a measured family with the same weight size (within 1 %): log-log interpolation in m
  between measured points ("measured" at a measured m, "interpolated" between them;
  beyond the measured range the end point's efficiency is kept);
- otherwise the nearest family (in log weight size) lends its measured efficiency
  (FLOP/s at that m), applied to this GEMM's FLOPs ("roofline+measured efficiency").
A mixture-of-experts layer run as a loop over experts (``expert_loop_time``) runs each expert's
up and down GEMMs over the tokens routed to it: with uniform routing an expert receives
Binomial(tokens, top-k / experts) of them, and the loop's expected GEMM time is the measured
time at each count weighted by its probability (on a CPU a one-token expert runs BLAS's
matrix-vector path, two tokens already a packed GEMM at about twice the time, so the mean count
alone would misprice a few-token batch). The loop's other work (top-k routing, per expert a
membership test and, per expert touched, the gather, activation, gate weighting and
scatter-add) is timed whole by the capture's ``moe_loop`` rows (``moe_loop_time``), per model
shape, log-log in the token count.

Decode attention (``decode_attention_time``): attn_decode rows grouped by the shape of the
product each KV head runs, (query heads per KV head g, key width, value width); within a
family, log-log interpolation of time in FLOPs. A shape with no family of its own borrows the
nearest family's FLOP rate (in log g, key and value widths). MLA's absorbed decode is its own
family (g = all heads over one latent, values a slice of it): on a CPU its einsum runs at a
FLOP rate, not at the KV-read rate a grouped-query cache sets.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planner.errors import PlannerError

SOURCES = ("roofline", "measured", "interpolated", "roofline+measured efficiency")


@dataclass
class GemmFamily:
    weight_elems: float
    log_m: np.ndarray  # sorted
    log_t: np.ndarray


@dataclass
class AttentionFamily:
    """Decode attention of one product shape: g query heads per KV head, key width dqk, value width dv."""

    g: float
    dqk: float
    dv: float
    log_flops: np.ndarray  # sorted
    log_t: np.ndarray


def _interp_loglog(x, log_x: np.ndarray, log_t: np.ndarray) -> np.ndarray:
    """exp of the log-log interpolation; beyond the measured range the end point's time per unit of x is kept
    (above) or its time (below: fixed costs do not shrink)."""
    lx = np.log(x)
    t = np.exp(np.interp(lx, log_x, log_t))
    t = np.where(lx > log_x[-1], np.exp(log_t[-1]) * x / np.exp(log_x[-1]), t)
    return np.where(lx < log_x[0], np.exp(log_t[0]), t)


def _f(r: dict, k: str) -> float:
    v = r.get(k)
    return float(v) if v not in (None, "") else 0.0


def routed_counts(tokens: float, experts: float, top_k: float) -> tuple[np.ndarray, np.ndarray]:
    """(j, P(j)) for j >= 1: the tokens one expert receives when each of ``tokens`` tokens picks ``top_k`` of
    ``experts`` uniformly (Binomial(tokens, top_k / experts)); the probabilities of j >= 1 sum to the chance the expert
    is touched, 1 - (1 - top_k / experts)^tokens. The tails beyond 12 standard deviations are left out."""
    n = int(round(max(float(tokens), 0.0)))
    p = min(max(float(top_k) / max(float(experts), 1.0), 0.0), 1.0)
    if n == 0 or p == 0.0:
        return np.zeros(0), np.zeros(0)
    if p == 1.0:
        return np.array([float(n)]), np.array([1.0])
    mu, sd = n * p, np.sqrt(n * p * (1 - p))
    j = np.arange(max(1, int(mu - 12 * sd)), min(n, int(np.ceil(mu + 12 * sd))) + 1, dtype=float)
    log_pmf = gammaln(n + 1) - gammaln(j + 1) - gammaln(n - j + 1) + j * np.log(p) + (n - j) * np.log1p(-p)
    return j, np.exp(log_pmf)


def gammaln(x):
    """log Gamma(x) for x > 0 (numpy arrays or floats), via math.lgamma."""
    from math import lgamma

    return np.vectorize(lgamma, otypes=[float])(x) if np.ndim(x) else lgamma(float(x))


@dataclass
class MoeLoopFamily:
    """moe_loop rows of one shape: hidden h, expert width f, experts E, experts per token k; time by token count."""

    h: float
    f: float
    experts: float
    top_k: float
    log_tokens: np.ndarray  # sorted
    log_t: np.ndarray


@dataclass
class KernelProfile:
    path: str
    gemm: dict[str, list[GemmFamily]] = field(default_factory=dict)  # dtype -> families
    attn_decode: dict[str, list[AttentionFamily]] = field(default_factory=dict)  # dtype -> families
    moe_loop: dict[str, list[MoeLoopFamily]] = field(default_factory=dict)  # dtype -> families
    # a GPU capture's host-overhead probes (host_<kind> rows: the harness's layers at a negligible width): seconds of
    # host time per decoder layer of each layout ("dense", "moe", "mla") and phase ("prefill", "decode"). On a GPU the
    # host issues a step's kernels while the device runs those before, so a step takes at least its layers' host time
    host_per_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    gpu: bool = False  # taken on a GPU (meta.yaml): its rows time eager PyTorch calls, the host's dispatch included

    @classmethod
    def load(cls, folder: str | Path) -> "KernelProfile":
        folder = Path(folder)
        rows: dict[tuple[str, float], dict[float, list[float]]] = {}
        attn: dict[tuple[str, float, float, float], dict[float, list[float]]] = {}
        loop: dict[tuple[str, float, float, float, float], dict[float, list[float]]] = {}
        host: dict[tuple[str, str], list[float]] = {}
        gpu = captured_on_gpu(folder)
        with (folder / "kernels.csv").open(newline="") as fh:
            for r in csv.DictReader(fh):
                if r["op"] == "gemm":
                    key = (r["dtype"], float(r["n"]) * float(r["k"]))
                    rows.setdefault(key, {}).setdefault(float(r["m"]), []).append(float(r["median_s"]))
                elif r["op"] == "attn_decode" and r.get("flops") and r.get("median_s"):
                    d = _f(r, "head_dim")
                    key = (r["dtype"], _f(r, "heads") / max(_f(r, "kv_heads"), 1.0), d, _f(r, "head_dim_v") or d)
                    attn.setdefault(key, {}).setdefault(float(r["flops"]), []).append(float(r["median_s"]))
                elif gpu and r["op"].startswith("host_") and r.get("median_s") and _f(r, "n") > 0:
                    # m = batch, n = layers, seq_q = tokens per sequence in the step (1: decode)
                    phase = "decode" if _f(r, "seq_q") <= 1 else "prefill"
                    host.setdefault((r["op"][len("host_"):], phase), []).append(float(r["median_s"]) / _f(r, "n"))
                elif r["op"] == "moe_loop" and r.get("median_s"):
                    key = (r["dtype"], _f(r, "n"), _f(r, "k"), _f(r, "heads"), _f(r, "kv_heads"))
                    loop.setdefault(key, {}).setdefault(float(r["m"]), []).append(float(r["median_s"]))
        prof = cls(str(folder), gpu=gpu)
        for (dtype, w), by_m in rows.items():
            ms = np.array(sorted(by_m))
            ts = np.array([np.median(by_m[m]) for m in ms])
            prof.gemm.setdefault(dtype, []).append(GemmFamily(w, np.log(ms), np.log(ts)))
        for (dtype, g, dqk, dv), by_f in attn.items():
            fl = np.array(sorted(by_f))
            ts = np.array([np.median(by_f[x]) for x in fl])
            prof.attn_decode.setdefault(dtype, []).append(AttentionFamily(g, dqk, dv, np.log(fl), np.log(ts)))
        for (kind, phase), ts in host.items():
            prof.host_per_layer.setdefault(kind, {})[phase] = float(np.median(ts))
        for (dtype, h, f, e, k), by_t in loop.items():
            tk = np.array(sorted(by_t))
            ts = np.array([np.median(by_t[x]) for x in tk])
            prof.moe_loop.setdefault(dtype, []).append(MoeLoopFamily(h, f, e, k, np.log(tk), np.log(ts)))
        return prof

    def host_step_floor(self, model, prefill) -> np.ndarray | float:
        """Seconds a step of ``model`` takes at least on a GPU capture's host: its decoder layers x the host time per
        layer of its layout (a mixture of experts, else multi-head latent attention, else dense), the prefill value
        where ``prefill`` (per plan) is true; 0 without host rows for that layout (a CPU capture: there the host time is
        a per-op cost the fit adds, kernel_fit._host_overhead)."""
        kind = "moe" if model.moe else "mla" if model.attention.mla else "dense"
        per = self.host_per_layer.get(kind)
        if not per:
            return 0.0
        pre, dec = per.get("prefill", per.get("decode", 0.0)), per.get("decode", per.get("prefill", 0.0))
        return np.where(prefill, pre, dec) * model.num_layers

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
        t = _interp_loglog(m, f.log_m, f.log_t)
        if abs(np.log(f.weight_elems / weight_elems)) <= 0.01:
            lm = np.log(m)
            exact = np.isclose(lm[..., None], f.log_m).any(axis=-1) if lm.ndim else bool(np.isclose(lm, f.log_m).any())
            src = 1 if np.all(exact) else 2
            return t, src
        return t * (weight_elems / f.weight_elems), 3

    def expert_loop_time(self, tokens, experts: float, top_k: float, experts_here: float, expert_elems: float,
                         mats: int, dtype: str) -> tuple[np.ndarray, int]:
        """Expected time (s) of an expert loop's GEMMs: each of the ``experts_here`` experts on this device runs its up
        (gate and up fused when ``mats`` = 3) and down GEMMs over the j >= 1 tokens routed to it, j ~ Binomial(tokens,
        top_k / experts) (``routed_counts``); ``expert_elems`` = one expert's weights (all its matrices). Source index
        as gemm_time (the weaker of the two lookups); 0 when the profile has no GEMMs of this dtype."""
        tokens = np.asarray(tokens, dtype=float)
        out, src = np.zeros(tokens.shape), 1
        if not self.gemm.get(dtype):
            return np.full(tokens.shape, np.nan), 0
        for n in np.unique(tokens):
            j, pj = routed_counts(n, experts, top_k)
            if not len(j):
                continue  # no tokens: no expert runs
            up, src_up = self.gemm_time(j, expert_elems * (mats - 1) / mats, dtype)
            down, src_down = self.gemm_time(j, expert_elems / mats, dtype)
            src = max(src, src_up, src_down)
            out[tokens == n] = float(experts_here) * float(np.sum(pj * (up + down)))
        return out, src

    def moe_loop_time(self, tokens, h: float, f: float, experts: float, top_k: float, dtype: str) -> tuple[np.ndarray, int]:
        """Time (s) of a mixture-of-experts layer's routing and expert loop besides its GEMMs (``moe_loop`` rows) for
        ``tokens`` tokens, from the rows of exactly this shape (hidden ``h``, expert width ``f``, ``experts``,
        ``top_k``): log-log in the token count, per token beyond the largest row, the smallest row's time below it.
        Source index as gemm_time (1 measured, 2 interpolated); nan and 0 when no rows have this shape."""
        tokens = np.asarray(tokens, dtype=float)
        fam = next((x for x in self.moe_loop.get(dtype, ()) if (x.h, x.f, x.experts, x.top_k) == (h, f, experts, top_k)), None)
        if fam is None:
            return np.full(tokens.shape, np.nan), 0
        t = _interp_loglog(np.maximum(tokens, 1.0), fam.log_tokens, fam.log_t)
        lt = np.log(np.maximum(tokens, 1.0))
        exact = np.isclose(lt[..., None], fam.log_tokens).any(axis=-1)
        return np.where(tokens > 0, t, 0.0), 1 if np.all(exact) else 2

    def decode_attention_time(self, flops, g: float, dqk: float, dv: float, dtype: str) -> tuple[np.ndarray, int]:
        """Time (s) of decode attention of ``flops`` FLOPs whose KV heads each serve ``g`` query heads with key width
        ``dqk`` and value width ``dv`` (MLA absorbed: g = all heads, dqk = the latent, dv = its value part); source
        index as gemm_time: measured / interpolated within the family of this shape, else the nearest family's rate."""
        fams = self.attn_decode.get(dtype)
        flops = np.asarray(flops, dtype=float)
        if not fams or g <= 0 or dqk <= 0:
            return np.full(flops.shape, np.nan), 0
        dist = [np.log(f.g / g) ** 2 + np.log(f.dqk / dqk) ** 2 + np.log(f.dv / max(dv, 1.0)) ** 2 for f in fams]
        f = fams[int(np.argmin(dist))]
        # below the smallest row measured the smallest row's time (as for GEMMs: its fixed costs, the einsum's or
        # kernel's calls, do not shrink with the work; a roofline plus one per-op gap was 4-7x too fast on the
        # harness's small decode steps)
        t = _interp_loglog(np.maximum(flops, 1.0), f.log_flops, f.log_t)
        if min(dist) > 1e-4:
            return t, 3
        lf = np.log(np.maximum(flops, 1.0))
        exact = np.isclose(lf[..., None], f.log_flops).any(axis=-1) if lf.ndim else bool(np.isclose(lf, f.log_flops).any())
        return t, 1 if np.all(exact) else 2


def ran_on_gpu(meta: dict) -> bool:
    """Whether a capture's meta.yaml names a GPU as its device (where the host issues kernels the device runs)."""
    return isinstance(meta, dict) and meta.get("device") not in (None, "cpu")


def captured_on_gpu(folder: Path) -> bool:
    """ran_on_gpu for the capture in ``folder`` (False where its meta.yaml is missing or unreadable)."""
    from planner.specs.loader import read_yaml

    path = folder / "meta.yaml"
    try:
        return path.is_file() and ran_on_gpu(read_yaml(path))
    except PlannerError:
        return False


def measured_decode_attention(cm, c, sh, op, *, local: bool):
    """``op`` (an attention OpCost of ``CostModel``) with the capture's measured decode-attention time where the
    step only decodes and the kernel rows cover it: full (not windowed, chunked or sparse) attention, no context
    parallelism, a KV cache in the compute type. Otherwise ``op`` unchanged (the roofline)."""
    prof = cm.profile
    if prof is None or local or not prof.attn_decode or getattr(c.plans, "sparse", False):
        return op
    if np.any(np.asarray(c.cp) > 1) or np.any(np.asarray(c.plans.kv_bytes) < np.asarray(cm._act)):
        return op
    mla = sh.decode_dqk != sh.prefill_dqk  # absorbed decode: every head over one latent
    shape = op.time_s.shape
    heads = np.broadcast_to(np.asarray(sh.heads, float), shape)
    kvh = np.broadcast_to(np.asarray(sh.kv_elems_per_token, float) / (sh.decode_dqk if mla else 2.0 * sh.decode_dqk), shape)
    g = heads if mla else heads / np.maximum(kvh, 1e-9)
    pairs = c.d_seqs * c.d_tok * c.d_ctx / c.adp
    flops = np.broadcast_to(2.0 * heads * pairs * (sh.decode_dqk + sh.decode_dv), shape)
    t, src = np.full(shape, np.nan), 0
    for gv in np.unique(g):  # one lookup per product shape among the plans
        sel = g == gv
        tv, sv = prof.decode_attention_time(flops[sel], float(gv), sh.decode_dqk, sh.decode_dv, cm._gemm_dtype)
        if not sv:
            return op
        t[sel], src = tv, max(src, sv)
    decode_only = (np.broadcast_to(np.asarray(c.p_seqs) * np.asarray(c.p_tok), shape) == 0) & np.isfinite(t)
    op.time_s = np.where(decode_only, t, op.time_s)
    if np.all(decode_only):
        op.source = SOURCES[src]
    return op


def measured_experts(cm, op, tokens, experts: float, top_k: float, experts_here, expert_elems, gated: bool) -> bool:
    """``op`` (the EXPERTS OpCost) timed from the capture's GEMM rows: the expected time of each expert's up and down
    GEMMs over the tokens routed to it (``KernelProfile.expert_loop_time``); unchanged unless the capture measured these
    shapes. Whether it was timed from the rows."""
    if cm.profile is None:
        return False
    here = np.unique(np.asarray(experts_here, float))
    if here.size != 1:  # one expert count per device across the plans (expert parallelism varies): the roofline
        return False
    t, src = cm.profile.expert_loop_time(tokens, experts, top_k, float(here[0]), expert_elems, 3 if gated else 2,
                                         cm._gemm_dtype)
    if src in (1, 2):  # the expert shapes were measured (a neighbour's rate would not show the few-token step)
        op.time_s = np.broadcast_to(t, op.time_s.shape)
        op.source = SOURCES[src]
        return True
    return False


def measured_moe_loop(cm, op, tokens, h: float, f: float, experts: float, top_k: float) -> bool:
    """``op`` (MOE_PERMUTE of an expert loop) timed from the capture's moe_loop rows: the routing and the loop's work
    besides its GEMMs, at this model's shape. Whether the capture had rows of this shape."""
    if cm.profile is None:
        return False
    t, src = cm.profile.moe_loop_time(tokens, h, f, experts, top_k, cm._gemm_dtype)
    if not src:
        return False
    op.time_s = np.broadcast_to(t, op.time_s.shape)
    op.source = SOURCES[src]
    return True
