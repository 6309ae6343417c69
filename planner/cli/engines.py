"""``planner engines list|show``: the serving-engine profiles (engines/*.yaml) with their sources."""

from __future__ import annotations

import typer
from rich.table import Table

from planner.cli.app import app
from planner.cli.common import console, print_json
from planner.cli.registry import SUMMARIES

engines_app = typer.Typer(help=SUMMARIES["engines"], no_args_is_help=True)
app.add_typer(engines_app, name="engines")


def _cell(v) -> str:
    return "-" if v is None else ("yes" if v is True else "no" if v is False else str(v))


@engines_app.command("list", help="Every engine profile (ID@VERSION) with its batch limits and scheduler.")
def engines_list(as_json: bool = typer.Option(False, "--json")):
    from planner.specs.engine import _version_key, profiles

    rows = sorted(profiles().values(), key=lambda e: (e.id, _version_key(e.version)))
    if as_json:
        print_json([e.info() for e in rows])
        return
    t = Table(title="engine profiles (get_engine('ID') is the newest version; - = not published)", header_style="bold")
    for c in ("engine", "memory", "seqs", "tokens/step", "KV block", "chunked", "schedule", "prefix cache", "graphs to",
              "EPLB"):
        t.add_column(c, justify="left" if c in ("engine", "memory", "schedule") else "right")
    for e in rows:
        t.add_row(e.name, f"{e.utilization:g} of {e.kv_policy}", str(e.max_seqs), str(e.max_batched_tokens),
                  str(e.kv_block_tokens), _cell(e.chunked_prefill), e.schedule, _cell(e.prefix_caching),
                  _cell(e.cuda_graph_max_batch), _cell(e.eplb))
    console.print(t)


@engines_app.command("show", help="One engine profile: every setting, its CLI flag and where its value was read.")
def engines_show(ident: str = typer.Argument(..., metavar="ID[@VERSION]"),
                 hardware: str = typer.Option(None, "--hardware", "-H", help="the defaults the engine picks on this device"),
                 tp: int = typer.Option(1, "--tp", min=1, help="tensor-parallel size (SGLang's defaults depend on it)"),
                 as_json: bool = typer.Option(False, "--json")):
    import yaml

    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware

    e = get_engine(ident)
    if hardware:
        e = e.for_hardware(get_hardware(hardware), tp=tp)
    fitted = _calibration_sources(e.name)
    d = {**e.info(), "settings": {k: {"value": _plain(getattr(e, k, None), k), "flag": e.flags.get(k) or e.keys.get(k),
                                       "source": fitted.get(k, src)} for k, src in e.source_items if hasattr(e, k)},
         "other_flags": {k: e.flags.get(k) or e.keys.get(k) for k, _ in e.source_items if not hasattr(e, k)}}
    if e.era_note:
        d = {"note": e.era_note, **d}
    if as_json:
        print_json(d)
        return
    console.print(yaml.safe_dump(d, sort_keys=False, width=140), markup=False)


def _calibration_sources(release: str) -> dict[str, str]:
    """Where the calibration in force took each host cost it lays over the profile (engines/calibration/): a rate fit,
    a value inferred from other releases, or the joint fit; keyed by the Engine field."""
    from planner.costmodel.params import PARAMS, builtin_calibration

    c = builtin_calibration().get(release)
    if c is None:
        return {}
    return {p.engine_field: c.engine_wide[p.name][1] for p in PARAMS if p.engine_field and p.name in c.engine_wide}


def _plain(v, key: str = ""):
    from planner.specs.engine import ARCH_ID_FIELDS, ARCH_MAP_FIELDS, BLOCK_FP8_FIELDS, block_fp8_as_written

    if key in BLOCK_FP8_FIELDS:  # as the profile writes it
        return block_fp8_as_written(v)
    if key in ARCH_MAP_FIELDS or key in ARCH_ID_FIELDS:  # {architecture: value}, as the profile writes it
        return dict(v)
    return list(v) if isinstance(v, tuple) else v
