"""The calibration's second stage: an engine release's host and collective costs fitted to its runs at request rates
(planner/calibrate/rate_fit.py), and how cross-validation folds treat them."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from planner.calibrate import rate_fit
from planner.calibrate.validate import builtin_published
from planner.costmodel.params import builtin_calibration, using
from planner.serving import vllm_rate
from planner.errors import PlannerError
from planner.specs.engine import get_engine, raw_profiles


@pytest.fixture(scope="module")
def rows():
    return rate_fit.rate_rows(builtin_published())


def test_rate_rows_are_grouped_by_the_release_that_ran_them(rows):
    # vllm_rate.csv; online_serving.csv (TensorRT-LLM 0.14); serving_bench.csv's vLLM 0.8-0.11, SGLang 0.5 and
    # trtllm-serve (TensorRT-LLM 1.x) runs
    assert set(rows) == {"vllm@0.15", "trtllm@0.14", "vllm@0.11", "sglang@0.5", "trtllm@1.1"}
    assert all(r.row["engine"] == "vllm" and "0.15" in r.row["engine_version"] for r in rows["vllm@0.15"])
    # online serving on the H100 and H200 (the same TensorRT-LLM 0.14 table)
    assert {r.file for r in rows["trtllm@0.14"]} == {"online_serving.csv", "online_serving_h200.csv"}
    # serving benchmarks: vLLM 0.11's fit its compute scales and front end, SGLang's and trtllm-serve's their API thread
    for k in ("vllm@0.11", "sglang@0.5", "trtllm@1.1"):
        assert {r.file for r in rows[k]} == {"serving_bench.csv"} and all(r.bench for r in rows[k])
    assert not any(r.bench for r in rows["vllm@0.15"] + rows["trtllm@0.14"])


def test_a_held_out_serving_benchmark_file_reaches_neither_stage(tmp_path):
    """serving_bench_more.csv holds vLLM runs the rate stage would fit (a num_prompts column, engine vllm): it is held
    out to measure transfer, so the rate stage reads none of its rows and the joint fit names it as not fitted."""
    import csv

    from planner.calibrate import joint

    (f,) = [p for p in builtin_published() if p.name == "serving_bench_more.csv"]
    with f.open(newline="") as fh:
        runs = list(csv.DictReader(fh))
    assert len(runs) >= 60 and all(r["engine"] == "vllm" and r["num_prompts"] for r in runs)
    assert f.name in rate_fit.HELD_OUT_FILES and "held out" in joint.NOT_FITTED[f.name]
    assert rate_fit.rate_rows([f]) == {}
    # the same rows under another file name would be fitted: it is the name that holds them out
    other = tmp_path / "serving_bench_copy.csv"
    other.write_text(f.read_text())
    assert sum(len(v) for v in rate_fit.rate_rows([other]).values()) == len(runs)


def test_a_serving_benchmark_fits_the_request_time_and_a_compute_scale_per_architecture(rows):
    """vLLM 0.11 has no joint-fit rows and only serving-benchmark runs: it takes the per-request time of the endpoint
    its closed loops' TTFTs went through (gpustack's `--backend openai-chat`: the chat endpoint's) and one scale of
    its GEMM, grouped-GEMM and attention efficiencies per architecture the runs used, each from the joint fit's value."""
    from planner.serving.published import endpoint_of

    cal = builtin_calibration()
    prob = rate_fit._Problem("vllm@0.11", rows["vllm@0.11"], cal, 1.0)
    assert prob.bench and prob.names == ("chat_request_s", "compute@ampere", "compute@hopper")
    timed = [r for r in rows["vllm@0.11"] if rate_fit._fittable(r, "mean_ttft_s")]
    assert timed and {endpoint_of(r.row) for r in timed} == {"chat"}
    # the completions runs among them (Michaelvll's sglang.bench_serving --backend vllm bursts) time no TTFT that is
    # fitted: they inform no completions time; were their TTFTs fitted, the fit would take both
    assert any(endpoint_of(r.row) == "completions" for r in rows["vllm@0.11"])
    loops = [timed[0], rate_fit.RateRow(timed[1].file, timed[1].cols, {**timed[1].row, "endpoint": "completions"})]
    assert rate_fit._request_params(loops) == ("request_s", "chat_request_s")
    assert prob.prior["compute@hopper"] == 1.0 and np.allclose(np.exp(prob.lo[1:]), rate_fit.COMPUTE_BOUNDS[0])
    # what is fitted of a run: its request rate and TPOT, a single stream's decode rate, a closed loop's TTFT; not a
    # burst's TTFT (its queue) nor the output tokens/s that repeat the request rate
    burst = next(r for r in rows["vllm@0.11"] if not (r.row.get("max_concurrency") or "").strip())
    loop = next(r for r in rows["vllm@0.11"] if (r.row.get("max_concurrency") or "").strip())
    assert rate_fit._fittable(burst, "requests_per_s") and rate_fit._fittable(burst, "mean_tpot_s")
    assert not rate_fit._fittable(burst, "mean_ttft_s") and not rate_fit._fittable(burst, "output_tokens_per_s")
    assert rate_fit._fittable(loop, "mean_ttft_s")
    # a scale multiplies that architecture's compute efficiencies and nothing else
    joint = {m: cal["vllm@0.15"].engine_wide[m][0] for m in rate_fit.COMPUTE}
    base = copy.deepcopy(cal)
    base["vllm@0.11"] = copy.deepcopy(cal["vllm@0.15"])
    base["vllm@0.11"].architectures.clear()
    scaled = rate_fit._calibration_with(base, "vllm@0.11", {"compute@ampere": 0.5}, "rate fit: test")
    blk = scaled["vllm@0.11"].architectures["ampere"]
    assert {m: blk[m][0] for m in rate_fit.COMPUTE} == pytest.approx({m: 0.5 * v for m, v in joint.items()})
    assert set(blk) == set(rate_fit.COMPUTE) and "hopper" not in scaled["vllm@0.11"].architectures


