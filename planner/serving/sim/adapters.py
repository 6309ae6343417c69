"""LoRA adapters in the simulator (S-LoRA, Punica): many fine-tuned adapters over one base model.

The adapter itself -- its bytes, FLOPs, the SGMV/BGMV op every step runs -- is the cost model's
(``planner.costmodel.lora``, the same definitions estimate uses): a replica's step table is built from a
``CostModel`` carrying the adapters, so every step the simulator runs includes their GEMMs. What the
simulator adds is the traffic:

* each request names an adapter (uniform, Zipf by popularity rank, or a trace's ``adapter`` column);
* each replica keeps ``resident`` adapters in GPU memory, their bytes taken from its KV block pool
  (S-LoRA's unified paging, here a fixed reservation of ``resident`` slots); the set is an LRU cache and
  an adapter in use by a request on the replica is never evicted (a request that finds every slot in use
  waits for one);
* a miss loads the adapter over the replica's host link before the request is prefilled: link latency +
  bytes per GPU / achievable host bandwidth (each GPU loads its shard over its own link), one load after
  another on the link.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, replace

import numpy as np

from planner.costmodel.lora import SGMV_KERNEL_SOURCE, SMALL_RANK_SOURCE, LoraCost, LoraSpec, adapter_bytes
from planner.costmodel.lora import parse_lora as _parse_lora
from planner.errors import PlannerError


def parse_lora(text: str, resident: int | None = None, popularity: str | None = None) -> LoraSpec:
    """``N:RANK[:TARGETS]`` with a popularity: the cost model's, or ``trace`` (the trace's adapter column)."""
    pop = (popularity or "uniform").strip().lower()
    if pop == "trace":
        return replace(_parse_lora(text, resident, None), popularity="trace")
    return _parse_lora(text, resident, pop)


def assign_adapters(n: int, spec: LoraSpec, seed: int, column: np.ndarray | None = None) -> np.ndarray:
    """Adapter id of each request: uniform, Zipf(S) over the adapters by rank (adapter 0 the most
    popular), or a trace column (ids taken modulo the adapter count)."""
    if spec.popularity == "trace":
        if column is None:
            raise PlannerError("--lora-popularity trace needs a --trace with an 'adapter' column")
        return np.mod(np.asarray(column, dtype=np.int64), spec.adapters)
    from planner.costmodel.lora import popularity

    rng = np.random.default_rng([seed, 0x10A])
    cdf = np.cumsum(popularity(spec))
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), spec.adapters - 1).astype(np.int64)


def cost_spec(spec: LoraSpec) -> LoraSpec:
    """The spec the cost model prices (a trace's popularity is not known up front: uniform stands in for
    its expected distinct adapters per step)."""
    return replace(spec, popularity="uniform") if spec.popularity == "trace" else spec


@dataclass(frozen=True)
class SimLora:
    """A replica's adapter constants (one device's share under tensor/pipeline parallelism)."""

    cost: LoraCost  # the cost model's (its op is in the replica's step table)
    bytes_per_gpu: float
    slots: int  # resident adapters per replica
    kv_blocks: int  # KV blocks the resident adapters take
    load_s: float  # one miss


def sim_lora(spec: LoraSpec, model, *, tp: int, pp: int, host_bytes_per_s: float, host_latency_s: float,
             kv_bytes_per_token_gpu: float, block_tokens: int) -> SimLora:
    cost = LoraCost.of(cost_spec(spec), model, host_bytes_per_s)
    per_gpu = adapter_bytes(model, spec) / (tp * pp)
    blocks = int(math.ceil(spec.slots * per_gpu / (kv_bytes_per_token_gpu * block_tokens)))
    return SimLora(cost, per_gpu, spec.slots, blocks, host_latency_s + float(cost.load_s(tp, pp)))


class AdapterCache:
    """One replica's resident adapters: LRU over ``slots`` slots with a reference count per adapter
    (requests routed here and not finished); loads run one after another on the host link."""

    __slots__ = ("slots", "load_s", "res", "ready", "link_free", "hits", "misses", "in_use", "wait", "evictions")

    def __init__(self, slots: int, load_s: float):
        self.slots, self.load_s = slots, load_s
        self.res: OrderedDict[int, int] = OrderedDict()  # adapter -> requests using it, least recent first
        self.ready: dict[int, float] = {}  # adapter -> time its load completes
        self.link_free = 0.0
        self.hits = self.misses = self.evictions = 0
        self.in_use = 0  # adapters with at least one request
        self.wait: deque[tuple[int, int]] = deque()  # (rid, adapter) waiting for a free slot

    def acquire(self, adapter: int, now: float) -> float | None:
        """When ``adapter`` is resident for a new request (now on a hit; after its load on a miss),
        or None when every slot holds an adapter in use."""
        res = self.res
        c = res.get(adapter)
        if c is not None:
            self.hits += 1
            res[adapter] = c + 1
            res.move_to_end(adapter)
            if c == 0:
                self.in_use += 1
            return max(now, self.ready[adapter])
        if len(res) >= self.slots:
            victim = next((a for a, k in res.items() if k == 0), None)
            if victim is None:
                return None
            del res[victim], self.ready[victim]
            self.evictions += 1
        self.misses += 1
        start = max(now, self.link_free)
        done = self.link_free = start + self.load_s
        res[adapter] = 1
        self.ready[adapter] = done
        self.in_use += 1
        return done

    def release(self, adapter: int) -> bool:
        """A request finished; True when a slot became free for a waiting request."""
        c = self.res[adapter] - 1
        self.res[adapter] = c
        if c == 0:
            self.in_use -= 1
            return bool(self.wait)
        return False


def lora_summary(replicas, ctx: float) -> dict:
    """The ``lora`` block of a run: memory, the adapter op's time in a decode step at the run's mean
    batch (from the cost model) and the cache's hits, loads and miss rate, over the replicas."""
    from planner.costmodel.step import Step

    reps = [r for r in replicas if r.adapters is not None]
    lo = reps[0].m.lora
    hits, misses = sum(r.adapters.hits for r in reps), sum(r.adapters.misses for r in reps)
    busy = sum(r.busy_s for r in reps)
    batch = sum(r.batch_time for r in reps) / busy if busy > 0 else 0.0
    step_s = 0.0
    tab = reps[0].table
    if batch > 0 and tab.cm is not None:
        st = tab.cm.step(tab.plans, Step(decode_seqs=np.array([batch]), decode_ctx=np.array([ctx])))
        op = next((o for o in st.ops if str(o.name) == "lora"), None)
        step_s = float(np.ravel(op.time_s * op.count)[0]) if op is not None else 0.0
    return {"adapter_bytes": lo.cost.bytes_per_adapter, "adapter_bytes_per_gpu": lo.bytes_per_gpu,
            "resident_per_replica": lo.slots, "resident_bytes_per_gpu": lo.slots * lo.bytes_per_gpu,
            "kv_blocks_taken_per_replica": lo.kv_blocks, "load_s": lo.load_s, "loads": misses, "hits": hits,
            "miss_rate": misses / (hits + misses) if hits + misses else 0.0,
            "evictions": sum(r.adapters.evictions for r in reps), "mean_decode_batch": batch,
            "decode_step_cost_s": step_s, "sources": [SMALL_RANK_SOURCE, SGMV_KERNEL_SOURCE]}
