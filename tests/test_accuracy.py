"""The accuracy (A) model: published recoveries, task sensitivity, eviction curves, CLI."""

import json

import numpy as np
import pytest

from planner.cap import accuracy as A
from planner.errors import PlannerError
from planner.specs.quant import FORMATS, KV_FORMATS
from cli_helpers import run




def test_bf16_is_one():
    d = A.accuracy("bf16", "bf16")
    assert d["score"] == 1.0 and d["lowered_by"] == [] and d["sources"] == []
    for task in ("general", "knowledge", "math", "code", "reasoning"):
        assert A.accuracy("bf16", "bf16", task=task, model_params=70e9)["score"] == 1.0


def test_keys_unchanged_for_api():
    d = A.accuracy("fp8", "fp8")
    assert set(d) == {"score", "relative_to", "lowered_by", "cap_trade", "sources"}
    assert d["relative_to"] == "bf16 model = 1.0"
    assert all(isinstance(s, str) and s for s in d["lowered_by"] + d["sources"])
    assert len(d["lowered_by"]) == 2 and "fp8" in d["lowered_by"][0]
    assert d["cap_trade"] == ["A -0.5% (fp8 weights)", "A -0.2% (fp8 KV cache)"]


def test_every_planner_format_has_a_row():
    assert set(FORMATS) <= set(A.data().weights)
    assert set(KV_FORMATS) <= set(A.data().kv)


def test_weight_ordering_knowledge():
    s = {f: A.accuracy(f, "bf16", task="knowledge")["score"] for f in ("fp8", "int8", "int4")}
    assert s["fp8"] >= s["int8"] >= s["int4"]
    assert s["int4"] < 1.0


def test_math_lowers_int4_more_than_knowledge():
    know = A.accuracy("int4", "bf16", task="knowledge")["score"]
    math_ = A.accuracy("int4", "bf16", task="math")["score"]
    assert math_ < know
    # loss scales by k exactly: (1 - math) = 2.5 (1 - knowledge)
    assert 1 - math_ == pytest.approx(2.5 * (1 - know), abs=1e-4)
    assert A.task_class("code").k > 1 and A.task_class("reasoning").k > 1


def test_kv_int4_below_fp8():
    assert A.accuracy("bf16", "int4")["score"] < A.accuracy("bf16", "fp8")["score"] < 1.0


def test_size_adjustment_weights_only():
    small = A.accuracy("int4", "int4", model_params=1e9)["score"]
    ref = A.accuracy("int4", "int4", model_params=8e9)["score"]
    big = A.accuracy("int4", "int4", model_params=70e9)["score"]
    assert small < ref < big
    assert ref == A.accuracy("int4", "int4")["score"]  # unknown size = reference size
    # the KV factor does not move with size
    assert A.accuracy("bf16", "int4", model_params=70e9)["score"] == A.accuracy("bf16", "int4")["score"]
    assert A.size_factor(1e6) == 1.5 and A.size_factor(1e13) == 0.5  # clipped


@pytest.mark.parametrize("method, at128, at2048", [
    ("snapkv", 0.86, 1.00), ("h2o", 0.85, 0.95), ("streamingllm", 0.77, 0.91), ("pyramidkv", 0.90, 1.00)])
def test_eviction_matches_pyramidkv_table(method, at128, at2048):
    assert A.eviction_recovery(method, 128 / 8192) == pytest.approx(at128, abs=0.02)
    assert A.eviction_recovery(method, 2048 / 8192) == pytest.approx(at2048, abs=0.02)
    d = A.accuracy("bf16", "bf16", eviction=(method, 128, 8192))
    assert d["score"] == pytest.approx(at128, abs=0.02) and len(d["lowered_by"]) == 1


@pytest.mark.parametrize("method", ["snapkv", "h2o", "streamingllm", "pyramidkv"])
def test_eviction_rises_with_budget(method):
    budgets = np.array([1, 8, 32, 64, 100, 128, 300, 512, 1024, 2048, 4096, 8192, 16384])
    r = A.eviction_recovery(method, budgets / 8192)
    assert np.all(np.diff(r) >= 0) and r[-2] == 1.0 and r[-1] == 1.0 and np.all(r >= 0)
    assert r[0] < r[3]  # below the smallest measured budget it keeps falling


def test_eviction_spec_forms_agree():
    a = A.accuracy("bf16", "bf16", eviction="snapkv@128/8192")["score"]
    assert a == A.accuracy("bf16", "bf16", eviction=("snapkv", 128 / 8192))["score"]
    assert a == A.accuracy("bf16", "bf16", eviction={"method": "SnapKV", "budget_tokens": 128, "context_tokens": 8192})["score"]
    assert a == A.accuracy("bf16", "bf16", eviction="snapkv@0.015625")["score"]
    math_ = A.accuracy("bf16", "bf16", task="math", eviction="snapkv@128/8192")["score"]
    assert 1 - math_ == pytest.approx(2.5 * (1 - a), abs=1e-3)


