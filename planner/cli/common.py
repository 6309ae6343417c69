"""Presentation helpers shared by commands (no model logic here)."""

from __future__ import annotations

import csv
import json
import math
import os
import sys



def _width(stream) -> int | None:
    """A terminal keeps its width; piped or redirected output is not cut to 80 columns."""
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return 1000


def __getattr__(name: str):
    """``console`` (stdout) and ``err_console`` (stderr): rich consoles, made (and rich imported) on first use."""
    if name not in ("console", "err_console"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from rich.console import Console

    stderr = name == "err_console"
    # emoji=False: no ":name:" in the output is an emoji code (rich._emoji_codes, ~3 ms, stays unimported);
    # highlight=False: colour comes from the markup the commands write, not from rich's number and repr regexes
    # (~3 ms of an estimate's table rendering)
    made = globals()[name] = Console(stderr=stderr, width=_width(sys.stderr if stderr else sys.stdout), emoji=False,
                                     highlight=False)
    if not stderr:
        made.on_broken_pipe = reader_gone  # rich's own exits 1, which here means a bug
    return made


def reader_gone() -> None:
    """stdout's reader stopped early (`planner ... | head`): what it read was the answer, so exit 0 without a word,
    with stdout pointed at the null device so that flushing it at exit raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise SystemExit(0)


def warn(msg: str) -> None:
    """One line on stderr that does not stop the command."""
    sys.stderr.write(msg + "\n")


def _clean(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return _clean(x.item())
    return x


def _split_timing(d: dict) -> dict:
    """Wall-clock times (``wall_s`` anywhere below the top) move to a top-level ``timing`` block, so the
    results of two identical runs diff clean."""
    timing: dict = {}

    def walk(x, path):
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                if k == "wall_s" and path and path[0] != "timing":
                    timing["_".join(path + ["wall_s"])] = v
                else:
                    out[k] = walk(v, path + [str(k)])
            return out
        if isinstance(x, list):
            return [walk(v, path) for v in x]
        return x

    out = walk(d, [])
    if timing:
        out["timing"] = {**out.get("timing", {}), **timing}
    return out


def print_json(obj) -> None:
    """One JSON object on stdout and nothing else there (NaN/inf become null; wall times under ``timing``)."""
    obj = _clean(obj)
    if isinstance(obj, dict):
        obj = _split_timing(obj)
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def gib(x: float | None) -> str:
    return "-" if x is None else f"{x / 2**30:.2f} GiB"


def ms(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x * 1e3:.2f} ms" if x < 1 else f"{x:.3f} s"


def num(x: float | None, fmt: str = ",.0f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, fmt)


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts to ``a_b`` scalar columns; lists are left out (CSV cells hold scalars)."""
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "_"))
        elif not isinstance(v, (list, tuple)):
            out[key] = v
    return out


def print_csv(rows: list[dict]) -> None:
    """CSV on stdout: the union of the rows' keys, in first-seen order; NaN/inf/None empty."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    w = csv.DictWriter(sys.stdout, keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if _clean(r.get(k)) is None else _clean(r.get(k))) for k in keys})
