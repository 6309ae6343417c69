"""The event loop: arrivals (external, follow-up turns, KV transfers) and replica step boundaries
in time order; requests routed to replicas; results as typed columns."""

from __future__ import annotations

import heapq
import math
import time
from heapq import heappush

import numpy as np

from planner.errors import PlannerError
from planner.serving.sim import fastcore
from planner.serving.sim.config import Pool
from planner.serving.sim.metrics import SimResult
from planner.serving.sim.records import RequestTable
from planner.serving.sim.replica import Replica
from planner.serving.sim.routers import BaseRouter, LeastOutstanding, RoundRobin, Router, Static, Threshold, least
from planner.serving.workload import Requests

INF = math.inf
# the spacing of follow-up requests a client releases at one instant (replies that end at the same step boundary): any
# time well under a step gives the same replay, since what it sets is only that an engine starting a step on the first
# does not hold it for the others (_fastcore.c: RELEASE_GAP_S)
RELEASE_GAP_S = 1e-6
ARRIVE, KV_IN, ENGINE_IN, MIGRATE_IN = 0, 1, 2, 3  # kinds of dynamic arrival events


class QueueSampler:
    """Requests waiting and running over time, about every 1/400 of the arrival span (thinned to
    at most ~4000 samples)."""

    def __init__(self, t0: float, span: float):
        self.dt = max(span / 400.0, 1e-3) if span > 0 else 0.01
        self.next = t0
        self.t: list[float] = []
        self.w: list[int] = []
        self.r: list[int] = []

    def sample(self, t: float, reps: list[Replica]) -> float:
        """Record the queue at ``t``; returns when the next sample is due."""
        w = r_ = 0
        for r in reps:
            w += len(r.waiting) + len(r.swapped)
            r_ += r.dec.n + len(r.prefilling)
        self.t.append(t)
        self.w.append(w)
        self.r.append(r_)
        self.next = t + self.dt
        if len(self.t) > 4000:
            self.t, self.w, self.r = self.t[::2], self.w[::2], self.r[::2]
            self.dt *= 2.0
        return self.next


