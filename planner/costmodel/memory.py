"""Memory per device: weights under TP/PP/EP, KV cache per token (GQA, MLA, sliding
window, quantized KV, KV heads replicated when tp exceeds them), activations and
runtime overhead; and the context and concurrency that fit. Vectorized over plans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.costmodel.eplb import expert_slots
from planner.costmodel.plans import PlanArrays
from planner.costmodel.shard import attention_shard, linear_shard
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.model import Model

GiB = 2.0**30


def weight_bytes_per_device(model: Model, p: PlanArrays) -> np.ndarray:
    """Bytes of weights on the busiest device (a middle pipeline stage holds no embedding)."""
    c = model.param_counts()
    tp, pp, adp = p.tp.astype(float), p.pp.astype(float), p.adp.astype(float)
    sh = attention_shard(model, tp)
    attn_per_layer = sh.qkv_elems + sh.o_elems + sh.other_elems
    mixers = attn_per_layer * model.num_attention_layers
    if model.attention.linear is not None:
        ls = linear_shard(model, tp)
        mixers = mixers + (ls.in_elems + ls.out_elems + ls.other_elems) * model.num_linear_layers
    # the non-expert linear layers in their own format where a checkpoint released in two precisions is served as
    # released (PlanArrays.dense_bytes), the attention projections in 16 bit where the format's MoE recipe keeps them
    # so (PlanArrays.proj_bytes), else in the plan's
    dense_elems = c["dense_mlp"] / tp + c["shared_experts"] / tp
    # a balancer's redundant slots hold replicas of experts: (E + R) / E of the experts' weights over the group
    slots = expert_slots(p.eplb_redundant, model.moe.num_experts) if model.moe else 1.0
    rest_elems = c["norms"] + c["router"] + c["final_norm"] + c["experts"] * p.expert_pad * slots / (tp * adp)
    layer_bytes = (mixers * p.proj_bytes + dense_elems * p.dense_bytes + rest_elems * p.weight_bytes) / pp
    emb = c["embedding"] / tp * p.head_bytes
    head = c["lm_head"] / tp * p.head_bytes
    emb = emb + c.get("vision", 0) / tp * p.weight_bytes  # an image encoder sits with the embedding (first stage)
    ends = np.where(pp > 1, np.maximum(emb, head), emb + head)
    return layer_bytes + ends


def frees_window(engine: Engine | None) -> bool:
    """Whether ``engine`` applies local layers' windows (sliding window, Llama-4 chunks): it keeps only the window's
    KV and attends over it. TensorRT-LLM before 1.0 realises a sliding window only as its cyclic KV cache
    (max_attention_window_size, a runtime setting that defaults to the whole sequence): unset, every layer holds
    and attends over the whole sequence. None (no engine named): the windowed cache."""
    return engine is None or bool(getattr(engine, "kv_window_freed", True))


def chunks_decode(engine: Engine | None) -> bool:
    """Whether ``engine``'s decode steps keep to Llama-4 chunks (attend over the current chunk only and free the KV
    before it). TensorRT-LLM 1.x runs chunked attention for context requests alone (its long-sequence guide), so its
    decode attends over, and its cache holds, the whole sequence on those layers. None: chunked."""
    return frees_window(engine) and bool(getattr(engine, "chunked_attention_decode", True))


def local_kv_layers(model: Model, engine: Engine | None) -> int:
    """Layers whose cache keeps only a window under ``engine``: sliding-window layers where it frees windows, Llama-4
    chunked layers where its decode keeps to the chunk too."""
    return ((model.num_sliding_layers() if frees_window(engine) else 0)
            + (model.num_chunked_layers() if chunks_decode(engine) else 0))  # chunks_decode implies frees_window


def kv_bytes_per_token_layers(model: Model, p: PlanArrays, engine: Engine | None = None) -> tuple[np.ndarray, np.ndarray]:
    """KV bytes per token on one device: (full-length layers, sliding-window layers). Local layers of an engine
    that does not free KV outside the window count as full-length ones."""
    per_layer = attention_shard(model, p.tp).kv_elems_per_token
    pp = p.pp.astype(float)
    # local layers (sliding window, or Llama-4 chunks: the engine frees keys before the current chunk); linear-attention
    # layers cache no keys (their fixed state: linear_state_bytes_per_seq)
    n_swa = local_kv_layers(model, engine)
    full = per_layer * (model.num_attention_layers - n_swa) / pp * p.kv_bytes
    if model.attention.index is not None:  # the sparse-attention indexer's own key per token (FP8 and its scale)
        full = full + model.attention.index.key_bytes_per_token() * model.num_indexer_layers / pp  # IndexShare: fewer
    swa = per_layer * n_swa / pp * p.kv_bytes
    return full, swa


# Gated DeltaNet state: vLLM's MambaStateDtypeCalculator (gated_delta_net_state_dtype) keeps the convolution window in
# the model's 16-bit dtype and the recurrent state in --mamba-ssm-cache-dtype, the model dtype unless set (Qwen3.5's
# config hook sets it from config.json mamba_ssm_dtype: LinearAttention.state_dtype); a quantized KV cache does not
# quantize either
LINEAR_STATE_BYTES = 2.0  # the convolution window, and the recurrent state unless the model says fp32


def linear_state_bytes_per_seq(model: Model, p: PlanArrays) -> np.ndarray:
    """Bytes one sequence's linear-attention state takes on a device, whatever its length (0 without such layers)."""
    lin = model.attention.linear
    if lin is None:
        return np.zeros(np.shape(p.tp))
    ls = linear_shard(model, p.tp)
    per_layer = ls.recurrent_elems * lin.state_bytes + ls.conv_state_elems * LINEAR_STATE_BYTES
    return per_layer * model.num_linear_layers / p.pp.astype(float)


