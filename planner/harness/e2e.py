"""End-to-end steps of a random-weight transformer: prefill from an empty cache and one decode
step over a filled cache, for a grid of batch sizes and lengths (rows of e2e.csv). The reference
models (dense, MoE, MLA; ``planner.harness.refmodels``) run all their layers; the profiled model
runs as many of its layers as fit the time and memory budget."""

from __future__ import annotations

import math

import numpy as np

from planner.harness.grids import Grid, e2e_dims
from planner.harness.kernels import Case, Slot
from planner.harness.refmodels import model_bytes
from planner.harness.timing import Timing, measure
from planner.harness.transformer import Config, KVCache, Transformer
from planner.specs.model import Model


def memory_needed(model: Model, grid: Grid, layers: int, elem_size: int) -> int:
    return model_bytes(model.model_copy(update={"num_layers": layers, "moe": model.moe and model.moe.model_copy(
        update={"first_dense_layers": min(layers, model.moe.first_dense_layers)})}), elem_size,
        *e2e_dims(grid.e2e_prefill, grid.e2e_decode))


def _calibrate(ops, dim: int, rng) -> tuple[float, float]:
    """Rough GEMM rate (flop/s) and memory bandwidth (bytes/s) for the layer estimate."""
    t = Timing(warmup=1, min_repeats=2, min_time_s=0.02, max_repeats=10)
    m = 256
    x, w, out = ops.randn((m, dim), 1.0, rng), ops.randn((dim, dim), dim**-0.5, rng), ops.empty((m, dim))
    rate = 2 * m * dim * dim / measure(lambda: ops.gemm(x, w, out), ops, t).median_s
    n = max(dim * dim, 16 << 20)
    big = ops.randn((n,), 1.0, rng)
    bw = n * ops.elem_size / measure(lambda: ops.read(big), ops, t).median_s
    return rate, bw


def estimate_seconds(cfg: Config, grid: Grid, layers: int, elem_size: int, rate: float, bw: float) -> float:
    """Estimated wall time of the e2e grid at ``layers`` layers (x1.5 for what the roofline misses)."""
    head = cfg.dim * cfg.vocab_size
    kv_tok = math.prod(cfg.cache_shape(1, 1)) * (1 if cfg.mla else 2)

    def step(b, t, ctx):
        flops = 2 * b * t * cfg.layer_params() * layers + 2 * b * head + 4 * b * cfg.q_dim * t * (ctx + t / 2) * layers
        nbytes = (layers * cfg.layer_params() + head + layers * b * (ctx + t) * kv_tok) * elem_size
        return 1.5 * (flops / rate + nbytes / bw)

    tm, total = grid.timing, 0.0
    for b, t, ctx in [(b, t, 0) for b, t in grid.e2e_prefill] + [(b, 1, c) for b, c in grid.e2e_decode]:
        s = step(b, t, ctx)
        reps = min(tm.max_repeats, max(tm.min_repeats, math.ceil(tm.min_time_s / s)))
        total += s * (tm.warmup + reps)
    bmax, lmax, _ = e2e_dims(grid.e2e_prefill, grid.e2e_decode)
    total += 3 * (2 * head + layers * (cfg.layer_params() + bmax * lmax * kv_tok)) * elem_size / bw  # init
    return total


def choose_layers(ops, model: Model, grid: Grid, memory_bytes: int | None, rng) -> tuple[int, str]:
    """As many layers as fit the grid's e2e time budget and its memory share (0: not even one fits)."""
    from planner.harness.grids import E2E_SHARE

    full = Config.from_model(model)
    cap = min(model.num_layers, grid.e2e_max_layers or model.num_layers)
    limit = E2E_SHARE * grid.memory_budget_bytes if memory_bytes is None else min(E2E_SHARE * grid.memory_budget_bytes, 0.6 * memory_bytes)
    if memory_needed(model, grid, 1, ops.elem_size) > limit:
        return 0, (f"not run: one layer with the embedding and lm_head needs "
                   f"{memory_needed(model, grid, 1, ops.elem_size) / 2**30:.2f} GiB, over {limit / 2**30:.2f} GiB of the memory budget")
    rate, bw = _calibrate(ops, full.dim, rng)
    layers = 1
    for n in range(cap, 0, -1):
        if memory_needed(model, grid, n, ops.elem_size) <= limit and estimate_seconds(full, grid, n, ops.elem_size, rate, bw) <= grid.e2e_budget_s:
            layers = n
            break
    est = estimate_seconds(full, grid, layers, ops.elem_size, rate, bw)
    why = (f"auto: most layers (cap {cap}) whose e2e grid fits {grid.e2e_budget_s:.0f} s and {limit / 2**30:.2f} GiB; "
           f"calibration {rate / 1e9:.1f} GFLOP/s, {bw / 1e9:.1f} GB/s; estimate {est:.0f} s")
    return layers, why


def e2e_cases(ops, model: Model, grid: Grid, layers: int, seed: int, slot: Slot) -> list[Case]:
    cfg = Config.from_model(model, layers)
    rng = np.random.default_rng(seed + 1)
    bmax, lmax, _ = e2e_dims(grid.e2e_prefill, grid.e2e_decode)

    def build():
        net = Transformer(cfg, ops, seed=seed)
        cache = KVCache(ops, cfg, bmax, lmax, rng=np.random.default_rng(seed + 2))  # random "already cached" tokens
        return net, cache

    base = {"model": model.id, "backend": ops.name, "device": ops.device, "dtype": ops.dtype,
            "layers": layers, "total_layers": model.num_layers}
    cases = []
    for b, t in grid.e2e_prefill:
        row = base | {"phase": "prefill", "batch": b, "prompt_tokens": t, "context": t}

        def prepare(b=b, t=t):
            net, cache = slot.get(("e2e", model.id, layers), build)
            tokens = ops.tokens(rng, cfg.vocab_size, (b, t))
            return lambda: net.step(tokens, cache, 0)  # from an empty cache: positions 0..t-1

        cases.append(Case("e2e prefill", row, prepare))
    for b, c in grid.e2e_decode:
        row = base | {"phase": "decode", "batch": b, "prompt_tokens": None, "context": c}

        def prepare(b=b, c=c):
            net, cache = slot.get(("e2e", model.id, layers), build)
            tokens = ops.tokens(rng, cfg.vocab_size, (b, 1))
            return lambda: net.step(tokens, cache, c)  # c tokens already cached; writes position c

        cases.append(Case("e2e decode", row, prepare))
    return cases
