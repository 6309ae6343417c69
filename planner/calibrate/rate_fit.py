"""Second stage of the calibration: an engine release's host and collective costs from its runs at request rates.

The joint fit (``joint.py``) fits the kernel/engine layer to rows the closed-form serving model predicts
(throughput, static batches, batch-1 latency). Runs at set request rates (``vllm_rate.csv``: Poisson stages;
``online_serving.csv``: fixed rates; mean TTFT / inter-token latency / end-to-end latency) are predicted by the
event simulator, which is too slow to sit inside the joint fit's Jacobian. They are the only rows of some engines
(vLLM), and they see costs the other rows do not: the API front end's per-request time (HTTP, tokenize,
detokenize) in every TTFT, the engine's own collective kernels (vLLM's custom NVLink all-reduce; the fitted
all-reduce efficiency scales every collective of the engine) and its per-kernel gap under CUDA graphs. Its
per-sequence host time is not among them: with asynchronous scheduling it hides under the GPU step at these
batches. The one-step admission lag of an engine that schedules ahead is modelled by the simulator itself
(``serving/sim/replica.py``), not fitted: fitted without it, vLLM's per-request time came out 8.9 ms; with it, 1 ms.

So, after the joint fit, each engine release with rate rows gets them fitted to its rows through the simulator,
with every other value (GEMM, attention, KV-read efficiencies) held at the joint fit's: all three (``RATE_PARAMS``)
for a release the joint fit has no rows of (vLLM 0.15); for one it has (TensorRT-LLM 0.14), whose GEMM, attention and
all-reduce efficiencies its throughput rows pin, the per-kernel gap and the per-request time (``JOINT_RELEASE_PARAMS``).
Its throughput rows run hundreds of sequences a step, where each kernel is long and the gaps between kernels a small
share; at the online runs' low rates a step is a few sequences and the gaps a large share of it, so those runs are
where the gap shows. Left to the joint fit alone it followed whichever rows a fold kept: with the H100 left out (the
joint fit's only TensorRT-LLM rows on Hopper) the fold's refit took it from 8.5 to 2.3 us, and the H100's online
latencies (mean TTFT and inter-token latency of its 70B runs) came out 0.76x of measured at the median; fitted on the
online runs, the fold takes the gap from the H200's and they come out 0.97x.

A release of vLLM whose only published runs are serving benchmarks (``serving_bench.csv``: ``vllm bench serve`` bursts
and closed loops; vLLM 0.8-0.11, the 0.11 profile) takes its per-request time and one scale of its compute efficiencies
(GEMM, grouped GEMM, prefill attention) per architecture its runs used from them (``compute@ARCH``, BENCH_ENGINES): its
bursts run slower than the joint fit's kernels replay them, by a factor that is the architecture's (0.80 on Hopper, 0.62
on Ampere), not the workload's. An NVIDIA architecture without runs takes the geometric mean of the fitted scales
(``compute_scales``: one CUDA kernel stack); an AMD one keeps the joint fit's values.

Where each fitted value applies follows what sets it. The per-request time is the API server's work on the host
CPU, the same whatever GPU is underneath: it is the release's engine-wide value. The gap per kernel inside a CUDA
(HIP) graph and the collective kernels' efficiency are set by the GPU's command processor and by the links and the
collective library (NVLink and a custom all-reduce, XGMI and RCCL): they are values of the architectures the rate
rows ran on (``DEVICE_PARAMS``), and another architecture keeps the joint fit's all-engine values (the issue's rule:
a device without rows gets its architecture's values, else the engine-wide ones). The gap a CUDA (HIP) graph leaves
between its kernels is the driver's and the GPU front end's, not the engine's: a release that replays its decode steps
in graphs and has no value of its own on an architecture (SGLang, vLLM off Hopper, TensorRT-LLM 1.x) takes the
graph-mode gap fitted on an NVIDIA architecture (``graph_gap``), on AMD GPUs too where it replays HIP graphs there,
not the joint fit's values, which engines launching every kernel from the host (TensorRT-LLM 0.9 and 0.14's TensorRT
runtime, llama.cpp's 2023-24 builds) set. Offline benchmark rows
(trtllm-bench, llama-bench: requests submitted in process) are predicted without a front end
(``bench_settings.offline``). The fit is a small regularized least squares in log space (a Gaussian prior toward
the joint fit's value, as the joint fit shrinks its levels), robust (soft L1), over the stage rows (not the ``all``
rows, which repeat them). Its per-request time starts from the best point of a coarse grid over its range
(``_start``): a local search from the 1 ms prior stalls where that time is small beside the prefill, and so stayed at
1.1 ms for vLLM 0.11, whose closed-loop chat TTFTs (59 ms at one client, 12 ms of it prefill) put it near 48 ms.
Rows whose measured mean TTFT exceeds ``QUEUED_TTFT_S`` are left out of the fit: the run was overloaded, and its
latencies measure how long the queue grew in that run (they are still validated). Each vLLM stage is replayed at
``DURATION_SCALE`` of its length (the steady state of a stage that is not overloaded settles within seconds), which
makes one pass over every experiment a few seconds.
"""

