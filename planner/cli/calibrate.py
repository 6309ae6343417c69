"""``planner calibrate``: fit a device's achievable fractions and overheads, from the kernel
rows of a harness capture or from published measurements."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from planner.cli.app import app
from planner.cli.common import console
from planner.errors import PlannerError


@app.command("calibrate", help="Fit achievable fractions and fixed overheads from the kernel rows of a `planner profile` capture "
                               "(writes CAPTURE/calibrated.yaml, which --hardware accepts by path), or with --published HW "
                               "from the published rows of a datasheet device.")
def calibrate_cmd(
    measurements: Optional[List[Path]] = typer.Argument(None, metavar="[CAPTURE_DIR]...", help="folders holding kernels.csv"),
    base: Optional[str] = typer.Option(None, "--base", help="datasheet device the capture ran on (peaks from its spec); default: peaks measured"),
    published: Optional[str] = typer.Option(None, "--published", help="hardware id whose published rows to fit (e.g. h100-sxm)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="calibrated YAML to write (default: CAPTURE/calibrated.yaml)"),
):
    if bool(measurements) == bool(published):
        raise PlannerError("give either capture folders or --published HW, not both or neither")
    if published:
        _published(published, out)
        return
    from planner.calibrate.kernel_fit import fit_capture, write_spec
    from planner.specs.loader import get_hardware

    base_hw = get_hardware(base) if base else None
    if out is not None and len(measurements) > 1:
        raise PlannerError("--out names one file; give one capture folder with it")
    for folder in measurements:
        if not folder.is_dir():
            raise PlannerError(f"{folder} is not a folder")
        res = fit_capture(folder, base_hw)
        target = out or folder / "calibrated.yaml"
        write_spec(res.hardware, target)
        console.print(f"{folder}: {res.rows} kernel rows, median |error| {res.median_ape:.1%} after the fit")
        for n, v in res.params.items():
            console.print(f"  {n:14s} {v * 1e6:.2f} us" if n.endswith("_s") else f"  {n:14s} {v:.4g}")
        console.print("  per op median |error|: " + ", ".join(f"{k} {v:.0%}" for k, v in res.per_op.items()))
        console.print(f"wrote {target} (use --hardware {target})")


def _published(published: str, out: Path | None) -> None:
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
