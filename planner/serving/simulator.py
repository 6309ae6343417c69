"""An event simulator of replicas doing continuous (in-flight) batching.

Each replica runs engine steps like vLLM / TensorRT-LLM: every step carries all running
decodes plus as much prefill as the token budget (``max_batched_tokens``) allows, whole
prompts or -- with chunked prefill -- pieces of them; at most ``max_seqs`` sequences run at
once. KV-cache blocks come from the memory model. Two admission policies:

* ``reserve`` (TensorRT-LLM's GUARANTEED_NO_EVICT, its default): a request starts only when
  blocks for its whole prompt and output are free; nothing is ever preempted;
* ``ondemand`` (vLLM's paged attention): blocks are taken as tokens are written; when a decode
  step finds none free, the newest running sequence is preempted -- ``recompute`` (its KV is
  dropped and its prompt plus the tokens so far are prefilled again) or ``swap`` (its KV goes
  over the host link and comes back later; both copies cost time in the step).

Step times come from the cost model through tables built once per replica type
(:class:`StepTable`): ``CostModel.step`` is evaluated on a grid of (decode batch, mean decode
context, prefill tokens, prefill attention span) in one vectorized call, and the simulator
interpolates. Between events (an arrival, a completion, an admission) a replica's batch does not
change, so a run of pure decode steps is advanced in one jump (its time is the sum of the
per-step times along the growing context) -- the simulator does O(events), not O(tokens), work.

Around the replicas: a router (round robin, least outstanding, session affinity for multi-turn
conversations, a queue-threshold router for fleets of different model sizes), disaggregated
prefill and decode pools with the KV-cache transfer between them, speculative decoding
(k drafts at acceptance alpha emit ``(1 - alpha^(k+1)) / (1 - alpha)`` tokens per step on
average; the draft is a one-layer head, as in the plan search), and a prefix cache (the shared
system-prompt prefix stays resident; a conversation's KV stays cached for its next turn
until memory pressure evicts it, least recently used first).

Outputs per request: arrival, first-token and finish times. TTFT = first token - arrival;
TPOT = (finish - first token) / (output tokens - 1), the mean inter-token latency of a request
after its first token. Same inputs and seed, same numbers.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from planner.costmodel.collectives import Fabric
from planner.costmodel.memory import kv_bytes_per_token_layers, memory
from planner.costmodel.plans import PlanArrays, make_plans
from planner.costmodel.step import CostModel, Step
from planner.errors import PlannerError
from planner.serving.workload import Requests
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.loader import get_interconnect
from planner.specs.model import Model

INF = math.inf

# grid points of the step-cost tables (trimmed to what a replica can reach)
N_POINTS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192)
C_POINTS = (1, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576)
P_POINTS = (0, 1, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288)
L_POINTS = (1, 128, 512, 2048, 8192, 32768, 131072, 524288, 2097152)


def _axis(points, hi) -> list[float]:
    a = [float(x) for x in points if x < hi]
    a.append(float(hi))
    if len(a) == 1:
        a.append(float(hi) + 1.0)
    return a


def _loc(ax: list[float], x: float) -> tuple[int, float]:
    i = bisect_right(ax, x) - 1
    if i < 0:
        i = 0
    elif i > len(ax) - 2:
        i = len(ax) - 2
    a = ax[i]
    return i, (x - a) / (ax[i + 1] - a)


def spec_tokens_per_step(k: int, alpha: float) -> float:
    """Expected tokens a sequence emits per verification step with k drafts at acceptance alpha."""
    if k <= 0:
        return 1.0
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


class StepTable:
    """Step latency of one replica type on a grid, from ``CostModel.step`` in one vectorized call.

    ``decode(n, ctx)``: a step of ``n`` decoding sequences at mean context ``ctx``.
    ``mixed(n, ctx, p, span)``: the same plus ``p`` prefill tokens whose attention spans ``span``
    keys per token on average x 2 (a whole prompt of L tokens has span ~ L; a chunk of t tokens
    after ``past`` cached ones has span 2 past + t). Under pipeline parallelism the batch is
    split into pp micro-batches and a step is max(latency, pp x stage time), as in the
    in-flight steady state. Linear interpolation between grid points, linear extrapolation
    beyond them."""

    def __init__(self, cm: CostModel, plans: PlanArrays, *, max_seqs: int, max_ctx: float, max_prefill: float,
                 max_span: float, spec_k: int = 0):
        self.n_ax = _axis(N_POINTS, max(max_seqs, 1))
        self.c_ax = _axis(C_POINTS, max(max_ctx, 2.0))
        self.p_ax = _axis(P_POINTS, max(max_prefill, 2.0))
        self.l_ax = _axis(L_POINTS, max(max_span, 2.0))
        n = np.array(self.n_ax)[:, None, None, None]
        c = np.array(self.c_ax)[None, :, None, None]
        p = np.array(self.p_ax)[None, None, :, None]
        L = np.array(self.l_ax)[None, None, None, :]
        pp = float(plans.pp[0])
        seqs = np.where(p > 0, (p / pp) / L, 0.0) + 0.0 * n * c
        sc = cm.step(plans, Step(prefill_seqs=seqs, prefill_tokens=L + 0.0 * seqs, decode_seqs=n / pp, decode_ctx=c,
                                 decode_tokens=float(spec_k + 1)))
        t = np.maximum(sc.time_s, pp * sc.stage_time_s)
        t = np.broadcast_to(t, (len(self.n_ax), len(self.c_ax), len(self.p_ax), len(self.l_ax))).copy()
        if spec_k > 0:
            # draft head (one decoder layer + lm_head per drafted token) over the decoding sequences
            dc = cm.step(plans, Step(decode_seqs=n[:, :, 0, 0] / pp, decode_ctx=c[:, :, 0, 0]))
            once = {"embedding", "final_norm", "lm_head", "pp_sendrecv"}
            layer = sum(o.time_s * o.count for o in dc.ops if o.name not in once)
            per_layer = layer / max(next(o.count for o in dc.ops if o.name == "qkv_proj"), 1)
            head = next(o.time_s for o in dc.ops if o.name == "lm_head")
            draft = np.where(n[:, :, 0, 0] > 0, spec_k * (per_layer + head), 0.0)
            t = t + np.broadcast_to(draft, t.shape[:2])[:, :, None, None]
        self.grid = t
        self._dec = t[:, :, 0, 0].tolist()
        self._mix = t.ravel().tolist()
        self._sc = len(self.l_ax) * len(self.p_ax)
        self._sn = self._sc * len(self.c_ax)
        self._sp = len(self.l_ax)

    def decode(self, n: float, ctx: float) -> float:
        i, wi = _loc(self.n_ax, n)
        j, wj = _loc(self.c_ax, ctx)
        r0, r1 = self._dec[i], self._dec[i + 1]
        a = r0[j] + wj * (r0[j + 1] - r0[j])
        b = r1[j] + wj * (r1[j + 1] - r1[j])
        return a + wi * (b - a)

    def mixed(self, n: float, ctx: float, p: float, span: float) -> float:
        i, wi = _loc(self.n_ax, n)
        j, wj = _loc(self.c_ax, ctx)
        k, wk = _loc(self.p_ax, p)
        m, wm = _loc(self.l_ax, span)
        g, sn, sc, sp = self._mix, self._sn, self._sc, self._sp
        out = 0.0
        for di, fi in ((0, 1.0 - wi), (1, wi)):
            for dj, fj in ((0, 1.0 - wj), (1, wj)):
                f = fi * fj
                if f == 0.0:
                    continue
                base = (i + di) * sn + (j + dj) * sc
                b0 = base + k * sp + m
                b1 = b0 + sp
                v0 = g[b0] + wm * (g[b0 + 1] - g[b0])
                v1 = g[b1] + wm * (g[b1 + 1] - g[b1])
                out += f * (v0 + wk * (v1 - v0))
        return out


# ------------------------------------------------------------------ replica types

@dataclass
class Scheduler:
    """Engine scheduler knobs of a replica (defaults from the engine)."""

    max_seqs: int | None = None  # None: the engine's
    max_batched_tokens: int | None = None
    chunked_prefill: bool | None = None  # None: the engine's (vLLM V1 always chunks; TensorRT-LLM 0.14 does not by default)
    admission: str | None = None  # reserve | ondemand; None: the engine's (trtllm reserve, vllm ondemand)
    preemption: str = "recompute"  # recompute | swap
    spec_k: int = 0
    spec_alpha: float = 0.0

    def check(self) -> None:
        if self.admission not in (None, "reserve", "ondemand"):
            raise PlannerError(f"unknown KV admission policy {self.admission!r} (use reserve or ondemand)")
        if self.preemption not in ("recompute", "swap"):
            raise PlannerError(f"unknown preemption mode {self.preemption!r} (use recompute or swap)")
        if self.spec_k < 0 or not 0 <= self.spec_alpha <= 1:
            raise PlannerError("speculative decoding needs k >= 0 drafts and acceptance alpha in [0, 1]")
        for name in ("max_seqs", "max_batched_tokens"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise PlannerError(f"--{name.replace('_', '-')} must be a positive integer")


@dataclass
class ReplicaModel:
    """Everything the simulator needs about one kind of replica."""

    name: str
    model_id: str
    hardware_id: str
    gpus: int
    table: StepTable
    kv_blocks: int
    block_tokens: int
    max_seqs: int
    max_batched_tokens: int
    chunked_prefill: bool
    reserve: bool
    swap: bool
    tokens_per_step: float  # E: expected tokens per decode step (speculative decoding)
    spec_k: int
    swap_s_per_token: float  # host-link time to move one token's KV (one device's share)
    kv_transfer_s_per_token: float  # disaggregated: prefill -> decode pool, per prompt token
    kv_transfer_latency_s: float
    accuracy: float = 1.0  # quality score of the served output (fleets)
    plan: dict = field(default_factory=dict)
    usd_per_hour: float | None = None


def _host_bw(hw: Hardware) -> float:
    if hw.links.host is None:
        return INF
    link = get_interconnect(hw.links.host.interconnect)
    frac = link.achievable.fraction if link.achievable else 1.0
    return link.bandwidth_per_direction.value * frac * hw.links.host.count


def build_replica(model: Model, hw: Hardware, *, tp: int = 1, pp: int = 1, ep: int = 1, weights: str = "bf16",
                  kv: str = "bf16", activations: str | None = None, engine: Engine, sched: Scheduler | None = None,
                  max_input: float = 8192, max_ctx: float | None = None, name: str | None = None, accuracy: float = 1.0,
                  disagg_group_gpus: int | None = None) -> ReplicaModel:
    """A replica type: its step-cost table, KV blocks and scheduler limits."""
    sched = sched or Scheduler()
    sched.check()
    plans = make_plans(model, hw, tp=tp, pp=pp, ep=ep, weights=weights, kv=kv, activations=activations)
    mem = memory(model, hw, plans, engine)
    B = int(engine.kv_block_tokens)
    full, swa = kv_bytes_per_token_layers(model, plans)
    per_tok_dev = float(full[0] + swa[0])  # sliding-window layers counted in full (an upper bound)
    kv_cap = float(mem.kv_capacity_bytes[0])
    gpus = int(tp * pp)
    label = name or f"{model.id} tp{tp}" + (f" pp{pp}" if pp > 1 else "") + f" {weights}/kv-{kv}"
    if kv_cap <= 0:
        raise PlannerError(f"{label} does not fit on {hw.id}: the weights leave no memory for the KV cache")
    blocks = int(kv_cap // (per_tok_dev * B))
    if blocks < 1:
        raise PlannerError(f"{label} on {hw.id} has room for no KV block of {B} tokens")
    max_seqs = int(sched.max_seqs or engine.max_seqs)
    mbt = int(sched.max_batched_tokens or engine.max_batched_tokens)
    reserve = (sched.admission or ("ondemand" if engine.kv_policy == "total" else "reserve")) == "reserve"
    chunked = sched.chunked_prefill if sched.chunked_prefill is not None else engine.id == "vllm"
    cm = CostModel(model, hw, engine=engine)
    ctx_hi = max_ctx or min(float(model.max_context), blocks * B)
    prefill_hi = max(mbt, max_input)
    table = StepTable(cm, plans, max_seqs=max_seqs, max_ctx=ctx_hi, max_prefill=prefill_hi, max_span=2 * ctx_hi + prefill_hi,
                      spec_k=sched.spec_k)
    fab = Fabric.of(hw)
    grp = np.array([float(disagg_group_gpus or 2 * gpus)])
    bw, lat, frac, _ = fab.tier_for(grp)
    eff = float(bw[0] * frac[0]) * gpus
    per_tok_total = per_tok_dev * gpus
    price = hw.price.usd_per_hour * gpus if hw.price else None
    return ReplicaModel(
        name=label, model_id=model.id, hardware_id=hw.id, gpus=gpus, table=table, kv_blocks=blocks, block_tokens=B,
        max_seqs=max_seqs, max_batched_tokens=mbt, chunked_prefill=chunked, reserve=reserve,
        swap=sched.preemption == "swap", tokens_per_step=spec_tokens_per_step(sched.spec_k, sched.spec_alpha), spec_k=sched.spec_k,
        swap_s_per_token=per_tok_dev / _host_bw(hw), kv_transfer_s_per_token=per_tok_total / eff if eff > 0 else INF,
        kv_transfer_latency_s=float(lat[0]), accuracy=accuracy,
        plan={"model": model.id, "hardware": hw.id, "tp": tp, "pp": pp, "ep": ep, "weights": weights, "kv": kv,
              "engine": engine.id, "max_seqs": max_seqs, "max_batched_tokens": mbt, "chunked_prefill": chunked,
              "kv_admission": "reserve" if reserve else "ondemand", "preemption": sched.preemption,
              "kv_blocks": blocks, "kv_block_tokens": B, "kv_capacity_tokens": blocks * B,
              **({"speculative": {"draft_tokens": sched.spec_k, "acceptance": sched.spec_alpha,
                                  "tokens_per_step": spec_tokens_per_step(sched.spec_k, sched.spec_alpha)}} if sched.spec_k else {})},
        usd_per_hour=price,
    )


@dataclass
class Pool:
    """``count`` replicas of one type. role: both (aggregated), prefill or decode (disaggregated)."""

    replica: ReplicaModel
    count: int = 1
    role: str = "both"


# ------------------------------------------------------------------ the replica state machine

IDLE, JUMP, MIXED = 0, 1, 2


class Replica:
    def __init__(self, idx: int, pool_idx: int, pool: Pool, sim: "Simulator"):
        m = pool.replica
        self.idx, self.pool_idx, self.sim, self.m = idx, pool_idx, sim, m
        self.role = pool.role
        self.table = m.table
        self.E = m.tokens_per_step
        self.dtok = float(m.spec_k + 1)  # tokens each decoding sequence puts through the step (verification)
        self.max_seqs = m.max_seqs
        self.mbt = m.max_batched_tokens
        self.chunked = m.chunked_prefill
        self.reserve = m.reserve
        self.swap = m.swap
        self.B = m.block_tokens
        self.total = m.kv_blocks
        self.used = 0  # blocks of prefilling sequences, reserve-mode decodes and the pinned prefix
        self.dec_blocks = 0  # on-demand decodes' blocks (recomputed from contexts)
        self.ret_blocks = 0  # conversation KV retained for a next turn
        self.retained: OrderedDict[int, int] = OrderedDict()
        self.waiting: deque[int] = deque()
        self.swapped: deque[tuple] = deque()
        self.prefilling: list[list] = []  # [rid, remaining, past, alloc, hit_shared]
        self.heap: list[tuple] = []
        self.n_dec = 0
        self.sum_ctx0 = 0.0
        self.s = 0
        cap = self.max_seqs + 1
        self.slot_rid = [-1] * cap
        self.slot_ctx0 = [0.0] * cap
        self.slot_rem0 = [0] * cap
        self.slot_s0 = [0] * cap
        self.slot_blocks = [0] * cap
        self.slot_gen = [0] * cap
        self.slot_shared = [0] * cap
        self.own0 = np.zeros(cap)  # on-demand: own tokens = own0 + E * s
        self.alive = np.zeros(cap, dtype=bool)
        self.free_slots = list(range(cap - 1, -1, -1))
        self.order: dict[int, None] = {}
        self.kind = IDLE
        self.t_start = 0.0
        self.t_end = 0.0
        self.jump = (0.0, 0, 0.0, 0.0)
        self.pieces: list[tuple] = []
        self.version = 0
        self.busy_s = 0.0
        self.steps = 0
        self.batch_time = 0.0  # integral of the decode batch over time
        self.pinned = 0
        self.preemptions = 0

    # --------------------------------------------------------------- bookkeeping
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.prefilling) + self.n_dec + len(self.swapped)

    def free(self) -> int:
        return self.total - self.used - self.dec_blocks - self.ret_blocks

    def pin(self, tokens: int) -> None:
        b = -(-tokens // self.B)
        if b > self.pinned:
            self.used += b - self.pinned
            self.pinned = b

    def _dec_blocks_at(self, s: int) -> int:
        if not self.n_dec:
            return 0
        own = self.own0[self.alive] + self.E * s
        return int(np.ceil(own / self.B).sum())

    def _join(self, rid: int, ctx: float, own: float, remaining: int, blocks: int, shared: int) -> None:
        """A sequence starts decoding (its next token comes from the next step)."""
        slot = self.free_slots.pop()
        s = self.s
        E = self.E
        self.slot_rid[slot] = rid
        c0 = ctx - E * s
        self.slot_ctx0[slot] = c0
        self.slot_rem0[slot] = remaining
        self.slot_s0[slot] = s
        self.slot_blocks[slot] = blocks
        self.slot_shared[slot] = shared
        g = self.slot_gen[slot] + 1
        self.slot_gen[slot] = g
        self.sum_ctx0 += c0
        self.n_dec += 1
        self.order[slot] = None
        steps = remaining if E == 1.0 else int(math.ceil(remaining / E))
        heapq.heappush(self.heap, (s + steps, slot, g))
        if not self.reserve:
            self.own0[slot] = own - E * s
            self.alive[slot] = True
            self.dec_blocks += -(-int(own) // self.B)

    def _leave(self, slot: int) -> int:
        """Remove a decoding sequence; returns its rid."""
        rid = self.slot_rid[slot]
        self.slot_rid[slot] = -1
        self.slot_gen[slot] += 1
        self.sum_ctx0 -= self.slot_ctx0[slot]
        self.n_dec -= 1
        del self.order[slot]
        self.free_slots.append(slot)
        if self.reserve:
            self.used -= self.slot_blocks[slot]
        else:
            own = self.own0[slot] + self.E * self.s
            self.dec_blocks -= -(-int(math.ceil(own)) // self.B)
            self.alive[slot] = False
        return rid

    def _generated_since_join(self, slot: int) -> int:
        return min(self.slot_rem0[slot], int(round((self.s - self.slot_s0[slot]) * self.E)))

    # --------------------------------------------------------------- events
    def enqueue(self, rid: int, now: float) -> None:
        self.waiting.append(rid)
        if self.kind == IDLE:
            self.sim.schedule(self, now)
        elif self.kind == JUMP and len(self.waiting) == 1 and len(self.prefilling) + self.n_dec < self.max_seqs:
            self._truncate(now)

    def _truncate(self, t: float) -> None:
        t0, k, a, slope = self.jump
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
        if kk >= k:
            return
        self.jump = (t0, kk, a, slope)
        self.t_end = t0 + kk * a + slope * kk * (kk - 1) / 2.0
        self.sim.schedule(self, self.t_end)

    def boundary(self, now: float) -> None:
        kind = self.kind
        if kind != IDLE:
            dur = now - self.t_start
            self.busy_s += dur
            if kind == JUMP:
                k = self.jump[1]
                self.steps += k
                self.batch_time += self.n_dec * dur
                self.s += k
            else:
                self.steps += 1
                self.batch_time += self.n_dec * dur
                self.s += 1
            if not self.reserve and self.n_dec:
                self.dec_blocks = self._dec_blocks_at(self.s)
            self._finish_decodes(now)
            if kind == MIXED:
                for rid, last in self.pieces:
                    if last:
                        self._prefill_done(rid, now)
                self.pieces = []
        self._form(now)

    def _finish_decodes(self, now: float) -> None:
        heap, s, sim = self.heap, self.s, self.sim
        gen = self.slot_gen
        while heap and heap[0][0] <= s:
            _, slot, g = heapq.heappop(heap)
            if gen[slot] != g:
                continue
            blocks = self.slot_blocks[slot] if self.reserve else -(-int(math.ceil(self.own0[slot] + self.E * s)) // self.B)
            rid = self._leave(slot)
            sim.finish(rid, now, self, blocks)

    def _prefill_done(self, rid: int, now: float) -> None:
        """The last piece of a prompt ran: its first (or next) token is out."""
        sim = self.sim
        for i, pf in enumerate(self.prefilling):
            if pf[0] == rid:
                break
        pf = self.prefilling.pop(i)
        alloc, shared = pf[3], pf[4]
        if sim.first[rid] < 0:
            sim.first[rid] = now
        gen = sim.gen[rid] + 1
        sim.gen[rid] = gen
        remaining = sim.osl[rid] - gen
        ctx = sim.isl[rid] + gen
        if remaining <= 0:
            self.used -= alloc
            sim.finish(rid, now, self, alloc)
            return
        if self.role == "prefill":
            self.used -= alloc
            sim.transfer(rid, now, self)
            return
        if self.reserve:
            self._join(rid, ctx, ctx - shared, remaining, alloc, shared)
        else:
            self.used -= alloc
            self._join(rid, ctx, ctx - shared, remaining, 0, shared)

    def _preempt(self) -> float:
        """Preempt the newest decoding sequence (on-demand KV); returns the swap-out time."""
        slot = next(reversed(self.order))
        own = self.own0[slot] + self.E * self.s
        ctx = self.slot_ctx0[slot] + self.E * self.s
        rem = self.slot_rem0[slot] - self._generated_since_join(slot)
        shared = self.slot_shared[slot]
        rid = self._leave(slot)
        sim = self.sim
        sim.gen[rid] = sim.osl[rid] - rem
        sim.preempted[rid] += 1
        self.preemptions += 1
        if self.swap:
            self.swapped.append((rid, own, ctx, rem, shared))
            return own * self.m.swap_s_per_token
        self.waiting.appendleft(rid)
        return 0.0

    def _growth(self, k: int) -> int:
        return self._dec_blocks_at(self.s + k) - self.dec_blocks

    def _form(self, now: float) -> None:
        sim = self.sim
        E, B = self.E, self.B
        extra = 0.0
        preempted = False
        if not self.reserve and self.n_dec:
            while self.n_dec and self._growth(1) > self.free():
                extra += self._preempt()
                preempted = True
        budget = self.mbt - self.n_dec * self.dtok
        pieces = []
        P = 0.0
        pairs = 0.0
        running = self.n_dec + len(self.prefilling)
        # swapped-out sequences come back first
        while self.swapped and running < self.max_seqs:
            rid, own, ctx, rem, shared = self.swapped[0]
            need = -(-int(math.ceil(own)) // B) + 1
            if need > self.free():
                break
            self.swapped.popleft()
            extra += own * self.m.swap_s_per_token
            self._join(rid, ctx, own, rem, 0, shared)
            running += 1
            budget -= self.dtok
        # prompts already being prefilled in chunks
        for pf in self.prefilling:
            if budget <= 0:
                break
            take = min(pf[1], budget)
            if take <= 0:
                continue
            past = pf[2]
            pairs += take * past + take * (take + 1) / 2.0
            P += take
            budget -= take
            pf[1] -= take
            pf[2] += take
            pieces.append((pf[0], pf[1] <= 0))
        # admit waiting requests, first come first served
        waiting = self.waiting
        decode_role = self.role == "decode"
        while waiting and running < self.max_seqs and not preempted:
            rid = waiting[0]
            isl, osl, gen = sim.isl[rid], sim.osl[rid], sim.gen[rid]
            shared = min(sim.prefix[rid], isl - 1) if self.pinned else 0
            if decode_role:
                ctx = isl + gen
                own = ctx - shared
                need = -(-(own + (osl - gen if self.reserve else 1)) // B)
                if need > self.total - self.pinned:
                    waiting.popleft()
                    sim.reject(rid, now)
                    continue
                if need > self.free() and not self._evict(need):
                    break
                waiting.popleft()
                if self.reserve:
                    self.used += need
                    self._join(rid, ctx, own, osl - gen, need, shared)
                else:
                    self._join(rid, ctx, own, osl - gen, 0, shared)
                running += 1
                budget -= self.dtok
                continue
            # prefix-cache hit on the previous turn's KV (multi-turn)
            hist, hist_blocks = 0, 0
            par = sim.parent[rid]
            if par >= 0 and gen == 0 and par in self.retained:
                hist = sim.isl[par] + sim.osl[par] - shared
                hist_blocks = self.retained[par]
            prompt = isl + gen - shared - hist  # tokens to compute
            own_total = isl + gen - shared + (osl - gen if self.reserve else 1)
            need = -(-own_total // B) - hist_blocks
            if need + hist_blocks > self.total - self.pinned:
                waiting.popleft()
                sim.reject(rid, now)
                continue
            # without chunked prefill a prompt goes in whole; one longer than the whole token budget
            # is split anyway (TensorRT-LLM needs chunked context for inputs beyond max_num_tokens)
            split = self.chunked or prompt > self.mbt
            if not split and prompt > budget and (pieces or self.n_dec or extra):
                break
            if need > self.free() + hist_blocks and not self._evict(need - hist_blocks, keep=par):
                break
            waiting.popleft()
            if hist_blocks:
                del self.retained[par]
                self.ret_blocks -= hist_blocks
                sim.cache_hit_tokens += hist
            need = max(need, 0)
            alloc = need + hist_blocks
            self.used += alloc
            past = shared + hist
            take = prompt if not split else min(prompt, max(budget, 0))
            pf = [rid, prompt - take, past + take, alloc, shared]
            self.prefilling.append(pf)
            running += 1
            if take > 0:
                pairs += take * past + take * (take + 1) / 2.0
                P += take
                budget -= take
                pieces.append((rid, pf[1] <= 0))
            if budget <= 0:
                break
        n = self.n_dec
        self.t_start = now
        if pieces:
            ctx = self.sum_ctx0 / n + E * self.s if n else 1.0
            dur = self.table.mixed(n, ctx, P, 2.0 * pairs / P) + extra
            self.kind = MIXED
            self.pieces = pieces
            self.t_end = now + dur
            sim.schedule(self, self.t_end)
            return
        if not n:
            if extra > 0:  # only swap traffic: account for it as a busy step
                self.kind = MIXED
                self.pieces = []
                self.t_end = now + extra
                sim.schedule(self, self.t_end)
                return
            self.kind = IDLE
            return
        # a run of pure decode steps up to the next completion (cut short by an arrival)
        heap, gen_ = self.heap, self.slot_gen
        while gen_[heap[0][1]] != heap[0][2]:
            heapq.heappop(heap)
        k = max(1, heap[0][0] - self.s)
        if self.prefilling or extra or preempted:
            k = 1  # a chunked prompt waits for budget, or swap traffic rides on this step
        elif not self.reserve:
            k = self._kv_limit(k)
        c = self.sum_ctx0 / n + E * self.s
        a = self.table.decode(n, c) + extra
        slope = (self.table.decode(n, c + E * (k - 1)) - a) / (k - 1) if k > 1 else 0.0
        dur = k * a + slope * k * (k - 1) / 2.0
        self.kind = JUMP
        self.jump = (now, k, a, slope)
        self.t_end = now + dur
        sim.schedule(self, self.t_end)

    def _kv_limit(self, k: int) -> int:
        """Largest jump <= k whose block growth fits in the free blocks (on-demand KV)."""
        free = self.free()
        if self.n_dec * (int(math.ceil(k * self.E / self.B)) + 1) <= free:
            return k
        lo, hi = 1, k
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._growth(mid) <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _evict(self, need: int, keep: int = -1) -> bool:
        """Evict retained conversation KV, least recently used first, until ``need`` blocks are free."""
        while self.retained and need > self.free():
            key = next(iter(self.retained))
            if key == keep:
                if len(self.retained) == 1:
                    break
                self.retained.move_to_end(key)
                continue
            self.ret_blocks -= self.retained.pop(key)
        return need <= self.free()

    def retain(self, rid: int, blocks: int) -> None:
        if blocks > 0:
            self.retained[rid] = blocks
            self.ret_blocks += blocks


# ------------------------------------------------------------------ routers

class Router:
    """round-robin | least-outstanding | threshold:T | static.

    threshold:T (fleets of model sizes, biggest first): send to the big model's least-loaded
    replica unless its queue -- requests waiting or running there -- exceeds T, then to the next
    size down (the last pool takes the overflow). static: the first (biggest) pool only."""

    def __init__(self, policy: str = "least-outstanding"):
        p = policy.strip().lower().replace("_", "-")
        self.threshold = None
        if p.startswith("threshold"):
            _, _, t = p.partition(":")
            try:
                self.threshold = int(t) if t else 8
            except ValueError:
                raise PlannerError(f"--router threshold:T needs an integer T, got {policy!r}") from None
            if self.threshold < 0:
                raise PlannerError("--router threshold:T needs T >= 0")
            p = "threshold"
        if p in ("rr", "round-robin", "roundrobin"):
            p = "round-robin"
        if p in ("lo", "least", "least-outstanding", "least-loaded"):
            p = "least-outstanding"
        if p not in ("round-robin", "least-outstanding", "threshold", "static"):
            raise PlannerError(f"unknown router {policy!r} (use round-robin, least-outstanding, threshold:T or static)")
        self.policy = p
        self.rr = 0

    def label(self) -> str:
        return f"threshold:{self.threshold}" if self.policy == "threshold" else self.policy

    @staticmethod
    def least(reps: list[Replica]) -> Replica:
        best, bo = reps[0], reps[0].outstanding()
        for r in reps[1:]:
            o = r.outstanding()
            if o < bo:
                best, bo = r, o
        return best

    def choose(self, sim: "Simulator", rid: int) -> Replica:
        par = sim.parent[rid]
        if par >= 0:
            r = sim.replicas[sim.served_by[par]]
            if r.role != "decode":
                return r  # session affinity: the previous turn's KV lives there
        pools = sim.entry_pools
        if self.policy == "round-robin":
            reps = sim.entry_replicas
            r = reps[self.rr % len(reps)]
            self.rr += 1
            return r
        if self.policy == "least-outstanding":
            return self.least(sim.entry_replicas)
        if self.policy == "static":
            return self.least(pools[0])
        for pool in pools:
            best = self.least(pool)
            if best.outstanding() <= self.threshold:
                return best
        return self.least(pools[-1])


# ------------------------------------------------------------------ the simulator

@dataclass
class SLO:
    ttft_s: float | None = None
    tpot_s: float | None = None


_trapz = getattr(np, "trapezoid", None) or np.trapz


def _pct(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if not len(x):
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    p = np.percentile(x, [50, 90, 99])
    return {"mean": float(x.mean()), "p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]), "max": float(x.max())}


@dataclass
class SimResult:
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    replica: np.ndarray
    pool: np.ndarray
    preemptions: np.ndarray
    rejected: np.ndarray
    pools: list[dict]
    replica_busy_s: np.ndarray
    replica_pool: np.ndarray
    replica_mean_batch: np.ndarray
    queue_t: np.ndarray
    queue_waiting: np.ndarray
    queue_running: np.ndarray
    events: int
    wall_s: float
    cache_hit_tokens: int
    router: str
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> np.ndarray:
        return np.isfinite(self.finish_s) & ~self.rejected

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Mean inter-token latency of each request after its first token (NaN for 1-token outputs)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.output_tokens > 1, (self.finish_s - self.first_token_s) / (self.output_tokens - 1), np.nan)

    @property
    def e2e_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    @property
    def duration_s(self) -> float:
        d = self.done
        if not d.any():
            return 0.0
        return float(self.finish_s[d].max() - np.nanmin(self.arrival_s))

    def meets(self, slo: SLO) -> np.ndarray:
        ok = self.done.copy()
        if slo.ttft_s is not None:
            ok &= self.ttft_s <= slo.ttft_s
        if slo.tpot_s is not None:
            ok &= np.nan_to_num(self.tpot_s, nan=0.0) <= slo.tpot_s
        return ok

    def summary(self, slo: SLO | None = None) -> dict:
        d = self.done
        dur = self.duration_s
        n_done = int(d.sum())
        out_tok = float(self.output_tokens[d].sum())
        gpus = sum(p["gpus"] * p["count"] for p in self.pools)
        s = {
            "requests": int(len(d)), "completed": n_done, "rejected": int(self.rejected.sum()),
            "duration_s": dur,
            "requests_per_s": n_done / dur if dur > 0 else None,
            "output_tokens_per_s": out_tok / dur if dur > 0 else None,
            "output_tokens_per_s_per_gpu": out_tok / dur / gpus if dur > 0 and gpus else None,
            "ttft_s": _pct(self.ttft_s[d]), "tpot_s": _pct(self.tpot_s[d]), "e2e_latency_s": _pct(self.e2e_s[d]),
            "mean_input_tokens": float(self.input_tokens.mean()), "mean_output_tokens": float(self.output_tokens.mean()),
            "preemptions": int(self.preemptions.sum()), "requests_preempted": int((self.preemptions > 0).sum()),
            "prefix_cache_hit_tokens": int(self.cache_hit_tokens),
        }
        busy = self.replica_busy_s / dur if dur > 0 else self.replica_busy_s * 0
        s["utilization"] = {"mean_busy_fraction": float(busy.mean()) if len(busy) else None,
                            "per_replica_busy_fraction": [float(x) for x in busy],
                            "mean_decode_batch": [float(x) for x in self.replica_mean_batch]}
        s["queue"] = {"mean_waiting": float(self.queue_waiting.mean()) if len(self.queue_waiting) else 0.0,
                      "max_waiting": int(self.queue_waiting.max()) if len(self.queue_waiting) else 0,
                      "mean_in_system": float(_trapz(self.queue_waiting + self.queue_running, self.queue_t) / (self.queue_t[-1] - self.queue_t[0]))
                      if len(self.queue_t) > 1 and self.queue_t[-1] > self.queue_t[0] else None}
        if slo is not None and (slo.ttft_s is not None or slo.tpot_s is not None):
            ok = self.meets(slo)
            s["slo"] = {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "attainment": float(ok.sum() / max(len(ok), 1)),
                        "goodput_requests_per_s": float(ok.sum()) / dur if dur > 0 else None}
        if len(self.pools) > 1:
            per = []
            for i, p in enumerate(self.pools):
                sel = d & (self.pool == i)
                per.append({"name": p["name"], "role": p["role"], "replicas": p["count"], "requests": int(sel.sum()),
                            "share": float(sel.sum() / max(n_done, 1))})
            s["pools"] = per
        return s

    def steady_throughput(self) -> float:
        """Completions per second between the 10th and 90th percentile of finish times: the
        sustained rate, without the ramp-up and the drain of a finite run's last (longest) requests."""
        f = np.sort(self.finish_s[self.done])
        if len(f) < 10:
            d = self.duration_s
            return len(f) / d if d > 0 else 0.0
        i0, i1 = int(0.1 * len(f)), int(0.9 * len(f))
        dt = f[i1] - f[i0]
        return (i1 - i0) / dt if dt > 0 else math.inf

    def mean_in_system(self) -> float:
        """Time-average of requests in the system (exact, from arrival and finish times)."""
        d = self.done
        a, f = self.arrival_s[d], self.finish_s[d]
        t0, t1 = a.min(), f.max()
        return float((f - a).sum() / (t1 - t0)) if t1 > t0 else 0.0


