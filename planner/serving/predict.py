"""One plan, predicted: memory, the steady state (static or in-flight batching), accuracy and cost.

This is the serving layer's prediction of a single plan; ``planner.api.estimate`` is a thin facade over it, and
calibration and validation call it directly (they sit below the api in the layering). The in-flight steady
state and every technique in it come from ``serving/batching.py``, the same code the plan search runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planner.cap.accuracy import accuracy as accuracy_of
from planner.cap.accuracy import model_terms
from planner.costmodel.collectives import host_link_bytes_per_s
from planner.costmodel.memory import fraction_to_hold, kv_bytes_per_seq, max_context, memory
from planner.costmodel.moe_offload import check_offload, offloaded_memory, parse_moe_offload
from planner.costmodel.plans import make_plans, mmq_clock_factor, mmq_rate
from planner.costmodel.shard import attention_shard
from planner.costmodel.step import BOUND_NAMES, METAL_MM_TILE_TOKENS, CostModel, StepCost
from planner.errors import PlannerError
from planner.serving.batching import SPEC_AUTO_MAX_K, Techniques, inflight, static_batch
from planner.serving.captech import cap_setup
from planner.serving import tenancy
from planner.serving.host import host_kv_bytes_per_device, weight_stream_link
from planner.serving.shared_prefix import SharedPrefix, shared_prefix
from planner.serving.planspec import PlanSpec, check_eplb, check_plan, eviction_of, resolve_parallel  # noqa: F401  (re-exported)
from planner.specs.engine import Engine, era_notes, get_engine, next_release
from planner.specs.hardware import Hardware
from planner.specs.loader import get_hardware, get_model
from planner.specs.model import Model
from planner.specs.quant import get_format, kv_bytes_per_element, resolve

GiB = 2.0**30


class Estimate(BaseModel):
    """The prediction of one plan. Units are in the field names (seconds, tokens/s, bytes); ``plan``, ``memory``,
    ``accuracy``, ``cost`` and ``breakdown`` are plain mappings with their units in their keys."""

    model_config = ConfigDict(extra="forbid")

    model: str
    hardware: str
    plan: dict
    gpus: int
    fits: bool
    reason: str
    ttft_s: float
    tpot_s: float  # mean time between output tokens after the first (inter-token latency)
    e2e_latency_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    requests_per_s: float
    memory: dict
    max_context_tokens: int
    max_concurrency: int
    concurrency_cap: str
    accuracy: dict
    cost: dict
    breakdown: dict
    queue_wait_s: float = 0.0
    notes: list[str] = Field(default_factory=list)
    uncertainty: dict | None = None  # relative error band per metric, from cross-validated residuals
    lora: dict | None = None  # adapter memory, per-step cost and miss rate (costmodel/lora.py)
    intra_gpu_pd: dict | None = None  # the SM split and the aggregated plan it replaces (serving/intragpu.py)
    finetune: dict | None = None  # FlexLLM: training tokens/s beside this inference load (serving/finetune.py)
    variants: dict | None = None  # BlockLLM: fine-tuned variants sharing base blocks, their bytes and what is saved

    def to_dict(self) -> dict:
        return self.model_dump()


def _breakdown(sc: StepCost | None) -> list[dict]:
    if sc is None:
        return []
    rows = []
    total = float(sc.time_s[0])
    for o in sc.ops:
        t = float((o.time_s * o.count)[0])
        if t <= 0:
            continue
        rows.append({
            "op": str(o.name), "kind": o.kind, "time_s": t, "share": t / total if total else 0.0,
            "flops": float((o.flops * o.count)[0]), "bytes": float((o.bytes * o.count)[0]),
            "bound": BOUND_NAMES[int(o.bound[0])], "source": o.source,
            **({"algorithm": o.algorithm} if o.algorithm else {}),
        })
    return rows


@dataclass
class _Setup:
    """What a plan means on a device before any timing: formats, memory, admission limits, techniques."""

    m: Model
    hw: Hardware
    plan: PlanSpec
    engine: Engine
    kv: str
    res: object  # the resolved format (compute dtype, native or not)
    p: object  # PlanArrays
    cap: object  # the context/attention techniques (serving/captech.py)
    cm: CostModel
    mem: object  # MemoryResult
    off: object | None  # CPU-assisted MoE (costmodel/moe_offload.py)
    lora: object | None
    variants: dict | None
    evict: tuple[str, int] | None
    isl_m: int  # prompt tokens the model sees (after prompt compression)
    host: float  # host bytes per device for offloaded KV
    kv_cap: float  # device bytes left for the KV cache
    per_seq: float  # KV bytes of one sequence (whole blocks; a draft model's KV included), less a shared prefix held once
    fit_n: int  # sequences memory admits
    capped: int  # ... and the engine's batch cap
    # an engine that grows sequences into free blocks on demand (Engine.kv_admission ondemand or ratio: vLLM, SGLang):
    # the KV bytes of a running sequence at what it holds on average in a closed loop (on_demand_tokens; None: it
    # reserves the whole length), and the sequences it runs at once where more clients come than fit at full length
    per_seq_mean: float | None
    demand_n: int
    ctx_max: int
    notes: list[str]
    shared: SharedPrefix  # --shared-prefix: its tokens, the bytes held once a device, the decode reads' rule

    def kv_need(self, n_run: float) -> float:
        """KV bytes a device holds for ``n_run`` running sequences: each one's own, and one copy of a shared prefix
        per device (each attention-DP rank keeps its own)."""
        n = max(n_run, 0)
        per = self.per_seq if n <= self.fit_n or self.per_seq_mean is None else self.per_seq_mean
        return per * n / self.plan.attention_dp + (self.shared.bytes if n > 0 else 0.0)


def prepare(model, hardware, plan: PlanSpec, isl: int, osl: int, engine):
    """What every prediction of ``plan`` on a device starts from (estimate and the vectorized study points share it):
    (model, hardware, the engine with its device rules, KV format, resolved weight format, plan arrays, the
    context/attention techniques, the cost model, memory with a draft model's / compressor's weights taken out)."""
    m = get_model(model) if isinstance(model, str) else model
    hw = get_hardware(hardware) if isinstance(hardware, str) else hardware
    engine = get_engine(engine)
    engine = engine.for_hardware(hw, plan.tp, plan.pp)  # the limits the engine picks on this device
    engine.check_weights(plan.weights, hw)  # a format the engine has no kernel for is refused, not priced
    kv = plan.kv_format(engine, m)
    engine.check_kv(kv)
    kv_bytes_per_element(kv)
    res = resolve(get_format(plan.weights), hw, plan.activations)
    check_eplb(plan, m, engine)
    p = make_plans(m, hw, tp=plan.tp, pp=plan.pp, ep=plan.ep, adp=plan.attention_dp, cp=plan.cp, weights=plan.weights,
                   kv=kv, activations=plan.activations, engine=engine, eplb_redundant=plan.eplb)
    cap, p = cap_setup(plan, m, hw, p, isl, osl, engine)
    cm = CostModel(m, hw, engine=engine)
    mem = memory(m, hw, p, engine)
    mem.kv_capacity_bytes = mem.kv_capacity_bytes - cap.extra_bytes()
    return m, hw, engine, kv, res, p, cap, cm, mem


def fitting(per_seq, room, adp: int):
    """Sequences of ``per_seq`` KV bytes that ``room`` bytes a device hold, times the attention-DP ranks (each holds its
    own); 0 where a sequence takes no bytes. Vectorized (estimate_points' per-point sizes)."""
    per = np.asarray(per_seq, float)
    return (np.where(per > 0, np.floor(np.maximum(room, 0.0) / np.where(per > 0, per, 1.0)), 0).astype(np.int64)
            * adp)


def on_demand_tokens(engine, isl, osl):
    """Tokens a running sequence holds on average in a closed loop of more clients than fit at full length, on an
    engine that grows sequences into free blocks on demand (Engine.kv_admission ondemand or ratio: vLLM, SGLang); None
    where the engine reserves a request's whole length (TensorRT-LLM). Past the full-length count such an engine keeps
    admitting while a prompt's blocks are free, so the running sequences, evenly spread over their replies, hold
    isl + osl / 2 (the simulator's ondemand admission, which then preempts as they grow); SGLang's ratio admission also
    keeps new_token_ratio of every running reply's rest free, and a retraction sets that ratio to the share the running
    replies have decoded, about a half: isl + osl / 2 + osl / 4."""
    admission = engine.kv_admission
    if admission == "reserve":
        return None
    return isl + (osl // 2 if admission == "ondemand" else (3 * osl) // 4)


def recompute_tokens(engine, clients, run, demand, seats, osl):
    """Prompt tokens a request is prefilled again for, on average, in a closed loop whose clients queue on an engine that
    admits on demand (Engine.kv_admission ondemand: vLLM) at the count its cache holds: each reply that ends frees its
    isl + osl tokens of blocks, and the engine admits waiting prompts into all of it while the running sequences'
    growth needs the osl of it back, so about osl tokens of prompts a reply are admitted, then preempted as the others
    grow, and computed again. Vectorized; 0 where no client waits, the engine reserves or rations (SGLang's ratio keeps
    the replies' rest free), or its batch cap binds before memory."""
    if engine.kv_admission != "ondemand":
        return 0.0
    queued = (np.asarray(run, float) < np.asarray(clients, float)) & (np.asarray(run) == np.asarray(demand)) & (
        np.asarray(demand) < seats)
    return np.where(queued, np.asarray(osl, float), 0.0)


def running(clients, capped: int, demand: int):
    """Sequences a replica runs at once for ``clients`` of its own in a closed loop: all of them up to ``capped`` (what
    KV memory holds at full length, under the engine's cap), past it up to ``demand`` (an on-demand engine's count at
    the mean length; ``capped`` where the engine reserves); the rest wait in the queue. No cap at all (nothing fits at
    full length): every client, for the fit check to refuse."""
    if capped < 1:
        return clients
    return min(clients, demand if clients > capped else capped)


def _setup(model, hardware, plan: PlanSpec | None, isl: int, osl: int, engine) -> _Setup:
    plan = plan or PlanSpec()
    check_plan(plan, isl, osl)
    m, hw, engine, kv, res, p, cap, cm, mem = prepare(model, hardware, plan, isl, osl, engine)
    # a replica's devices must reach each other (the CLI checks the whole deployment the same way before it gets here)
    cm.fabric.check_reaches(plan.tp * plan.pp * plan.attention_dp * plan.cp, "tp x pp x attention-dp x cp", hw.id)
    off = parse_moe_offload(plan.moe_offload)
    if off is not None:  # cold experts / decode attention on the host CPU, narrower experts: less on the device
        check_offload(off, m, hw)
        cm.moe_offload, mem = off, offloaded_memory(off, m, hw, p, mem, engine)
    lora = tenancy.lora_cost(plan, m, hw)
    if lora is not None:  # the resident adapters come out of the KV cache; their GEMMs join every layer
        cm.lora = lora
        mem.kv_capacity_bytes = mem.kv_capacity_bytes - lora.resident_bytes_per_device(plan.tp, plan.pp)
    variants = tenancy.variants(plan, float(mem.weights_bytes[0]))
    if variants is not None:  # the variants' own blocks come out of the KV cache too
        mem.kv_capacity_bytes = mem.kv_capacity_bytes - variants["extra_bytes_over_base"]
    evict = eviction_of(plan)
    isl_m = cap.model_isl(isl)
    seq_tokens = isl_m + osl if evict is None else min(isl_m + osl, evict[1])
    host = host_kv_bytes_per_device(hw) if plan.kv_offload else 0.0
    if plan.kv_offload and host <= 0:
        raise PlannerError(f"{hw.id} has no host memory on record to offload KV to")
    kv_cap = max(float(mem.kv_capacity_bytes[0]), 0.0)
    shared = shared_prefix(m, hw, engine, p, plan, isl_m)

    def seq_bytes(tokens: int) -> float:
        """KV bytes of one sequence of ``tokens`` (whole blocks, a draft model's KV too), less a shared prefix, whose
        blocks are held once, not by every sequence."""
        return (float(kv_bytes_per_seq(m, p, tokens, engine.kv_block_tokens, engine)[0])
                + cap.draft_kv_per_seq(tokens, engine.kv_block_tokens) - shared.bytes)

    per_seq = seq_bytes(seq_tokens)
    seats = engine.max_seqs * plan.attention_dp
    fit_n = int(fitting(per_seq, kv_cap + host - shared.bytes, plan.attention_dp))
    capped = min(fit_n, seats)
    per_seq_mean, demand_n = None, capped
    held = on_demand_tokens(engine, isl_m, osl)
    if held is not None and fit_n < seats and evict is None and not plan.kv_offload:
        per_seq_mean = seq_bytes(held)
        demand_n = max(min(int(fitting(per_seq_mean, kv_cap - shared.bytes, plan.attention_dp)), seats), capped)
    limit = int(m.max_context * cap.extension_factor)  # RoPE scaling serves past the trained context
    ctx_max = int(max_context(m, mem, p, cap.extension_factor)[0]) if not plan.kv_offload else int(min(np.floor(
        (kv_cap + host) / max(float(mem.kv_full_per_token[0] + mem.kv_swa_per_token[0]), 1e-30)) * plan.cp, limit))
    ctx_kv = ctx_max  # the longest sequence the KV cache holds (before prompt compression stretches it)
    ctx_max = int(ctx_max * cap.ratio)  # prompt compression: the longest original prompt (the model holds 1/ratio of it)
    notes = era_notes(engine) + ([res.note] if res.note else []) + cap.notes(m, isl, osl)
    if engine.python_executor and hw.host_cpu is not None:
        notes.append(f"{hw.id}'s host CPU ({hw.host_cpu.name}) takes {hw.host_cpu.op_time_ratio:g}x an x86 server's time per "
                     f"PyTorch op; {engine.name}'s executor runs in Python and its host time per step is priced at an x86 "
                     f"server's, so steps the host bounds (a small model at large batches) may run slower than shown "
                     f"(not modelled)")
    fmt = get_format(plan.weights)
    if fmt.moe_mixers_16bit_source and m.stored_formats(plan.weights)[0] != plan.weights:
        notes.append(f"{plan.weights} on a MoE model: its attention projections stay in 16 bit, as the format's MoE checkpoints "
                     f"keep them ({fmt.moe_mixers_16bit_by}), and are held and computed in bf16")
        q = m.quantized_out_proj
        if q is not None and plan.weights in q.formats:  # recorded, not priced (planner.specs.model.QuantizedOutProj)
            o = float(np.ravel(attention_shard(m, plan.tp).o_elems)[0]) * m.num_attention_layers / plan.pp
            notes.append(f"{m.id}'s published {plan.weights} checkpoint quantizes the attention output projection (wo) "
                         f"too, which is not priced: it holds {o * (2.0 - fmt.bytes) / GiB:.1f} GiB a GPU less than "
                         f"shown, room for more KV cache (model spec: quantized_out_proj; docs/accuracy.md says why)")
    if not plan.kv and plan.weights == "fp8" and kv != "fp8":  # the engine's default keeps a 16-bit cache
        why = (f"{m.id} is released in fp8 without a KV format" if m.released_weights() == "fp8"
               else f"{engine.name}'s default KV dtype (auto) is the model's 16-bit one")
        notes.append(f"KV cache {kv}: {why}; --kv fp8 quantizes it (half the bytes per token)")
    if cm.block_fp8_applies(p):
        said = [(field, f"{verb} at {d:g} (dense layers)" + (f" and {mo:g} (experts)" if m.moe else "") + f" of {what}")
                for field, verb, (d, mo), what in (("block_fp8_bw", "stream", cm.block_fp8_bw, "the memory roofline's bandwidth"),
                                                   ("block_fp8_compute", "compute", cm.block_fp8_compute, "the plain FP8 GEMM rate"))
                if (d, mo) != (1.0, 1.0)]
        notes.append(f"block-scaled FP8 weights {' and '.join(phrase for _, phrase in said)} with {engine.name}'s kernels on "
                     f"{hw.architecture} (engine profile: {', '.join(f for f, _ in said)})")
    if cm.library_bw < 1.0 and plan.weights in ("fp16", "bf16"):
        where = (f"above {cm.skinny_tokens} tokens (fewer run in its own skinny kernel)" if cm.skinny_tokens
                 else "at every token count (no skinny GEMM kernel)")
        notes.append(f"{engine.name} runs its 16-bit linear layers in the vendor BLAS library's tiled GEMMs {where} on "
                     f"{hw.architecture}, whose few-token GEMMs stream weights at {cm.library_bw:g} of the device's "
                     "bandwidth (engine profile: library_gemm_bw" + (", skinny_gemm_tokens)" if cm.skinny_tokens else ")"))
    mmq = mmq_rate(engine, hw, plan.weights)
    if mmq > 0:
        lanes = f" x {hw.cuda_core_issue_gain():g} for its {hw.fp32_lanes_per_sm} FP32 lanes per SM" if hw.fp32_lanes_per_sm else ""
        clock = mmq_clock_factor(engine, hw)
        held = (f" x {clock:.2f} for the clock it sustains under GEMMs beside {engine.mmq_reference_of(hw)}'s (their "
                "16-bit GEMM fractions, engine profile: mmq_reference)") if clock < 1.0 else ""
        notes.append(f"{engine.name} runs {plan.weights}'s prompt GEMMs as MMQ (int8 dot products, weight blocks unpacked on "
                     f"the vector units): priced at {mmq / 1e12:.0f} TFLOPS, {engine.mmq_ratio(hw):g} x the FP32 peak{lanes}"
                     f"{held}, a multiple calibrated on published llama-bench rows (engine profile: mmq_fp32_ratio, whose source "
                     "names them)")
    if engine.ubatch_tokens and isl_m > engine.ubatch_tokens:
        passes = -(-int(isl_m) // engine.ubatch_tokens)
        notes.append(f"{engine.name} runs a {isl_m:,.0f}-token prompt as {passes} forward passes of at most "
                     f"{engine.ubatch_tokens} tokens (its micro-batch, engine profile: ubatch_tokens), each reading every "
                     "weight and attending over the cache the passes before it wrote"
                     + ("" if engine.flash_attention else "; without flash attention each pass's scores go through memory "
                        "(engine profile: flash_attention)"))
    if engine.gemm_tile and hw.vendor == "nvidia":
        rows, toks = engine.gemm_tile
        if hw.sm_count is None:
            notes.append(f"{hw.id} has no SM count on record, so {engine.name}'s prompt GEMMs are priced without the waves "
                         f"of {rows} x {toks} tiles its library runs them in (hardware spec: sm_count)")
        elif isl_m >= 2:
            notes.append(f"{engine.name}'s prompt GEMMs run as {rows} x {toks} tiles (output rows x tokens), one per SM at a "
                         f"time over {hw.sm_count.value} SMs, and are timed in whole waves (engine profile: gemm_tile)")
    if cm.sm_stream_cap is not None and cm.sm_stream_cap < cm.stream_bw:
        notes.append(f"{engine.name}'s memory-bound kernels keep few bytes in flight per SM: they stream at most "
                     f"{cm.sms} SMs x {cm.sm_stream_cap / cm.sms / 1e9:.1f} GB/s = {cm.sm_stream_cap / 1e12:.2f} TB/s, "
                     f"below {hw.id}'s STREAM {cm.stream_bw / 1e12:.2f} TB/s (engine profile: sm_stream_limited; kernel "
                     "parameter sm_stream, fitted)")
    if cm.metal_dequant and bool(np.any(p.weight_dequant)):
        notes.append(f"{engine.name}'s Metal matrix-vector kernels unpack {plan.weights} weights on {hw.id}'s FP32 ALUs at "
                     f"{cm.dequant_ops:.1f} operations a weight, which can bound a one-token step below the memory "
                     f"roofline (engine profile: metal_dequant_fitted; kernel parameter metal_dequant_ops, fitted)")
    if cm.dequant_serial and bool(np.any((np.asarray(p.weight_dequant) > 0) & (np.asarray(p.weight_bytes) < 2.0))):
        notes.append(f"{hw.id}'s GPU issues one ALU instruction a clock per scheduler (Apple M1 and M2), so in prompt "
                     f"steps Metal's matrix-matrix kernel unpacks the {plan.weights} weights (once per "
                     f"{METAL_MM_TILE_TOKENS:.0f}-token tile) and multiplies them in turn: the unpacking adds to the "
                     "prompt's GEMM time (hardware: SINGLE_ISSUE_ALU_ARCHITECTURES)")
    if cm.gqa_rereads and m.num_heads > m.num_kv_heads:  # num_kv_heads >= 1 (Model)
        until, later = engine.decode_reread_until, ""
        who, field = f"{engine.name} without flash attention", "gqa_reread_archs"
        if cm.paged_rereads:
            through = f", releases through {until}" if until else ""
            who = f"{engine.name}'s paged decode kernel (one thread block per query head{through})"
            field = "decode_reread_archs"
            if until and not engine.release:
                later = (f"; a later release named with its version (--engine {engine.id}@{next_release(until)}) "
                         "reads it once")
        notes.append(f"{who} reads the KV cache once per query head in decode on {hw.id}: "
                     f"{m.num_heads // m.num_kv_heads} reads of each cached token for {m.id}'s {m.num_heads} query heads on "
                     f"{m.num_kv_heads} KV heads (engine profile: {field}){later}")
    if cm.eager_capture_dropped:
        notes.append(f"{hw.id} is calibrated from a GPU capture whose kernel rows and host probes time eager PyTorch "
                     f"(planner profile's own engine): {engine.name} takes its fitted fractions, not those rows or its "
                     "per-call dispatch")
    long_prompt = engine.long_prompt_note(isl_m)
    if long_prompt:
        notes.append(f"{long_prompt}; priced whole, as with the budget raised")
    if engine.max_model_len_check and not plan.kv_offload and 0 < ctx_kv < limit:
        # vLLM's startup check: it sizes the cache, then refuses max_model_len (the model's context by default) if one
        # sequence of it does not fit
        notes.append(f"{engine.name} refuses to start with {m.id}'s full {limit:,}-token context on this memory: its KV cache "
                     f"holds {ctx_kv:,} tokens of one sequence; serve with --max-model-len {ctx_kv} or less (what this "
                     "estimate assumes, and what `plan --emit` writes) or a larger --gpu-memory-utilization")
    sampler_note = _sampler_path_note(engine, m, p, mem, kv_cap)
    if sampler_note:
        notes.append(sampler_note)
    if isl_m + osl > limit:
        notes.append(f"isl + osl = {isl_m + osl} exceeds the context of {m.id} ({limit:,} tokens"
                     + (f" = {cap.extension_factor:g} x {m.max_context:,} trained)" if cap.extension else ", as trained)"))
    if shared.note:
        notes.append(shared.note)
    return _Setup(m, hw, plan, engine, kv, res, p, cap, cm, mem, off, lora, variants, evict, isl_m, host, kv_cap, per_seq,
                  fit_n, capped, per_seq_mean, demand_n, ctx_max, notes, shared)


def _admit(s: _Setup, batching: str, batch, concurrency, osl: int) -> tuple[int, float, float, str]:
    """(clients over the whole deployment, clients per replica, sequences running at once per replica, the note on
    what caps them). ``--batch`` and ``--concurrency`` count the whole deployment: its ``dp`` replicas share them
    evenly. Closed-loop clients beyond what memory and the engine admit wait in the queue."""
    plan, cap_seqs = s.plan, s.engine.max_seqs * s.plan.attention_dp
    dp = max(int(plan.dp), 1)
    if batching == "static":
        if batch is None or batch < 1:
            raise PlannerError("--batching static needs --batch N with N >= 1")
        if batch % dp:
            raise PlannerError(f"--batch {batch} does not split evenly over --dp {dp} replicas: give a multiple of {dp}")
        return batch, batch // dp, batch // dp, ""
    if batching != "inflight":
        raise PlannerError(f"unknown batching {batching!r} (use static or inflight)")
    if plan.weight_offload and concurrency in (None, "max") and s.fit_n < 1:
        return dp, 1, 1, "weights stream from outside device memory: one sequence unless --concurrency says more"
    if concurrency is None or concurrency == "max":
        each = " per replica" if dp > 1 else ""
        note = (f"max concurrency {s.capped * dp:,}: memory allows {s.fit_n}{each}, engine cap {cap_seqs}{each}"
                if s.fit_n > cap_seqs else f"max concurrency {s.capped * dp:,}: limited by KV-cache memory")
        return s.capped * dp, s.capped, s.capped, note
    n = int(concurrency)
    if n < 1:
        raise PlannerError("--concurrency must be a positive integer or 'max'")
    if n < dp:
        raise PlannerError(f"--concurrency {n} leaves some of the {dp} replicas (--dp) without a client: give at least {dp}")
    per = n / dp if n % dp else n // dp
    n_run = running(per, s.capped, s.demand_n)
    if n_run > s.capped >= 1:  # an on-demand engine runs more than fit at full length (on_demand_tokens)
        each, rep = (f" ({n_run:g} on each of {dp} replicas)", " a replica") if dp > 1 else ("", "")
        again = (f"prefills about {osl:,} prompt tokens a request again, the prompts it admits into a finished reply's "
                 "blocks and preempts as the others grow (priced here)" if float(recompute_tokens(
                     s.engine, per, n_run, s.demand_n, cap_seqs, osl)) > 0 else
                 "preempts few, keeping the running replies' rest free (not priced)")
        s.notes.append(f"{n} clients: {s.engine.name} admits a request while its prompt's blocks are free and grows it on "
                       f"demand, so {n_run * dp:g} run at once{each} at their mean length, where {s.capped}{rep} fit at "
                       f"full length; it {again}; `simulate --clients` replays it request by request")
    if n_run < per:
        run_all = n_run * dp
        s.notes.append(f"{n} clients, {run_all:g} run at once (KV memory and the engine's batch cap"
                       + (f", {n_run} on each of {dp} replicas" if dp > 1 else "") + f"); the other {n - run_all:g} wait "
                       "in the queue and their wait is in TTFT")
    if per >= 2:
        s.notes.append("TTFT is the staggered loop's: clients whose replies differ in length fall out of step, one prompt "
                       "joining the running decodes at a time; a benchmark at one fixed length (--ignore-eos) keeps them "
                       "in waves whose prompts queue behind each other, a longer TTFT that --requests M (the benchmark's "
                       "--num-prompts) replays")
    return n, per, n_run, ""


def _fit(s: _Setup, n_run: int, isl: int, osl: int) -> tuple[bool, str, dict, str]:
    """(fits, reason, the memory block, the weight-streaming note). With --weight-offload, weights that do not fit
    stream from host or disk every forward pass (the cost model then prices the exposed link time)."""
    plan, mem, hw = s.plan, s.mem, s.hw
    weights_b = float(mem.weights_bytes[0])
    kv_need = s.kv_need(n_run)
    other = float(mem.activation_bytes[0] + mem.runtime_bytes[0]) + s.cap.extra_bytes()
    usable = float(mem.usable_bytes[0])
    on_device_kv = min(kv_need, s.kv_cap) if plan.kv_offload else kv_need
    on_device_kv = 0.0 if s.off is not None and s.off.mode == "attention" else on_device_kv  # the KV cache is on the host
    total = weights_b + on_device_kv + other
    # a request longer than the trained context is predicted (published runs do exceed it) with a note; the CLI
    # refuses it up front unless the plan extends the context
    fits = n_run >= 1 and total <= usable + 1e-6 * usable
    stream_note = ""
    if not fits and plan.weight_offload and n_run >= 1:
        usable = s.engine.utilization * hw.memory_visible_bytes
        resident = usable - other - kv_need
        if resident > 0:
            frac = max(weights_b - resident, 0.0) / weights_b
            link = weight_stream_link(hw, plan.weight_offload)
            s.cm = CostModel(s.m, hw, engine=s.engine, weight_stream=(frac, link[1]))
            s.cm.lora = s.lora
            fits, total = True, usable
            stream_note = (f"{frac:.0%} of the weights ({frac * weights_b / GiB:.1f} GiB per GPU) stream from "
                           f"{plan.weight_offload} over {link[0]} every forward pass, prefetched under compute")
            s.notes.append(stream_note)
    # a fraction that would hold one sequence, where not even one fits
    hint = _fraction_hint(s.engine, hw, weights_b, other, float(mem.runtime_bytes[0]), s.per_seq + s.shared.bytes, isl + osl) \
        if weights_b + other > usable or (not fits and s.fit_n == 0) else ""
    if weights_b + other > usable:
        reason = (f"does not fit: weights need {weights_b / GiB:.1f} GiB per GPU (+{other / GiB:.1f} GiB runtime), "
                  f"usable {usable / GiB:.1f} GiB of {hw.memory_capacity_bytes / GiB:.1f} GiB" + _native_hint(s.m, plan.weights)
                  + hint)
    elif not fits:
        reason = (f"does not fit: {max(n_run, 1)} sequence(s) of {isl + osl} tokens need "
                  f"{(weights_b + other + s.kv_need(max(n_run, 1))) / GiB:.1f} GiB per GPU, usable "
                  f"{usable / GiB:.1f} GiB (at most {s.fit_n} fit)" + hint)
    else:
        reason = ""
    mem_d = {
        "fits": bool(fits), "weight_streaming": stream_note or None, "weights_bytes": weights_b, "kv_cache_bytes": kv_need,
        "kv_offloaded_bytes": max(kv_need - s.kv_cap, 0.0) if plan.kv_offload else 0.0,
        "activation_bytes": float(mem.activation_bytes[0]), "runtime_bytes": float(mem.runtime_bytes[0]),
        "total_bytes_per_gpu": total, "capacity_bytes_per_gpu": hw.memory_capacity_bytes,
        "usable_bytes_per_gpu": usable, "kv_bytes_per_token": float(mem.kv_full_per_token[0] + mem.kv_swa_per_token[0]),
    }
    return fits, reason, mem_d, stream_note


def _timing(s: _Setup, batching: str, n: int, n_run: int, isl: int, osl: int, kv_need: float,
            asked_balance: int | None = None) -> dict:
    """TTFT, TPOT, throughput and the step breakdown of the plan's steady state (static or in-flight), with the
    multi-tenant terms (adapters, an intra-GPU split, co-served fine-tuning). ``asked_balance``: the request's
    attention-DP balance (None: the engine's, Engine.attention_dp_balance)."""
    plan, cm, p = s.plan, s.cm, s.p
    balance = adp_balance_for(s.engine, plan.attention_dp, asked_balance)
    spec_used = float(plan.spec_k)
    if batching == "static":
        t = static_batch(cm, p, n, s.isl_m, osl)
    else:
        kv_per_token = float(s.mem.kv_full_per_token[0] + s.mem.kv_swa_per_token[0])
        tech = Techniques(chunk_tokens=plan.chunk_tokens, spec_k=plan.spec_k, spec_alpha=plan.spec_alpha,
                          offload_fraction=float(np.clip(1 - s.kv_cap / max(kv_need, 1.0), 0, 1)) if plan.kv_offload else 0.0,
                          host_bw_bytes_per_s=host_link_bytes_per_s(s.hw),
                          kv_budget_tokens=s.evict[1] if s.evict else np.inf,
                          prefix_hit_tokens=plan.prefix_hit_tokens + s.shared.tokens,  # one of the two is 0 (check_plan)
                          shared_read=s.shared.read,
                          spec_auto=plan.spec_auto, draft=s.cap.draft, compress_ratio=s.cap.ratio,
                          compress_s=s.cap.compress_s(cm, p, isl),
                          adapter_load_s=s.lora.ttft_s(plan.tp, plan.pp) if s.lora is not None else 0.0,
                          adp_balance=balance, recompute_tokens=recompute_tokens(s.engine, n, n_run, s.demand_n,
                                                                                 s.engine.max_seqs * plan.attention_dp, osl))
        t = inflight(cm, p, n, isl, osl, tech, max_running=n_run, kv_bytes_per_token=kv_per_token)
        spec_used = float(np.asarray(t.spec_k).ravel()[0])
        if s.shared.read is not None:
            saved = float(np.ravel(t.shared_read_tokens)[0])
            s.notes.append(f"at this batch a decode step reads the shared prefix once: {saved:,.0f} tokens of KV a sequence "
                           "fewer" if saved > 0 else "at this batch every sequence's read of the shared prefix is priced: "
                           "it and a wave of attention CTAs outgrow the last-level cache (or one sequence runs)")
        if balance:
            held = float(np.ravel(t.balance_wait_s)[0])
            s.notes.append(f"attention-DP balancing holds a new prompt until one waits for each of the {plan.attention_dp} "
                           f"ranks or {balance} decode steps pass: {held * 1e3:,.1f} ms on average at this batch, the "
                           "clients' prompts arriving evenly (a fixed-length benchmark's clients return in groups, which "
                           "`simulate --clients` replays)")
        if cm.recv_interval > 1:
            wait = float(np.ravel(t.poll_wait_s)[0])
            s.notes.append(f"the scheduler polls for new requests every {cm.recv_interval} decode steps: a prompt that arrives "
                           f"while others decode waits {wait * 1e3:,.1f} ms more on average for the next poll, and enters "
                           "with the prompts that arrived in the meantime" if wait > 0 else
                           f"the scheduler polls for new requests every {cm.recv_interval} decode steps, and at once when "
                           "idle: a lone client's prompt does not wait")
        busy = float(np.ravel(t.api_thread_busy)[0])
        if busy > 0:
            s.notes.append(api_thread_note(s.engine, busy))
        if plan.spec_auto:
            s.notes.append(f"adaptive speculation: {spec_used:g} draft tokens per step at this batch (the most tokens/s "
                           f"among 0..{SPEC_AUTO_MAX_K} at acceptance {plan.spec_alpha:g})")
    for note in (_eager_note(s, t.prefill, "prompt"), _eager_note(s, t.decode, "decode"), _host_note(s, t.decode)):
        if note:
            s.notes.append(note)
    ttft, tpot = float(t.ttft_s[0]), float(t.tpot_s[0])
    out = {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": float(t.e2e_s[0]), "tok": float(t.output_tokens_per_s[0]) * plan.dp,
           "rps": float(t.requests_per_s[0]) * plan.dp, "wait": float(t.queue_wait_s[0]), "spec_used": spec_used,
           "breakdown": {"prefill": _breakdown(t.prefill), "decode": _breakdown(t.decode)},
           "lora": tenancy.lora_summary(s.lora, plan, t)}
    out["intra"] = tenancy.intra(plan, batching, cm, p, n_run, s.isl_m, osl, s.lora, (ttft, tpot, out["tok"] / plan.dp))
    if out["intra"] is not None:  # the split GPU's numbers replace the aggregated ones (kept in intra_gpu_pd.aggregated)
        i = out["intra"]
        out.update(ttft_s=i["ttft_s"], tpot_s=i["tpot_s"], tok=i["output_tokens_per_s"] * plan.dp, wait=0.0)
        out.update(rps=out["tok"] / osl, e2e_s=i["ttft_s"] + (osl - 1) * i["tpot_s"])
    out["finetune"] = tenancy.finetune(plan, batching, cm, p, n_run, s.isl_m, osl, out["tpot_s"])
    return out


HOST_SHARE_NOTED = 0.2  # a synchronous engine's host time is noted once it is this share of the decode step


def _host_note(s: _Setup, sc: StepCost | None) -> str | None:
    """A note when the engine's host work (scheduling, sampling, detokenizing: a + b x sequences per step) sets the
    decode step time: it exceeds the GPU's under asynchronous scheduling, or takes HOST_SHARE_NOTED of the step
    without it. Single-stage plans (the step is then the ops' sum + the fixed step time); None otherwise."""
    cm = s.cm
    b = cm.step_host_per_seq_s
    if sc is None or not b or int(s.plan.pp) != 1 or cm.weight_stream is not None:
        return None
    gpu = float(np.ravel(sc.ops_time_s())[0]) + cm.step_s
    step = float(np.ravel(sc.time_s)[0])
    host = step if cm.async_scheduling else step - gpu
    if (cm.async_scheduling and step <= gpu * (1 + 1e-9)) or (not cm.async_scheduling and host < HOST_SHARE_NOTED * step):
        return None
    seqs = (host - cm.step_host_s) / b
    what = (f"{s.engine.name}'s host time per decode step, {cm.step_host_s * 1e6:.0f} us + {b * 1e6:.1f} us x "
            f"{seqs:,.0f} sequences = {host * 1e3:.1f} ms")
    why = (f"decode is host-bound: {what}, exceeds the GPU's {gpu * 1e3:.1f} ms (asynchronous scheduling hides host time "
           f"only up to the GPU time)" if cm.async_scheduling else f"{what}, is {host / step:.0%} of the step (not overlapped "
           f"with the GPU)")
    src = cm.kernels.provenance.get("seq_host_s", "")
    return why + (f"; per-sequence host time: {src}" if src else "")


def _eager_note(s: _Setup, sc: StepCost | None, kind: str) -> str | None:
    """A note when a step outside CUDA graphs waits on the host issuing its kernel calls (StepCost.host_floor_s): the
    calls' time exceeds the device's work. Single-stage plans; None otherwise."""
    cm = s.cm
    if sc is None or int(s.plan.pp) != 1 or cm.weight_stream is not None:
        return None
    host = float(np.ravel(sc.host_floor_s)[0])
    gpu = float(np.ravel(sc.ops_time_s())[0]) + cm.step_s
    if host <= gpu:
        return None
    calls = host / cm.eager_call_s
    return (f"the {kind} step runs outside CUDA graphs and waits on the host: {s.engine.name} issues its {calls:,.0f} kernel "
            f"calls at {cm.eager_call_s * 1e6:.0f} us each, {host * 1e3:.1f} ms, where the device's work is {gpu * 1e3:.1f} ms "
            f"(engine profile: eager_kernel_overhead_s)")


def _no_timing(s: _Setup) -> dict:
    nanv = float("nan")
    return {"ttft_s": nanv, "tpot_s": nanv, "e2e_s": nanv, "tok": nanv, "rps": nanv, "wait": 0.0,
            "spec_used": float(s.plan.spec_k), "breakdown": {"prefill": [], "decode": []},
            "lora": tenancy.lora_summary(s.lora, s.plan, None), "intra": None, "finetune": None}


def _cost(hw: Hardware, gpus: int, tok: float, fits: bool) -> dict:
    """Rented ($/h from the spec's price) and owned (purchase amortized + power x PUE x electricity) costs."""
    from planner.cap.cost import owned_cost_keys

    price = hw.price.usd_per_hour if hw.price else None
    served = tok if fits and tok > 0 else None
    return {
        "usd_per_gpu_hour": price,
        "usd_per_hour": price * gpus if price else None,
        "usd_per_million_output_tokens": (price * gpus / (tok * 3600) * 1e6) if price and served else None,
        "price_source": f"{hw.price.source} ({hw.price.date})" if hw.price else f"no published price for {hw.id}",
        **owned_cost_keys(hw, gpus, served),
    }


def estimate(
    model: str | Model,
    hardware: str | Hardware,
    plan: PlanSpec | None = None,
    *,
    isl: int = 1024,
    osl: int = 256,
    batching: str = "inflight",
    batch: int | None = None,
    concurrency: int | str | None = None,
    engine: Engine | str = "trtllm",
    task: str = "general",
    adp_balance: int | None = None,
) -> Estimate:
    """Predict one plan. ``batching='static'`` runs ``batch`` requests together; ``'inflight'`` is the
    continuous-batching steady state with ``concurrency`` clients in a closed loop (an int, or ``'max'`` for the
    most that memory and the engine's batch cap admit; clients beyond that wait in the queue). Both count the whole
    deployment: the plan's ``dp`` replicas share them evenly. ``adp_balance``: with attention DP in a closed loop, new
    prompts are held until every rank can take one, at most that many decode steps (TensorRT-LLM's enable_balance)."""
    s = _setup(model, hardware, plan, isl, osl, engine)
    plan, m, hw = s.plan, s.m, s.hw
    check_adp_balance(adp_balance, plan.attention_dp, batching)
    n, n_rep, n_run, cap_note = _admit(s, batching, batch, concurrency, osl)
    fits, reason, mem_d, stream_note = _fit(s, n_run, isl, osl)
    timed = fits or (n_run >= 1 and batching == "static")
    t = (_timing(s, batching, n_rep, n_run, isl, osl, mem_d["kv_cache_bytes"], adp_balance) if timed
         else _no_timing(s))
    gpus = plan.gpus
    if timed and batching == "inflight" and adp_balance is None and adp_balance_for(s.engine, plan.attention_dp, None):
        # the profile's balancing priced, which the request did not ask for: the engine's own default beside it
        off = _timing(replace(s, notes=[]), batching, n_rep, n_run, isl, osl, mem_d["kv_cache_bytes"], 0)
        s.notes.append(balance_default_note(s.engine, off["ttft_s"], off["tpot_s"], off["tok"] / gpus))
    eviction = (s.evict[0], s.evict[1], s.isl_m + osl) if s.evict else None
    if timed and batching == "inflight":
        note = budget_note(s.engine, s.isl_m, n_run / max(plan.attention_dp, 1), plan)
        if note:
            s.notes.append(note)
    if timed and s.engine.request_overhead_s > 0:
        s.notes.append(front_end_note(s.engine))
    return Estimate(
        model=m.id, hardware=hw.id,
        plan={"tp": plan.tp, "pp": plan.pp, "ep": plan.ep, "attention_dp": plan.attention_dp, "dp": plan.dp, "eplb": plan.eplb,
              "weights": plan.weights, "kv": s.kv, "compute_dtype": s.res.compute_dtype, "engine": s.engine.name,
              "engine_version": getattr(s.engine, "version", None), "batching": batching, "batch_or_concurrency": n,
              "running": n_run * plan.dp, "isl": isl, "osl": osl, "techniques": {**plan.techniques(), "spec_k_used": t["spec_used"]}},
        gpus=gpus, fits=bool(fits), reason=reason, ttft_s=t["ttft_s"], tpot_s=t["tpot_s"], e2e_latency_s=t["e2e_s"],
        output_tokens_per_s=t["tok"], output_tokens_per_s_per_gpu=t["tok"] / gpus if gpus else float("nan"),
        requests_per_s=t["rps"], memory=mem_d, max_context_tokens=s.ctx_max,
        max_concurrency=(n_run if stream_note else s.capped) * plan.dp, concurrency_cap=cap_note,
        accuracy=accuracy_of(plan.weights, s.kv, task=task, eviction=eviction, **model_terms(m), **s.cap.accuracy_knobs(),
                             expert_weights=s.off.expert_weights if s.off else None),
        cost=_cost(hw, gpus, t["tok"], fits), breakdown=t["breakdown"], queue_wait_s=t["wait"], notes=s.notes,
        lora=t["lora"], intra_gpu_pd=t["intra"], finetune=t["finetune"], variants=s.variants,
        uncertainty=_band(hw.id, m, t["ttft_s"], t["tpot_s"], osl, s.engine),
    )


def check_adp_balance(asked: int | None, adp: int, batching: str = "inflight") -> None:
    """A PlannerError for an --attention-dp-balance that means nothing: negative, or positive without attention DP over
    two ranks or more and in-flight batching (0, balancing off, is accepted anywhere)."""
    if asked is not None and (asked < 0 or (asked > 0 and (adp < 2 or batching != "inflight"))):
        raise PlannerError("--attention-dp-balance takes 0 (off) or, with --attention-dp 2 or more and in-flight batching, "
                           f"a positive number of decode steps (got {asked} with --attention-dp {adp}, {batching})")


def adp_balance_for(engine: Engine, adp: int, asked: int | None) -> int:
    """The decode steps an attention-DP prompt is held to line one up for every rank: the request's (0: off), else the
    engine's (Engine.attention_dp_balance, the balancing the deployment the planner emits runs); 0 without attention DP."""
    if adp < 2:
        return 0
    return int(asked) if asked is not None else int(getattr(engine, "attention_dp_balance", 0) or 0)


def balance_default_note(engine: Engine, ttft_s: float, tpot_s: float, tok_per_gpu: float) -> str:
    """Says that attention DP is priced with the engine profile's balancing, which a request did not ask for, and what
    the engine's own default (off) gives: ``ttft_s``, ``tpot_s`` and output tokens/s per GPU without it."""
    return (f"attention DP priced with {engine.name}'s balancing on, at most {engine.attention_dp_balance} decode steps' "
            "hold (attention_dp_config enable_balance, as `plan --emit` writes it and NVIDIA's recipes run attention DP); "
            f"the engine's own default is off, where a prompt step waits on one rank's prefill: TTFT {ttft_s * 1e3:,.1f} ms, "
            f"TPOT {tpot_s * 1e3:,.2f} ms, {tok_per_gpu:,.0f} output tokens/s per GPU (--attention-dp-balance 0)")


def plan_budget_beside_prompt(engine: Engine, isl: float, running_per_rank: float, plan: PlanSpec) -> float | None:
    """Engine.budget_beside_prompt for ``plan``: an isl-token prompt beside the rank's other running sequences, each
    decoding 1 + spec_k tokens a step, on an engine that chunks if the plan asks (--chunk-tokens)."""
    return engine.budget_beside_prompt(isl, running_per_rank - 1.0, 1.0 + max(float(plan.spec_k), 0.0),
                                       chunked=True if plan.chunk_tokens else None)


def budget_note(engine: Engine, isl: float, running_per_rank: float, plan: PlanSpec) -> str | None:
    """The note where an engine that runs prompts whole (TensorRT-LLM, chunked prefill off) has no room in its step
    budget for a prompt beside the running decodes: at its default it admits a prompt only once the batch has drained
    to what fits beside it (serially, for a prompt as long as the budget), while the steady state here prices the batch
    memory admits, the budget raised as trtllm-bench sizes it for itself (isl + the batch)."""
    need = plan_budget_beside_prompt(engine, isl, running_per_rank, plan)
    if need is None:
        return None
    each = 1.0 + max(float(plan.spec_k), 0.0)
    room = max(int((engine.max_batched_tokens - isl) // each), 0)
    flag = engine.flags.get("max_batched_tokens", "max_num_tokens")
    return (f"{engine.name} runs a prompt whole (chunked prefill off) in a step whose token budget the running decodes "
            f"share: at its default {engine.max_batched_tokens:,} ({flag}) a {isl:,.0f}-token prompt enters beside at "
            f"most {room:,} of them, so new prompts wait for the batch to drain to that"
            + (" and run one at a time" if room == 0 else "")
            + f"; priced at {running_per_rank:,.0f} running, with the budget raised to {need:,.0f} tokens (what "
            "trtllm-bench sizes for itself), or chunked prefill on (--chunk-tokens)")


def api_thread_note(engine: Engine, busy: float) -> str:
    """How busy the release's API-server thread is at this load (batching.api_thread), with its times and their source;
    past its capacity, that it sets the pace and what eases it."""
    from planner.costmodel.params import current_calibration

    c = current_calibration().get(engine.name)
    src = c.engine_wide.get("api_chunk_s", (0.0, ""))[1] if c is not None else ""
    how = "fitted on its serving-benchmark bursts" if src.startswith("rate fit") else "from its profile"
    what = (f"{engine.name}'s API server prepares each request ({engine.api_request_s * 1e3:.1f} ms) and writes each streamed "
            f"chunk ({engine.api_chunk_s * 1e6:.0f} us, one every {engine.stream_interval} decode step"
            f"{'s' if engine.stream_interval > 1 else ''}) on one thread ({how})")
    if busy < 1.0:
        return f"{what}: {busy:.0%} busy at this load, its time and queue are in the TTFT"
    return (f"{what}: at this load it needs {busy:.2f}x its capacity, so it sets the pace: throughput is {1 / busy:.0%} of "
            "what the GPUs would serve and TPOT stretches as much; TTFT is the rest of the clients' wait, which the "
            "steady state prices coarsely (--requests M replays the loop); a larger --stream-interval writes fewer chunks")


def front_end_note(engine: Engine) -> str:
    """What the TTFT holds besides the engine's steps: the release's per-request front-end time and where the
    calibration took it (fitted on the release's runs at request rates, or inferred from other releases')."""
    from planner.costmodel.params import current_calibration

    c = current_calibration().get(engine.name)
    chat = engine.endpoint == "chat" and engine.chat_request_overhead_s is not None
    src = c.engine_wide.get("chat_request_s" if chat else "request_s", (0.0, ""))[1] if c is not None else ""
    how = ("inferred from the releases fitted on runs at request rates" if src.startswith("inferred")
           else "fitted on its serving-benchmark runs" if src.startswith("rate fit") and "serving-benchmark" in src
           else "fitted on its runs at request rates" if src.startswith("rate fit") else "from its profile")
    if engine.endpoint == "chat" and not chat:
        how += "; no chat-endpoint runs of this release are fitted, so the completions endpoint's time stands for it"
    other = ""
    if engine.chat_request_overhead_s is not None and engine.endpoint == "completions":
        other = f"; through the chat endpoint (--endpoint chat) {engine.chat_request_overhead_s * 1e3:.1f} ms"
    return (f"TTFT includes {engine.name}'s per-request front-end time on the {engine.endpoint} endpoint, "
            f"{engine.request_overhead_s * 1e3:.1f} ms (HTTP, tokenize, detokenize; {how}){other}; a request submitted in "
            "process (an offline benchmark, the engine's Python API) pays none")


def _sampler_path_note(engine, m: Model, p, mem, kv_cap: float) -> str | None:
    """Where the engine's memory profile is set by its sampler warm-up and its other sampler path (vLLM: FlashInfer's
    top-k/top-p kernels against sorting the logits) would leave materially more or less cache (a quarter GiB and a
    tenth of the cache, or a cache where there is none), one line saying so: which path an install takes is known only
    as its release's images take it (Engine.sampler_bytes_from)."""
    from planner.costmodel.memory import activation_bytes, profile_rows

    at, other = engine.sampler_at_release, engine.sampler_other_path
    if not (at and other):
        return None
    act = float(mem.activation_bytes[0])
    alt = float(activation_bytes(m, p, engine.with_(sampler_bytes_per_logit=other, sampler_bytes_from=()))[0])
    gain = act - alt  # more cache on the other path where positive
    if abs(gain) < 0.25 * GiB or (kv_cap > 0 and abs(gain) < 0.1 * kv_cap):
        return None
    rows = int(profile_rows(engine))
    sorts = engine.sampler_path == "sorting"  # the release's own install sorts the logits; the other path is FlashInfer's
    who = engine.requested or (f"{engine.id}@{engine.release}" if engine.release else engine.name)
    chosen = "sampler" in engine.pinned  # the user named the install's path (--sampler)
    path = ("its sorting top-k/top-p path" + (", as --sampler sets" if chosen else "") if sorts else
            "FlashInfer's top-k/top-p kernels, " + ("as --sampler sets" if chosen else
                                                    f"which {engine.id}'s images of this release take"))
    head = (f"{who}'s memory profile charges {act / GiB:.1f} GiB a GPU for its sampler warm-up ({rows:,} sequences x "
            f"{m.vocab_size:,} logits at {at:g} bytes, {path}); ")
    if sorts:
        return head + (f"an install that samples with FlashInfer's kernels charges about {other:g} bytes a logit, "
                       f"{gain / GiB:.1f} GiB more cache a GPU here (--max-num-seqs lowers both)")
    return head + (f"an install without them (no flashinfer, or VLLM_USE_FLASHINFER_SAMPLER=0) sorts the logits at "
                   f"about {other:g} bytes a logit, {-gain / GiB:.1f} GiB less cache a GPU here (--max-num-seqs lowers "
                   "both)")


def _fraction_hint(eng, hw, weights_b: float, other: float, runtime_b: float, per_seq: float, tokens: int) -> str:
    """Where a higher engine memory fraction would hold the weights, the runtime and one sequence of ``tokens``
    (memory.fraction_to_hold), the fraction that does and the engine's flag for it; "" where none at most 0.99 does."""
    need = fraction_to_hold(eng, hw.memory_visible_bytes, weights_b, other, runtime_b, per_seq)
    if not need <= 0.99:
        return ""
    need = math.ceil(need * 100.0) / 100.0
    if not eng.utilization < need <= 0.99:
        return ""
    flag = eng.flags.get("utilization")
    how = f"{flag} {need:.2f}, planner --memory-fraction {need:.2f}" if flag else f"planner --memory-fraction {need:.2f}"
    return f"; at a memory fraction of {need:.2f} ({how}; the engine's default is {eng.utilization:g}) one sequence of {tokens} tokens fits"


def _native_hint(m: Model, weights: str) -> str:
    """A pointer to the format the model is released in when the plan asked for a wider one (gpt-oss in bf16 needs 218
    GiB; its MXFP4 checkpoint is 61 GiB)."""
    from planner.specs.quant import get_format

    fmt = m.released_weights()
    if fmt is None or get_format(fmt).bits >= get_format(weights).bits:
        return ""
    nw = m.native_weights
    size = f", {float(nw.checkpoint.value) / GiB:.1f} GiB" if nw.checkpoint is not None else ""
    return f"; {m.id} is released with {fmt} {'experts' if m.moe is not None else 'weights'}{size}: --weights {fmt}"


def _band(hardware_id: str, m: Model, ttft_s: float, tpot_s: float, osl: int, engine) -> dict:
    """The relative error band of this prediction's situation (published rows of the engine release on the device or
    not, prefill- or decode-bound, dense or MoE), from the cross-validated residuals of the published rows
    (planner.calibrate.uncertainty)."""
    from planner.calibrate.uncertainty import Situation, is_fitted, uncertainty

    phase = "prefill" if np.isfinite(ttft_s) and np.isfinite(tpot_s) and ttft_s > (osl - 1) * tpot_s else "decode"
    fitted = is_fitted(hardware_id, engine)  # looked up once: the band and the situation line both read it
    bands = uncertainty(Situation(fitted, phase, m.moe is not None, engine.id))
    if fitted:
        device = "fitted"
    else:
        device = f"inferred (no fitted rows of {engine.name} on it)" if is_fitted(hardware_id) else "inferred (no fitted rows on it)"
    return {"situation": {"device": device,
                          "phase": phase, "model": "moe" if m.moe else "dense", "engine": engine.id},
            "percentiles": [10, 90], **bands}


def fit(model: str | Model, hardware: str | Hardware, plan: PlanSpec | None = None, *, isl: int = 1024, osl: int = 256,
        engine: Engine | str = "trtllm") -> dict:
    """Memory per GPU and the limits it sets: does the plan fit, max context, max concurrency."""
    est = estimate(model, hardware, plan, isl=isl, osl=osl, batching="inflight", concurrency="max", engine=engine)
    mem = est.memory
    fixed = mem["weights_bytes"] + mem["activation_bytes"] + mem["runtime_bytes"]
    return {
        "model": est.model, "hardware": est.hardware, "plan": est.plan, "gpus": est.gpus,
        "fits": fixed < mem["usable_bytes_per_gpu"] and est.max_concurrency >= 1,
        "memory": {k: mem[k] for k in ("weights_bytes", "activation_bytes", "runtime_bytes", "usable_bytes_per_gpu",
                                       "capacity_bytes_per_gpu", "kv_bytes_per_token")},
        "kv_cache_capacity_bytes": mem["usable_bytes_per_gpu"] - fixed,
        "max_context_tokens": est.max_context_tokens, "max_concurrency": est.max_concurrency,
        "concurrency_cap": est.concurrency_cap, "reason": est.reason,
    }


