"""Compare predictions with real measurements (CSV files in the schema of the
published validation sets, or harness captures) and report the errors."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planner.calibrate.bench_settings import bench_engine, bench_runs, bench_sized, offline, row_bench_limits
from planner.calibrate.published_fit import (LLAMACPP_NO_BUILD, OFFLINE_BENCH_COLUMNS, SIMULATED_COLUMNS, llamacpp_run_settings,
                                              parallel_label, release_of, row_parallel, row_precisions)
from planner.serving.predict import PlanSpec, estimate
from planner.errors import PlannerError
from planner.specs.loader import data_dir, get_hardware, get_model
from planner.specs.quant import PRECISION_ALIASES as QUANT_ALIASES, canonical, default_kv


@dataclass
class Row:
    file: str
    model: str
    hardware: str
    what: str  # e.g. "ttft_s", "output_tokens_per_s_per_gpu"
    config: str
    measured: float
    predicted: float | None
    source: str
    note: str = ""

    @property
    def ape(self) -> float | None:
        if self.predicted is None or not math.isfinite(self.predicted) or self.measured == 0:
            return None
        return abs(self.predicted - self.measured) / abs(self.measured)


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # file -> why
    notes: list[str] = field(default_factory=list)  # what a reader of the errors should know (a capture's speed drift)

    def summary(self, key: str) -> list[dict]:
        groups: dict[str, list[float]] = {}
        counts: dict[str, int] = {}
        for r in self.rows:
            k = getattr(r, key) if key != "file_hardware" else f"{r.file} | {r.hardware}"
            counts[k] = counts.get(k, 0) + 1
            if r.ape is not None:
                groups.setdefault(k, []).append(r.ape)
        out = []
        for k in counts:
            e = np.array(groups.get(k, []))
            out.append({key: k, "rows": counts[k], "predicted": len(e),
                        "median_ape": float(np.median(e)) if len(e) else None,
                        "p90_ape": float(np.percentile(e, 90)) if len(e) else None})
        return out

    def to_dict(self) -> dict:
        return {
            "per_file": self.summary("file"),
            "per_hardware": self.summary("hardware"),
            "per_file_hardware": self.summary("file_hardware"),
            "skipped": self.skipped,
            "notes": self.notes,
            "rows": [{**r.__dict__, "ape": r.ape} for r in self.rows],
        }


def builtin_published() -> list[Path]:
    return sorted(data_dir("measurements/published").glob("*.csv"))


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(path.rglob("*.csv"))
            if not found:
                raise PlannerError(f"{path} holds no CSV files")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise PlannerError(f"{p} does not exist")
    return out


def _int(row: dict, key: str, file: Path, line: int) -> int:
    try:
        v = int(float(row[key]))
    except (KeyError, TypeError, ValueError):
        raise PlannerError(f"{file}:{line}: column {key!r} is missing or not a number") from None
    if v < 1:
        raise PlannerError(f"{file}:{line}: column {key!r} must be positive, got {v}")
    return v


def _float(row: dict, key: str, file: Path, line: int) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        raise PlannerError(f"{file}:{line}: column {key!r} is missing or not a number") from None


# precision names other benchmark tables use: the registry's (planner.specs.quant)
PRECISION_ALIASES = QUANT_ALIASES


def _precision(value: str | None, default: str | None) -> str | None:
    if not value:
        return default
    return canonical(value)


class UnpredictableRow(PlannerError):
    """A well-formed row the planner cannot predict (an unknown model or device, a precision the
    device cannot run): reported beside the others, not fatal to the file."""


def _estimate(file: Path, line: int, *args, **kw):
    try:
        return estimate(*args, **kw)
    except UnpredictableRow:
        raise
    except PlannerError as e:
        raise UnpredictableRow(f"{file.name}:{line}: {e}") from None


def predict_row(row: dict, file: Path, line: int, hardware=None, via: str = "replay") -> tuple[str, str, float, float | None]:
    """(what, config, measured, predicted) for one published-schema row; ``hardware``
    overrides the row's device spec (a candidate calibration). ``via='estimate'``: a max-throughput row as a user asks
    for it (estimate_max_throughput: the release's own defaults, not the benchmark tool's sizing; None where it does
    not fit)."""
    cols = set(row)
    weights, kv = row_precisions(row)
    # "tpN", "depN" / "adpN" (attention DP with expert-parallel / tensor-parallel experts), "tpNepE", then "ppM"; or
    # the table's own tp / pp / ep columns
    tp, pp, ep, adp = row_parallel(row, f"{file}:{line}")
    plan = PlanSpec(tp=tp, pp=pp, ep=ep, attention_dp=adp, weights=weights, kv=kv)
    model, hw = row["model"], hardware if hardware is not None else row["hardware"]
    eng = release_of(row)  # the engine release the row ran (its profile, its kernel/engine calibration), as the fit resolves it
    bench = offline(eng)  # these files are offline benchmark runs: no API front end in the path
    if "ttft_s" in cols and "batch" in cols:
        # first-token latency: one generate() call with a single output token (the TensorRT-LLM 0.9 page's method),
        # i.e. the prefill step that produces the first token, what estimate reports as TTFT
        isl = _int(row, "isl", file, line)
        e = _estimate(file, line, model, hw, plan, isl=isl, osl=2, batching="static", batch=_int(row, "batch", file, line),
                     engine=bench)
        return "ttft_s", f"tp{tp} {weights} isl={isl}", _float(row, "ttft_s", file, line), e.ttft_s
    if "batch" in cols and "output_tokens_per_s_per_gpu" in cols:  # static batching
        b, isl, osl = (_int(row, k, file, line) for k in ("batch", "isl", "osl"))
        e = _estimate(file, line, model, hw, plan, isl=isl, osl=osl, batching="static", batch=b, engine=bench)
        return "output_tokens_per_s_per_gpu", f"tp{tp} {weights} b={b} {isl}/{osl}", _float(row, "output_tokens_per_s_per_gpu", file, line), e.output_tokens_per_s_per_gpu
    if "output_tokens_per_s_per_gpu" in cols:  # in-flight batching at the largest concurrency memory allows
        isl, osl = _int(row, "isl", file, line), _int(row, "osl", file, line)
        layout = parallel_label(plan.tp, plan.pp, plan.ep, plan.attention_dp)
        if via == "estimate":
            from planner.serving.published import estimate_max_throughput

            pred, why = estimate_max_throughput(model, hw, tp, pp, ep, adp, weights, kv, isl, osl, eng)
            if pred is None:
                raise UnpredictableRow(f"{file}:{line}: {why}")
            return "output_tokens_per_s_per_gpu", f"{layout} {weights} {isl}/{osl} max", _float(row, "output_tokens_per_s_per_gpu", file, line), pred
        conc = "max"
        # where trtllm-bench sized its own limits (calibrate/bench_settings.py), its max_batch_size and max_num_tokens
        # replace the engine's defaults (per attention-DP rank), as the simulated path runs them
        m = get_model(model)
        limits = row_bench_limits(row, eng, m, get_hardware(hw) if isinstance(hw, str) else hw, plan.tp * plan.attention_dp,
                                  plan.pp, isl, osl, weights, kv or default_kv(weights, eng, m))
        if bench_runs(row.get("source"), eng):
            bench = bench_sized(bench, limits, isl)  # its limits per rank cover the pp micro-batches in flight
            if limits[0]:
                conc = plan.attention_dp * limits[0]
        bench = bench_engine(row, eng, bench, limits[2])
        e = _estimate(file, line, model, hw, plan, isl=isl, osl=osl, batching="inflight", concurrency=conc, engine=bench)
        pred = e.output_tokens_per_s_per_gpu if e.max_concurrency >= 1 else 0.0
        return "output_tokens_per_s_per_gpu", f"{layout} {weights} {isl}/{osl} max", _float(row, "output_tokens_per_s_per_gpu", file, line), pred
    if "phase" in cols and "tokens_per_s" in cols:  # llama.cpp single stream
        phase = row["phase"]
        lcpp = bench if eng.startswith("llamacpp") else offline(LLAMACPP_NO_BUILD)
        run = llamacpp_run_settings(row, f"{file}:{line}")  # the run's own -ub / -fa / all logits, where the row states them
        lcpp = lcpp.with_(**run) if run else lcpp
        split = f"{plan.pp} GPUs by layer, " if plan.pp > 1 else ""  # llama.cpp's layer split: pipeline stages
        if phase == "decode":
            # llama-bench tg: generate n tokens from a short context, one request
            n = int(float(row["tokens"])) if row.get("tokens") else 128
            e = _estimate(file, line, model, hw, plan, isl=1, osl=n, batching="static", batch=1, engine=lcpp)
            return "decode_tokens_per_s", f"{split}{weights} tg{n}", _float(row, "tokens_per_s", file, line), 1.0 / e.tpot_s
        if phase == "prefill":
            # llama-bench pp: process an n-token prompt, one request (512 when the row does not say)
            n = int(float(row["tokens"])) if row.get("tokens") else 512
            e = _estimate(file, line, model, hw, plan, isl=n, osl=1, batching="static", batch=1, engine=lcpp)
            return "prefill_tokens_per_s", f"{split}{weights} pp{n}", _float(row, "tokens_per_s", file, line), n / e.ttft_s
        raise PlannerError(f"{file}:{line}: phase must be prefill or decode, got {phase!r}")
    raise PlannerError(f"{file}: unrecognised measurement columns {sorted(cols)}")


def predict_e2e_row(row: dict, file: Path, line: int, hw) -> tuple[str, str, float, float]:
    """A harness end-to-end row: the model with the layers that ran, one engine step."""
    from planner.costmodel.plans import make_plans
    from planner.costmodel.step import CostModel, Step
    from planner.specs.engine import Engine
    from planner.specs.loader import get_model

    local = file.parent / "models" / f"{row['model']}.yaml"  # the capture's own reference models (planner profile)
    if local.is_file():
        from planner.harness.refmodels import load_captured

        m = load_captured(local)
    else:
        m = get_model(row["model"])
    layers = _int(row, "layers", file, line)
    update = {"num_layers": layers}
    if m.moe and m.moe.first_dense_layers > layers:
        update["moe"] = m.moe.model_copy(update={"first_dense_layers": layers})
    m = m.model_copy(update=update)
    dtype = row.get("dtype") or "fp32"
    p = make_plans(m, hw, weights=dtype, kv=dtype, engine="harness")
    cm = CostModel(m, hw, engine=Engine(id="harness", runtime_bytes=0.0, grouped_moe_gemm=False))  # the reference loops over experts
    batch = _int(row, "batch", file, line)
    if row["phase"] == "prefill":
        n = _int(row, "prompt_tokens", file, line)
        st, cfg = Step(prefill_seqs=batch, prefill_tokens=n), f"{layers}L prefill b={batch} n={n}"
    elif row["phase"] == "decode":
        ctx = _int(row, "context", file, line)
        st, cfg = Step(decode_seqs=batch, decode_ctx=ctx), f"{layers}L decode b={batch} ctx={ctx}"
    else:
        raise PlannerError(f"{file}:{line}: phase must be prefill or decode, got {row['phase']!r}")
    return f"{row['phase']}_s", cfg, _float(row, "median_s", file, line), float(cm.step(p, st).time_s[0])


def _capture_hardware(f: Path, hardware):
    from planner.specs.loader import get_hardware

    if hardware is not None:
        return get_hardware(hardware) if isinstance(hardware, str) else hardware
    spec = f.parent / "calibrated.yaml"
    if not spec.is_file():
        raise PlannerError(f"{f} has end-to-end rows but {spec} does not exist: run `planner calibrate {f.parent}` first, or pass --hardware")
    return get_hardware(str(spec))


def predict_simulated(name: str, cols: set, rows: list[dict], via: str = "replay"):
    """(row index, what, config, measured, predicted, note) for arrival-rate, MLPerf and trtllm-bench burst rows,
    through the serving event simulator (an iterable: MLPerf rows come one at a time). ``via='estimate'``: a serving
    benchmark's closed loops through ``estimate --concurrency N`` instead (estimate_closed_loops) and trtllm-bench's
    bursts through ``estimate --concurrency max`` (estimate_offline_bench), the rest replayed."""
    from planner.serving.published import predict_bench_serve, predict_mlperf, predict_offline_bench, predict_online
    from planner.serving.vllm_rate import predict_vllm_rate

    if via == "estimate" and "num_prompts" in cols:
        return _closed_loops_via_estimate(name, rows)
    if via == "estimate" and OFFLINE_BENCH_COLUMNS & cols:  # the bursts' max throughput as estimate --concurrency max
        from planner.serving.published import estimate_offline_bench

        return estimate_offline_bench(rows, name)

    if "kv_cache_gib" in cols:  # engine startup logs of weight and KV-cache memory (vllm_kv_memory.csv)
        from planner.calibrate.memory_rows import predict_kv_memory

        return predict_kv_memory(rows, name)
    if "kernel_us" in cols:  # one MoE layer's published kernel timings (moe_kernel_vllm.csv)
        from planner.calibrate.kernel_rows import predict_moe_kernel

        return predict_moe_kernel(rows, name)
    if "workload_description" in cols:  # vLLM arrival-rate stages (vllm_rate.csv)
        return predict_vllm_rate(rows, name)
    if "num_prompts" in cols:  # `vllm bench serve` / `sglang.bench_serving` runs (serving_bench.csv)
        return predict_bench_serve(rows, name)
    if OFFLINE_BENCH_COLUMNS & cols:  # `trtllm-bench throughput` bursts of the perf overviews (0.20, 1.x)
        return predict_offline_bench(rows, name)
    return predict_online(rows, name) if "request_rate" in cols else predict_mlperf(rows, name)


def _closed_loops_via_estimate(name: str, rows: list[dict]) -> list[tuple]:
    """A serving-benchmark file with its closed loops priced by ``estimate`` and its other rows replayed, in file order."""
    from planner.serving.published import estimate_closed_loops, predict_bench_serve

    steady = estimate_closed_loops(rows, name)
    rest = [k for k in range(len(rows)) if k not in steady]
    replayed: dict[int, list[tuple]] = {}
    for j, *cells in predict_bench_serve([rows[k] for k in rest], name, lines=[k + 2 for k in rest]):
        replayed.setdefault(rest[j], []).append(tuple(cells))
    return [(k, *cells) for k in range(len(rows)) for cells in steady.get(k, replayed.get(k, []))]


def _drift_notes(capture: Path) -> list[str]:
    """The capture's speed-probe warnings (planner.calibrate.kernel_fit.drift_warnings), named by capture: its e2e
    rows and the kernel rows that calibrated the model ran at different machine speeds by that much."""
    from planner.calibrate.kernel_fit import drift_warnings
    from planner.harness.capture import read_meta

    return [f"{capture.name}: {w}" for w in drift_warnings(read_meta(capture / "meta.yaml"))]


def _bench_bursts(name: str, cols: set, rows: list[dict]) -> dict[int, tuple]:
    """Row index -> (what, config, measured, predicted, note) for the rows of a max-throughput table without a
    ``num_requests`` column that trtllm-bench ran (a 1.x perf overview: bench_settings.bench_runs): simulated as the
    bursts they were, at the page's request count for their lengths (predict_offline_bench), as the bundled copies of
    those pages are; every other row is priced at the steady state (predict_row)."""
    if "output_tokens_per_s_per_gpu" not in cols or {"batch", "phase"} & cols:
        return {}

    def bench_row(row: dict) -> bool:
        try:
            return bench_runs(row.get("source"), release_of(row))
        except PlannerError:
            return False

    idx = [k for k, row in enumerate(rows) if bench_row(row)]
    if not idx:
        return {}
    from planner.serving.published import predict_offline_bench

    out = predict_offline_bench([rows[k] for k in idx], name, lines=[k + 2 for k in idx])
    return {idx[j]: rest for j, *rest in out}


def validate(paths: list[str] | None = None, progress=None, hardware=None, via: str = "replay") -> Report:
    files = _files(paths) if paths else builtin_published()
    report = Report()
    for f in files:
        if f.name == "kernels.csv":
            continue  # kernel rows calibrate; they are never validated against themselves
        if f.name != "e2e.csv" and (f.parent / "meta.yaml").is_file():
            # a capture's other measurements (benchmarks/gpu_gemm_graphs.py's graph-timed GEMMs): no e2e steps to predict
            report.skipped[f.name] = "a measurement beside a planner profile capture, not an e2e or published table"
            continue
        if f.name == "e2e.csv":
            hw = _capture_hardware(f, hardware)
            with f.open(newline="") as fh:
                for i, row in enumerate(csv.DictReader(fh), start=2):
                    what, config, meas, pred = predict_e2e_row(row, f, i, hw)
                    report.rows.append(Row(f"{f.parent.name}/e2e.csv", row["model"], hw.id, what, config, meas, pred,
                                           f"planner profile capture {f.parent}"))
            report.notes += _drift_notes(f.parent)
            continue
        with f.open(newline="") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            if not cols:
                raise PlannerError(f"{f} is empty or has no header")
            missing = {"model", "hardware"} - cols
            if missing:
                raise PlannerError(f"{f} lacks column(s) {sorted(missing)}")
            rows = list(reader)
        for i, row in enumerate(rows, start=2):
            if None in row:
                raise PlannerError(f"{f}:{i}: the row has more cells than the header has columns")
            if not (row.get("model") or "").strip() or not (row.get("hardware") or "").strip():
                raise PlannerError(f"{f}:{i}: the row has no model or no hardware")
        if SIMULATED_COLUMNS & cols:
            # arrival-rate, MLPerf and trtllm-bench burst rows: predicted through the serving event simulator
            if hardware is not None:
                report.skipped[f.name] = "simulated rows (serving runs, benchmark bursts) are not re-run for a candidate calibration"
                continue
            for i, what, config, meas, pred, note in predict_simulated(f.name, cols, rows, via):
                row = rows[i]
                report.rows.append(Row(f.name, row["model"], row["hardware"], what, config, meas, pred, row.get("source", ""), note))
                if progress:
                    progress()
            continue
        # trtllm-bench's bursts replayed (through estimate --concurrency max, as the rest, with --via estimate)
        bursts = _bench_bursts(f.name, cols, rows) if hardware is None and via == "replay" else {}
        for i, row in enumerate(rows, start=2):
            if i - 2 in bursts:
                what, config, meas, pred, note = bursts[i - 2]
            else:
                try:
                    what, config, meas, pred = predict_row(row, f, i, via=via)
                    note = ""
                except UnpredictableRow as e:
                    what, config, meas, pred, note = "-", "", float("nan"), None, str(e)
            if pred is not None:
                note = "; ".join(x for x in (_release_note(row), note) if x)
            report.rows.append(Row(f.name, row["model"], row["hardware"], what, config, meas, pred, row.get("source", ""), note))
            if progress:
                progress()
    return report


def _release_note(row: dict) -> str:
    """Says so where a row's weights label was read as the model's release (row_precisions), else ''."""
    label, ran = _precision(row.get("weights"), "bf16"), row_precisions(row)[0]
    if row.get("weights_ran") or ran == label:
        return ""
    return f"weights labelled {label}, read as the released {ran} checkpoint (a wider label names no run)"
