"""LoRA adapters over one base model (S-LoRA, Punica, ExpertWeave): what they cost in memory, per step and per miss.

* Bytes of one adapter: ``rank x (d_in + d_out) x layers x bytes per element`` summed over its target projections
  (q, k, v, o, gate, up, down of the dense layers; ``experts``: a rank-r adapter on each routed expert's gate, up
  and down, ExpertWeave style, so an adapter over a MoE model stores num_experts of them per MoE layer).
* ``resident`` adapters per replica are kept in GPU memory; their bytes come out of the KV cache (S-LoRA's unified
  pool). A request whose adapter is not resident waits for it over the host link: the miss rate is
  ``1 - sum of the top-M popularity probabilities`` (adapters ranked by popularity, an LRU/LFU cache holding the M
  most popular in the steady state), uniform: ``1 - M/N``.
* Every step runs the batched multi-adapter GEMMs (Punica SGMV / S-LoRA MBGMV): ``2 x tokens x rank x (d_in + d_out)``
  FLOPs per target per layer at a small-rank efficiency, against reading each distinct adapter in the batch once
  (expected distinct adapters among b requests: ``sum_i 1 - (1 - p_i)^b``), plus a fixed time per kernel.
The adapter op is registered in the step builder list (costmodel/step.py) when a CostModel carries ``lora``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.errors import PlannerError

TARGETS = ("q", "k", "v", "o", "gate", "up", "down", "experts")
ALIASES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
           "down_proj": "down", "attn": "q,k,v,o", "mlp": "gate,up,down", "all": "q,k,v,o,gate,up,down",
           "moe": "experts"}
DEFAULT_TARGETS = ("q", "k", "v", "o")

# Fraction of the 16-bit dense peak the rank-r shrink/expand GEMMs reach (rank <= 64 is far below the tensor-core
# tile sizes). Prior, read off Punica's SGMV roofline (Chen et al., MLSys'24, Fig. 7); the same prior as the simulator.
SMALL_RANK_EFFICIENCY = 0.10
SMALL_RANK_SOURCE = "prior: 10 % of the 16-bit dense peak for rank <= 64 GEMMs (Punica SGMV roofline, MLSys'24 Fig. 7)"
# Fixed time of one SGMV/BGMV kernel: Punica reports ~2 ms per token for LoRA on all seven projections of a 32-layer
# 7B model = 2 x 7 x 32 = 448 kernels -> ~4.5 us per kernel.
SGMV_KERNEL_S = 2e-3 / 448
SGMV_KERNEL_SOURCE = "Punica (MLSys'24): ~2 ms per token for LoRA on 7 projections x 32 layers (448 SGMV kernels)"
DISTINCT_GRID = 64  # batch sizes on a log grid for the expected number of distinct adapters (interpolated)


@dataclass(frozen=True)
class LoraSpec:
    adapters: int
    rank: int
    targets: tuple[str, ...] = DEFAULT_TARGETS
    resident: int | None = None  # None: all adapters resident
    popularity: str = "uniform"  # uniform | zipf:S
    bytes_per_element: float = 2.0  # adapters kept in bf16 (S-LoRA, Punica)

    @property
    def slots(self) -> int:
        return int(self.adapters if self.resident is None else self.resident)


def parse_targets(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_TARGETS
    out: list[str] = []
    for part in text.replace("+", ",").split(","):
        p = ALIASES.get(part.strip().lower(), part.strip().lower())
        for t in filter(None, p.split(",")):
            if t not in TARGETS:
                raise PlannerError(f"--lora target {part!r} is not one of {', '.join(TARGETS)} (or attn, mlp, all, moe)")
            if t not in out:
                out.append(t)
    if not out:
        raise PlannerError("--lora needs at least one target projection")
    return tuple(out)


def parse_popularity(text: str | None) -> tuple[str, float]:
    name, _, arg = (text or "uniform").strip().lower().partition(":")
    if name == "uniform" and not arg:
        return "uniform", 0.0
    if name == "zipf":
        try:
            s = float(arg)
        except ValueError:
            s = -1.0
        if not s > 0 or math.isinf(s):
            raise PlannerError(f"--lora-popularity zipf:S needs an exponent S > 0, got {text!r}")
        return "zipf", s
    raise PlannerError(f"--lora-popularity takes uniform or zipf:S, got {text!r}")


def parse_lora(text: str, resident: int | None = None, popularity: str | None = None) -> LoraSpec:
    """``N:RANK[:TARGETS]``, e.g. 1000:16:q,k,v,o."""
    bits = str(text).strip().split(":", 2)
    try:
        n, r = int(bits[0]), int(bits[1])
    except (ValueError, IndexError):
        raise PlannerError(f"--lora takes ADAPTERS:RANK[:TARGETS] such as 1000:16:q,k,v,o, got {text!r}") from None
    if n < 1:
        raise PlannerError(f"--lora {text}: the number of adapters must be at least 1")
    if r < 1:
        raise PlannerError(f"--lora {text}: the rank must be at least 1")
    if resident is not None and not 1 <= resident <= n:
        raise PlannerError(f"--lora-resident {resident}: must be between 1 and the {n} adapters")
    parse_popularity(popularity)
    return LoraSpec(n, r, parse_targets(bits[2] if len(bits) == 3 else None), resident, (popularity or "uniform").lower())


def _widths(model, targets) -> tuple[float, float, float]:
    """(stored, active per token, distinct-read) elements of one adapter per unit rank, over all layers."""
    h, q, kv, inter = model.hidden_size, model.num_heads * model.head_dim, model.num_kv_heads * model.head_dim, \
        model.intermediate_size
    dense = {"q": h + q, "k": h + kv, "v": h + kv, "o": q + h, "gate": h + inter, "up": h + inter, "down": inter + h}
    if "gate" in targets and not model.ffn_gated:
        raise PlannerError(f"{model.id} has no gate projection (its MLP is not gated)")
    attn = sum(dense[t] for t in targets if t in ("q", "k", "v", "o")) * model.num_layers
    mlp_layers = model.num_dense_layers if model.moe else model.num_layers
    mlp = sum(dense[t] for t in targets if t in ("gate", "up", "down")) * mlp_layers
    if any(t in ("gate", "up", "down") for t in targets) and mlp_layers == 0:
        raise PlannerError(f"{model.id} has no dense MLP layers: target its experts (--lora N:R:experts, ExpertWeave)")
    stored, active = attn + mlp, attn + mlp
    if "experts" in targets:
        if not model.moe:
            raise PlannerError(f"{model.id} has no experts to put adapters on (drop the 'experts' target)")
        per_expert = (3 if model.ffn_gated else 2) * (h + model.moe.expert_intermediate_size) * model.num_moe_layers
        stored += per_expert * model.moe.num_experts
        active += per_expert * model.moe.top_k
    return float(stored), float(active), float(per_expert * model.moe.num_experts) if "experts" in targets else 0.0


def adapter_bytes(model, spec: LoraSpec) -> float:
    """Bytes of one whole adapter (all layers, all targets)."""
    return spec.rank * _widths(model, spec.targets)[0] * spec.bytes_per_element


def adapter_flops_per_token(model, spec: LoraSpec) -> float:
    """FLOPs one token spends in its adapter (shrink + expand: 2 x rank x (d_in + d_out) per target per layer)."""
    return 2.0 * spec.rank * _widths(model, spec.targets)[1]


def popularity(spec: LoraSpec) -> np.ndarray:
    """Probability of each adapter, most popular first."""
    kind, s = parse_popularity(spec.popularity)
    if kind == "uniform":
        return np.full(spec.adapters, 1.0 / spec.adapters)
    p = np.arange(1, spec.adapters + 1, dtype=float) ** -s
    return p / p.sum()


def miss_rate(spec: LoraSpec) -> float:
    """Share of requests whose adapter is not resident: 1 - the top-M probabilities (M = resident slots)."""
    return float(max(1.0 - popularity(spec)[: spec.slots].sum(), 0.0))


def expected_distinct(spec: LoraSpec, batch) -> np.ndarray:
    """Expected distinct adapters among ``batch`` requests (vectorized: interpolated on a log grid of batches)."""
    b = np.maximum(np.asarray(batch, float), 0.0)
    p = popularity(spec)
    grid = np.unique(np.concatenate([[0.0, 1.0], np.geomspace(1.0, max(float(np.max(b, initial=1.0)), 2.0), DISTINCT_GRID)]))
    d = (1.0 - (1.0 - p[None, :]) ** grid[:, None]).sum(axis=1)
    return np.interp(b, grid, d)


@dataclass
class LoraCost:
    """Adapter serving on one plan layout: what the step builder and the steady state read."""

    spec: LoraSpec
    model: object
    bytes_per_adapter: float
    miss_rate: float
    host_bytes_per_s: float

    @classmethod
    def of(cls, spec: LoraSpec, model, host_bytes_per_s: float) -> "LoraCost":
        return cls(spec, model, adapter_bytes(model, spec), miss_rate(spec), host_bytes_per_s)

    def resident_bytes_per_device(self, tp, pp) -> np.ndarray:
        """Bytes the resident adapters take on one device (sharded like the base weights)."""
        return self.spec.slots * self.bytes_per_adapter / (np.asarray(tp, float) * np.asarray(pp, float))

    def load_s(self, tp, pp) -> np.ndarray:
        """One miss: each device loads its shard over its own host link."""
        return self.bytes_per_adapter / (np.asarray(tp, float) * np.asarray(pp, float)) / self.host_bytes_per_s

    def ttft_s(self, tp, pp) -> np.ndarray:
        """Expected load time per request (the miss rate times one load), paid before its prefill."""
        return self.miss_rate * self.load_s(tp, pp)

    def summary(self, tp: int, pp: int, tokens_per_step: float, seqs_per_step: float, step_s: float) -> dict:
        return {"adapters": self.spec.adapters, "rank": self.spec.rank, "targets": list(self.spec.targets),
                "resident": self.spec.slots, "popularity": self.spec.popularity,
                "bytes_per_adapter": self.bytes_per_adapter,
                "resident_bytes_per_gpu": float(self.resident_bytes_per_device(tp, pp)),
                "miss_rate": self.miss_rate, "load_s": float(self.load_s(tp, pp)),
                "ttft_added_s": float(self.ttft_s(tp, pp)),
                "distinct_adapters_per_step": float(expected_distinct(self.spec, seqs_per_step)),
                "step_s": step_s, "flops_per_token": adapter_flops_per_token(self.model, self.spec),
                "sources": [SMALL_RANK_SOURCE, SGMV_KERNEL_SOURCE]}


def lora_ops(cm, c) -> list:
    """The SGMV op of one decoder layer (per device): the adapter GEMMs of every token beside the base GEMMs."""
    from planner.costmodel.step import Op

    lc: LoraCost = cm.lora
    spec, m = lc.spec, lc.model
    stored, active, experts = _widths(m, spec.targets)
    L = float(m.num_layers)
    tp = c.tp
    flops = 2.0 * c.T * spec.rank * active / L / tp  # per layer, per device
    distinct = expected_distinct(spec, (c.p_seqs + c.d_seqs) / c.adp)
    # a distinct adapter's expert part is read only for the experts its tokens reach
    touched = np.minimum(1.0, c.T * m.moe.top_k / np.maximum(distinct, 1e-9) / m.moe.num_experts) if experts else 1.0
    per_adapter = spec.rank * ((stored - experts) + experts * touched) * spec.bytes_per_element / L / tp
    byts = distinct * per_adapter + 2.0 * c.T * spec.rank * len(spec.targets) * cm._act
    tc = flops / (c.plans.gemm_flops * SMALL_RANK_EFFICIENCY)
    op = cm._op(Op.LORA, "gemm", c.layers_stage, flops, byts, tc, byts / cm.bw, algorithm="sgmv")
    # two kernels (shrink, expand) per target, each with a fixed time
    extra = np.where(np.broadcast_to(c.T, op.time_s.shape) > 0, 2 * len(spec.targets) * SGMV_KERNEL_S, 0.0)
    op.time_s = op.time_s + extra
    op.source = "roofline (small-rank prior) + Punica kernel time"
    return [op]
