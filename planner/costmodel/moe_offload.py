"""CPU-assisted mixture-of-experts and per-expert precision, as one plan field (``MoeOffload``).

Three techniques, each costed from the specs (no fitted factor):

- cold experts on the host CPU (Fiddler, MoE-Lens' CPU-GPU hybrid): the fraction ``cpu_fraction`` of every MoE
  layer's experts stays in host memory and runs on the host CPU. The tokens routed to them cross the host link
  (hidden states out, expert outputs back) each layer; the CPU runs its experts at its own roofline (memory
  bandwidth from its spec, compute peak where one is published) while the GPU runs the hot experts, so only what
  the GPU's expert time does not cover is exposed. Where streaming the touched cold experts' weights to the GPU is
  faster (large prefill batches, Fiddler's rule) that path is taken instead. The GPU holds only the hot experts.
- decode attention on the host CPU (MoE-Lens: "the GPU handles compute-intensive GEMM operations, while the CPU
  processes the relatively lightweight attention"): the KV cache lives in host memory and each decode step reads it
  at the CPU's memory bandwidth; queries and outputs (and each new token's K/V) cross the host link. MoE-Lens
  pipelines two micro-batches, so the CPU's attention overlaps the GPU's GEMMs: only the excess is exposed.
- per-expert precision (EdgeMoE): ``low_fraction`` of the experts stored in ``low_format`` (e.g. int4 under fp8
  weights): expert bytes and memory fall, accuracy follows the accuracy tables (``expert_weights``).

Uniform routing is assumed throughout (each token's top-k experts drawn evenly), as in the step model's MoE.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from planner.costmodel.collectives import host_link_bytes_per_s
from planner.errors import PlannerError

DEFAULT_CPU = "xeon-8480"


@dataclass(frozen=True)
class MoeOffload:
    mode: str = "none"  # "experts" | "attention" | "none" (per-expert precision only)
    cpu_fraction: float = 0.0  # experts mode: fraction of each MoE layer's experts on the host CPU
    cpu: str = DEFAULT_CPU  # hardware id (or YAML) of the host CPU
    low_format: str | None = None  # EdgeMoE: the lower precision some experts are stored in
    low_fraction: float = 0.0  # ... and the fraction of experts stored in it

    @property
    def expert_weights(self) -> tuple[str, float] | None:
        """The accuracy model's ``expert_weights`` knob (planner.cap.accuracy)."""
        return (self.low_format, self.low_fraction) if self.low_format and self.low_fraction > 0 else None

    def label(self) -> str:
        parts = []
        if self.mode == "experts":
            parts.append(f"{self.cpu_fraction:.0%} of experts on {self.cpu}")
        elif self.mode == "attention":
            parts.append(f"decode attention and KV cache on {self.cpu}")
        if self.expert_weights:
            parts.append(f"{self.low_fraction:.0%} of experts in {self.low_format}")
        return ", ".join(parts)


def parse_moe_offload(text: str | None) -> MoeOffload | None:
    """``experts:0.5[@CPU]``, ``attention[@CPU]``, ``bits:FMT@F``, or a comma-joined pair of them."""
    if not text:
        return None
    from planner.specs.quant import get_format

    mode, frac, cpu, low, low_f = "none", 0.0, DEFAULT_CPU, None, 0.0
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        head, _, at = part.partition("@")
        kind, _, val = head.partition(":")
        kind = kind.strip().lower()
        try:
            if kind == "bits":
                low, low_f = val.strip(), float(at)
                get_format(low)
                if not 0.0 < low_f <= 1.0:
                    raise ValueError
                continue
            if kind == "experts":
                frac = float(val)
                if not 0.0 < frac <= 1.0:
                    raise ValueError
            elif kind != "attention" or val:
                raise ValueError
        except ValueError:
            raise PlannerError(f"--moe-offload: cannot read {part!r}; give experts:F[@CPU] with F in (0, 1], "
                               "attention[@CPU], or bits:FORMAT@F (e.g. experts:0.5@xeon-8480,bits:int4@0.5)") from None
        if mode != "none":
            raise PlannerError("--moe-offload: choose experts:F or attention, not both")
        mode, cpu = kind, (at.strip() or DEFAULT_CPU)
    return MoeOffload(mode, frac, cpu, low, low_f)


@dataclass(frozen=True)
class HostSide:
    """The host CPU as the cost model sees it: memory bandwidth, compute rate (None: no published peak), the link."""

    id: str
    bw_bytes_per_s: float
    flops: float | None
    link_bytes_per_s: float
    link_latency_s: float
    capacity_bytes: float