def test_the_files_in_force_carry_vllm_0_11s_compute_scales_where_its_runs_ran():
    import re

    got = rate_fit.in_force(builtin_calibration())["vllm@0.11"]
    for arch in ("hopper", "ampere"):
        # each compute efficiency is the joint fit's value for that architecture (the vLLM family's own since V0 rows
        # are fitted) times the architecture's one scale, and its source names both
        scale, base = {}, {}
        for m in rate_fit.COMPUTE:
            value, source = got[(arch, m)]
            hit = re.search(r"\(x([0-9.]+) of the joint fit's ([0-9.eE+-]+)\)", source)
            assert hit, source
            scale[m], base[m] = float(hit.group(1)), float(hit.group(2))
            assert value == pytest.approx(scale[m] * base[m], rel=2e-3)  # both printed to 3-4 significant digits
        assert max(scale.values()) == min(scale.values())  # one scale per architecture
        assert rate_fit.COMPUTE_BOUNDS[0] < scale["gemm"] < 1.0  # its runs are slower than the joint fit's kernels
    assert ("blackwell", "gemm") not in got  # no vLLM 0.11 run on Blackwell: the joint fit's values stand there
    assert 0.0 < got[(None, "chat_request_s")][0] < 0.1 and (None, "request_s") not in got  # inferred, not fitted


class _FlatStart:
    """A one-value fit whose only row is a TTFT of 12 ms of prefill plus the per-request time, measured at 59 ms: from
    the 1 ms prior the cost barely moves with the value, the case the coarse start grid is there for."""

    names = ("request_s",)
    x0 = np.log([1e-3])
    lo, hi = np.log([1e-5]), np.log([0.1])

    def residuals(self, x):
        return np.concatenate([[np.log((0.012 + np.exp(x[0])) / 0.059)], 0.3 * (x - self.x0)])


