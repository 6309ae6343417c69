"""The simulator's data-parallel-attention replica: one scheduler over adp ranks (each tp GPUs, the MoE layers
expert-parallel across them), its limits the ranks' together, a prompt prefilled on one rank, and its steps priced
by the same cost model as estimate's steady state."""

import math

import numpy as np
import pytest

from planner.api import estimate
from planner.costmodel.memory import kv_bytes_per_token_layers, memory
from planner.costmodel.plans import make_plans
from planner.errors import PlannerError
from planner.serving.predict import PlanSpec
from planner.serving.sim import Pool, Simulator, replica_for
from planner.serving.workload import fixed_workload, generate
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model

MODEL, HW = "qwen3-30b-a3b", "h100-sxm"


def _rep(adp=4, engine="vllm", **kw):
    return replica_for(MODEL, HW, tp=1, ep=adp, adp=adp, weights="bf16", kv="bf16", engine=engine, max_input=8192, **kw)


def test_limits_are_the_ranks_together():
    rep = _rep(4)
    eng = get_engine("vllm").for_hardware(get_hardware(HW), 1, 1)
    assert rep.gpus == 4 and rep.plan["attention_dp"] == 4 and "adp4" in rep.name
    assert rep.max_seqs == 4 * eng.max_seqs and rep.max_batched_tokens == 4 * eng.max_batched_tokens
    # KV blocks: what one rank's device holds after its share of the weights (experts split over the 4 ranks), x 4
    m, hw = get_model(MODEL), get_hardware(HW)
    plans = make_plans(m, hw, tp=1, ep=4, adp=4, weights="bf16", kv="bf16", engine=eng)
    full, swa = kv_bytes_per_token_layers(m, plans)
    per_rank = int(float(memory(m, hw, plans, eng).kv_capacity_bytes[0]) // (float(full[0] + swa[0]) * rep.block_tokens))
    assert rep.kv_blocks == 4 * per_rank > 0


def test_saturated_closed_batch_matches_the_steady_state():
    # every request queued at once, equal lengths: requests finish together on every rank and the next prompts enter
    # together, one per rank per prompt step -- the steady state estimate prices; the two agree within 10 %
    isl, osl = 1024, 256
    rep = _rep(4)
    reqs = generate(fixed_workload(isl, osl), 6 * rep.max_seqs, rate=math.inf, seed=0)
    res = Simulator([Pool(rep, 1)], reqs).run()
    sim = res.summary()["output_tokens_per_s"]
    est = estimate(MODEL, HW, PlanSpec(tp=1, ep=4, attention_dp=4, weights="bf16", kv="bf16"), isl=isl, osl=osl,
                   batching="inflight", concurrency="max", engine="vllm")
    assert est.output_tokens_per_s > 0
    assert abs(sim / est.output_tokens_per_s - 1) < 0.10, (sim, est.output_tokens_per_s)


def test_poisson_prompts_land_on_one_rank_at_a_time():
    # at Poisson arrivals a prompt step carries the prompt(s) that arrived, on one rank, and the other ranks' decodes
    # wait for it at the MoE collective. The steady state prices the same: a prompt step carries the first prompt and
    # those that arrive while it waits (until December 2026 it lined one prompt up for every rank and read 0.7-0.9x
    # the simulated inter-token latency at the same mean number of requests in the system)
    isl, osl = 2048, 128
    rep = _rep(4)
    reqs = generate(fixed_workload(isl, osl), 3000, rate=20.0, seed=0)
    s = Simulator([Pool(rep, 1)], reqs).run().summary()
    in_sys = s["queue"]["mean_in_system"]
    est = estimate(MODEL, HW, PlanSpec(tp=1, ep=4, attention_dp=4, weights="bf16", kv="bf16"), isl=isl, osl=osl,
                   batching="inflight", concurrency=int(round(in_sys)), engine="vllm")
    aligned = estimate(MODEL, HW, PlanSpec(tp=1, ep=4, attention_dp=4, weights="bf16", kv="bf16"), isl=isl, osl=osl,
                       batching="inflight", concurrency=int(round(in_sys)), engine="vllm", adp_balance=10_000)
    assert s["completed"] == 3000 and s["tpot_s"]["mean"] > 1.1 * aligned.tpot_s
    assert est.tpot_s == pytest.approx(s["tpot_s"]["mean"], rel=0.15)


def test_balancing_lines_prompts_up_as_the_steady_state_does():
    # TensorRT-LLM's attention-DP balancing holds new prompts until every rank can take one (at most 50 decode steps):
    # prompt steps then carry one prompt per rank, as estimate's steady state prices them, and the simulated
    # inter-token latency is the steady state's at the same load; the prompts pay for it in TTFT
    from planner.serving.sim import Scheduler

    isl, osl = 2048, 128
    reqs = generate(fixed_workload(isl, osl), 3000, rate=20.0, seed=0)
    free = Simulator([Pool(_rep(4), 1)], reqs).run().summary()
    held = Simulator([Pool(_rep(4, sched=Scheduler(adp_balance=50)), 1)], reqs).run().summary()
    est = estimate(MODEL, HW, PlanSpec(tp=1, ep=4, attention_dp=4, weights="bf16", kv="bf16"), isl=isl, osl=osl,
                   batching="inflight", concurrency=int(round(held["queue"]["mean_in_system"])), engine="vllm",
                   adp_balance=50)
    assert held["completed"] == 3000
    assert held["tpot_s"]["mean"] == pytest.approx(est.tpot_s, rel=0.1)
    assert held["tpot_s"]["mean"] < free["tpot_s"]["mean"] and held["ttft_s"]["mean"] > free["ttft_s"]["mean"]
    with pytest.raises(PlannerError, match="needs --attention-dp"):
        _rep(1, sched=Scheduler(adp_balance=50))


def test_a_prompt_is_chunked_at_one_ranks_budget():
    # vLLM chunks prompts; under attention DP one prompt is prefilled on one rank, so a step takes at most that
    # rank's token budget of it (not the group's 4x), and the chunk is priced on that one rank
    rep, one = _rep(4), _rep(1)
    assert rep.max_batched_tokens == 4 * one.max_batched_tokens
    isl = 3 * one.max_batched_tokens
    res = Simulator([Pool(rep, 1)], generate(fixed_workload(isl, 2), 1, rate=1.0, seed=0)).run()
    res1 = Simulator([Pool(one, 1)], generate(fixed_workload(isl, 2), 1, rate=1.0, seed=0)).run()
    assert res.steps == res1.steps == 4  # three chunks, then the second token
    # alone in the group, the prompt costs what it costs one rank; the MoE layers' tokens are spread over 4 ranks'
    # experts instead of held by one and sent there and back, the busiest of the 4 taking more than its share (routing
    # skew, planner.costmodel.step.ep_imbalance), and the tokens cross the 4 ranks' all-to-all at the release's fitted
    # collective efficiency (vLLM 0.15 on Hopper: 0.84 since the December 2026 refit, +12 % here; 0.94 before, +9 %)
    assert res.ttft_s[0] == pytest.approx(res1.ttft_s[0], rel=0.15)


def test_attention_dp_refuses_what_it_does_not_model():
    with pytest.raises(PlannerError, match="data-parallel-attention replica runs without context techniques"):
        _rep(2, lora=object())
    with pytest.raises(PlannerError, match="ep=3|divide|attention"):
        replica_for(MODEL, HW, tp=1, ep=3, adp=2, weights="bf16", engine="vllm")


@pytest.mark.parametrize("engine,adp,chunked,balance", [("vllm", 4, True, None), ("sglang", 2, True, None),
                                                        ("trtllm", 4, False, None), ("trtllm", 4, False, 30),
                                                        ("vllm", 2, True, 10)])
def test_compiled_core_gives_the_python_loops_results(engine, adp, chunked, balance, monkeypatch):
    # the rank budget caps chunks in both loops; a KV cache 30x smaller than the GPU's makes admission wait and
    # (vLLM, SGLang) preempt, so the limits and the admission policies are all exercised
    import dataclasses

    from planner.serving.sim import Scheduler, fastcore

    if fastcore.load() is None:
        pytest.skip(f"compiled core unavailable: {fastcore._error}")
    reqs = generate(fixed_workload(3000, 300), 1500, rate=30.0, seed=1)
    rep = replica_for(MODEL, HW, tp=1, ep=adp, adp=adp, weights="bf16", kv="bf16", engine=engine, max_input=3300,
                      sched=Scheduler(chunked_prefill=chunked, max_batched_tokens=1024 * adp if chunked else None,
                                      adp_balance=balance))
    rep = dataclasses.replace(rep, kv_blocks=max(rep.kv_blocks // 30, 400))
    runs = {}
    for core in ("python", "c"):
        monkeypatch.setenv("PLANNER_SIM_CORE", core)
        runs[core] = Simulator([Pool(rep, 2)], reqs).run()
        assert runs[core].core == core
    py, c = runs["python"], runs["c"]
    for k in ("first_token_s", "finish_s", "preemptions", "replica_busy_s", "replica_mean_batch"):
        assert np.array_equal(getattr(py, k), getattr(c, k), equal_nan=True), k
    assert py.steps == c.steps and py.summary() == c.summary()
    assert py.summary()["queue"]["mean_waiting"] > 10  # admission waits on KV
    if engine != "trtllm":  # on-demand KV (vLLM) and SGLang's ratio admission both preempt here
        assert py.preemptions.sum() > 0


def test_disaggregated_attention_dp_pools_replay_a_plan_row():
    # DeepSeek-V3's production shape: a prefill pool and a decode pool, both data-parallel attention. Replaying the
    # plan search's row at the arrival rate it serves, the decode pool's batch settles where the plan put it and
    # the simulated inter-token latency is the plan's (the decode pool has no prompts: no rank waits on another)
    from planner.serving.run import simulate_scenario
    from planner.studies.params import PlanRequest, plan_search

    res = plan_search(PlanRequest(model="deepseek-v3", hardware=["h200-sxm"], gpus=24, isl=2000, osl=500, weights=["fp8"],
                                  kv=["fp8"]))
    # a decode batch well short of saturation (near it, the rate no longer pins the batch: any batch from ~85 % of
    # the plan's up serves the same tokens/s at its own latency), on a row whose decode pool sets its rate: where the
    # prefill pool binds instead (whole workers rarely match), the decode batch settles below the plan's concurrency
    # and its inter-token latency below the plan's, which prices the decode pool full
    def decode_bound(r):
        rate = r["output_tokens_per_s_per_gpu"] * r["gpus"] / 500
        return r["plan"]["disaggregated"]["decode_workers"] * r["plan"]["concurrency_per_replica"] / (r["tpot_s"] * 500) <= rate * 1.001

    rows = [r for r in res.frontier if r["plan"]["mode"] == "disaggregated" and r["plan"]["attention_dp"] > 1
            and r["plan"]["disaggregated"]["prefill_attention_dp"] > 1 and r["plan"]["concurrency_per_replica"] <= 512
            and decode_bound(r)]
    assert rows
    r = rows[0]
    p, dg = r["plan"], r["plan"]["disaggregated"]
    rate = r["output_tokens_per_s_per_gpu"] * r["gpus"] / 500
    out = simulate_scenario(model="deepseek-v3", hardware="h200-sxm", tp=p["tp"], ep=p["ep"], attention_dp=p["attention_dp"],
                            weights="fp8", kv="fp8", isl=2000, osl=500, rate=rate, requests=6000,
                            disagg=f"{dg['prefill_workers']}:{dg['decode_workers']}", prefill_tp=dg["prefill_tp"],
                            prefill_attention_dp=dg["prefill_attention_dp"], prefill_ep=dg["prefill_ep"]).out
    assert out["gpus"] == r["gpus"] and out["completed"] == 6000
    assert out["tpot_s"]["mean"] == pytest.approx(r["tpot_s"], rel=0.05)
    # the run's ramp and drain count in its duration (6,000 requests, so they weigh less)
    assert out["requests_per_s"] == pytest.approx(rate, rel=0.15)


def test_plan_says_where_an_attention_dp_recommendation_costs_more_online():
    from planner.studies.params import PlanRequest, plan_search

    res = plan_search(PlanRequest(model="deepseek-v3", hardware=["h200-sxm"], gpus=8, weights=["fp8"], disagg=False))
    assert res.recommended["plan"]["attention_dp"] > 1
    assert "Poisson arrivals" in res.why and "planner simulate --attention-dp" in res.why
    res = plan_search(PlanRequest(model="llama-3.1-8b", hardware=["h100-sxm"], gpus=1))
    assert "Poisson" not in res.why


def test_capacity_with_balancing_needs_fewer_gpus_for_attention_dp():
    # DeepSeek-V3 on H200 at 20 req/s of chat, p99 TPOT 50 ms: aggregated attention-DP replicas need more GPUs when
    # prompts enter as they arrive (--attention-dp-balance 0) than when they are lined up across ranks (tp2 ep4 adp4: 64 against 48; a layout
    # that meets the SLO at no GPU count counts as infinitely many); the answer either way needs no more (32 GPUs of
    # tp8 ep8 replicas)
    from planner.search.capacity import capacity
    from planner.serving.workload import get_workload

    runs = {b: capacity("deepseek-v3", "h200-sxm", 20.0, get_workload("chat"), tpot_s=0.05, ttft_s=3.0, weights="fp8",
                        curve=False, adp_balance=b) for b in (0, 50, None)}
    agg = {b: min(c["gpus"] or math.inf for c in r.candidates if " adp" in c["plan"] and "disagg" not in c["plan"])
           for b, r in runs.items()}
    assert agg[50] < agg[0]
    assert agg[None] == agg[50]  # unasked, TensorRT-LLM's profile balances (its 50 steps), as plan --emit deploys it
    for r in runs.values():
        assert r.feasible and r.gpus <= agg[50]
