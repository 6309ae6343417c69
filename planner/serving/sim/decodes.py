"""The running decode batch of one replica, advanced in steps without touching each sequence.

A sequence that joins at step counter ``s0`` with context ``ctx`` has context ``ctx0 + E s`` at
step ``s`` (E tokens per step: 1, or more with speculative decoding); the batch keeps ``ctx0`` per
slot and the sum over slots, so the mean context at any step is one division. Completions sit in a
heap keyed by the step they finish at; a slot's generation number invalidates stale entries.

Sequences that share a cached prefix (the same physical KV blocks: a system prompt, a prompt a client sends again)
are counted by share group. A decode step's attention reads each sequence's whole context, but a layer's attention
kernel runs the sequences' CTAs (``ctas`` a sequence: its KV heads on a device) in waves of one a SM (``sms``), each
starting at its sequence's first block, so a block several running sequences share is read from device memory by its
first reader and from the on-chip cache (Hardware.last_level_cache) by the others, while the distinct shared tokens
and one wave's stream fit in the cache (``reread_cap``: tokens of one layer's KV it holds). Past that, the readers of
a block in a wave are not in step (each CTA runs at its own pace through its own context), so the stream between two of
them can evict it, and every sequence's read is priced, as without a cache: of the two bounds (readers in a wave in
lockstep, hitting whatever the stream; or not at all), the published rows side with the second (docs/accuracy.md,
December 2026). ``shared_reread`` is what the step's KV reads come to less per sequence: (tokens the sharers hold
together - distinct shared tokens) / sequences. No cache size or SM count on record (``reread_cap`` or ``sms`` 0):
every sequence's reads from memory. The cache's own bandwidth, several times the memory's, is not priced.
"""

from __future__ import annotations

import heapq
import math

import numpy as np