from __future__ import annotations

import copy
import functools
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from planner.costmodel.params import PARAM_BY_NAME, own_graph_gap, using

RATE_PARAMS = ("kernel_s", "allreduce", "request_s")
# the per-request front-end time of each API endpoint (Engine.on_endpoint): a serving-benchmark fit takes the one of
# each endpoint its runs' TTFTs went through (their ``endpoint`` column), beside its compute scales
REQUEST_PARAMS = {"completions": "request_s", "chat": "chat_request_s"}
REQUEST_NAMES = tuple(REQUEST_PARAMS.values())
# what a release whose GEMM, attention and all-reduce efficiencies the joint fit has takes from its runs at request rates:
# the per-kernel gap its low-load steps show (a value of the runs' architectures, DEVICE_PARAMS) and its front end
JOINT_RELEASE_PARAMS = ("kernel_s", "request_s")
DEVICE_PARAMS = ("kernel_s", "allreduce")  # set by the GPU and its links: values of the rate rows' architectures
# Serving-benchmark runs (serving_bench.csv: `vllm bench serve` bursts and closed loops) of vLLM, which no joint-fit
# row comes from: a release whose only rows these are takes its per-request time and one compute scale per architecture
# its runs used from them (``compute@ARCH``: the GEMM, grouped-GEMM and prefill-attention efficiencies of that
# architecture, times the scale; COMPUTE). vLLM 0.8-0.11 lands at 0.80 on Hopper and 0.62 on Ampere. SGLang's runs fit
# no compute scale: such a fit put its Hopper kernels at 0.36 of TensorRT-LLM's, which no SGLang kernel is; what its
# bursts missed (TPOT 0.2-0.6x) is its API server's thread (THREAD_ENGINES below), not its kernels. TensorRT-LLM's
# kernel layer is its family's joint fit.
BENCH_ENGINES = ("vllm", "sglang", "trtllm")
# Releases whose serving-benchmark runs go through one API-server thread that prepares every request and writes every
# streamed chunk (SGLang's TokenizerManager, trtllm-serve's OpenAI server): their bursts fit that thread's two times
# (THREAD_PARAMS, engine-wide: host CPU work, whatever the GPU) beside the per-request time of their endpoint, and
# nothing of the kernel layer, which stays the joint fit's (SGLang's with no rows of its own, TensorRT-LLM's from its
# trtllm-bench rows). Burst after burst runs at an output rate that barely moves with the GPUs behind it (SGLang:
# Qwen3-14B on one H100 4,044 tokens/s, DeepSeek-R1 on eight H200 3,172), as one thread's ceiling would make it
THREAD_ENGINES = ("sglang", "trtllm")
THREAD_PARAMS = ("api_request_s", "api_chunk_s")
THREAD_GRID_S = {"api_request_s": (1e-3, 3e-3, 1e-2), "api_chunk_s": (3e-5, 1e-4, 3e-4)}  # where each search starts
# Serving-benchmark files validated but never fitted, in the rate stage too: runs on devices (and one architecture) no
# fitted row comes from, kept to measure how the fitted values transfer (joint.NOT_FITTED says why each file is not fitted)
HELD_OUT_FILES = frozenset({"serving_bench_more.csv", "serving_bench_quant.csv", "serving_bench_rtx3090.csv",
                            "speed_benchmark_qwen3_h20.csv", "serving_bench_consumer_blackwell.csv",
                            "serving_bench_inferencex.csv", "serving_bench_l4.csv"})