class Simulator:
    """Run requests through pools of replicas. ``progress(done, total)`` is called now and then."""

    def __init__(self, pools: list[Pool], requests: Requests, *, router: Router | str = "least-outstanding",
                 progress=None, max_events: int | None = None):
        if not pools or any(p.count < 1 for p in pools):
            raise PlannerError("a simulation needs at least one replica")
        self.router = Router(router) if isinstance(router, str) else router
        self.pools = pools
        self.progress = progress
        self.max_events = max_events
        self.replicas: list[Replica] = []
        self.entry_pools: list[list[Replica]] = []
        self.decode_pool: list[Replica] = []
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
        has_prefill = any(p.role == "prefill" for p in pools)
        if has_prefill and not self.decode_pool:
            raise PlannerError("a prefill pool needs a decode pool")
        self.entry_replicas = [r for reps in self.entry_pools for r in reps]
        n = len(requests)
        self.n = n
        self.req = requests
        self.isl = requests.input_tokens.tolist()
        self.osl = requests.output_tokens.tolist()
        self.prefix = requests.prefix_tokens.tolist()
        self.parent = requests.parent.tolist()
        self.think = requests.think_s.tolist()
        self.children: dict[int, int] = {p: i for i, p in enumerate(self.parent) if p >= 0}
        self.arrival = [float(x) for x in requests.arrival_s]
        self.first = [-1.0] * n
        self.finish_t = [INF] * n
        self.gen = [0] * n
        self.preempted = [0] * n
        self.rejected = [False] * n
        self.served_by = [-1] * n
        self.pool_of = [-1] * n
        self.cache_hit_tokens = 0
        pmax = int(requests.prefix_tokens.max()) if n else 0
        if pmax > 0:
            for r in self.replicas:
                if r.role != "decode":
                    r.pin(pmax)
        self.rheap: list[tuple] = []
        self.dyn: list[tuple] = []
        self.seq = 0
        self.completed = 0
        self.events = 0

    # --------------------------------------------------------------- callbacks from replicas
    def schedule(self, rep: Replica, t: float) -> None:
        rep.version += 1
        self.seq += 1
        heapq.heappush(self.rheap, (t, self.seq, rep.idx, rep.version))

    def finish(self, rid: int, now: float, rep: Replica, blocks: int) -> None:
        self.finish_t[rid] = now
        self.completed += 1
        child = self.children.get(rid)
        if child is not None:
            if rep.role != "decode":
                rep.retain(rid, blocks)
            self.arrival[child] = now + self.think[child]
            self.seq += 1
            heapq.heappush(self.dyn, (self.arrival[child], self.seq, child, 0))
        if self.progress is not None and self.completed % 2000 == 0:
            self.progress(self.completed, self.n)

    def reject(self, rid: int, now: float) -> None:
        self.rejected[rid] = True
        self.finish(rid, now, self.replicas[self.served_by[rid]], 0)
        self.finish_t[rid] = INF

    def transfer(self, rid: int, now: float, rep: Replica) -> None:
        m = rep.m
        t = now + m.kv_transfer_latency_s + (self.isl[rid] + 1) * m.kv_transfer_s_per_token
        self.seq += 1
        heapq.heappush(self.dyn, (t, self.seq, rid, 1))

    # --------------------------------------------------------------- main loop
    def _arrive(self, rid: int, t: float, kind: int) -> None:
        if kind == 1:
            rep = Router.least(self.decode_pool)
        else:
            rep = self.router.choose(self, rid)
            self.served_by[rid] = rep.idx
            self.pool_of[rid] = rep.pool_idx
        rep.enqueue(rid, t)

    def run(self) -> SimResult:
        import time

        wall0 = time.perf_counter()
        arr = np.asarray(self.req.arrival_s, float)
        ext = np.nonzero(np.isfinite(arr))[0]
        ext = ext[np.argsort(arr[ext], kind="stable")]
        ext_t = arr[ext].tolist()
        ext_id = ext.tolist()
        n_ext = len(ext_id)
        span = (ext_t[-1] - ext_t[0]) if n_ext > 1 else 0.0
        dt = max(span / 400.0, 1e-3) if span > 0 else 0.01
        qt, qw, qr = [], [], []
        next_sample = ext_t[0] if n_ext else 0.0
        rheap, dyn, reps = self.rheap, self.dyn, self.replicas
        i = 0
        events = 0
        max_events = self.max_events
        while True:
            ta = ext_t[i] if i < n_ext else INF
            td = dyn[0][0] if dyn else INF
            while rheap and reps[rheap[0][2]].version != rheap[0][3]:
                heapq.heappop(rheap)
            tr = rheap[0][0] if rheap else INF
            if ta <= td and ta <= tr:
                if ta == INF:
                    break
                t = ta
                self._arrive(ext_id[i], ta, 0)
                i += 1
            elif td <= tr:
                t, _, rid, kind = heapq.heappop(dyn)
                self._arrive(rid, t, kind)
            else:
                t, _, idx, _ = heapq.heappop(rheap)
                reps[idx].boundary(t)
            events += 1
            if t >= next_sample:
                w = r_ = 0
                for r in reps:
                    w += len(r.waiting) + len(r.swapped)
                    r_ += r.n_dec + len(r.prefilling)
                qt.append(t)
                qw.append(w)
                qr.append(r_)
                next_sample = t + dt
                if len(qt) > 4000:
                    qt, qw, qr = qt[::2], qw[::2], qr[::2]
                    dt *= 2.0
            if max_events is not None and events > max_events:
                raise PlannerError(f"simulation stopped after {max_events} events")
        stuck = [r.idx for r in reps if r.waiting or r.swapped or r.prefilling or r.n_dec]
        notes = list(self.req.notes)
        if stuck:
            notes.append(f"{len(stuck)} replica(s) ended with unfinished requests")
        rej = np.array(self.rejected)
        if rej.any():
            notes.append(f"{int(rej.sum())} request(s) rejected: prompt + output exceed the KV cache of one replica")
        if self.progress is not None:
            self.progress(self.n, self.n)
        self.events = events
        dur_rep = np.array([r.busy_s for r in reps])
        mean_batch = np.array([r.batch_time / r.busy_s if r.busy_s > 0 else 0.0 for r in reps])
        return SimResult(
            arrival_s=np.array(self.arrival), first_token_s=np.where(np.array(self.first) < 0, np.nan, np.array(self.first)),
            finish_s=np.array(self.finish_t), input_tokens=self.req.input_tokens.copy(), output_tokens=self.req.output_tokens.copy(),
            replica=np.array(self.served_by), pool=np.array(self.pool_of), preemptions=np.array(self.preempted), rejected=rej,
            pools=[{"name": p.replica.name, "role": p.role, "count": p.count, "gpus": p.replica.gpus, "plan": p.replica.plan,
                    "accuracy": p.replica.accuracy, "usd_per_hour": p.replica.usd_per_hour} for p in self.pools],
            replica_busy_s=dur_rep, replica_pool=np.array([r.pool_idx for r in reps]), replica_mean_batch=mean_batch,
            queue_t=np.array(qt), queue_waiting=np.array(qw), queue_running=np.array(qr), events=events,
            wall_s=time.perf_counter() - wall0, cache_hit_tokens=self.cache_hit_tokens, router=self.router.label(), notes=notes,
        )