def kv_bytes_per_seq(model: Model, p: PlanArrays, ctx, block_tokens: int = 1, engine: Engine | None = None) -> np.ndarray:
    """KV bytes one sequence of ``ctx`` tokens holds on a device (whole blocks). Sparse attention's streaming heads
    (costmodel/sparse.py) keep only their window of the full-attention layers' KV (not under MLA, whose latent is
    shared by every head); context parallelism spreads a sequence's KV over cp devices. ``engine``: whether local
    layers keep only their window (``frees_window``)."""
    ctx = np.ceil(np.asarray(ctx, float) / block_tokens) * block_tokens
    full, swa = kv_bytes_per_token_layers(model, p, engine)
    w = model.attention.local_window
    h = 1.0 if model.attention.mla else np.asarray(p.sa_dense, float)
    full_tokens = h * ctx + (1.0 - h) * np.minimum(ctx, np.asarray(p.sa_window, float)) if np.any(h < 1) else ctx
    held_full, held_swa = full * full_tokens, swa * (np.minimum(ctx, w) if w else ctx)
    rule = getattr(engine, "kv_window_pools", None) if w else None
    if rule is None or not np.any(swa > 0):
        kv = held_full + held_swa
    else:
        kv = window_pool_charge(held_full, held_swa, ctx, w, rule, float(engine.kv_swa_tokens_ratio))
    kv = kv / np.asarray(p.cp, float)
    return kv + linear_state_bytes_per_seq(model, p) if model.attention.linear is not None else kv