def host_side(off: MoeOffload, hw) -> HostSide:
    """The host CPU named in ``off`` and the device's host link; an SoC (unified memory) has no host to offload to."""
    from planner.specs.loader import get_hardware, get_interconnect

    cpu = get_hardware(off.cpu)
    if cpu.kind != "cpu":
        raise PlannerError(f"--moe-offload runs on a host CPU; {cpu.id} is a {cpu.kind}")
    if hw.links.host is None:
        raise PlannerError(f"{hw.id} has no host link on record: nothing to offload to (unified-memory devices hold "
                           "every weight already)")
    link = get_interconnect(hw.links.host.interconnect)
    dtype = next((d for d in ("bf16", "fp32") if cpu.supports(d)), None)
    flops = cpu.peak(dtype) * cpu.matmul_efficiency(dtype) if dtype else None
    return HostSide(cpu.id, cpu.memory_bandwidth_bytes_per_s * cpu.achievable.memory.fraction, flops,
                    host_link_bytes_per_s(hw), link.latency.value, cpu.memory_capacity_bytes)


def expert_bytes(off: MoeOffload | None, weight_bytes):
    """Bytes per expert weight element with EdgeMoE's mix (scales included)."""
    if off is None or not off.expert_weights:
        return weight_bytes
    from planner.specs.quant import get_format

    return (1.0 - off.low_fraction) * np.asarray(weight_bytes, float) + off.low_fraction * get_format(off.low_format).bytes


def _cpu_time(host: HostSide, flops, byts):
    """The CPU's roofline time; memory only where its spec publishes no compute peak."""
    t_mem = np.asarray(byts, float) / host.bw_bytes_per_s
    return np.maximum(t_mem, np.asarray(flops, float) / host.flops) if host.flops else t_mem


def moe_offload_mlp(cm, c) -> list:
    """The MoE MLP with the cold experts on the host CPU and/or EdgeMoE's per-expert precision."""
    from planner.costmodel.step import (Op, _moe_act, _moe_mlp, expert_row_elems, expert_rows, held_slots, moe_routing,
                                        rank_touched)

    off: MoeOffload = cm.moe_offload
    ops = _moe_mlp(cm, c)
    if off.mode != "experts" and not off.expert_weights:
        return ops
    m, plans = cm.model, c.plans
    mo, h = m.moe, m.hidden_size
    f = off.cpu_fraction if off.mode == "experts" else 0.0
    cnt = c.layers_stage * m.num_moe_layers / m.num_layers
    moe_group = c.tp * c.adp
    assigned, imb, touched = moe_routing(plans, mo, c.T * c.adp, c.ep)
    moe_tp = moe_group / c.ep
    w_dev = m.expert_params() / moe_tp
    wb = expert_bytes(off, plans.weight_bytes)
    busiest = rank_touched(touched, assigned, c.ep, imb, held_slots(plans, mo))  # the experts the busiest EP rank reads
    # the hot experts' row traffic and activation as in the GPU-only layer (step._moe_mlp), over the GPU's rows
    rows_gpu = expert_rows(assigned, c.ep, imb) * (1.0 - f)
    gpu = cm._gemm(Op.EXPERTS, rows_gpu, w_dev, plans.gemm_flops, wb, cnt, m_eff=assigned / np.maximum(touched, 1e-9),
                   in_out_elems=expert_row_elems(m, plans, moe_tp), weight_touch=busiest * (1.0 - f) * w_dev)
    act = _moe_act(cm, rows_gpu, plans, moe_tp, cnt)
    ops = [gpu if o.name == Op.EXPERTS else act if o.name == Op.MOE_ACT else o for o in ops]
    if f <= 0.0:
        return ops
    host = host_side(off, cm.hw)
    # the CPU serves the whole MoE group: its share of the assignments and of the touched experts, whole experts
    rows_cpu = assigned * f
    cpu_bytes = touched * f * m.expert_params() * wb + rows_cpu * h * cm._act * 2.0
    t_cpu = _cpu_time(host, 2.0 * rows_cpu * m.expert_params(), cpu_bytes)
    xfer_bytes = c.T * mo.top_k * f * h * cm._act * 2.0  # this device's tokens out and their outputs back
    t_xfer = np.where(xfer_bytes > 0, 2.0 * host.link_latency_s + xfer_bytes / host.link_bytes_per_s, 0.0)
    # the CPU path runs beside the GPU's hot experts: only its excess is exposed
    exposed_cpu = np.maximum(t_xfer + t_cpu - gpu.time_s, 0.0)
    # Fiddler's rule: where copying the touched cold experts to the GPU (overlapped with the hot experts) and
    # running them there is faster, that is what runs
    cold_gpu = cm._gemm(Op.EXPERTS, expert_rows(assigned, c.ep, imb) * f, w_dev, plans.gemm_flops, wb, cnt,
                        m_eff=assigned / np.maximum(touched, 1e-9), in_out_elems=h, weight_touch=busiest * f * w_dev)
    stream_bytes = busiest * f * w_dev * wb
    exposed_stream = np.maximum(stream_bytes / host.link_bytes_per_s - gpu.time_s, 0.0) + cold_gpu.time_s
    use_cpu = exposed_cpu <= exposed_stream
    exposed = np.where(c.T > 0, np.where(use_cpu, exposed_cpu, exposed_stream), 0.0)
    op = cm._op(Op.CPU_EXPERTS, "comm", cnt, 0.0, np.where(use_cpu, xfer_bytes, stream_bytes),
                0.0, 0.0, comm=exposed, algorithm=f"{host.id}" if bool(np.ravel(use_cpu)[0]) else "stream to GPU")
    op.source = "roofline" if host.flops else f"roofline (memory only: no compute peak on record for {host.id})"
    return ops + [op]


