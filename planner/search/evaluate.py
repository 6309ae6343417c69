"""Evaluate the plan space in a few vectorized passes: aggregated replicas over
concurrency x chunked-prefill budget x speculative decoding x KV offload, and
disaggregated prefill/decode pools with the KV-cache transfer between them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from planner.costmodel.collectives import Fabric, host_link_bytes_per_s
from planner.costmodel.memory import kv_bytes_per_seq, memory
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step
from planner.search.cap_axes import (accuracy_rows, build_axis, compress_seconds, max_context_rows, row_columns,
                                     row_plans)
from planner.search.pareto import pareto_mask
from planner.search.space import Configs, SpaceOptions
from planner.serving.batching import Techniques, inflight, model_prompt_tokens, prompt_chunk
from planner.serving.draft import DraftModel
from planner.serving.host import host_kv_bytes_per_device
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.loader import get_model
from planner.specs.model import Model


@dataclass
class Workload:
    isl: int = 1024
    osl: int = 256
    min_context: int = 0  # the longest single request a plan must hold (brings in context extension / parallelism)


CODE_COLUMNS = {"weights": "weights", "kv": "kv", "hardware": "hardware", "evict": "evict", "ctx_ext": "techs",
                "sparse": "techs", "compress": "techs", "draft": "techs"}  # code column -> the list its codes index


class LazyColumns(Mapping):
    """The columns of tables laid end to end, each gathered (and its codes remapped) only when it is read.

    A search keeps ~4 x 10^5 feasible rows of ~50 columns, of which the frontier and the recommendation read about
    a dozen whole and the rest at a few hundred rows: gathering every column up front copied ~150 MB twice (the
    feasible rows of each table, then one table of all). ``parts`` are (columns, row indices or None, code maps);
    a column set here replaces the gathered one."""

    def __init__(self, parts: list[tuple[Mapping, np.ndarray | None, dict]]):
        self.parts = parts
        self._keys = list(dict.fromkeys(k for cols, _, _ in parts for k in cols))
        self._done: dict[str, np.ndarray] = {}
        lens = [len(idx) if idx is not None else _mapping_len(cols) for cols, idx, _ in parts]
        self._starts = np.cumsum([0] + lens)

    def __getitem__(self, k: str) -> np.ndarray:
        if k not in self._done:
            if k not in self._keys:
                raise KeyError(k)
            pieces = []
            for cols, idx, maps in self.parts:
                if k in cols:
                    v = cols[k] if idx is None else cols[k][idx]
                    pieces.append(maps[k][v] if k in maps else v)
            self._done[k] = np.concatenate(pieces) if len(pieces) != 1 else np.asarray(pieces[0])
        return self._done[k]

    def __setitem__(self, k: str, v: np.ndarray) -> None:
        if k not in self._keys:
            self._keys.append(k)
        self._done[k] = v

    def __iter__(self):
        return iter(self._keys)

    def __contains__(self, k) -> bool:  # without gathering the column (Mapping's default reads it)
        return k in self._keys

    @property
    def rows(self) -> int:
        return int(self._starts[-1])

    def __len__(self) -> int:
        return len(self._keys)

    def gather(self, k: str, rows: np.ndarray) -> np.ndarray:
        """Column ``k`` at ``rows`` only (the column is not gathered whole)."""
        if k in self._done:
            return self._done[k][rows]
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self._starts, rows, side="right") - 1
        out = None
        for p in np.unique(which):
            cols, idx, maps = self.parts[p]
            sel = which == p
            local = rows[sel] - self._starts[p]
            v = cols[k][local if idx is None else idx[local]]
            v = maps[k][v] if k in maps else v
            if out is None:
                out = np.empty(len(rows), dtype=v.dtype)
            out[sel] = v
        return out if out is not None else np.empty(0)

    def at(self, i: int) -> dict:
        """Every column's value at row ``i``, without gathering the columns."""
        p = int(np.searchsorted(self._starts, i, side="right")) - 1
        cols, idx, maps = self.parts[p]
        j = i - int(self._starts[p]) if idx is None else int(idx[i - int(self._starts[p])])
        out = {}
        for k in self._keys:
            if k in self._done:
                out[k] = self._done[k][i]
            elif k in cols:
                v = cols[k][j]
                out[k] = maps[k][v] if k in maps else v
        return out


def _mapping_len(cols: Mapping) -> int:
    if isinstance(cols, LazyColumns):
        return cols.rows
    return len(next(iter(cols.values()))) if len(cols) else 0


