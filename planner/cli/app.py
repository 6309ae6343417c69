"""The ``planner`` command: a typer app, one module per command."""

from __future__ import annotations

import os
import sys

import typer

from planner.errors import PlannerError

EXIT_CODES = ("Exit codes: 0 answered; 2 bad input, or nothing fits / meets the constraints (the binding one named on "
              "stderr); 1 a study with some failed points, or an internal error (a bug); 130 interrupted. Errors are one "
              "line on stderr. Shell completion: planner --install-completion.")

app = typer.Typer(
    name="planner",
    help="Plan LLM serving deployments: fit, speed, cost and the C/A/P trade of each plan.\n\n" + EXIT_CODES,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("planner")
        except PackageNotFoundError:
            v = "unknown (not installed)"
        print(f"planner {v}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit")):
    """Plan LLM serving deployments: fit, speed, cost and the C/A/P trade of each plan."""


# the module that registers each top-level command (tests/test_speed_paths.py checks this against the full tree)
MODULES = {"accuracy": "accuracy", "calibrate": "calibrate", "capacity": "capacity", "hardware": "catalog",
           "models": "catalog", "estimate": "estimate", "fit": "fit", "plan": "plan", "profile": "profile",
           "simulate": "simulate", "study": "study", "validate": "validate", "engines": "engines"}
ALL = ("accuracy", "calibrate", "capacity", "catalog", "estimate", "fit", "plan", "profile", "simulate", "study",
       "validate", "engines")  # the import order is the order of the commands in --help


def _register(modules: tuple[str, ...] = ALL) -> None:
    import importlib

    for name in modules:  # commands register themselves on import
        importlib.import_module(f"planner.cli.{name}")


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


_COMMAND = None
_COMMAND_OF: dict[str, object] = {}


def _command(args: list[str] | None = None):
    """The click command tree, built once per process (typer rebuilds it on every app() call). When the first of
    the command-line ``args`` names a command, only that command's module is imported: `planner estimate` does
    not pay for the imports of every other command. Without ``args``: the whole tree."""
    global _COMMAND
    first = args[0] if args else None
    completing = any(k.startswith("_PLANNER_COMPLETE") or k == "_TYPER_COMPLETE_ARGS" for k in os.environ)
    if (first in MODULES or first == "--version") and _COMMAND is None and not completing:
        if first not in _COMMAND_OF:
            _register((MODULES[first],) if first in MODULES else ())  # --version needs no command
            _COMMAND_OF[first] = typer.main.get_command(app)
        return _COMMAND_OF[first]
    if _COMMAND is None:
        _register()
        _COMMAND = typer.main.get_command(app)
    return _COMMAND


def _fail(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code) from None


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        _defer_help_imports()
        rc = _command(sys.argv[1:] if argv is None else argv).main(args=argv, standalone_mode=False, prog_name="planner")
    except PlannerError as e:
        _fail(str(e))
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    except UnicodeDecodeError as e:  # a binary or mis-encoded input file
        _fail(f"an input file is not UTF-8 text ({e.reason} at byte {e.start})")
    except OSError as e:  # a path that cannot be read or written, found late
        where = e.filename or ""
        _fail(f"{where}: {e.strerror or e}" if where else f"{e.strerror or e}")
    except Exception as e:  # click usage errors (typer bundles its own click) arrive here in non-standalone mode
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            _fail(" ".join(e.format_message().split()), 2)
        if os.environ.get("PLANNER_DEBUG"):
            raise
        # a bug, not the user's input: still one line (PLANNER_DEBUG=1 shows the traceback), exit 1
        _fail(f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} (a bug; PLANNER_DEBUG=1 shows the traceback)", 1)
    if isinstance(rc, int) and not isinstance(rc, bool) and rc:  # typer.Exit(n) returns n when not standalone
        raise SystemExit(rc)
