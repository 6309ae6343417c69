"""Serving engines as data: one profile per engine and version (``engines/*.yaml``).

A profile says how the engine budgets memory (``utilization``, ``kv_policy``), its batch
limits, its scheduler (chunked prefill, decode-first or prefill-first, preemption, async
scheduling, prefix caching), how far it captures CUDA graphs, the speculative methods it
runs, and the engine's own CLI flag for each setting (``--emit`` writes those). Every value
in the YAML carries the documentation page or source file it was read from; a default the
engine does not publish is an explicit null (or a documented prior), never a guess.

Per-step / per-request host overheads are fitted by calibration into
``engines/calibration/*.yaml`` (a mapping ``engine: ID@VERSION`` plus the fitted fields);
``get_engine`` lays those over the profile. Until fitted they are 0.

``get_engine("vllm")`` is the newest vLLM profile, ``get_engine("vllm@0.15")`` a given one.
``Engine()`` with no arguments keeps the generic prior the cost model always used
(TensorRT-LLM-like defaults), so a library user who names no engine sees no change.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from planner.errors import PlannerError, unknown
from planner.specs.quant import FORMATS, canonical

GiB = 2.0**30
_MIB = 2.0**20


# the API endpoints a request can come through (Engine.on_endpoint)
ENDPOINTS = ("completions", "chat")
# the top-k/top-p sampler paths an install of vLLM's V1 engine takes (Engine.on_sampler_path)
SAMPLER_PATHS = ("sorting", "flashinfer")
# which GEMMs over a few tokens an engine may run as matrix-vector kernels (Engine.matrix_vector_kernels)
MATRIX_VECTOR_KERNELS = ("all", "weight_only", "none")
MOE_GATHER = ("kernel", "gemm")  # Engine.moe_gather: a gather kernel before the grouped GEMMs, or the GEMM gathers its rows


@dataclass(frozen=True)
class Engine:
    id: str = "trtllm"
    version: str | None = None  # None: the generic prior, no particular release
    # fraction of device memory the engine may use (vLLM gpu_memory_utilization default 0.9;
    # TensorRT-LLM gives the KV cache 0.9 of the memory left after weights)
    utilization: float = 0.90
    # "free": the KV cache gets `utilization` of the memory left after weights, activations and
    # runtime (TensorRT-LLM kv_cache_free_gpu_memory_fraction); "total": the engine uses
    # `utilization` of the device and the KV cache gets what weights, activations and runtime leave (vLLM);
    # "static": `utilization` of the memory free before the weights load (after the runtime) holds the weights and
    # the KV cache, activations and CUDA graphs live in the rest (SGLang mem_fraction_static)
    kv_policy: str = "free"
    # CUDA context, cuBLAS/NCCL workspaces, allocator slack: a prior (~1 GiB non-torch memory)
    runtime_bytes: float = 1.0 * GiB
    # releases from which runtime_bytes changes, oldest first: (first release, bytes). An engine whose memory accounting
    # changed between the releases one profile prices (vLLM V0: free memory read before and after the profile run
    # through 0.6.4, a device-wide non-torch figure in 0.6.5-0.6.6, the non-torch increase alone from 0.7) holds what the
    # release the user named counted (Engine.release); the profile named alone holds runtime_bytes
    runtime_bytes_from: tuple[tuple[str, float], ...] = ()
    # non-torch memory a replica spread over several devices adds on each (NCCL communicators and buffers), where the
    # engine's profile measures it apart (vLLM); 0: inside runtime_bytes
    collective_runtime_bytes: float = 0.0
    # bytes per logit (sequence x vocabulary entry) of the sampler warm-up the engine's memory profiling runs on
    # max_seqs rows of full-vocabulary logits on every rank (vLLM: logits, their fp32 copy, sorted values and indices
    # for top-k/top-p, probabilities, ...); the profiled activation peak is the larger of it and the forward pass.
    # 0: the engine sizes no such warm-up, and the step's own fp32 logits count beside the forward pass
    sampler_bytes_per_logit: float = 0.0
    # the same for the engine's other sampler path, which the install or a flag selects (vLLM: FlashInfer's top-k/top-p
    # kernels where flashinfer is installed and enabled, against the sorting path sampler_bytes_per_logit prices): priced
    # for the releases whose images take it (sampler_bytes_from) or where the user names it (on_sampler_path), and
    # otherwise named in the estimate with the cache it would leave. 0: no other path on record
    sampler_alt_bytes_per_logit: float = 0.0
    # releases from which the sampler path the engine's own install takes changes, oldest first: (first release, bytes
    # per logit). vLLM's images sampled top-k/top-p with FlashInfer's kernels from 0.8 (the flashinfer they bundled)
    # until flashinfer became a default dependency and PR 26859 turned its sampler off by default; a release the user
    # named (Engine.release) holds its own, the profile named alone sampler_bytes_per_logit (Engine.sampler_at_release)
    sampler_bytes_from: tuple[tuple[str, float], ...] = ()
    # the engine's MXFP4 MoE kernels take the expert matrices with the hidden dimension padded to a multiple of this
    # (vLLM: 256), so the padded experts are what it loads and reads; 0: the checkpoint's shapes
    mxfp4_moe_hidden_align: int = 0
    # and, on GPUs before Hopper (its Marlin MXFP4 kernel), each rank's slice of the intermediate dimension padded to a
    # multiple of this (vLLM: 128); 0: unpadded
    mxfp4_moe_marlin_intermediate_align: int = 0
    # block-scaled FP8 weights (DeepSeek-V3/R1's 128 x 128 scales) as the release's kernels stream them where a GEMM is
    # memory bound (few tokens): ((architecture, dense GEMMs, grouped MoE GEMMs), ...), each the fraction of the
    # device's STREAM bandwidth the kernel reaches (costmodel/step.py _gemm); an architecture not listed streams them
    # as any other weight (no published measurement)
    block_fp8_bw: tuple[tuple[str, float, float], ...] = ()
    # the same kernels where a GEMM is compute bound (many tokens): ((architecture, dense, grouped MoE), ...), each the
    # fraction of the plain FP8 GEMM rate (the device's FP8 MAMF x the engine's GEMM efficiency) they reach
    # (costmodel/step.py _gemm); an architecture not listed computes them at the plain rate
    block_fp8_compute: tuple[tuple[str, float, float], ...] = ()
    max_batched_tokens: int = 8192  # tokens one step may hold; the activation workspace is sized for it
    kv_block_tokens: int = 64  # paged-KV block size; a sequence holds whole blocks
    # whether sliding-window (and chunked-local) layers keep only their window's KV and attend over it; False: the
    # engine holds and attends over the whole sequence there, as TensorRT-LLM < 1.0 does unless its
    # max_attention_window_size is set (costmodel.memory.frees_window)
    kv_window_freed: bool = True
    # whether those windowed layers draw their blocks from the one pool the full-length layers use, each taking what its
    # window needs (vLLM's hybrid KV cache manager), so a long request's windowed layers leave the pool to its full-length
    # ones; False: a pool per window size with a static share of memory (TensorRT-LLM 1.x, SGLang's SWA pool), whose
    # split kv_window_pools names
    kv_window_shared_pool: bool = False
    # how an engine with a pool per window size (kv_window_shared_pool False) shares its KV memory between them, which
    # sets the sequences it holds (costmodel.memory.kv_bytes_per_seq, charged per sequence): None, not modelled (the
    # simulator counts every layer in full, an upper bound; estimate the windowed layers at their window); "equal", an
    # equal share of the memory for each window size, so the pool of the full-length layers holds 1 / (window sizes) of
    # it (TensorRT-LLM's KV cache manager by default since its TRTLLM_WINDOW_SIZE_SHARES change); "ratio", SGLang's SWA
    # pool, whose windowed layers hold kv_swa_tokens_ratio times the tokens the full-length layers hold
    kv_window_pools: str | None = None
    kv_swa_tokens_ratio: float = 0.8  # SGLang --swa-full-tokens-ratio (server_args.py default)
    # whether decode applies Llama-4 chunked attention too (a new token attends over its own chunk, and the KV before
    # the chunk is freed); False: only prefill (context) requests run the chunked kernels, so a decode step attends
    # over, and the cache holds, the whole sequence on those layers, as TensorRT-LLM 1.x does
    # (costmodel.memory.chunks_decode)
    chunked_attention_decode: bool = True
    # decode attention in the masked multi-head kernel (one thread block per query head, its QK and PV products on the
    # CUDA cores at this fraction of the device's FP32 peak: a compute floor beside the KV read), except for models
    # whose query heads per KV head are in xqa_query_groups (the tensor-core GQA kernel, XQA); 0: tensor-core decode
    # attention for every model (costmodel.step._attention_core)
    masked_mha_fp32_fraction: float = 0.0
    xqa_query_groups: tuple[int, ...] = ()
    # MLA attention with an FP8 KV cache: the generation kernels quantize the query to FP8 and run both products on the
    # FP8 tensor cores (mla_fp8_decode), and on these architectures so do the context kernels (mla_fp8_prefill_archs);
    # elsewhere, or with a 16-bit cache, MLA runs at the 16-bit rate (costmodel.plans.format_numbers, step._attention_core)
    mla_fp8_decode: bool = False
    mla_fp8_prefill_archs: tuple[str, ...] = ()
    # 16-bit GEMMs accumulate in FP16 (cuBLAS CUBLAS_COMPUTE_16F), so they run at the device's FP16-accumulate tensor
    # rate where it has one (Hardware.fp16_accumulate: GeForce parts, twice their FP32-accumulate rate)
    gemm_fp16_accumulate: bool = False
    # llama.cpp's MMQ (builds from PR 8075 on): a GGUF-quantized weight's GEMMs over more tokens than its matrix-vector
    # kernels take run as MMQ, integer dot products with the weight blocks unpacked on the vector units, at a multiple
    # of the device's FP32 peak: ((vendor or architecture, multiple), ...), an architecture's entry before its
    # vendor's (mmq_ratio; costmodel.plans.format_numbers); a device with no entry, or an entry of 0, keeps the weight
    # format's compute dtype. The FP32 peak stands for the SMs' issue rate, so parts with 64 FP32 lanes per SM get it
    # doubled (Hardware.cuda_core_issue_gain)
    mmq_fp32_ratio: tuple[tuple[str, float], ...] = ()
    # the device each mmq_fp32_ratio entry was calibrated on ((vendor or architecture, hardware id), ...). MMQ's pace
    # follows the SMs' sustained clock, which a multiple of the FP32 peak counts at the boost clock: a part that
    # sustains less of its datasheet GEMM rate than that device (a power cap: a T4, an L4, a GB10) runs MMQ slower by
    # the ratio of their 16-bit GEMM fractions (costmodel.plans.mmq_clock_factor); none: no correction
    mmq_reference: tuple[tuple[str, str], ...] = ()
    # the fraction of the device's STREAM bandwidth at which the release's 16-bit dense GEMMs stream their weights where
    # they are memory bound (few tokens), on architectures where it hands every token count to the vendor BLAS library's
    # tiled GEMM kernels (no skinny or matrix-vector kernel of its own) and that library's small-M kernels stream far
    # below the device: ((architecture, fraction), ...) (costmodel/step.py _gemm: the dense projections and lm_head);
    # an architecture not listed streams them at the device's rate
    library_gemm_bw: tuple[tuple[str, float], ...] = ()
    # the gap (s) between the kernels of the release's own replayed CUDA graph on each architecture where one was
    # measured for it: ((architecture, seconds), ...); an architecture not listed takes the graph gap pooled from the
    # releases fitted at request rates (calibrate.rate_fit.graph_gap)
    graph_gap_s: tuple[tuple[str, float], ...] = ()
    # where library_gemm_bw applies: the most tokens a GEMM runs in the release's own skinny kernel instead of the
    # library's (vLLM from 0.8.4 on ROCm: wvSplitK for 1-4 tokens); 0: the library at every token count
    skinny_gemm_tokens: int = 0
    # GEMMs of more than this many tokens on weights narrower than 16 bit first dequantize the whole weight to FP16 in a
    # kernel of its own (reads the packed weight, writes 2 bytes an element) and multiply the FP16 copy (llama.cpp's
    # CUDA/HIP backend above MMQ_MAX_BATCH_SIZE); fewer tokens dequantize inside the kernel. 0: always inside
    dequant_gemm_above: int = 0
    # tokens one forward pass holds: a step of more runs as ceil(tokens / ubatch_tokens) passes, each reading every
    # weight and launching every kernel again, its queries attending over the cache the passes before it wrote
    # (llama.cpp's n_ubatch: llama_decode splits its logical batch into physical micro-batches; costmodel.step
    # ubatch_split). 0: a step is one pass
    ubatch_tokens: int = 0
    # attention in a fused (flash) kernel; False: the scores are materialized, as a GEMM writing them, a softmax
    # reading and writing them and a GEMM reading them back, over every cached cell of a pass whether masked or not
    # (llama.cpp without -fa; costmodel.step._attention_core)
    flash_attention: bool = True
    # every token of a step passes the output layer and its logits come back, not only the last token of each prompt
    # (llama.cpp's logits_all context parameter, which its perplexity tool sets: the lm_head GEMM runs over every token
    # of a pass and, with logits_to_host, all of those rows are copied to host memory); a run setting, off by default
    all_logits: bool = False
    # the logits of each output row are copied to host memory inside the step (llama.cpp's llama_decode: sampling runs
    # on the CPU): vocabulary x 4 bytes a row over the device's host link (costmodel.step._logits_copy); False: the engine
    # samples on the device and returns token ids
    logits_to_host: bool = False
    # architectures on which attention without a fused kernel (flash_attention False) reads each KV head from memory once
    # per query head in a decode step: ggml's mul_mat broadcasts a KV head over the query heads of its GQA group, each
    # head's matrix-vector product loading its own copy of K and V (costmodel.step._attention_core), and on these parts
    # no cache keeps the group's repeats off DRAM. () : one read of the cache, as a fused kernel makes
    gqa_reread_archs: tuple[str, ...] = ()
    # architectures on which the engine's decode attention is a paged kernel of one thread block per query head, each
    # loading its own copy of its KV head, whatever kernel runs the prompt (vLLM V0's paged_attention_v1/v2, ROCm's decode
    # path through 0.6.1): a decode step reads the cache once per query head there, with flash attention or without
    # (costmodel.step._attention_core). () : the decode kernel reads each KV head once
    decode_reread_archs: tuple[str, ...] = ()
    # the last release whose decode kernel does so (vLLM 0.6.1: 0.6.2 brought ROCm's own kernel): a later release named
    # with its version (vllm@0.6.3, or vllm@0.7.3 priced by this profile) reads each KV head once; None: every release
    decode_reread_until: str | None = None
    # the engine refuses to start when its KV cache cannot hold one sequence of the context it serves (max_model_len, the
    # model's own unless the user lowers it): vLLM raises at startup, so a deployment on too little memory needs
    # --max-model-len at most what the cache holds (serving.predict says so; report.deploy emits it)
    max_model_len_check: bool = False
    # the CTA tile (output rows, tokens) of the library GEMM a prompt's dense projections run in, where the engine
    # calls one that tiles its output this way (llama.cpp's 2023-24 cuBLAS path): the tiles of each GEMM spread over
    # the device's SMs (Hardware.sm_count) in waves, one tile per SM at a time, and a GEMM is timed as whole waves
    # (costmodel/roofline.py wave_efficiency). None: the tile-agnostic small-M curve (gemm_half_m) alone
    gemm_tile: tuple[int, int] | None = None
    # 4-bit weight-only GEMMs (AWQ, GPTQ: W4A16, quant.W4A16_TILED) run, on these architectures, in a mixed-input kernel
    # whose only small-M loss is its MMA tile's idle rows (rate(m) = R m / (ceil(m / tile) tile): Marlin, which keeps
    # the 4-bit weight stream's speed up to 16-32 tokens and spreads few tiles over every SM in stripes); 0: the
    # half-rate law of every other GEMM (costmodel.plans.format_numbers, step._gemm)
    mixed_input_tile_m: int = 0
    mixed_input_archs: tuple[str, ...] = ()
    # which GEMMs over a few tokens may run as matrix-vector kernels on the vector units, no tile rows idle, their
    # compute time the smaller of that and the tiled path's (costmodel.step._gemm): "all" (llama.cpp's mul_mat_vec /
    # mmvq on CUDA and HIP, kernel_mul_mv on Metal), "weight_only" (those whose weights are stored narrower than the
    # GEMM computes: TensorRT-LLM's weight-only batched GEMV) or "none" (every dense GEMM on the matrix units: cuBLAS,
    # CUTLASS, DeepGEMM, and Marlin / Machete for 4- and 8-bit weights: vLLM, SGLang), whose idle tile rows cost what
    # the small-M law says. On a device with no matrix rate (Apple GPUs) or a CPU every engine takes the vector path
    matrix_vector_kernels: str = "weight_only"
    # the attention input projections run as one GEMM (q, k and v weights concatenated) and a gated MLP's gate and up
    # projections as one; False: a GEMM each (llama.cpp's graph multiplies wq, wk, wv and ffn_gate, ffn_up apart),
    # which matters where GEMMs are timed in waves (gemm_tile)
    fused_projections: bool = True
    # the engine's memory-bound kernels (matrix-vector products, dequantization, softmax, elementwise) keep few bytes in
    # flight per SM, so they stream at most SMs x the fitted per-SM rate (kernel parameter sm_stream) where that is
    # below the device's STREAM bandwidth (the HBM GPUs); False: STREAM alone (costmodel.step.CostModel)
    sm_stream_limited: bool = False
    # on Apple GPUs the engine's Metal matrix-vector kernels dequantize a narrow weight on the FP32 ALUs at a cost per
    # weight element the calibration fits (kernel parameter metal_dequant_ops); False: the cost model's default count
    metal_dequant_fitted: bool = False
    # whether FP8 weights come with an FP8 KV cache when the KV dtype is left at the engine's default: TensorRT-LLM reads
    # the KV format from a ModelOpt FP8 checkpoint's quantization config, which quantizes both; vLLM's and SGLang's
    # --kv-cache-dtype auto keeps the model's 16-bit dtype (planner.specs.quant.default_kv)
    fp8_kv_default: bool = True
    max_seqs: int = 2048  # engine cap on concurrent sequences
    # the routed experts run as one grouped GEMM (vLLM fused_moe, TensorRT-LLM, SGLang); False: a loop over the
    # experts, a gather, two GEMMs, the activation and a scatter-add each (the harness's numpy/torch reference)
    grouped_moe_gemm: bool = True
    # how the grouped expert GEMMs get their rows: "kernel", a gather kernel writes a copy of each token per chosen
    # expert before the first GEMM (TensorRT-LLM's CUTLASS MoE runner: expandInputRows, then finalizeMoeRouting combines
    # them; llama.cpp's mul_mat_id copies each expert's rows out and back); "gemm", the first GEMM loads its rows
    # through the sorted indices itself and only the combine moves them (vLLM's and SGLang's Triton fused_moe:
    # moe_align_block_size, the w1 GEMM, silu_and_mul, the w2 GEMM, moe_sum); costmodel.step._moe_mlp
    moe_gather: str = "kernel"
    # The model-keyed settings (MODEL_LIST_FIELDS) hold planner model ids or shell patterns over them; an entry written
    # "ARCH:PATTERN" (a profile's {architecture or vendor: [patterns]} form) applies on that architecture or vendor only.
    # models whose tensor-parallel all-reduce kernel also adds the residual and applies the RMSNorm after it
    # (TensorRT-LLM 1.x's decoder layers: AllReduceFusionOp.RESIDUAL_RMS_NORM; SGLang's FlashInfer all-reduce fusion):
    # with TP > 1, attention not data parallel and at most allreduce_norm_fusion_tokens tokens a step on a device (0:
    # any), their two norms a layer launch no kernel of their own (costmodel.step._fused_norm)
    allreduce_norm_fusion: tuple[str, ...] = ()
    allreduce_norm_fusion_tokens: int = 0
    # models whose shared experts run on a second stream beside the routed experts: in steps replayed as a CUDA graph
    # (shared_expert_stream_tokens 0: TensorRT-LLM's maybe_execute_in_parallel) or in any step of at most that many
    # tokens on a device (SGLang's forward_normal_dual_stream): their kernels' latency hides behind the routed path,
    # their weight traffic does not (costmodel.step._moe_mlp)
    shared_expert_stream: tuple[str, ...] = ()
    shared_expert_stream_tokens: int = 0
    # models whose shared experts run inside the routed experts' grouped GEMM as experts every token picks (SGLang's
    # num_fused_shared_experts: top-k + 1 over the routed experts and the shared one), without expert parallelism:
    # no kernels of their own, their weights streamed as an expert's (costmodel.step._moe_mlp); a second stream
    # (shared_expert_stream) applies only where they are not fused
    shared_expert_fusion: tuple[str, ...] = ()
    # the engine balances expert-parallel load: replicas of hot experts in redundant slots, placed so every rank expects
    # the same tokens (TensorRT-LLM's MoE load balancer, vLLM and SGLang --enable-eplb; costmodel/eplb.py)
    eplb: bool = False
    kernel_overhead_s: float = 0.0  # extra gap per op (kernel launches not in CUDA graphs)
    step_overhead_s: float = 0.0  # extra host time per step beyond the hardware's
    # scheduler
    chunked_prefill: bool | None = None  # None: the engine decides (e.g. by context length)
    # without chunked prefill a prompt longer than max_batched_tokens is refused, not run (TensorRT-LLM)
    prompt_within_budget: bool = False
    schedule: str = "decode_first"  # "decode_first" | "prefill_first"
    prefix_caching: bool = False
    # the prefix cache registers a prompt's full blocks when the scheduler allocates them, before the step that
    # computes them runs, so a request with the same prompt admitted later in the same step already shares them (the
    # step's attention reads each layer's keys after that layer writes them); False: once the prompt is computed
    prefix_cache_at_schedule: bool = False
    # running sequences that hit the same cached prefix read the same physical KV blocks (paged caches: vLLM, SGLang's
    # radix tree, TensorRT-LLM's block reuse); False: each keeps its own copy (llama.cpp's server reuses a slot's own
    # prefix), so a decode step reads every sequence's prefix from memory
    prefix_blocks_shared: bool = True
    preemption: str | None = "recompute"  # "recompute" | "swap" | None (the scheduler never preempts)
    # KV admission of a new request: "reserve" (blocks for its prompt and whole output; TensorRT-LLM), "ondemand"
    # (its prompt; the output grows into free blocks; vLLM), "ratio" (its prompt while the free blocks also cover a
    # share of its and every running request's remaining output; SGLang's new_token_ratio); None: from kv_policy
    admission: str | None = None
    async_scheduling: bool = False  # host scheduling of step n+1 overlaps the device running step n
    # decode steps between the scheduler's polls for new requests (SGLang --scheduler-recv-interval): a request that
    # reaches the engine while sequences decode waits for the next poll; a prompt or mixed step, or an idle engine,
    # polls at once. 1: every step
    recv_interval: int = 1
    # attention DP: new prompts held until every rank can take one, at most this many decode steps, in the deployment
    # the planner prices and emits (TensorRT-LLM's attention_dp_config enable_balance with timeout_iters); 0: prompts
    # enter as they arrive. A request's --attention-dp-balance replaces it (0: off)
    attention_dp_balance: int = 0
    # CUDA graphs: decode batches up to this size replay a captured graph (None: none captured)
    cuda_graph_max_batch: int | None = None
    cuda_graph_sizes: tuple[int, ...] = ()
    # a decode batch that is not a captured size runs padded up to the next one (TensorRT-LLM
    # cuda_graph_config.enable_padding): its GEMMs and MoE layers see the padded rows, attention only the real ones
    cuda_graph_padding: bool = False
    # on AMD GPUs the release replays HIP graphs as it does CUDA graphs on NVIDIA ones (False: AMD launches every op)
    hip_graphs: bool = True
    eager_kernel_overhead_s: float | None = None  # host time a kernel call of a step outside CUDA graphs (None: unknown)
    # host costs fitted by calibration (engines/calibration/*.yaml); 0 until fitted
    step_host_s: float = 0.0
    step_host_per_seq_s: float = 0.0
    request_overhead_s: float = 0.0
    # the same time on the chat endpoint (/v1/chat/completions: the chat template rendered before tokenizing, the reply
    # streamed as chat chunks), fitted where a release's runs went through it; None: the completions endpoint's time
    chat_request_overhead_s: float | None = None
    endpoint: str = "completions"  # the API endpoint request_overhead_s is the time of (on_endpoint)
    completions_overhead_s: float | None = None  # on another endpoint: the completions time it replaced (on_endpoint)
    # the release serves through a Python OpenAI-compatible HTTP server (FastAPI), whose tokenize / admit / detokenize
    # time every request pays: one with no runs at request rates of its own takes that time from the releases fitted
    # on theirs (planner/calibrate/rate_fit.py front_end); False: no front-end time unless fitted
    http_front_end: bool = False
    # the API server's one thread (SGLang's TokenizerManager, trtllm-serve's and vLLM's OpenAI server event loop), which
    # prepares every request (chat template, tokenize, hand-off to the engine: api_request_s) and writes every streamed
    # chunk of every reply (detokenized text out to its client: api_chunk_s) one job at a time, in the order they come;
    # a reply goes out one chunk every stream_interval decode steps (its first token at once). 0: no such queue
    api_request_s: float = 0.0
    api_chunk_s: float = 0.0
    stream_interval: int = 1
    # the executor loop (scheduling, input preparation, sampling bookkeeping) runs in Python, so its host time per
    # step is PyTorch ops and interpreter work, which a slower host CPU (Hardware.host_cpu) stretches; False: C++
    python_executor: bool = False
    spec_methods: tuple[str, ...] = ()  # planner method names: draft | mtp | eagle | ngram | medusa
    flag_items: tuple[tuple[str, str], ...] = ()  # (setting, the engine's own CLI flag)
    key_items: tuple[tuple[str, str], ...] = ()  # (setting, its key in the engine's config file)
    source_items: tuple[tuple[str, str], ...] = ()  # (setting, where its value was read)
    # weight formats the engine has no kernel for on a device with a native `compute` dtype
    # (None: on any device): ((weights, compute dtype marking the device generation, reason), ...)
    unsupported: tuple[tuple[str, str | None, str], ...] = ()
    # the engine's KV-cache dtype value per planner KV format beyond 16 bit, and what its flag takes
    kv_dtype_items: tuple[tuple[str, str], ...] = ()
    kv_dtype_note: str = ""
    rules: tuple = field(default=(), compare=False, repr=False)  # device-dependent defaults
    source: str = ""
    # where the engine runs: hardware vendors, kinds or vendor:kind (nvidia, cpu, intel:gpu, ...); empty: anywhere
    runs_on: tuple[str, ...] = ()
    # GPU architectures of a vendor it runs on that it does not support (vLLM below compute capability 7.0: Pascal)
    not_on_architectures: tuple[str, ...] = ()
    # the weight formats plan's search tries for this engine (empty: quant.SEARCH_WEIGHT_FORMATS): llama.cpp serves GGUF
    # files, so its search takes GGUF types, not the checkpoint formats of the GPU serving engines
    search_weights: tuple[str, ...] = ()
    title: str = ""  # the profile's name ("TensorRT-LLM 0.14 (TensorRT backend)")
    # the release the user named ("vllm@0.11") when no profile of its own exists and its era's profile prices it
    # (get_engine); None: the profile was named. Not part of the engine's identity (equality, hashing)
    requested: str | None = field(default=None, compare=False)
    # the release the user named where it is finer than the profile's version ("0.6.3" priced by the 0.6 profile, "0.7.3"
    # by its era's), for the kernel paths a profile bounds by release (decode_reread_until); None: the profile was named
    release: str | None = field(default=None, compare=False)
    # settings the user set (planner --memory-fraction): the device rules (for_hardware) leave them as set
    pinned: tuple[str, ...] = ()

    def set_by_user(self, **kw) -> "Engine":
        """This release with settings the user gave, which the defaults the engine picks per device do not replace."""
        return replace(self, **kw, pinned=tuple(sorted(set(self.pinned) | set(kw))))

    @property
    def kv_admission(self) -> str:
        """How a new request takes KV blocks: the profile's ``admission``, else what its memory policy implies
        (``kv_policy`` total, vLLM's, grows sequences on demand; free and static reserve a request's whole length)."""
        return self.admission or ("ondemand" if self.kv_policy == "total" else "reserve")

    @property
    def release_bounded(self) -> bool:
        """Whether a setting of this profile depends on the release within its series (decode_reread_until,
        runtime_bytes_from, sampler_bytes_from): a release named finer than the profile's version then carries its number."""
        return bool(self.decode_reread_until or self.runtime_bytes_from or self.sampler_bytes_from)

    def release_at_most(self, version: str | None) -> bool:
        """Whether the release this prices is ``version`` or earlier: True when no finer release was named (the profile
        prices what its rows ran) or ``version`` is None; a release's patch suffix (0.6.1.post1) counts as its release."""
        if not version or not self.release:
            return True
        return _release_numbers(self.release) <= _release_numbers(version)

    @property
    def era_note(self) -> str | None:
        """One line saying which profile prices the release the user named, where that is not its own; else None."""
        if not self.requested:
            return None
        return (f"{self.requested.replace('@', ' ')} has no profile of its own: priced with {self.name}, the profile of "
                f"its release era ({era_note(self.id, self.name)})")

    @property
    def name(self) -> str:
        return self.id if self.version is None else f"{self.id}@{self.version}"

    def long_prompt_note(self, prompt_tokens: float, budget: float | None = None, chunked: bool | None = None) -> str | None:
        """The first words of a note where this engine, running prompts whole, would refuse a prompt of
        ``prompt_tokens``: longer than its token budget (``budget``, default max_batched_tokens) with chunked prefill
        off (``chunked``, default the profile's); the caller says what it priced instead. None where it is admitted."""
        budget = self.max_batched_tokens if budget is None else budget
        chunked = self.chunked_prefill if chunked is None else chunked
        if not self.prompt_within_budget or chunked or prompt_tokens <= budget:
            return None
        return (f"{self.name} runs a prompt whole (chunked prefill off) and refuses one longer than its token budget "
                f"({budget:,.0f} tokens, {self.flags.get('max_batched_tokens', 'max_num_tokens')}): a {prompt_tokens:,.0f}-token "
                f"prompt needs the budget raised to at least that, or chunked prefill on")

    def budget_beside_prompt(self, prompt_tokens: float, decoding: float, tokens_each: float = 1.0,
                             chunked: bool | None = None) -> float | None:
        """The step budget an engine that runs prompts whole needs for a ``prompt_tokens`` prompt to enter beside
        ``decoding`` running sequences of ``tokens_each`` tokens a step (its decodes take the budget first:
        TensorRT-LLM's MicroBatchScheduler stops at the first request that does not fit), where that is more than its
        max_batched_tokens; None where the budget holds them, the engine chunks prompts (``chunked``, default the
        profile's), or a prompt longer than the budget is refused anyway (long_prompt_note)."""
        chunked = self.chunked_prefill if chunked is None else chunked
        if not self.prompt_within_budget or chunked or prompt_tokens > self.max_batched_tokens:
            return None
        need = prompt_tokens + max(decoding, 0.0) * tokens_each
        return need if need > self.max_batched_tokens else None

    @property
    def flags(self) -> dict[str, str]:
        return dict(self.flag_items)

    @property
    def keys(self) -> dict[str, str]:
        return dict(self.key_items)

    @property
    def sources(self) -> dict[str, str]:
        return dict(self.source_items)

    def flag(self, setting: str) -> str:
        """The engine's CLI flag for ``setting``; a PlannerError when the profile names none."""
        f = self.flags.get(setting)
        if not f:
            raise PlannerError(f"engine {self.name} has no flag for {setting!r} in its profile")
        return f

    def runtime_for(self, hw) -> float:
        return self.runtime_at_release if hw.kind in ("gpu", "accelerator", "tpu") else 0.0

    @property
    def runtime_at_release(self) -> float:
        """runtime_bytes of the release this prices: the last runtime_bytes_from entry at or before Engine.release, else
        runtime_bytes (also where no finer release was named)."""
        return _at_release(self.release, self.runtime_bytes_from, self.runtime_bytes)

    @property
    def sampler_at_release(self) -> float:
        """sampler_bytes_per_logit of the release this prices: the last sampler_bytes_from entry at or before
        Engine.release, else sampler_bytes_per_logit (also where no finer release was named)."""
        return _at_release(self.release, self.sampler_bytes_from, self.sampler_bytes_per_logit)

    @property
    def sampler_other_path(self) -> float:
        """Bytes per logit of the sampler path the release's own install does not take (0: none on record): the
        alternative path where the release takes the profile's, else the profile's own."""
        at = self.sampler_at_release
        if not self.sampler_alt_bytes_per_logit:
            return 0.0
        return self.sampler_alt_bytes_per_logit if at == self.sampler_bytes_per_logit else self.sampler_bytes_per_logit

    @property
    def sampler_path(self) -> str | None:
        """The top-k/top-p path this release is priced on: ``sorting`` (the larger charge of the two) or
        ``flashinfer``; None where the profile prices no warm-up with two paths."""
        at, other = self.sampler_at_release, self.sampler_other_path
        if not (at and other):
            return None
        return "sorting" if at >= other else "flashinfer"

    def on_sampler_path(self, path: str) -> "Engine":
        """This release with the top-k/top-p sampler path an install is known to take: ``sorting`` (the PyTorch path
        sampler_bytes_per_logit prices) or ``flashinfer`` (FlashInfer's kernels, sampler_alt_bytes_per_logit), whatever
        its release's images take (sampler_bytes_from). A PlannerError for another path, or a profile without both."""
        if path not in SAMPLER_PATHS:
            raise PlannerError(f"unknown sampler path {path!r}: use {' or '.join(SAMPLER_PATHS)}")
        if not (self.sampler_bytes_per_logit and self.sampler_alt_bytes_per_logit):
            raise PlannerError(f"{self.name} prices no sampler warm-up with two paths, so a sampler path does not apply")
        pinned = tuple(sorted(set(self.pinned) | {"sampler"}))
        if path == "sorting":
            return replace(self, sampler_bytes_from=(), pinned=pinned)
        return replace(self, sampler_bytes_from=(), sampler_bytes_per_logit=self.sampler_alt_bytes_per_logit,
                       sampler_alt_bytes_per_logit=self.sampler_bytes_per_logit, pinned=pinned)

    def with_(self, **kw) -> "Engine":
        return replace(self, **kw)

    def without_api_thread(self) -> "Engine":
        """This release with no API-server thread in front of it (api_request_s = api_chunk_s = 0): requests submitted
        in process, or a question about the engine's own pace."""
        return replace(self, api_request_s=0.0, api_chunk_s=0.0)

    def on_endpoint(self, endpoint: str) -> "Engine":
        """This release with the per-request front-end time of ``endpoint`` (ENDPOINTS): ``completions`` (a prompt in,
        text out: /v1/completions, a native generate route) or ``chat`` (/v1/chat/completions), whose time is the fitted
        chat value where the release has one and the completions one where it has not."""
        if endpoint not in ENDPOINTS:
            raise PlannerError(f"unknown endpoint {endpoint!r}: use {' or '.join(ENDPOINTS)}")
        if endpoint == self.endpoint:
            return self
        if endpoint == "completions":
            return replace(self, endpoint=endpoint, request_overhead_s=self.completions_overhead_s, completions_overhead_s=None)
        t = self.chat_request_overhead_s
        return replace(self, endpoint=endpoint, request_overhead_s=self.request_overhead_s if t is None else t,
                       completions_overhead_s=self.request_overhead_s)

    def cannot_run_on(self, hw) -> str | None:
        """Why this engine does not run on ``hw`` at all (TensorRT-LLM on an AMD GPU), or None. Hardware of a vendor the
        profiles do not know (a capture's measured CPU, a custom spec) is trusted."""
        vendor, kind = getattr(hw, "vendor", None), getattr(hw, "kind", None)
        arch = getattr(hw, "architecture", None)
        if arch is not None and arch in self.not_on_architectures:
            return f"{self.display_name} does not support {arch.capitalize()} GPUs, and {hw.id} is one"
        if not self.runs_on or vendor not in KNOWN_VENDORS or {vendor, kind, f"{vendor}:{kind}"} & set(self.runs_on):
            return None
        words = _platform_words(self.runs_on)
        where = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
        return f"{self.display_name} runs on {where} only, and {hw.id} is {_a(vendor, kind)}"

    def sampler_cannot_run_on(self, hw) -> str | None:
        """Why the sampler path the user named (on_sampler_path: FlashInfer's kernels) cannot run on ``hw``, or None."""
        if "sampler" in self.pinned and self.sampler_path == "flashinfer" and getattr(hw, "vendor", None) != "nvidia":
            return (f"FlashInfer's sampling kernels run on NVIDIA GPUs only: the flashinfer sampler path does not apply "
                    f"to {getattr(hw, 'id', hw)}")
        return None

    def check_runs_on(self, hw) -> None:
        """A one-line PlannerError naming the engines that do run on ``hw`` when this one cannot."""
        why = self.cannot_run_on(hw)
        if why:
            ok = sorted({i.split("@")[0] for i in engine_ids() if get_engine(i.split("@")[0]).cannot_run_on(hw) is None})
            raise PlannerError(f"{why}: pass --engine {' or '.join(ok) if ok else '<another engine>'}")

    @staticmethod
    def model_listed(patterns: tuple[str, ...], model_id: str, hw=None) -> bool:
        """Whether ``model_id`` matches one of a model-keyed setting's ids or shell patterns (MODEL_LIST_FIELDS; the
        cost model asks once per model and device, CostModel.norm_fusion, shared_expert_stream and
        shared_expert_fusion). An entry "ARCH:PATTERN" counts only on a device ``hw`` of that architecture or vendor
        (never without a device)."""
        for p in patterns:
            where, _, pattern = p.rpartition(":")
            if where and (hw is None or where not in (getattr(hw, "architecture", None), getattr(hw, "vendor", None))):
                continue
            if fnmatch.fnmatchcase(model_id, pattern):
                return True
        return False

    @property
    def display_name(self) -> str:
        return self.title.split(" (")[0] if self.title else self.name

    def for_hardware(self, hw, tp: int = 1, pp: int = 1) -> "Engine":
        """The profile with the defaults the engine picks on ``hw`` (vLLM and SGLang size their
        batch limits, CUDA-graph range and memory fraction by device memory). A PlannerError when the engine does not
        run on ``hw`` at all."""
        self.check_runs_on(hw)
        eng = self
        for rule in self.rules:
            eng = rule.apply(eng, hw, tp, pp)
        if eng.sampler_alt_bytes_per_logit and getattr(hw, "vendor", None) != "nvidia":
            # FlashInfer's sampling kernels are CUDA's: elsewhere (ROCm, XPU, CPU) vLLM's V1 sampler sorts the logits
            # (the sorting path is the larger of the two figures)
            why = eng.sampler_cannot_run_on(hw)
            if why:
                raise PlannerError(why)
            sorting = max(eng.sampler_bytes_per_logit, eng.sampler_alt_bytes_per_logit)
            eng = replace(eng, sampler_bytes_from=(), sampler_bytes_per_logit=sorting, sampler_alt_bytes_per_logit=0.0)
        return eng

    def _mmq_key(self, hw) -> str | None:
        """The mmq_fp32_ratio entry that applies to ``hw``: its architecture's, else its vendor's."""
        arch = getattr(hw, "architecture", None)
        return arch if arch in dict(self.mmq_fp32_ratio) else getattr(hw, "vendor", None)

    def mmq_ratio(self, hw) -> float:
        """The multiple of ``hw``'s FP32 peak at which this engine's MMQ kernels run a GGUF weight's GEMMs: the entry
        of its architecture, else of its vendor; 0 where it has none (the weight format's compute dtype applies)."""
        return float(dict(self.mmq_fp32_ratio).get(self._mmq_key(hw), 0.0))

    def mmq_reference_of(self, hw) -> str | None:
        """The hardware id the MMQ multiple that applies to ``hw`` was calibrated on (the same entry mmq_ratio takes);
        None where the profile names none."""
        return dict(self.mmq_reference).get(self._mmq_key(hw))

    def cannot_run(self, weights: str, hw) -> str | None:
        """Why this engine has no kernel for ``weights`` on ``hw`` (None: it has)."""
        weights = canonical(weights)
        for w, marker, reason in self.unsupported:
            if w == weights and (marker is None or (hw is not None and hw.supports(marker))):
                return reason
        return None

    def runs_no(self, weights: str, hw) -> str | None:
        """"<engine> runs no <format>: <source>" where this engine has no kernel for ``weights`` on ``hw`` (cannot_run,
        the engine named); None where it runs them. What plan's note on a format it left out says."""
        why = self.cannot_run(weights, hw)
        return f"{self.display_name} runs {why}" if why else None

    def weights_refusal(self, weights: str, hw) -> str | None:
        """The one-sentence refusal of ``weights`` on ``hw`` when this engine has no kernel for them (runs_no, with the
        device and what to do); None where it runs them. What estimate, fit, simulate, capacity and an asked-for plan
        format raise: a plan the engine cannot run is never priced as if it could."""
        what = self.runs_no(weights, hw)
        return f"{what} ({getattr(hw, 'id', hw)}): choose another weight format or engine" if what else None

    def cannot_store(self, kv: str) -> str | None:
        """Why this engine has no ``kv`` cache (what its --kv-cache-dtype takes): a format narrower than 16 bit that its
        profile's ``kv_cache_dtypes`` does not list (SGLang and TensorRT-LLM 1.x quantize the cache to FP8 only); None
        where it has one, or where the profile lists none (no limit on record)."""
        kv = canonical(kv)
        values = dict(self.kv_dtype_items)
        if not values or kv in ("bf16", "fp16", "auto") or kv in values:
            return None
        return self.kv_dtype_note

    def kv_refusal(self, kv: str) -> str | None:
        """The one-sentence refusal of a ``kv`` cache this engine cannot store (cannot_store); None where it can."""
        why = self.cannot_store(kv)
        if not why:
            return None
        return f"{self.display_name} has no {canonical(kv)} KV cache: {why}; choose another KV format or engine"

    def check_kv(self, kv: str) -> None:
        """A one-line PlannerError (kv_refusal) when this engine cannot store a ``kv`` cache."""
        msg = self.kv_refusal(kv)
        if msg:
            raise PlannerError(msg)

    def check_weights(self, weights: str, hw) -> None:
        """A one-line PlannerError (weights_refusal) when this engine has no kernel for ``weights`` on ``hw``."""
        msg = self.weights_refusal(weights, hw)
        if msg:
            raise PlannerError(msg)

    def info(self) -> dict:
        """A JSON-ready summary (what result objects and ``planner engines show`` print)."""
        return {"id": self.id, "version": self.version, "name": self.name, "utilization": self.utilization,
                "kv_policy": self.kv_policy, "max_seqs": self.max_seqs, "max_batched_tokens": self.max_batched_tokens,
                "kv_block_tokens": self.kv_block_tokens, "kv_window_freed": self.kv_window_freed,
                "kv_window_shared_pool": self.kv_window_shared_pool, "kv_window_pools": self.kv_window_pools,
                "kv_swa_tokens_ratio": self.kv_swa_tokens_ratio,
                "chunked_attention_decode": self.chunked_attention_decode,
                "masked_mha_fp32_fraction": self.masked_mha_fp32_fraction, "xqa_query_groups": list(self.xqa_query_groups),
                "mla_fp8_decode": self.mla_fp8_decode, "mla_fp8_prefill_archs": list(self.mla_fp8_prefill_archs),
                "gemm_fp16_accumulate": self.gemm_fp16_accumulate, "dequant_gemm_above": self.dequant_gemm_above,
                "mixed_input_tile_m": self.mixed_input_tile_m, "mixed_input_archs": list(self.mixed_input_archs),
                "gqa_reread_archs": list(self.gqa_reread_archs), "decode_reread_archs": list(self.decode_reread_archs),
                "all_logits": self.all_logits, "logits_to_host": self.logits_to_host, "moe_gather": self.moe_gather,
                "allreduce_norm_fusion": list(self.allreduce_norm_fusion),
                "allreduce_norm_fusion_tokens": self.allreduce_norm_fusion_tokens,
                "shared_expert_stream": list(self.shared_expert_stream),
                "shared_expert_stream_tokens": self.shared_expert_stream_tokens,
                "shared_expert_fusion": list(self.shared_expert_fusion),
                "decode_reread_until": self.decode_reread_until,
                "runtime_bytes_from": dict(self.runtime_bytes_from),
                "sampler_bytes_from": dict(self.sampler_bytes_from),
                "max_model_len_check": self.max_model_len_check,
                "matrix_vector_kernels": self.matrix_vector_kernels,
                "gemm_tile": list(self.gemm_tile) if self.gemm_tile else None, "fused_projections": self.fused_projections,
                "sm_stream_limited": self.sm_stream_limited, "metal_dequant_fitted": self.metal_dequant_fitted,
                "mmq_fp32_ratio": dict(self.mmq_fp32_ratio), "mmq_reference": dict(self.mmq_reference),
                "library_gemm_bw": dict(self.library_gemm_bw), "graph_gap_s": dict(self.graph_gap_s),
                "skinny_gemm_tokens": self.skinny_gemm_tokens,
                "fp8_kv_default": self.fp8_kv_default, "chunked_prefill": self.chunked_prefill,
                "schedule": self.schedule, "prefix_caching": self.prefix_caching, "preemption": self.preemption,
                "admission": self.admission,
                "async_scheduling": self.async_scheduling, "cuda_graph_max_batch": self.cuda_graph_max_batch,
                "eplb": self.eplb, "spec_methods": list(self.spec_methods), "runs_on": list(self.runs_on), "source": self.source}


