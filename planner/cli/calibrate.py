"""``planner calibrate --published HW``: fit a device's achievable fractions and overheads."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from planner.cli.app import app
from planner.cli.common import console
from planner.errors import PlannerError


@app.command("calibrate", help="Fit achievable fractions and fixed overheads of a device to published measurements, and write a calibrated hardware YAML.")
def calibrate_cmd(
    published: str = typer.Option(..., "--published", help="hardware id whose published rows to fit (e.g. h100-sxm)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="calibrated YAML to write (default: print the fitted values)"),
):
    from planner.calibrate.published_fit import fit_hardware, write_calibrated
    from planner.specs.loader import _builtin, get_hardware

    get_hardware(published)
    with Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), TimeElapsedColumn(), console=console, transient=True) as prog:
        task = prog.add_task(f"fitting {published} (each step predicts every row)", total=None)
        try:
            res = fit_hardware(published, progress=lambda: prog.advance(task))
        except ValueError as e:
            raise PlannerError(str(e)) from None
    console.print(f"{published}: {res.rows} rows, median |error| {res.median_ape_before:.1%} with priors -> {res.median_ape_after:.1%} fitted")
    for n, v in zip(res.names, res.values):
        console.print(f"  {n:12s} {v * 1e6:.2f} us" if n.endswith("_s") else f"  {n:12s} {v:.3f}")
    if out:
        write_calibrated(out, res.hardware, _builtin("Hardware")[published].read_text())
        console.print(f"wrote {out}")
