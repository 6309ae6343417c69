"""Predicted vs measured on log axes, with the +/-20 % band: the picture of a validation report.

``write_validation_plot(report, path)`` writes PNG or SVG (by the suffix); ``validation_svg(report)``
returns the SVG text for an HTML page (the study report can inline it). Points are coloured by
file when the report spans several files, else by metric and model (a capture's dense / MoE / MLA
prefill and decode rows). matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from planner.errors import PlannerError

BAND = 0.20  # the +/- band drawn around the diagonal


def _groups(rows, by: str) -> dict[str, list]:
    """Rows with a prediction, by colour group."""
    usable = [r for r in rows if r.ape is not None and r.measured > 0 and r.predicted > 0]
    if by == "auto":
        by = "file" if len({r.file for r in usable}) > 1 else "kind"
    out: dict[str, list] = {}
    for r in usable:
        key = r.file if by == "file" else f"{r.what.removesuffix('_s')} {r.model}"
        out.setdefault(key, []).append(r)
    return out


def _figure(report, by: str = "auto", title: str | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(report.rows, by)
    if not groups:
        raise PlannerError("nothing to plot: no row has both a measurement and a prediction")
    fig, ax = plt.subplots(figsize=(7.0, 6.0), dpi=120)
    allv = np.array([v for rs in groups.values() for r in rs for v in (r.measured, r.predicted)])
    lo, hi = allv.min() / 1.5, allv.max() * 1.5
    x = np.geomspace(lo, hi, 64)
    ax.fill_between(x, x * (1 - BAND), x * (1 + BAND), color="0.85", label=f"±{BAND:.0%}", zorder=0)
    ax.plot(x, x, color="0.4", lw=1, zorder=1)
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for i, (name, rs) in enumerate(sorted(groups.items())):
        ape = np.median([r.ape for r in rs])
        ax.scatter([r.measured for r in rs], [r.predicted for r in rs], s=22, color=cmap(i % cmap.N),
                   label=f"{name} ({len(rs)}, median {ape:.0%})", zorder=2, edgecolors="none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("measured")
    ax.set_ylabel("predicted")
    everything = [r.ape for rs in groups.values() for r in rs]
    ax.set_title(title or f"predicted vs measured: {len(everything)} rows, median |error| {np.median(everything):.1%}")
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    fig.tight_layout()
    return fig, plt


def write_validation_plot(report, path: str | Path, by: str = "auto") -> Path:
    """Write the plot as PNG or SVG (chosen by the file's suffix)."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise PlannerError(f"--plot writes .png or .svg, not {path.suffix or 'a file without a suffix'}")
    fig, plt = _figure(report, by)
    try:
        fig.savefig(path)
    except OSError as e:
        raise PlannerError(f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)
    return path


def validation_svg(report, by: str = "auto") -> str:
    """The plot as SVG text, for inlining in an HTML report."""
    fig, plt = _figure(report, by)
    buf = io.StringIO()
    try:
        fig.savefig(buf, format="svg")
    finally:
        plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg"):]
