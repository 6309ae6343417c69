"""``planner profile``: measure this machine and write kernels.csv, e2e.csv and meta.yaml.

Rows are appended and flushed one by one, so an interrupted run keeps what it measured, and a
run with ``resume`` skips every row already present (the key is every column before ``repeats``).
"""

from __future__ import annotations

import datetime as _dt
import gc
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from planner.errors import PlannerError
from planner.harness import host
from planner.harness.backends import NumpyOps, TorchOps, torch_or_none
from planner.harness.capture import (
    capture_notes,
    E2E_COLUMNS,
    KERNEL_COLUMNS,
    CsvSink,
    capture_folder,
    read_meta,
    write_meta,
)
from planner.harness.e2e import choose_layers, e2e_cases
from planner.harness.grids import Grid, make_grid, memory_budget
from planner.harness.kernels import Case, Slot, host_cases, kernel_cases
from planner.harness.refmodels import host_probe, write_model
from planner.harness.timing import BUSY_CORES, BUSY_CV, CpuMeter, SpeedProbe, measure
from planner.specs.model import Model

DEFAULT_MODEL = "llama-3.1-8b"


class SimulatedInterrupt(Exception):
    """Raised by the test hook ``stop_after_rows`` to stand for Ctrl-C in the middle of a run."""


@dataclass
class ProfileOptions:
    device: str = "cpu"
    backends: list[str] | None = None  # None: every backend that runs on the device
    quick: bool = False
    resume: bool = False
    out: Path = Path("measurements")
    model: str | Model | None = None  # id or YAML path; None: llama-3.1-8b (the tiny model with tiny)
    layers: int | None = None  # e2e decoder layers; None: as many as fit the time budget
    threads: int | None = None  # None: every logical core
    memory_budget_bytes: int | None = None  # None: the mode's default (quick 1 GiB, full 4 GiB), at most half the machine
    tiny: bool = False  # tiny model and grid (tests)
    seed: int = 0
    command: str | None = None
    progress: bool = True
    stop_after_rows: int | None = None  # test hook: raise SimulatedInterrupt after this many new rows
    warn: Callable[[str], None] | None = None  # told about conditions that make the capture less trustworthy
    # "wall" (perf_counter; CUDA events on a GPU) or "thread" (the measuring thread's CPU time: with one
    # thread it leaves out the time other processes held the core); None: thread when the machine is
    # busy and one thread measures, else wall
    clock: str | None = None


@dataclass
class ProfileResult:
    folder: Path
    status: str
    rows_written: int
    rows_total: int
    seconds: float
    layers: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    peak_rss_bytes: int = 0
    busy_rows: int = 0


def tiny_model() -> Model:
    return Model(id="tiny", name="tiny test transformer", source="planner.harness (tests)", num_layers=2,
                 hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16, intermediate_size=128,
                 vocab_size=256, max_context=4096, attention={"kind": "gqa"})


def _resolve_model(opts: ProfileOptions) -> Model:
    if isinstance(opts.model, Model):
        model = opts.model
    elif opts.model is None and opts.tiny:
        model = tiny_model()
    else:
        from planner.specs.loader import get_model

        model = get_model(opts.model or DEFAULT_MODEL)
    problems = []
    if model.attention.mla and model.attention.mla.q_lora_rank:
        problems.append("a low-rank query projection (MLA q_lora_rank)")
    if not model.ffn_gated:
        problems.append("an ungated MLP")
    if model.parallel_attn_mlp:
        problems.append("parallel attention and MLP")
    if model.norm != "rmsnorm":
        problems.append(model.norm)
    if problems:
        raise PlannerError(f"profile runs Llama-layout decoders (GQA or MLA attention, gated MLP or MoE); "
                           f"{model.id} has {', '.join(problems)}")
    return model


