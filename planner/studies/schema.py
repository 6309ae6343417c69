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
from planner.studies.params import CapacityRequest, EstimateRequest, PlanRequest, SimulateRequest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# a study point is a command's request: the same models the CLI generates its options from
PARAMS: dict[str, type[BaseModel]] = {"estimate": EstimateRequest, "plan": PlanRequest, "capacity": CapacityRequest,
                                      "simulate": SimulateRequest}


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
    file: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}\.(png|svg)$")  # default: <study>-<y>-vs-<x>.png


FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$"  # a plain file name: no folders, no '..'


class Study(_Strict):
    name: str = Field(pattern=FILE_NAME)
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


FILE_FIELDS = ("model", "hardware", "workload", "trace", "daily")
FILE_SUFFIXES = (".yaml", ".yml", ".json", ".csv", ".txt")


def _rebase(value: Any, folder: Path) -> Any:
    """A relative file path in a study is relative to the study file (ids and absolute paths stay)."""
    if isinstance(value, list):
        return [_rebase(v, folder) for v in value]
    if isinstance(value, str) and value.lower().endswith(FILE_SUFFIXES) and not Path(value).is_absolute():
        return str(folder / value)
    return value


def rebase_paths(study: "Study", folder: Path) -> "Study":
    base = {k: (_rebase(v, folder) if k in FILE_FIELDS else v) for k, v in study.base.items()}
    axes = {k: ([_rebase(v, folder) for v in vs] if k in FILE_FIELDS else vs) for k, vs in study.sweep.axes.items()}
    return study.model_copy(update={"base": base, "sweep": study.sweep.model_copy(update={"axes": axes})})


def load_study(path: Path) -> Study:
    try:
        text = path.read_text()
    except OSError as e:
        raise PlannerError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise PlannerError(f"cannot read {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e).splitlines()[0]
        raise PlannerError(f"malformed YAML at {path}:{mark.line + 1 if mark else '?'}: {' '.join(str(problem).split())}") from None
    if not isinstance(data, dict):
        raise PlannerError(f"{path} does not hold a mapping at the top level")
    lines = _line_map(text)
    try:
        study = Study.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        line = _where(lines, loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch":
            msg = "a plain file name (letters, digits, '.', '_', '-'; no folders)"
        raise PlannerError(f"{path}:{line or '?'}: {'.'.join(map(str, loc))}: {msg}") from None
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
            what = f"{'.'.join(map(str, loc))}: {str(err['msg']).removeprefix('Value error, ')}"
            if err["type"] == "extra_forbidden":
                article = "an" if study.command[0] in "aeiou" else "a"
                what += f" ({article} {study.command} point takes: {', '.join(cls.model_fields)})"
            raise PlannerError(f"{path}:{line or '?'}: {what}" + (f" (sweep point {i + 1})" if in_axes else "")) from None
    return rebase_paths(study, path.parent)
