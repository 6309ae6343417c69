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
    """The replica with the fewest requests outstanding (Replica.outstanding, inline), the first on ties."""
    best, bo = None, None
    for r in reps:
        o = len(r.waiting) + len(r.pending) + len(r.prefilling) + r.dec.n + len(r.swapped) + r.inbound
        if bo is None or o < bo:
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


class ICCache(BaseRouter):
    """IC-Cache (SOSP'25): a request whose past twins are cached (a share ``hit_rate`` of requests, drawn
    per request) goes to the small model with ``examples`` cached examples of ``tokens`` tokens each in
    front of its prompt, while the small pool's least-loaded replica holds at most ``threshold``
    requests; everything else is routed on load alone (the big pool first, the small one as overflow,
    without examples). ``augmented`` marks the requests served with examples."""

    policy = "ic-cache"

    def __init__(self, hit_rate: float, examples: int, tokens: int, threshold: int = 8, seed: int = 0):
        self.hit_rate, self.extra, self.threshold, self.seed = hit_rate, int(examples * tokens), threshold, seed
        self.eligible = self.augmented = None

    def label(self) -> str:
        return f"ic-cache:{self.hit_rate:g}"

    def choose(self, sim, rid: int):
        if self.eligible is None:
            import numpy as np

            self.eligible = np.random.default_rng([self.seed, 0x1CCA]).random(sim.n) < self.hit_rate
            self.augmented = np.zeros(sim.n, dtype=bool)
        par = sim.parent[rid]
        if par >= 0:
            return sim.replicas[sim.served_by[par]]
        pools = sim.entry_pools
        if self.eligible[rid] and len(pools) > 1:
            r = least(pools[-1])
            if r.outstanding() <= self.threshold:
                sim.isl[rid] += self.extra
                self.augmented[rid] = True
                return r
        b = least(pools[0])
        if b.outstanding() <= self.threshold or len(pools) == 1:
            return b
        return least(pools[-1])


def parse_ic_cache(text: str) -> tuple[float, int, int, float]:
    """``HIT_RATE:EXAMPLES:TOKENS:QUALITY`` -> values (checked)."""
    try:
        h, e, t, q = text.split(":")
        h_f, e_i, t_i, q_f = float(h), int(e), int(t), float(q)
    except ValueError:
        raise PlannerError(f"--ic-cache takes HIT_RATE:EXAMPLES:TOKENS:QUALITY such as 0.7:3:200:1.0, got {text!r}") from None
    if not 0 < h_f <= 1:
        raise PlannerError(f"--ic-cache hit rate must lie in (0, 1], got {h}")
    if e_i < 0 or t_i < 0:
        raise PlannerError("--ic-cache examples and tokens per example must be >= 0")
    if not 0 < q_f <= 1:
        raise PlannerError(f"--ic-cache quality (small model with examples relative to the big one) must lie in (0, 1], got {q}")
    return h_f, e_i, t_i, q_f
