"""Calibrate a device from the kernel rows of a harness capture (never its e2e rows).

Fitted by scipy least squares on log(predicted / measured) over kernels.csv: the matmul
fraction per dtype and the token count at which GEMM efficiency halves, the streaming-memory
fraction, the attention fraction, the KV-read fraction, the per-element rate of norms and
activations, and a per-call host overhead (each row names the library calls its kernel makes).
Where the decode-attention rows read very different FLOPs per KV byte (MLA's absorbed decode
beside grouped-query rows), decode attention gets its own compute fraction (``attention_decode``):
it is another kernel than prefill's. It is a fit diagnostic, not a spec field: the cost model
times decode attention from the capture's own rows (``planner.costmodel.profile``).

Physics bounds every parameter: a fraction lies in (0, 1] of its peak and an overhead is >= 0.
Peaks come from the base spec (a datasheet device) or, for a machine without one, from the
capture itself: the fastest GEMM per dtype, and the fastest stream of any kernel that moved
at least four times the last-level cache (copy/read/write, and GEMMs of one to eight tokens,
which read their whole weight once).

Rows measured while the machine was busy (column ``busy``) count ``BUSY_WEIGHT`` as much as
quiet ones. The fit reports its residuals per op kind and warns, in one line, when its median
error exceeds ``POOR_FIT`` or a parameter sits at a bound, naming the rows that disagree and
what that usually means.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares

from planner.costmodel.profile import ran_on_gpu
from planner.costmodel.roofline import gemm_efficiency
from planner.errors import PlannerError
from planner.specs.hardware import Hardware
from planner.specs.loader import read_yaml, validate_file

# (lower, upper): fractions of a peak lie in (0, 1]; the per-call overhead is >= 0 (and < 5 ms)
BOUNDS = {"matmul": (0.01, 1.0), "half_m": (0.0, 4096.0), "memory": (0.05, 1.0), "attention": (0.001, 1.0),
          "attention_decode": (0.001, 1.0),
          "kv_read": (0.02, 1.0), "kernel_s": (0.0, 5e-3), "elementwise": (1e-5, 1.0)}
MEMORY_OPS = ("copy", "read", "write")
ELEMENTWISE_OPS = ("rmsnorm", "silu_mul", "add")
LOOKUP_ONLY = ("moe_loop",)  # rows of layer code the cost model looks up (planner.costmodel.profile), never fitted
BUSY_WEIGHT = 0.2  # a busy row's weight in the fit, against 1 for a quiet one
POOR_FIT = 0.20  # median |error| above this is a poor fit
DISAGREE = 0.25  # an op kind whose median |error| exceeds this is named in the warning

# what rows of an op kind that disagree with the fit usually mean
WHY = {
    "gemm": "GEMMs do not follow one efficiency curve (weights small enough to stay in cache, or threads competing with other work)",
    "attn_prefill": "prefill attention runs its softmax as separate passes (numpy: one thread), not at the GEMM rate",
    "attn_decode": "decode attention is many small products whose per-call overhead and cache reuse the roofline does not see",
    "copy": "the streaming kernels disagree with each other",
    "read": "the streaming kernels disagree with each other",
    "write": "writes move more bytes than they store (the CPU reads each line before writing it: write-allocate)",
    "rmsnorm": "norms run as several single-threaded passes that stay in cache; one per-element rate cannot fit them and the exp-heavy SiLU",
    "silu_mul": "SiLU's exp costs many simple operations per element; the cost model counts 5 FLOPs per element",
    "add": "residual adds this small are per-call overhead and cache, not memory traffic",
    "host_dense": "the dense layer's host time per op differs from the other layouts'",
    "host_moe": "a mixture-of-experts layer makes many more host calls per cost-model op (a loop over experts)",
    "host_mla": "MLA's layer code makes more host calls per cost-model op (latent split, absorbed projections)",
}
AT_BOUND = {
    "memory": "a kernel streamed as fast as the peak itself: the peak is the capture's fastest stream",
    "matmul": "GEMMs ran at the capture's own fastest GEMM rate: the efficiency curve has nothing left to explain",
    "kernel_s": "no per-call overhead is visible: the capture lacks small rows, or they are noise",
    "half_m": "GEMM efficiency does not depend on the token count at these sizes",
    "attention": "attention ran at the bound of its rate",
    "attention_decode": "decode attention ran at the bound of its rate",
    "kv_read": "the KV cache was read at the bound of the bandwidth",
    "elementwise": "norms and activations ran at the bound of their per-element rate",
}


KERNEL_COLUMNS = {"op", "dtype", "median_s"}  # what a fit needs from every row of kernels.csv
ROW_DTYPES = {"fp8_e4m3": "fp8"}  # a kernels.csv dtype -> the hardware specs' compute-format name


def read_kernels(folder: Path) -> list[dict]:
    path = folder / "kernels.csv"
    if not path.is_file():
        raise PlannerError(f"{folder} holds no kernels.csv (is it a planner profile capture?)")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = sorted(KERNEL_COLUMNS - set(reader.fieldnames or []))
            if missing:
                raise PlannerError(f"{path} lacks column(s) {missing}: is it a planner profile kernels.csv?")
            rows = [r for r in reader if r["op"] != "allreduce" and r["median_s"]]
    except UnicodeDecodeError:
        raise PlannerError(f"{path} is not UTF-8 text: is it a planner profile kernels.csv?") from None
    except csv.Error as e:
        raise PlannerError(f"{path} is not a well-formed CSV: {e}") from None
    for i, r in enumerate(rows, start=2):
        try:
            float(r["median_s"])
        except (TypeError, ValueError):
            raise PlannerError(f"{path}: a row's median_s is not a number ({r['median_s']!r}, row {i})") from None
    if not rows:
        raise PlannerError(f"{path} has no kernel rows to fit")
    for r in rows:  # the harness names the FP8 format it ran (fp8_e4m3); peaks and fractions are per format family
        r["dtype"] = ROW_DTYPES.get(r["dtype"], r["dtype"])
    return rows


def _num(r, k):
    v = r.get(k)
    return float(v) if v not in (None, "") else 0.0


def kv_width(r: dict) -> float:
    """Cached elements per token and KV head an attention row reads: keys and values (head_dim + head_dim_v), or
    MLA's one latent (head_dim) when the values are its first head_dim_v dims (head_dim_v < head_dim)."""
    d, dv = _num(r, "head_dim"), _num(r, "head_dim_v") or _num(r, "head_dim")
    return d if dv < d else d + dv


