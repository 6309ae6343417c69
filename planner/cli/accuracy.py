"""``planner accuracy``: the tables of the accuracy (A) model, each row with its source."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console, print_json
from planner.cli.registry import SUMMARIES


def _range(low, high) -> str:
    if low is None and high is None:
        return "-"
    return "-".join("?" if v is None else f"{v:.3g}" for v in (low, high))


def _cite(row: dict) -> str:
    return f"{escape(row['evidence'])}\n[dim]{escape(row['source'])}[/dim]"


def _recovery_table(title: str, rows: list[dict], k: float, size: float) -> Table:
    head = "r'" + (f" (k={k:g}" + (f", size x{size:.2f}" if size != 1.0 else "") + ")" if k != 1.0 or size != 1.0 else "")
    t = Table(title=title, header_style="bold", show_lines=True)
    t.add_column("format")
    t.add_column("r", justify="right")
    t.add_column("range", justify="right")
    t.add_column(head, justify="right")
    t.add_column("basis")
    t.add_column("evidence / source", overflow="fold", ratio=1)
    for r in rows:
        t.add_row(r["id"], f"{r['r']:.3f}", _range(r["low"], r["high"]), f"{r['effective']:.3f}", r["basis"],
                  _cite(r))
    return t


@app.command("accuracy", help=SUMMARIES["accuracy"])
def accuracy_cmd(
    task: str = typer.Option("general", help="task class: general, knowledge, math, code, reasoning"),
    params: Optional[float] = typer.Option(None, help="model parameters (e.g. 70e9) for the weight-format size adjustment"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    from planner.cap.accuracy import tables

    d = tables(task, params)
    if as_json:
        print_json(d)
        return
    k, size = d["k"], d["size_factor"]
    console.print(f"[bold]accuracy model[/bold] ({d['relative_to']}); task [bold]{task}[/bold], k={k:g}"
                  + (f"; {params / 1e9:g}B parameters: weight-format loss x{size:.2f}" if params else ""))
    console.print(d["formula"])
    console.print(_recovery_table("weight / activation formats", d["weights"], k, size))
    console.print(_recovery_table("KV-cache formats", d["kv"], k, 1.0))

    ev = d["eviction"]
    t = Table(title=f"KV eviction: recovery at a KV budget of an {ev['context_tokens']:,}-token context "
                    f"({ev['model']}, {ev['benchmark']}, FullKV {ev['full_kv_score']}); * = interpolated in log(budget)",
              header_style="bold", show_lines=True)
    t.add_column("method")
    for p in ev["methods"][0]["points"]:
        t.add_column(f"{p['budget_tokens']}{'' if p['measured'] else '*'} ({p['fraction']:.1%})", justify="right")
    t.add_column("evidence / source", overflow="fold", ratio=1)
    for m in ev["methods"]:
        cells = [f"{p['r']:.3f}" + (f" -> {p['effective']:.3f}" if k != 1.0 else "") for p in m["points"]]
        t.add_row(m["name"], *cells, _cite(m))
    console.print(t)

    for c in d.get("curves", []):  # context extension, prompt compression, sparse attention
        t = Table(title=f"{c['title']}: recovery vs {c['knob']}; * = interpolated in log(knob). {c['note']}",
                  header_style="bold", show_lines=True)
        t.add_column("method")
        for p in c["methods"][0]["points"]:
            t.add_column(f"{p['knob']:.0%}" if c["unit"] == "%" else f"x{p['knob']:g}", justify="right")
        t.add_column("basis")
        t.add_column("evidence / source", overflow="fold", ratio=1)
        for m in c["methods"]:
            cells = [f"{p['r']:.3f}" + (f" -> {p['effective']:.3f}" if k != 1.0 else "") + ("" if p["measured"] else "*")
                     for p in m["points"]]
            t.add_row(m["name"], *cells, m["basis"], _cite(m))
        console.print(t)
    for name, r in d.get("rules", {}).items():
        console.print(f"[bold]{name.replace('_', ' ')}[/bold]: {escape(r['rule'])}. {escape(r['evidence'])} "
                      f"[dim]({escape(r['source'])})[/dim]")

    t = Table(title="task-class sensitivity k: r' = max(0, 1 - k(1 - r))", header_style="bold", show_lines=True)
    for c in ("task", "k", "range"):
        t.add_column(c, justify="left" if c == "task" else "right")
    t.add_column("evidence / source", overflow="fold", ratio=1)
    for r in d["tasks"]:
        t.add_row(r["id"], f"{r['k']:g}", _range(r["low"], r["high"]), _cite(r))
    console.print(t)

    sa = d["size_adjustment"]
    console.print(f"[bold]model-size adjustment[/bold] ({sa['applies_to']} only): loss x clip((params / {sa['reference_params']:.0e})"
                  f"^{sa['exponent']:g}, {sa['clip'][0]:g}, {sa['clip'][1]:g}). {escape(sa['evidence'])} [dim]({escape(sa['source'])})[/dim]")

    t = Table(title="lossless techniques: factor exactly 1.0", header_style="bold", show_lines=True)
    t.add_column("technique")
    t.add_column("factor", justify="right")
    t.add_column("why / source", overflow="fold", ratio=1)
    for r in d["lossless"]:
        t.add_row(r["id"], f"{r['factor']:.1f}", _cite(r))
    console.print(t)
