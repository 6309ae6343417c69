"""Library entry points: ``estimate``, ``fit``, ``estimate_at_rate``, ``estimate_closed_loop`` (and ``plan`` / ``capacity`` / ``simulate``
through their modules) return typed results without the CLI. The prediction of one plan lives in the serving
layer (``planner.serving.predict``), so calibration and validation use the same code without importing upward."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from planner.serving.predict import Estimate, PlanSpec, estimate, fit, resolve_parallel  # noqa: F401  (re-exported)
from planner.serving.simulated import simulated_estimate
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.model import Model


def estimate_at_rate(
    model: str | Model,
    hardware: str | Hardware,
    plan: PlanSpec | None = None,
    *,
    rate: float,
    isl: int = 1024,
    osl: int = 256,
    engine: Engine | str = "trtllm",
    requests: int = 1000,
    seed: int = 0,
    progress=None,
    adp_balance: int | None = None,
) -> dict:
    """``estimate`` at an arrival rate: Poisson arrivals of fixed-length requests through the event
    simulator (``plan.dp`` replicas, least-outstanding routing). Returns estimate's keys with the
    simulated means (``ttft_s`` mean TTFT, ``tpot_s`` mean inter-token latency, ``e2e_latency_s``,
    achieved throughput) and a ``serving`` block with percentiles, goodput inputs and utilization. ``adp_balance``:
    with attention DP, hold new prompts until every rank can take one, at most that many decode steps."""
    return simulated_estimate(model, hardware, plan, rate=rate, isl=isl, osl=osl, engine=engine, requests=requests,
                              seed=seed, progress=progress, adp_balance=adp_balance)


def estimate_closed_loop(
    model: str | Model,
    hardware: str | Hardware,
    plan: PlanSpec | None = None,
    *,
    clients: int,
    requests: int,
    isl: int = 1024,
    osl: int = 256,
    engine: Engine | str = "trtllm",
    seed: int = 0,
    progress=None,
    adp_balance: int | None = None,
) -> dict:
    """``estimate --concurrency N --requests M``: a benchmark's closed loop (``--max-concurrency N --num-prompts M``) of
    fixed-length requests through the event simulator, the first ``clients`` at once and each later one when a request
    ends. Identical lengths keep such a loop in waves, which the analytic steady state of ``estimate`` (clients out of
    step) does not price; the keys are estimate_at_rate's."""
    return simulated_estimate(model, hardware, plan, clients=clients, requests=requests, isl=isl, osl=osl,
                              engine=engine, seed=seed, progress=progress, adp_balance=adp_balance)


# ---- typed results of plan, capacity and simulate -----------------------------------------------------------------

class _Result(BaseModel):
    # forward compatible: later fields (error bands, TCO) arrive as typed extras rather than breaking old callers
    model_config = ConfigDict(extra="allow")


class PlanRow(_Result):
    """One plan of the search: its layout and precisions in ``plan``, performance with units in the names."""

    label: str
    gpus: int
    plan: dict
    ttft_s: float
    tpot_s: float
    e2e_latency_s: float
    output_tokens_per_s_per_gpu: float
    output_tokens_per_s_per_user: float
    accuracy: float
    max_context_tokens: int
    usd_per_million_output_tokens: float | None  # rented (on-demand price)
    trade: str
    usd_per_million_output_tokens_owned: float | None = None  # purchase amortized + power (planner/cap/cost.py)


class PlanReport(_Result):
    model: str
    search: dict  # plans evaluated / costed / feasible, pruning counts
    frontier: list[PlanRow]
    recommended: PlanRow | None
    runner_up: PlanRow | None
    why: str
    infeasible: list[str]  # which constraint binds and by how much, when nothing is feasible
    nearest: list[PlanRow]


class CapacityReport(_Result):
    model: str
    hardware: str
    rate: float  # requests/s the fleet must serve
    feasible: bool
    reason: str
    gpus: int | None
    replicas: int | None
    plan: dict | None
    usd_per_hour: float | None
    usd_per_month: float | None
    slo: dict
    notes: list[str]
    usd_per_hour_owned: float | None = None
    usd_per_month_owned: float | None = None


