"""Forming a replica's next step: make room (preempt), bring swapped sequences back, continue
chunked prompts, admit waiting requests under the token budget and the KV blocks, then launch a
mixed step, a prefill-only step (prefill-first engines) or a jump of pure decode steps."""

from __future__ import annotations

import math
from heapq import heappop, heappush

from planner.serving.sim.multitenant import admit_migrated, priority_preempt, swap_s
from planner.serving.sim.records import PrefillJob

IDLE, JUMP, MIXED, PREFILL = 0, 1, 2, 3


class StepDraft:
    """The step being formed: token budget left, sequences running, prefill tokens and attention pairs, pieces."""

    __slots__ = ("budget", "running", "P", "pairs", "pieces", "extra")

    def __init__(self, budget: float, running: int, extra: float):
        self.budget, self.running, self.extra = budget, running, extra
        self.P, self.pairs, self.pieces = 0.0, 0.0, []

    def add(self, pf, take: int, past: int, last: bool) -> None:
        self.pairs += take * past + take * (take + 1) / 2.0
        self.P += take
        self.budget -= take
        self.pieces.append((pf, last))


def form_step(rep, now: float) -> None:
    """Form and launch a replica's next step at ``now`` (the replica's ``_form``)."""
    waiting, dec = rep.waiting, rep.dec
    if rep.reserve:
        if not (waiting or rep.prefilling or rep.swapped or rep.migrated):
            if dec.n:
                _launch_decodes(rep, now, 0.0, False)
            else:
                rep.kind = IDLE
            return
        extra, preempted = 0.0, False
    else:
        extra, preempted = 0.0, False
        if dec.n:
            kv = rep.kv
            reuse = rep.sim.pkey is not None  # a client's reused prompts: their cached blocks go before any sequence
            while dec.n and rep._growth(1) > kv.free():
                if reuse and kv.evict(rep._growth(1)):
                    break
                extra += rep._preempt()
                preempted = True
        if rep.ratio_mode:
            rep.ratio_tick(preempted)
    if rep.tenants:  # planner.serving.sim.multitenant
        if rep.fair and waiting and dec.n and not preempted:  # FastSwitch / vLLM priority: make room
            extra += priority_preempt(rep)
    prefilling = rep.prefilling
    # a scheduler that polls every N decode steps sees only the requests that arrived by its last poll
    if waiting and rep.recv_every > 1 and not rep.received(waiting.peek()):
        if dec.n or prefilling:
            waiting = None
        else:  # nothing running: an idle scheduler polls at once
            rep.poll(now)
    # prefill-first engines leave the decodes out of a step that has prompts to prefill
    prefill_only = rep.prefill_first and (waiting or prefilling) and not preempted
    d = StepDraft(rep.mbt - (0.0 if prefill_only else dec.n * rep.dtok), dec.n + len(prefilling), extra)
    if rep.tenants and rep.migrated:
        admit_migrated(rep, d)
    if rep.swapped:
        _swap_in(rep, d, prefill_only)
    if prefilling:
        _continue_chunks(rep, d)
    if waiting and not preempted:
        if rep.role == "decode":
            _admit_decodes(rep, d, now)
        else:
            _admit_prompts(rep, d, now)
    _launch(rep, d, now, preempted, prefill_only and bool(d.pieces))


