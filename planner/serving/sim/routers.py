"""Routers: which replica a new request goes to. Registry (``Router(policy)`` builds one):

* ``round-robin``;
* ``least-outstanding`` -- the replica with the fewest requests waiting or running;
* ``threshold:T`` -- load-aware fleet router over pools of model sizes, biggest first: the big
  model's least-loaded replica unless its queue exceeds T, then the next size down (the last pool
  takes the overflow);
* ``static`` -- the first (biggest) pool only.

Every policy keeps session affinity: a conversation's next turn goes where its KV lives.
"""

from __future__ import annotations

from planner.errors import PlannerError


def least(reps: list) -> object:
    best, bo = reps[0], reps[0].outstanding()
    for r in reps[1:]:
        o = r.outstanding()
        if o < bo:
            best, bo = r, o
    return best


class BaseRouter:
    policy = ""

    def label(self) -> str:
        return self.policy

    least = staticmethod(least)

    def choose(self, sim, rid: int):
        par = sim.parent[rid]
        if par >= 0:
            r = sim.replicas[sim.served_by[par]]
            if r.role != "decode":
                return r  # session affinity: the previous turn's KV lives there
        return self.pick(sim)

    def pick(self, sim):
        raise NotImplementedError


class RoundRobin(BaseRouter):
    policy = "round-robin"

    def __init__(self, arg: str = ""):
        self.rr = 0

    def pick(self, sim):
        reps = sim.entry_replicas
        r = reps[self.rr % len(reps)]
        self.rr += 1
        return r


class LeastOutstanding(BaseRouter):
    policy = "least-outstanding"

    def __init__(self, arg: str = ""):
        pass

    def pick(self, sim):
        reps = sim.entry_replicas
        if len(reps) == 1:
            return reps[0]
        return least(reps)


class Static(BaseRouter):
    policy = "static"

    def __init__(self, arg: str = ""):
        pass

    def pick(self, sim):
        return least(sim.entry_pools[0])


class Threshold(BaseRouter):
    policy = "threshold"

    def __init__(self, arg: str = ""):
        try:
            self.threshold = int(arg) if arg else 8
        except ValueError:
            raise PlannerError(f"--router threshold:T needs an integer T, got {'threshold:' + arg!r}") from None
        if self.threshold < 0:
            raise PlannerError("--router threshold:T needs T >= 0")

    def label(self) -> str:
        return f"threshold:{self.threshold}"

    def pick(self, sim):
        pools = sim.entry_pools
        for pool in pools:
            best = least(pool)
            if best.outstanding() <= self.threshold:
                return best
        return least(pools[-1])


ROUTERS = {c.policy: c for c in (RoundRobin, LeastOutstanding, Threshold, Static)}
ALIASES = {"rr": "round-robin", "roundrobin": "round-robin", "lo": "least-outstanding", "least": "least-outstanding",
           "least-loaded": "least-outstanding"}


def Router(policy: str = "least-outstanding") -> BaseRouter:  # noqa: N802 (a factory kept under its old class name)
    """A router from its name: round-robin | least-outstanding | threshold:T | static."""
    p = policy.strip().lower().replace("_", "-")
    name, _, arg = p.partition(":")
    name = ALIASES.get(name, name)
    if name not in ROUTERS or (arg and name != "threshold"):
        raise PlannerError(f"unknown router {policy!r} (use round-robin, least-outstanding, threshold:T or static)")
    return ROUTERS[name](arg)
