"""``planner validate``: predicted vs measured, median and p90 absolute percentage error."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console, print_json


def _pct(x):
    return "-" if x is None else f"{x:.1%}"


@app.command("validate", help="Predict every row of measurement CSVs (default: the built-in published sets) and report the error.")
def validate_cmd(
    paths: Optional[List[str]] = typer.Argument(None, metavar="[FILE.csv|DIR]..."),
    as_json: bool = typer.Option(False, "--json"),
    rows: bool = typer.Option(False, "--rows", help="print every row, not only the summaries"),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help="spec for capture e2e rows (default: the capture's calibrated.yaml)"),
    plot: Optional[str] = typer.Option(None, "--plot", help="also draw predicted vs measured (log axes, ±20% band) to FILE.png or FILE.svg"),
):
    from planner.calibrate.validate import validate

    if plot is not None and not plot.lower().endswith((".png", ".svg")):
        from planner.errors import PlannerError

        raise PlannerError(f"--plot writes .png or .svg, not {plot}")
    report = validate(paths, hardware=hardware)
    if plot is not None:
        from planner.cli.common import err_console
        from planner.report.validate_plot import write_validation_plot

        err_console.print(f"wrote {write_validation_plot(report, plot)}")
    if as_json:
        print_json(report.to_dict())
        return
    if rows:
        t = Table(title="predicted vs measured", header_style="bold")
        for c in ("file", "model", "hardware", "config", "metric", "measured", "predicted", "error"):
            t.add_column(c, justify="right" if c in ("measured", "predicted", "error") else "left")
        for r in report.rows:
            err = "-" if r.ape is None else f"{(r.predicted - r.measured) / r.measured:+.0%}"
            t.add_row(r.file, r.model, r.hardware, r.config, r.what, f"{r.measured:.4g}",
                      "-" if r.predicted is None else f"{r.predicted:.4g}", err)
        console.print(t)
    for key, title in (("file", "per file"), ("hardware", "per hardware"), ("file_hardware", "per file and hardware"),
                       ("what", "per metric")):
        t = Table(title=f"absolute percentage error, {title}", header_style="bold")
        for c in (key.replace("_", " "), "rows", "predicted", "median", "p90"):
            t.add_column(c, justify="left" if c == key.replace("_", " ") else "right")
        for s in report.summary(key):
            t.add_row(s[key], str(s["rows"]), str(s["predicted"]), _pct(s["median_ape"]), _pct(s["p90_ape"]))
        console.print(t)
    unpredicted = [r for r in report.rows if r.predicted is None and r.note]
    if unpredicted:
        console.print(f"[yellow]{len(unpredicted)} row(s) not predicted:[/yellow]")
        for r in unpredicted[:20]:
            console.print(f"  {r.note}")
    for f, why in report.skipped.items():
        console.print(f"[dim]skipped {f}: {why}[/dim]")