COMPUTE = ("gemm", "moe_gemm", "attention")
COMPUTE_BOUNDS = (0.3, 1.5)  # x the joint fit's values
BENCH_METRICS = ("requests_per_s", "mean_tpot_s", "decode_tokens_per_s")  # + the mean TTFT of closed-loop runs
SCALE = "compute@"  # a fitted name ``compute@ARCH``: the compute scale of that architecture


def thread_release(release: str) -> bool:
    """Whether ``release`` (``ID@VERSION``) is one whose serving benchmarks fit its API-server thread (THREAD_ENGINES)."""
    return release.split("@")[0] in THREAD_ENGINES


def _arch_value(c, arch: str, name: str) -> float:
    """A release's value of ``name`` on ``arch``: its architecture block's, else its engine-wide one."""
    return float((c.architectures.get(arch, {}).get(name) or c.engine_wide[name])[0])


def _prior_and_bounds(name: str, c) -> tuple[float, float, float]:
    """(prior, lower, upper) of a rate-fit value of release calibration ``c``: a compute scale starts at 1 (the joint
    fit's values) within COMPUTE_BOUNDS; any other value at the joint fit's (its ParamSpec prior where the fit has none;
    request_s, which has no joint-fit value, is centred on 1 ms) within its ParamSpec bounds."""
    if name.startswith(SCALE):
        return 1.0, *COMPUTE_BOUNDS
    spec = PARAM_BY_NAME[name]
    prior = float(c.engine_wide[name][0]) if name in c.engine_wide else spec.prior
    if name in THREAD_PARAMS and not prior > 0:  # the middle of its start grid, in log
        prior = float(np.exp(np.mean(np.log(THREAD_GRID_S[name]))))
    return (prior if prior > 0 else 1e-3), max(spec.lo, 1e-5 if name in REQUEST_NAMES else 0.0), spec.hi


QUEUED_TTFT_S = 2.0  # measured mean TTFT above this: an overloaded run (queue growth), validated but not fitted
DURATION_SCALE = 0.25
SIGMA = 0.5  # prior spread (log) of each value around the joint fit's
NOISE = 0.15  # typical log error of one row (as in the joint fit)
F_SCALE = 0.1  # the robust loss's scale (log error): residuals beyond it count linearly (soft L1)
METRICS = ("mean_ttft_s", "mean_itl_s", "mean_e2e_s")


@dataclass
class RateFit:
    release: str
    values: dict[str, float]  # fitted values (RATE_PARAMS; JOINT_RELEASE_PARAMS for a release with joint-fit rows)
    prior: dict[str, float]  # the joint fit's values they started from
    rows: int  # residuals fitted
    experiments: int
    hardware: list[str]
    median_ape: float
    prior_median_ape: float
    seconds: float
    evaluations: int
    architectures: tuple[str, ...] = ()  # where DEVICE_PARAMS apply (the rate rows' GPUs)
    bench: bool = False  # fitted to serving-benchmark runs (request_s and compute@ARCH), not stages at request rates

    @property
    def source(self) -> str:
        runs = "serving-benchmark runs" if self.bench else "runs at request rates"
        return (f"rate fit: {self.rows} rows ({self.experiments} {runs} on {', '.join(self.hardware)}) of "
                f"{self.release}, simulated, other values held at the joint fit's (planner calibrate --published)")


@dataclass(frozen=True)
class RateRow:
    file: str
    cols: frozenset
    row: dict

    @property
    def hardware(self) -> str:
        return self.row["hardware"]

    @property
    def bench(self) -> bool:
        """A serving-benchmark run (``num_prompts``), not a stage at a request rate."""
        return "num_prompts" in self.cols


