"""The KV block manager of one replica: paged blocks, the prefix cache and its hit counter.

Blocks (``block_tokens`` tokens each; their number comes from the memory model) are held by

* ``used``: prefilling sequences, reserve-mode decodes and the pinned shared prefix;
* ``dec``: on-demand decodes (recomputed from their contexts by the replica);
* ``ret``: a finished conversation turn's KV kept for its next turn (an LRU prefix cache).

The shared system prompt is pinned once (its blocks stay resident); every request that reuses it
counts its tokens as prefix-cache hits, as do later turns that find their history retained.
"""

from __future__ import annotations

from collections import OrderedDict


class KVBlocks:
    __slots__ = ("total", "block_tokens", "used", "dec", "ret", "retained", "pinned", "hit_tokens", "hits", "evictions")

    def __init__(self, total: int, block_tokens: int):
        self.total = total
        self.block_tokens = block_tokens
        self.used = 0
        self.dec = 0
        self.ret = 0
        self.retained: OrderedDict[int, int] = OrderedDict()  # finished turn -> its blocks, oldest first
        self.pinned = 0
        self.hit_tokens = 0  # prompt tokens served from the prefix cache (not prefilled)
        self.hits = 0  # requests with at least one such token
        self.evictions = 0

    def free(self) -> int:
        return self.total - self.used - self.dec - self.ret

    def pin(self, tokens: int) -> None:
        """Keep the first ``tokens`` tokens (the shared prefix) resident."""
        b = -(-tokens // self.block_tokens)
        if b > self.pinned:
            self.used += b - self.pinned
            self.pinned = b

    def retain(self, rid: int, blocks: int) -> None:
        if blocks > 0:
            self.retained[rid] = blocks
            self.ret += blocks

    def take_retained(self, rid: int) -> int:
        """A next turn claims its history's blocks (they move from the cache to the sequence)."""
        b = self.retained.pop(rid)
        self.ret -= b
        return b

    def record_hit(self, tokens: int) -> None:
        if tokens > 0:
            self.hit_tokens += tokens
            self.hits += 1

    def evict(self, need: int, keep: int = -1) -> bool:
        """Evict retained turns, least recently used first, until ``need`` blocks are free."""
        retained = self.retained
        while retained and need > self.free():
            key = next(iter(retained))
            if key == keep:
                if len(retained) == 1:
                    break
                retained.move_to_end(key)
                continue
            self.ret -= retained.pop(key)
            self.evictions += 1
        return need <= self.free()
