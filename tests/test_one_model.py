"""One serving model: the same fixed plan through `estimate` (serving/predict), `plan` (search/evaluate) and the
event simulator gives the same answer (issue 11): throughput within 2 %, TTFT/TPOT within 5 % (the simulator at
a low arrival rate and at saturation), identical accuracy and memory.

Output lengths vary (uniform 128..384) so that, at saturation, sequences do not finish in lock-step waves and the
simulator reaches the steady mix the analytic model describes: a share of steps carry a whole prompt, the rest only
decode."""

import numpy as np
import pytest

from planner.costmodel.memory import kv_bytes_per_seq, memory
from planner.costmodel.plans import make_plans
from planner.search.evaluate import Workload
from planner.search.run import Constraints, search
from planner.search.space import SpaceOptions
from planner.serving.predict import PlanSpec, estimate
from planner.serving.simulator import Pool, Simulator, replica_for
from planner.serving.workload import WorkloadSpec, generate
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model

MODEL, HW, ISL, CAP = "llama-3.1-8b", "h100-sxm", 1024, 64


@pytest.fixture(scope="module")
def setup():
    # the engine at saturation: without the API server's thread, whose own ceiling tests/test_api_server_queue.py checks
    eng = get_engine("trtllm").with_(max_seqs=CAP).without_api_thread()
    wl = WorkloadSpec.model_validate({"name": "one-model", "source": "test: uniform outputs", "input": {"dist": "fixed", "value": ISL},
                                      "output": {"dist": "uniform", "min": 128, "max": 384}, "arrival": {"process": "poisson"}})
    osl = round(wl.output.mean_tokens())
    plan = PlanSpec(weights="fp8", kv="fp8")
    est = estimate(MODEL, HW, plan, isl=ISL, osl=osl, concurrency=CAP, engine=eng)
    return eng, wl, osl, plan, est


def test_estimate_and_plan_are_one_computation(setup):
    eng, wl, osl, plan, est = setup
    opts = SpaceOptions(weights=("fp8",), kv=("fp8",), max_pp=1, attention_dp=False, concurrency=(CAP,), chunk_tokens=(0,),
                        offload=False, disaggregated=False)
    res = search(MODEL, [HW], 1, Workload(ISL, osl), Constraints(gpus=1), opts=opts, engine=eng)
    c = res.table.cols
    assert len(res.table) == 1
    assert c["tok_s_per_gpu"][0] == pytest.approx(est.output_tokens_per_s_per_gpu, rel=1e-9)
    assert c["ttft_s"][0] == pytest.approx(est.ttft_s, rel=1e-9)
    assert c["tpot_s"][0] == pytest.approx(est.tpot_s, rel=1e-9)
    assert c["accuracy"][0] == est.accuracy["score"]
    assert c["max_context"][0] == est.max_context_tokens


def test_simulator_admits_what_the_memory_model_admits(setup):
    eng, wl, osl, plan, est = setup
    rep = replica_for(MODEL, HW, weights="fp8", kv="fp8", engine=eng, max_input=ISL + 400)
    m, hw = get_model(MODEL), get_hardware(HW)
    p = make_plans(m, hw, weights="fp8", kv="fp8")
    kv_capacity = float(memory(m, hw, p, eng).kv_capacity_bytes[0])
    per_block = float(kv_bytes_per_seq(m, p, rep.block_tokens, rep.block_tokens)[0])
    assert rep.kv_blocks == int(kv_capacity // per_block)
    assert rep.max_seqs == CAP


def test_simulator_at_low_rate_matches_one_request_alone(setup):
    eng, wl, osl, plan, _ = setup
    alone = estimate(MODEL, HW, plan, isl=ISL, osl=osl, concurrency=1, engine=eng)
    rep = replica_for(MODEL, HW, weights="fp8", kv="fp8", engine=eng, max_input=ISL + 400)
    s = Simulator([Pool(rep, 1)], generate(wl, 40, rate=0.02, seed=3)).run().summary()
    assert s["ttft_s"]["mean"] == pytest.approx(alone.ttft_s, rel=0.05)
    assert s["tpot_s"]["mean"] == pytest.approx(alone.tpot_s, rel=0.05)


def test_simulator_at_saturation_matches_the_steady_state(setup):
    eng, wl, osl, plan, est = setup
    rep = replica_for(MODEL, HW, weights="fp8", kv="fp8", engine=eng, max_input=ISL + 400)
    res = Simulator([Pool(rep, 1)], generate(wl, 6000, rate=500.0, seed=1)).run()
    s = res.summary()
    sim_tok_s = res.steady_throughput() * s["mean_output_tokens"]
    assert sim_tok_s == pytest.approx(est.output_tokens_per_s, rel=0.02)
    assert s["tpot_s"]["mean"] == pytest.approx(est.tpot_s, rel=0.05)
    assert np.isfinite(s["ttft_s"]["mean"])  # at saturation TTFT is the (open) queue's wait: nothing to compare