def _swap_in(rep, d: StepDraft, prefill_only: bool) -> None:
    """Swapped-out sequences come back first (their KV crosses the host link again)."""
    kv, B = rep.kv, rep.B
    while rep.swapped and d.running < rep.max_seqs:
        sw = rep.swapped[0]
        need = -(-int(math.ceil(sw.own)) // B) + 1
        if need > kv.free():
            break
        if rep.fair and rep.waiting and rep.sim.priority[rep.waiting.peek()] < rep.sim.priority[sw.rid]:
            break  # a better-priority request waits: the swapped one stays out
        rep.swapped.popleft()
        d.extra += swap_s(rep, sw.own) if rep.block_swap else sw.own * rep.m.swap_s_per_token
        kv.dec += rep.dec.join(sw.rid, sw.ctx, sw.own, sw.remaining, 0, sw.shared)
        d.running += 1
        if not prefill_only:
            d.budget -= rep.dtok


def _continue_chunks(rep, d: StepDraft) -> None:
    """Prompts already being prefilled in chunks take the budget first."""
    for pf in rep.prefilling:
        if d.budget <= 0:
            break
        take = min(pf.remaining, d.budget, rep.chunk_max)
        if take <= 0:
            continue
        past = pf.past
        pf.remaining -= take
        pf.past += take
        d.add(pf, take, past, pf.remaining <= 0)


def _admit_decodes(rep, d: StepDraft, now: float) -> None:
    """Decode pool (disaggregated): a request arrives with its prompt's KV; it only needs blocks."""
    sim, kv, waiting, B = rep.sim, rep.kv, rep.waiting, rep.B
    while waiting and d.running < rep.max_seqs:
        rid = waiting.peek()
        isl, osl, gen = sim.isl[rid], sim.osl[rid], sim.gen[rid]
        shared = min(sim.prefix[rid], isl - 1) if kv.pinned else 0
        ctx = isl + gen
        own = ctx - shared
        need = -(-(own + (osl - gen if rep.reserve else 1)) // B)
        if need > kv.total - kv.pinned:
            waiting.take()
            sim.reject(rid, now)
            continue
        if need > kv.free() and not kv.evict(need):
            break
        waiting.take()
        if rep.reserve:
            kv.used += need
            rep.dec.join(rid, ctx, own, osl - gen, need, shared)
        else:
            kv.dec += rep.dec.join(rid, ctx, own, osl - gen, 0, shared)
        d.running += 1
        d.budget -= rep.dtok


def _admit_prompts(rep, d: StepDraft, now: float) -> None:
    """Admit waiting requests in the queue's order while budget, sequences and KV blocks allow.
    The shared prefix and a retained previous turn are prefix-cache hits: not prefilled again."""
    sim, kv, waiting, B = rep.sim, rep.kv, rep.waiting, rep.B
    s_isl, s_osl, s_gen, s_parent = sim.isl, sim.osl, sim.gen, sim.parent
    retained, pinned, reserve, max_seqs = kv.retained, kv.pinned, rep.reserve, rep.max_seqs
    mbt = rep.chunk_max  # the most of one prompt a step takes (one rank's budget under attention DP)
    split_all = rep.chunked
    prefilling, pieces = rep.prefilling, d.pieces
    # SGLang (ratio admission): the free blocks must also hold ratio x the outputs still to come, of the running
    # requests, of the prompts being prefilled and of each request admitted before this one
    if rep.balance:  # attention-DP balancing: hold prompts until every rank can take one (a bounded wait)
        dec = rep.dec
        if dec.n and len(waiting) < min(rep.m.attention_dp, max_seqs - d.running):
            if rep.hold_from < 0:
                rep.hold_from = dec.s
            if dec.s - rep.hold_from < rep.balance:
                return
        rep.hold_from = -1
    ratio = rep.ratio if rep.ratio_mode else 0.0
    if ratio:
        clip = rep.dec.clip
        future = ratio * (rep.dec.clipped_remaining_sum() + sum(min(s_osl[pf.rid] - s_gen[pf.rid], clip) for pf in prefilling))
    # a client that sends its prompts again (Requests.prompt_key): a prompt's blocks an earlier send left cached
    pkeys = sim.pkey if sim.pkey is not None and rep.prefix_caching and not pinned else None
    # an engine that registers a prompt's blocks when it schedules them (vLLM V1): a prompt taken whole in this step
    # is shared from now on, by requests admitted after it in this step too (Engine.prefix_cache_at_schedule)
    at_schedule = pkeys is not None and rep.m.behaviour.prefix_cache_at_schedule and rep.role != "prefill"
    polls = rep.recv_every > 1
    while waiting and d.running < max_seqs:
        rid = waiting.peek()
        if polls and not rep.received(rid):  # arrived after the scheduler's last poll
            break
        isl, osl, gen = s_isl[rid], s_osl[rid], s_gen[rid]
        shared = min(sim.prefix[rid], isl - 1) if pinned else 0
        hist, hist_blocks = 0, 0
        par = s_parent[rid]
        keep = par
        pkey, pblocks = -1, 0
        if par >= 0 and gen == 0 and par in retained:  # multi-turn: the previous turn's KV is cached
            hist = s_isl[par] + s_osl[par] - shared
            hist_blocks = retained[par]
        elif pkeys is not None and pkeys[rid] >= 0:
            pkey = pkeys[rid]
            pblocks = kv.prompt_blocks(pkey)
            if pblocks:  # its full blocks are shared, not owned; at least the last token is computed again
                shared = min(pblocks * B, isl - 1)
                keep = -2 - pkey  # not evicted to make room for the request that reuses it
        prompt = isl + gen - shared - hist  # tokens to compute
        own_total = isl + gen - shared + (osl - gen if reserve else 1)
        need = -(-own_total // B) - hist_blocks
        if need + hist_blocks > kv.total - pinned:
            waiting.take()
            sim.reject(rid, now)
            continue
        # without chunked prefill a prompt goes in whole; one longer than the whole token budget
        # is split anyway (TensorRT-LLM needs chunked context for inputs beyond max_num_tokens)
        split = split_all or prompt > mbt
        if not split and prompt > d.budget and (pieces or rep.dec.n or d.extra):
            break
        want = need
        if ratio:
            mine = ratio * min(osl - gen, clip)
            want = need + int(math.ceil((future + mine) / B))
        if want > kv.total - kv.used - kv.dec - kv.ret + hist_blocks and not kv.evict(want - hist_blocks, keep=keep):
            break
        if ratio:
            future += mine
        waiting.take()
        if hist_blocks:
            kv.take_retained(par)
        if pblocks:
            kv.acquire_prompt(pkey)
            sim.pheld[rid] = 1
        past = shared + hist
        if past > 0:
            kv.hit_tokens += past
            kv.hits += 1
        alloc = max(need, 0) + hist_blocks
        kv.used += alloc
        take = prompt if not split else min(prompt, max(d.budget, 0), mbt)
        pf = PrefillJob(rid, prompt - take, past + take, alloc, shared)
        if at_schedule and pkey >= 0 and not pblocks and take >= prompt:
            pf.alloc, pf.shared = rep._share_prompt(rid, alloc)
        prefilling.append(pf)
        d.running += 1
        if take > 0:
            d.pairs += take * past + take * (take + 1) / 2.0
            d.P += take
            d.budget -= take
            pieces.append((pf, pf.remaining <= 0))
        if d.budget <= 0:
            break


def _launch(rep, d: StepDraft, now: float, preempted: bool, prefill_only: bool) -> None:
    """Start the step just formed (or a jump of decode steps, or go idle) and schedule its end."""
    dec, sim = rep.dec, rep.sim
    n = dec.n
    rep.t_start = now
    pieces = d.pieces
    if pieces:
        P = d.P
        span = 2.0 * d.pairs / P
        if prefill_only:
            gpu = rep.table.mixed(0.0, 1.0, P, span)
            rep.kind = PREFILL
        else:
            gpu = rep.table.mixed(n, dec.read_ctx() if n else 1.0, P, span)
            rep.kind = MIXED
        rep.pieces = pieces
        rep.t_end = t = now + (gpu + d.extra)
        rep.next_t = t
        if sim.multi:
            sim.seq = seq = sim.seq + 1
            rep.version = seq
            heappush(sim.rheap, (t, seq, rep.idx))
        return
    if not n:
        if d.extra > 0:  # only swap traffic: account for it as a busy step
            rep.kind = MIXED
            rep.pieces = []
            rep.t_end = now + d.extra
            sim.schedule(rep, rep.t_end)
            return
        rep.kind = IDLE
        return
    _launch_decodes(rep, now, d.extra, bool(rep.prefilling or d.extra or preempted))


def _launch_decodes(rep, now: float, extra: float, one_step: bool) -> None:
    """A run of pure decode steps up to the next completion (cut short later by an arrival), or
    one step when a chunked prompt waits for budget or swap traffic rides on it."""
    dec = rep.dec
    n = dec.n
    heap, gen = dec.heap, dec.gen
    while gen[heap[0][1]] != heap[0][2]:
        heappop(heap)
    k = heap[0][0] - dec.s
    if k < 1 or one_step:
        k = 1
    else:
        if rep.hold_from >= 0:  # prompts held for balance: the run stops when their wait runs out
            k = max(1, min(k, rep.balance - (dec.s - rep.hold_from)))
        if rep.recv_every > 1 and rep.waiting:  # requests the scheduler has not polled: the run stops at its poll
            k = max(1, min(k, rep.recv_every - rep.recv_count))
        if not rep.reserve:
            k = rep._kv_limit(k)
    E = rep.E
    c = dec.read_ctx()
    table = rep.table
    if k > 1:
        a, b = table.decode_pair(n, c, c + E * (k - 1))
        slope = (b - a) / (k - 1)
    else:
        a = table.decode(n, c)
        slope = 0.0
    a += extra
    rep.t_start = now
    rep.kind = JUMP
    rep.jump_k, rep.step_s, rep.slope_s = k, a, slope
    rep.t_end = t = now + k * a + slope * k * (k - 1) / 2.0
    rep.sim.schedule(rep, t)

