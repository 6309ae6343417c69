"""What one engine step costs: the per-layer operator graph, FLOPs and bytes per op,
and a roofline time per op, vectorized over plans.

A step processes ``prefill_seqs`` sequences that each add ``prefill_tokens`` new
tokens on top of ``prefill_past`` cached ones (a whole prompt, or one chunk of it),
together with ``decode_seqs`` sequences that each add one token at mean context
``decode_ctx``. Static prefill, decode and in-flight mixed steps are all this one
function; prefill and decode are never written twice.

Time of an op on one device (the slowest pipeline stage sets the pace):
    t = max(FLOPs / (peak x fraction), bytes / (bandwidth x fraction)) + kernel overhead
Communication ops take the collective's latency + bandwidth time. Every op
reports which of compute / memory / communication bounds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from planner.costmodel.collectives import Fabric, all_reduce_time, all_to_all_time, host_link_bytes_per_s, p2p_time
from planner.costmodel.eplb import eplb_imbalance, expert_slots
from planner.costmodel.longctx import causal_pairs as _pairs, cp_ring, sparse_terms
from planner.costmodel.memory import LINEAR_STATE_BYTES, chunks_decode, frees_window
from planner.costmodel.params import Kernels, kernels_for, scale_fabric
from planner.costmodel.plans import PlanArrays
from planner.costmodel.profile import measured_decode_attention, measured_experts, measured_moe_loop
from planner.costmodel.roofline import gemm_efficiency, tile_efficiency, wave_efficiency
from planner.costmodel.shard import attention_shard, linear_shard
from planner.specs.engine import Engine
from planner.specs.hardware import DTYPES, EXP_PER_SM_CLOCK, Hardware
from planner.specs.model import Model

BOUND_NAMES = ("compute", "memory", "communication", "overhead")

# Vector-unit (non-tensor-core) work. Dequantizing one stored element to the 16-bit compute type takes a few
# integer/convert ops and one scale multiply; weight-only GEMM kernels (Marlin/Machete-style W4A16, MXFP4 on
# GPUs without FP4 tensor cores) dequantize each weight once per M tile of the output.
DEQUANT_OPS_PER_ELEM = 4.0
DEQUANT_TILE_M = 64.0
# llama.cpp's Metal matrix-matrix kernel (ggml-metal.metal kernel_mul_mm, taken for two tokens or more: ggml-metal.m
# runs kernel_mul_mv_* for one) computes a 64-row weight tile against a 32-column token tile per threadgroup
# (BLOCK_SIZE_M 64, BLOCK_SIZE_N 32 in the 2023-24 source; NR0 64, NR1 32 today), unpacking its weight tile into
# threadgroup memory as 16-bit values first: every weight element is unpacked once per 32 tokens
METAL_MM_TILE_TOKENS = 32.0
# fraction of the fp32 (CUDA-core / SIMD) peak that dequantization and other non-tensor work reaches, when the
# device spec has no measured elementwise fraction: a prior (conversions and shifts are not fused multiply-adds)
VECTOR_FRACTION_PRIOR = 0.5
# host calls per expert an expert loop makes (planner/harness/transformer.py _moe: select, gather, two GEMMs, SiLU,
# the gate weighting, the scatter-add)
LOOP_CALLS_PER_EXPERT = 7.0
# kernels (host calls) one MoE layer's grouped path launches per op, each paying the per-kernel gap (a dense MLP is
# 3: up, activation, down). Router: the router GEMM, then the top-k selection (softmax/sigmoid + top-k, one fused
# kernel). Permute: the rows sorted/aligned by expert, the gather of each token's row per chosen expert, the weighted
# combine back into token order. Experts: the gate/up grouped GEMM and the down grouped GEMM; moe_act: the activation
# between them. The engines' MoE code has this shape: vLLM fused_moe (topk_softmax, moe_align_block_size, fused_moe
# kernel w1, silu_and_mul, fused_moe kernel w2, moe_sum: its w1 GEMM gathers the rows, so no gather kernel) and
# TensorRT-LLM's CUTLASS MoE runner (routing, expandInputRows, grouped GEMM 1, gated activation, grouped GEMM 2,
# finalizeMoeRouting). Fusions (an activation in a GEMM epilogue) save one or two; the count is the unfused one.
GROUPED_MOE_LAUNCHES = {"router": 2.0, "moe_permute": 3.0, "experts": 2.0, "moe_act": 1.0}
# an engine whose first grouped GEMM gathers each row's hidden state itself (Engine.moe_gather "gemm": vLLM's and
# SGLang's Triton fused_moe load A through sorted_token_ids) runs no gather kernel: alignment and the weighted sum only
GEMM_GATHER_PERMUTE_LAUNCHES = 2.0
# kernels MLA's projections launch per layer (DeepSeek-V2/V3 as vLLM's MLAAttention and TensorRT-LLM's MLA module
# run them): the input side is the fused q_a/kv_a down-projection, q_b and the key half of kv_b (in decode a batched
# GEMM absorbed into the query); the output side is the value half of kv_b (absorbed, batched) and o_proj
MLA_PROJ_LAUNCHES = {"qkv_proj": 3.0, "o_proj": 2.0}


class Op(str, Enum):
    """Every operator the step model knows, by the name the breakdown prints. The one list of op names:
    the serving models, the search and the reports refer to ops through it."""

    ATTN_NORM = "attn_norm"
    QKV_PROJ = "qkv_proj"
    ATTENTION = "attention"  # full-attention layers
    ATTENTION_SWA = "attention_swa"  # sliding-window layers
    ATTENTION_CHUNKED = "attention_chunked"  # chunked local attention (Llama-4: a query sees its own chunk)
    QK_NORM = "qk_norm"  # per-head RMSNorm of queries and keys (Qwen3): one fused kernel per layer
    LATENT_NORM = "latent_norm"  # MLA: the RMSNorms of the query and KV latents (DeepSeek-V2/V3), two kernels per layer
    ACT_QUANT = "act_quant"  # block-scaled checkpoints: each GEMM input quantized per token and channel block, a kernel each
    O_PROJ = "o_proj"
    TP_ALLREDUCE = "tp_allreduce"
    MLP_NORM = "mlp_norm"
    MLP_UP = "mlp_up"
    MLP_ACT = "mlp_act"
    MLP_DOWN = "mlp_down"
    ROUTER = "router"
    MOE_PERMUTE = "moe_permute"  # gather tokens by expert before the grouped GEMM, scatter and weight after
    EXPERTS = "experts"
    MOE_ACT = "moe_act"  # the experts' activation between their two grouped GEMMs (SwiGLU over every routed row)
    SHARED_EXPERT = "shared_expert"
    EP_ALLTOALL = "ep_alltoall"
    EMBEDDING = "embedding"
    FINAL_NORM = "final_norm"
    LM_HEAD = "lm_head"
    LOGITS_COPY = "logits_copy"  # the output rows' logits to host memory (Engine.logits_to_host: llama.cpp samples on the CPU)
    PP_SENDRECV = "pp_sendrecv"
    CP_RING = "cp_ring"  # context parallelism: KV blocks around the ring (prefill), partial outputs combined (decode)
    WEIGHT_STREAM = "weight_stream"
    CPU_EXPERTS = "cpu_experts"  # cold experts on the host CPU, what the GPU's hot experts do not cover (moe_offload.py)
    CPU_ATTENTION = "cpu_attention"  # decode attention on the host CPU, what the GPU's layer does not cover
    LORA = "lora"  # batched multi-adapter GEMMs (SGMV/BGMV) of LoRA adapters (costmodel/lora.py)
    # linear-attention (Gated DeltaNet) layers: input projection, causal convolution, the gated delta rule over the
    # recurrent state, the gated norm of its output, output projection
    LINEAR_IN_PROJ = "linear_in_proj"
    LINEAR_CONV = "linear_conv"
    LINEAR_CORE = "linear_core"
    LINEAR_NORM = "linear_norm"
    LINEAR_OUT_PROJ = "linear_out_proj"
    # DeepSeek Sparse Attention's lightning indexer: FP8 scores of every cached token for each query, then top-k
    INDEXER = "indexer"

    def __str__(self) -> str:  # the plain name in tables and JSON
        return self.value


# the linear layers a block-scaled checkpoint quantizes (router, embedding and lm_head stay 16 bit): where a plan serves
# that format, their weights stream at the engine's block-FP8 kernel bandwidth (Engine.block_fp8_bw)
BLOCK_SCALED_DENSE = frozenset({Op.QKV_PROJ, Op.O_PROJ, Op.MLP_UP, Op.MLP_DOWN, Op.SHARED_EXPERT, Op.LINEAR_IN_PROJ,
                                Op.LINEAR_OUT_PROJ})
# the dense GEMMs an engine hands to the vendor BLAS library (Engine.library_gemm_bw): its linear layers and lm_head;
# routed experts run in the engine's own grouped kernels
LIBRARY_GEMMS = BLOCK_SCALED_DENSE | {Op.LM_HEAD}

# Attention without a fused kernel (Engine.flash_attention False; llama.cpp's CUDA backend without -fa, ggml graph
# KQ = mul_mat(K, Q), soft_max_ext, KQV = mul_mat(V, KQ)) moves every score through memory, bytes per score and head:
# a prompt pass's KQ runs in cuBLAS with FP16 output (2) that ggml converts to its F32 result (2 read, 4 written), the
# softmax reads and writes F32 (8), and KQV converts the F32 probabilities to FP16 for cuBLAS (4 read, 2 written) and
# reads them back (2): 24. A decode pass's matrix-vector kernels write F32 scores (4), the softmax reads and writes
# them (8) and KQV reads them (4): 16.
SCORE_BYTES_PREFILL = 24.0
SCORE_BYTES_DECODE = 16.0

# ops that run once per step (not once per layer)
ONCE_PER_STEP = frozenset({Op.EMBEDDING, Op.FINAL_NORM, Op.LM_HEAD, Op.LOGITS_COPY, Op.PP_SENDRECV, Op.WEIGHT_STREAM})
# bytes a logit takes where an engine hands logits to the host: FP32 (llama.cpp's llama_get_logits returns float)
LOGIT_BYTES = 4.0


@dataclass
class Step:
    prefill_seqs: np.ndarray | float = 0.0
    prefill_tokens: np.ndarray | float = 0.0
    prefill_past: np.ndarray | float = 0.0
    decode_seqs: np.ndarray | float = 0.0
    decode_ctx: np.ndarray | float = 0.0
    # tokens each decoding sequence adds in this step: 1, or k+1 when a speculative step verifies k drafts
    decode_tokens: np.ndarray | float = 1.0

    def arrays(self):
        return tuple(np.asarray(x, dtype=float) for x in (self.prefill_seqs, self.prefill_tokens, self.prefill_past,
                                                          self.decode_seqs, self.decode_ctx, self.decode_tokens))


@dataclass
class OpCost:
    name: str
    kind: str  # gemm | attention | elementwise | comm | memory
    count: float  # how many times per step on one device (layers in the stage, or 1)
    flops: np.ndarray  # per device, per occurrence
    bytes: np.ndarray
    time_s: np.ndarray  # per occurrence, including overhead
    bound_parts: tuple | None  # (tc, tm, overhead, comm): what ``bound`` is worked out from; None when the step was
    # costed with parts=False (the search keeps only the times, so these four arrays per op are not held)
    source: str = "roofline"
    algorithm: str = ""
    weight_bytes: np.ndarray | float = 0.0  # weight bytes this op reads (per occurrence)
    launches: np.ndarray | float = 1.0  # kernels (host calls) per occurrence, each paying the per-kernel gap

    @property
    def bound(self) -> np.ndarray:
        """Index into BOUND_NAMES per plan: compute, memory, communication or overhead (the breakdown's column;
        derived on demand so the search does not pay for it)."""
        if self.bound_parts is None:
            raise ValueError(f"{self.name}: this step was costed with parts=False, so its bound is not known")
        tc, tm, ovh, comm = self.bound_parts
        if comm is not None:
            b = np.where(comm > 0, 2, 3)
        else:
            b = np.where(ovh > np.maximum(tc, tm), 3, np.where(tc >= tm, 0, 1))
        return np.broadcast_to(b, self.time_s.shape)


@dataclass
class StepCost:
    ops: list[OpCost]
    time_s: np.ndarray  # wall time of the step (all stages, as one token sees it)
    stage_time_s: np.ndarray  # time of the slowest pipeline stage (sets throughput)
    # a step outside CUDA graphs: the host's time to issue its kernel calls, the least it takes (0: in graphs)
    host_floor_s: np.ndarray | float = 0.0

    def op(self, name: Op) -> OpCost | None:
        return next((o for o in self.ops if o.name == name), None)

    def repeated(self, n) -> "StepCost":
        """This step run ``n`` times over (per plan): every op's time, work and traffic per occurrence times n."""
        n = np.asarray(n, float)
        ops = []
        for o in self.ops:
            parts = None if o.bound_parts is None else tuple(None if x is None else np.asarray(x, float) * n
                                                             for x in o.bound_parts)
            ops.append(replace(o, flops=o.flops * n, bytes=o.bytes * n, time_s=o.time_s * n, bound_parts=parts,
                               weight_bytes=np.asarray(o.weight_bytes, float) * n, launches=np.asarray(o.launches, float) * n))
        return StepCost(ops=ops, time_s=self.time_s * n, stage_time_s=self.stage_time_s * n,
                        host_floor_s=np.asarray(self.host_floor_s, float) * n)

    def ops_time_s(self) -> np.ndarray:
        """Time of one pipeline stage's ops, the once-per-step ones included: the device's work, before host time."""
        return sum(o.time_s * o.count for o in self.ops)

    def layers_time_s(self) -> np.ndarray:
        """Time of one pipeline stage's decoder layers (everything but the once-per-step ops)."""
        return sum(o.time_s * o.count for o in self.ops if o.name not in ONCE_PER_STEP)

    def draft_token_time_s(self) -> np.ndarray:
        """Cost of drafting one token with a one-layer head (MTP / EAGLE style): one decoder layer and lm_head."""
        layers = np.maximum(self.op(Op.QKV_PROJ).count, 1.0)
        return self.layers_time_s() / layers + self.op(Op.LM_HEAD).time_s


