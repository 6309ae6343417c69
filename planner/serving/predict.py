"""One plan, predicted: memory, the steady state (static or in-flight batching), accuracy and cost.

This is the serving layer's prediction of a single plan; ``planner.api.estimate`` is a thin facade over it, and
calibration and validation call it directly (they sit below the api in the layering). The in-flight steady
state and every technique in it come from ``serving/batching.py``, the same code the plan search runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planner.cap.accuracy import accuracy as accuracy_of
from planner.costmodel.memory import kv_bytes_per_seq, max_concurrency, max_context, memory
from planner.costmodel.moe_offload import check_offload, offloaded_memory, parse_moe_offload
from planner.costmodel.plans import make_plans
from planner.costmodel.step import BOUND_NAMES, CostModel, StepCost
from planner.errors import PlannerError
from planner.serving.batching import SPEC_AUTO_MAX_K, Techniques, inflight, static_batch
from planner.serving.captech import cap_setup
from planner.serving.host import WEIGHT_OFFLOAD_TARGETS, host_kv_bytes_per_device, host_link_bytes_per_s, weight_stream_link
from planner.specs.engine import Engine, get_engine
from planner.specs.hardware import Hardware
from planner.specs.loader import get_hardware, get_model
from planner.specs.model import Model
from planner.specs.quant import get_format, kv_bytes_per_element, resolve
from planner.specs.quant import default_kv

GiB = 2.0**30


@dataclass
class PlanSpec:
    """One deployment plan: parallel sizes, precisions and the serving techniques it uses."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1  # replicas
    weights: str = "bf16"
    kv: str | None = None  # defaults to the weight format's natural KV (see kv_format)
    activations: str | None = None
    weight_offload: str | None = None  # "host" or "disk": stream weights that do not fit (TPI-LLM / EdgeMoE style)
    attention_dp: int = 1  # data-parallel attention over the MoE group (MLA / MoE models), with --ep
    chunk_tokens: int = 0  # chunked-prefill token budget per step (0: a whole prompt per step)
    spec_k: int = 0  # speculative decoding: draft tokens per step (one-layer draft head)
    spec_alpha: float = 0.0  # acceptance probability per drafted token
    kv_offload: bool = False  # KV that does not fit in device memory lives in host memory, read over the host link
    eviction: str | None = None  # "METHOD:TOKENS": keep at most TOKENS of KV per sequence (SnapKV, PyramidKV, ...)
    prefix_hit_tokens: int = 0  # prompt tokens served from the prefix cache
    spec_auto: bool = False  # choose the draft length per batch for the most tokens/s (spec_alpha still applies)
    draft_model: str | None = None  # a draft model id (its own weights, KV and steps); None: a one-layer head
    context_extension: str | None = None  # "METHOD:FACTOR" (yarn:4): serve up to FACTOR x the trained context
    prompt_compression: str | None = None  # "METHOD:RATIO" (llmlingua-2:4): prompts shrink RATIO-fold
    sparse_attention: str | None = None  # "METHOD:KEPT" (duoattention:0.5): see costmodel/sparse.py
    cp: int = 1  # context parallel devices per replica (ring attention; a distributed KV pool in decode)
    moe_offload: str | None = None  # CPU-assisted MoE / per-expert precision (costmodel/moe_offload.py)
    lora: str | None = None  # "ADAPTERS:RANK[:TARGETS]": LoRA adapters over the base model (costmodel/lora.py)
    lora_resident: int | None = None  # adapters resident in GPU memory per replica (None: all)
    lora_popularity: str | None = None  # uniform | zipf:S
    intra_gpu_pd: str | None = None  # "F" or "auto": F of the SMs prefill, 1 - F decode (serving/intragpu.py)
    finetune_tpot_s: float | None = None  # FlexLLM: co-serve a PEFT job while TPOT stays within this (serving/finetune.py)
    shared_variants: str | None = None  # BlockLLM "N:SHARED": N fine-tuned variants sharing that fraction of blocks

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.attention_dp * self.cp * self.dp

    def kv_format(self) -> str:
        if self.kv:
            return self.kv
        return default_kv(self.weights)

    def techniques(self) -> dict:
        return {"chunk_tokens": self.chunk_tokens, "spec_k": "auto" if self.spec_auto else self.spec_k,
                "spec_alpha": self.spec_alpha, "draft_model": self.draft_model, "kv_offload": self.kv_offload,
                "eviction": self.eviction, "prefix_hit_tokens": self.prefix_hit_tokens,
                "context_extension": self.context_extension, "prompt_compression": self.prompt_compression,
                "sparse_attention": self.sparse_attention, "cp": self.cp, "moe_offload": self.moe_offload,
                "lora": self.lora, "lora_resident": self.lora_resident, "lora_popularity": self.lora_popularity,
                "intra_gpu_pd": self.intra_gpu_pd, "finetune_tpot_s": self.finetune_tpot_s,
                "shared_variants": self.shared_variants}


