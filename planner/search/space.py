"""The plan space: every sensible parallel layout and precision of one replica,
enumerated as arrays and pruned early (divisibility, native support, weights that fit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np

from planner.costmodel.collectives import Fabric
from planner.costmodel.memory import memory
from planner.costmodel.plans import check_divisibility, make_plans
from planner.errors import PlannerError, unknown
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.model import Model
from planner.specs.quant import (KV_FORMATS, SEARCH_KV_FORMATS, SEARCH_WEIGHT_FORMATS, canonical, default_kv, get_format,
                                  resolve, serves_bf16_as_fp16)

WEIGHT_CANDIDATES, KV_CANDIDATES = SEARCH_WEIGHT_FORMATS, SEARCH_KV_FORMATS


@dataclass
class SpaceOptions:
    weights: tuple[str, ...] | None = None  # None: every format the device runs natively (or weight-only)
    kv: tuple[str, ...] | None = None
    max_pp: int = 8
    attention_dp: bool = True  # data-parallel attention for MLA models
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
    chunk_tokens: tuple[int, ...] = (0, 2048, 8192)  # 0: no chunked prefill (whole prompts)
    speculative: tuple[tuple[int, float], ...] = ()  # (k drafts, acceptance alpha); (0, 0) is always included
    offload: bool = True  # consider KV offload to host memory
    eviction: tuple[tuple[str, int], ...] = ()  # KV eviction candidates (method, kept tokens), e.g. ("snapkv", 2048)
    disaggregated: bool = True
    # RoPE-scaling methods used when the workload or --min-context is longer than the trained context (the factor
    # is the smallest power of two that reaches it); empty: yarn
    context_extension: tuple[str, ...] = ()
    prompt_compression: tuple[tuple[str, float], ...] = ()  # (method, ratio) candidates beside no compression
    sparse_attention: tuple[tuple[str, float], ...] = ()  # (method, kept fraction) candidates beside dense attention
    # context-parallel sizes; empty: 1, and every power of two the budget allows when a context of
    # LONG_CONTEXT_TOKENS or more is needed
    cp: tuple[int, ...] = ()
    draft_model: str | None = None  # speculation drafts with this model (its weights, KV, steps) instead of a head
    lora: object | None = None  # a costmodel.lora.LoraSpec: every plan serves these adapters (memory, SGMV, misses)
    intra_gpu_pd: str | None = None  # "F" or "auto": add one-GPU prefill/decode SM-split rows (search/intragpu.py)
    # expert-parallel load balancing (costmodel/eplb.py): each expert-parallel layout also runs balanced over this many
    # redundant slots, beside its experts in their fixed order (None: no balanced variants)
    eplb: int | None = None


LONG_CONTEXT_TOKENS = 131072  # from here on, context parallelism joins the search by default


def cp_candidates(opts: SpaceOptions, need_tokens: int, gpus: int) -> list[int]:
    if opts.cp:
        return sorted(set(int(c) for c in opts.cp))
    return _pow2_upto(gpus) if need_tokens >= LONG_CONTEXT_TOKENS else [1]


def extension_for(model: Model, need_tokens: int, opts: SpaceOptions) -> tuple[float, list[str]]:
    """(factor, methods) of the context extension a search needs: factor 1 and no method when the trained context
    holds ``need_tokens``; else the smallest power of two that reaches it, with each candidate method."""
    if need_tokens <= model.max_context:
        return 1.0, [""]
    factor = float(2.0 ** np.ceil(np.log2(need_tokens / model.max_context)))
    return factor, list(opts.context_extension or ("yarn",))


def _pow2_upto(n: int) -> list[int]:
    out, v = [], 1
    while v <= n:
        out.append(v)
        v *= 2
    return out


def device_cache(hw: Hardware, kv: str) -> str:
    """The cache format ``kv`` runs as on ``hw``: a device without bf16 (Volta, Turing) keeps its 16-bit cache in fp16."""
    return "fp16" if kv == "bf16" and serves_bf16_as_fp16(hw) else kv


def precisions(hw: Hardware, opts: SpaceOptions, released: str | None = None, engine: Engine | None = None,
               refused: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Weight formats that run natively on ``hw`` (weight-only formats run on its 16-bit units), and the format the
    model is released in (``released``: gpt-oss's MXFP4 on Hopper, dequantized in a mixed-input GEMM) wherever the
    device runs it at all: it is the model as published. A weight format ``engine`` has no kernel for on ``hw`` (its
    profile's ``unsupported`` list: TensorRT-LLM 1.x's INT8 W8A8, vLLM's INT8 W8A8 on Blackwell) and a KV format it
    cannot store (its ``kv_cache_dtypes``: SGLang's and TensorRT-LLM 1.x's FP8-only cache) are left out, each put in
    ``refused`` ("int8 weights" / "int8 KV cache" -> why, a sentence naming the engine); when that leaves none of the
    formats asked for, the engine's refusal (Engine.check_weights / check_kv) is the error."""
    ws = []
    searched = list(engine.search_weights) if engine is not None and engine.search_weights else list(WEIGHT_CANDIDATES)
    candidates = [canonical(w) for w in opts.weights] if opts.weights else searched  # as users write them
    if not opts.weights and released and released not in candidates:
        candidates.append(released)
    left_out = {}
    for w in candidates:
        fmt = get_format(w)
        try:
            r = resolve(fmt, hw)
        except PlannerError:
            continue
        if not (r.native or opts.weights or w == released):  # asked-for formats run however the device runs them
            continue
        if r.paper_kernel and not opts.weights:  # a paper's kernel no engine ships (QServe's W4A8 on A100): when asked
            continue
        what = engine.runs_no(w, hw) if engine is not None else None
        if what:
            left_out[w] = what
        else:
            ws.append(w)
    if refused is not None:
        refused.update({f"{w} weights": why for w, why in left_out.items()})
    if not ws and left_out:
        engine.check_weights(next(iter(left_out)), hw)
    if not ws:
        raise PlannerError(f"{hw.id} runs none of the requested weight precisions")
    asked = [canonical(k) for k in opts.kv] if opts.kv else None
    for k in asked or ():
        if k != "auto" and k not in KV_FORMATS:
            raise unknown("KV-cache precision", k, KV_FORMATS)
    # the engine's own caches where its profile lists them (TensorRT-LLM 1.x and SGLang: fp8; llama.cpp: q8_0, q4_0)
    own = dict(engine.kv_dtype_items) if engine is not None else {}
    kv_searched = ["bf16", *own] if own else KV_CANDIDATES
    kvs = asked or [device_cache(hw, k) for k in kv_searched]  # auto: enumerate_configs pairs it with each weight
    if engine is not None:  # a cache the engine cannot store (SGLang, TensorRT-LLM 1.x: FP8 only) is left out likewise
        no_kv = {k: why for k in kvs if (why := engine.cannot_store(k))}
        kvs = [k for k in kvs if k not in no_kv]
        if refused is not None:
            refused.update({f"{k} KV cache": f"{engine.display_name} stores no such cache: {why}" for k, why in no_kv.items()})
        if not kvs:
            engine.check_kv(next(iter(no_kv)))
    # fp16 and bf16 weights are the same plan twice; keep the one the device names first
    if "bf16" in ws and "fp16" in ws:
        ws.remove("fp16")
    return ws, kvs