def rate_rows(files: list[Path]) -> dict[str, list[RateRow]]:
    """Rows of the request-rate files (a ``request_rate`` column: vLLM stages, online serving) and the serving-benchmark
    runs of BENCH_ENGINES (a ``num_prompts`` column), by release; the files of HELD_OUT_FILES are left to validation."""
    from planner.calibrate.published_fit import release_of

    out: dict[str, list[RateRow]] = {}
    for f in files:
        if Path(f).name in HELD_OUT_FILES:
            continue
        with Path(f).open(newline="") as fh:
            reader = csv.DictReader(fh)
            cols = frozenset(reader.fieldnames or [])
            if "request_rate" not in cols and "num_prompts" not in cols:
                continue
            for r in reader:
                release = release_of(r)
                if "request_rate" in cols or release.split("@")[0] in BENCH_ENGINES:
                    out.setdefault(release, []).append(RateRow(Path(f).name, cols, r))
    return out


def _predict(rows: list[RateRow], scale: float) -> list[tuple[RateRow, str, float, float | None]]:
    """(row, metric, measured, predicted) for every rate row, file by file through the simulator (vLLM stages
    replayed at ``scale`` of their length)."""
    from planner.calibrate.validate import predict_simulated
    from planner.serving.vllm_rate import predict_vllm_rate

    out = []
    files: dict[str, list[RateRow]] = {}
    for r in rows:
        files.setdefault(r.file, []).append(r)
    for name, rs in files.items():
        plain = [r.row for r in rs]
        got = (predict_vllm_rate(plain, name, duration_scale=scale) if "workload_description" in rs[0].cols
               else predict_simulated(name, set(rs[0].cols), plain))
        out += [(rs[i], what, meas, pred) for i, what, _cfg, meas, pred, _note in got]
    return out


def architectures_of(hardware) -> tuple[str, ...]:
    """The GPU architectures of these device ids (where a rate fit's DEVICE_PARAMS apply)."""
    from planner.specs.loader import get_hardware

    return tuple(sorted({a for a in (getattr(get_hardware(h), "architecture", None) for h in hardware) if a}))


def _calibration_with(cal: dict, release: str, values: dict[str, float], source: str = "rate fit (candidate)",
                      architectures: tuple[str, ...] | None = None) -> dict:
    """``cal`` with ``values`` laid over the release: a DEVICE_PARAMS value over each of ``architectures`` (when
    given), every other value over the engine-wide block and every architecture block that has it."""
    out = dict(cal)
    c = copy.deepcopy(out[release])
    for n, v in values.items():
        if n.startswith(SCALE):  # a scale of the compute efficiencies ``cal`` gives that architecture
            a = n[len(SCALE):]
            blk = c.architectures.setdefault(a, {})
            for m in COMPUTE:
                base = _arch_value(cal[release], a, m)
                blk[m] = (base * float(v), f"{source} (x{float(v):.3g} of the joint fit's {base:.4g})")
            continue
        if architectures and n in DEVICE_PARAMS:
            for a in architectures:
                c.architectures.setdefault(a, {})[n] = (float(v), source)
            continue
        c.engine_wide[n] = (float(v), source)
        for blk in c.architectures.values():
            if n in blk:
                blk[n] = (float(v), source)
    out[release] = c
    return out


def _fittable(r: RateRow, what: str) -> bool:
    """A mean latency of a stage (not the ``all`` row repeating them) of a run that was not overloaded; of a serving
    benchmark, its request rate, mean TPOT and single-stream decode rate, and the mean TTFT of a closed loop (a burst's
    TTFT is how long its queue took to drain)."""
    row = r.row
    if r.bench:
        loop = (row.get("max_concurrency") or "").strip() not in ("", "0")
        if what == "mean_tpot_s" and not loop and thread_release(row.get("engine") or ""):
            # a burst through one API thread: its TPOT is how that thread interleaves the queue's preparations with the
            # streams (what order, how chunks coalesce behind a backlog), which one FIFO of equal chunks does not describe;
            # fitted, it pulls the chunk time up to 378 us, a thread ceiling of 2,645 tokens/s below the 5,020 a burst
            # of the same server measured. Its rate is the thread's work, so the rate is what is fitted
            return False
        return what in BENCH_METRICS or (what == "mean_ttft_s" and loop)
    if what not in METRICS or (row.get("stage") or "").strip() == "all":
        return False
    ttft = (row.get("mean_ttft_s") or "").strip()
    return not ttft or float(ttft) <= QUEUED_TTFT_S