KNOWN_VENDORS = frozenset({"nvidia", "amd", "intel", "google", "apple", "qualcomm"})
_PLATFORM_WORDS = {"nvidia": "NVIDIA hardware", "amd": "AMD hardware", "intel": "Intel hardware",
                   "google": "Google TPUs", "apple": "Apple silicon", "qualcomm": "Qualcomm hardware", "cpu": "CPUs"}


_KIND_WORDS = {"gpu": "GPU", "cpu": "CPU", "tpu": "TPU", "soc": "SoC", "accelerator": "accelerator"}


def _device_words(vendor: str, kind: str | None) -> str:
    """``amd``, ``gpu`` -> AMD GPU."""
    return f"{_PLATFORM_WORDS.get(vendor, vendor).split()[0]} {_KIND_WORDS.get(kind or '', kind or 'device')}"


def _platform_words(tokens) -> list[str]:
    """``nvidia`` -> NVIDIA hardware, ``intel:gpu`` -> Intel GPUs, ``cpu`` -> CPUs."""
    out = []
    for t in tokens:
        vendor, _, kind = t.partition(":")
        out.append(f"{_device_words(vendor, kind)}s" if kind else _PLATFORM_WORDS.get(t, t))
    return out


def _a(vendor: str, kind: str | None) -> str:
    what = _device_words(vendor, kind)
    return ("an " if what[0].lower() in "aeiou" else "a ") + what


