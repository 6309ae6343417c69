"""Options declared once: typer commands are generated from the request models in
planner/studies/params.py (which study files also validate against), plus a few presentation
options (--json, --csv, --plot, ...) shared here. Output paths are checked before any work starts.

typer is imported only when a command is registered on the app: a command declared with ``command(None, ...)``
waits in ``PENDING`` until the app is built, and ``parse_direct`` reads a plain command line (``--name value``
options of the request model, nothing else) into the same values typer would pass, so `planner estimate` can run
without building the typer command at all (planner/cli/app.py falls back to typer for anything else)."""

from __future__ import annotations

import inspect
import math
import re
import typing
from pathlib import Path
from typing import Any, Callable, List, Optional

from pydantic import BeforeValidator, ValidationError

from planner.errors import PlannerError
from planner.studies.params import MS_HINT_S, REQUESTS, Request, check_specs
from planner.units import has_unit


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def one_line(e: ValidationError, flags: bool = True) -> str:
    """The first pydantic error as one sentence naming the option."""
    err = e.errors()[0]
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    msg = msg.replace("Input should be", "must be").replace("input should be", "must be")
    msg = re.sub(r"greater than or equal to 1(?![\d.])", "a positive integer (at least 1)", msg)
    for a, b in (("greater than 0", "positive"), ("greater than or equal to", "at least"), ("less than or equal to", "at most"),
                 ("a valid integer, unable to parse string as an integer", "an integer"),
                 ("a valid number, unable to parse string as a number", "a number")):
        msg = msg.replace(a, b)
    msg = msg[:1].lower() + msg[1:]
    loc = [str(x) for x in err["loc"] if not isinstance(x, int)]
    if not loc:
        return msg
    name = flag(loc[0]) if flags else ".".join(loc)
    got = err.get("input")
    shown = "" if err["type"] in ("value_error", "missing") or isinstance(got, dict) else f" (got {got!r})"
    if err["type"] == "extra_forbidden":
        return f"{name}: not an option of this command"
    return f"{name}: {msg}{shown}"


def build(command: str, values: dict[str, Any], warn: Callable[[str], None] | None = None) -> Request:
    """Validate option values into the command's request model; one-line errors, exit 2."""
    cls = REQUESTS[command]
    try:
        req = cls.model_validate(values)
    except ValidationError as e:
        raise PlannerError(one_line(e)) from None
    for name, limit in MS_HINT_S.items():
        raw = values.get(name)
        if raw is not None and not has_unit(raw) and getattr(req, name, None) is not None and getattr(req, name) > limit:
            msg = (f"hint: {flag(name)} {raw} is read as {getattr(req, name):g} seconds; "
                   f"for milliseconds write {flag(name)} {raw}ms")
            if warn:
                warn(msg)
    for note in check_specs(command, req):
        if warn:
            warn(note)
    return req


def _base_types(ann) -> tuple[set, bool]:
    """(the set of base types in an annotation, whether a before-validator reads strings)."""
    out: set = set()
    reads_text = False
    stack = [ann]
    while stack:
        a = stack.pop()
        origin = typing.get_origin(a)
        if origin is typing.Annotated:
            args = typing.get_args(a)
            stack.append(args[0])
            reads_text |= any(isinstance(m, BeforeValidator) for m in args[1:])
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            stack += [x for x in typing.get_args(a) if x is not type(None)]
        elif origin is typing.Literal:
            out.add(str)
        elif origin in (list, tuple):
            out.add(list)
        elif a is not type(None):
            out.add(a)
    return out, reads_text


def _cli_type(cls: type[Request], name: str, field) -> Any:
    types, reads_text = _base_types(field.annotation)
    optional = not field.is_required() and field.default is None
    if list in types:
        return Optional[List[str]]
    if types == {bool}:
        return Optional[bool] if optional else bool
    if reads_text or len(types) != 1 or types <= {str}:
        base: Any = str
    else:
        base = next(iter(types))
        base = base if base in (int, float) else str
    return Optional[base] if optional else base


def request_params(command: str) -> list[inspect.Parameter]:
    import typer

    cls = REQUESTS[command]
    params = []
    for name, field in cls.model_fields.items():
        decls = [cls.FLAGS[name]] if name in cls.FLAGS else [flag(name)] + ([cls.SHORT[name]] if name in cls.SHORT else [])
        default = ... if field.is_required() else field.default
        meta = {"metavar": "DURATION"} if name in MS_HINT_S else {}
        info = typer.Option(default, *decls, help=field.description, show_default=default not in (None, ...), **meta)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=_cli_type(cls, name, field)))
    return params


