"""One joint fit of the kernel/engine layer over every published device and file.

Each fitted parameter of ``planner.costmodel.params.PARAMS`` is modelled in log space as a sum of levels:

    log value(engine release v of engine family f, architecture a) = g + F[f] + V[v] + A[f, a]

``g`` is the all-engine value, ``F`` an engine's offset, ``V`` a release's, ``A`` an architecture's within the
engine (shared by its releases: how well the engine's kernels are tuned for that GPU generation). Every
offset is shrunk toward 0 (a Gaussian prior: regularized least squares), so an architecture with few rows
stays near the engine-wide value, and one with no rows (a new GPU) *is* that value; a release with few rows
(or rows whose physics the cost model still lacks) moves only its tightly bounded release offset. Residuals are log(predicted / measured) over every fit row, each file weighted equally
(166 throughput rows do not drown 10 latency rows), with a robust (soft L1) loss. The silicon layer
(hw_specs) is never touched: a device enters only through its datasheet peaks and microbenchmarks.

The Jacobian is computed by the structure: a row depends only on its own cell's values, so one pass of
predictions per parameter (every cell perturbed at once) gives every column.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from planner.calibrate.published_fit import FitRow, Predictor
from planner.costmodel.params import PARAMS, EngineCalibration, Kernels

FIT = [p for p in PARAMS if p.fitted]
NOISE = 0.15  # typical log error of one row: the scale the priors below are measured against
# prior spread (log) of each level's offset: how far an engine, a release or an architecture may stray
# The all-engine level's spread (0.7: about 2x at one sigma around the microbenchmark-relative prior) was chosen by
# leave-one-hardware-out cross-validation among 0.5, 0.7, 1.0 and 2.0 (converged fits): median 10.6, 10.5, 11.0 and
# 11.2 %; at 2.0 the all-engine values of parameters few rows fix (kernel gap, step time, attention) wandered
SIGMA = {"global": 0.7, "family": 0.35, "version": 0.1, "arch": 0.2}
SIGMA_ANCHORED = 0.05  # prior spread (log) of the all-engine value of an anchored parameter around its prior
STEP = 0.02  # finite-difference step in log space
# least-squares xtol and ftol: converged, so that a refit from the state it writes stays where it is (at 1e-3 a second
# run moved parameters by up to 8 % for a 0.2 % lower cost, and each recalibration drifted on from the last)
FIT_TOL = 1e-5
STATE_FILE = "joint_fit_state.yaml"  # the fitted vector beside the calibration files: the next refit's start
SPAN = {"family": 1.5, "version": 0.4, "arch": 0.7}  # bound on each level's offset (log): x4.5, x1.5, x2


def read_by_release(version: str) -> list[bool]:
    """Per FIT parameter, whether the cost model reads it for release ``version`` (ParamSpec.read_if; a release
    without a profile reads them all)."""
    from planner.specs.engine import profiles

    engine = profiles().get(version)
    return [p.read_by(engine) for p in FIT]


def file_weights(rows: list[FitRow]) -> np.ndarray:
    """sqrt weight per row so every file carries the same total weight."""
    files = [r.file for r in rows]
    counts = {f: files.count(f) for f in set(files)}
    n, k = len(rows), len(counts)
    return np.sqrt(np.array([n / (k * counts[f]) for f in files]))


def level_spread(level: str) -> np.ndarray:
    """Per FIT parameter, how much wider than SIGMA / SPAN a level's offsets may be (ParamSpec.spread for an engine
    family, version_spread, where set, for a release; 1 for an architecture)."""
    if level == "family":
        return np.array([p.spread for p in FIT])
    if level == "version":
        return np.array([p.spread if p.version_spread is None else p.version_spread for p in FIT])
    return np.ones(len(FIT))


@dataclass
class Layout:
    """Where each level's offsets sit in the parameter vector."""

    families: list[str]
    versions: list[str]  # ID@VERSION
    cells: list[tuple[str, str | None]]  # (ID@VERSION, architecture) with rows
    archs: list[tuple[str, str]] = field(default_factory=list)  # (engine family, architecture) with rows

    @classmethod
    def of(cls, cells) -> "Layout":
        cells = sorted(set(cells), key=lambda c: (c[0], c[1] or ""))
        versions = sorted({c[0] for c in cells})
        archs = sorted({(c[0].split("@")[0], c[1]) for c in cells if c[1]})
        return cls(sorted({v.split("@")[0] for v in versions}), versions, cells, archs)

    @property
    def blocks(self) -> list[tuple[str, object]]:
        return ([("global", None)] + [("family", f) for f in self.families] + [("version", v) for v in self.versions]
                + [("arch", a) for a in self.archs])

    def size(self) -> int:
        return len(self.blocks) * len(FIT)

    def index(self, level: str, key) -> int:
        return self.blocks.index((level, key)) * len(FIT)

    def x0(self) -> np.ndarray:
        x = np.zeros(self.size())
        x[:len(FIT)] = [np.log(p.prior) for p in FIT]
        return x

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        per_arch = np.array([p.per_architecture for p in FIT])
        span = np.concatenate([np.where(per_arch | (level != "arch"), SPAN.get(level, 0.0) * level_spread(level), 1e-9)
                               for level, _ in self.blocks])
        lo, hi = -span, span.copy()
        lo[:len(FIT)] = [np.log(p.lo) for p in FIT]
        hi[:len(FIT)] = [np.log(p.hi) for p in FIT]
        return lo, hi

    def log_value(self, x: np.ndarray, version: str, arch: str | None = None) -> np.ndarray:
        """Log values of the fitted parameters for a release (and architecture); levels absent from the
        layout contribute 0 (their prior mean)."""
        P = len(FIT)
        v = x[:P].copy()
        fam = version.split("@")[0]
        for level, key in (("family", fam), ("version", version), ("arch", (fam, arch))):
            if (level, key) in self.blocks:
                i = self.index(level, key)
                v = v + x[i:i + P]
        lo = np.log([p.lo for p in FIT])
        hi = np.log([p.hi for p in FIT])
        return np.clip(v, lo, hi)

    def from_calibration(self, cal: dict) -> np.ndarray:
        """A start vector that reproduces the values of calibration files (a warm start for a refit):
        the all-engine level at the mean engine-wide value, each release's offset from it, each
        architecture's offset from its release. A parameter a release's engine does not read (ParamSpec.read_if) is
        not in its file: it takes no part in the mean and starts at 0 offset."""
        x = self.x0()
        P = len(FIT)

        def logs(b, v):  # log values of a block, NaN where the release does not read the parameter; None: incomplete
            read = read_by_release(v)
            if not all(p.name in b for p, r in zip(FIT, read) if r):
                return None
            return np.array([np.log(b[p.name][0]) if r and p.name in b else np.nan for p, r in zip(FIT, read)])

        ew = {v: logs(cal[v].engine_wide, v) for v in self.versions if v in cal}
        ew = {v: e for v, e in ew.items() if e is not None}
        if not ew:
            return x
        stack = np.array(list(ew.values()))
        seen = ~np.all(np.isnan(stack), axis=0)
        g = x[:P].copy()
        g[seen] = np.nanmean(stack[:, seen], axis=0)
        x[:P] = g
        for v, e in ew.items():
            i = self.index("version", v)
            x[i:i + P] = np.nan_to_num(e - g)
            for (f, a) in self.archs:
                la = logs(cal[v].architectures[a], v) if f == v.split("@")[0] and a in cal[v].architectures else None
                if la is not None:
                    j = self.index("arch", (f, a))
                    x[j:j + P] = np.nan_to_num(la - e)
        return x

    def penalty_weights(self) -> np.ndarray:
        anchored = np.array([p.anchored for p in FIT])

        def sigma(level):
            if level == "global":
                return np.where(anchored, SIGMA_ANCHORED, SIGMA["global"])
            return SIGMA[level] * level_spread(level)

        return np.concatenate([NOISE / sigma(level) for level, _ in self.blocks])


