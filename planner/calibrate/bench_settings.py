"""The batch limit ``trtllm-bench`` picks for itself, so a published row is predicted at the batch it ran.

``trtllm-bench throughput`` (TensorRT-LLM 1.x, PyTorch backend; the perf-overview tables of
``measurements/published/modern_per_gpu.csv``) is run without ``--max_batch_size``: it sizes the batch from
the dataset's input/output lengths (NVIDIA/TensorRT-LLM ``tensorrt_llm/bench/build/tuning.py``,
``calc_engine_setting`` and ``finetune_setting``):

    engine GiB   = all parameters x bytes per element (1 for FP8 / FP8 block scales, 0.5 NVFP4, else 2)
    per token    = 2 x layers x max(tp, kv heads) x head_dim x KV bytes (1 for an FP8 cache, else 2)   [GiB]
    requests     = (device GiB x GPUs - engine GiB) x 0.95 / (per token x (isl + osl))
    max_batch    = requests (at most 4096) rounded up: to 32 (at least 64) below 256, to 128 below 1024,
                   to 256 above

Every layer counts at full length (the estimate ignores sliding windows), and a weight format outside the
table (gpt-oss's MXFP4) counts 2 bytes. The cap is per scheduler (per attention-DP rank); the KV pool the
engine then allocates still bounds what runs.

The head size is the one trtllm-bench's ``ModelConfig`` reads (``tensorrt_llm/bench/build/dataclasses.py``):
config.json's ``head_dim``, else ``hidden_size // num_attention_heads``. DeepSeek-V3/R1's config (MLA) names
qk_nope/qk_rope/v head dims but no ``head_dim``, so the estimate runs at 7168 // 128 = 56, not the 192 of a
query-key head: DeepSeek-R1 dep4 FP4 at 1024/1024 gets 256 sequences per rank where 192 gave the floor of 64
(B200 -55 % -> +7 %, GB200 -47 % -> +26 %; H200 dep8 FP8 +5 % -> +69 %, where the larger batch meets a cost the
model does not have on Hopper). Still not replicated: the parameter count trtllm-bench reads from the safetensors
index counts packed FP4 weights as stored (two per byte), which would shrink its engine estimate for FP4
checkpoints further; which layers a checkpoint quantizes is not in the model specs.
"""

from __future__ import annotations

import math

GIB = 2.0**30
MAX_REQUESTS = 4096  # finetune_setting: "cap total batch size to avoid decoder buffer size becoming too large"
KV_FRACTION = 0.95  # calc_engine_setting's kv_cache_gpu_mem_fraction default
_WEIGHT_BYTES = {"fp8": 1.0, "fp8-block": 1.0, "fp4": 0.5, "nvfp4": 0.5}


def trtllm_bench_max_batch(model, hw, gpus: int, tp: int, isl: int, osl: int, weights: str, kv: str) -> int:
    """``max_batch_size`` trtllm-bench computes for ``gpus`` devices (tp x pp) at ``isl``/``osl``; 0 when its
    estimate says the engine does not fit (trtllm-bench then stops with an error, so a published run of that layout
    set its batch size itself: unknown here, and the run is priced at what memory admits)."""
    engine_gib = sum(model.param_counts().values()) * _WEIGHT_BYTES.get(weights, 2.0) / GIB
    kv_bytes = 1.0 if kv == "fp8" else 2.0
    # trtllm-bench's ModelConfig reads head_dim from config.json, else hidden_size // num_attention_heads; DeepSeek's
    # MLA config names qk_nope/qk_rope/v head dims but no head_dim, so its estimate uses 7168 // 128 = 56
    head = model.hidden_size // model.num_heads if model.attention.mla is not None else model.head_dim
    per_token_gib = 2 * model.num_layers * max(tp, model.num_kv_heads) * head * kv_bytes / GIB
    available = hw.memory_capacity_bytes / GIB * gpus - engine_gib
    if available <= 0:
        return 0
    requests = available * KV_FRACTION / (per_token_gib * (isl + osl))
    raw = min(requests, MAX_REQUESTS)
    if raw < 256:
        return max(64, 32 * math.ceil(raw / 32))
    if raw < 1024:
        return 128 * math.ceil(raw / 128)
    return 256 * math.ceil(raw / 256)


def bench_runs(source: str, engine: str) -> bool:
    """Whether a row was measured by trtllm-bench sizing its own batch (the 1.x perf-overview tables)."""
    return engine.startswith("trtllm@1.") and "perf-overview" in (source or "").lower()


def row_batch_cap(row: dict, engine: str, model, hw, tp: int, gpus: int, isl: int, osl: int, weights: str, kv: str) -> int:
    """The batch limit per scheduler a published max-throughput row ran at where trtllm-bench sized it (``tp`` =
    its ``--tp``: tp x attention-DP ranks; ``gpus`` = that x pipeline stages); 0 for any other row, or where its
    estimate says the engine does not fit."""
    if not bench_runs(row.get("source"), engine):
        return 0
    return trtllm_bench_max_batch(model, hw, gpus, tp, isl, osl, weights, kv)


# the perf overviews' llm_options for every model from 0.19 on (docs/source/performance/perf-overview.md of the
# 0.19/0.20 releases and docs/source/developer-guide/perf-overview.md of 1.x, "Running the Benchmark"):
# cuda_graph_config with enable_padding true and these batch sizes. A step with a prompt in it runs without a graph.
PERF_OVERVIEW_GRAPH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192)


def with_graph_padding(eng):
    """``eng`` capturing CUDA graphs at PERF_OVERVIEW_GRAPH_SIZES and padding every decode batch up to the next one."""
    return eng.with_(cuda_graph_sizes=PERF_OVERVIEW_GRAPH_SIZES, cuda_graph_padding=True,
                     cuda_graph_max_batch=PERF_OVERVIEW_GRAPH_SIZES[-1])


def bench_engine(row: dict, engine: str, eng):
    """``eng`` (the offline profile) as a published row's benchmark ran it: the 1.x perf-overview runs padded."""
    return with_graph_padding(eng) if bench_runs(row.get("source"), engine) else eng


def offline(engine: str):
    """The engine profile as an offline benchmark runs it (``trtllm-bench``, the perf-overview static and
    first-token runs, ``llama-bench``): requests are submitted in process, so no API front end (HTTP, tokenize,
    detokenize) stands in the path and the per-request time is 0. Online runs (``vllm serve``, an OpenAI-compatible
    server under a request-rate benchmark) keep the release's fitted per-request time."""
    from planner.specs.engine import get_engine

    return get_engine(engine).with_(request_overhead_s=0.0)
