"""The host times a calibration carries must allow what the engines were measured doing.

A host that spends ``s`` seconds on every sequence of a step (schedule, sample, hand back the token) takes at least
b x s for a step of b decoding sequences, even when it overlaps the GPU, so one scheduler serves at most 1 / s output
tokens per second whatever its batch. The fastest run published for a release on one GPU bounds its per-sequence
host time from above: a value past that bound would cap those runs below what they measured (a Python executor's
46 us would cap TensorRT-LLM 1.x at 21,900 tokens/s, where gpt-oss-20b measures 59,084 on one B200).
"""

import csv

import pytest

from planner.calibrate.published_fit import parse_parallel, release_of
from planner.calibrate.validate import builtin_published
from planner.costmodel.params import builtin_calibration
from planner.errors import PlannerError

RATE_COLUMNS = ("output_tokens_per_s_per_gpu", "output_tokens_per_s")


def _one_scheduler(row: dict) -> bool:
    """A run on one GPU with one scheduler: ``parallel`` tp1, or a ``tp`` of 1 with no pipeline or data parallelism."""
    lay = parse_parallel(row.get("parallel") or "")
    if lay is not None:
        return lay == (1, 1, 1, 1)
    tp, pp = (row.get("tp") or "").strip(), (row.get("pp") or "1").strip() or "1"
    dp = (row.get("dp") or "1").strip() or "1"
    return tp == "1" and pp == "1" and dp == "1" and not (row.get("gpus") or "").strip()


def fastest_single_gpu_runs() -> dict[str, tuple[float, str]]:
    """release -> (fastest output tokens/s of one scheduler on one GPU, where it was measured)."""
    out: dict[str, tuple[float, str]] = {}
    for path in builtin_published():
        with open(path, newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                if not _one_scheduler(row):
                    continue
                rate = next((float(row[c]) for c in RATE_COLUMNS if (row.get(c) or "").strip()), None)
                if rate is None:
                    continue
                try:
                    rel = release_of(row)
                except PlannerError:  # a row whose engine no profile names is not a release's run
                    continue
                if rate > out.get(rel, (0.0, ""))[0]:
                    out[rel] = (rate, f"{path.name}:{i + 2} {row.get('model')} on {row.get('hardware')}")
    return out


def test_the_bound_is_read_from_the_runs_it_names():
    runs = fastest_single_gpu_runs()
    rate, where = runs["trtllm@1.1"]
    assert rate == pytest.approx(60925.0) and "gpt-oss-20b on b300" in where  # the 1.2 page's fastest row (B300 column)
    assert runs["trtllm@0.14"][0] > 25000  # Mistral 7B in FP8 on one H100, the 0.14 page


def test_no_release_carries_a_per_sequence_host_time_its_own_runs_rule_out():
    cal = builtin_calibration()
    runs = fastest_single_gpu_runs()
    checked = 0
    for rel, (rate, where) in runs.items():
        if rel not in cal:
            continue
        blocks = [cal[rel].engine_wide, *cal[rel].architectures.values()]
        for b in blocks:
            if "seq_host_s" not in b:
                continue
            s = b["seq_host_s"][0]  # seconds per sequence and step
            assert s * rate <= 1.0, (f"{rel}: {s * 1e6:.1f} us a sequence caps one scheduler at {1 / s:,.0f} "
                                     f"tokens/s, below {where} ({rate:,.0f})")
            checked += 1
    assert checked >= 5