# ------------------------------------------------------------------ deployments from ids

def replica_for(model: str | Model, hardware: str | Hardware, *, tp: int = 1, pp: int = 1, ep: int = 1, weights: str = "bf16",
                kv: str | None = None, activations: str | None = None, engine: str | Engine = "trtllm",
                sched: Scheduler | None = None, max_input: float = 8192, name: str | None = None,
                accuracy: float = 1.0, disagg_group_gpus: int | None = None) -> ReplicaModel:
    """Resolve ids and build a replica type (``kv`` None: fp8 with fp8 weights, else 16 bit)."""
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware, get_model

    m = get_model(model) if isinstance(model, str) else model
    hw = get_hardware(hardware) if isinstance(hardware, str) else hardware
    eng = get_engine(engine) if isinstance(engine, str) else engine
    kv = kv or ("fp8" if weights == "fp8" else ("fp16" if weights == "fp16" else "bf16"))
    return build_replica(m, hw, tp=tp, pp=pp, ep=ep, weights=weights, kv=kv, activations=activations, engine=eng,
                         sched=sched, max_input=max_input, name=name, accuracy=accuracy, disagg_group_gpus=disagg_group_gpus)


# ------------------------------------------------------------------ fleets of model sizes

# Quality of a smaller model standing in for a bigger one of the same family: ratio of published
# scores. Llama-3 instruct MMLU 68.4 (8B) vs 82.0 (70B) and Llama-2 base MMLU 45.7 (7B), 53.8 (13B),
# 69.7 (70B): Meta model cards as reproduced in the project reference (cap_accuracy_and_seed_systems.md
# section 2e). Llama-3.1/3.3 70B and 3.1 8B are taken to keep the Llama-3 ratio.
_MMLU = {
    "llama-3-8b": (68.4, "llama3"), "llama-3.1-8b": (68.4, "llama3"),
    "llama-3-70b": (82.0, "llama3"), "llama-3.1-70b": (82.0, "llama3"), "llama-3.3-70b": (82.0, "llama3"),
    "llama-2-7b": (45.7, "llama2"), "llama-2-13b": (53.8, "llama2"), "llama-2-70b": (69.7, "llama2"),
}
SIZE_SUBSTITUTION_SOURCE = ("MMLU of the smaller model / MMLU of the biggest in the fleet: Llama-3 instruct 68.4 (8B) vs 82.0 (70B) "
                            "= 0.83; Llama-2 base 45.7 (7B), 53.8 (13B), 69.7 (70B); Meta Llama-3 / Llama-2 model cards "
                            "(reference section 2e)")


