"""The text `planner estimate` prints (a few markup lines and tables), written out without importing rich when the
output is simple enough to draw the way rich would: rich's import and table layout are ~40 ms of a cold estimate's
~0.25 s. Anything this module does not draw exactly as rich does (text wider than the console, markup or characters
other than the plain ones it knows, a colour setting in the environment, a console that is not a plain POSIX
stream) is handed to rich: ``emit`` prints with the fast writer when it can and with rich otherwise, from the same
blocks. tests/test_plaintext.py checks the two byte for byte, piped and on a terminal."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

# the markup the estimate's lines use, with the SGR codes rich writes for each on a terminal
STYLES = {"bold": "1", "dim": "2", "italic": "3", "yellow": "33", "red": "31"}
_TAG = re.compile(r"\[(/?)([a-z]+)\]")
# heavy-head box (rich.box.HEAVY_HEAD): top, header row, header rule, body row, bottom
_TOP, _HEAD, _RULE, _ROW, _BOTTOM = ("┏━┳┓", "┃ ┃┃", "┡━╇┩", "│ ││", "└─┴┘")
# environment settings that change how rich writes (colour forced or off, terminal overrides): rich then writes
_RICH_ENV = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")


@dataclass
class Table:
    """A table as the estimate draws it: a centred italic title (optional), a bold header row, columns justified
    left or right."""

    columns: list[tuple[str, str]]  # (header, "left" | "right")
    title: str | None = None
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def add_row(self, *cells: str) -> None:
        self.rows.append(tuple(cells))


def _plain(text: str) -> bool:
    """Printable ASCII with no markup bracket: drawn (and measured) as rich would, one column per character."""
    return text.isascii() and text.isprintable() and "[" not in text


def _line(markup: str) -> list[tuple[str, str | None]] | None:
    """(text, style) runs of one markup line, or None when it holds markup or characters this writer does not draw."""
    runs: list[tuple[str, str | None]] = []
    style, pos = None, 0
    for m in _TAG.finditer(markup):
        closing, name = m.group(1) == "/", m.group(2)
        if name not in STYLES or closing != (style is not None) or (closing and name != style):
            return None  # nested, unknown or unbalanced tags: rich's
        if m.start() > pos:
            runs.append((markup[pos:m.start()], style))
        style, pos = (None if closing else name), m.end()
    if style is not None:
        return None
    runs.append((markup[pos:], None))
    if not all(_plain(t) for t, _ in runs):
        return None
    return [(t, s) for t, s in runs if t]


def _sgr(text: str, style: str | None, ansi: bool) -> str:
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m" if ansi and style and text else text


def _table(t: Table, ansi: bool, width: int) -> list[str] | None:
    """The table's lines, or None where rich would draw it otherwise (markup or wide characters in a cell, a table or a
    title wider than the console: rich shrinks or wraps)."""
    cells = [h for h, _ in t.columns] + [c for r in t.rows for c in r] + ([t.title] if t.title else [])
    if not all(_plain(c) for c in cells) or any(len(r) != len(t.columns) for r in t.rows):
        return None
    widths = [max([len(h)] + [len(r[i]) for r in t.rows]) for i, (h, _) in enumerate(t.columns)]

    def just(text: str, i: int) -> str:
        return text.rjust(widths[i]) if t.columns[i][1] == "right" else text.ljust(widths[i])

    def rule(chars: str) -> str:
        return chars[0] + chars[2].join(chars[1] * (w + 2) for w in widths) + chars[3]

    out = []
    total = sum(widths) + 3 * len(widths) + 1  # the bottom rule's length
    if total > width or (t.title and len(t.title) > total):  # rich wraps a title wider than its table
        return None
    if t.title:
        left = (total - len(t.title)) // 2
        out.append(_sgr(" " * left + t.title + " " * (total - left - len(t.title)), "italic", ansi))
    out.append(rule(_TOP))
    head = [_sgr(" ", "bold", ansi) + _sgr(just(h, i), "bold", ansi) + _sgr(" ", "bold", ansi) for i, (h, _) in enumerate(t.columns)]
    out.append(_HEAD[0] + _HEAD[2].join(head) + _HEAD[3])
    out.append(rule(_RULE))
    for r in t.rows:
        out.append(_ROW[0] + _ROW[2].join(f" {just(c, i)} " for i, c in enumerate(r)) + _ROW[3])
    out.append(rule(_BOTTOM))
    return out


def _console_width(stream) -> tuple[int, bool] | None:
    """(width, writes ANSI) as rich's console would have them for ``stream``, or None where rich decides by more than
    a plain POSIX stream shows (colour settings in the environment, an unusual terminal, another platform)."""
    if os.name != "posix" or any(k in os.environ for k in _RICH_ENV):
        return None
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return None
    if not str(getattr(stream, "encoding", "") or "").lower().startswith("utf"):
        return None  # rich swaps the box for ASCII where the stream cannot encode it
    columns = os.environ.get("COLUMNS", "")
    if not tty:
        from planner.cli.common import _width  # the width the rich console is made with

        fixed = _width(stream)
        if fixed is not None:
            return fixed, False
        return (int(columns), False) if columns.isdigit() else None  # rich reads a numeric $COLUMNS; anything else: rich
    if os.environ.get("TERM", "") in ("", "dumb", "unknown"):
        return None
    if columns.isdigit():
        return int(columns), True
    try:
        return os.get_terminal_size(stream.fileno()).columns, True
    except (OSError, ValueError, AttributeError):
        return None


def fast_lines(blocks: list, stream=None) -> list[str] | None:
    """The lines rich would print for ``blocks`` (markup strings and Tables) on ``stream``, or None where this writer
    would not match it."""
    console = _console_width(stream if stream is not None else sys.stdout)
    if console is None:
        return None
    return lines_at(blocks, *console)


def lines_at(blocks: list, width: int, ansi: bool) -> list[str] | None:
    """fast_lines for a console ``width`` columns wide that writes ANSI styles or not."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Table):
            lines = _table(b, ansi, width)
            if lines is None:
                return None
            out += lines
        else:
            runs = _line(b)
            if runs is None or sum(len(t) for t, _ in runs) > width:
                return None
            out.append("".join(_sgr(t, s, ansi) for t, s in runs))
    return out


def rich_renderables(blocks: list) -> list:
    """The same blocks as rich renderables (markup strings stay strings)."""
    from rich.table import Table as RichTable

    out = []
    for b in blocks:
        if isinstance(b, Table):
            t = RichTable(title=b.title, show_header=True, header_style="bold")
            for name, justify in b.columns:
                t.add_column(name, justify=justify)
            for r in b.rows:
                t.add_row(*r)
            out.append(t)
        else:
            out.append(b)
    return out


def emit(blocks: list) -> None:
    """Print ``blocks`` on stdout: without rich where fast_lines can, else through the rich console."""
    lines = fast_lines(blocks)
    if lines is not None:
        sys.stdout.write("".join(line + "\n" for line in lines))
        return
    from planner.cli import common

    for r in rich_renderables(blocks):
        common.console.print(r)
