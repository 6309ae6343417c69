"""``planner fit``: memory breakdown per GPU, max context and max concurrency."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from planner.api import fit
from planner.cli.app import app
from planner.cli.common import console, gib, num, print_json
from planner.cli.estimate import plan_options


@app.command("fit", help="Does it fit? Memory per GPU (weights, KV cache, activations, runtime), max context and concurrency.")
def fit_cmd(
    model: str = typer.Option(..., "--model", "-m"),
    hardware: str = typer.Option(..., "--hardware", "-H"),
    gpus: Optional[int] = typer.Option(None),
    tp: Optional[int] = typer.Option(None),
    pp: Optional[int] = typer.Option(None),
    ep: Optional[int] = typer.Option(None),
    dp: Optional[int] = typer.Option(None),
    weights: str = typer.Option("bf16"),
    activations: Optional[str] = typer.Option(None),
    kv: Optional[str] = typer.Option(None),
    isl: int = typer.Option(1024, help="input tokens per request (for concurrency)"),
    osl: int = typer.Option(256, help="output tokens per request (for concurrency)"),
    as_json: bool = typer.Option(False, "--json"),
):
    plan = plan_options(gpus, tp, pp, ep, dp, weights, kv, activations)
    out = fit(model, hardware, plan, isl=isl, osl=osl)
    mem = out["memory"]
    if as_json:
        print_json(out)
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
        console.print(f"[red]{out['reason'] or 'does not fit'}[/red]")
