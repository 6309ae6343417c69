"""``planner capacity``: the fewest GPUs that hold SLO percentiles at an arrival rate."""

from __future__ import annotations

import math
import re
from pathlib import Path

from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console, err_console, print_csv, print_json
from planner.cli.options import check_out_file, command
from planner.cli.registry import SUMMARIES
from planner.errors import PlannerError


def ms(x) -> str:
    """Compact seconds: 488 ms, 12.3 ms, 1.03 s."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 1:
        return f"{x:.2f} s"
    return f"{x * 1e3:.0f} ms" if x >= 0.0995 else f"{x * 1e3:.1f} ms"


HELP = SUMMARIES["capacity"]


@command(app, "capacity", help=HELP, ui=("as_json", "as_csv", "plot"))
def capacity_cmd(req, as_json: bool, as_csv: bool, plot):
    from planner.search.capacity import capacity, parse_hourly, read_daily
    from planner.studies.params import capacity_max_gpus, lora_spec, request_engine
    from planner.serving.workload import fixed_workload, get_workload

    check_out_file(plot, (".png", ".svg"))
    profile = parse_hourly(req.hourly) if req.hourly else (read_daily(req.daily) if req.daily else None)
    spec = get_workload(req.workload) if req.workload else fixed_workload(req.isl, req.osl)
    if req.arrival != "poisson" or req.cv != 1.0:
        spec = spec.model_copy(update={"arrival": spec.arrival.model_copy(update={"process": req.arrival, "cv": req.cv})})
    status = err_console.status("sizing", spinner="dots")
    if err_console.is_terminal:
        status.start()
    try:
        res = capacity(req.model, req.hardware, req.rate if req.rate is not None else 0.0, spec, ttft_s=req.ttft_p99,
                       tpot_s=req.tpot_p99, percentile=req.percentile, max_gpus=capacity_max_gpus(req), weights=req.weights, kv=req.kv,
                       engine=request_engine(req), requests=req.requests, seed=req.seed, hourly=profile,
                       progress=lambda msg: status.update(msg), tco=req.tco(), lora=lora_spec(req),
                       adp_balance=req.attention_dp_balance, eplb=req.eplb)
    finally:
        status.stop()
    if plot is not None and res.load_curve:
        _plot(res, plot)
    if as_json:
        print_json(res.to_dict())
    elif as_csv:
        print_csv([{"replica_plan": c["plan"], "batch_cap": c["batch_cap"], "gpus_per_replica": c["gpus_per_replica"],
                    "replicas": c["replicas"], "gpus": c["gpus"],
                    "chosen": bool(res.feasible and c["plan"] == res.plan["label"])} for c in res.candidates])
    else:
        _render(res)
        if plot is not None and res.load_curve:
            console.print(f"plot written to {plot}")
    if not res.feasible:
        raise PlannerError(res.reason or "no deployment meets the SLO")


def _render(res) -> None:
    s = res.slo
    lim = " and ".join(x for x in (f"TTFT p{s['percentile']:g} <= {ms(s['ttft_s'])}" if s["ttft_s"] is not None else "",
                                    f"TPOT p{s['percentile']:g} <= {ms(s['tpot_s'])}" if s["tpot_s"] is not None else "") if x) or "keep up"
    console.print(f"[bold]{res.model} on {res.hardware} at {res.rate:g} req/s[/bold] ({lim})")
    for n in res.notes:
        console.print(f"[dim]{n}[/dim]")
    if not res.feasible:
        console.print(f"[red]{res.reason}[/red]")
    else:
        p = res.plan
        console.print(f"[green]{res.gpus} GPUs[/green]: {res.replicas} x ({p['label'].split(' c=')[0]}, batch cap {p['batch_cap']})")
        if res.gpus_low is not None and (res.gpus_low, res.gpus_high) != (res.gpus, res.gpus):
            b = res.uncertainty["throughput"]
            console.print(f"[dim]range {res.gpus_low}-{res.gpus_high} GPUs across the throughput error band "
                          f"({b['low']:+.0%}..{b['high']:+.0%}, 10th-90th percentile of cross-validated published rows)[/dim]")
        if res.usd_per_hour:
            console.print(f"cost rented ${res.usd_per_hour:,.2f} per hour, ${res.usd_per_month:,.0f} per month (730 h)")
        if res.usd_per_hour_owned:
            a = res.owned_cost["assumptions"]
            console.print(f"cost owned ${res.usd_per_hour_owned:,.2f} per hour, ${res.usd_per_month_owned:,.0f} per month "
                          f"(purchase over {a['amortization_years']:g} years at {a['utilization']:.0%} utilization + power at "
                          f"PUE {a['pue']:g} and ${a['electricity_usd_per_kwh']:g}/kWh)")
        per_m = [f"${v:.3f} {n}" for n, v in (("rented", res.usd_per_million_output_tokens),
                                              ("owned", res.usd_per_million_output_tokens_owned)) if v]
        if per_m:
            console.print(f"per million output tokens served: {', '.join(per_m)}")
        a = res.at_rate
        console.print(f"at {res.rate:g} req/s: TTFT p50 {ms(a['ttft_s']['p50'])} p99 {ms(a['ttft_s']['p99'])}; "
                      f"TPOT p50 {ms(a['tpot_s']['p50'])} p99 {ms(a['tpot_s']['p99'])}")
    t = Table(title="candidates: replica plan from the search, count from the simulator", header_style="bold")
    for c in ("replica plan", "batch cap", "GPUs/replica", "replicas", "GPUs"):
        t.add_column(c, justify="left" if c == "replica plan" else "right")
    for c in res.candidates:
        t.add_row(re.sub(r" c=\d+", "", c["plan"]), str(c["batch_cap"]), str(c["gpus_per_replica"]), str(c["replicas"] or "-"), str(c["gpus"] or "-"))
    console.print(t)
    if res.load_curve:
        t = Table(title=f"latency versus load ({res.replicas} replicas; saturation {res.saturation_rate:.2f} req/s, the highest rate they keep up with)",
                  header_style="bold")
        for c in ("req/s", "load", "served", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "SLO", "keeps up"):
            t.add_column(c, justify="right")
        for r in res.load_curve:
            t.add_row(f"{r['rate']:.2f}", f"{r['load']:.0%}", f"{r['throughput']:.2f}", ms(r["ttft_p50_s"]), ms(r["ttft_p99_s"]),
                      ms(r["tpot_p50_s"]), ms(r["tpot_p99_s"]), "yes" if r["meets_slo"] else "no",
                      "yes" if r.get("keeps_up", True) else "no")
        console.print(t)
    if res.daily:
        d = res.daily
        console.print(f"daily profile ({d['hours']} hours): peak {d['peak_rate']:g}, mean {d['mean_rate']:.2f} req/s; the deployment "
                      f"holds the SLO up to {d['max_rate_at_slo']:.2f} req/s -> average utilization {d['average_utilization']:.0%}")
        console.print(f"autoscaled per hour: replicas {d['autoscaled_replicas_per_hour']} = {d['autoscaled_gpu_hours_per_day']:.0f} "
                      f"GPU-hours/day vs {d['static_gpu_hours_per_day']:.0f} static")


def _plot(res, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = res.load_curve
    x = [r["rate"] for r in c]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for ax, key, name, lim in ((axes[0], "ttft", "TTFT (s)", res.slo["ttft_s"]), (axes[1], "tpot", "TPOT, mean inter-token (s)", res.slo["tpot_s"])):
        ax.plot(x, [r[f"{key}_p50_s"] for r in c], "o-", label="p50")
        ax.plot(x, [r[f"{key}_p99_s"] for r in c], "s-", label="p99")
        if lim is not None:
            ax.axhline(lim, c="r", ls="--", lw=1, label="SLO")
        ax.axvline(res.rate, c="0.4", ls=":", lw=1, label="target rate")
        ax.set_xlabel("arrival rate (requests/s)")
        ax.set_ylabel(name)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{res.model} on {res.gpus} x {res.hardware} ({res.replicas} replicas)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