def _request_params(rows: list[RateRow]) -> tuple[str, ...]:
    """The per-request times serving-benchmark ``rows`` inform: that of each endpoint whose runs' mean TTFT is fitted
    (closed loops; a burst's TTFT is its queue), else that of each endpoint the runs went through."""
    from planner.serving.published import endpoint_of

    timed = {endpoint_of(r.row) for r in rows if _fittable(r, "mean_ttft_s")}
    eps = timed or {endpoint_of(r.row) for r in rows}
    return tuple(name for ep, name in REQUEST_PARAMS.items() if ep in eps)


class _Problem:
    def __init__(self, release: str, rows: list[RateRow], cal: dict, scale: float):
        self.release, self.rows, self.cal, self.scale = release, rows, cal, scale
        self.archs = architectures_of({r.hardware for r in rows})
        self.evals = 0
        c = cal[release]
        self.bench = bool(rows) and all(r.bench for r in rows)
        if self.bench and thread_release(release):  # the API thread and the per-request time
            self.names = _request_params(rows) + THREAD_PARAMS
        elif c.rows:  # joint-fit rows of this release pin its compute and collective efficiencies
            self.names = JOINT_RELEASE_PARAMS
        elif self.bench:  # serving benchmarks: the per-request times and a compute scale per architecture they ran on
            self.names = _request_params(rows) + tuple(f"{SCALE}{a}" for a in self.archs)
        else:
            self.names = RATE_PARAMS
        pb = {n: _prior_and_bounds(n, c) for n in self.names}
        self.prior = {n: v[0] for n, v in pb.items()}
        self.lo = np.log([pb[n][1] for n in self.names])
        self.hi = np.log([pb[n][2] for n in self.names])
        self.x0 = np.clip(np.log([self.prior[n] for n in self.names]), self.lo + 1e-9, self.hi - 1e-9)

    def values(self, x: np.ndarray) -> dict[str, float]:
        return dict(zip(self.names, np.exp(x)))

    def predict(self, x: np.ndarray) -> list[tuple[RateRow, str, float, float]]:
        """(row, metric, measured, predicted) of the fitted rows at parameters ``x``."""
        self.evals += 1
        with using(_calibration_with(self.cal, self.release, self.values(x), architectures=self.archs)):
            out = _predict(self.rows, self.scale)
        return [(r, what, meas, pred) for r, what, meas, pred in out if pred is not None and _fittable(r, what)]

    def residuals(self, x: np.ndarray) -> np.ndarray:
        rows = self.predict(x)
        meas = np.array([m for _, _, m, _ in rows])
        pred = np.array([p for _, _, _, p in rows])
        pred = np.where(np.isfinite(pred) & (pred > 0), pred, meas * 100.0)  # a run that never finished: far off
        r = np.log(pred / meas)
        penalty = NOISE / SIGMA * (x - self.x0)
        return np.concatenate([r, penalty])


REQUEST_GRID_S = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # where the per-request time's search starts (the ParamSpec range)


def _soft_l1(r: np.ndarray) -> float:
    """The soft-L1 cost least_squares minimises (loss="soft_l1", f_scale=F_SCALE), up to its f_scale^2 factor."""
    z = (r / F_SCALE) ** 2
    return float(np.sum(2.0 * (np.sqrt(1.0 + z) - 1.0)))


def _start(prob: "_Problem", r0: np.ndarray) -> np.ndarray:
    """Where the least squares starts: the prior, with the per-request time moved to the best of a coarse grid.

    A fixed per-request time only shows in TTFTs once it nears the prefill time (tens of ms at low load), so from a
    1 ms start the gradient is flat and the local search stays there, though closed-loop TTFTs 3-5x the prefill say
    otherwise (vLLM 0.11's chat path: 59 ms measured at one client where the prefill takes 12). The grid spans the
    value's range; the prior (centred where it was) still pulls toward 1 ms in the fit itself."""
    x = prob.x0.copy()
    best = _soft_l1(r0)
    for name in REQUEST_NAMES + THREAD_PARAMS:
        if name not in prob.names:
            continue
        i = prob.names.index(name)
        best_x = x[i]
        for v in THREAD_GRID_S.get(name, REQUEST_GRID_S):
            xv = np.log(v)
            if not prob.lo[i] < xv < prob.hi[i]:
                continue
            x[i] = xv
            c = _soft_l1(prob.residuals(x))
            if c < best:
                best, best_x = c, xv
        x[i] = best_x
    return x


