"""Study outputs: CSV and JSON of every point, PNG/SVG plots, one self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path

from planner.studies.schema import Plot, Study

DEFAULT_METRICS = {
    "estimate": ["output_tokens_per_s_per_gpu", "ttft_s", "tpot_s", "max_concurrency", "accuracy", "usd_per_million_output_tokens", "fits"],
    "plan": ["recommended", "output_tokens_per_s_per_gpu", "output_tokens_per_s_per_user", "ttft_s", "tpot_s", "accuracy",
             "max_context_tokens", "usd_per_million_output_tokens"],
    "capacity": ["gpus", "replicas", "usd_per_hour", "ttft_p99_s", "tpot_p99_s"],
    "simulate": ["ttft_mean_s", "tpot_mean_s", "ttft_p99_s", "tpot_p99_s", "goodput_rps", "throughput_rps"],
}


def columns(study: Study, rows: list[dict]) -> list[str]:
    if study.columns:
        return study.columns
    cols = list(study.sweep.axes) + [m for m in DEFAULT_METRICS[study.command] if any(m in r for r in rows)]
    if any(r.get("error") for r in rows):
        cols.append("error")
    return cols


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        a = abs(v)
        # three significant figures; from 999.5 up whole numbers with separators (".3g" would print 999.6 as 1e+03)
        return f"{v:,.0f}" if a >= 999.5 else (f"{v:.3g}" if a >= 1e-3 or a == 0 else f"{v:.3e}")
    return str(v)


def write_tables(study: Study, rows: list[dict], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    csv_path, json_path = out / f"{study.name}.csv", out / f"{study.name}.json"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})

    def clean(v):
        return None if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else v

    json_path.write_text(json.dumps({"study": study.name, "description": study.description, "command": study.command,
                                     "points": [{k: clean(v) for k, v in r.items()} for r in rows]}, indent=1))
    return csv_path, json_path


def draw(study: Study, plot: Plot, rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    good = [r for r in rows if not r.get("error") and r.get(plot.y) is not None and r.get(plot.x) is not None]
    groups: dict[str, list[dict]] = {}
    for r in good:
        groups.setdefault(str(r.get(plot.series)) if plot.series else plot.y, []).append(r)
    for i, (name, rs) in enumerate(groups.items()):
        xs = [r[plot.x] for r in rs]
        ys = [r[plot.y] for r in rs]
        if plot.kind == "bar":
            n = len(groups)
            pos = [j + (i - (n - 1) / 2) * 0.8 / n for j in range(len(xs))]
            ax.bar(pos, ys, width=0.8 / n, label=name)
            ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=30, ha="right")
        elif plot.kind == "scatter":
            ax.scatter(xs, ys, label=name, s=18)
        else:
            try:
                order = sorted(range(len(xs)), key=lambda j: float(xs[j]))
            except (TypeError, ValueError):
                order = list(range(len(xs)))
            ax.plot([xs[j] for j in order], [ys[j] for j in order], marker="o", ms=3, label=name)
    if plot.logx:
        ax.set_xscale("log")
    if plot.logy:
        ax.set_yscale("log")
    ax.set_xlabel(plot.x)
    ax.set_ylabel(plot.y)
    ax.set_title(plot.title or f"{study.name}: {plot.y} vs {plot.x}")
    ax.grid(True, alpha=0.3)
    if plot.series and groups:
        ax.legend(fontsize=8, title=plot.series)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(study: Study, rows: list[dict], out: Path) -> list[Path]:
    paths = []
    for p in study.plots:
        name = p.file or f"{study.name}-{p.y}-vs-{p.x}.png"
        paths.append(draw(study, p, rows, out / name))
    return paths


def write_html(study: Study, rows: list[dict], plots: list[Path], path: Path) -> Path:
    """One file, nothing fetched from the network: the table inline and plots as data URIs."""
    cols = columns(study, rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    imgs = []
    for p in plots:
        mime = "image/svg+xml" if p.suffix == ".svg" else "image/png"
        data = base64.b64encode(p.read_bytes()).decode()
        imgs.append(f'<figure><img alt="{html.escape(p.name)}" src="data:{mime};base64,{data}"><figcaption>{html.escape(p.name)}</figcaption></figure>')
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(study.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#eee}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(study.name)}</h1><p>{html.escape(study.description)}</p>
<p>command: <code>{study.command}</code>; {len(rows)} points.</p>{''.join(imgs)}
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>"""
    path.write_text(doc)
    return path
