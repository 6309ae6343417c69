"""The batch and token limits ``trtllm-bench`` picks for itself, and how many requests a perf-overview run sent,
so a published row is predicted as the benchmark ran it.

``trtllm-bench throughput`` (TensorRT-LLM 0.20 and 1.x, PyTorch backend; the perf-overview tables of
``measurements/published/perf_overview_0_20.csv``, ``perf_overview_1_0.csv``, ``perf_overview_1_1.csv``,
``perf_overview_1_2.csv``, ``perf_overview_1_2_b300.csv``, ``modern_per_gpu.csv`` and
``perf_overview_rtx_pro_6000.csv``) is run without ``--max_batch_size`` or ``--max_num_tokens``: it sizes both from the
dataset's input/output lengths
(NVIDIA/TensorRT-LLM ``tensorrt_llm/bench/build/tuning.py``, ``calc_engine_setting`` and ``finetune_setting``):

    engine GiB   = stored elements x bytes per element (1 for FP8 / FP8 block scales, 0.5 NVFP4, else 2)
    per token    = 2 x layers x max(tp, kv heads) x head_dim x KV bytes (1 for an FP8 cache, else 2)   [GiB]
    requests     = (device GiB x GPUs - engine GiB) x 0.95 / (per token x (isl + osl))
    raw batch    = min(requests, 4096) / pp           raw tokens = min(raw batch x (1 + isl / osl), 32768)
    max_batch    = raw batch rounded up: to 32 (at least 64) below 256, to 128 below 1024, to 256 above
    max_tokens   = raw tokens rounded up: to 256 (at least 2048) below 4096, to 512 below 8192, to 1024 above

and, chunked prefill being off, raises max_tokens to at least the longest prompt plus max_batch
(``tensorrt_llm/bench/benchmark/utils/general.py``, ``get_settings``). Both limits hold per micro-batch: a
pipeline of pp stages keeps pp micro-batches in flight, so pp x max_batch sequences run at once.

The stored elements are what ``ModelConfig.get_param_count`` reads from the checkpoint's safetensors headers
(huggingface_hub's ``parameter_count``: elements per tensor), so a packed 4-bit checkpoint counts two weights per
element plus its block scales (``stored_params``): a ModelOpt NVFP4 checkpoint's linear layers (a MoE model's but
its attention, which the export keeps in 16 bit) and gpt-oss's MXFP4 experts count about 0.56 and 0.53 per weight,
and trtllm-bench sizes such an engine at about half its bytes. Every layer counts at full length (the estimate
ignores sliding windows), and a weight format outside the table (gpt-oss's MXFP4) counts 2 bytes per element. The
limits are per scheduler (per attention-DP rank); the KV pool the engine then allocates still bounds what runs.

The head size is the one trtllm-bench's ``ModelConfig`` reads (``tensorrt_llm/bench/build/dataclasses.py``):
config.json's ``head_dim``, else ``hidden_size // num_attention_heads``. DeepSeek-V3/R1's config (MLA) names
qk_nope/qk_rope/v head dims but no ``head_dim``, so the estimate runs at 7168 // 128 = 56, not the 192 of a
query-key head: DeepSeek-R1 dep4 FP4 at 1024/1024 gets 256 sequences per rank where 192 gave the floor of 64
(B200 -55 % -> +7 %, GB200 -47 % -> +26 %; H200 dep8 FP8 +5 % -> +69 %, where the larger batch meets a cost the
model does not have on Hopper); with the packed count (above) 384 per rank on B200/GB200. Which layers a checkpoint
packs is taken from the format's usual recipe (``_QUANTIZED``), not read per checkpoint.

A perf-overview run is a finite burst: the page's dataset step writes ``$num_requests`` identical requests per
input/output length (the 1.x table: 3,000 at 1024/1024, 1,500 at 8192/1024 and 1024/8192, 1,000 at 32768/1024 and
1024/32768; the 0.20 table 1,000 to 30,000) and ``trtllm-bench`` queues them all at once, reporting output tokens
over the whole run. With 500 to 3,000 sequences running, that is one to six batches' worth: the run's fill and
drain are a large share of it, so these rows are simulated request by request
(planner.serving.published.predict_offline_bench), not priced at a steady state.
"""

from __future__ import annotations

import math
import re