def resolve_parallel(gpus: int | None, tp: int | None, pp: int | None, ep: int | None, dp: int | None,
                     attention_dp: int | None = None) -> tuple[int, int, int, int]:
    """Fill parallel sizes from ``--gpus``: tensor parallel over all GPUs unless told otherwise. With attention
    data parallelism the GPUs of a replica are attention_dp x tp x pp."""
    for name, v in (("gpus", gpus), ("tp", tp), ("pp", pp), ("ep", ep), ("dp", dp), ("attention-dp", attention_dp)):
        if v is not None and v < 1:
            raise PlannerError(f"--{name} must be a positive integer, got {v}")
    pp_, dp_, ep_, adp_ = pp or 1, dp or 1, ep or 1, attention_dp or 1
    if tp is None:
        if gpus is None:
            tp_ = 1
        else:
            if gpus % (pp_ * dp_ * adp_):
                raise PlannerError(f"--gpus {gpus} is not divisible by pp x dp x attention-dp = {pp_ * dp_ * adp_}")
            tp_ = gpus // (pp_ * dp_ * adp_)
    else:
        tp_ = tp
    if gpus is not None and tp_ * pp_ * dp_ * adp_ != gpus:
        raise PlannerError(f"tp x pp x attention-dp x dp = {tp_ * pp_ * adp_ * dp_} does not equal --gpus {gpus}")
    return tp_, pp_, ep_, dp_


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


def _eviction(plan: PlanSpec) -> tuple[str, int] | None:
    if not plan.eviction:
        return None
    method, _, tokens = plan.eviction.partition(":")
    try:
        budget = int(tokens)
    except ValueError:
        raise PlannerError(f"--eviction takes METHOD:TOKENS (e.g. snapkv:2048), got {plan.eviction!r}") from None
    if budget < 1:
        raise PlannerError(f"--eviction keeps at least one token, got {budget}")
    return method, budget


