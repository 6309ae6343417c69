"""Published rows as fit rows, and their predictions vectorized over rows.

A row of the published validation sets (static batching, first-token latency, in-flight max throughput,
llama.cpp single stream) is predicted exactly as ``planner validate`` predicts it (serving/predict.estimate),
but rows that share a model, device, engine release and kind are priced in one numpy pass: plan arrays
over the rows, the memory verdict computed once, then ``static_batch`` / ``inflight`` over arrays. The
joint fit (``planner.calibrate.joint``) calls :meth:`Predictor.predict` with candidate kernel/engine
parameters per (engine release, architecture) cell hundreds of times, so this is its hot path.

Rows predicted by the serving event simulator (arrival-rate and MLPerf files) are not fit rows; validate
predicts them (slowly) through the simulator.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planner.calibrate.bench_settings import bench_runs, bench_sized, offline, row_bench_limits, with_graph_padding
from planner.costmodel.collectives import host_link_bytes_per_s
from planner.costmodel.memory import kv_bytes_per_seq, memory
from planner.costmodel.params import Kernels, kernels_for, neutral
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel
from planner.errors import PlannerError
from planner.serving.batching import Techniques, inflight, static_batch
from planner.specs.engine import era_profile, get_engine, llamacpp_build
from planner.specs.loader import get_hardware, get_model
from planner.specs.quant import canonical, default_kv, get_format, kv_asked

# files predicted through the event simulator, or (kv_cache_gib) the memory model: validated, not fit rows
OFFLINE_BENCH_COLUMNS = {"num_requests"}  # trtllm-bench bursts: one short simulation per row, a few seconds per file
SIMULATED_COLUMNS = {"request_rate", "scenario", "num_prompts", "kv_cache_gib", "kernel_us"} | OFFLINE_BENCH_COLUMNS
MEMORY_COLUMNS = {"kv_cache_gib"}  # startup logs of memory: not in the speed error tables and bands (crossval)
KERNEL_COLUMNS = {"kernel_us"}  # one layer's kernel timings (kernel_rows.py): validated on their own, like the memory logs
MLPERF_COLUMNS = {"scenario", "mean_output_tokens"}  # MLPerf results: prompt lengths assumed, not published (crossval)


# a llama.cpp row that names no build: the bundled tables without one ran 2023-24 builds, which launch each op from the
# host (engines/llamacpp.yaml); rows of newer builds name theirs (engine_version bNNNN)
LLAMACPP_NO_BUILD = "llamacpp@unpinned"


def engine_of(row: dict) -> str:
    """The engine release a published row ran (``ID@VERSION``), from its own columns or its source:
    TensorRT-LLM 0.9.0 (static batching, first-token latency), 0.14.0 (max throughput, online serving),
    1.1 (the 1.1/1.2-era per-GPU table), llama.cpp, vLLM (its own engine/engine_version columns). An MLPerf
    Inference round's NVIDIA-GPU submissions ran the TensorRT-LLM build of that round's NVIDIA code (MLPERF_TRTLLM)."""
    if row.get("engine"):
        eid = row["engine"].strip().lower().replace("-", "").replace(".", "")
        eid = {"tensorrtllm": "trtllm", "llamacpp": "llamacpp"}.get(eid, row["engine"].strip().lower())
        ver = re.search(r"\d+(?:\.\d+)+", row.get("engine_version") or "")  # "0.15.1 (per ...)", "... is v0.15.1)"
        if ver is None and eid == "llamacpp":  # llama.cpp names builds: "b6918"
            build = llamacpp_build(row.get("engine_version"))
            return _profile_for(eid, f"b{build}") if build is not None else eid
        return _profile_for(eid, ver.group(0)) if ver else eid
    src = (row.get("source") or "").lower()
    if "llama.cpp" in src or "llamacpp" in src:
        return LLAMACPP_NO_BUILD
    # a table without an engine column whose source names vLLM or SGLang (and perhaps its release) ran that engine,
    # not TensorRT-LLM, the fallback below
    m = re.search(r"\b(vllm|sglang)\b[^0-9]{0,16}?v?(\d+)\.(\d+)", src)
    if m:
        return _profile_for(m.group(1), f"{m.group(2)}.{m.group(3)}")
    m = re.search(r"\b(vllm|sglang)\b", src)
    if m:
        return m.group(1)
    m = re.search(r"(?:trt-?llm|tensorrt[-_ ]?llm|perf-overview|release)[^0-9]{0,24}?v?(\d+)\.(\d+)", src)
    if m and ("trtllm" in src or "trt-llm" in src or "tensorrt" in src):
        return _profile_for("trtllm", f"{m.group(1)}.{m.group(2)}")
    if "mlperf" in src and row.get("hardware") and _vendor(row["hardware"]) not in ("nvidia", None):
        return "vllm"  # MLPerf LLM submissions on AMD Instinct run vLLM (ROCm); TensorRT-LLM runs on NVIDIA only
    m = re.search(r"mlperf-inference-(v\d+\.\d+)", src)
    if m and m.group(1) in MLPERF_TRTLLM:
        return _profile_for("trtllm", MLPERF_TRTLLM[m.group(1)])
    return "trtllm"


# The TensorRT-LLM each MLPerf Inference round's NVIDIA closed submission builds (its closed/NVIDIA/Makefile.build; the
# partners' _TRT systems run the same round's code), mapped to the profile of its era (specs.engine.era_profile):
#   v4.0  public main of 2024-02-21 (TRTLLM_PUBLIC_HASH eb8f26c, 0.9 dev; mlcommons/inference_results_v4.0)
#   v4.1  public main of 2024-07-16 (TRTLLM_PUBLIC_HASH 2d23435, 0.12 dev; mlcommons/inference_results_v4.1)
#   v5.0  public main of 2025-02-18 (TRTLLM_PUBLIC_HASH 2ea17cd, 0.18 dev, TensorRT engines under the C++ executor;
#         mlcommons/inference_results_v5.0)
#   v5.1  "7/24/25 1.0-mlpinf side branch" (TRTLLM_HASH 18c0333; a mirror of inference_results_v5.1)
# Later rounds take the newest profile.
MLPERF_TRTLLM = {"v4.0": "0.9", "v4.1": "0.12", "v5.0": "0.18", "v5.1": "1.0"}


def _profile_for(eid: str, version: str) -> str:
    """``ID@VERSION`` when that release has a profile or its era's profile bounds a setting by release
    (Engine.release_bounded: the release keeps its number), else the profile of its era
    (planner.specs.engine.era_profile)."""
    name = f"{eid}@{version}"
    try:
        e = get_engine(name)
    except PlannerError:
        return era_profile(eid, version) or name
    return name if e.requested is None or e.release_bounded else e.name


def _vendor(hardware: str) -> str | None:
    try:
        return get_hardware(hardware).vendor
    except PlannerError:
        return None


def _release(name: str) -> str:
    """``ID@VERSION`` of the engine profile a name resolves to (``llamacpp`` -> its newest build's profile)."""
    return get_engine(name).name


def release_of(row: dict) -> str:
    """``ID@VERSION`` of the engine profile that predicts a published row (``vllm@0.15`` for a row of vLLM 0.15.1)."""
    return _release(engine_of(row))


def parse_parallel(text: str) -> tuple[int, int, int, int] | None:
    """(tp, pp, ep, attention-dp) of a ``parallel`` label: ``tpN`` (tensor parallel over N), ``depN`` (attention data
    parallel with expert parallel over N), ``adpN`` (attention data parallel over N with the experts split tensor-
    parallel over the same N GPUs, no expert parallelism: TensorRT-LLM's ``enable_attention_dp`` with no ``--ep``,
    whose mapping then sets moe_tp_size = tp_size, moe_ep_size = 1), ``tpNepE`` (tensor-parallel attention over N
    with the experts expert-parallel over E of them, E dividing N: ``--tp N --ep E``), each optionally followed by
    ``ppM`` (M pipeline stages); None when it is not one."""
    m = re.fullmatch(r"(tp|dep|adp)(\d+)(?:[ ,_/]?ep(\d+))?(?:[ ,_/]?pp(\d+))?", (text or "").strip().lower())
    if not m or int(m.group(2)) < 1 or any(g is not None and int(g) < 1 for g in (m.group(3), m.group(4))):
        return None
    n, ep, pp = int(m.group(2)), int(m.group(3) or 1), int(m.group(4) or 1)
    if m.group(3) is not None and (m.group(1) != "tp" or n % ep):
        return None  # depN already spreads the experts over N; an expert group must divide the tensor-parallel one
    return {"tp": (n, pp, ep, 1), "dep": (1, pp, n, n), "adp": (1, pp, 1, n)}[m.group(1)]


def parallel_label(tp: int, pp: int = 1, ep: int = 1, adp: int = 1) -> str:
    """The ``parallel`` label of a layout, parse_parallel's inverse: ``tpN``, ``depN`` (attention DP with expert
    parallel) or ``adpN`` (attention DP with tensor-parallel experts), then ``ppM`` when pipelined."""
    head = (f"dep{adp}" if ep > 1 else f"adp{adp}") if adp > 1 else (f"tp{tp}ep{ep}" if ep > 1 else f"tp{tp}")
    return head + (f"pp{pp}" if pp > 1 else "")


def row_parallel(row: dict, where: str) -> tuple[int, int, int, int]:
    """(tp, pp, ep, attention-dp) a published row ran: its ``parallel`` label (parse_parallel), else its own ``tp``,
    ``pp`` and ``ep`` columns (1 where blank); one PlannerError naming ``where`` for a label that is not a layout or a
    column that is not a positive whole number."""
    if row.get("parallel"):
        got = parse_parallel(row["parallel"])
        if got is None:
            raise PlannerError(f"{where}: column 'parallel' must be tpN, depN or adpN (or tpNepE), optionally followed by "
                               f"ppM (tp1pp2, dep2pp2), got {row['parallel']!r}")
        return got

    def col(key: str) -> int:
        if not (row.get(key) or "").strip():
            return 1
        try:
            v = int(float(row[key]))
        except (TypeError, ValueError):
            raise PlannerError(f"{where}: column {key!r} is missing or not a number") from None
        if v < 1:
            raise PlannerError(f"{where}: column {key!r} must be positive, got {v}")
        return v

    return col("tp"), col("pp"), col("ep"), 1


@dataclass
class FitRow:
    file: str
    line: int
    model: str
    hardware: str
    architecture: str | None
    engine: str  # ID@VERSION as the engine profile names it
    kind: str  # static | ttft | inflight | llama_decode | llama_prefill
    what: str
    config: str
    measured: float
    tp: int = 1
    ep: int = 1
    adp: int = 1
    pp: int = 1
    weights: str = "bf16"
    kv: str = "bf16"
    batch: int = 1
    isl: int = 1
    osl: int = 1
    moe: bool = False
    batch_cap: int = 0  # per-rank batch limit the benchmark tool picked (bench_settings.py); 0: the engine's own
    token_cap: int = 0  # the run's per-rank token limit (graph-padded rows; with batch_cap it covers micro_batches)
    micro_batches: int = 1
    graph_padded: bool = False  # the benchmark padded decode batches to captured CUDA-graph sizes (bench_settings.py)
    # the Engine fields a llama.cpp run set itself where its row states them (llamacpp_run_settings), as (field, value)
    # pairs; empty: the profile's
    run_settings: tuple = ()

    @property
    def cell(self) -> tuple[str, str | None]:
        return (self.engine, self.architecture)

    @property
    def phase(self) -> str:
        """Which phase the measured number mostly prices (for error bands)."""
        return "prefill" if self.kind in ("ttft", "llama_prefill") else "decode"

    @property
    def metric(self) -> str:
        return {"ttft": "ttft", "llama_prefill": "throughput"}.get(self.kind, "throughput")


def _num(row, key, where, default=None):
    v = row.get(key)
    if v in (None, "") and default is not None:
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        raise PlannerError(f"{where}: column {key!r} is missing or not a number") from None


def llamacpp_run_settings(row: dict, where: str) -> dict:
    """The Engine fields a llama.cpp row's own run set, where its optional columns state them: ``ubatch_tokens``
    (llama-bench -ub), ``flash_attention`` (on / off, llama-bench -fa) and ``all_logits`` (on / off: the perplexity
    tool's logits of every token); what a row leaves blank is the profile's."""
    out: dict = {}
    ub = (row.get("ubatch_tokens") or "").strip()
    if ub:
        if not ub.isdigit() or int(ub) < 1:
            raise PlannerError(f"{where}: column 'ubatch_tokens' takes a token count (an integer >= 1), got {ub!r}")
        out["ubatch_tokens"] = int(ub)
    for col in ("flash_attention", "all_logits"):
        v = (row.get(col) or "").strip().lower()
        if v:
            if v not in ("on", "off"):
                raise PlannerError(f"{where}: column {col!r} takes on or off, got {v!r}")
            out[col] = v == "on"
    return out


def ran_weights(model: str, label: str) -> str:
    """The weights a published row labelled ``label`` ran: the label, except where it names a quantized format wider
    than the one the model is released in. Benchmark pages label rows by the precision of their table (TensorRT-LLM's
    perf overview files gpt-oss under FP8 on Hopper and FP4 on Blackwell), and no engine requantizes a release into a
    wider quantized format to benchmark it: the run serves the released checkpoint (the pages' own run settings load
    gpt-oss's MXFP4 one on both). A 16-bit label stays (a 16-bit upcast of a release is a real choice: gpt-oss in BF16),
    and so does a label as narrow as the release or narrower (another checkpoint of that width)."""
    try:
        released = get_model(model).released_weights()
        fmt, rel = get_format(label), get_format(released) if released else None
    except PlannerError:
        return label  # an unknown model or format: the row reports that itself
    if rel is not None and label != released and rel.bits < fmt.bits < 16:
        return released
    return label


def row_precisions(row: dict) -> tuple[str, str | None]:
    """(weights, kv) a published row ran. The published label stays as published in ``weights``/``kv``; where the
    source's own run configuration shows the engine ran something else, ``weights_ran``/``kv_ran`` say so (the
    file's README gives the reason and source); a row without ``weights_ran`` whose label is a quantized format wider
    than the model's release ran the release (ran_weights). kv None: the engine's own rule (blank or ``auto``)."""
    if row.get("weights_ran"):
        weights = canonical(row["weights_ran"])
    else:
        label = canonical(row.get("weights") or "bf16")
        weights = ran_weights(row["model"], label) if row.get("model") else label
    return weights, kv_asked(row.get("kv_ran") or row.get("kv"))


def parse_row(row: dict, file: str, line: int) -> FitRow:
    """A fit row from one published-schema row; PlannerError when it is not one."""
    where = f"{file}:{line}"
    cols = {k for k, v in row.items() if k is not None}
    weights, kv = row_precisions(row)
    tp, pp, ep, adp = row_parallel(row, where)
    hw = get_hardware(row["hardware"])
    m = get_model(row["model"])
    release = release_of(row)
    kv = kv or default_kv(weights, release, m)
    base = dict(file=file, line=line, model=m.id, hardware=hw.id, architecture=hw.architecture, engine=release,
                tp=tp, pp=pp, ep=ep, adp=adp, weights=weights, kv=kv, moe=m.moe is not None)
    num = lambda k, d=None: _num(row, k, where, d)  # noqa: E731
    if "ttft_s" in cols and "batch" in cols:
        isl, b = int(num("isl")), int(num("batch"))
        return FitRow(**base, kind="ttft", what="ttft_s", config=f"tp{tp} {weights} isl={isl}", measured=num("ttft_s"),
                      batch=b, isl=isl, osl=2)
    if "batch" in cols and "output_tokens_per_s_per_gpu" in cols:
        b, isl, osl = int(num("batch")), int(num("isl")), int(num("osl"))
        return FitRow(**base, kind="static", what="output_tokens_per_s_per_gpu", config=f"tp{tp} {weights} b={b} {isl}/{osl}",
                      measured=num("output_tokens_per_s_per_gpu"), batch=b, isl=isl, osl=osl)
    if "output_tokens_per_s_per_gpu" in cols:
        isl, osl = int(num("isl")), int(num("osl"))
        par = row.get("parallel") or f"tp{tp}"
        limits = row_bench_limits(row, base["engine"], m, hw, tp * adp, pp, isl, osl, weights, kv)
        padded = bench_runs(row.get("source"), base["engine"])
        cap, micro = limits[0], limits[2]
        # the token budget the run had (bench_settings.bench_sized, as validate and the simulated path take it)
        tokens = bench_sized(offline(release).for_hardware(hw), limits, isl).max_batched_tokens if padded else 0
        return FitRow(**base, kind="inflight", what="output_tokens_per_s_per_gpu", config=f"{par} {weights} {isl}/{osl} max",
                      measured=num("output_tokens_per_s_per_gpu"), isl=isl, osl=osl, batch_cap=cap, token_cap=tokens,
                      micro_batches=micro,
                      graph_padded=padded)
    if "phase" in cols and "tokens_per_s" in cols:
        base["engine"] = LLAMACPP_NO_BUILD if base["engine"].startswith("trtllm") else base["engine"]
        base["run_settings"] = tuple(sorted(llamacpp_run_settings(row, where).items()))
        if row["phase"] == "decode":
            n = int(num("tokens", 128))
            return FitRow(**base, kind="llama_decode", what="decode_tokens_per_s", config=f"{weights} tg{n}",
                          measured=num("tokens_per_s"), batch=1, isl=1, osl=n)
        if row["phase"] == "prefill":
            n = int(num("tokens", 512))
            return FitRow(**base, kind="llama_prefill", what="prefill_tokens_per_s", config=f"{weights} pp{n}",
                          measured=num("tokens_per_s"), batch=1, isl=n, osl=1)
    raise PlannerError(f"{where}: not a fit row (columns {sorted(cols)})")


def load_rows(files: list[Path]) -> tuple[list[FitRow], dict[str, str]]:
    """Fit rows of ``files`` and, per row that cannot be one, why (``file:line`` -> reason)."""
    rows, skipped = [], {}
    for f in files:
        with f.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if SIMULATED_COLUMNS & set(reader.fieldnames or []):
                continue
            for i, r in enumerate(reader, start=2):
                try:
                    fr = parse_row(r, f.name, i)
                    make_plans(get_model(fr.model), get_hardware(fr.hardware), tp=fr.tp, pp=fr.pp, ep=fr.ep, adp=fr.adp,
                               weights=fr.weights, kv=fr.kv, kernels=_NEUTRAL)
                    get_engine(fr.engine)
                except PlannerError as e:
                    skipped[f"{f.name}:{i}"] = str(e)
                    continue
                rows.append(fr)
    return rows, skipped


_NEUTRAL = neutral()  # plan arrays for memory only: no rate is read


@dataclass
class _Group:
    idx: np.ndarray
    kind: np.ndarray  # per row
    model: object
    hw: object
    engine: object
    tp: np.ndarray
    ep: np.ndarray
    adp: np.ndarray
    pp: np.ndarray
    weights: list[str]
    kv: list[str]
    batch: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    running: np.ndarray | None = None  # in-flight: sequences that fit (memory and the engine cap)
    batch_cap: np.ndarray | None = None  # per-rank batch limit of the benchmark tool (0: the engine's)
    kv_per_token: np.ndarray | None = None
    cell: tuple = field(default=("", None))


class Predictor:
    """Vectorized predictions of fit rows for candidate kernel/engine parameters per cell."""

    def __init__(self, rows: list[FitRow]):
        self.rows = rows
        self.measured = np.array([r.measured for r in rows], dtype=float)
        keys: dict[tuple, list[int]] = {}
        for i, r in enumerate(rows):  # every static-batch kind shares one pass per (model, device, engine)
            # a padded run captures graphs up to its own batch limit (bench_settings.captured_graph_sizes)
            keys.setdefault((r.model, r.hardware, r.engine, r.kind == "inflight", r.graph_padded,
                             (r.batch_cap, r.token_cap, r.micro_batches) if r.graph_padded else 0,
                             r.run_settings), []).append(i)
        self.groups = [self._group(np.array(ix), rows) for ix in keys.values()]
        self.cells = sorted({r.cell for r in rows}, key=lambda c: (c[0], c[1] or ""))

    @staticmethod
    def _group(ix: np.ndarray, rows: list[FitRow]) -> _Group:
        r0 = rows[ix[0]]
        sel = [rows[i] for i in ix]
        arr = lambda a: np.array([getattr(r, a) for r in sel])  # noqa: E731
        eng = offline(r0.engine).for_hardware(get_hardware(r0.hardware))  # the limits it picks there, as estimate
        if r0.graph_padded:  # trtllm-bench's limits, as the simulated path runs them (bench_settings.bench_sized)
            eng = eng.with_(max_seqs=int(r0.batch_cap) or eng.max_seqs, max_batched_tokens=int(r0.token_cap))
            eng = with_graph_padding(eng, r0.micro_batches)
        if r0.run_settings:
            eng = eng.with_(**dict(r0.run_settings))
        g = _Group(ix, np.array([r.kind for r in sel]), get_model(r0.model), get_hardware(r0.hardware), eng, arr("tp"), arr("ep"),
                   arr("adp"), arr("pp"), [r.weights for r in sel], [r.kv for r in sel], arr("batch").astype(float),
                   arr("isl").astype(float), arr("osl").astype(float), cell=r0.cell, batch_cap=arr("batch_cap"))
        if r0.kind == "inflight":
            g.running, g.kv_per_token = _admitted(g, g.engine)
        return g

    def predict(self, kernels: dict[tuple, Kernels] | None = None, engine_fields: dict[tuple, dict] | None = None) -> np.ndarray:
        """Predicted value of every row; ``kernels`` maps each cell (engine, architecture) to its parameters
        (None: what the cost model resolves on its own, the calibration in force), ``engine_fields`` to
        Engine fields the serving layer reads (per-request overhead ...)."""
        out = np.full(len(self.rows), np.nan)
        for g in self.groups:
            k = kernels[g.cell] if kernels is not None else kernels_for(g.engine, g.hw)
            eng = g.engine.with_(**engine_fields[g.cell]) if engine_fields and engine_fields.get(g.cell) else g.engine
            out[g.idx] = _predict_group(g, k, eng)
        return out


def _predict_group(g: _Group, k: Kernels, eng) -> np.ndarray:
    p = make_plans(g.model, g.hw, tp=g.tp, pp=g.pp, ep=g.ep, adp=g.adp, weights=g.weights, kv=g.kv, kernels=k, check=False,
                   engine=eng)
    cm = CostModel(g.model, g.hw, engine=eng, kernels=k)
    running, kv_per_token = (g.running, g.kv_per_token) if eng is g.engine or g.running is None else _admitted(g, eng)
    gpus = (g.tp * g.pp * g.adp).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if g.running is None:  # static batching: throughput, first-token latency, llama-bench tg / pp
            t = static_batch(cm, p, g.batch, g.isl, g.osl)
            kind = g.kind
            return np.select([kind == "static", kind == "ttft", kind == "llama_decode", kind == "llama_prefill"],
                             [t.output_tokens_per_s / gpus, t.ttft_s, 1.0 / t.tpot_s, g.isl / t.ttft_s], np.nan)
        run = np.maximum(running, 1.0)
        t = inflight(cm, p, run, g.isl, g.osl, Techniques(host_bw_bytes_per_s=host_link_bytes_per_s(g.hw)),
                     max_running=run, kv_bytes_per_token=kv_per_token, breakdown=False)
        return np.where(running >= 1, t.output_tokens_per_s / gpus, 0.0)


def _admitted(g: _Group, eng) -> tuple[np.ndarray, np.ndarray]:
    """Sequences the engine admits at once (KV memory, then its batch cap) and KV bytes per token, per row."""
    p = make_plans(g.model, g.hw, tp=g.tp, pp=g.pp, ep=g.ep, adp=g.adp, weights=g.weights, kv=g.kv, kernels=_NEUTRAL, check=False)
    cap = np.where(g.batch_cap > 0, g.batch_cap, eng.max_seqs) if g.batch_cap is not None else eng.max_seqs
    mem = memory(g.model, g.hw, p, eng, max_seqs=cap)  # a benchmark tool's batch size also sizes the logits buffer
    per_seq = kv_bytes_per_seq(g.model, p, g.isl + g.osl, eng.kv_block_tokens, eng)
    fit_n = np.floor(np.maximum(mem.kv_capacity_bytes, 0.0) / per_seq) * g.adp
    return np.minimum(fit_n, cap * g.adp), mem.kv_full_per_token + mem.kv_swa_per_token
