"""Kernel calibration as an instrument: fractions bounded by physics, busy rows weighted down,
per-call overheads counted per library call, and a warning that names the rows that disagree."""

import csv

import numpy as np
import pytest

from planner.calibrate.kernel_fit import BOUNDS, KernelData, fit_capture, predict
from planner.harness.capture import KERNEL_COLUMNS
from planner.harness.timing import BUSY_CORES, BUSY_CV, Stats, summarize

PEAK_FLOPS, BW = 200e9, 25e9  # a small CPU: fp32 GEMM peak and streaming bandwidth
TRUE = {"matmul:fp32": 0.9, "half_m": 12.0, "memory": 0.8, "attention": 0.25, "kv_read": 0.2, "kernel_s": 1.5e-6,
        "elementwise": 0.02}
CALLS = {"attn_prefill": 11, "attn_decode": 8, "rmsnorm": 7, "silu_mul": 5}


def rows():
    out = []
    for n, k in ((6144, 4096), (4096, 4096), (1536, 1024), (1024, 2816)):
        for m in (1, 8, 64, 256):
            out.append({"op": "gemm", "m": m, "n": n, "k": k, "flops": 2 * m * n * k, "bytes": (m * k + k * n + m * n) * 4})
    for s in (128, 512):
        out.append({"op": "attn_prefill", "batch": 1, "heads": 32, "kv_heads": 8, "head_dim": 128, "seq_q": s, "seq_kv": s,
                    "flops": 4 * 32 * 128 * s * (s + 1) // 2, "bytes": s * 128 * 80 * 4})
    for b, L in ((1, 256), (8, 256), (1, 2048), (8, 2048)):
        out.append({"op": "attn_decode", "batch": b, "heads": 32, "kv_heads": 8, "head_dim": 128, "seq_q": 1, "seq_kv": L,
                    "flops": 4 * b * 32 * 128 * L, "bytes": b * L * 8 * 128 * 2 * 4 + 2 * b * 32 * 128 * 4})
    for op, nbytes in (("copy", 2 << 27), ("read", 1 << 27), ("write", 1 << 27)):
        out.append({"op": op, "m": nbytes // 4, "bytes": nbytes})
    for m in (1, 256):
        for op, n, fpe, passes in (("rmsnorm", 4096, 4, 2), ("silu_mul", 14336, 5, 3), ("add", 4096, 1, 3)):
            out.append({"op": op, "m": m, "n": n, "flops": fpe * m * n, "bytes": passes * m * n * 4})
    return [r | {"backend": "numpy", "device": "cpu", "dtype": "fp32", "calls": CALLS.get(r["op"], 1)} for r in out]


def write(folder, rs, times, busy=None, llc=32 << 20):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "kernels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, KERNEL_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for i, (r, t) in enumerate(zip(rs, times)):
            w.writerow(r | {"repeats": 5, "median_s": t, "p10_s": t, "p90_s": t, "threads": 2,
                            "busy": int(busy[i]) if busy is not None else 0})
    (folder / "meta.yaml").write_text(f"device: cpu\nstatus: complete\nlast_level_cache_bytes: {llc}\n")


def true_times(rs, params=TRUE):
    d = KernelData.of([r | {"median_s": "1"} for r in rs])
    return predict(d, {"fp32": PEAK_FLOPS}, BW, params)


def test_every_fraction_is_bounded_by_its_measured_peak(tmp_path):
    """With peaks taken from the capture itself, no fraction can exceed 1 (the old fit reported a
    memory fraction of 1.002 when the fastest stream was its own peak)."""
    rs = rows()
    write(tmp_path / "cap", rs, true_times(rs, TRUE | {"memory": 1.0}))
    fit = fit_capture(tmp_path / "cap")
    for name, value in fit.params.items():
        lo, hi = BOUNDS[name.partition(":")[0]]
        assert lo <= value <= hi, name
        if name != "half_m" and name != "kernel_s":
            assert 0 < value <= 1.0, name
    assert fit.params["kernel_s"] >= 0


def test_fit_recovers_a_machine_and_reports_residuals_per_op(tmp_path):
    rs = rows()
    write(tmp_path / "cap", rs, true_times(rs))
    fit = fit_capture(tmp_path / "cap")
    # peaks measured from the capture are below the true ones, so fractions are relative to them
    assert fit.median_ape < 0.02
    assert set(fit.residuals) == {r["op"] for r in rs}
    assert all(v["median_ape"] < 0.05 for v in fit.residuals.values())
    assert not any("poor fit" in w for w in fit.warnings)
    # the per-call overhead counts each library call a kernel makes
    assert fit.params["kernel_s"] == pytest.approx(TRUE["kernel_s"], rel=0.15)


def test_predict_adds_one_overhead_per_library_call():
    rs = [r for r in rows() if r["op"] == "rmsnorm"][:1]
    d = KernelData.of([r | {"median_s": "1"} for r in rs])
    base = predict(d, {"fp32": PEAK_FLOPS}, BW, TRUE | {"kernel_s": 0.0})
    with_overhead = predict(d, {"fp32": PEAK_FLOPS}, BW, TRUE)
    assert with_overhead[0] - base[0] == pytest.approx(7 * TRUE["kernel_s"])


def test_rows_that_disagree_are_named_in_one_warning(tmp_path):
    rs = rows()
    t = true_times(rs)
    slow = np.array([r["op"] == "write" for r in rs])
    t = np.where(slow, 2.0 * t, t)  # write-allocate: a write moves twice the bytes it stores
    write(tmp_path / "cap", rs, t)
    fit = fit_capture(tmp_path / "cap")
    assert fit.residuals["write"]["median_error"] < -0.3
    lines = [w for w in fit.warnings if "write" in w]
    assert len(lines) == 1 and "write-allocate" in lines[0] and "\n" not in lines[0]


def test_busy_rows_are_weighted_down(tmp_path):
    """A quarter of the rows ran 3x slow while the machine was busy: flagged, the fit follows the
    quiet rows; unflagged, the same rows drag it."""
    rs = rows()
    t = true_times(rs)
    busy = np.zeros(len(rs), bool)
    busy[::4] = True
    t_noisy = np.where(busy, 3.0 * t, t)
    write(tmp_path / "flagged", rs, t_noisy, busy)
    write(tmp_path / "unflagged", rs, t_noisy)
    flagged, unflagged = fit_capture(tmp_path / "flagged"), fit_capture(tmp_path / "unflagged")
    quiet = ~busy

    def quiet_error(fit):
        d = KernelData.of([r | {"median_s": "1"} for r in rs])
        pred = predict(d, {"fp32": fit.peaks["fp32"]}, fit.bandwidth_bytes_per_s, fit.params)
        return float(np.median(np.abs(pred[quiet] / t[quiet] - 1)))

    assert quiet_error(flagged) < quiet_error(unflagged)
    assert flagged.busy_rows == busy.sum() and any("busy" in w for w in flagged.warnings)


def test_measured_bandwidth_peak_includes_streaming_gemms(tmp_path):
    """A one-token GEMM reads its whole weight once: when it streams faster than copy/read/write,
    it sets the measured bandwidth peak (so the memory fraction stays <= 1)."""
    rs = rows()
    t = true_times(rs)
    llc = 16 << 20
    big = [i for i, r in enumerate(rs) if r["op"] == "gemm" and r["m"] == 1 and r["n"] * r["k"] * 4 >= 4 * llc]
    assert big
    t[big[0]] *= 0.7
    write(tmp_path / "cap", rs, t, llc=llc)
    fit = fit_capture(tmp_path / "cap")
    assert fit.bandwidth_bytes_per_s == pytest.approx(rs[big[0]]["bytes"] / t[big[0]])
    assert fit.params["memory"] <= 1.0


def test_timing_stats_flag_busy_rows():
    quiet = summarize([1.0, 1.01, 0.99, 1.0], others_cores=0.0)
    assert not quiet.busy and quiet.cv < 0.02
    spread = summarize([1.0, 2.0, 1.0, 3.0], others_cores=0.0)
    assert spread.cv > BUSY_CV and spread.busy
    loaded = summarize([1.0, 1.0, 1.0], others_cores=BUSY_CORES + 0.1)
    assert loaded.busy
    two = Stats(repeats=2, median_s=1.0, p10_s=0.5, p90_s=1.5, cv=0.5, others_cores=0.0)
    assert not two.busy  # two repeats say nothing about spread