def size_substitution(small: str, big: str) -> float | None:
    """Quality of ``small`` relative to ``big`` (1.0 for the same model); None when unpublished."""
    if small == big:
        return 1.0
    a, b = _MMLU.get(small), _MMLU.get(big)
    if a is None or b is None or a[1] != b[1]:
        return None
    return a[0] / b[0]


def default_tp(model: str | Model, hardware: str | Hardware, *, weights: str = "bf16", kv: str | None = None,
               engine: str | Engine = "trtllm", ctx: float = 2048, min_seqs: int = 64) -> int:
    """Smallest power-of-two tensor-parallel size (inside the scale-up domain) whose KV cache holds
    ``min_seqs`` sequences of ``ctx`` tokens (or the largest that fits at all)."""
    from planner.costmodel.memory import kv_bytes_per_seq
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware, get_model

    m = get_model(model) if isinstance(model, str) else model
    hw = get_hardware(hardware) if isinstance(hardware, str) else hardware
    eng = get_engine(engine) if isinstance(engine, str) else engine
    kv = kv or ("fp8" if weights == "fp8" else "bf16")
    domain = hw.links.scale_up.domain_size if hw.links.scale_up and hw.links.scale_up.domain_size else 1
    best = None
    tp = 1
    while tp <= max(domain, 1):
        if m.num_heads % tp == 0 and (m.num_kv_heads % tp == 0 or tp % m.num_kv_heads == 0):
            p = make_plans(m, hw, tp=tp, weights=weights, kv=kv)
            mem = memory(m, hw, p, eng)
            cap = float(mem.kv_capacity_bytes[0])
            if cap > 0:
                n = cap / float(kv_bytes_per_seq(m, p, ctx, eng.kv_block_tokens)[0])
                best = tp
                if n >= min_seqs:
                    return tp
        tp *= 2
    if best is None:
        raise PlannerError(f"{m.id} does not fit on {domain} x {hw.id} in {weights}")
    return best


