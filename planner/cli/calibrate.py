"""``planner calibrate``: fit a device's achievable fractions and overheads, from the kernel
rows of a harness capture or from published measurements."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from planner.cli.app import app
from planner.cli.common import console
from planner.cli.registry import SUMMARIES
from planner.errors import PlannerError


@app.command("calibrate", help=SUMMARIES["calibrate"])
def calibrate_cmd(
    measurements: Optional[List[Path]] = typer.Argument(None, metavar="[CAPTURE_DIR]...", help="folders holding kernels.csv"),
    base: Optional[str] = typer.Option(None, "--base", help="datasheet device the capture ran on (peaks from its spec); default: peaks measured"),
    published: Optional[str] = typer.Option(None, "--published", help="fit the kernel/engine layer jointly on every published row "
                                            "(all, or a hardware id whose errors to print); writes engines/calibration/"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="calibrated YAML to write (default: CAPTURE/calibrated.yaml)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout: the fitted values and their errors"),
):
    if bool(measurements) == bool(published):
        raise PlannerError("give either capture folders or --published HW, not both or neither")
    if published:
        _published(published, out, as_json)
        return
    from planner.calibrate.kernel_fit import fit_capture, write_spec
    from planner.specs.loader import get_hardware

    base_hw = get_hardware(base) if base else None
    if out is not None and len(measurements) > 1:
        raise PlannerError("--out names one file; give one capture folder with it")
    fits = []
    for folder in measurements:
        if not folder.is_dir():
            raise PlannerError(f"{folder} is not a folder")
        res = fit_capture(folder, base_hw)
        target = out or folder / "calibrated.yaml"
        write_spec(res.hardware, target)
        if as_json:
            fits.append({"capture": str(folder), "written": str(target), "rows": res.rows, "busy_rows": res.busy_rows,
                         "median_ape": res.median_ape, "peaks_flops": res.peaks,
                         "bandwidth_bytes_per_s": res.bandwidth_bytes_per_s, "params": res.params,
                         "residuals": res.residuals, "warnings": list(res.warnings),
                         "peaks_from": "datasheet" if base_hw is not None else "measured"})
            continue
        _print_fit(folder, res, measured_peaks=base_hw is None)
        console.print(f"wrote {target} (use --hardware {target})")
    if as_json:
        from planner.cli.common import print_json

        print_json({"captures": fits})


def _print_fit(folder: Path, res, measured_peaks: bool) -> None:
    from rich.table import Table

    from planner.cli.common import err_console

    busy = f", {res.busy_rows} busy" if res.busy_rows else ""
    console.print(f"{folder}: {res.rows} kernel rows{busy}, median |error| {res.median_ape:.1%} after the fit")
    how = "measured" if measured_peaks else "datasheet"
    for x, v in res.peaks.items():
        console.print(f"  peak {x:9s} {v / 1e9:10.1f} GFLOP/s ({how})")
    console.print(f"  peak bandwidth {res.bandwidth_bytes_per_s / 1e9:7.1f} GB/s ({how})")
    for n, v in res.params.items():
        unit = {"kernel_s": " us per library call", "op_overhead_s": " us per cost-model op (written as kernel_s)"}
        console.print(f"  {n:14s} {v * 1e6:.3g}{unit.get(n, ' us')}" if n.endswith("_s") else f"  {n:14s} {v:.4g}")
    t = Table(title="residuals per op kind: (predicted - measured) / measured", header_style="bold")
    for c in ("op", "rows", "busy", "median", "median |error|", "p90 |error|"):
        t.add_column(c, justify="left" if c == "op" else "right")
    for op, r in res.residuals.items():
        t.add_row(op, str(r["rows"]), str(r["busy"]), f"{r['median_error']:+.0%}", f"{r['median_ape']:.0%}", f"{r['p90_ape']:.0%}")
    console.print(t)
    for w in res.warnings:
        err_console.print(f"[yellow]warning: {w}[/yellow]")


def _published(published: str, out: Path | None, as_json: bool = False) -> None:
    """The kernel/engine layer, fitted jointly over every published device and file; writes
    engines/calibration/<engine>-<version>.yaml (or into --out)."""
    import numpy as np

    from planner.calibrate.joint import calibrate_published, write_calibration
    from planner.specs.loader import get_hardware

    if published != "all":
        get_hardware(published)
    with Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), TimeElapsedColumn(), console=console, transient=True) as prog:
        task = prog.add_task("joint fit of the kernel/engine layer over every published row", total=None)
        res, skipped = calibrate_published(progress=lambda rel: prog.update(
            task, description=f"rate fit of {rel}: its runs at request rates through the simulator"))
    ape = np.abs(res.predicted / np.array([r.measured for r in res.rows]) - 1)
    sel = np.array([published in ("all", r.hardware) for r in res.rows])
    if as_json:
        from planner.cli.common import print_json

        written = [str(p) for p in write_calibration(res, out)]
        print_json({"rows": int(sel.sum()), "scope": published, "median_ape": float(np.median(ape[sel])),
                    "p90_ape": float(np.percentile(ape[sel], 90)), "evaluations": res.evaluations,
                    "values": [{"engine": v, "architecture": a, "rows": n, **res.values(v, a)}
                               for (v, a), n in sorted(res.row_counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))],
                    "rate_fits": [{"release": f.release, "values": f.values, "joint_fit_values": f.prior, "rows": f.rows,
                                   "median_ape": f.median_ape, "median_ape_before": f.prior_median_ape, "wall_s": f.seconds}
                                  for f in res.rate_fits],
                    "written": written, "not_fitted": dict(skipped), "timing": {"wall_s": res.seconds}})
        return
    console.print(f"{int(sel.sum())} rows ({published}): median |error| {np.median(ape[sel]):.1%}, p90 {np.percentile(ape[sel], 90):.1%} "
                  f"({len(res.rows)} rows fitted in {res.seconds:.0f} s, {res.evaluations} passes)")
    for (v, a), n in sorted(res.row_counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        vals = res.values(v, a)
        console.print(f"  {v:14s} {a or '-':8s} {n:4d} rows  " + "  ".join(
            f"{k} {val * 1e6:.3g}us" if k.endswith("_s") else f"{k} {val:.3g}" for k, val in vals.items()))
    for f in res.rate_fits:
        kind = "serving-benchmark rows" if f.bench else "stage rows"
        where = f.hardware[0] if len(f.hardware) == 1 else ", ".join(f.hardware)
        console.print(f"  {f.release:14s} rate fit, {f.rows} {kind} ({f.experiments} runs, simulated on {where}): "
                      f"median |error| {f.prior_median_ape:.1%} -> {f.median_ape:.1%}  " + "  ".join(
                          f"{k} {v * 1e6:.3g}us" if k.endswith("_s") else f"{k} {v:.3g}" for k, v in f.values.items()))
    for path in write_calibration(res, out):
        console.print(f"wrote {path}")
    for where, why in list(skipped.items())[:10]:
        console.print(f"[dim]not fitted {where}: {why}[/dim]")