# library calls per kernel when a capture predates the 'calls' column (numpy's, as the harness counts them)
DEFAULT_CALLS = {"attn_prefill": 11, "attn_decode": 8, "rmsnorm": 7, "silu_mul": 5}


@dataclass
class KernelData:
    op: np.ndarray
    dtype: np.ndarray
    m: np.ndarray
    n: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    kv_bytes: np.ndarray
    t: np.ndarray
    calls: np.ndarray = None  # library calls one kernel makes (each pays kernel_s)
    busy: np.ndarray = None  # measured while the machine was busy

    @classmethod
    def of(cls, rows: list[dict]) -> "KernelData":
        op = np.array([r["op"] for r in rows])
        size = np.array([4.0 if r["dtype"] == "fp32" else (1.0 if r["dtype"] in ("fp8", "int8") else 2.0) for r in rows])
        kv = np.array([_num(r, "batch") * _num(r, "seq_kv") * _num(r, "kv_heads") * kv_width(r) for r in rows]) * size
        kv = np.where(op == "attn_decode", kv, 0.0)
        calls = np.array([_num(r, "calls") or (DEFAULT_CALLS.get(r["op"], 1) if r.get("backend") == "numpy" else 1) for r in rows])
        return cls(op, np.array([r["dtype"] for r in rows]), np.array([_num(r, "m") for r in rows]),
                   np.array([_num(r, "n") for r in rows]),
                   np.array([_num(r, "flops") for r in rows]), np.array([_num(r, "bytes") for r in rows]), kv,
                   np.array([float(r["median_s"]) for r in rows]), calls,
                   np.array([str(r.get("busy") or "0").strip() in ("1", "true", "True") for r in rows]))


