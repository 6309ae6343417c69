"""``planner plan --models A,B --rates RA,RB``: the placement of several models on one pool, as a table or JSON."""

from __future__ import annotations

from rich.table import Table

from planner.cli.common import console, print_json


def show_placement(req, as_json: bool) -> None:
    from planner.studies.params import plan_placement

    d = plan_placement(req)
    if as_json:
        print_json(d)
        return
    t = Table(title=f"{len(d['models'])} models on {d['hardware']} ({d['gpus']} GPUs; one pool per model: "
                    f"{d['gpus_one_pool_per_model']}, saved {d['gpus_saved']})", header_style="bold")
    for c in ("GPUs", "shared", "model", "req/s", "running", "TTFT ms", "TPOT ms", "SLO"):
        t.add_column(c, justify="left" if c in ("model", "shared") else "right")
    for g in d["placement"]:
        for k, (name, m) in enumerate(g["models"].items()):
            t.add_row(str(g["gpus"]) if k == 0 else "", ("yes" if g["shared"] else "no") if k == 0 else "", name,
                      f"{m['rate']:.2f}", str(m["concurrency"]), f"{m['ttft_s'] * 1e3:,.0f}", f"{m['tpot_s'] * 1e3:,.1f}",
                      "met" if m["slo_met"] else "missed")
    console.print(t)
    console.print(f"  {d['method']}")