def fit_release(release: str, rows: list[RateRow], cal: dict, *, scale: float = DURATION_SCALE, max_nfev: int = 8) -> RateFit | None:
    """Fit ``release``'s rate values to its rate rows, every other value held at ``cal``'s; None when the release
    has no calibration entry or too few fittable rows."""
    if release not in cal or not rows:
        return None
    t0 = time.perf_counter()
    prob = _Problem(release, rows, cal, scale)
    r0 = prob.residuals(prob.x0)
    n = len(r0) - len(prob.names)
    if n < 2 * len(prob.names):
        return None
    sol = least_squares(prob.residuals, _start(prob, r0), bounds=(prob.lo, prob.hi), loss="soft_l1", f_scale=F_SCALE,
                        diff_step=0.05, max_nfev=max_nfev, xtol=1e-3, ftol=1e-3)
    r1 = sol.fun[:n]
    hw = sorted({r.hardware for r in rows})
    runs = len({(r.file, r.row.get("experiment") or (r.row["model"], r.row.get("tp"), r.row.get("isl"), r.row.get("osl")))
                for r in rows})
    return RateFit(release, prob.values(sol.x), dict(prob.prior), n, runs, hw,
                   float(np.median(np.abs(np.expm1(r1)))), float(np.median(np.abs(np.expm1(r0[:n])))),
                   time.perf_counter() - t0, prob.evals, prob.archs, prob.bench)


def apply(cal: dict, fits: list[RateFit]) -> dict:
    """``cal`` with every release's rate-fit values laid over it (with their provenance)."""
    for f in fits:
        cal = _calibration_with(cal, f.release, f.values, f.source, f.architectures)
    return cal


@functools.cache
def _architectures(vendor: str) -> tuple[str, ...]:
    """The architectures of the built-in GPUs of ``vendor`` (read once: every fold's graph_gap asks)."""
    from planner.specs.loader import get_hardware, hardware_ids

    out = set()
    for h in hardware_ids():
        hw = get_hardware(h)
        if hw.vendor == vendor and hw.kind in ("gpu", "soc") and hw.architecture:
            out.add(hw.architecture)
    return tuple(sorted(out))


def _replays_graphs(release: str) -> bool:
    from planner.specs.engine import get_engine

    return get_engine(release).cuda_graph_max_batch is not None