# ---- the YAML schema ------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Setting(_Strict):
    """One engine default: its value, the engine's CLI flag for it, where the value was read."""

    value: Any = None
    flag: str | None = None  # the engine's CLI flag
    key: str | None = None  # or its key in the engine's config file (TensorRT-LLM extra_llm_api_options)
    source: str
    note: str = ""


class DeviceRule(_Strict):
    """Defaults an engine picks by device memory: the first tier whose bound the device is under.

    ``tiers`` list ``{below_gib, set: {setting: value}}`` in rising order (the last may omit
    ``below_gib``); ``exclude_names`` keeps devices whose id contains one of them on the
    ``fallback`` tier (vLLM keeps the A100 on its small defaults). ``reserved_mib`` derives the
    memory fraction as (capacity - reserved) / capacity (SGLang's mem_fraction_static rule)."""

    tiers: list[dict[str, Any]] = []
    exclude_names: list[str] = []
    fallback: dict[str, Any] = {}
    reserved_mib: dict[str, float] | None = None
    source: str

    def _tier(self, hw) -> dict[str, Any]:
        if any(n in hw.id for n in self.exclude_names):
            return self.fallback
        cap_gib = hw.memory_capacity_bytes / GiB
        for t in self.tiers:
            if t.get("below_gib") is None or cap_gib < t["below_gib"]:
                return t
        return {}

    def apply(self, eng: Engine, hw, tp: int, pp: int) -> Engine:
        if hw.kind not in ("gpu", "accelerator"):
            return eng
        t = self._tier(hw)
        kw = {**t.get("set", {}), **(t.get("set_tp4", {}) if tp >= 4 else {})} if "set" in t or "set_tp4" in t else t
        kw = {k: v for k, v in kw.items() if k in _ENGINE_FIELDS and k not in eng.pinned}
        eng = replace(eng, **kw)
        r = self.reserved_mib
        if r is not None and "utilization" not in eng.pinned:
            cap_mib = hw.memory_capacity_bytes / _MIB
            graph = eng.cuda_graph_max_batch or 0
            reserved = (r["base"] + r["per_prefill_token"] * max(eng.max_batched_tokens, r["min_prefill_tokens"])
                        + r["per_graph_seq"] * graph + r["per_rank_eighth"] * tp * pp / 8)
            if cap_mib > r["floor_above_mib"]:
                reserved = max(reserved, r["floor"])
            eng = replace(eng, utilization=round((cap_mib - reserved) / cap_mib, 3))
        return eng