class Simulator:
    """Run requests through pools of replicas. ``progress(done, total)`` is called now and then."""

    def __init__(self, pools: list[Pool], requests: Requests, *, router: BaseRouter | str = "least-outstanding",
                 progress=None, max_events: int | None = None, migrate: int | None = None):
        if not pools or any(p.count < 1 for p in pools):
            raise PlannerError("a simulation needs at least one replica")
        self.router = Router(router) if isinstance(router, str) else router
        self.pools, self.progress, self.max_events = pools, progress, max_events
        self.replicas: list[Replica] = []
        self.entry_pools: list[list[Replica]] = []
        self.decode_pool: list[Replica] = []
        self.req = requests
        self.table = RequestTable(requests)
        for k, v in self.table.views().items():
            setattr(self, k, v)
        self.priority = self.table.priority
        self.migrator = None
        if migrate is not None:
            from planner.serving.sim.multitenant import Migrator

            if migrate < 0:
                raise PlannerError("--migrate takes a load difference T >= 0 (requests)")
            self.migrator = Migrator(migrate)
        self.moving: dict[int, tuple] = {}  # rid -> (rid, ctx, remaining, shared) of a migration in flight
        if any(p.replica.priority_preemption for p in pools) and self.priority is None:
            raise PlannerError("--priority-preemption needs requests with priorities (a workload with classes:)")
        for pi, pool in enumerate(pools):
            if pool.role not in ("both", "prefill", "decode"):
                raise PlannerError(f"unknown replica role {pool.role!r}")
            reps = [Replica(len(self.replicas) + j, pi, pool, self) for j in range(pool.count)]
            self.replicas += reps
            if pool.role == "decode":
                self.decode_pool += reps
            else:
                self.entry_pools.append(reps)
        if not self.entry_pools:
            raise PlannerError("no replica takes new requests (a decode pool needs a prefill pool)")
        if any(p.role == "prefill" for p in pools) and not self.decode_pool:
            raise PlannerError("a prefill pool needs a decode pool")
        self.entry_replicas = [r for reps in self.entry_pools for r in reps]
        if self.pkey is not None and (self.migrator is not None or any(p.role != "both" for p in pools)):
            raise PlannerError("a client's reused prompts are simulated on aggregated replicas without live migration")
        self.n = len(requests)
        # a shared closed loop (workload.shared_closed_loop): the next request each completion releases (-1: none)
        self.slot_next = int(requests.slots) if getattr(requests, "slots", 0) else -1
        pmax = int(requests.prefix_tokens.max()) if self.n else 0
        if pmax > 0 and requests.prefix_pool_tokens is not None:  # several distinct prefixes resident at once
            pmax = max(pmax, int(requests.prefix_pool_tokens))
        if pmax > 0:
            for r in self.replicas:
                if r.role != "decode" and r.prefix_caching:
                    r.pin(pmax)
        self.rheap: list[tuple] = []
        self.multi = len(self.replicas) > 1  # else the one replica's next boundary is its next_t (no heap)
        self.dyn: list[tuple] = []
        self.seq = 0
        self.completed = 0
        # replies that end at one step boundary release their follow-ups one after another (RELEASE_GAP_S apart)
        self.tie_now, self.tie_k = -INF, 0
        self.events = 0
        self.adapter = None  # per-request adapter ids when replicas serve LoRA adapters
        if any(r.adapters is not None for r in self.replicas):
            ad = getattr(requests, "adapter", None)
            if ad is None:
                raise PlannerError("replicas serve LoRA adapters but the requests name none (planner.serving.sim.adapters)")
            if any(p.role != "both" for p in pools):
                raise PlannerError("LoRA adapters are simulated on aggregated replicas only (not with --disagg)")
            if self.migrator is not None:
                raise PlannerError("live migration with LoRA adapters is not simulated (the adapter would move too)")
            self.adapter = memoryview(np.ascontiguousarray(ad, dtype=np.int64))

    # --------------------------------------------------------------- callbacks from replicas
    def schedule(self, rep: Replica, t: float) -> None:
        """The replica's running step ends at ``t`` (an earlier time it had is void). One replica keeps
        its next boundary in ``next_t`` alone; several share a heap (``multi``)."""
        rep.next_t = t
        if self.multi:
            self.seq = seq = self.seq + 1
            rep.version = seq
            heappush(self.rheap, (t, seq, rep.idx))

    def finish(self, rid: int, now: float, rep: Replica, blocks: int) -> None:
        if self.pkey is not None:
            rep.prompt_done(rid, blocks)
        if rep.fe_on:  # the client sees the reply end when the API server has written its last chunk
            now = max(now, rep.fe_seen)
        self.finish_t[rid] = now
        self.completed += 1
        if self.adapter is not None:
            cache = self.replicas[self.served_by[rid]].adapters
            if cache.release(self.adapter[rid]):
                self._adapter_waiters(cache, now)
        child = self.child[rid]
        if self.slot_next >= 0:  # its slot passes to the next request of the list (an independent prompt)
            child = self.slot_next if self.slot_next < self.n else -1
            self.slot_next += 1
        elif child >= 0 and rep.role != "decode":
            rep.retain(rid, blocks)
        if child >= 0:
            # a client sees the replies that end at one step boundary one after another and sends their follow-ups so:
            # the engine, idle or at its boundary, starts its next step on the first, and the others wait for it
            # (never exactly at once, as a deterministic replay of fixed lengths would have them, in lockstep)
            if now == self.tie_now:
                self.tie_k += 1
            else:
                self.tie_now, self.tie_k = now, 0
            self.arrival[child] = t = now + self.think[child] + self.tie_k * RELEASE_GAP_S
            self.seq += 1
            heappush(self.dyn, (t, self.seq, child, ARRIVE))
        if self.progress is not None and self.completed % 2000 == 0:
            self.progress(self.completed, self.n)

    def reject(self, rid: int, now: float) -> None:
        self.rejected[rid] = 1
        self.finish(rid, now, self.replicas[self.served_by[rid]], 0)
        self.finish_t[rid] = INF

    def transfer(self, rid: int, now: float, rep: Replica) -> None:
        m = rep.m
        t = now + m.kv_transfer_latency_s + (self.isl[rid] + 1) * m.kv_transfer_s_per_token
        self.seq += 1
        heappush(self.dyn, (t, self.seq, rid, KV_IN))

    def _adapter_waiters(self, cache, now: float) -> None:
        """Slots freed: requests waiting for one load their adapter (in arrival order)."""
        while cache.wait:
            rid, a = cache.wait[0]
            ready = cache.acquire(a, now)
            if ready is None:
                return
            cache.wait.popleft()  # still counted in the replica's inbound load until it reaches the engine
            self.seq += 1
            heappush(self.dyn, (max(ready, now), self.seq, rid, ENGINE_IN))

    def migrate_in(self, rid: int, t: float, item: tuple) -> None:
        self.moving[rid] = item
        self.seq += 1
        heappush(self.dyn, (t, self.seq, rid, MIGRATE_IN))

    # --------------------------------------------------------------- main loop
    def _arrive(self, rid: int, t: float, kind: int) -> None:
        if kind == KV_IN:
            least(self.decode_pool).enqueue(rid, t)
            return
        if kind == ENGINE_IN:
            rep = self.replicas[self.served_by[rid]]
            rep.inbound -= 1
            rep.enqueue(rid, t)
            return
        if kind == MIGRATE_IN:
            self.replicas[self.served_by[rid]].receive(self.moving.pop(rid), t)
            return
        rep = self.router.choose(self, rid)
        self.served_by[rid] = rep.idx
        self.pool_of[rid] = rep.pool_idx
        # tokenization and the HTTP hop before the engine sees the request (on the API server's one thread: Replica.admit)
        t_in = rep.admit(t) if rep.fe_on else t + rep.request_overhead_s
        if self.adapter is not None:  # the request's adapter must be resident (a miss loads it over the host link)
            a = self.adapter[rid]
            ready = rep.adapters.acquire(a, t_in)  # the engine loads it once the API server has handed the request over
            if ready is None:  # every slot holds an adapter in use: wait for one (counted as the replica's load)
                rep.adapters.wait.append((rid, a))
                rep.inbound += 1
                return
            t_in = max(t_in, ready)
        if t_in > t:  # on its way to the engine: counted in the replica's load, so the router sees it
            rep.inbound += 1
            self.seq += 1
            heappush(self.dyn, (t_in, self.seq, rid, ENGINE_IN))
        else:
            rep.enqueue(rid, t)

    def _direct(self) -> Replica | None:
        """The replica every external arrival goes to when that needs no router call: one entry replica,
        a load router (session affinity leads to the same replica), no adapter to load first."""
        if len(self.entry_replicas) == 1 and self.adapter is None and type(self.router) in (LeastOutstanding, RoundRobin,
                                                                                            Static, Threshold):
            return self.entry_replicas[0]
        return None

    def run(self) -> SimResult:
        """Run every request to completion: in the compiled core (planner.serving.sim.fastcore) where it covers this
        configuration and a C compiler is at hand, else in Python; the results are the same. ``wall_s`` counts the run,
        not the one-time compile of the C core (cached between processes)."""
        want = fastcore.wanted()
        why = fastcore.reason(self) if want != "python" else "PLANNER_SIM_CORE=python"
        self.core_note = None
        lib = fastcore.load() if why is None else None
        wall0 = time.perf_counter()
        if why is None and lib is None:
            why = fastcore._error
            self.core_note = f"the Python event loop ran ({why}): same results as the compiled core, about 50x slower"
        if want == "c" and why is not None:
            raise PlannerError(f"PLANNER_SIM_CORE=c but the compiled simulator core cannot run this: {why}")
        self.core = "c" if why is None else "python"
        self.core_reason = why
        arr = self.table.arrival_s
        ext = np.nonzero(np.isfinite(arr))[0]  # requests from outside (a follow-up turn arrives when its parent ends)
        ext = ext[np.argsort(arr[ext], kind="stable")]
        ext_t, ext_id = np.ascontiguousarray(arr[ext]), np.ascontiguousarray(ext, dtype=np.int64)
        qs = QueueSampler(float(ext_t[0]) if ext_t.size else 0.0, float(ext_t[-1] - ext_t[0]) if ext_t.size > 1 else 0.0)
        if why is None:
            self.events = fastcore.run(self, qs, ext_t, ext_id)
        else:
            self._run_python(qs, ext_t, ext_id)
        return self._result(qs, time.perf_counter() - wall0)

    def _run_python(self, qs: QueueSampler, ext_t: np.ndarray, ext_id: np.ndarray) -> None:
        # read through memoryviews (a Python number made per read) rather than lists of a million boxed numbers
        ext_t, ext_id = memoryview(ext_t), memoryview(ext_id)
        n_ext = len(ext_id)
        rheap, dyn, reps = self.rheap, self.dyn, self.replicas
        heappop, arrive = heapq.heappop, self._arrive
        i = events = 0
        max_events = self.max_events if self.max_events is not None else INF
        ta = ext_t[0] if n_ext else INF
        next_sample = qs.next
        direct = self._direct()
        multi, rep0 = self.multi, reps[0]
        if direct is not None:
            served_by, pool_of, d_idx, d_pool = self.served_by, self.pool_of, direct.idx, direct.pool_idx
            d_ovh, d_enqueue, d_fe = direct.request_overhead_s, direct.enqueue, direct.fe_on
        while True:
            if not multi and not dyn and rep0.next_t < ta:  # the one replica's step ends before anything arrives
                t = rep0.next_t
                rep0.next_t = INF
                rep0.boundary(t)
            else:
                td = dyn[0][0] if dyn else INF
                tr = rheap[0][0] if rheap else INF if multi else rep0.next_t
                if ta <= td and ta <= tr:
                    if ta == INF:
                        break
                    t = ta
                    rid = ext_id[i]
                    i += 1
                    if direct is None:
                        arrive(rid, t, ARRIVE)
                    else:  # _arrive without the router
                        served_by[rid] = d_idx
                        pool_of[rid] = d_pool
                        t_in = direct.admit(t) if d_fe else t + d_ovh
                        if t_in > t:
                            direct.inbound += 1
                            self.seq += 1
                            heappush(dyn, (t_in, self.seq, rid, ENGINE_IN))
                        else:
                            d_enqueue(rid, t)
                    ta = ext_t[i] if i < n_ext else INF
                elif td <= tr:
                    t, _, rid, kind = heappop(dyn)
                    arrive(rid, t, kind)
                elif multi:
                    t, seq, idx = heappop(rheap)
                    rep = reps[idx]
                    if rep.version != seq:
                        continue  # a jump cut short by an arrival left its old end behind (always later)
                    rep.boundary(t)
                else:
                    t = tr
                    rep0.next_t = INF
                    rep0.boundary(t)
            events += 1
            if t >= next_sample:
                next_sample = qs.sample(t, reps)
            if events > max_events:
                raise PlannerError(f"simulation stopped after {max_events} events")
        self.events = events

    def _result(self, qs: QueueSampler, wall_s: float) -> SimResult:
        reps, tab = self.replicas, self.table
        notes = list(self.req.notes)
        if self.core_note:
            notes.append(self.core_note)
        stuck = [r.idx for r in reps if r.unfinished or r.waiting or r.swapped or r.prefilling or r.dec.n]
        if stuck:
            notes.append(f"{len(stuck)} replica(s) ended with unfinished requests")
        rej = tab.rejected.astype(bool)
        if rej.any():
            notes.append(f"{int(rej.sum())} request(s) rejected: prompt + output exceed the KV cache of one replica")
        if self.progress is not None:
            self.progress(self.n, self.n)
        busy = np.array([r.busy_s for r in reps])
        first = tab.first_token_s
        return SimResult(
            arrival_s=tab.arrival_s, first_token_s=np.where(first < 0, np.nan, first), finish_s=tab.finish_s,
            input_tokens=tab.input_tokens, output_tokens=self.req.output_tokens.copy(),
            replica=tab.replica, pool=tab.pool, preemptions=tab.preemptions, rejected=rej,
            pools=[{"name": p.replica.name, "role": p.role, "count": p.count, "gpus": p.replica.gpus, "plan": p.replica.plan,
                    "accuracy": p.replica.accuracy, "usd_per_hour": p.replica.usd_per_hour} for p in self.pools],
            replica_busy_s=busy, replica_pool=np.array([r.pool_idx for r in reps]),
            replica_mean_batch=np.array([r.batch_time / r.busy_s if r.busy_s > 0 else 0.0 for r in reps]),
            queue_t=np.array(qs.t), queue_waiting=np.array(qs.w), queue_running=np.array(qs.r), events=self.events,
            wall_s=wall_s, cache_hit_tokens=sum(r.kv.hit_tokens for r in reps), router=self.router.label(), notes=notes,
            cache_hit_requests=sum(r.kv.hits for r in reps), steps=sum(r.steps for r in reps), extras=self._extras(),
            augmented=getattr(self.router, "augmented", None), klass=getattr(self.req, "klass", None), classes=list(getattr(self.req, "classes", None) or []),
            core=self.core,
        )

    def _extras(self) -> dict:
        out = {}
        if self.adapter is not None:
            from planner.serving.sim.adapters import lora_summary

            out["lora"] = lora_summary(self.replicas, float(self.req.input_tokens.mean() + self.req.output_tokens.mean() / 2))
        if self.migrator is not None:
            out["migration"] = self.migrator.summary()
        return out
