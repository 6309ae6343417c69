"""Numeric formats for weights, activations and the KV cache, as objects.

``bits`` counts storage per element *including* scale overhead, e.g. int4 with
one fp16 scale and one 4-bit zero point per group of 128 (AWQ, GPTQ) is
4 + 20/128 = 4.16 bits; llama.cpp q4_0 stores 32 weights in 18 bytes (4.5 bits).
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
    # other native compute dtypes, tried in order when the device lacks `compute` (W4A8 runs INT8
    # activations on GPUs with INT8 but no FP8 tensor cores, as QServe does on A100)
    alt_compute: tuple[str, ...] = ()
    # the kernel's GEMM rate relative to the device's GEMM in the dtype it computes in (1: as fast as the
    # 16/8-bit GEMM; below 1 when the kernel emulates a width the tensor cores lack), and where that comes from
    kernel_efficiency: float = 1.0
    kernel_source: str = ""
    # vector-unit dequantization work relative to the step model's per-element default, when the GEMM runs in
    # an 8-bit dtype (QServe's register-level parallelism unpacks four int4 lanes per 32-bit op)
    dequant_scale_8bit: float = 1.0
    dequant_source: str = ""
    # where the device has ``compute`` tensor cores, the dtype the MMA actually runs at when the format's kernels
    # pair its weights with wider activations ("" = ``compute`` itself), and where that comes from
    paired_compute: str = ""
    paired_source: str = ""
    # where the device lacks ``compute`` and the kernel dequantizes the weights to 16 bit in its main loop (a mixed-
    # input GEMM), its large-M rate relative to the device's dense 16-bit GEMM, and where that comes from
    fallback_efficiency: float = 1.0
    fallback_source: str = ""
    # a MoE model's checkpoint in this format keeps its attention (and linear-attention) projections in 16 bit, as the
    # quantizer's usual recipe for MoE models does, and where that comes from ("": every linear layer in the format)
    moe_mixers_16bit_source: str = ""
    moe_mixers_16bit_by: str = ""  # whose exports those are, in a phrase (estimate's note)

    @property
    def bytes(self) -> float:
        return self.bits / 8.0


# E2M1 weights (NVFP4, MXFP4) on a GPU without FP4 tensor cores run as a mixed-input GEMM: the kernel decodes them to
# 16 bit in its main loop, beside the MMAs. E2M1 has no hardware conversion before Blackwell.
E2M1_MIXED_INPUT = 0.61
E2M1_MIXED_INPUT_SOURCE = (
    "the bf16 x MXFP4 GEMM on H100 (triton_kernels matmul_ogs: the MoE kernel TensorRT-LLM's TRITON backend and vLLM "
    "run gpt-oss with on Hopper; TensorRT-LLM 1.2 GPT-OSS deployment guide, MoE backend matrix: H200, BF16 activations, "
    "MXFP4 weights, TRITON) reaches 49 % of the bf16 tensor peak after value and scale swizzling (triton-lang/"
    "triton PR 6833, May 2025: 28 % -> 37 %, 49 % with PR 6812); the dense bf16 GEMM reaches 80.3 % (H100 MAMF, "
    "hw_specs/h100-sxm.yaml): 0.49 / 0.803 = 0.61. Measured on H100 only: every device without FP4 tensor cores is "
    "given it, and NVFP4 (an FP8 scale per 16 elements) decodes the same E2M1 values")

# NVIDIA's NVFP4 checkpoints of MoE models (TensorRT Model Optimizer exports, which TensorRT-LLM, vLLM and SGLang load)
# quantize the experts (and the shared experts and dense MLP layers) and leave every attention projection in 16 bit:
# their hf_quant_config.json lists each layer's self_attn* (and the MoE router) in exclude_modules. Dense models'
# exports (Llama-3.3-70B-Instruct-FP4) quantize attention too. Later exports (modelopt 0.41 on: MiniMax-M2.5,
# Qwen3-Coder-Next) list only q/k/v_proj, quantizing o_proj (as DeepSeek-R1's -v2 cards say of their "wo"); the planner
# keeps the whole attention in 16 bit, the recipe of the exports the bundled rows ran.
NVFP4_MOE_RECIPE = (
    "hf_quant_config.json exclude_modules of ModelOpt NVFP4 MoE exports: nvidia/DeepSeek-R1-FP4 and "
    "DeepSeek-R1-0528-NVFP4 (every model.layers.N.self_attn* and mlp.gate), nvidia/GLM-4.7-NVFP4 (every self_attn*), "
    "mconcat/MiniMax-M2.5-NVFP4 and arcee-ai/Trinity-Large-Preview-NVFP4 (self_attn*, routers); sglang PR 18189 on "
    "Qwen3-235B-A22B-Instruct-2507-NVFP4 (attention in BF16); a hybrid export (FINAL-Bench/Darwin-9B-MFP4) excludes its "
    "linear_attn* layers the same way")

MXFP4_MOE_RECIPE = (
    "AMD Quark MXFP4 exports of MoE models (w_mxfp4_a_mxfp4, group 32): amd/DeepSeek-R1-0528-MXFP4-Preview (Quark 0.9) "
    "and amd/DeepSeek-R1-0528-MXFP4 (Quark 0.10) quantize with exclude_layers \"*self_attn* *mlp.gate.* *lm_head\" "
    "(their model cards): the attention projections, the router and lm_head stay BF16; the routed and shared experts "
    "and the dense MLP are MXFP4, as SGLang 0.5.9 runs them on an MI355X (the kernel trace in SemiAnalysisAI/InferenceX "
    "issue 1005: 24 gemm_afp4wfp4 calls for the 3 dense layers' MLPs over 4 steps, hipBLASLt for the attention)")

Q4_K_BITS, Q5_K_BITS, Q6_K_BITS = 144 * 8 / 256, 176 * 8 / 256, 210 * 8 / 256  # ggml k-quant super-blocks of 256
Q_M_SHARE = 0.15  # weights a _M k-quant mix stores at Q6_K (attn_v and ffn_down in half the layers of a Llama)

# llama.cpp's other file types (its quantize presets: the k-quant _S/_M/_L mixes and the i-quants), as published GGUF
# files measure them: Llama-3-70B quantized to each (llama.cpp PR 6745, dranger003's table of 2024-05-03: file GiB per
# type, an importance matrix below Q6_K). Their transformer body's bits per weight are the file's bits less
# output.weight at Q6_K (128,256 x 8,192 weights, as llama_tensor_get_type keeps it), over the other 69.50 B weights.
# Read the same way the table puts Q4_K_M at 4.795 and Q5_K_M at 5.650 bits a weight, within 0.3 % of the layout mixes
# above (4.809, 5.659), and Q6_K at 6.564 (its layout: 6.5625). The pure blocks the i-quants are built on
# (ggml-common.h): IQ4_XS 136 bytes per 256 weights (4.25 bits), IQ4_NL 18 per 32 (4.5), IQ3_S 110 / 256 (3.4375),
# IQ3_XXS 98 / 256 (3.0625), IQ2_S 82 / 256, IQ2_XS 74 / 256, IQ2_XXS 66 / 256, IQ1_M 56 / 256, IQ1_S 50 / 256; Q3_K
# 110 / 256, Q2_K 84 / 256; a preset mixes them with wider types for attn_v, ffn_down and the first layers.
LLAMA3_70B_WEIGHTS = 70_553_706_496  # planner's model_specs/llama-3-70b.yaml count (config.json of Meta-Llama-3-70B)
LLAMA3_70B_OUTPUT = 128_256 * 8_192  # output.weight (vocab x hidden), untied
# llama.cpp PR 6745 (Support Llama 3 conversion), dranger003's comment: Llama-3-70B file Size (GiB) per type, and what
# the preset stores
GGUF_PRESETS = {
    "q5_k_s": (45.32, "mostly Q5_K (5.5 bits)"), "q4_k_s": (37.58, "mostly Q4_K (4.5 bits), some Q5_K"),
    "iq4_nl": (37.30, "IQ4_NL non-linear 4-bit blocks of 32 (4.5 bits)"),
    "iq4_xs": (35.30, "IQ4_XS non-linear 4-bit super-blocks (4.25 bits)"),
    "q3_k_l": (34.59, "Q3_K with Q5_K for attn_v and ffn_down"),
    "q3_k_m": (31.91, "Q3_K with Q4_K/Q5_K for attn_v and ffn_down"),
    "iq3_m": (29.74, "IQ3_S with wider attn_v and ffn_down"), "iq3_s": (28.79, "IQ3_S (3.4375 bits)"),
    "q3_k_s": (28.79, "Q3_K (3.4375 bits)"), "iq3_xs": (27.29, "IQ3_XXS and IQ3_S"),
    "iq3_xxs": (25.58, "IQ3_XXS (3.0625 bits)"), "q2_k": (24.56, "Q2_K and Q3_K (2.625 / 3.4375 bits)"),
    "q2_k_s": (22.79, "Q2_K (2.625 bits)"), "iq2_m": (22.46, "IQ2_S with wider attn_v and ffn_down"),
    "iq2_s": (20.71, "IQ2_XS and IQ2_S"), "iq2_xs": (19.69, "IQ2_XS (2.3125 bits)"),
    "iq2_xxs": (17.79, "IQ2_XXS (2.0625 bits)"), "iq1_m": (15.60, "IQ1_M (1.75 bits)"), "iq1_s": (14.29, "IQ1_S (1.5625 bits)"),
}
GGUF_MIX_SOURCE = ("bits per weight of the transformer body from the Llama-3-70B GGUF of this type (llama.cpp PR 6745, "
                   "dranger003's size table), output.weight at Q6_K; ggml-common.h block layouts")


def gguf_body_bits(gib: float) -> float:
    """Bits per weight of a Llama-3-70B GGUF's transformer body: the file's bits less output.weight at Q6_K, over the
    rest of the weights."""
    return (gib * 2.0**30 * 8.0 - LLAMA3_70B_OUTPUT * Q6_K_BITS) / (LLAMA3_70B_WEIGHTS - LLAMA3_70B_OUTPUT)


def _preset(gib: float, what: str) -> tuple[float, str]:
    bits = gguf_body_bits(gib)
    return bits, f"{what}, {bits:.3f} bits a weight in a Llama-3-70B file"


GGUF_MIXES = {t: _preset(gib, what) for t, (gib, what) in GGUF_PRESETS.items()}  # type -> (bits, description)

_FORMATS = [
    Format("fp32", 32, "fp32", False, "IEEE single", "IEEE 754", head_bits=32.0),
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
    # per group of 128 weights of an output column: an fp16 scale and a 4-bit zero point packed eight to an int32, as
    # AutoAWQ and GPTQ checkpoints store them (qweight int32 [in, out/8], qzeros int32 [in/128, out/8], scales fp16
    # [in/128, out]) and vLLM's Marlin repack keeps them (its zero points int32 [groups, out/8]); GPTQ's g_idx adds
    # 32 bits per input row, under 0.01 bit a weight at these widths. TensorRT-LLM's int4_awq is symmetric (no zero
    # point): 4.125 bits, 0.7 % less
    Format("int4", 4 + (16 + 4) / 128, "fp16", True, "INT4 weight-only (W4A16, AWQ/GPTQ), group 128 with an fp16 scale "
           "and a 4-bit zero point", "AWQ (arXiv 2306.00978) / GPTQ group-128 checkpoint layout (AutoAWQ WQLinear "
           "qweight / qzeros / scales)"),
    # compressed-tensors pack-quantized INT4, group 32, one bf16 scale per group, symmetric (no zero point): the
    # layout Kimi K2-Thinking / K2.5 ship their quantization-aware trained experts in; vLLM and SGLang run it with the
    # Marlin WNA16 kernel (a weight-only 16-bit GEMM), so only its bytes differ from int4's
    Format("int4-g32", 4 + 16 / 32, "fp16", True,
           "INT4 weight-only (W4A16), group 32 with a bf16 scale, symmetric (compressed-tensors pack-quantized)",
           "compressed-tensors pack-quantized (Kimi-K2-Thinking / Kimi-K2.5 quantization_config: num_bits 4, "
           "group_size 32, symmetric); served by the Marlin WNA16 kernels (vllm-project/vllm PR #28574)"),
    Format("w4a8", 4 + 32 / 128, "fp8", False, "INT4 weights, FP8/INT8 activations (W4A8, QServe-style)",
           "QServe (arXiv 2405.04532)", fallback_compute="fp16",
           fallback_note="no fp8 or int8 tensor cores: runs as W4A16", alt_compute=("int8",),
           kernel_source="QServe (arXiv 2405.04532): the W4A8 GEMM runs on INT8 tensor cores (FP8 where the device has "
                         "it) at the 8-bit GEMM rate; its cost over W8A8 is the dequantization, costed apart",
           dequant_scale_8bit=0.125,
           dequant_source="QServe (arXiv 2405.04532) sec. 5: compute-aware weight reordering, register-level parallelism "
                          "(four int4 lanes per 32-bit op) and subtraction after multiplication leave ~0.5 vector op per "
                          "weight instead of the default 4 (planner estimate from the described kernel, not a measurement)"),
    # 6-bit formats (issue 16: FlexQ). INT6 storage: 6 bits + one fp16 scale and zero per group of 128 (the
    # AWQ/GPTQ group layout; FlexQ's group size was not retrieved) = 6.25 bits.
    Format("int6", 6 + 32 / 128, "fp16", True, "INT6 weight-only (W6A16), group 128 with fp16 scale and zero",
           "FlexQ (arXiv 2508.04405) 6-bit weights; AWQ/GPTQ group-128 layout",
           kernel_source="weight-only: the 16-bit GEMM; dequantization on the vector units is costed by the step model"),
    # FlexQ's W6A6/W6A8 GEMM runs on binary tensor cores (BTC) as bit-serial products: a w-bit x a-bit product is
    # w x a one-bit MMAs, and BTC runs 8x the INT8 rate (A100: 4,992 binary vs 624 INT8 dense TOPS, NVIDIA A100
    # whitepaper), so the compute-bound ceiling is 8 / (w a) of INT8: 8/36 = 0.222 (W6A6), 8/48 = 0.167 (W6A8).
    # Decode is memory bound and reads 6-bit weights: FlexQ's end-to-end 1.33x over SmoothQuant W8A8 is 8/6.
    Format("w6a8", 6 + 16 / 128, "int8", False, "INT6 weights, INT8 activations (FlexQ W6A8), group-128 fp16 scales",
           "FlexQ (arXiv 2508.04405)", fallback_compute="fp16",
           fallback_note="no int8 tensor cores: runs as W6A16 (6-bit weights dequantized to 16 bit)",
           kernel_efficiency=8 / 48,
           kernel_source="bit-serial on binary tensor cores: 6 x 8 one-bit MMAs per product at 8x the INT8 rate "
                         "(FlexQ arXiv 2508.04405 abstract: BTC-equivalent kernel, 1.39x over ABQ-LLM; A100 whitepaper "
                         "4,992 binary / 624 INT8 dense TOPS)", dequant_scale_8bit=0.0,
           dequant_source="bit planes are packed offline and fed to the binary MMA directly: no per-element unpack"),
    Format("w6a6", 6 + 16 / 128, "int8", False, "INT6 weights and activations (FlexQ W6A6), group-128 fp16 scales",
           "FlexQ (arXiv 2508.04405)", fallback_compute="fp16",
           fallback_note="no int8 tensor cores: runs as W6A16 (6-bit weights dequantized to 16 bit)",
           kernel_efficiency=8 / 36,
           kernel_source="bit-serial on binary tensor cores: 6 x 6 one-bit MMAs per product at 8x the INT8 rate "
                         "(FlexQ arXiv 2508.04405 abstract; A100 whitepaper 4,992 binary / 624 INT8 dense TOPS)",
           dequant_scale_8bit=0.0,
           dequant_source="bit planes are packed offline and fed to the binary MMA directly: no per-element unpack"),
    Format("fp4", 4 + 8 / 16, "fp4", False, "NVFP4: E2M1 with an FP8 scale per 16 elements (W4A4)",
           "NVIDIA Blackwell NVFP4 format", fallback_compute="fp16",
           fallback_note=f"no fp4 tensor cores: weight-only fp4, dequantized to 16 bit in a mixed-input GEMM "
                         f"({E2M1_MIXED_INPUT:g} of the 16-bit GEMM rate)",
           fallback_efficiency=E2M1_MIXED_INPUT, fallback_source=E2M1_MIXED_INPUT_SOURCE,
           moe_mixers_16bit_source=NVFP4_MOE_RECIPE, moe_mixers_16bit_by="NVIDIA's ModelOpt exports"),
    Format("mxfp4", 4 + 8 / 32, "fp4", False, "OCP MXFP4: E2M1 with an E8M0 scale per 32 elements",
           "OCP Microscaling Formats (MX) v1.0", fallback_compute="fp16",
           fallback_note=f"no fp4 tensor cores: weight-only mxfp4, dequantized to 16 bit in a mixed-input GEMM "
                         f"({E2M1_MIXED_INPUT:g} of the 16-bit GEMM rate; as gpt-oss runs on Hopper)",
           paired_compute="fp8", moe_mixers_16bit_source=MXFP4_MOE_RECIPE, moe_mixers_16bit_by="AMD's Quark exports",
           paired_source="MXFP4 weights x MXFP8 activations, as TensorRT-LLM (QuantAlgo.W4A8_MXFP4_MXFP8, SM100/103) and "
                         "vLLM/FlashInfer run gpt-oss on Blackwell: the mixed f8f6f4 MMA runs at the FP8 rate, the FP4 "
                         "rate needs FP4 on both sides (--activations fp4 prices that)",
           fallback_efficiency=E2M1_MIXED_INPUT, fallback_source=E2M1_MIXED_INPUT_SOURCE),
    Format("q4_0", 18 * 8 / 32, "fp16", True, "llama.cpp q4_0: 32 weights in 18 bytes (fp16 scale + 16 bytes)",
           "ggml block_q4_0 layout", head_bits=6.5625),
    Format("q8_0", 34 * 8 / 32, "fp16", True, "llama.cpp q8_0: 32 weights in 34 bytes",
           "ggml block_q8_0 layout", head_bits=34 * 8 / 32),
    # llama.cpp k-quants: super-blocks of 256 weights (ggml block_q4_K 144 bytes, block_q5_K 176, block_q6_K 210). The
    # _M mixes give attn_v and ffn_down Q6_K in about half the layers (llama_tensor_get_type's use_more_bits: the
    # first and last eighth and every third layer between), ~15 % of a Llama layer's weights (Llama-2-7B: (16.8 M +
    # 45.1 M) / 2 of 202 M; Llama-3-8B 14 %); output.weight Q6_K
    Format("q4_k_m", Q4_K_BITS + Q_M_SHARE * (Q6_K_BITS - Q4_K_BITS), "fp16", True,
           "llama.cpp Q4_K_M: Q4_K (4.5 bits) with Q6_K for attn_v and ffn_down in half the layers",
           "ggml block_q4_K / block_q6_K layouts; llama.cpp llama_tensor_get_type (Q4_K_M)", head_bits=Q6_K_BITS),
    Format("q5_k_m", Q5_K_BITS + Q_M_SHARE * (Q6_K_BITS - Q5_K_BITS), "fp16", True,
           "llama.cpp Q5_K_M: Q5_K (5.5 bits) with Q6_K for attn_v and ffn_down in half the layers",
           "ggml block_q5_K / block_q6_K layouts; llama.cpp llama_tensor_get_type (Q5_K_M)", head_bits=Q6_K_BITS),
    Format("q6_k", Q6_K_BITS, "fp16", True, "llama.cpp Q6_K: 256 weights in 210 bytes",
           "ggml block_q6_K layout", head_bits=Q6_K_BITS),
    Format("q5_0", 22 * 8 / 32, "fp16", True, "llama.cpp q5_0: 32 weights in 22 bytes (fp16 scale, 5th bits, nibbles)",
           "ggml block_q5_0 layout", head_bits=Q6_K_BITS),
    Format("q5_1", 24 * 8 / 32, "fp16", True, "llama.cpp q5_1: 32 weights in 24 bytes (fp16 scale and min)",
           "ggml block_q5_1 layout", head_bits=Q6_K_BITS),
    *(Format(t, bits, "fp16", True, f"llama.cpp {t.upper()}: {what}", GGUF_MIX_SOURCE, head_bits=Q6_K_BITS)
      for t, (bits, what) in GGUF_MIXES.items()),
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
# int8-wo is deployable but not searched (int8 W8A8 dominates it wherever both run). FlexQ's 6-bit formats (int6, w6a8,
# w6a6) are priced when asked for (--weights, studies) but not searched by default: their kernels are the paper's, which
# no serving engine here ships, and a plan's recommendation is a deployment an engine runs
SEARCH_WEIGHT_FORMATS: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int4", "w4a8", "fp4", "mxfp4")
SEARCH_KV_FORMATS: tuple[str, ...] = ("bf16", "fp8", "int8", "int4")
DEPLOY_WEIGHT_FORMATS: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int8-wo", "int4", "int4-g32", "w4a8", "fp4", "mxfp4")
DEPLOY_KV_FORMATS: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int4")


def default_kv(weights: str, engine=None, model=None) -> str:
    """The KV-cache format an engine uses when none is asked for.

    Engines store the KV cache in the model's activation dtype unless told otherwise (vLLM and SGLang
    ``--kv-cache-dtype auto``; TensorRT-LLM ``kv_cache_config.dtype auto``): fp16 weights give an fp16 cache, fp32 an
    fp32 one, everything else 16-bit bf16. FP8 weights get an FP8 cache where the engine's default takes it from an
    FP8 quantization recipe that quantizes both (``Engine.fp8_kv_default``: TensorRT-LLM with a ModelOpt checkpoint;
    ``engine``, an Engine or its id, None: that default), but not for a model released in FP8 (``model``, a Model or
    its id: DeepSeek-V3/R1's block-scaled checkpoint carries no KV format, so every engine keeps a 16-bit cache).
    """
    if weights in ("fp16", "fp32"):
        return weights
    if weights != "fp8":
        return "bf16"
    if isinstance(engine, str):
        from planner.specs.engine import get_engine

        engine = get_engine(engine)
    if engine is not None and not getattr(engine, "fp8_kv_default", True):
        return "bf16"
    if isinstance(model, str):
        from planner.specs.loader import get_model

        model = get_model(model)
    if model is not None and model.released_weights() == "fp8":
        return "bf16"
    return "fp8"


DEFAULT_KV_RULE = ("default: the weights' dtype for bf16, fp16 and fp32 weights; for fp8 weights fp8 with TensorRT-LLM, "
                   "bf16 with vLLM and SGLang (their auto) and for models released in fp8; else bf16")
WEIGHT_FORMATS_HELP = "weight precision: " + " ".join(FORMATS)
KV_FORMATS_HELP = "KV-cache precision: " + " ".join(KV_FORMATS) + f" ({DEFAULT_KV_RULE})"


# precision names other tables and engines use for the formats above
PRECISION_ALIASES: dict[str, str] = {
    "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float32": "fp32", "fp8_e4m3": "fp8", "fp8-e4m3": "fp8",
    "e4m3": "fp8", "w8a8": "int8", "int8_sq": "int8", "smoothquant": "int8", "w8a16": "int8-wo", "int8_wo": "int8-wo",
    "w4a16": "int4", "awq": "int4", "gptq": "int4", "int4_awq": "int4", "int4-awq": "int4", "int4_gptq": "int4",
    "nvfp4": "fp4", "w4a8_awq": "w4a8", "w6a16": "int6", "flexq": "w6a6", "qserve": "w4a8", "qoq": "w4a8",
    "q4_k": "q4_k_m", "q5_k": "q5_k_m", "q4km": "q4_k_m", "q5km": "q5_k_m",
    # llama.cpp's own names for the 16/32-bit tensors; the method-int form of the weight-only and W8A8 names
    "f16": "fp16", "f32": "fp32", "awq-int4": "int4", "awq_int4": "int4", "gptq-int4": "int4", "gptq_int4": "int4",
    "int4-gptq": "int4", "gptq-int8": "int8-wo", "gptq_int8": "int8-wo", "w8a8-int8": "int8", "w8a8_int8": "int8",
    "w8a8-fp8": "fp8", "w8a8_fp8": "fp8",
}


# 4-bit weight-only formats (W4A16: AWQ, GPTQ and INT4 checkpoints with group scales) that serving engines run in
# mixed-input kernels of their own (Engine.mixed_input_tile_m: vLLM's Marlin)
W4A16_TILED = ("int4", "int4-g32")


def canonical(name: str | None) -> str | None:
    """The planner's id for a precision name (``float16`` -> ``fp16``); unknown names pass through."""
    if not name:
        return name
    v = name.strip().lower()
    return PRECISION_ALIASES.get(v, v)


def kv_asked(name: str | None) -> str | None:
    """The KV-cache format a table cell or flag names: the planner's id, or None for a blank or ``auto`` (the engines'
    --kv-cache-dtype / kv_cache_config.dtype auto: their own rule, default_kv, as when none is given)."""
    v = canonical((name or "").strip())
    return None if not v or v == "auto" else v


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

    @property
    def paper_kernel(self) -> bool:
        """Whether the format runs here only in a paper's kernel that no serving engine ships: W4A8 on INT8 tensor
        cores (a GPU without FP8) is QServe's (arXiv 2405.04532), where the engines' W4A8 (TensorRT-LLM's AWQ) takes FP8
        activations, 'GPUs: Ada and Later' (NVIDIA Model Optimizer support matrix, guides/0_support_matrix). plan's
        search leaves such a format out unless --weights asks for it; estimate prices it when asked, as a what-if."""
        return self.format.id == "w4a8" and self.compute_dtype == "int8"

    @property
    def kernel_efficiency(self) -> float:
        """The kernel's GEMM rate relative to the device's GEMM in ``compute_dtype`` (emulated widths lose;
        a fallback to another dtype runs that dtype's ordinary kernel)."""
        return self.format.kernel_efficiency if self.native and self.compute_dtype in self._own_dtypes() else 1.0

    @property
    def mixed_input_efficiency(self) -> float:
        """Large-M rate of a weight-dequantizing fallback kernel relative to the 16-bit GEMM it falls back to (1 for a
        native kernel)."""
        return 1.0 if self.native else self.format.fallback_efficiency

    @property
    def dequant_scale(self) -> float:
        """Vector-unit dequantization work relative to the step model's default per stored element."""
        return self.format.dequant_scale_8bit if self.compute_dtype in ("fp8", "int8") and self.native else 1.0

    def _own_dtypes(self) -> tuple[str, ...]:
        return (self.format.compute, *self.format.alt_compute)


def _measured(hw, dtype: str) -> bool:
    """Whether the device spec records an achievable matmul fraction for ``dtype`` (or a default one)."""
    return dtype in hw.achievable.matmul or "default" in hw.achievable.matmul


def serves_bf16_as_fp16(hw) -> bool:
    """A GPU with fp16 but no bf16 tensor cores (Volta, Turing) serves a bf16 checkpoint, weights and KV cache, in fp16:
    vLLM refuses bf16 below compute capability 8.0 and asks for --dtype half; same bytes, the fp16 tensor-core rate."""
    return not hw.supports("bf16") and hw.supports("fp16")


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
    if fmt.weight_only and not (hw.supports(compute) and _measured(hw, compute)):
        # weight-only kernels compute in the device's 16-bit type
        # (one whose achievable matmul fraction is on record, else the first it has a peak for)
        alts = [a for a in ("fp16", "bf16", "fp32") if hw.supports(a)]
        measured = [a for a in alts if _measured(hw, a)]
        if alts:
            alt = (measured or alts)[0]
            return Resolved(fmt, alt, True, f"computed in {alt}")
    if hw.supports(compute):
        if fmt.paired_compute and hw.supports(fmt.paired_compute):
            return Resolved(fmt, fmt.paired_compute, True, f"{fmt.id} weights with {fmt.paired_compute} activations "
                                                           f"(the {fmt.paired_compute} tensor-core rate)")
        return Resolved(fmt, compute, True, "")
    for alt in fmt.alt_compute:
        if hw.supports(alt):
            return Resolved(fmt, alt, True, f"{alt} activations: the device has no {compute} tensor cores")
    if compute == "bf16" and serves_bf16_as_fp16(hw) and _measured(hw, "fp16"):
        return Resolved(fmt, "fp16", False, "no bf16 tensor cores: served as fp16 (vLLM asks for --dtype half below compute "
                                            "capability 8.0)")
    alt = fmt.fallback_compute
    while alt is not None and not hw.supports(alt):
        alt = FORMATS[alt].fallback_compute if alt in FORMATS else None
    if alt in ("fp16", "bf16") and not _measured(hw, alt):
        other = "bf16" if alt == "fp16" else "fp16"
        alt = other if hw.supports(other) and _measured(hw, other) else alt
    if alt is None:
        raise PlannerError(f"{hw.id} cannot run {fmt.id}: it has no {compute} peak and no fallback applies")
    return Resolved(fmt, alt, False, fmt.fallback_note or f"computed in {alt}")
