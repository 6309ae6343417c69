"""The ``planner`` command: a typer app, one module per command."""

from __future__ import annotations

import sys

import typer

from planner.errors import PlannerError

app = typer.Typer(
    name="planner",
    help="Plan LLM serving deployments: fit, speed, cost and the C/A/P trade of each plan.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from planner.cli import accuracy, calibrate, capacity, catalog, estimate, fit, plan, profile, simulate, study, validate  # noqa: F401  (commands register themselves)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except PlannerError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    except Exception as e:  # click usage errors (typer bundles its own click) arrive here in non-standalone mode
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            print(f"error: {e.format_message()}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
