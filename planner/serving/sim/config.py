"""Replica types: what the simulator needs to know about one kind of replica, built from the one
cost model (step times, via :class:`StepTable`) and the one memory model (KV blocks)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from planner.costmodel.collectives import Fabric
from planner.costmodel.memory import kv_bytes_per_seq, kv_bytes_per_token_layers, local_kv_layers, memory
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel
from planner.errors import PlannerError
from planner.serving.shared_prefix import shared_read_cap  # noqa: F401  (the simulator's rule; re-exported)
from planner.serving.sim.steptable import StepTable, spec_tokens_per_step
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.loader import get_interconnect
from planner.specs.model import Model
from planner.specs.quant import default_kv

INF = math.inf
SCHEDULES = ("decode_first", "prefill_first")


@dataclass
class Scheduler:
    """Engine scheduler knobs of a replica; None takes the engine's value."""

    max_seqs: int | None = None
    max_batched_tokens: int | None = None
    chunked_prefill: bool | None = None  # vLLM V1 and SGLang chunk; TensorRT-LLM 0.14 does not by default
    admission: str | None = None  # reserve | ondemand | ratio (trtllm reserve, vllm ondemand, sglang ratio)
    preemption: str | None = None  # recompute | swap (the engine's, else recompute)
    spec_k: int = 0
    spec_alpha: float = 0.0
    policy: str = "fcfs"  # waiting-queue order: fcfs | priority | slo-aware (planner.serving.sim.queues)
    ttft_slo_s: float | None = None  # slo-aware: the TTFT target the deadlines are set by
    priority_preemption: bool = False  # swap out lower-priority decodes for blocked higher-priority requests
    swap_group: int | None = None  # KV blocks per host copy (None: swaps cost bandwidth only)
    # attention DP: hold new prompts until every rank can take one, at most this many decode steps (TensorRT-LLM's
    # attention_dp_config.enable_balance with timeout_iters); None: prompts enter as they arrive (every engine's default)
    adp_balance: int | None = None

    def check(self) -> None:
        from planner.serving.sim.queues import queue_class

        if self.admission not in (None, "reserve", "ondemand", "ratio"):
            raise PlannerError(f"unknown KV admission policy {self.admission!r} (use reserve, ondemand or ratio)")
        if self.preemption not in (None, "recompute", "swap"):
            raise PlannerError(f"unknown preemption mode {self.preemption!r} (use recompute or swap)")
        if self.spec_k < 0 or not 0 <= self.spec_alpha <= 1:
            raise PlannerError("speculative decoding needs k >= 0 drafts and acceptance alpha in [0, 1]")
        for name in ("max_seqs", "max_batched_tokens"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise PlannerError(f"--{name.replace('_', '-')} must be a positive integer")
        queue_class(self.policy)
        if self.swap_group is not None and self.swap_group < 1:
            raise PlannerError("--swap-group must be a positive number of blocks")
        if self.adp_balance is not None and self.adp_balance < 1:
            raise PlannerError("--attention-dp-balance must be a positive number of decode steps")


@dataclass(frozen=True)
class EngineBehaviour:
    """What the engine's scheduler adds around the cost model's steps (engine data files; defaults
    reproduce an engine file that says nothing: everything in CUDA graphs, no per-request cost).
    The per-step host time (``step_host_s + step_host_per_seq_s`` x sequences, hidden under the GPU
    time with ``async_scheduling``) and the host floor of a step outside CUDA graphs (its kernel calls x
    ``eager_kernel_overhead_s``) are part of ``CostModel.step`` and so of every step-table entry; they
    are listed here only so a run's plan shows them."""

    schedule: str = "decode_first"  # decode_first: running decodes, then prefill chunks (vLLM V1, TRT-LLM)
    prefix_caching: bool = True
    prefix_cache_at_schedule: bool = False  # Engine.prefix_cache_at_schedule: a prompt's blocks shared from admission
    step_host_s: float = 0.0  # per-step host time a + b x sequences in the step
    step_host_per_seq_s: float = 0.0
    async_scheduling: bool = False  # host work overlaps the GPU step (step = max) instead of adding to it
    cuda_graph_max_batch: int | None = None  # decode steps of more sequences a rank run eagerly, as prompt steps do
    eager_kernel_overhead_s: float = 0.0  # host time per kernel call of an eager step (the step: max(device, host))
    request_overhead_s: float = 0.0  # tokenize / HTTP / detokenize per request (TTFT and e2e)
    recv_interval: int = 1  # decode steps between the scheduler's polls for new requests (Engine.recv_interval)
    # the API server's one thread (Engine.api_request_s, api_chunk_s, stream_interval): each request's preparation and
    # each streamed chunk pass it in order; 0 and 0: no such queue
    api_request_s: float = 0.0
    api_chunk_s: float = 0.0
    stream_interval: int = 1

    @classmethod
    def of(cls, engine: Engine) -> "EngineBehaviour":
        g = lambda name, default: getattr(engine, name, default) if getattr(engine, name, None) is not None else default  # noqa: E731
        sched = g("schedule", "prefill_first" if engine.id == "sglang" else "decode_first")
        if sched not in SCHEDULES:
            raise PlannerError(f"engine {engine.id}: schedule {sched!r} is not one of {', '.join(SCHEDULES)}")
        return cls(schedule=sched, prefix_caching=bool(g("prefix_caching", True)),
                   prefix_cache_at_schedule=bool(g("prefix_cache_at_schedule", False)), step_host_s=float(g("step_host_s", 0.0)),
                   step_host_per_seq_s=float(g("step_host_per_seq_s", 0.0)), async_scheduling=bool(g("async_scheduling", False)),
                   cuda_graph_max_batch=g("cuda_graph_max_batch", None),
                   eager_kernel_overhead_s=float(g("eager_kernel_overhead_s", 0.0)),
                   request_overhead_s=float(g("request_overhead_s", 0.0)), recv_interval=max(1, int(g("recv_interval", 1))),
                   api_request_s=float(g("api_request_s", 0.0)), api_chunk_s=float(g("api_chunk_s", 0.0)),
                   stream_interval=max(1, int(g("stream_interval", 1))))


@dataclass
class ReplicaModel:
    """Everything the simulator needs about one kind of replica."""

    name: str
    model_id: str
    hardware_id: str
    gpus: int
    table: StepTable
    kv_blocks: int
    block_tokens: int
    max_seqs: int
    max_batched_tokens: int
    chunked_prefill: bool
    reserve: bool
    swap: bool
    tokens_per_step: float  # E: expected tokens per decode step (speculative decoding)
    spec_k: int
    swap_s_per_token: float  # host-link time to move one token's KV (one device's share)
    kv_transfer_s_per_token: float  # disaggregated: prefill -> decode pool, per prompt token
    kv_transfer_latency_s: float
    accuracy: float = 1.0  # quality score of the served output (fleets)
    plan: dict = field(default_factory=dict)
    usd_per_hour: float | None = None
    behaviour: EngineBehaviour = field(default_factory=EngineBehaviour)
    policy: str = "fcfs"
    ttft_slo_s: float | None = None
    kv_bytes_per_token_gpu: float = 0.0  # one device's KV bytes per token (migration, swap)
    swap_transfer_s: float = 0.0  # fixed time of one host-link copy (link latency), per KV block per layer
    kv_transfers_per_block: int = 0  # separate copies one block makes when swapped block by block (K, V per layer)
    lora: object | None = None  # planner.serving.sim.adapters.SimLora when adapters are served
    priority_preemption: bool = False
    swap_group: int | None = None
    # data-parallel attention over this many ranks (each tp x pp GPUs; the MoE layers split across all of them):
    # one scheduler over the group, whose sequence, token and KV limits are the ranks' together; a prompt is
    # prefilled on one rank, so no chunk of it is longer than one rank's token budget
    attention_dp: int = 1
    # SGLang's admission: on-demand KV, and a request is admitted only while the free blocks also cover a share
    # (new_token_ratio) of its and the running requests' remaining outputs (planner.serving.sim.replica)
    ratio_admission: bool = False
    adp_balance: int = 0  # Scheduler.adp_balance (0: off)
    # tokens of one layer's KV (one device's share) the device's last-level cache holds: a decode step reads blocks its
    # running sequences share from memory once while the distinct shared tokens and one wave of attention CTAs fit
    # within it, else once per sequence (planner.serving.sim.decodes); 0: no cache size or SM count on record, or an engine
    # whose sequences keep their own copies (Engine.prefix_blocks_shared), every sequence's reads priced from memory
    reread_cap_tokens: float = 0.0
    reread_ctas: int = 1  # attention CTAs one sequence's layer takes on a device (its KV heads; 1 under MLA)
    reread_sms: int = 0  # the device's SMs, one wave of attention CTAs (0: not on record, no shared reads priced)


@dataclass
class Pool:
    """``count`` replicas of one type. role: both (aggregated), prefill or decode (disaggregated)."""

    replica: ReplicaModel
    count: int = 1
    role: str = "both"


def _host_bw(hw: Hardware) -> float:
    if hw.links.host is None:
        return INF
    link = get_interconnect(hw.links.host.interconnect)
    frac = link.achievable.fraction if link.achievable else 1.0
    return link.bandwidth_per_direction.value * frac * hw.links.host.count


def _host_latency(hw: Hardware) -> float:
    if hw.links.host is None:
        return 0.0
    link = get_interconnect(hw.links.host.interconnect)
    return float(link.latency.value) if getattr(link, "latency", None) is not None else 0.0


def _plan_dict(model, hw, tp, pp, ep, adp, weights, kv, engine, sched, max_seqs, mbt, chunked, admission, preemption, blocks, B,
               beh: EngineBehaviour) -> dict:
    d = {"model": model.id, "hardware": hw.id, "tp": tp, "pp": pp, "ep": ep, "attention_dp": adp, "weights": weights, "kv": kv,
         "engine": engine.name, "max_seqs": max_seqs, "max_batched_tokens": mbt, "chunked_prefill": chunked,
         "kv_admission": admission, "preemption": preemption,
         "kv_blocks": blocks, "kv_block_tokens": B, "kv_capacity_tokens": blocks * B}
    if beh != EngineBehaviour():
        d["engine_behaviour"] = {k: v for k, v in beh.__dict__.items() if v != getattr(EngineBehaviour(), k)}
    if sched.policy != "fcfs":
        d["scheduler_policy"] = sched.policy
    if sched.adp_balance:
        d["attention_dp_balance_steps"] = sched.adp_balance
    if sched.spec_k:
        d["speculative"] = {"draft_tokens": sched.spec_k, "acceptance": sched.spec_alpha,
                            "tokens_per_step": spec_tokens_per_step(sched.spec_k, sched.spec_alpha)}
    return d


def build_replica(model: Model, hw: Hardware, *, tp: int = 1, pp: int = 1, ep: int = 1, adp: int = 1, weights: str = "bf16",
                  kv: str = "bf16", activations: str | None = None, engine: Engine, sched: Scheduler | None = None,
                  max_input: float = 8192, max_ctx: float | None = None, name: str | None = None, accuracy: float = 1.0,
                  disagg_group_gpus: int | None = None, techniques=None, lora=None, eplb: int | None = None,
                  min_prompt: float | None = None) -> ReplicaModel:
    """A replica type: its step-cost table, KV blocks (from ``memory``) and scheduler limits. ``min_prompt``: the
    shortest prompt the replica will hold (None: not known), which bounds what an engine whose windowed layers share the
    full-length layers' block pool saves (Engine.kv_window_shared_pool). ``eplb``: the redundant
    expert slots of an expert-parallel replica whose engine balances its experts (costmodel/eplb.py; None: none, and
    ignored where ep is 1, a disaggregated pool that keeps its experts whole). ``techniques``: a
    PlanSpec whose context/attention techniques apply (serving/captech.py: sparse attention, context parallelism,
    context extension, a draft model), priced by the same cost model as estimate. The engine's limits are the ones it
    picks on ``hw`` (Engine.for_hardware: vLLM's 1024 sequences / 8192 batched tokens on a device of 70 GiB or more,
    SGLang's memory fraction), as estimate and plan take them; ``sched`` overrides them (per rank with ``adp``).

    ``adp`` > 1: data-parallel attention over ``adp`` ranks of tp x pp GPUs (MLA/MoE models, with ``ep``), one
    scheduler over the group as in estimate's steady state: sequences, tokens per step and KV blocks are the ranks'
    together, and the step table prices the group's batch split over the ranks (the busiest rank's prompts,
    costmodel.step). Not modelled: which rank a request lands on (the group's KV is one pool, so one rank filling
    up before the others does not preempt early)."""
    if adp > 1 and (techniques is not None or lora is not None):
        raise PlannerError("the simulator's data-parallel-attention replica runs without context techniques or LoRA "
                           "adapters: drop --attention-dp, or those options")
    engine = engine.for_hardware(hw, tp, pp)  # also: a PlannerError when the engine does not run on hw
    engine.check_weights(weights, hw)  # ... or has no kernel for the weight format there
    engine.check_kv(kv)  # ... or cannot store the KV format
    sched = sched or Scheduler()
    sched.check()
    if sched.adp_balance and adp < 2:
        raise PlannerError("--attention-dp-balance lines prompts up across attention-DP ranks: "
                           "it needs --attention-dp 2 or more")
    beh = EngineBehaviour.of(engine)
    cp = int(getattr(techniques, "cp", 1) or 1)
    eplb = eplb if ep > 1 else None  # a pool without expert parallelism keeps its experts whole: nothing to balance
    plans = make_plans(model, hw, tp=tp, pp=pp, ep=ep, adp=adp, cp=cp, weights=weights, kv=kv, activations=activations,
                       engine=engine, eplb_redundant=eplb)
    cap = None
    if techniques is not None:
        from planner.serving.captech import cap_setup

        cap, plans = cap_setup(techniques, model, hw, plans, int(max_input), 0, engine)
    mem = memory(model, hw, plans, engine)
    B = int(engine.kv_block_tokens)
    full, swa = kv_bytes_per_token_layers(model, plans)
    per_tok_dev = float(full[0] + swa[0])  # sliding-window layers counted in full (an upper bound)
    reread_cap, ctas, sms, shared_reads = shared_read_cap(model, hw, engine, per_tok_dev, tp, pp)
    if engine.kv_window_shared_pool and local_kv_layers(model, engine) and min_prompt:
        # an engine whose windowed layers take their blocks from the full-length layers' pool (Engine.
        # kv_window_shared_pool: vLLM's hybrid KV cache manager) holds W tokens of each such layer however long the
        # sequence, so its bytes per token fall as the context grows; one pool of token blocks is charged what a token
        # costs at the shortest context a resident sequence has (its first prompt chunk), which no longer context
        # exceeds (a Gemma 3 27B sequence, 10 global and 52 windowed layers of 1,024 tokens, takes 0.27 of its all-layer
        # bytes a token from 8,192 tokens on). A pool per window size with a static share (TensorRT-LLM 1.x, SGLang)
        # is charged by its split below, and a workload whose prompts can be short (min_prompt unknown) keeps the bound
        ctx = max(1.0, min(float(min_prompt), float(sched.max_batched_tokens or engine.max_batched_tokens)))
        per_tok_dev = min(per_tok_dev, float(kv_bytes_per_seq(model, plans, ctx, engine=engine)[0]) / ctx)
    # what a token costs the block pool: its bytes, or where the engine keeps a pool per window size with a static
    # share (Engine.kv_window_pools) the memory that share takes from the others, at the longest request the replica
    # holds (costmodel.memory.window_pool_charge), so the simulator holds the sequences estimate counts
    pool_tok = per_tok_dev
    if getattr(engine, "kv_window_pools", None) and not engine.kv_window_shared_pool and local_kv_layers(model, engine):
        pool_tok = float(kv_bytes_per_seq(model, plans, max_input, engine=engine)[0]) / max(float(max_input), 1.0)
    kv_cap = float(mem.kv_capacity_bytes[0])
    if cap is not None:  # KV per token at the longest request (streaming heads, cp shards), beside a draft's weights
        per_tok_dev = float(kv_bytes_per_seq(model, plans, max_input)[0]) / max_input + cap.draft_kv_per_seq(max_input, 1) / max_input
        pool_tok = per_tok_dev
        kv_cap -= cap.extra_bytes()
    gpus = int(tp * pp * cp * adp)
    fabric = Fabric.of(hw)
    # a simulated replica's collectives need links too
    fabric.check_reaches(gpus, "tp x pp x attention-dp x cp" if adp > 1 else "tp x pp x cp", hw.id)
    label = name or (f"{model.id} " + (f"adp{adp} " if adp > 1 else "") + f"tp{tp}" + (f" pp{pp}" if pp > 1 else "")
                     + (f" ep{ep}" if adp > 1 else "") + f" {weights}/kv-{kv}")
    if kv_cap <= 0:
        raise PlannerError(f"{label} does not fit on {hw.id}: the weights leave no memory for the KV cache")
    blocks = int(kv_cap // (pool_tok * B)) * adp  # each rank's devices hold the KV of that rank's sequences
    if blocks < 1:
        raise PlannerError(f"{label} on {hw.id} has room for no KV block of {B} tokens")
    lora_c = None
    if lora is not None:  # resident adapters take their room from the KV block pool (S-LoRA unified paging)
        from planner.serving.sim.adapters import sim_lora

        lora_c = sim_lora(lora, model, tp=tp, pp=pp, host_bytes_per_s=_host_bw(hw), host_latency_s=_host_latency(hw),
                          kv_bytes_per_token_gpu=pool_tok, block_tokens=B)
        if lora_c.kv_blocks >= blocks:
            raise PlannerError(f"{lora.slots} resident adapters of rank {lora.rank} need {lora_c.kv_blocks} KV blocks; "
                               f"{label} on {hw.id} has {blocks}: lower --lora-resident")
        blocks -= lora_c.kv_blocks
    max_seqs = int(sched.max_seqs or engine.max_seqs) * adp
    mbt = int(sched.max_batched_tokens or engine.max_batched_tokens) * adp
    admission = sched.admission or engine.kv_admission
    reserve = admission == "reserve"
    eng_chunked = getattr(engine, "chunked_prefill", None)
    chunked = sched.chunked_prefill if sched.chunked_prefill is not None else (
        bool(eng_chunked) if eng_chunked is not None else engine.id in ("vllm", "sglang"))
    preemption = sched.preemption or getattr(engine, "preemption", None) or "recompute"
    if sched.priority_preemption and reserve:
        raise PlannerError("--priority-preemption needs on-demand KV admission (--kv-admission ondemand, or --engine vllm)")
    cm = CostModel(model, hw, engine=engine)
    if lora_c is not None:  # the adapter GEMMs (SGMV) join every step the table prices
        cm.lora = lora_c.cost
    ctx_hi = max_ctx or min(float(model.max_context) * (cap.extension_factor if cap else 1.0), blocks * B)
    prefill_hi = max(mbt, max_input)
    table = StepTable(cm, plans, max_seqs=max_seqs, max_ctx=ctx_hi, max_prefill=prefill_hi, max_span=2 * ctx_hi + prefill_hi,
                      spec_k=sched.spec_k, draft=cap.draft if cap else None)
    bw, lat, frac, _ = fabric.tier_for(np.array([float(disagg_group_gpus or 2 * gpus)]))
    eff = float(bw[0] * frac[0]) * gpus
    return ReplicaModel(
        name=label, model_id=model.id, hardware_id=hw.id, gpus=gpus, table=table, kv_blocks=blocks, block_tokens=B,
        max_seqs=max_seqs, max_batched_tokens=mbt, chunked_prefill=chunked, reserve=reserve, swap=preemption == "swap",
        tokens_per_step=spec_tokens_per_step(sched.spec_k, sched.spec_alpha), spec_k=sched.spec_k,
        swap_s_per_token=per_tok_dev / _host_bw(hw), kv_transfer_s_per_token=per_tok_dev * gpus / eff if eff > 0 else INF,
        kv_transfer_latency_s=float(lat[0]), accuracy=accuracy,
        plan={**_plan_dict(model, hw, tp, pp, ep, adp, weights, kv, engine, sched, max_seqs, mbt, chunked, admission, preemption,
                           blocks, B, beh), **({} if eplb is None else {"eplb_redundant_experts": eplb}),
              "kv_shared_reads": shared_reads},
        usd_per_hour=hw.price.usd_per_hour * gpus if hw.price else None, behaviour=beh, policy=sched.policy,
        ttft_slo_s=sched.ttft_slo_s, kv_bytes_per_token_gpu=per_tok_dev, swap_transfer_s=_host_latency(hw),
        kv_transfers_per_block=int(math.ceil(model.num_layers / pp)) * (1 if model.attention.mla else 2), lora=lora_c,
        priority_preemption=sched.priority_preemption,
        swap_group=sched.swap_group or (1 if sched.priority_preemption else None), attention_dp=adp,
        ratio_admission=admission == "ratio", adp_balance=int(sched.adp_balance or 0), reread_cap_tokens=reread_cap,
        reread_ctas=ctas, reread_sms=sms,
    )


def replica_for(model: str | Model, hardware: str | Hardware, *, tp: int = 1, pp: int = 1, ep: int = 1, adp: int = 1,
                weights: str = "bf16", kv: str | None = None, activations: str | None = None, engine: str | Engine = "trtllm",
                sched: Scheduler | None = None, max_input: float = 8192, name: str | None = None,
                accuracy: float = 1.0, disagg_group_gpus: int | None = None, techniques=None, lora=None,
                eplb: int | None = None, min_prompt: float | None = None) -> ReplicaModel:
    """Resolve ids and build a replica type (``kv`` None: planner.specs.quant.default_kv)."""
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware, get_model

    m = get_model(model) if isinstance(model, str) else model
    hw = get_hardware(hardware) if isinstance(hardware, str) else hardware
    eng = get_engine(engine)
    kv = kv or default_kv(weights, eng, m)
    return build_replica(m, hw, tp=tp, pp=pp, ep=ep, adp=adp, weights=weights, kv=kv, activations=activations, engine=eng,
                         sched=sched, max_input=max_input, name=name, accuracy=accuracy, disagg_group_gpus=disagg_group_gpus,
                         techniques=techniques, lora=lora, eplb=eplb, min_prompt=min_prompt)
