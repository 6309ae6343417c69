"""The KV block manager of one replica: paged blocks, the prefix cache and its hit counter.

Blocks (``block_tokens`` tokens each; their number comes from the memory model) are held by

* ``used``: prefilling sequences, reserve-mode decodes and the pinned shared prefix;
* ``dec``: on-demand decodes (recomputed from their contexts by the replica);
* ``ret``: a finished conversation turn's KV kept for its next turn (an LRU prefix cache).

The shared system prompt is pinned once (its blocks stay resident); every request that reuses it
counts its tokens as prefix-cache hits, as do later turns that find their history retained.

A client that sends the same prompts again (``Requests.prompt_key``) finds a prompt's full blocks where an earlier
send left them: held by the running sequences that use it (``inuse``: shared, counted once in ``used``) or, once none
does, among the retained entries (key ``-2 - prompt``), evicted least recently used first like a finished turn.
"""

from __future__ import annotations

from collections import OrderedDict


class KVBlocks:
    __slots__ = ("total", "block_tokens", "used", "dec", "ret", "retained", "pinned", "hit_tokens", "hits", "evictions",
                 "inuse")

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
        self.inuse: dict[int, list[int]] = {}  # reused prompt -> [its cached blocks, running sequences sharing them]

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

    # ------------------------------------------------------------ prompts a client sends again
    def prompt_blocks(self, key: int) -> int:
        """Blocks of prompt ``key`` resident in the cache (0: none)."""
        ent = self.inuse.get(key)
        return ent[0] if ent is not None else self.retained.get(-2 - key, 0)

    def acquire_prompt(self, key: int) -> None:
        """A sequence admitted with prompt ``key``'s cached blocks shares them (they leave the evictable entries)."""
        ent = self.inuse.get(key)
        if ent is not None:
            ent[1] += 1
            return
        b = self.retained.pop(-2 - key)
        self.ret -= b
        self.used += b
        self.inuse[key] = [b, 1]

    def release_prompt(self, key: int) -> None:
        """A sequence sharing prompt ``key``'s blocks ended or was preempted; the last one leaves them evictable."""
        ent = self.inuse[key]
        ent[1] -= 1
        if ent[1] == 0:
            del self.inuse[key]
            self.used -= ent[0]
            self.retain(-2 - key, ent[0])

    def cache_prompt(self, key: int, blocks: int) -> None:
        """The full blocks of prompt ``key`` that a sequence computed (and just freed) stay cached, unless that
        prompt's blocks already are."""
        if blocks > 0 and key not in self.inuse and (-2 - key) not in self.retained:
            self.retain(-2 - key, blocks)
