"""Parsed built-in YAML, kept between runs so a command does not re-parse ~100 data files at start-up.

The first read of a built-in data file parses every YAML file under the built-in data folders and writes one
pickle to the user cache folder; later processes load that one file. The bundle's name is a hash of every file's
path, size and modification time (ns) and of the planner, Python and PyYAML versions, so editing, adding or
removing a data file selects a different bundle, and each read checks the file's size and modification time
again (a file edited while a process runs is parsed afresh): stale data is never served. A cache folder that cannot be
created or written (a read-only home, a sandbox) only means parsing as before. ``PLANNER_CACHE_DIR`` moves the
folder; ``PLANNER_NO_CACHE=1`` turns the cache off. Each read unpickles a fresh copy, so a caller that edits
what it got cannot change what the next caller sees.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

SUFFIXES = (".yaml", ".yml")
_bundles: dict[tuple[str, ...], dict[str, tuple[int, int, bytes]]] = {}


def cache_dir() -> Path | None:
    """Where bundles live: $PLANNER_CACHE_DIR, else $XDG_CACHE_HOME/planner, else ~/.cache/planner (None: off)."""
    if os.environ.get("PLANNER_NO_CACHE", "") not in ("", "0"):
        return None
    if os.environ.get("PLANNER_CACHE_DIR"):
        return Path(os.environ["PLANNER_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "planner"
    try:
        return Path.home() / ".cache" / "planner"
    except RuntimeError:  # no home directory to be found
        return None


def _files(roots: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every YAML file under the roots, in a fixed order."""
    out = []
    for root in roots:
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            for name in sorted(names):
                if name.endswith(SUFFIXES):
                    p = os.path.join(folder, name)
                    st = os.stat(p)
                    out.append((p, st.st_size, st.st_mtime_ns))
    return out


def _parser_id() -> str:
    """Which PyYAML parses (its files' sizes and times, and whether its C extension is there), found without
    importing it: a cache hit needs no YAML parser."""
    import importlib.util

    spec = importlib.util.find_spec("yaml")
    if spec is None or not spec.origin:
        return "no-yaml"
    folder = os.path.dirname(spec.origin)
    parts = []
    for name in sorted(os.listdir(folder)):
        if name.endswith((".py", ".so", ".pyd")):
            st = os.stat(os.path.join(folder, name))
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return ",".join(parts)


def _key(files: list[tuple[str, int, int]]) -> str:
    h = hashlib.sha256()
    h.update(f"{sys.version}|{_parser_id()}|{__file__}".encode())
    for p, size, mtime in files:
        h.update(f"{p}|{size}|{mtime}\n".encode())
    return h.hexdigest()[:32]


def _load(path: Path) -> dict[str, tuple[int, int, bytes]] | None:
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _store(folder: Path, name: str, bundle: dict[str, tuple[int, int, bytes]]) -> None:
    """Write atomically (temporary file, then rename); give up quietly where the folder is not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".specs-", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(bundle, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / name)
        for old in folder.glob("specs-*.pickle"):  # bundles of older data: never read again
            if old.name != name:
                old.unlink(missing_ok=True)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def _bundle(roots: tuple[str, ...], parse: Callable[[Path], object]) -> dict[str, tuple[int, int, bytes]]:
    """path -> (size, mtime_ns, pickled parsed data) for every built-in YAML file that parses (one that does not
    is left out, so reading it parses it again and reports its error)."""
    if roots in _bundles:
        return _bundles[roots]
    files = _files(roots)
    folder = cache_dir()
    name = f"specs-{_key(files)}.pickle"
    out = _load(folder / name) if folder is not None else None
    if out is None:
        out = {}
        for p, size, mtime in files:
            try:
                out[p] = (size, mtime, pickle.dumps(parse(Path(p)), protocol=pickle.HIGHEST_PROTOCOL))
            except Exception:  # noqa: BLE001 -- left out; the live read reports it
                continue
        if folder is not None:
            _store(folder, name, out)
    _bundles[roots] = out
    return out


def read(path: Path, roots: tuple[str, ...], parse: Callable[[Path], object]) -> object:
    """The parsed content of ``path``: from the bundle when it is a built-in file whose size and modification
    time still match what was parsed, else parsed now."""
    p = os.path.abspath(path)
    if not any(p.startswith(r + os.sep) for r in roots):
        return parse(path)
    hit = _bundle(roots, parse).get(p)
    if hit is not None:
        try:
            st = os.stat(p)
        except OSError:
            return parse(path)
        if (st.st_size, st.st_mtime_ns) == hit[:2]:
            return pickle.loads(hit[2])
    return parse(path)


def clear() -> None:
    """Forget the bundles this process loaded."""
    _bundles.clear()
