"""Argonne's vLLM static batches on MI250 GCDs (measurements/published/vllm_rocm_static_mi250.csv): held out, every row
predicted, and the per-GPU rate the file derives is the static batch's output tokens over its latency per GCD."""

from __future__ import annotations

import csv

import pytest

from planner.calibrate import joint
from planner.calibrate.validate import builtin_published, validate


@pytest.fixture(scope="module")
def path():
    return next(p for p in builtin_published() if p.name == "vllm_rocm_static_mi250.csv")


def test_the_mi250_rows_are_held_out_and_each_derived_rate_is_the_batchs_output_over_its_latency(path):
    assert "held out" in joint.NOT_FITTED[path.name]
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 393 and {r["hardware"] for r in rows} == {"mi250"}
    for r in rows:
        tp, b, osl, lat = int(r["tp"]), int(r["batch"]), int(r["osl"]), float(r["latency_s"])
        assert tp in (2, 4, 8)  # whole MI250 cards: two GCDs each
        assert r["isl"] == r["osl"]  # the script sets --input-len and --output-len to the same length
        # tokens / s / GCD: b sequences x osl tokens over the batch's end-to-end seconds, over tp GCDs
        assert float(r["output_tokens_per_s_per_gpu"]) == pytest.approx(b * osl / lat / tp, rel=1e-5)


def test_every_mi250_row_is_predicted(path):
    rep = validate([str(path)])
    assert len(rep.rows) == 393 and all(r.predicted is not None and r.predicted > 0 for r in rep.rows)
