"""Multi-tenant serving in the simulator (issue 15): LoRA adapters (S-LoRA / Punica), service classes with
priorities and priority preemption (FastSwitch), live migration (Llumnix), IC-Cache routing. First principles
(bytes, load and copy times by hand) and the papers' directions."""

import numpy as np
import pytest

from planner.cli.app import main
from planner.costmodel.step import Step
from planner.errors import PlannerError
from planner.serving.classes import ServiceClass, assign_classes
from planner.serving.run import simulate_scenario
from planner.serving.sim import Pool, Simulator, replica_for
from planner.serving.sim.adapters import AdapterCache, assign_adapters, parse_lora
from planner.serving.sim.config import Scheduler
from planner.serving.sim.multitenant import swap_s
from planner.serving.workload import fixed_workload, generate
from planner.specs.loader import get_interconnect

H, KV = 4096, 8 * 128  # llama-3.1-8b: hidden 4096, 8 KV heads x 128
PCIE5_BW = 63e9 * 0.81  # hw_specs/interconnects/pcie5.yaml: 63 GB/s per direction, 81 % achievable
PCIE5_LAT = 5e-6


def _lora_rep(lora="1000:16:q,k,v,o", resident=64, popularity="uniform", **kw):
    return replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", max_input=4096,
                       lora=parse_lora(lora, resident, popularity), **kw)


def _spaced(n, isl=512, osl=64, gap_s=10.0, adapters=None):
    r = generate(fixed_workload(isl, osl), n, rate=1.0, seed=0)
    r.arrival_s = gap_s * np.arange(n)
    if adapters is not None:
        r.adapter = np.asarray(adapters, dtype=np.int64)
    return r


# ---------------------------------------------------------------- adapters: first principles

def test_adapter_bytes_by_hand_llama_8b_rank16_qkvo():
    rep = _lora_rep()
    # q: 4096 -> 4096, k and v: 4096 -> 1024, o: 4096 -> 4096; rank 16, 32 layers, 2 bytes (bf16)
    by_hand = 16 * ((H + H) + 2 * (H + KV) + (H + H)) * 32 * 2
    assert by_hand == 27_262_976
    assert rep.lora.cost.bytes_per_adapter == by_hand
    assert rep.lora.bytes_per_gpu == by_hand  # tp1
    tp2 = _lora_rep(tp=2)
    assert tp2.lora.bytes_per_gpu == pytest.approx(by_hand / 2)  # each GPU holds its shard


def test_miss_load_time_is_bytes_over_host_bandwidth():
    link = get_interconnect("pcie5")
    assert link.bandwidth_per_direction.value * link.achievable.fraction == pytest.approx(PCIE5_BW)
    rep = _lora_rep()
    assert rep.lora.load_s == pytest.approx(PCIE5_LAT + 27_262_976 / PCIE5_BW, rel=1e-9)


def test_resident_adapters_come_out_of_the_kv_pool():
    base = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", max_input=4096)
    rep = _lora_rep(resident=64)
    per_block = 32 * 2 * KV * 2 * rep.block_tokens  # K and V, 32 layers, bf16, per block
    taken = int(np.ceil(64 * 27_262_976 / per_block))
    assert rep.lora.kv_blocks == taken
    assert base.kv_blocks - rep.kv_blocks == taken


def test_a_miss_delays_the_first_token_by_one_load_and_a_hit_does_not():
    rep = _lora_rep(resident=4)
    reqs = _spaced(3, adapters=[7, 7, 9])  # cold miss, hit, another cold miss
    res = Simulator([Pool(rep, 1)], reqs).run()
    ttft = res.ttft_s
    load = rep.lora.load_s
    assert ttft[0] - ttft[1] == pytest.approx(load, rel=1e-6)
    assert ttft[2] == pytest.approx(ttft[0], rel=1e-9)
    s = res.summary()["lora"]
    assert (s["loads"], s["hits"]) == (2, 1)