def predict(d: KernelData, peaks: dict[str, float], bw: float, p: dict) -> np.ndarray:
    """Kernel times under the cost model's roofline (same formulas as CostModel), plus the
    per-call overhead times the library calls each kernel makes."""
    t = np.zeros(len(d.t))
    mem = bw * p["memory"]
    for dt in np.unique(d.dtype):
        sel = (d.op == "gemm") & (d.dtype == dt)
        if sel.any():
            rate = peaks[dt] * p[f"matmul:{dt}"] * gemm_efficiency(d.m[sel], p["half_m"])
            t[sel] = np.maximum(d.flops[sel] / rate, d.bytes[sel] / mem)
        for kind in ("attn_prefill", "attn_decode"):
            sel = (d.op == kind) & (d.dtype == dt)
            if sel.any():
                # decode attention is its own kernel (numpy: einsum on one thread; GPUs: split-KV decoding), with its
                # own compute ceiling where the capture separates it (MLA's absorbed rows: many FLOPs per KV byte)
                rate = peaks[dt] * p["attention_decode" if kind == "attn_decode" and "attention_decode" in p else "attention"]
                mem_t = (d.bytes[sel] - d.kv_bytes[sel]) / mem + d.kv_bytes[sel] / (bw * p["kv_read"])
                t[sel] = np.maximum(d.flops[sel] / rate, mem_t)
    sel = np.isin(d.op, MEMORY_OPS)
    t[sel] = d.bytes[sel] / mem
    # norms and activations: memory traffic, or per-element compute where that is slower (CPU exp/div);
    # (FLOPs per element as the harness and the cost model count them: norm 4, SiLU x mul 5, add 1)
    sel = np.isin(d.op, ELEMENTWISE_OPS)
    if sel.any() and "elementwise" in p and "fp32" in peaks:  # the same fp32 peak the cost model scales
        t[sel] = np.maximum(d.flops[sel] / (peaks["fp32"] * p["elementwise"]), d.bytes[sel] / mem)
    calls = d.calls if d.calls is not None else np.ones(len(d.t))
    return t + p["kernel_s"] * calls


@dataclass
class KernelFit:
    hardware: Hardware
    params: dict[str, float]
    rows: int
    median_ape: float
    per_op: dict[str, float]  # median |error| per op kind
    residuals: dict[str, dict] = field(default_factory=dict)  # per op kind: rows, busy, median signed error, p90 |error|
    at_bound: list[str] = field(default_factory=list)
    busy_rows: int = 0
    peaks: dict[str, float] = field(default_factory=dict)
    bandwidth_bytes_per_s: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _measured_peaks(d: KernelData, dtypes: list[str], meta: dict, folder: Path) -> tuple[dict[str, float], float]:
    """Fastest GEMM per dtype; fastest stream of >= 4x the last-level cache (quiet rows where there are any)."""
    quiet = ~d.busy if d.busy is not None and (~d.busy).any() else np.ones(len(d.t), bool)
    peaks = {}
    for x in dtypes:
        g = (d.op == "gemm") & (d.dtype == x)
        src = g if g.any() else (d.dtype == x)
        src = src & quiet if (src & quiet).any() else src
        peaks[x] = float(np.max(d.flops[src] / d.t[src]))
    m = np.isin(d.op, MEMORY_OPS)
    if not m.any():
        raise PlannerError(f"{folder}/kernels.csv has no bandwidth rows (copy/read/write)")
    llc = float(meta.get("last_level_cache_bytes") or 0)
    stream = m | ((d.op == "gemm") & (d.m <= 8) & (d.bytes >= 4 * llc) & (llc > 0))
    stream = stream & quiet if (stream & quiet).any() else stream
    return peaks, float(np.max(d.bytes[stream] / d.t[stream]))


def _separates_decode_compute(d: KernelData) -> bool:
    """Whether the decode-attention rows can tell a compute ceiling from the KV-read one: some read many more FLOPs
    per KV byte than others (MLA's absorbed decode: all heads over one latent, against grouped-query heads)."""
    sel = (d.op == "attn_decode") & (d.kv_bytes > 0)
    if sel.sum() < 2:
        return False
    intensity = d.flops[sel] / d.kv_bytes[sel]
    return bool(intensity.max() >= 4 * intensity.min())