def test_the_request_time_search_starts_at_the_best_point_of_a_grid_over_its_range():
    prob = _FlatStart()
    x = rate_fit._start(prob, prob.residuals(prob.x0))
    # grid points 1, 3, 10, 30, 100 ms give TTFTs of 13, 15, 22, 42, 112 ms against 59: 30 ms is the nearest in log
    assert np.exp(x[0]) == pytest.approx(0.03)
    assert rate_fit._soft_l1(prob.residuals(x)) < rate_fit._soft_l1(prob.residuals(prob.x0))
    kern = type("P", (), {"names": ("kernel_s",), "x0": np.log([4e-6]), "lo": np.log([1e-7]), "hi": np.log([1e-4])})()
    assert np.array_equal(rate_fit._start(kern, np.zeros(1)), kern.x0)  # nothing to move without a request time


def test_vllm_0_11s_request_time_covers_its_chat_path_at_one_client(rows):
    """gpustack's Qwen3-8B closed loops on an H100 (1-8 clients, 233-token chat prompts): TTFT 59-75 ms where the prefill
    takes about 12; the fitted per-request time carries the rest, so the predicted TTFTs land within 25 %."""
    from planner.serving.published import predict_bench_serve

    runs = [r.row for r in rows["vllm@0.11"] if r.row["model"] == "qwen3-8b" and (r.row.get("max_concurrency") or "").strip()]
    assert len(runs) == 4
    got = [(meas, pred) for _i, col, _c, meas, pred, _n in predict_bench_serve(runs) if col == "mean_ttft_s"]
    assert len(got) == 4 and all(0.75 < pred / meas < 1.25 for meas, pred in got)
    chat_s = rate_fit.in_force(builtin_calibration())["vllm@0.11"][(None, "chat_request_s")][0]
    assert 0.02 < chat_s < 0.08
    assert all("openai-chat" in r["source"] and r["endpoint"] == "chat" for r in runs)


def test_a_release_with_joint_fit_rows_takes_its_kernel_gap_and_request_time_from_rate_rows():
    """TensorRT-LLM 0.14's throughput rows pin its GEMM, attention and all-reduce efficiencies; its online rows, a few
    sequences a step, give the per-kernel gap (a value of the architecture they ran on) and the front end."""
    cal = builtin_calibration()
    assert cal["trtllm@0.14"].rows
    prob = rate_fit._Problem("trtllm@0.14", [], cal, 1.0)
    assert prob.names == rate_fit.JOINT_RELEASE_PARAMS == ("kernel_s", "request_s")
    assert set(prob.names) - {"request_s"} <= set(rate_fit.DEVICE_PARAMS)
    assert rate_fit._Problem("vllm@0.15", [], cal, 1.0).names == rate_fit.RATE_PARAMS
    got = rate_fit.in_force(cal)["trtllm@0.14"]
    assert ("hopper", "kernel_s") in got and ("hopper", "allreduce") not in got
    assert 3e-6 < got[("hopper", "kernel_s")][0] < 3e-5  # a launch gap of a few microseconds, not the fold's drift


def test_offline_benchmark_rows_have_no_front_end():
    """trtllm-bench and llama-bench submit in process: a fitted per-request time must not reach their TTFT."""
    from planner.calibrate.bench_settings import offline

    assert offline("vllm@0.15").request_overhead_s == 0.0
    assert offline("vllm@0.15").name == get_engine("vllm@0.15").name


def test_a_candidate_calibration_carries_its_engine_fields_into_the_profiles():
    """Within using(cal) the engine's per-request time is the candidate's, not the files'; outside, the files'."""
    cal = rate_fit._calibration_with(copy.deepcopy(builtin_calibration()), "vllm@0.15", {"request_s": 0.0123})
    with using(cal):
        assert get_engine("vllm@0.15").request_overhead_s == pytest.approx(0.0123)
    # a calibration without the value (a fold whose rate rows are all held out) leaves the profile's own (0 s)
    bare = copy.deepcopy(builtin_calibration())
    bare["vllm@0.15"].engine_wide.pop("request_s", None)
    with using(bare):
        assert get_engine("vllm@0.15").request_overhead_s == raw_profiles()["vllm@0.15"].request_overhead_s


