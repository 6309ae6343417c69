"""The kernel/engine layer: resolution by (engine release, architecture), fast row predictions equal to
validate's, leave-one-out errors guarded against regressions, and error bands from the residuals."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_helpers import run
from planner.calibrate import crossval, joint
from planner.calibrate.published_fit import Predictor, load_rows
from planner.calibrate.uncertainty import Situation, load_bands, uncertainty
from planner.calibrate.validate import builtin_published, predict_row
from planner.costmodel.params import PARAMS, kernels_for
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware

TOLERANCE = 0.002  # absolute, on a median |error| fraction: float noise, not a loosening


@pytest.fixture(scope="module")
def rows():
    return load_rows(builtin_published())[0]


def test_fast_predictions_equal_validate_row_by_row(rows):
    """The joint fit's vectorized predictor prices a row exactly as `planner validate` does."""
    by_file = {f.name: list(csv.DictReader(f.open())) for f in builtin_published()}
    picked = {}
    for r in rows:  # a few rows of every kind, file and device
        picked.setdefault((r.kind, r.file, r.hardware), []).append(r)
    sample = [r for group in picked.values() for r in group[:2]]
    y = Predictor(sample).predict()
    checked = 0
    for r, v in zip(sample, y):
        _, _, meas, slow = predict_row(by_file[r.file][r.line - 2], Path(r.file), r.line)
        assert meas == r.measured
        if slow is not None and np.isfinite(slow):  # validate refuses isl + osl beyond the trained context
            assert v == pytest.approx(slow, rel=1e-9), (r.file, r.line)
            checked += 1
    assert checked >= 15


def test_a_device_without_rows_inherits_its_architecture_or_the_engine_wide_values():
    eng = get_engine("trtllm@0.14")
    h100, h200, b200 = (kernels_for(eng, get_hardware(h)) for h in ("h100-sxm", "h200-sxm", "b200"))
    # h200 has no published rows but shares Hopper's fitted block; b200's Blackwell has none: engine-wide
    assert h200.values == h100.values
    assert "hopper" in h100.provenance["gemm"] and "joint fit" in h100.provenance["gemm"]
    assert "inferred for blackwell" in b200.provenance["gemm"] and "calibrated" not in b200.provenance["gemm"]
    # every fitted value stays inside its physical bounds
    for k in (h100, b200):
        for p in PARAMS:
            if p.fitted:
                assert p.lo <= k.values[p.name] <= p.hi, p.name
    # an engine nobody calibrated runs the silicon microbenchmarks as measured, and says so
    neutral = kernels_for("harness", get_hardware("h100-sxm"))
    assert not neutral.calibrated and neutral.gemm == 1.0 and "no calibration" in neutral.provenance["gemm"]


def test_files_weigh_equally(rows):
    w = joint.file_weights(rows)
    totals = {}
    for r, wi in zip(rows, w):
        totals[r.file] = totals.get(r.file, 0.0) + wi**2
    assert max(totals.values()) == pytest.approx(min(totals.values()), rel=1e-9)


def test_recorded_in_sample_and_cross_validated_errors_do_not_get_worse():
    """A recalibration (or a cost-model change) that worsens the bundled rows' median error, in sample or for
    a held-out device or file, fails here; improve and re-record with
    `planner validate --cross-validate hardware --record`."""
    recorded = yaml.safe_load(crossval.record_path().read_text())["guarded"]
    fit_rows = [r for r in load_rows(builtin_published())[0] if r.file not in joint.NOT_FITTED]
    state = crossval._QuickRefit(fit_rows)
    now = crossval.guarded_errors(crossval.in_sample(simulated=False),
                                  crossval.cross_validate("hardware", quick=state, simulated=False),
                                  crossval.cross_validate("file", quick=state, simulated=False))
    for block, rec in recorded.items():
        assert now[block]["median_ape"] <= rec["median_ape"] + TOLERANCE, block
        per = next(k for k in rec if k.startswith("per_"))
        for key, value in rec[per].items():
            assert now[block][per][key] <= value + TOLERANCE, (block, key)


# devices whose left-out median misses the 15 % target, each with the weak spot that says why (README, docs/accuracy.md);
# the test below fails when one of them meets the target, so the list cannot outlive its reason
KNOWN_MEDIAN_MISSES: dict[str, str] = {
    # the H100 PCIe's three llama.cpp fit rows (its 2023-24 per-kernel launch gap, 14.5 us against the engine-wide
    # value) read 13.8 % left out since vLLM's V0 static batches joined the fit (15.4 % before): none misses now
}


