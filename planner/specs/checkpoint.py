"""What a published checkpoint's name says beyond the network: how it stores its weights, and which words only
date or label a release.

Serving benchmarks and users name checkpoints by their Hugging Face repos: ``nvidia/Llama-3.3-70B-Instruct-FP8``,
``Qwen/Qwen2.5-72B-Instruct-AWQ``, ``RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8-dynamic``,
``Qwen/Qwen3-235B-A22B-Instruct-2507``. Each is a quantization or a re-release of a network the planner has a spec for:
the quantization words name the format the checkpoint's weights are stored in (the plan's default ``--weights``), and
the quantization, revision-date and variant words are set aside when the name is matched to a built-in model
(planner/specs/loader.py). Nothing here reads a file: the words are the repos' naming conventions, each listed with the
tool that writes it.
"""

from __future__ import annotations

import re

from planner.specs.quant import GGUF_MIXES

# quantization words -> planner weight format (planner/specs/quant.py ids); None: a quantization word that names no
# format on its own (it qualifies another word, or the format lives in a file the name does not give)
QUANT_WORDS: dict[str, str | None] = {
    "fp8": "fp8",  # NVIDIA ModelOpt / Qwen / RedHat llm-compressor FP8 (E4M3 weights and activations)
    "nvfp4": "fp4",  # NVIDIA ModelOpt NVFP4
    "fp4": "fp4",  # NVIDIA ModelOpt FP4 checkpoints (nvidia/*-FP4): NVFP4
    "mxfp4": "mxfp4",  # OCP MXFP4
    "awq": "int4",  # AWQ: 4-bit weights, group scales, 16-bit activations
    "w4a16": "int4",  # llm-compressor quantized.w4a16 (GPTQ/AWQ layout)
    "int4": "int4",  # GPTQ-Int4, AWQ-INT4
    "4bit": "int4",  # bitsandbytes 4-bit (weight-only)
    "w8a16": "int8-wo",  # llm-compressor quantized.w8a16
    "int8": "int8-wo",  # GPTQ-Int8 (weight-only)
    "8bit": "int8-wo",  # bitsandbytes 8-bit (weight-only)
    "w8a8": "int8",  # llm-compressor quantized.w8a8 (SmoothQuant INT8); with FP8 beside it, FP8
    "w4a8": "w4a8",
    "gptq": None,  # 4 bit unless Int8 is named too
    "bnb": None,
    "gguf": None,  # the quantization is per file (Q4_K_M, Q8_0, ...), not in the repo name
    "dynamic": None,  # FP8-dynamic: per-token activation scales
    "static": None,
    "quantized": None,
}
# GGUF file-name quantizations (llama.cpp) the planner prices, longest first (q2_k_s before q2_k)
_GGUF = tuple(sorted(("q4_0", "q8_0", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k", *GGUF_MIXES), key=len, reverse=True))
# words that name a release or variant of the same network: a revision date (Qwen3 -2507, DeepSeek -0528, Mistral
# -2501) or the thinking/base variant of a release (same layers)
_VARIANT_WORDS = frozenset({"thinking", "base"})
_DATE = re.compile(r"^\d{4}$")
_REVISION = re.compile(r"^v\d+$")


def _words(name: str) -> list[str]:
    """The repo name (organisation dropped) in lower-case words; ``quantized.w8a8`` splits into its two words."""
    base = name.strip().lower().rsplit("/", 1)[-1]
    base = re.sub(r"\.gguf$", "", base)
    out: list[str] = []
    for w in re.split(r"[\s_\-]+", base):
        if w.startswith("quantized.") and len(w) > len("quantized."):
            out += ["quantized", w[len("quantized."):]]
        elif w:
            out.append(w)
    return out


def checkpoint_weights(name: str) -> str | None:
    """The weight format a checkpoint's name says it stores (``nvidia/Llama-3.3-70B-Instruct-FP8`` -> fp8), or None
    when the name names none (a 16-bit release, or a GGUF repo whose files each hold their own quantization)."""
    low = name.strip().lower()
    for key in _GGUF:  # Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf: the planner's id is the type's name
        if re.search(rf"(^|[\-_./]){re.escape(key)}($|[\-_.])", low):
            return key
    words = set(_words(name))
    if "fp8" in words:  # W8A8-FP8, FP8-dynamic: FP8 wins over the W8A8 label
        return "fp8"
    if "gptq" in words:
        return "int8-wo" if "int8" in words or "8bit" in words else "int4"
    if "bnb" in words and "8bit" not in words:
        return "int4"
    for w in _words(name):
        fmt = QUANT_WORDS.get(w)
        if fmt:
            return fmt
    return None


def network_words(name: str, variants: bool = True) -> list[str]:
    """The name's words without those that only say how or when the checkpoint was released (quantization, revision
    date, a GGUF file's quantization and, with ``variants``, the thinking/base variant): what is left names the
    network."""
    drop = _VARIANT_WORDS if variants else frozenset()
    words = _words(name)
    # a revision label right after a quantization word re-releases the quantized checkpoint, not the network
    # (nvidia/DeepSeek-R1-0528-NVFP4-v2, the checkpoint TensorRT-LLM 1.2's perf overview names); DeepSeek-V2's stays
    words = [w for i, w in enumerate(words) if not (i and _REVISION.match(w) and words[i - 1] in QUANT_WORDS)]
    out = [w for w in words if w not in QUANT_WORDS and w not in drop and not _DATE.match(w)]
    for key in _GGUF:  # q4_k_m splits into q4, k, m: drop the run
        parts = key.split("_")
        for i in range(len(out) - len(parts) + 1):
            if out[i:i + len(parts)] == parts:
                return out[:i] + out[i + len(parts):]
    return out
