"""``planner fit``: memory breakdown per GPU, max context and max concurrency."""

from __future__ import annotations

from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console, gib, num, print_json
from planner.cli.estimate import hardware_of, plan_options
from planner.cli.options import command
from planner.cli.registry import SUMMARIES
from planner.errors import PlannerError


@command(app, "fit", help=SUMMARIES["fit"], ui=("as_json",))
def fit_cmd(req, as_json: bool):
    from planner.api import fit

    from dataclasses import replace

    plan = replace(plan_options(req.gpus, req.tp, req.pp, req.ep, req.dp, req.weights, req.kv, req.activations),
                   moe_offload=req.moe_offload, eplb=req.eplb)
    isl, osl = req.isl, req.osl
    out = fit(req.model, hardware_of(req), plan, isl=isl, osl=osl, engine=req.engine)
    mem = out["memory"]
    if as_json:
        print_json(out)
        if not out["fits"]:
            raise PlannerError(out["reason"] or "does not fit")
        return
    t = Table(title=f"{out['model']} on {out['gpus']} x {out['hardware']} ({plan.weights} weights, {out['plan']['kv']} KV), per GPU", header_style="bold")
    t.add_column("item")
    t.add_column("bytes", justify="right")
    t.add_row("weights", gib(mem["weights_bytes"]))
    t.add_row("activations (workspace)", gib(mem["activation_bytes"]))
    t.add_row("runtime (context, workspaces)", gib(mem["runtime_bytes"]))
    t.add_row("KV-cache capacity", gib(max(out["kv_cache_capacity_bytes"], 0)))
    t.add_row("usable (utilization x capacity)", gib(mem["usable_bytes_per_gpu"]))
    t.add_row("device capacity", gib(mem["capacity_bytes_per_gpu"]))
    t.add_row("KV per token", f"{mem['kv_bytes_per_token'] / 1024:,.1f} KiB")
    console.print(t)
    if out["fits"]:
        console.print(f"fits: max context {num(out['max_context_tokens'])} tokens; {num(out['max_concurrency'])} concurrent requests of {isl}+{osl} tokens")
        if out['concurrency_cap']:
            console.print(f"[dim]{out['concurrency_cap']}[/dim]")
    else:
        raise PlannerError(out["reason"] or "does not fit")