def test_request_time_adds_to_every_simulated_ttft(rows):
    """One millisecond more per request moves a lightly loaded run's mean TTFT and e2e by about that much."""
    first = rows["vllm@0.15"][0].row["experiment"]
    exp = [r.row for r in rows["vllm@0.15"] if r.row["experiment"] == first]
    base = copy.deepcopy(builtin_calibration())
    out = {}
    for extra in (0.0, 0.005):
        cal = rate_fit._calibration_with(base, "vllm@0.15", {"request_s": 0.002 + extra})
        with using(cal):
            res, wl, _ = vllm_rate._experiment(exp, "vllm_rate.csv", duration_scale=0.05)
        first_stage = res.done & (res.arrival_s < wl.edges_s[1])
        out[extra] = (np.mean(res.ttft_s[first_stage]), np.mean(res.e2e_s[first_stage]))
    assert out[0.005][0] - out[0.0][0] == pytest.approx(0.005, rel=0.2)
    assert out[0.005][1] - out[0.0][1] == pytest.approx(0.005, rel=0.5)


def test_a_fold_reuses_refits_or_drops_the_rate_values(rows):
    rates = rate_fit.rate_rows(builtin_published())
    reuse = {"vllm@0.15": {(None, "request_s"): (0.0077, "rate fit: test"), ("hopper", "allreduce"): (0.9, "rate fit: test")}}
    fold = copy.deepcopy(builtin_calibration())
    fold["vllm@0.15"].architectures.clear()
    for n in rate_fit.RATE_PARAMS:
        fold["vllm@0.15"].engine_wide[n] = (0.5 if n == "allreduce" else 1e-6, "joint fit")
    # holding out a device without rate rows: the values fitted to the same rate rows stand, each where it applies
    kept = rate_fit.for_fold(rates, fold, lambda r: r.hardware == "a100-sxm-80gb", reuse)
    assert kept["vllm@0.15"].engine_wide["request_s"][0] == 0.0077
    assert kept["vllm@0.15"].architectures["hopper"]["allreduce"][0] == 0.9
    assert kept["vllm@0.15"].engine_wide["allreduce"][0] == 0.5  # other architectures keep the joint fit's
    # holding out every rate row: nothing to fit, the joint fit's values stand (no leak of the held-out rows); a real
    # fold's joint refit carries no rate-fit value of any release, so no release lends vLLM 0.15 a front-end time either
    fold["trtllm@0.14"].engine_wide["request_s"] = (1e-6, "joint fit")
    every = rate_fit.for_fold(rates, fold, lambda r: r.hardware in ("h100-sxm", "h200-sxm"), reuse)
    assert every["vllm@0.15"].engine_wide["allreduce"][0] == 0.5
    assert every["vllm@0.15"].engine_wide["request_s"][0] == 1e-6
    assert "hopper" not in every["vllm@0.15"].architectures


