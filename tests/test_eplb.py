"""Expert-parallel load balancing (planner/costmodel/eplb.py): the placement, the busiest rank against TensorRT-LLM's
measured Table 1, and what --eplb does to a plan's memory and speed."""

import numpy as np
import pytest

from cli_helpers import run, run_json
from planner.costmodel.eplb import EPLB_RESIDUAL_CV, eplb_imbalance, expert_loads, placement_imbalance
from planner.costmodel.step import ROUTING_SKEW, ep_imbalance

# TensorRT-LLM tech blog 4, Table 1 (DeepSeek-R1, 256 routed experts, top-8): routed tokens by rank, mean 1,024
TABLE1 = {"no_eplb_ep32": (491.6, 1.564), "eplb_ep32_288": (52.0, 0.109), "eplb_ep36_288": (53.9, 0.115)}
MEAN = 1024.0


def test_expert_loads_have_the_routing_cv_and_the_measured_tail():
    loads = np.array(expert_loads(256, ROUTING_SKEW))
    assert loads.mean() == pytest.approx(1.0)
    assert np.all(np.diff(loads) <= 0)  # heaviest first
    assert loads.std() / loads.mean() == pytest.approx(ROUTING_SKEW, rel=0.15)  # quantiles trim the far tail
    # Table 1 by expert slot, no EPLB: imbalance ratio 10.948, the hottest of 256 experts 11.95x the mean
    assert loads[0] == pytest.approx(11.948, rel=0.15)
    assert expert_loads(8, 0.0) == (1.0,) * 8


def test_placement_bound():
    # even loads pack evenly; one replica per expert (R = E) halves every slot and still packs evenly
    assert placement_imbalance(256, 0, 32, 0.0) == pytest.approx(1.0)
    assert placement_imbalance(256, 256, 32, 0.0) == pytest.approx(1.0)
    # without replicas the hottest expert sets a floor: its load over a rank's mean (E / ep experts of mean load 1)
    loads = expert_loads(256, ROUTING_SKEW)
    assert placement_imbalance(256, 0, 64, ROUTING_SKEW) >= loads[0] / (256 / 64) - 1e-9
    # replicas split the hot experts: 32 of them bring EP32 and EP64 within a few percent of even (the packing
    # heuristic's granularity leaves ~1-5 %, not monotone in R), from 1.3x and 2.6x
    assert placement_imbalance(256, 0, 32, ROUTING_SKEW) > 1.25 and placement_imbalance(256, 0, 64, ROUTING_SKEW) > 2.5
    bounds = [placement_imbalance(256, r, ep, ROUTING_SKEW) for r in (32, 64, 128) for ep in (32, 64)]
    assert all(1.0 <= b < 1.06 for b in bounds)


def test_residual_is_table1_less_sampling():
    # the residual CV: each EPLB row's rank CV with Binomial(n, 1/ep) sampling taken out in quadrature, then averaged
    res = [np.sqrt((sd / MEAN) ** 2 - (1 - 1 / ep) / MEAN) for (sd, _), ep in
           ((TABLE1["eplb_ep32_288"], 32), (TABLE1["eplb_ep36_288"], 36))]
    assert EPLB_RESIDUAL_CV == pytest.approx(np.mean(res), abs=5e-4)


@pytest.mark.parametrize("key,ep,redundant", [("eplb_ep32_288", 32, 32), ("eplb_ep36_288", 36, 32)])
def test_busiest_rank_against_table1(key, ep, redundant):
    measured = 1.0 + TABLE1[key][1]
    got = float(eplb_imbalance(MEAN * ep, ep, 256, redundant, ROUTING_SKEW))
    assert got == pytest.approx(measured, rel=0.04)
    # without the balancer the same traffic loads the busiest rank 2.56x (ep_imbalance prices 2.2x: lighter-tailed)
    assert float(ep_imbalance(MEAN * 32, 32, 256, ROUTING_SKEW)) > 2.0 * got - 0.2