def _resolve_backends(opts: ProfileOptions) -> list[str]:
    if opts.device not in ("cpu", "cuda"):
        raise PlannerError(f"unknown device {opts.device!r} (choose cpu or cuda)")
    torch = torch_or_none()
    if opts.device == "cuda" and (torch is None or not torch.cuda.is_available()):
        raise PlannerError("no CUDA device is available" + (" (torch is not installed)" if torch is None else ""))
    wanted = list(dict.fromkeys(opts.backends or []))
    for b in wanted:
        if b not in ("numpy", "torch"):
            raise PlannerError(f"unknown backend {b!r} (choose numpy or torch)")
    if not wanted:
        wanted = ["torch"] if opts.device == "cuda" else ["numpy"] + (["torch"] if torch is not None else [])
    if "numpy" in wanted and opts.device == "cuda":
        raise PlannerError("the numpy backend runs on the CPU only; use --backend torch with --device cuda")
    if "torch" in wanted and torch is None:
        raise PlannerError("torch is not installed (pip install torch, or the 'harness' extra)")
    if opts.layers is not None and opts.layers < 1:
        raise PlannerError("--layers must be at least 1")
    if opts.threads is not None and opts.threads < 1:
        raise PlannerError("--threads must be at least 1")
    return wanted


def _idle_threads(opts: ProfileOptions, meta: dict) -> int | None:
    """Threads to measure with when --threads is not given: every logical core on a quiet machine;
    on a busy one the cores other work leaves idle (measured over a moment from /proc/stat), since
    BLAS threads that wait on each other's time slices run many times slower than one thread.
    None on a GPU or where /proc is missing (every core)."""
    if opts.threads is not None or opts.device != "cpu" or opts.tiny:
        return opts.threads
    meter = CpuMeter()
    time.sleep(0.5)
    others = meter.others_cores()
    cores = host.logical_cores()
    meta["others_cores_at_start"] = others
    if others is None or others <= BUSY_CORES:
        return None
    threads = max(1, min(cores, cores - int(round(others))))
    note = (f"threads: {threads} of {cores}: other work used {others:.1f} cores when the run started "
            f"(pass --threads {cores} to use every core anyway); timings are slower and noisier than on a quiet machine")
    meta["skipped"].append(note)
    if opts.warn is not None:
        opts.warn(note)
    return threads


def _make_ops(backend: str, device: str, threads: int | None, clock: str = "wall"):
    ops = NumpyOps("fp32", threads) if backend == "numpy" else TorchOps(device, None, threads or host.logical_cores())
    if clock == "thread" and ops.threads == 1 and device == "cpu":
        ops.clock = "thread"
    return ops