def parse_fleet(text: str) -> list[tuple[str, int, int | None]]:
    """``llama-3.1-70b:2,llama-3.1-8b:2[:tp]`` -> [(model, replicas, tp or None), ...]."""
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        bits = part.split(":")
        if len(bits) not in (2, 3):
            raise PlannerError(f"--fleet takes MODEL:REPLICAS[:TP] items, got {part!r}")
        try:
            n = int(bits[1])
            tp = int(bits[2]) if len(bits) == 3 else None
        except ValueError:
            raise PlannerError(f"--fleet item {part!r}: replicas and tp must be integers") from None
        if n < 1 or (tp is not None and tp < 1):
            raise PlannerError(f"--fleet item {part!r}: replicas and tp must be positive")
        out.append((bits[0], n, tp))
    if not out:
        raise PlannerError("--fleet needs at least one MODEL:REPLICAS item")
    return out


def fleet_pools(entries: list[tuple[str, int, int | None]], hardware: str, *, weights: str = "bf16", kv: str | None = None,
                engine: str = "trtllm", sched: Scheduler | None = None, max_input: float = 8192,
                ctx: float = 2048) -> tuple[list[Pool], list[str]]:
    """Pools of a multi-model fleet, biggest model first (the threshold router's preferred pool),
    each with its quality score: plan accuracy (planner.cap.accuracy) x size substitution."""
    from planner.cap.accuracy import accuracy as accuracy_of
    from planner.specs.loader import get_model

    models = [(get_model(mid), n, tp) for mid, n, tp in entries]
    models.sort(key=lambda x: -x[0].total_params)
    big = models[0][0].id
    pools, notes = [], []
    for m, n, tp in models:
        tp = tp or default_tp(m, hardware, weights=weights, kv=kv, engine=engine, ctx=ctx)
        kv_ = kv or ("fp8" if weights == "fp8" else "bf16")
        q = accuracy_of(weights, kv_, model_params=m.total_params)["score"]
        sub = size_substitution(m.id, big)
        if sub is None:
            notes.append(f"no published quality ratio of {m.id} to {big}: its accuracy is unknown")
            acc = float("nan")
        else:
            acc = q * sub
        rep = replica_for(m, hardware, tp=tp, weights=weights, kv=kv_, engine=engine, sched=sched, max_input=max_input,
                          name=f"{m.id} tp{tp}", accuracy=acc)
        pools.append(Pool(rep, n))
    notes.append("accuracy = plan accuracy (planner.cap.accuracy) x " + SIZE_SUBSTITUTION_SOURCE)
    return pools, notes


