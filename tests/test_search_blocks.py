"""The search's speed paths change nothing it answers: aggregated configs evaluated in blocks give the plan table of one
block, constraints applied table by table give the rows of filtering the whole table, and a step costed without its
bound parts has the same times. (Timings live in benchmarks/bench_search.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step
from planner.search import evaluate
from planner.search.evaluate import Workload, aggregated_blocks
from planner.search.run import Constraints, search
from planner.search.space import SpaceOptions, enumerate_configs
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model

CASES = [  # (model, hardware, gpus, workload, constraints, options)
    ("mixtral-8x7b", ["h100-sxm", "a100-sxm-80gb"], 16, Workload(2000, 500), dict(ttft_s=1.0, tpot_s=0.05), {}),
    ("llama-3.1-8b", ["h100-sxm"], 8, Workload(1024, 256), {}, dict(speculative=((4, 0.7),), eviction=(("snapkv", 2048),),
                                                                       intra_gpu_pd="auto")),
    ("llama-3.1-70b", ["h100-sxm"], 8, Workload(1024, 256), dict(ttft_s=0.001), {}),  # nothing feasible
]


def _named(t, k):
    """A column with string codes turned into their names (codes are per table; names are what a plan is)."""
    lists = {"weights": t.weights, "kv": t.kv, "hardware": t.hardware, "evict": t.evict}
    v = t.cols[k]
    return np.array(lists[k], dtype=object)[v.astype(int)] if k in lists else v


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_blocks_give_the_table_of_one_block(case, monkeypatch):
    model, hw, gpus, wl, cons, opts = case
    runs = []
    for rows in (10**9, 1_000):  # one block; blocks of a few configs each
        monkeypatch.setattr(evaluate, "AGG_BLOCK_ROWS", rows)
        runs.append(search(model, hw, gpus, wl, Constraints(gpus, **cons), opts=SpaceOptions(**opts)))
    one, many = runs
    assert (one.recommended is None) == (many.recommended is None)
    assert one.frontier == many.frontier and one.recommended == many.recommended and one.infeasible == many.infeasible
    assert one.nearest == many.nearest and one.plans_evaluated == many.plans_evaluated
    assert len(one.table) == len(many.table)
    if len(one.table):
        assert set(one.table.cols) == set(many.table.cols)
        for k in one.table.cols:
            a, b = _named(one.table, k), _named(many.table, k)
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), k


DEDUP_CASES = CASES[:2] + [
    ("llama-3.1-8b", ["h100-sxm"], 4, Workload(6000, 300), {}, dict(prompt_compression=(("llmlingua-2", 4.0),),
                                                                        chunk_tokens=(0, 512, 1500, 2048, 8192))),
]


@pytest.mark.parametrize("case", DEDUP_CASES, ids=lambda c: c[0] + "-" + str(c[3].isl))
def test_rows_whose_chunk_budget_changes_nothing_are_costed_once(case, monkeypatch):
    model, hw, gpus, wl, cons, opts = case
    calls = []
    real = evaluate._same_chunk_rows
    monkeypatch.setattr(evaluate, "_same_chunk_rows", lambda *a: calls.append(real(*a)) or calls[-1])
    once = search(model, hw, gpus, wl, Constraints(gpus, **cons), opts=SpaceOptions(**opts))
    assert any(x is not None and len(x[0]) < len(x[1]) for x in calls)  # some rows did share a steady state
    monkeypatch.setattr(evaluate, "_same_chunk_rows", lambda *a: None)
    every = search(model, hw, gpus, wl, Constraints(gpus, **cons), opts=SpaceOptions(**opts))
    assert once.frontier == every.frontier and once.recommended == every.recommended
    assert len(once.table) == len(every.table)
    for k in once.table.cols:
        a, b = _named(once.table, k), _named(every.table, k)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), k


def test_blocks_cover_every_config_once_in_order():
    # vLLM, whose profile runs every searched format on Hopper (INT8 W8A8, int8 and int4 caches): the most configs
    m, hw, eng = get_model("deepseek-v3"), get_hardware("h200-sxm"), get_engine("vllm")
    opts = SpaceOptions()
    cfg = enumerate_configs(m, hw, 64, opts, eng, need_tokens=2500)
    blocks = aggregated_blocks(cfg, opts)
    assert len(blocks) > 1  # thousands of configs x 72 grid rows each: several blocks
    per_config = len(opts.concurrency) * len(opts.chunk_tokens) * 2
    assert max(b.n for b in blocks) * per_config <= evaluate.AGG_BLOCK_ROWS + per_config
    assert np.array_equal(np.concatenate([b.tp for b in blocks]), cfg.tp)
    assert sum((b.weights for b in blocks), []) == cfg.weights and sum((b.kv for b in blocks), []) == cfg.kv
    for b in blocks:  # each block's codes index its own names
        assert [b.weight_names[i] for i in b.weight_code] == b.weights


def test_a_step_without_parts_has_the_same_times():
    m, hw = get_model("deepseek-v3"), get_hardware("h200-sxm")
    plans = make_plans(m, hw, tp=np.array([8, 1, 4]), pp=np.array([1, 1, 2]), ep=np.array([8, 8, 4]),
                       adp=np.array([1, 8, 1]), weights=["fp8"] * 3, kv=["fp8"] * 3, check=False)
    cm = CostModel(m, hw, engine=get_engine("trtllm"))
    step = Step(prefill_seqs=2.0, prefill_tokens=1000.0, decode_seqs=np.array([16.0, 64.0, 8.0]), decode_ctx=1500.0)
    full, lean = cm.step(plans, step), cm.step(plans, step, parts=False)
    assert np.array_equal(full.time_s, lean.time_s) and np.array_equal(full.stage_time_s, lean.stage_time_s)
    assert [o.name for o in full.ops] == [o.name for o in lean.ops]
    for a, b in zip(full.ops, lean.ops):
        assert np.array_equal(a.time_s, b.time_s)
    assert full.ops[0].bound.shape == (3,)
    with pytest.raises(ValueError, match="parts=False"):
        lean.ops[0].bound
    assert cm.step(plans, step).ops[0].bound_parts is not None  # the next step keeps its parts again


def _grid_rows_one_by_one(model, wl, opts, engine, g):
    """The kept rows of the aggregated grid as evaluate.py built them before it broadcast its terms: every row of the
    meshgrid materialized, each term computed on every row (the reference the broadcast version is checked against)."""
    from planner.costmodel.memory import kv_bytes_per_seq
    from planner.serving.batching import Techniques

    conc, chunks = np.array(opts.concurrency, float), np.array(opts.chunk_tokens, float)
    spec = [(0, 0.0)] + [s for s in opts.speculative if s[0] != 0]
    offl = np.array([1.0 if p[0] == "offload" else 0.0 for p in g.policies])
    budget_of = np.array([p[1] if p[0] == "evict" else np.inf for p in g.policies], float)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in g.dims), indexing="ij"), -1).reshape(-1, 6)
    i_c, c, B, iv, pol = grid[:, 0], conc[grid[:, 1]], chunks[grid[:, 2]], grid[:, 5], grid[:, 4]
    k, alpha = np.array([s[0] for s in spec], float)[grid[:, 3]], np.array([s[1] for s in spec], float)[grid[:, 3]]
    off, budget = offl[pol], budget_of[pol]
    adp, pp = g.base.adp[i_c].astype(float), g.base.pp[i_c].astype(float)
    isl_m = g.ax.isl_model[iv]
    kept = np.minimum(isl_m + wl.osl, budget)
    per_seq = g.ax.per_seq[i_c, iv]
    if opts.eviction:
        per_seq = np.where(np.isfinite(budget), kv_bytes_per_seq(model, g.base.take(i_c), kept, engine.kv_block_tokens, engine),
                           per_seq)
    hbm = g.ax.hbm[i_c, iv]
    if g.lora is not None:
        hbm = hbm - g.lora.resident_bytes_per_device(g.base.tp, g.base.pp)[i_c]
    if g.draft is not None:
        hbm = np.where(k != 0, np.maximum(hbm - g.draft.weight_bytes()[i_c], 0.0), hbm)
        per_seq = per_seq + np.where(k != 0, kv_bytes_per_seq(g.draft.model, g.draft.plans.take(i_c), kept, engine.kv_block_tokens), 0.0)
    need = c / adp * per_seq
    E = Techniques(spec_k=np.abs(k), spec_alpha=alpha).tokens_per_step()
    keep = ((need <= hbm + off * g.host) & (c <= engine.max_seqs * adp) & ((B == 0) | (c / pp * E / wl.osl * isl_m <= B))
            & ((off == 0) | (need > hbm)) & (~np.isfinite(budget) | (budget < isl_m + wl.osl)) & (c >= adp))
    sel = np.nonzero(keep)[0]
    return dict(sel=sel, i_c=i_c[sel], c=c[sel], B=B[sel], k=k[sel], alpha=alpha[sel], off=off[sel], iv=iv[sel], pol=pol[sel],
                budget=budget[sel], hbm=hbm[sel], need=need[sel]), len(grid)


GRID_CASES = [  # (model, hardware, gpus, workload, options)
    ("deepseek-v3", "h200-sxm", 16, Workload(2000, 500), {}),
    ("llama-3.1-8b", "h100-sxm", 4, Workload(1024, 256), dict(speculative=((4, 0.7), (-1, 0.6)), eviction=(("snapkv", 512),))),
    ("llama-3.1-70b", "h100-sxm", 8, Workload(3000, 300), dict(draft_model="llama-3.1-8b", speculative=((4, 0.7),))),
    ("qwen3-32b", "l40s", 4, Workload(8000, 300), dict(prompt_compression=(("llmlingua-2", 4.0),), chunk_tokens=(0, 512, 2048))),
]


@pytest.mark.parametrize("case", GRID_CASES, ids=lambda c: c[0])
def test_the_broadcast_grid_keeps_the_rows_of_the_full_grid(case):
    from planner.costmodel.lora import parse_lora

    model_id, hw_id, gpus, wl, opts = case
    m, hw, eng = get_model(model_id), get_hardware(hw_id), get_engine("trtllm")
    for extra in ({}, dict(lora=parse_lora("50:16", None, None))):
        o = SpaceOptions(**opts, **extra)
        cfg = enumerate_configs(m, hw, gpus, o, eng, need_tokens=wl.isl + wl.osl)
        e = eng.for_hardware(hw)
        g = evaluate._aggregated_grid(m, hw, cfg, wl, o, e)
        ref, n_rows = _grid_rows_one_by_one(m, wl, o, e, g)
        assert g.evaluated == n_rows and len(ref["sel"]) > 0
        for name, want in ref.items():
            got = getattr(g, name)
            assert got.shape == want.shape and np.array_equal(got, want), name


def _table(n, weights, hardware, seed):
    rng = np.random.default_rng(seed)
    cols = {"tok_s_per_gpu": rng.random(n), "weights": rng.integers(0, len(weights), n),
            "hardware": rng.integers(0, len(hardware), n), "tp": rng.integers(1, 9, n).astype(float)}
    return evaluate.PlanTable(cols, weights, ["bf16"], hardware, evaluated=n, costed=n)


def test_lazy_columns_hold_the_rows_of_the_eager_concatenation():
    """The search keeps its feasible rows as views and gathers a column only when read (evaluate.LazyColumns): every
    column, every row, every subset and every single row read lazily equals the eager concatenation, string codes
    remapped into the shared lists, views of views included."""
    a = _table(50, ["fp8", "bf16"], ["h100-sxm"], 1)
    b = _table(40, ["int4", "fp8"], ["b200", "h100-sxm"], 2)
    c = _table(30, ["bf16"], ["l40s"], 3)
    rows_b = np.array([0, 3, 7, 11, 39])
    parts = [a.rows_view(np.arange(0, 50, 2)), b.rows_view(rows_b), c]
    eager = evaluate.PlanTable.concat([p.take(np.arange(len(p))) for p in parts])
    lazy = evaluate.PlanTable.concat(parts, lazy=True)
    nested = evaluate.PlanTable.concat([evaluate.PlanTable.concat(parts[:2], lazy=True), parts[2]], lazy=True)
    assert isinstance(lazy.cols, evaluate.LazyColumns) and len(lazy) == len(eager) == 25 + 5 + 30
    for t in (lazy, nested):
        assert (t.weights, t.hardware) == (eager.weights, eager.hardware)
        assert "tp" in t.cols and "nope" not in t.cols and not t.cols._done  # membership reads no column
        idx = np.array([59, 0, 30, 26, 27, 12])
        sub, ref = t.take(idx), eager.take(idx)
        for k in eager.cols:
            assert np.array_equal(sub.cols[k], ref.cols[k]), k
            assert all(t.at(int(i))[k] == eager.cols[k][i] for i in idx), k
        for k in eager.cols:
            assert np.array_equal(t.cols[k], eager.cols[k]), k
    # a column written after the fact reads back
    lazy.cols["usd"] = np.arange(len(lazy), dtype=float)
    assert lazy.at(7)["usd"] == 7.0 and "usd" in lazy.cols


def test_a_lazy_table_with_a_written_column_concatenates_with_it():
    a = _table(20, ["fp8"], ["h100-sxm"], 4)
    lazy = evaluate.PlanTable.concat([a.rows_view(np.arange(0, 20, 2))], lazy=True)
    lazy.cols["usd"] = np.arange(10, dtype=float)
    both = evaluate.PlanTable.concat([lazy, _table(5, ["bf16"], ["l40s"], 5)], lazy=True)
    assert np.array_equal(both.cols["usd"][:10], np.arange(10.0)) and len(both) == 15
    assert both.hardware == ["h100-sxm", "l40s"] and np.array_equal(both.cols["hardware"][10:], np.ones(5))