def test_leave_one_hardware_out_meets_the_targets_for_gpus_with_many_rows():
    """Leave-one-hardware-out on the bundled fit rows (one-step refits): median <= 15 % for every GPU with
    >= 20 rows but the known misses, which still miss; in sample median <= 10 %."""
    rec = yaml.safe_load(crossval.record_path().read_text())["guarded"]
    fitted = {r.hardware for r in load_rows(builtin_published())[0] if r.file not in joint.NOT_FITTED}
    assert rec["in_sample"]["median_ape"] <= 0.10
    checked = [hw for hw in rec["loho_quick"]["per_hardware"] if hw in fitted]  # held-out devices have no fit rows to leave out
    assert len(checked) >= 3
    for hw in checked:
        median = rec["loho_quick"]["per_hardware"][hw]
        if hw in KNOWN_MEDIAN_MISSES:
            assert median > 0.15, f"{hw} now meets the target: drop it from KNOWN_MEDIAN_MISSES"
        else:
            assert median <= 0.15, hw


def test_readme_left_out_by_hardware_table_quotes_the_recorded_run():
    """README's leave-one-hardware-out table is the full run `--record` wrote (errors_recorded.yaml:
    cross_validated_hardware), device by device and in total, to the 0.1 % the table prints: a recalibration or a
    cost-model change that re-records cannot leave the README quoting the run before it."""
    run_ = yaml.safe_load(crossval.record_path().read_text())["cross_validated_hardware"]
    lines = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("\n")
    head = next(i for i, line in enumerate(lines) if line.startswith("| hardware | rows | in-sample median"))
    table = {}
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        table[cells[0]] = (int(cells[1]), cells[4], cells[5])
    pct = lambda x: f"{x * 100:.1f}%"  # noqa: E731
    want = {h["hardware"]: (h["rows"], pct(h["median_ape"]), pct(h["p90_ape"])) for h in run_["hardware"]}
    o = run_["overall"]
    want["all"] = (o["rows"], pct(o["median_ape"]), pct(o["p90_ape"]))
    assert table == want


