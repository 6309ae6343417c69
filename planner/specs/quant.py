"""Numeric formats for weights, activations and the KV cache, as objects.

``bits`` counts storage per element *including* scale overhead, e.g. int4 with
one fp16 scale and one fp16 zero point per group of 128 is 4 + 32/128 = 4.25
bits; llama.cpp q4_0 stores 32 weights in 18 bytes (4.5 bits).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import PlannerError, unknown


@dataclass(frozen=True)
class Format:
    id: str
    bits: float  # storage bits per element, scales included
    compute: str  # GEMM compute dtype when run natively (a Hardware.peak_flops key)
    weight_only: bool  # activations stay in 16 bit; weights dequantized in the kernel
    description: str
    source: str
    # when the hardware lacks `compute`: the dtype the kernel falls back to, or None (cannot run)
    fallback_compute: str | None = None
    fallback_note: str = ""
    # bits of the embedding / lm_head under this format (engines keep them at 16 bit unless stated)
    head_bits: float = 16.0

    @property
    def bytes(self) -> float:
        return self.bits / 8.0


_FORMATS = [
    Format("fp32", 32, "fp32", False, "IEEE single", "IEEE 754"),
    Format("bf16", 16, "bf16", False, "bfloat16", "IEEE/Google bfloat16", fallback_compute="fp32",
           fallback_note="no bf16 units: computed in fp32 (CPU without AVX512-BF16/AMX)"),
    Format("fp16", 16, "fp16", False, "IEEE half", "IEEE 754", fallback_compute="fp32",
           fallback_note="no fp16 units: computed in fp32"),
    Format("fp8", 8, "fp8", False, "FP8 E4M3 weights and activations (W8A8), per-tensor scales",
           "NVIDIA Transformer Engine / TensorRT-LLM FP8 recipe", fallback_compute="fp16",
           fallback_note="no fp8 tensor cores: weight-only fp8, dequantized to fp16 in the GEMM (as vLLM's Marlin FP8 kernel does)"),
    Format("int8", 8, "int8", False, "INT8 W8A8 (SmoothQuant), per-channel scales",
           "SmoothQuant (arXiv 2211.10438)", fallback_compute="fp16",
           fallback_note="no int8 GEMM: weight-only int8, dequantized to fp16"),
    Format("int8-wo", 8 + 16 / 128, "fp16", True, "INT8 weight-only (W8A16), group 128 fp16 scales",
           "TensorRT-LLM weight-only quantization"),
    Format("int4", 4 + 32 / 128, "fp16", True, "INT4 weight-only (W4A16, AWQ/GPTQ), group 128 with fp16 scale and zero",
           "AWQ (arXiv 2306.00978) / GPTQ group-128 layout"),
    Format("w4a8", 4 + 32 / 128, "fp8", False, "INT4 weights, FP8/INT8 activations (W4A8, QServe-style)",
           "QServe (arXiv 2405.04532)", fallback_compute="fp16",
           fallback_note="no fp8 tensor cores: runs as W4A16"),
    Format("fp4", 4 + 8 / 16, "fp4", False, "NVFP4: E2M1 with an FP8 scale per 16 elements (W4A4)",
           "NVIDIA Blackwell NVFP4 format", fallback_compute="fp16",
           fallback_note="no fp4 tensor cores: weight-only fp4, dequantized to 16 bit"),
    Format("mxfp4", 4 + 8 / 32, "fp4", False, "OCP MXFP4: E2M1 with an E8M0 scale per 32 elements",
           "OCP Microscaling Formats (MX) v1.0", fallback_compute="fp16",
           fallback_note="no fp4 tensor cores: weight-only mxfp4, dequantized to 16 bit (as gpt-oss runs on Hopper)"),
    Format("q4_0", 18 * 8 / 32, "fp16", True, "llama.cpp q4_0: 32 weights in 18 bytes (fp16 scale + 16 bytes)",
           "ggml block_q4_0 layout", head_bits=6.5625),
    Format("q8_0", 34 * 8 / 32, "fp16", True, "llama.cpp q8_0: 32 weights in 34 bytes",
           "ggml block_q8_0 layout", head_bits=34 * 8 / 32),
]
FORMATS: dict[str, Format] = {f.id: f for f in _FORMATS}

# KV-cache formats: storage bits per element (scales included)
KV_FORMATS: dict[str, float] = {
    "fp32": 32.0,
    "bf16": 16.0,
    "fp16": 16.0,
    "fp8": 8.0,  # per-tensor scale: negligible
    "int8": 8.0 + 32 / 128,  # per-head/per-token fp16 scale+zero over a 128-wide head (LMDeploy)
    "int4": 4.0 + 32 / 128,
    "q8_0": 34 * 8 / 32,
    "q4_0": 18 * 8 / 32,
}

# Which formats each part of the planner offers. The one list of ids is FORMATS / KV_FORMATS above;
# these say which of them the plan search tries and which the deployment emitters can write.
# fp32 and the llama.cpp block formats are estimated when asked for but not searched or deployed;
# int8-wo is deployable but not searched (int8 W8A8 dominates it wherever both run).
SEARCH_WEIGHT_FORMATS: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int4", "w4a8", "fp4", "mxfp4")
SEARCH_KV_FORMATS: tuple[str, ...] = ("bf16", "fp8", "int8", "int4")
DEPLOY_WEIGHT_FORMATS: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int8-wo", "int4", "w4a8", "fp4", "mxfp4")
DEPLOY_KV_FORMATS: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int4")


def default_kv(weights: str) -> str:
    """The KV-cache format an engine uses when none is asked for.

    Engines store the KV cache in the model's activation dtype unless told otherwise (vLLM and
    SGLang ``--kv-cache-dtype auto``; TensorRT-LLM ``kv_cache_config.dtype auto``): fp16 weights
    give an fp16 cache, fp32 an fp32 one, everything else 16-bit bf16, except fp8 checkpoints,
    whose FP8 KV cache the planner assumes by default (the engines' FP8 recipes quantize both).
    """
    if weights in ("fp8", "fp16", "fp32"):
        return weights
    return "bf16"


DEFAULT_KV_RULE = "default: the weights' dtype for bf16, fp16, fp32 and fp8 weights, else bf16"
WEIGHT_FORMATS_HELP = "weight precision: " + " ".join(FORMATS)
KV_FORMATS_HELP = "KV-cache precision: " + " ".join(KV_FORMATS) + f" ({DEFAULT_KV_RULE})"


# precision names other tables and engines use for the formats above
PRECISION_ALIASES: dict[str, str] = {
    "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float32": "fp32", "fp8_e4m3": "fp8", "fp8-e4m3": "fp8",
    "e4m3": "fp8", "w8a8": "int8", "int8_sq": "int8", "smoothquant": "int8", "w8a16": "int8-wo", "int8_wo": "int8-wo",
    "w4a16": "int4", "awq": "int4", "gptq": "int4", "int4_awq": "int4", "int4-awq": "int4", "int4_gptq": "int4",
    "nvfp4": "fp4", "w4a8_awq": "w4a8",
}


def canonical(name: str | None) -> str | None:
    """The planner's id for a precision name (``float16`` -> ``fp16``); unknown names pass through."""
    if not name:
        return name
    v = name.strip().lower()
    return PRECISION_ALIASES.get(v, v)


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise unknown("precision", name, FORMATS)
    return FORMATS[name]


def kv_bytes_per_element(name: str) -> float:
    if name not in KV_FORMATS:
        raise unknown("KV-cache precision", name, KV_FORMATS)
    return KV_FORMATS[name] / 8.0


@dataclass(frozen=True)
class Resolved:
    """How a weight format actually runs on a device."""

    format: Format
    compute_dtype: str
    native: bool
    note: str


def resolve(fmt: Format, hw, activations: str | None = None) -> Resolved:
    """Pick the GEMM compute dtype of ``fmt`` on ``hw`` and say whether it is native.

    An explicit ``activations`` dtype the device cannot run is an error; without one
    a documented fallback is used and named in ``note``.
    """
    if activations is not None:
        if activations not in FORMATS:
            raise unknown("activation precision", activations, FORMATS)
        compute = FORMATS[activations].compute
        if not hw.supports(compute):
            raise PlannerError(f"{hw.id} cannot run {activations} activations (no published {compute} peak)")
        return Resolved(fmt, compute, True, "")
    compute = fmt.compute
    if fmt.weight_only and not hw.supports(compute):
        # weight-only kernels compute in the device's 16-bit type
        for alt in ("fp16", "bf16", "fp32"):
            if hw.supports(alt):
                return Resolved(fmt, alt, True, f"computed in {alt}")
    if hw.supports(compute):
        return Resolved(fmt, compute, True, "")
    alt = fmt.fallback_compute
    while alt is not None and not hw.supports(alt):
        alt = FORMATS[alt].fallback_compute if alt in FORMATS else None
    if alt is None:
        raise PlannerError(f"{hw.id} cannot run {fmt.id}: it has no {compute} peak and no fallback applies")
    return Resolved(fmt, alt, False, fmt.fallback_note or f"computed in {alt}")