def graph_gap(cal: dict) -> dict:
    """``cal`` with the graph-mode kernel gap laid over every GPU architecture of every release that replays its
    decode steps in CUDA graphs (its profile's ``cuda_graph_max_batch``) and has no rows of its own: on NVIDIA
    architectures, and on AMD ones where the release replays HIP graphs there too (``hip_graphs``; llama.cpp's HIP
    build has them only as a build option), except where a rate fit gave the release its own value.

    The samples are the rate-fitted ``kernel_s`` values of graph-replaying releases on NVIDIA architectures (vLLM
    0.15 on Hopper); their geometric mean is taken. A graph's kernels are queued on the GPU at once, so what separates
    them is the GPU front end's launch gap and each small kernel's ramp, not the host; the joint fit's values come from
    engines that launch each kernel from the host (TensorRT-LLM 0.9 and 0.14's TensorRT runtime, llama.cpp's 2023-24
    builds), a different mechanism, so a graph-replaying release does not take them, TensorRT-LLM 1.x (the PyTorch
    backend, CUDA graphs for decode) included. Where a release's profile names the gap of its own graphs on an
    architecture (``graph_gap_s``: llama.cpp's, from its CUDA scoreboard), that value is laid there instead. Without
    any sample (a fold that holds out every rate row) only those own values are laid."""
    from planner.specs.engine import get_engine

    nv = _architectures("nvidia")
    samples = {}
    for k, c in cal.items():
        for a, blk in c.architectures.items():
            v = blk.get("kernel_s")
            if a in nv and v and v[1].startswith("rate fit") and _replays_graphs(k):
                samples[(k, a)] = v[0]
    gap = float(np.exp(np.mean(np.log(list(samples.values()))))) if samples else None
    named = " and ".join(f"{k} on {a} ({v * 1e6:.2f} us)" for (k, a), v in sorted(samples.items()))
    out = dict(cal)
    for k, c in cal.items():
        ew = c.engine_wide.get("kernel_s")
        if ew is None or c.rows or not _replays_graphs(k):
            continue  # rows of its own, or no graphs
        eng = get_engine(k)
        if gap is None and not eng.graph_gap_s:
            continue
        archs = nv + (_architectures("amd") if eng.hip_graphs else ())
        c = copy.deepcopy(c)
        src = (f"CUDA-graph kernel gap: {k} replays its decode steps in CUDA graphs (HIP graphs on AMD) and has no value "
               f"of its own on this architecture; the gap fitted for {named} (the joint fit's {ew[0] * 1e6:.2f} us is that of "
               f"engines that launch each kernel from the host)")
        for a in archs:
            fitted = (c.architectures.get(a, {}).get("kernel_s") or (None, ""))[1]
            if fitted.startswith("rate fit"):
                continue
            own = own_graph_gap(eng, k, a, False, fitted)  # no rows of its own (above): the release's own gap, if named
            if own is not None or gap is not None:
                c.architectures.setdefault(a, {})["kernel_s"] = own or (gap, src)
        out[k] = c
    return out


RATE_SOURCE = "runs at request rates"  # in a rate fit's provenance: stages at set rates, not serving benchmarks


def front_end(cal: dict) -> dict:
    """``cal`` with a per-request front-end time for every release that serves through a Python OpenAI-compatible
    HTTP server (its profile's ``http_front_end``) and has none fitted: the geometric mean of the times fitted on runs
    at request rates (vLLM 0.15 behind ``vllm serve``, TensorRT-LLM 0.14 behind Triton with its Python tokenizer
    models: 6.7 and 3.9 ms). Each is the host work of one request outside the engine's steps (HTTP, tokenize, hand
    the request to the engine, detokenize and stream the first token), the same kind of work in every such server,
    and the completions endpoint's time (``request_s``; inference-perf's default API type, "completion"). A chat
    endpoint's time (``chat_request_s``: vLLM 0.11's 50 ms, fitted on gpustack's `--backend openai-chat` closed loops)
    is neither a sample nor inferred: it is the release's own, and a release without one serves chat requests at its
    completions time (Engine.on_endpoint). A fold that holds out every rate run has no sample, and ``cal`` is returned
    as is."""
    from planner.specs.engine import raw_profiles

    samples = {k: c.engine_wide["request_s"][0] for k, c in cal.items()
               if "request_s" in c.engine_wide and RATE_SOURCE in c.engine_wide["request_s"][1]
               and c.engine_wide["request_s"][1].startswith("rate fit")}
    if not samples:
        return cal
    g = float(np.exp(np.mean(np.log(list(samples.values())))))
    named = " and ".join(f"{k} ({v * 1e3:.2g} ms)" for k, v in sorted(samples.items()))
    raw = raw_profiles()
    out = dict(cal)
    for k, c in cal.items():
        fitted = c.engine_wide.get("request_s")
        if k not in raw or not raw[k].http_front_end or (fitted and fitted[1].startswith("rate fit")):
            continue
        c = copy.deepcopy(c)
        c.engine_wide["request_s"] = (g, f"inferred: {k} serves through a Python OpenAI-compatible HTTP server and has no runs "
                                         f"at request rates of its own; the geometric mean of the per-request front-end times "
                                         f"fitted on {named}")
        out[k] = c
    return out


