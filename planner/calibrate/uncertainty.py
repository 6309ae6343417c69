"""Error bands for predictions, from cross-validated residuals of the published rows.

A prediction's situation is: are there published rows of its engine release on its device (``fitted``: its
in-sample residuals apply) or not (``inferred``: the leave-one-hardware-out and held-out residuals apply, the
error a new GPU, or a release the fit never saw, meets); is the
number it is about prefill- or decode-bound; is the model dense or mixture-of-experts; which engine runs it. For each
situation and metric (throughput, ttft, tpot) the band is the 10th and 90th percentile of measured / predicted - 1:
the measured value fell within [predicted x (1 + low), predicted x (1 + high)] for 80 % of such rows.
Situations with too few rows fall back to coarser ones: the same without the engine (every engine's rows), then
device and phase, device, and metric alone. The engine comes first because engines miss in their own ways (llama.cpp's
quantized prefill is 2-4x too fast on the newest devices, which says nothing of a vLLM prefill there).

The table lives in ``engines/calibration/error_bands.yaml``, written by
``planner validate --cross-validate hardware --record``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRICS = ("throughput", "ttft", "tpot")
MIN_ROWS = 8
BANDS_FILE = "error_bands.yaml"


@dataclass(frozen=True)
class Situation:
    fitted: bool  # the device has published rows of its own
    phase: str = "decode"  # prefill | decode: which phase bounds the number
    moe: bool = False
    engine: str | None = None  # the engine family (vllm, trtllm, llamacpp, ...); None: any

    def keys(self) -> list[str]:
        dev = "fitted" if self.fitted else "inferred"
        kind = f"{dev}/{self.phase}/{'moe' if self.moe else 'dense'}"
        return ([f"{kind}@{self.engine}"] if self.engine else []) + [kind, f"{dev}/{self.phase}", dev, "all"]


def _residuals(pred) -> dict[str, float]:
    """measured / predicted - 1 per metric one published row speaks to (throughput rows speak to tpot too:
    decode throughput is concurrency / tpot; prefill throughput to ttft)."""
    if not (np.isfinite(pred.predicted) and pred.predicted > 0 and pred.measured > 0):
        return {}
    ratio = pred.measured / pred.predicted
    m = pred.metric
    if m == "throughput":
        inv = 1.0 / ratio - 1.0
        return {"throughput": ratio - 1.0, ("ttft" if pred.phase == "prefill" else "tpot"): inv}
    return {m: ratio - 1.0}


def bands_from(in_sample, loho) -> dict:
    """The band table from in-sample predictions (fitted: rows of the release on the device) and leave-one-hardware-out
    ones (inferred), with the (release, device) pairs that count as fitted. Rows whose request lengths the planner
    assumes (Prediction.lengths_assumed: the MLPerf sets) stay out: an estimate is made at the lengths its user gives,
    so its band is the error at known lengths (MLPerf Mixtral, 1.4-2.1x with OpenOrca-like prompts where its set is
    two-thirds GSM8K and MBXP, would otherwise set the band of every TensorRT-LLM MoE estimate)."""
    samples: dict[str, dict[str, list[float]]] = {}
    for preds, fitted in ((in_sample.predictions, True), (loho.predictions, False)):
        for p in preds:
            if p.fitted != fitted or p.lengths_assumed:
                continue
            s = Situation(fitted, p.phase, p.moe, engine_family(p.engine or None))
            for metric, r in _residuals(p).items():
                for k in s.keys():
                    samples.setdefault(k, {}).setdefault(metric, []).append(r)
    table = {}
    for k, by_metric in sorted(samples.items()):
        table[k] = {m: {"low": round(float(np.percentile(v, 10)), 4), "high": round(float(np.percentile(v, 90)), 4),
                        "rows": len(v)} for m, v in sorted(by_metric.items()) if len(v) >= MIN_ROWS}
    fitted_devices = sorted({p.hardware for p in in_sample.predictions if p.fitted})
    cells: dict[str, set[str]] = {}
    for p in in_sample.predictions:
        if p.fitted and p.engine:
            cells.setdefault(p.engine, set()).add(p.hardware)
    return {"note": "measured / predicted - 1, 10th and 90th percentile, per situation and metric; fitted (published rows "
                    "of the engine release on the device) from in-sample residuals, inferred (no such rows) from "
                    "leave-one-hardware-out residuals and the held-out files",
            "fitted_devices": fitted_devices, "fitted_releases": {e: sorted(d) for e, d in sorted(cells.items())},
            "bands": table}


def bands_path() -> Path:
    from planner.specs.loader import data_dir

    return data_dir("engines/calibration") / BANDS_FILE


def write_bands(table: dict, path: Path | None = None) -> Path:
    import yaml

    path = path or bands_path()
    path.write_text(yaml.safe_dump(table, sort_keys=False, width=140))
    load_bands.cache_clear()
    return path


@functools.lru_cache(maxsize=2)
def load_bands(path: str | None = None) -> dict:
    from planner.specs.loader import read_yaml

    p = Path(path) if path else bands_path()
    if not p.is_file():
        return {"fitted_devices": [], "bands": {}}
    d = read_yaml(p)
    return d if isinstance(d, dict) else {"fitted_devices": [], "bands": {}}


def release_name(engine) -> str | None:
    """``ID@VERSION`` of an engine (a profile, or a name such as "trtllm" that resolves to one); None for None."""
    if engine is None:
        return None
    if not isinstance(engine, str):
        return engine.name
    from planner.specs.engine import get_engine

    return get_engine(engine).name


def is_fitted(hardware_id: str, engine=None) -> bool:
    """Whether the calibration has published rows of ``engine``'s release on the device (its in-sample residuals
    describe the prediction); ``engine`` None: rows of any release."""
    d = load_bands()
    releases = d.get("fitted_releases")
    name = release_name(engine)
    if name is None or releases is None:
        return hardware_id in d.get("fitted_devices", [])
    return hardware_id in releases.get(name, [])


def uncertainty(situation: Situation) -> dict[str, dict | None]:
    """Relative error band per metric: {"throughput": {"low", "high", "rows", "from"}, "ttft": ..., "tpot": ...};
    None for a metric no published row speaks to."""
    bands = load_bands().get("bands", {})
    out: dict[str, dict | None] = {}
    for metric in METRICS:
        out[metric] = None
        # a TTFT is a prefill number whatever bounds the plan's throughput: its band is the prefill one of the same
        # kind of model (a decode situation has no TTFT rows and would fall to every model's pooled band)
        sit = Situation(situation.fitted, "prefill", situation.moe, situation.engine) if metric == "ttft" else situation
        for k in sit.keys():
            b = bands.get(k, {}).get(metric)
            if b:
                out[metric] = {**b, "from": k}
                break
    return out


def engine_family(engine) -> str | None:
    """The engine family (``vllm``) of a profile or a name that resolves to one; None for None."""
    name = release_name(engine)
    return name.split("@")[0] if name else None


def uncertainty_for(hardware_id: str, phase: str = "decode", moe: bool = False, engine=None) -> dict[str, dict | None]:
    return uncertainty(Situation(is_fitted(hardware_id, engine), phase, moe, engine_family(engine)))
