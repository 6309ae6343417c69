"""The estimate's plain writer (planner/cli/plaintext.py) against rich: byte for byte, piped and on a terminal, and
rich wherever the plain writer cannot match it."""

import contextlib
import io

import pytest
from rich.console import Console

from planner.cli.estimate import blocks
from planner.cli.plaintext import Table, fast_lines, lines_at, rich_renderables
from planner.serving.predict import PlanSpec, estimate


def rich_text(blocks_, width: int, terminal: bool) -> str:
    buf = io.StringIO()
    c = Console(file=buf, width=width, emoji=False, highlight=False, force_terminal=terminal,
                color_system="standard" if terminal else None)
    for r in rich_renderables(blocks_):
        c.print(r)
    return buf.getvalue()


def plain_text(blocks_, width: int, terminal: bool) -> str | None:
    lines = lines_at(blocks_, width, terminal)
    return None if lines is None else "".join(line + "\n" for line in lines)


CASES = [
    ("llama-3.1-8b", "h100-sxm", PlanSpec(tp=1), {}),
    ("llama-3.1-70b", "h100-sxm", PlanSpec(tp=4, weights="fp8"), {"isl": 2000, "osl": 500}),
    ("deepseek-v3", "h200-sxm", PlanSpec(tp=1, ep=8, attention_dp=8, weights="fp8"), {"concurrency": 64}),
    ("gpt-oss-120b", "h100-sxm", PlanSpec(tp=2), {"engine": "vllm@0.15"}),
    ("llama-3.1-405b", "h100-sxm", PlanSpec(tp=1), {}),  # does not fit: the red reason line
]


@pytest.mark.parametrize("model,hw,plan,kw", CASES, ids=[c[0] for c in CASES])
def test_an_estimate_prints_byte_for_byte_as_rich_would(model, hw, plan, kw):
    out = blocks(estimate(model, hw, plan, **kw))
    assert any(isinstance(b, Table) for b in out) and any(isinstance(b, str) for b in out)
    piped = plain_text(out, 1000, False)
    assert piped is not None and piped == rich_text(out, 1000, False)
    # on a terminal wide enough for the widest line: the same text with rich's SGR codes
    width = max(len(line) for line in piped.splitlines()) + 3
    styled = plain_text(out, width, True)
    assert styled is not None and "\x1b[1m" in styled
    assert styled == rich_text(out, width, True)


def test_the_serving_table_and_odd_title_centring_match_rich():
    t = Table([("metric", "left"), ("mean", "right"), ("p99", "right")], title="at 6 req/s (simulated, 999 requests)")
    t.add_row("TTFT", "12.30 ms", "45.10 ms")
    t.add_row("end-to-end", "1.234 s", "3.210 s")
    for title in (t.title, "x", "ab"):  # even and odd leftover space around the title
        t.title = title
        for terminal in (False, True):
            assert plain_text([t], 120, terminal) == rich_text([t], 120, terminal)


def test_whatever_the_plain_writer_cannot_match_goes_to_rich():
    t = Table([("op", "left"), ("source", "left")])
    t.add_row("qkv_proj", "capture [h100]")  # a bracket rich would read as markup
    assert lines_at([t], 1000, False) is None
    t.rows[0] = ("qkv_proj", "µs-level")  # a character outside printable ASCII
    assert lines_at([t], 1000, False) is None
    t.rows[0] = ("qkv_proj", "x" * 200)  # wider than the console: rich wraps it
    assert lines_at([t], 80, False) is None and lines_at([t], 1000, False) is not None
    assert lines_at(["a " * 50], 80, False) is None  # a line rich would wrap
    t.rows[0] = ("qkv_proj", "x")
    t.title = "a title longer than the table it sits on"  # rich wraps it over the table's width
    assert lines_at([t], 1000, False) is None
    assert lines_at(["[bold]a [dim]b[/dim][/bold]"], 1000, False) is None  # nested markup
    assert lines_at(["[blink]a[/blink]"], 1000, False) is None  # a style it does not know
    assert lines_at(["[bold]a"], 1000, False) is None  # unclosed


def test_the_estimate_command_prints_the_tables_without_rich_styles_when_piped():
    from planner.cli.app import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm"])
    text = buf.getvalue()
    est = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(tp=1))
    assert text.startswith("llama-3.1-8b on 1 x h100-sxm")
    assert "decode step breakdown (one device)" in text and f"{est.output_tokens_per_s:,.0f}" in text
    assert "\x1b[" not in text  # not a terminal: no styles


def test_a_stream_that_cannot_encode_the_box_goes_to_rich(monkeypatch):
    for k in ("FORCE_COLOR", "NO_COLOR", "COLUMNS"):
        monkeypatch.delenv(k, raising=False)
    t = Table([("op", "left")])
    t.add_row("x")
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    ascii_ = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert fast_lines([t], utf8) is not None
    assert fast_lines([t], ascii_) is None  # rich draws an ASCII box there
    monkeypatch.setenv("NO_COLOR", "1")
    assert fast_lines([t], utf8) is None  # a colour setting: rich decides


def test_the_piped_width_is_the_consoles_and_a_non_numeric_columns_goes_to_rich(monkeypatch):
    for k in ("FORCE_COLOR", "NO_COLOR", "COLUMNS"):
        monkeypatch.delenv(k, raising=False)
    t = Table([("op", "left")])
    t.add_row("x" * 500)
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert fast_lines([t], stream) is not None  # piped: 1000 columns, as planner.cli.common makes the console
    monkeypatch.setenv("COLUMNS", "120")
    assert fast_lines([t], stream) is None  # rich would shrink a 506-column table to 120
    monkeypatch.setenv("COLUMNS", "wide")
    assert fast_lines(["a"], stream) is None  # rich ignores a non-numeric $COLUMNS and takes its own default