def compute_scales(cal: dict) -> dict:
    """``cal`` with each serving-benchmark-fitted release's compute scale laid over the NVIDIA architectures its runs did
    not use: the geometric mean of the scales fitted on NVIDIA architectures (vLLM 0.11: Hopper and Ampere). vLLM's CUDA
    kernels (FlashAttention, cuBLAS and CUTLASS GEMMs, Marlin, Triton) are one stack across NVIDIA generations; on AMD
    it runs ROCm's own (hipBLASLt, aiter), so AMD architectures keep the joint fit's values (vLLM 0.9-0.11 static
    batches on MI300X land at 5 % median with them). A scale is read as the architecture's fitted value over the
    release's engine-wide one, which is what a release without joint-fit rows (every bench-fitted one) scaled."""
    nv = _architectures("nvidia")
    out = dict(cal)
    for k, c in cal.items():
        if c.rows:
            continue
        scales = {}
        for a, blk in c.architectures.items():
            v = blk.get("gemm")
            if a in nv and v and v[1].startswith("rate fit") and "gemm" in c.engine_wide:
                scales[a] = v[0] / c.engine_wide["gemm"][0]
        if not scales:
            continue
        g = float(np.exp(np.mean(np.log(list(scales.values())))))
        named = " and ".join(f"{a} ({v:.3g})" for a, v in sorted(scales.items()))
        src = (f"inferred: {k} has no serving-benchmark run on this NVIDIA architecture; its compute efficiencies take the "
               f"geometric mean {g:.3g} of the scales its runs fitted on {named}, times the joint fit's value")
        c = copy.deepcopy(c)
        for a in nv:
            if a in scales:
                continue
            blk = c.architectures.setdefault(a, {})
            for m in COMPUTE:
                blk[m] = (_arch_value(c, a, m) * g, src)
        out[k] = c
    return out


def inferred(cal: dict) -> dict:
    """``cal`` with every value a release takes from other releases' rate fits laid over it: the CUDA-graph gap
    (graph_gap), the compute scales of NVIDIA architectures without runs (compute_scales) and the front-end time of
    HTTP-served releases without runs (front_end). The calibration's fitted values and each fold's use the same."""
    return front_end(compute_scales(graph_gap(cal)))


def fit_all(files: list[Path], cal: dict, *, progress=None) -> list[RateFit]:
    """A rate fit for every release with rate rows in ``files``."""
    out = []
    for release, rows in sorted(rate_rows(files).items()):
        if progress:
            progress(release)
        f = fit_release(release, rows, cal)
        if f is not None:
            out.append(f)
    return out


def in_force(cal: dict) -> dict[str, dict[tuple[str | None, str], tuple[float, str]]]:
    """The rate-fit values a calibration carries: release -> (architecture, or None for engine-wide, name) ->
    (value, source)."""
    out: dict[str, dict[tuple[str | None, str], tuple[float, str]]] = {}
    for k, c in cal.items():
        blocks = [(None, c.engine_wide), *c.architectures.items()]
        got = {(a, n): vs for a, blk in blocks for n, vs in blk.items()
               if (n in RATE_PARAMS or n in COMPUTE or n in REQUEST_NAMES or n in THREAD_PARAMS) and vs[1].startswith("rate fit")}
        if got:
            out[k] = got
    return out


def for_fold(rates: dict[str, list[RateRow]], fold_cal: dict, held_out, reuse: dict[str, dict[tuple[str | None, str], tuple[float, str]]]) -> dict:
    """A cross-validation fold's calibration with its rate-fit values (``rates``: ``rate_rows`` of every file). A
    release none of whose rate rows the fold holds out (``held_out(rate_row)``) keeps the values in force (fitted to
    the same rows; only the joint layer under them differs between folds); one that loses some rows is refitted on
    the rest; one that loses all of them has none (the joint fit's values stand, as for a user's engine without
    such runs)."""
    out = fold_cal
    for release, rows in rates.items():
        kept = [r for r in rows if not held_out(r)]
        if len(kept) == len(rows) and release in reuse:
            for (a, n), (v, src) in reuse[release].items():
                out = _calibration_with(out, release, {n: v}, src, (a,) if a else None)
        elif kept and release in out:
            f = fit_release(release, kept, out)
            if f is not None:
                out = apply(out, [f])
    return inferred(out)
