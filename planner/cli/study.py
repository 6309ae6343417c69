"""``planner study FILE.yaml``: run a declarative what-if study."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console, err_console, print_json, warn
from planner.cli.options import check_out_dir, check_out_file
from planner.cli.registry import SUMMARIES
from planner.errors import PlannerError


@app.command("study", help=SUMMARIES["study"])
def study_cmd(
    file: Path = typer.Argument(..., metavar="FILE.yaml"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default: FILE's folder / out / NAME)"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write one self-contained HTML report here"),
    workers: Optional[int] = typer.Option(None, min=1, max=256, help="processes (default: all cores)"),
    limit: Optional[int] = typer.Option(None, min=1, help="run only the first N points (quick look)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object (points, files written) on stdout"),
):
    from planner.studies.report import columns, fmt, write_html, write_plots, write_tables
    from planner.studies.runner import run_study
    from planner.studies.schema import load_study

    study = load_study(file)
    if limit is not None:
        pts = study.sweep.points()[:limit]
        axes = {k: [p[k] for p in pts] for k in study.sweep.axes}
        study = study.model_copy(update={"sweep": study.sweep.model_copy(update={"mode": "zip", "axes": axes})})
    out = out or file.parent / "out" / study.name
    check_out_dir(out)
    check_out_file(html_path, (".html", ".htm"), "--html")
    n = len(study.sweep.points())
    with Progress(TextColumn(f"[bold]{study.name}[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as prog:
        task = prog.add_task("points", total=n)
        rows = run_study(study, workers, progress=lambda k: prog.advance(task, k))
    csv_p, json_p = write_tables(study, rows, out)
    plots = write_plots(study, rows, out)
    if html_path:
        write_html(study, rows, plots, html_path)
    written = [str(p) for p in (csv_p, json_p, *plots, *([html_path] if html_path else []))]
    errors = sum(1 for r in rows if r.get("error"))
    if as_json:
        print_json({"study": study.name, "command": study.command, "points": rows, "failed": errors, "written": written})
    else:
        cols = columns(study, rows)
        t = Table(title=f"{study.name} ({n} points, {study.command})", header_style="bold")
        for c in cols:
            t.add_column(c, overflow="fold")
        for r in rows[:200]:
            t.add_row(*[fmt(r.get(c)) for c in cols])
        console.print(t)
        if n > 200:
            console.print(f"[dim]... {n - 200} more rows in the CSV[/dim]")
        console.print("wrote " + ", ".join(written))
    if errors == n and n:
        first = next(r["error"] for r in rows if r.get("error"))
        raise PlannerError(f"every point of {study.name} failed; the first: {first}")
    if errors:
        warn(f"error: {errors} of {n} points of {study.name} could not be evaluated; see the error column of {csv_p}")
        raise typer.Exit(1)