class CostModel:
    """Step costs of one model on one hardware type, for arrays of plans."""

    moe_offload = None  # a costmodel.moe_offload.MoeOffload plan field: selects the CPU-assisted builders
    lora = None  # a costmodel.lora.LoraCost: adds the adapter builder to every layer
    _any_dequant = True  # set per step (_Ctx.of): whether any plan dequantizes weights on the vector units
    _block_dense = _block_moe = 0.0  # set per step (_Ctx.of): 1 / block-FP8 weight-stream fraction - 1, per plan (0: none)
    _block_c_dense = _block_c_moe = 1.0  # set per step (_Ctx.of): block-FP8 compute-rate fraction, per plan (1: none)
    _parts = True  # set per step (step's parts=): whether ops keep their bound parts
    _gemm_dtype = None  # set per step (_Ctx.of): the plans' GEMM compute dtype (None: they differ)

    def __init__(self, model: Model, hw: Hardware, *, engine: Engine | None = None, profile=None,
                 weight_stream: tuple[float, float] | None = None, kernels: Kernels | None = None):
        """``weight_stream`` = (fraction of the weights not resident, bytes/s of the link they stream over):
        that share of every weight read comes over the link, prefetched while the step computes."""
        self.weight_stream = weight_stream
        self.model = model
        self.hw = hw
        # kernel/engine layer (engines/calibration/): efficiencies relative to the silicon microbenchmarks
        k = self.kernels = kernels if kernels is not None else kernels_for(engine or Engine(), hw)
        # the links as the engine's collective kernels reach them: the fitted all-reduce efficiency scales every
        # collective of the engine (all-reduce, EP all-to-all, send/recv). Measured against the attention-DP rows of
        # modern_per_gpu.csv (not fitted), the EP all-to-all at the link's nccl-tests rate makes qwen3-235b dep8 20 %
        # too fast; at the engine's fitted collective efficiency it is 18 % too slow
        self.fabric = scale_fabric(Fabric.of(hw), k.allreduce)
        self.bw = hw.memory_bandwidth_bytes_per_s * hw.achievable.memory.fraction * k.memory
        ov = hw.overheads
        engine = engine or Engine()
        self.engine = engine
        # the engine's block-scaled FP8 kernels on this architecture: (dense, grouped MoE) fractions of self.bw
        self.block_fp8_bw = next(((d, m) for a, d, m in getattr(engine, "block_fp8_bw", ())
                                  if a == hw.architecture), (1.0, 1.0))
        # and the fractions of the plain FP8 GEMM rate they compute at where many tokens make a GEMM compute bound
        self.block_fp8_compute = next(((d, m) for a, d, m in getattr(engine, "block_fp8_compute", ())
                                       if a == hw.architecture), (1.0, 1.0))
        # the fraction of self.bw at which the engine's 16-bit dense GEMMs stream weights here, where it hands them to the
        # vendor library's tiled kernels (Engine.library_gemm_bw; 1: the device's rate), and the most tokens its own
        # skinny kernel takes before that (Engine.skinny_gemm_tokens; 0: the library at every token count)
        self.library_bw = float(dict(getattr(engine, "library_gemm_bw", ()) or ()).get(hw.architecture, 1.0))
        self.skinny_tokens = int(getattr(engine, "skinny_gemm_tokens", 0) or 0)
        # a capture's own measured overheads (datasheet devices have none) + the engine layer's
        self.kernel_s = (ov.kernel_s.value if ov.kernel_s else 0.0) + k.kernel_s
        self.step_s = (ov.step_s.value if ov.step_s else 0.0) + k.step_s
        self.half_m = hw.achievable.matmul_half_m or k.gemm_half_m
        # GEMMs timed in whole waves of CTA tiles over the SMs (Engine.gemm_tile: llama.cpp's cuBLAS path on NVIDIA
        # GPUs; Hardware.sm_count): where both are known, the dense projections' efficiency is their wave efficiency
        # instead of the small-M curve; separate q/k/v and gate/up GEMMs where the engine does not fuse them
        tile = getattr(engine, "gemm_tile", None)
        self.sms = int(hw.sm_count.value) if getattr(hw, "sm_count", None) is not None else 0
        self.wave_tile = tuple(tile) if tile and self.sms and hw.vendor == "nvidia" else None
        self.fused_projections = bool(getattr(engine, "fused_projections", True))
        el = hw.achievable.elementwise
        self.elem_rate = hw.peak("fp32") * el.fraction if el is not None and hw.supports("fp32") else None
        # the vector-unit ceiling for work that does not run on tensor cores (KV and weight dequantization)
        self.vec_rate = hw.peak("fp32") * (el.fraction if el is not None else VECTOR_FRACTION_PRIOR) if hw.supports("fp32") else None
        # which GEMMs over a few tokens may run as matrix-vector kernels at that rate (Engine.matrix_vector_kernels):
        # every engine's on a device with no matrix rate (Apple GPUs) or on a CPU, whose matrix extension (AMX: 16-row
        # tiles) the same cores feed and the GPUs' tile law does not price
        matrix_units = hw.kind != "cpu" and any(hw.supports(d) for d in DTYPES if d not in ("fp64", "fp32"))
        self.matrix_vector = engine.matrix_vector_kernels if matrix_units else "all"
        # softmax's exponentials on the special function units, one per attention score (Hardware.exp_rate): every
        # fitted attention efficiency holds them at the 16 per clock per SM of the devices it was fitted on, so a part
        # with more (Blackwell Ultra: 32) saves that share of its attention time (_attention_core); 1: nothing changes
        ref, own = hw.exp_rate(EXP_PER_SM_CLOCK), hw.exp_rate()
        self.exp_ref_rate = ref
        self.exp_saved = 1.0 - ref / own if ref and own else 0.0
        self.attn_peak = hw.peak("bf16") if hw.supports("bf16") else hw.peak("fp16") if hw.supports("fp16") else None
        # decode attention in a masked multi-head kernel: its QK and PV products on the CUDA cores (Engine
        # masked_mha_fp32_fraction; 0: tensor-core decode attention), unless the model's query heads per KV head are
        # served by the engine's GQA kernel (xqa_query_groups)
        mmha = float(getattr(engine, "masked_mha_fp32_fraction", 0.0) or 0.0)
        groups = model.num_heads / max(model.num_kv_heads, 1)
        xqa = any(groups == g for g in getattr(engine, "xqa_query_groups", ()) or ())
        self.mmha_rate = hw.peak("fp32") * mmha if mmha > 0 and not xqa and hw.supports("fp32") else None
        self.collective_call_s = float(getattr(engine, "collective_call_s", 0.0) or 0.0)  # per collective, beyond a kernel
        # 16-bit GEMMs that accumulate in FP16 (Engine.gemm_fp16_accumulate: llama.cpp's cuBLAS path) run at the device's
        # FP16-accumulate rate (Hardware.fp16_accumulate: twice the FP32-accumulate rate on GeForce parts; 1 elsewhere)
        self.acc16_gain = hw.fp16_accumulate_gain() if getattr(engine, "gemm_fp16_accumulate", False) else 1.0
        # above this many tokens a weight narrower than 16 bit is dequantized to FP16 by a kernel of its own before the
        # GEMM (Engine.dequant_gemm_above: llama.cpp's CUDA and HIP backends, so NVIDIA and AMD GPUs); 0: never
        cuda_or_hip = hw.vendor in ("nvidia", "amd") and hw.kind in ("gpu", "soc")
        self.dequant_above = int(getattr(engine, "dequant_gemm_above", 0) or 0) if cuda_or_hip else 0
        # a step of more tokens runs as several forward passes of at most this many (Engine.ubatch_tokens; 0: one)
        self.ubatch = int(getattr(engine, "ubatch_tokens", 0) or 0)
        # attention scores materialized in memory (Engine.flash_attention False: llama.cpp without -fa)
        self.flash_attention = bool(getattr(engine, "flash_attention", True))
        # every prompt token through lm_head (Engine.all_logits: llama.cpp's logits_all, its perplexity tool), and the
        # output rows' logits copied to host memory over the host link where the engine samples on the CPU
        # (Engine.logits_to_host; a device without a host link of its own, an Apple SoC or a CPU, reads them where they are)
        self.all_logits = bool(getattr(engine, "all_logits", False))
        self.logits_host_bw = host_link_bytes_per_s(hw) if getattr(engine, "logits_to_host", False) else np.inf
        # the engine's layers for this model on this device run the norm after each TP all-reduce inside it
        # (_fused_norm), the shared experts inside the routed experts' grouped GEMM or on a second stream (_moe_mlp):
        # Engine.allreduce_norm_fusion, shared_expert_fusion, shared_expert_stream, and the most tokens a step on a
        # device where the first and the last apply (0: any; the stream's 0: in steps replayed as CUDA graphs)
        listed = lambda field: Engine.model_listed(getattr(engine, field, ()), model.id, hw)  # noqa: E731
        self.norm_fusion = listed("allreduce_norm_fusion")
        self.norm_fusion_tokens = int(getattr(engine, "allreduce_norm_fusion_tokens", 0) or 0)
        mo = model.moe
        self.shared_expert_fusion = (bool(mo and mo.num_shared_experts) and listed("shared_expert_fusion")
                                     and (mo.shared_expert_intermediate_size or mo.expert_intermediate_size)
                                     == mo.expert_intermediate_size)  # an expert slot holds an expert's width
        self.shared_expert_stream = listed("shared_expert_stream")
        self.stream_tokens = int(getattr(engine, "shared_expert_stream_tokens", 0) or 0)
        # ... and, on the engine's gqa_reread_archs, its decode reads each KV head once per query head from memory, as
        # a decode kernel of one thread block per query head does on its decode_reread_archs whatever runs the prompt
        # (up to the last release that ran that kernel, decode_reread_until)
        arch = hw.architecture
        paged = (arch in (getattr(engine, "decode_reread_archs", ()) or ())
                 and engine.release_at_most(engine.decode_reread_until))  # listed: engine is an Engine
        self.gqa_rereads = not model.attention.mla and (
            (not self.flash_attention and arch in (getattr(engine, "gqa_reread_archs", ()) or ())) or paged)
        self.paged_rereads = self.gqa_rereads and paged
        # engine host time per step: fixed + per sequence (see step); hidden under GPU time with async scheduling
        self.step_host_s = float(getattr(engine, "step_host_s", 0.0) or 0.0)
        self.step_host_per_seq_s = float(getattr(engine, "step_host_per_seq_s", 0.0) or 0.0)
        self.async_scheduling = bool(getattr(engine, "async_scheduling", False))
        # decode steps between the scheduler's polls for new requests (Engine.recv_interval): a closed loop's TTFT waits
        # for the next poll (serving/batching.py _steady)
        self.recv_interval = int(getattr(engine, "recv_interval", 1) or 1)
        # attention DP: the decode steps a prompt is held to line one up for every rank (Engine.attention_dp_balance;
        # 0: none), where a request does not set its own (serving/batching.py Techniques.adp_balance)
        self.adp_balance = int(getattr(engine, "attention_dp_balance", 0) or 0)
        # prompts run in steps of their own while they wait, the running decodes paused (Engine.schedule
        # prefill_first: SGLang without mixed chunks), priced so in the steady state (serving/batching.py _steady)
        self.prefill_first = getattr(engine, "schedule", "decode_first") == "prefill_first"
        # a step outside CUDA graphs (one that carries a prompt, or more decode sequences a rank than the largest
        # captured graph) is issued call by call from the host: Engine.eager_kernel_overhead_s a kernel call (0: unknown)
        self.eager_call_s = float(getattr(engine, "eager_kernel_overhead_s", 0.0) or 0.0)
        self._graph_caps: dict[int, float] = {}  # GPUs of a tensor-parallel group -> its largest captured decode batch
        sizes = tuple(getattr(engine, "cuda_graph_sizes", ()) or ())
        self.graph_pad = np.array(sorted(sizes), float) if sizes and getattr(engine, "cuda_graph_padding", False) else None
        kv = hw.achievable.kv_read
        self.kv_bw = hw.memory_bandwidth_bytes_per_s * (kv.fraction if kv else hw.achievable.memory.fraction) * k.kv_read
        # Little's law: kernels that keep few bytes in flight per SM (Engine.sm_stream_limited: llama.cpp's CUDA/HIP
        # kernels) stream at most SMs x the fitted per-SM rate, whatever the DRAM delivers; binding on HBM parts
        self.stream_bw, self.sm_stream_cap = self.bw, None  # the STREAM-relative rate, before any per-SM ceiling
        if getattr(engine, "sm_stream_limited", False) and cuda_or_hip and self.sms and k.sm_stream > 0:
            self.sm_stream_cap = self.sms * k.sm_stream  # bytes/s
            self.bw = min(self.bw, self.sm_stream_cap)
            self.kv_bw = min(self.kv_bw, self.sm_stream_cap)
        # on an Apple GPU two tokens or more run Metal's matrix-matrix kernel, which unpacks each weight to 16 bits
        # once per token tile (METAL_MM_TILE_TOKENS) at the default count; where the shader cores issue one ALU
        # instruction a clock (Hardware.single_issue_alus: M1, M2) that unpacking and the simdgroup multiply on the
        # same ALUs take turns, so its time adds to the multiply's instead of hiding under it
        self.metal_mm = hw.vendor == "apple"
        # vector operations per weight element a narrow weight's dequantization costs: the default count, or on an
        # Apple GPU the fitted count of an engine whose Metal matrix-vector kernels dequantize on the FP32 ALUs
        # (Engine.metal_dequant_fitted: llama.cpp's 2023-24 builds; kernel parameter metal_dequant_ops)
        self.metal_dequant = self.metal_mm and bool(getattr(engine, "metal_dequant_fitted", False))
        self.dequant_ops = float(k.metal_dequant_ops) if self.metal_dequant else DEQUANT_OPS_PER_ELEM
        self.dequant_serial = self.metal_mm and hw.single_issue_alus()
        self.eager_capture_dropped = False  # a GPU capture's eager rows left out for this engine (below)
        if profile is None and hw.kernel_profile:
            from planner.costmodel.profile import KernelProfile

            profile = KernelProfile.load(hw.kernel_profile)
        if profile is not None and profile.gpu and getattr(engine, "id", None) != "harness":
            # a GPU capture's rows time eager PyTorch calls with the host's dispatch inside, and its host probes the
            # harness's Python: the harness engine's costs (planner validate), not a serving engine's, which replays
            # graphs or launches from C++; on the calibrated spec such an engine keeps the capture's fractions only
            profile = None
            self.kernel_s -= ov.kernel_s.value if ov.kernel_s else 0.0
            self.eager_capture_dropped = True  # estimate's note says so
        self.profile = profile  # measured kernel profile (planner.costmodel.profile), or None

    # ---- roofline primitives -----------------------------------------------------
    def _gemm(self, name, m, k_elems, flops_rate, wbytes, count, *, m_eff=None, in_out_elems=0.0, weight_touch=None,
              widths=None, own=None):
        """A GEMM over ``m`` tokens and a weight of ``k_elems`` elements (per device). ``widths``: the output widths
        (per device) of the library GEMMs the op runs as, for engines that time GEMMs in waves (wave_tile). ``own``:
        where the weight is held in a wider format of its own than the plan's (a MoE checkpoint's 16-bit attention):
        there it runs as that format's plain GEMM, without the plan's dequantization or emulated-kernel loss."""
        m = np.asarray(m, dtype=float)
        flops = 2.0 * m * k_elems
        w_elems = k_elems if weight_touch is None else weight_touch
        weight_read = w_elems * wbytes
        mm = m if m_eff is None else m_eff
        live = flops > 0  # no tokens: no work, no time
        if self.acc16_gain != 1.0 and self._gemm_dtype in ("fp16", "bf16"):
            flops_rate = flops_rate * self.acc16_gain
        # a separate dequantize kernel first (Engine.dequant_gemm_above; None: the engine has none): it reads the packed
        # weight and writes it in FP16, and the GEMM then reads the FP16 copy and dequantizes nothing itself
        wb = np.asarray(wbytes, float)
        deq = (np.asarray(mm, float) > self.dequant_above) & (wb < 2.0) if self.dequant_above else None
        byts = (weight_read if deq is None else np.where(deq, w_elems * 2.0, weight_read)) + m * in_out_elems * self._act
        hm_scale = self._half_m_scale if own is None else np.where(own, 1.0, self._half_m_scale)
        hm = self.half_m * hm_scale  # emulated kernels fill idle tiles: plans.gemm_half_m_scale
        eff = gemm_efficiency(mm, float(hm)) if np.ndim(hm) == 0 else np.where(hm > 0, mm / np.maximum(mm + hm, 1e-30), 1.0)
        tile = self._tile_m
        if np.ndim(tile) or tile > 0:
            # a 4-bit weight in a mixed-input kernel (plans.gemm_tile_m: Marlin) loses only its tile's idle rows; the
            # 16-bit lm_head and every other weight keep the half-rate law
            eff = np.where((np.asarray(tile) > 0) & (np.asarray(wbytes, float) < 1.0), tile_efficiency(mm, tile), eff)
        if self.wave_tile is not None and widths is not None:
            # the library GEMM runs where a 16-bit weight meets two tokens or more, or a narrower one is dequantized
            # to FP16 first (deq); one token runs as a matrix-vector kernel, a few on a narrow weight in MMQ
            mmf = np.asarray(mm, float)
            tiled = (mmf >= 2.0) & ((wb >= 2.0) if deq is None else (deq | (wb >= 2.0)))
            if np.any(tiled):
                eff = np.where(tiled, wave_efficiency(mmf, widths, self.sms, self.wave_tile), eff)
        # block-scaled FP8 GEMMs compute at the engine kernels' fraction of the plain rate (Engine.block_fp8_compute)
        frac = self._block_c_moe if name == Op.EXPERTS else self._block_c_dense if name in BLOCK_SCALED_DENSE else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = np.where(live, flops / (flops_rate * eff * frac), 0.0)
        if self.vec_rate:
            # a few tokens may run as matrix-vector kernels on the vector units: no idle tile rows, the vector rate;
            # the engine takes whichever kernel is faster (Engine.matrix_vector_kernels). Every GEMM where ("all")
            # the engine has such kernels for all of them (llama.cpp's mul_mat_vec) or the device has no matrix units;
            # weight-only formats (a weight stored narrower than the GEMM computes) where the engine has them for those
            # (TensorRT-LLM's weight-only batched GEMV); and grouped expert GEMMs, whose kernels tile a few tokens per
            # expert in small blocks (fused_moe's BLOCK_SIZE_M of 16) that the dense law's ~90-token half-rate point
            # overstates. A 16-bit or W8A8 dense GEMM of an engine on the matrix units (cuBLAS, CUTLASS, DeepGEMM)
            # pays its idle tile rows (gemm_half_m), which where the matrix rate is low beside the bandwidth (an H20:
            # 148 TFLOPS on 4 TB/s) makes one-token decode compute bound
            if self.matrix_vector == "all" or name == Op.EXPERTS:
                tc = np.minimum(tc, flops / self.vec_rate)
            elif self.matrix_vector == "weight_only" and self._any_dequant:
                narrow = (np.asarray(self._dequant, float) > 0) & (wb < 2.0)
                tc = np.where(narrow, np.minimum(tc, flops / self.vec_rate), tc)
        # block-scaled FP8 weights stream at the engine's kernel bandwidth (scale loads, promotion; Engine.block_fp8_bw)
        extra = self._block_moe if name == Op.EXPERTS else self._block_dense if name in BLOCK_SCALED_DENSE else 0.0
        if self.library_bw < 1.0 and name in LIBRARY_GEMMS:
            # a 16-bit weight in the BLAS library's tiled kernel, whose few-token GEMMs stream below the device's rate
            # (Engine.library_gemm_bw: vLLM on CDNA2, at every token count before its ROCm skinny GEMMs, above their
            # Engine.skinny_gemm_tokens since)
            library = (wb >= 2.0) & (np.asarray(mm, float) > self.skinny_tokens)
            extra = extra + np.where(library, 1.0 / self.library_bw - 1.0, 0.0)
        tm = (byts if np.ndim(extra) == 0 and extra == 0.0 else byts + weight_read * extra) / self.bw
        # weights stored narrower than the GEMM computes are dequantized on the vector units, once per M tile
        if self._any_dequant:
            dq = self._dequant if own is None else np.where(own, 0.0, self._dequant)
            mmf = np.maximum(np.asarray(mm, float), 1.0)
            if self.metal_mm:  # one token: the engine's matrix-vector count; more: kernel_mul_mm's per-tile unpacking
                # of a packed (narrower than 16-bit) weight; a 16-bit one is copied into the tile as it is
                mm_kernel = mmf >= 2.0
                dq = np.where(mm_kernel & (wb >= 2.0), 0.0, dq)
                elems = np.where(mm_kernel, np.ceil(mmf / METAL_MM_TILE_TOKENS) * DEQUANT_OPS_PER_ELEM, self.dequant_ops)
            else:
                mm_kernel, elems = False, np.ceil(mmf / DEQUANT_TILE_M) * self.dequant_ops
            tv = np.where(live if deq is None else live & ~deq, self.vector_time(dq * w_elems * elems), 0.0)
            if self.dequant_serial:  # single-issue ALUs: the tile's unpacking, then its multiply
                tc = tc + np.where(mm_kernel, tv, 0.0)
                tv = np.where(mm_kernel, 0.0, tv)
            tm = np.maximum(tm, tv)
        if deq is None or not np.any(deq):
            op = self._op(name, "gemm", count, flops, byts, tc, tm)
        else:  # the dequantize kernel runs before the GEMM: its traffic, at the memory rate, and one more launch
            pass_bytes = np.where(deq & live, w_elems * (wb + 2.0), 0.0)
            op = self._op(name, "gemm", count, flops, byts + pass_bytes, tc, tm)
            op.time_s = op.time_s + pass_bytes / self.bw
            _launch(self, op, np.where(pass_bytes > 0, 2.0, 1.0))
        op.weight_bytes = weight_read
        if self.profile is not None and weight_touch is None and m_eff is None:
            from planner.costmodel.profile import SOURCES

            t_meas, src = self.profile.gemm_time(m, k_elems, self._gemm_dtype)
            if src:
                op.time_s = np.broadcast_to(t_meas, op.time_s.shape)
                op.source = SOURCES[src]
        return op

    def block_fp8_applies(self, plans) -> bool:
        """Whether any of ``plans`` serves a released block-scaled FP8 checkpoint whose weights this engine's kernels
        stream or compute below the plain rate (Engine.block_fp8_bw, block_fp8_compute on this architecture)."""
        return ((self.block_fp8_bw != (1.0, 1.0) or self.block_fp8_compute != (1.0, 1.0))
                and bool(np.any(np.asarray(plans.act_quant, float))))

    def vector_time(self, flops):
        """Seconds of ``flops`` of non-tensor-core work (0 where the device has no vector peak on record)."""
        return np.asarray(flops, float) / self.vec_rate if self.vec_rate else np.zeros(np.shape(flops))

    def _op(self, name, kind, count, flops, byts, tc, tm, *, comm=None, algorithm=""):
        flops, byts = np.asarray(flops, float), np.asarray(byts, float)
        tc, tm = np.asarray(tc, float), np.asarray(tm, float)
        ovh = ((flops > 0) | (byts > 0)) * self.kernel_s
        t = (comm if comm is not None else np.maximum(tc, tm)) + ovh
        shape = np.broadcast_shapes(self._shape, t.shape, flops.shape, byts.shape)
        b = lambda x: np.broadcast_to(x, shape)  # noqa: E731
        return OpCost(name, kind, count, b(flops), b(byts), b(t), (tc, tm, ovh, comm) if self._parts else None,
                      algorithm=algorithm)

    def _elementwise(self, name, elems, count, reads=1.0, writes=1.0, flops_per_elem=4.0):
        """Norms, activations, residual adds: bandwidth bound on GPUs; where a device's calibrated
        elementwise rate is known (CPUs: exp and division per element) its compute time counts too."""
        byts = np.asarray(elems, float) * self._act * (reads + writes)
        flops = flops_per_elem * np.asarray(elems, float)
        tc = flops / self.elem_rate if self.elem_rate else 0.0
        return self._op(name, "elementwise", count, flops, byts, tc, byts / self.bw)

    # ---- the step ------------------------------------------------------------------
    def step(self, plans: PlanArrays, step: Step, *, parts: bool = True) -> StepCost:
        """Cost of one engine step for every plan: the model's layers (attention block, then its MLP kind) from
        the builders registered for its spec, then the once-per-step ops, then the pipeline. With ``parts=False``
        the ops keep their times but not what their bound is worked out from (OpCost.bound is then unavailable):
        a search over 10^5..10^6 plans then holds four arrays fewer per op (DeepSeek-V3 on 64 H200: a step of 196 k
        plans kept 163 MB). An engine that runs a step as micro-batches of at most ``ubatch_tokens`` tokens
        (llama.cpp) pays one forward pass per micro-batch (ubatch_split)."""
        if self.ubatch:
            n, one = ubatch_split(step, self.ubatch)
            if np.any(n > 1.0):
                return self._pass(plans, one, parts).repeated(n)
        return self._pass(plans, step, parts)

    def _pass(self, plans: PlanArrays, step: Step, parts: bool) -> StepCost:
        """One forward pass over the step's tokens (CostModel.step)."""
        self._parts = parts
        c = _Ctx.of(self, plans, step)
        ops: list[OpCost] = []
        for build in layer_builders(self.model, self.moe_offload, self.lora):
            ops += build(self, c)
        ops += _head_ops(self, c)
        layer_time = sum(o.time_s * o.count for o in ops if o.name not in ONCE_PER_STEP)  # one stage's layers
        head_time = sum(o.time_s * o.count for o in ops if o.name in ONCE_PER_STEP - {Op.PP_SENDRECV})
        hops = next(o.time_s for o in ops if o.name == Op.PP_SENDRECV)
        # a token passes every stage in turn; the slowest stage (layers + lm_head) sets the pace
        latency = layer_time * c.pp + head_time + hops + self.step_s
        stage = layer_time + head_time + self.step_s
        if self.profile is not None and self.profile.host_per_layer:
            # a GPU capture's eager layer code: the host issues each layer's kernels while the device runs the ones
            # before, so the step takes the longer of the device's work and the host's (measured per layer)
            floor = self.profile.host_step_floor(self.model, c.p_seqs > 0)
            latency, stage = np.maximum(latency, floor), np.maximum(stage, floor / c.pp)
        host_floor = 0.0
        if self.eager_call_s:
            # an eager step: each stage's host issues that stage's kernel calls one after another while the device runs
            # the ones before, so a stage takes the longer of the two (a short prompt on a fast GPU waits on the host),
            # and a token crosses the stages in turn. A captured graph holds a batch of sequences (the busiest rank's)
            eager = ~self.in_graph(plans, c)
            head = kernel_calls([o for o in ops if o.name in ONCE_PER_STEP]) * self.eager_call_s
            one_stage = kernel_calls(ops) * self.eager_call_s
            host_floor = np.where(eager, (one_stage - head) * c.pp + head, 0.0)
            latency, stage = np.maximum(latency, host_floor), np.maximum(stage, np.where(eager, one_stage, 0.0))
        # the engine's host work per step (schedule, sample, detokenize): a + b x sequences in the step; an engine
        # that schedules the next step while the GPU runs this one hides it under the GPU time
        host = self.step_host_s + self.step_host_per_seq_s * (c.p_seqs + c.d_seqs) / c.adp
        if self.async_scheduling:
            latency, stage = np.maximum(latency, host), np.maximum(stage, host)
        else:
            latency, stage = latency + host, stage + host
        if self.weight_stream is not None:
            frac, link_bw = self.weight_stream
            streamed = frac * sum(np.asarray(o.weight_bytes) * o.count for o in ops)
            exposed = np.maximum(streamed / link_bw - stage, 0.0)  # prefetch hides what the compute covers
            ops.append(self._op(Op.WEIGHT_STREAM, "memory", 1.0, 0.0, streamed, 0.0, 0.0, comm=exposed, algorithm="prefetch"))
            latency, stage = latency + exposed, stage + exposed
        return StepCost(ops=ops, time_s=latency, stage_time_s=stage, host_floor_s=host_floor)

    def in_graph(self, plans: PlanArrays, c: "_Ctx") -> np.ndarray:
        """Per plan, whether the step replays a captured graph: a decode-only step whose busiest rank holds no more
        sequences than the largest graph the engine captures (graph_max)."""
        return (c.p_seqs <= 0) & (np.ceil(c.d_seqs / c.adp - 1e-9) <= self.graph_max(plans))

    def graph_max(self, plans: PlanArrays) -> np.ndarray:
        """The largest decode batch a rank replays as a captured graph, per plan: the engine's cuda_graph_max_batch as
        its device rule sets it for the plan's tensor-parallel group (tp x attention-DP ranks: SGLang's tp_size);
        0 where it captures none (None, or HIP graphs off on an AMD GPU), so every decode step runs eagerly."""
        size = np.asarray(plans.tp * plans.adp, np.int64)
        out = np.zeros(size.shape)
        for v in np.unique(size).tolist():
            cap = self._graph_caps.get(v)
            if cap is None:
                eng = self.engine.for_hardware(self.hw, v)
                off = eng.cuda_graph_max_batch is None or (self.hw.vendor == "amd" and not eng.hip_graphs)
                cap = self._graph_caps[v] = 0.0 if off else float(eng.cuda_graph_max_batch)
            out[size == v] = cap
        return out


