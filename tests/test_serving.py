"""Serving dynamics: workloads, the continuous-batching event simulator, capacity, estimate --rate."""

import dataclasses
import json
import math

import numpy as np
import pytest

from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step
from planner.errors import PlannerError
from planner.search.capacity import capacity
from planner.serving.simulator import SLO, Pool, Router, Scheduler, Simulator, replica_for, size_substitution, spec_tokens_per_step
from planner.serving.workload import Lengths, fixed_workload, generate, get_workload, read_trace
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model
from cli_helpers import run


@pytest.fixture(scope="module")
def rep8():
    return replica_for("llama-3.1-8b", "h100-sxm", max_input=20000)




# ---------------------------------------------------------------- workloads

def test_workload_seeded_and_distributions():
    w = get_workload("chat")
    a, b = generate(w, 500, rate=3.0, seed=7), generate(w, 500, rate=3.0, seed=7)
    assert np.array_equal(a.input_tokens, b.input_tokens) and np.array_equal(a.arrival_s, b.arrival_s)
    c = generate(w, 500, rate=3.0, seed=8)
    assert not np.array_equal(a.input_tokens, c.input_tokens)
    # Poisson rate: 500 arrivals span about 500/3 s
    assert a.arrival_s[-1] == pytest.approx(500 / 3.0, rel=0.15)
    # lognormal median as specified (1020)
    big = generate(w, 20000, rate=1.0, seed=1)
    assert np.median(big.input_tokens) == pytest.approx(1020, rel=0.05)
    # gamma arrivals: the gaps' coefficient of variation is the one asked for (BurstGPT shape 0.5 -> cv 1.41)
    g = generate(get_workload("burstgpt"), 20000, rate=2.0, seed=1)
    gaps = np.diff(g.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(math.sqrt(2.0), rel=0.1)
    assert gaps.mean() == pytest.approx(0.5, rel=0.05)
    # zipf lengths stay in bounds and favour short ones
    z = Lengths(dist="zipf", a=1.1, min=16, max=4096).sample(np.random.default_rng(0), 5000)
    assert z.min() >= 16 and z.max() <= 4096 and np.median(z) < 400


def test_workload_yaml_empirical_and_errors(tmp_path):
    (tmp_path / "lens.csv").write_text("tokens\n100\n200\n300\n")
    (tmp_path / "w.yaml").write_text(
        "name: mine\ninput: {dist: empirical, file: lens.csv, column: tokens}\noutput: {dist: normal, mean: 50, std: 5}\n"
        "arrival: {process: gamma, cv: 2}\nrate: 4\nshared_prefix: 0.25\n")
    spec = get_workload(str(tmp_path / "w.yaml"))
    r = generate(spec, 300, seed=0)
    assert set(np.unique(r.input_tokens)) <= {100, 200, 300}
    assert np.all(r.prefix_tokens == np.floor(0.25 * r.input_tokens))
    (tmp_path / "bad.yaml").write_text("input: {dist: lognormal, mean: 10}\noutput: {dist: fixed, value: 3}\n")
    with pytest.raises(PlannerError, match="lognormal"):
        get_workload(str(tmp_path / "bad.yaml"))
    with pytest.raises(PlannerError, match="did you mean"):
        get_workload("chatt")
    with pytest.raises(PlannerError, match="rate"):
        generate(fixed_workload(10, 10), 5)


BURSTGPT = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
47,GPT-4,417,157,574,Conversation log
49,ChatGPT,1360,230,1590,API log
60,ChatGPT,260,12,272,Conversation log
61,GPT-4,1000,100,1100,API log
"""


def test_trace_replay_burstgpt_columns(tmp_path, rep8):
    p = tmp_path / "burst.csv"
    p.write_text(BURSTGPT)
    r = read_trace(p)
    assert len(r) == 5  # the failed row (0 response tokens) is dropped
    assert list(r.arrival_s) == [0, 42, 44, 55, 56]
    assert list(r.input_tokens) == [472, 417, 1360, 260, 1000]
    res = Simulator([Pool(rep8, 1)], r).run()
    assert res.done.all()
    assert np.all(res.first_token_s >= res.arrival_s)
    # rescaled to a mean rate of 1 req/s: 4 gaps over 4 s
    assert read_trace(p, rate=1.0).arrival_s[-1] == pytest.approx(4.0)


# ---------------------------------------------------------------- the simulator

def test_seeded_determinism(rep8):
    reqs = generate(get_workload("chat"), 800, rate=6.0, seed=3)
    a = Simulator([Pool(rep8, 2)], reqs).run()
    b = Simulator([Pool(rep8, 2)], generate(get_workload("chat"), 800, rate=6.0, seed=3)).run()
    assert np.array_equal(a.finish_s, b.finish_s) and np.array_equal(a.first_token_s, b.first_token_s)
    assert a.summary() == b.summary()


def test_low_load_matches_one_step_of_the_cost_model(rep8):
    m, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    cm = CostModel(m, hw, engine=get_engine("trtllm"))
    p = make_plans(m, hw, tp=1)
    isl, osl = 512, 64
    res = Simulator([Pool(rep8, 1)], generate(fixed_workload(isl, osl), 40, rate=0.05, seed=0)).run()
    prefill = float(cm.step(p, Step(prefill_seqs=1, prefill_tokens=isl)).time_s[0])
    decode = float(cm.step(p, Step(decode_seqs=1, decode_ctx=isl + osl / 2)).time_s[0])
    # a request that finds the engine idle: TTFT is its front end's per-request time, the API server thread's
    # preparation and first chunk (tests/test_api_server_queue.py) and one prefill step (the median: the few that
    # arrive while another decodes wait one step more under TensorRT-LLM 1.x's scheduling ahead, as
    # tests/test_simulator.py checks)
    eng = get_engine("trtllm")
    front = eng.request_overhead_s + eng.api_request_s + eng.api_chunk_s
    assert np.median(res.ttft_s) == pytest.approx(prefill + front, rel=0.03)
    assert np.mean(res.tpot_s) == pytest.approx(decode, rel=0.03)
    assert np.all(res.preemptions == 0)


def test_littles_law_and_goodput(rep8):
    rate = 12.0
    res = Simulator([Pool(rep8, 1)], generate(fixed_workload(300, 150), 3000, rate=rate, seed=2)).run()
    med = res.summary()
    s = res.summary(SLO(ttft_s=med["ttft_s"]["p90"], tpot_s=med["tpot_s"]["p90"]))
    # L = lambda W: the sampled queue (waiting + running) against rate x mean latency
    assert s["queue"]["mean_in_system"] == pytest.approx(rate * s["e2e_latency_s"]["mean"], rel=0.05)
    assert res.mean_in_system() == pytest.approx(rate * s["e2e_latency_s"]["mean"], rel=0.05)
    assert s["requests_per_s"] == pytest.approx(rate, rel=0.05)
    assert s["slo"]["goodput_requests_per_s"] <= s["requests_per_s"] + 1e-12
    assert 0.75 < s["slo"]["attainment"] < 0.9  # two p90 limits: between 80 % and 90 % meet both
    for k in ("ttft_s", "tpot_s", "e2e_latency_s"):
        d = s[k]
        assert d["p50"] <= d["p90"] <= d["p99"] <= d["max"]


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_preemption_when_kv_runs_out(mode):
    rep = replica_for("llama-3.1-8b", "h100-sxm", sched=Scheduler(admission="ondemand", preemption=mode))
    tiny = dataclasses.replace(rep, kv_blocks=120)  # 7,680 tokens: a handful of 1K-token sequences
    res = Simulator([Pool(tiny, 1)], generate(fixed_workload(400, 600), 150, rate=30.0, seed=1)).run()
    s = res.summary()
    assert s["preemptions"] > 0
    assert s["completed"] == 150 and s["rejected"] == 0
    assert np.all(np.isfinite(res.finish_s))
    # reserve admission never preempts: it waits instead
    rs = dataclasses.replace(tiny, reserve=True)
    r2 = Simulator([Pool(rs, 1)], generate(fixed_workload(400, 600), 150, rate=30.0, seed=1)).run()
    assert r2.summary()["preemptions"] == 0 and r2.done.all()


def test_request_larger_than_kv_is_rejected(rep8):
    tiny = dataclasses.replace(rep8, kv_blocks=4)
    res = Simulator([Pool(tiny, 1)], generate(fixed_workload(1000, 10), 3, rate=1.0, seed=0)).run()
    assert res.rejected.all() and any("rejected" in n for n in res.notes)


def test_speculative_chunked_disagg_and_multiturn(rep8):
    reqs = generate(fixed_workload(1000, 200), 300, rate=4.0, seed=0)
    base = Simulator([Pool(rep8, 1)], reqs).run().summary()
    spec = replica_for("llama-3.1-8b", "h100-sxm", sched=Scheduler(spec_k=3, spec_alpha=0.8))
    s = Simulator([Pool(spec, 1)], reqs).run().summary()
    assert spec_tokens_per_step(3, 0.8) == pytest.approx((1 - 0.8**4) / 0.2)
    assert s["tpot_s"]["mean"] < 0.6 * base["tpot_s"]["mean"]
    # chunked prefill with a small budget: long prompts take several steps
    ch = replica_for("llama-3.1-8b", "h100-sxm", sched=Scheduler(chunked_prefill=True, max_batched_tokens=256))
    c = Simulator([Pool(ch, 1)], reqs).run().summary()
    assert c["ttft_s"]["p50"] > base["ttft_s"]["p50"]
    # disaggregated: TTFT is prefill alone; decode replicas get the KV over NVLink
    d = Simulator([Pool(rep8, 1, "prefill"), Pool(rep8, 1, "decode")], reqs).run()
    assert d.done.all() and d.summary()["ttft_s"]["mean"] < base["ttft_s"]["mean"]
    # multi-turn: later turns hit the prefix cache on the same replica (session affinity)
    mt = generate(get_workload("chat-multiturn"), 400, rate=1.0, seed=0)
    r = Simulator([Pool(rep8, 2)], mt, router=Router("round-robin")).run()
    assert r.done.all() and r.cache_hit_tokens > 0
    par = mt.parent
    assert np.all(r.replica[par >= 0] == r.replica[par[par >= 0]])
    assert np.all(r.arrival_s[par >= 0] >= r.finish_s[par[par >= 0]])


def test_fleet_threshold_router():
    from planner.serving.simulator import fleet_pools, fleet_report

    assert size_substitution("llama-3.1-8b", "llama-3.1-70b") == pytest.approx(68.4 / 82.0)
    pools, _ = fleet_pools([("llama-3.1-8b", 1, 1), ("llama-3.1-70b", 1, 4)], "h100-sxm", max_input=4096)
    assert pools[0].replica.model_id == "llama-3.1-70b"  # biggest first
    wl = get_workload("chat").model_copy(update={"arrival": get_workload("burstgpt").arrival})
    reqs = generate(wl, 1500, rate=6.0, seed=0)
    slo = SLO(2.0, 0.2)
    thr = fleet_report(Simulator(pools, reqs, router=Router("threshold:16")).run(), slo)
    static = fleet_report(Simulator(pools, reqs, router=Router("static")).run(), slo)
    assert static["share"][pools[1].replica.name] == 0.0 and static["mean_accuracy"] == pytest.approx(1.0)
    assert thr["slo_attainment"] > static["slo_attainment"]
    assert 0.83 < thr["mean_accuracy"] < 1.0


# ---------------------------------------------------------------- capacity, CLI

def test_capacity_grows_with_rate():
    wl = fixed_workload(512, 128)
    lo = capacity("llama-3.1-8b", "h100-sxm", 4.0, wl, ttft_s=0.5, tpot_s=0.05, requests=300, curve=False, max_gpus=16)
    hi = capacity("llama-3.1-8b", "h100-sxm", 80.0, wl, ttft_s=0.5, tpot_s=0.05, requests=300, curve=False, max_gpus=16)
    assert lo.feasible and hi.feasible
    assert hi.gpus > lo.gpus
    assert hi.usd_per_month == pytest.approx(hi.usd_per_hour * 730)
    assert hi.at_rate["ttft_s"]["p99"] <= 0.5 and hi.at_rate["tpot_s"]["p99"] <= 0.05


def test_capacity_cli_json_and_daily(capsys, tmp_path):
    code, out, err = run(["capacity", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--hourly", "2,6,10,4", "--isl", "512",
                          "--osl", "128", "--ttft-p99", "0.5", "--tpot-p99", "0.05", "--requests", "300", "--max-gpus", "8",
                          "--json", "--plot", str(tmp_path / "c.png")], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["gpus"] >= 1 and d["rate"] == 10
    assert 0 < d["daily"]["average_utilization"] < 1
    assert d["load_curve"] and (tmp_path / "c.png").exists()


def test_estimate_rate_returns_serving_percentiles(capsys):
    code, out, err = run(["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--isl", "512", "--osl", "128",
                          "--rate", "5", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert {"ttft_s", "tpot_s", "e2e_latency_s", "memory", "cost", "plan", "breakdown"} <= set(d)
    s = d["serving"]
    assert s["ttft_s"]["p50"] <= s["ttft_s"]["p99"]
    assert d["ttft_s"] == pytest.approx(s["ttft_s"]["mean"]) and d["tpot_s"] == pytest.approx(s["tpot_s"]["mean"])
    assert d["requests_per_s"] == pytest.approx(5.0, rel=0.2)


def test_simulate_cli(capsys, tmp_path):
    p = tmp_path / "burst.csv"
    p.write_text(BURSTGPT)
    code, out, err = run(["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--trace", str(p), "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["completed"] == 5 and d["gpus"] == 1
    code, out, err = run(["simulate", "-H", "h100-sxm", "--fleet", "llama-3.1-70b:1,llama-3.1-8b:1", "--router", "threshold:4",
                          "-w", "chat", "--rate", "4", "--requests", "300", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert set(d["runs"]) == {"threshold:4", "static"}


@pytest.mark.parametrize("args, fragment", [
    (["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--rate", "fast"], "--rate"),
    (["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "-w", "nope", "--rate", "1"], "unknown workload"),
    (["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--trace", "/nonexistent.csv"], "does not exist"),
    (["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--rate", "1", "--router", "random"], "unknown router"),
    (["simulate", "-H", "h100-sxm", "--fleet", "llama-3.1-8b", "--rate", "1"], "MODEL:REPLICAS"),
    (["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "-w", "chat"], "give --rate"),
    (["capacity", "-m", "llama-3.1-8b", "-H", "h100-sxm"], "--rate"),
    (["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--rate", "1", "--batching", "static", "--batch", "2"], "--rate"),
])
def test_user_errors_are_one_line(capsys, args, fragment):
    code, out, err = run(args, capsys)
    assert code == 2
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_capacity_replicas_fill_nodes_a_replica_cannot_span(capsys):
    """An MI325X spec has no scale-out network, so one replica stays within a node of 8; replicas exchange nothing on
    the GPU side, so a fleet of them may use more nodes: --max-gpus defaults to 64 and an explicit 64 is accepted,
    while more than MAX_NODES nodes is refused in one line."""
    import json

    from cli_helpers import run
    from planner.studies.params import MAX_NODES, fleet_devices, max_devices

    assert max_devices("mi325x") == (8, False) and fleet_devices("mi325x") == 8 * MAX_NODES
    base = ["capacity", "-m", "llama-3.1-8b", "-H", "mi325x", "--engine", "vllm", "--rate", "2", "--workload", "chat",
            "--requests", "200"]
    code, out, err = run(base + ["--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["gpus"] >= 1
    code, out, err = run(base + ["--max-gpus", "64", "--json"], capsys)
    assert code == 0, err
    code, out, err = run(base + ["--max-gpus", str(8 * MAX_NODES + 1)], capsys)
    assert code == 2 and f"at most {8 * MAX_NODES:,} devices" in err and len(err.strip().splitlines()) == 1


def test_capacity_sizes_disaggregated_groups_whole():
    # a disaggregated candidate is a group of x prefill and y decode workers; k groups simulate x k and y k workers
    from planner.search.capacity import Sizer, _candidates
    from planner.serving.sim import SLO

    wl, slo = fixed_workload(2048, 256), SLO(2.0, 0.1)
    cands, notes = _candidates("llama-3.1-70b", "h100-sxm", wl, slo, 32, "fp8", "fp8", "trtllm", 2048, 256)
    cands = [c for c in cands if "disaggregated" in c]
    assert cands, notes
    c = cands[0]
    dg = c["disaggregated"]
    assert c["gpus_per_replica"] == dg["prefill_workers"] * dg["prefill_gpus_per_worker"] + dg["decode_workers"] * c["tp"] * c["pp"]
    s = Sizer("llama-3.1-70b", "h100-sxm", c, wl, engine="trtllm", max_seqs=None, percentile=99.0, slo=slo, requests=400,
              seed=0, max_input=2304.0)
    _, res = s.run(2, 4.0)
    assert [(p["role"], p["count"]) for p in res.pools] == [("prefill", 2 * dg["prefill_workers"]),
                                                           ("decode", 2 * dg["decode_workers"])]
    assert res.summary()["completed"] == 400


def test_simulate_help_names_every_built_in_workload():
    """The --workload help lists the built-ins by name; a new one is named there too."""
    from planner.serving.workload import builtin_names
    from planner.studies.params import SimulateRequest

    text = SimulateRequest.model_fields["workload"].description
    assert all(name in text for name in builtin_names()), text


def test_a_length_bound_redraws_long_pairs_and_refuses_one_nothing_fits(tmp_path):
    """``max_total`` keeps the (input, output) pairs within it and draws again for the rest, as a benchmark's sampler
    filters; a bound no pair meets is one clear error, not an endless loop."""
    from planner.errors import PlannerError
    from planner.serving.workload import generate, get_workload

    p = tmp_path / "w.yaml"
    p.write_text("name: w\ninput: {dist: lognormal, median: 300, sigma: 1}\noutput: {dist: lognormal, median: 300, sigma: 1}\n"
                 "max_total: 1000\n")
    r = generate(get_workload(str(p)), 5000, rate=1.0, seed=0)
    assert len(r) == 5000 and (r.input_tokens + r.output_tokens).max() <= 1000
    free = generate(get_workload(str(p)).model_copy(update={"max_total": None}), 5000, rate=1.0, seed=0)
    assert (free.input_tokens + free.output_tokens).max() > 1000  # without the bound, long pairs occur
    p.write_text("name: w\ninput: {dist: fixed, value: 100}\noutput: {dist: fixed, value: 100}\nmax_total: 150\n")
    with pytest.raises(PlannerError, match="almost never fit max_total 150"):
        generate(get_workload(str(p)), 10, rate=1.0)


def test_clients_in_a_closed_loop_keep_at_most_that_many_requests_in_flight():
    """``--clients N``: the first N requests arrive at once and each later one when a request ends (a benchmark's
    --max-concurrency N), so never more than N are in the system; one client runs its requests one after another, so the run lasts the sum of
    their latencies. The requests are independent: nothing of the previous request is served from the prefix cache."""
    from planner.serving.run import simulate_scenario

    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", engine="vllm", isl=300, osl=100, requests=40, seed=0)
    one = simulate_scenario(clients=1, **kw).out
    assert one["clients"] == 1 and one["rate"] is None and "1 clients in a closed loop" in one["workload"]
    assert max(one["queue_over_time"]["running"]) <= 1 and max(one["queue_over_time"]["waiting"]) == 0
    serial = 40 * one["e2e_latency_s"]["mean"]
    assert one["requests_per_s"] == pytest.approx(40 / serial, rel=0.02)
    four = simulate_scenario(clients=4, **kw).out
    assert max(four["queue_over_time"]["running"]) <= 4
    assert 3.0 * one["requests_per_s"] < four["requests_per_s"] < 4.0 * one["requests_per_s"]
    assert one["prefix_cache_hit_tokens"] == four["prefix_cache_hit_tokens"] == 0


@pytest.mark.parametrize("extra, match", [
    (dict(rate="5"), "give --rate or --clients, not both"),
    (dict(workload="chat-multiturn"), "--clients sends independent requests"),
])
def test_clients_refuse_what_a_closed_loop_cannot_mean(extra, match):
    from planner.errors import PlannerError
    from planner.serving.run import simulate_scenario

    with pytest.raises(PlannerError, match=match) as e:
        simulate_scenario(model="llama-3.1-8b", hardware="h100-sxm", clients=4, requests=20, **extra)
    assert "\n" not in str(e.value)


def test_a_mixture_of_lengths_draws_each_part_at_its_share():
    """A request set drawn from several sources (MLPerf's Mixtral set: OpenOrca, GSM8K few-shot prompts, MBXP) is a
    share-weighted mixture: each part keeps its own distribution, the mean is the shares' weighted mean of the parts',
    and a mixture needs parts (one sentence, not a traceback, through the workload loader)."""
    import numpy as np
    import pytest

    from planner.serving.workload import Lengths

    mix = Lengths.model_validate({"dist": "mixture", "max": 4096, "parts": [
        {"share": 3, "lengths": {"dist": "fixed", "value": 100}},
        {"share": 1, "lengths": {"dist": "fixed", "value": 1000}}]})
    x = mix.sample(np.random.default_rng(0), 40000)
    assert set(np.unique(x)) == {100, 1000}
    assert np.mean(x == 1000) == pytest.approx(0.25, abs=0.01)
    assert mix.mean_tokens() == pytest.approx(0.75 * 100 + 0.25 * 1000, rel=0.02)
    assert mix.describe() == "mixture(75% 100, 25% 1000)"
    with pytest.raises(ValueError, match="need 'parts'"):
        Lengths.model_validate({"dist": "mixture"})
    with pytest.raises(ValueError, match="belong to mixture"):
        Lengths.model_validate({"dist": "fixed", "value": 5, "parts": [{"share": 1, "lengths": {"value": 5}}]})


def test_mlperf_mixtral_prompts_are_a_third_gsm8k_few_shot():
    """MLPerf's Mixtral set: a third GSM8K few-shot prompts (657 tokens in the sample NVIDIA's harness prints), two
    thirds taken as the OpenOrca-like assumption Llama-2-70B's rows use; Llama-2-70B's prompts stay that assumption."""
    import numpy as np
    import pytest

    from planner.serving import published

    mix = published._mlperf_workload(144.84, "mixtral-8x7b")
    llama = published._mlperf_workload(294.45, "llama-2-70b")
    assert mix.input.dist == "mixture" and mix.input.max == 2048
    assert llama.input == published.get_workload("openorca").input
    x = mix.input.sample(np.random.default_rng(1), 30000)
    assert np.mean(x >= 550) == pytest.approx(1 / 3 + np.mean(llama.input.sample(np.random.default_rng(2), 30000) >= 550) * 2 / 3, abs=0.02)
    assert mix.input.mean_tokens() == pytest.approx((2 * llama.input.mean_tokens() + 657) / 3, rel=0.03)
    assert mix.output.mean == pytest.approx(144.84)


def test_mlperf_interactive_rows_meet_the_tighter_limits_and_unknown_sets_say_so():
    """MLPerf's latency limits are per benchmark (loadgen/mlperf.conf): Llama-2-70B's Interactive runs (450 ms TTFT,
    40 ms TPOT at p99) serve fewer tokens than its Server runs (2 s, 200 ms) on the same system; a benchmark whose
    prompt lengths are not published is not replayed, and the row says why."""
    from planner.serving import published

    row = {"source": "mlperf-inference-v5.0 closed NVIDIA B200-SXM-180GBx8_TRT", "model": "llama-2-70b", "hardware": "b200",
           "gpus": "8", "weights": "fp4", "kv": "fp8", "mean_output_tokens": "265.005", "output_tokens_per_s": "59409.25"}
    got = {}
    for scen in ("server", "interactive"):
        (_, _, cfg, meas, pred, note), = published.predict_mlperf([dict(row, scenario=scen)], "x.csv")
        got[scen] = pred
        assert pred and pred > 0 and scen in cfg
    assert got["interactive"] < 0.9 * got["server"]
    assert published.MLPERF_LIMITS["llama-3.1-405b"]["server"].ttft_s == 6.0
    (_, _, _, _, pred, note), = published.predict_mlperf([dict(row, model="llama-3.1-405b", scenario="server")], "x.csv")
    assert pred is None and "publishes no statistics of its prompt lengths" in note
    (_, _, _, _, pred, note), = published.predict_mlperf([dict(row, model="mixtral-8x7b", scenario="interactive")], "x.csv")
    assert pred is None and "no interactive scenario" in note
