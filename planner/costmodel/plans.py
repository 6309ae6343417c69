"""Arrays of plans: the cost model evaluates many plans in one numpy pass.

A ``PlanArrays`` holds, per plan, the parallel sizes and the numbers a format
resolves to on a device (bytes per weight, compute peak). Everything is a 1-D
numpy array of the same length (or broadcastable to it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from planner.costmodel.params import Kernels, kernels_for
from planner.errors import PlannerError
from planner.specs.hardware import Hardware
from planner.specs.model import Model
from planner.specs.quant import GGUF_MIXES, W4A16_TILED, get_format, kv_bytes_per_element, resolve

ACT_BYTES = 2.0  # activations between kernels are 16 bit in every engine we model, unless compute is fp32
# NVIDIA architectures before Hopper (compute capability < 9), where vLLM runs MXFP4 MoE weights in its Marlin kernel
MARLIN_MXFP4_ARCHITECTURES = frozenset({"volta", "turing", "ampere", "ada"})
# NVIDIA generations without tensor cores, whose int8 dot products (llama.cpp's MMQ) are DP4A on the CUDA cores (sm_61 on)
DP4A_ONLY_ARCHITECTURES = frozenset({"pascal"})


# bytes of one element of each GEMM compute dtype
DTYPE_BYTES = {"fp64": 8.0, "fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp6": 0.75,
               "fp4": 0.5, "int4": 0.5}


# weight formats llama.cpp's CUDA backend multiplies with MMQ (ggml-cuda mmq.cuh: the legacy, k-quant, i-quant and
# MXFP4 types; the i-quants joined MMQ in mid-2024 builds, so a 2023-24 build prices them as newer ones run them)
MMQ_FORMATS = frozenset({"q4_0", "q8_0", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k", "mxfp4"}) | frozenset(GGUF_MIXES)


def act_bytes_for(compute_dtype: str) -> float:
    return 4.0 if compute_dtype == "fp32" else ACT_BYTES


@dataclass
class PlanArrays:
    tp: np.ndarray
    pp: np.ndarray
    ep: np.ndarray
    adp: np.ndarray  # attention data parallel (MLA models): attention replicated, KV batch-sharded
    weight_bytes: np.ndarray  # bytes per weight element (scales included)
    head_bytes: np.ndarray  # bytes per embedding / lm_head element
    kv_bytes: np.ndarray  # bytes per cached KV element
    gemm_flops: np.ndarray  # achievable GEMM FLOP/s (peak x fraction) in the compute dtype
    gemm_peak_flops: np.ndarray
    attn_flops: np.ndarray  # achievable attention FLOP/s (16-bit tensor cores x attention fraction)
    act_bytes: np.ndarray  # bytes per activation element between kernels (2; 4 when GEMMs run in fp32)
    weight_dequant: np.ndarray  # 1 where weights are stored narrower than the GEMM computes (weight-only formats)
    # the GEMM compute dtype when every plan shares one (measured profiles are looked up by it), else None
    compute_dtype: str | None = None
    # context parallelism (ring attention over the sequence; a distributed KV pool in decode): devices per replica
    # that split one sequence's tokens and KV; weights are replicated across them
    cp: np.ndarray | float = 1.0
    # sparse attention (costmodel/sparse.py), applied to full-attention layers: the share of heads that stay dense
    # (retrieval heads), the tokens a streaming head keeps (sinks + recent window), the share of its causal pairs a
    # dense head computes in prefill (block-sparse patterns), the keys a dense head reads per decode step (page
    # selection), the selector's reads per context token as a share of that token's KV, and the queries a prefill
    # pattern probe runs against every key
    sa_dense: np.ndarray | float = 1.0
    sa_window: np.ndarray | float = np.inf
    sa_prefill_keep: np.ndarray | float = 1.0
    sa_decode_budget: np.ndarray | float = np.inf
    sa_select: np.ndarray | float = 0.0
    sa_probe_q: np.ndarray | float = 0.0
    # kernels that emulate a width the tensor cores lack (FlexQ's bit-serial W6A6, quant.py kernel_efficiency e) fill
    # the tiles a small batch leaves idle with their extra passes: rate(m) = R e m / (m + e half_m), the native
    # kernel's rate at small m and e of it at large m; this is e (1 for every native kernel)
    gemm_half_m_scale: np.ndarray | float = 1.0
    # where the engine runs the plan's 4-bit weight-only GEMMs in a mixed-input kernel that loses only its tile's idle
    # rows at small M (Engine.mixed_input_tile_m: Marlin), that tile's token rows; 0: the half-rate law
    gemm_tile_m: np.ndarray | float = 0.0
    # MLA attention's rate over attn_flops where the engine runs it on the FP8 tensor cores (an FP8 KV cache; Engine
    # mla_fp8_decode, mla_fp8_prefill_archs): the device's FP8 GEMM rate over its 16-bit one; 1 elsewhere
    attn_fp8_gain_decode: np.ndarray | float = 1.0
    attn_fp8_gain_prefill: np.ndarray | float = 1.0
    # the lm_head's GEMM FLOP/s: engines keep it at 16 bit (head_bytes), so a weight-dequantizing fallback kernel's
    # loss (quant.py fallback_efficiency) does not apply to it; None: gemm_flops
    head_gemm_flops: np.ndarray | float | None = None
    # 1 where the GEMMs run the model's block-scaled checkpoint (DeepSeek-V3/R1's and Kimi K2's FP8: NativeWeights
    # scale_block): each GEMM's input is quantized per token and channel block by a kernel of its own
    act_quant: np.ndarray | float = 0.0
    # a MoE checkpoint released in two precisions (gpt-oss: MXFP4 experts, bf16 attention; Kimi-K2-Thinking: INT4
    # experts) and served as released holds its other linear layers (attention, dense MLP, shared experts) in their
    # own format: bytes per element of those layers in device memory; None: weight_bytes
    dense_weight_bytes: np.ndarray | None = None
    # ... and their GEMMs' FLOP/s in that format (dense MLP, shared experts; the attention's is attn_gemm_flops)
    dense_gemm_flops: np.ndarray | None = None
    # the attention (and linear-attention) projections where a plan's checkpoint keeps them in a format of their own:
    # the released dense format above, or 16 bit in a MoE model's NVFP4 checkpoint (quant.NVFP4_MOE_RECIPE). Bytes per
    # element (None: dense_bytes) and GEMM FLOP/s (None: gemm_flops); read through proj_bytes and proj_flops
    attn_weight_bytes: np.ndarray | None = None
    attn_gemm_flops: np.ndarray | None = None
    # the routed experts' elements as the engine holds them over the checkpoint's (padded MXFP4 MoE matrices: vLLM
    # pads the hidden dimension to a multiple of 256, gpt-oss's 2,880 to 3,072); 1: as released
    expert_pad: np.ndarray | float = 1.0
    # expert-parallel load balancing (costmodel/eplb.py): the redundant expert slots of a plan whose engine balances its
    # experts (0: placement only, no replicas); -1: no balancer, each rank holds its E / ep experts in a fixed order
    eplb_redundant: np.ndarray | float = -1.0

    @property
    def dense_bytes(self) -> np.ndarray:
        """Bytes per element of the non-expert linear layers as stored (the dense MLP and shared experts)."""
        return self.weight_bytes if self.dense_weight_bytes is None else self.dense_weight_bytes

    @property
    def proj_bytes(self) -> np.ndarray:
        """Bytes per element of the attention projections as stored."""
        return self.dense_bytes if self.attn_weight_bytes is None else self.attn_weight_bytes

    @property
    def proj_flops(self) -> np.ndarray:
        """GEMM FLOP/s of the attention projections."""
        return self.gemm_flops if self.attn_gemm_flops is None else self.attn_gemm_flops

    @property
    def dense_flops(self) -> np.ndarray:
        """GEMM FLOP/s of the dense MLP and shared experts."""
        return self.gemm_flops if self.dense_gemm_flops is None else self.dense_gemm_flops

    @property
    def n(self) -> int:
        """Plans in the arrays: the length of ``tp``, which make_plans and take always give one entry per plan (the
        cost model reads this ~200 times a search; broadcasting every field's shape each time cost ~15 ms)."""
        if np.ndim(self.tp) == 1:
            return len(self.tp)
        return int(np.broadcast_shapes(*(np.shape(getattr(self, f.name)) for f in fields(self) if f.name != "compute_dtype"))[0])

    @property
    def gpus_per_replica(self) -> np.ndarray:
        return (self.tp * self.pp * self.adp * np.asarray(self.cp)).astype(self.tp.dtype)

    @property
    def sparse(self) -> bool:
        """Whether any plan uses sparse attention (the cost model skips the sparse terms otherwise)."""
        return bool(np.any(np.asarray(self.sa_dense) < 1) or np.any(np.asarray(self.sa_prefill_keep) < 1)
                    or np.any(np.isfinite(self.sa_decode_budget)))

    def take(self, idx) -> "PlanArrays":
        vals = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "compute_dtype" or np.ndim(v) == 0:
                vals[f.name] = v
            else:
                vals[f.name] = np.broadcast_to(v, (self.n,))[idx]
        return PlanArrays(**vals)


def mmq_rate(engine, hw, weights: str) -> float:
    """FLOP/s at which llama.cpp's MMQ runs a GGUF-quantized weight's multi-token GEMMs on ``hw`` under ``engine``: the
    engine's multiple of the SMs' issue rate, the FP32 peak where that counts 128 lanes per SM (integer dot products
    with the weights unpacked on the vector units); 0 where MMQ does not run them (the weight format's compute dtype)."""
    ratio = engine.mmq_ratio(hw) if hasattr(engine, "mmq_ratio") else 0.0
    # MMQ's inner loop is int8 dot products: int8 MMA from Turing on (whether or not a spec records its int8 peak),
    # DP4A on the CUDA cores before; a Pascal part without DP4A (the P100's sm_60: int8 null in its spec) runs GGUF
    # GEMMs on dequantized weights in the format's compute dtype
    no_dot = getattr(hw, "architecture", None) in DP4A_ONLY_ARCHITECTURES and not hw.supports("int8")
    if ratio > 0 and weights in MMQ_FORMATS and hw.kind in ("gpu", "soc") and hw.supports("fp32") and not no_dot:
        return hw.peak("fp32") * hw.cuda_core_issue_gain() * ratio * mmq_clock_factor(engine, hw)
    return 0.0


# the GEMM dtypes whose measured (or power-rule) fraction of the datasheet peak stands for a part's sustained clock,
# in order of preference: the first both parts record is compared
SUSTAINED_GEMM_DTYPES = ("fp16", "bf16", "fp32")


def mmq_clock_factor(engine, hw) -> float:
    """The share of the calibration device's pace at which ``hw`` runs MMQ, beyond their SMs x boost clocks: a
    multiple of the FP32 peak counts the SMs at the datasheet's boost clock, and a power-capped part does not hold it
    under a prompt's GEMMs. Its sustained 16-bit GEMM fraction (the fraction of its datasheet peak a measured matmul
    reaches, or the power-per-TFLOPS rule's where none is measured) over the calibration device's (Engine.mmq_reference)
    is the ratio of the clocks the two hold, with the GEMM kernels' own efficiency taken as alike; capped at 1, since a
    part above the calibration device's fraction is not known to exceed its own boost clock. 1 where the profile names
    no calibration device or the two record no common GEMM fraction."""
    ref_id = engine.mmq_reference_of(hw) if hasattr(engine, "mmq_reference_of") else None
    if not ref_id or ref_id == hw.id:
        return 1.0
    from planner.specs.loader import get_hardware

    ref = get_hardware(ref_id)
    for dtype in SUSTAINED_GEMM_DTYPES:
        a, b = hw.achievable.matmul.get(dtype), ref.achievable.matmul.get(dtype)
        if a is not None and b is not None and b.fraction > 0:
            return min(1.0, a.fraction / b.fraction)
    return 1.0


def mixed_input_tile(engine, hw, fmt, compute_dtype: str) -> float:
    """Token rows of the tile a 4-bit weight-only GEMM runs in where ``engine`` runs it in a mixed-input kernel whose
    small-M loss is that tile's idle rows alone (Engine.mixed_input_tile_m, on its mixed_input_archs); 0 elsewhere."""
    tile = int(getattr(engine, "mixed_input_tile_m", 0) or 0)
    if tile <= 0 or fmt.id not in W4A16_TILED or compute_dtype not in ("fp16", "bf16"):
        return 0.0
    return float(tile) if getattr(hw, "architecture", None) in (getattr(engine, "mixed_input_archs", ()) or ()) else 0.0


def format_numbers(hw: Hardware, weights: str, kv: str, activations: str | None = None, kernels: Kernels | None = None,
                   engine=None, mla: bool = False) -> dict:
    """What a (weights, kv) precision pair means on ``hw``: bytes and FLOP/s. GEMM and attention rates are the
    silicon microbenchmark (hw_specs) times the engine's kernel efficiency on this architecture (``kernels``,
    default: the default engine's calibration, planner.costmodel.params), except where ``engine`` (a resolved
    Engine) runs the pair on kernels of its own: llama.cpp's MMQ for GGUF weights, FP8 MLA (``mla``: the model's
    attention is MLA) with an FP8 cache."""
    k = kernels if kernels is not None else kernels_for(None, hw)
    fmt = get_format(weights)
    res = resolve(fmt, hw, activations)
    peak = hw.peak(res.compute_dtype)
    # emulated widths and weight-dequantizing fallback kernels (quant.py) run below the device's GEMM; the lm_head
    # stays 16 bit, so the fallback kernel's loss is not its
    head_eff = hw.matmul_efficiency(res.compute_dtype) * k.gemm * res.kernel_efficiency
    eff = head_eff * res.mixed_input_efficiency
    attn_dtype = next((d for d in ("bf16", "fp16", "fp32") if hw.supports(d)), None)
    if attn_dtype is None:
        raise PlannerError(f"{hw.id} has no published 16/32-bit peak for attention")
    # a capture's measured attention fraction stands as is; else the 16-bit MAMF times the engine's attention efficiency
    attn_frac = hw.achievable.attention.fraction if hw.achievable.attention else hw.matmul_efficiency(attn_dtype) * k.attention
    gemm = peak * eff
    dequant = float(fmt.bytes < 0.9 * DTYPE_BYTES.get(res.compute_dtype, 2.0)) * res.dequant_scale
    mmq = mmq_rate(engine, hw, weights)
    if mmq > 0:  # the unpacking is inside MMQ's rate, so no separate dequantization
        gemm, dequant = mmq, 0.0
    # MLA's products on the FP8 tensor cores where the engine runs them so with an FP8 cache: the device's FP8 GEMM
    # rate over its 16-bit one (Engine.mla_fp8_decode, mla_fp8_prefill_archs)
    gain_d = gain_p = 1.0
    if mla and kv == "fp8" and hw.supports("fp8") and hw.supports("bf16"):
        gain = hw.peak("fp8") * hw.matmul_efficiency("fp8") / (hw.peak("bf16") * hw.matmul_efficiency("bf16"))
        gain_d = gain if getattr(engine, "mla_fp8_decode", False) else 1.0
        gain_p = gain if getattr(hw, "architecture", None) in (getattr(engine, "mla_fp8_prefill_archs", ()) or ()) else 1.0
    return {
        "weight_bytes": fmt.bytes,
        "head_bytes": fmt.head_bits / 8.0,
        "kv_bytes": kv_bytes_per_element(kv),
        "gemm_flops": gemm,
        "head_gemm_flops": peak * head_eff,
        "gemm_peak_flops": peak,
        "attn_flops": hw.peak(attn_dtype) * attn_frac,
        "attn_fp8_gain_decode": gain_d,
        "attn_fp8_gain_prefill": gain_p,
        "act_bytes": act_bytes_for(res.compute_dtype),
        "weight_dequant": dequant,
        "gemm_half_m_scale": res.kernel_efficiency,
        "gemm_tile_m": mixed_input_tile(engine, hw, fmt, res.compute_dtype),
        "note": res.note,
        "compute_dtype": res.compute_dtype,
        "native": res.native,
    }


def _factorize(values, n: int) -> tuple[np.ndarray, list]:
    """Integer codes (n of them) and the distinct values, in order of first appearance, of a list or one value."""
    if not isinstance(values, list):
        return np.zeros(n, dtype=np.int64), [values]
    names = list(dict.fromkeys(values))
    if len(names) == 1:
        return np.zeros(n, dtype=np.int64), names
    pos = {v: i for i, v in enumerate(names)}
    return np.fromiter(map(pos.__getitem__, values), np.int64, count=len(values)), names


def make_plans(
    model: Model,
    hw: Hardware,
    *,
    tp=1,
    pp=1,
    ep=1,
    adp=1,
    cp=1,
    weights: str | list[str] = "bf16",
    kv: str | list[str] = "bf16",
    activations: str | None = None,
    check: bool = True,
    engine=None,
    kernels: Kernels | None = None,
    eplb_redundant=None,
) -> PlanArrays:
    """Build plan arrays. ``weights``/``kv`` may be lists (one per plan). ``engine`` (or an explicit
    ``kernels``) selects the kernel efficiencies; default: the default engine's. ``eplb_redundant``: the redundant
    expert slots of plans that balance their experts (costmodel/eplb.py; None or -1: none)."""
    kernels = kernels if kernels is not None else kernels_for(engine, hw)
    eplb = -1.0 if eplb_redundant is None else eplb_redundant
    tp, pp, ep, adp = (np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in (tp, pp, ep, adp))
    n = int(np.broadcast_shapes(tp.shape, pp.shape, ep.shape, adp.shape, (len(weights),) if isinstance(weights, list) else (1,))[0])
    # (weights, kv) pairs factorized with integer codes (no per-plan tuples): format numbers once per distinct pair
    w_codes, w_names = _factorize(weights, n)
    k_codes, k_names = _factorize(kv, n)
    pair_codes, index = np.unique(w_codes * len(k_names) + k_codes, return_inverse=True)
    uniq = [(w_names[c // len(k_names)], k_names[c % len(k_names)]) for c in pair_codes.tolist()]
    if isinstance(engine, str):  # a profile's name (a harness capture's "harness" names none: no padding)
        from planner.specs.engine import get_engine

        try:
            engine = get_engine(engine)
        except PlannerError:
            pass
    mla = model.attention.mla is not None
    table = {key: format_numbers(hw, key[0], key[1], activations, kernels, engine, mla) for key in uniq}
    index = index.reshape(-1)
    cols = {c: np.array([table[k][c] for k in uniq], dtype=float)[index]
            for c in ("weight_bytes", "head_bytes", "kv_bytes", "gemm_flops", "gemm_peak_flops", "attn_flops", "act_bytes",
                      "weight_dequant", "gemm_half_m_scale", "gemm_tile_m", "head_gemm_flops")
            # the FP8 MLA gains only where some pair has one (1: the PlanArrays default, no array for the search to carry)
            + tuple(g for g in ("attn_fp8_gain_decode", "attn_fp8_gain_prefill") if any(table[k][g] != 1.0 for k in uniq))}
    dtypes = {table[k]["compute_dtype"] for k in uniq}
    nw = model.native_weights
    if nw is not None and nw.scale_block:  # the released block-scaled format, served as released
        cols["act_quant"] = np.array([float(w == nw.dense) for w in w_names])[w_codes]
    # layers a checkpoint stores in a format of their own (Model.stored_formats): their bytes and GEMM rate per plan
    # (neither depends on the KV format, so any pair's serves as format_numbers' kv argument)
    stored = {w: model.stored_formats(w) for w in w_names}
    own = {f: format_numbers(hw, f, uniq[0][1], None, kernels, engine, mla) for w, fs in stored.items() for f in fs if f != w}
    for i, (b_col, r_col) in enumerate((("attn_weight_bytes", "attn_gemm_flops"), ("dense_weight_bytes", "dense_gemm_flops"))):
        moved = np.array([stored[w][i] != w for w in w_names])[w_codes]
        if moved.any():
            num = [own.get(stored[w][i], {}) for w in w_names]
            cols[b_col] = np.where(moved, np.array([x.get("weight_bytes", 0.0) for x in num])[w_codes], cols["weight_bytes"])
            cols[r_col] = np.where(moved, np.array([x.get("gemm_flops", 0.0) for x in num])[w_codes], cols["gemm_flops"])
    align = int(getattr(engine, "mxfp4_moe_hidden_align", 0) or 0)
    if align and model.moe is not None and "mxfp4" in w_names:
        h = model.hidden_size
        pad = np.full(n, -(-h // align) * align / h)
        # on GPUs before Hopper the MXFP4 experts run in a Marlin kernel, which also rounds each rank's slice of the
        # intermediate dimension up (vLLM: to 128)
        inter_align = int(getattr(engine, "mxfp4_moe_marlin_intermediate_align", 0) or 0)
        if inter_align and getattr(hw, "architecture", None) in MARLIN_MXFP4_ARCHITECTURES:
            slice_ = model.moe.expert_intermediate_size / np.maximum(np.broadcast_to(tp * adp // np.maximum(ep, 1), (n,)), 1)
            pad = pad * np.ceil(slice_ / inter_align) * inter_align / slice_
        cols["expert_pad"] = np.where(np.array([w == "mxfp4" for w in w_names])[w_codes], pad, 1.0)
    plans = PlanArrays(
        tp=np.broadcast_to(tp, (n,)).copy(),
        pp=np.broadcast_to(pp, (n,)).copy(),
        ep=np.broadcast_to(ep, (n,)).copy(),
        adp=np.broadcast_to(adp, (n,)).copy(),
        compute_dtype=dtypes.pop() if len(dtypes) == 1 else None,
        cp=np.asarray(cp, dtype=float) if np.ndim(cp) else float(cp),
        eplb_redundant=np.asarray(eplb, dtype=float) if np.ndim(eplb) else float(eplb),
        **cols,
    )
    if check:
        check_divisibility(model, plans, raise_error=True)
    return plans


def check_divisibility(model: Model, p: PlanArrays, raise_error: bool = False) -> np.ndarray:
    """Which plans split the model evenly (heads by tp, layers by pp, experts by ep)."""
    bad_sizes = (p.tp < 1) | (p.pp < 1) | (p.ep < 1) | (p.adp < 1) | (np.asarray(p.cp) < 1)
    heads_ok = model.num_heads % np.maximum(p.tp, 1) == 0
    # KV heads: tp must divide them, or be a multiple of them (heads are then replicated)
    kvh = model.num_kv_heads
    kv_ok = (kvh % np.maximum(p.tp, 1) == 0) | (np.maximum(p.tp, 1) % kvh == 0)
    layers_ok = p.pp <= model.num_layers
    eplb = np.broadcast_to(np.asarray(p.eplb_redundant, float), p.tp.shape)
    if model.moe:
        moe_group = p.tp * p.adp
        # a balanced plan spreads its E + R slots over the ranks, not its E experts (EP36 over 256 + 32 slots)
        slots = model.moe.num_experts + np.maximum(eplb, 0.0).astype(np.int64)
        ep_ok = (slots % np.maximum(p.ep, 1) == 0) & (moe_group % np.maximum(p.ep, 1) == 0)
    else:
        ep_ok = p.ep == 1
    ok = ~bad_sizes & heads_ok & kv_ok & layers_ok & ep_ok
    if raise_error and not ok.all():
        i = int(np.argmin(ok))
        if bad_sizes[i]:
            raise PlannerError("parallel sizes must be positive integers")
        if not heads_ok[i]:
            raise PlannerError(f"tp={p.tp[i]} does not divide the {model.num_heads} attention heads of {model.id}")
        if not kv_ok[i]:
            raise PlannerError(f"tp={p.tp[i]} neither divides nor is a multiple of the {kvh} KV heads of {model.id}")
        if not layers_ok[i]:
            raise PlannerError(f"pp={p.pp[i]} exceeds the {model.num_layers} layers of {model.id}")
        if model.moe is None:
            raise PlannerError(f"ep={p.ep[i]} needs a mixture-of-experts model; {model.id} is dense")
        what = (f"the {slots[i]} expert slots ({model.moe.num_experts} experts + {int(eplb[i])} redundant)"
                if eplb[i] >= 0 else f"the {model.moe.num_experts} experts")
        raise PlannerError(f"ep={p.ep[i]} must divide both {what} of {model.id} and tp x attention-dp = {moe_group[i]}")
    return ok