def kernel_calls(ops: list[OpCost]) -> np.ndarray:
    """Kernel calls the host issues for one pipeline stage's ops of a step (per plan): each op that does work, its
    launches x its occurrences."""
    return sum(np.asarray(o.count, float) * o.launches * (o.time_s > 0) for o in ops)


def ubatch_split(step: Step, ubatch: int) -> tuple[np.ndarray, Step]:
    """A step of more than ``ubatch`` tokens as n forward passes of at most ``ubatch`` each (llama.cpp's llama_decode
    splits its logical batch into n_ubatch-token micro-batches and computes each as a graph of its own): n =
    ceil(tokens / ubatch), and the pass that stands for all n. A prompt of t tokens spans s = ceil(t / ubatch)
    passes of t / s tokens; the queries of its i-th piece attend over the i pieces before it, so the mean pass sees
    (s - 1) / 2 pieces of cache beyond the step's own past, which prices the n passes' attention to first order
    (attention is linear in the past). Each pass carries 1 / n of the prompts' pieces and of the decoding
    sequences, so the pieces x tokens of the n passes add up to the step's tokens."""
    p_seqs, p_tok, p_past, d_seqs, d_ctx, d_tok = step.arrays()
    tokens = p_seqs * p_tok + d_seqs * d_tok
    n = np.maximum(np.ceil(tokens / ubatch - 1e-9), 1.0)
    s = np.maximum(np.ceil(p_tok / ubatch - 1e-9), 1.0)
    piece = p_tok / s
    one = Step(prefill_seqs=p_seqs * s / n, prefill_tokens=piece, prefill_past=p_past + (s - 1.0) / 2.0 * piece,
               decode_seqs=d_seqs / n, decode_ctx=d_ctx, decode_tokens=d_tok)
    return n, one


