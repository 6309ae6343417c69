"""Shell-script text for the deployment emitters: one flag per line, heredoc config files, and the
parsers tests and users read an emitted script back with."""

from __future__ import annotations

import re
import shlex

def _num(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Script:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def comment(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def heredoc(self, filename: str, content: str) -> None:
        self.lines.append(f"cat > {filename} <<'EOF'")
        self.lines.extend(content.rstrip("\n").splitlines())
        self.lines.append("EOF")

    def command(self, argv: list[str], head: int) -> None:
        """The program (``head`` tokens) on the first line, then one flag with its value per line."""
        groups: list[list[str]] = []
        for tok in argv[head:]:
            if (tok.startswith("-") and not _is_number(tok)) or not groups:
                groups.append([tok])
            else:
                groups[-1].append(tok)
        head = argv[:head]
        parts = [" ".join(shlex.quote(t) for t in head)] + ["  " + " ".join(shlex.quote(t) for t in g) for g in groups]
        self.lines.append(" \\\n".join(parts))

    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


_HEREDOC = re.compile(r"^cat > (\S+) <<'(\w+)'$")


def split_script(text: str) -> tuple[list[list[str]], dict[str, str]]:
    """The commands (argv lists, comments dropped, continuations joined) and the heredoc files of an
    emitted script, in order."""
    commands: list[list[str]] = []
    files: dict[str, str] = {}
    buf = ""
    lines = iter(text.splitlines())
    for line in lines:
        m = _HEREDOC.match(line)
        if m and not buf:
            body = []
            for inner in lines:
                if inner == m.group(2):
                    break
                body.append(inner)
            files[m.group(1)] = "\n".join(body) + "\n"
            continue
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        commands.append(shlex.split(buf + s))
        buf = ""
    return commands, files


def flag_map(argv: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs of an argv (flags without a value map to None)."""
    out: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("-") and not _is_number(tok):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and (not nxt.startswith("-") or _is_number(nxt)):
                out[tok] = nxt
                i += 2
                continue
            out[tok] = None
        i += 1
    return out
