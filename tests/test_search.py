"""Plan search: constraints hold on the frontier, nothing evaluated dominates it, infeasibility is explained."""

import json

import numpy as np
import pytest

from cli_helpers import run
from planner.cli.app import main
from planner.search.evaluate import Workload
from planner.search.pareto import dominated_by_any, pareto_mask
from planner.search.run import Constraints, search
from planner.search.space import SpaceOptions


@pytest.fixture(scope="module")
def l70():
    return search("llama-3.1-70b", ["h100-sxm"], 8, Workload(2000, 500), Constraints(8, ttft_s=2.0, tpot_s=0.05))


def test_frontier_meets_constraints_and_is_not_dominated(l70):
    assert l70.frontier and l70.recommended
    for d in l70.frontier:
        assert d["ttft_s"] <= 2.0 and d["tpot_s"] <= 0.05 and d["gpus"] <= 8
    c = l70.table.cols
    every = np.column_stack([c["tok_s_per_gpu"], c["tok_s_per_user"], c["accuracy"], c["max_context"]])
    front = np.array([[d["output_tokens_per_s_per_gpu"], d["output_tokens_per_s_per_user"], d["accuracy"],
                       d["max_context_tokens"]] for d in l70.frontier])
    # every evaluated plan that meets the constraints is in the table; none beats a frontier plan everywhere
    assert not dominated_by_any(front, every).any()
    # and the recommendation is the best feasible plan by the objective (ties within 0.5 % go to accuracy)
    assert l70.recommended["output_tokens_per_s_per_gpu"] >= 0.995 * c["tok_s_per_gpu"].max()
    tied = c["tok_s_per_gpu"] >= 0.995 * c["tok_s_per_gpu"].max()
    assert l70.recommended["accuracy"] == pytest.approx(c["accuracy"][tied].max())


def test_pareto_mask_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.integers(0, 5, (300, 4)).astype(float)
        assert (pareto_mask(x) == ~dominated_by_any(x, x)).all()


def test_min_accuracy_and_context_are_respected(l70):
    r = search("llama-3.1-70b", ["h100-sxm"], 8, Workload(2000, 500),
               Constraints(8, ttft_s=2.0, tpot_s=0.05, min_accuracy=0.99, min_context=131072))
    assert r.frontier
    assert all(d["accuracy"] >= 0.99 and d["max_context_tokens"] >= 131072 for d in r.frontier)
    assert r.recommended["output_tokens_per_s_per_gpu"] <= l70.recommended["output_tokens_per_s_per_gpu"]


def test_speculation_formula_changes_tokens_per_step():
    # with acceptance 0.8 and 3 drafts a step yields (1 - 0.8^4) / (1 - 0.8) = 2.952 tokens per sequence
    opts = SpaceOptions(weights=("fp8",), kv=("fp8",), speculative=((3, 0.8),), disaggregated=False, offload=False,
                        chunk_tokens=(0,), concurrency=(1,))
    r = search("llama-3.1-8b", ["h100-sxm"], 1, Workload(512, 256), Constraints(1), opts=opts)
    c = r.table.cols
    plain = (c["spec_k"] == 0)
    spec = (c["spec_k"] == 3)
    # at batch 1 decoding is bandwidth bound: verifying 4 tokens costs about one step, so TPOT drops ~2.5-3x
    ratio = c["tpot_s"][plain][0] / c["tpot_s"][spec][0]
    assert 1.8 < ratio < 2.952


def test_infeasible_names_the_binding_constraint(capsys):
    code = 0
    try:
        main(["plan", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "8", "--tpot", "0.001", "--json"])
    except SystemExit as e:
        code = e.code or 0
    d = json.loads(capsys.readouterr().out)
    assert code == 2 and d["recommended"] is None  # nothing meets the constraints: exit 2, the JSON still says why
    assert any(line.startswith("tpot binds") for line in d["infeasible"])
    assert d["nearest"]