class KvDtypes(_Strict):
    values: dict[str, str]  # planner KV format -> the engine's value
    takes: str  # what the engine's flag accepts, for the error when a format is missing
    source: str


# a setting that is true or false
_BOOL = (lambda f: isinstance(f, bool), "true or false")


def _at_release(release: str | None, steps: tuple[tuple[str, float], ...], default: float) -> float:
    """The value of a setting a profile changes by release (``steps``: (first release, value), oldest first) for
    ``release``: the last step at or before it; ``default`` where no step applies or no finer release was named."""
    v = default
    if release:
        for since, x in steps:
            if _release_numbers(release) >= _release_numbers(since):
                v = x
    return v


def _is_release(v) -> bool:
    """A release written MAJOR.MINOR[.PATCH] ("0.6.1")."""
    return isinstance(v, str) and re.fullmatch(r"\d+\.\d+(\.\d+)?", v) is not None


def _by_release(value_ok, what: str):
    """A setting written {release: value}, releases MAJOR.MINOR[.PATCH] oldest first, each value ``value_ok``."""
    return (lambda d: isinstance(d, dict) and all(_is_release(r) and value_ok(v) for r, v in d.items())
            and [_release_numbers(r) for r in d] == sorted(_release_numbers(r) for r in d),
            f"releases written MAJOR.MINOR[.PATCH], oldest first, each with {what}")