class SimulationReport(_Result):
    """The simulator's summary: counts, throughput and latency distributions (``ttft_s``, ``tpot_s`` and
    ``e2e_latency_s`` each hold mean and percentiles in seconds)."""

    requests: int
    completed: int
    duration_s: float
    requests_per_s: float
    output_tokens_per_s: float
    ttft_s: dict
    tpot_s: dict
    e2e_latency_s: dict


def plan(model: str, hardware: str | list[str], gpus: int, *, isl: int = 1024, osl: int = 256, ttft_s: float | None = None,
         tpot_s: float | None = None, min_context: int | None = None, min_accuracy: float | None = 0.99,
         max_usd_per_mtok: float | None = None, objective: str = "throughput", engine: str = "trtllm",
         task: str = "general", top: int = 10, options=None, cost_basis: str | None = None,
         tco=None) -> PlanReport:
    """Search the plan space of ``model`` on up to ``gpus`` devices of each type in ``hardware`` under the constraints;
    returns the C/A/P frontier and the recommended plan (``options``: a planner.search.space.SpaceOptions; ``tco``: a
    planner.cap.cost.assumptions(...) for the owned cost; ``cost_basis``: rented or owned). As on the
    command line, plans keep accuracy within 1 % of bf16 unless ``min_accuracy`` says otherwise (None: no floor)."""
    from planner.search.evaluate import Workload
    from planner.search.run import Constraints, search

    hw = [hardware] if isinstance(hardware, str) else list(hardware)
    cons = Constraints(gpus=gpus, ttft_s=ttft_s, tpot_s=tpot_s, min_context=min_context, min_accuracy=min_accuracy,
                       max_usd_per_mtok=max_usd_per_mtok)
    res = search(model, hw, gpus, Workload(isl, osl), cons, objective=objective, opts=options, engine=engine, task=task, top=top,
                 cost_basis=cost_basis, tco=tco)
    return PlanReport(model=res.model, **res.to_dict())


def capacity(model: str, hardware: str, rate: float, *, isl: int = 1024, osl: int = 256, workload: str | None = None,
             ttft_s: float | None = None, tpot_s: float | None = None, percentile: float = 99.0, max_gpus: int = 64,
             weights: str = "bf16", kv: str | None = None, engine: str = "trtllm", requests: int | None = None,
             seed: int = 0, tco=None, attention_dp_balance: int | None = None) -> CapacityReport:
    """How many GPUs serve ``rate`` requests/s with the percentile TTFT/TPOT SLOs met (simulated); attention-DP
    candidates hold prompts at most ``attention_dp_balance`` decode steps to line them up (None: they do not)."""
    from planner.search.capacity import capacity as size
    from planner.serving.workload import fixed_workload, get_workload

    spec = get_workload(workload) if workload else fixed_workload(isl, osl)
    res = size(model, hardware, rate, spec, ttft_s=ttft_s, tpot_s=tpot_s, percentile=percentile, max_gpus=max_gpus,
               weights=weights, kv=kv, engine=engine, requests=requests, seed=seed, curve=False, tco=tco,
               adp_balance=attention_dp_balance)
    return CapacityReport(**res.to_dict())


def simulate(model: str, hardware: str, *, rate: float | str | None = None, isl: int = 1024, osl: int = 256,
             workload: str | None = None, requests: int = 1000, seed: int = 0, tp: int | None = None, dp: int | None = None,
             weights: str = "bf16", kv: str | None = None, engine: str = "trtllm") -> SimulationReport:
    """Arrivals at ``rate`` requests/s (``'inf'``: all at once) through the event simulator."""
    from planner.serving.run import simulate_scenario

    out = simulate_scenario(model=model, hardware=hardware, tp=tp, dp=dp, weights=weights, kv=kv, engine=engine,
                            workload=workload, isl=isl, osl=osl, rate=None if rate is None else str(rate),
                            requests=requests, seed=seed)
    summary = out.out.get("summary", out.out)
    return SimulationReport(**summary)
