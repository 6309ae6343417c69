"""Kernel and engine parameters: the middle of the three parameter layers.

Silicon (per device, ``hw_specs/``) says what a device's microbenchmarks reach: GEMM MAMF per dtype,
STREAM bandwidth. This layer says how far one engine's kernels and host code get relative to those
microbenchmarks on one GPU architecture: GEMM and attention efficiency, the decode KV read, collectives,
and per-kernel / per-step host overheads. The values live in ``engines/calibration/<engine>-<version>.yaml``
(``engine: ID@VERSION``, an engine-wide block and per-architecture blocks, each value with provenance), fitted jointly across every
device with published rows (``planner calibrate --published``). Nothing here is per row or per device.

The parameter list is data (``PARAMS``): the joint fit fits every entry marked ``fitted``, by name, and
the cost model reads the values by name from a ``Kernels`` object (``kernels.gemm``, ``kernels.step_s``).
An engine with no calibration file gets neutral values (silicon microbenchmarks as measured, the engine's
own overhead figures), and its provenance says so.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from planner.errors import PlannerError
from planner.specs.hardware import ARCHITECTURES  # noqa: F401  (the keys of per-architecture blocks)


@dataclass(frozen=True)
class ParamSpec:
    """One kernel/engine parameter: its name, the layer it belongs to, the value a fit starts from
    (``prior``), its physical bounds, the value meaning 'exactly the microbenchmark' (``neutral``)."""

    name: str
    layer: str  # "kernel" (efficiency relative to a silicon microbenchmark) or "engine" (host cost)
    unit: str
    prior: float
    lo: float
    hi: float
    neutral: float
    fitted: bool
    doc: str
    # the Engine field (planner.specs.engine) the serving layer reads this value from, when it lives there:
    # the fit sets it on the engine it predicts with, and the calibration file carries it at the top level
    engine_field: str | None = None
    per_architecture: bool = True  # False: one value per engine release (values the Engine carries)
    spread: float = 1.0  # scales how far an engine family or release may stray from the all-engine value
    # scales how far a release may stray from its family (None: ``spread``), for what a release's own code sets rather
    # than the engine's name: its host loop (vLLM's synchronous V0 step against V1's overlapped one), its MoE kernels
    version_spread: float | None = None
    # the all-engine value is held near the prior (the silicon microbenchmark the parameter is relative to) instead of
    # following whichever engine has rows: each engine's departure from the microbenchmark is its own (family level)
    anchored: bool = False
    # the Engine field that must be true for the cost model to read this value (None: always read); a release whose
    # profile leaves it false gets no value in its calibration file, since none of its rows could inform one
    read_if: str | None = None

    def read_by(self, engine) -> bool:
        """Whether the cost model reads this parameter for ``engine`` (an Engine, or None: any engine)."""
        return self.read_if is None or engine is None or bool(getattr(engine, self.read_if, False))


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("gemm", "kernel", "x MAMF", 0.8, 0.3, 1.15, 1.0, True,
              "dense GEMM rate at large M relative to the device's GEMM microbenchmark (MAMF) in the compute dtype"),
    ParamSpec("gemm_half_m", "kernel", "tokens", 32.0, 1.0, 2048.0, 0.0, True,
              "tokens per GEMM at which its rate is half the large-M rate (tile and wave quantization)"),
    ParamSpec("moe_gemm", "kernel", "x gemm", 0.8, 0.2, 1.15, 1.0, True,
              "routed-expert grouped GEMM rate relative to the dense GEMM rate at the same tokens per expert (after "
              "each expert's rows are padded to whole tiles): permutation-aware grouped kernels, expert scheduling; "
              "releases differ in their MoE kernels (CUTLASS FP8, Triton MXFP4 on Hopper), hence the wide spread "
              "between releases (an engine's family keeps the ordinary one, so one release's kernels do not set "
              "another's)",
              version_spread=10.0),
    ParamSpec("attention", "kernel", "x MAMF", 0.5, 0.1, 1.15, 1.0, True,
              "prefill (flash) attention FLOP rate relative to the 16-bit GEMM microbenchmark"),
    ParamSpec("kv_read", "kernel", "x STREAM", 0.7, 0.2, 1.15, 1.0, True,
              "decode attention reading the paged KV cache, relative to the STREAM copy bandwidth"),
    ParamSpec("memory", "kernel", "x STREAM", 1.0, 0.6, 1.15, 1.0, False,
              "weight and activation streaming in GEMMs and elementwise kernels, relative to STREAM copy"),
    # Little's law: a kernel that keeps B bytes in flight on each SM streams at most B / latency per SM whatever the
    # DRAM can deliver, so on a part with more bandwidth per SM than that (HBM GPUs: 14-15 GB/s of STREAM per SM on
    # the A100 and H100 PCIe, against 5-10 on GDDR parts) its memory-bound kernels run below STREAM. Read only for
    # engines whose kernels are this way (Engine.sm_stream_limited: llama.cpp's 2023-24 CUDA kernels); one value a
    # release (how many bytes its kernels keep in flight). Its start, 10 GB/s a SM (about 6 KB in flight over a
    # ~0.6 us DRAM round trip), binds on the HBM parts so the fit sees its slope; neutral 0: no ceiling
    ParamSpec("sm_stream", "kernel", "B/s per SM", 1.0e10, 2.0e9, 1.0e11, 0.0, True,
              "memory-bound kernels' streaming rate per SM (bytes in flight per SM over the DRAM latency): a ceiling "
              "of SMs x this beside the STREAM bandwidth, for engines whose kernels keep few bytes in flight",
              per_architecture=False, read_if="sm_stream_limited"),
    # llama.cpp's 2023-24 Metal matrix-vector kernels (kernel_mul_mv_q4_0 / q4_K ...) turn each packed weight into a
    # float on the GPU's FP32 ALUs before the multiply-add (CUDA's mmvq instead takes int8 dot products, DP4A, beside
    # the FP32 lanes), so on an Apple GPU a 4-bit one-token step can be ALU bound below the memory roofline: the
    # operations per weight element at the vector rate (FP32 peak x the vector fraction). Read only on Apple GPUs for
    # engines whose profile says so (Engine.metal_dequant_fitted); one value a release. Its start, 16, binds on an M1
    # Max (10.4 FP32 TFLOPS beside 400 GB/s) so the fit sees its slope; neutral 4: the cost model's default count
    ParamSpec("metal_dequant_ops", "kernel", "ops/weight", 16.0, 1.0, 64.0, 4.0, True,
              "vector-unit operations per weight element that the engine's Metal matrix-vector kernels spend "
              "dequantizing weights stored narrower than 16 bits (Apple GPUs only)",
              per_architecture=False, read_if="metal_dequant_fitted"),
    # anchored: every engine runs its own collective kernels (TensorRT-LLM's custom all-reduce and NCCL paths, vLLM's
    # custom all-reduce), so one engine's fitted efficiency says little about another's; an engine without
    # tensor-parallel rows gets the nccl-tests rate, not the one engine with such rows
    ParamSpec("allreduce", "kernel", "x link", 1.0, 0.2, 1.2, 1.0, True,
              "tensor-parallel all-reduce bus bandwidth relative to the interconnect's measured nccl-tests fraction",
              anchored=True),
    # anchored: the gap is set by how an engine launches its kernels (TensorRT's runtime and llama.cpp's 2023-24 builds
    # from the host, one by one; vLLM, SGLang and TensorRT-LLM 1.x replay CUDA graphs), so the engines with rows say
    # little about one without; its all-engine value stays at the prior (a few microseconds, one host launch), and a
    # graph-replaying release takes the graph-mode gap its kind was fitted to (rate_fit.graph_gap)
    ParamSpec("kernel_s", "engine", "s", 3e-6, 1e-8, 3e-5, 0.0, True,
              "host/launch gap per kernel (per op per layer)", "kernel_overhead_s", anchored=True),
    ParamSpec("step_s", "engine", "s", 2e-4, 1e-6, 2e-2, 0.0, True,
              "fixed host time per engine step (scheduler, sampling, synchronization)", "step_overhead_s",
              version_spread=10.0),
    # one value per release with a wide spread between releases (``spread``): a C++ executor spends ~nothing per
    # sequence, a Python one (TensorRT-LLM 1.x PyTorch backend, vLLM) tens of microseconds. The prior sits where a
    # Python scheduler is: an engine that hides host time under the GPU (async scheduling) shows it only once
    # b x sequences exceeds the GPU step, so a fit started near 0 would see no slope there
    ParamSpec("seq_host_s", "engine", "s", 5e-5, 1e-7, 5e-4, 0.0, True,
              "host time per sequence in a step (request bookkeeping, sampling, detokenize); with async scheduling it "
              "hides under the GPU time", "step_host_per_seq_s", per_architecture=False, spread=10.0),
    ParamSpec("request_s", "engine", "s", 0.0, 0.0, 0.1, 0.0, False,
              "host time per request (tokenize, admit, detokenize); read by the serving layer", "request_overhead_s",
              per_architecture=False),
    # the same on the chat endpoint (template rendering beside it): fitted only on runs that went through it (a
    # serving benchmark's ``endpoint`` column), never inferred across releases
    ParamSpec("chat_request_s", "engine", "s", 0.0, 0.0, 0.1, 0.0, False,
              "host time per request on the chat endpoint (render the chat template, tokenize, admit, detokenize); "
              "read by the serving layer", "chat_request_overhead_s", per_architecture=False),
    # the API server's one thread (Engine.api_request_s, api_chunk_s): what it spends on each request's preparation and
    # on each streamed chunk, one job at a time. Fitted only on serving benchmarks of releases that serve through such a
    # server and whose bursts show it (rate_fit.THREAD_ENGINES), never by the joint fit; a release without them has no
    # such queue. The bounds span a compiled server's microseconds to a Python event loop's milliseconds
    ParamSpec("api_request_s", "engine", "s", 0.0, 1e-5, 0.1, 0.0, False,
              "API server thread time per request (chat template, tokenize, hand-off), serial over requests; read by the "
              "serving simulator", "api_request_s", per_architecture=False),
    ParamSpec("api_chunk_s", "engine", "s", 0.0, 1e-6, 0.01, 0.0, False,
              "API server thread time per streamed chunk (detokenize, write to the client), serial over every running "
              "reply's chunks; read by the serving simulator", "api_chunk_s", per_architecture=False),
    # not fitted: a joint fit leaves it at 1.3 GiB (rows where KV memory binds pull both ways), so the profile's stands
    ParamSpec("runtime_bytes", "engine", "bytes", 2.0**30, 2.0**28, 16 * 2.0**30, 2.0**30, False,
              "device memory the engine holds beyond weights, KV cache and activations (CUDA context, cuBLAS/NCCL "
              "workspaces, allocator slack): it sets how many sequences fit", "runtime_bytes", per_architecture=False),
)
PARAM_BY_NAME = {p.name: p for p in PARAMS}


DEFAULT_ENGINE = "trtllm"


@dataclass(frozen=True)
class Kernels:
    """Resolved kernel/engine parameters for one (engine, version, architecture); read by name."""

    engine: str  # "trtllm@0.14", or the bare engine id when uncalibrated
    architecture: str | None
    values: Mapping[str, float]
    provenance: Mapping[str, str]
    calibrated: bool = False

    def __getattr__(self, name: str) -> float:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"no kernel/engine parameter {name!r}") from None

    def with_values(self, **kw) -> "Kernels":
        return dataclasses.replace(self, values={**self.values, **kw})

    def describe(self) -> dict:
        return {n: {"value": v, "source": self.provenance.get(n, "")} for n, v in self.values.items()}


@dataclass
class EngineCalibration:
    """One ``engines/calibration/<engine>-<version>.yaml``: engine-wide values and per-architecture ones."""

    engine: str
    version: str
    engine_wide: dict[str, tuple[float, str]] = field(default_factory=dict)  # name -> (value, source)
    architectures: dict[str, dict[str, tuple[float, str]]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # architecture -> rows fitted
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.engine}@{self.version}"

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "EngineCalibration":
        def block(b, what):
            out = {}
            for name, v in (b or {}).items():
                if name not in PARAM_BY_NAME:
                    raise PlannerError(f"{where}: unknown parameter {name!r} in {what} (known: {', '.join(PARAM_BY_NAME)})")
                if not isinstance(v, dict) or "value" not in v or "source" not in v:
                    raise PlannerError(f"{where}: {what}.{name} needs value and source")
                out[name] = (float(v["value"]), str(v["source"]))
            return out

        try:
            eid, _, ver = str(d["engine"]).partition("@")
            if not ver:
                raise ValueError("engine must read ID@VERSION")
            return cls(engine=eid, version=ver,
                       engine_wide=block(d.get("engine_wide"), "engine_wide"),
                       architectures={a: block(b, a) for a, b in (d.get("architectures") or {}).items()},
                       rows={a: int(n) for a, n in (d.get("rows") or {}).items()}, note=str(d.get("note", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise PlannerError(f"{where}: malformed engine calibration ({e})") from None

    def to_dict(self) -> dict:
        blk = lambda b: {n: {"value": float(f"{v:.5g}"), "source": s} for n, (v, s) in b.items()}  # noqa: E731
        # engine-layer values the serving layer reads from the Engine: top-level fields its loader lays over the profile
        top = {p.engine_field: float(f"{self.engine_wide[p.name][0]:.5g}") for p in PARAMS
               if p.engine_field and p.name in self.engine_wide}
        return {"engine": self.key, "note": self.note, **top, "rows": dict(self.rows), "engine_wide": blk(self.engine_wide),
                "architectures": {a: blk(b) for a, b in self.architectures.items()}}


Calibration = dict  # key "engine-version" -> EngineCalibration

_override: ContextVar[Calibration | None] = ContextVar("planner_calibration", default=None)
_pins: ContextVar[Mapping[str, str]] = ContextVar("planner_engine_versions", default={})


def calibration_dir() -> Path:
    from planner.specs.loader import data_dir

    return data_dir("engines") / "calibration"


@functools.lru_cache(maxsize=4)
def _load_builtin(folder: str) -> Calibration:
    from planner.specs.loader import read_yaml

    out: Calibration = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        d = read_yaml(path)
        if not isinstance(d, dict) or "engine" not in d:
            continue  # other tables live beside the engine files (uncertainty bands)
        c = EngineCalibration.from_dict(d, str(path))
        out[c.key] = c
    return out


def builtin_calibration() -> Calibration:
    return _load_builtin(str(calibration_dir()))


def clear_cache() -> None:
    _load_builtin.cache_clear()


def current_calibration() -> Calibration:
    o = _override.get()
    return builtin_calibration() if o is None else o


@contextmanager
def using(calibration: Calibration | None = None, versions: Mapping[str, str] | None = None):
    """Within the block, the cost model reads ``calibration`` (a candidate fit) instead of the built-in
    files, and runs the pinned ``versions`` ({engine id: version}) of each engine."""
    from planner.specs.engine import FIELD_OVERRIDE, with_fields

    t1 = _override.set(calibration) if calibration is not None else None
    t3 = FIELD_OVERRIDE.set(with_fields(engine_fields(calibration))) if calibration is not None else None
    t2 = _pins.set({**_pins.get(), **versions}) if versions else None
    try:
        yield
    finally:
        if t2 is not None:
            _pins.reset(t2)
        if t3 is not None:
            FIELD_OVERRIDE.reset(t3)
        if t1 is not None:
            _override.reset(t1)


def engine_fields(calibration: Calibration) -> dict[str, dict[str, float]]:
    """{ID@VERSION: {Engine field: value}}: the engine-layer values a calibration lays over the profiles (what
    its files carry at the top level)."""
    return {k: {p.engine_field: c.engine_wide[p.name][0] for p in PARAMS if p.engine_field and p.name in c.engine_wide}
            for k, c in calibration.items()}


def _version_key(v: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.\-]", v))


def default_version(engine_id: str, cal: Calibration) -> str | None:
    """The newest calibrated version (``get_engine(id)`` also runs the newest profile)."""
    versions = [c for c in cal.values() if c.engine == engine_id]
    if not versions:
        return None
    return sorted(versions, key=lambda c: _version_key(c.version))[-1].version


def neutral(engine=None, architecture: str | None = None, why: str = "") -> Kernels:
    eid = getattr(engine, "id", engine) or DEFAULT_ENGINE
    vals = {p.name: p.neutral for p in PARAMS}
    vals["kernel_s"] = float(getattr(engine, "kernel_overhead_s", 0.0) or 0.0)
    vals["step_s"] = float(getattr(engine, "step_overhead_s", 0.0) or 0.0)
    vals["runtime_bytes"] = float(getattr(engine, "runtime_bytes", vals["runtime_bytes"]))
    src = why or f"no calibration for engine {eid}: silicon microbenchmarks as measured, the engine's own overheads"
    return Kernels(eid, architecture, vals, {n: src for n in vals}, calibrated=False)


def kernels_for(engine, hw, version: str | None = None) -> Kernels:
    """Kernel/engine parameters of ``engine`` (an Engine, an id, or None for the default engine; a version
    pinned by ``using`` or the newest calibrated one when the Engine names none) on
    ``hw``'s architecture: its architecture block where fitted, else the engine-wide values."""
    eid = getattr(engine, "id", engine) or DEFAULT_ENGINE
    arch = getattr(hw, "architecture", None)
    cal = current_calibration()
    version = version or getattr(engine, "version", None) or _pins.get().get(eid) or default_version(eid, cal)
    c = cal.get(f"{eid}@{version}") if version else None
    if c is None:
        return neutral(engine, arch)
    block = c.architectures.get(arch, {}) if arch else {}
    vals, prov = {}, {}
    for p in PARAMS:
        if p.name in block:
            vals[p.name], prov[p.name] = block[p.name]
        elif p.name in c.engine_wide:
            v, src = c.engine_wide[p.name]
            vals[p.name] = v
            prov[p.name] = f"engine-wide {c.key} ({src}): inferred for {arch or 'an unknown architecture'}"
        else:
            vals[p.name] = p.prior if p.fitted else p.neutral
            prov[p.name] = f"prior ({p.doc}); not in {c.key}"
    own = own_graph_gap(engine, c.key, arch, bool(c.rows), str(prov.get("kernel_s", "")))
    if own is not None:  # over the graph gap pooled from other releases, as calibrate.rate_fit.graph_gap lays it
        vals["kernel_s"], prov["kernel_s"] = own
    return Kernels(c.key, arch, vals, prov, calibrated=True)


