"""One request model per command, declared once: the CLI generates its options from these
(planner/cli/options.py) and study files validate their points against the same models.

Every numeric field states its range (positive, finite, fractions in (0, 1]); durations take units
(``300ms``, ``2s``; a bare number is seconds). Checks that need the specs (GPUs a hardware's systems
can hold, a request longer than the model's context) are in ``check_specs``.
"""


import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from planner.errors import PlannerError
from planner.specs.quant import KV_FORMATS_HELP, WEIGHT_FORMATS_HELP

EDGE_LINK_HELP = ("network joining devices that have none of their own (edge clusters, TPI-LLM): wifi-6, wifi-6e, "
                  "wifi-7, gbe-1, gbe-2.5, gbe-10 or any interconnect id")
EPLB_HELP = ("expert-parallel load balancing with R redundant expert slots (0: re-place the experts, no replicas): hot "
             "experts replicated and placed so every --ep rank expects the same tokens (TensorRT-LLM, vLLM, SGLang)")
MOE_OFFLOAD_HELP = ("CPU-assisted MoE: 'experts:F' runs the fraction F of each layer's experts (the cold ones) on the "
                    "host CPU (Fiddler / MoE-Lens), 'attention' runs decode attention and the KV cache there; add "
                    "'@CPU' for the host CPU spec (default xeon-8480), and ',bits:FMT@F' for per-expert precision "
                    "(EdgeMoE: the fraction F of experts stored in FMT)")
from planner.units import parse_duration

# ---------------------------------------------------------------- shared option types


def _duration(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return parse_duration(v)
        except PlannerError as e:
            raise ValueError(str(e)) from None
    return v


def _split(v: Any) -> Any:
    """``a,b`` and ``[a, "b,c"]`` both become a list of stripped names."""
    if v is None:
        return None
    items = [v] if isinstance(v, str) else list(v)
    out: list = []
    for x in items:
        out += [s.strip() for s in x.split(",") if s.strip()] if isinstance(x, str) else [x]
    return out


def parse_spec(text: str) -> tuple[int, float]:
    """``DRAFT_TOKENS:ACCEPTANCE`` (``3:0.7``): draft tokens in 1..16, acceptance in [0, 1); ``none``: (0, 0)."""
    if str(text).strip().lower() == "none":
        return 0, 0.0
    try:
        k, a = str(text).split(":")
        k_i, a_f = int(k), float(a)
    except ValueError:
        raise ValueError(f"speculative decoding takes DRAFT_TOKENS:ACCEPTANCE such as 3:0.7, got {text!r}") from None
    if not 1 <= k_i <= 16 or not 0 <= a_f < 1:
        raise ValueError(f"{text}: draft tokens must be in 1..16 and acceptance in [0, 1)")
    return k_i, a_f


def parse_eviction(text: str) -> tuple[str, int]:
    """``METHOD:KEPT_TOKENS`` (``snapkv:2048``)."""
    try:
        method, kept = str(text).split(":")
        n = int(kept)
    except ValueError:
        raise ValueError(f"KV eviction takes METHOD:KEPT_TOKENS such as snapkv:2048, got {text!r}") from None
    if n < 1:
        raise ValueError(f"{text}: kept tokens must be positive")
    from planner.cap.accuracy import eviction_recovery

    try:
        eviction_recovery(method, 0.5)  # an unknown method fails here with a did-you-mean
    except PlannerError as e:
        raise ValueError(str(e)) from None
    return method, n


def _spec_one(v: str | None) -> str | None:
    if v is not None:
        parse_spec(v)
    return v


def _spec_auto_one(v: str | None) -> str | None:
    if v is not None:
        parse_spec_auto(v)
    return v


def parse_spec_auto(text: str) -> tuple[int, float, bool]:
    """``DRAFT_TOKENS:ACCEPTANCE`` or ``auto:ACCEPTANCE`` (k chosen per batch) -> (k, alpha, auto)."""
    head, _, a = str(text).partition(":")
    if head.strip().lower() != "auto":
        return (*parse_spec(text), False)
    try:
        a_f = float(a)
    except ValueError:
        raise ValueError(f"adaptive speculation takes auto:ACCEPTANCE such as auto:0.7, got {text!r}") from None
    if not 0 <= a_f < 1:
        raise ValueError(f"{text}: acceptance must be in [0, 1)")
    return 0, a_f, True


def _cap_knob(kind: str):
    """Validator of a METHOD:NUMBER technique flag (the method name and the number checked by planner.cap)."""
    def check(v: str | None) -> str | None:
        if v is None:
            return v
        from planner.serving.captech import parse_compression_text, parse_extension_text, parse_sparse_text

        fn = {"extension": parse_extension_text, "compression": parse_compression_text, "sparse": parse_sparse_text}[kind]
        try:
            fn(v)
        except PlannerError as e:
            raise ValueError(str(e)) from None
        return v
    return check


CAP_HELP = {
    "context_extension": "serve past the trained context with RoPE scaling METHOD:FACTOR (yarn, ntk, linear, longrope, "
                         "...-ft for fine-tuned checkpoints), e.g. yarn:4; accuracy from planner/cap",
    "prompt_compression": "compress prompts METHOD:RATIO (llmlingua-2, llmlingua-2-small, llmlingua, longllmlingua, "
                          "selective-context), e.g. llmlingua-2:4; the compressor's time is in TTFT",
    "sparse_attention": "sparse attention METHOD:KEPT_FRACTION (duoattention, lserve, minference, streamingllm), "
                        "e.g. duoattention:0.5",
}


def _spec_list(v: list[str] | None) -> list[str] | None:
    for x in v or []:
        parse_spec_auto(x)
    return v


def _eviction_list(v: list[str] | None) -> list[str] | None:
    for x in v or []:
        parse_eviction(x)
    return v


def _pair(v: str | None) -> str | None:
    if v is not None:
        try:
            a, b = (int(x) for x in v.split(":"))
        except ValueError:
            raise ValueError(f"takes PREFILL:DECODE replica counts such as 1:2, got {v!r}") from None
        if a < 1 or b < 1:
            raise ValueError(f"{v}: both pools need at least one replica")
    return v


def _sim_rate(v: Any) -> Any:
    if v is None or (isinstance(v, str) and v.strip().lower() == "inf"):
        return v
    try:
        r = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"a rate is requests/s or 'inf', got {v!r}") from None
    if math.isinf(r) and r > 0:
        return "inf"
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"a rate must be positive (or 'inf': all at once), got {v!r}")
    return r


