"""Parsed built-in YAML, kept between runs so a command does not re-parse ~100 data files at start-up.

The first read of a built-in data file parses every YAML file under the built-in data folders and writes one
pickle to the user cache folder; later processes load that one file. The bundle's name is a hash of every file's
path, size and modification time (ns) and of the planner, Python and PyYAML versions, so editing, adding or
removing a data file selects a different bundle, and each read checks the file's size and modification time
again (a file edited while a process runs is parsed afresh): stale data is never served. A cache folder that cannot be
created or written (a read-only home, a sandbox) only means parsing as before. ``PLANNER_CACHE_DIR`` moves the
folder; ``PLANNER_NO_CACHE=1`` turns the cache off. Each read unpickles a fresh copy, so a caller that edits
what it got cannot change what the next caller sees.

Validated specs (``validated``) are kept the same way in a second file beside the bundle: a built-in file's spec
object as its class validated it, keyed by the class and the file's size and modification time, in a file whose
name also hashes the source of the spec classes (planner/specs/, planner/units.py, the class's own module) and the
pydantic version. A later process unpickles the object instead of validating the data again (no validator is built
for it); a user's own file, a changed file or changed spec code is validated as before.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

SUFFIXES = (".yaml", ".yml")
_bundles: dict[tuple[str, ...], dict[str, tuple[int, int, bytes]]] = {}
_keys: dict[tuple[str, ...], str] = {}  # roots -> the hash of their files (the bundle's name)
_objects: dict[str, dict[str, tuple[int, int, bytes]]] = {}  # a validated store's file name -> its entries


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


KEEP = 4  # files of each kind kept: the newest, and those of up to three other installations or data versions


def _store(folder: Path, name: str, bundle: dict[str, tuple[int, int, bytes]], prefix: str = "specs-") -> None:
    """Write atomically (temporary file, then rename), removing all but the KEEP newest files of the same ``prefix``
    (two installations on one machine, such as a checkout and a CI clone, would otherwise evict each other's file on
    every switch); give up quietly where the folder is not writable."""
    import tempfile  # only when the cache is written (with shutil, bz2, lzma: ~4 ms a read-only start-up skips)

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".specs-", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(bundle, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / name)
        others = [p for p in folder.glob(f"{prefix}*.pickle") if p.name != name]
        others.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in others[KEEP - 1:]:  # the oldest: bundles of data or installations not seen lately
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
    name = f"specs-{_roots_key(roots, files)}.pickle"
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


def _roots_key(roots: tuple[str, ...], files: list[tuple[str, int, int]] | None = None) -> str:
    if roots not in _keys:
        _keys[roots] = _key(_files(roots) if files is None else files)
    return _keys[roots]


def _stamp(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}|-"
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


@functools.cache
def _code_key() -> str:
    """A hash of the code validation runs: the spec modules' files (size and modification time), planner/units.py
    and the pydantic version (a class defined elsewhere adds its own module's stamp to its entries)."""
    here = os.path.dirname(os.path.abspath(__file__))
    paths = sorted(os.path.join(here, n) for n in os.listdir(here) if n.endswith(".py"))
    paths.append(os.path.join(os.path.dirname(here), "units.py"))
    text = "\n".join([str(getattr(sys.modules.get("pydantic"), "VERSION", ""))] + [_stamp(p) for p in paths])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def validated(path: Path, roots: tuple[str, ...], parse: Callable[[Path], object], cls: type,
              validate: Callable[[object], object]) -> object:
    """``validate(parsed content of path)`` (a ``cls`` object): for a built-in file, the object validated by an
    earlier process when the file and the spec code are as they were then; else validated now (and kept)."""
    p = os.path.abspath(path)
    folder = cache_dir()
    if folder is None or not any(p.startswith(r + os.sep) for r in roots):
        return validate(read(path, roots, parse))
    try:
        st = os.stat(p)
    except OSError:
        return validate(read(path, roots, parse))
    name = "models-" + hashlib.sha256(f"{_roots_key(roots)}|{_code_key()}".encode()).hexdigest()[:32] + ".pickle"
    if name not in _objects:
        _objects[name] = _load(folder / name) or {}
    store = _objects[name]
    entry = f"{cls.__module__}.{cls.__qualname__}|{p}|{_stamp(getattr(sys.modules.get(cls.__module__), '__file__', None) or '')}"
    hit = store.get(entry)
    if hit is not None and (st.st_size, st.st_mtime_ns) == hit[:2]:
        try:
            return pickle.loads(hit[2])
        except Exception:  # noqa: BLE001 -- an entry that no longer loads is validated afresh
            pass
    obj = validate(read(path, roots, parse))
    try:
        store[entry] = (st.st_size, st.st_mtime_ns, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 -- an object that cannot be pickled is simply not kept
        return obj
    _store(folder, name, store, prefix="models-")
    return obj


def clear() -> None:
    """Forget the bundles and validated specs this process loaded."""
    _bundles.clear()
    _keys.clear()
    _objects.clear()
    _code_key.cache_clear()
