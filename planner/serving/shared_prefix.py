"""A prefix every request shares (a system prompt) in ``estimate``'s steady state, priced as the simulator prices it.

``--shared-prefix F``: the first floor(F x prompt) tokens of every request are one prefix. An engine with a prefix cache
(Engine.prefix_caching) serves them from it, so a prompt computes only the rest; where the running sequences share the
cached blocks (Engine.prefix_blocks_shared: not llama.cpp, whose slots keep their own copies) the prefix's blocks are
held once a device, not once a sequence, and a decode step reads them from memory once for all the sequences while
they and one wave of attention CTAs fit the device's last-level cache (planner.serving.sim.decodes.DecodeBatch
.shared_reread with one share group; the cache in tokens is shared_read_cap's, which the simulator's replicas take too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.costmodel.memory import kv_bytes_per_seq, kv_bytes_per_token_layers
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.model import Model


@dataclass(frozen=True)
class SharedPrefix:
    tokens: int = 0  # prompt tokens the prefix cache serves
    bytes: float = 0.0  # KV bytes a device holds once for them (whole blocks)
    # (cache tokens, attention CTAs of one sequence's layer, SMs) of the decode reads' rule; None: every sequence's
    # read of the prefix is priced
    read: tuple[float, int, int] | None = None
    note: str = ""


def shared_prefix(model, hw, engine, plans, plan, isl: int) -> SharedPrefix:
    """What ``plan.shared_prefix`` of an ``isl``-token prompt (as the model sees it) means on ``hw`` with ``engine``."""
    frac = float(plan.shared_prefix)
    if not frac:
        return SharedPrefix()
    tok = min(int(frac * isl), max(int(isl) - 1, 0))
    head = f"--shared-prefix {frac:g}: the first {tok:,} prompt tokens are one prefix every request shares"
    if tok < 1:
        return SharedPrefix(note=f"{head}: none of a {isl:,}-token prompt")
    if not engine.prefix_caching:
        return SharedPrefix(note=f"{head}, but {engine.name} runs without a prefix cache by default (engine profile: "
                                 "prefix_caching), so every request computes, holds and reads its own copy")
    if not engine.prefix_blocks_shared:
        return SharedPrefix(tok, note=f"{head}: {engine.name} serves them from its prefix cache, but each running "
                                      "sequence holds and reads its own copy (engine profile: prefix_blocks_shared)")
    B = int(engine.kv_block_tokens)
    held = float(kv_bytes_per_seq(model, plans, tok, B, engine)[0])  # its blocks, held once (the simulator pins them)
    full, swa = kv_bytes_per_token_layers(model, plans)
    cap, ctas, sms, why = shared_read_cap(model, hw, engine, float(full[0] + swa[0]), int(plan.tp), int(plan.pp))
    read = (cap, ctas, sms) if cap > 0 and sms > 0 else None
    return SharedPrefix(tok, held, read, f"{head}: served from {engine.name}'s prefix cache and held once a GPU "
                                         f"({held / 2**20:,.1f} MiB of KV); {why}")


def shared_read_cap(model: Model, hw: Hardware, engine: Engine, kv_bytes_per_token: float, tp: int,
                    pp: int) -> tuple[float, int, int, str]:
    """(tokens, CTAs, SMs, what it means) for the decode steps' reads of blocks running sequences share
    (planner.serving.sim.decodes): how many tokens' KV of one layer (``kv_bytes_per_token`` over the device's share of
    the attention layers) the device's last-level cache holds, the attention CTAs one sequence's layer takes (its KV
    heads on a device; 1 under MLA) and the SMs, one wave of them. Tokens 0 (every sequence's reads priced) without a
    cache size or an SM count, or for an engine whose sequences keep their own copies (Engine.prefix_blocks_shared)."""
    ctas = 1 if model.attention.mla else max(1, -(-int(model.num_kv_heads) // int(tp)))
    sms = int(hw.sm_count.value) if hw.sm_count is not None else 0
    cache = hw.last_level_cache
    layers = float(model.num_attention_layers) / pp
    if not engine.prefix_blocks_shared:
        return 0.0, ctas, sms, (f"every sequence reads its own copy of a cached prefix: {engine.name} keeps one a slot "
                                f"(prefix_blocks_shared)")
    if cache is None or layers <= 0 or kv_bytes_per_token <= 0:
        return 0.0, ctas, sms, (f"blocks that running sequences share (a cached prompt or system prompt) read once per "
                                f"sequence: {hw.id} has no last-level cache size on record")
    if not sms:
        return 0.0, ctas, sms, (f"blocks that running sequences share read once per sequence: {hw.id} has no SM count "
                                f"on record (a wave of attention CTAs)")
    tokens = cache.value / (kv_bytes_per_token / layers)
    return tokens, ctas, sms, (f"blocks that running sequences share read from memory once a step while they and a "
                               f"wave of attention CTAs fit the {cache.value / 2**20:g} MiB last-level cache "
                               f"({tokens:,.0f} tokens of one layer's KV), else once per sequence")


def read_saving(read, hit, n, ctx) -> np.ndarray | float:
    """Tokens a sequence's decode reads come to less when ``n`` running sequences at mean context ``ctx`` share a
    ``hit``-token prefix: (n - 1) / n of it while the prefix and one wave of attention CTAs (min(n x CTAs, SMs), each
    streaming ctx / CTAs tokens) fit the cache of ``read`` (SharedPrefix.read), else 0: a wave streams past the cache
    and a shared block is gone before its next reader. All arguments broadcast (numpy)."""
    if read is None:
        return 0.0  # the hot path of a plan search: nothing to broadcast
    n, ctx, hit = (np.asarray(x, float) for x in (n, ctx, hit))
    cap, ctas, sms = read
    h = np.minimum(hit, ctx)
    wave = np.minimum(n * ctas, sms)
    fits = (h + wave * ctx / ctas <= cap) & (n > 1)
    return np.where(fits, h * (n - 1) / np.maximum(n, 1.0), 0.0)