@contextmanager
def _coarse_decode(points: int = 2):
    """Within the block the static-batching decode average uses ``points`` contexts (Jacobian passes only)."""
    import planner.serving.batching as b

    old = getattr(b, "DECODE_POINTS", None)
    if old is None:
        yield
        return
    b.DECODE_POINTS = points
    try:
        yield
    finally:
        b.DECODE_POINTS = old


def kernels_from(values: dict[str, float], engine: str, arch: str | None, provenance: dict[str, str] | None = None) -> Kernels:
    vals = {p.name: (values[p.name] if p.name in values else (p.prior if p.fitted else p.neutral)) for p in PARAMS}
    return Kernels(engine, arch, vals, provenance or {}, calibrated=True)


def _engine_fields(values: dict[str, float]) -> dict:
    """The values the serving layer reads from the Engine (one per release), as Engine fields."""
    from planner.specs.engine import Engine

    known = Engine.__dataclass_fields__
    return {p.engine_field: values[p.name] for p in PARAMS if p.engine_field in known and p.name in values
            and not p.per_architecture}


@dataclass
class JointFit:
    layout: Layout
    x: np.ndarray
    rows: list[FitRow]
    predicted: np.ndarray  # fitted predictions of the fit rows
    seconds: float
    evaluations: int
    cost: float
    prior_predicted: np.ndarray | None = None
    row_counts: dict = field(default_factory=dict)  # cell -> rows
    rate_fits: list = field(default_factory=list)  # rate_fit.RateFit: second-stage values laid over the releases

    def values(self, version: str, arch: str | None = None) -> dict[str, float]:
        """The fitted values of a release (and architecture), without those its engine profile does not read."""
        return {p.name: float(v) for p, v, r in zip(FIT, np.exp(self.layout.log_value(self.x, version, arch)),
                                                   read_by_release(version)) if r}

    def calibration(self, versions: list[str]) -> dict[str, EngineCalibration]:
        """Engine calibration files for ``versions`` (ID@VERSION; every release with a profile), each with its
        engine-wide values and a block per architecture that has rows."""
        out = {}
        rows_of = lambda pred: sum(n for c, n in self.row_counts.items() if pred(c))  # noqa: E731
        total = sum(self.row_counts.values())
        for v in sorted(set(versions) | set(self.layout.versions)):
            eid, _, ver = v.partition("@")
            n_v = rows_of(lambda c: c[0] == v)
            n_f = rows_of(lambda c: c[0].split("@")[0] == eid)
            archs = sorted({c[1] or "?" for c in self.row_counts if c[0] == v})
            if n_v:
                src = f"joint fit: {n_v} rows of {eid} {ver} on {', '.join(archs)} (planner calibrate --published)"
            elif n_f:
                src = f"no rows of {eid} {ver}: the {eid} family value, fitted to {n_f} rows of other {eid} releases"
            else:
                src = f"no rows of {eid}: the all-engine value, fitted to {total} rows of other engines"
            ew = {n: (val, src) for n, val in self.values(v).items()}
            arch_blocks = {}
            for f, a in self.layout.archs:  # the engine's architecture offsets, shared by its releases
                if f != eid:
                    continue
                n_a = rows_of(lambda c: c[1] == a and c[0].split("@")[0] == eid)
                n_va = self.row_counts.get((v, a), 0)
                s = (f"joint fit: {n_a} rows of {a} on {eid} ({n_va} of this release), shrunk toward the engine-wide value")
                arch_blocks[a] = {name: (val, s) for name, val in self.values(v, a).items()}
            out[v] = EngineCalibration(eid, ver, engine_wide=ew, architectures=arch_blocks,
                                       rows={(a or "?"): n for (cv, a), n in self.row_counts.items() if cv == v},
                                       note=_NOTE)
        if self.rate_fits:
            from planner.calibrate.rate_fit import apply, inferred

            out = inferred(apply(out, [f for f in self.rate_fits if f.release in out]))
        return out


