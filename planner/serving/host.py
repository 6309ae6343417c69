"""What the host side offers a device: the link to host memory (KV offload, weight streaming) and its share of
the node's host memory. Written once for the steady state, the plan search and the simulator."""

from __future__ import annotations

from planner.errors import PlannerError
from planner.specs.hardware import Hardware
from planner.specs.loader import get_interconnect

WEIGHT_OFFLOAD_TARGETS = ("host", "disk")


def host_kv_bytes_per_device(hw: Hardware) -> float:
    """Host memory one device may use for offloaded KV: its share of the node's host memory (half of it,
    leaving the rest to the OS, pinned buffers and the engine)."""
    if hw.host_memory is None or hw.links.host is None or hw.kind != "gpu":
        return 0.0
    per_node = hw.node_size
    return 0.5 * hw.host_memory.value / per_node


def weight_stream_link(hw: Hardware, where: str) -> tuple[str, float]:
    """(name, achievable bytes/s) of the link weights stream over: the host link, or an NVMe disk."""
    if where == "host":
        if hw.kind != "gpu" or hw.links.host is None:
            raise PlannerError(f"{hw.id} has no separate host memory link; stream weights from disk instead")
        link = get_interconnect(hw.links.host.interconnect)
    elif where == "disk":
        link = get_interconnect("nvme-gen4")
    else:
        raise PlannerError(f"weight offload goes to host or disk, not {where!r}")
    frac = link.achievable.fraction if link.achievable else 1.0
    return link.id, link.bandwidth_per_direction.value * frac