def _check_plan(plan: PlanSpec, isl: int, osl: int) -> None:
    if isl < 1 or osl < 1:
        raise PlannerError("--isl and --osl must be at least 1 token")
    if plan.weight_offload is not None and plan.weight_offload not in WEIGHT_OFFLOAD_TARGETS:
        raise PlannerError(f"--weight-offload takes {' or '.join(WEIGHT_OFFLOAD_TARGETS)}, not {plan.weight_offload!r}")
    if plan.spec_k < 0 or not 0.0 <= plan.spec_alpha < 1.0:
        raise PlannerError("speculation needs k >= 0 draft tokens and an acceptance rate in [0, 1)")
    if plan.chunk_tokens < 0 or plan.prefix_hit_tokens < 0:
        raise PlannerError("the chunk budget and prefix-cache hit tokens cannot be negative")
    if plan.cp < 1:
        raise PlannerError(f"--cp must be a positive integer, got {plan.cp}")


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
    ttft_includes_first_decode: bool = False,
    task: str = "general",
) -> Estimate:
    """Predict one plan. ``batching='static'`` runs ``batch`` requests together; ``'inflight'`` is the
    continuous-batching steady state with ``concurrency`` clients in a closed loop (an int, or ``'max'`` for the
    most that memory and the engine's batch cap admit; clients beyond that wait in the queue)."""
    m = get_model(model) if isinstance(model, str) else model
    hw = get_hardware(hardware) if isinstance(hardware, str) else hardware
    plan = plan or PlanSpec()
    engine = get_engine(engine) if isinstance(engine, str) else engine
    engine = engine.for_hardware(hw, plan.tp, plan.pp)  # the limits the engine picks on this device
    _check_plan(plan, isl, osl)
    get_format(plan.weights)
    kv = plan.kv_format()
    kv_bytes_per_element(kv)
    res = resolve(get_format(plan.weights), hw, plan.activations)
    p = make_plans(m, hw, tp=plan.tp, pp=plan.pp, ep=plan.ep, adp=plan.attention_dp, cp=plan.cp, weights=plan.weights,
                   kv=kv, activations=plan.activations, engine=engine)
    cap, p = cap_setup(plan, m, hw, p, isl, osl, engine)
    cm = CostModel(m, hw, engine=engine)
    mem = memory(m, hw, p, engine)
    mem.kv_capacity_bytes = mem.kv_capacity_bytes - cap.extra_bytes()  # a draft model's / compressor's weights
    off = parse_moe_offload(plan.moe_offload)
    if off is not None:  # cold experts / decode attention on the host CPU, narrower experts: less on the device
        check_offload(off, m, hw)
        cm.moe_offload, mem = off, offloaded_memory(off, m, hw, p, mem, engine)
    lora = _lora_cost(plan, m, hw)
    if lora is not None:  # the resident adapters come out of the KV cache; their GEMMs join every layer
        cm.lora = lora
        mem.kv_capacity_bytes = mem.kv_capacity_bytes - lora.resident_bytes_per_device(plan.tp, plan.pp)
    variants = _variants(plan, float(mem.weights_bytes[0]))
    if variants is not None:  # the variants' own blocks come out of the KV cache too
        mem.kv_capacity_bytes = mem.kv_capacity_bytes - variants["extra_bytes_over_base"]
    evict = _eviction(plan)
    isl_m = cap.model_isl(isl)  # prompt tokens the model sees (prompt compression)
    seq_tokens = isl_m + osl if evict is None else min(isl_m + osl, evict[1])
    host = host_kv_bytes_per_device(hw) if plan.kv_offload else 0.0
    if plan.kv_offload and host <= 0:
        raise PlannerError(f"{hw.id} has no host memory on record to offload KV to")
    kv_cap = max(float(mem.kv_capacity_bytes[0]), 0.0)
    per_seq = (float(kv_bytes_per_seq(m, p, seq_tokens, engine.kv_block_tokens)[0])
               + cap.draft_kv_per_seq(seq_tokens, engine.kv_block_tokens))
    fit_n = int(np.floor((kv_cap + host) / per_seq)) * plan.attention_dp if per_seq > 0 else 0
    capped = min(fit_n, engine.max_seqs * plan.attention_dp)
    limit = int(m.max_context * cap.extension_factor)  # RoPE scaling serves past the trained context
    ctx_max = int(max_context(m, mem, p, cap.extension_factor)[0]) if not plan.kv_offload else int(min(np.floor(
        (kv_cap + host) / max(float(mem.kv_full_per_token[0] + mem.kv_swa_per_token[0]), 1e-30)) * plan.cp, limit))
    ctx_max = int(ctx_max * cap.ratio)  # prompt compression: the longest original prompt (the model holds 1/ratio of it)
    notes = ([res.note] if res.note else []) + cap.notes(m, isl, osl)
    too_long = isl_m + osl > limit
    if too_long:
        notes.append(f"isl + osl = {isl_m + osl} exceeds the context of {m.id} ({limit:,} tokens"
                     + (f" = {cap.extension_factor:g} x {m.max_context:,} trained)" if cap.extension else ", as trained)"))

    queue_note = ""
    if batching == "static":
        if batch is None or batch < 1:
            raise PlannerError("--batching static needs --batch N with N >= 1")
        n = n_run = batch
        cap_note = ""
    elif batching == "inflight":
        if plan.weight_offload and concurrency in (None, "max") and fit_n < 1:
            n = n_run = 1
            cap_note = "weights stream from outside device memory: one sequence unless --concurrency says more"
        elif concurrency is None or concurrency == "max":
            n = n_run = capped
            cap_note = (f"max concurrency {capped}: memory allows {fit_n}, engine cap {engine.max_seqs * plan.attention_dp}"
                        if fit_n > engine.max_seqs * plan.attention_dp else f"max concurrency {capped}: limited by KV-cache memory")
        else:
            n = int(concurrency)
            if n < 1:
                raise PlannerError("--concurrency must be a positive integer or 'max'")
            n_run = min(n, capped) if capped >= 1 else n
            cap_note = ""
            if n_run < n:
                queue_note = (f"{n} clients, {n_run} run at once (KV memory and the engine's batch cap); "
                              f"the other {n - n_run} wait in the queue and their wait is in TTFT")
                notes.append(queue_note)
    else:
        raise PlannerError(f"unknown batching {batching!r} (use static or inflight)")

    weights_b = float(mem.weights_bytes[0])
    kv_per_token = float(mem.kv_full_per_token[0] + mem.kv_swa_per_token[0])
    kv_need = per_seq * max(n_run, 0) / plan.attention_dp
    other = float(mem.activation_bytes[0] + mem.runtime_bytes[0]) + cap.extra_bytes()
    usable = float(mem.usable_bytes[0])
    on_device_kv = min(kv_need, kv_cap) if plan.kv_offload else kv_need
    on_device_kv = 0.0 if off is not None and off.mode == "attention" else on_device_kv  # the KV cache is on the host
    total = weights_b + on_device_kv + other
    # a request longer than the trained context is predicted (published runs do exceed it) with a note; the CLI
    # refuses it up front unless the plan extends the context
    fits = n_run >= 1 and total <= usable + 1e-6 * usable
    stream_note = ""
    if not fits and plan.weight_offload and n_run >= 1:
        usable = engine.utilization * hw.memory_capacity_bytes
        resident = usable - other - kv_need
        if resident > 0:
            frac = max(weights_b - resident, 0.0) / weights_b
            link = weight_stream_link(hw, plan.weight_offload)
            cm = CostModel(m, hw, engine=engine, weight_stream=(frac, link[1]))
            cm.lora = lora
            fits, total = True, usable
            stream_note = (f"{frac:.0%} of the weights ({frac * weights_b / GiB:.1f} GiB per GPU) stream from {plan.weight_offload} "
                           f"over {link[0]} every forward pass, prefetched under compute")
            notes.append(stream_note)
    if weights_b + other > usable:
        reason = (f"does not fit: weights need {weights_b / GiB:.1f} GiB per GPU (+{other / GiB:.1f} GiB runtime), "
                  f"usable {usable / GiB:.1f} GiB of {hw.memory_capacity_bytes / GiB:.1f} GiB")
    elif not fits:
        reason = (f"does not fit: {max(n_run, 1)} sequence(s) of {isl + osl} tokens need "
                  f"{(weights_b + other + per_seq * max(n_run, 1) / plan.attention_dp) / GiB:.1f} GiB per GPU, usable "
                  f"{usable / GiB:.1f} GiB (at most {fit_n} fit)")
    else:
        reason = ""
    mem_d = {
        "fits": bool(fits), "weight_streaming": stream_note or None, "weights_bytes": weights_b, "kv_cache_bytes": kv_need,
        "kv_offloaded_bytes": max(kv_need - kv_cap, 0.0) if plan.kv_offload else 0.0,
        "activation_bytes": float(mem.activation_bytes[0]), "runtime_bytes": float(mem.runtime_bytes[0]),
        "total_bytes_per_gpu": total, "capacity_bytes_per_gpu": hw.memory_capacity_bytes,
        "usable_bytes_per_gpu": usable, "kv_bytes_per_token": kv_per_token,
    }
    gpus = plan.gpus
    price = hw.price.usd_per_hour if hw.price else None
    nanv = float("nan")
    wait = 0.0
    spec_used = float(plan.spec_k)
    if fits or (n_run >= 1 and batching == "static"):
        if batching == "static":
            t = static_batch(cm, p, n, isl_m, osl)
        else:
            tech = Techniques(chunk_tokens=plan.chunk_tokens, spec_k=plan.spec_k, spec_alpha=plan.spec_alpha,
                              offload_fraction=float(np.clip(1 - kv_cap / max(kv_need, 1.0), 0, 1)) if plan.kv_offload else 0.0,
                              host_bw_bytes_per_s=host_link_bytes_per_s(hw),
                              kv_budget_tokens=evict[1] if evict else np.inf, prefix_hit_tokens=plan.prefix_hit_tokens,
                              spec_auto=plan.spec_auto, draft=cap.draft, compress_ratio=cap.ratio,
                              compress_s=cap.compress_s(cm, p, isl),
                              adapter_load_s=lora.ttft_s(plan.tp, plan.pp) if lora is not None else 0.0)
            t = inflight(cm, p, n, isl, osl, tech, max_running=n_run, kv_bytes_per_token=kv_per_token)
            spec_used = float(np.asarray(t.spec_k).ravel()[0])
            if plan.spec_auto:
                notes.append(f"adaptive speculation: {spec_used:g} draft tokens per step at this batch (the most tokens/s "
                             f"among 0..{SPEC_AUTO_MAX_K} at acceptance {plan.spec_alpha:g})")
        ttft, tpot = float(t.ttft_s[0]), float(t.tpot_s[0])
        if ttft_includes_first_decode:
            ttft += tpot
        e2e = float(t.e2e_s[0])
        tok = float(t.output_tokens_per_s[0]) * plan.dp
        rps = float(t.requests_per_s[0]) * plan.dp
        wait = float(t.queue_wait_s[0])
        breakdown = {"prefill": _breakdown(t.prefill), "decode": _breakdown(t.decode)}
        lora_d = _lora_summary(lora, plan, t)
        intra = _intra(plan, batching, cm, p, n_run, isl_m, osl, lora, (ttft, tpot, tok / plan.dp))
        if intra is not None:  # the split GPU's numbers replace the aggregated ones (kept in intra_gpu_pd.aggregated)
            ttft, tpot, tok = intra["ttft_s"], intra["tpot_s"], intra["output_tokens_per_s"] * plan.dp
            rps, e2e, wait = tok / osl, intra["ttft_s"] + (osl - 1) * intra["tpot_s"], 0.0
        finetune = _finetune(plan, batching, cm, p, n_run, isl_m, osl, tpot)
    else:
        finetune = None
        ttft = tpot = e2e = tok = rps = nanv
        breakdown = {"prefill": [], "decode": []}
        lora_d = _lora_summary(lora, plan, None)
        intra = None
    from planner.cap.cost import owned_cost_keys  # owned: purchase amortized + power x PUE x electricity (defaults)

    cost = {
        "usd_per_gpu_hour": price,
        "usd_per_hour": price * gpus if price else None,
        "usd_per_million_output_tokens": (price * gpus / (tok * 3600) * 1e6) if price and fits and tok > 0 else None,
        "price_source": f"{hw.price.source} ({hw.price.date})" if hw.price else f"no published price for {hw.id}",
        **owned_cost_keys(hw, gpus, tok if fits and tok > 0 else None),
    }
    eviction = (evict[0], evict[1], isl_m + osl) if evict else None
    return Estimate(
        model=m.id, hardware=hw.id,
        plan={"tp": plan.tp, "pp": plan.pp, "ep": plan.ep, "attention_dp": plan.attention_dp, "dp": plan.dp,
              "weights": plan.weights, "kv": kv, "compute_dtype": res.compute_dtype, "engine": engine.name,
              "engine_version": getattr(engine, "version", None), "batching": batching, "batch_or_concurrency": n,
              "running": n_run, "isl": isl, "osl": osl, "techniques": {**plan.techniques(), "spec_k_used": spec_used}},
        gpus=gpus, fits=bool(fits), reason=reason, ttft_s=ttft, tpot_s=tpot, e2e_latency_s=e2e,
        output_tokens_per_s=tok, output_tokens_per_s_per_gpu=tok / gpus if gpus else nanv, requests_per_s=rps,
        memory=mem_d, max_context_tokens=ctx_max, max_concurrency=(n_run if stream_note else capped) * plan.dp, concurrency_cap=cap_note,
        accuracy=accuracy_of(plan.weights, kv, task=task, eviction=eviction, model_params=m.total_params, **cap.accuracy_knobs(),
                             expert_weights=off.expert_weights if off else None),
        cost=cost, breakdown=breakdown, queue_wait_s=wait, notes=notes, lora=lora_d,
        intra_gpu_pd=intra, finetune=finetune, variants=variants, uncertainty=_band(hw.id, m, ttft, tpot, osl),
    )


