"""Deployment configs for a recommended plan: launch commands for vLLM, SGLang and
TensorRT-LLM, and a Kubernetes Deployment running the vLLM OpenAI server.

``emit(engine, plan)`` returns text to print. ``plan`` is an engine-neutral dict:

- ``model`` (planner id), ``hf_repo`` (Hugging Face repo or None: the id stands in, with a comment),
  ``hardware``, ``gpus`` (total)
- ``tp``: tensor-parallel world of one engine instance per pipeline stage. With ``attention_dp``
  it spans the attention data-parallel groups too (SGLang ``--tp-size`` / TensorRT-LLM ``--tp_size``
  convention), so one engine always holds ``tp * pp`` GPUs.
- ``pp``; ``ep``: expert-parallel size, dividing ``tp`` (MoE models only)
- ``dp``: independent replicas of the engine (Kubernetes ``replicas``)
- ``attention_dp``: DeepSeek-style data-parallel attention inside the engine. The optional key
  ``attention_dp_size`` (default ``tp``: attention TP 1) says how many attention groups.
- ``weights``, ``kv``: planner format ids
- ``max_num_seqs``, ``max_num_batched_tokens``: per engine instance (summed over attention-DP
  ranks); engines that take them per rank (vLLM data parallel, TensorRT-LLM attention DP) get
  them divided, rounded up.
- ``chunked_prefill``, ``max_model_len``, ``gpu_memory_utilization`` (passed through: the engine
  reads it its own way, vLLM and SGLang of the whole device, TensorRT-LLM of the memory left
  after weights)
- ``speculative``: None or {method: draft | mtp | ngram, num_speculative_tokens, draft_model}
- ``disaggregated``: None or {prefill_workers, decode_workers, prefill_tp, decode_tp}, each tp the
  role's engine-wide tensor-parallel world (attention-DP groups included). Optional
  ``prefill_attention_dp`` / ``decode_attention_dp`` give each role's attention-DP groups (1: none);
  without them, with ``attention_dp`` the decode role uses ``attention_dp_size`` and the prefill
  role runs attention fully data parallel over its ``prefill_tp`` GPUs.
- ``kv_offload_gib``: host memory per GPU for offloaded KV cache (0: none)

Every flag written is one its engine documents: ``FLAG_SOURCES`` names the page each came from
(and the released source it was checked against). A combination an engine cannot run raises
``PlannerError`` with one sentence.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import yaml

from planner.errors import PlannerError
from planner.report.checkpoint import _ENGINE_NAMES, PROFILE, _Checkpoint, _checkpoint, _draft, _flag, _kv_value, _profile  # noqa: F401
from planner.report.script import _ceil_div, _num, _Script, flag_map, split_script  # noqa: F401
from planner.specs.quant import DEPLOY_KV_FORMATS, DEPLOY_WEIGHT_FORMATS

ENGINES = ("vllm", "sglang", "trtllm", "k8s")
WEIGHT_FORMATS, KV_FORMATS = DEPLOY_WEIGHT_FORMATS, DEPLOY_KV_FORMATS
SPEC_METHODS = ("draft", "mtp", "ngram")

# ---- where each flag is documented: the engine profiles (engines/*.yaml) ---------------------
# Every flag and config key an emitter writes is a setting or a `cli:` entry of the newest profile
# of its engine, with the page it was read from. The k8s manifest runs `vllm serve`.


def _table(engine: str) -> dict[str, str]:
    eng = _profile(engine)
    return {flag: eng.sources[k] for k, flag in eng.flag_items}


FLAG_SOURCES: dict[str, dict[str, str]] = {e: _table(e) for e in PROFILE}
# keys of the TensorRT-LLM --extra_llm_api_options YAML
TRTLLM_YAML_SOURCES: dict[str, str] = {key: _profile("trtllm").sources[k] for k, key in _profile("trtllm").key_items}
# TensorRT-LLM's attention-DP balancing: a rank that prefills holds new prompts until every rank has one, at most this
# many iterations (the profile's attention_dp_balance, AttentionDpConfig.timeout_iters' default); plan, estimate and
# simulate price attention DP with prompts held so (serving/batching.py, Engine.attention_dp_balance)
ADP_BALANCE_STEPS = _profile("trtllm").attention_dp_balance
# decode steps between a streamed reply's chunks, as the profiles price them (Engine.stream_interval): one API-server
# thread writes every chunk of every reply, and at the servers' own default of 1 it, not the GPUs, sets the pace of a
# busy replica (planner.serving.batching.api_thread)
STREAM_INTERVAL = {e: _profile(e).stream_interval for e in ("trtllm", "sglang")}
DOCUMENTED_FLAGS: dict[str, frozenset[str]] = {e: frozenset(f) for e, f in FLAG_SOURCES.items()}

# ---- deployment constants ------------------------------------------------------------------
# the format the published checkpoint ships in: Model.native_weights; an MTP head: Model.mtp_layers
# (both read in _parse); checkpoints and draft models: planner.report.checkpoint
VLLM_IMAGE = "vllm/vllm-openai:latest"  # the image the vLLM Kubernetes guide uses; pin a release tag in production
PORT = 8000  # the OpenAI endpoint (the router's, for disaggregated plans)
PREFILL_PORT, DECODE_PORT = 8100, 8200


# ---- the plan ------------------------------------------------------------------------------
def _int(plan: dict, key: str, lo: int = 1) -> int:
    v = plan.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise PlannerError(f"plan {key!r} must be an integer >= {lo}, got {v!r}")
    return v


@dataclass(frozen=True)
class _Role:
    name: str  # serve | prefill | decode
    tp: int
    adp: int  # attention data-parallel groups inside the engine (1: none)
    ep: int
    workers: int  # engine instances of this role
    port: int
    eplb: int | None = None  # redundant expert slots of the role's expert-parallel load balancer (None: none)

    @property
    def attn_tp(self) -> int:
        return self.tp // self.adp


@dataclass
class _Plan:
    model: str
    hf_repo: str | None
    hardware: str
    gpus: int
    tp: int
    pp: int
    ep: int
    dp: int
    attention_dp: bool
    attention_dp_size: int
    weights: str
    kv: str
    max_num_seqs: int
    max_num_batched_tokens: int
    chunked_prefill: bool
    max_model_len: int
    speculative: dict | None
    disaggregated: dict | None
    kv_offload_gib: float
    gpu_memory_utilization: float
    is_moe: bool | None  # None: model unknown to the planner's specs
    native: str = "bf16"  # the published checkpoint's quantized format (Model.native_weights), else 16 bit
    eplb: int | None = None  # redundant expert slots of an expert-parallel load balancer (None: none)
    experts: int | None = None  # the model's routed experts (for TensorRT-LLM's num_slots)
    # the top-k/top-p sampler path the plan was priced with where the user named it (--sampler: vLLM's
    # VLLM_USE_FLASHINFER_SAMPLER, so the server's memory profile charges what the plan did); None: the release's own
    sampler: str | None = None
    notes: list[str] = field(default_factory=list)
    role_list: list[_Role] = field(default_factory=list)

    @property
    def repo(self) -> str:
        return self.hf_repo or self.model

    def _make_roles(self) -> list[_Role]:
        if self.disaggregated is None:
            return [_Role("serve", self.tp, self.attention_dp_size if self.attention_dp else 1, self.ep, self.dp, PORT, self.eplb)]
        d = self.disaggregated
        roles = []
        for name, tp, workers, port in (("prefill", d["prefill_tp"], d["prefill_workers"], PREFILL_PORT),
                                        ("decode", d["decode_tp"], d["decode_workers"], DECODE_PORT)):
            adp = 1
            given = d.get(f"{name}_attention_dp")
            if given is not None:
                if not isinstance(given, int) or given < 1 or tp % given:
                    raise PlannerError(f"disaggregated {name}_attention_dp={given!r} must divide {name}_tp={tp}")
                adp = given
            elif self.attention_dp:
                adp = self.attention_dp_size if (name == "decode" and tp % self.attention_dp_size == 0) else tp
            ep = self.ep
            if tp % ep:
                ep = math.gcd(self.ep, tp)
                self.notes.append(f"{name} role: ep={ep} (the plan's ep={self.ep} does not divide its tp={tp})")
            eplb = self.eplb if name == "decode" else _eplb(d, "prefill_eplb_redundant_experts")
            if eplb is not None and ep < 2:
                self.notes.append(f"{name} role: ep={ep}, so the plan's expert-parallel load balancer is left out there")
                eplb = None
            roles.append(_Role(name, tp, adp, ep, workers, port, eplb))
        return roles


def _eplb(plan: dict, key: str = "eplb_redundant_experts") -> int | None:
    """The plan's ``key`` (redundant expert slots; None: no balancer), checked: an integer >= 0."""
    r = plan.get(key)
    if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r < 0):
        raise PlannerError(f"plan {key!r} must be an integer >= 0, got {r!r}")
    return r


