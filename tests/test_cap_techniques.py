"""The context and attention CAP techniques of issue 16 in the one serving model: context extension, prompt
compression, sparse attention, context parallelism, adaptive speculation and draft models.

Each: the lossless end changes nothing (factor 1, ratio 1, kept 1.0, cp 1), hand-computed physics (FLOPs, bytes,
memory), the papers' reported speedups in direction and rough size, and estimate / plan search agreeing."""

import numpy as np
import pytest

from planner.costmodel.memory import kv_bytes_per_seq, memory, weight_bytes_per_device
from planner.costmodel.plans import make_plans
from planner.costmodel.sparse import STREAM_RECENT_TOKENS, STREAM_SINK_TOKENS, with_sparse
from planner.costmodel.step import CostModel, Op, Step
from planner.errors import PlannerError
from planner.search.evaluate import Workload
from planner.search.run import Constraints, search
from planner.search.space import SpaceOptions
from planner.serving.batching import SPEC_AUTO_MAX_K, Techniques, inflight
from planner.serving.draft import COMPRESSORS, compressor_time_s
from planner.serving.predict import PlanSpec, estimate
from planner.specs.loader import get_hardware, get_model

W = STREAM_SINK_TOKENS + STREAM_RECENT_TOKENS


def _setup(model="llama-3.1-8b", hw="h100-sxm", **kw):
    m, h = get_model(model), get_hardware(hw)
    return m, h, CostModel(m, h), make_plans(m, h, **kw)


def _attn(cm, plans, step):
    return cm.step(plans, step).op(Op.ATTENTION)


# ---------------------------------------------------------------- the lossless end changes nothing

@pytest.mark.parametrize("tech", [dict(sparse_attention="duoattention:1"), dict(sparse_attention="lserve:1"),
                                  dict(sparse_attention="minference:1"), dict(prompt_compression="llmlingua-2:1"),
                                  dict(context_extension="yarn:1"), dict(cp=1)])
def test_lossless_end_is_the_plain_plan(tech):
    kw = dict(isl=8192, osl=256, concurrency=16)
    a, b = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), **kw), estimate("llama-3.1-8b", "h100-sxm", PlanSpec(**tech), **kw)
    for f in ("ttft_s", "tpot_s", "output_tokens_per_s", "max_context_tokens"):
        assert getattr(b, f) == pytest.approx(getattr(a, f), rel=1e-12), f
    assert b.accuracy["score"] == a.accuracy["score"] == 1.0
    assert b.memory["kv_cache_bytes"] == a.memory["kv_cache_bytes"]


# ---------------------------------------------------------------- sparse attention physics

def test_duoattention_decode_reads_and_memory_by_hand():
    m, h, cm, p = _setup()
    ctx, kept = 65536.0, 0.25
    s = with_sparse(p, "duoattention", kept, ctx)
    step = Step(decode_seqs=4, decode_ctx=ctx)
    dense, sparse = _attn(cm, p, step), _attn(cm, s, step)
    # KV read per sequence: kept heads the whole context, streaming heads sinks + recent window; the rest of the
    # op's bytes (Q/O and the new token's KV write) are the same
    kv_per_tok = 2 * m.num_kv_heads * m.head_dim * 2.0  # bf16 K and V, one layer
    expect = 4 * (1 - (kept * ctx + (1 - kept) * W) / ctx) * ctx * kv_per_tok
    assert float(dense.bytes[0] - sparse.bytes[0]) == pytest.approx(expect, rel=1e-9)
    assert float(sparse.flops[0] / dense.flops[0]) == pytest.approx((kept * ctx + (1 - kept) * W) / ctx, rel=1e-9)
    # memory: the streaming heads keep W tokens of the full-attention layers' KV
    ratio = kv_bytes_per_seq(m, s, ctx)[0] / kv_bytes_per_seq(m, p, ctx)[0]
    assert ratio == pytest.approx(kept + (1 - kept) * W / ctx, rel=1e-9)


def test_minference_prefill_keeps_its_share_of_pairs_plus_the_probe():
    m, h, cm, p = _setup()
    n, kept = 131072.0, 0.1
    s = with_sparse(p, "minference", kept, n)
    step = Step(prefill_seqs=1, prefill_tokens=n)
    pairs = n * (n + 1) / 2
    probe = 64 * n
    per_pair = 2.0 * m.num_heads * 2 * m.head_dim
    assert float(_attn(cm, s, step).flops[0]) == pytest.approx(per_pair * (kept * pairs + probe), rel=1e-9)
    assert float(_attn(cm, p, step).flops[0]) == pytest.approx(per_pair * pairs, rel=1e-9)
    # decode and memory stay dense
    d = Step(decode_seqs=2, decode_ctx=n)
    assert float(_attn(cm, s, d).time_s[0]) == float(_attn(cm, p, d).time_s[0])
    assert kv_bytes_per_seq(m, s, n)[0] == kv_bytes_per_seq(m, p, n)[0]