def _band(hardware_id: str, m: Model, ttft_s: float, tpot_s: float, osl: int) -> dict:
    """The relative error band of this prediction's situation (fitted or inferred device, prefill- or decode-bound,
    dense or MoE), from the cross-validated residuals of the published rows (planner.calibrate.uncertainty)."""
    from planner.calibrate.uncertainty import is_fitted, uncertainty_for

    phase = "prefill" if np.isfinite(ttft_s) and np.isfinite(tpot_s) and ttft_s > (osl - 1) * tpot_s else "decode"
    bands = uncertainty_for(hardware_id, phase, m.moe is not None)
    return {"situation": {"device": "fitted" if is_fitted(hardware_id) else "inferred (no published rows)",
                          "phase": phase, "model": "moe" if m.moe else "dense"},
            "percentiles": [10, 90], **bands}


def _intra(plan: PlanSpec, batching: str, cm, p, running: int, isl: int, osl: int, lora, agg) -> dict | None:
    """One GPU split between a prefill and a decode worker (semi-PD / Nexus), beside the aggregated steady state."""
    from planner.serving.intragpu import best_share, intra_gpu_pd, parse_share

    f = parse_share(plan.intra_gpu_pd)
    if f is None:
        return None
    if batching != "inflight":
        raise PlannerError("--intra-gpu-pd applies to in-flight batching")
    kw = dict(overhead_s=float(getattr(cm.engine, "request_overhead_s", 0.0) or 0.0),
              extra_ttft_s=0.0 if lora is None else lora.ttft_s(plan.tp, plan.pp))
    r = best_share(cm, p, running, isl, osl, **kw) if f == "auto" else intra_gpu_pd(cm, p, running, isl, osl, f, **kw)
    out = {k: float(np.ravel(v)[0]) for k, v in r.items()}
    out["bandwidth_contended"] = bool(out["bandwidth_contended"])
    out["auto"] = f == "auto"
    out["aggregated"] = {"ttft_s": agg[0], "tpot_s": agg[1], "output_tokens_per_s": agg[2]}
    out["source"] = "semi-PD (arXiv 2504.19867), Nexus (arXiv 2507.06608): SM split, bandwidth shared by demand"
    return out


