"""Total cost of ownership (planner/cap/cost.py): the owned device-hour from purchase, amortization, power, PUE and
electricity; $/M output tokens rented and owned through estimate, plan and capacity; one-line errors for bad inputs."""

import json
import math

import numpy as np
import pytest

from cli_helpers import run
from planner.cap.cost import (HOURS_PER_YEAR, TcoAssumptions, assumptions, host_power_w, owned, owned_cost_keys,
                              tco_defaults, usd_per_million_tokens)
from planner.errors import PlannerError
from planner.search.evaluate import Workload
from planner.search.run import Constraints, search
from planner.search.space import SpaceOptions
from planner.specs.hardware import Purchase, System, Watts
from planner.specs.loader import get_hardware, get_system, hardware_ids, system_ids


def _bare(power_w: float, purchase_usd: float):
    """A device with no system on record (no host share), the given board power and purchase price."""
    h = get_hardware("h100-sxm")
    return h.model_copy(update={"id": "tco-test-gpu", "power": Watts(value=power_w, source="test"),
                                "purchase": Purchase(usd=purchase_usd, date="2026", source="test")})


def test_power_term_units():
    """700 W at PUE 1.2 and $0.10/kWh: 0.7 kW x 1.2 x 0.10 $/kWh = $0.084 per hour."""
    a = TcoAssumptions(electricity_usd_per_kwh=0.10, pue=1.2, amortization_years=4, utilization=1.0)
    o = owned(_bare(700.0, 1.0), a)
    assert o.host_power_w == 0.0
    assert o.power_usd_per_hour == pytest.approx(0.084, rel=1e-12)


def test_capital_term_is_straight_line_over_the_hours_served():
    a = TcoAssumptions(electricity_usd_per_kwh=0.0, pue=1.0, amortization_years=4, utilization=1.0)
    o = owned(_bare(700.0, 35_040.0), a)
    assert o.capex_usd_per_hour == pytest.approx(35_040.0 / (4 * 8760), rel=1e-12)  # $1.00 per hour
    assert o.usd_per_hour == pytest.approx(o.capex_usd_per_hour + o.power_usd_per_hour)
    half = owned(_bare(700.0, 35_040.0), TcoAssumptions(0.0, 1.0, 4, 0.5))
    assert half.capex_usd_per_hour == pytest.approx(2 * o.capex_usd_per_hour)  # idle half the time: twice per hour served
    longer = owned(_bare(700.0, 35_040.0), TcoAssumptions(0.0, 1.0, 8, 1.0))
    assert longer.capex_usd_per_hour == pytest.approx(o.capex_usd_per_hour / 2)


def test_owned_h100_follows_the_formula_and_undercuts_its_rent():
    """A fully used H100 in a DGX H100 over 4 years: the system's price per GPU amortized plus (GPU + host share) power;
    the assertion is the formula on the sourced numbers, then the comparison with the sourced rent."""
    hw, sysm = get_hardware("h100-sxm"), get_system("dgx-h100")
    a = assumptions(amortization_years=4, utilization=1.0)
    n = sysm.devices_per_node
    host_w = (sysm.power.value - n * hw.power.value) / n
    expect = (sysm.purchase.usd / n / (4 * HOURS_PER_YEAR * 1.0)
              + (hw.power.value + host_w) / 1000.0 * a.pue * a.electricity_usd_per_kwh)
    o = owned(hw, a)
    assert o.host_power_w == pytest.approx(575.0)  # (10.2 kW - 8 x 700 W) / 8
    assert o.usd_per_hour == pytest.approx(expect, rel=1e-12)
    assert o.usd_per_hour < hw.price.usd_per_hour


