"""``planner hardware list|show`` and ``planner models list|show|import``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console, print_json
from planner.cli.registry import SUMMARIES

hw_app = typer.Typer(help=SUMMARIES["hardware"], no_args_is_help=True)
models_app = typer.Typer(help=SUMMARIES["models"], no_args_is_help=True)
app.add_typer(hw_app, name="hardware")
app.add_typer(models_app, name="models")


def _tflops(hw, dtype):
    q = hw.peak_flops.get(dtype)
    return f"{q.value / 1e12:,.0f}" if q else ("n/p" if dtype in hw.peak_flops else "-")


@hw_app.command("list", help="All built-in hardware with memory, bandwidth and dense peaks.")
def hw_list(as_json: bool = typer.Option(False, "--json")):
    from planner.specs.loader import get_hardware, hardware_ids

    rows = [get_hardware(i) for i in hardware_ids()]
    if as_json:
        print_json([{"id": h.id, "name": h.name, "kind": h.kind, "memory_bytes": h.memory_capacity_bytes,
                     "bandwidth_bytes_per_s": h.memory_bandwidth_bytes_per_s,
                     "peak_flops": {k: (v.value if v else None) for k, v in h.peak_flops.items()},
                     "usd_per_hour": h.price.usd_per_hour if h.price else None} for h in rows])
        return
    t = Table(title="hardware (dense TFLOPS; n/p = not published, - = not supported)", header_style="bold")
    for c in ("id", "kind", "memory", "TB/s", "bf16", "fp8", "int8", "fp4", "$/h"):
        t.add_column(c, justify="left" if c in ("id", "kind") else "right")
    for h in rows:
        t.add_row(h.id, h.kind, f"{h.memory_capacity_bytes / 1e9:,.0f} GB", f"{h.memory_bandwidth_bytes_per_s / 1e12:.2f}",
                  _tflops(h, "bf16"), _tflops(h, "fp8"), _tflops(h, "int8"), _tflops(h, "fp4"),
                  f"{h.price.usd_per_hour:.2f}" if h.price else "-")
    console.print(t)


@hw_app.command("show", help="One hardware spec with every number's source.")
def hw_show(ident: str = typer.Argument(..., metavar="ID"), as_json: bool = typer.Option(False, "--json")):
    import yaml

    from planner.specs.loader import get_hardware

    h = get_hardware(ident)
    d = h.model_dump(mode="json", exclude_none=True)
    if as_json:
        print_json(d)
        return
    console.print(yaml.safe_dump(d, sort_keys=False, width=140))


@models_app.command("list", help="All built-in models with parameter counts.")
def models_list(as_json: bool = typer.Option(False, "--json")):
    from planner.specs.loader import get_model, model_ids

    rows = [get_model(i) for i in model_ids()]
    if as_json:
        print_json([{"id": m.id, "total_params": m.total_params, "active_params": m.active_params,
                     "attention": m.attention.kind, "moe": m.is_moe, "max_context": m.max_context} for m in rows])
        return
    t = Table(title="models", header_style="bold")
    for c in ("id", "params", "active", "layers", "hidden", "heads/kv", "attention", "context"):
        t.add_column(c, justify="left" if c in ("id", "attention") else "right")
    for m in rows:
        att = m.attention.kind + (f"+swa{m.attention.sliding_window}" if m.attention.sliding_window else "")
        att += " moe" if m.moe else ""
        t.add_row(m.id, f"{m.total_params / 1e9:,.1f}B", f"{m.active_params / 1e9:,.1f}B", str(m.num_layers),
                  str(m.hidden_size), f"{m.num_heads}/{m.num_kv_heads}", att, f"{m.max_context:,}")
    console.print(t)


def _model_dict(m) -> dict:
    d = m.model_dump(mode="json", exclude_none=True)
    d["total_params"] = m.total_params
    d["active_params"] = m.active_params
    d["kv_elements_per_token_per_layer"] = m.kv_elements_per_token_per_layer()
    if m.moe is not None:  # the routing skew the cost model prices (the spec's, or the measured value carried to E experts)
        from planner.costmodel.step import routing_skew, routing_skew_source

        d["routing_skew"] = round(routing_skew(m.moe), 4)
        d["routing_skew_source"] = routing_skew_source(m.moe)
    return d


@models_app.command("show", help="One model spec with computed total and active parameters.")
def models_show(ident: str = typer.Argument(..., metavar="ID"), as_json: bool = typer.Option(False, "--json")):
    import yaml

    from planner.specs.loader import get_model

    m = get_model(ident)
    d = _model_dict(m)
    if as_json:
        print_json(d)
        return
    console.print(yaml.safe_dump(d, sort_keys=False, width=140))


@models_app.command("import", help="Turn a Hugging Face config.json into a model spec YAML (no network).")
def models_import(
    path: Path = typer.Argument(..., metavar="FILE", help="config.json"),
    model_id: Optional[str] = typer.Option(None, "--id", help="id for the new spec (default: from the config)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the YAML here (default: print it)"),
    as_json: bool = typer.Option(False, "--json", help="print the spec as one JSON object"),
):
    from planner.cli.options import check_out_file
    from planner.specs.hf_import import spec_from_hf_config

    import yaml

    check_out_file(out, (".yaml", ".yml"), "--out")
    model, spec = spec_from_hf_config(path, model_id)
    text = yaml.safe_dump(spec, sort_keys=False)
    if as_json:
        if out:
            out.write_text(text)
        print_json({**spec, "total_params": model.total_params, "active_params": model.active_params,
                    "written": str(out) if out else None})
    elif out:
        out.write_text(text)
        console.print(f"wrote {out}: {model.id}, {model.total_params / 1e9:.2f}B parameters ({model.active_params / 1e9:.2f}B active)")
    else:
        print(text, end="")