def test_one_rank_has_no_imbalance():
    assert float(eplb_imbalance(1000.0, 1, 256, 32, ROUTING_SKEW)) == 1.0
    got = eplb_imbalance(np.array([64.0, 64.0 * 1024]), np.array([8, 8]), 256, 0, ROUTING_SKEW)
    assert got[0] > got[1] > 1.0  # fewer tokens, more sampling noise


def _est(capsys, *extra):
    return run_json(["estimate", "-m", "deepseek-v3", "-H", "h200-sxm", "--gpus", "32", "--attention-dp", "32", "--ep", "32",
                     "--concurrency", "1024", "--isl", "1000", "--osl", "1000", "--json",
                     "--stream-interval", "64", *extra], capsys)  # the ranks' pace, not the API server's thread


def test_estimate_with_eplb(capsys):
    base, bal, place = _est(capsys), _est(capsys, "--eplb", "32"), _est(capsys, "--eplb", "0")
    assert base["plan"]["eplb"] is None and bal["plan"]["eplb"] == 32 and bal["plan"]["techniques"]["eplb"] == 32
    # 32 redundant slots hold replicas: 9 experts a rank where there were 8, the rest of the weights unchanged
    from planner.specs.loader import get_model

    m = get_model("deepseek-v3")
    expert_bytes = m.param_counts()["experts"] / 32  # FP8: one byte a weight on each of the 32 ranks (scales aside)
    extra = bal["memory"]["weights_bytes"] - base["memory"]["weights_bytes"]
    assert extra == pytest.approx(expert_bytes * 32 / 256, rel=0.05)
    assert place["memory"]["weights_bytes"] == pytest.approx(base["memory"]["weights_bytes"])
    # the busiest rank sets the pace of the experts and the all-to-all: balanced, the step is faster
    ops = lambda d: {r["op"]: r["time_s"] for r in d["breakdown"]["decode"]}  # noqa: E731
    assert ops(bal)["ep_alltoall"] < 0.7 * ops(base)["ep_alltoall"]
    assert ops(bal)["experts"] < ops(base)["experts"]
    assert bal["output_tokens_per_s"] > 1.3 * base["output_tokens_per_s"]


@pytest.mark.parametrize("args,msg", [
    (["-m", "llama-3.1-8b", "-H", "h100-sxm", "--eplb", "4"], "dense"),
    (["-m", "deepseek-v3", "-H", "h200-sxm", "--gpus", "8", "--eplb", "4"], "--ep 2 or more"),
    (["-m", "deepseek-v3", "-H", "h200-sxm", "--gpus", "8", "--ep", "8", "--eplb", "4", "--engine", "trtllm@0.14"],
     "no expert-parallel load balancer"),
    (["-m", "deepseek-v3", "-H", "h200-sxm", "--gpus", "8", "--ep", "8", "--eplb", "3"], "259 expert slots"),
    (["-m", "qwen3-30b-a3b", "-H", "h100-sxm", "--gpus", "2", "--ep", "2", "--eplb", "2", "--moe-offload", "experts:0.5"],
     "use one"),
])
def test_eplb_errors(capsys, args, msg):
    code, out, err = run(["estimate", *args], capsys)
    assert code == 2 and msg in err and "Traceback" not in err


def test_plan_search_with_eplb(capsys):
    from planner.search.evaluate import Workload
    from planner.search.run import Constraints, search
    from planner.search.space import SpaceOptions

    wl, cons = Workload(1000, 1000), Constraints(gpus=32)
    plain = search("deepseek-v3", ["h200-sxm"], 32, wl, cons)
    res = search("deepseek-v3", ["h200-sxm"], 32, wl, cons, opts=SpaceOptions(eplb=32))
    # each expert-parallel layout is searched twice, its experts in order and balanced: more plans, no fewer kept
    assert res.plans_evaluated > plain.plans_evaluated and len(res.frontier) > 0
    balanced = [r for r in res.frontier if r["plan"].get("eplb_redundant_experts") == 32
                or (r["plan"].get("disaggregated") or {}).get("prefill_eplb_redundant_experts") == 32]
    assert balanced and all("eplb32" in r["label"] for r in balanced)
    for r in res.frontier:  # a balanced replica is an expert-parallel one
        if r["plan"].get("eplb_redundant_experts") is not None:
            assert r["plan"]["ep"] > 1
    # the balanced variants can only add to the best tokens/s per GPU the search finds
    best = lambda x: max(r["output_tokens_per_s_per_gpu"] for r in x.frontier)  # noqa: E731
    assert best(res) >= best(plain) - 1e-9
    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "2", "--eplb", "8"], capsys)
    assert code == 2 and "dense" in err
    code, out, err = run(["plan", "-m", "deepseek-v3", "-H", "h200-sxm", "--gpus", "16", "--eplb", "8", "--engine", "vllm@0.6"],
                         capsys)
    assert code == 2 and "no expert-parallel load balancer" in err


