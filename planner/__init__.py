"""planner: plan LLM serving deployments (fit, speed, cost, and the C/A/P trade)."""

from planner.api import Estimate, PlanSpec, estimate, fit

__all__ = ["Estimate", "PlanSpec", "estimate", "fit"]
