"""Collective communication time: latency plus bandwidth per link tier.

All-reduce algorithms (the fastest the topology allows is taken, and named in the breakdown):
- ring: 2(n-1) latency hops and 2(n-1)/n of the message over each link (any topology; the only one over a
  shared bus such as PCIe through the host, and across nodes);
- two-shot (reduce-scatter then all-gather, each GPU talking to all peers at once through a switch or a full
  mesh): 2 hops and 2(n-1)/n of the message, as NCCL/TensorRT-LLM custom all-reduce run mid-size messages;
- one-shot (every GPU reads all n-1 peers' whole buffers and reduces locally): 1 hop and (n-1) messages, the
  small-message (decode) choice on NVLink;
- in-switch (NVLink SHARP / NVLS): the switch reduces, 2 hops, and the measured bus bandwidth exceeds the
  link rate (480 of 450 GB/s on 8x H100/H200).
Each call also pays ``call_s`` (launch and the flag/barrier synchronisation between ranks), beyond the hops.
- star (TPI-LLM, arXiv 2410.00531): every device sends its buffer to one master, which reduces and sends the
  sum back: 2 hops and 2(n-1) messages through the master's link. Offered on host-stack networks between edge
  devices (interconnect kind ``network``: Wi-Fi, consumer Ethernet), where a hop costs milliseconds and the
  ring's 2(n-1) hops dominate: TPI-LLM's finding that link latency, not bandwidth, bounds edge all-reduce.
A shared medium (Wi-Fi: one channel, topology ``bus`` on a network link) carries one transfer at a time, so a
collective's bandwidth term is its total traffic over the channel: ring and star both move 2(n-1) messages.
Point-to-point send/recv (pipeline stages) and all-to-all (expert parallel) as before.
Bus bandwidth follows the nccl-tests convention: busbw = algbw x 2(n-1)/n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.errors import PlannerError
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
    peer_to_peer: bool = True  # devices reach every peer directly (switch or full mesh), not through a shared bus
    shared_medium: bool = False  # one channel for every device (Wi-Fi): transfers take turns
    host_stack: bool = False  # sockets between edge devices (no NCCL): a star all-reduce is possible

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
            # a switch or a full mesh reaches every peer directly, and so does a bridge joining just two devices
            peer_to_peer=(link.topology in ("switch", "mesh") or (link.topology == "point_to_point" and domain_size <= 2))
            and link.kind == "scale_up" and not link.id.startswith("pcie"),
            shared_medium=link.kind == "network" and link.topology == "bus",
            host_stack=link.kind == "network",
        )


@dataclass(frozen=True)
class Fabric:
    """The link tiers a device sees: inside its scale-up domain, between the domains of one server (the node tier:
    PCIe between NVLink-bridged cards), and across nodes."""

    scale_up: LinkTier | None
    scale_out: LinkTier | None
    node: LinkTier | None = None

    @classmethod
    def of(cls, hw: Hardware) -> "Fabric":
        def tier(ref, domain=None):
            return LinkTier.from_spec(get_interconnect(ref.interconnect), domain or ref.domain_size or 1, ref.count) if ref else None

        links = hw.links
        return cls(tier(links.scale_up), tier(links.scale_out, 10**9), tier(links.node))

    @property
    def node_size(self) -> int:
        """Devices one server holds (the node tier's, else the scale-up domain's; 1 without either)."""
        up = self.scale_up.domain_size if self.scale_up is not None else 1
        return max(up, self.node.domain_size) if self.node is not None else up

    def direct(self, group: np.ndarray) -> np.ndarray:
        """Where a group stays inside a scale-up domain whose devices reach each other directly."""
        group = np.asarray(group)
        if self.scale_up is None or not self.scale_up.peer_to_peer:
            return np.zeros(group.shape, bool)
        return group <= self.scale_up.domain_size

    def peer_all_to_all(self, group: np.ndarray) -> np.ndarray:
        """Where an all-to-all can send each token straight to the rank that needs it: a peer-to-peer scale-up link
        (NVLink) inside its domain, or across nodes (RDMA); not where the group crosses the node tier (PCIe between
        NVLink-bridged cards), whose all-to-all kernels have no direct path."""
        group = np.asarray(group)
        if self.scale_up is None or not self.scale_up.peer_to_peer:
            return np.zeros(group.shape, bool)
        if self.node is None:
            return np.ones(group.shape, bool)
        return (group <= self.scale_up.domain_size) | (group > self.node_size)

    def edge(self, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per plan: (the group shares one medium, a star all-reduce is offered) where it crosses onto the
        scale-out link; both False inside a node."""
        group = np.asarray(group)
        crosses = group > self.node_size if (self.scale_up or self.node) else group > 1
        out = self.scale_out
        if out is None:
            return np.zeros(group.shape, bool), np.zeros(group.shape, bool)
        return crosses & out.shared_medium, crosses & out.host_stack

    def max_group(self) -> float:
        """The most devices one collective can join: unbounded over a scale-out network, else the node (the scale-up
        domain, or the node tier joining several; 1 without either). A larger group has no link to cross: tier_for
        prices it at infinite time."""
        if self.scale_out is not None:
            return np.inf
        return self.node_size

    def check_reaches(self, devices: int, what: str, hw_id: str) -> None:
        """A PlannerError when ``devices`` (one replica: ``what`` names its factors) cannot all reach each other: more
        than one node holds and no scale-out network (a collective with no link to cross would price as infinite
        time and come back as NaN)."""
        most = self.max_group()
        if devices > most:
            link = (f"one of its nodes holds {most:g}" if self.node is not None else
                    f"its scale-up domain holds {most:g}" if self.scale_up is not None else "it has no device-to-device link")
            raise PlannerError(f"{what} = {devices} devices in one replica, but {hw_id} has no scale-out network and "
                               f"{link}: join devices with --link (wifi-6, gbe-10, ...) or use fewer per replica")

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
        if self.node:  # beyond the scale-up domain but inside the server: its PCIe fabric
            in_node = crosses & (group <= self.node.domain_size)
            bw = np.where(in_node, self.node.bandwidth_bytes_per_s, bw)
            lat = np.where(in_node, self.node.latency_s, lat)
            frac = np.where(in_node, self.node.ring_fraction, frac)
            crosses = crosses & ~in_node
        if self.scale_out:
            bw = np.where(crosses, self.scale_out.bandwidth_bytes_per_s, bw)
            lat = np.where(crosses, self.scale_out.latency_s, lat)
            frac = np.where(crosses, self.scale_out.ring_fraction, frac)
            sw = np.where(crosses, 0.0, sw)
        else:
            # no link out of the node: such a group is infeasible (infinite time)
            bw = np.where(crosses, 0.0, bw)
        return bw, lat, frac, sw