def _estimate_rate(v: Any) -> Any:
    """estimate's --rate: requests/s, or 'inf' (every request queued at once) as a float."""
    r = _sim_rate(v)
    return math.inf if r == "inf" else r


MAX_TOKENS = 100_000_000  # longer than any model's context by 10x; beyond it an input is a typo
DEFAULT_RATE_REQUESTS = 1000  # requests an `estimate --rate` run sends: planner.api.estimate_at_rate's default
MAX_REQUESTS = 10_000_000

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0, allow_inf_nan=False)]
Names = Annotated[list[str], BeforeValidator(_split)]

# a duration given as a bare number above this many seconds gets a hint that it may mean milliseconds
MS_HINT_S = {"ttft": 60.0, "tpot": 5.0, "ttft_p99": 60.0, "tpot_p99": 5.0, "ttft_slo": 60.0, "tpot_slo": 5.0}


class Request(BaseModel):
    """Fields are options; ``SHORT`` maps a field to its one-letter flag; ``FLAGS`` to a bool pair."""

    # defer_build: a model's validator is built on its first use, not at import (listing the commands needs
    # only the fields; building all of them cost ~0.2 s of every start-up)
    model_config = ConfigDict(extra="forbid", defer_build=True)
    SHORT: ClassVar[dict[str, str]] = {"model": "-m", "hardware": "-H", "workload": "-w"}
    FLAGS: ClassVar[dict[str, str]] = {}


def _d(default, help: str, **kw):
    return Field(default=default, description=help, **kw)


MODEL_HELP = "model: planner id (planner models list), Hugging Face id, model YAML or a config.json"
WEIGHTS_HELP = (WEIGHT_FORMATS_HELP + " (default: the format the model is released in: bf16 for most, mxfp4 for "
                "gpt-oss, fp8 for DeepSeek-V3/R1 and Kimi-K2)")
HW_HELP = "hardware id (planner hardware list, any case) or a hardware YAML"


def _pue(v: float) -> float:
    if v < 1:
        raise ValueError(f"power usage effectiveness is total facility power over IT power, so it cannot be below 1 (got {v:g})")
    return v


Endpoint = Literal["completions", "chat"]  # planner.specs.engine.ENDPOINTS, written out (no engine import at start-up; a test pins them)
ENDPOINT_HELP = ("the API endpoint requests come through, whose per-request front-end time TTFT holds: completions "
                 "(/v1/completions, the benchmark clients' default) or chat (/v1/chat/completions: the release's fitted "
                 "chat time where it has one)")


Sampler = Literal["sorting", "flashinfer"]  # planner.specs.engine.SAMPLER_PATHS, written out (a test pins them)
SAMPLER_HELP = ("the top-k/top-p sampler path the install takes, whose warm-up vLLM V1's memory profile charges: sorting "
                "(the PyTorch path, 38.8 bytes a logit) or flashinfer (FlashInfer's kernels, about 13; NVIDIA GPUs only); "
                "default: the path the release's own images take (the estimate's note names the other)")


MemoryFraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
MEMORY_FRACTION_HELP = ("the engine's memory fraction, in (0, 1]: vLLM's --gpu-memory-utilization (of the whole GPU), "
                        "SGLang's --mem-fraction-static, TensorRT-LLM's kv_cache_free_gpu_memory_fraction (of the memory "
                        "free after the weights); default: the engine's (0.9 in vLLM and TensorRT-LLM, by device memory in SGLang)")


ADP_BALANCE_HELP = ("with --attention-dp: hold new prompts until every rank can take one, at most this many decode steps "
                    "(TensorRT-LLM attention_dp_config enable_balance with timeout_iters); 0: off, prompts enter as they "
                    "arrive; default: the engine profile's (TensorRT-LLM 1.x: on, 50 steps, as plan --emit writes it; "
                    "vLLM, SGLang: off)")
RECV_INTERVAL_HELP = ("decode steps between the scheduler's polls for new requests (SGLang --scheduler-recv-interval): a "
                      "request that arrives while sequences decode waits for the next poll; default: the engine's (1, every step)")
STREAM_INTERVAL_HELP = ("decode steps between a streamed reply's chunks (SGLang --stream-interval, TensorRT-LLM stream_interval; "
                        "the first token goes out at once): fewer chunks for the API server's one thread to write, where the "
                        "engine's calibration gives that thread a time a chunk (SGLang, trtllm-serve); default: the engine profile's "
                        "(10 for SGLang and TensorRT-LLM, as plan --emit writes it; the servers' own default is 1)")


def request_engine(req):
    """A request's engine release: its id, or the profile on its --endpoint where that is not completions
    (Engine.on_endpoint: the release's chat front-end time) with its --memory-fraction, which the engine's per-device
    defaults then leave as set (Engine.set_by_user)."""
    endpoint = getattr(req, "endpoint", "completions")
    fraction = getattr(req, "memory_fraction", None)
    sampler = getattr(req, "sampler", None)
    polls = getattr(req, "recv_interval", None)
    streams = getattr(req, "stream_interval", None)
    if endpoint == "completions" and fraction is None and sampler is None and polls is None and streams is None:
        return req.engine
    from planner.specs.engine import get_engine

    eng = get_engine(req.engine) if isinstance(req.engine, str) else req.engine
    if endpoint != "completions":
        eng = eng.on_endpoint(endpoint)
    if sampler is not None:  # the path the user's install takes (Engine.on_sampler_path), kept on every device
        eng = eng.on_sampler_path(sampler)
    pinned = {"utilization": float(fraction)} if fraction is not None else {}
    if polls is not None:  # the scheduler's polling interval the user set (SGLang --scheduler-recv-interval)
        pinned["recv_interval"] = int(polls)
    if streams is not None:  # the decode steps between streamed chunks the user set (--stream-interval)
        pinned["stream_interval"] = int(streams)
    return eng.set_by_user(**pinned) if pinned else eng