def fit_capture(folder: Path, base: Hardware | None = None) -> KernelFit:
    rows = read_kernels(folder)
    host_rows = [r for r in rows if r["op"].startswith("host_")]
    # layer-code rows (the expert loop without its GEMMs) are looked up by the cost model, not fitted
    rows = [r for r in rows if not r["op"].startswith("host_") and r["op"] not in LOOKUP_ONLY]
    d = KernelData.of(rows)
    meta = read_yaml(folder / "meta.yaml") if (folder / "meta.yaml").is_file() else {}
    meta = meta if isinstance(meta, dict) else {}
    dtypes = sorted(set(d.dtype[d.op == "gemm"]) | set(d.dtype[np.char.startswith(d.op.astype(str), "attn")]))
    if base is not None:
        missing = [x for x in dtypes if not base.supports(x)]
        if missing:
            raise PlannerError(f"{base.id} has no published peak for {missing}, which the capture measured")
        peaks = {x: base.peak(x) for x in dtypes}
        if base.supports("fp32"):
            peaks["fp32"] = base.peak("fp32")
        bw = base.memory_bandwidth_bytes_per_s
    else:
        peaks, bw = _measured_peaks(d, dtypes, meta, folder)
    names = [f"matmul:{x}" for x in dtypes] + ["half_m", "memory", "attention", "kv_read", "kernel_s"]
    x0 = [0.8] * len(dtypes) + [16.0, 0.8, 0.3, 0.6, 1e-6]
    if np.isin(d.op, ELEMENTWISE_OPS).any() and "fp32" in peaks:
        names.append("elementwise")
        x0.append(0.02)
    if _separates_decode_compute(d):
        names.append("attention_decode")
        x0.append(0.1)
    lo = np.array([BOUNDS[n.partition(":")[0]][0] for n in names])
    hi = np.array([BOUNDS[n.partition(":")[0]][1] for n in names])
    weight = np.sqrt(np.where(d.busy, BUSY_WEIGHT, 1.0)) if d.busy is not None else np.ones(len(d.t))

    def log_err(x):
        return np.log(predict(d, peaks, bw, dict(zip(names, x))) / d.t)

    # the max() of compute and memory terms leaves kinks; start the elementwise rate from a few
    # decades and keep the best fit
    starts = [x0]
    if "elementwise" in names:
        j = names.index("elementwise")
        starts = [x0[:j] + [v] + x0[j + 1:] for v in (0.002, 0.02, 0.2)]
    def solve(starts):
        return min((least_squares(lambda x: weight * log_err(x), np.clip(s0, lo, hi), bounds=(lo, hi), loss="soft_l1",
                                  f_scale=0.1, x_scale="jac") for s0 in starts), key=lambda r: r.cost)

    sol = solve(starts)
    if base is None:
        # the fastest GEMM measured still ran at m / (m + half_m) of the rate GEMMs approach with many
        # tokens: that asymptote is the peak a fraction in (0, 1] refers to; refit against it
        half_m = sol.x[names.index("half_m")]
        for x in dtypes:
            g = (d.op == "gemm") & (d.dtype == x) & (d.m >= max(64.0, 4 * half_m))  # compute-bound rows only
            if g.any():
                peaks[x] = max(peaks[x], float(np.max(d.flops[g] / d.t[g] / gemm_efficiency(d.m[g], half_m))))
        sol = solve([sol.x] + starts[:1])
    params = dict(zip(names, map(float, sol.x)))
    rel = np.exp(log_err(sol.x)) - 1  # (predicted - measured) / measured
    err = np.abs(rel)
    residuals = {}
    for op in np.unique(d.op):
        sel = d.op == op
        residuals[str(op)] = {"rows": int(sel.sum()), "busy": int(d.busy[sel].sum()) if d.busy is not None else 0,
                              "median_error": float(np.median(rel[sel])), "median_ape": float(np.median(err[sel])),
                              "p90_ape": float(np.percentile(err[sel], 90))}
    at_bound = [n for n, v, a, b in zip(names, sol.x, lo, hi) if v <= a + 1e-4 * (b - a) or v >= b - 1e-4 * (b - a)]
    hw = _spec(folder, meta, base, peaks, bw, params)
    # the per-op host overhead of the harness engine, from its negligible-width steps; on a GPU the host issues ops while
    # the device runs the ones before, so those steps are looked up as a floor under each step (KernelProfile), not fitted
    if host_rows and not ran_on_gpu(meta):
        params["op_overhead_s"], host_res = _host_overhead(folder, host_rows, hw, params["kernel_s"])
        residuals.update(host_res)
        hw = _spec(folder, meta, base, peaks, bw, params)
    fit = KernelFit(hw, params, len(rows), float(np.median(err)), {k: v["median_ape"] for k, v in residuals.items()},
                    residuals, at_bound, int(d.busy.sum()) if d.busy is not None else 0, peaks, bw)
    fit.warnings = fit_warnings(fit) + drift_warnings(meta)
    return fit