def test_cross_validate_cli_json(capsys, tmp_path):
    f = next(p for p in builtin_published() if p.name == "static_batch.csv")
    code, out, err = run(["validate", str(f), "--cross-validate", "hardware", "--quick", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    devices = {s["hardware"] for s in d["hardware"]}
    assert devices == {"h100-sxm", "a100-sxm-80gb", "l40s"}
    for s in d["hardware"]:
        assert s["rows"] > 0 and 0 <= s["median_ape"] <= s["p90_ape"] < 5
    code, _, err = run(["validate", "--cross-validate", "gpu"], capsys)
    assert code == 2 and "hardware or file" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["static_batch.csv", "perf_overview_1_2_b300.csv"])  # fitted rows; simulated bursts
def test_cross_validate_rows_pair_each_held_out_row_with_its_in_sample_prediction(capsys, name):
    """`--rows` with `--cross-validate`: every held-out row, named by its file and line, beside its in-sample
    prediction, worst held-out error first; the errors are (predicted - measured) / measured of the two. The
    simulated file has two devices, so a fold's rows are a subset of the file's: the line is still the file's."""
    f = next(p for p in builtin_published() if p.name == name)
    code, out, err = run(["validate", str(f), "--cross-validate", "hardware", "--quick", "--json", "--rows"], capsys)
    assert code == 0, err
    d = json.loads(out)
    rows = d["rows"]
    assert len(rows) == sum(s["rows"] for s in d["hardware"]) > 0
    assert len({(r["file"], r["line"], r["what"]) for r in rows}) == len(rows)  # one entry per measurement
    with f.open(newline="") as fh:
        lines = {i: r for i, r in enumerate(csv.DictReader(fh), start=2)}
    for r in rows:
        src = lines[r["line"]]  # the line named is the row measured
        assert (src["model"], src["hardware"]) == (r["model"], r["hardware"])
        assert r["in_sample"] is not None and r["held_out"] is not None
        assert r["held_out_error"] == pytest.approx(r["held_out"] / r["measured"] - 1.0)
        assert r["in_sample_error"] == pytest.approx(r["in_sample"] / r["measured"] - 1.0)
    worst = [abs(r["held_out_error"]) for r in rows]
    assert worst == sorted(worst, reverse=True)
    # the summary's median is the median of these rows' held-out errors, device by device
    for s in d["hardware"]:
        mine = [abs(r["held_out_error"]) for r in rows if r["hardware"] == s["hardware"]]
        assert np.median(mine) == pytest.approx(s["median_ape"])
    code, out, err = run(["validate", str(f), "--cross-validate", "hardware", "--quick", "--rows"], capsys)
    assert code == 0 and "held out" in out and f"{name}:{rows[0]['line']}" in out


def test_fitted_means_rows_of_the_release_on_the_device():
    from planner.calibrate import crossval

    res = crossval.in_sample(simulated=False)
    by_file = {}
    for p in res.predictions:
        if p.hardware == "h100-sxm":
            by_file.setdefault(p.file, set()).add((p.engine, p.fitted))
    assert by_file["max_throughput.csv"] == {("trtllm@0.14", True)}
    assert by_file["modern_per_gpu.csv"] == {("trtllm@1.1", False)}  # held out: no 1.1 row is in the fit
    bands = load_bands()
    assert "h100-sxm" in bands["fitted_releases"]["trtllm@0.14"]
    assert "trtllm@1.1" not in bands["fitted_releases"]


def test_error_bands_bracket_zero_and_widen_for_devices_without_rows():
    """A band brackets zero, and for an engine whose fitted and inferred rows are the same kind of run (TensorRT-LLM's
    and llama.cpp's offline benchmarks) a device without rows gets the wider one. Pooled over engines the two dense
    decode bands are now within 0.1 % of each other, and vLLM's fitted band is the wider (its fitted rows are request-rate
    stages, some past saturation), so the comparison is made per engine."""
    assert load_bands()["bands"], "engines/calibration/error_bands.yaml is missing"
    for engine in (None, "trtllm", "llamacpp", "vllm"):
        for fitted in (True, False):
            b = uncertainty(Situation(fitted, "decode", False, engine))["throughput"]
            assert b["low"] <= 0.0 <= b["high"], (engine, fitted)
    for engine in ("trtllm", "llamacpp"):
        fitted = uncertainty(Situation(True, "decode", False, engine))["throughput"]
        inferred = uncertainty(Situation(False, "decode", False, engine))["throughput"]
        assert fitted["from"].endswith("@" + engine) and inferred["from"].endswith("@" + engine)
        assert inferred["high"] - inferred["low"] > fitted["high"] - fitted["low"], engine
    # a situation with too few rows of its own falls back to a coarser one, and says which
    moe = uncertainty(Situation(False, "prefill", True))
    assert all(v is None or "from" in v for v in moe.values())


def test_a_ttft_band_is_the_prefill_band_of_its_kind_of_model():
    """A decode-bound plan's TTFT takes the prefill band of a dense (or MoE) model, not every model's pooled TTFT."""
    from planner.calibrate.uncertainty import Situation, load_bands, uncertainty

    bands = load_bands()["bands"]
    for fitted in (True, False):
        for moe in (False, True):
            assert uncertainty(Situation(fitted, "decode", moe))["ttft"] == uncertainty(Situation(fitted, "prefill", moe))["ttft"]
    assert "ttft" in bands["inferred/prefill/dense"]
    assert uncertainty(Situation(False, "decode", False))["ttft"]["from"] == "inferred/prefill/dense"


def test_a_band_is_the_engine_familys_own_where_it_has_enough_rows():
    """Engines miss in their own ways: a situation's band comes from its engine family's residuals where that family
    has MIN_ROWS or more of them, else from every engine's; the keys run from the engine's own to the pooled ones."""
    from planner.calibrate.uncertainty import MIN_ROWS, Situation, load_bands, uncertainty, uncertainty_for

    assert Situation(False, "prefill", False, "vllm").keys()[:2] == ["inferred/prefill/dense@vllm", "inferred/prefill/dense"]
    assert Situation(False, "prefill", False).keys()[0] == "inferred/prefill/dense"
    bands = load_bands()["bands"]
    own = uncertainty_for("h200-sxm", "decode", False, "trtllm")["throughput"]
    assert own["from"] == "inferred/decode/dense@trtllm" and own["rows"] >= MIN_ROWS
    assert own == {**bands["inferred/decode/dense@trtllm"]["throughput"], "from": "inferred/decode/dense@trtllm"}
    # SGLang has no fitted rows at all (its online runs are held out): on a fitted device its band is every engine's
    sg = uncertainty(Situation(True, "decode", False, "sglang"))["throughput"]
    assert "fitted/decode/dense@sglang" not in bands and sg["from"] == "fitted/decode/dense"
    # the pooled band is what an engine-less situation gets
    assert uncertainty(Situation(False, "decode", False))["throughput"]["from"] == "inferred/decode/dense"


def test_rows_with_assumed_request_lengths_do_not_set_the_bands():
    """An MLPerf row's prompts are drawn from an assumed distribution (its set's input lengths are not published with
    the results), so its residual measures the assumption as much as the planner: it is validated but left out of the
    band an estimate at the user's own lengths carries."""
    from types import SimpleNamespace

    from planner.calibrate.crossval import Prediction
    from planner.calibrate.uncertainty import bands_from

    def preds(ratios, assumed):
        return [Prediction("f.csv", "m", "h100-sxm", "output_tokens_per_s", 100.0 * r, 100.0, True, "decode", False,
                           "trtllm@0.14", assumed) for r in ratios]

    known = preds(np.linspace(0.9, 1.1, 20), False)
    wide = preds(np.linspace(0.4, 0.6, 20), True)  # 1.7-2.5x too fast, as MLPerf Mixtral reads
    none = SimpleNamespace(predictions=[])
    band = bands_from(SimpleNamespace(predictions=known + wide), none)["bands"]["fitted/decode/dense@trtllm"]["throughput"]
    alone = bands_from(SimpleNamespace(predictions=known), none)["bands"]["fitted/decode/dense@trtllm"]["throughput"]
    assert band == alone and band["rows"] == 20 and -0.12 < band["low"] < 0 < band["high"] < 0.12
