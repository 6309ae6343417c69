"""``planner simulate``: an arrival process or a trace against replicas doing continuous batching."""

from __future__ import annotations

import math
from pathlib import Path

from rich.table import Table

from planner.cli.app import app
from planner.cli.capacity import ms
from planner.cli.common import console, err_console, flatten, num, print_csv, print_json
from planner.cli.options import check_out_file, command
from planner.cli.registry import SUMMARIES

HELP = (
    SUMMARIES["simulate"] + "\n\n"
    "Fleets of model sizes (best-effort serving after 'Learned Best-Effort LLM Serving', arXiv 2401.07886): "
    "--fleet llama-3.1-70b:2,llama-3.1-8b:2 --router threshold:8 sends each request to the biggest model unless the "
    "queue of its least-loaded replica (requests waiting or running there) exceeds 8, then to the next size down. "
    "It is compared with a static fleet (everything to the big model) on SLO attainment and the mean accuracy of the "
    "served requests: plan accuracy x the published size-substitution ratio (Llama-3 instruct MMLU 8B/70B = 0.83)."
)


class Progress:
    """A rich progress bar on stderr for long runs (stdout stays clean for --json)."""

    def __init__(self, total: int, label: str = "simulating"):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RP, TimeElapsedColumn

        self.p = RP("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)
        self.task = self.p.add_task(label, total=total)

    def __enter__(self):
        self.p.__enter__()
        return self

    def __exit__(self, *a):
        self.p.__exit__(*a)

    def __call__(self, done: int, total: int) -> None:
        self.p.update(self.task, completed=done, total=total)


@command(app, "simulate", help=HELP, ui=("as_json", "as_csv", "plot"))
def simulate_cmd(req, as_json: bool, as_csv: bool, plot):
    from planner.serving.run import simulate_scenario

    check_out_file(plot, (".png", ".svg"))
    o = simulate_scenario(**req.model_dump(), progress_factory=Progress)
    if o.runs:
        _fleet_out(o.out, o.runs, o.pools, o.slo, as_json, plot, as_csv)
        return
    out, res = o.out, o.res
    if plot is not None:
        _plot(res, plot, title=f"{out['model']} on {out['gpus']} x {out['hardware']}, {out['requests']} requests")
    if as_json:
        print_json(out)
        return
    if as_csv:
        print_csv([flatten({k: v for k, v in out.items() if k not in ("notes", "pools", "utilization")})])
        return
    _render(out, res)
    if plot is not None:
        console.print(f"plot written to {plot}")


def _lat_table(s: dict, title: str) -> Table:
    t = Table(title=title, header_style="bold")
    for c in ("metric", "mean", "p50", "p90", "p99"):
        t.add_column(c, justify="left" if c == "metric" else "right")
    for key, name in (("ttft_s", "TTFT"), ("tpot_s", "TPOT (mean inter-token)"), ("e2e_latency_s", "end-to-end")):
        d = s[key]
        t.add_row(name, *(ms(d[q]) for q in ("mean", "p50", "p90", "p99")))
    return t


def _render(out: dict, res) -> None:
    pools = ", ".join(f"{p['replicas']} x {p['name']}" + (f" ({p['role']})" if p["role"] != "both" else "") for p in out["pools"])
    console.print(f"[bold]{out['model']} on {out['gpus']} x {out['hardware']}[/bold]: {pools}; router {out['router']}")
    console.print(f"workload {out['workload']}")
    rate = out["rate"]
    console.print(f"{out['requests']:,} requests" + (f" at {rate:g} req/s" if rate and math.isfinite(rate) else " all at once" if rate else "")
                  + f", seed {out['seed']}; simulated {out['duration_s']:.1f} s in {out['simulator']['wall_s']:.2f} s ({out['simulator']['events']:,} events, {out['simulator']['core']} core)")
    for n in out["notes"]:
        console.print(f"[yellow]note:[/yellow] {n}")
    console.print(_lat_table(out, "latency"))
    t = Table(header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("completed / rejected", f"{out['completed']:,} / {out['rejected']:,}")
    t.add_row("throughput (requests/s)", num(out["requests_per_s"], ",.2f"))
    t.add_row("output tokens/s (per GPU)", f"{num(out['output_tokens_per_s'])} ({num(out['output_tokens_per_s_per_gpu'])})")
    if "slo" in out:
        s = out["slo"]
        lim = " and ".join(x for x in (f"TTFT <= {ms(s['ttft_s'])}" if s["ttft_s"] is not None else "",
                                        f"TPOT <= {ms(s['tpot_s'])}" if s["tpot_s"] is not None else "") if x)
        t.add_row(f"SLO attainment ({lim})", f"{s['attainment']:.1%}")
        t.add_row("goodput (requests/s meeting the SLO)", num(s["goodput_requests_per_s"], ",.2f"))
    u = out["utilization"]
    t.add_row("replica busy fraction (mean)", f"{u['mean_busy_fraction']:.1%}" if u["mean_busy_fraction"] is not None else "-")
    t.add_row("mean decode batch per replica", ", ".join(f"{x:.1f}" for x in u["mean_decode_batch"][:8]) + (" ..." if len(u["mean_decode_batch"]) > 8 else ""))
    q = out["queue"]
    t.add_row("waiting requests (mean / max)", f"{q['mean_waiting']:.1f} / {q['max_waiting']:,}")
    t.add_row("preemptions (requests preempted)", f"{out['preemptions']:,} ({out['requests_preempted']:,})")
    if out["prefix_cache_hit_tokens"]:
        t.add_row("prefix-cache hit tokens (shared prefix, turn history, prompts sent again)", f"{out['prefix_cache_hit_tokens']:,}")
    _tenant_rows(t, out)
    console.print(t)
    if "classes" in out:
        _class_table(out["classes"])


def _tenant_rows(t: Table, out: dict) -> None:
    """Adapters (S-LoRA) and live migration (Llumnix) rows of the summary table."""
    if "lora" in out:
        lo = out["lora"]
        t.add_row(f"LoRA {lo['adapters']:,} adapters, rank {lo['rank']} on {','.join(lo['targets'])} ({lo['popularity']})",
                  f"{lo['adapter_bytes'] / 2**20:,.1f} MiB each")
        t.add_row("resident adapters per replica (KV memory they take per GPU)",
                  f"{lo['resident_per_replica']:,} ({lo['resident_bytes_per_gpu'] / 2**30:,.2f} GiB)")
        t.add_row("adapter cache miss rate (loads, load time each)", f"{lo['miss_rate']:.1%} ({lo['loads']:,}, {ms(lo['load_s'])})")
        t.add_row(f"adapter GEMMs per decode step (at the mean batch {lo['mean_decode_batch']:.1f})", ms(lo["decode_step_cost_s"]))
    if "migration" in out:
        mg = out["migration"]
        t.add_row(f"live migrations (load difference > {mg['threshold']})",
                  f"{mg['migrations']:,} (copy {ms(mg['mean_copy_s'])}, downtime {mg['mean_downtime_s'] * 1e6:,.0f} us)")


def _class_table(classes: dict) -> None:
    t = Table(title="per service class", header_style="bold")
    for c in ("class", "priority", "requests", "TTFT p50", "TTFT p99", "TPOT p99", "SLO met"):
        t.add_column(c, justify="left" if c == "class" else "right")
    for name, c in classes.items():
        slo = c.get("slo")
        t.add_row(name, str(c["priority"]), f"{c['requests']:,}", ms(c["ttft_s"]["p50"]), ms(c["ttft_s"]["p99"]),
                  ms(c["tpot_s"]["p99"]), "-" if slo is None or slo["attainment"] is None else f"{slo['attainment']:.1%}")
    console.print(t)


def _fleet_out(out: dict, runs: dict, pools, slo, as_json, plot, as_csv=False) -> None:
    wdesc, rate, notes = out["workload"], out["rate"], out["notes"]
    if plot is not None:
        _plot_fleet(runs, plot)
    if as_json:
        print_json(out)
        return
    if as_csv:
        print_csv([flatten({"router": lab, **{k: v for k, v in d.items() if k != "share"}}) for lab, d in out["runs"].items()])
        return
    console.print(f"[bold]fleet on {out['gpus']} x {pools[0].replica.hardware_id}[/bold]: "
                  + ", ".join(f"{p.count} x {p.replica.name} (accuracy {p.replica.accuracy:.3f})" for p in pools))
    console.print(f"workload {wdesc}; {out['requests']:,} requests" + (f" at {rate:g} req/s" if rate and math.isfinite(rate) else ""))
    for n in notes:
        console.print(f"[yellow]note:[/yellow] {n}")
    console.print(f"SLO: TTFT <= {ms(slo.ttft_s)} and TPOT <= {ms(slo.tpot_s)}; accuracy = mean score of served requests (biggest model, bf16 = 1)")
    t = Table(title="best-effort routing vs a static fleet", header_style="bold")
    for c in ("router", "SLO met", "accuracy", "acc x SLO", "goodput/s", "$/1k req", "TTFT p99", "TPOT p99", "share"):
        t.add_column(c, justify="left" if c in ("router", "share") else "right")
    for lab, d in out["runs"].items():
        t.add_row(lab, f"{d['slo_attainment']:.1%}", "-" if d["mean_accuracy"] is None else f"{d['mean_accuracy']:.3f}",
                  "-" if d["quality_weighted_attainment"] is None else f"{d['quality_weighted_attainment']:.3f}",
                  num(d["goodput_requests_per_s"], ",.2f"), num(d.get("usd_per_1k_requests"), ",.3f"),
                  ms(d["ttft_s"]["p99"]), ms(d["tpot_s"]["p99"]),
                  " ".join(f"{k.split(' ')[0].split('-')[-1]}:{v:.0%}" for k, v in d["share"].items()))
    console.print(t)


def _plot(res, path: Path, title: str) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110)
    ax = axes[0]
    ax.plot(res.queue_t, res.queue_waiting, label="waiting", lw=1)
    ax.plot(res.queue_t, res.queue_running, label="running", lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests")
    ax.set_title("queue over time")
    ax.legend(fontsize=8)
    d = res.done
    for ax, x, name in ((axes[1], res.ttft_s[d], "TTFT (s)"), (axes[2], res.tpot_s[d], "TPOT, mean inter-token (s)")):
        x = np.sort(x[np.isfinite(x)])
        if len(x):
            ax.plot(x, np.arange(1, len(x) + 1) / len(x))
            for q in (50, 90, 99):
                ax.axvline(np.percentile(x, q), ls=":", c="0.5", lw=0.8)
        ax.set_xlabel(name)
        ax.set_ylabel("fraction of requests")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_fleet(runs: dict, path: Path) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for lab, res in runs.items():
        axes[0].plot(res.queue_t, res.queue_waiting, lw=1, label=lab)
        x = np.sort(res.ttft_s[res.done])
        axes[1].plot(x, np.arange(1, len(x) + 1) / max(len(x), 1), label=lab)
    axes[0].set_xlabel("time (s)")
    axes[0].set_ylabel("waiting requests")
    axes[1].set_xlabel("TTFT (s)")
    axes[1].set_xscale("log")
    axes[1].set_ylabel("fraction of requests")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
