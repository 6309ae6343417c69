"""Engine facts the deployment emitters read: the engine profiles (flags, KV dtypes, kernel limits)
and the checkpoint each weight format needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from planner.errors import PlannerError
from planner.specs.engine import get_engine

if TYPE_CHECKING:
    from planner.report.emit import _Plan

# ---- the engine profiles (engines/*.yaml) the emitters read: the newest of each engine ---------
# (the k8s manifest runs `vllm serve`)
PROFILE = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm", "k8s": "vllm"}


def _profile(engine: str):
    return get_engine(PROFILE[engine])


def _flag(engine: str, setting: str) -> str:
    """The engine's own CLI flag for ``setting`` (from its profile)."""
    return _profile(engine).flag(setting)


_ENGINE_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM", "k8s": "vLLM"}

# a small draft model of the same tokenizer family, offered when a draft-model plan names none
DRAFT_SUGGESTIONS = {
    "llama-3-8b": "meta-llama/Llama-3.2-1B-Instruct", "llama-3-70b": "meta-llama/Llama-3.2-1B-Instruct",
    "llama-3.1-8b": "meta-llama/Llama-3.2-1B-Instruct", "llama-3.1-70b": "meta-llama/Llama-3.2-1B-Instruct",
    "llama-3.1-405b": "meta-llama/Llama-3.2-1B-Instruct", "llama-3.3-70b": "meta-llama/Llama-3.2-1B-Instruct",
    "qwen3-32b": "Qwen/Qwen3-0.6B", "qwen3-30b-a3b": "Qwen/Qwen3-0.6B", "qwen3-235b-a22b": "Qwen/Qwen3-0.6B",
}
_NATIVE_DESC = {"fp8": "FP8 (block-scaled)", "mxfp4": "MXFP4 (MoE experts)", "bf16": "16-bit",
                "int4": "INT4 weight-only (MoE experts)",
                "int4-g32": "INT4 weight-only, group 32 (MoE experts, quantization-aware trained)"}


# ---- checkpoint and quantization -----------------------------------------------------------
@dataclass
class _Checkpoint:
    path: str
    quantization: str | None = None  # the engine's --quantization value, when one is passed
    dtype: str | None = None  # "bfloat16" / "float16" for 16-bit weights
    notes: list[str] = field(default_factory=list)


def _local(p: _Plan, tag: str) -> str:
    return f"/models/{p.model}-{tag}"