def cpu_attention_block(cm, c) -> list:
    """The attention block with decode attention on the host CPU (MoE-Lens): the GPU keeps the projections and
    prefill attention; each decode step reads the KV cache from host memory at the CPU's bandwidth."""
    from planner.costmodel.step import MLP_BUILDERS, Op, _attention_block
    from planner.costmodel.shard import attention_shard

    m = cm.model
    host = host_side(cm.moe_offload, cm.hw)
    no_decode = dataclasses.replace(c, d_seqs=np.zeros_like(np.asarray(c.d_seqs, float)))
    ops = _attention_block(cm, no_decode)
    sh = attention_shard(m, c.tp)
    kvb = c.plans.kv_bytes
    w = m.attention.local_window
    n_local = len(m.local_layer_indices())
    ctx_layer = (c.d_ctx * (m.num_layers - n_local) + (np.minimum(c.d_ctx, w) if w else c.d_ctx) * n_local) / m.num_layers
    # the CPU serves every tensor-parallel shard of the replica
    kv_read = c.d_seqs / c.adp * ctx_layer * sh.kv_elems_per_token * kvb * c.tp
    flops = 2.0 * sh.heads * c.tp * c.d_seqs * c.d_tok / c.adp * ctx_layer * (sh.decode_dqk + sh.decode_dv)
    t_cpu = _cpu_time(host, flops, kv_read)
    d_rows = c.d_seqs * c.d_tok / c.adp
    xfer = d_rows * sh.heads * (sh.decode_dqk + sh.decode_dv) * cm._act + c.T * sh.kv_elems_per_token * kvb
    t_xfer = np.where(xfer > 0, 2.0 * host.link_latency_s + xfer / host.link_bytes_per_s, 0.0)
    # two micro-batches in flight: the CPU's attention overlaps the GPU's layer (projections and MLP)
    mlp = MLP_BUILDERS["moe" if m.moe else "dense"](cm, c)
    per_layer = lambda os: sum(o.time_s * o.count for o in os) / np.maximum(c.layers_stage, 1e-9)  # noqa: E731
    gpu_layer = per_layer(ops) + per_layer(mlp)
    exposed = np.where(c.d_seqs > 0, np.maximum(t_cpu + t_xfer - gpu_layer, 0.0), 0.0)
    op = cm._op(Op.CPU_ATTENTION, "comm", c.layers_stage, flops, xfer, 0.0, 0.0, comm=exposed, algorithm=host.id)
    op.source = "roofline" if host.flops else f"roofline (memory only: no compute peak on record for {host.id})"
    return ops + [op]


def offloaded_memory(off: MoeOffload, model, hw, plans, mem, engine=None):
    """``mem`` (costmodel.memory.MemoryResult) with the cold experts off the device, EdgeMoE's narrower experts, and
    (attention mode) the KV cache in host memory: what the device frees goes to its KV cache, as
    costmodel.memory.memory shares it (all of it when the engine reserves a fixed fraction of the device, the
    utilization share of it when the engine sizes the cache from what is free)."""
    c = model.param_counts()
    tp, pp, adp = (np.asarray(x, float) for x in (plans.tp, plans.pp, plans.adp))
    experts_dev = c["experts"] / (tp * adp) / pp  # expert elements on one device
    wb = np.asarray(plans.weight_bytes, float)
    saved = experts_dev * (wb - expert_bytes(off, wb))
    if off.mode == "experts":
        saved = saved + experts_dev * expert_bytes(off, wb) * off.cpu_fraction
    weights = mem.weights_bytes - saved
    kv, usable = mem.kv_capacity_bytes + saved, mem.usable_bytes
    if engine is not None and getattr(engine, "kv_policy", "") == "free":  # as costmodel.memory.memory sizes it
        fixed = mem.activation_bytes + mem.runtime_bytes
        nominal = lambda w: engine.utilization * (mem.capacity_bytes - w - fixed)  # noqa: E731
        kv = mem.kv_capacity_bytes + nominal(weights) - nominal(mem.weights_bytes)  # keeps what callers took off
        usable = np.where(nominal(weights) > 0, weights + fixed + nominal(weights), mem.capacity_bytes)
    if off.mode == "attention":
        host = host_side(off, hw)
        # the host's memory holds the KV cache of all tp x pp devices of the replica (half of it: OS, engine)
        kv = np.full_like(kv, 0.5 * host.capacity_bytes / (tp * pp))
    return dataclasses.replace(mem, weights_bytes=weights, kv_capacity_bytes=kv, usable_bytes=usable)


def check_offload(off: MoeOffload, model, hw) -> None:
    if off.mode == "experts" or off.expert_weights:
        if model.moe is None:
            raise PlannerError(f"--moe-offload experts/bits needs a mixture-of-experts model; {model.id} is dense")
    if off.mode in ("experts", "attention"):
        host_side(off, hw)
