"""Cross-validation of the kernel/engine layer: how wrong is the planner on a device (or a benchmark file)
it has never seen?

Leave one hardware out: refit the joint calibration without one device's rows, write it as calibration
files (in memory), and predict that device's rows through the cost model exactly as a user would get them:
the device's architecture values if other devices of its architecture have rows, else the engine-wide
values. Leave one file out does the same per file. In-sample errors use the calibration in force.

``quick=True`` replaces each refit by one Gauss-Newton step from the full fit (the Jacobian of all rows is
computed once and the held-out rows dropped from it): an approximate refit, much cheaper, used by the test
that guards recorded errors; the full refits are what ``planner validate --cross-validate`` prints.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planner.calibrate import joint
from planner.calibrate.published_fit import (KERNEL_COLUMNS, MEMORY_COLUMNS, MLPERF_COLUMNS, OFFLINE_BENCH_COLUMNS, SIMULATED_COLUMNS,
                                              FitRow, Predictor, load_rows)
from planner.costmodel.params import current_calibration, using


@dataclass
class Prediction:
    file: str
    model: str
    hardware: str
    what: str
    measured: float
    predicted: float
    fitted: bool  # the calibration that predicted it had rows of this engine release on this device, else inferred
    phase: str  # prefill | decode
    moe: bool
    engine: str = ""  # the engine release that predicts it (ID@VERSION)
    # the row's request lengths are a distribution the planner assumes, not the run's (the MLPerf sets: their input
    # lengths are not published with the results); such a row measures the assumption as much as the planner, so it
    # is validated and reported but does not set an estimate's error band (planner.calibrate.uncertainty.bands_from)
    lengths_assumed: bool = False
    line: int = 0  # the row's line in its file (1: the header), which with ``what`` names the measurement
    config: str = ""  # the row's configuration as validate prints it

    @property
    def key(self) -> tuple[str, int, str]:
        """(file, line, metric name): one measurement, the same in every fold."""
        return self.file, self.line, self.what

    @property
    def ape(self) -> float:
        return abs(self.predicted / self.measured - 1) if np.isfinite(self.predicted) and self.predicted > 0 else np.nan

    @property
    def metric(self) -> str:
        w = self.what
        return "ttft" if "ttft" in w else ("tpot" if ("itl" in w or "tpot" in w) else "throughput")


@dataclass
class CVResult:
    by: str  # "in-sample", "hardware" or "file"
    predictions: list[Prediction] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, key: str | None = None) -> list[dict]:
        key = key or ("hardware" if self.by == "in-sample" else self.by)
        groups: dict[str, list[float]] = {}
        for p in self.predictions:
            groups.setdefault(getattr(p, key), []).append(p.ape)
        out = []
        for k, v in sorted(groups.items()):
            e = np.array(v, float)
            e = e[np.isfinite(e)]
            out.append({key: k, "rows": len(v), "median_ape": float(np.median(e)) if len(e) else None,
                        "p90_ape": float(np.percentile(e, 90)) if len(e) else None})
        return out

    def overall(self) -> dict:
        e = np.array([p.ape for p in self.predictions], float)
        e = e[np.isfinite(e)]
        return {"rows": len(self.predictions), "median_ape": float(np.median(e)) if len(e) else None,
                "p90_ape": float(np.percentile(e, 90)) if len(e) else None}

    def to_dict(self) -> dict:
        key = "hardware" if self.by in ("in-sample", "hardware") else "file"
        return {"by": self.by, key: self.summary(key), "overall": self.overall(), "seconds": self.seconds}


def _moe(model_id: str) -> bool:
    from planner.specs.loader import get_model

    try:
        return get_model(model_id).moe is not None
    except Exception:  # noqa: BLE001  (an unknown model is reported by validate, not here)
        return False


def _fit_predictions(rows: list[FitRow], fitted: set[tuple[str, str]], via: str = "replay") -> list[Prediction]:
    """``fitted``: the (engine release, device) pairs the calibration that predicts ``rows`` had rows of.
    ``via='estimate'``: the max-throughput rows as ``estimate --concurrency max`` prices them at the release's own
    defaults (estimate_max_throughput; NaN where the plan does not fit there, a row with no error), the rest as the fit prices them."""
    if not rows:
        return []
    y = Predictor(rows).predict()
    if via == "estimate":
        from planner.serving.published import estimate_max_throughput

        y = np.array(y, float)
        for j, r in enumerate(rows):
            if r.kind == "inflight":
                v, _ = estimate_max_throughput(r.model, r.hardware, r.tp, r.pp, r.ep, r.adp, r.weights, r.kv, r.isl, r.osl,
                                               r.engine)
                y[j] = np.nan if v is None else v
    return [Prediction(r.file, r.model, r.hardware, r.what, r.measured, float(v), (r.engine, r.hardware) in fitted, r.phase,
                       r.moe, r.engine, line=r.line, config=r.config) for r, v in zip(rows, y)]


def _simulated_rows(files: list[Path], serving: bool = True) -> list[tuple[str, set, dict, int]]:
    """Rows predicted through the event simulator: the offline benchmark bursts always, the serving and MLPerf
    runs (request rates, server searches: most of a minute) only with ``serving``."""
    out = []
    for f in files:
        with f.open(newline="") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            if SIMULATED_COLUMNS & cols and not (MEMORY_COLUMNS | KERNEL_COLUMNS) & cols:  # validated on their own
                if serving or OFFLINE_BENCH_COLUMNS & cols:
                    out += [(f.name, cols, r, line) for line, r in enumerate(reader, start=2)]  # line 1: the header
    return out


def _sim_predictions(sim: list[tuple[str, set, dict, int]], fitted: set[tuple[str, str]], via: str = "replay") -> list[Prediction]:
    from planner.calibrate.published_fit import release_of
    from planner.calibrate.validate import predict_simulated

    out = []
    by_file: dict[str, tuple[set, list[dict], list[int]]] = {}
    for name, cols, r, line in sim:
        _, rows, lines = by_file.setdefault(name, (cols, [], []))
        rows.append(r)
        lines.append(line)
    for name, (cols, rows, lines) in by_file.items():
        assumed = MLPERF_COLUMNS <= cols  # an MLPerf row: its prompts are drawn from an assumed length distribution
        for i, what, cfg, meas, pred, _note in predict_simulated(name, cols, rows, via):
            r = rows[i]
            if pred is None or not np.isfinite(meas):
                continue
            eng = release_of(r)
            out.append(Prediction(name, r["model"], r["hardware"], what, float(meas), float(pred), (eng, r["hardware"]) in fitted,
                                  "prefill" if "ttft" in what else "decode", _moe(r["model"]), eng, assumed, line=lines[i],
                                  config=cfg))
    return out


def fitted_pairs(fit_rows: list[FitRow], rates: dict, keep=None) -> set[tuple[str, str]]:
    """(engine release, device) pairs a calibration has rows of: the kernel/engine fit's rows and the request-rate
    fit's (``rates``: planner/calibrate/rate_fit.py rate_rows), those ``keep`` accepts. A device is "fitted" only for
    the releases it has rows of: TensorRT-LLM 1.1 on an H100 takes its parameters from the 0.9/0.14 rows, and the
    held-out 1.x files measure how far off that is, so its band comes from there, not from 0.14's in-sample residuals.
    A serving benchmark of a release whose rate fit takes only its API-server thread from it (rate_fit.THREAD_ENGINES:
    host-CPU times, no kernel value) does not make its device fitted."""
    from planner.calibrate.rate_fit import thread_release

    out = {(r.engine, r.hardware) for r in fit_rows}
    for release, rows in rates.items():
        thread_only = thread_release(release)
        out |= {(release, r.hardware) for r in rows if (keep is None or keep(r)) and not (thread_only and r.bench)}
    return out


def _files(files):
    from planner.calibrate.validate import _files as resolve, builtin_published

    return resolve([str(f) for f in files]) if files else builtin_published()


def in_sample(files=None, simulated: bool = True, via: str = "replay") -> CVResult:
    """Every row predicted with the calibration in force (``simulated=False``: without the serving and MLPerf
    simulations; the offline benchmark bursts are always simulated; ``via``: as for validate, the user's path through
    ``estimate`` for closed loops and max-throughput rows)."""
    import time

    t0 = time.perf_counter()
    files = _files(files)
    rows, _ = load_rows(files)
    from planner.calibrate.rate_fit import rate_rows

    fitted = fitted_pairs([r for r in rows if r.file not in joint.NOT_FITTED], rate_rows(files))
    res = CVResult("in-sample", _fit_predictions(rows, fitted, via))
    res.predictions += _sim_predictions(_simulated_rows(files, serving=simulated), fitted, via)
    res.seconds = time.perf_counter() - t0
    return res


class _QuickRefit:
    """One Gauss-Newton step per fold from the full fit, with the full Jacobian computed once."""

    def __init__(self, rows: list[FitRow]):
        self.prob = joint.Problem(rows)
        lay = self.prob.layout
        self.x = lay.from_calibration(current_calibration())
        self.r = self.prob.residuals(self.x)
        self.J = self.prob.jacobian(self.x)
        self.lo, self.hi = lay.bounds()

    def refit(self, keep: np.ndarray) -> joint.JointFit:
        n = len(self.prob.rows)
        sel = np.concatenate([keep, np.ones(self.r.size - n, bool)])
        r, J = self.r[sel], self.J[sel]
        z = (r / 0.1) ** 2  # soft-L1 weights at the current residuals (iteratively reweighted least squares)
        w = 1.0 / np.sqrt(np.sqrt(1.0 + z))
        dx = np.linalg.lstsq(J * w[:, None], -r * w, rcond=None)[0]
        x = np.clip(self.x + dx, self.lo, self.hi)
        kept = [row for row, k in zip(self.prob.rows, keep) if k]
        counts: dict = {}
        for row in kept:
            counts[row.cell] = counts.get(row.cell, 0) + 1
        return joint.JointFit(self.prob.layout, x, kept, np.array([]), 0.0, 0, 0.0, row_counts=counts)


def cross_validate(by: str = "hardware", files=None, quick: bool | _QuickRefit = False, max_nfev: int = 12,
                   simulated: bool = True, keys: list[str] | None = None, progress=None, via: str = "replay") -> CVResult:
    """Leave one ``by`` ("hardware" or "file") out: refit without its rows, predict them (``simulated`` and ``via`` as
    for ``in_sample``: with ``via='estimate'`` the held-out rows as a user's ``estimate`` prices them on a device or
    file the refit has not seen)."""
    import time

    if by not in ("hardware", "file"):
        from planner.errors import PlannerError

        raise PlannerError(f"--cross-validate takes hardware or file, got {by!r}")
    t0 = time.perf_counter()
    files = _files(files)
    rows, _ = load_rows(files)
    fit_rows = [r for r in rows if r.file not in joint.NOT_FITTED]
    sim = _simulated_rows(files, serving=simulated)
    key_of = (lambda x: x.hardware) if by == "hardware" else (lambda x: x.file)  # noqa: E731
    all_keys = sorted({key_of(r) for r in rows} | {(r["hardware"] if by == "hardware" else n) for n, _, r, _ in sim})
    quick_fit = quick if isinstance(quick, _QuickRefit) else (_QuickRefit(fit_rows) if quick else None)
    releases = joint.engine_releases()
    from planner.calibrate import rate_fit

    reuse = rate_fit.in_force(current_calibration())
    rates = rate_fit.rate_rows(files)
    res = CVResult(by)
    for k in keys or all_keys:
        keep = np.array([key_of(r) != k for r in fit_rows])
        train = [r for r, kk in zip(fit_rows, keep) if kk]
        held = (lambda r, k=k: r.file == k) if by == "file" else (lambda r, k=k: r.hardware == k)
        if keep.all() and not any(held(r) for rr in rates.values() for r in rr):
            # the fold drops no row any fit used (a device or file that is only validated): its training set is the
            # full one, so the calibration in force is its fit; a refit would only move along directions no row fixes
            cal = current_calibration()
        else:
            cal = (quick_fit.refit(keep) if quick_fit is not None else joint.fit(train, max_nfev=max_nfev)).calibration(releases)
            cal = rate_fit.for_fold(rates, cal, held, reuse)
        fitted = fitted_pairs(train, rates, lambda rr, held=held: not held(rr))
        test = [r for r in rows if key_of(r) == k]
        test_sim = [s for s in sim if (s[2]["hardware"] if by == "hardware" else s[0]) == k]
        with using(cal):
            res.predictions += _fit_predictions(test, fitted, via)
            res.predictions += _sim_predictions(test_sim, fitted, via)
        if progress:
            progress(k)
    res.seconds = time.perf_counter() - t0
    return res


def paired_rows(ins: CVResult, cv: CVResult) -> list[dict]:
    """Each row ``cv`` held out, beside its in-sample prediction: file, line, model, hardware, config, metric, engine
    release, measured, the in-sample and the held-out prediction and their signed errors ((predicted - measured) /
    measured), and whether the fold still had rows of the release on the device (``fitted``); worst held-out error
    first. A row the fold could not predict has a held-out error of None and comes last."""
    inside = {p.key: p for p in ins.predictions}

    def err(p: Prediction | None):
        return None if p is None or not np.isfinite(p.ape) else float(p.predicted / p.measured - 1.0)

    out = []
    for p in cv.predictions:
        i = inside.get(p.key)
        out.append({"file": p.file, "line": p.line, "model": p.model, "hardware": p.hardware, "config": p.config,
                    "what": p.what, "engine": p.engine, "measured": p.measured,
                    "in_sample": None if i is None else i.predicted, "in_sample_error": err(i),
                    "held_out": p.predicted, "held_out_error": err(p), "fitted": p.fitted})
    return sorted(out, key=lambda r: (r["held_out_error"] is None, -abs(r["held_out_error"] or 0.0)))


RECORD_FILE = "errors_recorded.yaml"


def record_path() -> Path:
    from planner.specs.loader import data_dir

    return data_dir("engines/calibration") / RECORD_FILE


def guarded_errors(in_s: CVResult, quick_hw: CVResult, quick_file: CVResult) -> dict:
    """The numbers a recalibration may not worsen (tests/test_crossval.py): medians over the fit-kind rows,
    in sample (the fit rows: files the fit uses) and held out (files it never uses, predicted with the
    calibration in force), and by the quick (one-step) leave-one-out refits over every row, overall and per
    device with >= 20 rows."""
    def block(res: CVResult, key: str) -> dict:
        per = {s[key]: round(s["median_ape"], 4) for s in res.summary(key) if s["rows"] >= 20 and s["median_ape"] is not None}
        return {"median_ape": round(res.overall()["median_ape"], 4), "per_" + key: per}

    fit = CVResult(in_s.by, [p for p in in_s.predictions if p.file not in joint.NOT_FITTED])
    held = CVResult(in_s.by, [p for p in in_s.predictions if p.file in joint.NOT_FITTED])
    return {"in_sample": block(fit, "hardware"), "held_out": block(held, "hardware"),
            "loho_quick": block(quick_hw, "hardware"), "lofo_quick": block(quick_file, "file")}


def record(guarded: dict, full: CVResult | None = None, path: Path | None = None) -> Path:
    import yaml

    d = {"note": "errors on the bundled published rows, written by `planner validate --cross-validate hardware --record`; "
                 "tests/test_crossval.py fails when a recalibration makes a guarded median worse",
         "guarded": guarded}
    if full is not None:
        d["cross_validated_" + full.by] = full.to_dict()
    path = path or record_path()
    path.write_text(yaml.safe_dump(d, sort_keys=False, width=140))
    return path
