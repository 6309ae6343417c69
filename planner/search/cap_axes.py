"""The context/attention CAP techniques as one axis of the plan search: each variant is a context extension
method (when the workload or --min-context is longer than the trained context), a sparse-attention candidate
(or dense) and a prompt-compression candidate (or none). With the defaults the axis has one variant and the
search is what it was without it. Per variant the memory side (KV per sequence, room left beside a compressor)
is computed once per layout, before any step is costed, so the pruning of the grid sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from planner.costmodel.memory import context_that_fits, kv_bytes_per_seq
from planner.costmodel.plans import PlanArrays
from planner.costmodel.sparse import with_sparse, with_sparse_rows
from planner.search.space import SpaceOptions, extension_for
from planner.serving.draft import compressor, compressor_bytes, compressor_time_s


@dataclass
class Variant:
    extension: str  # "" = none
    sparse: tuple[str, float] | None
    compression: tuple[str, float] | None

    @property
    def ratio(self) -> float:
        return self.compression[1] if self.compression else 1.0


@dataclass
class CapAxis:
    variants: list[Variant]
    factor: float  # context-extension factor (1: the trained context suffices)
    names: list[str]  # technique names the table's code columns point into ("" first)
    per_seq: np.ndarray  # (configs, variants) KV bytes of one sequence on a device
    hbm: np.ndarray  # (configs, variants) KV room per device (beside a compressor's weights)
    isl_model: np.ndarray  # (variants,) prompt tokens the model sees

    def code(self, name: str) -> int:
        return self.names.index(name)


def build_axis(model, base: PlanArrays, mem, wl, opts: SpaceOptions, block_tokens: int, engine=None) -> CapAxis:
    need = max(wl.isl + wl.osl, getattr(wl, "min_context", 0) or 0)
    factor, ext = extension_for(model, need, opts)
    variants = [Variant(e, s, c) for e, s, c in product(ext, [None, *opts.sparse_attention], [None, *opts.prompt_compression])]
    names = list(dict.fromkeys([""] + ext + [s[0] for s in opts.sparse_attention] + [c[0] for c in opts.prompt_compression]))
    hbm0 = np.maximum(mem.kv_capacity_bytes, 0.0)
    isl_m = np.array([np.ceil(wl.isl / v.ratio) for v in variants])
    per_seq = np.empty((base.n, len(variants)))
    hbm = np.empty_like(per_seq)
    for j, v in enumerate(variants):
        ctx = isl_m[j] + wl.osl
        p = with_sparse(base, *(v.sparse or (None, 1.0)), ctx)
        per_seq[:, j] = kv_bytes_per_seq(model, p, ctx, block_tokens, engine)
        comp = compressor(v.compression[0]) if v.compression and v.ratio > 1 else None
        hbm[:, j] = np.maximum(hbm0 - compressor_bytes(comp), 0.0)
    return CapAxis(variants, factor, names, per_seq, hbm, isl_m)


def row_columns(ax: CapAxis, iv: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row technique columns (codes into ``ax.names`` and knob values) for variant indices ``iv``."""
    ext = np.array([ax.code(v.extension) for v in ax.variants])[iv]
    sp = np.array([ax.code(v.sparse[0]) if v.sparse else 0 for v in ax.variants])[iv]
    kept = np.array([v.sparse[1] if v.sparse else 1.0 for v in ax.variants])[iv]
    cmp_ = np.array([ax.code(v.compression[0]) if v.compression else 0 for v in ax.variants])[iv]
    ratio = np.array([v.ratio for v in ax.variants])[iv]
    return {"ctx_ext": ext, "ext_factor": np.where(ext > 0, ax.factor, 1.0), "sparse": sp, "sparse_kept": kept,
            "compress": cmp_, "compress_ratio": ratio}


def row_plans(ax: CapAxis, plans: PlanArrays, iv: np.ndarray, osl: int) -> PlanArrays:
    """``plans`` (one per row) with each row's sparse attention."""
    cols = row_columns(ax, iv)
    if not np.any(cols["sparse"] > 0):
        return plans
    return with_sparse_rows(plans, ax.names, cols["sparse"], cols["sparse_kept"], ax.isl_model[iv] + osl)


def compress_seconds(ax: CapAxis, cm, plans: PlanArrays, iv: np.ndarray, isl: int) -> np.ndarray:
    """Compressor device seconds per prompt, per row (0 without compression)."""
    out = np.zeros(len(iv))
    for j, v in enumerate(ax.variants):
        rows = np.nonzero(iv == j)[0]
        if v.compression and v.ratio > 1 and len(rows):
            out[rows] = compressor_time_s(compressor(v.compression[0]), cm, plans.take(rows), isl)
    return out


def max_context_rows(model, ax: CapAxis, plans: PlanArrays, room: np.ndarray, per_tok: np.ndarray) -> np.ndarray:
    """Longest single context each row holds in ``room`` bytes of KV per device: KV per token (x cp) for dense
    rows, the exact inverse for sparse ones; at most the (extended) context limit."""
    limit = float(np.floor(model.max_context * ax.factor))
    dense = np.minimum(np.floor(room / per_tok) * np.asarray(plans.cp, float), limit)
    if not plans.sparse:
        return dense
    h = np.broadcast_to(np.asarray(plans.sa_dense, float), (plans.n,))
    rows = np.nonzero(h < 1)[0]
    if len(rows):
        dense = np.array(dense, dtype=float, copy=True)
        dense[rows] = context_that_fits(model, plans.take(rows), room[rows], limit)
    return dense


def accuracy_rows(accuracy_of, cfg, i_c: np.ndarray, ax: CapAxis, iv: np.ndarray) -> np.ndarray | None:
    """Each row's accuracy factor from its variant's techniques, or None when no variant has one. Computed as the
    ratio to the plain precision score so it multiplies whatever else the row's accuracy holds."""
    if all(not v.extension and not v.sparse and not v.compression for v in ax.variants):
        return None
    out = np.ones(len(iv))
    base = accuracy_of(cfg, i_c)
    for j, v in enumerate(ax.variants):
        rows = np.nonzero(iv == j)[0]
        if not len(rows) or (not v.extension and not v.sparse and not v.compression):
            continue
        knobs = {"context_extension": (v.extension, ax.factor) if v.extension else None,
                 "sparse_attention": v.sparse, "prompt_compression": v.compression}
        out[rows] = accuracy_of(cfg, i_c[rows], **knobs) / np.maximum(base[rows], 1e-12)
    return out
