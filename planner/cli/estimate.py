"""``planner estimate``: one plan -> latency, throughput, memory, cost, accuracy, breakdown."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from planner.api import PlanSpec, estimate, resolve_parallel
from planner.cli.app import app
from planner.cli.common import console, gib, ms, num, print_json
from planner.errors import PlannerError

TPOT_HELP = "TPOT is the mean time between output tokens after the first (inter-token latency)."


def plan_options(gpus, tp, pp, ep, dp, weights, kv, activations, weight_offload=None) -> PlanSpec:
    tp_, pp_, ep_, dp_ = resolve_parallel(gpus, tp, pp, ep, dp)
    return PlanSpec(tp=tp_, pp=pp_, ep=ep_, dp=dp_, weights=weights, kv=kv, activations=activations, weight_offload=weight_offload)


@app.command("estimate", help=f"Predict one plan: TTFT, TPOT, throughput, memory, cost and a per-op breakdown. {TPOT_HELP}")
def estimate_cmd(
    model: str = typer.Option(..., "--model", "-m", help="model id (planner models list) or a model YAML"),
    hardware: str = typer.Option(..., "--hardware", "-H", help="hardware id (planner hardware list) or a hardware YAML"),
    gpus: Optional[int] = typer.Option(None, help="GPUs in total (default: tp x pp x dp)"),
    tp: Optional[int] = typer.Option(None, help="tensor parallel size"),
    pp: Optional[int] = typer.Option(None, help="pipeline parallel size"),
    ep: Optional[int] = typer.Option(None, help="expert parallel size (MoE)"),
    dp: Optional[int] = typer.Option(None, help="data-parallel replicas"),
    weights: str = typer.Option("bf16", help="weight precision: bf16 fp16 fp8 int8 int8-wo int4 w4a8 fp4 mxfp4 q4_0 q8_0"),
    activations: Optional[str] = typer.Option(None, help="activation precision (default: the weight format's)"),
    kv: Optional[str] = typer.Option(None, help="KV-cache precision: bf16 fp16 fp8 int8 int4 (default: fp8 with fp8 weights, else 16 bit)"),
    weight_offload: Optional[str] = typer.Option(None, help="stream weights that do not fit from 'host' memory or 'disk' (NVMe)"),
    isl: int = typer.Option(1024, help="input tokens per request"),
    osl: int = typer.Option(256, help="output tokens per request"),
    batching: str = typer.Option("inflight", help="static (all requests start together) or inflight (continuous batching)"),
    batch: Optional[int] = typer.Option(None, help="requests in the static batch"),
    concurrency: Optional[str] = typer.Option(None, help="sequences in flight (inflight), or 'max' (default)"),
    engine: str = typer.Option("trtllm", help="serving engine whose limits and overheads apply: trtllm, vllm, llamacpp"),
    rate: Optional[float] = typer.Option(None, help="arrival rate in requests/s (needs the serving simulator)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    if rate is not None:
        if batching != "inflight" or batch is not None or concurrency is not None:
            raise PlannerError("--rate simulates continuous batching: drop --batching static/--batch/--concurrency")
        from planner.api import estimate_at_rate

        d = estimate_at_rate(model, hardware, plan_options(gpus, tp, pp, ep, dp, weights, kv, activations), rate=rate,
                             isl=isl, osl=osl, engine=engine)
        if as_json:
            print_json(d)
            return
        from types import SimpleNamespace

        render(SimpleNamespace(**d))
        s = d.get("serving")
        if s:
            t = Table(title=f"at {rate:g} req/s (simulated, {s['requests']} requests)", header_style="bold")
            for c in ("metric", "mean", "p50", "p90", "p99"):
                t.add_column(c, justify="left" if c == "metric" else "right")
            for key, name in (("ttft_s", "TTFT"), ("tpot_s", "TPOT (mean inter-token)"), ("e2e_latency_s", "end-to-end")):
                t.add_row(name, *(ms(s[key][q]) for q in ("mean", "p50", "p90", "p99")))
            console.print(t)
        return
    conc: int | str | None = None
    if concurrency is not None:
        if concurrency == "max":
            conc = "max"
        else:
            try:
                conc = int(concurrency)
            except ValueError:
                raise PlannerError(f"--concurrency must be an integer or 'max', got {concurrency!r}") from None
    if batching == "static" and concurrency is not None:
        raise PlannerError("--concurrency applies to --batching inflight; use --batch with static batching")
    if batching == "inflight" and batch is not None:
        raise PlannerError("--batch applies to --batching static; use --concurrency with inflight batching")
    plan = plan_options(gpus, tp, pp, ep, dp, weights, kv, activations, weight_offload)
    est = estimate(model, hardware, plan, isl=isl, osl=osl, batching=batching, batch=batch, concurrency=conc, engine=engine)
    if as_json:
        print_json(est.to_dict())
        return
    render(est)


def render(est) -> None:
    p = est.plan
    title = (f"{est.model} on {est.gpus} x {est.hardware}  tp={p['tp']} pp={p['pp']} ep={p['ep']} dp={p['dp']}  "
             f"weights={p['weights']} kv={p['kv']} (GEMMs in {p['compute_dtype']})")
    console.print(f"[bold]{title}[/bold]")
    console.print(f"{p['batching']} batching, {p['batch_or_concurrency']} sequences, isl={p['isl']} osl={p['osl']}")
    if est.concurrency_cap:
        console.print(f"[dim]{est.concurrency_cap}[/dim]")
    for n in est.notes:
        console.print(f"[yellow]note:[/yellow] {n}")
    if not est.fits:
        console.print(f"[red]{est.reason}[/red]")
    t = Table(show_header=True, header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("TTFT", ms(est.ttft_s))
    t.add_row("TPOT (mean inter-token)", ms(est.tpot_s))
    t.add_row("end-to-end latency", ms(est.e2e_latency_s))
    t.add_row("output tokens/s", num(est.output_tokens_per_s))
    t.add_row("output tokens/s per GPU", num(est.output_tokens_per_s_per_gpu))
    t.add_row("requests/s", num(est.requests_per_s, ",.2f"))
    mem = est.memory
    t.add_row("memory per GPU (weights + KV + runtime)", f"{gib(mem['total_bytes_per_gpu'])} of {gib(mem['usable_bytes_per_gpu'])} usable")
    t.add_row("  weights / KV cache", f"{gib(mem['weights_bytes'])} / {gib(mem['kv_cache_bytes'])}")
    t.add_row("max context (one request)", num(est.max_context_tokens))
    t.add_row("max concurrency at isl+osl", num(est.max_concurrency))
    c = est.cost
    t.add_row("cost per hour", f"${c['usd_per_hour']:.2f}" if c["usd_per_hour"] else "unknown (no published price)")
    t.add_row("$ per million output tokens", f"${c['usd_per_million_output_tokens']:.3f}" if c["usd_per_million_output_tokens"] else "-")
    t.add_row("accuracy (bf16 = 1.0)", f"{est.accuracy['score']:.3f}" + (f"  ({'; '.join(est.accuracy['lowered_by'])})" if est.accuracy["lowered_by"] else ""))
    console.print(t)
    for phase in ("prefill", "decode"):
        rows = est.breakdown[phase]
        if not rows:
            continue
        b = Table(title=f"{phase} step breakdown (one device)", show_header=True, header_style="bold")
        for col, j in (("op", "left"), ("time", "right"), ("share", "right"), ("GFLOP", "right"), ("MB", "right"), ("bound by", "left"), ("source", "left")):
            b.add_column(col, justify=j)
        for r in rows:
            bound = r["bound"] + (f" ({r['algorithm']})" if r.get("algorithm") else "")
            b.add_row(r["op"], ms(r["time_s"]), f"{r['share']:.0%}", f"{r['flops'] / 1e9:,.1f}", f"{r['bytes'] / 1e6:,.1f}", bound, r["source"])
        console.print(b)