def test_the_h100_fold_learns_the_front_end_and_the_hopper_kernel_gap_from_the_h200_runs():
    """Every vLLM rate run is an H100 run, but TensorRT-LLM 0.14's online runs are on the H100 and the H200: leaving the
    H100 out refits that release's front-end time on the H200 runs alone (host work, the same under either GPU), and
    vLLM 0.15, left with no runs of its own, takes it as every release behind an HTTP server without runs does; the
    same runs give the fold its Hopper per-kernel gap."""
    rates = rate_fit.rate_rows(builtin_published())
    fold = copy.deepcopy(builtin_calibration())
    fold["trtllm@0.14"].engine_wide["request_s"] = (1e-6, "joint fit")
    fold["vllm@0.15"].engine_wide["request_s"] = (1e-6, "joint fit")
    # a fold without the H100 has no TensorRT-LLM rows on Hopper: its joint refit writes no Hopper block, and its
    # engine-wide kernel gap is what the A100 and L40S rows alone give (2.3 us in that fold)
    fold["trtllm@0.14"].architectures.pop("hopper", None)
    fold["trtllm@0.14"].engine_wide["kernel_s"] = (2.3e-6, "joint fit")
    h100_out = rate_fit.for_fold(rates, fold, lambda r: r.hardware == "h100-sxm", {})
    trt = h100_out["trtllm@0.14"].engine_wide["request_s"]
    assert 3e-3 < trt[0] < 9e-3 and "h200-sxm" in trt[1] and "h100-sxm" not in trt[1]
    assert h100_out["vllm@0.15"].engine_wide["request_s"][0] == pytest.approx(trt[0], rel=1e-6)
    # the per-kernel gap of the Hopper runs left in the fold (the H200's) prices the H100; other architectures keep the
    # joint refit's value
    gap = h100_out["trtllm@0.14"].architectures["hopper"]["kernel_s"]
    assert 5e-6 < gap[0] < 3e-5 and "h200-sxm" in gap[1] and "h100-sxm" not in gap[1]
    assert h100_out["trtllm@0.14"].engine_wide["kernel_s"][0] == 2.3e-6


def test_the_files_in_force_carry_a_rate_fit_for_vllm_with_physical_values():
    got = rate_fit.in_force(builtin_calibration())
    assert "vllm@0.15" in got
    vals = {n: v for (_arch, n), (v, _src) in got["vllm@0.15"].items()}
    assert 0.0 < vals["request_s"] < 0.1  # seconds per request: an API server's tokenize + HTTP + detokenize
    assert 0.2 <= vals["allreduce"] <= 1.2  # x the interconnect's nccl-tests fraction
    assert 0.0 < vals["kernel_s"] < 3e-5
    # the host-side per-request time is the release's own; the per-kernel gap and the collectives belong to the GPU
    # the rate rows ran on (Hopper: every vLLM rate row is an H100 run)
    assert (None, "request_s") in got["vllm@0.15"]
    assert {("hopper", "kernel_s"), ("hopper", "allreduce")} <= set(got["vllm@0.15"])


def test_rate_fitted_device_values_stay_on_their_architecture():
    """vLLM's Hopper-fitted kernel gap and collective efficiency price Hopper devices; a GPU of another architecture
    keeps the all-engine collective efficiency; another architecture, NVIDIA (B200) or AMD (MI300X, where vLLM replays
    HIP graphs), takes the Hopper-fitted gap as the graph-mode gap (``graph_gap``), and says so."""
    from planner.costmodel.params import kernels_for
    from planner.specs.loader import get_hardware

    cal = builtin_calibration()["vllm@0.15"]
    for hw in ("h100-sxm", "h200-sxm"):
        k = kernels_for(get_engine("vllm@0.15"), get_hardware(hw))
        assert k.values["kernel_s"] == cal.architectures["hopper"]["kernel_s"][0]
        assert k.provenance["kernel_s"].startswith("rate fit")
    for hw in ("mi300x", "b200"):
        k = kernels_for(get_engine("vllm@0.15"), get_hardware(hw))
        assert k.values["allreduce"] == cal.engine_wide["allreduce"][0]
        assert k.values["kernel_s"] == cal.architectures["hopper"]["kernel_s"][0] != cal.engine_wide["kernel_s"][0]
        assert k.provenance["kernel_s"].startswith("CUDA-graph kernel gap") and "vllm@0.15 on hopper" in k.provenance["kernel_s"]
    # the per-request front end is the same on every GPU
    assert get_engine("vllm@0.15").request_overhead_s == cal.engine_wide["request_s"][0]


