"""``estimate --shared-prefix F``: a prefix every request shares (a system prompt) priced in the analytic steady state
as the simulator prices it: served from the prefix cache, held once a GPU, and read once a decode step while it and a
wave of attention CTAs fit the device's last-level cache."""

import numpy as np
import pytest

from cli_helpers import run
from planner.costmodel.memory import kv_bytes_per_seq
from planner.costmodel.plans import make_plans
from planner.serving.predict import PlanSpec, estimate
from planner.serving.run import simulate_scenario
from planner.serving.shared_prefix import read_saving
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model

KW = dict(isl=512, osl=256, concurrency=64, engine="vllm")


def _est(frac, model="llama-3.1-8b", hw="h100-sxm", **kw):
    return estimate(model, hw, PlanSpec(shared_prefix=frac), **{**KW, **kw})


def test_read_saving_from_first_principles():
    read = (12_800.0, 8, 132)  # an H100's 50 MiB L2 in tokens of one layer of Llama 3.1 8B's KV, 8 KV heads, 132 SMs
    # 64 sequences at 640 tokens sharing 384: a wave is 132 CTAs x 80 tokens = 10,560, + 384 fits 12,800, so 63/64 of
    # the prefix is read once instead of 64 times
    assert read_saving(read, 384, 64, 640) == pytest.approx(384 * 63 / 64)
    # one sequence shares with nobody; a 2,176-token context streams 132 x 272 = 35,904 tokens a wave, past the cache
    assert read_saving(read, 384, 1, 640) == 0.0
    assert read_saving(read, 1536, 64, 2176) == 0.0
    # a batch smaller than a wave: 4 sequences x 8 CTAs = 32 CTAs of 640 / 8 tokens
    assert read_saving(read, 384, 4, 640) == pytest.approx(384 * 3 / 4)
    assert read_saving(None, 384, 64, 640) == 0.0
    # vectorized over plans
    np.testing.assert_allclose(read_saving(read, 384, np.array([1, 2, 64]), 640), [0.0, 192.0, 378.0])


def test_a_shared_prefix_is_held_once_and_computed_once():
    plain, shared = _est(0.0), _est(0.75)
    m = get_model("llama-3.1-8b")
    hw = get_hardware("h100-sxm")
    eng = get_engine("vllm").for_hardware(hw, 1, 1)
    p = make_plans(m, hw, weights="bf16", kv="bf16", engine=eng)
    B = eng.kv_block_tokens
    whole = float(kv_bytes_per_seq(m, p, 768, B, eng)[0])
    held = float(kv_bytes_per_seq(m, p, 384, B, eng)[0])
    # KV bytes: one copy of the 384-token prefix plus 64 sequences' own tokens, in place of 64 whole sequences
    assert plain.memory["kv_cache_bytes"] == pytest.approx(64 * whole)
    assert shared.memory["kv_cache_bytes"] == pytest.approx(held + 64 * (whole - held))
    assert shared.max_concurrency > plain.max_concurrency
    # a prompt computes 128 of its 512 tokens, and the decode step reads the prefix once
    assert shared.ttft_s < 0.7 * plain.ttft_s
    assert shared.tpot_s < 0.8 * plain.tpot_s
    assert shared.plan["techniques"]["shared_prefix"] == 0.75
    assert any("reads the shared prefix once: 378 tokens" in n for n in shared.notes)


def test_estimate_agrees_with_the_simulator():
    """The same closed loop through both models: the TPOT each gives with the prefix shared, and what sharing saves."""
    sim = {}
    for frac in (0.0, 0.75):
        out = simulate_scenario(model="llama-3.1-8b", hardware="h100-sxm", engine="vllm", isl=512, osl=256, clients=64,
                                requests=1500, seed=0, shared_prefix=frac).out
        sim[frac] = out
    assert sim[0.75]["prefix_cache_hit_tokens"] == 1500 * 384
    est = {f: _est(f) for f in (0.0, 0.75)}
    assert est[0.75].tpot_s == pytest.approx(sim[0.75]["tpot_s"]["mean"], rel=0.10)
    gain_est = est[0.75].output_tokens_per_s / est[0.0].output_tokens_per_s
    gain_sim = sim[0.75]["output_tokens_per_s"] / sim[0.0]["output_tokens_per_s"]
    assert gain_est == pytest.approx(gain_sim, rel=0.05) and gain_sim > 1.25


def test_past_the_cache_every_read_is_priced():
    # 2,048-token prompts: a wave of attention streams past the H100's L2, so only the memory and the prompt's compute
    # change; the step's KV read is every sequence's
    shared = _est(0.75, isl=2048)
    assert any("every sequence's read of the shared prefix is priced" in n for n in shared.notes)
    kv_mb = {o["op"]: o for o in shared.breakdown["decode"]}["attention"]
    plain = {o["op"]: o for o in _est(0.0, isl=2048).breakdown["decode"]}["attention"]
    assert kv_mb == plain


@pytest.mark.parametrize("engine, said, held", [
    ("vllm@0.6", "runs without a prefix cache by default", False),  # V0: --enable-prefix-caching is off by default
    ("llamacpp", "each running sequence holds and reads its own copy", False),  # a slot's own cells
])
def test_engines_that_do_not_share_the_blocks(engine, said, held):
    e = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(shared_prefix=0.5), isl=512, osl=128, concurrency=8, engine=engine)
    plain = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=512, osl=128, concurrency=8, engine=engine)
    assert any(said in n for n in e.notes)
    assert (e.memory["kv_cache_bytes"] < plain.memory["kv_cache_bytes"]) == held
    assert e.tpot_s == pytest.approx(plain.tpot_s, rel=1e-9) or engine == "llamacpp"


@pytest.mark.parametrize("args, text", [
    (["--shared-prefix", "0.5", "--prefix-hit-tokens", "100"], "give one"),
    (["--shared-prefix", "1.5"], "shared"),
])
def test_cli_refuses_in_one_sentence(args, text, capsys):
    code, _, err = run(["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "vllm", *args], capsys)
    assert code == 2 and text in err and "Traceback" not in err and err.strip().count("\n") == 0


def test_simulate_clients_with_a_shared_prefix(capsys):
    # a closed loop of clients whose prompts start with one system prompt: the prefix cache serves it to every request
    out = simulate_scenario(model="llama-3.1-8b", hardware="h100-sxm", engine="vllm", isl=400, osl=50, clients=8,
                            requests=40, seed=0, shared_prefix=0.5).out
    assert out["prefix_cache_hit_tokens"] == 40 * 200