def _parse(plan: dict) -> _Plan:
    if not isinstance(plan, dict):
        raise PlannerError("the plan to emit must be a dict")
    for key in ("model", "hardware", "weights", "kv"):
        if not isinstance(plan.get(key), str) or not plan.get(key):
            raise PlannerError(f"plan {key!r} must be a non-empty string, got {plan.get(key)!r}")
    weights, kv = plan["weights"], plan["kv"]
    if weights not in WEIGHT_FORMATS:
        raise PlannerError(f"cannot emit weights {weights!r}: deployment configs cover {', '.join(WEIGHT_FORMATS)}")
    if kv not in KV_FORMATS:
        raise PlannerError(f"cannot emit KV cache {kv!r}: deployment configs cover {', '.join(KV_FORMATS)}")
    tp, pp, ep, dp = (_int(plan, k) for k in ("tp", "pp", "ep", "dp"))
    attention_dp = bool(plan.get("attention_dp"))
    adp = plan.get("attention_dp_size") or tp
    if attention_dp and (not isinstance(adp, int) or adp < 1 or tp % adp):
        raise PlannerError(f"attention_dp_size={adp!r} must divide tp={tp}")
    if tp % ep:
        raise PlannerError(f"ep={ep} must divide tp={tp} (experts are split over the engine's tensor-parallel ranks)")
    gmu = plan.get("gpu_memory_utilization")
    if not isinstance(gmu, (int, float)) or not 0 < gmu <= 1:
        raise PlannerError(f"plan 'gpu_memory_utilization' must be in (0, 1], got {gmu!r}")
    offload = plan.get("kv_offload_gib") or 0
    if not isinstance(offload, (int, float)) or offload < 0:
        raise PlannerError(f"plan 'kv_offload_gib' must be >= 0, got {offload!r}")
    spec = plan.get("speculative")
    if spec is not None:
        if not isinstance(spec, dict) or spec.get("method") not in SPEC_METHODS:
            raise PlannerError(f"speculative method must be one of {', '.join(SPEC_METHODS)}, got {spec!r}")
        _int(spec, "num_speculative_tokens")
    dis = plan.get("disaggregated")
    if dis is not None:
        if not isinstance(dis, dict):
            raise PlannerError("plan 'disaggregated' must be a dict or None")
        for k in ("prefill_workers", "decode_workers", "prefill_tp", "decode_tp"):
            _int(dis, k)
    is_moe = has_mtp = experts = None
    native = "bf16"
    try:
        from planner.specs.loader import get_model

        spec_model = get_model(plan["model"])
        is_moe, has_mtp = spec_model.moe is not None, spec_model.mtp_layers > 0
        experts = spec_model.moe.num_experts if spec_model.moe else None
        nw = spec_model.native_weights
        native = next((f for f in ((nw.experts, nw.dense) if nw else ()) if f not in ("bf16", "fp16")), "bf16")
    except PlannerError:
        pass  # a model the planner's specs do not know: trust the plan
    p = _Plan(
        model=plan["model"], hf_repo=plan.get("hf_repo") or None, hardware=plan["hardware"],
        gpus=_int(plan, "gpus"), tp=tp, pp=pp, ep=ep, dp=dp, attention_dp=attention_dp,
        attention_dp_size=adp if attention_dp else 1, weights=weights, kv=kv,
        max_num_seqs=_int(plan, "max_num_seqs"), max_num_batched_tokens=_int(plan, "max_num_batched_tokens"),
        chunked_prefill=bool(plan.get("chunked_prefill")), max_model_len=_int(plan, "max_model_len"),
        speculative=spec, disaggregated=dis, kv_offload_gib=float(offload), gpu_memory_utilization=float(gmu),
        is_moe=is_moe, native=native, eplb=_eplb(plan), experts=experts, sampler=_sampler(plan),
    )
    if p.eplb is not None and ep < 2:
        raise PlannerError("plan 'eplb_redundant_experts' balances experts over expert-parallel ranks: it needs ep >= 2")
    if ep > 1 and is_moe is False:
        raise PlannerError(f"ep={ep} needs a mixture-of-experts model; {p.model} is dense")
    if spec is not None and spec["method"] == "mtp" and has_mtp is False:
        raise PlannerError(f"{p.model} has no multi-token-prediction (MTP) head; use speculative method 'draft' or 'ngram'")
    p.role_list = p._make_roles()
    engines_gpus = sum(r.workers * r.tp * p.pp for r in p.role_list)
    if engines_gpus != p.gpus:
        p.notes.append(f"these engines hold {engines_gpus} GPUs, the plan says gpus={p.gpus}")
    if dis is not None and dis["decode_tp"] != tp:
        p.notes.append(f"decode role: tp={dis['decode_tp']} from the plan's disaggregated block (its top-level tp is {tp})")
    return p