class DecodeBatch:
    def __init__(self, max_seqs: int, E: float, block_tokens: int, track_blocks: bool, clip: int | None = None,
                 share=None, groups: int = 0, reread_cap: float = 0.0, ctas: int = 1, sms: int = 0):
        cap = max_seqs + 1
        self.E = E
        self.B = block_tokens
        self.track = track_blocks  # on-demand KV: blocks grow with the context
        self.n = 0
        self.s = 0  # decode steps run so far
        self.sum_ctx0 = 0.0
        # the outputs still to come, each counted at most ``clip`` (SGLang's estimate; None: not tracked), in one
        # expression: a sequence with more than clip left counts clip until the step it crosses (``crossing``, a
        # heap), the others sum their remaining count at join and join step (lin_*), advanced by E per step
        self.clip = clip
        self.big = [False] * cap
        self.n_big = 0
        self.crossing: list[tuple] = []
        self.lin_n = self.lin_rem0 = self.lin_s0 = 0
        self.heap: list[tuple] = []
        self.rid = [-1] * cap
        self.ctx0 = [0.0] * cap
        self.rem0 = [0] * cap
        self.s0 = [0] * cap
        self.blocks = [0] * cap  # reserve mode: blocks held for the whole sequence
        self.gen = [0] * cap
        self.shared = [0] * cap
        self.own0 = [0.0] * cap  # on-demand: own tokens = own0 + E s
        self.free_slots = list(range(cap - 1, -1, -1))
        self.order: dict[int, None] = {}  # slots, oldest first (preemption takes the newest)
        # on-demand block count in whole numbers while E and every own0 are whole: with u = own0 + B - 1
        # = B q + r, ceil((own0 + S) / B) = q + S // B + [r >= B - S % B] for S = E s, so the count is
        # sum(q) + n (S // B) + (sequences with r >= B - S % B), from a histogram of r
        self.whole = float(E).is_integer()
        self.q_sum = 0
        self.r_hist = [0] * block_tokens
        # sequences sharing cached prefix blocks, by share group (``share``: each request's group, Requests.share_group)
        self.share = share
        self.g_n = [0] * groups  # running sequences of each group that share its blocks
        self.g_sum = [0] * groups  # the shared tokens they hold, together
        self.sh_n = 0
        self.sh_sum = 0
        self.sh_distinct = 0.0  # sum over groups of their mean shared tokens: what one read of each group's blocks takes
        self.reread_cap = float(reread_cap)
        self.ctas = int(ctas)  # attention CTAs a sequence's layer takes (its KV heads on a device; 1 under MLA)
        self.sms = int(sms)  # SMs: the CTAs of one wave (one resident attention CTA each)

    def mean_ctx(self) -> float:
        return self.sum_ctx0 / self.n + self.E * self.s

    def read_ctx(self) -> float:
        """The mean context a decode step's KV reads come to a sequence: mean_ctx less shared_reread, which only
        sequences that share blocks compute (x - 0.0 is x: the same bits as the C core's)."""
        c = self.sum_ctx0 / self.n + self.E * self.s
        if self.sh_n > 1:
            c -= self.shared_reread(c)
        return c

    def shared_reread(self, c: float | None = None) -> float:
        """Tokens a sequence the step's KV reads come to less at mean context ``c`` (None: mean_ctx), since running
        sequences that share cached blocks read them from memory once a step while they and a wave's stream fit the
        cache (module docstring); 0 where no two share, past that, or where no cache size or SM count is on record."""
        if self.sh_n < 2 or self.reread_cap <= 0.0 or self.sms <= 0:
            return 0.0
        n = self.n
        distinct = self.sh_distinct
        if c is None:
            c = self.mean_ctx()
        wave = min(n * self.ctas, self.sms)
        if distinct + wave * c / self.ctas > self.reread_cap:
            return 0.0  # a wave streams past what the cache holds: a shared block is gone before its next reader
        excess = float(self.sh_sum) - distinct
        if excess <= 0.0:
            return 0.0
        return excess / n

    def _share(self, rid: int, shared: int, sign: int) -> None:
        g = self.share[rid] if self.share is not None else 0
        n, t = self.g_n[g], self.g_sum[g]
        if n > 0:
            self.sh_distinct -= t / n
        n += sign
        t += sign * shared
        self.g_n[g], self.g_sum[g] = n, t
        self.sh_n += sign
        self.sh_sum += sign * shared
        if n > 0:
            self.sh_distinct += t / n
        if self.sh_n == 0:
            self.sh_distinct = 0.0

    def clipped_remaining_sum(self) -> float:
        """Output tokens the running sequences still have to generate, each at most ``clip`` (a slot leaves when
        its count reaches 0)."""
        s, heap = self.s, self.crossing
        while heap and heap[0][0] <= s:
            _, slot, g = heapq.heappop(heap)
            if self.gen[slot] == g and self.big[slot]:
                self.big[slot] = False
                self.n_big -= 1
                self._lin(slot, 1)
        return self.clip * self.n_big + (self.lin_rem0 - self.E * (self.lin_n * s - self.lin_s0))

    def _lin(self, slot: int, sign: int) -> None:
        self.lin_n += sign
        self.lin_rem0 += sign * self.rem0[slot]
        self.lin_s0 += sign * self.s0[slot]

    def blocks_at(self, s: int) -> int:
        """KV blocks the on-demand decodes hold at step ``s``."""
        if not self.n:
            return 0
        if self.whole:
            q, r = divmod(int(self.E * s), self.B)
            return self.q_sum + self.n * q + (sum(self.r_hist[self.B - r:]) if r else 0)
        own0, E, B = self.own0, self.E, self.B
        own = np.fromiter((own0[i] for i in self.order), dtype=np.float64, count=self.n) + E * s
        return int(np.ceil(own / B).sum())

    def _count(self, o0: float, sign: int) -> None:
        if self.whole and not o0.is_integer():
            self.whole = False  # a fractional own count (not reached with whole E): count with numpy
        if self.whole:
            q, r = divmod(int(o0) + self.B - 1, self.B)
            self.q_sum += sign * q
            self.r_hist[r] += sign

    def join(self, rid: int, ctx: float, own: float, remaining: int, blocks: int, shared: int) -> int:
        """A sequence starts decoding (its next token comes from the next step); returns the
        blocks it adds to the on-demand count."""
        slot = self.free_slots.pop()
        s, E = self.s, self.E
        self.rid[slot] = rid
        c0 = ctx - E * s
        self.ctx0[slot] = c0
        self.rem0[slot] = remaining
        self.s0[slot] = s
        if self.clip is not None:
            if remaining > self.clip:  # counts clip until its remaining output falls to clip
                self.big[slot] = True
                self.n_big += 1
                heapq.heappush(self.crossing, (s + (remaining - self.clip) / E, slot, self.gen[slot] + 1))
            else:
                self._lin(slot, 1)
        self.blocks[slot] = blocks
        self.shared[slot] = shared
        if shared > 0 and self.g_n:
            self._share(rid, shared, 1)
        g = self.gen[slot] + 1
        self.gen[slot] = g
        self.sum_ctx0 += c0
        self.n += 1
        self.order[slot] = None
        steps = remaining if E == 1.0 else int(math.ceil(remaining / E))
        heapq.heappush(self.heap, (s + steps, slot, g))
        if self.track:
            self.own0[slot] = o0 = float(own - E * s)
            self._count(o0, 1)
            return -(-int(own) // self.B)
        return 0

    def leave(self, slot: int) -> tuple[int, int]:
        """Remove a sequence: (rid, the blocks it frees from the on-demand count)."""
        rid = self.rid[slot]
        self.rid[slot] = -1
        self.gen[slot] += 1
        self.sum_ctx0 -= self.ctx0[slot]
        if self.shared[slot] > 0 and self.g_n:
            self._share(rid, self.shared[slot], -1)
        if self.clip is not None:
            if self.big[slot]:
                self.big[slot] = False
                self.n_big -= 1
            else:
                self._lin(slot, -1)
        self.n -= 1
        del self.order[slot]
        self.free_slots.append(slot)
        if self.track:
            o0 = self.own0[slot]
            self._count(o0, -1)
            return rid, -(-int(math.ceil(o0 + self.E * self.s)) // self.B)
        return rid, 0

    def own_blocks(self, slot: int) -> int:
        return -(-int(math.ceil(self.own0[slot] + self.E * self.s)) // self.B)

    def generated_since_join(self, slot: int) -> int:
        return min(self.rem0[slot], int(round((self.s - self.s0[slot]) * self.E)))

    def newest(self) -> int:
        return next(reversed(self.order))
