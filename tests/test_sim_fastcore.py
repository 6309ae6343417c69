"""The compiled event loop (planner.serving.sim.fastcore) gives the Python loop's results to the last bit on every
configuration it covers, falls back to Python for the rest, and says which ran."""

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

from planner.errors import PlannerError
from planner.serving.sim import Pool, Scheduler, Simulator, fastcore, replica_for
from planner.serving.sim.adapters import assign_adapters, lora_summary, parse_lora
from planner.serving.sim.routers import LeastOutstanding
from planner.serving.workload import generate, get_workload

pytestmark = pytest.mark.skipif(fastcore.load() is None, reason=f"compiled core unavailable: {fastcore._error}")

ARRAYS = ("arrival_s", "first_token_s", "finish_s", "replica", "pool", "preemptions", "rejected", "replica_busy_s",
          "replica_mean_batch", "queue_t", "queue_waiting", "queue_running")


class _Routed(LeastOutstanding):
    """A router of the user's own (here the same policy): the compiled core does not know it."""


def _run(core, monkeypatch, pools, reqs, **kw):
    monkeypatch.setenv("PLANNER_SIM_CORE", core)
    sim = Simulator(pools, reqs, **kw)
    res = sim.run()
    assert res.core == core
    return res


def _identical(a, b):
    for k in ARRAYS:
        assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), k
    assert (a.events, a.steps, a.notes, a.cache_hit_tokens) == (b.events, b.steps, b.notes, b.cache_hit_tokens)
    assert a.summary() == b.summary()