def _check_hardware(engine: str, p: _Plan) -> None:
    """Weights the engine's profile has no kernel for (on this device: vLLM's INT8 W8A8 stops before
    Blackwell); TensorRT-LLM and the manifest's CUDA image (nvidia.com/gpu) run on NVIDIA GPUs only."""
    try:
        from planner.specs.loader import get_hardware

        hw = get_hardware(p.hardware)
    except PlannerError:
        hw = None  # hardware the planner's specs do not know: trust the plan
    why = _profile(engine).cannot_run(p.weights, hw)
    if why:
        raise PlannerError(f"{_ENGINE_NAMES[engine]} runs {why} ({p.hardware}); choose another weight format (fp8, int4, w4a8 or fp4)")
    if engine not in ("trtllm", "k8s") or hw is None:
        return
    if hw.vendor != "nvidia" or hw.kind != "gpu":
        what = "TensorRT-LLM runs" if engine == "trtllm" else "the Kubernetes manifest (vllm/vllm-openai, nvidia.com/gpu) runs"
        raise PlannerError(f"{what} on NVIDIA GPUs only, and {p.hardware} is a {hw.vendor} {hw.kind}")


def _headed(p: _Plan, engine: str, ck: _Checkpoint, body: _Script) -> str:
    """The header (written last, so it carries every note the body collected) and the body."""
    h = _Script()
    _header(h, p, engine, ck)
    gap = [""] if body.lines and body.lines[0] != "" else []
    return "\n".join(h.lines + gap + body.lines).rstrip("\n") + "\n"


