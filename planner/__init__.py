"""planner: plan LLM serving deployments (fit, speed, cost, and the C/A/P trade).

    from planner import estimate, plan, capacity, simulate, PlanSpec
    est = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="fp8"), isl=2000, osl=500)
    print(est.output_tokens_per_s_per_gpu, est.ttft_s, est.tpot_s)
"""

__all__ = ["CapacityReport", "Estimate", "PlanReport", "PlanRow", "PlanSpec", "SimulationReport", "capacity", "estimate",
           "fit", "plan", "simulate"]


def __getattr__(name: str):
    """The library API loads on first use, so ``planner --help`` and light commands skip numpy and the cost model."""
    if name in __all__:
        from planner import api

        return getattr(api, name)
    raise AttributeError(f"module 'planner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