def test_every_entry_has_a_source():
    d = A.data()
    rows = list(d.weights.values()) + list(d.kv.values()) + list(d.eviction.methods.values()) + \
        list(d.tasks.values()) + list(d.lossless.values()) + [d.size_adjustment]
    for r in rows:
        assert r.source.strip() and r.evidence.strip()
    assert d.eviction.source.strip()
    for r in list(d.weights.values()) + list(d.kv.values()):
        if r.r < 1:
            assert any(ch.isdigit() for ch in r.evidence) or r.basis in ("derived", "assumption")


def test_unknown_names_error_with_suggestion():
    with pytest.raises(PlannerError, match="did you mean 'int4'"):
        A.accuracy("int44", "bf16")
    with pytest.raises(PlannerError, match="KV-cache precision"):
        A.accuracy("bf16", "fp9")
    with pytest.raises(PlannerError, match="did you mean 'math'"):
        A.accuracy("bf16", "bf16", task="maths")
    with pytest.raises(PlannerError, match="did you mean 'snapkv'"):
        A.accuracy("bf16", "bf16", eviction="snapkvv@0.1")
    with pytest.raises(PlannerError):
        A.accuracy("bf16", "bf16", eviction="snapkv")
    with pytest.raises(PlannerError):
        A.lossless_factor("quantization")


def test_lossless_exactly_one():
    for t in ("speculative_decoding", "tensor_parallel", "pipeline_parallel", "expert_parallel",
              "disaggregation", "prefix_caching", "kv_offload"):
        assert A.lossless_factor(t) == 1.0
        assert t in A.lossless_techniques()


def test_table_matches_scalar():
    ws = ["bf16", "fp8", "int4", "int4", "fp4", "q4_0", "mxfp4", "int8"]
    kvs = ["bf16", "fp8", "int4", "fp8", "fp8", "q4_0", "bf16", "int8"]
    ev = [None, "snapkv", None, "h2o", "", "streamingllm", "pyramidkv", None]
    fr = [1.0, 0.05, 1.0, 0.3, 1.0, 0.01, 0.002, 1.0]
    ps = [8e9, 70e9, np.nan, 405e9, 1e9, 7e9, 120e9, 8e9]
    for task in ("general", "math"):
        got = A.accuracy_table(ws, kvs, task, eviction=ev, budget_fraction=fr, model_params=ps)
        want = [A.accuracy(w, k, task, eviction=(e, f) if e else None,
                           model_params=None if np.isnan(p) else p)["score"] for w, k, e, f, p in zip(ws, kvs, ev, fr, ps)]
        assert got.shape == (len(ws),)
        np.testing.assert_allclose(got, want, atol=6e-5)
    big = A.accuracy_table(["int4"] * 10000, "fp8", "code")
    assert big.shape == (10000,) and np.all(big == big[0])
    with pytest.raises(PlannerError):
        A.accuracy_table(["int4", "fp8"], ["fp8", "fp8", "fp8"])


def test_cli_accuracy(capsys):
    code, out, err = run(["accuracy"], capsys)
    assert code == 0, err
    assert "SnapKV" in out and "PyramidKV" in out and "lossless" in out
    code, out, err = run(["accuracy", "--task", "math", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["task"] == "math" and d["k"] == 2.5
    assert {r["id"] for r in d["weights"]} >= set(FORMATS)
    assert all(r["source"] for r in d["weights"] + d["kv"] + d["tasks"] + d["lossless"] + d["eviction"]["methods"])
    int4 = next(r for r in d["weights"] if r["id"] == "int4")
    assert int4["effective"] < int4["r"]
    code, out, err = run(["accuracy", "--task", "poetry"], capsys)
    assert code == 2 and "unknown task class" in err


def test_the_released_format_is_the_reference():
    # gpt-oss is released with MXFP4 experts (its published scores are that model's): serving that format, or an exact
    # upcast of it, loses nothing against the release; another format of as few bits requantizes and pays the
    # published delta; a model released in 16 bit is measured against bf16 as before
    from planner.cap.accuracy import accuracy
    from planner.specs.loader import get_model

    native = get_model("gpt-oss-120b").released_weights()
    assert native == "mxfp4" and get_model("deepseek-v3").released_weights() == "fp8"
    assert get_model("llama-3.1-8b").released_weights() is None
    a = accuracy("mxfp4", "bf16", model_params=117e9, native=native)
    assert a["score"] == 1.0 and not a["lowered_by"] and a["relative_to"] == "released mxfp4 checkpoint = 1.0"
    assert accuracy("fp8", "bf16", model_params=117e9, native=native)["score"] == 1.0
    kv_only = accuracy("bf16", "fp8", model_params=117e9)["score"]
    assert accuracy("bf16", "fp8", model_params=117e9, native=native)["score"] == kv_only
    req = accuracy("int4", "bf16", model_params=117e9, native=native)["score"]
    assert req == accuracy("int4", "bf16", model_params=117e9)["score"] < 1.0
    assert accuracy("fp8", "bf16", model_params=8e9) == accuracy("fp8", "bf16", model_params=8e9, native=None)