class Ownership(Request):
    """Owned-cost inputs (planner/cap/cost.py); unset: the sourced defaults in hw_specs/tco/defaults.yaml."""

    electricity_usd_per_kwh: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = _d(
        None, "electricity price for the owned cost, $/kWh (default 0.0862: EIA 2025 US industrial average)")
    pue: Annotated[float, Field(allow_inf_nan=False), AfterValidator(_pue)] | None = _d(
        None, "power usage effectiveness of the owned site, >= 1 (default 1.56: Uptime Institute 2024 average)")
    amortization_years: PositiveFloat | None = _d(None, "years the purchase is spread over (default 5)")
    utilization: Fraction | None = _d(None, "fraction of the amortization period the owned hardware serves, in (0, 1] (default 1)")

    def tco(self):
        from planner.cap.cost import assumptions

        return assumptions(self.electricity_usd_per_kwh, self.pue, self.amortization_years, self.utilization)


class Layout(Request):
    """One deployment: model, hardware, parallel sizes, precisions."""

    model: str = Field(description=MODEL_HELP)
    hardware: str = Field(description=HW_HELP)
    gpus: PositiveInt | None = _d(None, "GPUs in total (default: tp x pp x dp)")
    tp: PositiveInt | None = _d(None, "tensor parallel size")
    pp: PositiveInt | None = _d(None, "pipeline parallel size")
    ep: PositiveInt | None = _d(None, "expert parallel size (MoE)")
    dp: PositiveInt | None = _d(None, "data-parallel replicas")
    weights: str | None = _d(None, WEIGHTS_HELP)
    activations: str | None = _d(None, "activation precision (default: the weight format's)")
    kv: str | None = _d(None, KV_FORMATS_HELP)
    isl: Tokens = _d(1024, "input tokens per request")
    osl: Tokens = _d(256, "output tokens per request")
    engine: str = _d("trtllm", "serving engine whose limits and overheads apply: trtllm, vllm, sglang, llamacpp (a release: vllm@0.6; planner engines list)")
    link: str | None = _d(None, EDGE_LINK_HELP)
    moe_offload: str | None = _d(None, MOE_OFFLOAD_HELP)
    eplb: Annotated[int, Field(ge=0)] | None = _d(None, EPLB_HELP)


class FitRequest(Layout):
    pass


LORA_HELP = ("LoRA adapters ADAPTERS:RANK[:TARGETS] over the base model, e.g. 1000:16:q,k,v,o (S-LoRA); targets "
             "q,k,v,o,gate,up,down, attn, mlp, all, or experts (a rank-R adapter per MoE expert, ExpertWeave)")


class LoraOptions(Request):
    """LoRA adapters over one base model (S-LoRA, ExpertWeave; costmodel/lora.py)."""

    lora: str | None = _d(None, LORA_HELP)
    lora_resident: PositiveInt | None = _d(None, "adapters resident in GPU memory per replica (their bytes come out of the KV cache; default: all)")
    lora_popularity: str | None = _d(None, "which adapter a request uses: uniform or zipf:S (adapter k with weight k^-S)")


class Adapters(LoraOptions):
    """Multi-tenant serving: LoRA adapters over one base model, one GPU split between prefill and decode."""

    intra_gpu_pd: str | None = _d(None, "one GPU split between prefill and decode (semi-PD, Nexus): F, the prefill share "
                                        "of the SMs in (0, 1), or auto (the best F)")


