"""How one attention layer splits across ``tp`` tensor-parallel devices.

Shared by the step cost (what each device computes and reads) and the memory model
(what each device stores), so the split is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.specs.model import Model


@dataclass(frozen=True)
class AttentionShard:
    heads: np.ndarray  # query heads on one device
    qkv_elems: np.ndarray  # input-projection weights on one device (MLA: down + split up-projections)
    o_elems: np.ndarray  # output-projection weights on one device
    other_elems: np.ndarray  # biases and norms inside attention, on one device
    qkv_out: np.ndarray  # projection outputs per token on one device
    kv_elems_per_token: np.ndarray  # cached elements per token per layer on one device
    prefill_dqk: int  # per-head dims of the attention core (prefill: MLA decompressed)
    prefill_dv: int
    decode_dqk: int  # decode: MLA attends over the absorbed latent
    decode_dv: int


def attention_shard(model: Model, tp) -> AttentionShard:
    tp = np.asarray(tp, dtype=float)
    h, a = model.hidden_size, model.attention
    heads = model.num_heads / tp
    if a.mla:
        ml = a.mla
        qk = ml.qk_nope_head_dim + ml.qk_rope_head_dim
        q_up = (ml.q_lora_rank if ml.q_lora_rank else h) * model.num_heads * qk
        q_down = h * ml.q_lora_rank if ml.q_lora_rank else 0
        kv_down = h * (ml.kv_lora_rank + ml.qk_rope_head_dim)
        kv_up = ml.kv_lora_rank * model.num_heads * (ml.qk_nope_head_dim + ml.v_head_dim)
        o = model.num_heads * ml.v_head_dim * h
        latent = ml.kv_lora_rank + ml.qk_rope_head_dim
        # the down-projections and the latent cache are replicated on every TP rank
        return AttentionShard(
            heads=heads,
            qkv_elems=q_down + kv_down + (q_up + kv_up) / tp,
            o_elems=o / tp,
            other_elems=np.full_like(tp, model.attention_params() - (q_down + kv_down + q_up + kv_up + o)),
            qkv_out=heads * qk + latent,
            kv_elems_per_token=np.full_like(tp, latent),
            prefill_dqk=qk, prefill_dv=ml.v_head_dim, decode_dqk=latent, decode_dv=ml.kv_lora_rank,
        )
    d = model.head_dim
    kvh = np.maximum(model.num_kv_heads / tp, 1.0)  # KV heads replicated when tp exceeds them
    qd, kvd = model.num_heads * d, model.num_kv_heads * d
    unsplit = 2 * h * qd + 2 * h * kvd
    return AttentionShard(
        heads=heads,
        qkv_elems=h * (heads + 2 * kvh) * d,
        o_elems=heads * d * h,
        other_elems=(model.attention_params() - unsplit) / tp,
        qkv_out=(heads + 2 * kvh) * d,
        kv_elems_per_token=2 * kvh * d,
        prefill_dqk=d, prefill_dv=d, decode_dqk=d, decode_dv=d,
    )
