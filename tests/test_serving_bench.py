"""The published online benchmarks of vLLM, SGLang and trtllm-serve (measurements/published/serving_bench.csv):
every row is predicted through the serving simulator from its own configuration. None is a joint-fit row; the rate stage
fits vLLM 0.11's per-request time and compute scales to its vLLM runs (tests/test_rate_fit.py), the others are held out."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from planner.calibrate import joint
from planner.calibrate.published_fit import engine_of
from planner.calibrate.validate import builtin_published, predict_simulated
from planner.serving.published import predict_bench_serve


def _published(name: str):
    """(path, rows) of a bundled published file."""
    f = next(p for p in builtin_published() if p.name == name)
    with f.open(newline="") as fh:
        return f, list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def rows():
    return _published("serving_bench.csv")[1]


def test_every_row_is_sourced_outside_the_joint_fit_and_resolves_to_an_engine_profile(rows):
    assert "serving_bench.csv" in joint.NOT_FITTED
    assert rows and all(r["source"].strip() for r in rows)
    assert {engine_of(r).split("@")[0] for r in rows} == {"vllm", "sglang", "trtllm"}
    for r in rows:
        vals = [float(r[c]) for c in ("requests_per_s", "output_tokens_per_s", "mean_ttft_s", "mean_tpot_s", "decode_tokens_per_s")
                if r[c].strip()]
        assert vals and all(v > 0 for v in vals)
        assert int(r["num_prompts"]) >= 1 and float(r["isl"]) >= 1 and float(r["osl"]) >= 1


def test_every_row_is_predicted_through_the_simulator(rows):
    cols = set(rows[0])
    out = list(predict_simulated("serving_bench.csv", cols, rows))
    assert len({i for i, *_ in out}) == len(rows)
    assert all(pred is not None and np.isfinite(pred) and pred > 0 for _, _, _, _, pred, _ in out)
    # a burst of requests: the throughput over the run is completions over its span, so requests/s x osl = tokens/s
    # (ShareGPT's drawn lengths are scaled to the run's printed mean, which whole tokens meet to within half a token)
    by = {}
    for i, what, _, _, pred, _ in out:
        by.setdefault(i, {})[what] = pred
    for i, d in by.items():
        if "requests_per_s" in d and "output_tokens_per_s" in d:
            osl = float(rows[i]["osl"])
            rel = 0.5 / osl if rows[i]["dataset"] == "sharegpt" else 1e-6
            assert d["output_tokens_per_s"] == pytest.approx(d["requests_per_s"] * (osl if rel > 1e-6 else round(osl)), rel=rel)


def test_a_single_request_decodes_at_one_over_its_tpot():
    row = {"source": "test", "engine": "sglang", "engine_version": "0.5.1", "model": "llama-3.1-8b", "hardware": "h100-sxm",
           "tp": "1", "isl": "1024", "osl": "512", "num_prompts": "1", "rate": "inf", "mean_tpot_s": "0.006",
           "decode_tokens_per_s": "166.7"}
    out = {what: pred for _, what, _, _, pred, _ in predict_bench_serve([row])}
    assert out["decode_tokens_per_s"] == pytest.approx(1.0 / out["mean_tpot_s"], rel=1e-9)
    assert 50 < out["decode_tokens_per_s"] < 1000  # tokens/s of one 8B stream on an H100


def test_a_request_larger_than_the_kv_cache_is_unpredictable_with_its_reason():
    row = {"source": "test", "engine": "vllm", "engine_version": "0.11.0", "model": "qwen3-32b", "hardware": "h100-sxm", "tp": "1",
           "isl": "120000", "osl": "10", "num_prompts": "2", "rate": "inf", "requests_per_s": "0.1"}
    (i, what, _, meas, pred, note), = predict_bench_serve([row])
    assert pred is None and note.startswith("unpredictable: no request completes") and "120,010" in note


def test_max_concurrency_holds_the_list_behind_its_slots():
    from planner.serving.workload import fixed_workload, generate, shared_closed_loop

    reqs = shared_closed_loop(generate(fixed_workload(100, 20), 7, rate=float("inf")), 3)
    assert np.all(reqs.arrival_s[:3] == 0.0) and np.all(np.isnan(reqs.arrival_s[3:]))  # the rest wait for a slot
    assert np.all(reqs.parent == -1) and reqs.slots == 3 and not reqs.has_turns  # no request is another's follow-up
    assert np.all(reqs.think_s == 0.0) and np.all(reqs.prefix_tokens == 0)
    # one client: requests run one after another, so the run's rate is one over a request's whole latency
    row = {"source": "test", "engine": "vllm", "engine_version": "0.11.0", "model": "llama-3.1-8b", "hardware": "h100-sxm",
           "tp": "1", "isl": "200", "osl": "100", "num_prompts": "20", "rate": "inf", "max_concurrency": "1",
           "requests_per_s": "1", "mean_ttft_s": "0.05", "mean_tpot_s": "0.007"}
    out = {what: pred for _, what, _, _, pred, _ in predict_bench_serve([row])}
    serial = 1.0 / (out["mean_ttft_s"] + 99 * out["mean_tpot_s"])
    assert out["requests_per_s"] == pytest.approx(serial, rel=0.02)
    row4 = dict(row, max_concurrency="4")
    out4 = {what: pred for _, what, _, _, pred, _ in predict_bench_serve([row4])}
    assert 3.0 * out["requests_per_s"] < out4["requests_per_s"] < 4.0 * out["requests_per_s"]  # batching shares weight reads


def test_a_run_s_own_server_flags_set_the_engine_it_is_simulated_with(monkeypatch):
    """A row may print the server flags its run set (``max_num_seqs``, ``max_num_batched_tokens``,
    ``gpu_memory_utilization``, as vLLM names them): the replica is built with them, over the device's defaults; a bad
    value is one clear error, and empty cells keep the defaults."""
    import planner.serving.published as P
    from planner.errors import PlannerError

    seen = []
    real = P.replica_for
    monkeypatch.setattr(P, "replica_for", lambda *a, **k: seen.append(k["engine"]) or real(*a, **k))
    row = {"source": "test", "engine": "vllm", "engine_version": "0.11.0", "model": "llama-3.1-8b", "hardware": "h100-sxm",
           "tp": "1", "isl": "256", "osl": "64", "num_prompts": "64", "rate": "inf", "max_concurrency": "32",
           "requests_per_s": "10", "max_num_seqs": "16", "max_num_batched_tokens": "1024", "gpu_memory_utilization": "0.5"}
    capped = {what: pred for _, what, _, _, pred, _ in P.predict_bench_serve([row])}
    eng = seen[-1].for_hardware(__import__("planner.specs.loader", fromlist=["x"]).get_hardware("h100-sxm"))
    assert (eng.max_seqs, eng.max_batched_tokens, eng.utilization) == (16, 1024, 0.5)
    free = {what: pred for _, what, _, _, pred, _ in P.predict_bench_serve(
        [dict(row, max_num_seqs="", max_num_batched_tokens="", gpu_memory_utilization="")])}
    # 16 sequences a step where the client keeps 32 in flight: fewer requests a second than at the device's defaults
    assert capped["requests_per_s"] < free["requests_per_s"]
    for col, bad in (("max_num_seqs", "0"), ("max_num_batched_tokens", "2.5"), ("gpu_memory_utilization", "1.2")):
        with pytest.raises(PlannerError, match=col):
            P.predict_bench_serve([dict(row, **{col: bad})])


@pytest.mark.parametrize("core", ["python", "c"])
def test_max_concurrency_sends_the_next_prompt_when_any_request_ends(core, monkeypatch):
    """vLLM's ``bench serve`` and SGLang's ``bench_serving`` hold every request of their list behind one
    ``asyncio.Semaphore(max_concurrency)``: a completion, of whichever request, sends the next prompt of the list. With
    one long request and short ones behind it, the short ones flow through the other slot; chains of one client each
    would hold every other request behind the long one. Both simulator cores run it alike."""
    from planner.serving.published import replica_for
    from planner.serving.sim import Simulator
    from planner.serving.sim import fastcore
    from planner.serving.sim.config import Pool
    from planner.serving.workload import Requests, shared_closed_loop
    from planner.specs.engine import get_engine

    if core == "c" and fastcore.load() is None:
        pytest.skip("no C compiler: the compiled core is not built")
    monkeypatch.setenv("PLANNER_SIM_CORE", core)
    eng = get_engine("vllm@0.15").with_(prefix_caching=False)
    rep = replica_for("llama-3.1-8b", "h100-sxm", tp=1, pp=1, ep=1, weights="bf16", kv=None, engine=eng, max_input=4000)
    n = 6
    lengths = Requests(np.zeros(n), np.full(n, 200), np.array([2000, 50, 50, 50, 50, 50]), np.zeros(n, np.int64),
                       np.full(n, -1, np.int64), np.zeros(n))
    shared = Simulator([Pool(rep, 1)], shared_closed_loop(lengths, 2))
    shared.run()
    assert shared.core == core
    arr, fin = np.asarray(shared.table.arrival_s), np.asarray(shared.table.finish_s)
    for k in range(2, n):  # request k is sent the moment the (k - 1)-th completion of the run happens
        assert arr[k] == pytest.approx(np.sort(fin)[k - 2])
    assert np.all(arr[2:] < fin[0])  # the short ones all pass while the long one decodes
    # the same list as two fixed chains (request k follows request k - 2, as a follow-up turn with no history)
    chain = Requests(np.where(np.arange(n) < 2, 0.0, np.nan), lengths.input_tokens, lengths.output_tokens,
                     np.zeros(n, np.int64), np.where(np.arange(n) >= 2, np.arange(n) - 2, -1), np.zeros(n))
    chains = Simulator([Pool(rep, 1)], chain)
    chains.run()
    assert np.asarray(chains.table.arrival_s)[2] == pytest.approx(np.asarray(chains.table.finish_s)[0])  # client 0's next
    assert np.max(fin) < np.max(np.asarray(chains.table.finish_s))


def test_sharegpt_lengths_follow_the_benchmark_samplers_filter_and_the_runs_means():
    """vLLM's ShareGPT sampler leaves out pairs with a prompt over 1024 tokens or prompt + reply over 2048; the lengths
    drawn for a run keep that bound, match its printed means and keep the spread (the longest reply several times the
    mean)."""
    from planner.serving.workload import generate, get_workload, sharegpt_workload

    w = get_workload("sharegpt")
    assert w.max_total == 2048 and w.input.max == 1024 and w.output.sigma == w.input.sigma == 1.0
    r = generate(sharegpt_workload(219.2, 200.8), 20000, rate=1.0, seed=3)
    assert np.all(r.input_tokens + r.output_tokens <= 2048) and r.input_tokens.max() <= 1024
    assert r.input_tokens.min() >= 4 and r.output_tokens.min() >= 4 and r.output_tokens.max() <= 1024
    assert r.input_tokens.mean() == pytest.approx(219.2, rel=0.03) and r.output_tokens.mean() == pytest.approx(200.8, rel=0.03)
    assert r.output_tokens.max() > 5 * 200.8 and np.median(r.output_tokens) < 0.8 * 200.8  # a long right tail
    again = generate(sharegpt_workload(219.2, 200.8), 20000, rate=1.0, seed=3)
    assert np.array_equal(r.output_tokens, again.output_tokens)  # same seed, same draws


def test_sharegpt_replies_are_no_longer_than_the_bundled_runs_allow():
    """The client's seed-0 shuffle sends the same first conversations in every run, so a run of N prompts bounds their
    longest reply: it cannot outlast the run (duration_s) decoding one token per batch-1 TPOT at best (the same model
    and GPU at one request/s). The workload's reply cap stays within the tightest such bound over IOG's 200-prompt
    runs (a few per cent allowed for the models' different tokenizers), and a burst's draws reach it."""
    import csv

    from planner.calibrate.validate import builtin_published
    from planner.serving.workload import generate, get_workload, sharegpt_workload

    path = next(f for f in builtin_published() if f.name == "serving_bench_more.csv")
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "sharegpt" and r["num_prompts"] == "200"]
    tpot_1 = {(r["model"], r["hardware"], r["tp"]): float(r["mean_tpot_s"]) for r in rows if r["rate"] == "1"}
    bounds = [float(r["duration_s"]) / tpot_1[(r["model"], r["hardware"], r["tp"])] for r in rows
              if r["rate"] not in ("1", "inf") and (r["model"], r["hardware"], r["tp"]) in tpot_1]  # tokens
    assert len(bounds) >= 10 and 900 < min(bounds) < 1100
    cap = get_workload("sharegpt").output.max
    assert cap <= 1.03 * min(bounds)
    assert generate(sharegpt_workload(220, 200), 1000, rate=float("inf"), seed=0).output_tokens.max() == cap


def test_a_sharegpt_burst_lasts_until_its_longest_replies_finish():
    """Every request of a burst arrives at once; with ShareGPT's spread of reply lengths the batch thins out at the end
    and the few longest replies decode at a small batch, so the run lasts longer and serves fewer requests per second
    than the same burst at the mean lengths. The run cannot end before its longest reply has decoded one token a step."""
    row = {"source": "test", "engine": "vllm", "engine_version": "0.11.0", "model": "llama-3.1-8b", "hardware": "h100-sxm",
           "tp": "1", "isl": "220", "osl": "200", "num_prompts": "1000", "rate": "inf", "requests_per_s": "1",
           "mean_tpot_s": "0.01"}
    fixed = {what: pred for _, what, _, _, pred, _ in predict_bench_serve([dict(row, dataset="random")])}
    spread = {what: pred for _, what, _, _, pred, _ in predict_bench_serve([dict(row, dataset="sharegpt")])}
    assert spread["requests_per_s"] < 0.9 * fixed["requests_per_s"]
    from planner.serving.workload import generate, sharegpt_workload

    longest = int(generate(sharegpt_workload(220, 200), 1000, rate=float("inf"), seed=0).output_tokens.max())
    alone = {what: pred for _, what, _, _, pred, _ in predict_bench_serve([dict(row, dataset="random", num_prompts="1")])}
    assert 1000 / spread["requests_per_s"] > longest * alone["mean_tpot_s"]  # the fastest a reply can decode


def test_a_precision_named_as_its_checkpoint_names_it_is_read_as_the_planners_format():
    """An AWQ checkpoint (``Qwen/Qwen3-14B-AWQ``) is INT4 weight-only (W4A16, group 128): the row is priced as ``int4``,
    not refused as an unknown precision."""
    row = {"source": "test", "engine": "vllm", "engine_version": "0.11.0", "model": "qwen3-14b", "hardware": "a100-sxm-80gb",
           "tp": "1", "weights": "AWQ", "isl": "200", "osl": "100", "num_prompts": "4", "rate": "inf", "requests_per_s": "1"}
    as_int4 = dict(row, weights="int4")
    (_, _, cfg, _, pred, note), = predict_bench_serve([row])
    (_, _, cfg4, _, pred4, _), = predict_bench_serve([as_int4])
    assert pred is not None and not note.startswith("unpredictable") and "int4" in cfg
    assert pred == pytest.approx(pred4, rel=1e-12) and cfg == cfg4


def test_total_token_throughput_counts_prompt_and_output_tokens_of_the_run():
    """vllm bench serve's "Total Token throughput" is (prompt + output tokens of the completed requests) / duration:
    with fixed lengths it is requests/s x (isl + osl), in tokens per second."""
    row = {"source": "test", "engine": "vllm", "engine_version": "0.11.0", "model": "llama-3.1-8b", "hardware": "h100-sxm",
           "tp": "1", "isl": "512", "osl": "128", "num_prompts": "64", "rate": "inf", "requests_per_s": "1",
           "total_tokens_per_s": "640"}
    out = {what: pred for _, what, _, _, pred, _ in predict_bench_serve([row])}
    assert out["total_tokens_per_s"] == pytest.approx(out["requests_per_s"] * (512 + 128), rel=1e-9)


def test_the_quantization_study_is_held_out_and_every_run_is_predicted():
    """serving_bench_quant.csv (one lab's vLLM 0.9.2 bursts of Qwen3-8B in BF16 and quantized checkpoints) measures
    transfer: neither fit stage reads it, and each of its runs is predicted in the precisions it names."""
    from planner.calibrate import rate_fit

    f, runs = _published("serving_bench_quant.csv")
    assert f.name in rate_fit.HELD_OUT_FILES and "held out" in joint.NOT_FITTED[f.name]
    assert rate_fit.rate_rows([f]) == {}
    assert {r["hardware"] for r in runs} == {"rtx-4090", "h100-sxm"}
    out = list(predict_simulated(f.name, set(runs[0]), runs))
    assert {what for _, what, *_ in out} == {"total_tokens_per_s", "mean_ttft_s", "mean_tpot_s"}
    assert len(out) == 3 * len(runs) and all(pred is not None and pred > 0 for *_, pred, _ in out)
    # the 4-bit checkpoint streams about a third of the BF16 bytes a decode step reads: on the 24 GB card it also leaves
    # room for more sequences, so the run goes faster, as measured (5,537 against 3,869 tokens/s)
    tput = {(runs[i]["hardware"], runs[i]["weights"]): pred for i, what, _, _, pred, _ in out if what == "total_tokens_per_s"}
    assert tput[("rtx-4090", "awq")] > tput[("rtx-4090", "")]


def test_the_quantization_studys_runs_fit_within_the_engines_default_sequence_limit():
    """The file assumes vLLM's defaults, which no server command printed contradicts; a run's own numbers can: the
    sequences in flight (Little's law: output tokens/s x mean TPOT, each token of a decoding sequence spaced by its
    TPOT) cannot exceed the default max_num_seqs on that GPU. The page's A100 runs put ~1,000 in flight against the
    A100's 256, so they are left out (measurements/published/README.md); every kept run stays within its limit."""
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware

    _, runs = _published("serving_bench_quant.csv")
    for r in runs:
        isl, osl = float(r["isl"]), float(r["osl"])
        out_tok_s = float(r["total_tokens_per_s"]) * osl / (isl + osl)  # tokens/s
        in_flight = out_tok_s * float(r["mean_tpot_s"])  # tokens/s x s/token = sequences
        limit = get_engine(f"vllm@{r['engine_version']}").for_hardware(get_hardware(r["hardware"])).max_seqs
        assert in_flight <= limit, (r["hardware"], r["weights"], in_flight, limit)
    # the A100 80GB's 256 (vLLM PR 17885), against the ~1,000 its BF16 run held: 10,338 tokens/s x 201.65 / 419.04 x 0.200 s
    a100 = get_engine("vllm@0.9.2").for_hardware(get_hardware("a100-sxm-80gb")).max_seqs
    assert a100 == 256 and 10338.25 * 201.65 / (217.39 + 201.65) * 0.20002 > 3 * a100


def test_qwens_h20_speed_benchmark_is_held_out_and_its_one_token_decode_is_compute_bound():
    """speed_benchmark_qwen3_h20.csv (Qwen's batch-1 runs of every Qwen3 model on SGLang and an H20) measures transfer to
    a device no other row comes from. Its BF16 dense rows at a one-token prompt are 2,048 decode steps: an H20 holds
    148 TFLOPS beside 4 TB/s, so SGLang's one-token cuBLAS GEMMs, idle tile rows and all, take longer than the weight
    read, and the measured 12.2-48.3 ms a token (Qwen3-8B to 32B) is what the tile law prices, where the weight read
    alone would give under half of it."""
    from planner.calibrate import rate_fit

    f, runs = _published("speed_benchmark_qwen3_h20.csv")
    assert f.name in rate_fit.HELD_OUT_FILES and "held out" in joint.NOT_FITTED[f.name]
    assert len(runs) == 120 and {r["hardware"] for r in runs} == {"h20"} and {r["num_prompts"] for r in runs} == {"1"}
    assert "gptq" not in {r["weights"] for r in runs}  # the GPTQ-INT4 rows the page flags as not yet tuned are left out
    out = list(predict_simulated(f.name, set(runs[0]), runs))
    assert len(out) == len(runs) and all(pred is not None and pred > 0 for *_, pred, _ in out)
    dense_bf16 = {runs[i]["model"]: (meas, pred) for i, _, _, meas, pred, _ in out
                  if runs[i]["isl"] == "1" and runs[i]["weights"] == "" and runs[i]["model"] in ("qwen3-8b", "qwen3-14b", "qwen3-32b")}
    assert len(dense_bf16) == 3
    for model, (meas, pred) in dense_bf16.items():
        assert pred == pytest.approx(meas, rel=0.15), model  # (1 + 2,048) tokens / s, measured and predicted


def test_a_run_that_prints_medians_is_compared_at_its_medians():
    """serving_bench_rtx3090.csv prints P50 TTFT and TPOT, not means: the replay is read at its medians (the summary's
    p50), which differ from its means where the distribution is skewed (queued TTFTs)."""
    from planner.calibrate import rate_fit

    f, runs = _published("serving_bench_rtx3090.csv")
    assert f.name in rate_fit.HELD_OUT_FILES and "held out" in joint.NOT_FITTED[f.name]
    assert all(not r["mean_ttft_s"] and float(r["median_ttft_s"]) > 0 for r in runs)
    out = list(predict_simulated(f.name, set(runs[0]), runs))
    assert {what for _, what, *_ in out} == {"requests_per_s", "output_tokens_per_s", "median_ttft_s", "median_tpot_s"}
    assert all(pred is not None and pred > 0 for *_, pred, _ in out)
    row = dict(runs[-1], median_ttft_s="", mean_ttft_s="1")  # the overloaded 8 req/s run, read at its mean instead
    (mean,) = [pred for _, what, _, _, pred, _ in predict_bench_serve([row]) if what == "mean_ttft_s"]
    (median,) = [pred for i, what, _, _, pred, _ in out if what == "median_ttft_s" and i == len(runs) - 1]
    assert mean != pytest.approx(median, rel=1e-3)  # seconds: a queue's mean and median TTFT are not the same number


def test_replies_capped_without_ignore_eos_spread_as_the_printed_mean_says():
    """A client that caps replies at ``max_tokens`` and does not ignore EOS gets some replies ended early: the share that
    ends early (at a uniform position) is the one that gives the run's printed mean, and lengths stay within [1, cap]."""
    from planner.errors import PlannerError
    from planner.serving.workload import eos_capped_workload, generate

    for cap, mean in ((512, 493.0), (256, 255.8), (512, 120.0)):
        out = generate(eos_capped_workload(1024, mean, cap), 40000, rate=float("inf"), seed=0).output_tokens
        assert out.min() >= 1 and out.max() <= cap
        assert out.mean() == pytest.approx(mean, rel=0.01)
    out = generate(eos_capped_workload(1024, 493.0, 512), 40000, rate=float("inf"), seed=0).output_tokens
    early = (512 - 493.0) / (512 - (512 + 1) / 2.0)  # (1 - p) cap + p (cap + 1) / 2 = mean
    assert np.mean(out == 512) == pytest.approx(1.0 - early, abs=0.01)  # the rest run to the cap
    assert generate(eos_capped_workload(64, 256.0, 256), 10, rate=float("inf"), seed=0).output_tokens.tolist() == [256] * 10
    with pytest.raises(PlannerError):
        eos_capped_workload(64, 300.0, 256)


def test_a_closed_loop_of_replies_that_end_at_eos_does_not_run_in_lockstep():
    """Fixed-length replies keep a closed loop's clients in lockstep: every request of a wave ends in the same step, the
    next wave arrives together and queues behind its own prompts. Replies that end at EOS before the cap spread the
    clients out, so a request meets fewer prompts ahead of it: the same run's mean TTFT falls, its request rate barely
    moves. A mean above the cap is refused as a malformed row."""
    from planner.errors import PlannerError

    row = {"source": "test", "engine": "vllm", "engine_version": "0.12.0", "model": "qwen3-8b", "hardware": "rtx-5090",
           "tp": "1", "weights": "fp4", "endpoint": "chat", "dataset": "random", "isl": "8192", "osl": "493", "num_prompts": "200",
           "rate": "inf", "max_concurrency": "8", "requests_per_s": "0.8", "mean_ttft_s": "0.45",
           "max_num_batched_tokens": "8192"}
    lockstep = {w: p for _, w, _, _, p, _ in predict_bench_serve([row])}
    spread = {w: p for _, w, _, _, p, _ in predict_bench_serve([dict(row, max_tokens="512")])}
    assert spread["mean_ttft_s"] < 0.6 * lockstep["mean_ttft_s"]
    assert spread["requests_per_s"] == pytest.approx(lockstep["requests_per_s"], rel=0.1)
    with pytest.raises(PlannerError, match="max_tokens"):
        predict_bench_serve([dict(row, max_tokens="400")])


def test_a_random_range_ratio_draws_lengths_as_the_client_does():
    """--random-range-ratio r in the SGLang / InferenceX client: each length uniform over [int(L r), L], so the mean
    is about (1 + r) / 2 of the requested L; r = 1 is the fixed length, and a ratio outside [0, 1] is refused."""
    from planner.errors import PlannerError
    from planner.serving.workload import generate, random_range_workload

    reqs = generate(random_range_workload(1024, 8192, 0.8), 20000, rate=math.inf, seed=0)
    assert reqs.input_tokens.min() >= int(1024 * 0.8) and reqs.input_tokens.max() <= 1024
    assert reqs.output_tokens.min() >= int(8192 * 0.8) and reqs.output_tokens.max() <= 8192
    assert reqs.input_tokens.mean() == pytest.approx((819 + 1024) / 2, rel=0.01)  # uniform over whole tokens
    assert reqs.output_tokens.mean() == pytest.approx((6553 + 8192) / 2, rel=0.01)
    fixed = generate(random_range_workload(100, 10, 1.0), 50, rate=math.inf, seed=0)
    assert set(fixed.input_tokens) == {100} and set(fixed.output_tokens) == {10}
    with pytest.raises(PlannerError, match="fraction from 0 to 1"):
        random_range_workload(100, 10, 1.5)


def test_per_gpu_rates_divide_the_run_by_its_gpus_and_a_range_ratio_row_replays_its_draws():
    """A row that prints rates per GPU compares the simulated run's rate over replicas x tp x pp x attention-DP GPUs;
    with a range ratio the simulated prompts average about 0.9 of the requested length at r = 0.8, so the run's
    total tokens per completed request are about 0.9 x (isl + osl)."""
    row = {"source": "test", "engine": "vllm", "engine_version": "0.11.0", "model": "llama-3.1-8b", "hardware": "h100-sxm",
           "tp": "2", "isl": "1024", "osl": "256", "random_range_ratio": "0.8", "num_prompts": "160", "rate": "inf",
           "max_concurrency": "16", "requests_per_s": "1", "total_tokens_per_s": "1", "total_tokens_per_s_per_gpu": "1",
           "output_tokens_per_s_per_gpu": "1"}
    out = {what: pred for _, what, _, _, pred, _ in predict_bench_serve([row])}
    assert out["total_tokens_per_s_per_gpu"] == pytest.approx(out["total_tokens_per_s"] / 2, rel=1e-9)
    per_request = out["total_tokens_per_s"] / out["requests_per_s"]
    assert 0.85 * (1024 + 256) < per_request < 0.95 * (1024 + 256)
    assert out["output_tokens_per_s_per_gpu"] < out["total_tokens_per_s_per_gpu"]


def test_the_inferencex_closed_loops_are_held_out_and_every_row_is_predicted():
    """SemiAnalysis InferenceX's DeepSeek-R1 runs (SGLang and trtllm-serve at their recipes' flags): held out of the
    joint fit and the rate stage, each row naming its run, every metric predicted through the simulator at the client's
    length draws (--random-range-ratio 0.8) and its per-GPU rates over the GPUs the server ran on."""
    from planner.calibrate import rate_fit

    path, rows = _published("serving_bench_inferencex.csv")
    assert path.name in joint.NOT_FITTED and path.name in rate_fit.HELD_OUT_FILES
    assert rows and all("actions/runs/" in r["source"] and r["random_range_ratio"] == "0.8" for r in rows)
    assert {engine_of(r).split("@")[0] for r in rows} == {"sglang", "trtllm"}
    out = list(predict_simulated(path.name, set(rows[0]), rows))
    assert len({i for i, *_ in out}) == len(rows)
    assert all(pred is not None and np.isfinite(pred) and pred > 0 for _, _, _, _, pred, _ in out)
    whats = {what for _, what, *_ in out}
    assert {"median_ttft_s", "mean_tpot_s", "total_tokens_per_s_per_gpu"} <= whats
    # AMD's DeepSeek-R1 FP4 checkpoint is MXFP4, NVIDIA's NVFP4 (the planner's fp4)
    assert {r["weights"] for r in rows if r["hardware"].startswith("mi")} <= {"fp8", "mxfp4"}
    assert {r["weights"] for r in rows if not r["hardware"].startswith("mi")} <= {"fp8", "fp4"}


def test_the_l4_runs_are_held_out_and_a_closed_loop_of_a_small_model_saturates_the_step():
    """serving_bench_l4.csv (vLLM on one L4, a device no other row comes from) measures transfer: neither fit stage reads
    it and each run is predicted. A closed loop of Qwen2.5-0.5B (256-token prompts, 128-token replies) scales its rate with
    the clients while the step is nearly flat: 32 clients run less than 32 x one client's rate, more than 16 x."""
    from planner.calibrate import rate_fit

    f, runs = _published("serving_bench_l4.csv")
    assert f.name in rate_fit.HELD_OUT_FILES and "held out" in joint.NOT_FITTED[f.name]
    assert rate_fit.rate_rows([f]) == {}
    assert {r["hardware"] for r in runs} == {"l4"} and len(runs) == 13
    out = list(predict_simulated(f.name, set(runs[0]), runs))
    metrics = sum(sum(1 for k in ("requests_per_s", "output_tokens_per_s", "mean_ttft_s", "mean_tpot_s") if r[k]) for r in runs)
    assert len(out) == metrics == 2 * 5 + 4 * 8 and all(pred is not None and pred > 0 for *_, pred, _ in out)
    # the Llama 2 7B closed loops (one prompt sent 100 times): more clients, longer steps and more requests a second
    tpot = [pred for i, what, _, _, pred, _ in out if what == "mean_tpot_s"]
    rps = [pred for i, what, _, _, pred, _ in out if what == "requests_per_s" and runs[i]["model"] == "llama-2-7b"]
    assert tpot == sorted(tpot) and rps == sorted(rps)
    rate = {runs[i]["max_concurrency"]: pred for i, what, _, _, pred, _ in out
            if what == "requests_per_s" and runs[i]["model"] == "qwen2.5-0.5b"}
    assert 16 * rate["1"] < rate["32"] < 32 * rate["1"]


def test_a_closed_loops_next_prompt_waits_out_the_running_step():
    """A closed-loop client's next prompt reaches the engine the front-end time after the boundary its last reply
    ended at, while the step the other clients' sequences started there runs: its TTFT is about two decode steps, one
    client's (an idle engine) about one. With fixed lengths the replay would keep two clients in lockstep, one prompt
    step for both; replies that end together release their follow-ups one after another, as a client reads them."""
    from planner.api import PlanSpec
    from planner.serving.predict import estimate

    # one prompt sent again and again (the prefix cache holds it, so a prompt step is about a decode step), as
    # serving_bench_l4.csv's Llama-2-7B study ran it
    row = {"engine": "vllm", "engine_version": "0.11.2", "model": "llama-2-7b", "hardware": "l4", "tp": "1",
           "dataset": "random", "isl": "135", "osl": "256", "num_prompts": "100", "rate": "inf", "mean_ttft_s": "1",
           "mean_tpot_s": "1", "dataset_entries": "1"}
    got = {c: {what: pred for _, what, _, _, pred, _ in predict_bench_serve([{**row, "max_concurrency": str(c)}])}
           for c in (1, 2, 4)}
    for c in (2, 4):  # (a step's rest beside the overhead) + the prompt's own step, against the idle engine's one step
        extra = got[c]["mean_ttft_s"] - got[1]["mean_ttft_s"]
        assert 0.75 * got[c]["mean_tpot_s"] < extra < 1.25 * got[c]["mean_tpot_s"], c
    # the analytic closed loop adds the running step's rest (the step less the front-end time) from two clients on
    e1, e2 = (estimate("llama-2-7b", "l4", PlanSpec(), engine="vllm@0.11.2", isl=135, osl=256, concurrency=c)
              for c in (1, 2))
    assert e2.ttft_s - e1.ttft_s > 0.8 * e2.tpot_s