def _planner_version() -> str:
    try:
        from importlib.metadata import version

        return version("planner")
    except Exception:
        return "unknown"


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine shows up here (and in the spread of p10/p90)."""
    try:
        import os

        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _label(row: dict) -> str:
    keys = ("phase", "dtype", "batch", "m", "n", "k", "seq_q", "seq_kv", "prompt_tokens", "context")
    return " ".join(f"{k}={row[k]}" for k in keys if row.get(k) is not None and k in row
                    and not (k == "dtype" and row[k] in ("fp32", "bf16")))


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from rich.console import Console

    err_console = Console(stderr=True)  # progress goes to stderr (the harness sits below the CLI layer)
    return Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("[dim]{task.fields[case]}"), console=err_console, disable=not enabled)


def run_profile(opts: ProfileOptions) -> ProfileResult:
    model = _resolve_model(opts)
    backends = _resolve_backends(opts)
    mode = "tiny" if opts.tiny else "quick" if opts.quick else "full"
    budget = _budget(opts, mode)
    folder, hid, today, old = _open_capture(opts, mode)
    meta_path = folder / "meta.yaml"
    command = opts.command or shlex.join(sys.argv)
    grid = make_grid(mode, model, host.last_level_cache_bytes(), opts.device, budget_bytes=budget,
                     elem_size=4 if opts.device == "cpu" else 2)
    blas_threads_before = host.blas_threads()
    started = time.perf_counter()
    run_entry = {"command": command, "started": _now(), "finished": None, "status": "running", "rows_written": 0,
                 "load_average_start": _loadavg()}
    meta = _initial_meta(opts, model, grid, backends, mode, hid, old, today, command, budget, run_entry)

    # the capture carries the spec of every model its rows name (e2e rows, and the host-overhead probes)
    for m in (*grid.e2e_models, model, *(host_probe(r) for r in grid.e2e_models)):
        write_model(m, folder / "models")

    def save(status: str | None = None):
        if status:
            meta["status"] = status
        meta["peak_rss_bytes"] = host.peak_rss_bytes()
        meta["busy_rows"] = {"kernels": ksink_busy[0], "e2e": esink_busy[0]}
        run_entry["seconds"] = round(time.perf_counter() - started, 1)
        meta["elapsed_s"] = round(sum(r.get("seconds") or 0 for r in meta["runs"]), 1)
        write_meta(meta_path, meta)

    written = [0]
    ksink_busy, esink_busy = [0], [0]

    def on_row():
        written[0] += 1
        run_entry["rows_written"] = written[0]
        if opts.stop_after_rows is not None and written[0] >= opts.stop_after_rows:
            raise SimulatedInterrupt(f"stopped after {written[0]} rows (test hook)")

    save()
    threads = _idle_threads(opts, meta)
    meta["clock"] = opts.clock or ("thread" if threads == 1 and meta.get("others_cores_at_start", 0) and
                                   meta["others_cores_at_start"] > BUSY_CORES else "wall")
    save()
    ksink = CsvSink(folder / "kernels.csv", KERNEL_COLUMNS, on_row)
    esink = CsvSink(folder / "e2e.csv", E2E_COLUMNS, on_row)
    ops_list = []
    try:
        with _progress(opts.progress) as progress:
            for backend in backends:
                ops = _make_ops(backend, opts.device, threads, meta["clock"])
                ops_list.append(ops)
                meta["threads"] = ops.threads
                save()
                busy_k, busy_e = _measure_backend(opts, ops, model, grid, ksink, esink, progress, meta, save)
                ksink_busy[0] += busy_k
                esink_busy[0] += busy_e
                ops.close()
            _allreduce(opts, grid, ksink, progress, meta)
        save("complete")
        run_entry["status"] = "complete"
    except BaseException as e:
        run_entry["status"] = f"interrupted ({type(e).__name__})"
        raise
    finally:
        run_entry["finished"] = _now()
        run_entry["load_average_end"] = _loadavg()
        save()
        ksink.close()
        esink.close()
        for ops in ops_list:
            ops.close()
        if blas_threads_before is not None:
            host.set_blas_threads(blas_threads_before)
    return ProfileResult(folder=folder, status=meta["status"], rows_written=written[0],
                         rows_total=len(ksink.keys) + len(esink.keys), seconds=time.perf_counter() - started,
                         layers={k: v["layers"] for k, v in meta["e2e"].items()}, skipped=meta["skipped"],
                         peak_rss_bytes=meta["peak_rss_bytes"] or 0, busy_rows=ksink_busy[0] + esink_busy[0])


def _budget(opts: ProfileOptions, mode: str) -> int:
    """Bytes the capture may use: the host's RAM bounds a CPU capture; on a GPU the default is half
    the free device memory."""
    if opts.memory_budget_bytes is not None and opts.memory_budget_bytes < 64 << 20:
        raise PlannerError("--max-memory must be at least 64 MiB")
    if opts.device == "cpu":
        return memory_budget(mode, host.memory_bytes(), opts.memory_budget_bytes)
    return opts.memory_budget_bytes or int(0.5 * _memory_for(_probe_ops(opts)))


def _open_capture(opts: ProfileOptions, mode: str) -> tuple[Path, str, str, dict]:
    """(folder, host id, today, the meta.yaml being resumed or {})."""
    gpu_name, gpu_count = None, 1
    if opts.device == "cuda":
        torch = torch_or_none()
        gpu_name, gpu_count = torch.cuda.get_device_name(0), torch.cuda.device_count()
    hid = host.host_id(gpu_name, gpu_count)
    today = _dt.date.today().isoformat()
    folder = capture_folder(Path(opts.out), hid, today, {"full": "", "quick": "-quick", "tiny": "-tiny"}[mode], opts.resume)
    folder.mkdir(parents=True, exist_ok=True)
    old = read_meta(folder / "meta.yaml") if opts.resume else {}
    if old and old.get("mode") not in (None, mode):
        raise PlannerError(f"{folder} holds a {old.get('mode')} capture; resume it in the same mode")
    return folder, hid, today, old


def _initial_meta(opts: ProfileOptions, model: Model, grid: Grid, backends: list[str], mode: str, hid: str, old: dict,
                  today: str, command: str, budget: int, run_entry: dict) -> dict:
    """meta.yaml at the start of a run: the machine, the libraries, the grid, and this run's entry."""
    meta = {
        "status": "partial",
        "mode": mode,
        "date": old.get("date", today),
        "command": command,
        "planner_version": _planner_version(),
        "host_id": hid,
        **host.host_facts(),
        "python": sys.version.split()[0],
        "numpy": host.numpy_blas_info(),
        "threads": opts.threads or host.logical_cores(),
        "blas_threads_before": host.blas_threads(),
        "torch": None,
        "memory_budget_bytes": budget,
        "peak_rss_bytes": None,
        "noise": {"busy_cv": BUSY_CV, "busy_others_cores": BUSY_CORES},
        "device": opts.device,
        "backends": backends,
        "model": {"id": model.id, "total_layers": model.num_layers, "hidden_size": model.hidden_size,
                  "num_heads": model.num_heads, "num_kv_heads": model.num_kv_heads, "head_dim": model.head_dim,
                  "intermediate_size": model.intermediate_size, "vocab_size": model.vocab_size},
        "e2e_models": {m.id: f"models/{m.id}.yaml" for m in grid.e2e_models},
        "e2e": dict(old.get("e2e") or {}),
        "timing": {"warmup": grid.timing.warmup, "min_repeats": grid.timing.min_repeats,
                   "min_time_s": grid.timing.min_time_s, "max_repeats": grid.timing.max_repeats,
                   "warmup_s": grid.timing.warmup_s},
        "e2e_timing": None if grid.e2e_timing is None else dict(vars(grid.e2e_timing)),
        "skipped": list(dict.fromkeys(list(old.get("skipped") or []) + list(grid.dropped))),
        "notes": capture_notes(model, grid),
        "runs": list(old.get("runs") or []) + [run_entry],
    }
    torch = torch_or_none()
    if torch is not None and "torch" in backends:
        meta["torch"] = host.torch_info(torch, opts.device)
    return meta