def micro_batches(pp, sequences):
    """Micro-batches a step of ``sequences`` forms on ``pp`` pipeline stages: up to pp, one per sequence below that (a
    sequence is not split), at least one. A step's round is the larger of one pass through the stages and this many
    times the busiest stage, so a lone request walks the stages one after another."""
    return np.minimum(pp, np.maximum(np.floor(sequences), 1.0))


@dataclass
class _Ctx:
    """The arrays one step's builders share (per device, after the parallel split)."""

    plans: PlanArrays
    p_seqs: np.ndarray
    p_tok: np.ndarray
    p_past: np.ndarray
    d_seqs: np.ndarray
    d_ctx: np.ndarray
    d_tok: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    ep: np.ndarray
    adp: np.ndarray
    cp: np.ndarray  # context parallel: a prompt's tokens split over cp devices, each holding 1/cp of the KV
    T: np.ndarray  # tokens through this device's GEMMs (attention-DP splits the batch; the busiest rank's share)
    out_tokens: np.ndarray  # rows through lm_head
    layers_stage: float | np.ndarray
    T_group: np.ndarray | float = 0.0  # tokens of the whole attention-DP group (what its MoE layers route)
    _routing: tuple | None = field(default=None, init=False, repr=False, compare=False)  # _Ctx.routing, once per step

    def routing(self, moe) -> tuple:
        """``moe_routing`` of this step's MoE group (assignments, the busiest rank's load over the mean, the slots
        touched), worked out once for the builders that read it (the MoE MLP, the block-FP8 activation quantization)."""
        if self._routing is None:
            self._routing = moe_routing(self.plans, moe, self.T_group, self.ep)
        return self._routing

    @classmethod
    def of(cls, cm: "CostModel", plans: PlanArrays, step: Step) -> "_Ctx":
        p_seqs, p_tok, p_past, d_seqs, d_ctx, d_tok = step.arrays()
        cm._shape = np.broadcast_shapes(plans.tp.shape, *(x.shape for x in step.arrays()))
        cm._gemm_dtype = plans.compute_dtype
        cm._act = plans.act_bytes
        cm._dequant = plans.weight_dequant
        # layers held in a wider format of their own than the plan's (PlanArrays.proj_bytes, dense_bytes); None: none
        own_formats = plans.attn_weight_bytes is not None or plans.dense_weight_bytes is not None
        cm._own_proj = plans.proj_bytes > plans.weight_bytes if own_formats else None
        cm._own_dense = plans.dense_bytes > plans.weight_bytes if plans.dense_weight_bytes is not None else None
        cm._any_dequant = bool(np.any(plans.weight_dequant))  # no plan dequantizes: the vector ceiling is skipped
        if cm.block_fp8_applies(plans):  # act_quant: 1 where a plan serves the released block-scaled format
            blk, (d, mo), (cd, cmo) = np.asarray(plans.act_quant, float), cm.block_fp8_bw, cm.block_fp8_compute
            cm._block_dense, cm._block_moe = blk * (1.0 / d - 1.0), blk * (1.0 / mo - 1.0)
            cm._block_c_dense, cm._block_c_moe = 1.0 + blk * (cd - 1.0), 1.0 + blk * (cmo - 1.0)
        else:
            cm._block_dense = cm._block_moe = 0.0
            cm._block_c_dense = cm._block_c_moe = 1.0
        cm._half_m_scale = _scalar_if_uniform(plans.gemm_half_m_scale)
        cm._tile_m = _scalar_if_uniform(plans.gemm_tile_m)
        tp, pp, adp, ep = (x.astype(float) for x in (plans.tp, plans.pp, plans.adp, plans.ep))
        cp = np.asarray(plans.cp, float)
        d_rows = d_seqs  # rows the GEMMs see: a decode-only step replays the next captured graph up (per scheduler rank)
        if cm.graph_pad is not None:
            per_rank = d_seqs / adp
            i = np.minimum(np.searchsorted(cm.graph_pad, per_rank - 1e-9), len(cm.graph_pad) - 1)
            padded = np.where(per_rank <= cm.graph_pad[-1], cm.graph_pad[i], per_rank) * adp
            d_rows = np.where((p_seqs == 0) & (d_seqs > 0), padded, d_seqs)
        T_group = p_seqs * p_tok / cp + d_rows * d_tok
        # attention data parallelism: a prompt is prefilled whole on one rank, and the ranks meet at every layer's
        # collective (MoE all-to-all, TP all-reduce), so the rank holding the most prompts sets the step. Priced as
        # if every rank held that many: ceil(prompts / ranks) each; the MoE layers route the true group total. Less
        # than one prompt (a chunk of one, as the simulator's step table and a chunked steady state write it) is all
        # on one rank: that rank holds that fraction, not a whole prompt.
        p_seqs = np.where(adp > 1, np.where(p_seqs < 1.0, p_seqs, np.ceil(p_seqs / adp - 1e-9)) * adp, p_seqs)
        return cls(plans, p_seqs, p_tok, p_past, d_seqs, d_ctx, d_tok, tp, pp, ep, adp, cp,
                   T=(p_seqs * p_tok / cp + d_rows * d_tok) / adp,
                   out_tokens=((p_seqs * p_tok / cp if cm.all_logits else p_seqs) + d_seqs * d_tok) / adp,
                   layers_stage=cm.model.num_layers / pp, T_group=T_group)


