"""``planner study FILE.yaml``: run a declarative what-if study."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console


@app.command("study", help="Run a YAML what-if study: a base scenario, sweep axes, the command per point (estimate, plan, "
                           "capacity, simulate), columns and plots. Writes CSV, JSON, plots and an optional self-contained HTML report.")
def study_cmd(
    file: Path = typer.Argument(..., metavar="FILE.yaml"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default: FILE's folder / out / NAME)"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write one self-contained HTML report here"),
    workers: Optional[int] = typer.Option(None, help="processes (default: all cores)"),
    limit: Optional[int] = typer.Option(None, help="run only the first N points (quick look)"),
):
    from planner.errors import PlannerError
    from planner.studies.report import columns, fmt, write_html, write_plots, write_tables
    from planner.studies.runner import run_study
    from planner.studies.schema import load_study

    study = load_study(file)
    if limit is not None:
        if limit < 1:
            raise PlannerError("--limit must be at least 1")
        pts = study.sweep.points()[:limit]
        axes = {k: [p[k] for p in pts] for k in study.sweep.axes}
        study = study.model_copy(update={"sweep": study.sweep.model_copy(update={"mode": "zip", "axes": axes})})
    out = out or file.parent / "out" / study.name
    n = len(study.sweep.points())
    with Progress(TextColumn(f"[bold]{study.name}[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as prog:
        task = prog.add_task("points", total=n)
        rows = run_study(study, workers, progress=lambda k: prog.advance(task, k))
    cols = columns(study, rows)
    t = Table(title=f"{study.name} ({n} points, {study.command})", header_style="bold")
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows[:200]:
        t.add_row(*[fmt(r.get(c)) for c in cols])
    console.print(t)
    if n > 200:
        console.print(f"[dim]... {n - 200} more rows in the CSV[/dim]")
    csv_p, json_p = write_tables(study, rows, out)
    plots = write_plots(study, rows, out)
    console.print(f"wrote {csv_p}, {json_p}" + "".join(f", {p}" for p in plots))
    if html_path:
        write_html(study, rows, plots, html_path)
        console.print(f"wrote {html_path}")
    errors = sum(1 for r in rows if r.get("error"))
    if errors:
        console.print(f"[yellow]{errors} of {n} points could not be evaluated; see the error column[/yellow]")
