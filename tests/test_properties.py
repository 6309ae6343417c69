"""Monotonic invariants of the planner, checked on generated cases (hypothesis).

More GPUs never lower the best plan's throughput; more memory bandwidth or FLOP/s never make a plan
slower; longer prompts never shorten TTFT; lower precision never raises accuracy; the frontier never
holds a dominated plan."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner import PlanSpec, estimate
from planner.cap.accuracy import accuracy
from planner.search.pareto import dominated_by_any, pareto_mask
from planner.specs.loader import get_hardware
from planner.studies.params import PlanRequest, plan_search

FAST = settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# (model, device, a plan that fits on one device, an engine that runs there) kept small so each estimate costs
# milliseconds (TensorRT-LLM, the default engine, runs on NVIDIA only: the MI300X case runs vLLM)
CASES = [("llama-3.1-8b", "h100-sxm", "bf16", "trtllm"), ("llama-3.1-8b", "a100-sxm-80gb", "bf16", "trtllm"),
         ("qwen2.5-7b", "l40s", "fp8", "trtllm"), ("llama-3.1-8b", "mi300x", "fp8", "vllm"), ("mixtral-8x7b", "h200-sxm", "fp8", "trtllm")]


def _scaled(hw_id: str, bandwidth: float = 1.0, flops: float = 1.0):
    hw = get_hardware(hw_id)
    mem = hw.memory.model_copy(update={"bandwidth": hw.memory.bandwidth.model_copy(update={"value": hw.memory.bandwidth.value * bandwidth})})
    peaks = {k: (None if v is None else v.model_copy(update={"value": v.value * flops})) for k, v in hw.peak_flops.items()}
    return hw.model_copy(update={"memory": mem, "peak_flops": peaks})


@FAST
@given(case=st.sampled_from(CASES), bw=st.floats(1.0, 4.0), fl=st.floats(1.0, 4.0), isl=st.integers(16, 8192),
       batch=st.integers(1, 64))
def test_faster_silicon_is_never_slower(case, bw, fl, isl, batch):
    model, hw_id, w, engine = case
    kw = dict(isl=isl, osl=64, batching="static", batch=batch, engine=engine)
    base = estimate(model, _scaled(hw_id), PlanSpec(weights=w), **kw)
    fast = estimate(model, _scaled(hw_id, bw, fl), PlanSpec(weights=w), **kw)
    for k in ("ttft_s", "tpot_s", "e2e_latency_s"):
        assert getattr(fast, k) <= getattr(base, k) * (1 + 1e-9), (k, getattr(fast, k), getattr(base, k))


def test_faster_silicon_is_really_faster():
    # the invariant above is not vacuous: doubling bandwidth speeds a memory-bound decode step up
    base = estimate("llama-3.1-8b", _scaled("h100-sxm"), PlanSpec(), isl=128, osl=64, batching="static", batch=1)
    fast = estimate("llama-3.1-8b", _scaled("h100-sxm", bandwidth=2.0), PlanSpec(), isl=128, osl=64, batching="static", batch=1)
    assert fast.tpot_s < 0.8 * base.tpot_s


@FAST
@given(case=st.sampled_from(CASES), a=st.integers(1, 16000), extra=st.integers(1, 16000), batch=st.integers(1, 16))
def test_longer_prompts_never_shorten_ttft(case, a, extra, batch):
    model, hw_id, w, engine = case
    short = estimate(model, hw_id, PlanSpec(weights=w), isl=a, osl=16, batching="static", batch=batch, engine=engine)
    long = estimate(model, hw_id, PlanSpec(weights=w), isl=a + extra, osl=16, batching="static", batch=batch, engine=engine)
    assert long.ttft_s >= short.ttft_s * (1 - 1e-9)


# precision chains from more bits to fewer, within one family of formats
WEIGHT_CHAINS = [("bf16", "fp8", "fp4"), ("bf16", "int8", "int4"), ("bf16", "int8-wo", "int4"), ("fp8", "fp4")]
KV_CHAINS = [("bf16", "fp8", "int4"), ("bf16", "int8", "int4")]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(wchain=st.sampled_from(WEIGHT_CHAINS), kchain=st.sampled_from(KV_CHAINS), i=st.integers(0, 2), j=st.integers(0, 2),
       task=st.sampled_from(["general", "knowledge", "math", "code", "reasoning"]), params=st.floats(1e9, 1e12))
def test_lower_precision_never_raises_accuracy(wchain, kchain, i, j, task, params):
    i, j = min(i, len(wchain) - 1), min(j, len(kchain) - 1)
    hi = accuracy(wchain[0], kchain[0], task=task, model_params=params)["score"]
    lo_w = accuracy(wchain[i], kchain[0], task=task, model_params=params)["score"]
    lo_kv = accuracy(wchain[0], kchain[j], task=task, model_params=params)["score"]
    lo = accuracy(wchain[i], kchain[j], task=task, model_params=params)["score"]
    assert lo_w <= hi and lo_kv <= hi and lo <= min(lo_w, lo_kv) + 1e-12


@SLOW
@given(hw=st.sampled_from(["h100-sxm", "l40s", "a100-sxm-80gb"]), g=st.sampled_from([1, 2, 4]),
       isl=st.sampled_from([256, 2048]), ttft=st.sampled_from([None, 1.0]))
def test_more_gpus_never_lower_best_throughput(hw, g, isl, ttft):
    def best(n):
        r = plan_search(PlanRequest(model="llama-3.1-8b", hardware=hw, gpus=n, isl=isl, osl=128, ttft=ttft, disagg=False,
                                    min_accuracy=0))
        c = r.table.cols
        return float((c["tok_s_per_gpu"] * c["gpus"]).max()) if len(r.table) else 0.0

    assert best(2 * g) >= best(g) * (1 - 1e-9)


@SLOW
@given(hw=st.sampled_from([["h100-sxm"], ["h100-sxm", "l40s"], ["mi300x"]]), g=st.sampled_from([1, 4, 8]),
       objective=st.sampled_from(["throughput", "latency", "cost"]))
def test_frontier_holds_no_dominated_plan(hw, g, objective):
    r = plan_search(PlanRequest(model="llama-3.1-8b", hardware=hw, gpus=g, isl=1024, osl=256, objective=objective, min_accuracy=0,
                                engine="vllm" if "mi300x" in hw else "trtllm"))
    c = r.table.cols
    cols = lambda tok, user, acc, ctx, usd: np.column_stack([tok, user, acc, ctx] + ([-np.nan_to_num(usd, nan=0.0)] if len(hw) > 1 else []))
    every = cols(c["tok_s_per_gpu"], c["tok_s_per_user"], c["accuracy"], c["max_context"], c["usd_per_mtok"])
    f = r.frontier
    front = cols(*(np.array([d[k] for d in f], float) for k in ("output_tokens_per_s_per_gpu", "output_tokens_per_s_per_user",
                                                              "accuracy", "max_context_tokens")),
                 np.array([np.nan if d["usd_per_million_output_tokens"] is None else d["usd_per_million_output_tokens"] for d in f]))
    assert len(f) >= 1
    assert not dominated_by_any(front, every).any()


@settings(max_examples=150, deadline=None, derandomize=True)
@given(n=st.integers(1, 300), k=st.integers(1, 5), levels=st.integers(2, 50), seed=st.integers(0, 10**6))
def test_pareto_mask_matches_all_pairs(n, k, levels, seed):
    # coarse integer levels make ties and duplicates common: the hard cases for a frontier
    pts = np.random.default_rng(seed).integers(0, levels, size=(n, k)).astype(float)
    mask = pareto_mask(pts)
    assert not dominated_by_any(pts[mask], pts).any()
    assert dominated_by_any(pts[~mask], pts).all()


@pytest.mark.parametrize("g", [1, 8])
def test_recommendation_is_reproducible(g):
    req = PlanRequest(model="llama-3.1-8b", hardware="h100-sxm", gpus=g, isl=1024, osl=256)
    a, b = plan_search(req).to_dict(), plan_search(req).to_dict()
    a.pop("timing"), b.pop("timing")
    assert a == b


@settings(max_examples=200, deadline=None, derandomize=True)
@given(x=st.floats(1e-6, 1e6, allow_nan=False), unit=st.sampled_from([("", 1.0), ("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("min", 60.0)]))
def test_durations_read_their_unit(x, unit):
    from planner.units import parse_duration

    suffix, scale = unit
    assert parse_duration(f"{x!r}{suffix}") == pytest.approx(x * scale, rel=1e-12)
    assert parse_duration(f" {x!r} {suffix} ") == pytest.approx(x * scale, rel=1e-12)
