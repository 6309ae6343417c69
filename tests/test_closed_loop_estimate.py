"""``estimate --concurrency N --requests M``: a benchmark's closed loop (``--max-concurrency N --num-prompts M`` on a
random dataset of one length) simulated request by request. With identical lengths the clients that start together
finish together, so the loop runs in waves whose prompts queue behind each other, which the analytic steady state
(clients out of step, one prompt joining the decodes at a time) does not price. The simulated estimate is the same
replay `simulate --clients` runs, and `validate --via estimate` prices the bundled closed loops of one length so."""

import csv
import json
import math

import pytest

from cli_helpers import run, run_json
from planner.api import PlanSpec, estimate, estimate_closed_loop
from planner.calibrate.validate import builtin_published
from planner.errors import PlannerError
from planner.serving.published import bench_run, estimate_closed_loops, predict_bench_serve
from planner.serving.simulated import unsimulated_flags

MODEL, HW = "llama-3.1-8b", "h100-sxm"
KW = dict(isl=512, osl=128, engine="vllm")


def test_the_closed_loop_estimate_is_the_simulators_closed_loop(capsys):
    d = estimate_closed_loop(MODEL, HW, PlanSpec(), clients=16, requests=64, **KW)
    sim = run_json(["simulate", "-m", MODEL, "-H", HW, "--engine", "vllm", "--isl", "512", "--osl", "128",
                    "--clients", "16", "--requests", "64", "--json"], capsys)
    assert d["serving"]["arrivals"] == "closed loop" and d["serving"]["completed"] == 64
    assert d["ttft_s"] == pytest.approx(sim["ttft_s"]["mean"], rel=1e-9)
    assert d["tpot_s"] == pytest.approx(sim["tpot_s"]["mean"], rel=1e-9)
    assert d["requests_per_s"] == pytest.approx(sim["requests_per_s"], rel=1e-9)
    # units: a loop of one reply length delivers osl tokens a request
    assert d["output_tokens_per_s"] == pytest.approx(d["requests_per_s"] * 128, rel=1e-6)
    assert d["plan"]["batching"] == "simulated" and d["plan"]["clients"] == 16 and d["plan"]["rate"] is None


def test_one_length_keeps_the_clients_in_waves_that_the_steady_state_has_not():
    """One client has no one to wait behind: the simulated loop and the steady state price the same steps. Thirty-two
    clients of one length send their prompts together, and a prompt waits for those ahead of it in the wave: the mean
    TTFT is several times the staggered steady state's, while the decode steps (TPOT) and the throughput, set by the
    batch, stay within the steady state's reach."""
    one = estimate_closed_loop(MODEL, HW, PlanSpec(), clients=1, requests=8, **KW)
    lone = estimate(MODEL, HW, PlanSpec(), concurrency=1, **KW)
    assert one["tpot_s"] == pytest.approx(lone.tpot_s, rel=0.1)
    assert one["ttft_s"] == pytest.approx(lone.ttft_s, rel=0.25)
    waves = estimate_closed_loop(MODEL, HW, PlanSpec(), clients=32, requests=320, **KW)
    steady = estimate(MODEL, HW, PlanSpec(), concurrency=32, **KW)
    assert waves["ttft_s"] > 2.0 * steady.ttft_s
    assert waves["tpot_s"] == pytest.approx(steady.tpot_s, rel=0.25)
    assert waves["requests_per_s"] == pytest.approx(steady.requests_per_s, rel=0.25)
    assert any("waves" in n and "staggered steady state" in n for n in waves["notes"])


@pytest.mark.parametrize("flags, sim_flags", [
    (["--spec", "3:0.7"], ["--spec", "3:0.7"]),
    (["--chunk-tokens", "512"], ["--max-batched-tokens", "512", "--chunked-prefill"]),
    (["--shared-prefix", "0.5"], ["--shared-prefix", "0.5"]),
    (["--lora", "100:16", "--lora-resident", "20", "--lora-popularity", "zipf:1.0"],
     ["--lora", "100:16", "--lora-resident", "20", "--lora-popularity", "zipf:1.0"]),
])
def test_a_simulated_estimate_replays_the_techniques_simulate_replays(flags, sim_flags, capsys):
    """`estimate --rate` had priced the plan without its speculation, chunked-prefill budget or adapters, silently; it
    now runs them as `planner simulate` does (the same run, to the number), at a rate and in a closed loop."""
    common = ["-m", MODEL, "-H", HW, "--engine", "vllm", "--isl", "512", "--osl", "128"]
    for load, sim_load in ((["--rate", "6", "--requests", "120"], ["--rate", "6", "--requests", "120"]),
                           (["--concurrency", "8", "--requests", "64"], ["--clients", "8", "--requests", "64"])):
        est = run_json(["estimate", *common, *load, *flags, "--json"], capsys)
        sim = run_json(["simulate", *common, *sim_load, *sim_flags, "--json"], capsys)
        assert est["ttft_s"] == pytest.approx(sim["ttft_s"]["mean"], rel=1e-9), (flags, load)
        assert est["tpot_s"] == pytest.approx(sim["tpot_s"]["mean"], rel=1e-9), (flags, load)
        assert est["output_tokens_per_s"] == pytest.approx(sim["output_tokens_per_s"], rel=1e-9), (flags, load)
    plain = run_json(["estimate", *common, "--rate", "6", "--requests", "120", "--json"], capsys)
    if flags[0] == "--spec":  # three drafts at 0.7 acceptance: fewer, longer steps a token
        assert est["tpot_s"] < plain["tpot_s"]