def test_every_step_pays_the_cost_models_adapter_op():
    """One request alone: the TPOT gained with adapters is the cost model's LoRA op at one sequence."""
    plain = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", max_input=4096)
    rep = _lora_rep()
    reqs = _spaced(1, isl=512, osl=200, adapters=[0])
    t_lora = Simulator([Pool(rep, 1)], reqs).run().tpot_s[0]
    t_plain = Simulator([Pool(plain, 1)], _spaced(1, isl=512, osl=200)).run().tpot_s[0]
    tab = rep.table
    op = next(o for o in tab.cm.step(tab.plans, Step(decode_seqs=np.array([1.0]), decode_ctx=np.array([612.0]))).ops
              if str(o.name) == "lora")
    added = float(np.ravel(op.time_s * op.count)[0])
    assert added > 0
    assert t_lora - t_plain == pytest.approx(added, rel=0.05)


def test_adapter_cache_is_lru_and_never_evicts_an_adapter_in_use():
    c = AdapterCache(2, 1.0)
    assert c.acquire(1, 0.0) == 1.0  # miss: loads take the link one after another
    assert c.acquire(2, 0.0) == 2.0
    assert c.acquire(3, 0.0) is None  # both slots in use
    c.release(1)
    assert c.acquire(3, 5.0) == 6.0  # adapter 1 (unused, least recent) evicted
    assert 1 not in c.res and c.evictions == 1
    assert c.acquire(2, 7.0) == 7.0  # a hit
    assert (c.hits, c.misses) == (1, 3)


def test_popularity_zipf_puts_the_most_requests_on_adapter_zero():
    spec = parse_lora("100:8", None, "zipf:1.2")
    a = assign_adapters(20000, spec, seed=3)
    counts = np.bincount(a, minlength=100)
    assert counts[0] > counts[1] > counts[10] > 0
    assert counts[0] / counts[1] == pytest.approx(2 ** 1.2, rel=0.1)
    u = np.bincount(assign_adapters(20000, parse_lora("100:8"), seed=3), minlength=100)
    assert u.max() / u.min() < 1.6


def test_slora_thousands_of_adapters_cost_little_throughput_against_one():
    """S-LoRA: thousands of adapters served at a small throughput loss against a single adapter (the adapter
    GEMMs and host loads are small next to the base model's step)."""
    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", engine="vllm", workload="chat", rate="inf", requests=1500, seed=1)
    one = simulate_scenario(lora="1:16", **kw).out
    many = simulate_scenario(lora="2000:16", lora_resident=200, lora_popularity="zipf:1.0", **kw).out
    ratio = many["output_tokens_per_s"] / one["output_tokens_per_s"]
    assert 0.85 < ratio < 1.05  # within a few per cent (the load stalls reorder admissions a little)
    assert many["lora"]["miss_rate"] > 0.1 > one["lora"]["miss_rate"]


# ---------------------------------------------------------------- classes and priority preemption

_CLASSES = [ServiceClass(name="interactive", share=0.2, priority=0, ttft_slo_s=0.5),
            ServiceClass(name="batch", share=0.8, priority=1, ttft_slo_s=10.0)]


def _classed(n, rate, seed=0, isl=1024, osl=128):
    r = generate(fixed_workload(isl, osl), n, rate=rate, seed=seed)
    assign_classes(r, _CLASSES, seed)
    return r


def test_higher_priority_class_has_lower_p99_ttft_under_overload():
    rep = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", max_input=4096, sched=Scheduler(policy="priority"))
    res = Simulator([Pool(rep, 1)], _classed(3000, rate=40.0)).run()
    c = res.summary()["classes"]
    assert c["interactive"]["requests"] + c["batch"]["requests"] == 3000
    assert c["interactive"]["ttft_s"]["p99"] < 0.5 * c["batch"]["ttft_s"]["p99"]
    assert c["interactive"]["slo"]["attainment"] > c["batch"]["slo"]["attainment"] or c["batch"]["ttft_s"]["p99"] < 10