def _header(s: _Script, p: _Plan, engine: str, ck: _Checkpoint) -> None:
    par = f"tp={p.tp} pp={p.pp} ep={p.ep} dp={p.dp}"
    if p.attention_dp:
        par += f" attention-dp={p.attention_dp_size}"
    s.comment(f"planner plan for {engine}: {p.model} on {p.gpus} x {p.hardware}; {par}; weights {p.weights}, KV cache {p.kv}")
    s.comment(f"{p.max_num_seqs} sequences and {p.max_num_batched_tokens} batched tokens per engine, "
              f"chunked prefill {'on' if p.chunked_prefill else 'off'}, max model length {p.max_model_len}")
    if p.hf_repo is None:
        s.comment(f"no Hugging Face repo is recorded for {p.model}: replace {p.model} below with its checkpoint path or repo")
    for n in dict.fromkeys(ck.notes + p.notes):
        s.comment(n)


def _replicas_comment(s: _Script, role: _Role, p: _Plan, what: str) -> None:
    g = role.tp * p.pp
    if role.name == "serve":
        s.comment(f"run {role.workers} replica(s) of this {what} ({g} GPU(s) each)"
                  + (", behind a load balancer" if role.workers > 1 else ""))
    else:
        s.comment(f"{role.name} role: run {role.workers} {role.name} worker(s) of this {what} ({g} GPU(s) each)")


