"""Speed of the serving event simulator.

Run: python benchmarks/bench_simulator.py
Target (serving-dynamics issue): 100,000 requests simulated in under 10 s.

Scenarios (each 100,000 requests, seed 0, wall time includes building the step-cost table and
sampling the workload):
  chat-8b      llama-3.1-8b on 1 x h100-sxm, chat workload (Splitwise medians), Poisson 4 req/s (busy replica)
  chat-70b-x4  llama-3.1-70b tp4 x 4 replicas on 16 x h100-sxm, chat, Poisson 10 req/s, least-outstanding router
  burst-ondemand  llama-3.1-8b with vLLM-style on-demand KV (preemption possible), BurstGPT Gamma arrivals (cv 1.41)
"""

from __future__ import annotations

import time

from planner.serving.simulator import Pool, Scheduler, Simulator, replica_for
from planner.serving.workload import generate, get_workload

N = 100_000


def scenario(name: str, model: str, tp: int, replicas: int, workload: str, rate: float, sched: Scheduler | None = None,
             engine: str = "trtllm") -> dict:
    t0 = time.perf_counter()
    reqs = generate(get_workload(workload), N, rate=rate, seed=0)
    rep = replica_for(model, "h100-sxm", tp=tp, engine=engine, sched=sched,
                      max_input=float(reqs.input_tokens.max() + reqs.output_tokens.max()))
    t1 = time.perf_counter()
    res = Simulator([Pool(rep, replicas)], reqs).run()
    t2 = time.perf_counter()
    s = res.summary()
    return {"scenario": name, "requests": N, "setup_s": t1 - t0, "simulate_s": t2 - t1, "total_s": t2 - t0,
            "events": res.events, "simulated_s": s["duration_s"], "ttft_p99_s": s["ttft_s"]["p99"],
            "tpot_mean_s": s["tpot_s"]["mean"], "preemptions": s["preemptions"]}


def main() -> None:
    rows = [
        scenario("chat-8b", "llama-3.1-8b", 1, 1, "chat", 4.0),
        scenario("chat-70b-x4", "llama-3.1-70b", 4, 4, "chat", 10.0),
        scenario("burst-ondemand", "llama-3.1-8b", 1, 1, "burstgpt", 20.0, Scheduler(admission="ondemand"), engine="vllm"),
    ]
    print(f"{'scenario':16s} {'requests':>9s} {'setup':>7s} {'simulate':>9s} {'total':>7s} {'events':>9s} {'sim time':>10s} "
          f"{'TTFT p99':>9s} {'TPOT':>8s} {'preempt':>8s}")
    for r in rows:
        print(f"{r['scenario']:16s} {r['requests']:>9,d} {r['setup_s']:>6.2f}s {r['simulate_s']:>8.2f}s {r['total_s']:>6.2f}s "
              f"{r['events']:>9,d} {r['simulated_s']:>9.0f}s {r['ttft_p99_s']:>8.3f}s {r['tpot_mean_s'] * 1e3:>6.1f}ms {r['preemptions']:>8,d}")
    worst = max(r["total_s"] for r in rows)
    print(f"target: 100,000 requests < 10 s -> worst {worst:.2f} s: {'PASS' if worst < 10 else 'FAIL'}")


if __name__ == "__main__":
    main()