def test_host_share_needs_a_system_that_holds_its_devices():
    hw = get_hardware("h100-sxm")
    small = System(id="x", name="x", device="h100-sxm", devices_per_node=8, source="test", power=Watts(value=4000, source="t"))
    with pytest.raises(PlannerError, match="less than its 8 x 700 W"):
        host_power_w(hw, small)
    assert host_power_w(get_hardware("l4"))[0] == 0.0  # no system power on record: nothing added, and it says so


def test_every_price_purchase_and_system_power_is_sourced_and_consistent():
    for h in hardware_ids():
        hw = get_hardware(h)
        for p in (hw.price, hw.purchase):
            if p is not None:
                assert p.source.strip() and p.date.strip(), h
    for sid in system_ids():
        s = get_system(sid)
        if s.purchase is not None:
            assert s.purchase.source.strip() and s.purchase.date.strip(), sid
        if s.power is not None:
            dev = get_hardware(s.device)
            assert dev.power is not None and s.power.value >= s.devices_per_node * dev.power.value, sid
    for name, src in tco_defaults().sources:
        assert src.strip(), name


def test_usd_per_million_tokens_vectorized():
    got = usd_per_million_tokens(np.array([3.6, 3.6, np.nan]), np.array([1000.0, 0.0, 1000.0]))
    assert got[0] == pytest.approx(1.0)  # $3.60/h at 1000 tok/s = 3.6e6 tokens per hour
    assert np.isnan(got[1]) and np.isnan(got[2])
    assert usd_per_million_tokens(2.25, 1000.0) == pytest.approx(0.625)


@pytest.mark.parametrize("kw,msg", [({"electricity_usd_per_kwh": -0.1}, "at least 0"), ({"pue": 0.9}, "at least 1"),
                                    ({"pue": math.inf}, "finite"), ({"amortization_years": 0}, "above 0"),
                                    ({"amortization_years": math.nan}, "finite"), ({"utilization": 1.5}, "at most 1"),
                                    ({"utilization": 0.0}, "above 0")])
def test_assumptions_reject_out_of_range_values(kw, msg):
    with pytest.raises(PlannerError, match=msg):
        assumptions(**kw)


@pytest.mark.parametrize("args", [["--pue", "0.9"], ["--electricity-usd-per-kwh", "-1"], ["--amortization-years", "inf"],
                                  ["--utilization", "nan"]])