@dataclass
class Configs:
    """Replica layouts x precisions that pass pruning (one row each)."""

    tp: np.ndarray
    pp: np.ndarray
    ep: np.ndarray
    adp: np.ndarray
    weights: list[str]
    kv: list[str]
    pruned: dict[str, int] = field(default_factory=dict)
    cp: np.ndarray | None = None  # context-parallel size per row (None: 1)
    refused: dict[str, str] = field(default_factory=dict)  # formats the engine cannot run here -> why (precisions)
    eplb: np.ndarray | None = None  # redundant expert slots of a balanced row, -1 unbalanced (None: all unbalanced)
    # the same precisions as integer codes, for per-row work without Python loops:
    # weights[i] == weight_names[weight_code[i]], kv[i] == kv_names[kv_code[i]] (names in order of first use)
    weight_names: list[str] = field(init=False)
    weight_code: np.ndarray = field(init=False)
    kv_names: list[str] = field(init=False)
    kv_code: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.weight_names, self.weight_code = _codes(self.weights)
        self.kv_names, self.kv_code = _codes(self.kv)

    @property
    def n(self) -> int:
        return len(self.tp)

    def take(self, idx) -> "Configs":
        """The configs at ``idx`` (a slice or indices), in that order; ``pruned`` stays with the whole set."""
        names = np.arange(self.n)[idx]
        return Configs(self.tp[idx], self.pp[idx], self.ep[idx], self.adp[idx], [self.weights[i] for i in names],
                       [self.kv[i] for i in names], {}, None if self.cp is None else self.cp[idx],
                       None if self.eplb is None else self.eplb[idx])

    def per_format(self, fn) -> np.ndarray:
        """``fn(weights, kv)`` once per distinct precision pair, spread over the rows (a lookup table, not a loop
        per row): e.g. ``cfg.per_format(accuracy)[idx]`` for the configs at ``idx``."""
        nk = len(self.kv_names)
        pair = self.weight_code * nk + self.kv_code
        used = np.unique(pair)
        table = np.full(len(self.weight_names) * nk, np.nan)
        for p in used.tolist():
            table[p] = fn(self.weight_names[p // nk], self.kv_names[p % nk])
        return table[pair]


def _codes(names: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct names in order of first use, and each entry's index into them."""
    uniq = list(dict.fromkeys(names))
    index = {s: i for i, s in enumerate(uniq)}
    return uniq, np.fromiter((index[s] for s in names), dtype=np.int64, count=len(names))


def enumerate_configs(model: Model, hw: Hardware, gpus: int, opts: SpaceOptions, engine: Engine, need_tokens: int = 0) -> Configs:
    """Layouts x precisions; ``need_tokens`` (the longest context a plan must hold) brings in context parallelism."""
    refused: dict[str, str] = {}
    ws, kvs = precisions(hw, opts, model.released_weights(), engine, refused)
    cps = cp_candidates(opts, need_tokens, gpus)
    domain = hw.node_size
    reach = min(gpus, Fabric.of(hw).max_group())  # one replica's devices must reach each other (Fabric.check_reaches)
    rows = []
    for tp in _pow2_upto(gpus):
        for pp in _pow2_upto(min(opts.max_pp, gpus // tp)):
            adps = _pow2_upto(gpus // (tp * pp)) if (model.attention.mla and opts.attention_dp) else [1]
            for adp in adps:
                if domain > 1 and tp > domain:
                    continue  # tensor parallel never spans nodes
                eps = [e for e in _pow2_upto(tp * adp)] if model.moe else [1]
                # an expert-parallel layout runs its experts in their fixed order (-1), and balanced with --eplb
                balance = [-1] + ([opts.eplb] if opts.eplb is not None else [])
                for ep in eps:
                    rows += [(tp, pp, ep, adp, cp, r) for cp in cps if tp * pp * adp * cp <= reach
                             for r in (balance if ep > 1 else [-1])]
    if not rows:
        raise PlannerError(f"no parallel layout fits in {gpus} GPUs")
    lay = np.array(rows, dtype=np.int64)
    # --kv auto: each weight format with the cache the engine picks for it (vLLM, SGLang and TensorRT-LLM's auto)
    fmts = list(dict.fromkeys((w, device_cache(hw, default_kv(w, engine, model)) if k == "auto" else k)
                              for w, k in product(ws, kvs)))
    n_l, n_f = len(lay), len(fmts)
    idx_l = np.repeat(np.arange(n_l), n_f)
    idx_f = np.tile(np.arange(n_f), n_l)
    total = len(idx_l)
    w_of = [w for w, _ in fmts]
    kv_of = [k for _, k in fmts]
    plans = make_plans(model, hw, tp=lay[idx_l, 0], pp=lay[idx_l, 1], ep=lay[idx_l, 2], adp=lay[idx_l, 3], cp=lay[idx_l, 4],
                       weights=[w_of[i] for i in idx_f.tolist()], kv=[kv_of[i] for i in idx_f.tolist()], check=False,
                       engine=engine, eplb_redundant=lay[idx_l, 5])
    ok_div = check_divisibility(model, plans)
    mem = memory(model, hw, plans, engine.for_hardware(hw))
    # the weights, activations and runtime must fit on the device with room for KV left, at the limits the engine picks
    # there (its batch limit sets the activation and sampler peak): host offload (opts.offload) moves KV, never weights,
    # so it cannot rescue a layout whose weights alone exceed device memory
    ok_mem = mem.kv_capacity_bytes > 0
    keep = ok_div & ok_mem
    pruned = {"layouts x precisions": total, "pruned: does not divide": int((~ok_div).sum()),
              "pruned: weights do not fit": int((ok_div & ~ok_mem).sum())}
    sel = np.nonzero(keep)[0]
    f_sel = idx_f[sel].tolist()
    return Configs(lay[idx_l[sel], 0], lay[idx_l[sel], 1], lay[idx_l[sel], 2], lay[idx_l[sel], 3],
                   [w_of[i] for i in f_sel], [kv_of[i] for i in f_sel], pruned, cp=lay[idx_l[sel], 4],
                   eplb=lay[idx_l[sel], 5] if opts.eplb is not None else None, refused=refused)

