"""A deployment plan as the serving layer reads it: parallel sizes, precisions and the serving techniques it uses,
and the checks every command applies to one (shared by estimate, the simulator and the studies)."""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import PlannerError
from planner.serving.host import WEIGHT_OFFLOAD_TARGETS
from planner.specs.quant import canonical, default_kv


@dataclass
class PlanSpec:
    """One deployment plan: parallel sizes, precisions and the serving techniques it uses."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1  # replicas
    weights: str = "bf16"
    kv: str | None = None  # None: the engine's default for the weights (see kv_format)
    activations: str | None = None
    weight_offload: str | None = None  # "host" or "disk": stream weights that do not fit (TPI-LLM / EdgeMoE style)
    attention_dp: int = 1  # data-parallel attention over the MoE group (MLA / MoE models), with --ep
    chunk_tokens: int = 0  # chunked-prefill token budget per step (0: a whole prompt per step)
    spec_k: int = 0  # speculative decoding: draft tokens per step (one-layer draft head)
    spec_alpha: float = 0.0  # acceptance probability per drafted token
    kv_offload: bool = False  # KV that does not fit in device memory lives in host memory, read over the host link
    eviction: str | None = None  # "METHOD:TOKENS": keep at most TOKENS of KV per sequence (SnapKV, PyramidKV, ...)
    prefix_hit_tokens: int = 0  # prompt tokens served from the prefix cache
    # fraction of each prompt that is one prefix every request shares (a system prompt): served from the prefix cache,
    # held once in the KV cache, and read once a decode step by the sequences sharing it while the device's
    # last-level cache holds it (the simulator's --shared-prefix)
    shared_prefix: float = 0.0
    spec_auto: bool = False  # choose the draft length per batch for the most tokens/s (spec_alpha still applies)
    draft_model: str | None = None  # a draft model id (its own weights, KV and steps); None: a one-layer head
    context_extension: str | None = None  # "METHOD:FACTOR" (yarn:4): serve up to FACTOR x the trained context
    prompt_compression: str | None = None  # "METHOD:RATIO" (llmlingua-2:4): prompts shrink RATIO-fold
    sparse_attention: str | None = None  # "METHOD:KEPT" (duoattention:0.5): see costmodel/sparse.py
    cp: int = 1  # context parallel devices per replica (ring attention; a distributed KV pool in decode)
    moe_offload: str | None = None  # CPU-assisted MoE / per-expert precision (costmodel/moe_offload.py)
    eplb: int | None = None  # expert-parallel load balancing with this many redundant expert slots (costmodel/eplb.py)
    lora: str | None = None  # "ADAPTERS:RANK[:TARGETS]": LoRA adapters over the base model (costmodel/lora.py)
    lora_resident: int | None = None  # adapters resident in GPU memory per replica (None: all)
    lora_popularity: str | None = None  # uniform | zipf:S
    intra_gpu_pd: str | None = None  # "F" or "auto": F of the SMs prefill, 1 - F decode (serving/intragpu.py)
    finetune_tpot_s: float | None = None  # FlexLLM: co-serve a PEFT job while TPOT stays within this (serving/finetune.py)
    shared_variants: str | None = None  # BlockLLM "N:SHARED": N fine-tuned variants sharing that fraction of blocks

    def __post_init__(self):
        # precision names as users write them (Q4_K_M, float16, awq) resolve to the planner's ids here, once
        self.weights = canonical(self.weights) or self.weights
        self.kv = canonical(self.kv)
        if self.kv == "auto":  # the engines' --kv-cache-dtype auto: the engine's own rule, as when none is given
            self.kv = None
        self.activations = canonical(self.activations)

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.attention_dp * self.cp * self.dp

    def kv_format(self, engine=None, model=None) -> str:
        """The KV format asked for, else the one ``engine`` (an Engine or ID[@VERSION]; None: TensorRT-LLM's rule) picks
        for these weights of ``model`` (planner.specs.quant.default_kv)."""
        if self.kv:
            return self.kv
        return default_kv(self.weights, engine, model)

    def techniques(self) -> dict:
        return {"chunk_tokens": self.chunk_tokens, "spec_k": "auto" if self.spec_auto else self.spec_k,
                "spec_alpha": self.spec_alpha, "draft_model": self.draft_model, "kv_offload": self.kv_offload,
                "eviction": self.eviction, "prefix_hit_tokens": self.prefix_hit_tokens, "shared_prefix": self.shared_prefix,
                "context_extension": self.context_extension, "prompt_compression": self.prompt_compression,
                "sparse_attention": self.sparse_attention, "cp": self.cp, "moe_offload": self.moe_offload, "eplb": self.eplb,
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


def check_eplb_serving(eplb: int | None, model, engine) -> None:
    """``--eplb R``'s conditions on the model and engine (any plan of them, the searched ones included): R redundant
    expert slots, 0 or more, of a mixture-of-experts model, on an engine with a balancer (Engine.eplb)."""
    if eplb is None:
        return
    if eplb < 0:
        raise PlannerError(f"--eplb takes the redundant expert slots, 0 or more, got {eplb}")
    if model.moe is None:
        raise PlannerError(f"--eplb balances the experts of a mixture-of-experts model; {model.id} is dense")
    if not getattr(engine, "eplb", False):
        raise PlannerError(f"{engine.name} has no expert-parallel load balancer; --eplb runs on TensorRT-LLM 1.x, vLLM "
                           f"0.11 on and SGLang (planner engines list: the EPLB column)")


def check_eplb(plan: PlanSpec, model, engine) -> None:
    """``--eplb R`` balances the experts of an expert-parallel MoE plan over R redundant slots, where the engine has a
    balancer (check_eplb_serving) and the experts stay on the GPUs."""
    if plan.eplb is None:
        return
    check_eplb_serving(plan.eplb, model, engine)
    if plan.ep < 2:
        raise PlannerError("--eplb balances experts over expert-parallel ranks: give --ep 2 or more")
    if plan.moe_offload:
        raise PlannerError("--eplb places experts over the GPUs and --moe-offload keeps cold ones on the host: use one")


def eviction_of(plan: PlanSpec) -> tuple[str, int] | None:
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


def check_plan(plan: PlanSpec, isl: int, osl: int) -> None:
    if isl < 1 or osl < 1:
        raise PlannerError("--isl and --osl must be at least 1 token")
    if plan.weight_offload is not None and plan.weight_offload not in WEIGHT_OFFLOAD_TARGETS:
        raise PlannerError(f"--weight-offload takes {' or '.join(WEIGHT_OFFLOAD_TARGETS)}, not {plan.weight_offload!r}")
    if plan.spec_k < 0 or not 0.0 <= plan.spec_alpha < 1.0:
        raise PlannerError("speculation needs k >= 0 draft tokens and an acceptance rate in [0, 1)")
    if plan.chunk_tokens < 0 or plan.prefix_hit_tokens < 0:
        raise PlannerError("the chunk budget and prefix-cache hit tokens cannot be negative")
    if not 0.0 <= plan.shared_prefix < 1.0:
        raise PlannerError(f"--shared-prefix must be in [0, 1), got {plan.shared_prefix:g}")
    if plan.shared_prefix and plan.prefix_hit_tokens:
        raise PlannerError("--prefix-hit-tokens and --shared-prefix both set the prompt tokens the prefix cache serves: give one")
    if plan.cp < 1:
        raise PlannerError(f"--cp must be a positive integer, got {plan.cp}")