def _scalar_if_uniform(v):
    """A per-plan value as one float where every plan has the same (the scalar paths in CostModel._gemm), else the array."""
    a = np.asarray(v, float)
    return float(a.flat[0]) if a.size and np.all(a == a.flat[0]) else a


def _qkv_widths(cm: "CostModel", sh) -> tuple:
    """Output widths (per device) of the attention input projection's GEMMs: one over q, k and v together, or, where
    the engine multiplies them apart (Engine.fused_projections), the query's (with its output gate) and k's and v's."""
    kv = sh.kv_elems_per_token / 2.0
    return (sh.qkv_out,) if cm.fused_projections else (sh.qkv_out - 2.0 * kv, kv, kv)


def _attention_block(cm: "CostModel", c: _Ctx) -> list[OpCost]:
    """Norm, QKV projection, attention core (full and windowed layers apart), output projection, TP all-reduce.
    MHA, GQA, MQA and MLA differ only in how the layer splits (costmodel/shard.py)."""
    m, plans = cm.model, c.plans
    h, a = m.hidden_size, m.attention
    sh = attention_shard(m, c.tp)
    wb, rate = plans.proj_bytes, plans.proj_flops  # the projections as the checkpoint holds them
    # a hybrid model's linear-attention layers have their own block (_linear_attention_block); the norm before the
    # mixer and the two TP all-reduces of a layer are every layer's
    att = c.layers_stage * m.num_attention_layers / m.num_layers
    ops = [_fused_norm(cm, c, cm._elementwise(Op.ATTN_NORM, c.T * h, c.layers_stage)),
           cm._gemm(Op.QKV_PROJ, c.T, sh.qkv_elems, rate, wb, att, in_out_elems=h + sh.qkv_out,
                    widths=None if a.mla else _qkv_widths(cm, sh), own=cm._own_proj)]
    if a.mla:
        # MLA's projections are separate kernels: the fused query/KV down-projection, the query up-projection and the
        # key half of the KV up-projection (absorbed into the query in decode); then the value half (absorbed) before
        # the output projection. The query and KV latents each pass an RMSNorm between down and up projection.
        # A sparse-attention indexer adds its query, key and head-weight projections (three more GEMMs).
        _launch(cm, ops[1], MLA_PROJ_LAUNCHES[Op.QKV_PROJ]
                + (INDEXER_PROJ_LAUNCHES * m.num_indexer_layers / m.num_attention_layers if a.index else 0.0))
        ml = a.mla
        ops.append(cm._elementwise(Op.LATENT_NORM, c.T * ((ml.q_lora_rank or 0) + ml.kv_lora_rank), c.layers_stage))
        _launch(cm, ops[-1], 2.0 if ml.q_lora_rank else 1.0)
    elif a.qk_norm:
        # RMSNorm over each query and key head before RoPE: reads and writes the device's q and k once, one kernel
        # (engines fuse the two norms, some with RoPE too; unfused they are two launches)
        qk_elems = sh.heads * m.head_dim + sh.kv_elems_per_token / 2.0
        ops.append(cm._elementwise(Op.QK_NORM, c.T * qk_elems, att))
    # an engine that keeps the whole sequence's KV for local layers attends over all of it (frees_window)
    n_slide, n_chunk = (m.num_sliding_layers(), m.num_chunked_layers()) if frees_window(cm.engine) else (0, 0)
    local_decode = chunks_decode(cm.engine)  # else chunked layers are chunked in prefill only (chunks_decode)
    if a.index is not None:  # DeepSeek Sparse Attention: the indexer scores every token, the attention reads top-k
        ops.append(_indexer(cm, c, a.index, m.num_indexer_layers))  # IndexShare: the other layers reuse its top-k
    for name, n_layers, window, chunked in ((Op.ATTENTION, m.num_attention_layers - n_slide - n_chunk,
                                             a.index.topk if a.index else None, False),
                                            (Op.ATTENTION_SWA, n_slide, a.sliding_window, False),
                                            (Op.ATTENTION_CHUNKED, n_chunk, a.chunk_size, True)):
        if n_layers:
            ops.append(_attention_core(cm, c, sh, name, n_layers, window, chunked, local_decode))
    if np.any(c.cp > 1):
        ops.append(cp_ring(cm, c, sh, ops[2:], Op.CP_RING))
    ops.append(cm._gemm(Op.O_PROJ, c.T, sh.o_elems, rate, wb, att, in_out_elems=sh.heads * sh.prefill_dv + h,
                        widths=None if a.mla else (h,), own=cm._own_proj))
    if a.mla:
        _launch(cm, ops[-1], MLA_PROJ_LAUNCHES[Op.O_PROJ])
    ar_bytes = c.T * h * cm._act
    t_ar, algo = all_reduce_time(cm.fabric, c.tp, ar_bytes, call_s=cm.collective_call_s)
    n_ar = 1 if m.parallel_attn_mlp else 2
    # no collective (and no kernel) when tensor parallelism is off
    ops.append(cm._op(Op.TP_ALLREDUCE, "comm", c.layers_stage * n_ar, 0.0, np.where(c.tp > 1, ar_bytes, 0.0), 0.0, 0.0,
                      comm=t_ar, algorithm=algo))
    return ops


def _chunk_pairs_upto(n, chunk: float):
    """Causal (query, key) pairs among the first n positions when a query sees only its own aligned chunk:
    F(n) = k C(C+1)/2 + r(r+1)/2 with n = kC + r."""
    k, r = np.floor(n / chunk), np.mod(n, chunk)
    return k * chunk * (chunk + 1) / 2.0 + r * (r + 1) / 2.0


INDEXER_PROJ_LAUNCHES = 3.0  # the indexer's query up-projection, key projection (with its LayerNorm) and head weights
INDEXER_LAUNCHES = 2.0  # the FP8 logits kernel (DeepGEMM fp8_mqa_logits) and the top-k selection


def _indexer(cm: "CostModel", c: _Ctx, ix, n_layers: int) -> OpCost:
    """DeepSeek Sparse Attention's lightning indexer on each MLA layer: every query scores every cached token,
    sum over heads of w x ReLU(q . k) with heads x head_dim FP8 products against the one cached indexer key per
    token, and keeps the top ``ix.topk`` (the attention core then reads only those: a window of topk keys per
    query). Its work grows with the context like dense attention's, at a fraction of the width; the fp32 scores are
    written and read back by the top-k kernel."""
    pairs_p = c.p_seqs * _pairs(c.p_tok, c.p_past) / c.adp
    pairs_d = c.d_seqs * c.d_tok * c.d_ctx / c.adp
    pairs = (pairs_p + pairs_d) / c.cp
    flops = 2.0 * ix.heads * ix.head_dim * pairs
    keys = (c.d_seqs * c.d_ctx + c.p_seqs * (c.p_past + c.p_tok)) / (c.adp * c.cp) * ix.key_bytes_per_token()
    byts = keys + pairs * 4.0 * 2.0 + c.T * ix.heads * ix.head_dim * 1.0
    hw = cm.hw
    fp8 = hw.peak("fp8") / hw.peak("bf16") if hw.supports("fp8") and hw.supports("bf16") else 1.0
    tc = flops / (c.plans.attn_flops * fp8) + cm.vector_time(pairs * 2.0 * ix.heads)  # ReLU, weighted sum over heads
    op = cm._op(Op.INDEXER, "attention", n_layers / c.pp, flops, byts, tc, byts / cm.bw)
    _launch(cm, op, INDEXER_LAUNCHES)
    return op


# Gated DeltaNet's chunked prefill (flash-linear-attention chunk_gated_delta_rule, as vLLM and SGLang run it): chunks
# of 64 tokens; per token and value head the state terms (decay, S^T k, the rank-one update, q^T S) are 4 dk x dv
# multiply-adds, the intra-chunk terms (k k^T and its triangular solve, q k^T, the scores times v) about
# C (2 dk + dv); the chunk-boundary states are written and read back once per chunk. Decode is the fused recurrent
# kernel: each sequence's state is read and written once per token. Kernel counts: the chunked forward runs six
# kernels (cumulative decay, k k^T, triangular solve, w/u recompute, chunk states, output), decode one.
LINEAR_CHUNK = 64.0
LINEAR_PREFILL_LAUNCHES = 6.0


def _linear_attention_block(cm: "CostModel", c: _Ctx) -> list[OpCost]:
    """The linear-attention (Gated DeltaNet) layers of a hybrid model (Qwen3-Next, Qwen3.5): input projection (q, k,
    v, output gate, beta, alpha), a causal convolution of kernel K over q, k and v, the gated delta rule over each
    sequence's recurrent state, a gated RMSNorm, output projection. Tensor parallelism splits the heads; the
    layer's TP all-reduce is counted with every layer's in _attention_block."""
    m, plans = cm.model, c.plans
    lin = m.attention.linear
    h = m.hidden_size
    ls = linear_shard(m, c.tp)
    wb, rate = plans.proj_bytes, plans.proj_flops  # the projections as the checkpoint holds them
    n = c.layers_stage * m.num_linear_layers / m.num_layers
    dk, dv, hv = ls.key_head_dim, ls.value_head_dim, ls.value_heads
    # tokens through the recurrence on this device: a prompt's tokens and each decoding sequence's (speculative
    # drafts are tokens too); attention data parallelism splits the sequences over ranks
    t_p = c.p_seqs * c.p_tok / (c.adp * c.cp)
    t_d = c.d_seqs * c.d_tok / c.adp
    state = hv * dv * dk * lin.state_bytes  # one sequence's recurrent state
    conv_state = ls.conv_channels * (lin.conv_kernel - 1) * LINEAR_STATE_BYTES
    flops_p = 2.0 * hv * t_p * (4.0 * dk * dv + LINEAR_CHUNK * (2.0 * dk + dv))
    flops_d = 2.0 * hv * t_d * 4.0 * dk * dv
    io = (t_p + t_d) * (ls.conv_channels + 2.0 * hv + hv * dv) * cm._act  # q, k, v, beta, alpha in; o out
    # prefill: the chunk-boundary states written and read back, the initial state read where the prompt continues
    # a cached prefix (or an earlier chunk), the final state written; decode: each state read and written
    p_state = t_p * 2.0 * state / LINEAR_CHUNK + c.p_seqs / c.adp * (np.where(c.p_past > 0, 2.0, 1.0) * state)
    d_state = c.d_seqs / c.adp * 2.0 * (state + conv_state)
    byts = io + p_state + d_state
    tc = flops_p / plans.attn_flops + cm.vector_time(flops_d)  # chunked: tensor cores; recurrent: the vector units
    core = cm._op(Op.LINEAR_CORE, "attention", n, flops_p + flops_d, byts, tc, byts / cm.bw)
    _launch(cm, core, np.where(np.asarray(c.p_seqs) > 0, LINEAR_PREFILL_LAUNCHES, 1.0))
    conv_elems = (t_p + t_d) * ls.conv_channels
    return [
        cm._gemm(Op.LINEAR_IN_PROJ, c.T, ls.in_elems, rate, wb, n, in_out_elems=h + ls.in_out, own=cm._own_proj),
        cm._elementwise(Op.LINEAR_CONV, conv_elems, n, reads=1.0, writes=1.0, flops_per_elem=2.0 * lin.conv_kernel + 4.0),
        core,
        cm._elementwise(Op.LINEAR_NORM, (t_p + t_d) * hv * dv, n, reads=2.0, writes=1.0, flops_per_elem=8.0),
        cm._gemm(Op.LINEAR_OUT_PROJ, c.T, ls.out_elems, rate, wb, n, in_out_elems=hv * dv + h, own=cm._own_proj),
    ]


