"""Accuracy of the knob-driven CAP techniques: context extension, prompt compression, sparse attention,
MoE expert precision, cache routing, and the lossless list."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cap import accuracy as A
from planner.cap import techniques as T
from planner.errors import PlannerError

EXT = sorted(A.data().context_extension.methods)
COMP = sorted(A.data().prompt_compression.methods)
SPARSE = sorted(A.data().sparse_attention.methods)


def test_every_new_row_has_source_evidence_basis():
    d = A.data()
    rows = (list(d.context_extension.methods.values()) + list(d.prompt_compression.methods.values())
            + list(d.sparse_attention.methods.values()) + [d.expert_precision, d.cache_routing])
    for r in rows:
        assert r.source.strip() and r.evidence.strip()
    for r in rows[:-2] + [d.weights[f] for f in ("int6", "w6a8", "w6a6")]:
        assert r.basis in ("measured", "secondary", "derived", "assumption")
        # a measured row quotes its numbers; one without numbers says it is derived or assumed
        assert any(ch.isdigit() for ch in r.evidence) or r.basis in ("derived", "assumption")
    assert d.context_extension.ppl_to_loss_evidence and d.prompt_compression.floor_evidence
    assert d.sparse_attention.methods["minference"].basis == "assumption"  # a claim, no table: never 'measured'


@pytest.mark.parametrize("method", EXT)
def test_extension_factor_one_is_lossless_and_larger_never_helps(method):
    assert A.extension_recovery(method, 1.0) == 1.0
    s = np.array([1, 1.01, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 512, 4096])
    r = A.extension_recovery(method, s)
    assert np.all(np.diff(r) <= 1e-12) and np.all((r >= 0) & (r <= 1))


def test_yarn_serve_time_rows_follow_the_ppl_table():
    # r = min(r_short, r_long), loss = relative PPL rise (YaRN Table 5, LLaMA 7B, unscaled PPL 4.05 at 2048)
    assert A.extension_recovery("yarn", 4) == pytest.approx(1 - (4.19 / 4.05 - 1))
    assert A.extension_recovery("yarn", 16) == pytest.approx(1 - (4.61 / 4.05 - 1))
    # NTK-aware at s = 2 fails at its own target length (5.97 at 4096), not at 2048 (4.08)
    assert A.extension_recovery("ntk", 2) == pytest.approx(1 - (5.97 / 4.05 - 1))
    # a diverged model (PPL > 10 at the target length) cannot serve that context
    assert A.extension_recovery("linear", 8) == 0.0 and A.extension_recovery("ntk", 4) == 0.0
    # YaRN beats PI and NTK without fine-tuning at every measured factor
    for s in (2, 4, 8, 16):
        assert A.extension_recovery("yarn", s) >= max(A.extension_recovery(m, s) for m in ("linear", "ntk"))


def test_fine_tuned_yarn_matches_open_llm_averages():
    base = np.mean([53.1, 77.8, 43.8, 39.0])
    assert A.extension_recovery("yarn-ft", 16) == pytest.approx(np.mean([52.3, 78.8, 42.5, 38.2]) / base, abs=5e-4)
    assert A.extension_recovery("yarn-ft", 32) == pytest.approx(np.mean([52.1, 78.4, 41.7, 37.3]) / base, abs=5e-4)
    # fine-tuning recovers what serve-time scaling loses
    assert A.extension_recovery("yarn-ft", 16) > A.extension_recovery("yarn", 16)


def test_extension_aliases_and_spec_forms():
    assert A.extension_recovery("pi", 2) == A.extension_recovery("linear", 2)
    assert A.extension_recovery("Dynamic-YaRN", 4) == A.extension_recovery("yarn", 4)
    a = A.accuracy("bf16", "bf16", context_extension=("yarn", 4))
    assert a == A.accuracy("bf16", "bf16", context_extension="yarn@4")
    assert a == A.accuracy("bf16", "bf16", context_extension={"method": "YaRN", "factor": 4})
    assert a == A.accuracy("bf16", "bf16", context_extension={"method": "yarn", "context_tokens": 131072,
                                                              "trained_tokens": 32768})
    assert a["cap_trade"] == [f"A {100 * (A.extension_recovery('yarn', 4) - 1):+.1f}% (YaRN x4 context)"]


@pytest.mark.parametrize("method", COMP)
def test_compression_ratio_one_is_lossless_and_more_never_helps(method):
    assert A.compression_recovery(method, 1.0) == 1.0
    q = np.geomspace(1, 1000, 60)
    r = A.compression_recovery(method, q)
    assert np.all(np.diff(r) <= 1e-12) and np.all((r >= 0) & (r <= 1))
    # the floor is the zero-shot score: dropping the whole context, held beyond
    pc = A.data().prompt_compression
    assert r[-1] == pytest.approx(pc.floor_score / pc.original_score)


def test_compression_matches_the_longbench_table():
    pc = A.data().prompt_compression
    assert A.compression_recovery("llmlingua-2", pc.original_tokens / 3392) == pytest.approx(42.4 / 44.0)
    assert A.compression_recovery("llmlingua-2", pc.original_tokens / 1954) == pytest.approx(39.1 / 44.0)
    # question-aware LongLLMLingua beats the uncompressed prompt there: capped at exactly 1.0
    assert A.compression_recovery("longllmlingua", 5) == 1.0
    # the learned compressor beats entropy filtering at the same ratio
    assert A.compression_recovery("llmlingua-2", 4) > A.compression_recovery("llmlingua", 4) > \
        A.compression_recovery("selective-context", 4)


@pytest.mark.parametrize("method", SPARSE)
def test_sparse_kept_one_is_lossless_and_less_never_helps(method):
    assert A.sparse_recovery(method, 1.0) == 1.0
    f = np.geomspace(1.0, 1e-4, 50)
    r = A.sparse_recovery(method, f)
    assert np.all(np.diff(r) <= 1e-12) and np.all((r >= 0) & (r <= 1))


def test_sparse_duoattention_point_and_streamingllm_is_the_eviction_curve():
    assert A.sparse_recovery("duoattention", 0.25) == pytest.approx(34.49 / 37.52, abs=5e-4)
    for f in (0.01, 0.1, 0.5):
        assert A.sparse_recovery("streamingllm", f) == A.eviction_recovery("streamingllm", f)


@settings(max_examples=60, deadline=None)
@given(st.floats(1.0, 200.0), st.floats(1.0, 200.0), st.sampled_from(EXT), st.sampled_from(COMP),
       st.sampled_from(SPARSE), st.sampled_from(["general", "math"]))
def test_plan_score_monotone_in_every_knob(a, b, ext, comp, sparse, task):
    lo, hi = min(a, b), max(a, b)
    def score(v):
        return A.accuracy("int4", "fp8", task, context_extension=(ext, v), prompt_compression=(comp, v),
                          sparse_attention=(sparse, 1 / v))["score"]
    assert score(hi) <= score(lo) <= A.accuracy("int4", "fp8", task)["score"]


def test_knobs_at_lossless_end_leave_the_score_exactly_unchanged():
    base = A.accuracy("int4", "int8", "math", model_params=70e9)
    same = A.accuracy("int4", "int8", "math", model_params=70e9, context_extension=("yarn", 1),
                      prompt_compression=("llmlingua-2", 1), sparse_attention=("duoattention", 1.0),
                      expert_weights=("q4_0", 0.0), cache_routing=(0.0, None))
    assert same == base


def test_task_sensitivity_applies_to_the_curves():
    g = A.accuracy("bf16", "bf16", prompt_compression=("llmlingua", 5))["score"]
    m = A.accuracy("bf16", "bf16", "math", prompt_compression=("llmlingua", 5))["score"]
    assert 1 - m == pytest.approx(2.5 * (1 - g), abs=1e-3)


def test_expert_precision_mixes_losses_by_fraction():
    r4, rq = A.weight_recovery("int4").r, A.weight_recovery("q4_0").r
    for f in (0.0, 0.25, 1.0):
        got = A.accuracy("int4", "bf16", expert_weights=("q4_0", f))["score"]
        assert got == pytest.approx(1 - ((1 - f) * (1 - r4) + f * (1 - rq)), abs=1e-4)
    assert A.accuracy("fp8", "bf16", expert_weights="int4@1")["score"] == pytest.approx(A.weight_recovery("int4").r,
                                                                                           abs=1e-4)


def test_cache_routing_needs_the_user_quality():
    assert A.routing_factor(0.4, 0.9) == pytest.approx(1 - 0.4 * 0.1)
    assert A.routing_factor(0.5, 0.9, 0.7, 0.6) == pytest.approx(1 - 0.5 * (0.6 * 0.1 + 0.4 * 0.3))
    assert A.routing_factor(0.5, 1.0) == 1.0  # the paper's 'without hurting response quality'
    with pytest.raises(PlannerError, match="needs small_quality"):
        A.accuracy("bf16", "bf16", cache_routing={"offload_fraction": 0.3})
    with pytest.raises(PlannerError, match="small_quality_without_examples"):
        A.routing_factor(0.3, 0.9, example_hit_rate=0.5)
    with pytest.raises(PlannerError):
        A.routing_factor(1.5, 0.9)


@pytest.mark.parametrize("kw, msg", [
    ({"context_extension": ("yarn", 0.5)}, "at least 1"),
    ({"context_extension": ("yarm", 4)}, "did you mean 'yarn'"),
    ({"context_extension": "yarn"}, "cannot read context extension"),
    ({"prompt_compression": ("llmlingua-2", 0.8)}, "at least 1"),
    ({"prompt_compression": ("llmlingua2x", 3)}, "did you mean"),
    ({"sparse_attention": ("duoattention", 0.0)}, r"\(0, 1\]"),
    ({"sparse_attention": ("duoattention", 1.2)}, r"\(0, 1\]"),
    ({"sparse_attention": ("duo-attention", 0.5)}, "did you mean 'duoattention'"),
    ({"expert_weights": ("int44", 0.5)}, "did you mean 'int4'"),
    ({"expert_weights": ("int4", 1.5)}, r"\[0, 1\]"),
    ({"context_extension": ("yarn", float("nan"))}, "finite"),
])
def test_bad_inputs_are_one_line_errors(kw, msg):
    with pytest.raises(PlannerError, match=msg) as e:
        A.accuracy("bf16", "bf16", **kw)
    assert "\n" not in str(e.value)


def test_table_matches_scalar_for_new_knobs():
    ext = ["yarn", None, "linear", "yarn-ft", "", "ntk"]
    fac = [4.0, 1.0, 2.0, 32.0, 1.0, 1.5]
    comp = [None, "llmlingua-2", "longllmlingua", None, "llmlingua", "selective-context"]
    rat = [1.0, 3.0, 8.0, 1.0, 20.0, 2.0]
    sp = ["duoattention", None, None, "streamingllm", "minference", "lserve"]
    kept = [0.25, 1.0, 1.0, 0.02, 0.05, 0.5]
    for task in ("general", "code"):
        got = A.accuracy_table("int4", "fp8", task, context_extension=ext, extension_factor=fac,
                               prompt_compression=comp, compression_ratio=rat, sparse_attention=sp, kept_fraction=kept)
        want = [A.accuracy("int4", "fp8", task, context_extension=(e, f) if e else None,
                           prompt_compression=(c, q) if c else None,
                           sparse_attention=(s, k) if s else None)["score"]
                for e, f, c, q, s, k in zip(ext, fac, comp, rat, sp, kept)]
        np.testing.assert_allclose(got, want, atol=6e-5)
    with pytest.raises(PlannerError, match="needs extension_factor"):
        A.accuracy_table("bf16", "bf16", context_extension=["yarn"])


def test_lossless_list_covers_the_serving_techniques():
    for t in ("speculative_decoding", "kv_offload", "context_parallel", "distributed_kv_pool", "prefix_caching",
              "lora_adapters", "colocation", "intra_gpu_pd_split", "migration"):
        assert A.lossless_factor(t) == 1.0
        phrase = A.lossless_trade(t)
        assert phrase.startswith(f"A unchanged ({t}: ") and "\n" not in phrase


def test_tables_list_the_new_curves():
    d = A.tables("math")
    ids = {c["id"]: c for c in d["curves"]}
    assert set(ids) == {"context_extension", "prompt_compression", "sparse_attention"}
    for c in ids.values():
        for m in c["methods"]:
            assert m["source"] and m["evidence"] and m["points"]
            assert all(p["effective"] <= p["r"] for p in m["points"])  # k = 2.5 only lowers
    yarn = next(m for m in ids["context_extension"]["methods"] if m["id"] == "yarn")
    assert [p["measured"] for p in yarn["points"]] == [True, True, True, True, False]
    assert set(d["rules"]) == {"expert_precision", "cache_routing"}


def test_curve_knots_are_cached_not_rebuilt():
    T._extension_curve.cache_clear()
    A.accuracy_table("bf16", "bf16", context_extension=["yarn"] * 5000, extension_factor=np.linspace(1, 16, 5000))
    assert T._extension_curve.cache_info().misses == 1


def test_known_methods_resolve_and_weight_aliases_follow_the_registry():
    km = A.known_methods()
    fns = {"context_extension": (A.extension_recovery, 2.0), "prompt_compression": (A.compression_recovery, 3.0),
           "sparse_attention": (A.sparse_recovery, 0.5), "eviction": (A.eviction_recovery, 0.5)}
    for fam, (fn, v) in fns.items():
        for m in km[fam]["methods"] + km[fam]["aliases"]:
            assert 0.0 <= fn(m, v) <= 1.0
    # NVFP4 is the fp4 row (the quant registry's alias); unknown names still raise
    assert A.accuracy("nvfp4", "bf16")["score"] == A.accuracy("fp4", "bf16")["score"] < 1.0
    for f in ("int6", "w6a8", "w6a6"):
        assert A.weight_recovery("int8").r - 0.01 <= A.weight_recovery(f).r <= A.weight_recovery("fp8").r
