"""planner: plan LLM serving deployments (fit, speed, cost, and the C/A/P trade).

    from planner import estimate, plan, capacity, simulate, PlanSpec
    est = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="fp8"), isl=2000, osl=500)
    print(est.output_tokens_per_s_per_gpu, est.ttft_s, est.tpot_s)
"""

from planner.api import (CapacityReport, Estimate, PlanReport, PlanRow, PlanSpec, SimulationReport, capacity, estimate,
                         fit, plan, simulate)

__all__ = ["CapacityReport", "Estimate", "PlanReport", "PlanRow", "PlanSpec", "SimulationReport", "capacity", "estimate",
           "fit", "plan", "simulate"]
