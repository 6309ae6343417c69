"""``planner profile``: measure this machine (kernels and end-to-end steps) into CSVs for calibration."""

from __future__ import annotations

import shlex
import sys
from typing import List, Optional

import typer

from planner.cli.app import app
from planner.cli.common import console, err_console
from planner.cli.registry import SUMMARIES


@app.command("profile", help=SUMMARIES["profile"])
def profile_cmd(
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    backend: Optional[List[str]] = typer.Option(None, "--backend", help="numpy or torch (repeatable); default: every backend that runs on the device"),
    quick: bool = typer.Option(False, "--quick", help="a small grid: at most 1 GiB of memory, about a minute on 2 cores (full: 4 GiB)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted capture, skipping rows already measured"),
    out: str = typer.Option("measurements", "--out", help="output folder (DIR)"),
    model: Optional[str] = typer.Option(None, "--model", help="model id or spec YAML whose layer shapes to use (default llama-3.1-8b)"),
    layers: Optional[int] = typer.Option(None, "--layers", help="decoder layers in the e2e model (default: as many as fit the time budget)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="threads for BLAS / torch (default: every logical core; "
                                                                  "on a busy machine the cores other work leaves idle)"),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="memory the capture may use, e.g. 2GiB "
                                                                        "(default: quick 1 GiB, full 4 GiB; at most half the machine)"),
    tiny: bool = typer.Option(False, "--tiny", hidden=True, help="tiny model and grid (tests)"),
    seed: int = typer.Option(0, "--seed", hidden=True),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout: where the capture went and what it holds"),
):
    from planner.harness.run import ProfileOptions, run_profile

    budget = None
    if max_memory is not None:
        from planner.units import parse_quantity

        budget = int(parse_quantity(max_memory, "bytes"))
    opts = ProfileOptions(device=device, backends=backend, quick=quick, resume=resume, out=out, model=model,
                          layers=layers, threads=threads, tiny=tiny, seed=seed, command=shlex.join(sys.argv),
                          progress=err_console.is_terminal, memory_budget_bytes=budget,
                          warn=lambda msg: err_console.print(f"[yellow]warning: {msg}[/yellow]"))
    try:
        r = run_profile(opts)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: the rows measured so far are kept (status: partial); "
                          "continue with --resume[/yellow]")
        raise
    if as_json:
        from planner.cli.common import print_json

        print_json({"folder": str(r.folder), "status": r.status, "rows_written": r.rows_written, "rows_total": r.rows_total,
                    "busy_rows": r.busy_rows, "e2e_layers": r.layers, "skipped": r.skipped,
                    "peak_rss_bytes": r.peak_rss_bytes, "timing": {"wall_s": r.seconds}})
        return
    layers_txt = ", ".join(f"{k}: {v}" for k, v in r.layers.items())
    console.print(f"{r.status}: {r.rows_written} rows measured ({r.rows_total} in the capture) in {r.seconds:.0f} s, "
                  f"peak memory {r.peak_rss_bytes / 2**20:.0f} MiB -> {r.folder}"
                  + (f"  [dim](e2e layers {layers_txt})[/dim]" if layers_txt else ""))
    if r.busy_rows:
        err_console.print(f"[yellow]warning: {r.busy_rows} of {r.rows_written} rows ran while the machine was busy "
                          "(column busy; calibrate weights them down); measure on a quiet machine for figures to publish[/yellow]")