def window_pool_charge(held_full, held_swa, ctx, window: int, rule: str, swa_ratio: float = 0.8) -> np.ndarray:
    """KV memory one sequence of ``ctx`` tokens costs an engine that keeps a pool per attention-window size with a
    static share of the memory, where it holds ``held_full`` bytes in the full-length layers' pool and ``held_swa`` in
    the windowed layers' (``window`` tokens): the memory divided by the sequences the binding pool admits.

    "equal" (TensorRT-LLM's KV cache manager, BaseKVCacheManager::calculateMaxNumBlocks with no
    TRTLLM_WINDOW_SIZE_SHARES): each distinct window size gets an equal share, so with two, sequences = min(M / 2 /
    held_full, M / 2 / held_swa) and the cost is 2 max(held_full, held_swa); a window as long as the sequence is one
    size with the full-length layers (the manager clamps windows to the longest sequence). gpt-oss, half its layers
    windowed, then holds as many sequences as with every layer at full length.

    "ratio" (SGLang's SWA pool, --swa-full-tokens-ratio r): the windowed layers hold r tokens for every token the
    full-length ones hold, M = T (F + r S) for F and S bytes a token, so sequences = min(T / ctx, r T / min(ctx, W))
    and the cost is (F + r S) max(ctx, min(ctx, W) / r)."""
    ctx = np.asarray(ctx, float)
    if rule == "equal":
        two = (held_full > 0) & (ctx > window)
        return np.where(two, 2.0 * np.maximum(held_full, held_swa), held_full + held_swa)
    if rule == "ratio":
        per_tok_full = held_full / np.maximum(ctx, 1.0)
        per_tok_swa = held_swa / np.maximum(np.minimum(ctx, window), 1.0)
        cost = (per_tok_full + swa_ratio * per_tok_swa) * np.maximum(ctx, np.minimum(ctx, window) / swa_ratio)
        return np.where(held_full > 0, cost, held_full + held_swa)  # every layer windowed: one pool, no split
    raise ValueError(f"unknown KV window-pool rule {rule!r}")


def profile_rows(eng: Engine, max_seqs=None):
    """Sequences of a full step, the dummy requests of an engine's memory profile: min(batch limit, batched tokens)."""
    return np.minimum(eng.max_seqs if max_seqs is None else max_seqs, eng.max_batched_tokens)


def activation_bytes(model: Model, p: PlanArrays, eng: Engine, max_seqs=None) -> np.ndarray:
    """Activation workspace per device; ``max_seqs`` (per row) replaces the engine's batch limit where a benchmark
    tool set its own."""
    tp = p.tp.astype(float)
    ffn = model.moe.expert_intermediate_size * model.moe.top_k if model.moe else model.intermediate_size
    ffn = max(ffn, model.intermediate_size if model.num_dense_layers else 0)
    per_token = 4 * model.hidden_size + 2 * ffn / tp + (model.num_heads + 2 * model.num_kv_heads) * model.head_dim / tp
    forward = eng.max_batched_tokens * per_token * p.act_bytes
    rows = profile_rows(eng, max_seqs)
    sampler = eng.sampler_at_release  # the sampler path the release's own install takes
    if sampler:
        # vLLM's profile run: a forward pass of max_batched_tokens, then the sampler on the last token of each of
        # min(tokens, max_seqs) dummy requests, full-vocabulary logits on every rank; the peak is the larger
        return np.maximum(forward, rows * model.vocab_size * sampler)
    return forward + rows * model.vocab_size / tp * 4.0  # fp32 logits


@dataclass
class MemoryResult:
    weights_bytes: np.ndarray
    activation_bytes: np.ndarray
    runtime_bytes: np.ndarray
    usable_bytes: np.ndarray  # utilization x capacity
    kv_capacity_bytes: np.ndarray  # what is left for the KV cache (may be negative)
    capacity_bytes: float
    kv_full_per_token: np.ndarray
    kv_swa_per_token: np.ndarray
    state_per_seq: np.ndarray | float = 0.0  # linear-attention state of one sequence, whatever its length

    @property
    def fits_weights(self) -> np.ndarray:
        return self.kv_capacity_bytes > 0


def memory(model: Model, hw: Hardware, p: PlanArrays, eng: Engine = Engine(), *, max_seqs=None) -> MemoryResult:
    """``max_seqs``: per-row batch limits replacing the engine's (a benchmark tool's own batch size)."""
    cap = hw.memory_visible_bytes  # what the runtime reports: the engines' fractions are of it, and nothing beyond it is theirs
    w = weight_bytes_per_device(model, p)
    act = activation_bytes(model, p, eng, max_seqs)
    rt = np.full_like(w, eng.runtime_for(hw))
    if eng.collective_runtime_bytes:  # a replica of several devices holds NCCL communicators and buffers on each
        rt = rt + np.where(p.gpus_per_replica > 1, eng.collective_runtime_bytes, 0.0)
    full, swa = kv_bytes_per_token_layers(model, p, eng)
    if eng.kv_policy == "free":
        kv = eng.utilization * (cap - w - act - rt)
        usable = w + act + rt + np.maximum(kv, 0.0)
        usable = np.where(kv > 0, usable, cap)
    elif eng.kv_policy == "static":
        # SGLang: the fraction is of the memory free when the weights start loading (after the CUDA context and NCCL),
        # and holds the weights and the KV pool; activations and CUDA graphs live in the rest. What the engine uses is
        # that pool plus its activations and runtime (so weights + KV + activations + runtime <= usable, as for the
        # other policies)
        pool = eng.utilization * (cap - rt)
        kv = pool - w
        usable = pool + act + rt
    else:
        usable = np.full_like(w, cap * eng.utilization)
        kv = usable - w - act - rt
    return MemoryResult(w, act, rt, usable, kv, cap, full, swa, linear_state_bytes_per_seq(model, p))