def own_graph_gap(engine, key: str, arch: str, has_rows: bool, kernel_source: str) -> tuple[float, str] | None:
    """(seconds, provenance) of the gap between the kernels of the release's own replayed CUDA graph on ``arch``, where
    its profile names one (Engine.graph_gap_s) and it applies: the release (calibration key ``key``) has no fit rows of
    its own and its kernel_s there was not fitted at request rates (``kernel_source`` starts "rate fit"). The one rule
    both the loaded values (kernels_for) and the files a refit writes (calibrate.rate_fit.graph_gap) follow."""
    own = dict(getattr(engine, "graph_gap_s", ()) or ())
    if arch not in own or has_rows or kernel_source.startswith("rate fit"):
        return None
    return own[arch], f"CUDA-graph kernel gap of {key}'s own graphs on {arch} (engine profile: graph_gap_s)"


def scale_fabric(fabric, factor: float):
    """The fabric with its collective bandwidth fractions scaled by an engine's all-reduce efficiency."""
    if factor == 1.0:
        return fabric

    def tier(t):
        if t is None:
            return None
        kw = {f: getattr(t, f) * factor for f in ("ring_fraction", "in_switch_fraction") if hasattr(t, f)}
        return dataclasses.replace(t, **kw)

    kw = {f: tier(getattr(fabric, f)) for f in ("scale_up", "node", "scale_out") if hasattr(fabric, f)}
    return dataclasses.replace(fabric, **kw)
