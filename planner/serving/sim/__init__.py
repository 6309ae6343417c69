"""The serving event simulator, in small parts:

* ``steptable`` -- step times from the one cost model (``CostModel.step``) on a grid;
* ``config`` -- replica types (KV blocks from ``planner.costmodel.memory``), scheduler knobs,
  what the engine adds around a step (host time, eager launches, per-request API cost);
* ``queues`` -- scheduler policies (fcfs, priority, slo-aware) behind a registry;
* ``kvcache`` -- the KV block manager and prefix cache (hit counting, LRU eviction);
* ``decodes``, ``replica``, ``stepform`` -- one replica's engine loop, preemption (recompute or swap);
* ``routers`` -- round-robin, least-outstanding, threshold (load-aware fleets), static;
* ``core`` -- the event loop; ``fastcore`` -- the same loop compiled from C (``_fastcore.c``) for the
  configurations it covers, bit-identical; ``metrics`` -- results, percentiles, SLO attainment.
"""

from planner.serving.sim.config import EngineBehaviour, Pool, ReplicaModel, Scheduler, build_replica, replica_for
from planner.serving.sim.core import Simulator
from planner.serving.sim.metrics import SLO, SimResult, _percentile, keeps_up
from planner.serving.sim.replica import Replica
from planner.serving.sim.routers import ROUTERS, BaseRouter, Router
from planner.serving.sim.steptable import StepTable, spec_tokens_per_step

__all__ = ["EngineBehaviour", "Pool", "ReplicaModel", "Scheduler", "build_replica", "replica_for", "Simulator", "SLO",
           "SimResult", "_percentile", "keeps_up", "Replica", "ROUTERS", "BaseRouter", "Router", "StepTable",
           "spec_tokens_per_step"]