def _attention_core(cm: "CostModel", c: _Ctx, sh, name: Op, n_layers: int, window, chunked: bool = False,
                    local_decode: bool = True) -> OpCost:
    """Flash-style prefill over new x (cached + new) key pairs and a decode read of the whole cache per sequence.
    A quantized KV cache is dequantized on the vector units as it is read: that work has its own ceiling.
    ``window`` caps the keys a query sees (sliding window); with ``chunked`` a query sees only its own chunk of
    ``window`` positions, so a decode step at a long context reads (C + 1) / 2 keys on average; without
    ``local_decode`` only prefill keeps to the chunk and a decode step reads the whole cache (TensorRT-LLM 1.x)."""
    kvb = c.plans.kv_bytes
    ctx_p = c.p_past if window is None else np.minimum(c.p_past, window)  # the cached keys a prompt's queries see
    if chunked:
        C = float(window)
        ctx_d = np.where(c.d_ctx <= C, c.d_ctx, (C + 1.0) / 2.0) if local_decode else c.d_ctx
        pairs_new = _chunk_pairs_upto(c.p_past + c.p_tok, C) - _chunk_pairs_upto(c.p_past, C)
        pairs_p = c.p_seqs * pairs_new / c.adp
    else:
        ctx_d = c.d_ctx if window is None else np.minimum(c.d_ctx, window)
        if cm.flash_attention:
            pairs_p = c.p_seqs * _pairs(c.p_tok, c.p_past, window) / c.adp
        else:  # scores as GEMMs: each query against every cell of the pass's cache view, the masked ones too
            pairs_p = c.p_seqs * c.p_tok * (ctx_p + c.p_tok) / c.adp
    pairs_d = c.d_seqs * c.d_tok * ctx_d / c.adp
    # prefill (flash attention) reads Q/K/V of the new tokens and cached K/V once per sequence
    kv_elems_d = c.d_seqs * ctx_d / c.adp * sh.kv_elems_per_token  # decode reads the whole cache once per sequence
    kv_elems_p = c.p_seqs / c.adp * (ctx_p + c.p_tok) * sh.kv_elems_per_token
    if name == Op.ATTENTION and c.plans.sparse:
        pairs_p, pairs_d, kv_elems_p, kv_elems_d = sparse_terms(c, sh)
    # context parallel: each device computes its 1/cp of the queries against every key (the ring brings the
    # blocks it does not hold) and, in decode, attends over the 1/cp of the cache it holds
    pairs_p, pairs_d, kv_elems_d = pairs_p / c.cp, pairs_d / c.cp, kv_elems_d / c.cp
    flops_p = 2.0 * sh.heads * pairs_p * (sh.prefill_dqk + sh.prefill_dv)
    flops_d = 2.0 * sh.heads * pairs_d * (sh.decode_dqk + sh.decode_dv)
    flops = flops_p + flops_d
    kv_read = (kv_elems_d + kv_elems_p) * kvb
    kv_loaded_d = kv_elems_d  # decode cache elements loaded (and, in a narrower format, converted) by the kernel
    if cm.gqa_rereads:  # the GQA group's other query heads load the decode cache again (Engine.gqa_reread_archs)
        group = sh.heads * (sh.decode_dqk + sh.decode_dv) / np.maximum(sh.kv_elems_per_token, 1e-30)
        kv_loaded_d = kv_elems_d * np.maximum(group, 1.0)
        kv_read = kv_read + (kv_loaded_d - kv_elems_d) * kvb
    q_o = c.T * (sh.heads * (sh.prefill_dqk + sh.prefill_dv)) * cm._act
    kv_write = c.T * sh.kv_elems_per_token * kvb
    byts = kv_read + q_o + kv_write
    if not cm.flash_attention:  # the materialized scores' round trips through memory (SCORE_BYTES_*)
        byts = byts + sh.heads * (pairs_p * SCORE_BYTES_PREFILL + pairs_d * SCORE_BYTES_DECODE)
    t_mem = (byts - kv_read) / cm.bw + kv_read / cm.kv_bw
    t_vec = cm.vector_time(np.where(kvb < cm._act, (kv_loaded_d + kv_elems_p) * DEQUANT_OPS_PER_ELEM, 0.0))
    if cm.mmha_rate:  # the masked multi-head decode kernel: one thread block per query head, its products on the CUDA cores
        t_vec = t_vec + 2.0 * sh.heads * pairs_d * (sh.decode_dqk + sh.decode_dv) / cm.mmha_rate
    # MLA on the FP8 tensor cores where the engine runs it so (PlanArrays.attn_fp8_gain_*; 1 for every other model)
    mma_flops = flops_p / c.plans.attn_fp8_gain_prefill + flops_d / c.plans.attn_fp8_gain_decode  # at the 16-bit rate
    tc = mma_flops / c.plans.attn_flops
    if cm.exp_saved > 0.0 and cm.attn_peak:
        # each tile's two products wait on its softmax, one exponential per score on the special function units (NVIDIA,
        # "Making Softmax More Efficient with NVIDIA Blackwell Ultra": the tensor cores idle while the SFUs normalize).
        # Of the ideal tile time (products at the tensor-core peak, exponentials at 16 per SM clock) the exponentials'
        # share is what a faster SFU shortens: with twice the rate, attention time falls by half that share
        mma = mma_flops / cm.attn_peak
        ex = sh.heads * (pairs_p + pairs_d) / cm.exp_ref_rate
        share = np.where(mma + ex > 0, ex / np.maximum(mma + ex, 1e-300), 0.0)
        tc = tc * (1.0 - share * cm.exp_saved)
    op = cm._op(name, "attention", n_layers / c.pp, flops, byts, tc, np.maximum(t_mem, t_vec))
    return measured_decode_attention(cm, c, sh, op, local=window is not None and (local_decode or not chunked)) if cm.profile is not None else op


def _dense_mlp(cm: "CostModel", c: _Ctx) -> list[OpCost]:
    """Gated (SwiGLU) or plain MLP as engines run it: gate and up fused (or up alone), activation, down."""
    m, plans = cm.model, c.plans
    h = m.hidden_size
    mats = 3 if m.ffn_gated else 2
    ffn = m.intermediate_size / c.tp
    cnt = c.layers_stage * m.num_dense_layers / m.num_layers
    return [
        cm._gemm(Op.MLP_UP, c.T, (mats - 1) * h * ffn, plans.dense_flops, plans.dense_bytes, cnt,
                 in_out_elems=h + (mats - 1) * ffn, widths=((mats - 1) * ffn,) if cm.fused_projections else (ffn,) * (mats - 1),
                 own=cm._own_dense),
        cm._elementwise(Op.MLP_ACT, c.T * ffn, cnt, reads=mats - 1, flops_per_elem=5.0 if m.ffn_gated else 4.0),
        cm._gemm(Op.MLP_DOWN, c.T, h * ffn, plans.dense_flops, plans.dense_bytes, cnt, in_out_elems=ffn + h, widths=(h,),
                 own=cm._own_dense),
    ]


# Routing skew: the coefficient of variation of the tokens the experts of one MoE layer receive, over its experts. A
# trained router does not spread a batch evenly: TensorRT-LLM's large-scale EP study (docs/source/blogs/tech_blog/
# blog4_Scaling_Expert_Parallelism_in_TensorRT-LLM.md, Table 1: DeepSeek-R1 on 32 GB200 at EP32, a machine-translation
# dataset, no EPLB, averaged over layers and iterations) counts 128 tokens per expert on average with a standard
# deviation of 164.1 (1.28) over its 256 routed experts, and by rank (8 experts each) 1,024 with 491.6, the busiest
# rank 2.56x the mean. The hot experts stay hot for hundreds of steps: a property of the routing, not sampling noise
# that larger batches average away.
ROUTING_SKEW = 1.28
ROUTING_SKEW_EXPERTS = 256  # the experts of the model it was measured on


def routing_skew(moe) -> float:
    """The per-expert load CV of a MoE layer: the spec's own (moe.routing_skew), else the measured ROUTING_SKEW
    carried to the model's expert count. An expert's load is the sum of the loads of the kinds of token routed to it;
    with those independent, cutting the same routing into E experts gives a CV that grows as sqrt(E) (the rank sum in
    ep_imbalance is the same law the other way), so a model with E experts takes 1.28 x sqrt(E / 256): 0.23 for
    Mixtral's 8, 0.91 for 128. Under this law the skew of a rank's load depends on the share of the experts it holds
    (1/ep), not on how finely the model cuts them."""
    if moe.routing_skew is not None:
        return float(moe.routing_skew)
    return ROUTING_SKEW * float(np.sqrt(moe.num_experts / ROUTING_SKEW_EXPERTS))


def routing_skew_source(moe) -> str:
    """Where ``routing_skew(moe)`` comes from, in words (planner models show)."""
    if moe.routing_skew is not None:
        return "the spec's moe.routing_skew"
    return (f"the {ROUTING_SKEW} CV TensorRT-LLM measured over DeepSeek-R1's {ROUTING_SKEW_EXPERTS} experts x "
            f"sqrt({moe.num_experts} / {ROUTING_SKEW_EXPERTS}); set moe.routing_skew in a model YAML to state another "
            "(0: even routing)")


def experts_touched(tokens, experts, top_k, skew=0.0):
    """Distinct experts ``tokens`` tokens route to, each picking ``top_k`` of ``experts``. Even routing: an expert is
    missed by a token with probability 1 - top_k / experts, so E (1 - (1 - k/E)^T). With skewed routing (popularity
    Gamma-distributed over the experts with CV ``skew``) the missed share is the Laplace transform
    (1 + k T skew^2 / E)^(-1 / skew^2) where even routing's is exp(-k T / E): the tokens crowd into the popular
    experts and touch fewer; the ratio of the two scales the even count, and never fewer than one token's k remain."""
    T = np.asarray(tokens, float)
    even = experts * (1.0 - (1.0 - top_k / experts) ** T)
    if not skew:
        return even
    x = top_k * T / experts  # assignments per expert
    a = 1.0 / skew ** 2  # the Gamma shape
    ratio = -np.expm1(-a * np.log1p(x / a)) / np.maximum(-np.expm1(-x), 1e-300)
    return np.maximum(even * ratio, np.minimum(T, 1.0) * top_k)


def ep_imbalance(assignments, ep, experts=None, skew=0.0):
    """Expected load of the busiest of ``ep`` expert-parallel ranks over the mean, for ``assignments`` token-to-expert
    assignments over ``experts`` experts (an equal share on each rank) whose loads vary with coefficient of variation
    ``skew`` (ROUTING_SKEW). A rank's load varies by sampling, Binomial(n, 1/ep): squared CV (1 - 1/ep) / mean; and
    by which experts it holds, k = experts / ep drawn from the layer's experts without replacement: squared CV
    skew^2 (experts - k) / ((experts - 1) k). The maximum of ep ranks sits about sqrt(2 ln ep) of the combined
    standard deviations above the mean (extreme-value bound for sub-Gaussian loads). At the study's EP32 and skew
    this gives the busiest rank 2.2x the mean where it measured 2.56x (heavier-tailed than Gaussian), the rank CV 0.45
    where it measured 0.48."""
    n = np.maximum(np.asarray(assignments, float), 1.0)
    ep = np.maximum(np.asarray(ep, float), 1.0)
    cv2 = (1.0 - 1.0 / ep) / (n / ep)
    if experts is not None and skew > 0.0:
        k = np.maximum(experts / ep, 1.0)  # experts a rank holds
        cv2 = cv2 + skew ** 2 * np.maximum(experts - k, 0.0) / (max(experts - 1.0, 1.0) * k)
    return np.where(ep > 1, 1.0 + np.sqrt(2.0 * np.log(ep)) * np.sqrt(cv2), 1.0)


