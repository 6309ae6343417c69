"""What to measure in each mode: the kernel shapes (from a model spec's layers and the reference
models' layers) and the e2e grid, all sized to the memory the capture may use."""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.harness import refmodels
from planner.harness.timing import Timing
from planner.specs.model import Model

GiB = 1 << 30
# memory a capture may use by default (resident set, numpy/BLAS included), and never more than
# this share of the machine's memory
DEFAULT_BUDGET_BYTES = {"tiny": GiB // 4, "quick": GiB, "full": 4 * GiB}
MAX_MEMORY_SHARE = 0.5
EXPERT_M = tuple(range(2, 33))  # every few-token m of expert GEMMs (Grid.expert_m)
E2E_SHARE = 0.4  # of the budget, for one e2e model (kernel buffers are freed before the e2e phase)
BASE_BYTES = 160 << 20  # the interpreter, numpy, BLAS thread buffers: resident before any tensor


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
    memory_budget_bytes: int = GiB
    e2e_models: tuple[Model, ...] = ()  # reference models run end to end (all their layers)
    e2e_main: bool = True  # also run the profiled model's own layers end to end (when they fit)
    dropped: tuple[str, ...] = ()  # shapes left out because they do not fit the budget
    e2e_timing: Timing | None = None  # None: ``timing``
    # extra few-token m for expert GEMMs (label 'expert_...'): an expert loop runs each expert over the tokens routed to
    # it (a binomial count, 1-32 for the e2e grid's batches), where BLAS leaves its m = 1 matrix-vector path and runs
    # the rows beyond a multiple of its kernel's m-block in slower remainder code (OpenBLAS on this VM: m = 3 costs
    # 1.3x m = 4), so every count is measured, not interpolated between powers of two
    expert_m: tuple[int, ...] = ()
    # MLA's absorbed decode attention of the reference/profiled models: (heads, latent width, value width)
    mla_decode: tuple[tuple[int, int, int], ...] = ()
    # mixture-of-experts layers run as the harness's loop over experts: (hidden, expert width, experts, top-k), and the
    # token counts at which moe_loop rows time that loop's work besides its GEMMs (routing, gathers, activation, ...)
    moe_loop: tuple[tuple[int, int, int, int], ...] = ()
    moe_tokens: tuple[int, ...] = ()
    # square GEMM sizes timed in every tensor-core format the device runs (a GPU's full grid): each format's sustained rate
    peak_sizes: tuple[int, ...] = ()


def memory_budget(mode: str, machine_bytes: int | None, requested: int | None = None) -> int:
    budget = requested or DEFAULT_BUDGET_BYTES[mode]
    if machine_bytes:
        budget = min(budget, int(MAX_MEMORY_SHARE * machine_bytes))
    return budget


def e2e_dims(prefill, decode) -> tuple[int, int, int]:
    """(largest batch, cache length, longest prompt) of an e2e grid."""
    bmax = max([b for b, _ in prefill] + [b for b, _ in decode] + [1])
    lmax = max([t for _, t in prefill] + [c + 1 for _, c in decode] + [1])
    return bmax, lmax, max([t for _, t in prefill] + [1])


def layer_gemms(model: Model) -> list[tuple[str, int, int]]:
    """The projections the harness's transformer runs for ``model``: (label, n, k) for x (m x k) @ W (k x n)."""
    h = model.hidden_size
    a = model.attention
    if a.mla:
        ml = a.mla
        qk = ml.qk_nope_head_dim + ml.qk_rope_head_dim
        attn = [("q_kv_a", model.num_heads * qk + ml.kv_lora_rank + ml.qk_rope_head_dim, h),
                ("kv_b", model.num_heads * (ml.qk_nope_head_dim + ml.v_head_dim), ml.kv_lora_rank),
                ("o", h, model.num_heads * ml.v_head_dim)]
    else:
        attn = [("qkv", (model.num_heads + 2 * model.num_kv_heads) * model.head_dim, h),
                ("o", h, model.num_heads * model.head_dim)]
    mats = 2 if model.ffn_gated else 1
    if model.moe:
        mo = model.moe
        e = mo.expert_intermediate_size
        ffn = [("router", mo.num_experts, h), ("expert_gate_up", mats * e, h), ("expert_down", h, e)]
        if mo.num_shared_experts:
            s = mo.num_shared_experts * (mo.shared_expert_intermediate_size or e)
            ffn += [("shared_gate_up", mats * s, h), ("shared_down", h, s)]
    else:
        ffn = [("gate_up", mats * model.intermediate_size, h), ("down", h, model.intermediate_size)]
    return attn + ffn


def mla_decode_shapes(models) -> tuple[tuple[int, int, int], ...]:
    """(heads, kv_lora_rank + rope dims, kv_lora_rank) of each MLA model's absorbed decode: all heads attend over
    one cached latent per token, its first kv_lora_rank dims serving as the values."""
    out = []
    for mod in models:
        ml = mod.attention.mla
        if ml is not None:
            shape = (mod.num_heads, ml.kv_lora_rank + ml.qk_rope_head_dim, ml.kv_lora_rank)
            if shape not in out:
                out.append(shape)
    return tuple(out)


def moe_loop_shapes(models) -> tuple[tuple[int, int, int, int], ...]:
    """(hidden, expert width, experts, top-k) of each mixture-of-experts model (harness.transformer.expert_loop)."""
    out = []
    for mod in models:
        mo = mod.moe
        if mo is not None:
            shape = (mod.hidden_size, mo.expert_intermediate_size, mo.num_experts, mo.top_k)
            if shape not in out:
                out.append(shape)
    return tuple(out)


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
    """One entry per (n, k): the first one's m_max, every label that shares the shape (joined with ' + ', so an
    expert GEMM that shares its shape with another projection still gets the expert loop's m)."""
    out: dict[tuple[int, int], list] = {}
    for label, n, k, m_max in shapes:
        if (n, k) not in out:
            out[(n, k)] = [label, n, k, m_max]
        elif label not in out[(n, k)][0].split(" + "):
            out[(n, k)][0] += f" + {label}"
    return tuple(tuple(v) for v in out.values())


def _fit_shapes(shapes, es: int, limit_bytes: int):
    """Shapes whose buffers (x, W, out at the largest m) fit ``limit_bytes``; and what was dropped."""
    keep, dropped = [], []
    for label, n, k, m_max in shapes:
        need = (m_max * k + k * n + m_max * n) * es
        (keep if need <= limit_bytes else dropped).append((label, n, k, m_max))
    notes = [f"gemm {lb} {n}x{k}: {(m * k + k * n + m * n) * es / GiB:.2f} GiB of buffers exceeds the "
             f"{limit_bytes / GiB:.2f} GiB the memory budget leaves for one GEMM" for lb, n, k, m in dropped]
    return tuple(keep), tuple(notes)


def _ref_shapes(models, m_max: int):
    out = []
    for mod in models:
        out += [(f"{mod.id} {lb}", n, k, m_max) for lb, n, k in layer_gemms(mod)]
        out.append((f"{mod.id} lm_head", mod.vocab_size, mod.hidden_size, 8))
    return out


def make_grid(mode: str, model: Model, llc_bytes: int | None, device: str = "cpu", *, budget_bytes: int | None = None,
              elem_size: int = 4) -> Grid:
    """The grid of ``mode`` for ``model``; every buffer fits ``budget_bytes`` (default: the mode's)."""
    if mode not in DEFAULT_BUDGET_BYTES:
        raise ValueError(mode)
    budget = budget_bytes or DEFAULT_BUDGET_BYTES[mode]
    room = max(budget - BASE_BYTES, budget // 4)
    model_shapes = model_gemm_shapes(model)
    # bandwidth arrays: 4x the last-level cache (so they stream from memory), two of them in the budget
    # (on a GPU at least 1 GiB: the host's cache size says nothing about the device's L2)
    bandwidth = min(max(4 * (llc_bytes or 32 << 20), 64 << 20, GiB if device == "cuda" else 0), room // 4)
    if mode == "tiny":
        prefill, decode = ((1, 4), (2, 8)), ((1, 8), (2, 16))
        refs = tuple(make(128) for make in refmodels.KINDS.values())
        shapes = _dedupe([(lb, n, k, 16) for lb, n, k in model_shapes] + _ref_shapes(refs, 16))
        return Grid(
            mode=mode, timing=Timing(warmup=1, min_repeats=2, min_time_s=0.0),
            gemm_m=(1, 4, 16), gemm_shapes=shapes,
            attn_prefill=((1, 8), (2, 16)), attn_decode=((1, 8), (2, 16)),
            bandwidth_bytes=1 << 20, elementwise_m=(1, 8),
            e2e_prefill=prefill, e2e_decode=decode, e2e_budget_s=5.0,
            allreduce_bytes=(1 << 10, 1 << 16), memory_budget_bytes=budget, e2e_models=refs, expert_m=(2,),
            mla_decode=mla_decode_shapes((model, *refs)), moe_loop=moe_loop_shapes((model, *refs)), moe_tokens=(1, 4))
    if mode == "quick":
        prefill = ((1, 16), (1, 64), (1, 256))
        decode = ((1, 128), (8, 128), (1, 1024), (8, 1024))
        refs = tuple(refmodels.reference_models(int(E2E_SHARE * room), elem_size, *e2e_dims(prefill, decode)))
        shapes, dropped = _fit_shapes(_dedupe([(lb, n, k, 256) for lb, n, k in model_shapes]
                                              + [("lm_head", model.vocab_size, model.hidden_size, 8)]
                                              + _ref_shapes(refs, 256)), elem_size, room * 3 // 4)
        return Grid(
            mode=mode, timing=Timing(warmup=1, min_repeats=3, min_time_s=0.03, max_repeats=50, warmup_s=0.005),
            gemm_m=(1, 8, 64, 256), gemm_shapes=shapes,
            attn_prefill=((1, 128), (1, 512)), attn_decode=((1, 32), (1, 256), (8, 256), (1, 2048), (8, 2048)),
            bandwidth_bytes=bandwidth, elementwise_m=(1, 256),
            e2e_prefill=prefill, e2e_decode=decode, e2e_budget_s=30.0, e2e_max_layers=2,
            allreduce_bytes=(1 << 20, 64 << 20), memory_budget_bytes=budget, e2e_models=refs, e2e_main=False,
            dropped=dropped, e2e_timing=Timing(warmup=1, min_repeats=5, min_time_s=0.15, max_repeats=50),
            expert_m=EXPERT_M, mla_decode=mla_decode_shapes((model, *refs)), moe_loop=moe_loop_shapes((model, *refs)),
            moe_tokens=(1, 4, 16, 64, 256))
    h = model.hidden_size
    # a GPU's prefill chunks run to 8,192 tokens (engines' default token budgets); a CPU's stop at 2,048
    big = 8192 if device == "cuda" else 2048
    off_model = [("square-1024", 1024, 1024, big), ("square-2048", 2048, 2048, big), ("square-8192", 8192, 8192, big),
                 ("lm_head", model.vocab_size, h, 256)]
    prefill = tuple((b, t) for b in (1, 4) for t in _pow2(16, 1024))
    decode = tuple((b, c) for b in _pow2(1, 32) for c in _pow2(128, 2048))
    refs = tuple(refmodels.reference_models(int(E2E_SHARE * room), elem_size, *e2e_dims(prefill, decode)))
    shapes, dropped = _fit_shapes(_dedupe([(lb, n, k, big) for lb, n, k in model_shapes] + off_model
                                          + _ref_shapes(refs, 1024)), elem_size, room * 3 // 4)
    # a peak size fits when its activation, output and the weight copies that keep it cold (>= the bandwidth arrays) do
    peaks = tuple(s for s in (4096, 8192, 16384) if device == "cuda"
                  and 2 * s * s * 4 + max(s * s * 2, bandwidth) * 2 <= room * 3 // 4)
    kv_bytes = lambda b: 2 * b * 4096 * model.num_kv_heads * model.head_dim * elem_size  # noqa: E731 (one cache, longest context)
    bmax = max([b for b in _pow2(1, 32) if kv_bytes(b) <= room // 2] + [1])
    attn_decode = tuple((b, c) for b in _pow2(1, bmax) for c in _pow2(32, 4096))
    return Grid(
        mode=mode, timing=Timing(warmup=1, min_repeats=5, min_time_s=0.2, warmup_s=0.02),
        gemm_m=_pow2(1, big), gemm_shapes=shapes, peak_sizes=peaks,
        attn_prefill=tuple((1, s) for s in _pow2(64, 2048)) + tuple((4, s) for s in _pow2(64, 512)),
        attn_decode=attn_decode,
        bandwidth_bytes=bandwidth, elementwise_m=(1, 16, 128, 1024, 4096),
        e2e_prefill=prefill, e2e_decode=decode, e2e_budget_s=400.0,
        allreduce_bytes=tuple(1 << p for p in range(16, 31, 2)), memory_budget_bytes=budget, e2e_models=refs,
        dropped=dropped, expert_m=EXPERT_M, mla_decode=mla_decode_shapes((model, *refs)), moe_loop=moe_loop_shapes((model, *refs)),
        moe_tokens=_pow2(1, 1024))
