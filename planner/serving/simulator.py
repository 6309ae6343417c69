"""The serving event simulator (the code lives in :mod:`planner.serving.sim`; fleets in
:mod:`planner.serving.fleet`). This module re-exports them so existing imports keep working."""

from planner.serving.fleet import SIZE_SUBSTITUTION_SOURCE, default_tp, fleet_pools, fleet_report, parse_fleet, size_substitution
from planner.serving.sim import (SLO, ROUTERS, BaseRouter, EngineBehaviour, Pool, Replica, ReplicaModel, Router, Scheduler,
                                 SimResult, Simulator, StepTable, _percentile, build_replica, keeps_up, replica_for,
                                 spec_tokens_per_step)

__all__ = ["SIZE_SUBSTITUTION_SOURCE", "default_tp", "fleet_pools", "fleet_report", "parse_fleet", "size_substitution", "SLO",
           "ROUTERS", "BaseRouter", "EngineBehaviour", "Pool", "Replica", "ReplicaModel", "Router", "Scheduler", "SimResult",
           "Simulator", "StepTable", "_percentile", "build_replica", "keeps_up", "replica_for", "spec_tokens_per_step"]
