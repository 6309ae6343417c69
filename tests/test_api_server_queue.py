"""The API server's one thread in front of the engine (Engine.api_request_s, api_chunk_s, stream_interval): each
request's preparation and each streamed chunk pass it one job at a time, in the order they come, so a burst reaches
the engine a request at a time and a reply is seen no faster than the thread writes its chunks."""

import numpy as np
import pytest

from planner.serving.sim import Pool, Simulator, replica_for
from planner.serving.workload import Requests
from planner.specs.engine import get_engine

QUIET = dict(request_overhead_s=0.0, step_host_s=0.0, step_host_per_seq_s=0.0)


def _rep(**kw):
    return replica_for("llama-3.1-8b", "h100-sxm", engine=get_engine("vllm").with_(**QUIET, **kw), max_input=4096)


def _burst(n, isl, osl, at=None):
    t = np.zeros(n) if at is None else np.asarray(at, float)
    return Requests(t, np.full(n, isl), np.full(n, osl), np.zeros(n, np.int64), np.full(n, -1, np.int64), np.zeros(n),
                    source="test")


def test_no_thread_time_changes_nothing():
    """Both times 0 (every profile's default): the same replay as before, in the compiled core where it runs."""
    reqs = _burst(50, 256, 64, at=0.01 * np.arange(50))
    base = Simulator([Pool(_rep(), 1)], reqs).run()
    same = Simulator([Pool(_rep(api_request_s=0.0, api_chunk_s=0.0, stream_interval=4), 1)], reqs).run()
    assert np.array_equal(base.finish_s, same.finish_s) and np.array_equal(base.first_token_s, same.first_token_s)


def test_a_burst_reaches_the_engine_one_preparation_at_a_time():
    """N requests sent at once, each needing a s of the thread before the engine sees it and nothing streamed: the
    k-th is handed over at (k + 1) a, so the last first token comes after N a, and each later than the one before."""
    n, a = 200, 0.004
    res = Simulator([Pool(_rep(api_request_s=a), 1)], _burst(n, 128, 4)).run()
    first = res.first_token_s
    assert first.max() > n * a
    assert np.all(np.diff(first) >= -1e-12)  # handed over in order, so first tokens come in order
    # a thread twice as slow: the run (bound by the thread, not the engine) takes about twice as long
    slow = Simulator([Pool(_rep(api_request_s=2 * a), 1)], _burst(n, 128, 4)).run()
    assert slow.finish_s.max() / res.finish_s.max() == pytest.approx(2.0, rel=0.05)


def test_a_reply_is_seen_no_faster_than_the_thread_writes_its_chunks():
    """One client, chunks far slower than the engine's decode steps: the reply's time per output token is the chunk
    time (the thread, not the GPU, sets it), and its end is seen L chunks after its start; every 4th step streamed
    (stream_interval 4), a token costs a quarter of a chunk."""
    L, c = 400, 0.1
    fast = Simulator([Pool(_rep(), 1)], _burst(1, 512, L)).run()
    step = float(fast.tpot_s[0])
    assert step < c / 10  # the engine alone decodes far faster than the thread writes
    slow = Simulator([Pool(_rep(api_chunk_s=c), 1)], _burst(1, 512, L)).run()
    assert slow.tpot_s[0] == pytest.approx(c, rel=0.02)
    assert slow.finish_s[0] == pytest.approx(fast.first_token_s[0] + L * c, rel=0.02)
    every4 = Simulator([Pool(_rep(api_chunk_s=c, stream_interval=4), 1)], _burst(1, 512, L)).run()
    assert every4.tpot_s[0] == pytest.approx(c / 4, rel=0.03)


def test_a_thread_that_keeps_up_adds_about_one_chunk():
    """Chunks far faster than a decode step: each is written as its step ends, so the reply is seen about one chunk
    after the engine made it and the time per token is the engine's."""
    c = 1e-5
    base = Simulator([Pool(_rep(), 1)], _burst(8, 512, 100)).run()
    fe = Simulator([Pool(_rep(api_chunk_s=c), 1)], _burst(8, 512, 100)).run()
    lag = fe.finish_s - base.finish_s
    assert np.all(lag >= 0) and lag.max() < 8 * c + 1e-9
    assert fe.tpot_s == pytest.approx(base.tpot_s, rel=1e-3)