# ------------------------------------------------------------------ presentation options, declared once

# name -> (annotation, default, flag, further typer.Option arguments)
UI_OPTIONS: dict[str, tuple[Any, Any, str, dict[str, Any]]] = {
    "as_json": (bool, False, "--json", {"help": "print one JSON object on stdout (nothing else there)"}),
    "as_csv": (bool, False, "--csv", {"help": "print CSV on stdout"}),
    "plot": (Optional[Path], None, "--plot", {"help": "draw to FILE.png or FILE.svg"}),
    "plot_terminal": (bool, False, "--plot-terminal", {"help": "draw tokens/s per GPU vs per user in the terminal"}),
    "top": (int, 10, "--top", {"min": 1, "max": 10000, "help": "frontier plans to show"}),
    "emit": (Optional[str], None, "--emit", {"help": "print the recommended plan's launch config: vllm, sglang, trtllm or k8s"}),
}


def _option_maker(default: Any, decl: str, kw: dict[str, Any]) -> Callable[[], Any]:
    def make():
        import typer

        return typer.Option(default, decl, **kw)
    return make


# name -> (annotation, a maker of its typer.Option): typer is imported when an option is made
UI: dict[str, tuple[Any, Callable[[], Any]]] = {u: (ann, _option_maker(d, decl, kw)) for u, (ann, d, decl, kw) in UI_OPTIONS.items()}


# commands declared before the typer app exists: (name, help, ui, request name, body), registered by register_pending
PENDING: list[tuple[str, str, tuple[str, ...], str, Callable]] = []
# command -> (request name, ui, body) of every command declared here: what parse_direct and invoke need
DECLARED: dict[str, tuple[str, tuple[str, ...], Callable]] = {}


def invoke(req_name: str, ui: tuple[str, ...], body: Callable, kw: dict[str, Any]):
    """Run ``body(req, **ui)`` on the option values of one command line (typer's or parse_direct's)."""
    from planner.cli.common import warn

    ui_vals = {u: kw.pop(u) for u in ui}
    if ui_vals.get("as_json") and ui_vals.get("as_csv"):
        raise PlannerError("give --json or --csv, not both")
    req = build(req_name, kw, warn)
    return body(req, **ui_vals)


def command(app, name: str, help: str, ui: tuple[str, ...] = ("as_json",), request: str | None = None):
    """Register ``body(req, **ui)`` as a typer command whose options come from the request model (``app`` None:
    when the app is built, planner/cli/app.py calling register_pending)."""
    req_name = request or name

    def deco(body):
        DECLARED[name] = (req_name, ui, body)
        if app is None:
            PENDING.append((name, help, ui, req_name, body))
        else:
            _register_command(app, name, help, ui, req_name, body)
        return body

    return deco


def register_pending(app) -> None:
    """Register the commands declared with ``command(None, ...)`` on the typer app (each once)."""
    while PENDING:
        _register_command(app, *PENDING.pop(0))


def _register_command(app, name: str, help: str, ui: tuple[str, ...], req_name: str, body: Callable) -> None:
    params = request_params(req_name)
    for u in ui:
        ann, make = UI[u]
        params.append(inspect.Parameter(u, inspect.Parameter.KEYWORD_ONLY, default=make(), annotation=ann))

    def wrapper(**kw):
        return invoke(req_name, ui, body, kw)

    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    wrapper.__name__ = body.__name__
    wrapper.__module__ = body.__module__  # the command's own module (planner.cli.app.MODULES names it)
    wrapper.__doc__ = body.__doc__
    app.command(name, help=help)(wrapper)


# ------------------------------------------------------------------ a plain command line without typer

