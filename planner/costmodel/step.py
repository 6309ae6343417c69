"""What one engine step costs: the per-layer operator graph, FLOPs and bytes per op,
and a roofline time per op, vectorized over plans.

A step processes ``prefill_seqs`` sequences that each add ``prefill_tokens`` new
tokens on top of ``prefill_past`` cached ones (a whole prompt, or one chunk of it),
together with ``decode_seqs`` sequences that each add one token at mean context
``decode_ctx``. Static prefill, decode and in-flight mixed steps are all this one
function; prefill and decode are never written twice.

Time of an op on one device (the slowest pipeline stage sets the pace):
    t = max(FLOPs / (peak x fraction), bytes / (bandwidth x fraction)) + kernel overhead
Communication ops take the collective's latency + bandwidth time. Every op
reports which of compute / memory / communication bounds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.costmodel.collectives import Fabric, all_reduce_time, all_to_all_time, p2p_time
from planner.costmodel.plans import PlanArrays
from planner.costmodel.roofline import gemm_efficiency
from planner.costmodel.shard import attention_shard
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.model import Model

BOUND_NAMES = ("compute", "memory", "communication", "overhead")


@dataclass
class Step:
    prefill_seqs: np.ndarray | float = 0.0
    prefill_tokens: np.ndarray | float = 0.0
    prefill_past: np.ndarray | float = 0.0
    decode_seqs: np.ndarray | float = 0.0
    decode_ctx: np.ndarray | float = 0.0
    # tokens each decoding sequence adds in this step: 1, or k+1 when a speculative step verifies k drafts
    decode_tokens: np.ndarray | float = 1.0

    def arrays(self):
        return tuple(np.asarray(x, dtype=float) for x in (self.prefill_seqs, self.prefill_tokens, self.prefill_past,
                                                          self.decode_seqs, self.decode_ctx, self.decode_tokens))


@dataclass
class OpCost:
    name: str
    kind: str  # gemm | attention | elementwise | comm | memory
    count: float  # how many times per step on one device (layers in the stage, or 1)
    flops: np.ndarray  # per device, per occurrence
    bytes: np.ndarray
    time_s: np.ndarray  # per occurrence, including overhead
    bound: np.ndarray  # index into BOUND_NAMES
    source: str = "roofline"
    algorithm: str = ""
    weight_bytes: np.ndarray | float = 0.0  # weight bytes this op reads (per occurrence)


@dataclass
class StepCost:
    ops: list[OpCost]
    time_s: np.ndarray  # wall time of the step (all stages, as one token sees it)
    stage_time_s: np.ndarray  # time of the slowest pipeline stage (sets throughput)


def _pairs(s, past, window=None):
    """Sum over s new queries of the keys each attends (causal), optionally windowed."""
    full = s * past + s * (s + 1) / 2.0
    if window is None:
        return full
    w = float(window)
    # key count of query i (1-based) is min(past + i, w)
    i_cross = np.clip(w - past, 0, s)  # queries before the window saturates
    below = i_cross * past + i_cross * (i_cross + 1) / 2.0
    return np.minimum(full, below + (s - i_cross) * w)


class CostModel:
    """Step costs of one model on one hardware type, for arrays of plans."""

    def __init__(self, model: Model, hw: Hardware, *, engine: Engine | None = None, profile=None,
                 weight_stream: tuple[float, float] | None = None):
        """``weight_stream`` = (fraction of the weights not resident, bytes/s of the link they stream over):
        that share of every weight read comes over the link, prefetched while the step computes."""
        self.weight_stream = weight_stream
        self.model = model
        self.hw = hw
        self.fabric = Fabric.of(hw)
        self.bw = hw.memory_bandwidth_bytes_per_s * hw.achievable.memory.fraction
        ov = hw.overheads
        engine = engine or Engine()
        self.engine = engine
        self.kernel_s = (ov.kernel_s.value if ov.kernel_s else 0.0) + engine.kernel_overhead_s
        self.step_s = (ov.step_s.value if ov.step_s else 0.0) + engine.step_overhead_s
        self.half_m = hw.achievable.matmul_half_m or 0.0
        el = hw.achievable.elementwise
        self.elem_rate = hw.peak("fp32") * el.fraction if el is not None and hw.supports("fp32") else None
        kv = hw.achievable.kv_read
        self.kv_bw = hw.memory_bandwidth_bytes_per_s * kv.fraction if kv else self.bw
        if profile is None and hw.kernel_profile:
            from planner.costmodel.profile import KernelProfile

            profile = KernelProfile.load(hw.kernel_profile)
        self.profile = profile  # measured kernel profile (planner.costmodel.profile), or None

    # ---- roofline primitives -----------------------------------------------------
    def _gemm(self, name, m, k_elems, flops_rate, wbytes, count, *, m_eff=None, in_out_elems=0.0, weight_touch=None):
        """A GEMM over ``m`` tokens and a weight of ``k_elems`` elements (per device)."""
        m = np.asarray(m, dtype=float)
        flops = 2.0 * m * k_elems
        weight_read = (k_elems if weight_touch is None else weight_touch) * wbytes
        byts = weight_read + m * in_out_elems * self._act
        mm = m if m_eff is None else m_eff
        eff = gemm_efficiency(mm, self.half_m)
        with np.errstate(divide="ignore", invalid="ignore"):  # no tokens: no work, no time
            tc = np.where(flops > 0, flops / (flops_rate * eff), 0.0)
        tm = byts / self.bw
        op = self._op(name, "gemm", count, flops, byts, tc, tm)
        op.weight_bytes = weight_read
        if self.profile is not None and weight_touch is None and m_eff is None:
            from planner.costmodel.profile import SOURCES

            t_meas, src = self.profile.gemm_time(m, k_elems, self._gemm_dtype)
            if src:
                op.time_s = np.broadcast_to(t_meas, op.time_s.shape)
                op.source = SOURCES[src]
        return op

    def _op(self, name, kind, count, flops, byts, tc, tm, *, comm=None, algorithm=""):
        flops, byts = np.asarray(flops, float), np.asarray(byts, float)
        tc, tm = np.asarray(tc, float), np.asarray(tm, float)
        active = (flops > 0) | (byts > 0)
        ovh = np.where(active, self.kernel_s, 0.0)
        if comm is not None:
            t = comm + ovh
            bound = np.where(comm > 0, 2, 3)
        else:
            t = np.maximum(tc, tm) + ovh
            bound = np.where(ovh > np.maximum(tc, tm), 3, np.where(tc >= tm, 0, 1))
        shape = np.broadcast_shapes(self._shape, t.shape, flops.shape, byts.shape)
        b = lambda x: np.broadcast_to(x, shape)  # noqa: E731
        return OpCost(name, kind, count, b(flops), b(byts), b(t), b(bound), algorithm=algorithm)

    def _elementwise(self, name, elems, count, reads=1.0, writes=1.0, flops_per_elem=4.0):
        """Norms, activations, residual adds: bandwidth bound on GPUs; where a device's calibrated
        elementwise rate is known (CPUs: exp and division per element) its compute time counts too."""
        byts = np.asarray(elems, float) * self._act * (reads + writes)
        flops = flops_per_elem * np.asarray(elems, float)
        tc = flops / self.elem_rate if self.elem_rate else 0.0
        return self._op(name, "elementwise", count, flops, byts, tc, byts / self.bw)

    # ---- the step ------------------------------------------------------------------
    def step(self, plans: PlanArrays, step: Step) -> StepCost:
        m = self.model
        p_seqs, p_tok, p_past, d_seqs, d_ctx, d_tok = step.arrays()
        self._shape = np.broadcast_shapes(plans.tp.shape, *(x.shape for x in step.arrays()))
        self._gemm_dtype = plans.compute_dtype
        self._act = plans.act_bytes
        tp, pp, adp = plans.tp.astype(float), plans.pp.astype(float), plans.adp.astype(float)
        ep = plans.ep.astype(float)
        wb, kvb = plans.weight_bytes, plans.kv_bytes
        # tokens through this device's GEMMs (attention-DP splits the batch)
        T = (p_seqs * p_tok + d_seqs * d_tok) / adp
        out_tokens = (p_seqs + d_seqs * d_tok) / adp  # rows through lm_head
        h = m.hidden_size
        layers_stage = m.num_layers / pp
        ops: list[OpCost] = []
        a = m.attention

        # -- attention block --------------------------------------------------------
        sh = attention_shard(m, tp)
        heads, qkv_w, o_w, kv_tok_elems, qkv_out = sh.heads, sh.qkv_elems, sh.o_elems, sh.kv_elems_per_token, sh.qkv_out
        pf_dqk, pf_dv, dc_dqk, dc_dv = sh.prefill_dqk, sh.prefill_dv, sh.decode_dqk, sh.decode_dv

        ops.append(self._elementwise("attn_norm", T * h, layers_stage))
        ops.append(self._gemm("qkv_proj", T, qkv_w, plans.gemm_flops, wb, layers_stage, in_out_elems=h + qkv_out))

        # attention core: full-attention and sliding-window layers separately
        n_slide = m.num_sliding_layers()
        groups = [("attention", m.num_layers - n_slide, None)]
        if n_slide:
            groups.append(("attention_swa", n_slide, a.sliding_window))
        for name, n_layers, window in groups:
            if n_layers == 0:
                continue
            ctx_d = d_ctx if window is None else np.minimum(d_ctx, window)
            pairs_p = p_seqs * _pairs(p_tok, p_past, window) / adp
            pairs_d = d_seqs * d_tok * ctx_d / adp
            flops = 2.0 * heads * (pairs_p * (pf_dqk + pf_dv) + pairs_d * (dc_dqk + dc_dv))
            kv_read = d_seqs * ctx_d / adp * kv_tok_elems * kvb  # decode reads the whole cache once per sequence
            # prefill (flash attention) reads Q/K/V of the new tokens and cached K/V once per sequence
            ctx_p = p_past if window is None else np.minimum(p_past, window)
            kv_read = kv_read + p_seqs / adp * (ctx_p + p_tok) * kv_tok_elems * kvb
            q_o = T * (heads * (pf_dqk + pf_dv)) * self._act
            kv_write = T * kv_tok_elems * kvb
            byts = kv_read + q_o + kv_write
            t_mem = (byts - kv_read) / self.bw + kv_read / self.kv_bw
            ops.append(self._op(name, "attention", n_layers / pp, flops, byts, flops / plans.attn_flops, t_mem))

        ops.append(self._gemm("o_proj", T, o_w, plans.gemm_flops, wb, layers_stage, in_out_elems=heads * pf_dv + h))
        ar_bytes = T * h * self._act
        t_ar, sw = all_reduce_time(self.fabric, tp, ar_bytes)
        n_ar = 1 if m.parallel_attn_mlp else 2
        algo = "in-switch" if np.any(sw) else "ring"
        # no collective (and no kernel) when tensor parallelism is off
        ops.append(self._op("tp_allreduce", "comm", layers_stage * n_ar, 0.0, np.where(tp > 1, ar_bytes, 0.0), 0.0, 0.0,
                            comm=t_ar, algorithm=algo))

        # -- MLP / MoE block ----------------------------------------------------------
        if not m.parallel_attn_mlp:
            ops.append(self._elementwise("mlp_norm", T * h, layers_stage))
        mats = 3 if m.ffn_gated else 2
        dense_frac = m.num_dense_layers / m.num_layers
        if m.num_dense_layers:
            ffn = m.intermediate_size / tp
            cnt = layers_stage * dense_frac
            # two GEMMs as engines run them: gate and up fused (or up alone), then down
            ops.append(self._gemm("mlp_up", T, (mats - 1) * h * ffn, plans.gemm_flops, wb, cnt, in_out_elems=h + (mats - 1) * ffn))
            ops.append(self._elementwise("mlp_act", T * ffn, cnt, reads=mats - 1, flops_per_elem=5.0 if m.ffn_gated else 4.0))
            ops.append(self._gemm("mlp_down", T, h * ffn, plans.gemm_flops, wb, cnt, in_out_elems=ffn + h))
        if m.moe:
            mo = m.moe
            cnt = layers_stage * (1 - dense_frac)
            moe_group = tp * adp
            moe_tp = moe_group / ep
            T_group = T * adp  # tokens routed within the MoE group
            e_elems = m.expert_params()
            ops.append(self._gemm("router", T, h * mo.num_experts, plans.gemm_flops, 2.0, cnt, in_out_elems=h))
            # distinct experts a batch touches: E (1 - (1 - k/E)^T), uniform routing
            touched = mo.num_experts * (1.0 - (1.0 - mo.top_k / mo.num_experts) ** T_group)
            touched_dev = touched / ep
            w_dev = e_elems / moe_tp  # elements of one expert on this device
            m_per_expert = T_group * mo.top_k / np.maximum(touched, 1e-9)
            ops.append(self._gemm(
                "experts", T_group * mo.top_k / moe_group, e_elems, plans.gemm_flops, wb, cnt,
                m_eff=m_per_expert, in_out_elems=h, weight_touch=touched_dev * w_dev,
            ))
            if mo.num_shared_experts:
                sw_elems = m.shared_expert_params() / tp
                ops.append(self._gemm("shared_expert", T, sw_elems, plans.gemm_flops, wb, cnt, in_out_elems=2 * h))
            # tokens leave the device for experts elsewhere only when attention is data parallel
            a2a = T * mo.top_k * h * self._act * (ep - 1) / np.maximum(ep, 1) * 2.0
            t_a2a = np.where(adp > 1, all_to_all_time(self.fabric, ep, a2a), 0.0)
            ops.append(self._op("ep_alltoall", "comm", cnt, 0.0, np.where(adp > 1, a2a, 0.0), 0.0, 0.0, comm=t_a2a, algorithm="all-to-all"))

        # -- once per step: embedding, final norm, lm_head, pipeline hops ---------------------
        ops.append(self._op("embedding", "memory", 1.0, 0.0, T * h * plans.head_bytes + T * h * self._act, 0.0,
                            T * h * (plans.head_bytes + self._act) / self.bw))
        ops.append(self._elementwise("final_norm", out_tokens * h, 1.0))
        ops.append(self._gemm("lm_head", out_tokens, h * m.vocab_size / tp, plans.gemm_flops, plans.head_bytes, 1.0,
                              in_out_elems=h + m.vocab_size / tp * 2))
        t_pp = p2p_time(self.fabric, tp * pp, T * h * self._act)
        ops.append(self._op("pp_sendrecv", "comm", 1.0, 0.0, np.where(pp > 1, T * h * self._act, 0.0), 0.0, 0.0,
                            comm=np.where(pp > 1, t_pp * (pp - 1), 0.0), algorithm="send/recv"))

        once = {"embedding", "final_norm", "lm_head", "pp_sendrecv"}
        layer_time = sum(o.time_s * o.count for o in ops if o.name not in once)  # one stage's layers
        head_time = sum(o.time_s * o.count for o in ops if o.name in once - {"pp_sendrecv"})
        hops = next(o.time_s for o in ops if o.name == "pp_sendrecv")
        # a token passes every stage in turn; the slowest stage (layers + lm_head) sets the pace
        latency = layer_time * pp + head_time + hops + self.step_s
        stage = layer_time + head_time + self.step_s
        if self.weight_stream is not None:
            frac, link_bw = self.weight_stream
            streamed = frac * sum(np.asarray(o.weight_bytes) * o.count for o in ops)
            exposed = np.maximum(streamed / link_bw - stage, 0.0)  # prefetch hides what the compute covers
            ops.append(self._op("weight_stream", "memory", 1.0, 0.0, streamed, 0.0, 0.0, comm=exposed, algorithm="prefetch"))
            latency, stage = latency + exposed, stage + exposed
        return StepCost(ops=ops, time_s=latency, stage_time_s=stage)