def _step_tokens(p: _Plan, role: _Role, seqs: int, toks: int, engine: str, name: str) -> int:
    """The per-step token budget an engine accepts: without chunked prefill a whole prompt (up to
    max_model_len) must fit in one step, and vLLM wants at least one token per running sequence."""
    need = max(seqs, toks if p.chunked_prefill else max(toks, p.max_model_len))
    if need != toks:
        why = (f"without chunked prefill a whole prompt must fit in one step (a larger activation workspace; "
               f"enable chunked prefill to keep {toks})") if need == p.max_model_len and not p.chunked_prefill \
            else "every running sequence needs a token per step"
        where = "" if role.name == "serve" else f" ({role.name} role)"
        p.notes.append(f"{engine} {name}{where} raised from {toks} to {need}: {why}")
    return need


def _sampler(plan: dict) -> str | None:
    """The plan's optional ``sampler`` (sorting or flashinfer), checked."""
    from planner.specs.engine import SAMPLER_PATHS

    v = plan.get("sampler")
    if v is not None and v not in SAMPLER_PATHS:
        raise PlannerError(f"plan 'sampler' must be one of {', '.join(SAMPLER_PATHS)} or None, got {v!r}")
    return v


def vllm_sampler_env(p: _Plan) -> dict[str, str]:
    """The environment that makes vLLM's V1 sampler take the path the plan was priced with (vllm/envs.py
    VLLM_USE_FLASHINFER_SAMPLER); empty where the plan took the release's own."""
    return {} if p.sampler is None else {"VLLM_USE_FLASHINFER_SAMPLER": "1" if p.sampler == "flashinfer" else "0"}


# ---- vLLM ----------------------------------------------------------------------------------
def _vllm_args(p: _Plan, role: _Role, ck: _Checkpoint) -> list[str]:
    dp = role.adp
    args = ["--tensor-parallel-size", str(role.attn_tp), "--pipeline-parallel-size", str(p.pp)]
    if dp > 1:
        args += ["--data-parallel-size", str(dp)]
    if role.ep > 1:
        # vLLM's expert-parallel group is the whole TP x DP world of the engine
        if role.ep != role.tp:
            raise PlannerError(f"vLLM's --enable-expert-parallel spreads experts over all {role.tp} GPUs of the engine "
                               f"(TP x DP); it cannot run ep={role.ep}")
        args += ["--enable-expert-parallel"]
        if role.eplb is not None:
            args += [_flag("vllm", "eplb"), "--eplb-config", json.dumps({"num_redundant_experts": role.eplb})]
    if ck.dtype:
        args += ["--dtype", ck.dtype]
    if ck.quantization:
        args += ["--quantization", ck.quantization]
    kv = _kv_value("vllm", p.kv)
    if kv:
        args += ["--kv-cache-dtype", kv]
    seqs, toks = _ceil_div(p.max_num_seqs, dp), _ceil_div(p.max_num_batched_tokens, dp)  # per data-parallel rank
    toks = _step_tokens(p, role, seqs, toks, "vLLM", "max_num_batched_tokens")
    args += ["--max-model-len", str(p.max_model_len), _flag("vllm", "max_seqs"), str(seqs),
             _flag("vllm", "max_batched_tokens"), str(toks),
             _flag("vllm", "chunked_prefill" if p.chunked_prefill else "no_enable_chunked_prefill"),
             _flag("vllm", "utilization"), _num(p.gpu_memory_utilization)]
    spec = p.speculative
    if spec:
        k = spec["num_speculative_tokens"]
        if spec["method"] == "mtp":
            cfg = {"method": "mtp", "num_speculative_tokens": k}
        elif spec["method"] == "ngram":
            cfg = {"method": "ngram", "num_speculative_tokens": k, "prompt_lookup_max": 4}
        else:
            cfg = {"method": "draft_model", "model": _draft(p)[0], "num_speculative_tokens": k}
        args += ["--speculative-config", json.dumps(cfg, separators=(",", ":"))]
    if role.name != "serve":
        if p.kv_offload_gib > 0:
            raise PlannerError("vLLM's --kv-offloading-size and a disaggregated --kv-transfer-config both claim the engine's "
                               "one KV connector, so this plan cannot be emitted for vLLM with both")
        kv_role = "kv_producer" if role.name == "prefill" else "kv_consumer"
        args += ["--kv-transfer-config", json.dumps({"kv_connector": "NixlConnector", "kv_role": kv_role}, separators=(",", ":"))]
    if p.kv_offload_gib > 0:
        # vLLM takes the buffer summed over the engine's TP (and PP) ranks
        args += ["--kv-offloading-size", _num(round(p.kv_offload_gib * role.attn_tp * p.pp, 3)), "--kv-offloading-backend", "native"]
    args += ["--port", str(role.port)]
    return args