class EstimateRequest(Ownership, Adapters, Layout):
    FLAGS: ClassVar[dict[str, str]] = {"kv_offload": "--kv-offload/--no-kv-offload"}

    finetune_tpot: Duration | None = _d(None, "FlexLLM: co-serve a PEFT fine-tuning job in the inference steps; report "
                                              "its training tokens/s while TPOT stays within this limit (50ms)")
    shared_variants: str | None = _d(None, "BlockLLM: VARIANTS:SHARED_FRACTION fine-tuned variants sharing that fraction "
                                           "of the base blocks, e.g. 8:0.75 (their own blocks come out of the KV cache)")

    weight_offload: Literal["host", "disk"] | None = _d(None, "stream weights that do not fit from 'host' memory or 'disk' (NVMe)")
    attention_dp: PositiveInt | None = _d(None, "data-parallel attention over N GPUs (MoE/MLA, with --ep N)")
    cp: PositiveInt = _d(1, "context-parallel GPUs per replica (ring attention; a distributed KV pool in decode)")
    chunk_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = _d(0, "chunked-prefill token budget per step (0: whole prompts)")
    spec: Annotated[str | None, AfterValidator(_spec_auto_one)] = _d(
        None, "speculative decoding DRAFT_TOKENS:ACCEPTANCE (3:0.7), or auto:ACCEPTANCE (k chosen per batch)")
    draft_model: str | None = _d(None, "draft model id for --spec (default: a one-layer MTP/EAGLE-style head)")
    kv_offload: bool = _d(False, "KV that does not fit in device memory lives in host memory")
    eviction: str | None = _d(None, "KV eviction METHOD:KEPT_TOKENS, e.g. snapkv:2048")
    prefix_hit_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = _d(0, "prompt tokens served from the prefix cache")
    shared_prefix: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = _d(
        0.0, "fraction of each prompt that is one prefix every request shares (a system prompt), in [0, 1): served from "
             "the prefix cache, held once, and read once a decode step while the device's last-level cache holds it")
    context_extension: Annotated[str | None, AfterValidator(_cap_knob("extension"))] = _d(None, CAP_HELP["context_extension"])
    prompt_compression: Annotated[str | None, AfterValidator(_cap_knob("compression"))] = _d(None, CAP_HELP["prompt_compression"])
    sparse_attention: Annotated[str | None, AfterValidator(_cap_knob("sparse"))] = _d(None, CAP_HELP["sparse_attention"])
    batching: Literal["static", "inflight"] = _d("inflight", "static (all requests start together) or inflight (continuous batching)")
    batch: PositiveInt | None = _d(None, "requests in the static batch (all --dp replicas together)")
    concurrency: PositiveInt | Literal["max"] | None = _d(None, "clients in a closed loop (inflight), shared evenly by the --dp replicas, or 'max' (default)")
    rate: Annotated[float | None, BeforeValidator(_estimate_rate)] = _d(
        None, "arrival rate in requests/s (runs the serving simulator), or 'inf': every request queued at once, as a "
              "throughput benchmark runs them (trtllm-bench, vllm bench throughput)")
    requests: Annotated[int | None, Field(ge=1, le=MAX_REQUESTS)] = _d(
        None, f"requests the --rate run sends (default {DEFAULT_RATE_REQUESTS}, the count vLLM's and SGLang's serving "
              "benchmarks send): past the plan's throughput the queue grows through the run, and TTFT with it; with "
              "--concurrency N, a benchmark's closed loop of N clients over that many requests of exactly --isl / --osl "
              "tokens (--max-concurrency N --num-prompts M, --ignore-eos), simulated: its clients run in waves")
    endpoint: Endpoint = _d("completions", ENDPOINT_HELP)
    sampler: Sampler | None = _d(None, SAMPLER_HELP)
    memory_fraction: MemoryFraction | None = _d(None, MEMORY_FRACTION_HELP)
    attention_dp_balance: NonNegativeInt | None = _d(None, ADP_BALANCE_HELP + "; in the steady state of --concurrency the clients' prompts arrive evenly, at --rate the simulator replays them")
    recv_interval: PositiveInt | None = _d(None, RECV_INTERVAL_HELP)
    stream_interval: PositiveInt | None = _d(None, STREAM_INTERVAL_HELP)

    @model_validator(mode="after")
    def _batching(self):
        if self.rate is not None and (self.batching != "inflight" or self.batch is not None or self.concurrency is not None):
            raise ValueError("--rate simulates continuous batching: drop --batching static/--batch/--concurrency")
        if self.requests is not None and self.rate is None and not isinstance(self.concurrency, int):
            raise ValueError("--requests sets the length of a simulated run: give --rate, or --concurrency N for a "
                             "closed loop of N clients")
        if self.attention_dp_balance and self.batching == "static":
            raise ValueError("--attention-dp-balance holds arriving prompts: it applies to --concurrency or --rate, not "
                             "to a static batch")
        if self.batching == "static" and self.concurrency is not None:
            raise ValueError("--concurrency applies to --batching inflight; use --batch with static batching")
        if self.batching == "inflight" and self.batch is not None:
            raise ValueError("--batch applies to --batching static; use --concurrency with inflight batching")
        if self.batching == "static" and self.batch is None:
            raise ValueError("--batching static needs --batch N")
        if self.weight_offload is not None and (self.rate is not None or self.requests is not None):
            raise ValueError("--weight-offload is not simulated (--rate, or --concurrency with --requests); drop one")
        return self


class PlanRequest(Ownership, Adapters):
    FLAGS: ClassVar[dict[str, str]] = {"disagg": "--disagg/--no-disagg", "offload": "--offload/--no-offload"}

    model: str | None = _d(None, MODEL_HELP + " (or --models A,B with --rates)")
    models: Names | None = _d(None, "several models on one pool: place them on --hardware's GPUs (co-located where they "
                                    "fit, time-sliced), e.g. llama-3.1-8b,qwen3-8b, with --rates")
    rates: Annotated[list[PositiveFloat], BeforeValidator(_split)] | None = _d(None, "requests/s of each --models model, e.g. 2,0.5")
    hardware: Annotated[list[str], BeforeValidator(_split), Field(min_length=1)] = Field(
        description="one or more hardware ids (repeat or comma-separate)")
    gpus: PositiveInt = Field(description="GPU budget")
    isl: Tokens = _d(1024, "input tokens per request")
    osl: Tokens = _d(256, "output tokens per request")
    ttft: Duration | None = _d(None, "TTFT limit (mean): 2, 2s or 300ms (a bare number is seconds)")
    tpot: Duration | None = _d(None, "TPOT limit, the mean inter-token latency: 0.05, 50ms")
    eplb: Annotated[int, Field(ge=0)] | None = _d(None, EPLB_HELP + "; each expert-parallel layout is searched with its experts in order and balanced")
    min_context: Tokens | None = _d(None, "longest single request the plan must hold, tokens")
    min_accuracy: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = _d(
        0.99, "accuracy floor relative to the bf16 model (1.0); default 0.99, within 1 % (the MLPerf 99 % rule); 0 for none")
    max_cost: PositiveFloat | None = _d(None, "ceiling in $ per million output tokens")
    objective: Literal["throughput", "cost", "latency"] = _d("throughput", "throughput (tokens/s per GPU), cost ($/M tokens) or latency (end-to-end)")
    cost_basis: Literal["rented", "owned"] | None = _d(
        None, "$/M tokens that --objective cost and --max-cost use: rented (on-demand price) or owned (purchase "
              "amortized + power); default rented when every device has a price, else owned")
    task: Literal["general", "knowledge", "math", "code", "reasoning"] = _d("general", "task class for accuracy sensitivity")
    weights: Names | None = _d(None, "restrict weight precisions (default: all the device runs)")
    kv: Names | None = _d(None, "restrict KV-cache precisions")
    spec: Annotated[Names | None, AfterValidator(_spec_list)] = _d(
        None, "speculative decoding candidates DRAFT_TOKENS:ACCEPTANCE, e.g. 3:0.7, or auto:ACCEPTANCE (k chosen per batch)")
    eviction: Annotated[Names | None, AfterValidator(_eviction_list)] = _d(
        None, "KV eviction candidates METHOD:KEPT_TOKENS (snapkv, h2o, streamingllm, pyramidkv), e.g. snapkv:2048")
    concurrency: Annotated[list[PositiveInt], BeforeValidator(_split)] | None = _d(None, "concurrency candidates per replica (default: the search's grid)")
    disagg: bool = _d(True, "consider disaggregated prefill/decode")
    offload: bool = _d(True, "consider KV-cache offload to host memory")
    engine: str = _d("trtllm", "engine limits and overheads: trtllm, vllm, sglang (a release: vllm@0.6; planner engines list)")
    endpoint: Endpoint = _d("completions", ENDPOINT_HELP)
    sampler: Sampler | None = _d(None, SAMPLER_HELP)
    memory_fraction: MemoryFraction | None = _d(None, MEMORY_FRACTION_HELP)
    context_extension: Names | None = _d(None, "RoPE-scaling methods to serve past the trained context (default yarn "
                                               "when --min-context or isl + osl exceed it), e.g. yarn,yarn-ft")
    prompt_compression: Names | None = _d(None, "prompt-compression candidates METHOD:RATIO, e.g. llmlingua-2:4")
    sparse_attention: Names | None = _d(None, "sparse-attention candidates METHOD:KEPT_FRACTION, e.g. duoattention:0.5")
    cp: Annotated[list[PositiveInt], BeforeValidator(_split)] | None = _d(
        None, "context-parallel sizes to consider (default 1; more when --min-context needs them)")
    draft_model: str | None = _d(None, "draft model id for the --spec candidates (default: a one-layer MTP/EAGLE-style head)")

    @model_validator(mode="after")
    def _one_or_many(self):
        if self.models and self.model:
            raise ValueError("give --model or --models, not both")
        if not self.models and not self.model:
            raise ValueError("give --model (or --models A,B with --rates RA,RB)")
        if bool(self.models) != bool(self.rates):
            raise ValueError("--models and --rates go together (one rate per model)")
        return self