def test_emitted_eplb_flags():
    from planner.report.emit import emit, split_script

    plan = dict(model="deepseek-v3", hf_repo="deepseek-ai/DeepSeek-V3", hardware="h200-sxm", gpus=16, tp=16, pp=1, ep=16,
                dp=1, attention_dp=True, attention_dp_size=16, weights="fp8", kv="bf16", max_num_seqs=512,
                max_num_batched_tokens=16384, chunked_prefill=True, max_model_len=16384, speculative=None,
                disaggregated=None, kv_offload_gib=0, gpu_memory_utilization=0.9, eplb_redundant_experts=32)
    vllm = " ".join(split_script(emit("vllm", plan))[0][0])
    assert "--enable-eplb" in vllm and "num_redundant_experts" in vllm and "32" in vllm
    sglang = split_script(emit("sglang", plan))[0][0]
    assert "--enable-eplb" in sglang and sglang[sglang.index("--ep-num-redundant-experts") + 1] == "32"
    import yaml

    files = split_script(emit("trtllm", plan))[1]
    opts = yaml.safe_load(files["extra-llm-api-config.yml"])
    assert opts["moe_config"]["load_balancer"] == {"num_slots": 256 + 32, "layer_updates_per_iter": 1}
    from planner.errors import PlannerError

    with pytest.raises(PlannerError, match="ep >= 2"):
        emit("vllm", dict(plan, tp=8, ep=1, attention_dp=False, attention_dp_size=1, gpus=8))
    # disaggregated: each role takes its own balancer (the search's prefill_eplb_redundant_experts for prefill)
    dis = dict(plan, gpus=32, eplb_redundant_experts=None,
               disaggregated={"prefill_workers": 1, "decode_workers": 1, "prefill_tp": 16, "decode_tp": 16,
                              "prefill_attention_dp": 16, "decode_attention_dp": 16, "prefill_eplb_redundant_experts": 16})
    cmds = [c for c in split_script(emit("sglang", dis))[0] if "--ep-size" in c]
    assert len(cmds) == 2
    assert sum("--enable-eplb" in c for c in cmds) == 1  # the prefill worker only
    pre = next(c for c in cmds if "--enable-eplb" in c)
    assert pre[pre.index("--ep-num-redundant-experts") + 1] == "16"


def test_simulate_with_eplb(capsys):
    from planner.serving.run import simulate_scenario
    from planner.specs.engine import get_engine

    # the ranks' pace: an engine without the API server's thread, whose serial preparation of a burst would set it
    kw = dict(model="qwen3-30b-a3b", hardware="h100-sxm", attention_dp=8, ep=8, gpus=8, rate="inf", requests=400, isl=512,
              osl=256, engine=get_engine("trtllm").without_api_thread())
    base, bal = simulate_scenario(**kw).out, simulate_scenario(**kw, eplb=8).out
    # the same requests, served by ranks that share the experts' load: the burst finishes sooner
    assert bal["requests_per_s"] > 1.03 * base["requests_per_s"] and bal["completed"] == base["completed"] == 400
    assert bal["pools"][0]["plan"]["eplb_redundant_experts"] == 8 and "eplb_redundant_experts" not in base["pools"][0]["plan"]
    code, out, err = run(["simulate", "-m", "qwen3-30b-a3b", "-H", "h100-sxm", "--gpus", "2", "--rate", "inf", "--eplb", "4"], capsys)
    assert code == 2 and "--ep 2 or more" in err
