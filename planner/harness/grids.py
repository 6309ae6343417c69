"""What to measure in each mode: the kernel shapes (from a model spec's layers) and the e2e grid."""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.harness.timing import Timing
from planner.specs.model import Model


@dataclass(frozen=True)
class Grid:
    mode: str  # quick | full | tiny
    timing: Timing
    gemm_m: tuple[int, ...]
    gemm_shapes: tuple[tuple[str, int, int, int], ...]  # (label, n, k, largest m)
    attn_prefill: tuple[tuple[int, int], ...]  # (batch, S)
    attn_decode: tuple[tuple[int, int], ...]  # (batch, context)
    bandwidth_bytes: int
    elementwise_m: tuple[int, ...]
    e2e_prefill: tuple[tuple[int, int], ...]  # (batch, prompt tokens)
    e2e_decode: tuple[tuple[int, int], ...]  # (batch, context)
    e2e_budget_s: float  # time the e2e phase may take; sets the layer count when not given
    e2e_max_layers: int | None = None
    allreduce_bytes: tuple[int, ...] = field(default=())


def model_gemm_shapes(model: Model) -> list[tuple[str, int, int]]:
    """The four dense projections of one decoder layer: (label, n, k) for activation (m x k) @ weight (k x n)."""
    h, inter = model.hidden_size, model.intermediate_size
    return [
        ("qkv", (model.num_heads + 2 * model.num_kv_heads) * model.head_dim, h),
        ("o", h, model.num_heads * model.head_dim),
        ("gate_up", (2 if model.ffn_gated else 1) * inter, h),
        ("down", h, inter),
    ]


def _pow2(lo: int, hi: int) -> tuple[int, ...]:
    out, x = [], lo
    while x <= hi:
        out.append(x)
        x *= 2
    return tuple(out)


def _dedupe(shapes):
    seen, out = set(), []
    for label, n, k, m_max in shapes:
        if (n, k) not in seen:
            seen.add((n, k))
            out.append((label, n, k, m_max))
    return tuple(out)


def make_grid(mode: str, model: Model, llc_bytes: int | None, device: str = "cpu") -> Grid:
    model_shapes = model_gemm_shapes(model)
    big = 1 << 30 if device == "cuda" else 256 << 20
    bandwidth = max(4 * (llc_bytes or 32 << 20), big)
    if mode == "tiny":
        return Grid(
            mode=mode, timing=Timing(warmup=1, min_repeats=2, min_time_s=0.0),
            gemm_m=(1, 4, 16), gemm_shapes=_dedupe((lb, n, k, 16) for lb, n, k in model_shapes),
            attn_prefill=((1, 8), (2, 16)), attn_decode=((1, 8), (2, 16)),
            bandwidth_bytes=1 << 20, elementwise_m=(1, 8),
            e2e_prefill=((1, 4), (2, 8)), e2e_decode=((1, 8), (2, 16)), e2e_budget_s=5.0,
            allreduce_bytes=(1 << 10, 1 << 16))
    if mode == "quick":
        return Grid(
            mode=mode, timing=Timing(warmup=1, min_repeats=2, min_time_s=0.05, max_repeats=50),
            gemm_m=(1, 8, 64, 512),
            gemm_shapes=_dedupe([(lb, n, k, 512) for lb, n, k in model_shapes] + [("lm_head", model.vocab_size, model.hidden_size, 8)]),
            attn_prefill=((1, 128), (1, 512)), attn_decode=((1, 256), (8, 256), (1, 2048), (8, 2048)),
            bandwidth_bytes=bandwidth, elementwise_m=(1, 256),
            e2e_prefill=((1, 16), (1, 64), (1, 256)), e2e_decode=((1, 128), (8, 128), (1, 1024), (8, 1024)),
            e2e_budget_s=30.0, e2e_max_layers=2,
            allreduce_bytes=(1 << 20, 64 << 20))
    if mode != "full":
        raise ValueError(mode)
    h = model.hidden_size
    off_model = [("square-1024", 1024, 1024, 2048), ("square-2048", 2048, 2048, 2048), ("square-8192", 8192, 8192, 2048),
                 ("lm_head", model.vocab_size, h, 256)]
    return Grid(
        mode=mode, timing=Timing(warmup=1, min_repeats=3, min_time_s=0.2),
        gemm_m=_pow2(1, 2048),
        gemm_shapes=_dedupe([(lb, n, k, 2048) for lb, n, k in model_shapes] + off_model),
        attn_prefill=tuple((1, s) for s in _pow2(64, 2048)) + tuple((4, s) for s in _pow2(64, 512)),
        attn_decode=tuple((b, c) for b in _pow2(1, 32) for c in _pow2(128, 4096)),
        bandwidth_bytes=bandwidth, elementwise_m=(1, 16, 128, 1024, 4096),
        e2e_prefill=tuple((b, t) for b in (1, 4) for t in _pow2(16, 1024)),
        e2e_decode=tuple((b, c) for b in _pow2(1, 32) for c in _pow2(128, 2048)),
        e2e_budget_s=400.0,
        allreduce_bytes=tuple(1 << p for p in range(16, 31, 2)))