def rank_imbalance(plans: PlanArrays, assigned, ep, moe, skew):
    """The busiest expert-parallel rank's load over the mean for each plan: ``ep_imbalance`` for the experts in their
    fixed order, ``eplb_imbalance`` (costmodel/eplb.py) where a plan balances them (PlanArrays.eplb_redundant >= 0)."""
    imb = ep_imbalance(assigned, ep, moe.num_experts, skew)
    red = np.asarray(plans.eplb_redundant, float)
    for r in np.unique(red[red >= 0]):
        imb = np.where(red == r, eplb_imbalance(assigned, ep, moe.num_experts, int(r), skew), imb)
    return imb


def moe_routing(plans: PlanArrays, moe, T_group, ep):
    """How ``T_group`` tokens of a MoE group route: (token-expert assignments, the busiest expert-parallel rank's load
    over the mean, the expert slots the batch touches). Touched: distinct experts, E (1 - (1 - k/E)^T) with even
    routing and fewer with the routing's skew; where a balancer replicates experts (expert_slots), each replica of a
    touched expert takes a share of its tokens and reads its weights, though each of a token's k picks lands on one."""
    skew = routing_skew(moe)
    assigned = T_group * moe.top_k
    imb = rank_imbalance(plans, assigned, ep, moe, skew)
    touched = experts_touched(T_group, moe.num_experts, moe.top_k, skew)
    if np.any(np.asarray(plans.eplb_redundant) >= 0):
        touched = np.minimum(touched * expert_slots(plans.eplb_redundant, moe.num_experts), np.maximum(assigned, touched))
    return assigned, imb, touched


def rank_touched(touched, assigned, ep, imb, experts):
    """Experts whose weights the busiest expert-parallel rank reads: the mean rank's share of the ``touched`` experts,
    scaled by how many more of its own experts that rank's ``imb`` x the mean rows reach (``experts``: the slots the
    group holds, E, or E + R with a balancer's replicas; E / ep a rank). A rank holding k experts that r rows route to
    evenly touches k (1 - exp(-r / k)) of them (each expert missed by every row, the Poisson form of (1 - 1/k)^r, which
    stays defined for one expert a rank and a fraction of a row); at a few rows a rank every row lands on a new expert,
    so the busiest rank reads about ``imb`` x the mean's weights, and once every expert a rank holds is touched the
    ranks read alike. TensorRT-LLM's DeepSeek-R1 latency study on 8 B200 names the effect: expert parallelism
    "distribut[es] workloads unevenly across GPUs" at one to four tokens a step, and moving from EP8 to EP4 and EP2
    (tensor-parallel experts within each rank group) made decode faster (docs/source/blogs/tech_blog/
    blog1_Pushing_Latency_Boundaries_Optimizing_DeepSeek-R1_Performance_on_NVIDIA_B200_GPUs.md, "Mixed ETP")."""
    ep = np.maximum(np.asarray(ep, float), 1.0)
    mean = np.asarray(touched, float) / ep
    k = np.maximum(np.asarray(experts, float) / ep, 1.0)
    r = np.maximum(np.asarray(assigned, float) / ep, 1e-9)

    def reach(rows):
        return -np.expm1(-rows / k)

    ratio = np.where(ep > 1, reach(r * imb) / np.maximum(reach(r), 1e-300), 1.0)
    return np.minimum(mean * ratio, np.maximum(k, mean))


def held_slots(plans: PlanArrays, moe):
    """Expert slots the ranks of a MoE group hold between them: the experts, and a balancer's redundant replicas
    (expert_slots) where a plan runs one."""
    return moe.num_experts * expert_slots(plans.eplb_redundant, moe.num_experts)


def expert_rows(assigned, ep, imb):
    """Token-expert rows one device's experts process, on the busiest expert-parallel rank: that rank's share of
    the group's ``assigned`` token-expert pairs (``imb``: its load over the mean). Tensor-parallel experts (a MoE
    group wider than ``ep``) split each expert's weights, not its rows: every slice reads the hidden state of each
    row and writes a full-width partial output for it (vLLM fused_moe, TensorRT-LLM's MoE runner with moe_tp > 1),
    so the FLOPs divide by the slices and the activation traffic does not."""
    return assigned / np.maximum(ep, 1) * imb


def expert_width(m, plans, moe_tp):
    """An expert's intermediate width on one device: its share of the expert split over moe_tp devices, as the engine
    pads it (PlanArrays.expert_pad)."""
    return m.moe.expert_intermediate_size * plans.expert_pad / moe_tp


def expert_row_elems(m, plans, moe_tp):
    """Elements each routed row moves through the grouped GEMMs, as the dense MLP counts its own: the first reads the
    hidden state and writes gate and up (gated) or up, the second reads the activation's product (the expert's width
    on the device, as the engine pads it) and writes the hidden size."""
    return 2 * m.hidden_size + (3 if m.ffn_gated else 2) * expert_width(m, plans, moe_tp)


def _moe_act(cm: "CostModel", rows, plans, moe_tp, count) -> OpCost:
    """The experts' activation over ``rows`` routed rows, its own kernel between the grouped GEMMs: reads gate and up
    (gated) or up, writes their product."""
    m = cm.model
    return cm._elementwise(Op.MOE_ACT, rows * expert_width(m, plans, moe_tp), count, reads=2 if m.ffn_gated else 1,
                           flops_per_elem=5.0 if m.ffn_gated else 4.0)


def _moe_mlp(cm: "CostModel", c: _Ctx) -> list[OpCost]:
    """Router, token permutation, the experts as one grouped GEMM, the shared experts, and the EP all-to-all.

    Each expert's GEMM sees tokens x top-k / (experts touched) rows, so small batches run the experts at small-M
    efficiency and read only the experts they touch; the busiest expert-parallel rank sets the pace."""
    m, plans = cm.model, c.plans
    mo, h = m.moe, m.hidden_size
    wb = plans.weight_bytes
    cnt = c.layers_stage * m.num_moe_layers / m.num_layers
    moe_group = c.tp * c.adp
    moe_tp = moe_group / c.ep
    T_group = c.T_group  # tokens routed within the MoE group (all its attention-DP ranks)
    assigned, imb, touched = c.routing(mo)
    fused = shared_fused(cm, c)
    if fused is not None:  # the shared experts as experts every token picks: their rows and weights join the routed
        ns = float(mo.num_shared_experts)
        assigned = assigned + np.where(fused, T_group * ns, 0.0)
        touched = touched + np.where(fused, ns, 0.0)
    ops = [cm._gemm(Op.ROUTER, c.T, h * mo.num_experts, plans.gemm_flops, 2.0, cnt, in_out_elems=h)]
    # a device moves the rows of every assignment its experts get (expert_rows), full hidden size, however its experts
    # are split. A gather kernel (Engine.moe_gather "kernel": TensorRT-LLM's expandInputRows) reads each token and
    # writes a copy per chosen expert; the combine (finalizeMoeRouting, vLLM's moe_sum) reads the weighted rows and
    # writes each token once. Where the first grouped GEMM gathers its rows through the sorted indices ("gemm":
    # vLLM's and SGLang's fused_moe) only the combine moves them here; the GEMMs' own row traffic is theirs (below).
    # The reference loop over experts (grouped_moe_gemm False: the harness) keeps its own accounting: a gather and a
    # scatter-add per expert (two reads, two writes of each row) and one pass of rows in its GEMMs, the activation
    # inside its per-expert calls
    rows_dev = expert_rows(assigned, c.ep, imb)
    grouped = getattr(cm.engine, "grouped_moe_gemm", True)
    gemm_gather = getattr(cm.engine, "moe_gather", "kernel") == "gemm"
    per_token = 1.0 / max(float(mo.top_k), 1.0)  # a token's share of its rows: what it reads or writes once
    if not grouped:
        reads, writes = 2.0, 2.0
    elif gemm_gather:
        reads, writes = 1.0, per_token
    else:
        reads, writes = 1.0 + per_token, 1.0 + per_token
    ops.append(cm._elementwise(Op.MOE_PERMUTE, rows_dev * h, cnt, reads=reads, writes=writes, flops_per_elem=2.0))
    w_dev = m.expert_params() * plans.expert_pad / moe_tp  # elements of one expert on this device (as the engine pads it)
    m_per_expert = assigned / np.maximum(touched, 1e-9)
    # grouped expert GEMMs: the dense rate at their tokens per expert (gemm_half_m) times the engine's grouped-kernel
    # efficiency (params.moe_gemm)
    # the weights the busiest expert-parallel rank reads: the experts its own rows touch (rank_touched)
    busiest = rank_touched(touched, assigned, c.ep, imb, held_slots(plans, mo) + (0.0 if fused is None else fused * ns))
    experts = cm._gemm(Op.EXPERTS, rows_dev, w_dev, plans.gemm_flops * cm.kernels.moe_gemm, wb, cnt,
                       m_eff=m_per_expert, in_out_elems=expert_row_elems(m, plans, moe_tp) if grouped else h,
                       weight_touch=busiest * w_dev)
    ops.append(experts)
    if grouped:
        ops.append(_moe_act(cm, rows_dev, plans, moe_tp, cnt))
    # an expert loop: one membership test per expert, then per expert touched a gather, two GEMMs, the activation, the
    # gate weighting and a scatter-add (LOOP_CALLS_PER_EXPERT), each call paying the per-kernel gap
    launches = {Op.EXPERTS: mo.num_experts / c.ep + touched / c.ep * LOOP_CALLS_PER_EXPERT}
    if cm.profile is not None and not grouped:  # a capture's rows time the loop (planner.costmodel.profile)
        if measured_experts(cm, experts, T_group, mo.num_experts, mo.top_k, mo.num_experts / c.ep, w_dev, m.ffn_gated):
            # the GEMM rows hold their calls' own host time: the gap is left to the loop's other calls
            launches[Op.EXPERTS] -= 2.0 * touched / c.ep
        if np.all(moe_group == 1) and measured_moe_loop(cm, ops[1], T_group, h, mo.expert_intermediate_size,
                                                        mo.num_experts, mo.top_k):
            # the moe_loop rows time the top-k and every call of the loop besides its GEMMs, with their host time
            launches = {Op.ROUTER: 1.0, Op.MOE_PERMUTE: 1.0,
                        Op.EXPERTS: 1.0 if experts.source in ("measured", "interpolated") else 2.0 * touched / c.ep}
    if grouped:  # the grouped path's kernels (GROUPED_MOE_LAUNCHES), without a gather kernel where the GEMM gathers
        launches = {Op.MOE_PERMUTE: GEMM_GATHER_PERMUTE_LAUNCHES} if gemm_gather else {}
    for o in ops:  # every kernel beyond the op's first pays the per-kernel gap
        _launch(cm, o, launches[o.name] if o.name in launches else GROUPED_MOE_LAUNCHES[str(o.name)])
    if mo.num_shared_experts:
        shared = cm._gemm(Op.SHARED_EXPERT, c.T, m.shared_expert_params() / c.tp, plans.dense_flops, plans.dense_bytes,
                          cnt, in_out_elems=2 * h, own=cm._own_dense)
        if cm.shared_expert_stream:
            # a step replayed as a CUDA graph (or, where the engine says so, any step of at most stream_tokens tokens)
            # runs the shared experts on a second stream beside the routed path (router, permutation, grouped GEMMs,
            # activation): the device overlaps their kernels with it, so they add what they take beyond it, and at
            # least their own traffic, which shares the memory bus (where they run inside the grouped GEMM, _drop below
            # zeroes them whatever this sets)
            routed = sum(o.time_s for o in ops)
            beside = np.maximum(shared.time_s - routed, np.asarray(shared.bytes, float) / cm.bw)
            stream = cm.in_graph(plans, c) if not cm.stream_tokens else np.asarray(c.T) <= cm.stream_tokens
            shared.time_s = np.where(stream, np.minimum(shared.time_s, beside), shared.time_s)
        if fused is not None:  # inside the grouped GEMM (above): no op of their own
            _drop(shared, fused)
        ops.append(shared)
    # tokens leave the device for experts elsewhere only when attention is data parallel: dispatch and combine
    # an all-to-all: a copy of each token per chosen expert, each way. Without a peer-to-peer path for the expert
    # group (PCIe, or PCIe between NVLink-bridged cards) the all-to-all kernels, which need NVLink, give way to
    # all-gather (every rank receives every other rank's tokens) and reduce-scatter (each rank's partial outputs for
    # the others' tokens go back): ep - 1 copies of a token each way, however many experts it picked (TensorRT-LLM
    # fused_moe/communication/communication_factory.py: NVLink one- and two-sided all-to-alls first,
    # AllGatherReduceScatter the fallback that always works). The dispatch is priced at 16 bit, not post-quant.
    gather = np.where(cm.fabric.peer_all_to_all(c.ep),
                      c.T * mo.top_k * h * cm._act * (c.ep - 1) / np.maximum(c.ep, 1) * 2.0 * imb,
                      c.T * (c.ep - 1) * h * cm._act * 2.0)
    # experts split across devices (moe_tp > 1: fewer expert-parallel ranks than the group has devices): every slice
    # of an expert needs every token routed to it, so the attention-DP ranks all-gather their tokens across the group
    # and reduce-scatter the partial outputs back (SGLang's DP attention with a tensor-parallel MoE; TensorRT-LLM's
    # all-gather / reduce-scatter path): adp - 1 other ranks' tokens in, and their partial outputs out, per device
    a2a = np.where(moe_tp > 1, c.T * (c.adp - 1) * h * cm._act * 2.0, gather)
    t_a2a = np.where(c.adp > 1, all_to_all_time(cm.fabric, np.where(moe_tp > 1, moe_group, c.ep), a2a,
                                                call_s=cm.collective_call_s), 0.0)
    ops.append(cm._op(Op.EP_ALLTOALL, "comm", cnt, 0.0, np.where(c.adp > 1, a2a, 0.0), 0.0, 0.0, comm=t_a2a,
                      algorithm="all-gather + reduce-scatter" if np.all(moe_tp > 1) else "all-to-all"))
    return ops