def test_plan_json_contract(capsys):
    try:
        main(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm,l40s", "--gpus", "2", "--ttft", "1", "--json"])
    except SystemExit as e:
        assert not e.code
    d = json.loads(capsys.readouterr().out)
    assert d["search"]["plans_evaluated"] > 0 and d["timing"]["wall_s"] >= 0
    keys = {"gpus", "plan", "ttft_s", "tpot_s", "output_tokens_per_s_per_gpu", "output_tokens_per_s_per_user", "accuracy",
            "max_context_tokens", "usd_per_million_output_tokens"}
    assert keys <= set(d["recommended"])
    assert all(keys <= set(p) for p in d["frontier"])
    assert {p["plan"]["hardware"] for p in d["frontier"]} <= {"h100-sxm", "l40s"}


def test_moe_search_has_expert_and_attention_dp_plans():
    opts = SpaceOptions(weights=("fp8",), kv=("bf16",), disaggregated=True)
    r = search("deepseek-v3", ["h200-sxm"], 16, Workload(1000, 200), Constraints(16), opts=opts)
    c = r.table.cols
    assert (c["ep"] > 1).any() and (c["adp"] > 1).any() and c["disagg"].any()


def test_plot_written(tmp_path, capsys):
    out = tmp_path / "f.png"
    try:
        main(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1", "--plot", str(out)])
    except SystemExit as e:
        assert not e.code
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


def test_a_device_without_bf16_searches_an_fp16_cache():
    """Volta and Turing have no bf16 units: the search's 16-bit KV candidate there is fp16 (engines run such models
    with --dtype half), while an explicit --kv is kept as asked."""
    from planner.search.space import SpaceOptions, precisions
    from planner.specs.loader import get_hardware

    for hid in ("v100-sxm2-32gb", "t4"):
        hw = get_hardware(hid)
        assert not hw.supports("bf16") and hw.supports("fp16")
        ws, kvs = precisions(hw, SpaceOptions())
        assert "fp16" in kvs and "bf16" not in kvs and "bf16" not in ws, hid
    _, kvs = precisions(get_hardware("h100-sxm"), SpaceOptions())
    assert "bf16" in kvs and "fp16" not in kvs
    _, kvs = precisions(get_hardware("t4"), SpaceOptions(kv=["bf16"]))
    assert kvs == ["bf16"]


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_plan_rows_are_what_estimate_says_of_them(engine):
    # every aggregated row the search prices equals `estimate` of the same layout, engine and clients: the search
    # once built vLLM's and SGLang's rows with TensorRT-LLM's kernel efficiencies (3-5 % apart from estimate)
    from planner.api import PlanSpec, estimate

    res = search("mixtral-8x7b", ["h100-sxm"], 4, Workload(1024, 256), Constraints(gpus=4), engine=engine,
                 opts=SpaceOptions(disaggregated=False))
    rows = [r for r in res.frontier if r["plan"]["mode"] == "aggregated" and not r["plan"]["speculative"]
            and not r["plan"]["kv_offload_to_host"]][:6]  # (offload rows split host and device KV a little differently)
    assert len(rows) >= 3
    for r in rows:
        p = r["plan"]
        e = estimate("mixtral-8x7b", "h100-sxm", PlanSpec(tp=p["tp"], pp=p["pp"], ep=p["ep"], dp=p["replicas"],
                                                          weights=p["weights"], kv=p["kv"],
                                                          chunk_tokens=p["chunked_prefill_tokens"] or 0),
                     isl=1024, osl=256, concurrency=p["concurrency_per_replica"] * p["replicas"], engine=engine)
        assert e.output_tokens_per_s_per_gpu == pytest.approx(r["output_tokens_per_s_per_gpu"], rel=1e-6), r["label"]
        assert e.tpot_s == pytest.approx(r["tpot_s"], rel=1e-6) and e.ttft_s == pytest.approx(r["ttft_s"], rel=1e-6)


def test_host_kv_offload_does_not_rescue_weights_that_do_not_fit():
    # gpt-oss-120b in fp8 is 110 GiB of weights: no H100 layout holds them, whatever KV goes to host memory. The
    # search used to count host memory toward the weights' room and recommended such a plan ('kv-offload'), which
    # estimate refuses; every config it prices now fits its weights on the device
    from planner.api import PlanSpec, estimate
    from planner.search.space import enumerate_configs
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware, get_model

    m, hw = get_model("gpt-oss-120b"), get_hardware("h100-sxm")
    cfg = enumerate_configs(m, hw, 1, SpaceOptions(weights=("fp8", "mxfp4")), get_engine("trtllm"), need_tokens=1280)
    assert "fp8" not in cfg.weights and "mxfp4" in cfg.weights
    assert cfg.pruned["pruned: weights do not fit"] >= 1
    assert not estimate("gpt-oss-120b", "h100-sxm", PlanSpec(weights="fp8", kv_offload=True)).fits
    res = search("gpt-oss-120b", ["h100-sxm"], 1, Workload(1024, 256), Constraints(gpus=1, min_accuracy=0.9),
                 opts=SpaceOptions(weights=("fp8", "mxfp4")))
    assert all(r["plan"]["weights"] == "mxfp4" for r in res.frontier)


def test_a_model_is_searched_in_the_format_it_is_released_in():
    # gpt-oss-120b is released with MXFP4 experts; Hopper has no FP4 tensor cores, so MXFP4 is not among the formats
    # the search tries by default, yet the released model runs there (weight-only, dequantized): one H100 serves it
    res = search("gpt-oss-120b", ["h100-sxm"], 1, Workload(1024, 256), Constraints(gpus=1, min_accuracy=0.99))
    released = [r for r in res.frontier if r["plan"]["weights"] == "mxfp4"]
    assert released and res.recommended["plan"]["weights"] == "mxfp4"  # the CLI's default 0.99 floor
    # the released format costs no accuracy against the release
    assert all("mxfp4 weights" not in r["trade"] for r in released)


def test_an_attention_dp_prefill_pool_is_priced_at_the_prompts_its_step_holds():
    """Each attention-DP rank of a prefill worker schedules its own batch of whole prompts within the engine's token
    budget, so one step of the worker holds floor(budget / isl) prompts per rank: the row's prefill time (its TTFT
    less the KV transfer and the front end's per-request time) is the cost model's step for that many prompts, and its
    rate is that many per step."""
    from planner.costmodel.plans import make_plans
    from planner.costmodel.step import CostModel, Step
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware, get_model
    from planner.studies.params import PlanRequest, plan_search

    m, hw = get_model("deepseek-v3"), get_hardware("h200-sxm")
    res = plan_search(PlanRequest(model="deepseek-v3", hardware=["h200-sxm"], gpus=24, isl=2000, osl=500, weights=["fp8"],
                                  kv=["fp8"]))
    rows = [r for r in res.frontier if r["plan"]["mode"] == "disaggregated"
            and r["plan"]["disaggregated"]["prefill_attention_dp"] > 1]
    assert rows
    eng = get_engine("trtllm").for_hardware(hw)
    for r in rows[:3]:
        dg = r["plan"]["disaggregated"]
        adp = dg["prefill_attention_dp"]
        prompts = (eng.max_batched_tokens // 2000) * adp
        p = make_plans(m, hw, tp=dg["prefill_tp"], pp=dg["prefill_pp"], ep=dg["prefill_ep"], adp=adp, weights="fp8",
                       kv="fp8", check=False, engine=eng)
        t = float(np.ravel(CostModel(m, hw, engine=eng).step(p, Step(prefill_seqs=prompts, prefill_tokens=2000)).time_s)[0])
        assert r["ttft_s"] - dg["prefill_wait_s"] - dg["kv_transfer_s"] - eng.request_overhead_s == pytest.approx(t, rel=1e-6)


def test_a_disaggregated_row_that_its_prefill_pool_limits_queues_its_clients(capsys):
    """A disaggregated row serves min(x prefill workers' prompts/s, y decode workers' requests/s). Its clients are
    its decode slots (y workers x c): by Little's law each one's cycle is clients / rate, of which (osl - 1) x TPOT is
    its decode, so where the prefill pool is the slower side the rest, its TTFT, holds the wait for that pool; where
    the decode pool is, nothing waits. Checked on every disaggregated row of a search against that arithmetic,
    in seconds, and against the simulator: the row the README replays (DeepSeek-V3 on 24 H200, 2000/500, vLLM, which
    runs the INT8 W8A8 its best rows take on Hopper) served by its closed-loop clients waits about as long as the row says."""
    from planner.search.evaluate import queued_ttft
    from planner.studies.params import PlanRequest, plan_search

    # arithmetic: 512 clients at 25.6 requests/s cycle in 20 s; 499 decode steps of 34 ms leave 3.03 s
    assert queued_ttft(512, 25.6, 500, 0.034) == pytest.approx(20.0 - 499 * 0.034)
    assert queued_ttft(512, 512 / (500 * 0.034), 500, 0.034) == pytest.approx(0.034)  # the decode pool sets the rate
    res = plan_search(PlanRequest(model="deepseek-v3", hardware=["h200-sxm"], gpus=24, isl=2000, osl=500, tpot=0.04,
                                  engine="vllm"))
    rows = [r for r in res.frontier if r["plan"]["mode"] == "disaggregated"]
    assert rows
    waited = 0
    for r in rows:
        dg, p = r["plan"]["disaggregated"], r["plan"]
        clients = dg["decode_workers"] * p["concurrency_per_replica"]
        rate = r["output_tokens_per_s_per_gpu"] * r["gpus"] / 500  # requests/s
        cycle = clients / rate
        assert dg["prefill_wait_s"] >= 0.0
        if dg["prefill_wait_s"] > 0.0:  # queued: the row's TTFT closes the cycle
            waited += 1
            assert r["ttft_s"] + 499 * r["tpot_s"] == pytest.approx(cycle, rel=1e-9)
        else:  # not queued: the cycle holds no more than the unqueued TTFT
            assert r["ttft_s"] + 499 * r["tpot_s"] >= cycle * (1 - 1e-9)
    assert waited > 0
    top = rows[0]
    dg, p = top["plan"]["disaggregated"], top["plan"]
    assert dg["prefill_wait_s"] > 0.5  # its one prefill worker is the slower side
    # the simulator, the same pools at the same clients: its mean TTFT is the row's within a factor 2 (the start-up
    # burst of every client at once and the rate's sensitivity near the knee); without the wait it was not
    args = ["simulate", "-m", "deepseek-v3", "-H", "h200-sxm", "--engine", "vllm", "--tp", str(p["tp"]), "--ep", str(p["ep"]),
            "--attention-dp", str(p["attention_dp"]), "--weights", p["weights"], "--kv", p["kv"],
            "--disagg", f"{dg['prefill_workers']}:{dg['decode_workers']}", "--prefill-tp", str(dg["prefill_tp"]),
            "--prefill-attention-dp", str(dg["prefill_attention_dp"]), "--prefill-ep", str(dg["prefill_ep"]),
            "--clients", str(dg["decode_workers"] * p["concurrency_per_replica"]), "--requests", "3000",
            "--isl", "2000", "--osl", "500", "--json"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    sim_ttft = json.loads(out)["ttft_s"]["mean"]
    assert 0.5 < top["ttft_s"] / sim_ttft < 2.0
    assert (top["ttft_s"] - dg["prefill_wait_s"]) / sim_ttft < 0.5



def test_plan_recommends_nothing_estimate_refuses_on_memory():
    """A plan holds the weights, activations and runtime on the device at the engine's limits there (vLLM's H100
    defaults: 1,024 sequences, whose sampler and activation peak gpt-oss-120b's 64.5 GiB of MXFP4 weights leave no room
    for at 0.9); KV offload moves KV, not those. So no one-GPU MXFP4 plan of it is on the frontier at vLLM's default
    fraction, and each aggregated plan that is fits when estimate prices it."""
    from planner.api import estimate, plan
    from planner.serving.planspec import PlanSpec

    rows = plan("gpt-oss-120b", "h100-sxm", 1, isl=1000, osl=1000, engine="vllm", min_accuracy=None, top=50).model_dump()["frontier"]
    assert rows and all(r["plan"]["weights"] != "mxfp4" for r in rows)
    for r in rows[:5]:
        p = r["plan"]
        if p["mode"] != "aggregated":
            continue
        e = estimate("gpt-oss-120b", "h100-sxm", PlanSpec(tp=p["tp"], weights=p["weights"], kv=p["kv"],
                                                           kv_offload=p["kv_offload_to_host"]),
                     isl=1000, osl=1000, concurrency=p["concurrency_per_replica"], engine="vllm")
        assert e.memory["fits"], r["label"]
