"""``planner validate``: predicted vs measured, median and p90 absolute percentage error."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console, print_json
from planner.cli.registry import SUMMARIES


def _pct(x):
    return "-" if x is None else f"{x:.1%}"


@app.command("validate", help=SUMMARIES["validate"])
def validate_cmd(
    paths: Optional[List[str]] = typer.Argument(None, metavar="[FILE.csv|DIR]..."),
    as_json: bool = typer.Option(False, "--json"),
    rows: bool = typer.Option(False, "--rows", help="print every row, not only the summaries (with --cross-validate: each held-out row beside its in-sample prediction, worst first)"),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help="spec for capture e2e rows (default: the capture's calibrated.yaml)"),
    plot: Optional[str] = typer.Option(None, "--plot", help="also draw predicted vs measured (log axes, ±20% band) to FILE.png or FILE.svg"),
    cross_validate: Optional[str] = typer.Option(None, "--cross-validate", metavar="hardware|file",
                                                 help="leave one device (or file) out: refit the kernel/engine layer without its rows and predict them"),
    quick: bool = typer.Option(False, "--quick", help="with --cross-validate: one Gauss-Newton step per fold instead of a full refit"),
    record: bool = typer.Option(False, "--record", help="with --cross-validate: write engines/calibration/errors_recorded.yaml and error_bands.yaml"),
    via: str = typer.Option("replay", "--via", metavar="replay|estimate",
                            help="how serving benchmarks' closed loops (--max-concurrency runs) and max-throughput rows are priced: replayed request by request in the simulator with the benchmark's own settings (default), or as a user's `estimate` prices them (--concurrency N: the steady state at the run's mean lengths, or with --requests M, for a loop of one fixed length, its simulated waves; --concurrency max at the engine release's defaults); with --cross-validate, on each held-out device or file"),
):
    if via not in ("replay", "estimate") or (via == "estimate" and record):
        from planner.errors import PlannerError

        raise PlannerError(f"--via takes replay or estimate, not {via!r}" if via != "estimate" else
                           "--record writes the replay's errors and bands; it does not combine with --via estimate")
    if cross_validate is not None:
        _cross_validate(cross_validate, paths, as_json, quick, record, rows, via)
        return
    from planner.calibrate.validate import validate

    if plot is not None and not plot.lower().endswith((".png", ".svg")):
        from planner.errors import PlannerError

        raise PlannerError(f"--plot writes .png or .svg, not {plot}")
    with _progress(as_json) as prog:  # the simulated files (MLPerf, request rates) take most of a minute
        task = prog.add_task("predicting the measured rows", total=None)
        done = [0]

        def tick():
            done[0] += 1
            prog.update(task, description=f"predicted {done[0]:,} rows")

        report = validate(paths, hardware=hardware, progress=tick, via=via)
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
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


def _progress(quiet: bool):
    """A transient spinner with the elapsed time (none when the output is JSON)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), TimeElapsedColumn(),
                    console=console, transient=True, disable=quiet)


def _cross_validate(by: str, paths, as_json: bool, quick: bool, record: bool, show_rows: bool = False,
                    via: str = "replay") -> None:
    """Leave-one-out tables: per device (or file), in-sample and cross-validated median / p90 error; with
    ``show_rows`` every held-out row beside its in-sample prediction, worst held-out error first; ``via`` as for
    validate (the user's path through estimate)."""
    from planner.calibrate import crossval
    from planner.errors import PlannerError

    if by not in ("hardware", "file"):
        raise PlannerError(f"--cross-validate takes hardware or file, got {by!r}")
    with _progress(as_json) as prog:
        task = prog.add_task("in-sample predictions", total=None)
        ins = crossval.in_sample(paths, via=via)
        if not ins.predictions:
            raise PlannerError("the given files hold no speed or latency rows to cross-validate (memory logs such as "
                               "vllm_kv_memory.csv and kernel timings such as moe_kernel_vllm.csv are validated, not "
                               "fitted: run `planner validate FILE`)")
        prog.update(task, description=f"leave one {by} out" + (" (one-step refits)" if quick else " (refits)"))
        cv = crossval.cross_validate(by, paths, quick=quick, progress=lambda k: prog.update(task, description=f"refit without {k}"),
                                     via=via)
        if record:
            prog.update(task, description="quick leave-one-out for the recorded errors and the error bands")
            state = crossval._QuickRefit([r for r in crossval.load_rows(crossval._files(paths))[0]
                                          if r.file not in crossval.joint.NOT_FITTED])
            fit_only = crossval.in_sample(paths, simulated=False)
            q_hw = crossval.cross_validate("hardware", paths, quick=state, simulated=False)
            q_file = crossval.cross_validate("file", paths, quick=state, simulated=False)
            loho = cv if by == "hardware" else crossval.cross_validate("hardware", paths, quick=quick)
    if record:
        from planner.calibrate.uncertainty import bands_from, write_bands

        from planner.cli.common import err_console

        err_console.print(f"wrote {crossval.record(crossval.guarded_errors(fit_only, q_hw, q_file), cv)}")
        err_console.print(f"wrote {write_bands(bands_from(ins, loho))}")
    if as_json:
        d = cv.to_dict()
        d["via"] = via
        d["in_sample"] = ins.summary(by)
        d["in_sample_overall"] = ins.overall()
        if show_rows:
            d["rows"] = crossval.paired_rows(ins, cv)
        print_json(d)
        return
    if show_rows:
        t = Table(title=f"every row, in sample and left out by {by} (worst held-out error first)", header_style="bold")
        for c in ("file", "model", "hardware", "config", "metric", "measured", "in sample", "held out"):
            t.add_column(c, justify="right" if c in ("measured", "in sample", "held out") else "left")
        fmt = lambda e: "-" if e is None else f"{e:+.0%}"  # noqa: E731
        for r in crossval.paired_rows(ins, cv):
            t.add_row(f"{r['file']}:{r['line']}", r["model"], r["hardware"], r["config"], r["what"], f"{r['measured']:.4g}",
                      fmt(r["in_sample_error"]), fmt(r["held_out_error"]))
        console.print(t)
    inside = {s[by]: s for s in ins.summary(by)}
    t = Table(title=f"absolute percentage error: in sample vs leave one {by} out"
                    + (" (one-step refits)" if quick else "") + (", through estimate" if via == "estimate" else ""),
              header_style="bold")
    for c in (by, "rows", "in-sample median", "in-sample p90", "held-out median", "held-out p90"):
        t.add_column(c, justify="left" if c == by else "right")
    for s in cv.summary(by) + [{by: "all", **cv.overall()}]:
        i = inside.get(s[by], ins.overall() if s[by] == "all" else {})
        t.add_row(s[by], str(s["rows"]), _pct(i.get("median_ape")), _pct(i.get("p90_ape")), _pct(s["median_ape"]), _pct(s["p90_ape"]))
    console.print(t)
    console.print(f"[dim]{cv.seconds:.0f} s; fit rows exclude {', '.join(crossval.joint.NOT_FITTED)} (validated only)[/dim]")
