"""The issue's clearest symptom, checked on held-out rows: a GPU with the same silicon as a calibrated one and more
memory bandwidth (H200 against the fitted H100) must not come out much faster than published runs of the same
configurations show. TensorRT-LLM 0.14's throughput table has both columns in FP8; the H100 one is fitted
(max_throughput.csv), the H200 one never is (perf_overview_0_14_more.csv, planner.calibrate.joint.NOT_FITTED)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from planner.calibrate import joint, rate_fit
from planner.calibrate.validate import builtin_published, predict_row

PUBLISHED = Path(__file__).resolve().parents[1] / "measurements" / "published"


def _rows(name):
    with (PUBLISHED / name).open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_0_14_pages_unbundled_columns_are_held_out_and_its_h200_runs_only_fit_the_front_end():
    assert "perf_overview_0_14_more.csv" in joint.NOT_FITTED
    # the H200 online runs fit TensorRT-LLM 0.14's per-request front-end time with the H100's (host work, the same on
    # either GPU), so a fold that leaves one device out keeps the other's; no joint-fit row comes from them
    assert "online_serving_h200.csv" not in joint.NOT_FITTED
    rates = rate_fit.rate_rows(builtin_published())
    assert {r.file for r in rates["trtllm@0.14"]} == {"online_serving.csv", "online_serving_h200.csv"}
    assert not any(r.file == "perf_overview_0_14_more.csv" for rows in rates.values() for r in rows)
    held = _rows("perf_overview_0_14_more.csv")
    assert {r["hardware"] for r in held} == {"h200-sxm", "a100-pcie-80gb"}
    # the per-GPU figure is the page's TP-group total over tp, as in max_throughput.csv
    for r in held:
        assert float(r["output_tokens_per_s_per_gpu"]) * int(r["tp"]) == pytest.approx(float(r["total_output_tokens_per_s"]), rel=1e-6)


def test_h200_over_h100_on_the_same_configurations_follows_the_published_ratio():
    h100 = {(r["model"], r["tp"], r["isl"], r["osl"]): r for r in _rows("max_throughput.csv")
            if r["hardware"] == "h100-sxm" and r["weights"] == "fp8"}
    pairs = [(h100[k], r) for r in _rows("perf_overview_0_14_more.csv") if r["hardware"] == "h200-sxm"
             for k in [(r["model"], r["tp"], r["isl"], r["osl"])] if k in h100]
    assert len(pairs) >= 60
    measured, predicted = [], []
    for a, b in pairs:
        pa = predict_row(a, PUBLISHED / "max_throughput.csv", 0)
        pb = predict_row(b, PUBLISHED / "perf_overview_0_14_more.csv", 0)
        measured.append(pb[2] / pa[2])
        predicted.append(pb[3] / pa[3])
    measured, predicted = np.array(measured), np.array(predicted)
    # where the H100 holds enough sequences (not the capacity-bound TP1 70B rows, where the H200's 141 GB multiply the
    # batch), the published H200/H100 ratio is 1.18x at the median; the issue found the planner at 1.5-2.1x
    roomy = measured < 2.0
    assert np.median(measured[roomy]) < 1.3
    err = predicted / measured - 1
    assert abs(np.median(err)) < 0.05, f"median error of the predicted H200/H100 ratio {np.median(err):+.2f}"
    assert np.percentile(abs(err), 90) < 0.25  # 0.0 % and 17 % when this was written (87 pairs)