def test_graph_replaying_releases_take_the_graph_gap_not_the_host_launch_gap():
    """SGLang has no rows: on NVIDIA GPUs, and on AMD ones where it replays HIP graphs, it takes the graph-mode gap
    fitted for vLLM on Hopper, not the joint fit's value, which engines launching each kernel from the host set;
    TensorRT-LLM 1.x (the PyTorch backend's CUDA graphs) takes it too, not the gap its TensorRT-runtime releases
    fitted; a fold without vLLM's rate rows has no sample and changes nothing."""
    from planner.costmodel.params import kernels_for
    from planner.specs.loader import get_hardware

    cal = builtin_calibration()
    gap = cal["vllm@0.15"].architectures["hopper"]["kernel_s"][0]
    for hw in ("h100-sxm", "b200", "a100-sxm-80gb", "l40s", "mi300x"):
        assert kernels_for(get_engine("sglang@0.5"), get_hardware(hw)).values["kernel_s"] == gap
    assert cal["sglang@0.5"].engine_wide["kernel_s"][0] != gap
    for hw in ("h100-sxm", "b200"):
        k = kernels_for(get_engine("trtllm@1.1"), get_hardware(hw))
        assert k.values["kernel_s"] == gap and k.provenance["kernel_s"].startswith("CUDA-graph kernel gap")
    # TensorRT-LLM 0.14 launches from the host: its own fitted gap, larger than the graph-mode one
    assert kernels_for(get_engine("trtllm@0.14"), get_hardware("a100-sxm-80gb")).values["kernel_s"] > gap
    bare = copy.deepcopy(cal)
    bare["vllm@0.15"].architectures["hopper"]["kernel_s"] = (gap, "joint fit")
    for k in ("sglang@0.5", "vllm@0.6"):
        bare[k].architectures.clear()
    assert rate_fit.graph_gap(bare)["sglang@0.5"].architectures == {}  # no rate-fitted sample: nothing laid over


def test_the_all_engine_kernel_gap_stays_at_its_prior():
    """The per-kernel gap is anchored: the engines with joint-fit rows launch from the host (TensorRT's runtime,
    llama.cpp's 2023-24 builds) and fit 10-15 us, which must not become the value of an engine without rows; the
    all-engine value stays within a few percent of the 3 us prior (one host launch)."""
    from planner.costmodel.params import PARAM_BY_NAME

    cal = builtin_calibration()
    prior = PARAM_BY_NAME["kernel_s"].prior
    assert PARAM_BY_NAME["kernel_s"].anchored
    v = cal["sglang@0.5"].engine_wide["kernel_s"]
    assert v[1].startswith("no rows of sglang") and v[0] == pytest.approx(prior, rel=0.2)
    assert cal["trtllm@0.9"].engine_wide["kernel_s"][0] > 2 * prior


def test_an_nvidia_architecture_without_runs_takes_the_mean_compute_scale_and_amd_keeps_the_joint_values():
    """vLLM 0.11's compute scale reaches the NVIDIA architectures its runs did not use (one CUDA kernel stack) as the
    geometric mean of the fitted ones; AMD's keep the joint fit's values (ROCm's own kernels)."""
    cal = builtin_calibration()
    c = cal["vllm@0.11"]
    ew = c.engine_wide["gemm"][0]
    fitted = {a: c.architectures[a]["gemm"][0] / ew for a in ("hopper", "ampere")}
    g = float(np.exp(np.mean(np.log(list(fitted.values())))))
    for arch in ("ada", "blackwell"):
        blk = c.architectures[arch]
        assert blk["gemm"][0] == pytest.approx(ew * g, rel=1e-3) and blk["gemm"][1].startswith("inferred")
        assert blk["attention"][0] == pytest.approx(c.engine_wide["attention"][0] * g, rel=1e-3)
    assert "gemm" not in c.architectures.get("cdna3", {})  # MI300X: the engine-wide (joint) value stands
    # a fold that keeps only the Hopper runs lays the Hopper scale over Ampere
    fold = copy.deepcopy(cal)
    fold["vllm@0.11"].architectures = {a: dict(b) for a, b in c.architectures.items() if a == "hopper"}
    out = rate_fit.compute_scales(fold)
    assert out["vllm@0.11"].architectures["ampere"]["gemm"][0] == pytest.approx(ew * fitted["hopper"], rel=1e-3)
    # the inferred values are not rate-fit values: a fold does not carry them as its own
    assert ("ada", "gemm") not in rate_fit.in_force(cal)["vllm@0.11"]