def test_sparse_attention_never_slower_and_monotone_in_kept():
    m, h, cm, p = _setup()
    ctx = 65536.0
    t = [cm.step(with_sparse(p, "duoattention", k, ctx), Step(prefill_seqs=1, prefill_tokens=ctx, decode_seqs=8,
                                                                decode_ctx=ctx)).time_s[0] for k in (0.1, 0.25, 0.5, 0.75, 1.0)]
    assert all(a <= b + 1e-15 for a, b in zip(t, t[1:]))


@pytest.mark.parametrize("model,kept,paper", [
    # DuoAttention arXiv 2410.10819 abstract: up to 2.18x decode, 1.73x prefill, 2.55x memory (MHA, 25 % retrieval
    # heads); 1.50x, 1.63x, 1.67x (GQA, 50 %)
    ("llama-2-7b", 0.25, {"decode": 2.18, "prefill": 1.73, "memory": 2.55}),
    ("llama-3.1-8b", 0.5, {"decode": 1.50, "prefill": 1.63, "memory": 1.67}),
])
def test_duoattention_speedups_match_the_paper_in_direction_and_size(model, kept, paper):
    m, h, cm, p = _setup(model, "a100-sxm-80gb")
    ctx = 131072.0  # long context, where the paper reports its "up to" figures
    s = with_sparse(p, "duoattention", kept, ctx)
    got = {"decode": cm.step(p, Step(decode_seqs=1, decode_ctx=ctx)).time_s[0] / cm.step(s, Step(decode_seqs=1, decode_ctx=ctx)).time_s[0],
           "prefill": cm.step(p, Step(prefill_seqs=1, prefill_tokens=ctx)).time_s[0] / cm.step(s, Step(prefill_seqs=1, prefill_tokens=ctx)).time_s[0],
           "memory": (weight_bytes_per_device(m, p)[0] + kv_bytes_per_seq(m, p, ctx)[0])
           / (weight_bytes_per_device(m, s)[0] + kv_bytes_per_seq(m, s, ctx)[0])}
    for k, v in paper.items():
        assert got[k] > 1.0, k  # direction
        assert v / 1.6 < got[k] < v * 1.6, (k, got[k], v)  # size: within 1.6x of the reported figure


def test_minference_prefill_speedup_near_the_papers_10x_at_1m():
    # MInference README: "up to 10x speedup for pre-filling on an A100" at 1M tokens
    m, h, cm, p = _setup("llama-3.1-8b", "a100-sxm-80gb")
    n = 1048576.0
    s = with_sparse(p, "minference", 0.1, n)
    x = cm.step(p, Step(prefill_seqs=1, prefill_tokens=n)).time_s[0] / cm.step(s, Step(prefill_seqs=1, prefill_tokens=n)).time_s[0]
    assert 5.0 < x <= 10.0


def test_lserve_decode_speedup_in_the_papers_range_at_batch_one():
    # LServe arXiv 2502.14866: decoding 1.3-2.1x over vLLM (prefill up to 2.9x)
    m, h, cm, p = _setup()
    ctx = 65536.0
    s = with_sparse(p, "lserve", 0.5, ctx)
    x = cm.step(p, Step(decode_seqs=1, decode_ctx=ctx)).time_s[0] / cm.step(s, Step(decode_seqs=1, decode_ctx=ctx)).time_s[0]
    assert 1.3 <= x <= 2.1 * 1.3


# ---------------------------------------------------------------- context parallelism