GIB = 2.0**30
MAX_REQUESTS = 4096  # finetune_setting: "cap total batch size to avoid decoder buffer size becoming too large"
KV_FRACTION = 0.95  # calc_engine_setting's kv_cache_gpu_mem_fraction default
MAX_TOKENS = 32768  # finetune_setting: "cap num tokens to avoid TRT activation buffer becoming too large"
_WEIGHT_BYTES = {"fp8": 1.0, "fp8-block": 1.0, "fp4": 0.5, "nvfp4": 0.5}
# elements a packed 4-bit checkpoint stores per quantized weight: two weights per byte-sized element, plus one scale
# element per block (NVFP4: FP8 scale per 16; MXFP4: E8M0 scale per 32)
_STORED_PER_WEIGHT = {"fp4": 0.5 + 1 / 16, "nvfp4": 0.5 + 1 / 16, "mxfp4": 0.5 + 1 / 32}
_BLOCK_LINEARS = ("attention", "dense_mlp", "shared_experts", "experts")  # what a ModelOpt NVFP4 export packs
_QUANTIZED = {"fp4": _BLOCK_LINEARS, "nvfp4": _BLOCK_LINEARS, "mxfp4": ("experts",)}


def stored_params(model, weights: str) -> float:
    """The parameter count trtllm-bench reads for a checkpoint: the elements of its safetensors tensors
    (``ModelConfig.get_param_count``: huggingface_hub's ``parameter_count``), where a packed 4-bit tensor holds two
    weights per element and its block scales are elements of their own. A ModelOpt NVFP4 checkpoint packs the linear
    layers inside the transformer blocks (attention, MLP, experts), but for those the checkpoint keeps in a format of
    their own (Model.stored_formats: a MoE model's attention, quant.NVFP4_MOE_RECIPE); gpt-oss's released MXFP4
    checkpoint its experts."""
    counts = model.param_counts()
    per = _STORED_PER_WEIGHT.get(weights)
    if per is None:
        return float(sum(counts.values()))
    attn, dense = model.stored_formats(weights)  # layers the checkpoint keeps in a format of their own stay unpacked
    kept = {"attention"} if attn != weights else set()
    kept |= {"dense_mlp", "shared_experts"} if dense != weights else set()
    packed = sum(counts.get(k, 0) for k in _QUANTIZED[weights] if k not in kept)
    return float(sum(counts.values()) - packed + per * packed)


def _round_up(x: float, tiers: tuple, floor: int) -> int:
    """finetune_setting's rounding: ``x`` up to a multiple of the step of the first (bound, step) tier it is below,
    at least ``floor``."""
    step = next(st for bound, st in tiers if x < bound)
    return max(floor, step * math.ceil(x / step))