def _measure_backend(opts: ProfileOptions, ops, model: Model, grid: Grid, ksink: CsvSink, esink: CsvSink, progress,
                     meta: dict, save) -> tuple[int, int]:
    """Kernel rows, then e2e rows (reference models, then the profiled model's layers) on one backend;
    returns how many of each ran busy."""
    slot = Slot()
    rng = np.random.default_rng(opts.seed)
    # the speed probe streams a weight the size of the bandwidth rows' arrays (>= 4x the last-level cache): from memory
    # whatever ran before it
    # (on a GPU, where small steps are host-bound: a decode step of the dense host-overhead probe, the host's speed)
    probe, probe_what = None, ""
    if ops.device == "cpu":
        probe = SpeedProbe(ops, grid.bandwidth_bytes, np.random.default_rng(opts.seed + 7))
        probe_what = f"matrix-vector product over {grid.bandwidth_bytes >> 20} MiB"
    else:
        first = host_cases(ops, grid, np.random.default_rng(opts.seed + 7), Slot())[:1]  # its own slot: kept alive
        if first:
            probe = SpeedProbe(ops, 0, None, fn=first[0].prepare())
            probe_what = (f"one step of the host-overhead probe {first[0].row['op']} (batch {first[0].row['batch']}, "
                          f"{first[0].row['n']} layers at width {first[0].row['k']}): the host issuing its kernels")
    if ops.device == "cuda" and GRAPH_NOTE not in meta["notes"]:
        meta["notes"].append(GRAPH_NOTE)
    if ops.name == "torch" and ops.device == "cuda" and ops.fp8_gemm_available():
        why = f"fp8 gemm: {ops.fp8_gemm_available()}"
        if why not in meta["skipped"]:
            meta["skipped"].append(why)
    with ops.inference():
        busy_k = _run_cases(kernel_cases(ops, model, grid, rng, slot), ksink, ops, grid, progress, meta, slot, probe)
        cases = []
        for ref in grid.e2e_models:
            cases += e2e_cases(ops, ref, grid, ref.num_layers, opts.seed, slot)
        layers = _main_layers(opts, ops, model, grid, meta)
        save()
        if layers:
            cases += e2e_cases(ops, model, grid, layers, opts.seed, slot)
        busy_e = _run_cases(cases, esink, ops, grid, progress, meta, slot, probe)
    if probe is not None and probe.samples:
        kept = [s for s in (meta.get("speed_probe") or {}).get("runs", []) if s.get("backend") != ops.name]
        entry = {"backend": ops.name, "what": f"{probe_what}, median of {SpeedProbe.REPEATS}", **probe.summary(),
                 "trace": probe.samples}
        meta["speed_probe"] = {"runs": kept + [entry]}
    return busy_k, busy_e


