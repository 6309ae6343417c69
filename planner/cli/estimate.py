"""``planner estimate``: one plan -> latency, throughput, memory, cost, accuracy, breakdown. Declared with
``command(None, ...)``: importing this module loads neither typer nor rich (a plain command line runs without
typer; --json prints without rich, and so do the tables wherever planner.cli.plaintext draws them as rich would)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from planner.cli.common import flatten, gib, ms, num, print_csv, print_json
from planner.cli.options import command
from planner.cli.registry import SUMMARIES
from planner.errors import PlannerError

if TYPE_CHECKING:  # imported where used: estimate's start-up loads no more than it needs
    from planner.api import PlanSpec


def plan_options(gpus, tp, pp, ep, dp, weights, kv, activations, weight_offload=None, attention_dp=None, cp=1) -> PlanSpec:
    from planner.api import PlanSpec, resolve_parallel

    if gpus is not None and cp > 1:
        if gpus % cp:
            raise PlannerError(f"--gpus {gpus} is not divisible by --cp {cp}")
        gpus //= cp
    tp_, pp_, ep_, dp_ = resolve_parallel(gpus, tp, pp, ep, dp, attention_dp)
    return PlanSpec(tp=tp_, pp=pp_, ep=ep_, dp=dp_, weights=weights, kv=kv, activations=activations, weight_offload=weight_offload,
                    attention_dp=attention_dp or 1, cp=cp)


def with_techniques(plan, req):
    """The serving techniques of an EstimateRequest on a PlanSpec (planner/studies/params.py: estimate_techniques)."""
    from planner.studies.params import estimate_techniques

    return estimate_techniques(plan, req)


def hardware_of(req):
    """The hardware a request names, joined by its --link network when one is given (edge clusters)."""
    from planner.costmodel.collectives import hardware_with_link

    return hardware_with_link(req.hardware, getattr(req, "link", None))


@command(None, "estimate", help=SUMMARIES["estimate"], ui=("as_json", "as_csv"))
def estimate_cmd(req, as_json: bool, as_csv: bool):
    from planner.studies.params import request_engine

    plan = with_techniques(plan_options(req.gpus, req.tp, req.pp, req.ep, req.dp, req.weights, req.kv, req.activations,
                                        req.weight_offload, req.attention_dp, req.cp), req)
    from planner.studies.params import simulated_point

    d = simulated_point(req, hardware_of(req), plan)  # --rate, or --concurrency N --requests M: the simulator
    if d is not None:
        d["cost"].update(_owned(req, d["gpus"], d["output_tokens_per_s"] if d["fits"] else None))
        _output(d, as_json, as_csv, rate=req.rate)
        return
    from planner.api import estimate

    est = estimate(req.model, hardware_of(req), plan, isl=req.isl, osl=req.osl, batching=req.batching, batch=req.batch,
                   concurrency=req.concurrency, engine=request_engine(req), adp_balance=req.attention_dp_balance)
    est.cost.update(_owned(req, est.gpus, est.output_tokens_per_s if est.fits else None))
    _output(est.to_dict(), as_json, as_csv, est)


def _owned(req, gpus: int, tokens_per_s) -> dict:
    """The owned-cost keys under this request's --electricity-usd-per-kwh / --pue / --amortization-years / --utilization."""
    import math

    from planner.cap.cost import owned_cost_keys
    from planner.specs.loader import get_hardware

    hw = get_hardware(req.hardware)  # a --link network changes no price or power
    tok = tokens_per_s if tokens_per_s is not None and math.isfinite(tokens_per_s) and tokens_per_s > 0 else None
    return owned_cost_keys(hw, gpus, tok, req.tco())


def _output(d: dict, as_json: bool, as_csv: bool, est=None, rate: float | None = None) -> None:
    """JSON, CSV or tables; then exit 2 with one line when the plan does not fit."""
    if as_json:
        print_json(d)
    elif as_csv:
        print_csv([flatten({k: v for k, v in d.items() if k not in ("breakdown", "notes")})])
    else:
        from types import SimpleNamespace

        from planner.cli.plaintext import Table, emit

        out = blocks(est or SimpleNamespace(**d))
        s = d.get("serving")
        if s:
            title = (f"{s['clients']} clients in a closed loop (simulated, {s['requests']} requests)" if rate is None else
                     f"all at once (simulated, {s['requests']} requests)" if math.isinf(rate) else
                     f"at {rate:g} req/s (simulated, {s['requests']} requests)")
            t = Table([(c, "left" if c == "metric" else "right") for c in ("metric", "mean", "p50", "p90", "p99")],
                      title=title)
            for key, name in (("ttft_s", "TTFT"), ("tpot_s", "TPOT (mean inter-token)"), ("e2e_latency_s", "end-to-end")):
                t.add_row(name, *(ms(s[key][q]) for q in ("mean", "p50", "p90", "p99")))
            out.append(t)
        emit(out)
    mem = d["memory"]
    if not mem["fits"] or d["plan"]["batch_or_concurrency"] < 1:
        raise PlannerError(d.get("reason") or "does not fit: no sequence of isl + osl tokens fits in memory")