def shared_fused(cm: "CostModel", c: _Ctx):
    """Where (per plan) the shared experts run inside the routed experts' grouped GEMM (Engine.shared_expert_fusion:
    SGLang's num_fused_shared_experts, which its DeepSeek layers turn off under expert parallelism); None: nowhere."""
    if not cm.shared_expert_fusion:
        return None
    fused = np.asarray(c.ep) <= 1
    return fused if np.any(fused) else None


def _drop(o: OpCost, where) -> None:
    """``o`` takes no time, work, traffic or kernel where ``where`` holds: what it did runs inside another op."""
    keep = ~np.asarray(where, bool)
    o.time_s, o.flops, o.bytes = (np.where(keep, x, 0.0) for x in (o.time_s, o.flops, o.bytes))
    o.weight_bytes = np.where(keep, o.weight_bytes, 0.0)
    o.launches = np.where(keep, o.launches, 0.0)
    if o.bound_parts is not None:
        o.bound_parts = tuple(None if x is None else np.where(keep, x, 0.0) for x in o.bound_parts)


def _launch(cm: "CostModel", o: OpCost, launches) -> None:
    """``o`` runs as ``launches`` kernels: each beyond the first adds the per-kernel gap where the op has work."""
    o.launches = launches
    active = (np.asarray(o.flops) > 0) | (np.asarray(o.bytes) > 0)
    o.time_s = o.time_s + np.where(active, (np.asarray(launches, float) - 1.0) * cm.kernel_s, 0.0)


def _mlp_norm(cm: "CostModel", c: _Ctx) -> list[OpCost]:
    if cm.model.parallel_attn_mlp:
        return []
    return [_fused_norm(cm, c, cm._elementwise(Op.MLP_NORM, c.T * cm.model.hidden_size, c.layers_stage))]


def _fused_norm(cm: "CostModel", c: _Ctx, op: OpCost) -> OpCost:
    """A layer norm that follows a tensor-parallel all-reduce, as an engine that fuses the two runs it
    (Engine.allreduce_norm_fusion, the models whose layers do: TensorRT-LLM 1.x's pass AllReduceFusionOp.RESIDUAL_RMS_NORM,
    so the all-reduce kernel adds the residual and writes the normed hidden state; SGLang's DeepSeek layers on SM100
    with FlashInfer's fused all-reduce; attention data parallelism runs no all-reduce, so nothing fuses there), up
    to the engine's token limit a step (Engine.allreduce_norm_fusion_tokens: SGLang's 2,048 after the MoE, where its
    4,096 after attention is not distinguished). Where fused the norm launches no kernel of its own: it keeps its
    traffic, which the all-reduce kernel moves besides its own, and drops the per-kernel gap. Every layer's two norms
    are taken as fused (the first layer's input norm, one of dozens, has no all-reduce before it), with pipeline
    parallelism too, where TensorRT-LLM's Llama 4 layers turn the fusion off and its Qwen3-MoE layers fuse only the
    post-attention norm: not distinguished here."""
    if not cm.norm_fusion:
        return op
    fused = (np.asarray(c.tp) > 1) & (np.asarray(c.adp) <= 1)
    if cm.norm_fusion_tokens:
        fused = fused & (np.asarray(c.T) <= cm.norm_fusion_tokens)
    if not np.any(fused):
        return op
    active = (np.asarray(op.flops) > 0) | (np.asarray(op.bytes) > 0)
    gap = np.where(fused & active, cm.kernel_s, 0.0)
    op.time_s = op.time_s - gap
    op.launches = np.where(fused, 0.0, op.launches)
    if op.bound_parts is not None:
        tc, tm, ovh, comm = op.bound_parts
        op.bound_parts = (tc, tm, ovh - gap, comm)
    return op


def _act_quant(cm: "CostModel", c: _Ctx) -> list[OpCost]:
    """The activation quantization a block-scaled FP8 checkpoint's GEMMs need (DeepSeek-V3/R1, Kimi K2 as released):
    before each FP8 GEMM a kernel reads its 16-bit input and writes it in FP8 with one scale per token and 128
    channels (vLLM per_token_group_quant_fp8, SGLang's per-token-group quant, TensorRT-LLM fp8_quantize_1x128). Per
    layer: the attention's input projections (MLA: the fused q/kv down-projection and q_b; else qkv) and o_proj; a dense
    MLP's up and down projections; a MoE layer's shared expert (up, down) and its experts (the hidden states before
    the first grouped GEMM, every routed row's activation before the second). One op per layer, averaged over the
    layer kinds; plans not serving the block-scaled format (PlanArrays.act_quant 0) pay nothing."""
    m, plans = cm.model, c.plans
    h, a = m.hidden_size, m.attention
    sh = attention_shard(m, c.tp)
    o_in = sh.o_elems / h  # o_proj's input width on the device
    if a.mla:
        attn_in, attn_k = (h + (a.mla.q_lora_rank or 0)) + o_in, 2.0 + (1.0 if a.mla.q_lora_rank else 0.0)
    else:
        attn_in, attn_k = h + o_in, 2.0
    elems = attn_in * c.T
    launches = attn_k  # kernels per layer, the same for every plan
    f_dense = m.num_dense_layers / m.num_layers
    if f_dense:
        elems = elems + f_dense * c.T * (h + m.intermediate_size / c.tp)
        launches = launches + 2.0 * f_dense
    if m.moe:
        mo = m.moe
        f_moe = m.num_moe_layers / m.num_layers
        moe_tp = c.tp * c.adp / c.ep
        assigned, imb, _ = c.routing(mo)
        rows = expert_rows(assigned, c.ep, imb)
        moe_elems = c.T * h + rows * mo.expert_intermediate_size / moe_tp
        n = 2.0
        if mo.num_shared_experts:
            # the shared experts' input and activation, two kernels; fused into the grouped GEMM (shared_fused) their
            # input is the routed experts' and their activation rows are quantized with the routed rows'
            width = mo.shared_expert_intermediate_size or mo.expert_intermediate_size
            fused = shared_fused(cm, c)
            alone = 1.0 if fused is None else np.where(fused, 0.0, 1.0)
            moe_elems = moe_elems + c.T * (alone * h + mo.num_shared_experts * width / c.tp)
            n = n + 2.0 * alone
        elems = elems + f_moe * moe_elems
        launches = launches + n * f_moe
    on = np.asarray(plans.act_quant, float)
    # reads the 16-bit input, writes one byte per element (the per-block scales are 1/128 of that)
    op = cm._elementwise(Op.ACT_QUANT, elems * on, c.layers_stage, reads=1.0, writes=0.5, flops_per_elem=3.0)
    _launch(cm, op, launches)
    return [op]


def layer_builders(model: Model, moe_offload=None, lora=None) -> list:
    """The builders of one decoder layer of ``model``, in order: its attention block, then its MLP kinds (a model
    may mix dense and MoE layers). A new family registers a builder here rather than editing ``step``.
    ``moe_offload`` (costmodel/moe_offload.py) selects the CPU-assisted attention / MoE builders."""
    off = getattr(moe_offload, "mode", None)
    out = [ATTENTION_BUILDERS["cpu" if off == "attention" else model.attention.kind], _mlp_norm]
    if model.attention.linear is not None:
        out.insert(1, _linear_attention_block)
    if model.num_dense_layers:
        out.append(MLP_BUILDERS["dense"])
    if model.moe:
        out.append(MLP_BUILDERS["moe" if moe_offload is None else "moe-offload"])
    if lora is not None:
        out.append(ADAPTER_BUILDERS["lora"])
    if model.native_weights is not None and model.native_weights.scale_block:
        out.append(_act_quant)
    return out


def _moe_offload_mlp(cm: "CostModel", c: "_Ctx") -> list[OpCost]:
    from planner.costmodel.moe_offload import moe_offload_mlp

    return moe_offload_mlp(cm, c)


def _cpu_attention_block(cm: "CostModel", c: "_Ctx") -> list[OpCost]:
    from planner.costmodel.moe_offload import cpu_attention_block

    return cpu_attention_block(cm, c)


# attention kinds differ in their split (shard.py), not in the ops they run
ATTENTION_BUILDERS = {"mha": _attention_block, "gqa": _attention_block, "mqa": _attention_block, "mla": _attention_block,
                      "cpu": _cpu_attention_block}
MLP_BUILDERS = {"dense": _dense_mlp, "moe": _moe_mlp, "moe-offload": _moe_offload_mlp}


def _lora(cm: "CostModel", c: "_Ctx") -> list[OpCost]:
    from planner.costmodel.lora import lora_ops

    return lora_ops(cm, c)


ADAPTER_BUILDERS = {"lora": _lora}  # per-layer ops a plan adds beside the base layer (costmodel/lora.py)


def _logits_copy(cm: "CostModel", c: _Ctx) -> list[OpCost]:
    """The output rows' logits (vocabulary x FP32 each) copied to host memory in the step, where the engine samples on
    the CPU (Engine.logits_to_host: llama_decode reads them back before it returns): one copy over the host link after
    the last stage's lm_head. No op where the engine samples on the device or the device has no host link of its own."""
    if not np.isfinite(cm.logits_host_bw):
        return []
    byts = c.out_tokens * cm.model.vocab_size * LOGIT_BYTES
    return [cm._op(Op.LOGITS_COPY, "comm", 1.0, 0.0, byts, 0.0, 0.0, comm=byts / cm.logits_host_bw,
                   algorithm="device to host")]


def _head_ops(cm: "CostModel", c: _Ctx) -> list[OpCost]:
    """Once per step: embedding, final norm, lm_head (and the logits' copy to the host, _logits_copy), and the
    pipeline hops between stages."""
    m, plans = cm.model, c.plans
    h = m.hidden_size
    act = cm._act
    t_pp = p2p_time(cm.fabric, c.tp * c.pp, c.T * h * act)
    return [
        cm._op(Op.EMBEDDING, "memory", 1.0, 0.0, c.T * h * plans.head_bytes + c.T * h * act, 0.0,
               c.T * h * (plans.head_bytes + act) / cm.bw),
        cm._elementwise(Op.FINAL_NORM, c.out_tokens * h, 1.0),
        cm._gemm(Op.LM_HEAD, c.out_tokens, h * m.vocab_size / c.tp,
                 plans.gemm_flops if plans.head_gemm_flops is None else plans.head_gemm_flops, plans.head_bytes, 1.0,
                 in_out_elems=h + m.vocab_size / c.tp * 2),
        *_logits_copy(cm, c),
        cm._op(Op.PP_SENDRECV, "comm", 1.0, 0.0, np.where(c.pp > 1, c.T * h * act, 0.0), 0.0, 0.0,
               comm=np.where(c.pp > 1, t_pp * (c.pp - 1), 0.0), algorithm="send/recv"),
    ]