DRIFT = 0.10  # the speed probe's slowest / fastest time above 1 + this: the machine's speed moved during the capture


def drift_warnings(meta: dict) -> list[str]:
    """One line per backend whose speed probe (``planner.harness.timing.SpeedProbe``) moved by more than ``DRIFT``
    during the capture: rows taken at different moments disagree by that much whatever the model says."""
    out = []
    for run in ((meta.get("speed_probe") or {}).get("runs") or []):
        spread = run.get("spread")
        if spread is not None and spread > DRIFT:
            out.append(f"the machine's speed moved during the {run.get('backend', '')} capture: a fixed probe "
                       f"(speed_probe in meta.yaml) took {run['fastest_s'] * 1e3:.2f}-{run['slowest_s'] * 1e3:.2f} ms "
                       f"({spread:+.0%}), so rows measured at "
                       "different moments (kernel rows and the e2e steps they predict) can disagree by that much; a shared "
                       "host's other tenants (cores, cache, memory bandwidth) do this unseen by the load average")
    return out


def _host_overhead(folder: Path, host_rows: list[dict], hw: Hardware, call_s: float) -> tuple[float, dict]:
    """Host time per cost-model op: (measured step - the cost model's work for it) / the ops the cost
    model runs in that step, median over the probe rows (``host_<kind>``: CAPTURE/models/host-<kind>.yaml)."""
    from planner.costmodel.plans import make_plans
    from planner.costmodel.step import CostModel, Step
    from planner.specs.engine import Engine

    from planner.costmodel.profile import KernelProfile
    from planner.harness.refmodels import load_captured

    profile = KernelProfile.load(folder)  # as the e2e predictions will use it
    per_op, rows = [], []
    for r in host_rows:
        spec = folder / "models" / f"{r['op'].replace('_', '-')}.yaml"
        if not spec.is_file():
            raise PlannerError(f"{folder}/kernels.csv has {r['op']} rows but {spec} is missing")
        model = load_captured(spec)
        b, t, ctx = int(_num(r, "batch")), int(_num(r, "seq_q")), int(_num(r, "seq_kv"))
        step = Step(prefill_seqs=b, prefill_tokens=t) if t > 1 else Step(decode_seqs=b, decode_ctx=ctx - t)
        cost = CostModel(model, hw, engine=Engine(id="harness", runtime_bytes=0.0, grouped_moe_gemm=False), profile=profile).step(
            make_plans(model, hw, weights=r["dtype"], kv=r["dtype"], engine="harness"), step)
        active = [o for o in cost.ops if float(np.ravel(o.flops)[0]) > 0 or float(np.ravel(o.bytes)[0]) > 0]
        n_ops = float(sum(float(np.ravel(o.count)[0]) * float(np.ravel(o.launches)[0]) for o in active))
        work = float(np.ravel(cost.time_s)[0]) - n_ops * call_s
        per_op.append(max(0.0, float(r["median_s"]) - work) / n_ops)
        rows.append((r["op"], float(r["median_s"]), work, n_ops, str(r.get("busy") or "0") == "1"))
    value = float(np.median(per_op))
    residuals = {}
    for op in sorted({x[0] for x in rows}):
        rel = np.array([(w + value * n) / t - 1 for o, t, w, n, _ in rows if o == op])
        residuals[op] = {"rows": len(rel), "busy": sum(bz for o, *_, bz in rows if o == op),
                         "median_error": float(np.median(rel)), "median_ape": float(np.median(np.abs(rel))),
                         "p90_ape": float(np.percentile(np.abs(rel), 90))}
    return value, residuals


