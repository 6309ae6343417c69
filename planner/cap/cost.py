"""Total cost of ownership: what one device-hour costs rented and owned, and what a million output tokens cost.

Rented: the device's on-demand price (``price:`` in its spec, US dollars per device-hour, with source and date).

Owned, per device-hour of service::

    purchase / (amortization_years x 8760 h x utilization)
    + (device power + the host's share of its system's power) x PUE x electricity price

The purchase is the device's share of a system price when the system spec has one (host, switches and NICs
included), else the device's own price (the card or module alone; the host server is then not in the capital
term, and the result says so). The host's power share is (system power - devices x device power) / devices,
from a system spec of the device that has a ``power:``. Both powers are datasheet maxima, so the electricity
term is an upper bound at full load. Left out (nothing public per device): facility capex or colocation rent,
the network outside the node, staff, maintenance contracts, financing and resale value.

Either rate becomes dollars per million output tokens through the plan's output tokens/s per device:
usd_per_device_hour / (tokens_per_s_per_device x 3600) x 1e6.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from planner.errors import PlannerError
from planner.specs.hardware import Hardware

HOURS_PER_YEAR = 8760.0
W_PER_KW = 1000.0
# (field, flag, lower bound, whether the bound itself is allowed, upper bound or None)
_LIMITS = {
    "electricity_usd_per_kwh": ("--electricity-usd-per-kwh", 0.0, True, None),
    "pue": ("--pue", 1.0, True, None),  # total facility power over IT power cannot be below 1
    "amortization_years": ("--amortization-years", 0.0, False, None),
    "utilization": ("--utilization", 0.0, False, 1.0),
}


@dataclass(frozen=True)
class TcoAssumptions:
    """The economic inputs of the owned cost; ``sources`` names where each default came from."""

    electricity_usd_per_kwh: float
    pue: float
    amortization_years: float
    utilization: float
    sources: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        return {"electricity_usd_per_kwh": self.electricity_usd_per_kwh, "pue": self.pue,
                "amortization_years": self.amortization_years, "utilization": self.utilization}


def _check(name: str, value) -> float:
    flag, lo, closed, hi = _LIMITS[name]
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PlannerError(f"{flag} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise PlannerError(f"{flag} must be a finite number, got {value!r}")
    if v < lo or (v == lo and not closed) or (hi is not None and v > hi):
        rng = f"{'at least' if closed else 'above'} {lo:g}" + (f" and at most {hi:g}" if hi is not None else "")
        raise PlannerError(f"{flag} must be {rng}, got {v:g}")
    return v


@functools.cache
def tco_defaults() -> TcoAssumptions:
    """The sourced defaults in hw_specs/tco/defaults.yaml."""
    from planner.specs.loader import data_dir, read_yaml

    path = data_dir("hw_specs") / "tco" / "defaults.yaml"
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise PlannerError(f"{path} does not hold a mapping at the top level")
    vals, sources = {}, []
    for name in _LIMITS:
        entry = data.get(name)
        if not isinstance(entry, dict) or "value" not in entry or not str(entry.get("source", "")).strip():
            raise PlannerError(f"{path}: {name} needs a value and a source")
        try:
            vals[name] = _check(name, entry["value"])
        except PlannerError as e:
            raise PlannerError(f"{path}: {name}: {e}") from None
        sources.append((name, str(entry["source"])))
    return TcoAssumptions(**vals, sources=tuple(sources))


def assumptions(electricity_usd_per_kwh: float | None = None, pue: float | None = None,
                amortization_years: float | None = None, utilization: float | None = None) -> TcoAssumptions:
    """The defaults with any given value in their place (each checked: finite, in its range)."""
    given = {"electricity_usd_per_kwh": electricity_usd_per_kwh, "pue": pue, "amortization_years": amortization_years,
             "utilization": utilization}
    over = {k: _check(k, v) for k, v in given.items() if v is not None}
    base = tco_defaults()
    if not over:
        return base
    src = tuple((k, "given by the user" if k in over else s) for k, s in base.sources)
    return replace(base, **over, sources=src)


@dataclass(frozen=True)
class Owned:
    """Owned cost of one device-hour and its parts."""

    usd_per_hour: float
    capex_usd_per_hour: float
    power_usd_per_hour: float
    device_power_w: float
    host_power_w: float
    purchase_usd: float
    purchase_source: str
    notes: tuple[str, ...]


def _system_of(hw: Hardware):
    """The first system (by id) of this device that states its power or price, else None."""
    from planner.specs.loader import get_system, system_ids

    for sid in system_ids():
        s = get_system(sid)
        if s.device == hw.id and (s.power is not None or s.purchase is not None):
            return s
    return None


def host_power_w(hw: Hardware, system=None) -> tuple[float, str]:
    """(the host's share of its system's maximum power per device, where it came from)."""
    s = system if system is not None else _system_of(hw)
    if s is None or s.power is None or hw.power is None:
        return 0.0, f"no system power on record for {hw.id}: the host's power is not counted"
    share = (s.power.value - s.devices_per_node * hw.power.value) / s.devices_per_node
    if share < 0:
        raise PlannerError(f"system {s.id} states {s.power.value:g} W, less than its {s.devices_per_node} x "
                           f"{hw.power.value:g} W devices")
    return share, f"host share of {s.id}: ({s.power.value / W_PER_KW:g} kW - {s.devices_per_node} x {hw.power.value:g} W) / {s.devices_per_node}"


def rented_usd_per_hour(hw: Hardware) -> float | None:
    return hw.price.usd_per_hour if hw.price is not None else None


def owned(hw: Hardware, a: TcoAssumptions | None = None) -> Owned | None:
    """Owned cost of one device-hour of service, or None without a purchase price (device or system)."""
    a = a or tco_defaults()
    s = _system_of(hw)
    notes = []
    if s is not None and s.purchase is not None:
        purchase, src = s.purchase.usd / s.devices_per_node, f"{s.purchase.source} ({s.purchase.date}), / {s.devices_per_node} devices"
    elif hw.purchase is not None:
        purchase, src = hw.purchase.usd, f"{hw.purchase.source} ({hw.purchase.date})"
        notes.append(f"purchase is the {hw.id} alone: the host server's capital cost is not counted")
    else:
        return None
    dev_w = hw.power.value if hw.power is not None else 0.0
    if hw.power is None:
        notes.append(f"no power on record for {hw.id}: electricity is not counted")
    host_w, host_note = host_power_w(hw, s)
    notes.append(host_note)
    capex = purchase / (a.amortization_years * HOURS_PER_YEAR * a.utilization)
    power = (dev_w + host_w) / W_PER_KW * a.pue * a.electricity_usd_per_kwh
    return Owned(capex + power, capex, power, dev_w, host_w, purchase, src, tuple(notes))


def usd_per_million_tokens(usd_per_device_hour, tokens_per_s_per_device):
    """Dollars per million output tokens (NaN where the rate or the throughput is missing or zero)."""
    rate = np.asarray(usd_per_device_hour, dtype=float)
    tok = np.asarray(tokens_per_s_per_device, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(tok > 0, rate / (tok * 3600.0) * 1e6, np.nan)
    return out if out.ndim else float(out)


def owned_cost_keys(hw: Hardware, devices: int, tokens_per_s: float | None, a: TcoAssumptions | None = None) -> dict:
    """The owned-cost keys of an estimate's ``cost`` block (``tokens_per_s``: the whole deployment; None when the
    plan does not run)."""
    a = a or tco_defaults()
    o = owned(hw, a)
    if o is None:
        return {"usd_per_gpu_hour_owned": None, "usd_per_hour_owned": None, "usd_per_million_output_tokens_owned": None,
                "owned": {"note": f"no purchase price on record for {hw.id}", "assumptions": a.to_dict()}}
    per_dev = tokens_per_s / devices if tokens_per_s and devices else 0.0
    mtok = usd_per_million_tokens(o.usd_per_hour, per_dev)
    return {"usd_per_gpu_hour_owned": o.usd_per_hour, "usd_per_hour_owned": o.usd_per_hour * devices,
            "usd_per_million_output_tokens_owned": None if math.isnan(mtok) else mtok,
            "owned": {"capex_usd_per_gpu_hour": o.capex_usd_per_hour, "power_usd_per_gpu_hour": o.power_usd_per_hour,
                      "device_power_w": o.device_power_w, "host_power_w_per_gpu": o.host_power_w,
                      "purchase_usd_per_gpu": o.purchase_usd, "purchase_source": o.purchase_source,
                      "assumptions": a.to_dict(), "notes": list(o.notes)}}
