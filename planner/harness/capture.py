"""Where a capture goes and how its rows are written: append-and-flush CSVs that a resumed run
continues without duplicates, and meta.yaml written atomically."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import yaml

from planner.errors import PlannerError

# after the timings: the threads that ran the row, the library calls one kernel makes (each pays the
# per-call host overhead), the spread of the repeats (coefficient of variation), the CPU other
# processes used meanwhile (cores), the 1-minute load average, and whether the row ran busy
NOISE_COLUMNS = ["cv", "others_cores", "load1", "busy"]
KERNEL_COLUMNS = ["op", "backend", "device", "dtype", "m", "n", "k", "batch", "heads", "kv_heads", "head_dim",
                  "head_dim_v", "seq_q", "seq_kv", "bytes", "flops", "repeats", "median_s", "p10_s", "p90_s", "threads", "calls",
                  *NOISE_COLUMNS]
E2E_COLUMNS = ["model", "backend", "device", "dtype", "layers", "total_layers", "phase", "batch", "prompt_tokens",
               "context", "repeats", "median_s", "p10_s", "p90_s", "threads", *NOISE_COLUMNS]
KEY_END = "repeats"  # a row's key: every column before this one


def fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return str(int(x))
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.6g}"
    if hasattr(x, "item"):  # numpy scalars
        return fmt(x.item())
    return str(x)


class CsvSink:
    """One CSV: rows are appended and flushed one at a time. Opening an existing file keeps its
    complete rows (a torn last line from a killed run is dropped) and remembers their keys."""

    def __init__(self, path: Path, columns: list[str], on_row=None):
        self.path, self.columns = path, columns
        self.nkey = columns.index(KEY_END)
        self.keys: set[tuple[str, ...]] = set()
        self.written = 0
        self.on_row = on_row
        rows = self._read_existing() if path.exists() else []
        if path.exists():  # rewrite only when something had to be dropped
            text = path.read_text()
            clean = self._render(rows)
            if text != clean:
                path.write_text(clean)
        else:
            path.write_text(self._render([]))
        for r in rows:
            self.keys.add(tuple(r[: self.nkey]))
        self._f = open(path, "a", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")

    def _render(self, rows) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        w.writerows(rows)
        return buf.getvalue()

    def _read_existing(self) -> list[list[str]]:
        text = self.path.read_text()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # torn last line
        reader = list(csv.reader(io.StringIO(text)))
        if not reader:
            return []
        if reader[0] != self.columns:
            raise PlannerError(f"{self.path} has columns {','.join(reader[0])}, expected {','.join(self.columns)}")
        seen, rows = set(), []
        for r in reader[1:]:
            if len(r) != len(self.columns):
                continue
            key = tuple(r[: self.nkey])
            if key not in seen:
                seen.add(key)
                rows.append(r)
        return rows

    def key(self, row: dict) -> tuple[str, ...]:
        return tuple(fmt(row.get(c)) for c in self.columns[: self.nkey])

    def has(self, row: dict) -> bool:
        return self.key(row) in self.keys

    def write(self, row: dict) -> None:
        key = self.key(row)
        if key in self.keys:
            return
        self._w.writerow([fmt(row.get(c)) for c in self.columns])
        self._f.flush()
        self.keys.add(key)
        self.written += 1
        if self.on_row is not None:
            self.on_row()

    def close(self) -> None:
        self._f.close()


def _plain(x):
    """Plain YAML types (torch's version string and numpy scalars are subclasses or wrappers)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or type(x) in (bool, int, float, str):
        return x
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if hasattr(x, "item"):
        return _plain(x.item())
    return str(x)


def write_meta(path: Path, meta: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(_plain(meta), sort_keys=False, default_flow_style=False, width=120))
    os.replace(tmp, path)


def read_meta(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def capture_folder(out: Path, host_id: str, date: str, suffix: str, resume: bool) -> Path:
    """DIR/<host-id>/<date><suffix>. A fresh run refuses a folder that already holds a capture;
    --resume takes today's folder, else the newest partial one of the same mode, else a new one."""
    base = out / host_id
    today = base / f"{date}{suffix}"
    has_capture = lambda p: any((p / f).exists() for f in ("kernels.csv", "e2e.csv", "meta.yaml"))
    if not resume:
        if has_capture(today):
            raise PlannerError(f"{today} already holds a capture; pass --resume to continue it, or --out to write elsewhere")
        return today
    if has_capture(today):
        return today
    pattern = re.compile(r"\d{4}-\d{2}-\d{2}" + re.escape(suffix) + "$")
    partial = [p for p in sorted(base.glob("*")) if p.is_dir() and pattern.match(p.name)
               and read_meta(p / "meta.yaml").get("status") == "partial"]
    return partial[-1] if partial else today


def capture_notes(model, grid) -> list[str]:
    """meta.yaml's notes: what the columns and the rows mean (``model`` a Model, ``grid`` a grids.Grid)."""
    from planner.harness.timing import BUSY_CORES, BUSY_CV

    notes = [
        "times in seconds; sizes in elements unless named bytes; a row's key is every column before 'repeats'",
        "weights, activations and KV caches are seeded random values; tensors over 4M elements repeat a random block of 1,000,003 values",
        ("numpy: matmul runs on BLAS threads (column 'threads'); numpy's elementwise ops (rmsnorm, silu_mul, add, softmax) "
         "and decode attention (einsum) run on one thread; copy/read/write split their arrays over the threads"),
        f"bandwidth arrays: {grid.bandwidth_bytes} bytes" + (" (>= 4x the last-level cache)" if grid.mode != "tiny" else " (tiny mode: not past the caches)"),
        ("e2e: random-weight decoders (planner/harness/transformer.py): the reference models in models/ (dense Llama "
         "layout, mixture of experts with a shared expert, multi-head latent attention; all their layers) and, where it "
         "fits, some layers of the profiled model; prefill starts from an empty cache; decode is one step over 'context' "
         "cached tokens; both end in lm_head over the full vocabulary for the last position and argmax"),
        ("noise: each row is the median of 'repeats' timed calls after warm-up; cv is their coefficient of variation; "
         "others_cores is the CPU other processes (and steal) used meanwhile, from /proc/stat; busy = 1 when "
         f"cv > {BUSY_CV} (3+ repeats) or others_cores > {BUSY_CORES}; calibrate weights busy rows down"),
        ("clock: 'wall' is perf_counter (CUDA events on a GPU); 'thread' is the measuring thread's CPU time, used when "
         "the machine was busy at the start and one thread measures: it leaves out the time other processes held the "
         "core, not their pressure on caches and memory bandwidth"),
        "gemm rows cycle through copies of the weight that together exceed 4x the last-level cache, so every call "
        "reads its weight from memory as a serving step does",
        f"memory budget {grid.memory_budget_bytes / 2**30:.2f} GiB: shapes whose buffers do not fit are left out (see skipped); "
        "peak_rss_bytes is this process's peak resident set (resource.getrusage)",
        "allreduce rows (several GPUs only): m = elements per rank, batch = ranks, bytes = buffer bytes per rank",
        ("attention rows: head_dim is the query/key width, head_dim_v the value width (empty: head_dim); attn_decode rows "
         "with kv_heads 1 and head_dim_v < head_dim are MLA's absorbed decode: every head attends over one cached latent "
         "(kv_lora_rank + rope dims) whose first head_dim_v dims serve as the values, as the e2e MLA model runs it"),
        ("gemm rows of a mixture-of-experts model's expert shapes add the few-token m an expert loop runs (tokens x top-k "
         "/ experts touched); BLAS switches from a matrix-vector kernel at m = 1 to packed GEMM at m >= 2"),
        ("moe_loop rows: a mixture-of-experts layer's top-k routing and loop over experts (transformer.expert_loop) "
         "with its GEMMs left out (they return ready outputs; the gemm rows time them): m tokens, n hidden, k expert "
         "width, heads experts, kv_heads experts per token; calls 0 (layer code, not one kernel; calibrate leaves them "
         "out of the fit and the cost model looks them up)"),
    ]
    a = model.attention
    ignored = [x for x, on in (("qkv biases", a.qkv_bias), ("o bias", a.o_bias), ("q/k norms", a.qk_norm),
                               ("sliding-window attention", a.sliding_window is not None), ("attention sinks", a.sinks),
                               ("MLP biases", model.mlp_bias), ("tied embeddings", model.tied_embeddings)) if on]
    if ignored:
        notes.append(f"the e2e model leaves out {', '.join(ignored)} of {model.id}")
    return notes
