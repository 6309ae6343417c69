"""One replica's engine loop: each step carries the running decodes plus as much prefill as the
token budget (``max_batched_tokens``) allows, whole prompts or -- with chunked prefill -- pieces of
them; at most ``max_seqs`` sequences run at once. Two step orders (the engine's ``schedule``):

* ``decode_first`` (vLLM V1, TensorRT-LLM): running decodes first, prefill fills what is left;
* ``prefill_first`` (SGLang): while prompts wait, a step prefills up to the chunk size and the
  running decodes pause; decoding resumes when no prompt can be admitted.

KV admission is ``reserve`` (TensorRT-LLM GUARANTEED_NO_EVICT: blocks for prompt and whole output
up front, never preempted) or ``ondemand`` (vLLM paged attention: blocks as tokens are written; when
a step finds none free, the newest sequence is preempted by ``recompute`` or ``swap`` over the host
link) or ``ratio`` (SGLang: on demand, but a request is admitted only while the free blocks also cover
``ratio`` x the outputs it and the running requests still have to generate, each counted at most
4,096 tokens, the ratio falling from 0.7 to 0.098 over 600 decode steps and set from the batch's progress
after each retraction). Between events the batch does not change, so a run of pure decode steps is one jump whose
time is the sum of the per-step times along the growing context: O(events), not O(tokens).
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from heapq import heappop, heappush

from planner.serving.sim.decodes import DecodeBatch
from planner.serving.sim.kvcache import KVBlocks
from planner.serving.sim.multitenant import swap_s
from planner.serving.sim.queues import queue_class
from planner.serving.sim.records import PrefillJob, SwappedSeq
from planner.serving.sim.stepform import IDLE, JUMP, MIXED, PREFILL, form_step

# SGLang's new_token_ratio (sglang/srt/global_config.py and the scheduler; engines/sglang-0.5.yaml names the sources)
RATIO_INIT = 0.7  # SGLANG_INIT_NEW_TOKEN_RATIO x --schedule-conservativeness 1.0
RATIO_MIN = RATIO_INIT * 0.14  # x SGLANG_MIN_NEW_TOKEN_RATIO_FACTOR
RATIO_DECAY = (RATIO_INIT - RATIO_MIN) / 600  # per decode step (SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS)
RETRACT_STEPS = 20  # SGLANG_RETRACT_DECODE_STEPS: decode steps of room a retraction plans for
RATIO_CLIP = 4096  # SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION: a request's outputs to come count at most this many


class Replica:
    def __init__(self, idx: int, pool_idx: int, pool, sim):
        m = pool.replica
        self.idx, self.pool_idx, self.sim, self.m = idx, pool_idx, sim, m
        self.role = pool.role
        self.table = m.table
        self.E = m.tokens_per_step
        self.dtok = float(m.spec_k + 1)  # tokens each decoding sequence puts through the step (verification)
        self.max_seqs = m.max_seqs
        self.mbt = m.max_batched_tokens
        # the most of one prompt a step takes: the token budget, and under data-parallel attention one rank's share
        # of it (a prompt is prefilled on one rank)
        self.chunk_max = m.max_batched_tokens / m.attention_dp if m.attention_dp > 1 else m.max_batched_tokens
        self.chunked = m.chunked_prefill
        self.reserve = m.reserve
        self.ratio_mode = m.ratio_admission  # SGLang's new_token_ratio admission (ratio_tick)
        self.ratio = RATIO_INIT
        self._ratio_s = 0
        # attention-DP balancing: new prompts held since this decode step (-1: none held)
        self.balance = m.adp_balance
        self.hold_from = -1
        self.swap = m.swap
        self.B = m.block_tokens
        self.kv = KVBlocks(m.kv_blocks, m.block_tokens)
        self.dec = DecodeBatch(m.max_seqs, self.E, m.block_tokens, track_blocks=not m.reserve,
                               clip=RATIO_CLIP if m.ratio_admission else None, share=sim.share, groups=sim.table.groups,
                               reread_cap=m.reread_cap_tokens, ctas=m.reread_ctas, sms=m.reread_sms)
        self.waiting = queue_class(m.policy)(sim, self)
        self.swapped: deque[SwappedSeq] = deque()
        self.prefilling: list[PrefillJob] = []
        beh = m.behaviour
        self.prefill_first = beh.schedule == "prefill_first"
        # an engine that schedules ahead (async scheduling: step N+1 is formed while step N runs) admits a request
        # that arrives during a step only into the step after the next: it waits there (``pending``) for a boundary
        self.schedules_ahead = bool(beh.async_scheduling)
        self.pending: list[int] = []
        # a scheduler that polls for new requests every N decode steps (Engine.recv_interval): it last received at
        # recv_t, recv_count decode steps ago; a waiting request that arrived after recv_t is not yet in its queue
        self.recv_every = beh.recv_interval
        self.recv_t = -math.inf
        self.recv_count = 0
        # when each request reached this engine (after the front end's time; NaN: not through enqueue), kept only for a
        # scheduler that polls every few steps: 8 bytes a request
        self.entered = array("d", [math.nan]) * len(sim.arrival) if self.recv_every > 1 else None
        if not self.schedules_ahead and self.recv_every == 1:  # the event loop calls the step logic directly
            self.boundary = self._boundary
        self.prefix_caching = beh.prefix_caching
        self.request_overhead_s = beh.request_overhead_s
        # the API server's one thread in front of the engine (EngineBehaviour.api_request_s / api_chunk_s): a FIFO of
        # jobs, each request's preparation when it arrives and each step's streamed chunks when the step ends. fe_t: when
        # the thread is next free; fe_seen: when the client sees the chunks of the boundary being retired (the middle of
        # their batch); fe_done: the steps of the running decode jump already streamed (an arrival inside the jump brings
        # the chunks of its finished steps in ahead of its own preparation)
        # aggregated replicas only: a disaggregated deployment's front end sits before its pools (not priced)
        self.fe_on = (beh.api_request_s > 0.0 or beh.api_chunk_s > 0.0) and self.role == "both"
        self.fe_req, self.fe_chunk = (beh.api_request_s, beh.api_chunk_s) if self.fe_on else (0.0, 0.0)
        self.fe_every = float(beh.stream_interval)
        self.fe_t = -math.inf
        self.fe_seen = -math.inf
        self.fe_done = 0
        self.kind = IDLE
        self.t_start = 0.0
        self.t_end = 0.0
        # a decode jump: k steps from t_start, the first taking step_s, each next one slope_s longer
        self.jump_k, self.step_s, self.slope_s = 0, 0.0, 0.0
        self.pieces: list[tuple] = []
        self.version = 0  # the sequence number of its valid entry in the simulator's heap
        self.next_t = math.inf  # when its running step ends (inf: idle, nothing scheduled)
        self.busy_s = 0.0
        self.steps = 0
        self.batch_time = 0.0  # integral of the decode batch over time
        self.preemptions = 0
        self.unfinished = 0  # requests left in it when the compiled core ended (planner.serving.sim.fastcore)
        self.adapters = None  # LoRA (planner.serving.sim.adapters): the resident set; their GEMMs are in the step table
        if m.lora is not None:
            from planner.serving.sim.adapters import AdapterCache

            self.adapters = AdapterCache(m.lora.slots, m.lora.load_s)
        self.fair = m.priority_preemption  # planner.serving.sim.multitenant
        self.block_swap = m.swap_group is not None
        self.swap_group = m.swap_group or 1
        self.migrated: deque[tuple] = deque()  # (rid, ctx, remaining, shared) arrived by live migration
        self.inbound = 0  # migrations on their way here or waiting to join; requests waiting for an adapter slot
        self.migrator = sim.migrator
        self.tenants = self.fair or self.migrator is not None  # any of the above in use

    # --------------------------------------------------------------- bookkeeping
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.pending) + len(self.prefilling) + self.dec.n + len(self.swapped) + self.inbound

    def pin(self, tokens: int) -> None:
        self.kv.pin(tokens)

    def retain(self, rid: int, blocks: int) -> None:
        if self.prefix_caching:
            self.kv.retain(rid, blocks)

    # --------------------------------------------------------------- events
    def enqueue(self, rid: int, now: float) -> None:
        if self.recv_every > 1:
            self.entered[rid] = now
        if self.schedules_ahead and self.kind != IDLE:
            # the step after this one is already formed: the request waits for the boundary after it
            self.pending.append(rid)
            if self.kind == JUMP and len(self.pending) == 1 and len(self.prefilling) + self.dec.n < self.max_seqs:
                self._truncate(now, rid)
            return
        self.waiting.push(rid)
        if self.kind == IDLE:
            self.sim.schedule(self, now)
        elif self.kind == JUMP and (self.fair or len(self.waiting) == 1 and len(self.prefilling) + self.dec.n < self.max_seqs):
            self._truncate(now, rid)

    def received(self, rid: int) -> bool:
        """Whether the scheduler has taken ``rid`` into its queue: at once, unless it polls every N decode steps
        (recv_every) and ``rid`` reached the engine after its last poll. Reached, not sent: the client's request
        passes the front end (request_overhead_s) first, so a closed-loop client's next prompt, sent the moment a
        reply ends, is not in the poll at that boundary."""
        if self.recv_every == 1:
            return True
        t = self.entered[rid]
        return (self.sim.arrival[rid] if t != t else t) <= self.recv_t

    def _recv_tick(self, now: float) -> None:
        """The scheduler's poll counter at a boundary (SchedulerRecvSkipper): a decode run of k steps adds k, and the
        engine polls when the count reaches recv_every; after a prompt or mixed step, or idle, it polls at once. A run
        that passed a poll with nothing waiting left only the remainder, and its last poll was at the boundary that
        many steps before its end, not at its end."""
        if self.kind == JUMP:
            c = self.recv_count + self.jump_k
            if c >= self.recv_every:
                c %= self.recv_every
                kk = self.jump_k - c  # the run's steps up to its last poll
                self.recv_t = now if not c else self._step_end(kk)
            self.recv_count = c
        else:
            self.poll(now)

    def poll(self, now: float) -> None:
        """The scheduler takes in every request that has arrived by ``now`` and starts counting decode steps again."""
        self.recv_t = now
        self.recv_count = 0

    def _release_pending(self, now: float) -> None:
        """At a boundary, after the next step was formed: requests that arrived during the ended step become
        eligible for the step after it (that step ends the run of decodes, so they are admitted there)."""
        first = self.pending[0]
        for rid in self.pending:
            self.waiting.push(rid)
        self.pending.clear()
        if self.kind == IDLE:
            self.sim.schedule(self, now)
        elif self.kind == JUMP:
            self._truncate(now, first)

    def receive(self, item: tuple, now: float) -> None:
        """A migrated request arrives with its KV (planner.serving.sim.multitenant)."""
        self.migrated.append(item)
        if self.kind == IDLE:
            self.sim.schedule(self, now)
        elif self.kind == JUMP and len(self.prefilling) + self.dec.n < self.max_seqs:
            self._truncate(now)

    def _truncate(self, t: float, rid: int = -1) -> None:
        """A request (``rid``) arrived during a decode jump: end the jump at the step boundary after ``t``; where the
        scheduler polls every N decode steps and has not yet taken ``rid`` in, at its first poll after that."""
        t0, k, a, slope = self.t_start, self.jump_k, self.step_s, self.slope_s
        dt = t - t0
        if dt <= 0:
            kk = 1
        elif slope > 0:
            # smallest kk with kk a + slope kk (kk - 1) / 2 >= dt
            b = a - slope / 2.0
            kk = int(math.ceil((-b + math.sqrt(b * b + 2.0 * slope * dt)) / slope - 1e-9))
        else:
            kk = int(math.ceil(dt / a - 1e-9)) if a > 0 else 1
        kk = max(1, kk)
        if self.recv_every > 1 and rid >= 0 and not self.received(rid):  # the poll at or after that boundary
            kk += (-(self.recv_count + kk)) % self.recv_every
        if kk >= k:
            return
        self.jump_k = kk
        self.t_end = self._step_end(kk)
        self.sim.schedule(self, self.t_end)

    def _step_end(self, k: int) -> float:
        """When the k-th step of the running decode jump ends: from t_start, the first step_s long, each next slope_s
        longer."""
        return self.t_start + k * self.step_s + self.slope_s * k * (k - 1) / 2.0

    # --------------------------------------------------------------- the API server's thread
    def _stream_steps(self, j0: int, j1: int, per_step: float) -> None:
        """Decode steps j0 + 1 .. j1 of the running jump (numbered from 1) each hand the thread ``per_step`` seconds of
        chunks as the step ends. Their ends are convex in j, so the thread's free time after the last is the larger of
        its backlog plus all the work, the first step's end plus all the work and the last step's end plus its own."""
        if j1 <= j0 or per_step <= 0.0:
            return
        r_first, r_last = self._step_end(j0 + 1), self._step_end(j1)
        work = (j1 - j0) * per_step
        self.fe_t = max(self.fe_t + work, r_first + work, r_last + per_step)

    def admit(self, t: float) -> float:
        """A request reaches the API server at ``t``: the chunks of the decode steps that ended before it go first, then
        its preparation; returns when it is handed to the engine (after the parallel request_overhead_s as well)."""
        if self.kind == JUMP and self.dec.n:
            t0, k, a, slope = self.t_start, self.jump_k, self.step_s, self.slope_s
            dt = t - t0
            kk = int(dt / a) if a > 0 else 0  # steps ended by t (the slope only makes them fewer)
            while kk > 0 and kk * a + slope * kk * (kk - 1) / 2.0 > dt:
                kk -= 1
            kk = min(kk, k - 1)  # the last step is streamed at the boundary
            if kk > self.fe_done:
                self._stream_steps(self.fe_done, kk, self.dec.n * self.fe_chunk / self.fe_every)
                self.fe_done = kk
        self.fe_t = max(self.fe_t, t) + self.fe_req
        return self.fe_t + self.request_overhead_s

    def _stream(self, kind: int, now: float) -> None:
        """At a boundary: the ended step's (or the rest of the jump's) chunks go to the thread; the replies they end or
        begin are seen at fe_seen, the middle of the last step's batch."""
        n = self.dec.n if kind != PREFILL else 0
        per_step = n * self.fe_chunk / self.fe_every
        firsts = sum(1 for _, last in self.pieces if last) if kind >= MIXED else 0
        if kind == JUMP:
            self._stream_steps(self.fe_done, self.jump_k, per_step)
            batch = per_step
        else:
            batch = per_step + firsts * self.fe_chunk
            self.fe_t = max(self.fe_t, now) + batch
        self.fe_done = 0
        self.fe_seen = max(now, self.fe_t - 0.5 * max(batch - self.fe_chunk, 0.0))

    def boundary(self, now: float) -> None:
        """The running step (or jump) ended at ``now``: retire what finished, form the next; then what arrived
        during the ended step joins the queue (an engine that schedules ahead). A scheduler that polls every N decode
        steps counts the ended step first (_recv_tick)."""
        if self.recv_every > 1:
            self._recv_tick(now)
        self._boundary(now)
        if self.pending:
            self._release_pending(now)

    def _boundary(self, now: float) -> None:
        kind = self.kind
        dec = self.dec
        if self.fe_on and kind != IDLE:
            self._stream(kind, now)
        if kind != IDLE:
            dur = now - self.t_start
            self.busy_s += dur
            if kind != PREFILL:
                k = self.jump_k if kind == JUMP else 1
                self.steps += k
                self.batch_time += dec.n * dur
                dec.s = s = dec.s + k
                if not self.reserve and dec.n:
                    self.kv.dec = dec.blocks_at(s)
                heap = dec.heap
                if heap and heap[0][0] <= s:
                    self._finish_decodes(now)
            else:
                self.steps += 1
            if kind >= MIXED:
                pieces = self.pieces
                if pieces:
                    for pf, last in pieces:
                        if last:
                            self._prefill_done(pf, now)
                    self.pieces = []
        if self.migrator is not None:
            self.migrator.check(self, now)
        if not self.reserve or self.waiting or self.prefilling or self.swapped or self.migrated:
            self._form(now)
            return
        # reserve-mode KV with nothing to admit: the decodes run on to the next completion (the
        # common case of form_step -> _launch_decodes, inline)
        n = dec.n
        if not n:
            self.kind = IDLE
            return
        heap, gen = dec.heap, dec.gen
        top = heap[0]
        while gen[top[1]] != top[2]:
            heappop(heap)
            top = heap[0]
        s = dec.s
        k = top[0] - s
        E = self.E
        c = dec.read_ctx()
        if k > 1:
            a, b = self.table.decode_pair(n, c, c + E * (k - 1))
            slope = (b - a) / (k - 1)
            t = now + k * a + slope * k * (k - 1) / 2.0
        else:
            k = 1
            a = self.table.decode(n, c)
            slope = 0.0
            t = now + a
        self.t_start = now
        self.kind = JUMP
        self.jump_k, self.step_s, self.slope_s = k, a, slope
        self.t_end = t
        self.next_t = t
        sim = self.sim
        if sim.multi:
            sim.seq = seq = sim.seq + 1
            self.version = seq
            heappush(sim.rheap, (t, seq, self.idx))

    def _finish_decodes(self, now: float) -> None:
        dec, sim, kv = self.dec, self.sim, self.kv
        heap, s, gen, reserve = dec.heap, dec.s, dec.gen, self.reserve
        finish = sim.finish
        while heap and heap[0][0] <= s:
            _, slot, g = heappop(heap)
            if gen[slot] != g:
                continue
            if reserve:
                blocks = dec.blocks[slot]
                rid = dec.leave(slot)[0]
                kv.used -= blocks
            else:
                blocks = dec.own_blocks(slot)
                rid, freed = dec.leave(slot)
                kv.dec -= freed
            finish(rid, now, self, blocks)

    def _cached_prompt_key(self, rid: int) -> int:
        """The reused prompt ``rid`` sends, where this replica's prefix cache keeps it (-1: a prompt of its own, no
        prefix cache, or a pinned shared prefix, which the reuse is not modelled beside)."""
        return self.sim.pkey[rid] if self.prefix_caching and not self.kv.pinned else -1

    def prompt_done(self, rid: int, blocks: int) -> None:
        """A request of a client that reuses its prompts (``Requests.prompt_key``) ended or was preempted, its own
        ``blocks`` just freed: it stops sharing its prompt's cached blocks, or, where it computed them itself, their
        full blocks stay in the prefix cache (vLLM keeps a freed block's hash until the block is reused)."""
        sim = self.sim
        key = self._cached_prompt_key(rid)
        if key < 0:
            return
        if sim.pheld[rid]:
            sim.pheld[rid] = 0
            self.kv.release_prompt(key)
        else:
            self.kv.cache_prompt(key, min(sim.isl[rid] // self.B, blocks))

    def _prefill_done(self, pf, now: float) -> None:
        """The last piece of a prompt ran: its first (or next) token is out."""
        sim = self.sim
        self.prefilling.remove(pf)  # pf itself: found by identity
        rid, alloc, shared = pf.rid, pf.alloc, pf.shared
        if sim.first[rid] < 0:
            sim.first[rid] = self.fe_seen if self.fe_on else now
        gen = sim.gen[rid] + 1
        sim.gen[rid] = gen
        remaining = sim.osl[rid] - gen
        if remaining <= 0 or self.role == "prefill":
            self.kv.used -= alloc
            if remaining <= 0:
                sim.finish(rid, now, self, alloc)
            else:
                sim.transfer(rid, now, self)
            return
        ctx = sim.isl[rid] + gen
        if sim.pkey is not None and not shared:
            alloc, shared = self._share_prompt(rid, alloc)
        if self.reserve:
            self.kv.dec += self.dec.join(rid, ctx, ctx - shared, remaining, alloc, shared)
        else:
            self.kv.used -= alloc
            self.kv.dec += self.dec.join(rid, ctx, ctx - shared, remaining, 0, shared)

    def _share_prompt(self, rid: int, alloc: int) -> tuple[int, int]:
        """A reused prompt computed in full: its full blocks are in the prefix cache from now on (vLLM hashes a block
        once it is computed), so another request with the same prompt shares them while this one still runs. Returns
        the sequence's own blocks and the tokens it shares with the cache (as it had them where nothing is shared)."""
        sim, kv = self.sim, self.kv
        key = self._cached_prompt_key(rid)
        if key < 0 or sim.pheld[rid] or key in kv.inuse or (-2 - key) in kv.retained:
            return alloc, 0
        blocks = min(sim.isl[rid] // self.B, alloc)
        if blocks <= 0:
            return alloc, 0
        kv.inuse[key] = [blocks, 1]  # counted once in used: they leave the sequence's own allocation
        sim.pheld[rid] = 1
        return alloc - blocks, min(blocks * self.B, sim.isl[rid] - 1)

    def _preempt(self, slot: int | None = None, force_swap: bool = False) -> float:
        """Preempt the newest decoding sequence (or ``slot``; on-demand KV); returns the swap-out time."""
        dec = self.dec
        if slot is None:
            slot = dec.newest()
        own = dec.own0[slot] + self.E * dec.s
        ctx = dec.ctx0[slot] + self.E * dec.s
        rem = dec.rem0[slot] - dec.generated_since_join(slot)
        shared = dec.shared[slot]
        rid, freed = dec.leave(slot)
        self.kv.dec -= freed
        sim = self.sim
        sim.gen[rid] = sim.osl[rid] - rem
        sim.preempted[rid] += 1
        self.preemptions += 1
        if self.swap or force_swap:
            self.swapped.append(SwappedSeq(rid, own, ctx, rem, shared))
            return swap_s(self, own) if self.block_swap else own * self.m.swap_s_per_token
        if sim.pkey is not None:  # recomputed later: it lets go of (or leaves cached) its reused prompt's blocks
            self.prompt_done(rid, freed)
        self.waiting.push_front(rid)
        return 0.0

    def ratio_tick(self, retracted: bool) -> None:
        """SGLang's estimate of the share of its remaining outputs a running request will still generate: after a
        retraction, (tokens decoded + RETRACT_STEPS x requests) / (their max_new_tokens + 1) of the requests left
        running; else it falls by RATIO_DECAY per decode step since the last call to RATIO_MIN; an idle replica goes
        back to RATIO_INIT."""
        dec = self.dec
        if retracted:
            osl, total, decoded = self.sim.osl, 0, 0
            for slot in dec.order:
                t = osl[dec.rid[slot]]
                total += t
                decoded += t - (dec.rem0[slot] - dec.generated_since_join(slot))
            self.ratio = min(1.0, (decoded + RETRACT_STEPS * dec.n) / (total + 1))
        elif not dec.n and not self.prefilling:
            self.ratio = RATIO_INIT
        elif dec.s > self._ratio_s:
            self.ratio = max(RATIO_MIN, self.ratio - RATIO_DECAY * (dec.s - self._ratio_s))
        self._ratio_s = dec.s

    def _growth(self, k: int) -> int:
        return self.dec.blocks_at(self.dec.s + k) - self.kv.dec

    def _kv_limit(self, k: int) -> int:
        """Largest jump <= k whose block growth fits in the free blocks (on-demand KV)."""
        free = self.kv.free()
        if self.dec.n * (int(math.ceil(k * self.E / self.B)) + 1) <= free:
            return k
        lo, hi = 1, k
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._growth(mid) <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    _form = form_step  # planner.serving.sim.stepform
