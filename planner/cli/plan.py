"""``planner plan``: search the plan space, show the C/A/P frontier, recommend, emit a deployment."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console, print_json
from planner.errors import PlannerError


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _spec(values: list[str] | None) -> tuple[tuple[int, float], ...]:
    out = []
    for v in _split(values):
        try:
            k, a = v.split(":")
            k_i, a_f = int(k), float(a)
        except ValueError:
            raise PlannerError(f"--spec takes DRAFT_TOKENS:ACCEPTANCE such as 3:0.7, got {v!r}") from None
        if k_i < 1 or not 0 <= a_f < 1:
            raise PlannerError(f"--spec {v}: draft tokens must be >= 1 and acceptance in [0, 1)")
        out.append((k_i, a_f))
    return tuple(out)


def _eviction(values: list[str] | None) -> tuple[tuple[str, int], ...]:
    from planner.cap.accuracy import eviction_recovery

    out = []
    for v in _split(values):
        try:
            method, kept = v.split(":")
            n = int(kept)
        except ValueError:
            raise PlannerError(f"--eviction takes METHOD:KEPT_TOKENS such as snapkv:2048, got {v!r}") from None
        if n < 1:
            raise PlannerError(f"--eviction {v}: kept tokens must be positive")
        eviction_recovery(method, 0.5)  # unknown methods fail here with a did-you-mean
        out.append((method, n))
    return tuple(out)


@app.command("plan", help="Search parallelism x precision x batching x (dis)aggregation plans; show the C/A/P frontier and recommend one. "
                          "TPOT is the mean time between output tokens after the first.")
def plan_cmd(
    model: str = typer.Option(..., "--model", "-m"),
    hardware: List[str] = typer.Option(..., "--hardware", "-H", help="one or more hardware ids (repeat or comma-separate)"),
    gpus: int = typer.Option(..., help="GPU budget"),
    isl: int = typer.Option(1024, help="input tokens per request"),
    osl: int = typer.Option(256, help="output tokens per request"),
    ttft: Optional[float] = typer.Option(None, help="TTFT limit in seconds (mean)"),
    tpot: Optional[float] = typer.Option(None, help="TPOT limit in seconds (mean inter-token latency)"),
    min_context: Optional[int] = typer.Option(None, help="longest single request the plan must hold, tokens"),
    min_accuracy: Optional[float] = typer.Option(None, help="accuracy floor relative to the bf16 model (1.0)"),
    max_cost: Optional[float] = typer.Option(None, help="ceiling in $ per million output tokens"),
    objective: str = typer.Option("throughput", help="throughput (tokens/s per GPU), cost ($/M tokens) or latency (end-to-end)"),
    task: str = typer.Option("general", help="task class for accuracy sensitivity: general, knowledge, math, code, reasoning"),
    weights: Optional[List[str]] = typer.Option(None, help="restrict weight precisions (default: all the device runs)"),
    kv: Optional[List[str]] = typer.Option(None, help="restrict KV-cache precisions"),
    spec: Optional[List[str]] = typer.Option(None, help="speculative decoding candidates DRAFT_TOKENS:ACCEPTANCE, e.g. 3:0.7"),
    eviction: Optional[List[str]] = typer.Option(None, help="KV eviction candidates METHOD:KEPT_TOKENS (snapkv, h2o, streamingllm, pyramidkv), e.g. snapkv:2048"),
    disagg: bool = typer.Option(True, "--disagg/--no-disagg", help="consider disaggregated prefill/decode"),
    offload: bool = typer.Option(True, "--offload/--no-offload", help="consider KV-cache offload to host memory"),
    engine: str = typer.Option("trtllm", help="engine limits and overheads: trtllm, vllm"),
    top: int = typer.Option(10, help="frontier plans to show"),
    as_json: bool = typer.Option(False, "--json"),
    plot: Optional[Path] = typer.Option(None, help="draw the frontier to FILE.png or FILE.svg"),
    plot_terminal: bool = typer.Option(False, "--plot-terminal", help="draw tokens/s per GPU vs per user in the terminal"),
    emit: Optional[str] = typer.Option(None, help="print the recommended plan's launch config: vllm, sglang, trtllm or k8s"),
):
    from planner.search.evaluate import Workload
    from planner.search.run import Constraints, search
    from planner.search.space import SpaceOptions

    if top < 1:
        raise PlannerError("--top must be at least 1")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise PlannerError(f"--plot writes .png or .svg, not {plot.suffix or 'a file without extension'}")
    if emit is not None and emit not in ("vllm", "sglang", "trtllm", "k8s"):
        raise PlannerError(f"--emit takes vllm, sglang, trtllm or k8s, not {emit!r}")
    opts = SpaceOptions(weights=tuple(_split(weights)) or None, kv=tuple(_split(kv)) or None, speculative=_spec(spec),
                        eviction=_eviction(eviction),
                        offload=offload, disaggregated=disagg)
    cons = Constraints(gpus=gpus, ttft_s=ttft, tpot_s=tpot, min_context=min_context, min_accuracy=min_accuracy, max_usd_per_mtok=max_cost)
    res = search(model, _split(hardware), gpus, Workload(isl, osl), cons, objective=objective, opts=opts, engine=engine, task=task)
    if plot is not None and res.frontier:
        from planner.report.plots import frontier_plot

        frontier_plot(res, plot)
    if emit is not None:
        if res.recommended is None:
            raise PlannerError("nothing is feasible, so there is no plan to emit: " + "; ".join(res.infeasible))
        from planner.report.deploy import emit_recommended

        # the best plan the target engine can run: the recommendation, else the next frontier plan
        first_error = None
        for cand in [res.recommended] + res.frontier:
            try:
                text = emit_recommended(emit, cand, model, isl, osl, engine)
            except PlannerError as e:
                first_error = first_error or e
                continue
            if cand is not res.recommended:
                text = (f"# the recommended plan ({res.recommended['label']}) cannot run on {emit}: {first_error}\n"
                        f"# emitting the best frontier plan it can run: {cand['label']}\n") + text
            print(text)
            return
        raise PlannerError(f"no frontier plan can run on {emit}: {first_error}")
    if as_json:
        print_json(res.to_dict())
        return
    render(res, top, plot, plot_terminal)


def render(res, top: int, plot, plot_terminal: bool) -> None:
    s = res.to_dict()["search"]
    console.print(f"[bold]{res.model}[/bold]: {s['plans_evaluated']:,} plans scored, {s['plans_costed']:,} costed, "
                  f"{s['feasible']:,} meet the constraints, in {s['seconds']:.2f} s")
    if res.recommended is None:
        console.print("[red]no plan meets every constraint[/red]")
        for line in res.infeasible:
            console.print(f"  {line}")
        if res.nearest:
            _table("nearest plans (smallest total violation)", res.nearest)
        return
    _table(f"C/A/P frontier ({len(res.frontier)} plans; top {min(top, len(res.frontier))} by the objective)", res.frontier[:top])
    r = res.recommended
    console.print(f"\n[bold green]recommended:[/bold green] {r['label']} on {r['gpus']} GPUs")
    console.print(f"  {r['output_tokens_per_s_per_gpu']:,.0f} tok/s/GPU, {r['output_tokens_per_s_per_user']:,.1f} tok/s/user, "
                  f"TTFT {r['ttft_s'] * 1e3:,.0f} ms, TPOT {r['tpot_s'] * 1e3:,.1f} ms, accuracy {r['accuracy']:.3f}, "
                  f"max context {r['max_context_tokens']:,}" +
                  (f", ${r['usd_per_million_output_tokens']:.3f}/M tokens" if r["usd_per_million_output_tokens"] else ""))
    console.print(f"  why: {res.why}")
    console.print(f"  trade: {r['trade']}")
    if plot:
        console.print(f"wrote {plot}")
    if plot_terminal:
        from planner.report.plots import terminal_plot

        console.print(terminal_plot(res.frontier))


def _table(title: str, rows: list[dict]) -> None:
    t = Table(title=title, header_style="bold")
    for c in ("plan", "GPUs", "tok/s/GPU", "tok/s/user", "TTFT ms", "TPOT ms", "A", "max ctx", "$/M tok", "CAP trade"):
        t.add_column(c, justify="left" if c in ("plan", "CAP trade") else "right", overflow="fold")
    for d in rows:
        usd = d["usd_per_million_output_tokens"]
        t.add_row(d["label"], str(d["gpus"]), f"{d['output_tokens_per_s_per_gpu']:,.0f}", f"{d['output_tokens_per_s_per_user']:,.1f}",
                  f"{d['ttft_s'] * 1e3:,.0f}", f"{d['tpot_s'] * 1e3:,.1f}", f"{d['accuracy']:.3f}", f"{d['max_context_tokens']:,}",
                  "-" if usd is None else f"{usd:.3f}", d["trade"])
    console.print(t)
