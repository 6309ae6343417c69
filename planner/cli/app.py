"""The ``planner`` command: a typer app, one module per command. `planner`, `--help` and `--version` are answered
from the registry (planner/cli/registry.py) without importing typer; ``app`` is built on first use. A plain
`planner estimate` or `planner plan` line (DIRECT; planner/cli/options.py: parse_direct) runs without building the typer
command."""

from __future__ import annotations

import os
import sys

from planner.cli.registry import ALL, DESCRIPTION, EXIT_CODES, MODULES, _completing, fast_path  # noqa: F401 (re-exported)
from planner.errors import PlannerError


def _build_app():
    import typer

    app = typer.Typer(
        name="planner",
        help=DESCRIPTION + "\n\n" + EXIT_CODES,
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                           help="print the version and exit")):
        """Plan LLM serving deployments: fit, speed, cost and the C/A/P trade of each plan."""

    return app


def _app():
    if "app" not in globals():
        globals()["app"] = _build_app()
    return globals()["app"]


def __getattr__(name: str):
    """``app`` (the typer app the command modules register on) loads typer on first use."""
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _version(value: bool) -> None:
    if value:
        import typer

        from planner.cli.registry import version

        print(f"planner {version()}")
        raise typer.Exit(0)


def _register(modules: tuple[str, ...] = ALL) -> None:
    import importlib

    for name in modules:  # commands register themselves on import (or declare themselves, to be registered now)
        importlib.import_module(f"planner.cli.{name}")
        if name in DIRECT.values():
            from planner.cli.options import register_pending

            register_pending(_app())


# commands that answer a plain command line without typer: command -> its module (declared with command(None, ...))
DIRECT = {"estimate": "estimate", "plan": "plan"}


def _direct(args: list[str]):
    """Run ``args`` when they are a plain line of a DIRECT command; False when typer has to read them."""
    if not args or args[0] not in DIRECT or _completing():
        return False
    import importlib

    importlib.import_module(f"planner.cli.{DIRECT[args[0]]}")
    from planner.cli.options import DECLARED, invoke, parse_direct

    values = parse_direct(args[0], args[1:])
    if values is None:
        return False
    req_name, ui, body = DECLARED[args[0]]
    return invoke(req_name, ui, body, values)


def _typer_errors(name: str) -> tuple:
    """(typer's exception class ``name``,) when typer is loaded, else () (nothing raises one then): a tuple either way,
    so it can stand in an ``except`` clause beside other classes."""
    typer = sys.modules.get("typer")
    return (getattr(typer, name),) if typer is not None else ()


# modules typer's help renderer imports at its top but this app never uses: markdown (help is in rich markup mode;
# markdown_it costs ~0.1 s) and tracebacks (pretty exceptions are off; pygments). Names it imports from each.
DEFERRED = {"rich.markdown": ("Markdown",), "rich.traceback": ("Traceback",)}


def _defer(module: str, names: tuple[str, ...]) -> None:
    """A stand-in for ``module`` that imports the real one on first use: building one of ``names``, reading an
    attribute of one, or reading any other attribute of the module."""
    if module in sys.modules:
        return
    import importlib
    import types

    stub = types.ModuleType(module)

    def real():
        if sys.modules.get(module) is stub:
            del sys.modules[module]
        return importlib.import_module(module)

    def attr(name: str):
        if name.startswith("__"):  # the import system probes __path__ and the like: not a use
            raise AttributeError(name)
        return getattr(real(), name)

    class Lazy(type):
        def __getattr__(cls, name):
            return getattr(getattr(real(), cls.__name__), name)

    for name in names:
        setattr(stub, name, Lazy(name, (), {"__new__": lambda cls, *a, **k: getattr(real(), cls.__name__)(*a, **k)}))
    stub.__getattr__ = attr  # type: ignore[attr-defined]
    parent, _, leaf = module.rpartition(".")
    sys.modules[module] = stub
    setattr(importlib.import_module(parent), leaf, stub)


def _defer_help_imports() -> None:
    for module, names in DEFERRED.items():
        _defer(module, names)


_PLUGIN_LOADER = "pydantic.plugin._loader"


def _skip_plugin_lookup() -> None:
    """While pydantic plugins are disabled (main sets PYDANTIC_DISABLE_PLUGINS), a stand-in for pydantic's plugin
    loader answers "no plugins" without importing importlib.metadata (and email, zipfile, ...: ~15 ms); should the
    setting be lifted later in the process, the real loader takes over."""
    if _PLUGIN_LOADER in sys.modules:
        return
    import types

    stub = types.ModuleType(_PLUGIN_LOADER)

    def get_plugins():
        if os.getenv("PYDANTIC_DISABLE_PLUGINS") in ("__all__", "1", "true"):
            return ()
        import importlib

        if sys.modules.get(_PLUGIN_LOADER) is stub:
            del sys.modules[_PLUGIN_LOADER]
        return importlib.import_module(_PLUGIN_LOADER).get_plugins()

    stub.get_plugins = get_plugins  # type: ignore[attr-defined]
    sys.modules[_PLUGIN_LOADER] = stub


