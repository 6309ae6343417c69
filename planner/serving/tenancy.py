"""The multi-tenant terms of one plan's prediction: adapters (S-LoRA, ExpertWeave), one GPU split between prefill
and decode (semi-PD, Nexus), fine-tuning beside serving (FlexLLM) and variants sharing base blocks (BlockLLM)."""

from __future__ import annotations

import numpy as np

from planner.errors import PlannerError
from planner.costmodel.collectives import host_link_bytes_per_s
from planner.serving.planspec import PlanSpec
from planner.specs.hardware import Hardware
from planner.specs.model import Model


def intra(plan: PlanSpec, batching: str, cm, p, running: int, isl: int, osl: int, lora, agg) -> dict | None:
    """One GPU split between a prefill and a decode worker (semi-PD / Nexus), beside the aggregated steady state."""
    from planner.serving.intragpu import best_share, intra_gpu_pd, parse_share

    f = parse_share(plan.intra_gpu_pd)
    if f is None:
        return None
    if batching != "inflight":
        raise PlannerError("--intra-gpu-pd applies to in-flight batching")
    kw = dict(overhead_s=float(getattr(cm.engine, "request_overhead_s", 0.0) or 0.0),
              extra_ttft_s=0.0 if lora is None else lora.ttft_s(plan.tp, plan.pp))
    r = best_share(cm, p, running, isl, osl, **kw) if f == "auto" else intra_gpu_pd(cm, p, running, isl, osl, f, **kw)
    out = {k: float(np.ravel(v)[0]) for k, v in r.items()}
    out["bandwidth_contended"] = bool(out["bandwidth_contended"])
    out["auto"] = f == "auto"
    out["aggregated"] = {"ttft_s": agg[0], "tpot_s": agg[1], "output_tokens_per_s": agg[2]}
    out["source"] = "semi-PD (arXiv 2504.19867), Nexus (arXiv 2507.06608): SM split, bandwidth shared by demand"
    return out


def lora_cost(plan: PlanSpec, m: Model, hw: Hardware):
    from planner.costmodel.lora import LoraCost, parse_lora

    if not plan.lora:
        if plan.lora_resident is not None or plan.lora_popularity:
            raise PlannerError("--lora-resident and --lora-popularity need --lora ADAPTERS:RANK")
        return None
    return LoraCost.of(parse_lora(plan.lora, plan.lora_resident, plan.lora_popularity), m, host_link_bytes_per_s(hw))


def lora_summary(lora, plan: PlanSpec, t) -> dict | None:
    """The adapters' memory, the SGMV op's share of a decode step and the miss rate, for JSON ``lora``."""
    if lora is None:
        return None
    if t is None or t.decode is None:
        return lora.summary(plan.tp, plan.pp, 0.0, 0.0, float("nan"))
    op = t.decode.op("lora")
    step_s = float((op.time_s * op.count)[0]) if op is not None else 0.0
    seqs = float(np.asarray(t.concurrency).ravel()[0]) / plan.pp
    return {**lora.summary(plan.tp, plan.pp, seqs, seqs, step_s),
            "decode_step_share": step_s / float(t.decode.time_s.ravel()[0])}


def finetune(plan: PlanSpec, batching: str, cm, p, running: int, isl: int, osl: int, tpot_s: float) -> dict | None:
    """FlexLLM: the PEFT job's tokens/s in this plan's steps while TPOT stays within plan.finetune_tpot_s."""
    if plan.finetune_tpot_s is None:
        return None
    if not plan.finetune_tpot_s > 0:
        raise PlannerError("--finetune-tpot must be a positive duration")
    if batching != "inflight":
        raise PlannerError("--finetune-tpot applies to in-flight batching")
    from planner.serving.finetune import co_finetune

    micro = max(running / plan.pp, 1.0)
    return co_finetune(cm, p, micro, isl + osl / 2.0, tpot_s, plan.finetune_tpot_s, seq_tokens=isl)


def variants(plan: PlanSpec, weights_bytes: float) -> dict | None:
    from planner.serving.finetune import parse_variants, shared_variants

    v = parse_variants(plan.shared_variants)
    return None if v is None else shared_variants(weights_bytes, *v)