def _safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.inf)


ALL_REDUCE_ALGORITHMS = ("ring", "two-shot", "one-shot", "in-switch", "star")


def all_reduce_time(fabric: Fabric, n: np.ndarray, message_bytes: np.ndarray, *, call_s: float = 0.0) -> tuple[np.ndarray, str]:
    """Time (s) of an all-reduce of ``message_bytes`` over ``n`` devices with the fastest algorithm the
    topology allows, and the name of the algorithm chosen for the first plan (for the breakdown)."""
    n = np.asarray(n, dtype=float)
    msg = np.asarray(message_bytes, dtype=float)
    bw, lat, frac, sw = fabric.tier_for(n)
    busbw = bw * frac
    share = 2.0 * (n - 1) / np.maximum(n, 1)
    shared, star_ok = fabric.edge(n)
    # on a shared medium the n devices' transfers take turns: the channel carries n x the per-device share
    share = np.where(shared, share * n, share)
    ring = 2.0 * (n - 1) * lat + _safe_div(msg * share, busbw)
    direct = fabric.direct(n)
    inf = np.full(np.broadcast_shapes(ring.shape, direct.shape), np.inf)
    two_shot = np.where(direct, 2.0 * lat + _safe_div(msg * share, busbw), inf)
    one_shot = np.where(direct, lat + _safe_div(msg * (n - 1), busbw), inf)
    with np.errstate(invalid="ignore"):  # no tier (infinite bandwidth) times no in-switch fraction
        bw_sw = np.where(sw > 0, bw * sw, 0.0)
    in_switch = np.where(sw > 0, 2.0 * lat + _safe_div(msg * share, bw_sw), inf)
    # star: n-1 buffers into the master and n-1 sums out, over the master's link (or the shared channel)
    star = np.where(star_ok, 2.0 * lat + _safe_div(msg * 2.0 * (n - 1), busbw), inf)
    algos = (ring, two_shot, one_shot, in_switch, star)
    t = algos[0]
    for a in algos[1:]:
        t = np.minimum(t, a)
    # the algorithm chosen for the first plan (the breakdown names it): the first that reaches the minimum
    heads = [float(np.ravel(a)[0]) if np.size(a) else np.inf for a in algos]
    first = heads.index(min(heads)) if np.size(t) else 0
    return np.where(n > 1, t + call_s, 0.0), ALL_REDUCE_ALGORITHMS[first]


def p2p_time(fabric: Fabric, group: np.ndarray, message_bytes: np.ndarray) -> np.ndarray:
    """One send/recv between neighbouring devices of a group spanning ``group`` devices."""
    bw, lat, frac, _ = fabric.tier_for(np.asarray(group, dtype=float))
    return lat + _safe_div(message_bytes, bw * frac)


def all_to_all_time(fabric: Fabric, n: np.ndarray, bytes_per_device: np.ndarray, *, call_s: float = 0.0) -> np.ndarray:
    """All-to-all where each device sends ``bytes_per_device`` in total to the others."""
    n = np.asarray(n, dtype=float)
    bw, lat, frac, _ = fabric.tier_for(n)
    shared, _ = fabric.edge(n)
    total = np.where(shared, np.asarray(bytes_per_device, float) * n, bytes_per_device)  # one channel carries all
    t = call_s + lat * np.log2(np.maximum(n, 2)) + _safe_div(total, bw * frac)
    return np.where(n > 1, t, 0.0)


EDGE_LINKS_HELP = "network joining devices that have none of their own (edge clusters): an interconnect id such as wifi-6, wifi-6e, wifi-7, gbe-1, gbe-2.5, gbe-10"


def host_link_bytes_per_s(hw: Hardware) -> float:
    """Achievable bandwidth of the device's host link(s), one direction; infinite where there is no separate link
    (a CPU or an SoC reads host memory as its own)."""
    if hw.links.host is None:
        return np.inf
    link = get_interconnect(hw.links.host.interconnect)
    frac = link.achievable.fraction if link.achievable else 1.0
    return link.bandwidth_per_direction.value * frac * hw.links.host.count


def with_link(hw: Hardware, link: str | None) -> Hardware:
    """``hw`` with ``link`` as its scale-out network: laptops or boards joined over Wi-Fi or Ethernet (TPI-LLM's
    edge clusters). An unknown link id is one error line with a did-you-mean; ``None`` leaves ``hw`` as it is."""
    if not link:
        return hw
    return hw.joined_by(get_interconnect(link).id)


def hardware_with_link(hardware, link: str | None):
    """A hardware id (or spec) joined by ``link`` (``with_link``); the id itself when there is no link."""
    if not link:
        return hardware
    from planner.specs.loader import get_hardware

    return with_link(get_hardware(hardware) if isinstance(hardware, str) else hardware, link)
