"""Speed and memory of the serving event simulator.

Run: python benchmarks/bench_simulator.py            (every scenario, each in its own process)
     python benchmarks/bench_simulator.py chat-8b-1m  (one)
Targets (issue 14 item 4): 1,000,000 requests in under 10 s and under 300 MiB peak; same seed, same result.

Each scenario runs in a fresh interpreter so that its peak RSS (resource.getrusage ru_maxrss) is its own;
wall time covers sampling the workload, building the step-cost table and the simulation itself.
  chat-8b-100k / chat-8b-1m  llama-3.1-8b on 1 x h100-sxm, chat workload (Splitwise medians), Poisson 4 req/s
  chat-70b-x4                llama-3.1-70b tp4 x 4 replicas, chat, Poisson 10 req/s, least-outstanding router
  burst-vllm                 llama-3.1-8b with the vLLM engine (on-demand KV, chunked prefill), BurstGPT Gamma arrivals
  rag-prefix                 llama-3.1-8b, rag workload (10 % shared prefix served from the prefix cache), 2 req/s
  lora-8b                    llama-3.1-8b serving 1,000 rank-16 adapters (Zipf 1.0, 200 resident, LRU), chat, 4 req/s
  classes-x4-migrate         llama-3.1-8b x 4 (vLLM), two service classes (examples/workloads/two-class-chat.yaml),
                             live migration at a load difference of 2, 40 req/s
  classes-x4                 the same without migration (the priority queue alone)
  spec-8b                    llama-3.1-8b (vLLM) with speculative decoding, 3 drafts at acceptance 0.7, chat, 8 req/s
  sglang-8b                  llama-3.1-8b with SGLang (new-token-ratio admission, prefill-first steps), chat, 8 req/s
  reuse-vllm                 llama-3.1-8b (vLLM), chat, 8 req/s, the prompts drawn from 1,000 that repeat (a client's
                             dataset entries: each served from the prefix cache while resident; runs in the Python loop)
  dsv3-adp8 / -balanced      deepseek-v3 FP8 on 8 x h200-sxm, data-parallel attention over 8 ranks (ep 8), chat,
                             10 req/s; -balanced holds prompts up to 50 decode steps to line them up across ranks
  *-py                       the same with the Python event loop (PLANNER_SIM_CORE=python), for comparison
The event loop is the compiled one (planner/serving/sim/fastcore.py) wherever it covers the configuration (column
"core": every scenario here; the -py ones force the Python loop). The C file is compiled once before the scenarios run,
so no scenario's time includes the compiler.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

SCENARIOS = {
    "chat-8b-100k": dict(model="llama-3.1-8b", tp=1, replicas=1, workload="chat", rate=4.0, n=100_000),
    "chat-8b-1m": dict(model="llama-3.1-8b", tp=1, replicas=1, workload="chat", rate=4.0, n=1_000_000),
    "chat-70b-x4": dict(model="llama-3.1-70b", tp=4, replicas=4, workload="chat", rate=10.0, n=100_000),
    "burst-vllm": dict(model="llama-3.1-8b", tp=1, replicas=1, workload="burstgpt", rate=20.0, n=100_000, engine="vllm"),
    "rag-prefix": dict(model="llama-3.1-8b", tp=1, replicas=1, workload="rag", rate=2.0, n=100_000),
    "lora-8b": dict(model="llama-3.1-8b", tp=1, replicas=1, workload="chat", rate=4.0, n=100_000, lora=("1000:16", 200, "zipf:1.0")),
    "classes-x4-migrate": dict(model="llama-3.1-8b", tp=1, replicas=4, workload="examples/workloads/two-class-chat.yaml",
                               rate=40.0, n=100_000, engine="vllm", migrate=2),
}
SCENARIOS["classes-x4"] = {k: v for k, v in SCENARIOS["classes-x4-migrate"].items() if k != "migrate"}
SCENARIOS["spec-8b"] = dict(model="llama-3.1-8b", tp=1, replicas=1, workload="chat", rate=8.0, n=100_000, engine="vllm",
                            spec=(3, 0.7))
SCENARIOS["sglang-8b"] = dict(model="llama-3.1-8b", tp=1, replicas=1, workload="chat", rate=8.0, n=100_000, engine="sglang")
SCENARIOS["dsv3-adp8"] = dict(model="deepseek-v3", hardware="h200-sxm", tp=1, adp=8, ep=8, weights="fp8", replicas=1,
                              workload="chat", rate=10.0, n=100_000)
SCENARIOS["dsv3-adp8-balanced"] = dict(SCENARIOS["dsv3-adp8"], balance=50)
SCENARIOS["reuse-vllm"] = dict(model="llama-3.1-8b", tp=1, replicas=1, workload="chat", rate=8.0, n=100_000, engine="vllm",
                               entries=1000)
SCENARIOS["chat-8b-100k-py"] = dict(SCENARIOS["chat-8b-100k"], core="python")
SCENARIOS["burst-vllm-py"] = dict(SCENARIOS["burst-vllm"], core="python")


def run_one(name: str) -> dict:
    from pathlib import Path

    from planner.serving.sim import Pool, Scheduler, Simulator, replica_for
    from planner.serving.sim.adapters import assign_adapters, parse_lora
    from planner.serving.workload import generate, get_workload, reused_prompts

    import os

    sc = SCENARIOS[name]
    os.environ["PLANNER_SIM_CORE"] = sc.get("core", "auto")
    t0 = time.perf_counter()
    wl = sc["workload"]
    wl = str(Path(__file__).resolve().parents[1] / wl) if wl.endswith(".yaml") else wl
    reqs = generate(get_workload(wl), sc["n"], rate=sc["rate"], seed=0)
    if "entries" in sc:  # a client that sends its prompts again (the Python loop: the C core does not cover it)
        reqs = reused_prompts(reqs, sc["entries"], "shuffle", seed=0)
    lora = parse_lora(*sc["lora"]) if "lora" in sc else None
    if lora is not None:
        reqs.adapter = assign_adapters(len(reqs), lora, seed=0)
    sched = Scheduler(policy="priority" if reqs.classes else "fcfs", adp_balance=sc.get("balance"),
                      **(dict(spec_k=sc["spec"][0], spec_alpha=sc["spec"][1]) if "spec" in sc else {}))
    rep = replica_for(sc["model"], sc.get("hardware", "h100-sxm"), tp=sc["tp"], ep=sc.get("ep", 1), adp=sc.get("adp", 1),
                      weights=sc.get("weights", "bf16"), engine=sc.get("engine", "trtllm"), sched=sched, lora=lora,
                      max_input=float(reqs.input_tokens.max() + reqs.output_tokens.max()))
    t1 = time.perf_counter()
    res = Simulator([Pool(rep, sc["replicas"])], reqs, migrate=sc.get("migrate")).run()
    s = res.summary()
    t2 = time.perf_counter()
    return {"scenario": name, "requests": sc["n"], "setup_s": t1 - t0, "simulate_s": res.wall_s, "total_s": t2 - t0,
            "cpu_s": time.process_time(), "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "events": res.events, "simulated_s": s["duration_s"], "ttft_mean_s": s["ttft_s"]["mean"],
            "tpot_mean_s": s["tpot_s"]["mean"], "preemptions": s["preemptions"], "cache_hit_tokens": s["prefix_cache_hit_tokens"],
            "core": res.core}


def main(names: list[str]) -> None:
    from planner.serving.sim import fastcore

    fastcore.load()  # compile the C core once (cached) before anything is timed
    rows = []
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'scenario':18s} {'requests':>9s} {'setup':>7s} {'simulate':>9s} {'total':>7s} {'cpu':>7s} {'peak RSS':>9s} "
          f"{'events':>10s} {'TTFT':>8s} {'TPOT':>8s} {'preempt':>8s} core")
    for r in rows:
        print(f"{r['scenario']:18s} {r['requests']:>9,d} {r['setup_s']:>6.2f}s {r['simulate_s']:>8.2f}s {r['total_s']:>6.2f}s "
              f"{r['cpu_s']:>6.2f}s {r['peak_rss_mib']:>6.0f}MiB {r['events']:>10,d} {r['ttft_mean_s'] * 1e3:>6.1f}ms "
              f"{r['tpot_mean_s'] * 1e3:>6.2f}ms {r['preemptions']:>8,d} {r['core']}")
    big = [r for r in rows if r["requests"] >= 1_000_000]
    for r in big:
        ok = r["total_s"] < 10 and r["peak_rss_mib"] < 300
        print(f"target: 1,000,000 requests < 10 s and < 300 MiB -> {r['total_s']:.1f} s, {r['peak_rss_mib']:.0f} MiB: "
              f"{'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2])))
    else:
        main(sys.argv[1:] or list(SCENARIOS))