def _emit_vllm(p: _Plan) -> str:
    ck = _checkpoint("vllm", p)
    s = _Script()
    if p.speculative and p.speculative["method"] == "draft":
        for n in _draft(p)[1]:
            s.comment(n)
    if p.kv_offload_gib > 0:
        s.comment(f"KV offload: {_num(p.kv_offload_gib)} GiB of host memory per GPU (--kv-offloading-size is the sum over the engine's ranks)")
    env = [f"{k}={v}" for k, v in vllm_sampler_env(p).items()]
    if env:
        s.comment(f"{env[0]}: the top-k/top-p sampler path the plan was priced with (--sampler {p.sampler}), whose "
                  "warm-up the memory profile charges")
    for role in p.role_list:
        s.blank()
        _replicas_comment(s, role, p, "command")
        s.command(env + ["vllm", "serve", ck.path] + _vllm_args(p, role, ck), head=3 + len(env))
    if p.disaggregated:
        s.blank()
        s.comment(f"route requests through a prefill/decode proxy on port {PORT}, e.g. vLLM's "
                  "tests/v1/kv_connector/nixl_integration/toy_proxy_server.py --port "
                  f"{PORT} --prefiller-hosts ... --prefiller-ports {PREFILL_PORT} --decoder-hosts ... --decoder-ports {DECODE_PORT}")
    return _headed(p, "vllm", ck, s)