_NOTE = ("kernel/engine layer: efficiencies relative to each device's silicon microbenchmarks (hw_specs) and host "
         "overheads, written by `planner calibrate --published`; edit by refitting, not by hand")


class Problem:
    """Residuals and the structured Jacobian of the joint fit over ``rows``."""

    def __init__(self, rows: list[FitRow], layout: Layout | None = None, predictor: Predictor | None = None):
        self.rows = rows
        self.pred = predictor or Predictor(rows)
        self.layout = layout or Layout.of(r.cell for r in rows)
        self.w = file_weights(rows)
        self.log_meas = np.log(self.pred.measured)
        cells = self.layout.cells
        self.cell_of_row = np.array([cells.index(r.cell) for r in rows])
        self.pw = self.layout.penalty_weights()
        self.prior_x = self.layout.x0()
        self.evals = 0
        self._cache: tuple[bytes, np.ndarray] | None = None

    def _kernels(self, x: np.ndarray, bump: int | None = None) -> tuple[dict, dict]:
        ks, ef = {}, {}
        for c in self.layout.cells:
            lv = self.layout.log_value(x, c[0], c[1])
            if bump is not None and bump >= 0:
                lv = lv.copy()
                lv[bump] += STEP
            vals = dict(zip([p.name for p in FIT], np.exp(lv)))
            ks[c], ef[c] = kernels_from(vals, c[0], c[1]), _engine_fields(vals)
        return ks, ef

    def log_pred(self, x: np.ndarray, bump: int | None = None) -> np.ndarray:
        if bump is None and self._cache is not None and self._cache[0] == x.tobytes():
            return self._cache[1]
        ks, ef = self._kernels(x, bump)
        y = self.pred.predict(ks, ef)
        self.evals += 1
        y = np.where(np.isfinite(y) & (y > 0), y, self.pred.measured * 0.05)
        out = np.log(y)
        if bump is None:
            self._cache = (x.tobytes(), out)
        return out

    def residuals(self, x: np.ndarray) -> np.ndarray:
        r = (self.log_pred(x) - self.log_meas) * self.w
        return np.concatenate([r, self.pw * (x - self.prior_x)])

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        n, P = len(self.rows), len(FIT)
        with _coarse_decode():  # derivatives from a 2-point decode average: 3x cheaper, same slopes to a few %
            base = self.log_pred(x, bump=-1)
            cols = [(self.log_pred(x, bump=p) - base) / STEP * self.w for p in range(P)]
        J = np.zeros((n + x.size, x.size))
        lay = self.layout
        fam_i = {f: lay.index("family", f) for f in lay.families}
        ver_i = {v: lay.index("version", v) for v in lay.versions}
        cell_i = [lay.index("arch", (c[0].split("@")[0], c[1])) if c[1] else None for c in lay.cells]
        for p, d in enumerate(cols):
            for i, r in enumerate(self.rows):
                v = r.engine
                ci = cell_i[self.cell_of_row[i]]
                for col in (p, fam_i[v.split("@")[0]] + p, ver_i[v] + p) + (() if ci is None else (ci + p,)):
                    J[i, col] = d[i]
        J[n:, :] = np.diag(self.pw)
        return J


