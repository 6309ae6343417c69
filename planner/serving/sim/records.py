"""Typed records of the simulator: per-request state as numpy columns (scalar access through
memoryviews, which is fast and copies nothing) and the small records replicas keep."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.errors import PlannerError
from planner.serving.workload import Requests

INF = math.inf


@dataclass(slots=True)
class PrefillJob:
    """A prompt being prefilled (whole, or chunk by chunk)."""

    rid: int
    remaining: int  # prompt tokens still to compute
    past: int  # tokens already in the KV cache (shared prefix, cached history, earlier chunks)
    alloc: int  # KV blocks held
    shared: int  # tokens of the pinned shared prefix it reuses


@dataclass(slots=True)
class SwappedSeq:
    """A decoding sequence whose KV went to host memory (swap preemption)."""

    rid: int
    own: float  # tokens of KV it owns (beyond the shared prefix)
    ctx: float  # context length
    remaining: int  # output tokens still to generate
    shared: int


class RequestTable:
    """Inputs and running state of every request. Arrays are the results; the ``*_v`` memoryviews
    (Python scalars on index) are what the event loop reads and writes."""

    def __init__(self, req: Requests):
        n = len(req)
        self.n = n
        self.input_tokens = np.array(req.input_tokens, dtype=np.int64)  # a copy: routers may lengthen prompts (IC-Cache)
        self.output_tokens = np.ascontiguousarray(req.output_tokens, dtype=np.int64)
        self.prefix_tokens = np.ascontiguousarray(req.prefix_tokens, dtype=np.int64)
        self.parent = np.ascontiguousarray(req.parent, dtype=np.int64)
        self.think_s = np.ascontiguousarray(req.think_s, dtype=np.float64)
        self.arrival_s = np.array(req.arrival_s, dtype=np.float64)  # follow-up turns get theirs when the parent ends
        self.first_token_s = np.full(n, -1.0)
        self.finish_s = np.full(n, INF)
        self.generated = np.zeros(n, dtype=np.int64)
        self.preemptions = np.zeros(n, dtype=np.int64)
        self.rejected = np.zeros(n, dtype=np.int8)
        self.replica = np.full(n, -1, dtype=np.int64)
        self.pool = np.full(n, -1, dtype=np.int64)
        pr = getattr(req, "priority", None)
        self.priority = memoryview(np.ascontiguousarray(pr, dtype=np.float64)) if pr is not None else None
        child = np.full(n, -1, dtype=np.int64)
        kids = np.nonzero(self.parent >= 0)[0]
        child[self.parent[kids]] = kids
        self.child = child
        pk = getattr(req, "prompt_key", None)
        self.prompt_key = np.ascontiguousarray(pk, dtype=np.int64) if pk is not None else None
        self.prompt_held = np.zeros(n, dtype=np.int8)  # 1 while a request shares its reused prompt's cached blocks
        # which cached prefix a request shares with others (equal ids: the same physical blocks): the workload's
        # share_group, else the prompt a client sends again (its prompt_key), else one shared prefix (a system prompt)
        sg = getattr(req, "share_group", None)
        if sg is None and pk is not None and not (n and self.prefix_tokens.max() > 0):
            sg = np.maximum(np.asarray(pk, dtype=np.int64), 0)
        self.share_group = np.ascontiguousarray(sg, dtype=np.int64) if sg is not None else np.zeros(n, dtype=np.int64)
        if n and self.share_group.min() < 0:
            raise PlannerError("a request's share group is a whole number from 0")
        self.groups = int(self.share_group.max()) + 1 if n else 0

    def views(self) -> dict[str, memoryview]:
        return {"isl": memoryview(self.input_tokens), "osl": memoryview(self.output_tokens),
                "prefix": memoryview(self.prefix_tokens), "parent": memoryview(self.parent), "think": memoryview(self.think_s),
                "arrival": memoryview(self.arrival_s), "first": memoryview(self.first_token_s),
                "finish_t": memoryview(self.finish_s), "gen": memoryview(self.generated),
                "preempted": memoryview(self.preemptions), "rejected": memoryview(self.rejected),
                "served_by": memoryview(self.replica), "pool_of": memoryview(self.pool), "child": memoryview(self.child),
                "pkey": memoryview(self.prompt_key) if self.prompt_key is not None else None,
                "pheld": memoryview(self.prompt_held), "share": memoryview(self.share_group)}

