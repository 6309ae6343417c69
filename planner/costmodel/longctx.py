"""Long-context terms of the attention core (costmodel/step.py calls them): causal (query, key) pair counts with an
optional window, sparse attention's share of the pairs and KV reads (fields set by costmodel/sparse.py), and the
context-parallel ring's communication (ring attention in prefill, a distributed KV pool in decode)."""

from __future__ import annotations

import numpy as np

from planner.costmodel.collectives import all_reduce_time, p2p_time


def causal_pairs(s, past, window=None):
    """Sum over s new queries of the keys each attends (causal), optionally windowed (a number or an array;
    an infinite window is full attention)."""
    full = s * past + s * (s + 1) / 2.0
    if window is None:
        return full
    w_in = np.asarray(window, float)
    finite = np.isfinite(w_in)
    w = np.where(finite, w_in, 0.0)
    # key count of query i (1-based) is min(past + i, w)
    i_cross = np.clip(w - past, 0, s)  # queries before the window saturates
    below = i_cross * past + i_cross * (i_cross + 1) / 2.0
    return np.where(finite, np.minimum(full, below + (s - i_cross) * w), full)


def sparse_terms(c, sh):
    """(prefill pairs, decode pairs, prefill KV elements read, decode KV elements read) of a full-attention layer
    under sparse attention (costmodel/sparse.py): dense heads compute their kept share of the prefill pairs (plus the
    pattern probe) and read their decode budget (plus the page selector's reads); streaming heads see sinks + a
    recent window. With every field at its default this is dense attention, term for term."""
    p = c.plans
    h, W = np.asarray(p.sa_dense, float), np.asarray(p.sa_window, float)
    past_all = c.p_past + c.p_tok
    probe = np.minimum(np.asarray(p.sa_probe_q, float), c.p_tok) * past_all
    dense_p = causal_pairs(c.p_tok, c.p_past) * np.asarray(p.sa_prefill_keep, float) + probe
    pairs_p = c.p_seqs / c.adp * (h * dense_p + (1.0 - h) * causal_pairs(c.p_tok, c.p_past, W))
    ctx_dense = np.minimum(c.d_ctx, np.asarray(p.sa_decode_budget, float))
    ctx_stream = np.minimum(c.d_ctx, W)
    select = np.asarray(p.sa_select, float) * c.d_ctx
    pairs_d = c.d_seqs * c.d_tok / c.adp * (h * (ctx_dense + select) + (1.0 - h) * ctx_stream)
    kv_d = c.d_seqs / c.adp * (h * (ctx_dense + select) + (1.0 - h) * ctx_stream) * sh.kv_elems_per_token
    kv_p = c.p_seqs / c.adp * (h * past_all + (1.0 - h) * (np.minimum(c.p_past, W) + c.p_tok)) * sh.kv_elems_per_token
    return pairs_p, pairs_d, kv_p, kv_d


def cp_ring(cm, c, sh, attn_ops: list, name):
    """Context-parallel communication per layer. Prefill (ring attention): each device passes its block of the
    sequence's K/V to the next, cp - 1 times, while it computes attention on the block it holds, so only what the
    attention time does not cover is exposed. Decode (a distributed KV pool, DistAttention style): each device
    attends over its share of the cache and the partial outputs (values plus fp32 max and sum per head) are
    all-reduced across the cp devices. Links: the tier a group of tp x cp devices crosses."""
    cp = c.cp
    group = c.tp * cp
    kv_block = c.p_seqs / c.adp * (c.p_past + c.p_tok) / cp * sh.kv_elems_per_token * c.plans.kv_bytes
    t_ring = np.where(cp > 1, (cp - 1.0) * p2p_time(cm.fabric, group, kv_block), 0.0)
    attn = [o for o in attn_ops if o.kind == "attention"]
    n_attn = sum(o.count for o in attn)
    t_attn = sum(o.time_s * o.count for o in attn) / np.maximum(n_attn, 1e-9)  # per layer
    exposed_p = np.maximum(t_ring - np.where(c.p_seqs > 0, t_attn, 0.0), 0.0)
    partial = c.d_seqs * c.d_tok / c.adp * sh.heads * (sh.decode_dv + 2.0) * 4.0
    t_comb, _ = all_reduce_time(cm.fabric, np.maximum(cp, 1.0), partial, call_s=cm.collective_call_s)
    t_comb = np.where((cp > 1) & (c.d_seqs > 0), t_comb, 0.0)
    byts = np.where(cp > 1, (cp - 1.0) * kv_block + partial, 0.0)
    return cm._op(name, "comm", c.layers_stage, 0.0, byts, 0.0, 0.0, comm=exposed_p + t_comb,
                  algorithm="ring attention / partial-output all-reduce")
