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


def run_json(args, capsys):
    """The JSON document ``planner ARGS`` printed, asserting it exited 0 (its stderr is the failure message)."""
    import json

    code, out, err = run(args, capsys)
    assert code == 0, err
    return json.loads(out)