def _count(what: str):
    """A setting that is a token count (an integer >= 0); ``what`` is the error's description."""
    return (lambda d: isinstance(d, int) and not isinstance(d, bool) and d >= 0, what)


def _arch_map(in_range, what: str):
    """A setting written {architecture or vendor: number} with every number ``in_range``."""
    return (lambda d: isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, (int, float))
                                                  and not isinstance(v, bool) and in_range(v) for k, v in d.items()),
            what)


# a setting that lists model ids or shell patterns over them, for every device or by architecture or vendor, and the
# Engine fields written so (held as a tuple of patterns, "ARCH:PATTERN" for an entry of the second form: model_listed)
_PATTERNS = (lambda g: isinstance(g, list) and all(isinstance(x, str) and x and ":" not in x for x in g))
_MODEL_PATTERNS = (lambda g: _PATTERNS(g) or (isinstance(g, dict) and all(isinstance(k, str) and k and ":" not in k
                                                                          and _PATTERNS(v) for k, v in g.items())),
                   "a list of model ids or shell patterns over them (\"llama-4-*\"), or such lists by architecture or "
                   "vendor ({hopper: [deepseek-r1]})")
MODEL_LIST_FIELDS = ("allreduce_norm_fusion", "shared_expert_stream", "shared_expert_fusion")
# a setting that lists architecture names
_ARCH_LIST = (lambda g: isinstance(g, list) and all(isinstance(x, str) for x in g), "a list of architecture names")
# the Engine fields written as a list of architectures in a profile (where a kernel path applies) and held as a tuple
ARCH_LIST_FIELDS = ("mixed_input_archs", "mla_fp8_prefill_archs", "gqa_reread_archs", "decode_reread_archs")
# the Engine fields written {architecture or vendor: number} in a profile and held as ((name, number), ...)
ARCH_MAP_FIELDS = ("mmq_fp32_ratio", "library_gemm_bw", "graph_gap_s")
# the Engine fields written {architecture or vendor: hardware id} in a profile and held as ((name, id), ...)
ARCH_ID_FIELDS = ("mmq_reference",)