def test_a_simulated_estimate_refuses_what_it_would_not_replay(capsys):
    assert unsimulated_flags(PlanSpec()) == []
    assert unsimulated_flags(PlanSpec(spec_k=3, spec_alpha=0.7, chunk_tokens=512)) == []
    assert unsimulated_flags(PlanSpec(spec_k=3, spec_alpha=0.7, spec_auto=True, kv_offload=True)) == [
        "--spec auto", "--kv-offload"]
    with pytest.raises(PlannerError, match="--eviction"):
        estimate_closed_loop(MODEL, HW, PlanSpec(eviction="snapkv:256"), clients=4, requests=8, **KW)
    base = ["estimate", "-m", MODEL, "-H", HW, "--engine", "vllm"]
    for extra, says in ((["--rate", "5", "--spec", "auto:0.7"], "--spec auto"),
                        (["--concurrency", "4", "--requests", "8", "--kv-offload"], "--kv-offload"),
                        (["--concurrency", "max", "--requests", "8"], "--concurrency N"),
                        (["--requests", "8"], "--concurrency N"),
                        (["--concurrency", "2", "--requests", "8", "--dp", "4"], "--dp")):
        code, out, err = run(base + extra, capsys)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert "Traceback" not in err


def _one_length_row():
    (path,) = [p for p in builtin_published() if p.name == "serving_bench_more.csv"]
    rows = list(csv.DictReader(open(path)))
    for k, r in enumerate(rows):
        b = bench_run(r, f"{path.name}:{k + 2}")
        if (b.clients and not b.entries and b.n > b.clients and b.ratio is None and not b.capped
                and (r.get("dataset") or "").strip().lower() != "sharegpt" and b.replicas == 1):
            return path.name, r
    raise AssertionError("no closed loop of one length in serving_bench_more.csv")


def test_validate_via_estimate_prices_a_loop_of_one_length_as_the_simulated_estimate():
    name, row = _one_length_row()
    est = estimate_closed_loops([row], name)[0]
    replay = {what: pred for _, what, _, _, pred, _ in predict_bench_serve([row], name)}
    assert est and all("closed loop of one length, simulated" in note for *_, note in est)
    for what, _, meas, pred, _ in est:
        assert pred is not None and math.isfinite(pred) and pred > 0
        assert pred == pytest.approx(replay[what], rel=1e-6), what  # the same request-by-request run


def test_a_study_prices_its_closed_loops_in_the_simulator(tmp_path, capsys):
    """Eight or more estimate points on one plan go through the vectorized steady state (runner._estimate_groups),
    checked against the first point's own estimate; points with --requests are simulated closed loops and must not go
    there, even where a steady-state point of the same plan comes first and passes that check."""
    study = tmp_path / "loops.yaml"
    study.write_text("name: loops\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm, engine: vllm, "
                     "isl: 512, osl: 128}\nsweep:\n  mode: product\n  axes:\n    requests: [null, 64]\n"
                     "    concurrency: [1, 2, 4, 8, 16]\ncolumns: [requests, concurrency, ttft_s, tpot_s]\n")
    code, out, err = run(["study", str(study), "--out", str(tmp_path / "out"), "--workers", "1"], capsys)
    assert code == 0, err
    rows = json.loads((tmp_path / "out" / "loops.json").read_text())["points"]
    assert len(rows) == 10
    for row in rows:
        c = row["concurrency"]
        d = (estimate_closed_loop(MODEL, HW, PlanSpec(), clients=c, requests=64, **KW) if row.get("requests")
             else estimate(MODEL, HW, PlanSpec(), concurrency=c, **KW).to_dict())
        assert row["ttft_s"] == pytest.approx(d["ttft_s"], rel=1e-9), (row.get("requests"), c)
        assert row["tpot_s"] == pytest.approx(d["tpot_s"], rel=1e-9), (row.get("requests"), c)
