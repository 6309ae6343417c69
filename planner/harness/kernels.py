"""The kernel grid: GEMMs of a model's layer shapes, attention (prefill and decode), memory
bandwidth and the elementwise layer ops. Each case is a kernels.csv row plus a ``prepare``
that allocates its inputs (only when the row is still missing) and returns the call to time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from planner.harness.grids import Grid
from planner.specs.model import Model


@dataclass
class Case:
    phase: str
    row: dict
    prepare: Callable[[], Callable[[], object]]
    optional: bool = False  # a RuntimeError skips the row (recorded in meta.yaml) instead of failing


class Slot:
    """Holds the buffers of one shape at a time, so a phase never keeps two large sets alive."""

    def __init__(self):
        self.key, self.value = None, None

    def get(self, key, factory):
        if key != self.key:
            self.key, self.value = None, None  # free the old buffers before allocating new ones
            self.value, self.key = factory(), key
        return self.value

    def clear(self):
        self.key, self.value = None, None


def _base(ops, op: str, dtype: str | None = None) -> dict:
    return {"op": op, "backend": ops.name, "device": ops.device, "dtype": dtype or ops.dtype}


def weight_copies(weight_bytes: int, grid: Grid) -> int:
    """Copies of a weight to cycle through so that consecutive calls never find it in the cache:
    together at least the bandwidth arrays' size (>= 4x the last-level cache), as a serving step
    streams every layer's weights from memory."""
    return max(1, min(64, -(-grid.bandwidth_bytes // max(weight_bytes, 1))))


def gemm_cases(ops, grid: Grid, rng: np.random.Generator, slot: Slot) -> list[Case]:
    es, cases = ops.elem_size, []
    for label, n, k, m_max in grid.gemm_shapes:
        ms = sorted({m for m in grid.gemm_m if m <= m_max} | (set(grid.expert_m) if "expert_" in label else set()))
        top = max(ms)
        copies = weight_copies(k * n * es, grid)

        def make(n=n, k=k, top=top, copies=copies):
            return ops.randn((top, k), 1.0, rng), ops.randn((copies, k, n), k**-0.5, rng), ops.empty((top, n))

        for m in ms:
            row = _base(ops, "gemm") | {"m": m, "n": n, "k": k, "bytes": (m * k + k * n + m * n) * es, "flops": 2 * m * n * k}

            def prepare(m=m, n=n, k=k, make=make, copies=copies):
                x, w, out = slot.get(("gemm", n, k), make)
                xs, outs, ws = x[:m], out[:m], [w[i] for i in range(copies)]
                turn = [0]

                def call():  # the next copy of the weight each call (cold cache, as in a serving step)
                    turn[0] = (turn[0] + 1) % copies
                    ops.gemm(xs, ws[turn[0]], outs)

                return call

            cases.append(Case("gemm", row, prepare))
    fp8_reason = ops.fp8_gemm_available() if hasattr(ops, "fp8_gemm_available") else "numpy has no fp8"
    if fp8_reason is None:
        for _label, n, k, m_max in grid.gemm_shapes:
            ms = [m for m in grid.gemm_m if m <= m_max]
            copies = weight_copies(k * n, grid)  # one byte per weight: cold, as the 16-bit rows
            for m in ms:
                row = _base(ops, "gemm", "fp8_e4m3") | {"m": m, "n": n, "k": k, "bytes": (m * k + k * n) + m * n * 2,
                                                        "flops": 2 * m * n * k}
                cases.append(Case("gemm", row, _typed_prepare(ops, slot, rng, "fp8_e4m3", m, n, k, max(ms), copies),
                                  optional=True))
    cases += peak_cases(ops, grid, rng, slot)
    return cases


# bytes per weight / activation element and per output element of the typed GEMMs (int8 accumulates into int32)
TYPED_BYTES = {"bf16": (2, 2), "fp16": (2, 2), "fp8_e4m3": (1, 2), "int8": (1, 4)}


def _typed_prepare(ops, slot: Slot, rng: np.random.Generator, dtype: str, m: int, n: int, k: int, top: int, copies: int):
    """The prepare of one typed GEMM row: buffers for the shape's largest m (kept in the slot across its m), the call
    cycling through ``copies`` weights."""
    def prepare():
        a, ws, call = slot.get((dtype, n, k), lambda: ops.typed_gemm(dtype, top, n, k, copies, rng))
        x, turn = a[:m], [0]

        def run():
            turn[0] = (turn[0] + 1) % len(ws)
            return call(x, ws[turn[0]])

        return run

    return prepare


def peak_cases(ops, grid: Grid, rng: np.random.Generator, slot: Slot) -> list[Case]:
    """Square GEMMs of each tensor-core format the device runs (16-bit, FP8, INT8) at ``grid.peak_sizes``: the rate
    each format sustains once M, N and K fill the chip, the figure the hardware specs' matmul fractions are (MAMF)."""
    if not grid.peak_sizes or not hasattr(ops, "typed_gemm"):
        return []
    formats = ["bf16", "fp16"]
    if ops.fp8_gemm_available() is None:
        formats.append("fp8_e4m3")
    if ops.int8_gemm_available() is None:
        formats.append("int8")
    cases = []
    for s in grid.peak_sizes:
        for dt in formats:
            es, out_es = TYPED_BYTES[dt]
            row = _base(ops, "gemm", dt) | {"m": s, "n": s, "k": s, "bytes": 2 * s * s * es + s * s * out_es, "flops": 2 * s**3}
            copies = weight_copies(s * s * es, grid)
            cases.append(Case("gemm peak", row, _typed_prepare(ops, slot, rng, dt, s, s, s, s, copies), optional=True))
    return cases


def attention_cases(ops, model: Model, grid: Grid, rng: np.random.Generator, slot: Slot) -> list[Case]:
    es, H, KVH, d = ops.elem_size, model.num_heads, model.num_kv_heads, model.head_dim
    cases = []
    for b, S in grid.attn_prefill:
        row = _base(ops, "attn_prefill") | {
            "batch": b, "heads": H, "kv_heads": KVH, "head_dim": d, "head_dim_v": d, "seq_q": S, "seq_kv": S,
            "bytes": b * S * d * (2 * H + 2 * KVH) * es, "flops": 4 * b * H * d * S * (S + 1) // 2}

        def prepare(b=b, S=S):
            q, k, v = slot.get(("prefill", b, S), lambda: (ops.randn((b, H, S, d), 1.0, rng),
                                                           ops.randn((b, KVH, S, d), 1.0, rng),
                                                           ops.randn((b, KVH, S, d), 1.0, rng)))
            return lambda: ops.attention(q, k, v, 0)

        cases.append(Case("attention", row, prepare))
    if grid.attn_decode:
        bmax = max(b for b, _ in grid.attn_decode)
        lmax = max(c for _, c in grid.attn_decode)

        def make_kv():
            return ops.randn((bmax, KVH, lmax, d), 1.0, rng), ops.randn((bmax, KVH, lmax, d), 1.0, rng)

        for b, L in grid.attn_decode:
            row = _base(ops, "attn_decode") | {
                "batch": b, "heads": H, "kv_heads": KVH, "head_dim": d, "head_dim_v": d, "seq_q": 1, "seq_kv": L,
                "bytes": b * L * KVH * d * 2 * es + 2 * b * H * d * es, "flops": 4 * b * H * d * L}

            def prepare(b=b, L=L):
                K, V = slot.get(("decode-kv",), make_kv)
                q = ops.randn((b, H, 1, d), 1.0, rng)
                # a cache allocated for the longest context, as engines do; each call reads the next (b, L) region
                # of it, so the KV comes from memory, as in a serving step where every other layer ran in between
                return _cycling(lambda i, j: (K[i:i + b, :, j:j + L], V[i:i + b, :, j:j + L]), b, L, K.shape[0], lmax,
                                lambda kv: ops.attention(q, kv[0], kv[1], L - 1))

            cases.append(Case("attention", row, prepare))
        cases += mla_decode_cases(ops, grid, rng, slot)
    return cases


def _cycling(region, b: int, L: int, seqs: int, lmax: int, run):
    """A call that runs ``run`` on the next of the cache's disjoint (b sequences, L positions) regions
    (``region(first sequence, first position)``), round robin: consecutive calls never find their KV in the cache."""
    views = [region(i, j) for i in range(0, seqs - b + 1, b) for j in range(0, lmax - L + 1, L)]
    turn = [0]

    def call():
        turn[0] = (turn[0] + 1) % len(views)
        return run(views[turn[0]])

    return call


def mla_decode_cases(ops, grid: Grid, rng: np.random.Generator, slot: Slot) -> list[Case]:
    """MLA's absorbed decode (transformer.Transformer._mla): H query heads of width ``latent`` attend over one
    cached latent per token (kv_heads 1), whose first ``dv`` dims are the values. The latent is read once per
    sequence; the FLOPs are 2 x H x L x (latent + dv) per sequence."""
    es, cases = ops.elem_size, []
    bmax = max(b for b, _ in grid.attn_decode)
    lmax = max(c for _, c in grid.attn_decode)
    for H, latent, dv in grid.mla_decode:
        # sequences enough that the latents add up to the bandwidth rows' size (>= 4x the last-level cache): the
        # calls cycle over them and read from memory
        seqs = max(bmax, -(-grid.bandwidth_bytes // (lmax * latent * es)))
        for b, L in grid.attn_decode:
            row = _base(ops, "attn_decode") | {
                "batch": b, "heads": H, "kv_heads": 1, "head_dim": latent, "head_dim_v": dv, "seq_q": 1, "seq_kv": L,
                "bytes": b * L * latent * es + b * H * (latent + dv) * es, "flops": 2 * b * H * L * (latent + dv)}

            def prepare(b=b, L=L, H=H, latent=latent, dv=dv, seqs=seqs):
                C = slot.get(("mla-latent", latent, seqs), lambda: ops.randn((seqs, 1, lmax, latent), 1.0, rng))
                q = ops.randn((b, H, 1, latent), 1.0, rng)
                return _cycling(lambda i, j: C[i:i + b, :, j:j + L], b, L, seqs, lmax,
                                lambda c: ops.attention(q, c, c[..., :dv], L - 1, scale=latent**-0.5))

            cases.append(Case("attention", row, prepare))
    return cases


def moe_loop_cases(ops, grid: Grid, rng: np.random.Generator, slot: Slot) -> list[Case]:
    """A mixture-of-experts layer's loop over experts (transformer.expert_loop) with everything but its GEMMs: the
    top-k routing and softmax of ``m`` tokens, then per expert the membership test and, for each expert touched, the
    gather of its tokens, the SiLU x up activation, the router-weight scaling and the scatter-add. The GEMMs return
    ready outputs of their shapes (their time is in the gemm rows). Columns: m tokens, n hidden, k expert width,
    heads experts, kv_heads experts per token; bytes and FLOPs count the activation and the per-assignment row moves."""
    from planner.harness.transformer import expert_loop, route

    es, cases = ops.elem_size, []
    for h, f, E, k in grid.moe_loop:
        for T in grid.moe_tokens:
            a = T * k  # token-expert assignments
            row = _base(ops, "moe_loop") | {"m": T, "n": h, "k": f, "heads": E, "kv_heads": k,
                                            "bytes": a * (7 * h + 3 * f) * es, "flops": a * (5 * f + 2 * h)}

            def prepare(T=T, h=h, f=f, E=E, k=k, a=a):
                x, logits = ops.randn((T, h), 1.0, rng), ops.randn((T, E), 1.0, rng)
                out = ops.randn((T, h), 1.0, rng)  # the shared expert's output the loop adds into
                ready = [(ops.randn((a, 2 * f), 1.0, rng), ops.randn((a, h), 1.0, rng))] * E  # GEMM outputs, every expert

                def done(x_rows, ready_out):  # the GEMM of x_rows: its output, ready
                    return ready_out[: x_rows.shape[0]]

                return lambda: expert_loop(ops, x, *route(ops, logits, k), ready, out, done)

            cases.append(Case("moe loop", row, prepare))
    return cases


def memory_cases(ops, grid: Grid, rng: np.random.Generator, slot: Slot) -> list[Case]:
    es = ops.elem_size
    n = grid.bandwidth_bytes // es

    def make():
        src, dst = ops.randn((n,), 1.0, rng), ops.empty((n,))
        ops.write(dst)  # touch every page before timing
        return src, dst

    cases = []
    for op, nbytes in (("copy", 2 * n * es), ("read", n * es), ("write", n * es)):
        row = _base(ops, op) | {"m": n, "bytes": nbytes}

        def prepare(op=op):
            src, dst = slot.get(("bandwidth", n), make)
            return {"copy": lambda: ops.copy(dst, src), "read": lambda: ops.read(src), "write": lambda: ops.write(dst)}[op]

        cases.append(Case("memory", row, prepare))
    return cases


def elementwise_cases(ops, model: Model, grid: Grid, rng: np.random.Generator, slot: Slot) -> list[Case]:
    es, h, inter = ops.elem_size, model.hidden_size, model.intermediate_size
    cases = []
    for m in grid.elementwise_m:
        specs = (
            ("rmsnorm", h, (2 * m * h + h) * es, 4 * m * h),
            ("silu_mul", inter, 3 * m * inter * es, 5 * m * inter),
            ("add", h, 3 * m * h * es, m * h),
        )
        for op, n, nbytes, flops in specs:
            row = _base(ops, op) | {"m": m, "n": n, "bytes": nbytes, "flops": flops}

            def prepare(op=op, m=m, n=n):
                if op == "rmsnorm":
                    x, w = ops.randn((m, n), 1.0, rng), ops.asarray(1.0 + 0.1 * rng.standard_normal(n))
                    return lambda: ops.rmsnorm(x, w)
                if op == "silu_mul":
                    gu = ops.randn((m, 2 * n), 1.0, rng)
                    g, u = gu[:, :n], gu[:, n:]
                    return lambda: ops.silu_mul(g, u)
                a, b = ops.randn((m, n), 1.0, rng), ops.randn((m, n), 1.0, rng)
                return lambda: ops.add(a, b)

            cases.append(Case("elementwise", row, prepare))
    return cases


HOST_STEPS = ((1, 1, 16), (8, 1, 16), (1, 16, 0))  # (batch, new tokens, cached tokens)


def host_cases(ops, grid: Grid, rng: np.random.Generator, slot: Slot) -> list[Case]:
    """Steps of each reference model's layers at a negligible width (``refmodels.host_probe``): the
    host time the layer code costs per step, which calibration divides over the cost model's ops."""
    from planner.harness.refmodels import host_probe
    from planner.harness.transformer import Config, KVCache, Transformer

    cases = []
    for ref in grid.e2e_models:
        probe = host_probe(ref)
        cfg = Config.from_model(probe)

        def build(cfg=cfg):
            return Transformer(cfg, ops, seed=0), KVCache(ops, cfg, 8, 32, rng=np.random.default_rng(1))

        for b, t, past in HOST_STEPS:
            row = _base(ops, probe.id.replace("-", "_")) | {"m": b, "n": cfg.n_layers, "k": cfg.dim, "batch": b,
                                                            "seq_q": t, "seq_kv": past + t, "bytes": 0, "flops": 0}

            def prepare(b=b, t=t, past=past, key=probe.id, build=build, vocab=cfg.vocab_size):
                net, cache = slot.get(("host", key), build)
                tokens = ops.tokens(rng, vocab, (b, t))
                return lambda: net.step(tokens, cache, past)

            cases.append(Case("host overhead", row, prepare))
    return cases


def kernel_cases(ops, model: Model, grid: Grid, rng: np.random.Generator, slot: Slot) -> list[Case]:
    return (gemm_cases(ops, grid, rng, slot) + attention_cases(ops, model, grid, rng, slot)
            + memory_cases(ops, grid, rng, slot) + elementwise_cases(ops, model, grid, rng, slot)
            + moe_loop_cases(ops, grid, rng, slot) + host_cases(ops, grid, rng, slot))
