"""Collective communication time: latency plus bandwidth per link tier.

Algorithms (named in the breakdown):
- ring all-reduce: 2(n-1) latency hops and 2(n-1)/n of the message over each link;
- in-switch all-reduce (NVLink SHARP / NVLS): the switch reduces, 2 hops, and the
  measured bus bandwidth exceeds the link rate (480 of 450 GB/s on 8x H100/H200);
- point-to-point send/recv (pipeline stages) and all-to-all (expert parallel).
Bus bandwidth follows the nccl-tests convention: busbw = algbw x 2(n-1)/n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.specs.hardware import Hardware, Interconnect
from planner.specs.loader import get_interconnect



@dataclass(frozen=True)
class LinkTier:
    """A link as the cost model uses it; ``None`` bandwidth means the tier is absent."""

    name: str
    bandwidth_bytes_per_s: float  # per direction, per device
    latency_s: float
    ring_fraction: float  # achievable bus bandwidth / link rate for ring collectives
    in_switch_fraction: float  # bus bandwidth / link rate with in-switch reduction; 0 when the switch cannot reduce
    in_switch_min_devices: int
    domain_size: int

    @classmethod
    def from_spec(cls, link: Interconnect, domain_size: int, count: int = 1) -> "LinkTier":
        return cls(
            name=link.id,
            bandwidth_bytes_per_s=link.bandwidth_per_direction.value * count,
            latency_s=link.latency.value,
            ring_fraction=link.achievable.fraction if link.achievable else 1.0,
            in_switch_fraction=link.in_switch.fraction if (link.in_switch_reduction and link.in_switch) else 0.0,
            in_switch_min_devices=link.in_switch_min_devices,
            domain_size=domain_size,
        )


@dataclass(frozen=True)
class Fabric:
    """The link tiers a device sees: inside its scale-up domain, and across nodes."""

    scale_up: LinkTier | None
    scale_out: LinkTier | None

    @classmethod
    def of(cls, hw: Hardware) -> "Fabric":
        up = out = None
        if hw.links.scale_up:
            ref = hw.links.scale_up
            up = LinkTier.from_spec(get_interconnect(ref.interconnect), ref.domain_size or 1, ref.count)
        if hw.links.scale_out:
            ref = hw.links.scale_out
            out = LinkTier.from_spec(get_interconnect(ref.interconnect), 10**9, ref.count)
        return cls(up, out)

    def tier_for(self, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per plan: (bandwidth, latency, ring fraction, in-switch fraction) of the slowest tier a group crosses;
        the in-switch fraction is 0 where the group cannot reduce in the switch."""
        group = np.asarray(group)
        inf = np.full(group.shape, np.inf)
        bw, lat, frac, sw = inf.copy(), np.zeros(group.shape), np.ones(group.shape), np.zeros(group.shape)
        if self.scale_up:
            inside = group <= self.scale_up.domain_size
            bw = np.where(inside, self.scale_up.bandwidth_bytes_per_s, bw)
            lat = np.where(inside, self.scale_up.latency_s, lat)
            frac = np.where(inside, self.scale_up.ring_fraction, frac)
            up = self.scale_up
            sw = np.where(inside & (group >= up.in_switch_min_devices), up.in_switch_fraction, sw)
            crosses = ~inside
        else:
            crosses = group > 1
        if self.scale_out:
            bw = np.where(crosses, self.scale_out.bandwidth_bytes_per_s, bw)
            lat = np.where(crosses, self.scale_out.latency_s, lat)
            frac = np.where(crosses, self.scale_out.ring_fraction, frac)
            sw = np.where(crosses, 0.0, sw)
        else:
            # no link out of the domain: such a group is infeasible (infinite time)
            bw = np.where(crosses, 0.0, bw)
        return bw, lat, frac, sw


def _safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.inf)


def all_reduce_time(fabric: Fabric, n: np.ndarray, message_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time (s) of an all-reduce of ``message_bytes`` over ``n`` devices, and 1 where it ran in-switch."""
    n = np.asarray(n, dtype=float)
    bw, lat, frac, sw = fabric.tier_for(n)
    use_switch = sw > 0
    busbw = bw * np.where(use_switch, sw, frac)
    hops = np.where(use_switch, 2.0, 2.0 * (n - 1))
    t = hops * lat + _safe_div(message_bytes * 2.0 * (n - 1) / np.maximum(n, 1), busbw)
    return np.where(n > 1, t, 0.0), use_switch


def p2p_time(fabric: Fabric, group: np.ndarray, message_bytes: np.ndarray) -> np.ndarray:
    """One send/recv between neighbouring devices of a group spanning ``group`` devices."""
    bw, lat, frac, _ = fabric.tier_for(np.asarray(group, dtype=float))
    return lat + _safe_div(message_bytes, bw * frac)


def all_to_all_time(fabric: Fabric, n: np.ndarray, bytes_per_device: np.ndarray) -> np.ndarray:
    """All-to-all where each device sends ``bytes_per_device`` in total to the others."""
    n = np.asarray(n, dtype=float)
    bw, lat, frac, _ = fabric.tier_for(n)
    t = lat * np.log2(np.maximum(n, 2)) + _safe_div(bytes_per_device, bw * frac)
    return np.where(n > 1, t, 0.0)