# settings whose value has a shape of its own: (check, what the error says it must be)
_SHAPED_SETTINGS = {
    "kv_swa_tokens_ratio": (lambda f: isinstance(f, (int, float)) and 0.0 < f <= 1.0,
                            "the windowed layers' tokens per full-length layer token, in (0, 1]"),
    "masked_mha_fp32_fraction": (lambda f: isinstance(f, (int, float)) and 0.0 <= f <= 1.0,
                                 "a fraction of the FP32 peak in [0, 1]"),
    "xqa_query_groups": (lambda g: isinstance(g, list) and all(isinstance(x, int) and x >= 1 for x in g),
                         "a list of query heads per KV head (integers >= 1)"),
    "gemm_fp16_accumulate": _BOOL,
    "search_weights": (lambda g: isinstance(g, list) and bool(g) and all(isinstance(x, str) and x in FORMATS for x in g),
                       "a non-empty list of weight-format ids (planner formats list)"),
    "mmq_fp32_ratio": _arch_map(lambda v: v >= 0, "a map of vendors or architectures to multiples of the FP32 peak "
                                                   "(>= 0; 0: no MMQ there)"),
    "mla_fp8_decode": _BOOL,
    "library_gemm_bw": _arch_map(lambda v: 0 < v <= 1, "a map of architectures to fractions of the STREAM bandwidth in (0, 1]"),
    "graph_gap_s": _arch_map(lambda v: 0 < v < 1e-4, "a map of architectures to seconds between a replayed graph's kernels "
                                                     "(0 < s < 1e-4)"),
    "mmq_reference": (lambda d: isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, str) and v
                                                            for k, v in d.items()),
                      "a map of vendors or architectures to hardware ids"),
    "skinny_gemm_tokens": _count("a token count (an integer >= 0; 0: the library at every token count)"),
    "matrix_vector_kernels": (lambda a: a in MATRIX_VECTOR_KERNELS, " or ".join(MATRIX_VECTOR_KERNELS)),
    "mixed_input_tile_m": _count("the kernel tile's token rows (an integer >= 0; 0: the half-rate law)"),
    "hip_graphs": _BOOL,
    "prefix_cache_at_schedule": _BOOL,
    "prefix_blocks_shared": _BOOL,
    "dequant_gemm_above": _count("a token count (an integer >= 0)"),
    "ubatch_tokens": _count("a token count (an integer >= 0; 0: a step is one pass)"),
    "flash_attention": _BOOL,
    "all_logits": _BOOL,
    "logits_to_host": _BOOL,
    "moe_gather": (lambda a: a in MOE_GATHER, " or ".join(MOE_GATHER)),
    "max_model_len_check": _BOOL,
    "gemm_tile": (lambda t: t is None or (isinstance(t, list) and len(t) == 2
                                          and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in t)),
                  "two integers >= 1: the tile's output rows and tokens ([128, 128]), or null"),
    "fused_projections": _BOOL,
    "sm_stream_limited": _BOOL,
    "metal_dequant_fitted": _BOOL,
    "eplb": _BOOL,
    "runtime_bytes_from": _by_release(lambda b: isinstance(b, (str, int, float)) and not isinstance(b, bool),
                                      "the bytes from that release on ({\"0.7\": \"0.13 GiB\"})"),
    "sampler_bytes_from": _by_release(lambda b: isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0,
                                      "the bytes a logit of the sampler path from that release on "
                                      "({\"0.8\": 13, \"0.11\": 38.8})"),
    "decode_reread_until": (_is_release,
                            "a release written MAJOR.MINOR[.PATCH] (\"0.6.1\"), or null: every release"),
    **{field: (lambda n: isinstance(n, int) and not isinstance(n, bool) and n >= 0,
               f"a number of tokens (an integer >= 0; {zero})")
       for field, zero in (("allreduce_norm_fusion_tokens", "0: any"),
                           ("shared_expert_stream_tokens", "0: only in steps replayed as CUDA graphs"))},
    "recv_interval": (lambda n: isinstance(n, int) and not isinstance(n, bool) and n >= 1,
                      "a number of decode steps (an integer >= 1; 1: the scheduler polls every step)"),
    "stream_interval": (lambda n: isinstance(n, int) and not isinstance(n, bool) and n >= 1,
                        "a number of decode steps (an integer >= 1; 1: every token streamed as it is made)"),
    **{field: (lambda t: isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < 1,
               "seconds of the API server's thread (a number in [0, 1); 0: none)") for field in ("api_request_s", "api_chunk_s")},
    "attention_dp_balance": (lambda n: isinstance(n, int) and not isinstance(n, bool) and n >= 0,
                             "a number of decode steps (an integer >= 0; 0: prompts enter as they arrive)"),
    **{field: _ARCH_LIST for field in ARCH_LIST_FIELDS},
    **{field: _MODEL_PATTERNS for field in MODEL_LIST_FIELDS},
}