def test_a_request_that_arrives_during_a_stream_waits_behind_its_chunks():
    """FIFO on a saturated thread: request 0's chunks take rho = c / step seconds of the thread for each second of
    decoding, so a request arriving at t is prepared only at about rho t (after the chunks of every step that ended
    before it), and its first token, released then, is seen after every chunk released before it: at about rho^2 t.
    Without the FIFO (preparation at its arrival) the first token would be seen at rho t at most."""
    c, a, t = 0.02, 0.001, 1.0
    reqs = _burst(2, 512, 2, at=[0.0, t])
    reqs.output_tokens[0] = 400  # request 0 decodes for ~2.9 s; request 1 comes at 1 s
    step = float(Simulator([Pool(_rep(), 1)], _burst(1, 512, 400)).run().tpot_s[0])
    rho = c / step
    assert rho > 2.0 and 400 * step > rho * t  # saturated, and request 0 still decodes when request 1 is handed over
    res = Simulator([Pool(_rep(api_request_s=a, api_chunk_s=c), 1)], reqs).run()
    assert res.first_token_s[1] == pytest.approx(rho * rho * t, rel=0.1)
    assert res.finish_s[1] > res.first_token_s[1] and res.finish_s[0] == pytest.approx(400 * c, rel=0.02)


def test_offline_benchmarks_have_no_api_server():
    """trtllm-bench and the other in-process benchmarks submit requests without an HTTP server: the thread's times
    are dropped with the per-request time (calibrate.bench_settings.offline)."""
    from planner.calibrate.bench_settings import offline

    eng = offline("sglang")
    assert eng.api_request_s == 0.0 and eng.api_chunk_s == 0.0 and eng.request_overhead_s == 0.0


@pytest.mark.parametrize("every", [1, 3])
def test_the_compiled_core_gives_the_python_loops_results(monkeypatch, every):
    """The thread's queue in the compiled core (planner/serving/sim/_fastcore.c) and in the Python event loop: the same
    first tokens and ends, request by request, for a closed loop and for arrivals at a rate that saturate the thread."""
    from planner.serving.workload import fixed_workload, generate, shared_closed_loop

    rep = _rep(api_request_s=0.002, api_chunk_s=3e-4, stream_interval=every)
    loop = shared_closed_loop(_burst(300, 256, 64), 48)
    rate = generate(fixed_workload(512, 128), 400, rate=40.0, seed=3)
    for reqs in (loop, rate):
        c = Simulator([Pool(rep, 1)], reqs).run()
        monkeypatch.setenv("PLANNER_SIM_CORE", "python")
        py = Simulator([Pool(rep, 1)], reqs).run()
        monkeypatch.delenv("PLANNER_SIM_CORE")
        assert (c.core, py.core) == ("c", "python")
        assert np.allclose(c.first_token_s, py.first_token_s, rtol=1e-9, atol=1e-12)
        assert np.allclose(c.finish_s, py.finish_s, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("clients", [64, 256])
def test_estimate_prices_a_saturated_thread_as_the_simulator_replays_it(clients):
    """SGLang on one H100 (Llama 3.1 8B, 512/512 tokens), every token streamed: the thread, not the GPU, sets the pace.
    The steady state (batching.api_thread) puts the loop at the thread's capacity, one request's preparation and its
    chunks a request, and each reply's chunks u times as far apart as the engine makes them, as the simulator's closed
    loop of the same clients has them (within 6 %; its TTFT, the rest of Little's law, is left to the replay)."""
    import math

    from planner.serving.predict import PlanSpec, estimate
    from planner.serving.workload import fixed_workload, generate, shared_closed_loop

    eng = get_engine("sglang").set_by_user(stream_interval=1)  # the server's own default (the profile prices 10)
    assert eng.api_chunk_s > 0
    e = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=512, osl=512, concurrency=clients, engine=eng)
    assert any("sets the pace" in n for n in e.notes)
    work = eng.api_request_s + eng.api_chunk_s * 512  # thread seconds a request: its preparation and 512 chunks
    assert e.output_tokens_per_s == pytest.approx(512 / work, rel=1e-6)
    rep = replica_for("llama-3.1-8b", "h100-sxm", engine=eng, max_input=1024)
    s = Simulator([Pool(rep, 1)], shared_closed_loop(generate(fixed_workload(512, 512), 10 * clients, rate=math.inf,
                                                               seed=0), clients)).run().summary()
    assert e.output_tokens_per_s == pytest.approx(s["output_tokens_per_s"], rel=0.06)
    assert e.tpot_s == pytest.approx(s["tpot_s"]["mean"], rel=0.06)