# ---- SGLang --------------------------------------------------------------------------------
def _sglang_args(p: _Plan, role: _Role, ck: _Checkpoint) -> list[str]:
    args = ["--model-path", ck.path, "--tp-size", str(role.tp), "--pp-size", str(p.pp)]
    if role.adp > 1:
        args += ["--dp-size", str(role.adp), "--enable-dp-attention"]
    if role.ep > 1:
        args += ["--ep-size", str(role.ep)]
        if role.eplb is not None:
            args += [_flag("sglang", "eplb"), "--ep-num-redundant-experts", str(role.eplb)]
    if ck.dtype:
        args += ["--dtype", ck.dtype]
    if ck.quantization:
        args += ["--quantization", ck.quantization]
    kv = _kv_value("sglang", p.kv)
    if kv:
        args += ["--kv-cache-dtype", kv]
    # SGLang takes these for the whole engine and splits them over attention-DP ranks itself
    args += ["--context-length", str(p.max_model_len), _flag("sglang", "max_seqs"), str(p.max_num_seqs)]
    if p.chunked_prefill:
        args += [_flag("sglang", "max_batched_tokens"), str(p.max_num_batched_tokens)]
    else:
        args += [_flag("sglang", "chunked_prefill"), "-1", "--max-prefill-tokens", str(p.max_num_batched_tokens)]
    args += [_flag("sglang", "utilization"), _num(p.gpu_memory_utilization)]
    if STREAM_INTERVAL["sglang"] > 1:
        args += [_flag("sglang", "stream_interval"), str(STREAM_INTERVAL["sglang"])]
    spec = p.speculative
    if spec:
        k = spec["num_speculative_tokens"]
        if spec["method"] != "mtp" and role.adp > 1:
            algo = "STANDALONE (draft model)" if spec["method"] == "draft" else "NGRAM"
            raise PlannerError(f"SGLang's {algo} speculative decoding does not support --enable-dp-attention")
        if spec["method"] == "ngram":
            args += ["--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens", str(k)]
        else:
            args += ["--speculative-algorithm", "EAGLE" if spec["method"] == "mtp" else "STANDALONE"]
            if spec["method"] == "draft":
                args += ["--speculative-draft-model-path", _draft(p)[0]]
            # a chain of k drafted tokens: k steps, top-1, k + 1 tokens verified
            args += ["--speculative-num-steps", str(k), "--speculative-eagle-topk", "1",
                     "--speculative-num-draft-tokens", str(k + 1)]
    if role.name != "serve":
        args += ["--disaggregation-mode", role.name, "--disaggregation-transfer-backend", "nixl"]
    if p.kv_offload_gib > 0:
        gb = max(1, int(p.kv_offload_gib * 2**30 // 10**9))  # --hicache-size is decimal GB per rank
        args += ["--enable-hierarchical-cache", "--hicache-size", str(gb)]
    args += ["--host", "0.0.0.0", "--port", str(role.port)]
    return args


def _emit_sglang(p: _Plan) -> str:
    ck = _checkpoint("sglang", p)
    s = _Script()
    if p.speculative and p.speculative["method"] == "mtp":
        s.comment("MTP: SGLang runs DeepSeek's multi-token-prediction head through its EAGLE path (NEXTN is an alias)")
    if p.speculative and p.speculative["method"] == "draft":
        for n in _draft(p)[1]:
            s.comment(n)
    if p.kv_offload_gib > 0:
        s.comment(f"KV offload: hierarchical cache with {_num(p.kv_offload_gib)} GiB of host memory per GPU (--hicache-size is GB per rank)")
    for role in p.role_list:
        s.blank()
        _replicas_comment(s, role, p, "command")
        s.command(["python", "-m", "sglang.launch_server"] + _sglang_args(p, role, ck), head=3)
    if p.disaggregated:
        s.blank()
        s.comment("route requests through the SGLang router; pass one --prefill / --decode URL per worker")
        s.command(["python", "-m", "sglang_router.launch_router", "--pd-disaggregation",
                   "--prefill", f"http://PREFILL_HOST:{PREFILL_PORT}", "--decode", f"http://DECODE_HOST:{DECODE_PORT}",
                   "--host", "0.0.0.0", "--port", str(PORT)], head=3)
    return _headed(p, "sglang", ck, s)


# ---- TensorRT-LLM --------------------------------------------------------------------------
def _trtllm_options(p: _Plan, role: _Role, ck: _Checkpoint) -> dict:
    opts: dict = {}
    if ck.dtype:
        opts["dtype"] = ck.dtype
    opts[_profile("trtllm").keys["chunked_prefill"]] = p.chunked_prefill
    kvc: dict = {"dtype": _kv_value("trtllm", p.kv) or "auto", "free_gpu_memory_fraction": p.gpu_memory_utilization}
    if p.kv_offload_gib > 0:
        kvc["host_cache_size"] = int(p.kv_offload_gib * 2**30)  # bytes, per rank
    opts["kv_cache_config"] = kvc
    if STREAM_INTERVAL["trtllm"] > 1:
        opts["stream_interval"] = STREAM_INTERVAL["trtllm"]
    if role.ep > 1 and role.eplb is not None:
        if p.experts is None:
            raise PlannerError(f"TensorRT-LLM's load balancer counts expert slots: {p.model}'s experts are not known to the planner")
        # the online balancer: slots = experts + redundant replicas, one layer re-placed per iteration
        opts["moe_config"] = {"load_balancer": {"num_slots": p.experts + role.eplb, "layer_updates_per_iter": 1}}
    if role.adp > 1:
        opts["enable_attention_dp"] = True
        if role.name != "decode":  # ranks that prefill: line prompts up, one per rank, as the plan priced them
            opts["attention_dp_config"] = {"enable_balance": True, "timeout_iters": ADP_BALANCE_STEPS}
            p.notes.append(f"attention DP: attention_dp_config.enable_balance lines new prompts up one per rank (at most "
                           f"{ADP_BALANCE_STEPS} iterations' wait), as the plan priced them; without it a prompt step "
                           "waits on one rank's prefill (planner simulate and estimate price that with --attention-dp-balance 0)")
    spec = p.speculative
    if spec:
        k = spec["num_speculative_tokens"]
        if spec["method"] == "mtp":
            opts["speculative_config"] = {"decoding_type": "MTP", "max_draft_len": k, "num_nextn_predict_layers": k}
        elif spec["method"] == "ngram":
            opts["speculative_config"] = {"decoding_type": "NGram", "max_draft_len": k, "max_matching_ngram_size": 4}
            opts["disable_overlap_scheduler"] = True
        else:
            opts["speculative_config"] = {"decoding_type": "DraftTarget", "max_draft_len": k, "speculative_model_dir": _draft(p)[0]}
            opts["disable_overlap_scheduler"] = True
    if role.name != "serve":
        if role.name == "prefill":
            opts["disable_overlap_scheduler"] = True  # not supported on disaggregated context servers
        opts["cache_transceiver_config"] = {"backend": "NIXL", "max_tokens_in_buffer": p.max_model_len}
    return opts


def _trtllm_args(p: _Plan, role: _Role, ck: _Checkpoint, options_file: str) -> list[str]:
    if role.adp > 1 and role.adp != role.tp:
        raise PlannerError(f"TensorRT-LLM's enable_attention_dp runs attention data parallel on every one of the {role.tp} "
                           f"tensor-parallel ranks; it cannot run {role.adp} attention groups of tp {role.attn_tp}")
    # with attention DP every rank schedules its own batch: the limits are per rank
    seqs, toks = _ceil_div(p.max_num_seqs, role.adp), _ceil_div(p.max_num_batched_tokens, role.adp)
    toks = _step_tokens(p, role, 1, toks, "TensorRT-LLM", "max_num_tokens")
    args = ["--backend", "pytorch", "--host", "0.0.0.0", "--port", str(role.port),
            "--tp_size", str(role.tp), "--pp_size", str(p.pp)]
    if role.ep > 1:
        args += ["--ep_size", str(role.ep)]
    args += [_flag("trtllm", "max_seqs"), str(seqs), _flag("trtllm", "max_batched_tokens"), str(toks),
             "--max_seq_len", str(p.max_model_len), _flag("trtllm", "utilization"), _num(p.gpu_memory_utilization),
             "--extra_llm_api_options", options_file]
    return args


def _emit_trtllm(p: _Plan) -> str:
    ck = _checkpoint("trtllm", p)
    _kv_value("trtllm", p.kv)  # raise early on a KV dtype it lacks
    s = _Script()
    if p.speculative and p.speculative["method"] == "draft":
        for n in _draft(p)[1]:
            s.comment(n)
    if p.kv_offload_gib > 0:
        s.comment(f"KV offload: kv_cache_config.host_cache_size = {_num(p.kv_offload_gib)} GiB of host memory per GPU, in bytes")
    for role in p.role_list:
        fname = "extra-llm-api-config.yml" if role.name == "serve" else f"{role.name}-config.yml"
        s.blank()
        s.heredoc(fname, yaml.safe_dump(_trtllm_options(p, role, ck), sort_keys=False))
        _replicas_comment(s, role, p, "command")
        s.command(["trtllm-serve", ck.path] + _trtllm_args(p, role, ck, fname), head=2)
    if p.disaggregated:
        d = p.disaggregated
        cfg = {"hostname": "0.0.0.0", "port": PORT, "backend": "pytorch",
               "context_servers": {"num_instances": d["prefill_workers"],
                                   "urls": [f"prefill-{i}:{PREFILL_PORT}" for i in range(d["prefill_workers"])]},
               "generation_servers": {"num_instances": d["decode_workers"],
                                      "urls": [f"decode-{i}:{DECODE_PORT}" for i in range(d["decode_workers"])]}}
        s.blank()
        s.comment("the disaggregated server: one url per worker (replace the host names)")
        s.heredoc("disagg_config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        s.command(["trtllm-serve", "disaggregated", "-c", "disagg_config.yaml"], head=2)
    return _headed(p, "trtllm", ck, s)


def emit(engine: str, plan: dict) -> str:
    """Launch commands (vllm, sglang, trtllm) or a Kubernetes manifest (k8s) for ``plan``."""
    if engine not in ENGINES:
        raise PlannerError(f"cannot emit {engine!r}: choose one of {', '.join(ENGINES)}")
    p = _parse(plan)
    _check_hardware(engine, p)
    if engine == "k8s":
        from planner.report.emit_k8s import _emit_k8s

        return _emit_k8s(p)
    return {"vllm": _emit_vllm, "sglang": _emit_sglang, "trtllm": _emit_trtllm}[engine](p)
