"""An engine that runs prompts whole (TensorRT-LLM, chunked prefill off) shares its step's token budget between the
running decodes and a new prompt: its MicroBatchScheduler takes the decodes first and stops at the first request that
does not fit, so at the default 8,192 tokens an 8,192-token prompt enters only beside no decode at all. estimate's
steady state prices the batch memory admits with the budget raised (as trtllm-bench sizes it: isl + the batch) and
says so; the simulator's runs take the same raised budget, and so does the emitted server (tests/test_emit.py)."""

import math

import pytest

from planner.api import PlanSpec, estimate, estimate_at_rate
from planner.specs.engine import get_engine


def test_the_budget_a_prompt_needs_beside_the_decodes():
    trt = get_engine("trtllm@1.1")
    assert trt.max_batched_tokens == 8192 and not trt.chunked_prefill and trt.prompt_within_budget
    assert trt.budget_beside_prompt(8192, 48) == 8192 + 48  # no room: the budget must grow by the decodes
    assert trt.budget_beside_prompt(8000, 100) is None  # 8,100 tokens fit the 8,192
    assert trt.budget_beside_prompt(8000, 300) == 8300
    assert trt.budget_beside_prompt(8000, 48, tokens_each=4) is None  # 8,192 exactly: fits
    assert trt.budget_beside_prompt(8000, 49, tokens_each=4) == 8196  # speculation: k + 1 tokens a decode
    assert trt.budget_beside_prompt(4096, 100) is None
    assert trt.budget_beside_prompt(9000, 10) is None  # longer than the budget: refused anyway (long_prompt_note)
    assert trt.budget_beside_prompt(8192, 48, chunked=True) is None
    assert get_engine("vllm").budget_beside_prompt(8192, 48) is None  # chunks prompts into what is left


def test_estimate_says_when_the_default_budget_would_run_prompts_one_at_a_time():
    full = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=8192, osl=1024, engine="trtllm")
    note = [n for n in full.notes if "token budget the running decodes share" in n]
    assert len(note) == 1 and "one at a time" in note[0] and f"{8192 + full.plan['running'] - 1:,}" in note[0]
    roomy = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=4096, osl=1024, engine="trtllm")
    assert not any("token budget the running decodes share" in n for n in roomy.notes)
    chunked = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(chunk_tokens=2048), isl=8192, osl=1024, engine="trtllm")
    assert not any("token budget the running decodes share" in n for n in chunked.notes)


def test_a_burst_of_budget_long_prompts_runs_with_the_budget_raised():
    """At the default budget the simulator would run 8,192-token prompts one at a time (a batch of 1 and a few per
    cent of the throughput); priced as the note says, the burst holds the batch memory admits."""
    steady = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=8192, osl=1024, engine="trtllm")
    burst = estimate_at_rate("llama-3.1-8b", "h100-sxm", PlanSpec(), rate=math.inf, requests=400, isl=8192, osl=1024,
                             engine="trtllm")
    assert burst["plan"]["batch_or_concurrency"] > 0.8 * steady.plan["running"]
    assert burst["output_tokens_per_s"] == pytest.approx(steady.output_tokens_per_s, rel=0.2)
    assert any("token budget the running decodes share" in n for n in burst["notes"])