_COMMAND = None
_COMMAND_OF: dict[str, object] = {}


def _command(args: list[str] | None = None):
    """The click command tree, built once per process (typer rebuilds it on every app() call). When the first of
    the command-line ``args`` names a command, only that command's module is imported: `planner estimate` does
    not pay for the imports of every other command. Without ``args``: the whole tree."""
    import typer

    global _COMMAND
    first = args[0] if args else None
    completing = _completing()
    if (first in MODULES or first == "--version") and _COMMAND is None and not completing:
        if first not in _COMMAND_OF:
            _register((MODULES[first],) if first in MODULES else ())  # --version needs no command
            _COMMAND_OF[first] = typer.main.get_command(_app())
        return _COMMAND_OF[first]
    if _COMMAND is None:
        _register()
        _COMMAND = typer.main.get_command(_app())
    return _COMMAND


# glibc's malloc hands a large freed block back to the kernel (munmap, or trimming the top of the heap), and the next
# allocation of that size faults its pages in again. The plan search allocates and frees many 0.5-5 MB arrays: with
# the defaults the first DeepSeek-V3 search on 64 H200 takes ~90 k page faults and 0.37 s of system time (median of 8),
# with these 0.24 s (whole process 1.95 -> 1.76 s median). A command is one short process, so it keeps what it freed.
MALLOC_SETTINGS = ((-3, 256 << 20), (-1, 1 << 30), (-2, 64 << 20))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD (bytes)


def _keep_freed_memory() -> None:
    """Raise glibc's mmap and trim thresholds for this process (Linux with glibc only; a MALLOC_* or GLIBC_TUNABLES
    setting in the environment wins, and elsewhere nothing changes)."""
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    for param, value in MALLOC_SETTINGS:
        mallopt(param, value)


def _fail(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code) from None


def cli() -> None:
    """The ``planner`` command (console script and ``python -m planner``): ``main``, then the process ends without the
    interpreter's teardown. A finished command's modules and arrays need not be freed one by one (DeepSeek-V3 on
    64 H200: about 0.08 s of a 1.1 s ``plan``); stdout and stderr are flushed and atexit handlers run first, and an
    exception other than SystemExit still ends the usual way."""
    try:
        main()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:  # SystemExit("message"): Python prints it and exits 1
            print(e.code, file=sys.stderr)
            code = 1
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader is gone (a closed pipe): what it read was the answer
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    rc = fast_path(args)
    if rc is not None:
        if rc:
            raise SystemExit(rc)
        return
    # pydantic looks for third-party plugins (importlib.metadata entry points) when it builds its first model; the
    # planner uses none. An explicit setting in the environment still wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _skip_plugin_lookup()
    _keep_freed_memory()
    try:
        rc = _direct(args)
        if rc is False:
            _defer_help_imports()
            rc = _command(sys.argv[1:] if argv is None else argv).main(args=argv, standalone_mode=False, prog_name="planner")
    except PlannerError as e:
        _fail(str(e))
    except BrokenPipeError:  # the reader stopped early (`| head`): what it read was the answer
        from planner.cli.common import reader_gone

        reader_gone()
    except (*_typer_errors("Abort"), KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except _typer_errors("Exit") as e:
        raise SystemExit(e.exit_code) from None
    except UnicodeDecodeError as e:  # a binary or mis-encoded input file
        _fail(f"an input file is not UTF-8 text ({e.reason} at byte {e.start})")
    except OSError as e:  # a path that cannot be read or written, found late
        where = e.filename or ""
        _fail(f"{where}: {e.strerror or e}" if where else f"{e.strerror or e}")
    except Exception as e:  # click usage errors (typer bundles its own click) arrive here in non-standalone mode
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            msg = " ".join(e.format_message().split())
            if not msg:  # a group named without its command: its help was the answer (no empty error line)
                raise SystemExit(2) from None
            _fail(msg, 2)
        if os.environ.get("PLANNER_DEBUG"):
            raise
        # a bug, not the user's input: still one line (PLANNER_DEBUG=1 shows the traceback), exit 1
        _fail(f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} (a bug; PLANNER_DEBUG=1 shows the traceback)", 1)
    if isinstance(rc, int) and not isinstance(rc, bool) and rc:  # typer.Exit(n) returns n when not standalone
        raise SystemExit(rc)
