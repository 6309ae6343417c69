"""Exact unit parsing for spec files.

Inside the code every quantity is SI with the unit in the variable name
(``bandwidth_bytes_per_s``, ``capacity_bytes``, ``peak_flops``). YAML may say
``3.35 TB/s``, ``80 GiB`` or ``989 TFLOPS``; this module turns such strings into
floats and refuses anything it does not understand, so GB and GiB never mix.
"""

from __future__ import annotations

import re

from planner.errors import PlannerError

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}

# dimension -> {unit suffix: multiplier to SI}
_UNITS: dict[str, dict[str, float]] = {"bytes": {}, "bytes_per_s": {}, "flops": {}, "s": {}, "w": {}, "usd_per_h": {}}
for _p, _m in {**_DECIMAL, **_BINARY}.items():
    _UNITS["bytes"][f"{_p}B"] = _m
    _UNITS["bytes_per_s"][f"{_p}B/s"] = _m
    if _p in _DECIMAL:
        # bits per second (network line rates): 400 Gbps = 50 GB/s
        _UNITS["bytes_per_s"][f"{_p}bps"] = _m / 8.0
        _UNITS["bytes_per_s"][f"{_p}b/s"] = _m / 8.0
        _UNITS["flops"][f"{_p}FLOPS"] = _m
        _UNITS["flops"][f"{_p}OPS"] = _m  # integer ops (TOPS) count like FLOPs for the roofline
_UNITS["bytes"]["bytes"] = 1.0
_UNITS["s"].update({"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9})
_UNITS["w"].update({"W": 1.0, "kW": 1e3})
_UNITS["usd_per_h"].update({"USD/h": 1.0, "$/h": 1.0})

_NUM = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")


def parse_quantity(text: str | int | float, dimension: str) -> float:
    """Parse ``"3.35 TB/s"`` for dimension ``bytes_per_s`` into 3.35e12.

    A bare number is accepted only for dimensions whose SI unit is implied by the
    field name and is taken as SI (bytes, bytes/s, FLOP/s, seconds, watts).
    """
    if dimension not in _UNITS:
        raise ValueError(f"unknown dimension {dimension!r}")
    if isinstance(text, bool):
        raise PlannerError(f"expected a {dimension} quantity, got {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    m = _NUM.match(str(text))
    if not m:
        raise PlannerError(f"cannot read {text!r} as a {dimension} quantity (expected a number and a unit)")
    value, unit = float(m.group(1)), m.group(2)
    if unit == "":
        return value
    table = _UNITS[dimension]
    if unit not in table:
        known = ", ".join(sorted(table)[:12])
        raise PlannerError(f"unknown unit {unit!r} in {text!r} for {dimension} (known: {known}, ...)")
    return value * table[unit]


GiB = 2.0**30
GB = 1e9


_DURATION = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|infinity|nan))\s*(s|ms|us|µs|ns|min|h)?\s*$", re.I)
_DURATION_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``2``, ``2s``, ``300ms``, ``150us``, ``1.5min``: a bare number is seconds.

    Returns the value as parsed (NaN and inf included); callers check the range."""
    if isinstance(text, bool):
        raise PlannerError(f"expected a duration such as 2s or 300ms, got {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    m = _DURATION.match(str(text))
    if not m:
        raise PlannerError(f"cannot read {text!r} as a duration (a number of seconds, or with a unit: 2s, 300ms, 150us)")
    unit = (m.group(2) or "s").lower().replace("µs", "us")
    return float(m.group(1)) * _DURATION_UNITS[unit]


def has_unit(text: str | int | float) -> bool:
    """True when a duration string names its unit (``300ms``), False for a bare number."""
    if isinstance(text, (int, float)):
        return False
    m = _DURATION.match(str(text))
    return bool(m and m.group(2))