def test_a_release_behind_a_python_http_server_takes_the_fitted_front_end_time():
    """SGLang, trtllm-serve (TensorRT-LLM 1.x) and vLLM 0.6 serve through a Python OpenAI-compatible HTTP server and have
    no runs at request rates: each takes the geometric mean of the per-request times fitted on such runs (vLLM 0.15,
    TensorRT-LLM 0.14), never vLLM 0.11's serving-benchmark value. Releases without such a server (TensorRT-LLM 0.9's
    in-process runs, llama.cpp's C++ server) take none; a fold without rate runs has no sample and changes nothing."""
    cal = builtin_calibration()
    fitted = [cal[k].engine_wide["request_s"][0] for k in ("vllm@0.15", "trtllm@0.14")]
    assert all(cal[k].engine_wide["request_s"][1].startswith("rate fit") for k in ("vllm@0.15", "trtllm@0.14"))
    g = float(np.exp(np.mean(np.log(fitted))))
    assert 1e-3 < g < 2e-2  # milliseconds of host work, not the 48 ms vLLM 0.11's chat-endpoint fit carries
    for k in ("sglang@0.5", "trtllm@1.1", "vllm@0.6"):
        v, src = cal[k].engine_wide["request_s"]
        assert v == pytest.approx(g, rel=1e-3) and src.startswith("inferred")
        assert get_engine(k).http_front_end and get_engine(k).request_overhead_s == pytest.approx(g, rel=1e-3)
    for k in ("trtllm@0.9", "llamacpp@b3000", "llamacpp@unpinned"):
        assert not get_engine(k).http_front_end and get_engine(k).request_overhead_s == 0.0
    # vLLM 0.11's own fit is of the chat endpoint (its closed loops went through it) and stands; its completions time
    # is inferred like any release's without rate runs, never from the chat value
    assert cal["vllm@0.11"].engine_wide["chat_request_s"][1].startswith("rate fit")
    v, src = cal["vllm@0.11"].engine_wide["request_s"]
    assert v == pytest.approx(g, rel=1e-3) and src.startswith("inferred")
    # so do SGLang's and trtllm-serve's, fitted beside their API threads on the same kind of runs (THREAD_ENGINES)
    assert all("chat_request_s" not in cal[k].engine_wide for k in cal if k not in ("vllm@0.11", "sglang@0.5", "trtllm@1.1"))
    for k in ("sglang@0.5", "trtllm@1.1"):
        assert all(cal[k].engine_wide[n][1].startswith("rate fit") for n in ("chat_request_s", "api_request_s", "api_chunk_s"))
    bare = copy.deepcopy(cal)
    for k in ("vllm@0.15", "trtllm@0.14"):
        del bare[k].engine_wide["request_s"]
    for k in ("sglang@0.5", "trtllm@1.1", "vllm@0.6"):
        del bare[k].engine_wide["request_s"]
    out = rate_fit.front_end(bare)
    assert all("request_s" not in out[k].engine_wide for k in ("sglang@0.5", "trtllm@1.1", "vllm@0.6"))


def test_an_estimate_says_what_front_end_time_its_ttft_holds():
    """TTFT = the engine's steps + the release's per-request front-end time; the estimate names that time and where it
    came from, and a release without one (llama.cpp) says nothing of it."""
    from planner.api import PlanSpec, estimate

    for eng, how in (("vllm@0.15", "fitted on its runs"), ("sglang@0.5", "inferred from")):
        e = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=128, osl=16, concurrency=1, engine=eng)
        front = get_engine(eng).request_overhead_s
        note = [n for n in e.notes if "front-end time" in n]
        assert front > 0 and e.ttft_s > front and len(note) == 1 and how in note[0] and f"{front * 1e3:.1f} ms" in note[0]
    e = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="q4_0"), isl=128, osl=16, concurrency=1, engine="llamacpp")
    assert not any("front-end time" in n for n in e.notes)