@dataclass
class PlanTable:
    """One row per evaluated plan; string columns are codes into the lists."""

    cols: dict[str, np.ndarray]
    weights: list[str]
    kv: list[str]
    hardware: list[str]
    evaluated: int = 0  # plans scored (memory and constraints of the layout, vectorized)
    costed: int = 0  # of those, plans priced by the step-time model (the rest did not fit; aggregated rows whose chunk
    # budget changes nothing share one pricing, _same_chunk_rows)
    evict: list[str] = field(default_factory=lambda: [""])  # KV eviction method per code ("" = none)
    techs: list[str] = field(default_factory=lambda: [""])  # context/attention technique names (cap_axes.py codes)

    def __len__(self) -> int:
        return _mapping_len(self.cols)

    def take(self, idx) -> "PlanTable":
        c = self.cols
        cols = {k: c.gather(k, idx) for k in c} if isinstance(c, LazyColumns) else {k: v[idx] for k, v in c.items()}
        return PlanTable(cols, self.weights, self.kv, self.hardware, self.evaluated, self.costed, self.evict, self.techs)

    def rows_view(self, idx: np.ndarray) -> "PlanTable":
        """The rows ``idx`` as a table whose columns are gathered only when read (LazyColumns)."""
        return PlanTable(LazyColumns([(self.cols, np.asarray(idx), {})]), self.weights, self.kv, self.hardware,
                         self.evaluated, self.costed, self.evict, self.techs)

    def at(self, i: int) -> dict:
        """Every column's value at row ``i``."""
        c = self.cols
        return c.at(i) if isinstance(c, LazyColumns) else {k: v[i] for k, v in c.items()}

    @staticmethod
    def concat(tables: list["PlanTable"], lazy: bool = False) -> "PlanTable":
        """The tables' rows in order, their string codes remapped into shared lists; ``lazy``: columns gathered when
        read (LazyColumns), else all at once."""
        tables = [t for t in tables if len(t)]
        if not tables:
            return PlanTable({}, [], [], [])
        lists = {"weights": [], "kv": [], "hardware": [], "evict": [], "techs": []}
        parts = []
        for t in tables:
            maps = {}
            for name, lst in lists.items():
                src = getattr(t, name)
                for s in src:
                    if s not in lst:
                        lst.append(s)
                code = np.array([lst.index(s) for s in src])
                maps.update({k: code for k, lst_name in CODE_COLUMNS.items() if lst_name == name})
            # a lazy table's parts are taken over, their code maps composed with this one's (one that had columns
            # written into it is read through as a whole)
            flat = isinstance(t.cols, LazyColumns) and not t.cols._done
            sub = t.cols.parts if flat else [(t.cols, None, {})]
            for cols, idx, inner in sub:
                parts.append((cols, idx, {k: (m[inner[k]] if k in inner else m) for k, m in maps.items()}))
        cols = LazyColumns(parts)
        if not lazy:
            cols = {k: cols[k] for k in cols}
        return PlanTable(cols, lists["weights"], lists["kv"], lists["hardware"], sum(t.evaluated for t in tables),
                         sum(t.costed for t in tables), lists["evict"], lists["techs"])


# grid rows per block of aggregated configs: a block's columns (~0.5 MB each) stay in the processor's caches.
# Measured on DeepSeek-V3 on 64 H200 (7,024 configs, 506 k grid rows), CPU seconds of the aggregated evaluation: one
# block 0.40-0.45, 2,048 configs a block (147 k rows) 0.31-0.32, 512 0.40, 256 0.58 (Python's per-call cost takes over).
AGG_BLOCK_ROWS = 150_000


