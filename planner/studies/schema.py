"""What-if study files: a base scenario, sweep axes, the command each point runs,
the columns to report and the plots to draw. Validated with pydantic; errors name the
file, the line and what was expected."""

from __future__ import annotations

from itertools import product
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from planner.errors import PlannerError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EstimateParams(_Strict):
    model: str
    hardware: str
    gpus: int | None = Field(default=None, ge=1)
    tp: int | None = Field(default=None, ge=1)
    pp: int | None = Field(default=None, ge=1)
    ep: int | None = Field(default=None, ge=1)
    dp: int | None = Field(default=None, ge=1)
    weights: str = "bf16"
    kv: str | None = None
    activations: str | None = None
    weight_offload: Literal["host", "disk"] | None = None
    isl: int = Field(default=1024, ge=1)
    osl: int = Field(default=256, ge=1)
    batching: Literal["static", "inflight"] = "inflight"
    batch: int | None = Field(default=None, ge=1)
    concurrency: int | Literal["max"] | None = None
    engine: str = "trtllm"
    rate: float | None = Field(default=None, gt=0)
    workload: str | None = None


class PlanParams(_Strict):
    model: str
    hardware: str | list[str]
    gpus: int = Field(ge=1)
    isl: int = Field(default=1024, ge=1)
    osl: int = Field(default=256, ge=1)
    ttft: float | None = Field(default=None, gt=0)
    tpot: float | None = Field(default=None, gt=0)
    min_context: int | None = Field(default=None, ge=1)
    min_accuracy: float | None = Field(default=None, gt=0, le=1)
    max_cost: float | None = Field(default=None, gt=0)
    objective: Literal["throughput", "cost", "latency"] = "throughput"
    task: str = "general"
    weights: list[str] | None = None
    kv: list[str] | None = None
    spec: list[str] | None = None  # "K:ALPHA"
    eviction: list[str] | None = None  # "METHOD:TOKENS"
    concurrency: list[int] | None = None
    disagg: bool = True
    offload: bool = True
    engine: str = "trtllm"


class CapacityParams(_Strict):
    model: str
    hardware: str
    rate: float = Field(gt=0)
    workload: str | None = None
    isl: int = Field(default=1024, ge=1)
    osl: int = Field(default=256, ge=1)
    ttft_p99: float | None = Field(default=None, gt=0)
    tpot_p99: float | None = Field(default=None, gt=0)
    max_gpus: int = Field(default=64, ge=1)
    weights: str = "bf16"
    kv: str | None = None
    engine: str = "trtllm"
    requests: int | None = Field(default=None, ge=1)
    seed: int = 0


class SimulateParams(_Strict):
    model: str | None = None
    hardware: str
    gpus: int | None = Field(default=None, ge=1)
    tp: int | None = Field(default=None, ge=1)
    pp: int | None = Field(default=None, ge=1)
    ep: int | None = Field(default=None, ge=1)
    dp: int | None = Field(default=None, ge=1)
    weights: str = "bf16"
    kv: str | None = None
    engine: str = "trtllm"
    workload: str | None = None
    trace: str | None = None
    isl: int = Field(default=1024, ge=1)
    osl: int = Field(default=256, ge=1)
    arrival: Literal["poisson", "gamma"] = "poisson"
    cv: float = Field(default=1.0, gt=0)
    rate: float | str | None = None
    requests: int = Field(default=1000, ge=1)
    seed: int = 0
    ttft_slo: float | None = Field(default=None, gt=0)
    tpot_slo: float | None = Field(default=None, gt=0)
    router: str = "least-outstanding"
    chunked_prefill: bool | None = None
    spec: str | None = None  # "K:ALPHA"
    disagg: str | None = None  # "P:D"
    fleet: str | None = None  # "MODEL:N[:TP],..."


PARAMS = {"estimate": EstimateParams, "plan": PlanParams, "capacity": CapacityParams, "simulate": SimulateParams}


class Sweep(_Strict):
    mode: Literal["product", "zip"] = "product"
    axes: dict[str, list[Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _lengths(self):
        if self.mode == "zip" and len({len(v) for v in self.axes.values()}) > 1:
            raise ValueError("zip axes must all have the same length")
        if any(len(v) == 0 for v in self.axes.values()):
            raise ValueError("an axis has no values")
        return self

    def points(self) -> list[dict[str, Any]]:
        if not self.axes:
            return [{}]
        names = list(self.axes)
        vals = [self.axes[n] for n in names]
        combos = zip(*vals) if self.mode == "zip" else product(*vals)
        return [dict(zip(names, c)) for c in combos]


class Plot(_Strict):
    x: str
    y: str
    series: str | None = None
    kind: Literal["line", "scatter", "bar"] = "line"
    logx: bool = False
    logy: bool = False
    title: str | None = None
    file: str | None = None  # default: <study>-<y>-vs-<x>.png


class Study(_Strict):
    name: str
    description: str = ""
    command: Literal["estimate", "plan", "capacity", "simulate"]
    base: dict[str, Any]
    sweep: Sweep = Sweep()
    columns: list[str] | None = None
    plots: list[Plot] = Field(default_factory=list)

    def point_params(self) -> list[dict[str, Any]]:
        return [{**self.base, **p} for p in self.sweep.points()]


def _line_map(text: str) -> dict[tuple, int]:
    """Line (1-based) of every mapping key path in a YAML document."""
    out: dict[tuple, int] = {}

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                p = path + (k.value,)
                out[p] = k.start_mark.line + 1
                walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                out[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    try:
        walk(yaml.compose(text), ())
    except yaml.YAMLError:
        pass
    return out


def _where(lines: dict[tuple, int], loc: tuple) -> int | None:
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return None


def load_study(path: Path) -> Study:
    try:
        text = path.read_text()
    except OSError as e:
        raise PlannerError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise PlannerError(f"malformed YAML at {path}:{mark.line + 1 if mark else '?'}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise PlannerError(f"{path} does not hold a mapping at the top level")
    lines = _line_map(text)
    try:
        study = Study.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        line = _where(lines, loc)
        raise PlannerError(f"{path}:{line or '?'}: {'.'.join(map(str, loc))}: {err['msg']}") from None
    cls = PARAMS[study.command]
    for i, p in enumerate(study.point_params()):
        try:
            cls.model_validate(p)
        except ValidationError as e:
            err = e.errors()[0]
            key = err["loc"][0] if err["loc"] else None
            in_axes = key in study.sweep.axes
            loc = ("sweep", "axes", key) if in_axes else ("base", key) if key is not None else ("base",)
            line = _where(lines, loc)
            what = f"{'.'.join(map(str, loc))}: {err['msg']}"
            if err["type"] == "extra_forbidden":
                article = "an" if study.command[0] in "aeiou" else "a"
                what += f" ({article} {study.command} point takes: {', '.join(cls.model_fields)})"
            raise PlannerError(f"{path}:{line or '?'}: {what}" + (f" (sweep point {i + 1})" if in_axes else "")) from None
    return study
