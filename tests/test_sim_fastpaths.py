"""The simulator's shortcuts give the same results as the general paths they stand in for: one
replica without the event heap, arrivals placed without a router call, the on-demand KV block
count kept in whole numbers instead of summed over the batch."""

import math
import random

import numpy as np
import pytest

from planner.serving.sim import Pool, Simulator, replica_for
from planner.serving.sim.decodes import DecodeBatch
from planner.serving.sim.routers import LeastOutstanding
from planner.serving.workload import generate, get_workload


def _same(a, b):
    for k in ("first_token_s", "finish_s", "replica", "preemptions", "replica_busy_s", "queue_t", "queue_waiting",
              "queue_running"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    assert a.events == b.events and a.steps == b.steps


class _Routed(LeastOutstanding):
    """The same policy under another type: the simulator calls the router for every arrival."""


@pytest.mark.parametrize("engine,workload,rate", [("trtllm", "chat", 6.0), ("vllm", "burstgpt", 30.0)])
def test_one_replica_without_heap_or_router_matches_the_general_loop(engine, workload, rate):
    reqs = generate(get_workload(workload), 1500, rate=rate, seed=3)
    rep = replica_for("llama-3.1-8b", "h100-sxm", engine=engine, max_input=float(reqs.input_tokens.max() + reqs.output_tokens.max()))
    fast = Simulator([Pool(rep, 1)], reqs)
    assert not fast.multi and fast._direct() is not None
    general = Simulator([Pool(rep, 1)], reqs, router=_Routed())
    general.multi = True  # the event heap, as with several replicas
    assert general._direct() is None
    _same(fast.run(), general.run())


@pytest.mark.parametrize("E", [1.0, 2.0, 2.6])
def test_on_demand_block_count_equals_the_sum_over_sequences(E):
    B = 16
    rng = random.Random(7)
    dec = DecodeBatch(64, E, B, track_blocks=True)
    live = {}
    for _ in range(400):
        if live and (rng.random() < 0.4 or dec.n == 64):
            slot = rng.choice(list(live))
            rid, freed = dec.leave(slot)
            assert freed == -(-int(math.ceil(live.pop(slot) + E * dec.s)) // B)
        else:
            own = rng.randint(1, 3000)
            before = set(dec.order)
            dec.join(rng.randint(0, 10**6), own + 50, own, rng.randint(1, 500), 0, 0)
            (slot,) = set(dec.order) - before
            live[slot] = own - E * dec.s
        dec.s += rng.randint(0, 40)  # decode steps between changes (own0 goes negative for old sequences)
        for s in (dec.s, dec.s + 1, dec.s + rng.randint(2, 100)):
            want = sum(-(-int(math.ceil(o + E * s)) // B) for o in live.values())
            assert dec.blocks_at(s) == want


def test_decode_pair_and_mixed_match_the_plain_lookups():
    """The per-batch-size rows and the one-cell shortcut of a jump's two ends give decode()'s values exactly."""
    table = replica_for("llama-3.1-8b", "h100-sxm", max_input=8192).table
    rng = random.Random(1)
    top = int(table.n_ax[-1])
    for _ in range(300):
        n = rng.randint(1, top + 1)
        c0 = rng.uniform(0.5, 1.2 * table.c_ax[-1])
        c1 = c0 + rng.choice([1.0, 37.0, rng.uniform(0.0, 20000.0)])
        assert table.decode_pair(n, c0, c1) == (table.decode(n, c0), table.decode(n, c1))
        p = rng.uniform(1.0, 4096.0)
        # a whole batch size takes the precomputed row; the same size as a float takes the search
        assert table.mixed(n, c0, p, p + 1.0) == table.mixed(float(n), c0, p, p + 1.0)