def aggregated_blocks(cfg: Configs, opts: SpaceOptions) -> list[Configs]:
    """``cfg`` in contiguous blocks of about AGG_BLOCK_ROWS grid rows each (evaluate_aggregated's rows come out in
    config order, so the blocks' tables in order are the whole table's rows in order)."""
    per_config = len(opts.concurrency) * len(opts.chunk_tokens) * (1 + len(opts.speculative)) * (2 + len(opts.eviction))
    size = max(1, AGG_BLOCK_ROWS // max(per_config, 1))
    if cfg.n <= size:
        return [cfg]
    n_blocks = -(-cfg.n // size)
    size = -(-cfg.n // n_blocks)  # equal blocks
    return [cfg.take(slice(lo, lo + size)) for lo in range(0, cfg.n, size)]


def _aggregated_grid(model: Model, hw: Hardware, cfg: Configs, wl: Workload, opts: SpaceOptions, engine: Engine):
    """Every (layout, concurrency, chunk budget, speculation, KV policy, context/attention technique) row of one
    device, and the rows whose KV fits (HBM, or host memory with offload) within the engine's limits."""
    base = make_plans(model, hw, tp=cfg.tp, pp=cfg.pp, ep=cfg.ep, adp=cfg.adp, cp=1 if cfg.cp is None else cfg.cp,
                      weights=cfg.weights, kv=cfg.kv, check=False, engine=engine,  # the engine's kernel efficiencies
                      eplb_redundant=cfg.eplb)
    mem = memory(model, hw, base, engine)
    host = host_kv_bytes_per_device(hw) if opts.offload else 0.0
    full, swa = mem.kv_full_per_token, mem.kv_swa_per_token
    ax = build_axis(model, base, mem, wl, opts, engine.kv_block_tokens, engine)  # context/attention techniques (cap_axes.py)
    draft = DraftModel(get_model(opts.draft_model), hw, base, weights=cfg.weights, kv=cfg.kv, engine=engine) \
        if opts.draft_model and opts.speculative else None

    conc = np.array(opts.concurrency, dtype=float)
    chunks = np.array(opts.chunk_tokens, dtype=float)
    spec = [(0, 0.0)] + [s for s in opts.speculative if s[0] != 0]  # k < 0: adaptive (k chosen per batch)
    # KV policy axis: 0 keep all in HBM, 1 offload to host memory, 2.. evict to a token budget
    policies = [("none", 0)] + ([("offload", 0)] if host > 0 else []) + [("evict", int(b)) for _, b in opts.eviction]
    methods = [""] * (len(policies) - len(opts.eviction)) + [m for m, _ in opts.eviction]
    offl = [1 if p[0] == "offload" else 0 for p in policies]
    budget_of = np.array([p[1] if p[0] == "evict" else np.inf for p in policies], float)
    # the grid's axes: config, concurrency, chunk budget, speculation, KV policy, context/attention variant. Each term
    # is computed on the axes it depends on and broadcast; only the kept rows are gathered (the same values, element
    # by element, as building all rows first: tests/test_search_blocks.py compares the two)
    dims = (cfg.n, len(conc), len(chunks), len(spec), len(policies), len(ax.variants))
    on = lambda v, axis: np.asarray(v).reshape([-1 if a == axis else 1 for a in range(6)])  # noqa: E731
    k_s, a_s = np.array([s[0] for s in spec], float), np.array([s[1] for s in spec], float)
    c, B, k, off, budget = on(conc, 1), on(chunks, 2), on(k_s, 3), on(np.array(offl, float), 4), on(budget_of, 4)
    adp, pp = on(cfg.adp.astype(float), 0), on(cfg.pp.astype(float), 0)
    isl_m = on(ax.isl_model, 5)  # prompt tokens the model sees (prompt compression)
    n_cv = (cfg.n, 1, 1, 1, 1, len(ax.variants))  # per (config, variant)
    # memory: sequences per device (attention-DP shards the batch), with or without host offload
    c_dev = c / adp
    kept = np.minimum(isl_m + wl.osl, budget)  # eviction keeps at most its budget of tokens per sequence
    per_seq_kept = ax.per_seq.reshape(n_cv)
    # the KV of one sequence under every (config, policy, variant) where the kept tokens matter: one row each, broadcast
    cpv = (cfg.n, 1, 1, 1, len(policies), len(ax.variants))
    if opts.eviction or draft is not None:
        rows_of, kept_rows = np.repeat(np.arange(cfg.n), len(policies) * len(ax.variants)), np.broadcast_to(kept, cpv).reshape(-1)
    if opts.eviction:  # only evicting rows have a finite budget
        per_seq_kept = np.where(np.isfinite(budget), kv_bytes_per_seq(model, base.take(rows_of), kept_rows, engine.kv_block_tokens,
                                                                      engine).reshape(cpv), per_seq_kept)
    lora = lora_of(model, hw, opts)
    hbm = ax.hbm.reshape(n_cv)
    if lora is not None:  # resident adapters come out of the KV cache
        hbm = hbm - on(lora.resident_bytes_per_device(base.tp, base.pp), 0)
    if draft is not None:  # speculating rows hold the draft's weights and its KV of each sequence
        uses = k != 0
        hbm = np.where(uses, np.maximum(hbm - on(draft.weight_bytes(), 0), 0.0), hbm)
        per_seq_kept = per_seq_kept + np.where(uses, kv_bytes_per_seq(draft.model, draft.plans.take(rows_of), kept_rows,
                                                                      engine.kv_block_tokens).reshape(cpv), 0.0)
    need = c_dev * per_seq_kept
    cap = hbm + off * host
    E = on(Techniques(spec_k=np.abs(k_s), spec_alpha=a_s).tokens_per_step(), 3)
    new = c / pp * E / wl.osl  # prompts started per step per micro-batch
    prefill_fits = (B == 0) | (new * isl_m <= B)
    useful = ((off == 0) | (need > hbm)) & (~np.isfinite(budget) | (budget < isl_m + wl.osl))
    keep = (need <= cap) & (c <= engine.max_seqs * adp) & prefill_fits & useful
    keep &= c >= adp  # every attention-DP rank holds at least one sequence
    # host offload moves KV, not the weights, activations and runtime: those must fit the device under the engine's
    # limits on it (its batch limit sets the activation and sampler peak), as estimate requires
    keep &= on(mem.kv_capacity_bytes > 0, 0)
    sel = np.flatnonzero(np.broadcast_to(keep, dims))  # flat indices into the grid, in (config, ..., variant) order
    evaluated = int(np.prod(dims))
    idx = np.unravel_index(sel, dims)
    at = lambda x: np.broadcast_to(x, dims)[idx]  # noqa: E731  (a term's value on each kept row)
    i_c, iv, pol = idx[0], idx[5], idx[4]
    c, B, k, alpha, off = conc[idx[1]], chunks[idx[2]], k_s[idx[3]], a_s[idx[3]], np.array(offl, float)[pol]
    budget, hbm, need = budget_of[pol], at(hbm), at(need)
    return SimpleNamespace(base=base, mem=mem, host=host, full=full, swa=swa, ax=ax, draft=draft, policies=policies,
                           methods=methods, evaluated=evaluated, sel=sel, i_c=i_c, c=c, B=B, k=k, alpha=alpha, off=off,
                           iv=iv, pol=pol, budget=budget, hbm=hbm, need=need, lora=lora, dims=dims, chunks=chunks)


def _same_chunk_rows(g, wl: Workload, ratio: np.ndarray):
    """(one row per group, each row's group) for the kept rows that differ only in a chunk budget that changes
    nothing: a budget at or above the prompt's tokens, or none, all put the whole prompt in one step (a 1,024-token
    prompt under budgets 0, 2,048 and 8,192). Such rows have the same steady state to the last bit, so it is computed
    once per group. None when every row's chunk is its own. The prompt and its chunk are worked out by the functions
    _steady uses (the search gives no prefix-cache hits)."""
    n_chunk = len(g.chunks)
    if n_chunk < 2 or not len(g.sel):
        return None
    n_tok = model_prompt_tokens(wl.isl, np.broadcast_to(ratio, g.B.shape))
    every = prompt_chunk(g.chunks[None, :], n_tok[:, None])  # each row's chunk under every budget
    own = prompt_chunk(g.B, n_tok)
    canon = np.argmax(every == own[:, None], axis=1)  # the first budget giving this row's chunk
    stride = int(np.prod(g.dims[3:]))
    j = (g.sel // stride) % n_chunk
    if np.all(canon == j):
        return None
    _, rep, group = np.unique(g.sel + (canon - j) * stride, return_index=True, return_inverse=True)
    return rep, group.reshape(-1)


def evaluate_aggregated(model: Model, hw: Hardware, cfg: Configs, wl: Workload, opts: SpaceOptions, engine: Engine,
                        accuracy_of, gpu_budget: int) -> PlanTable:
    if cfg.n == 0:
        return PlanTable({}, [], [], [hw.id])
    engine = engine.for_hardware(hw)  # the limits the engine picks on this device
    g = _aggregated_grid(model, hw, cfg, wl, opts, engine)
    base, host, full, swa, ax, draft, lora = g.base, g.host, g.full, g.swa, g.ax, g.draft, g.lora
    sel, i_c, c, B, k, alpha, off, iv = g.sel, g.i_c, g.c, g.B, g.k, g.alpha, g.off, g.iv
    pol, budget, hbm, need, methods = g.pol, g.budget, g.hbm, g.need, g.methods
    plans = row_plans(ax, base.take(i_c), iv, wl.osl)
    cm = CostModel(model, hw, engine=engine)
    cm.lora = lora
    # the one in-flight steady state (serving/batching.py) with this grid's techniques per row
    f_off = np.where(off > 0, np.clip(1 - hbm / np.maximum(need, 1.0), 0, 1), 0.0)
    cc = row_columns(ax, iv)
    same = _same_chunk_rows(g, wl, cc["compress_ratio"])
    r = slice(None) if same is None else same[0]  # the rows costed: one per group of equal steady states
    p_r = plans if same is None else plans.take(r)
    tech = Techniques(chunk_tokens=B[r], spec_k=np.maximum(k[r], 0), spec_alpha=alpha[r], spec_auto=k[r] < 0,
                      offload_fraction=f_off[r], host_bw_bytes_per_s=host_link_bytes_per_s(hw), kv_budget_tokens=budget[r],
                      compress_ratio=cc["compress_ratio"][r], compress_s=compress_seconds(ax, cm, p_r, iv[r], wl.isl),
                      draft=None if draft is None else DraftModel(draft.model, hw, p_r, weights=[cfg.weights[i] for i in i_c[r]],
                                                                  kv=[cfg.kv[i] for i in i_c[r]], engine=engine),
                      adapter_load_s=0.0 if lora is None else lora.ttft_s(p_r.tp, p_r.pp))
    tm = inflight(cm, p_r, c[r], wl.isl, wl.osl, tech, kv_bytes_per_token=(full[i_c] + swa[i_c])[r], breakdown=False)
    out = {f: np.asarray(getattr(tm, f), float) for f in ("ttft_s", "tpot_s", "e2e_s", "output_tokens_per_s", "spec_k")}
    out = {f: v if v.shape == np.shape(c[r]) else np.broadcast_to(v, np.shape(c[r])).copy() for f, v in out.items()}
    if same is not None:  # every row gets its group's steady state
        out = {f: v[same[1]] for f, v in out.items()}
    ttft, tpot = out["ttft_s"], out["tpot_s"]
    gpus_rep = plans.gpus_per_replica.astype(float)
    tok = out["output_tokens_per_s"]
    # longest single context: KV capacity (with offload) over KV per token, sliding windows aside
    max_ctx = max_context_rows(model, ax, plans, hbm + off * host, full[i_c] + swa[i_c])
    max_ctx = np.where(np.isfinite(budget), np.floor(model.max_context * ax.factor), max_ctx)  # an evicting cache stays within its budget
    max_ctx = np.floor(max_ctx * cc["compress_ratio"])  # prompt compression: the longest original prompt
    acc = _accuracy(accuracy_of, cfg, wl, g)
    dp = np.floor(gpu_budget / gpus_rep)
    price = hw.price.usd_per_hour if hw.price else np.nan
    usd = price * gpus_rep / (tok * 3600.0) * 1e6
    ws = list(dict.fromkeys(cfg.weights))
    kvs = list(dict.fromkeys(cfg.kv))
    z = np.zeros(len(sel))
    cols = {
        "hardware": np.zeros(len(sel), dtype=np.int64),
        "disagg": np.zeros(len(sel), dtype=bool),
        "tp": plans.tp, "pp": plans.pp, "ep": plans.ep, "adp": plans.adp, "dp": dp,
        "eplb": np.asarray(plans.eplb_redundant, float) + z, "prefill_eplb": z - 1.0,
        "weights": cfg.weight_code[i_c], "kv": cfg.kv_code[i_c],  # ws/kvs above == cfg.weight_names/kv_names
        "concurrency": c, "chunk_tokens": B, "spec_k": out["spec_k"] + z, "spec_alpha": alpha,
        "spec_auto": k < 0, "kv_offload": off > 0,
        "kv_budget": np.where(np.isfinite(budget), budget, 0.0), "evict": pol,
        "cp": np.asarray(plans.cp, float) + z, **cc,
        "draft": np.where((k != 0) & (draft is not None), len(ax.names), 0),
        "gpus_per_replica": gpus_rep, "gpus": dp * gpus_rep,
        "ttft_s": ttft, "tpot_s": tpot, "e2e_s": out["e2e_s"],
        "tok_s_per_gpu": tok / gpus_rep, "tok_s_per_user": 1.0 / tpot,
        "accuracy": acc, "max_context": max_ctx, "usd_per_mtok": usd,
        "x_prefill": z, "y_decode": z, "prefill_tp": z, "prefill_pp": z, "prefill_adp": z,
        "prefill_ep": z, "prefill_gpus": z, "kv_transfer_s": z, "prefill_wait_s": z, "intra_f": z,
    }
    return PlanTable(cols, ws, kvs, [hw.id], g.evaluated, costed=len(sel), evict=methods,
                     techs=ax.names + [opts.draft_model or "draft"])


def _accuracy(accuracy_of, cfg: Configs, wl: Workload, g) -> np.ndarray:
    """Accuracy per row: the formats, the KV eviction policy and the context/attention technique."""
    acc = accuracy_of(cfg, g.i_c)
    for j in np.unique(g.pol):
        if g.policies[j][0] == "evict":
            rows_j = g.pol == j
            acc[rows_j] = accuracy_of(cfg, g.i_c[rows_j], eviction=(g.methods[j], g.policies[j][1], wl.isl + wl.osl))
    f_cap = accuracy_rows(accuracy_of, cfg, g.i_c, g.ax, g.iv)
    return acc if f_cap is None else acc * f_cap


def evaluate_disaggregated(model: Model, hw: Hardware, cfg: Configs, wl: Workload, opts: SpaceOptions, engine: Engine,
                           accuracy_of, gpu_budget: int) -> PlanTable:
    """x prefill workers and y decode workers, each with its own parallelism, sharing one precision.

    Prefill workers batch prompts up to the engine's token budget; the KV cache of a prompt then
    crosses the link between pools (inside the scale-up domain when both pools fit in it, else the
    scale-out network). Pools are sized by rate matching: the pair (x, y) within the GPU budget that
    maximizes min(x R_prefill, y R_decode) per GPU.
    """
    if cfg.n == 0 or gpu_budget < 2 or max(wl.isl + wl.osl, wl.min_context) > model.max_context:
        return PlanTable({}, [], [], [hw.id])  # past the trained context: aggregated plans with an extension only
    if cfg.cp is not None and np.any(cfg.cp > 1):  # context parallelism is an aggregated-plan technique here
        cfg = cfg.take(np.nonzero(cfg.cp == 1)[0])
        if cfg.n == 0:
            return PlanTable({}, [], [], [hw.id])
    engine = engine.for_hardware(hw)
    base = make_plans(model, hw, tp=cfg.tp, pp=cfg.pp, ep=cfg.ep, adp=cfg.adp, weights=cfg.weights, kv=cfg.kv, check=False,
                      engine=engine, eplb_redundant=cfg.eplb)
    cm = CostModel(model, hw, engine=engine)
    mem = memory(model, hw, base, engine)
    lora = cm.lora = lora_of(model, hw, opts)
    if lora is not None:  # both pools run the adapters; the decode pool's resident set comes out of its KV cache
        mem.kv_capacity_bytes = mem.kv_capacity_bytes - lora.resident_bytes_per_device(base.tp, base.pp)
    gpus = (base.tp * base.pp * base.adp).astype(float)
    # prefill side: each scheduler (one per attention-DP rank) batches whole prompts within max_batched_tokens, so a
    # worker's step holds b prompts per rank (Step counts the prompts of the whole group)
    b = np.maximum(np.floor(engine.max_batched_tokens / wl.isl), 1.0) * base.adp
    pf = cm.step(base, Step(prefill_seqs=b, prefill_tokens=wl.isl), parts=False)
    t_pf = np.maximum(pf.time_s, base.pp * pf.stage_time_s)
    r_pf = b / t_pf  # prompts/s per prefill worker
    # KV transfer of one prompt's cache: whole model's KV for isl tokens
    kv_prompt = kv_bytes_per_seq(model, base, wl.isl) * base.tp * base.pp  # summed over the worker's devices
    fab = Fabric.of(hw)
    # decode side: concurrency grid, pure decode steps
    conc = np.array(opts.concurrency, float)
    per_seq = kv_bytes_per_seq(model, base, wl.isl + wl.osl, engine.kv_block_tokens, engine)
    fits = (conc[None, :] / base.adp[:, None] * per_seq[:, None] <= np.maximum(mem.kv_capacity_bytes, 0)[:, None]) & \
           (conc[None, :] <= engine.max_seqs * base.adp[:, None]) & (conc[None, :] >= base.adp[:, None])
    di, ci = np.nonzero(fits)
    dplans = base.take(di)
    c = conc[ci]
    micro = np.maximum(c / dplans.pp, 1.0)
    dec = cm.step(dplans, Step(decode_seqs=micro, decode_ctx=wl.isl + wl.osl / 2.0), parts=False)
    tpot = np.maximum(dec.time_s, dplans.pp * dec.stage_time_s)
    r_dec = c / (tpot * wl.osl)  # requests/s per decode worker
    # pair each decode row with every prefill config of the same precision
    # one code per precision pair (not hash(): str hashes change from process to process, and so did the rows' order)
    fmt = cfg.weight_code * len(cfg.kv_names) + cfg.kv_code
    rows = []
    evaluated = costed = len(di)
    front = engine.request_overhead_s  # the front end's per-request time, as an aggregated plan counts it
    for f in np.unique(fmt):
        p_idx = np.nonzero(fmt == f)[0]
        # only prefill workers on the (prompts/s per GPU, prefill latency) frontier can be best
        p_idx = p_idx[pareto_mask(np.column_stack([r_pf[p_idx] / gpus[p_idx], -t_pf[p_idx]]))]
        d_rows = np.nonzero(fmt[di] == f)[0]
        if not len(p_idx) or not len(d_rows):
            continue
        P, D = np.meshgrid(p_idx, d_rows, indexing="ij")
        P, D = P.ravel(), D.ravel()
        evaluated += len(P)
        costed += len(P)
        best_tok, best_x, best_y = rate_match(r_pf[P], r_dec[D], gpus[P], gpus[di[D]], gpu_budget, wl.osl)
        good = best_tok > 0
        P, D, best_tok, best_x, best_y = P[good], D[good], best_tok[good], best_x[good], best_y[good]
        total = best_x * gpus[P] + best_y * gpus[di[D]]
        # the prompts' KV crosses from the prefill to the decode workers: a deployment larger than any link reaches
        # (more devices than one node holds, without a scale-out network) has no path for it
        total = np.asarray(total)
        reach = total <= fab.max_group()
        if not reach.all():
            P, D, best_tok, best_x, best_y, total = (a[reach] for a in (P, D, best_tok, best_x, best_y, total))
            if not len(P):
                continue
        bw, lat, frac, _ = fab.tier_for(total)
        t_kv = lat + kv_prompt[P] / np.maximum(bw * frac * np.minimum(gpus[P], gpus[di[D]]), 1.0)
        ttft = t_pf[P] + t_kv + front + (0.0 if lora is None else lora.ttft_s(base.tp[P], base.pp[P]))
        # the clients the decode slots hold wait for the prefill pool where it is the slower side (queued_ttft)
        t_wait = np.maximum(queued_ttft(best_y * c[D], best_tok * total / wl.osl, wl.osl, tpot[D]) - ttft, 0.0)
        rows.append((P, D, best_tok, best_x, best_y, total, ttft + t_wait, t_kv, t_wait))
    if not rows:
        return PlanTable({}, [], [], [hw.id], evaluated, costed)
    cols = _disagg_columns(model, hw, cfg, wl, base, mem, gpus, di, c, tpot, rows, accuracy_of)
    return PlanTable(cols, list(dict.fromkeys(cfg.weights)), list(dict.fromkeys(cfg.kv)), [hw.id], evaluated, costed)


def queued_ttft(clients, requests_per_s, osl: float, tpot):
    """Mean time to first token of a disaggregated row's ``clients`` (its decode slots: y workers x c) in a closed
    loop at the ``requests_per_s`` the pools serve: by Little's law each client's cycle is clients / rate, of which
    (osl - 1) x tpot is its decode, so the rest is its wait for, and time in, the prefill pool and the KV transfer.
    Where the prefill pool sets the rate (rate matching left it the slower side), that wait holds the clients the
    decode slots cannot: without it the row would show an idle prefill pool's TTFT at that pool's full rate. Where
    the decode pool sets the rate the cycle is its own decode and this is below the unqueued TTFT (the caller takes
    the larger)."""
    rate = np.maximum(np.asarray(requests_per_s, float), 1e-30)
    return np.asarray(clients, float) / rate - (osl - 1.0) * np.asarray(tpot, float)


RATE_MATCH_SPAN = 2  # decode-worker counts tried on each side of the continuous rate-matching optimum
RATE_MATCH_BLOCK = 2048  # rows per block of rate_match's arithmetic (fastest of 512..16384 measured here)


def _disagg_columns(model: Model, hw: Hardware, cfg: Configs, wl: Workload, base, mem, gpus, di, c, tpot, rows,
                    accuracy_of) -> dict:
    """The plan-table columns of the rate-matched (prefill pool, decode pool) pairs."""
    P, D, tok_gpu, bx, by, total, ttft, t_kv, t_wait = (np.concatenate(z) for z in zip(*rows))
    dd = di[D]
    acc = accuracy_of(cfg, dd)
    per_tok = mem.kv_full_per_token[dd] + mem.kv_swa_per_token[dd]
    max_ctx = np.minimum(np.floor(np.maximum(mem.kv_capacity_bytes[dd], 0) / per_tok), model.max_context)
    price = hw.price.usd_per_hour if hw.price else np.nan
    tpot_r = tpot[D]
    # the columns that are the same on every row share one array each (plan-table columns are never written in place)
    z, one, zi, zb = np.zeros(len(P)), np.ones(len(P)), np.zeros(len(P), np.int64), np.zeros(len(P), bool)
    eplb = np.broadcast_to(np.asarray(base.eplb_redundant, float), base.tp.shape)  # each pool's balancer slots (-1: none)
    cols = {
        "hardware": zi, "disagg": np.ones(len(P), dtype=bool),
        "tp": base.tp[dd], "pp": base.pp[dd], "ep": base.ep[dd], "adp": base.adp[dd], "dp": by,
        "eplb": eplb[dd], "prefill_eplb": eplb[P],
        "weights": cfg.weight_code[dd], "kv": cfg.kv_code[dd],
        "concurrency": c[D], "chunk_tokens": z, "spec_k": z, "spec_alpha": z,
        "kv_offload": zb, "kv_budget": z, "evict": zi,
        "spec_auto": zb, "cp": one, "ctx_ext": zi,
        "ext_factor": one, "sparse": zi, "sparse_kept": one,
        "compress": zi, "compress_ratio": one, "draft": zi,
        "gpus_per_replica": gpus[dd], "gpus": total,
        "ttft_s": ttft, "tpot_s": tpot_r, "e2e_s": ttft + (wl.osl - 1) * tpot_r,
        "tok_s_per_gpu": tok_gpu, "tok_s_per_user": 1.0 / tpot_r, "accuracy": acc, "max_context": max_ctx,
        "usd_per_mtok": price / (tok_gpu * 3600.0) * 1e6,
        "x_prefill": bx, "y_decode": by, "prefill_tp": base.tp[P].astype(float), "prefill_pp": base.pp[P].astype(float), "prefill_adp": base.adp[P].astype(float),
        "prefill_ep": base.ep[P].astype(float), "prefill_gpus": gpus[P], "kv_transfer_s": t_kv, "prefill_wait_s": t_wait, "intra_f": z,
    }
    return cols


def rate_match(r_pf, r_dec, g_pf, g_dec, gpu_budget: int, osl: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(output tokens/s per GPU, prefill workers x, decode workers y) of the best pools within the GPU budget, for
    arrays of (prefill worker, decode worker) pairs: x workers serve x r_pf prompts/s, y = floor((budget - x g_pf) /
    g_dec) decode workers y r_dec; the pools serve min of the two. Without the floor the optimum is where the rates
    match, x* = budget r_dec / (r_pf g_dec + r_dec g_pf); whole workers (and GPUs left idle) move it, so a few
    candidates per decode-worker count near x* are tried at once instead of every count up to the budget
    (tests/test_rate_match.py checks the result against every count)."""
    r_pf, r_dec, g_pf, g_dec = (np.asarray(v, float).reshape(-1) for v in (r_pf, r_dec, g_pf, g_dec))
    n = len(r_pf)
    tok_out, x_out, y_out = np.empty(n), np.empty(n), np.empty(n)
    # in blocks of rows, so the (rows x candidates) temporaries stay in cache
    for lo in range(0, n, RATE_MATCH_BLOCK):
        part = slice(lo, min(lo + RATE_MATCH_BLOCK, n))
        args = (r_pf[part, None], r_dec[part, None], g_pf[part, None], g_dec[part, None], gpu_budget, osl)
        tok, x, y, unsure = _rate_match_block(*args, every=False)
        if unsure.any():  # an exact tie between different pools, or NaN: the full candidate list decides, in its order
            tok[unsure], x[unsure], y[unsure], _ = _rate_match_block(*(v[unsure] for v in args[:4]), *args[4:], every=True)
        tok_out[part], x_out[part], y_out[part] = tok, x, y
    return tok_out, x_out, y_out


def _rate_match_block(a, d, g, h, gpu_budget: int, osl: float, every: bool):
    """rate_match on (rows, 1) columns of r_pf, r_dec, g_pf, g_dec: (tok, x, y, rows whose pick is unsure).

    For a whole number y of decode workers, the prefill counts that leave exactly y are an interval [x_lo, x_hi];
    inside it tokens/s per GPU rises while prefill is short and falls once it is not, so the best x is an end of the
    interval or the count that matches y's rate. The candidates: x = 1, then for each y around the continuous optimum
    x_lo, x_hi, floor(match) and ceil(match) clipped into the interval (``every``; the first best in this order
    wins). Without ``every``, x_lo and x_hi are left out: each is one of the clipped matches or does worse than
    them, except x_lo of an empty interval (a count of the next y down), which takes the place of the ceil(match)
    column there. That finds the same best value; a row is unsure when two different pools share it exactly
    (tokens/s per GPU is unchanged when both pools double) or it is NaN, where the order of the full list decides."""
    span = np.arange(-RATE_MATCH_SPAN + 1, RATE_MATCH_SPAN + 1, dtype=float)[None, :]
    s = span.shape[1]
    x_star = gpu_budget * d / np.maximum(a * h + d * g, 1e-30)
    y_near = np.maximum(np.floor((gpu_budget - x_star * g) / h) + span, 1.0)
    x_hi = np.floor((gpu_budget - y_near * h) / g)
    x_lo = np.floor((gpu_budget - (y_near + 1) * h) / g) + 1
    match = y_near * d / a
    if every:
        x = np.concatenate([np.ones_like(x_star), x_lo, x_hi, np.clip(np.floor(match), x_lo, x_hi),
                            np.clip(np.ceil(match), x_lo, x_hi)], axis=1)
    else:
        x = np.empty((len(a), 1 + 2 * s))
        x[:, 0] = 1.0
        np.clip(np.floor(match), x_lo, x_hi, out=x[:, 1:1 + s])
        up = x[:, 1 + s:]
        np.clip(np.ceil(match), x_lo, x_hi, out=up)
        np.copyto(up, x_lo, where=x_lo > x_hi)  # an empty interval: its clipped matches are x_hi; x_lo is new
    np.clip(x, 1, max(gpu_budget - 1, 1), out=x)
    xg = x * g
    y = np.subtract(gpu_budget, xg)
    y /= h
    np.floor(y, out=y)
    ok = (y >= 1) & (xg < gpu_budget)
    with np.errstate(invalid="ignore", divide="ignore"):
        tok = np.minimum(x * a, y * d)
        tok *= osl
        xg += y * h  # now the GPUs of both pools
        tok /= xg
    tok[~ok] = 0.0
    j = np.argmax(tok, axis=1)
    r = np.arange(len(a))
    best, bx = tok[r, j], x[r, j]
    if every:
        return best, bx, y[r, j], np.zeros(len(a), bool)
    # x = 1 comes first in both lists, so a best there is the same pick
    unsure = np.isnan(best) | ((j > 0) & ((tok == best[:, None]) & (x != bx[:, None])).any(axis=1))
    return best, bx, y[r, j], unsure


def lora_of(model: Model, hw: Hardware, opts: SpaceOptions):
    """The adapters every plan of this search serves (costmodel/lora.py), or None."""
    if opts.lora is None:
        return None
    from planner.costmodel.lora import LoraCost

    return LoraCost.of(opts.lora, model, host_link_bytes_per_s(hw))
