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


def _register() -> None:
    from planner.cli import accuracy, calibrate, capacity, catalog, estimate, fit, plan, profile, simulate, study, validate  # noqa: F401  (commands register themselves)
    from planner.cli import engines  # noqa: F401


_COMMAND = None


def _command():
    """The click command tree, built once per process (typer rebuilds it on every app() call)."""
    global _COMMAND
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
        rc = _command().main(args=argv, standalone_mode=False, prog_name="planner")
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