def _checkpoint(engine: str, p: _Plan) -> _Checkpoint:
    native = p.native
    repo, w = p.repo, p.weights
    name = _ENGINE_NAMES[engine]

    def sixteen_bit_source() -> tuple[str, list[str]]:
        if native == "bf16":
            return repo, []
        path = _local(p, "bf16")
        return path, [f"{repo} ships {_NATIVE_DESC.get(native, native)} weights: convert it to a BF16 checkpoint at {path} first"]

    if w in ("bf16", "fp16"):
        path, notes = sixteen_bit_source()
        return _Checkpoint(path, dtype="bfloat16" if w == "bf16" else "float16", notes=notes)
    if w == "fp8":
        if native == "fp8":
            return _Checkpoint(repo, notes=["fp8 weights: the published checkpoint is FP8; the engine reads the method from its config"])
        if engine == "trtllm":
            path = _local(p, "fp8")
            return _Checkpoint(path, notes=[
                "fp8 weights: TensorRT-LLM loads pre-quantized FP8 checkpoints; export one with NVIDIA ModelOpt "
                f"(hf_ptq.py --qformat fp8) or use a published ModelOpt FP8 checkpoint, at {path}"])
        path, notes = sixteen_bit_source()
        return _Checkpoint(path, quantization="fp8", notes=notes + [
            f"fp8 weights: --quantization fp8 makes {name} quantize the 16-bit checkpoint to FP8 (W8A8, dynamic "
            "activation scales) while loading"])
    if w == "int8":
        path = _local(p, "w8a8-int8")
        return _Checkpoint(path, quantization="w8a8_int8" if engine == "sglang" else None, notes=[
            f"int8 weights: needs an INT8 W8A8 checkpoint (per-channel weights, per-token activations; e.g. llm-compressor, "
            f"compressed-tensors format) at {path}" + ("" if engine == "sglang" else "; vLLM reads the method from its config")])
    if w == "int8-wo":
        path = _local(p, "w8a16-int8")
        return _Checkpoint(path, notes=[
            f"int8-wo weights: needs an INT8 weight-only (W8A16) checkpoint (llm-compressor W8A16 or 8-bit GPTQ) at {path}; "
            f"{name} reads the method from its config"])
    if w == "int4-g32":
        if native == "int4-g32":  # released in it (Kimi-K2-Thinking's quantization-aware trained experts)
            return _Checkpoint(repo, notes=["int4-g32 weights: the published checkpoint is INT4 weight-only (group 32); "
                                            "the engine reads the method from its config"])
        path = _local(p, "w4a16-g32")
        return _Checkpoint(path, notes=[f"int4-g32 weights: needs a compressed-tensors W4A16 checkpoint with group size 32 "
                                        f"(llm-compressor) at {path}; {name} reads the method from its config"])
    if w == "int4":
        if native == "int4":  # a checkpoint released in INT4 weight-only, group 128
            return _Checkpoint(repo, notes=["int4 weights: the published checkpoint is INT4 weight-only; the engine reads "
                                            "the method from its config"])
        path = _local(p, "awq-int4")
        how = ("a ModelOpt W4A16 AWQ (int4_awq) or GPTQ checkpoint" if engine == "trtllm"
               else "an AWQ or GPTQ W4A16 checkpoint (group size 128)")
        return _Checkpoint(path, notes=[f"int4 weights: needs {how} at {path}; {name} reads the method from its quantization config"])
    if w == "w4a8":
        path = _local(p, "w4a8")
        how = {"vllm": "a compressed-tensors W4A8 checkpoint (int4 weights, fp8 activations; llm-compressor)",
               "sglang": "a W4A8 checkpoint (w4afp8 or compressed-tensors W4A8)",
               "trtllm": "a ModelOpt W4A8 AWQ (w4a8_awq) checkpoint"}[engine]
        return _Checkpoint(path, notes=[f"w4a8 weights: needs {how} at {path}; {name} reads the method from its config"])
    if w == "fp4":
        path = _local(p, "nvfp4")
        return _Checkpoint(path, quantization=None if engine == "trtllm" else "modelopt_fp4", notes=[
            f"fp4 weights: needs an NVIDIA ModelOpt NVFP4 checkpoint (hf_ptq.py --qformat nvfp4, or a published nvidia/*-FP4 "
            f"repo) at {path}"])
    # mxfp4
    if native != "mxfp4":
        raise PlannerError(f"no MXFP4 checkpoint of {p.model} is published (only gpt-oss ships MXFP4 weights); "
                           "choose fp4 (NVFP4) weights instead")
    return _Checkpoint(repo, notes=["mxfp4 weights: the published checkpoint's MoE experts are MXFP4; the engine reads it from its config"])


def _kv_value(engine: str, kv: str) -> str | None:
    """The engine's KV-cache dtype value (from its profile); None: 16 bit, the engine's default (the model's dtype)."""
    if kv in ("bf16", "fp16"):
        return None
    eng = _profile(engine)
    values = dict(eng.kv_dtype_items)
    if kv in values:
        return values[kv]
    raise PlannerError(f"{_ENGINE_NAMES[engine]} has no {kv} KV cache: {eng.kv_dtype_note}")


def _draft(p: _Plan) -> tuple[str, list[str]]:
    d = (p.speculative or {}).get("draft_model")
    if d:
        return d, []
    if p.model in DRAFT_SUGGESTIONS:
        d = DRAFT_SUGGESTIONS[p.model]
        return d, [f"draft model: the plan names none; {d} shares {p.model}'s tokenizer (suggested, check its acceptance rate)"]
    return "/models/draft-model", [f"draft model: the plan names none; put a small model with {p.model}'s tokenizer at /models/draft-model"]