def fit_warnings(fit: KernelFit) -> list[str]:
    """One line per problem: a poor fit (which op kinds disagree, and why that usually happens),
    a parameter at a bound, rows measured while the machine was busy."""
    out = []
    bad = sorted(((k, v) for k, v in fit.residuals.items() if v["median_ape"] > DISAGREE), key=lambda kv: -kv[1]["median_ape"])
    if fit.median_ape > POOR_FIT or bad:
        what = "; ".join(f"{k} rows {v['median_error']:+.0%} ({WHY.get(k, 'see the rows')})" for k, v in bad[:3])
        head = f"poor fit: median |error| {fit.median_ape:.0%}" if fit.median_ape > POOR_FIT else "some op kinds disagree with the fit"
        out.append(f"{head}: {what or 'errors are spread over every op kind (noisy timings?)'}")
    for n in fit.at_bound:
        kind = n.partition(":")[0]
        out.append(f"{n} = {fit.params[n]:.4g} sits at its bound {BOUNDS[kind]}: {AT_BOUND.get(kind, '')}")
    if fit.busy_rows:
        out.append(f"{fit.busy_rows} of {fit.rows} rows ran while the machine was busy (weighted {BUSY_WEIGHT} in the fit); "
                   "measure on a quiet machine for numbers to publish")
    return out


def _spec(folder: Path, meta: dict, base: Hardware | None, peaks: dict, bw: float, p: dict) -> Hardware:
    src = f"calibrated from kernel rows of the capture {folder} (planner calibrate)"
    ach = {"matmul": {x: {"fraction": p[f"matmul:{x}"], "source": src, "kind": "calibrated"} for x in peaks if f"matmul:{x}" in p},
           "memory": {"fraction": p["memory"], "source": src, "kind": "calibrated"},
           "attention": {"fraction": p["attention"], "source": src, "kind": "calibrated"},
           "kv_read": {"fraction": p["kv_read"], "source": src, "kind": "calibrated"},
           "matmul_half_m": p["half_m"]}
    if "elementwise" in p:
        ach["elementwise"] = {"fraction": min(p["elementwise"], 1.2), "source": src, "kind": "calibrated"}
    over = {"kernel_s": {"value": p["kernel_s"], "source": src + ": per library call of the kernel rows"}}
    if "op_overhead_s" in p:
        over["kernel_s"] = {"value": p["op_overhead_s"], "source": (
            src + f": host time per cost-model op of the harness engine, from steps of its layers at a negligible width "
            f"(per library call: {p['kernel_s'] * 1e6:.2g} us)")}
    if base is not None:
        d = base.model_dump(mode="json", exclude_none=True)
        d["achievable"] = {**d["achievable"], **ach, "matmul": {**d["achievable"].get("matmul", {}), **ach["matmul"]}}
        d["overheads"] = {**d.get("overheads", {}), **over}
        d["id"] = f"{base.id}-calibrated"
    else:
        host = str(meta.get("host_id") or folder.parent.name)
        msrc = f"measured by planner profile: {folder}"
        mem_bytes = meta.get("memory_bytes") or meta.get("memory", {}).get("total_bytes") if isinstance(meta.get("memory"), dict) else meta.get("memory_bytes")
        d = {
            "id": f"host-{host}", "name": str(meta.get("cpu_model") or meta.get("cpu", {}).get("model", host) if isinstance(meta.get("cpu"), dict) else meta.get("cpu_model", host)),
            "vendor": "measured", "kind": "cpu" if str(meta.get("device", "cpu")) == "cpu" else "gpu",
            "memory": {"capacity": {"value": float(mem_bytes or 0) or 1.0, "source": msrc},
                       "bandwidth": {"value": bw, "source": f"fastest copy/read/write measured: {msrc}"}},
            "peak_flops": {x: {"value": v, "source": f"measured {x} GEMM rate many tokens approach (fastest compute-bound GEMM over its m/(m+half_m) efficiency; not a datasheet peak): {msrc}"} for x, v in peaks.items()},
            "achievable": ach, "overheads": over,
        }
    d["calibrated_from"] = str(folder)
    d["kernel_profile"] = "."
    return validate_file(Hardware, folder / "calibrated.yaml", d)


def write_spec(hw: Hardware, path: Path) -> None:
    import os

    d = hw.model_dump(mode="json", exclude_none=True)
    if d.get("calibrated_from"):  # the capture's measured GEMM table, as seen from where the spec is written
        d["kernel_profile"] = os.path.relpath(Path(d["calibrated_from"]).resolve(), Path(path).resolve().parent)
    path.write_text("# written by planner calibrate; kernel_profile is relative to this file\n" + yaml.safe_dump(d, sort_keys=False, width=160))