def test_cli_flags_fail_in_one_line(args, capsys):
    code, out, err = run(["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", *args], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and args[0] in err


def test_estimate_cost_block_has_owned_keys_under_the_flags(capsys):
    code, out, _ = run(["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--pue", "1.2", "--electricity-usd-per-kwh",
                        "0.1", "--amortization-years", "4", "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    c = d["cost"]
    assert c["owned"]["assumptions"] == {"electricity_usd_per_kwh": 0.1, "pue": 1.2, "amortization_years": 4.0,
                                         "utilization": 1.0}
    assert c["owned"]["power_usd_per_gpu_hour"] == pytest.approx((700 + 575) / 1000 * 1.2 * 0.1)
    tok = d["output_tokens_per_s"]
    assert c["usd_per_million_output_tokens_owned"] == pytest.approx(c["usd_per_hour_owned"] / (tok * 3600) * 1e6)
    assert c["usd_per_million_output_tokens"] == pytest.approx(c["usd_per_hour"] / (tok * 3600) * 1e6)


def test_owned_keys_without_a_purchase_price_are_null():
    k = owned_cost_keys(get_hardware("l4"), 1, 1000.0)
    assert k["usd_per_million_output_tokens_owned"] is None and "no purchase price" in k["owned"]["note"]


OPTS = SpaceOptions(weights=("fp8",), kv=("fp8",), offload=False, disaggregated=False, chunk_tokens=(0,))


def test_plan_rows_carry_both_rates_in_the_ratio_of_their_hourly_costs():
    res = search("llama-3.1-8b", ["h100-sxm"], 1, Workload(1024, 256), Constraints(1), opts=OPTS)
    hw = get_hardware("h100-sxm")
    r = res.recommended
    assert r["usd_per_million_output_tokens_owned"] / r["usd_per_million_output_tokens"] == pytest.approx(
        owned(hw).usd_per_hour / hw.price.usd_per_hour)
    assert res.cost_basis == "rented"


def test_cost_objective_ranks_gaudi3_and_a100_on_a_basis_every_device_has(capsys):
    # a100-sxm-80gb now has a rent: rented ranks it against h100-sxm
    res = search("llama-3.1-8b", ["h100-sxm", "a100-sxm-80gb"], 1, Workload(1024, 256), Constraints(1),
                 objective="cost", opts=SpaceOptions(weights=("bf16",), kv=("bf16",), offload=False, disaggregated=False))
    assert res.cost_basis == "rented" and res.why.startswith("cost basis rented")
    costs = [r["usd_per_million_output_tokens"] for r in res.frontier]
    assert res.recommended["usd_per_million_output_tokens"] == pytest.approx(min(costs), rel=0.006)
    # gaudi3 has a purchase price but no public rent: the cost objective falls back to owned and says so (vLLM runs on
    # both vendors; TensorRT-LLM, the default engine, would leave gaudi3 out)
    code, out, _ = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm,gaudi3", "--gpus", "1", "--objective", "cost",
                        "--weights", "bf16", "--kv", "bf16", "--no-disagg", "--no-offload", "--engine", "vllm", "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["search"]["cost_basis"] == "owned" and "cost basis owned" in d["why"]
    assert "gaudi3 owned cost counts the device alone" in d["why"]  # its purchase is the card; the H100's is a server
    hws = {r["plan"]["hardware"] for r in d["frontier"]}
    assert "gaudi3" in hws or d["recommended"]["plan"]["hardware"] == "gaudi3"
    owned_costs = [r["usd_per_million_output_tokens_owned"] for r in d["frontier"]]
    assert d["recommended"]["usd_per_million_output_tokens_owned"] == pytest.approx(min(owned_costs), rel=0.006)
    # asking for the rented basis names the device without a rent, in one line
    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm,gaudi3", "--gpus", "1", "--objective", "cost",
                          "--cost-basis", "rented", "--engine", "vllm"], capsys)
    assert code == 2 and "gaudi3" in err and "--cost-basis owned" in err and len(err.strip().splitlines()) == 1


def test_max_cost_limits_on_the_chosen_basis():
    base = search("llama-3.1-8b", ["h100-sxm"], 1, Workload(1024, 256), Constraints(1), opts=OPTS, cost_basis="owned")
    own = np.asarray(base.table.cols["usd_per_mtok_owned"])
    cap = float(np.median(own))
    res = search("llama-3.1-8b", ["h100-sxm"], 1, Workload(1024, 256), Constraints(1, max_usd_per_mtok=cap), opts=OPTS,
                 cost_basis="owned")
    assert np.all(np.asarray(res.table.cols["usd_per_mtok_owned"]) <= cap)
    assert len(res.table) < len(base.table)


def test_library_plan_takes_the_assumptions():
    from planner.api import plan

    lo = plan("llama-3.1-8b", "h100-sxm", 1, objective="cost", cost_basis="owned", options=OPTS,
              tco=assumptions(utilization=1.0)).recommended
    hi = plan("llama-3.1-8b", "h100-sxm", 1, objective="cost", cost_basis="owned", options=OPTS,
              tco=assumptions(utilization=0.5)).recommended
    o1, o2 = owned(get_hardware("h100-sxm"), assumptions(utilization=1.0)), owned(get_hardware("h100-sxm"), assumptions(utilization=0.5))
    assert hi.usd_per_million_output_tokens_owned / lo.usd_per_million_output_tokens_owned == pytest.approx(
        o2.usd_per_hour / o1.usd_per_hour, rel=1e-9)  # same plan, only the hourly rate moved
    assert lo.label == hi.label