_INT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _direct_table(req_name: str, ui: tuple[str, ...]) -> tuple[dict[str, tuple[str, Any]], dict[str, Any]] | None:
    """(flag -> (parameter, kind), parameter -> default) for the options parse_direct reads, where kind is
    int, float, str, list (a list of text given once) or Path (takes a value), (int, min, max) (an integer in a
    range) or True / False (a flag setting a bool); None when an option of the command is of a kind it leaves to
    typer."""
    cls = REQUESTS[req_name]
    table: dict[str, tuple[str, Any]] = {}
    defaults: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        ann = _cli_type(cls, name, field)
        base = next((a for a in typing.get_args(ann) if a is not type(None)), ann) if typing.get_origin(ann) else ann
        defaults[name] = ... if field.is_required() else field.default
        if base is bool:
            if typing.get_origin(ann) or name not in cls.FLAGS:
                return None  # an optional bool, or a bool without its --x/--no-x pair: typer's conventions
            on, off = cls.FLAGS[name].split("/")
            table[on], table[off] = (name, True), (name, False)
        elif base in (int, float, str) or (typing.get_origin(base) in (list, List) and typing.get_args(base) == (str,)):
            kind = list if typing.get_origin(base) else base  # a list option given once is the list of its one value
            for decl in [cls.FLAGS[name]] if name in cls.FLAGS else [flag(name)] + ([cls.SHORT[name]] if name in cls.SHORT else []):
                table[decl] = (name, kind)
        else:
            return None
    for u in ui:
        ann, default, decl, kw = UI_OPTIONS[u]
        base = next((a for a in typing.get_args(ann) if a is not type(None)), ann) if typing.get_origin(ann) else ann
        if base is bool:
            table[decl] = (u, True)
        elif base is int and ("min" in kw or "max" in kw):  # click's IntRange: out of range is typer's message
            table[decl] = (u, (int, kw.get("min", -math.inf), kw.get("max", math.inf)))
        elif base in (int, str, Path):
            table[decl] = (u, base)
        else:
            return None
        defaults[u] = default
    return table, defaults


def parse_direct(command: str, args: list[str]) -> dict[str, Any] | None:
    """The values typer would pass the command for ``args`` (the words after the command's name), or None when the
    line is anything but plain: only the command's own options, each at most once, as ``--name value``,
    ``--name=value`` or ``-x value`` with a value that does not start with '-' (ints as digits, floats as plain
    decimals), flags alone, every required option given. Anything else (--help, a typo, a repeated option, a
    value typer would reject or read differently) is None, and typer answers it as before."""
    if command not in DECLARED:
        return None
    req_name, ui, _ = DECLARED[command]
    got = _direct_table(req_name, ui)
    if got is None:
        return None
    table, values = got
    seen: set[str] = set()
    i = 0
    while i < len(args):
        word = args[i]
        name_, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if name_ not in table:
            return None
        param, kind = table[name_]
        if param in seen:
            return None
        seen.add(param)
        if isinstance(kind, bool):
            if eq:
                return None
            values[param] = kind
            i += 1
            continue
        if eq:
            text = inline
            i += 1
        elif i + 1 < len(args):
            text = args[i + 1]
            i += 2
        else:
            return None
        if text.startswith("-"):
            return None
        if kind is int or isinstance(kind, tuple):
            if not _INT.fullmatch(text):
                return None
            values[param] = int(text)
            if isinstance(kind, tuple) and not kind[1] <= values[param] <= kind[2]:
                return None
        elif kind is list:
            values[param] = [text]
        elif kind is Path:
            values[param] = Path(text)
        elif kind is float:
            if not _FLOAT.fullmatch(text) or not math.isfinite(float(text)):
                return None
            values[param] = float(text)
        else:
            values[param] = text
    if any(v is ... for v in values.values()):
        return None  # a required option missing: typer's message
    return values


# ------------------------------------------------------------------ output paths, checked before the work

def _probe_file(path: Path, what: str) -> None:
    """Open the file for appending (creating it) and remove it again if it was not there: the one
    honest test of writability (permissions, read-only mounts, /proc, a full disk's inode table)."""
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as e:
        raise PlannerError(f"{what} {path}: cannot write there ({e.strerror or e})") from None
    if not existed:
        try:
            path.unlink()
        except OSError:
            pass


def check_out_file(path: Path | None, suffixes: tuple[str, ...] = (), what: str = "--plot") -> None:
    """A file the command will write: right suffix, its folder exists, and it can be written; checked
    before any work starts."""
    if path is None:
        return
    if suffixes and path.suffix.lower() not in suffixes:
        raise PlannerError(f"{what} writes {' or '.join(suffixes)}, not {path.suffix or 'a file without extension'}: {path}")
    if path.is_dir():
        raise PlannerError(f"{what} {path}: is a folder, not a file")
    parent = path.parent
    if not parent.exists():
        raise PlannerError(f"{what} {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise PlannerError(f"{what} {path}: {parent} is not a folder")
    _probe_file(path, what)


def check_out_dir(path: Path | None, what: str = "--out") -> None:
    """A folder the command will write into: created if missing (with its parents), then probed."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise PlannerError(f"{what} {path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PlannerError(f"{what} {path}: cannot create the folder ({e.strerror or e})") from None
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".planner-probe-"):
            pass
    except OSError as e:
        raise PlannerError(f"{what} {path}: cannot write there ({e.strerror or e})") from None