class CapacityRequest(Ownership, LoraOptions):
    model: str = Field(description=MODEL_HELP)
    hardware: str = Field(description=HW_HELP)
    rate: PositiveFloat | None = _d(None, "arrival rate, requests/s (with --hourly/--daily: the peak is used)")
    workload: str | None = _d(None, "built-in workload or a workload YAML (default: fixed --isl/--osl)")
    isl: Tokens = _d(1024, "input tokens per request (without --workload)")
    osl: Tokens = _d(256, "output tokens per request (without --workload)")
    arrival: Literal["poisson", "gamma"] = _d("poisson", "arrival process: poisson or gamma")
    cv: PositiveFloat = _d(1.0, "coefficient of variation of inter-arrival gaps (gamma)")
    ttft_p99: Duration | None = _d(None, "TTFT SLO at the percentile (default p99): 2s, 300ms")
    tpot_p99: Duration | None = _d(None, "TPOT SLO (mean inter-token latency of a request) at the percentile: 50ms")
    percentile: Annotated[float, Field(gt=0, lt=100, allow_inf_nan=False)] = _d(99.0, "SLO percentile, in (0, 100)")
    max_gpus: PositiveInt | None = _d(None, "largest deployment to consider (default: 64); replicas may fill several nodes, each replica stays within what the links reach")
    weights: str | None = _d(None, WEIGHTS_HELP)
    kv: str | None = _d(None, KV_FORMATS_HELP)
    engine: str = _d("trtllm", "engine: trtllm, vllm or sglang (a release: vllm@0.6; planner engines list)")
    endpoint: Endpoint = _d("completions", ENDPOINT_HELP)
    sampler: Sampler | None = _d(None, SAMPLER_HELP)
    memory_fraction: MemoryFraction | None = _d(None, MEMORY_FRACTION_HELP)
    requests: Annotated[int, Field(ge=10, le=MAX_REQUESTS)] | None = _d(None, "requests per simulation (default: ~300 s of traffic, 1000-10000)")
    seed: Annotated[int, Field(ge=0)] = _d(0, "random seed")
    attention_dp_balance: NonNegativeInt | None = _d(None, "attention-DP candidates: " + ADP_BALANCE_HELP)
    eplb: Annotated[int, Field(ge=0)] | None = _d(None, EPLB_HELP + "; the candidates come from a search of each expert-parallel layout in order and balanced")
    hourly: str | None = _d(None, "daily profile: comma-separated hourly rates r1,r2,...")
    daily: str | None = _d(None, "daily profile file: one rate per line, or a CSV with a 'rate' column")

    @model_validator(mode="after")
    def _profile(self):
        if self.hourly and self.daily:
            raise ValueError("give --hourly or --daily, not both")
        if self.rate is None and not (self.hourly or self.daily):
            raise ValueError("give --rate R (or a daily profile with --hourly/--daily)")
        return self