def _main_layers(opts: ProfileOptions, ops, model: Model, grid: Grid, meta: dict) -> int:
    """Layers of the profiled model to run end to end (0: none; quick mode runs the reference models only)."""
    e2e_key = f"{ops.name}-{opts.device}"
    if not grid.e2e_main and not opts.layers:
        meta["e2e"][e2e_key] = {"layers": 0, "total_layers": model.num_layers,
                                "how": "quick: the reference models only (pass --layers N to add the profiled model)"}
        return 0
    layers = opts.layers or (meta["e2e"].get(e2e_key) or {}).get("layers")
    if layers is None:
        layers, why = choose_layers(ops, model, grid, _memory_for(ops), np.random.default_rng(opts.seed))
    else:
        why = "--layers" if opts.layers else "from the capture being resumed"
    layers = min(layers, model.num_layers)
    meta["e2e"][e2e_key] = {"layers": layers, "total_layers": model.num_layers, "how": why}
    return layers


def _probe_ops(opts: ProfileOptions):
    class _Cuda:  # just enough of TorchOps for _memory_for
        device = "cuda"
        torch = torch_or_none()

    return _Cuda()


def _memory_for(ops) -> int | None:
    if ops.device == "cuda":
        free, _total = ops.torch.cuda.mem_get_info()
        return int(free)
    return host.memory_bytes()


PROBE_EVERY_S = 2.0  # the speed probe runs at each phase's start and then every this many seconds of measuring


def _run_cases(cases: list[Case], sink: CsvSink, ops, grid: Grid, progress, meta: dict, slot: Slot,
               probe: SpeedProbe | None = None) -> int:
    """Measure the cases whose rows are missing; returns how many rows ran busy. ``probe`` is timed at the start of
    each phase and every ``PROBE_EVERY_S`` seconds (the machine's speed through the capture, in meta.yaml)."""
    phases: dict[str, int] = {}
    busy = 0
    for c in cases:
        phases[c.phase] = phases.get(c.phase, 0) + 1
    tasks = {}
    seconds = meta.setdefault("phase_seconds", {})
    t_phase = time.perf_counter()
    for c in cases:
        if c.phase not in tasks:
            if tasks:  # the previous phase ended
                prev = f"{ops.name} {list(tasks)[-1]}"
                seconds[prev] = round(seconds.get(prev, 0) + time.perf_counter() - t_phase, 1)
                t_phase = time.perf_counter()
            done = sum(1 for x in cases if x.phase == c.phase and sink.has(x.row))
            tasks[c.phase] = progress.add_task(f"{ops.name} {c.phase}", total=phases[c.phase], completed=done, case="")
        if sink.has(c.row):
            continue
        if probe is not None and (not probe.samples or probe.samples[-1]["phase"] != f"{ops.name} {c.phase}"
                                  or time.perf_counter() - probe.t0 - probe.samples[-1]["at_s"] > PROBE_EVERY_S):
            probe.sample(f"{ops.name} {c.phase}")
        task = tasks[c.phase]
        progress.update(task, case=_label(c.row))
        try:
            fn = c.prepare()
            fn, calls = _graph_if_gpu(ops, c, fn, meta)
            stats = measure(fn, ops, grid.e2e_timing if (grid.e2e_timing and c.phase.startswith("e2e")) else grid.timing)
            stats = per_call(stats, calls)
        except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
            if not c.optional:
                raise
            msg = f"{c.row['op']} {c.row['dtype']} {_label(c.row)}: {str(e).splitlines()[0][:200]}"
            meta["skipped"].append(msg)
            progress.advance(task)
            continue
        fn = None
        op = c.row.get("op", "")
        busy += stats.busy
        sink.write(c.row | {"repeats": stats.repeats, "median_s": stats.median_s, "p10_s": stats.p10_s,
                            "p90_s": stats.p90_s, "threads": ops.threads_for(op), "calls": ops.calls_for(op),
                            "cv": round(stats.cv, 4), "others_cores": stats.others_cores, "load1": stats.load1,
                            "busy": int(stats.busy)})
        progress.advance(task)
    if tasks:
        last = f"{ops.name} {list(tasks)[-1]}"
        seconds[last] = round(seconds.get(last, 0) + time.perf_counter() - t_phase, 1)
    for task in tasks.values():
        progress.update(task, case="")
    slot.clear()
    gc.collect()
    return busy