def fit(rows: list[FitRow], x0: np.ndarray | None = None, layout: Layout | None = None, max_nfev: int = 40,
        predictor: Predictor | None = None) -> JointFit:
    """Fit the kernel/engine layer jointly to ``rows`` (start from ``x0``, e.g. a previous fit)."""
    t0 = time.perf_counter()
    prob = Problem(rows, layout, predictor)
    lo, hi = prob.layout.bounds()
    if x0 is None:
        from planner.costmodel.params import builtin_calibration, calibration_dir

        # warm start: the vector the last fit of this layout wrote, else one rebuilt from the files in force (their
        # values carry the second stage's and are rounded, and the split between levels is not in them)
        x0 = load_state(calibration_dir(), prob.layout)
        if x0 is None:
            x0 = prob.layout.from_calibration(builtin_calibration())
    start = np.clip(x0, lo + 1e-9, hi - 1e-9)
    sol = least_squares(prob.residuals, start, jac=prob.jacobian, bounds=(lo, hi), loss="soft_l1", f_scale=0.1,
                        max_nfev=max_nfev, xtol=FIT_TOL, ftol=FIT_TOL, x_scale=1.0)
    pred = np.exp(prob.log_pred(sol.x))
    counts: dict = {}
    for r in rows:
        counts[r.cell] = counts.get(r.cell, 0) + 1
    return JointFit(prob.layout, sol.x, rows, pred, time.perf_counter() - t0, prob.evals, float(sol.cost), row_counts=counts)