class SimulateRequest(Request):
    FLAGS: ClassVar[dict[str, str]] = {"chunked_prefill": "--chunked-prefill/--no-chunked-prefill",
                                       "priority_preemption": "--priority-preemption/--no-priority-preemption"}

    model: str | None = _d(None, "model (not needed with --fleet): planner id, Hugging Face id, YAML or config.json")
    hardware: str = Field(description=HW_HELP)
    gpus: PositiveInt | None = _d(None, "GPUs in total (default: tp x pp x dp)")
    tp: PositiveInt | None = _d(None, "tensor parallel size")
    pp: PositiveInt | None = _d(None, "pipeline parallel size")
    ep: PositiveInt | None = _d(None, "expert parallel size (MoE)")
    attention_dp: PositiveInt | None = _d(None, "data-parallel attention over N GPUs per replica (MoE/MLA, with --ep N)")
    attention_dp_balance: NonNegativeInt | None = _d(None, ADP_BALANCE_HELP)
    dp: PositiveInt | None = _d(None, "replicas (data parallel)")
    weights: str | None = _d(None, WEIGHTS_HELP)
    activations: str | None = _d(None, "activation precision (default: the weight format's)")
    kv: str | None = _d(None, KV_FORMATS_HELP)
    engine: str = _d("trtllm", "engine defaults: trtllm (reserve KV, 2048 seqs, 8192 tokens), vllm (on-demand KV) or sglang (KV admitted by its new-token ratio), at their device limits (planner engines list)")
    workload: str | None = _d(None, "built-in workload (chat, chat-multiturn, code, rag, summarization, reasoning, burstgpt, openorca, sharegpt) or a workload YAML")
    trace: str | None = _d(None, "CSV trace: timestamp, input and output tokens per row (BurstGPT columns work as they are)")
    isl: Tokens = _d(1024, "input tokens per request (without --workload/--trace)")
    osl: Tokens = _d(256, "output tokens per request (without --workload/--trace)")
    arrival: Literal["poisson", "gamma"] = _d("poisson", "arrival process: poisson or gamma")
    cv: PositiveFloat = _d(1.0, "coefficient of variation of inter-arrival gaps (gamma; BurstGPT fits ~1.4)")
    shared_prefix: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] | None = _d(None, "fraction of each prompt served from the prefix cache, in [0, 1)")
    rate: Annotated[float | str | None, BeforeValidator(_sim_rate)] = _d(None, "arrival rate, requests/s, or 'inf' (all at once); rescales a trace")
    requests: Annotated[int, Field(ge=1, le=MAX_REQUESTS)] = _d(1000, "requests to simulate (a trace: its first N rows)")
    clients: PositiveInt | None = _d(None, "N clients in a closed loop instead of --rate (a benchmark's --max-concurrency N): the first N requests arrive at once, each later one when its client's previous request ends; independent requests, so no prefix cache (unless --dataset-entries, or --shared-prefix: one system prompt every request starts with)")
    dataset_entries: PositiveInt | None = _d(None, "the client sends N distinct prompts over and over (aiperf's and genai-perf's --num-dataset-entries, 100 unless set): a prompt sent again is served from the prefix cache while its blocks stay resident; default: every prompt distinct")
    dataset_sampling: Literal["shuffle", "sequential", "random"] = _d("shuffle", "order of a --dataset-entries client's prompts: shuffle (a new permutation each pass, aiperf's default for synthetic prompts), sequential, or random (with replacement)")
    seed: Annotated[int, Field(ge=0)] = _d(0, "random seed (same seed, same numbers)")
    ttft_slo: Duration | None = _d(None, "TTFT SLO for goodput: 2s, 300ms")
    tpot_slo: Duration | None = _d(None, "TPOT SLO for goodput, mean inter-token latency of a request: 50ms")
    router: str = _d("least-outstanding", "round-robin, least-outstanding, threshold:T (fleets) or static")
    recv_interval: PositiveInt | None = _d(None, RECV_INTERVAL_HELP)
    stream_interval: PositiveInt | None = _d(None, STREAM_INTERVAL_HELP)
    chunked_prefill: bool | None = _d(None, "split prompts to fill each step's token budget (default: the engine's; vllm on, trtllm off)")
    max_seqs: PositiveInt | None = _d(None, "max sequences in a batch (default: the engine's)")
    max_batched_tokens: PositiveInt | None = _d(None, "token budget per step (default: the engine's)")
    kv_admission: Literal["reserve", "ondemand", "ratio"] | None = _d(None, "reserve (no preemption), ondemand (preempts when KV runs out) or ratio (SGLang: admits while KV covers a decaying share of the outputs to come); default: the engine's")
    preemption: Literal["recompute", "swap"] = _d("recompute", "what a preempted sequence does: recompute or swap")
    spec: Annotated[str | None, AfterValidator(_spec_one)] = _d(None, "speculative decoding DRAFT_TOKENS:ACCEPTANCE, e.g. 3:0.7")
    disagg: Annotated[str | None, AfterValidator(_pair)] = _d(None, "disaggregated pools PREFILL:DECODE replicas, e.g. 1:2 (each of the plan's size)")
    prefill_tp: PositiveInt | None = _d(None, "tensor parallel size of prefill replicas (with --disagg)")
    prefill_attention_dp: PositiveInt | None = _d(None, "attention-DP ranks of prefill replicas (with --disagg; default: --attention-dp)")
    prefill_ep: PositiveInt | None = _d(None, "expert parallel size of prefill replicas (with --disagg; default: --ep)")
    eplb: Annotated[int, Field(ge=0)] | None = _d(None, EPLB_HELP)
    fleet: str | None = _d(None, "fleet of model sizes MODEL:REPLICAS[:TP],... e.g. llama-3.1-70b:2,llama-3.1-8b:2")
    cp: PositiveInt = _d(1, "context-parallel GPUs per replica (ring attention; a distributed KV pool in decode)")
    draft_model: str | None = _d(None, "draft model id for --spec (default: a one-layer MTP/EAGLE-style head)")
    context_extension: Annotated[str | None, AfterValidator(_cap_knob("extension"))] = _d(None, CAP_HELP["context_extension"])
    prompt_compression: Annotated[str | None, AfterValidator(_cap_knob("compression"))] = _d(None, CAP_HELP["prompt_compression"])
    sparse_attention: Annotated[str | None, AfterValidator(_cap_knob("sparse"))] = _d(None, CAP_HELP["sparse_attention"])
    link: str | None = _d(None, EDGE_LINK_HELP)
    lora: str | None = _d(None, "LoRA adapters ADAPTERS:RANK[:TARGETS] over the base model, e.g. 1000:16:q,k,v,o (S-LoRA); targets q,k,v,o,gate,up,down, attn, mlp, all")
    lora_resident: PositiveInt | None = _d(None, "adapters resident in GPU memory per replica (LRU; their bytes come out of the KV cache; default: all)")
    lora_popularity: str | None = _d(None, "which adapter a request uses: uniform, zipf:S (adapter k with weight k^-S) or trace (the trace's adapter column)")
    migrate: Annotated[int, Field(ge=0)] | None = _d(None, "live migration (Llumnix): move a running request to the least-loaded replica when a replica holds T more requests")
    priority_preemption: bool = _d(False, "preempt lower-priority running requests for waiting higher-priority ones (swap; workload classes, FastSwitch)")
    swap_group: PositiveInt | None = _d(None, "KV blocks per host-link copy when swapping (each a copy per layer): 1 = block by block (vLLM), more = FastSwitch block groups; default: bandwidth only (1 with --priority-preemption)")
    ic_cache: str | None = _d(None, "IC-Cache routing (with --fleet BIG:N,SMALL:M): HIT_RATE:EXAMPLES:TOKENS:QUALITY, e.g. 0.7:3:200:1.0")

    @model_validator(mode="after")
    def _who(self):
        if self.model is None and self.fleet is None:
            raise ValueError("give --model (or --fleet MODEL:N,...)")
        return self


