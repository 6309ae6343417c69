"""Presentation helpers shared by commands (no model logic here)."""

from __future__ import annotations

import json
import math
import sys

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


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


def print_json(obj) -> None:
    """One JSON object on stdout and nothing else there (NaN/inf become null)."""
    sys.stdout.write(json.dumps(_clean(obj), indent=2) + "\n")


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