def test_context_parallel_splits_prefill_flops_decode_reads_and_memory():
    m, h, cm, p1 = _setup()
    p4 = make_plans(m, h, cp=4)
    n = 262144.0
    pf = Step(prefill_seqs=1, prefill_tokens=n)
    assert float(_attn(cm, p4, pf).flops[0]) == pytest.approx(float(_attn(cm, p1, pf).flops[0]) / 4, rel=1e-9)
    d = Step(decode_seqs=1, decode_ctx=n)
    kv_read_1 = float(_attn(cm, p1, d).bytes[0])
    assert float(_attn(cm, p4, d).bytes[0]) < kv_read_1 / 3.9
    assert kv_bytes_per_seq(m, p4, n)[0] == pytest.approx(kv_bytes_per_seq(m, p1, n)[0] / 4, rel=1e-12)
    assert p4.gpus_per_replica[0] == 4
    ring = cm.step(p4, pf).op(Op.CP_RING)
    kv_tok = 2 * m.num_kv_heads * m.head_dim * 2.0
    assert float(ring.bytes[0]) == pytest.approx(3 * n / 4 * kv_tok, rel=1e-9)  # cp - 1 blocks of n / cp tokens
    # ring attention hides the KV passing under the block attention at long contexts: near-linear prefill speedup
    x = cm.step(p1, pf).time_s[0] / cm.step(p4, pf).time_s[0]
    assert 3.5 < x <= 4.0 + 1e-9
    assert cm.step(p1, pf).op(Op.CP_RING) is None


def test_plan_finds_a_layout_for_a_million_tokens_instead_of_refusing():
    res = search("llama-3.1-8b", ["h100-sxm"], 16, Workload(1_000_000, 256), Constraints(gpus=16, min_context=1_000_000, min_accuracy=0.9, ttft_s=60.0),
                 opts=SpaceOptions(offload=False, chunk_tokens=(0,), concurrency=(1, 2, 4)))
    rec = res.recommended
    assert rec is not None and rec["max_context_tokens"] >= 1_000_000
    assert rec["plan"]["context_extension"]["method"] == "yarn" and rec["plan"]["context_extension"]["factor"] == 8
    assert rec["plan"]["context_parallel"] and rec["plan"]["context_parallel"] > 1  # TTFT under 60 s needs the ring
    assert "yarn x8 context" in rec["trade"] and rec["accuracy"] < 1.0


# ---------------------------------------------------------------- context extension and prompt compression

def test_context_extension_raises_the_limit_and_costs_accuracy():
    a = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(tp=8), isl=8192, osl=256, concurrency=1)
    b = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(tp=8, context_extension="yarn:4"), isl=400_000, osl=256, concurrency=1)
    assert a.max_context_tokens == 131072 and b.max_context_tokens == 4 * 131072
    assert b.fits and not any("exceeds" in n for n in b.notes)
    assert 0.9 < b.accuracy["score"] < 1.0 and any("YaRN" in t or "yarn" in t.lower() for t in b.accuracy["cap_trade"])
    c = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(tp=8), isl=400_000, osl=256, concurrency=1)
    assert any("exceeds" in n for n in c.notes)


def test_prompt_compression_costs_the_compressor_and_shrinks_prefill_and_kv():
    kw = dict(isl=16384, osl=256, concurrency=8)
    a = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), **kw)
    b = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(prompt_compression="llmlingua-2:4"), **kw)
    # KV of the compressed prompt (ceil(16384 / 4) = 4096 tokens) + the output, whole blocks
    assert b.memory["kv_cache_bytes"] / a.memory["kv_cache_bytes"] == pytest.approx((4096 + 256) / (16384 + 256), rel=0.01)
    assert b.ttft_s < a.ttft_s and b.accuracy["score"] < 1.0
    assert b.max_context_tokens == 4 * a.max_context_tokens  # C: the longest original prompt grows with the ratio
    # the compressor: XLM-RoBERTa-large, ~2 x 302M dense FLOPs per token, at least that / the 16-bit rate
    m, h, cm, p = _setup()
    comp = COMPRESSORS["llmlingua-2"]
    t = float(compressor_time_s(comp, cm, p, 16384)[0])
    assert comp.flops_per_token() == pytest.approx(2 * 24 * (4 * 1024**2 + 2 * 1024 * 4096) + 24 * 4 * 512 * 1024)
    assert t >= comp.flops_per_token() * 16384 / h.peak("bf16")
    # LLMLingua-2 arXiv 2403.12968: end-to-end latency 1.6x-2.9x faster at 2x-5x compression
    e2e = a.e2e_latency_s / b.e2e_latency_s
    assert 1.3 < e2e < 2.9 * 1.6


# ---------------------------------------------------------------- speculation: adaptive k and draft models