def _lora_cost(plan: PlanSpec, m: Model, hw: Hardware):
    from planner.costmodel.lora import LoraCost, parse_lora

    if not plan.lora:
        if plan.lora_resident is not None or plan.lora_popularity:
            raise PlannerError("--lora-resident and --lora-popularity need --lora ADAPTERS:RANK")
        return None
    return LoraCost.of(parse_lora(plan.lora, plan.lora_resident, plan.lora_popularity), m, host_link_bytes_per_s(hw))


def _lora_summary(lora, plan: PlanSpec, t) -> dict | None:
    """The adapters' memory, the SGMV op's share of a decode step and the miss rate, for JSON ``lora``."""
    if lora is None:
        return None
    if t is None or t.decode is None:
        return lora.summary(plan.tp, plan.pp, 0.0, 0.0, float("nan"))
    op = t.decode.op("lora")
    step_s = float((op.time_s * op.count)[0]) if op is not None else 0.0
    seqs = float(np.asarray(t.concurrency).ravel()[0]) / plan.pp
    return {**lora.summary(plan.tp, plan.pp, seqs, seqs, step_s),
            "decode_step_share": step_s / float(t.decode.time_s.ravel()[0])}


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


def _finetune(plan: PlanSpec, batching: str, cm, p, running: int, isl: int, osl: int, tpot_s: float) -> dict | None:
    """FlexLLM: the PEFT job's tokens/s in this plan's steps while TPOT stays within plan.finetune_tpot_s."""
    if plan.finetune_tpot_s is None:
        return None
    if not plan.finetune_tpot_s > 0:
        raise PlannerError("--finetune-tpot must be a positive duration")
    if batching != "inflight":
        raise PlannerError("--finetune-tpot applies to in-flight batching")
    from planner.serving.finetune import co_finetune

    micro = max(running / plan.pp, 1.0)
    return co_finetune(cm, p, micro, isl + osl / 2.0, tpot_s, plan.finetune_tpot_s, seq_tokens=isl)


def _variants(plan: PlanSpec, weights_bytes: float) -> dict | None:
    from planner.serving.finetune import parse_variants, shared_variants

    v = parse_variants(plan.shared_variants)
    return None if v is None else shared_variants(weights_bytes, *v)