def trtllm_bench_settings(model, hw, gpus: int, tp: int, isl: int, osl: int, weights: str, kv: str) -> tuple[int, int]:
    """(``max_batch_size``, ``max_num_tokens``) trtllm-bench computes for ``gpus`` devices (``tp`` x pp) at
    ``isl``/``osl``, both per micro-batch; (0, 0) when its estimate says the engine does not fit (trtllm-bench then
    stops with an error, so a published run of that layout set its limits itself: unknown here, and the run is
    priced at the engine's defaults and what memory admits)."""
    pp = max(1, gpus // max(tp, 1))
    engine_gib = stored_params(model, weights) * _WEIGHT_BYTES.get(weights, 2.0) / GIB
    kv_bytes = 1.0 if kv == "fp8" else 2.0
    # trtllm-bench's ModelConfig reads head_dim from config.json, else hidden_size // num_attention_heads; DeepSeek's
    # MLA config names qk_nope/qk_rope/v head dims but no head_dim, so its estimate uses 7168 // 128 = 56
    head = model.hidden_size // model.num_heads if model.attention.mla is not None else model.head_dim
    per_token_gib = 2 * model.num_layers * max(tp, model.num_kv_heads) * head * kv_bytes / GIB
    available = hw.memory_capacity_bytes / GIB * gpus - engine_gib
    if available <= 0:
        return 0, 0
    requests = available * KV_FRACTION / (per_token_gib * (isl + osl))
    raw = min(requests, MAX_REQUESTS) / pp
    raw_tokens = min(raw * (1.0 + isl / osl), MAX_TOKENS)
    batch = _round_up(raw, ((256, 32), (1024, 128), (math.inf, 256)), 64)
    tokens = _round_up(raw_tokens, ((4096, 256), (8192, 512), (math.inf, 1024)), 2048)
    # get_settings: without chunked prefill a step must hold the longest prompt beside a full batch
    return batch, max(tokens, isl + batch)


def trtllm_bench_max_batch(model, hw, gpus: int, tp: int, isl: int, osl: int, weights: str, kv: str) -> int:
    """Sequences trtllm-bench lets run at once on ``gpus`` devices (``tp`` x pp): its ``max_batch_size`` per
    micro-batch times the pp micro-batches in flight; 0 where its estimate says the engine does not fit."""
    batch, _ = trtllm_bench_settings(model, hw, gpus, tp, isl, osl, weights, kv)
    return batch * max(1, gpus // max(tp, 1))


# the perf overviews' dataset step ("Preparing a Dataset"): $num_requests identical requests per input/output length,
# all queued at once. 1.x: docs/source/developer-guide/perf-overview.md (NVIDIA/TensorRT-LLM @03e27c7); 0.19/0.20:
# docs/source/performance/perf-overview.md (the 0.20.0 page). Where both list a pair they agree.
PERF_OVERVIEW_REQUESTS = {(1024, 1024): 3000, (8192, 1024): 1500, (1024, 8192): 1500, (32768, 1024): 1000,
                          (1024, 32768): 1000}
PERF_OVERVIEW_REQUESTS_0_20 = {(128, 128): 30000, (128, 2048): 3000, (128, 4096): 1500, (1000, 2000): 1500,
                               (2048, 128): 3000, (2048, 2048): 1500, (5000, 500): 1500, (1000, 1000): 3000,
                               (500, 2000): 3000, (20000, 2000): 1000}


def perf_overview_requests(isl: int, osl: int) -> tuple[int, str]:
    """(requests a perf-overview run at ``isl``/``osl`` sent, note) for a row whose page states no count for its
    lengths: the count another edition of the page lists for them, else that of the nearest listed pair (log
    distance); the note says which."""
    if (isl, osl) in PERF_OVERVIEW_REQUESTS:
        return PERF_OVERVIEW_REQUESTS[(isl, osl)], ""
    if (isl, osl) in PERF_OVERVIEW_REQUESTS_0_20:
        n = PERF_OVERVIEW_REQUESTS_0_20[(isl, osl)]
        return n, f"{n} requests, the count the 0.20 perf overview lists for {isl}/{osl}"
    listed = {**PERF_OVERVIEW_REQUESTS_0_20, **PERF_OVERVIEW_REQUESTS}
    near = min(listed, key=lambda k: abs(math.log(k[0] / isl)) + abs(math.log(k[1] / osl)))
    n = listed[near]
    return n, f"no perf overview lists a request count for {isl}/{osl}: {n}, its count for {near[0]}/{near[1]}"


def bench_runs(source: str, engine: str) -> bool:
    """Whether a row was measured by trtllm-bench sizing its own batch (the 1.x perf-overview tables)."""
    return engine.startswith("trtllm@1.") and re.search(r"perf(?:ormance)?[-_ ]overview", (source or "").lower()) is not None


def bench_limits(model, hw, ranks: int, pp: int, isl: int, osl: int, weights: str, kv: str) -> tuple[int, int, int]:
    """(``max_seqs``, ``max_batched_tokens``, micro-batches) trtllm-bench runs ``ranks`` x ``pp`` devices at: its
    limits per micro-batch (trtllm_bench_settings) times the ``pp`` micro-batches in flight, which they cover; (0, 0, 1)
    where its estimate says the engine does not fit (the run then passed limits of its own, unknown here)."""
    batch, tokens = trtllm_bench_settings(model, hw, ranks * pp, ranks, isl, osl, weights, kv)
    return (batch * pp, tokens * pp, pp) if batch else (0, 0, 1)


def bench_sized(eng, limits: tuple[int, int, int], isl: int):
    """``eng`` at trtllm-bench's ``limits`` (bench_limits); where it could not size the layout, the engine's own batch
    with room for the longest prompt beside it (as trtllm-bench would leave, or no prompt could join a running
    batch)."""
    seqs, tokens, _ = limits
    if seqs:
        return eng.with_(max_seqs=seqs, max_batched_tokens=tokens)
    return eng.with_(max_batched_tokens=max(eng.max_batched_tokens, isl + eng.max_seqs))


def row_bench_limits(row: dict, engine: str, model, hw, ranks: int, pp: int, isl: int, osl: int, weights: str,
                     kv: str) -> tuple[int, int, int]:
    """bench_limits for a published max-throughput row whose run trtllm-bench sized (``ranks`` = its ``--tp``: tp x
    attention-DP ranks; ``pp`` pipeline stages); (0, 0, 1) for any other row."""
    if not bench_runs(row.get("source"), engine):
        return 0, 0, 1
    return bench_limits(model, hw, ranks, pp, isl, osl, weights, kv)


# the perf overviews' llm_options for every model from 0.19 on (docs/source/performance/perf-overview.md of the
# 0.19/0.20 releases and docs/source/developer-guide/perf-overview.md of 1.x, "Running the Benchmark"):
# cuda_graph_config with enable_padding true and these batch sizes. A step with a prompt in it runs without a graph.
PERF_OVERVIEW_GRAPH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192)


def captured_graph_sizes(sizes, max_batch: int, max_tokens: int) -> tuple[int, ...]:
    """The CUDA-graph batch sizes a TensorRT-LLM (PyTorch backend) engine captures from the ``sizes`` its
    cuda_graph_config names, padding on: those up to the largest pure-decode batch it can run, min(max_batch_size,
    max_num_tokens) (one token per sequence; no draft tokens), and, where a named size lies above that, the largest
    batch itself, so a batch between the last size kept and the limit pads to the limit, not to the next named size
    (tensorrt_llm/_torch/pyexecutor/model_engine.py, _filter_cuda_graph_batch_sizes)."""
    cap = max(min(max_batch, max_tokens), 1)
    kept = [s for s in sorted(sizes) if s <= cap]
    if len(kept) < len(sizes) and (not kept or kept[-1] != cap):
        kept.append(cap)
    return tuple(kept)


def with_graph_padding(eng, micro_batches: int = 1):
    """``eng`` capturing CUDA graphs at PERF_OVERVIEW_GRAPH_SIZES, as the engine keeps them under its own batch and
    token limits (captured_graph_sizes; ``micro_batches``: pipeline micro-batches the limits of ``eng`` cover, each
    held to its share), and padding every decode batch up to the next captured size."""
    n = max(int(micro_batches), 1)

    def share(limit):  # one micro-batch's part of a limit; a limit left open keeps every named size
        return limit // n if limit else max(PERF_OVERVIEW_GRAPH_SIZES)

    sizes = captured_graph_sizes(PERF_OVERVIEW_GRAPH_SIZES, share(eng.max_seqs), share(eng.max_batched_tokens))
    return eng.with_(cuda_graph_sizes=sizes, cuda_graph_padding=True, cuda_graph_max_batch=sizes[-1])


def bench_engine(row: dict, engine: str, eng, micro_batches: int = 1):
    """``eng`` (the offline profile) as a published row's benchmark ran it: the perf-overview runs padded, unless
    the row says its run had CUDA graphs off (``cuda_graphs`` = off: the 0.20 page's data, see
    measurements/published/README.md), which leaves decode batches unpadded. ``micro_batches``: as for
    with_graph_padding (the pipeline stages whose micro-batches the limits of ``eng`` cover)."""
    if (row.get("cuda_graphs") or "").strip().lower() == "off":
        return eng
    return with_graph_padding(eng, micro_batches) if bench_runs(row.get("source"), engine) else eng


def offline(engine: str):
    """The engine profile as an offline benchmark runs it (``trtllm-bench``, the perf-overview static and
    first-token runs, ``llama-bench``): requests are submitted in process, so no API front end (HTTP, tokenize,
    detokenize) stands in the path and the per-request time is 0. Online runs (``vllm serve``, an OpenAI-compatible
    server under a request-rate benchmark) keep the release's per-request time (fitted, or inferred from the releases
    fitted on such runs: rate_fit.front_end)."""
    from planner.specs.engine import get_engine

    return get_engine(engine).with_(request_overhead_s=0.0).without_api_thread()