REQUESTS: dict[str, type[Request]] = {"estimate": EstimateRequest, "fit": FitRequest, "plan": PlanRequest,
                                      "capacity": CapacityRequest, "simulate": SimulateRequest}


# ---------------------------------------------------------------- checks against the specs

MAX_NODES = 128  # scale-out deployments the planner prices: 128 nodes (1,024 GPUs of an 8-GPU node)


def max_devices(hardware: str, link: str | None = None) -> tuple[int, bool]:
    """(the most devices one replica of ``hardware`` can use, whether that spans nodes). One node
    holds the larger of the device's scale-up domain (or its node tier) and its systems' device count; a device
    with a scale-out network (its own link or a system's NICs) spans up to MAX_NODES nodes. A device with
    neither (a laptop SoC, one CPU socket) is one device."""
    from planner.specs.loader import get_hardware, get_system, system_ids

    hw = get_hardware(hardware)
    node = hw.node_size
    spans = hw.links.scale_out is not None or bool(link)  # --link joins edge devices over Wi-Fi / Ethernet
    for sid in system_ids():
        s = get_system(sid)
        if s.device == hw.id:
            node = max(node, s.devices_per_node)
            spans = spans or bool(s.scale_out)
    return node * (MAX_NODES if spans else 1), spans


def fleet_devices(hardware: str, link: str | None = None) -> int:
    """The most devices a deployment of replicas can use: each replica stays within what the device's links reach
    (max_devices), but replicas exchange nothing on the GPU side (a load balancer spreads requests over them), so
    they may fill up to MAX_NODES nodes even where the spec has no scale-out network."""
    reach, spans = max_devices(hardware, link)
    return reach if spans else reach * MAX_NODES


DEFAULT_MAX_GPUS = 64


def capacity_max_gpus(req) -> int:
    """``capacity``'s --max-gpus, or its default: 64 (fewer only where a whole fleet of the device holds fewer)."""
    return req.max_gpus if req.max_gpus is not None else min(DEFAULT_MAX_GPUS, fleet_devices(req.hardware))


def check_gpus(hardware: str, gpus: int, what: str = "--gpus", link: str | None = None) -> None:
    """A PlannerError when ``gpus`` exceed what a deployment of replicas can use (fleet_devices); whether one replica's
    devices reach each other is checked where its layout is known (Fabric.check_reaches, the search's layouts)."""
    if link:
        from planner.specs.loader import get_interconnect

        get_interconnect(link)  # an unknown link is one line with a did-you-mean
    from planner.specs.loader import get_hardware

    if gpus <= get_hardware(hardware).node_size:  # fleet_devices is at least a node: no system spec need be read
        return
    most = fleet_devices(hardware, link)
    if gpus > most:
        raise PlannerError(f"{what} {gpus}: a deployment of {get_hardware(hardware).id} holds at most {most:,} devices "
                           f"({MAX_NODES} nodes)")


def checkpoint_format(model: str | None) -> str | None:
    """The weight format a checkpoint named by its repo says it stores (``nvidia/Llama-3.3-70B-Instruct-FP8`` -> fp8;
    planner.specs.checkpoint), None for a built-in id, a spec or config file, or a name that names no format."""
    if not isinstance(model, str) or not model:
        return None
    from pathlib import Path

    from planner.specs.checkpoint import checkpoint_weights
    from planner.specs.loader import model_ids

    if model in model_ids() or model.endswith((".yaml", ".yml", ".json")) or Path(model).is_file():
        return None
    return checkpoint_weights(model)


def check_specs(command: str, req: Request) -> list[str]:
    """Range checks that need the model and hardware specs (the model loads once, cached). Returns notes on defaults
    taken from what was given (the weight format a checkpoint's name states), for the caller to show."""
    from planner.specs.loader import get_model

    r: Any = req
    notes: list[str] = []
    named = checkpoint_format(getattr(r, "model", None))
    if named is not None and ((command in ("estimate", "fit", "simulate", "capacity") and r.weights is None)
                              or (command == "plan" and not r.weights)):
        m_id = get_model(r.model).id
        r.weights = [named] if command == "plan" else named
        notes.append(f"note: {r.model} is {m_id} with {named} weights (the format its name states; --weights overrides)")
    if command in ("estimate", "fit", "simulate", "capacity") and r.weights is None:  # the model's released format
        r.weights = (get_model(r.model).released_weights() if getattr(r, "model", None) else None) or "bf16"
    if command in ("estimate", "fit", "simulate"):
        if command == "simulate" and r.fleet is not None:
            return notes
        n = r.gpus or (r.tp or 1) * (r.pp or 1) * (r.dp or 1)
        check_gpus(r.hardware, n, "--gpus" if r.gpus else "tp x pp x dp =", getattr(r, "link", None))
    elif command == "plan":
        for h in r.hardware:
            check_gpus(h, r.gpus)
    elif command == "capacity" and r.max_gpus is not None:
        check_gpus(r.hardware, r.max_gpus, "--max-gpus")
    if getattr(r, "model", None) is None:
        return notes
    m = get_model(r.model)
    uses_isl = command in ("estimate", "fit", "plan") or (command in ("simulate", "capacity") and not r.workload
                                                            and not getattr(r, "trace", None))
    factor = _extension_factor(command, r)
    if uses_isl and r.isl + r.osl > m.max_context * factor and command != "plan":
        raise PlannerError(f"--isl {r.isl} + --osl {r.osl} = {r.isl + r.osl:,} tokens is longer than {m.id}'s context "
                           f"of {m.max_context:,} tokens" + (f" x{factor:g} extended" if factor > 1 else
                                                              "; serve it with --context-extension yarn:FACTOR"))
    longest = max(r.min_context or 0, r.isl + r.osl) if command == "plan" else 0
    if longest > m.max_context * MAX_EXTENSION_FACTOR:
        raise PlannerError(f"{longest:,} tokens is more than {MAX_EXTENSION_FACTOR}x {m.id}'s context of {m.max_context:,} "
                           "tokens: no RoPE scaling on record reaches it")
    return notes