def _replica(engine, reqs, rng, **sched):
    rep = replica_for("llama-3.1-8b", "h100-sxm", engine=engine, sched=Scheduler(**sched) if sched else None,
                      max_input=float(reqs.input_tokens.max() + reqs.output_tokens.max()))
    # a KV cache 20-60x smaller than the GPU's: admission waits, preemption and rejection all happen
    blocks = max(rep.kv_blocks // rng.randint(20, 60), 200)
    beh = dataclasses.replace(rep.behaviour, request_overhead_s=rng.choice([0.0, 0.004]),
                              async_scheduling=rng.random() < 0.5, prefix_caching=rng.random() < 0.8)
    return dataclasses.replace(rep, kv_blocks=blocks, behaviour=beh)


TWO_CLASSES = str(Path(__file__).resolve().parents[1] / "examples" / "workloads" / "two-class-chat.yaml")


@pytest.mark.parametrize("seed", range(20))
def test_compiled_core_matches_python_on_random_configurations(seed, monkeypatch):
    rng = random.Random(seed)
    engine = ["trtllm", "vllm", "sglang"][seed % 3]
    # rag: a pinned prefix; multiturn: retained turns; two classes: priorities for the priority queue
    workload = ["chat", "burstgpt", "rag", "chat-multiturn", TWO_CLASSES][seed % 5]
    reqs = generate(get_workload(workload), 1500, rate=rng.choice([5.0, 25.0, 80.0]), seed=seed)
    sched = {}
    if workload == TWO_CLASSES or rng.random() < 0.25:
        sched["policy"] = "priority" if workload == TWO_CLASSES else "slo-aware"
        sched["ttft_slo_s"] = rng.choice([0.2, 1.0])
    if rng.random() < 0.3:  # speculative decoding: a whole or a fractional number of tokens per step
        sched["spec_k"] = rng.choice([2, 3])
        sched["spec_alpha"] = rng.choice([1.0, 0.6])
    if rng.random() < 0.4:
        sched["chunked_prefill"] = rng.random() < 0.5
        sched["max_batched_tokens"] = rng.choice([256, 1024, 4096])
    if rng.random() < 0.3:
        sched["max_seqs"] = rng.choice([4, 16, 48])
    if engine != "trtllm" and rng.random() < 0.4:
        sched["preemption"] = "swap"
    a = _replica(engine, reqs, rng, **sched)
    pools = [Pool(a, rng.choice([1, 1, 2, 3]))]
    if rng.random() < 0.4:  # a second pool of another size (routers that look at pools)
        pools.append(Pool(_replica(engine, reqs, rng, max_seqs=rng.choice([8, 32])), rng.choice([1, 2])))
    router = rng.choice(["least-outstanding", "round-robin", "static", "threshold:3"])
    _identical(_run("python", monkeypatch, pools, reqs, router=router), _run("c", monkeypatch, pools, reqs, router=router))


@pytest.mark.parametrize("workload,sched", [("burstgpt", {}), ("chat-multiturn", {}),
                                            ("two-class", {"policy": "priority", "spec_k": 3, "spec_alpha": 0.6}),
                                            ("burstgpt", {"policy": "slo-aware", "ttft_slo_s": 0.5, "spec_k": 2, "spec_alpha": 1.0})])
def test_identical_on_a_long_run_with_preemption(workload, sched, monkeypatch):
    """Preemption under recompute, retained turns, a priority queue with fractional tokens per step (the on-demand
    block count summed over sequences), an slo-aware queue with whole ones."""
    reqs = generate(get_workload(TWO_CLASSES if workload == "two-class" else workload), 20_000, rate=40.0, seed=5)
    rep = _replica("vllm", reqs, random.Random(1), **sched)
    rep = dataclasses.replace(rep, behaviour=dataclasses.replace(rep.behaviour, prefix_caching=True))
    py, c = _run("python", monkeypatch, [Pool(rep, 2)], reqs), _run("c", monkeypatch, [Pool(rep, 2)], reqs)
    assert py.preemptions.sum() > 100  # the regime the comparison is about
    if workload == "chat-multiturn":
        assert py.cache_hit_tokens > 0
    _identical(py, c)


def test_identical_with_sglang_admission_beyond_its_clip(monkeypatch):
    """SGLang's ratio admission with outputs both sides of its 4,096-token clip, retracting on a small KV cache."""
    from planner.serving.workload import fixed_workload

    a, b = generate(fixed_workload(800, 6000), 300, rate=4.0, seed=3), generate(fixed_workload(400, 900), 300, rate=4.0, seed=4)
    reqs = generate(fixed_workload(800, 6000), 600, rate=8.0, seed=3)
    reqs.output_tokens = np.concatenate([a.output_tokens, b.output_tokens])[np.random.default_rng(0).permutation(600)]
    rep = _replica("sglang", reqs, random.Random(7))
    assert rep.ratio_admission
    py, c = _run("python", monkeypatch, [Pool(rep, 1)], reqs), _run("c", monkeypatch, [Pool(rep, 1)], reqs)
    assert py.preemptions.sum() > 0 and (reqs.output_tokens > 4096).sum() > 100
    _identical(py, c)


def test_auto_falls_back_to_python_where_the_core_does_not_reach(monkeypatch):
    monkeypatch.delenv("PLANNER_SIM_CORE", raising=False)
    reqs = generate(get_workload("chat"), 300, rate=5.0, seed=0)
    rep = replica_for("llama-3.1-8b", "h100-sxm", max_input=float(reqs.input_tokens.max() + reqs.output_tokens.max()))
    assert Simulator([Pool(rep, 1)], reqs).run().core == "c"
    sim = Simulator([Pool(rep, 1)], reqs, router=_Routed())
    assert sim.run().core == "python" and sim.core_reason == "the least-outstanding router"
    pools = [Pool(rep, 2, role="prefill"), Pool(rep, 2, role="decode")]
    sim = Simulator(pools, reqs, migrate=1)
    assert sim.run().core == "python" and sim.core_reason == "live migration beside disaggregated pools"
    monkeypatch.setenv("PLANNER_SIM_CORE", "c")
    with pytest.raises(PlannerError, match="cannot run this: live migration beside"):
        Simulator(pools, reqs, migrate=1).run()
    monkeypatch.setenv("PLANNER_SIM_CORE", "fast")
    with pytest.raises(PlannerError, match="auto, c or python"):
        Simulator([Pool(rep, 1)], reqs).run()


def test_without_a_compiler_python_runs_and_says_so(monkeypatch):
    reqs = generate(get_workload("chat"), 400, rate=8.0, seed=2)
    rep = replica_for("llama-3.1-8b", "h100-sxm", max_input=float(reqs.input_tokens.max() + reqs.output_tokens.max()))
    c = _run("c", monkeypatch, [Pool(rep, 1)], reqs)
    monkeypatch.delenv("PLANNER_SIM_CORE")
    monkeypatch.setattr(fastcore, "_lib", None)
    monkeypatch.setattr(fastcore, "_error", None)
    monkeypatch.setattr(fastcore, "_compiler", lambda: None)
    py = Simulator([Pool(rep, 1)], reqs).run()
    assert py.core == "python" and any("no C compiler" in n for n in py.notes)
    py.notes = c.notes
    _identical(py, c)


def test_max_events_and_progress_in_the_compiled_core(monkeypatch):
    monkeypatch.setenv("PLANNER_SIM_CORE", "c")
    reqs = generate(get_workload("chat"), 5000, rate=20.0, seed=4)
    rep = replica_for("llama-3.1-8b", "h100-sxm", max_input=float(reqs.input_tokens.max() + reqs.output_tokens.max()))
    with pytest.raises(PlannerError, match="stopped after 1000 events"):
        Simulator([Pool(rep, 1)], reqs, max_events=1000).run()
    seen = []
    Simulator([Pool(rep, 2)], reqs, progress=lambda done, total: seen.append((done, total))).run()
    assert seen[:2] == [(2000, 5000), (4000, 5000)] and seen[-1] == (5000, 5000)


@pytest.mark.parametrize("resident,replicas", [(200, 1), (8, 2)])
def test_identical_with_lora_adapters(resident, replicas, monkeypatch):
    """S-LoRA traffic: an LRU set of resident adapters per replica, misses loaded over the host link one after another,
    requests waiting for a slot when every resident adapter is in use (8 slots for 1,000 adapters)."""
    reqs = generate(get_workload("chat"), 6000, rate=20.0, seed=3)
    lora = parse_lora("1000:16", resident, "zipf:1.0")
    reqs.adapter = assign_adapters(len(reqs), lora, seed=0)
    rep = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", lora=lora,
                      max_input=float(reqs.input_tokens.max() + reqs.output_tokens.max()))
    monkeypatch.setenv("PLANNER_SIM_CORE", "python")
    ref_sim = Simulator([Pool(rep, replicas)], reqs)
    ref = ref_sim.run()
    monkeypatch.setenv("PLANNER_SIM_CORE", "c")
    got = Simulator([Pool(rep, replicas)], reqs).run()
    assert ref.core == "python" and got.core == "c"
    _identical(ref, got)
    assert ref.extras["lora"] == got.extras["lora"]  # hits, loads and evictions come back from the compiled core
    s = lora_summary(ref_sim.replicas, 1000.0)
    assert s["loads"] > 0 and s["hits"] > 0
    if resident == 8:  # a small resident set: adapters are evicted
        assert s["evictions"] > 0