# Files validated but not fitted, and why. Rows whose physics the cost model still lacks would be absorbed
# into the kernel/engine values of everything else they share (the failure this layering exists to avoid).
# The llama.cpp tables of single_stream_llamacpp_more.csv and single_stream_llamacpp_new_devices.csv are fitted: they
# hold the only llama.cpp prompt-processing rows, without which its GEMM efficiency was the all-engine prior, and
# leaving one hardware out still predicts each of their devices from the others.
NOT_FITTED = {
    "modern_per_gpu.csv": "its MoE rows still miss physics: fitted (with the engine's batch, MXFP4/bf16-KV precision, attention-DP "
                          "stragglers, a grouped-GEMM efficiency and a per-sequence host time), they pull TensorRT-LLM's shared "
                          "gemm_half_m from 38 to 90 tokens and attention to its 1.15 bound, and gpt-oss-120b dep4 stays 1.6x "
                          "too fast while gpt-oss-20b at 1024/8192 turns 0.5x",
    "perf_overview_1_1.csv": "held out to measure transfer: the B200, GB200 and H200 columns of TensorRT-LLM's 1.1-1.2-era "
                             "perf overview (the page modern_per_gpu.csv holds the H100 columns of), current MoE and "
                             "dense models",
    "perf_overview_1_2.csv": "held out to measure transfer: TensorRT-LLM 1.2's perf overview on H200, B200 and GB200, devices "
                             "(and, for the Blackwell two, an architecture) no fitted row comes from",
    "perf_overview_1_2_b300.csv": "held out to measure transfer: the B300 and GB300 columns of TensorRT-LLM 1.2's perf overview "
                                  "(marked beta there), Blackwell Ultra devices no TensorRT-LLM row comes from, the GB300 "
                                  "with no row at all",
    "perf_overview_rtx_pro_6000.csv": "held out to measure transfer: TensorRT-LLM's RTX 6000 Pro Blackwell Server Edition "
                                      "tables, a device and an architecture (GB202, sm_120) no fitted row comes from",
    "single_stream_llamacpp_dgx_spark.csv": "held out to measure transfer: llama.cpp's own DGX Spark (GB10) llama-bench "
                                            "table of a November 2025 build, a device specced from datasheets and single "
                                            "public microbenchmarks and a build newer than any fitted row",
    "single_stream_llamacpp_multi_gpu.csv": "held out to measure transfer: llama.cpp's layer split over 2 to 8 RTX 3090s or "
                                            "4090s (pipeline stages walked one after another at batch 1), a layout no fitted "
                                            "row has",
    "single_stream_llamacpp_strix_halo.csv": "held out to measure transfer: llama.cpp batch 1 on AMD's Ryzen AI Max+ 395 "
                                             "(Strix Halo, RDNA 3.5 iGPU on unified LPDDR5X), a device specced from datasheets "
                                             "and single public microbenchmarks, no fitted row of its kind",
    "single_stream_llamacpp_apple_m.csv": "held out to measure transfer: llama-bench pp512 and tg128 of Llama 2 7B on twelve "
                                          "Apple chips (M1 to M4, base to Ultra) no other row comes from, the M4 family an "
                                          "architecture no fitted row comes from",
    "single_stream_llamacpp_ci_v100.csv": "held out to measure transfer: llama.cpp's own CI logs of a Tesla V100 PCIe 16GB "
                                          "(Volta, an architecture no fitted row comes from), ten weight formats at two "
                                          "early-2024 builds",
    "single_stream_llamacpp_cuda_scoreboard.csv": "held out to measure transfer: llama.cpp's own CUDA scoreboard of 2025 "
                                                  "builds (Llama 2 7B Q4_0 pp512 and tg128, 24 GPUs, 14 of them with no "
                                                  "other row: L40, A30, T4, RTX A4000/A4500/A5000, Quadro RTX 6000/8000, "
                                                  "RTX 5080, 5070, 4080 SUPER, 4070 Ti SUPER, 3060, 4060 Ti); its prompt "
                                                  "rows of eight GPUs with other rows set the NVIDIA MMQ multiple of the "
                                                  "llamacpp@b3000 profile (an engine setting, not a joint-fit value)",
    "single_stream_llamacpp_pr_tables.csv": "held out to measure transfer: llama-bench tables printed in llama.cpp pull "
                                            "requests for a Tesla P40 (Pascal), an RTX 2080 Ti (Turing), an RX 7900 XTX (RDNA3, "
                                            "ROCm) and an RTX 3090 Ti, devices and architectures no fitted row comes from",
    "single_stream_llamacpp_prompt_lengths.csv": "held out to measure transfer: llama-bench prompts of 1,024 to 8,192 "
                                                 "tokens (two to sixteen 512-token passes) and long generations from the "
                                                 "LLaMA 3 tables whose 512-token columns are fitted, and the same runs on "
                                                 "workstation and datacenter GPUs (A100, H100 PCIe, L40S, A40, RTX A6000, RTX "
                                                 "Ada) no fitted llama.cpp row comes from",
    "perf_overview_0_20.csv": "held out to measure transfer: TensorRT-LLM 0.20's perf overview (the first PyTorch-backend "
                              "releases) on B200, H200 and H100",
    "perf_overview_1_0.csv": "held out to measure transfer: TensorRT-LLM 1.0's perf overview on H100, H200, B200 and GB200 "
                             "(Llama 4 Scout and Maverick, Qwen3-235B-A22B and Qwen3-30B-A3B, Llama 3.x), CUDA graphs on",
    "vllm_rocm_static_mi250.csv": "held out to measure transfer: Argonne's vLLM 0.6.1 static batches on MI250 GCDs (CDNA2), "
                                  "an architecture no fitted row comes from",
    "vllm_rocm_static.csv": "held out to measure transfer: vLLM static batches on MI300X (CDNA3), an architecture no fitted row "
                            "comes from",
    "perf_overview_0_14_more.csv": "held out to measure transfer: the H200 (FP8) and A100 PCIe (FP16) columns of the TensorRT-LLM "
                                   "0.14 table max_throughput.csv comes from, devices no fitted 0.14 row comes from (a Hopper "
                                   "part with more bandwidth and memory than the fitted H100; an Ampere part on PCIe links)",
    "perf_overview_0_17.csv": "held out to measure transfer: TensorRT-LLM 0.17's throughput table (the TensorRT-engine "
                              "flow of 0.14, a later release) on H200, H100, GH200 (96 GB), L40S and A100 SXM, the GH200 "
                              "a device no other row comes from",
    "static_batch_h200.csv": "held out to measure transfer: the H200 (FP8) table of the TensorRT-LLM 0.9 page static_batch.csv "
                             "comes from, a device no fitted 0.9 row comes from",
    "first_token_latency_h200.csv": "held out to measure transfer: the H200 (FP8) batch-1 first-token latencies of the "
                                    "TensorRT-LLM 0.9 page first_token_latency.csv comes from",
    "serving_bench_consumer_blackwell.csv": "held out to measure transfer: vLLM 0.12 closed loops (aiperf) on one or two "
                                            "RTX 5060 Ti, 5070 Ti and 5090 cards, NVFP4, MXFP4, W4A16 and BF16 checkpoints, "
                                            "two devices no other row comes from",
    "serving_bench_inferencex.csv": "held out to measure transfer: SemiAnalysis InferenceX's closed loops of DeepSeek-R1-0528 "
                                    "(FP8, NVFP4, MXFP4) on SGLang 0.5.6-0.5.9 and trtllm-serve 1.1-1.2 over 4-8 B200, H200, "
                                    "MI300X, MI325X and MI355X GPUs at their recipes' tuned flags, a current MoE model in FP4 "
                                    "and FP8 on engines and devices no fitted serving row comes from; the rate stage leaves it "
                                    "out too (rate_fit.HELD_OUT_FILES)",
    "serving_bench_more.csv": "held out to measure transfer: vLLM serving benchmarks (vllm bench serve, benchmark_serving.py) "
                              "on an RTX 4090, RTX 5090, RTX PRO 6000, L40S and H100 PCIe, devices (and, for the GeForce and "
                              "RTX PRO parts, architectures) no fitted vLLM run comes from; the rate stage leaves it out too "
                              "(rate_fit.HELD_OUT_FILES)",
    "serving_bench_quant.csv": "held out to measure transfer: one lab's vLLM 0.9.2 ShareGPT bursts of Qwen3-8B in BF16 and "
                               "its quantized checkpoints (AWQ on Marlin, FP8, W4A16, an FP8 KV cache) on an RTX 4090 and "
                               "an H100; the rate stage leaves it out too (rate_fit.HELD_OUT_FILES)",
    "serving_bench_l4.csv": "held out to measure transfer: vLLM (0.5.4 by date, and 0.23.0) on one NVIDIA L4, a device no "
                            "other row comes from: a 1,000-prompt ShareGPT burst of Llama 3.1 8B and closed-loop sweeps "
                            "of Qwen2.5-0.5B and Llama 2 7B; the rate stage leaves it out too (rate_fit.HELD_OUT_FILES)",
    "serving_bench_rtx3090.csv": "held out to measure transfer: vLLM 0.4.1 on one RTX 3090 at 1-8 ShareGPT requests/s, a "
                                 "device no fitted vLLM row comes from, with its startup log's KV-cache size",
    "speed_benchmark_qwen3_h20.csv": "held out to measure transfer: Qwen's own batch-1 speed benchmark of every Qwen3 model "
                                     "on SGLang 0.4.6 and the H20, a Hopper part with a sixth of an H100's tensor rate "
                                     "on more memory bandwidth, a device no other row comes from",
    "serving_bench.csv": "not a joint-fit file: vLLM, SGLang and trtllm-serve online runs (vllm bench serve, sglang "
                         "bench_one_batch_server) that users and vendors published, simulated; the rate stage fits vLLM 0.11's "
                         "per-request time and compute scale per architecture to its vLLM 0.8-0.11 runs (rate_fit.BENCH_ENGINES), "
                         "the SGLang and trtllm-serve runs stay held out (neither has a fitted row at all)",
}


