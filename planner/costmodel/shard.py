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
        # a sparse-attention indexer (DeepSeek-V3.2) is replicated too: every rank scores all of its sequences' tokens.
        # Under IndexShare (GLM-5.2) only some layers have one: a layer's share is the mean over the attention layers
        ix = a.index
        share = model.num_indexer_layers / model.num_attention_layers if ix else 0.0
        idx = ix.projection_params(h, ml.q_lora_rank) * share if ix else 0.0
        # the down-projections and the latent cache are replicated on every TP rank
        return AttentionShard(
            heads=heads,
            qkv_elems=q_down + kv_down + idx + (q_up + kv_up) / tp,
            o_elems=o / tp,
            other_elems=np.full_like(tp, model.attention_params() - (q_down + kv_down + q_up + kv_up + o)
                                     + (model.indexer_params() / model.num_attention_layers - idx if ix else 0.0)),
            qkv_out=heads * qk + latent + (((ix.heads + 1) * ix.head_dim + ix.heads) * share if ix else 0),
            kv_elems_per_token=np.full_like(tp, latent),
            prefill_dqk=qk, prefill_dv=ml.v_head_dim, decode_dqk=latent, decode_dv=ml.kv_lora_rank,
        )
    d = model.head_dim
    kvh = np.maximum(model.num_kv_heads / tp, 1.0)  # KV heads replicated when tp exceeds them
    qd, kvd = model.num_heads * d, model.num_kv_heads * d
    gate = 1 if a.output_gate else 0  # the query projection's per-head output gate (Qwen3-Next)
    unsplit = (2 + gate) * h * qd + 2 * h * kvd
    return AttentionShard(
        heads=heads,
        qkv_elems=h * ((1 + gate) * heads + 2 * kvh) * d,
        o_elems=heads * d * h,
        other_elems=(model.attention_params() - unsplit) / tp,
        qkv_out=((1 + gate) * heads + 2 * kvh) * d,
        kv_elems_per_token=2 * kvh * d,
        prefill_dqk=d, prefill_dv=d, decode_dqk=d, decode_dv=d,
    )


@dataclass(frozen=True)
class LinearShard:
    """One linear-attention (Gated DeltaNet) layer on one of ``tp`` devices: tensor parallelism splits its key and
    value heads (the input projection by columns, the output projection by rows), so each device holds its heads'
    weights, convolution channels and recurrent state."""

    key_heads: np.ndarray
    value_heads: np.ndarray
    in_elems: np.ndarray  # input projection weights (q, k, v, output gate z, beta, alpha)
    in_out: np.ndarray  # its outputs per token
    conv_channels: np.ndarray  # q, k and v channels through the causal convolution
    out_elems: np.ndarray  # output projection weights
    other_elems: np.ndarray  # convolution taps, decay parameters, gated norm
    recurrent_elems: np.ndarray  # recurrent state of one sequence (value heads x value dim x key dim)
    conv_state_elems: np.ndarray  # the convolution's window of one sequence (its last conv_kernel - 1 inputs)
    key_head_dim: int
    value_head_dim: int


def linear_shard(model: Model, tp) -> LinearShard:
    lin = model.attention.linear
    assert lin is not None
    tp = np.asarray(tp, dtype=float)
    h = model.hidden_size
    hk, hv = np.maximum(lin.key_heads / tp, 1.0), np.maximum(lin.value_heads / tp, 1.0)
    dk, dv = lin.key_head_dim, lin.value_head_dim
    conv = 2 * hk * dk + hv * dv
    in_out = conv + hv * dv + 2 * hv
    other = conv * lin.conv_kernel + 2 * hv + dv
    return LinearShard(key_heads=hk, value_heads=hv, in_elems=h * in_out, in_out=in_out, conv_channels=conv,
                       out_elems=hv * dv * h, other_elems=other,
                       recurrent_elems=hv * dv * dk, conv_state_elems=conv * (lin.conv_kernel - 1), key_head_dim=dk,
                       value_head_dim=dv)
