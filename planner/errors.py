"""User-facing errors: one clear sentence, exit code 2, no traceback."""

from __future__ import annotations

import difflib


class PlannerError(Exception):
    """An error the user caused (bad id, bad file, impossible request)."""


def did_you_mean(name: str, choices: list[str] | set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def unknown(kind: str, name: str, choices) -> PlannerError:
    return PlannerError(f"unknown {kind} {name!r}{did_you_mean(name, list(choices))}")