def engine_releases() -> list[str]:
    """Every engine release with a profile (engines/*.yaml): each gets a calibration file."""
    from planner.specs.engine import profiles

    return sorted(profiles())


def calibrate_published(files=None, max_nfev: int = 100, progress=None) -> tuple[JointFit, dict]:
    """The joint fit over the bundled published rows (or ``files``), then the second stage: each engine release's
    host and collective costs from its runs at request rates (``rate_fit``); also the rows that are not fit rows.
    ``progress(release)`` is told which release the second stage fits."""
    from planner.calibrate.published_fit import load_rows
    from planner.calibrate.validate import builtin_published

    files = files or builtin_published()
    rows, skipped = load_rows(files)
    for f, why in NOT_FITTED.items():
        if any(r.file == f for r in rows):
            skipped[f] = f"validated, not fitted: {why}"
    rows = [r for r in rows if r.file not in NOT_FITTED]
    if not rows:
        from planner.errors import PlannerError

        raise PlannerError("no published rows to fit")
    res = fit(rows, max_nfev=max_nfev)
    from planner.calibrate.rate_fit import fit_all

    res.rate_fits = fit_all(files, res.calibration(engine_releases()), progress=progress)
    return res, skipped


def _layout_key(layout: Layout) -> list:
    return [[level, key if not isinstance(key, tuple) else list(key)] for level, key in layout.blocks]