# kernel-row phases a GPU capture times as CUDA-graph replays (device time per call, no host dispatch); the MoE loop
# (its routing reads token counts back to the host), the host probes and the e2e steps stay eager
GRAPH_PHASES = ("gemm", "gemm peak", "attention", "memory", "elementwise")
GRAPH_NOTE = ("CUDA: kernel rows (gemm, attention, memory, elementwise) are the device time per call of a CUDA graph of up "
              "to 32 back-to-back calls, replayed (no host dispatch); moe_loop rows, host probes and e2e steps are eager "
              "calls, synchronized around each")


def _graph_if_gpu(ops, case: Case, fn, meta: dict):
    """(the call to time, calls it stands for): on a GPU a kernel row's ``fn`` as a graph replay (TorchOps.graphed);
    where capture fails, ``fn`` itself (eager, synchronized; the reason kept in meta.yaml's skipped)."""
    if ops.device != "cuda" or case.phase not in GRAPH_PHASES or not hasattr(ops, "graphed"):
        return fn, 1
    try:
        return ops.graphed(fn)
    except RuntimeError as e:
        why = f"{case.row['op']} {case.row['dtype']}: not graphed, timed eagerly ({str(e).splitlines()[0][:160]})"
        if why not in meta["skipped"]:
            meta["skipped"].append(why)
        ops.sync()
        return fn, 1


def per_call(stats, calls: int):
    """``stats`` of timings that each ran ``calls`` calls, as per-call times (the spread relative to them unchanged)."""
    if calls == 1:
        return stats
    return replace(stats, median_s=stats.median_s / calls, p10_s=stats.p10_s / calls, p90_s=stats.p90_s / calls)


def _allreduce(opts: ProfileOptions, grid: Grid, sink: CsvSink, progress, meta: dict) -> None:
    torch = torch_or_none()
    count = torch.cuda.device_count() if (torch is not None and opts.device == "cuda") else 0
    if count < 2:
        why = "allreduce: skipped, " + ("one GPU" if count == 1 else "no GPUs (CPU run)") + "; it needs several GPUs (torch.distributed, NCCL)"
        if why not in meta["skipped"]:
            meta["skipped"].append(why)
        return
    from planner.harness.allreduce import allreduce_rows

    dtype = "bf16"
    todo = [b for b in grid.allreduce_bytes
            if not sink.has({"op": "allreduce", "backend": "torch", "device": "cuda", "dtype": dtype,
                             "m": b // 2, "batch": count, "bytes": b})]
    task = progress.add_task("torch allreduce", total=len(grid.allreduce_bytes), completed=len(grid.allreduce_bytes) - len(todo), case=f"{count} GPUs")
    if todo:
        for row in allreduce_rows(count, todo, dtype, repeats=max(10, grid.timing.min_repeats)):
            sink.write(row)
            progress.advance(task)