class EngineSpec(_Strict):
    id: str
    version: str
    name: str
    released: str | None = None
    source: str  # the engine's main documentation page for this release
    notes: list[str] = []
    settings: dict[str, Setting]
    device_rules: list[DeviceRule] = []
    # weights the engine has no kernel for on a device with a native `on_native` dtype
    unsupported: list[dict[str, str | None]] = []
    # the engine's --kv-cache-dtype value for each planner KV format it can store (16 bit: its default)
    kv_cache_dtypes: KvDtypes | None = None
    # further flags / config keys the emitters write (parallelism, quantization, ports...), each with its page
    cli: dict[str, Setting] = {}

    @model_validator(mode="after")
    def _check(self):
        bad = sorted(set(self.settings) - _ENGINE_FIELDS) + sorted(set(self.settings) & set(self.cli))
        if bad:
            raise ValueError(f"unknown engine settings {bad}; known: {sorted(_ENGINE_FIELDS)}")
        s = {k: v.value for k, v in self.settings.items()}
        checks = {"kv_policy": ("free", "total", "static"), "schedule": ("decode_first", "prefill_first"),
                  "preemption": ("recompute", "swap", None), "admission": ("reserve", "ondemand", "ratio", None),
                  "kv_window_pools": ("equal", "ratio", None)}
        for k, allowed in checks.items():
            if k in s and s[k] not in allowed:
                raise ValueError(f"{k} must be one of {allowed}, got {s[k]!r}")
        for k in BLOCK_FP8_FIELDS:
            _block_fp8_fractions(s.get(k), k)
        for k, (ok, what) in _SHAPED_SETTINGS.items():
            if s.get(k) is not None and not ok(s[k]):
                raise ValueError(f"{k} must be {what}, got {s[k]!r}")
        return self

    def to_engine(self) -> Engine:
        kw: dict[str, Any] = {}
        for k, st in self.settings.items():
            v = st.value
            if v is None and k in _REQUIRED_VALUES:
                continue  # not published: keep the documented prior of the dataclass
            if k in ARCH_MAP_FIELDS:
                v = tuple((str(a), float(r)) for a, r in (v or {}).items())
            if k in ARCH_ID_FIELDS:
                v = tuple((str(a), str(h)) for a, h in (v or {}).items())
            if k in MODEL_LIST_FIELDS and isinstance(v, dict):  # {architecture or vendor: [patterns]}
                v = [f"{where}:{p}" for where, ps in v.items() for p in ps]
            if k in ARCH_LIST_FIELDS or k in MODEL_LIST_FIELDS or k in ("cuda_graph_sizes", "spec_methods", "runs_on",
                                                                        "xqa_query_groups", "not_on_architectures",
                                                                        "search_weights"):
                v = tuple(v or ())
            if k == "gemm_tile" and v is not None:
                v = tuple(int(x) for x in v)
            if k in BLOCK_FP8_FIELDS:
                v = _block_fp8_fractions(v, k)
            if k in ("runtime_bytes", "collective_runtime_bytes", "runtime_bytes_from"):
                from planner.units import parse_quantity

                as_bytes = lambda b: parse_quantity(b, "bytes") if isinstance(b, str) else b  # noqa: E731
                v = {r: as_bytes(b) for r, b in (v or {}).items()} if k == "runtime_bytes_from" else as_bytes(v)
            if k in ("runtime_bytes_from", "sampler_bytes_from"):  # held as ((release, value), ...), oldest first
                v = tuple((str(r), float(b)) for r, b in v.items())
            kw[k] = v
        both = {**self.cli, **self.settings}
        flags = tuple((k, st.flag) for k, st in both.items() if st.flag)
        keys = tuple((k, st.key) for k, st in both.items() if st.key)
        srcs = tuple((k, st.source) for k, st in both.items())
        unsup = tuple((u["weights"], u.get("on_native"), u["reason"]) for u in self.unsupported)
        kvd = self.kv_cache_dtypes
        kw["kv_dtype_items"] = tuple(kvd.values.items()) if kvd else ()
        kw["kv_dtype_note"] = kvd.takes if kvd else ""
        return Engine(id=self.id, version=self.version, flag_items=flags, key_items=keys, source_items=srcs, unsupported=unsup,
                      rules=tuple(self.device_rules), source=f"{self.name}: {self.source}", title=self.name, **kw)


_ENGINE_FIELDS = frozenset(f for f in Engine.__dataclass_fields__
                           if f not in ("id", "version", "flag_items", "key_items", "source_items", "kv_dtype_items", "kv_dtype_note", "unsupported", "rules", "source",
                                        "title", "endpoint", "completions_overhead_s", "pinned", "requested",
                                        "release"))
# fields the cost model needs as numbers: a null in the YAML keeps the dataclass prior
_REQUIRED_VALUES = frozenset({"utilization", "kv_policy", "runtime_bytes", "max_batched_tokens", "kv_block_tokens", "kv_window_freed",
                              "max_seqs", "kernel_overhead_s", "step_overhead_s", "schedule", "prefix_caching",
                              "async_scheduling", "hip_graphs", "step_host_s", "step_host_per_seq_s", "request_overhead_s"})


# the Engine fields of block-scaled FP8 kernel fractions, each written {architecture: {dense: f, moe: f}} in a profile
BLOCK_FP8_FIELDS = ("block_fp8_bw", "block_fp8_compute")


def _block_fp8_fractions(v, key: str) -> tuple[tuple[str, float, float], ...]:
    """``{architecture: {dense: f, moe: f}}`` as the Engine field ``key``'s tuple; each fraction in (0, 1]."""
    if not v:
        return ()
    if not isinstance(v, dict):
        raise ValueError(f"{key} must map architectures to {{dense: F, moe: F}}, got {v!r}")
    out = []
    for arch, fr in v.items():
        if not isinstance(fr, dict) or set(fr) != {"dense", "moe"}:
            raise ValueError(f"{key}.{arch} must give dense and moe fractions, got {fr!r}")
        d, m = float(fr["dense"]), float(fr["moe"])
        if not (0.0 < d <= 1.0 and 0.0 < m <= 1.0):
            raise ValueError(f"{key}.{arch} fractions must lie in (0, 1], got {fr!r}")
        out.append((str(arch), d, m))
    return tuple(out)


def block_fp8_as_written(v: tuple[tuple[str, float, float], ...]) -> dict:
    """The Engine field back in the profile's form, ``{architecture: {dense: f, moe: f}}``."""
    return {a: {"dense": d, "moe": m} for a, d, m in v}


# ---- loading --------------------------------------------------------------------------------
# llama.cpp names its releases by build number (b3000, b6918); 'unpinned' (the bundled tables that name no build, 2023-24
# builds) sorts below every build, so the newest llama.cpp profile is the newest build's
LLAMACPP_GRAPH_BUILD = 3000  # builds from here on replay single-token decode as a CUDA graph (engines/llamacpp-b3000.yaml)


def llamacpp_build(text: str | None) -> int | None:
    """The build number a llama.cpp version names ('b6918', 'b6918 (2f68ce7cf)'); None when it names none."""
    m = re.search(r"\bb(\d+)\b", (text or "").strip().lower())
    return int(m.group(1)) if m else None


def _version_key(v: str) -> tuple:
    build = llamacpp_build(v)
    if build is not None:
        return (build,)
    if v.strip().lower() == "unpinned":
        return (-1,)
    return tuple(int(p) if p.isdigit() else p for p in v.replace("-", ".").split("."))


def _release_numbers(v: str) -> tuple[int, ...]:
    """A release's major, minor and patch numbers ('0.6.1.post1' -> (0, 6, 1); '0.7' -> (0, 7, 0))."""
    nums = [int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3]]
    return tuple(nums + [0] * (3 - len(nums)))


def next_release(v: str) -> str:
    """The release after ``v`` in its minor series ('0.6.1' -> '0.6.2'; '0.6' -> '0.6.1')."""
    major, minor, patch = _release_numbers(v)
    return f"{major}.{minor}.{patch + 1}"


