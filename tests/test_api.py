"""The library API: `from planner import estimate, plan, capacity, simulate` returns typed (pydantic) results with
units in the field names, and they agree with each other where they describe the same thing."""

import pytest
from pydantic import BaseModel

from planner import CapacityReport, Estimate, PlanReport, PlanSpec, SimulationReport, capacity, estimate, plan, simulate


def test_estimate_is_typed_and_serializes():
    e = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="fp8"), isl=1000, osl=200)
    assert isinstance(e, Estimate) and isinstance(e, BaseModel)
    d = e.to_dict()
    assert d["ttft_s"] == e.ttft_s and d["memory"]["fits"] is True
    with pytest.raises(Exception):
        Estimate(**{**d, "ttft_s": "soon"})  # types are checked


def test_plan_report_rows_are_typed_and_the_recommendation_meets_the_slo():
    r = plan("llama-3.1-8b", "h100-sxm", 1, isl=1000, osl=200, tpot_s=0.03, min_accuracy=0.99)
    assert isinstance(r, PlanReport)
    assert r.recommended is not None and r.recommended.tpot_s <= 0.03 and r.recommended.accuracy >= 0.99
    assert all(row.tpot_s <= 0.03 for row in r.frontier)
    assert r.search["plans_evaluated"] >= len(r.frontier)


def test_simulate_and_capacity_are_typed():
    s = simulate("llama-3.1-8b", "h100-sxm", rate=2.0, isl=500, osl=100, requests=100, weights="fp8")
    assert isinstance(s, SimulationReport) and s.completed == 100
    assert s.ttft_s["p99"] >= s.ttft_s["p50"] > 0
    c = capacity("llama-3.1-8b", "h100-sxm", 5.0, isl=500, osl=100, ttft_s=1.0, tpot_s=0.05, requests=200)
    assert isinstance(c, CapacityReport) and c.feasible and c.gpus >= 1


def test_a_replica_larger_than_the_device_links_is_a_clear_error_not_nan():
    """RTX 4080s pair over PCIe (a scale-up domain of 2) and have no scale-out network on record: a library call with
    tp=8 names the limit (the CLI refuses it before the call the same way) instead of pricing a collective that has no
    link to cross as infinite time and returning NaN; tp=2 runs, and --link joins devices into one replica."""
    import math
    import warnings

    from planner.errors import PlannerError
    from planner.search.evaluate import Workload
    from planner.search.run import Constraints, search

    with pytest.raises(PlannerError, match="scale-out network"):
        estimate("llama-3.1-8b", "rtx-4080", PlanSpec(tp=8))
    e = estimate("llama-3.1-8b", "rtx-4080", PlanSpec(tp=2))
    assert e.fits and math.isfinite(e.tpot_s) and e.tpot_s > 0
    from planner.costmodel.collectives import with_link
    from planner.specs.loader import get_hardware

    joined = estimate("llama-3.1-8b", with_link(get_hardware("rtx-4080"), "gbe-10"), PlanSpec(tp=8))
    assert math.isfinite(joined.tpot_s) and joined.tpot_s > e.tpot_s  # 10 GbE all-reduces cost more than PCIe pairs
    # the search leaves such layouts out quietly: no NaN warning, every frontier row finite
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = search("llama-3.1-8b", ["rtx-4080"], 8, Workload(1024, 256), Constraints(gpus=8))
    assert r.frontier and all(math.isfinite(f["ttft_s"]) and math.isfinite(f["tpot_s"]) for f in r.frontier)


def test_cards_of_a_pcie_server_reach_past_their_bridge():
    """A server of 8 H100 NVLs (bridged in pairs) or 8 RTX 4090s holds tensor-parallel replicas of 4 and 8 over PCIe;
    the bridged pair all-reduces faster than a group that crosses PCIe, and one replica of 16 cards needs a network
    the specs lack (two servers of replicas do not)."""
    import math

    from planner.errors import PlannerError
    from planner.studies.params import check_gpus, max_devices

    assert max_devices("h100-nvl") == (8, False) and max_devices("rtx-4090") == (8, False)
    check_gpus("h100-nvl", 16)  # two servers of replicas: nothing crosses between them on the GPU side
    with pytest.raises(PlannerError, match="16 devices in one replica"):
        estimate("llama-3.1-70b", "h100-nvl", PlanSpec(tp=16))
    tp = {n: estimate("llama-3.1-70b", "h100-nvl", PlanSpec(tp=n, weights="fp8"), isl=1024, osl=256, concurrency=16)
          for n in (2, 4)}
    assert all(e.fits and math.isfinite(e.tpot_s) for e in tp.values())
    ar = {n: sum(o["time_s"] for o in e.breakdown["decode"] if o["op"] == "tp_allreduce") for n, e in tp.items()}
    assert ar[4] > ar[2]  # PCIe Gen5 between the pairs is slower than the 300 GB/s bridge, and moves more hops
    e = estimate("llama-3.1-70b", "rtx-4090", PlanSpec(tp=4, weights="int4"), isl=1024, osl=256, concurrency=8)
    assert e.fits and math.isfinite(e.tpot_s)


def test_a_library_callers_missing_name_is_a_clear_error():
    """A name a library caller leaves as None reaches the lookup's "did you mean" hint: it is an unknown name, said in
    one sentence (PlannerError), not an AttributeError from inside the hint."""
    from planner.errors import PlannerError

    with pytest.raises(PlannerError, match="unknown precision None"):
        estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights=None))
    with pytest.raises(PlannerError, match="did you mean 'fp8'"):
        estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="fp88"))