MAX_EXTENSION_FACTOR = 64  # the plan search's largest RoPE-scaling factor (LongRoPE's 2048k from 4k is 512x; YaRN tables go to 32x)


def _extension_factor(command: str, r: Any) -> float:
    text = getattr(r, "context_extension", None) if command in ("estimate", "simulate") else None
    if not text:
        return 1.0
    from planner.serving.captech import parse_extension_text

    return parse_extension_text(text)[1]


def plan_search(req: PlanRequest):
    """Run the plan search a PlanRequest describes (the CLI and study points share this)."""
    from planner.search.evaluate import Workload
    from planner.search.run import Constraints, search
    from planner.search.space import SpaceOptions

    if req.models:
        from planner.errors import PlannerError

        raise PlannerError("--models places several models: that is plan_placement (planner plan --models ..., or a study point), not the plan search")
    kw = {"concurrency": tuple(req.concurrency)} if req.concurrency else {}
    opts = SpaceOptions(weights=tuple(req.weights) if req.weights else None, kv=tuple(req.kv) if req.kv else None,
                        speculative=tuple((-1 if auto else k, a) for k, a, auto in (parse_spec_auto(s) for s in req.spec or ())
                                          if k > 0 or auto),  # k = -1: adaptive (chosen per batch)
                        eviction=tuple(parse_eviction(s) for s in req.eviction or ()),
                        offload=req.offload, disaggregated=req.disagg,
                        context_extension=tuple(req.context_extension or ()),
                        prompt_compression=tuple(_knob_pair("compression", s) for s in req.prompt_compression or ()),
                        sparse_attention=tuple(_knob_pair("sparse", s) for s in req.sparse_attention or ()),
                        cp=tuple(req.cp or ()), draft_model=req.draft_model, lora=_lora_spec(req),
                        intra_gpu_pd=req.intra_gpu_pd, eplb=req.eplb, **kw)
    cons = Constraints(gpus=req.gpus, ttft_s=req.ttft, tpot_s=req.tpot, min_context=req.min_context,
                       min_accuracy=req.min_accuracy or None, max_usd_per_mtok=req.max_cost)
    return search(req.model, list(req.hardware), req.gpus, Workload(req.isl, req.osl), cons, objective=req.objective,
                  opts=opts, engine=request_engine(req), task=req.task, cost_basis=req.cost_basis, tco=req.tco())


def plan_placement(req: PlanRequest) -> dict:
    """Several models on one pool (search/placement.py) for ``plan --models A,B --rates RA,RB``."""
    from planner.search.placement import place

    return place(list(req.models), list(req.rates), req.hardware[0], isl=req.isl, osl=req.osl, ttft_s=req.ttft,
                 tpot_s=req.tpot, weights=(req.weights or ["bf16"])[0], engine=request_engine(req), max_gpus=req.gpus)


def lora_spec(req):
    """The LoraSpec a request's --lora/--lora-resident/--lora-popularity name (None without --lora)."""
    return _lora_spec(req)


def _lora_spec(req):
    from planner.costmodel.lora import parse_lora

    if not req.lora:
        if req.lora_resident is not None or req.lora_popularity:
            from planner.errors import PlannerError

            raise PlannerError("--lora-resident and --lora-popularity need --lora ADAPTERS:RANK")
        return None
    return parse_lora(req.lora, req.lora_resident, req.lora_popularity)


def _knob_pair(kind: str, text: str) -> tuple[str, float]:
    from planner.serving.captech import parse_compression_text, parse_sparse_text

    return (parse_compression_text if kind == "compression" else parse_sparse_text)(text)


def estimate_techniques(plan, req):
    """``plan`` (a PlanSpec) with the serving techniques an EstimateRequest names: the one place the CLI and study
    points read them (chunked prefill, speculation with a fixed or adaptive k and an optional draft model, KV offload,
    eviction, prefix-cache hits, context extension, prompt compression, sparse attention, context parallelism)."""
    from dataclasses import replace

    k, alpha, auto = parse_spec_auto(req.spec) if req.spec else (0, 0.0, False)
    return replace(plan, chunk_tokens=req.chunk_tokens, spec_k=k, spec_alpha=alpha, spec_auto=auto, draft_model=req.draft_model,
                   kv_offload=req.kv_offload, eviction=req.eviction, prefix_hit_tokens=req.prefix_hit_tokens,
                   shared_prefix=getattr(req, "shared_prefix", 0.0) or 0.0,
                   context_extension=req.context_extension, prompt_compression=req.prompt_compression,
                   sparse_attention=req.sparse_attention, cp=req.cp, attention_dp=req.attention_dp or plan.attention_dp,
                   moe_offload=getattr(req, "moe_offload", None), eplb=getattr(req, "eplb", None), lora=getattr(req, "lora", None),
                   lora_resident=getattr(req, "lora_resident", None), lora_popularity=getattr(req, "lora_popularity", None),
                   intra_gpu_pd=getattr(req, "intra_gpu_pd", None), finetune_tpot_s=getattr(req, "finetune_tpot", None),
                   shared_variants=getattr(req, "shared_variants", None))


def simulated_point(r: EstimateRequest, hw, plan) -> dict | None:
    """The serving simulator's estimate of a request that asks for one, as a dict: at its --rate
    (``estimate_at_rate``, over --requests or the default count), or a benchmark's closed loop of --concurrency N
    clients over --requests M (``estimate_closed_loop``); None where the request asks for the steady state. The one
    dispatch `planner estimate` and estimate studies share."""
    if r.rate is not None:
        from planner.api import estimate_at_rate

        return estimate_at_rate(r.model, hw, plan, rate=r.rate, isl=r.isl, osl=r.osl, engine=request_engine(r),
                                adp_balance=r.attention_dp_balance, **({"requests": r.requests} if r.requests else {}))
    if r.requests is not None:
        from planner.api import estimate_closed_loop

        return estimate_closed_loop(r.model, hw, plan, clients=r.concurrency, requests=r.requests, isl=r.isl, osl=r.osl,
                                    engine=request_engine(r), adp_balance=r.attention_dp_balance)
    return None
