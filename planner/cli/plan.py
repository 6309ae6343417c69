"""``planner plan``: search the plan space, show the C/A/P frontier, recommend, emit a deployment. Declared with
``command(None, ...)``: importing this module loads neither typer nor rich (a plain command line runs without
typer, and --json prints without rich)."""

from __future__ import annotations

from planner.cli import common
from planner.cli.common import print_csv, print_json
from planner.cli.options import check_out_file, command
from planner.cli.registry import SUMMARIES
from planner.errors import PlannerError

HELP = SUMMARIES["plan"]
EMIT_TARGETS = ("vllm", "sglang", "trtllm", "k8s")


@command(None, "plan", help=HELP, ui=("as_json", "as_csv", "top", "plot", "plot_terminal", "emit"))
def plan_cmd(req, as_json: bool, as_csv: bool, top: int, plot, plot_terminal: bool, emit):
    from planner.studies.params import plan_search

    check_out_file(plot, (".png", ".svg"))
    if emit is not None and emit not in EMIT_TARGETS:
        raise PlannerError(f"--emit takes vllm, sglang, trtllm or k8s, not {emit!r}")
    if emit is not None and as_csv:
        raise PlannerError("--emit prints a launch config; give --csv without it")
    if req.models:  # several models on one pool (search/placement.py)
        from planner.cli.placement import show_placement

        show_placement(req, as_json)
        return
    res = plan_search(req)
    if res.recommended is None:
        _infeasible(res, as_json, as_csv)
    if plot is not None:
        from planner.report.plots import frontier_plot

        frontier_plot(res, plot)
    deployment = _emit(res, req, emit) if emit is not None else None
    if as_json:
        d = res.to_dict()
        if deployment is not None:
            d["deployment"] = deployment
        print_json(d)
    elif as_csv:
        print_csv([_csv_row(r) for r in res.frontier])
    elif deployment is not None:
        print(deployment["text"])
    else:
        render(res, top, plot, plot_terminal, req.min_accuracy)


def _infeasible(res, as_json: bool, as_csv: bool):
    if as_json:
        print_json(res.to_dict())
    elif as_csv:
        print_csv([_csv_row(r) for r in res.nearest])
    else:
        render(res, 0, None, False, None)
    binds = [line.split(":")[0] for line in res.infeasible]
    raise PlannerError("no plan meets the constraints" + (f": {'; '.join(res.infeasible)}" if binds else ""))


def _emit(res, req, target: str) -> dict:
    """The best plan the target engine can run: the recommendation, else the next frontier plan."""
    from planner.report.deploy import emit_recommended
    from planner.studies.params import request_engine

    first_error = None
    engine = request_engine(req)  # with the settings the user set (--memory-fraction), as the search priced them
    for cand in [res.recommended] + res.frontier:
        try:
            text = emit_recommended(target, cand, req.model, req.isl, req.osl, engine)
        except PlannerError as e:
            first_error = first_error or e
            continue
        if cand is not res.recommended:
            text = (f"# the recommended plan ({res.recommended['label']}) cannot run on {target}: {first_error}\n"
                    f"# emitting the best frontier plan it can run: {cand['label']}\n") + text
        return {"target": target, "plan": cand["label"], "text": text}
    raise PlannerError(f"no frontier plan can run on {target}: {first_error}")


def _csv_row(d: dict) -> dict:
    p = d["plan"]
    return {"plan": d["label"], "hardware": p["hardware"], "mode": p["mode"], "gpus": d["gpus"], "tp": p["tp"], "pp": p["pp"],
            "ep": p["ep"], "replicas": p["replicas"], "weights": p["weights"], "kv": p["kv"],
            "concurrency_per_replica": p["concurrency_per_replica"],
            **{k: d[k] for k in ("output_tokens_per_s_per_gpu", "output_tokens_per_s_per_user", "ttft_s", "tpot_s",
                                 "e2e_latency_s", "accuracy", "max_context_tokens", "usd_per_million_output_tokens",
                                 "usd_per_million_output_tokens_owned", "trade")}}


