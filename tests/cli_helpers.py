"""Run the planner CLI in-process and capture what it printed."""

from planner.cli.app import main


def run(args, capsys):
    """(exit code, stdout, stderr) of ``planner ARGS``."""
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
