"""User-facing errors: one clear sentence, exit code 2, no traceback."""

from __future__ import annotations


class PlannerError(Exception):
    """An error the user caused (bad id, bad file, impossible request)."""


def did_you_mean(name: str, choices: list[str] | set[str]) -> str:
    """The ids a name most likely meant: those it begins ('h100' -> h100-nvl, h100-pcie, h100-sxm) first, then the
    closest spellings, case aside; nothing for a name that is not a string (a library caller's None)."""
    if not isinstance(name, str):
        return ""
    low = name.strip().lower()
    by_low = {c.lower(): c for c in sorted(choices)}
    prefix = [c for lc, c in by_low.items() if lc.startswith(low + "-")] if low else []
    import difflib  # only when a name is unknown

    close = [by_low[c] for c in difflib.get_close_matches(low, list(by_low), n=3, cutoff=0.5)]
    picks = list(dict.fromkeys(prefix + close))[:max(3, min(len(prefix), 4))]
    return f" (did you mean {', '.join(repr(c) for c in picks)}?)" if picks else ""


def unknown(kind: str, name: str, choices) -> PlannerError:
    return PlannerError(f"unknown {kind} {name!r}{did_you_mean(name, list(choices))}")