def render(res, top: int, plot, plot_terminal: bool, min_accuracy: float | None) -> None:
    s = res.to_dict()["search"]
    out = common.console
    out.print(f"[bold]{res.model}[/bold]: {s['plans_evaluated']:,} plans scored, {s['plans_costed']:,} costed, "
              f"{s['feasible']:,} meet the constraints, in {res.seconds:.2f} s")
    for hw, why in getattr(res, "skipped", {}).items():
        out.print(f"[yellow]left out {hw}:[/yellow] {why}")
    for n in getattr(res, "notes", []):
        out.print(f"note: {n}")
    if res.recommended is None:
        out.print("[red]no plan meets every constraint[/red]")
        for line in res.infeasible:
            out.print(f"  {line}")
        if res.nearest:
            _table("nearest plans (smallest total violation)", res.nearest)
        return
    floor = (f"; accuracy >= {min_accuracy:g} x bf16" + (" (default floor, MLPerf 99 % rule)" if min_accuracy == 0.99 else "")
             if min_accuracy else "; no accuracy floor")
    _table(f"C/A/P frontier ({len(res.frontier)} plans; top {min(top, len(res.frontier))} by the objective{floor})", res.frontier[:top])
    r = res.recommended
    out.print(f"\n[bold green]recommended:[/bold green] {r['label']} on {r['gpus']} GPUs")
    out.print(f"  {r['output_tokens_per_s_per_gpu']:,.0f} tok/s/GPU, {r['output_tokens_per_s_per_user']:,.1f} tok/s/user, "
              f"TTFT {r['ttft_s'] * 1e3:,.0f} ms, TPOT {r['tpot_s'] * 1e3:,.1f} ms, accuracy {r['accuracy']:.3f}, "
              f"max context {r['max_context_tokens']:,}" +
              _usd_line(r))
    out.print(f"  why: {res.why}")
    out.print(f"  trade: {r['trade']}")
    wait = (r["plan"].get("disaggregated") or {}).get("prefill_wait_s", 0.0)
    if wait > 0.0:  # planner.search.evaluate.queued_ttft
        out.print(f"  note: the prefill pool ({r['plan']['disaggregated']['prefill_workers']} worker(s)) is the slower "
                  f"side: {wait * 1e3:,.0f} ms of the TTFT is the wait for it of the clients the decode slots hold "
                  f"(Little's law at the rate served)")
    if plot:
        out.print(f"wrote {plot}")
    if plot_terminal:
        from planner.report.plots import terminal_plot

        out.print(terminal_plot(res.frontier))


def _usd_line(r: dict) -> str:
    """$/M output tokens, rented and owned, where known."""
    parts = [f"${v:.3f}/M tokens {name}" for name, v in (("rented", r["usd_per_million_output_tokens"]),
                                                         ("owned", r.get("usd_per_million_output_tokens_owned"))) if v]
    return (", " + ", ".join(parts)) if parts else ""


def _table(title: str, rows: list[dict]) -> None:
    from rich.table import Table

    t = Table(title=title, header_style="bold")
    for c in ("plan", "GPUs", "tok/s/GPU", "tok/s/user", "TTFT ms", "TPOT ms", "A", "max ctx", "$/M rent", "$/M own", "CAP trade"):
        t.add_column(c, justify="left" if c in ("plan", "CAP trade") else "right", overflow="fold")
    for d in rows:
        usd, own = d["usd_per_million_output_tokens"], d.get("usd_per_million_output_tokens_owned")
        t.add_row(d["label"], str(d["gpus"]), f"{d['output_tokens_per_s_per_gpu']:,.0f}", f"{d['output_tokens_per_s_per_user']:,.1f}",
                  f"{d['ttft_s'] * 1e3:,.0f}", f"{d['tpot_s'] * 1e3:,.1f}", f"{d['accuracy']:.3f}", f"{d['max_context_tokens']:,}",
                  "-" if usd is None else f"{usd:.3f}", "-" if own is None else f"{own:.3f}", d["trade"])
    common.console.print(t)
