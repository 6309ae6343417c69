"""Scheduling across tenants and instances:

* **Priority preemption** (FastSwitch, vLLM priority scheduling): when the waiting request with the
  best priority (lowest value) cannot start because the batch is full or the KV blocks are taken,
  the running decode with the worst priority is swapped out to host memory. Its context-switch cost
  is the swap I/O at the block granularity the engine copies with: every KV block of every layer (K
  and V apart) is its own host-link copy, so ``copies x link latency + bytes / bandwidth``
  (``swap_group`` blocks per copy: FastSwitch's block groups cut the number of copies).
* **Live migration** (Llumnix): when a replica holds ``threshold`` more requests than the least
  loaded one, its running decode with the shortest context moves there. The KV crosses the link
  between the replicas in stages while the request keeps decoding; only the last stage (the tokens
  written during the first copy) stalls it: ``T1 = latency + context x s/token`` (decoding goes on,
  ``g = T1 / step`` tokens), then ``T2 = latency + g x s/token`` of downtime. The source sheds the
  request at the start of the copy (its blocks free at once): a simplification that favours the
  source by one sequence of its batch for T1.
"""

from __future__ import annotations

import math

from planner.serving.sim.routers import least


def swap_s(rep, own_tokens: float) -> float:
    """Host-link time to swap ``own_tokens`` tokens of KV one way (one device's share)."""
    m = rep.m
    t = own_tokens * m.swap_s_per_token
    if rep.block_swap:
        blocks = -(-int(math.ceil(own_tokens)) // rep.B)
        t += -(-blocks // rep.swap_group) * m.kv_transfers_per_block * m.swap_transfer_s
    return t


def _blocked(rep, rid: int) -> bool:
    """The request cannot start now: the batch is full or its prompt's blocks are not free."""
    if rep.dec.n + len(rep.prefilling) >= rep.max_seqs:
        return True
    sim = rep.sim
    need = -(-(sim.isl[rid] + sim.gen[rid] + 1) // rep.B)
    return need > rep.kv.free()


def priority_preempt(rep) -> float:
    """Swap out lower-priority decodes while the best waiting request is blocked; the swap-out time."""
    pr, dec = rep.sim.priority, rep.dec
    head = rep.waiting.peek()
    top = pr[head]
    extra = 0.0
    while dec.n and _blocked(rep, head):
        worst, wp = -1, top
        for slot in dec.order:  # oldest first: the newest of the worst priority is preempted
            p = pr[dec.rid[slot]]
            if p >= wp and p > top:
                worst, wp = slot, p
        if worst < 0:
            break
        extra += rep._preempt(worst, force_swap=True)
    return extra


class Migrator:
    """Llumnix-style load balancing by moving running requests (see the module notes)."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self.count = 0
        self.copy_s = 0.0
        self.downtime_s = 0.0
        self.log: list[tuple] = []  # (context, tokens written during the copy, t1, t2) of the first 1,000

    def check(self, src, now: float) -> None:
        sim = src.sim
        if src.role != "both" or not src.dec.n:
            return
        load = src.outstanding()
        if load <= self.threshold:
            return  # no replica can be that far below it
        reps = sim.entry_pools[src.pool_idx]
        if len(reps) < 2:
            return
        dst = least(reps)
        if dst is src or load - dst.outstanding() <= self.threshold:
            return
        dec = src.dec
        E, s = dec.E, dec.s
        slot = min(dec.order, key=lambda k: dec.ctx0[k])  # the shortest context: the cheapest copy
        ctx = dec.ctx0[slot] + E * s
        rem = dec.rem0[slot] - dec.generated_since_join(slot)
        if rem < 2:
            return
        m = src.m
        t1 = m.kv_transfer_latency_s + ctx * m.kv_transfer_s_per_token
        step = src.table.decode(dec.n, dec.read_ctx())
        g = min(rem - 1, int(t1 / step * E)) if step > 0 else 0  # tokens written during the first copy
        t2 = m.kv_transfer_latency_s + g * m.kv_transfer_s_per_token
        shared = dec.shared[slot]
        rid, freed = dec.leave(slot)
        if src.reserve:
            src.kv.used -= dec.blocks[slot]
        else:
            src.kv.dec -= freed
        sim.gen[rid] = sim.osl[rid] - rem + g
        sim.served_by[rid] = dst.idx
        dst.inbound += 1
        self.count += 1
        self.copy_s += t1 + t2
        self.downtime_s += t2
        if len(self.log) < 1000:
            self.log.append((ctx, g, t1, t2))
        sim.migrate_in(rid, now + t1 + t2, (rid, ctx + g, rem - g, shared))

    def summary(self) -> dict:
        n = self.count
        return {"threshold": self.threshold, "migrations": n, "mean_copy_s": self.copy_s / n if n else 0.0,
                "mean_downtime_s": self.downtime_s / n if n else 0.0}


def admit_migrated(rep, d) -> None:
    """Migrated decodes join the batch with their KV (blocks reserved, or on demand)."""
    kv, B, sim = rep.kv, rep.B, rep.sim
    while rep.migrated and d.running < rep.max_seqs:
        rid, ctx, rem, shared = rep.migrated[0]
        own = ctx - shared
        need = -(-int(math.ceil(own + (rem if rep.reserve else 1))) // B)
        if need > kv.free() and not kv.evict(need):
            break
        rep.migrated.popleft()
        rep.inbound -= 1
        if rep.reserve:
            kv.used += need
            rep.dec.join(rid, ctx, own, rem, need, shared)
        else:
            kv.dec += rep.dec.join(rid, ctx, own, rem, 0, shared)
        sim.pool_of[rid] = rep.pool_idx
        d.running += 1
        d.budget -= rep.dtok
