"""``planner profile``: measure this machine (kernels and end-to-end steps) into CSVs for calibration."""

from __future__ import annotations

import shlex
import sys
from typing import List, Optional

import typer

from planner.cli.app import app
from planner.cli.common import console, err_console


@app.command("profile", help="Measure this machine: GEMM/attention/bandwidth/elementwise kernels and end-to-end "
                             "prefill/decode steps of a random-weight transformer, into DIR/<host-id>/<date>/.")
def profile_cmd(
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    backend: Optional[List[str]] = typer.Option(None, "--backend", help="numpy or torch (repeatable); default: every backend that runs on the device"),
    quick: bool = typer.Option(False, "--quick", help="a small grid that finishes in a couple of minutes"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted capture, skipping rows already measured"),
    out: str = typer.Option("measurements", "--out", help="output folder (DIR)"),
    model: Optional[str] = typer.Option(None, "--model", help="model id or spec YAML whose layer shapes to use (default llama-3.1-8b)"),
    layers: Optional[int] = typer.Option(None, "--layers", help="decoder layers in the e2e model (default: as many as fit the time budget)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="threads for BLAS / torch (default: every logical core)"),
    tiny: bool = typer.Option(False, "--tiny", hidden=True, help="tiny model and grid (tests)"),
    seed: int = typer.Option(0, "--seed", hidden=True),
):
    from planner.harness.run import ProfileOptions, run_profile

    opts = ProfileOptions(device=device, backends=backend, quick=quick, resume=resume, out=out, model=model,
                          layers=layers, threads=threads, tiny=tiny, seed=seed, command=shlex.join(sys.argv),
                          progress=err_console.is_terminal)
    try:
        r = run_profile(opts)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: the rows measured so far are kept (status: partial); "
                          "continue with --resume[/yellow]")
        raise
    layers_txt = ", ".join(f"{k}: {v}" for k, v in r.layers.items())
    console.print(f"{r.status}: {r.rows_written} rows measured ({r.rows_total} in the capture) in {r.seconds:.0f} s "
                  f"-> {r.folder}" + (f"  [dim](e2e layers {layers_txt})[/dim]" if layers_txt else ""))