def test_class_shares_must_add_up_to_one():
    r = generate(fixed_workload(100, 10), 10, rate=1.0, seed=0)
    with pytest.raises(PlannerError, match="add up to 1"):
        assign_classes(r, [ServiceClass(name="a", share=0.5), ServiceClass(name="b", share=0.2)], 0)


def test_block_granular_swap_cost_is_one_copy_per_block_per_layer():
    rep = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", max_input=4096,
                      sched=Scheduler(priority_preemption=True, policy="priority"))
    assert rep.swap_group == 1 and rep.kv_transfers_per_block == 64  # K and V of 32 layers
    sim = Simulator([Pool(rep, 1)], _classed(4, rate=1.0))
    r = sim.replicas[0]
    own = 1000
    blocks = -(-own // rep.block_tokens)
    by_hand = own * 32 * 2 * KV * 2 / PCIE5_BW + blocks * 64 * PCIE5_LAT  # bytes / bandwidth + a copy per block per layer
    assert swap_s(r, own) == pytest.approx(by_hand, rel=1e-6)
    r.swap_group = 8  # FastSwitch block groups: 8x fewer copies
    assert swap_s(r, own) == pytest.approx(own * 32 * 2 * KV * 2 / PCIE5_BW + -(-blocks // 8) * 64 * PCIE5_LAT, rel=1e-6)


def test_priority_preemption_swaps_out_batch_work_for_interactive_requests():
    """FastSwitch / vLLM priority scheduling: with a full batch, preempting low-priority decodes cuts the
    high-priority tail TTFT; the preempted requests pay the swap. 16 sequences of 512 output tokens serve about
    4 requests/s: at 6 req/s the replica is overloaded, while the interactive fifth (~1.2 req/s) alone would fit, so
    its requests wait for batch decodes to end unless those are swapped out. (Where the interactive class alone
    overloads the replica, it queues behind itself and preemption cannot help: its own Poisson bursts set the top
    percentile either way, so the tail asserted is that it does not grow; the 99th percentile of its 286 requests is
    their three slowest, which moved from 0.70 to 0.94 of the baseline with a recalibration that changed its decode step
    by 0.03 %, while the mean fell to 0.44-0.63 of it over seeds 2-4 and 1,500-4,000 requests.)"""
    kw = dict(engine="vllm", max_input=4096)
    reqs = _classed(1500, rate=6.0, seed=2, isl=256, osl=512)
    base = Simulator([Pool(replica_for("llama-3.1-8b", "h100-sxm", sched=Scheduler(policy="priority", max_seqs=16), **kw), 1)],
                     reqs).run()
    pre = Simulator([Pool(replica_for("llama-3.1-8b", "h100-sxm", sched=Scheduler(policy="priority", max_seqs=16,
                                                                                  priority_preemption=True), **kw), 1)],
                    _classed(1500, rate=6.0, seed=2, isl=256, osl=512)).run()
    hi = reqs.klass == 0
    assert pre.preemptions[~hi].sum() > 0 and pre.preemptions[hi].sum() == 0
    assert pre.ttft_s[hi].mean() < 0.7 * base.ttft_s[hi].mean()  # the wait behind batch decodes, gone
    assert np.percentile(pre.ttft_s[hi], 50) < 0.7 * np.percentile(base.ttft_s[hi], 50)
    assert np.percentile(pre.ttft_s[hi], 99) <= np.percentile(base.ttft_s[hi], 99)
    assert np.percentile(pre.ttft_s[~hi], 99) >= np.percentile(base.ttft_s[~hi], 99)  # the batch class pays


def test_priority_preemption_needs_on_demand_kv():
    with pytest.raises(PlannerError, match="on-demand"):
        replica_for("llama-3.1-8b", "h100-sxm", engine="trtllm", sched=Scheduler(priority_preemption=True))


# ---------------------------------------------------------------- live migration

def test_migration_copy_time_is_kv_bytes_over_the_link_plus_latency_and_it_rebalances():
    rep = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", max_input=8192)
    # bimodal outputs behind a load-blind router: replicas drift apart in load
    r = generate(fixed_workload(512, 64), 2000, rate=60.0, seed=4)
    rng = np.random.default_rng(4)
    r.output_tokens = np.where(rng.random(2000) < 0.2, 1500, 32).astype(np.int64)
    plain = Simulator([Pool(rep, 4)], r, router="round-robin").run()
    sim = Simulator([Pool(rep, 4)], r, router="round-robin", migrate=2)
    mig = sim.run()
    log = sim.migrator.log
    assert len(log) > 10
    # one token's KV (32 layers x K,V x 1024 x 2 bytes) over NVLink 4 between the replicas: 450 GB/s x 0.82
    # achievable, 3 us latency (hw_specs/interconnects/nvlink4.yaml)
    lat, s_tok = 3e-6, 32 * 2 * KV * 2 / (450e9 * 0.82)
    assert (rep.kv_transfer_latency_s, rep.kv_transfer_s_per_token) == (pytest.approx(lat), pytest.approx(s_tok))
    for ctx, g, t1, t2 in log[:50]:
        assert t1 == pytest.approx(lat + ctx * s_tok)
        assert t2 == pytest.approx(lat + g * s_tok)  # downtime: only the tokens written during the first copy
        assert t2 < t1 or g == 0
    assert mig.done.all() and plain.done.all()
    assert mig.summary()["migration"]["migrations"] == sim.migrator.count
    assert np.percentile(mig.e2e_s, 99) < np.percentile(plain.e2e_s, 99)


# ---------------------------------------------------------------- IC-Cache routing

def test_ic_cache_keeps_quality_against_routing_on_load_alone():
    out = simulate_scenario(fleet="llama-3.1-70b:1:4,llama-3.1-8b:4:1", hardware="h100-sxm", workload="chat", rate=12.0,
                            requests=1500, ic_cache="0.7:3:200:1.0").out
    runs = out["runs"]
    load, ic = runs["threshold:8"], runs["ic-cache:0.7"]
    assert ic["mean_accuracy"] > load["mean_accuracy"]
    assert 0.5 < ic["served_with_examples"] <= 0.7 + 0.05
    # the cached examples lengthen the prompts the small model sees: 3 x 200 tokens each
    assert ic["mean_input_tokens"] == pytest.approx(load["mean_input_tokens"] + 600 * ic["served_with_examples"], rel=0.02)
    # the same GPUs at the same hourly price; per request the two differ only by how long the last requests drain
    assert ic["usd_per_hour"] == load["usd_per_hour"]
    assert ic["usd_per_1k_requests"] == pytest.approx(load["usd_per_1k_requests"], rel=0.15)


# ---------------------------------------------------------------- the CLI: bad values, one line, exit 2

@pytest.mark.parametrize("args, msg", [
    (["--lora", "100:0"], "rank must be at least 1"),
    (["--lora", "10:16", "--lora-resident", "20"], "between 1 and the 10 adapters"),
    (["--lora", "10:16:q,zz"], "target"),
    (["--lora", "10:16", "--lora-popularity", "zipf:0"], "exponent"),
    (["--fleet", "llama-3.1-70b:1:4,llama-3.1-8b:1", "--ic-cache", "1.5:3:200:1"], "hit rate"),
    (["--fleet", "llama-3.1-70b:1:4,llama-3.1-8b:1", "--ic-cache", "0.5:3:200:0"], "quality"),
    (["--engine", "trtllm", "--priority-preemption"], "on-demand"),
])
def test_bad_values_exit_2_with_one_line(args, msg, capsys):
    base = ["simulate", "--hardware", "h100-sxm", "--requests", "5", "--rate", "1"]
    if "--fleet" not in args:
        base += ["--model", "llama-3.1-8b"]
    with pytest.raises(SystemExit) as e:
        main(base + args)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert msg in err and len(err.strip().splitlines()) == 1