def fraction_to_hold(eng: Engine, capacity: float, weights: float, other: float, runtime: float, kv: float) -> float:
    """The smallest engine memory fraction (Engine.utilization) at which memory() leaves ``kv`` bytes of KV cache beside
    ``weights`` and ``other`` (activations and runtime, ``runtime`` of it the runtime alone) on a device of ``capacity``
    bytes, under the engine's policy: of the whole device, of the memory free after the weights, or SGLang's static pool
    of weights and KV. inf where no fraction does."""
    if eng.kv_policy == "free":
        room = capacity - weights - other
        return kv / room if room > 0 else float("inf")
    if eng.kv_policy == "static":
        return (weights + kv) / (capacity - runtime)
    return (weights + other + kv) / capacity


def context_that_fits(model: Model, p: PlanArrays, kv_bytes, limit) -> np.ndarray:
    """Longest context (tokens, at most ``limit``) whose KV fits in ``kv_bytes`` per device, for any mix of
    sliding windows, sparse-attention streaming heads and context parallelism: KV grows monotonically with
    context, so a vectorized bisection on it finds the answer (within one token)."""
    kv = np.maximum(np.asarray(kv_bytes, float), 0.0)
    limit = np.broadcast_to(np.asarray(limit, float), kv.shape)
    lo, hi = np.zeros_like(kv), limit.copy()
    fits_all = kv_bytes_per_seq(model, p, hi) <= kv
    for _ in range(int(np.ceil(np.log2(max(float(np.max(limit, initial=1.0)), 2.0)))) + 1):
        mid = np.floor((lo + hi) / 2.0)
        ok = kv_bytes_per_seq(model, p, mid) <= kv
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return np.where(fits_all, limit, lo)


def max_context(model: Model, mem: MemoryResult, p: PlanArrays | None = None, extension_factor: float = 1.0) -> np.ndarray:
    """Longest single sequence whose KV fits (capped at the model's trained context, times the context-extension
    factor when RoPE scaling serves past it). ``p`` with sparse attention or context parallelism: exact by bisection."""
    limit = float(np.floor(model.max_context * extension_factor))
    if p is not None and (p.sparse or np.any(np.asarray(p.cp) > 1)):
        return context_that_fits(model, p, mem.kv_capacity_bytes, limit)
    kv = np.maximum(mem.kv_capacity_bytes - mem.state_per_seq, 0.0)  # a sequence's fixed state comes first
    w = model.attention.local_window
    full, swa = mem.kv_full_per_token, mem.kv_swa_per_token
    with np.errstate(divide="ignore", invalid="ignore"):
        if not w:
            ctx = kv / (full + swa)
        else:
            below = kv / (full + swa)  # while ctx <= window
            above = np.where(full > 0, (kv - swa * w) / np.where(full > 0, full, 1.0), np.inf)
            ctx = np.where(below <= w, below, above)
    return np.floor(np.minimum(ctx, limit))


def max_concurrency(model: Model, p: PlanArrays, mem: MemoryResult, ctx, eng: Engine = Engine()) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of ``ctx`` tokens that fit per replica, before and after the engine cap."""
    per_seq = kv_bytes_per_seq(model, p, ctx, eng.kv_block_tokens, eng)
    n = np.floor(np.maximum(mem.kv_capacity_bytes, 0.0) / per_seq) * p.adp
    return n, np.minimum(n, eng.max_seqs)