def load_state(folder, layout: Layout) -> np.ndarray | None:
    """The fitted vector a previous fit of the same layout and parameters wrote to ``folder``, or None."""
    from pathlib import Path

    from planner.specs.loader import read_yaml

    path = Path(folder) / STATE_FILE
    if not path.exists():
        return None
    d = read_yaml(path)
    names = [p.name for p in FIT]
    old = d.get("params") if isinstance(d, dict) else None
    if not isinstance(old, list) or not set(old) <= set(names) or d.get("blocks") != _layout_key(layout):
        return None
    x = np.array(d.get("x", []), float)
    if x.shape != (len(layout.blocks) * len(old),) or not np.all(np.isfinite(x)):
        return None
    # a parameter added since the state was written starts at its prior (its offsets at 0); the others where they were
    out = layout.x0().reshape(len(layout.blocks), len(names))
    out[:, [names.index(n) for n in old]] = x.reshape(len(layout.blocks), len(old))
    return out.ravel()


def write_state(res: JointFit, folder):
    """Write the fit's vector to ``folder``/STATE_FILE, where the next fit of the same layout starts (load_state)."""
    from pathlib import Path

    import yaml

    state = {"note": "the joint fit's vector (log values by level, planner/calibrate/joint.py Layout), written by `planner "
                     "calibrate --published`: the next refit of the same layout starts here; not read by the cost model",
             "params": [p.name for p in FIT], "blocks": _layout_key(res.layout), "x": [float(v) for v in res.x]}
    path = Path(folder) / STATE_FILE
    path.write_text(yaml.safe_dump(state, sort_keys=False, width=140))
    return path


def write_calibration(res: JointFit, folder=None) -> list:
    """Write ``engines/calibration/<id>-<version>.yaml`` for every engine release; returns the paths."""
    from pathlib import Path

    import yaml

    from planner.costmodel.params import calibration_dir, clear_cache

    folder = Path(folder) if folder else calibration_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, c in res.calibration(engine_releases()).items():
        path = folder / f"{c.engine}-{c.version}.yaml"
        path.write_text(yaml.safe_dump(c.to_dict(), sort_keys=False, width=140))
        paths.append(path)
    paths.append(write_state(res, folder))
    clear_cache()
    try:
        from planner.specs.engine import profiles

        profiles.cache_clear()
    except AttributeError:
        pass
    return paths