def test_adaptive_k_is_never_worse_than_any_fixed_k_and_shrinks_with_load():
    conc = np.array([1.0, 8.0, 64.0, 512.0])
    m, h, cm, p = _setup("llama-3.1-70b", "h100-sxm", tp=[8] * len(conc))
    best = inflight(cm, p, conc, 1024, 256, Techniques(spec_auto=True, spec_alpha=0.7), breakdown=False)
    for k in range(SPEC_AUTO_MAX_K + 1):
        fixed = inflight(cm, p, conc, 1024, 256, Techniques(spec_k=k, spec_alpha=0.7), breakdown=False)
        assert np.all(best.output_tokens_per_s >= fixed.output_tokens_per_s * (1 - 1e-9))
    ks = np.asarray(best.spec_k)
    assert ks[0] >= 2 and np.all(np.diff(ks) <= 0)  # long drafts at batch 1, shorter (or none) at saturation


def test_draft_model_has_its_own_weights_kv_and_steps():
    kw = dict(isl=1024, osl=256, concurrency=16)
    head = estimate("llama-3.1-70b", "h100-sxm", PlanSpec(tp=8, spec_k=3, spec_alpha=0.7), **kw)
    draft = estimate("llama-3.1-70b", "h100-sxm", PlanSpec(tp=8, spec_k=3, spec_alpha=0.7, draft_model="llama-3.1-8b"), **kw)
    m8, h = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    w8 = weight_bytes_per_device(m8, make_plans(m8, h, tp=8))[0]
    assert draft.memory["total_bytes_per_gpu"] - head.memory["total_bytes_per_gpu"] >= w8  # draft weights (+ its KV)
    assert draft.tpot_s > head.tpot_s  # three 8B decode steps cost more than three one-layer head passes
    with pytest.raises(PlannerError):
        estimate("llama-3.1-70b", "h100-sxm", PlanSpec(tp=8, spec_k=3, spec_alpha=0.7, draft_model="qwen3-0.6b"), **kw)


# ---------------------------------------------------------------- the paths agree

@pytest.mark.parametrize("tech,opt", [
    (dict(sparse_attention="duoattention:0.5"), dict(sparse_attention=(("duoattention", 0.5),))),
    (dict(prompt_compression="llmlingua-2:4"), dict(prompt_compression=(("llmlingua-2", 4.0),))),
    (dict(spec_auto=True, spec_alpha=0.7), dict(speculative=((-1, 0.7),))),
    (dict(spec_k=3, spec_alpha=0.7, draft_model="llama-3-8b"), dict(speculative=((3, 0.7),), draft_model="llama-3-8b")),
])
def test_estimate_and_plan_search_are_one_computation(tech, opt):
    isl, osl, c = 16384, 256, 16
    est = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="fp8", kv="fp8", **tech), isl=isl, osl=osl, concurrency=c)
    opts = SpaceOptions(weights=("fp8",), kv=("fp8",), max_pp=1, concurrency=(c,), chunk_tokens=(0,), offload=False,
                        disaggregated=False, **opt)
    res = search("llama-3.1-8b", ["h100-sxm"], 1, Workload(isl, osl), Constraints(gpus=1), opts=opts)
    cols = res.table.cols
    key = next(k for k in ("sparse", "compress", "spec_auto", "draft") if np.any(cols[k]))
    i = int(np.nonzero(cols[key])[0][0])
    assert cols["ttft_s"][i] == pytest.approx(est.ttft_s, rel=1e-9)
    assert cols["tpot_s"][i] == pytest.approx(est.tpot_s, rel=1e-9)
    assert cols["accuracy"][i] == pytest.approx(est.accuracy["score"], abs=1e-4)
    assert cols["max_context"][i] == est.max_context_tokens


@pytest.mark.parametrize("tech", [dict(sparse_attention="duoattention:0.5"), dict(cp=2), dict(prompt_compression="llmlingua-2:4")])
def test_simulator_prices_the_technique_as_estimate_does(tech):
    """At a low arrival rate (one request at a time) the simulator's TTFT is estimate's at concurrency 1; for prompt
    compression the simulator sees the shorter prompts and leaves out the compressor's own time, which estimate adds."""
    from planner.serving.draft import COMPRESSORS
    from planner.serving.run import simulate_scenario

    o = simulate_scenario(model="llama-3.1-8b", hardware="h100-sxm", isl=16384, osl=256, rate=0.05, requests=60, seed=1,
                          gpus=tech.get("cp", 1), **tech)
    e = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(**tech), isl=16384, osl=256, concurrency=1)
    expect = e.ttft_s
    if "prompt_compression" in tech:
        m, h, cm, p = _setup()
        expect -= float(compressor_time_s(COMPRESSORS["llmlingua-2"], cm, p, 16384)[0])
    assert o.out["ttft_s"]["mean"] == pytest.approx(expect, rel=0.05)
