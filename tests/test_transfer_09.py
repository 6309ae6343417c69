"""TensorRT-LLM 0.9's static batches of grouped-query models, checked where it counts: the page's H200 table is held
out (static_batch_h200.csv, planner.calibrate.joint.NOT_FITTED) and the masked multi-head decode fraction was chosen
on the H100, A100 and L40S tables alone (engines/trtllm-0.9.yaml). Before the masked-kernel floor the grouped-query
models ran 1.4-2.5x too fast at long outputs on both Hopper parts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from planner.calibrate import joint
from planner.calibrate.validate import predict_row

PUBLISHED = Path(__file__).resolve().parents[1] / "measurements" / "published"


def _errors(name: str, models: set[str] | None = None, hardware: str | None = None, isl: str | None = None) -> np.ndarray:
    with (PUBLISHED / name).open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for i, r in enumerate(rows):
        if (models and r["model"] not in models) or (hardware and r["hardware"] != hardware) or (isl and r["isl"] != isl):
            continue
        _, _, measured, predicted = predict_row(r, PUBLISHED / name, i + 2)
        out.append(predicted / measured - 1)
    return np.array(out)


def test_the_h200_static_table_is_held_out():
    assert "static_batch_h200.csv" in joint.NOT_FITTED
    assert "static_batch.csv" not in joint.NOT_FITTED


def test_held_out_h200_static_batches_land_within_the_issues_target():
    err = _errors("static_batch_h200.csv")
    assert len(err) == 24
    assert np.median(abs(err)) < 0.15  # 9.2 % when this was written (15.2 % before the masked-kernel floor)


def test_grouped_query_models_without_xqa_are_no_longer_far_too_fast_on_hopper():
    # Mistral-7B (4 query heads per KV head) and Falcon-180B (29): the masked kernel's CUDA-core products bound their
    # long-output decode; each row was 1.05-2.5x too fast before, now within +50 % (H100 fitted, H200 held out; +39 % and +43 % at most when this was written)
    for name, hw in (("static_batch.csv", "h100-sxm"), ("static_batch_h200.csv", "h200-sxm")):
        err = _errors(name, {"mistral-7b", "falcon-180b"}, hw)
        assert len(err) == 8
        assert err.max() < 0.5 and err.min() > -0.25, (name, np.round(err, 2))


def test_first_token_rows_are_priced_as_what_estimate_reports():
    """The 0.9 page measured first-token latency by running the benchmark with a single output token: one prefill
    step produces it. Validation and the fit price the rows as that step, the same number `estimate` prints as TTFT
    for one request (no decode step added), so the first-token errors describe what a user sees."""
    from planner.calibrate.bench_settings import offline
    from planner.serving.predict import PlanSpec, estimate

    with (PUBLISHED / "first_token_latency.csv").open(newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["model"] == "llama-2-7b" and r["hardware"] == "h100-sxm"
                   and r["isl"] == "128")
    _, _, measured, predicted = predict_row(row, PUBLISHED / "first_token_latency.csv", 2)
    e = estimate("llama-2-7b", "h100-sxm", PlanSpec(tp=1, weights="fp8", kv="fp8"), isl=128, osl=2, batching="static",
                 batch=1, engine=offline("trtllm@0.9"))
    assert predicted == e.ttft_s
    assert predicted < e.ttft_s + e.tpot_s  # the stand-in that added a decode step is gone
    assert abs(predicted / measured - 1) < 0.15  # 6.3 ms measured


def test_short_prompt_first_tokens_land_on_every_gpu_of_the_page():
    """At 128 prompt tokens the prefill alone was 0.48-0.70x of the published latency on the H100, H200 and A100
    with GEMMs reaching half their rate at ~35 tokens; fitted on the prefill step, the short-prompt rows land within
    the issue's 15 % at the median on each GPU, the held-out H200 included."""
    for name, hw in (("first_token_latency.csv", "h100-sxm"), ("first_token_latency.csv", "a100-sxm-80gb"),
                     ("first_token_latency.csv", "l40s"), ("first_token_latency_h200.csv", "h200-sxm")):
        err = _errors(name, hardware=hw, isl="128")
        assert len(err) >= 4 and np.median(abs(err)) < 0.15, (hw, err)