@pytest.mark.parametrize("engine,prefill,decode", [("trtllm", 1, 1), ("vllm", 2, 3)])
def test_identical_with_disaggregated_pools(engine, prefill, decode, monkeypatch):
    """Prefill pools hand each prompt's KV (after the link's latency and per-token time) to the least-loaded decode
    replica, which only needs blocks for it; follow-up turns go back to the prefill replica that holds their history."""
    reqs = generate(get_workload("chat-multiturn"), 5000, rate=30.0, seed=7)
    rng = random.Random(2)
    p = _replica(engine, reqs, rng)
    d = _replica(engine, reqs, rng)
    pools = [Pool(p, prefill, role="prefill"), Pool(d, decode, role="decode")]
    monkeypatch.setenv("PLANNER_SIM_CORE", "python")
    ref = Simulator(pools, reqs).run()
    monkeypatch.setenv("PLANNER_SIM_CORE", "c")
    got = Simulator(pools, reqs).run()
    assert got.core == "c" and set(np.unique(ref.pool)) == {0} and np.isfinite(ref.finish_s).mean() > 0.9
    _identical(ref, got)


@pytest.mark.parametrize("swap_group", [None, 8])
def test_identical_with_priority_preemption_and_live_migration(swap_group, monkeypatch):
    """FastSwitch-style priority preemption (lower classes swapped out, copied block by block or by bandwidth) and
    Llumnix-style live migration between four replicas, together."""
    reqs = generate(get_workload(TWO_CLASSES), 8000, rate=60.0, seed=9)
    rep = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", max_input=float(reqs.input_tokens.max() + reqs.output_tokens.max()),
                      sched=Scheduler(policy="priority", max_seqs=24, priority_preemption=True, swap_group=swap_group))
    rep = dataclasses.replace(rep, kv_blocks=max(rep.kv_blocks // 30, 300))
    monkeypatch.setenv("PLANNER_SIM_CORE", "python")
    ref_sim = Simulator([Pool(rep, 4)], reqs, migrate=2)
    ref = ref_sim.run()
    monkeypatch.setenv("PLANNER_SIM_CORE", "c")
    got_sim = Simulator([Pool(rep, 4)], reqs, migrate=2)
    got = got_sim.run()
    assert got.core == "c" and ref.preemptions.sum() > 50 and ref.extras["migration"]["migrations"] > 50
    _identical(ref, got)
    assert ref.extras["migration"] == got.extras["migration"]
    assert ref_sim.migrator.log == got_sim.migrator.log  # (context, tokens written during the copy, t1, t2) each


def test_a_cache_folder_that_cannot_be_written_falls_back_to_a_temporary_one(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the cache folder would sit under a file: it cannot be created
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(blocker / "planner"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr(fastcore, "_lib", None)
    monkeypatch.setattr(fastcore, "_error", None)
    lib = fastcore.load()
    assert lib is not None and fastcore._error is None
    assert str(tmp_path / "tmp") in lib._name


def test_identical_on_a_fixed_length_closed_loop_whose_replies_end_together(monkeypatch):
    """Fixed lengths in a shared closed loop: replies end at one step boundary, and their follow-ups reach the engine
    RELEASE_GAP_S apart in both cores, so the compiled loop stays bit-identical."""
    from planner.serving.workload import fixed_workload, shared_closed_loop

    reqs = shared_closed_loop(generate(fixed_workload(135, 256), 120, rate=float("inf"), seed=0), 4)
    rep = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", max_input=391.0)
    rep = dataclasses.replace(rep, behaviour=dataclasses.replace(rep.behaviour, request_overhead_s=0.005))
    _identical(_run("python", monkeypatch, [Pool(rep, 1)], reqs), _run("c", monkeypatch, [Pool(rep, 1)], reqs))