def _engines_dir() -> Path:
    from planner.specs.loader import data_dir

    return data_dir("engines")


def _calibration(root: Path) -> dict[str, dict]:
    """Fitted host overheads per ``ID@VERSION`` from ``engines/calibration/*.yaml``."""
    from planner.specs.loader import read_yaml

    out: dict[str, dict] = {}
    cal = root / "calibration"
    if not cal.is_dir():
        return out
    for path in sorted(cal.glob("*.yaml")):
        data = read_yaml(path)
        if not isinstance(data, dict) or "engine" not in data:
            continue  # other tables live beside the engine files (uncertainty bands)
        if not isinstance(data["engine"], str):
            raise PlannerError(f"{path}: 'engine' must read ID@VERSION, got {data['engine']!r}")
        fitted = {k: v for k, v in data.items() if k in _CALIBRATED and isinstance(v, (int, float))}
        out.setdefault(data["engine"], {}).update(fitted)
    return out


_CALIBRATED = frozenset({"step_host_s", "step_host_per_seq_s", "request_overhead_s", "chat_request_overhead_s", "kernel_overhead_s",
                         "api_request_s", "api_chunk_s",
                         "step_overhead_s"})


# the profiles with a candidate calibration's engine-layer values instead of the files' fitted ones, set by
# planner.costmodel.params.using() (built once there: ``with_fields``)
FIELD_OVERRIDE: ContextVar[dict | None] = ContextVar("planner_engine_profiles", default=None)


@functools.lru_cache(maxsize=None)
def raw_profiles() -> dict[str, Engine]:
    """Every engine profile as its YAML says, keyed ``ID@VERSION`` (no fitted values)."""
    from planner.specs.loader import load_spec_file

    out: dict[str, Engine] = {}
    for path in sorted(_engines_dir().glob("*.yaml")):
        eng = load_spec_file(EngineSpec, path).to_engine()
        if eng.name in out:
            raise PlannerError(f"{path}: engine {eng.name} is defined twice")
        out[eng.name] = eng
    return out


def with_fields(fields: dict[str, dict]) -> dict[str, Engine]:
    """Every profile with ``fields`` ({ID@VERSION or ID: {Engine field: value}}) laid over its YAML values."""
    out = dict(raw_profiles())
    for name, fitted in fields.items():
        fitted = {k: v for k, v in fitted.items() if k in _CALIBRATED}
        if name in out:
            out[name] = replace(out[name], **fitted)
        elif "@" not in name:
            for k in [k for k in out if k.split("@")[0] == name]:
                out[k] = replace(out[k], **fitted)
    return out


@functools.lru_cache(maxsize=None)
def _calibrated_profiles() -> dict[str, Engine]:
    return with_fields(_calibration(_engines_dir()))


def profiles() -> dict[str, Engine]:
    """Every engine profile, keyed ``ID@VERSION``, with the fitted engine-layer values of the calibration in force
    (the files in engines/calibration/, or a candidate set by ``planner.costmodel.params.using``)."""
    o = FIELD_OVERRIDE.get()
    return _calibrated_profiles() if o is None else o


def _clear_profiles() -> None:
    raw_profiles.cache_clear()
    _calibrated_profiles.cache_clear()


profiles.cache_clear = _clear_profiles  # callers that rewrite calibration files clear it


def engine_ids() -> list[str]:
    """Engine ids (newest version of each) and every ``ID@VERSION``."""
    ps = profiles()
    return sorted({n.split("@")[0] for n in ps}) + sorted(ps, key=lambda n: (n.split("@")[0], _version_key(n.split("@")[1])))


def era_profile(eid: str, version: str) -> str | None:
    """``ID@VERSION`` of the profile that prices release ``version`` of engine ``eid`` when it has none of its own: the
    profile of its era. vLLM from 0.8 on runs the V1 engine, with asynchronous scheduling on by default from 0.14 (the 0.15
    profile) and off before (0.11), before 0.8 the V0 engine (0.6); TensorRT-LLM from
    0.19 on runs trtllm-bench without an engine build on the PyTorch backend (1.1), 0.10-0.18 the C++ runtime's
    in-flight batching (0.14), earlier releases static batching (0.9); llama.cpp builds from b3000 on replay decode as a
    CUDA graph (b3000), earlier ones launch each op (unpinned); another engine its newest profile. None when
    the version does not parse or the engine has no profile."""
    ps = profiles()
    if eid == "llamacpp":
        build = llamacpp_build(version)
        if build is None:
            return None
        era = f"b{LLAMACPP_GRAPH_BUILD}" if build >= LLAMACPP_GRAPH_BUILD else "unpinned"
        return f"{eid}@{era}" if f"{eid}@{era}" in ps else None
    m = re.match(r"v?(\d+)(?:\.(\d+))?", (version or "").strip())
    if m is None or not any(e.id == eid for e in ps.values()):
        return None
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    if eid == "trtllm":
        era = "1.1" if (major, minor) >= (0, 19) else "0.14" if (major, minor) >= (0, 10) else "0.9"
    elif eid == "vllm":
        era = "0.15" if (major, minor) >= (0, 14) else "0.11" if (major, minor) >= (0, 8) else "0.6"
    else:
        return max((e for e in ps.values() if e.id == eid), key=lambda e: _version_key(e.version)).name
    return f"{eid}@{era}" if f"{eid}@{era}" in ps else None


def era_note(eid: str, era: str) -> str:
    """A few words on what an era profile covers (for the message that names it)."""
    return {"vllm@0.15": "the V1 engine with asynchronous scheduling, vLLM 0.14 on",
            "vllm@0.11": "the V1 engine without asynchronous scheduling by default, vLLM 0.8-0.13", "vllm@0.6": "the V0 engine, before 0.8",
            "trtllm@1.1": "the PyTorch backend, 0.19 on", "trtllm@0.14": "the C++ runtime's in-flight batching, 0.10-0.18",
            "trtllm@0.9": "static batching, before 0.10",
            f"llamacpp@b{LLAMACPP_GRAPH_BUILD}": f"CUDA graphs for single-token decode, builds b{LLAMACPP_GRAPH_BUILD} on",
            "llamacpp@unpinned": f"per-op host launches, builds before b{LLAMACPP_GRAPH_BUILD}"}.get(era, f"the newest {eid} profile")


# the engines' own names as users write them ("TensorRT-LLM", "llama.cpp"): the same engine as the profile id
_ENGINE_ALIASES = {"tensorrt-llm": "trtllm", "tensorrt_llm": "trtllm", "tensorrtllm": "trtllm", "trt-llm": "trtllm",
                   "trt_llm": "trtllm", "llama.cpp": "llamacpp", "llama-cpp": "llamacpp", "llama_cpp": "llamacpp"}


def _engine_id(text: str) -> str:
    """The profile id an engine's name means, whatever its case (``vLLM``, ``SGLang``, ``TensorRT-LLM``)."""
    t = text.strip().lower()
    return _ENGINE_ALIASES.get(t, t)


def get_engine(name: "str | Engine") -> Engine:
    """An Engine passes through as it is (so callers that take either need no isinstance test); ``"vllm"``: the newest
    vLLM profile; ``"vllm@0.15"``: that release; ``"vllm@0.15.1"``: the profile of its minor series; ``"vllm@0.11"``, a
    release without a profile: the profile of its era (era_profile), which carries the release asked for in
    ``requested`` so that its ``era_note`` can say so wherever the estimate is shown."""
    if isinstance(name, Engine):
        return name
    ps = profiles()
    if name in ps:
        return ps[name]
    given = name
    if "@" not in name:  # a version written the way pip or a page writes it: "vllm==0.10.1", "vLLM 0.11", "TensorRT-LLM v1.0"
        m = re.match(r"\s*([A-Za-z][\w.\-]*?)\s*(?:==|\s)\s*(v?\d[\w.\-]*|b\d+)\s*$", name)
        if m:
            name = f"{m.group(1)}@{m.group(2)}"
    base, _, ver = name.partition("@")
    base = _engine_id(base)
    m = re.match(r"v?(\d[\w.\-]*)", ver.strip())
    ver = m.group(1) if m else ver  # "0.15.1 (per the release notes)" names release 0.15.1
    versions = sorted((e for e in ps.values() if e.id == base), key=lambda e: _version_key(e.version))
    if versions and not ver:
        return versions[-1]
    if versions:
        # "vllm@0.15.1" resolves to the 0.15 profile: a profile covers its minor series
        for e in reversed(versions):
            if _version_key(ver)[:len(_version_key(e.version))] == _version_key(e.version):
                # a release of its minor series carries its number where the profile bounds a kernel path by release
                return replace(e, release=ver) if e.release_bounded and ver != e.version else e
        era = era_profile(base, ver)
        if era is not None:  # the profile of its release era, saying so (Engine.era_note): nothing silently defaulted
            return replace(ps[era], requested=f"{base}@{ver}", release=ver)
        raise unknown(f"{base} version", ver, [e.version for e in versions])
    raise unknown("engine", given, engine_ids())


def era_notes(engine: "Engine | str") -> list[str]:
    """``[Engine.era_note]`` of ``engine`` (a profile or the name the user gave), or [] when it names its own profile."""
    note = get_engine(engine).era_note
    return [note] if note else []


def __getattr__(name: str):
    """``ENGINES``: the newest profile of each engine id (kept for callers of the old dict)."""
    if name == "ENGINES":
        return {i: get_engine(i) for i in sorted({e.id for e in profiles().values()})}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