def test_the_chat_endpoint_costs_what_its_release_was_fitted_to_and_the_completions_one_what_rate_runs_say():
    """An engine on the chat endpoint takes its release's fitted chat time (vLLM 0.11: gpustack's openai-chat closed
    loops, ~50 ms) and a release without one keeps its completions time; an estimate's TTFT moves by the difference
    and its note names the endpoint. A serving-benchmark row runs on its own endpoint column."""
    from planner.api import PlanSpec, estimate
    from planner.serving.published import endpoint_of

    old = get_engine("vllm@0.11")
    chat = old.on_endpoint("chat")
    assert old.endpoint == "completions" and 1e-3 < old.request_overhead_s < 2e-2
    assert chat.request_overhead_s == old.chat_request_overhead_s and 0.02 < chat.request_overhead_s < 0.08
    assert chat.on_endpoint("completions") == old  # and back
    new = get_engine("vllm@0.15")
    assert new.chat_request_overhead_s is None and new.on_endpoint("chat").request_overhead_s == new.request_overhead_s
    with pytest.raises(PlannerError, match="unknown endpoint"):
        old.on_endpoint("responses")
    a = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=128, osl=16, concurrency=1, engine=old)
    b = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=128, osl=16, concurrency=1, engine=chat)
    assert b.ttft_s - a.ttft_s == pytest.approx(chat.request_overhead_s - old.request_overhead_s, rel=1e-6)
    assert any("on the chat endpoint" in n for n in b.notes) and any("--endpoint chat" in n for n in a.notes)
    assert endpoint_of({}) == "completions" and endpoint_of({"endpoint": " Chat "}) == "chat"
    # the request models' --endpoint choices are the engine's endpoints (written out there: params.py loads no engine)
    from typing import get_args

    from planner.specs.engine import ENDPOINTS
    from planner.studies.params import Endpoint

    assert get_args(Endpoint) == ENDPOINTS and tuple(rate_fit.REQUEST_PARAMS) == ENDPOINTS
    with pytest.raises(PlannerError, match="endpoint must be one of"):
        endpoint_of({"endpoint": "grpc"}, "x.csv:2")


def test_a_plan_says_once_what_front_end_time_its_ttfts_hold():
    """Every plan row's TTFT holds the release's per-request front-end time: the plan's notes say it once."""
    from planner.search.evaluate import Workload
    from planner.search.run import Constraints, search

    res = search("llama-3.1-8b", ["h100-sxm"], 2, Workload(isl=512, osl=128), Constraints(gpus=2), engine="vllm")
    assert sum("front-end time" in n for n in res.notes) == 1
    res = search("llama-3.1-8b", ["h100-sxm"], 1, Workload(isl=512, osl=128), Constraints(gpus=1), engine="llamacpp")
    assert not any("front-end time" in n for n in res.notes)


def test_a_benchmark_of_identical_replicas_is_simulated_on_that_many():
    """A serving-benchmark row with ``replicas`` N (cloudrift's runs behind an NGINX round-robin balancer) is the run's
    printed totals: simulated as N replicas taking the client's requests in turn, it serves about N times one replica's
    requests per second, and the same row without the column (one replica) serves what one does."""
    from planner.serving.published import predict_bench_serve

    base = {"source": "test", "engine": "vllm", "engine_version": "0.11.0", "model": "llama-3.1-8b", "hardware": "h100-sxm",
            "tp": "1", "dataset": "random", "isl": "512", "osl": "128", "num_prompts": "400", "rate": "inf",
            "max_concurrency": "200", "requests_per_s": "1.0"}
    one = {w: p for _, w, _, _, p, _ in predict_bench_serve([{**base, "num_prompts": "100", "max_concurrency": "50"}])}
    four = predict_bench_serve([{**base, "replicas": "4"}])
    assert all("replicas=4" in cfg for _, _, cfg, _, _, _ in four)
    got = {w: p for _, w, _, _, p, _ in four}
    assert got["requests_per_s"] == pytest.approx(4.0 * one["requests_per_s"], rel=0.1)
