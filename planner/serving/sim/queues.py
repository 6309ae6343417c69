"""Scheduler policies: the order in which a replica admits its waiting requests.

A policy is a waiting queue with ``push`` (a new request), ``push_front`` (a preempted one, which
goes back ahead of the others), ``peek``/``take`` (the next to admit) and ``len``. Registry:

* ``fcfs`` -- first come, first served (vLLM, SGLang and TensorRT-LLM default);
* ``priority`` -- lowest ``Requests.priority`` first, FCFS among equals (vLLM ``--scheduling-policy priority``);
* ``slo-aware`` -- earliest deadline first: a request's deadline is its arrival plus the TTFT target
  minus the time its own prefill takes at the replica's token budget (least slack first).
"""

from __future__ import annotations

import heapq
from collections import deque

from planner.errors import PlannerError


class FCFSQueue(deque):
    """First come, first served: a deque (its length and truth test run at C speed)."""

    name = "fcfs"

    def __init__(self, sim=None, replica=None):
        super().__init__()

    push = deque.append
    push_front = deque.appendleft
    take = deque.popleft

    def peek(self) -> int:
        return self[0]


class _KeyedQueue(list):
    """A heap of (key, order, rid) kept in the list itself (its length and truth test run at C speed);
    preempted requests get key -inf (they go first)."""

    def __init__(self, sim, replica):
        super().__init__()
        self.sim, self.replica = sim, replica
        self._n = 0

    def key(self, rid: int) -> float:
        raise NotImplementedError

    def push(self, rid: int) -> None:
        self._n += 1
        heapq.heappush(self, (self.key(rid), self._n, rid))

    def push_front(self, rid: int) -> None:
        self._n += 1
        heapq.heappush(self, (-float("inf"), -self._n, rid))

    def peek(self) -> int:
        return self[0][2]

    def take(self) -> int:
        return heapq.heappop(self)[2]


class PriorityQueue(_KeyedQueue):
    name = "priority"

    def key(self, rid: int) -> float:
        pr = self.sim.priority
        return float(pr[rid]) if pr is not None else 0.0


class SLOAwareQueue(_KeyedQueue):
    name = "slo-aware"

    def __init__(self, sim, replica):
        super().__init__(sim, replica)
        m = replica.m
        self.ttft = m.ttft_slo_s if m.ttft_slo_s is not None else 1.0
        mbt = float(m.max_batched_tokens)
        self.prefill_s_per_token = m.table.mixed(0.0, 1.0, mbt, mbt) / mbt

    def key(self, rid: int) -> float:
        sim = self.sim
        return sim.arrival[rid] + self.ttft - sim.isl[rid] * self.prefill_s_per_token


QUEUES = {c.name: c for c in (FCFSQueue, PriorityQueue, SLOAwareQueue)}


def queue_class(name: str):
    key = name.strip().lower().replace("_", "-")
    if key in ("fifo", "fcfs"):
        key = "fcfs"
    if key in ("slo", "edf", "deadline"):
        key = "slo-aware"
    if key not in QUEUES:
        raise PlannerError(f"unknown scheduler policy {name!r} (use {', '.join(QUEUES)})")
    return QUEUES[key]