def fleet_report(res: SimResult, slo: SLO) -> dict:
    """SLO attainment and the mean quality of the requests a fleet served."""
    d = res.done
    acc = np.array([p["accuracy"] for p in res.pools])
    served_acc = acc[res.pool[d]] if d.any() else np.array([])
    ok = res.meets(slo)
    return {"router": res.router, "slo_attainment": float(ok.mean()) if len(ok) else None,
            "mean_accuracy": float(served_acc.mean()) if len(served_acc) and np.isfinite(served_acc).all() else None,
            "quality_weighted_attainment": float((ok[d] * served_acc).sum() / len(ok)) if len(served_acc) and np.isfinite(served_acc).all() else None,
            "share": {p["name"]: float((res.pool[d] == i).mean()) if d.any() else 0.0 for i, p in enumerate(res.pools)}}


def _percentile(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if len(x) else math.inf


def keeps_up(res) -> bool:
    """The deployment keeps up with the arrivals: the backlog (requests arrived and not finished,
    time-averaged) over the last quarter of the arrivals is not clearly above that over the third
    quarter (past the warm-up of the longest requests), and the last quarter waits for its first token about as long as the second (an
    overloaded continuous-batching engine shows it either as a growing queue or a growing batch)."""
    a = np.sort(res.arrival_s[np.isfinite(res.arrival_s)])
    n = len(a)
    if n < 8 or a[-1] <= a[0]:
        return True
    f = np.sort(np.where(res.done, res.finish_s, np.inf))

    def backlog(q0: float, q1: float) -> float:  # time-averaged requests in the system over a span of arrivals
        t = np.linspace(a[int(q0 * (n - 1))], a[int(q1 * (n - 1))], 64)
        return float(np.mean(np.searchsorted(a, t, side="right") - np.searchsorted(f, t, side="right")))

    if backlog(0.75, 1.0) > 1.25 * backlog(0.5, 0.75) + 5.0:
        return False
    order = np.argsort(res.arrival_s, kind="stable")
    ttft = res.ttft_s[order]
    q2 = np.nanmedian(ttft[n // 4: n // 2])
    q4 = np.nanmedian(ttft[3 * n // 4:])
    return bool(q4 <= 2.0 * q2 + 1.0)