def blocks(est) -> list:
    """The lines (rich markup) and tables of an estimate's text output."""
    from planner.cli.plaintext import Table

    out: list = []
    p = est.plan
    adp = f" attention-dp={p['attention_dp']}" if p.get("attention_dp", 1) > 1 else ""
    adp += f" eplb={p['eplb']}" if p.get("eplb") is not None else ""
    title = (f"{est.model} on {est.gpus} x {est.hardware}  tp={p['tp']} pp={p['pp']} ep={p['ep']}{adp} dp={p['dp']}  "
             f"weights={p['weights']} kv={p['kv']} (GEMMs in {p['compute_dtype']})")
    out.append(f"[bold]{title}[/bold]")
    out.append(f"{p['batching']} batching, {p['batch_or_concurrency']} sequences, isl={p['isl']} osl={p['osl']}")
    if est.concurrency_cap:
        out.append(f"[dim]{est.concurrency_cap}[/dim]")
    for n in est.notes:
        out.append(f"[yellow]note:[/yellow] {n}")
    if not est.fits:
        out.append(f"[red]{est.reason}[/red]")
    t = Table([("metric", "left"), ("value", "right")])
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
    own = c.get("usd_per_hour_owned")
    t.add_row("owned: cost per hour (purchase + power)", f"${own:.2f}" if own else "unknown (no purchase price)")
    t.add_row("owned: $ per million output tokens", f"${c['usd_per_million_output_tokens_owned']:.3f}"
              if c.get("usd_per_million_output_tokens_owned") else "-")
    ref = str(est.accuracy.get("relative_to", "bf16 model = 1.0")).replace(" model", "").replace(" checkpoint", "")
    t.add_row(f"accuracy ({ref})", f"{est.accuracy['score']:.3f}" + (f"  ({'; '.join(est.accuracy['lowered_by'])})" if est.accuracy["lowered_by"] else ""))
    out.append(t)
    band = getattr(est, "uncertainty", None) if est.fits else None  # no band on numbers a plan that does not fit lacks
    if band:
        named = [(name, b) for name, b in (("throughput", band.get("throughput")), ("TTFT", band.get("ttft")),
                                           ("TPOT", band.get("tpot"))) if b]
        parts = [f"{name} {b['low']:+.0%}..{b['high']:+.0%}" for name, b in named]
        if parts:
            sit = band["situation"]
            device, _, why = sit["device"].partition(" (")  # "inferred (no fitted rows of trtllm@1.1 on it)"
            why = f"; {why.rstrip(')').replace(' on it', ' on ' + est.hardware)}" if why else ""
            ttft_own = " (TTFT: prefill-bound)" if sit["phase"] != "prefill" and band.get("ttft") else ""
            eng = sit.get("engine")
            own = [name for name, b in named if eng and b.get("from", "").endswith("@" + eng)]
            rows_of = (f" of {eng}" if len(own) == len(parts) else f" ({', '.join(own)}: {eng}'s own)") if own else ""
            out.append(f"[dim]error band (measured/predicted - 1, 10th-90th percentile of {device} {sit['phase']}-bound "
                       f"{sit['model']} published rows{rows_of}{ttft_own}, cross-validated{why}): {', '.join(parts)}[/dim]")
    for phase in ("prefill", "decode"):
        rows = est.breakdown[phase]
        if not rows:
            continue
        b = Table([("op", "left"), ("time", "right"), ("share", "right"), ("GFLOP", "right"), ("MB", "right"),
                   ("bound by", "left"), ("source", "left")], title=f"{phase} step breakdown (one device)")
        for r in rows:
            bound = r["bound"] + (f" ({r['algorithm']})" if r.get("algorithm") else "")
            b.add_row(r["op"], ms(r["time_s"]), f"{r['share']:.0%}", f"{r['flops'] / 1e9:,.1f}", f"{r['bytes'] / 1e6:,.1f}", bound, r["source"])
        out.append(b)
    return out
