"""The command registry, read without importing typer, rich or any command: which module registers each command,
and the top-level help that `planner`, `planner --help` and `planner --version` print from it (no other import).

The summaries are the first paragraph of each command's help: the command modules take them from here (one
source), and tests/test_speed_paths.py checks that this help holds the same words, in the same order, as typer's
rendering of the whole command tree."""

from __future__ import annotations

import os
import sys
import textwrap

DESCRIPTION = "Plan LLM serving deployments: fit, speed, cost and the C/A/P trade of each plan."
EXIT_CODES = ("Exit codes: 0 answered (also when the reader of the output stops early); 2 bad input, or nothing fits / meets the constraints (the binding one named on "
              "stderr); 1 a study with some failed points, or an internal error (a bug); 130 interrupted. Errors are one "
              "line on stderr. Shell completion: planner --install-completion.")

# the module that registers each top-level command (tests/test_speed_paths.py checks this against the full tree)
MODULES = {"accuracy": "accuracy", "calibrate": "calibrate", "capacity": "capacity", "hardware": "catalog",
           "models": "catalog", "estimate": "estimate", "fit": "fit", "plan": "plan", "profile": "profile",
           "simulate": "simulate", "study": "study", "validate": "validate", "engines": "engines"}
ALL = ("accuracy", "calibrate", "capacity", "catalog", "estimate", "fit", "plan", "profile", "simulate", "study",
       "validate", "engines")  # the import order is the order of the commands in --help

_TPOT = "TPOT is the mean time between output tokens after the first"
# command -> the first paragraph of its help, in the order --help lists them
SUMMARIES = {
    "accuracy": "The accuracy model: recovery of each weight format, KV format and KV-eviction method against bf16, task "
                "sensitivities and lossless techniques, every row with its source.",
    "calibrate": "Fit achievable fractions and fixed overheads from the kernel rows of a `planner profile` capture (writes "
                 "CAPTURE/calibrated.yaml, which --hardware accepts by path), or with --published all the kernel/engine "
                 "layer from every published row at once (engines/calibration/).",
    "capacity": "Size a deployment: the smallest number of GPUs (replica plan x replica count) whose simulated p99 TTFT\n"
                "and p99 TPOT (TPOT: the mean time between output tokens of a request after its first, inter-token latency)\n"
                "meet the SLO at --rate. Candidate replica plans come from the plan search (best throughput per GPU under the\n"
                "SLO on the mean, one per replica size, data-parallel attention apart, and disaggregated prefill/decode\n"
                "groups); the event simulator then adds replicas (groups) until the percentiles hold.\n"
                "Prints cost per hour and per month and the latency-versus-load curve up to saturation. --hourly or --daily\n"
                "sizes a daily profile for its peak and reports the average utilization.",
    "estimate": f"Predict one plan: TTFT, TPOT, throughput, memory, cost and a per-op breakdown. {_TPOT} (inter-token "
                "latency). Exit code 2 when the plan does not fit.",
    "fit": "Does it fit? Memory per GPU (weights, KV cache, activations, runtime), max context and concurrency. Exit code "
           "2 when it does not fit.",
    "plan": f"Search parallelism x precision x batching x (dis)aggregation plans; show the C/A/P frontier and recommend "
            f"one. {_TPOT}. The recommendation keeps accuracy within 1 % of bf16 (the MLPerf 99 % rule) unless "
            "--min-accuracy says otherwise. Exit code 2 when no plan meets the constraints (the binding one is named).",
    "profile": "Measure this machine: GEMM/attention/bandwidth/elementwise kernels and end-to-end prefill/decode steps of "
               "a random-weight transformer, into DIR/<host-id>/<date>/.",
    "simulate": "Simulate serving: requests arrive (a workload's arrival process, or a CSV trace) at replicas doing "
                "continuous batching (max sequences, token budget per step, chunked prefill, KV blocks from the memory "
                "model, preemption), with step times from the cost model. Reports TTFT, TPOT (the mean time between "
                "output tokens of a request after its first: inter-token latency), end-to-end latency (mean, p50, p90, "
                "p99), throughput, goodput (requests meeting both SLOs per second), utilization and the queue over time.",
    "study": "Run a YAML what-if study: a base scenario, sweep axes, the command per point (estimate, plan, capacity, "
             "simulate; a point takes the same options as the command), columns and plots. Writes CSV, JSON, plots and "
             "an optional self-contained HTML report. Exit code 1 when some points failed (see the error column), 2 when "
             "every point failed.",
    "validate": "Predict every row of measurement CSVs (default: the built-in published sets) and report the error.",
    "hardware": "Hardware specs: list and show.",
    "models": "Model specs: list, show, import a Hugging Face config.json.",
    "engines": "Serving-engine profiles per engine and version: list and show.",
}

# the root options: (name, help); typer adds the completion options and --help
ROOT_OPTIONS = (("--version", "print the version and exit"),
                ("--install-completion", "Install completion for the current shell."),
                ("--show-completion", "Show completion for the current shell, to copy it or customize the installation."),
                ("--help", "Show this message and exit."))


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("planner")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _panel(title: str, rows: list[tuple[str, ...]], width: int) -> list[str]:
    """A titled box of rows whose last column wraps (the layout typer's help uses)."""
    inner = width - 4  # the two borders and a space inside each
    cols = len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(cols - 1)]
    lead = sum(widths) + 2 * (cols - 1)
    text_w = max(inner - lead, 10)
    lines = [f"╭─ {title} " + "─" * max(width - len(title) - 5, 0) + "╮"]
    for r in rows:
        wrapped = [w for para in r[-1].split("\n")
                   for w in (textwrap.wrap(para, text_w, break_on_hyphens=False) or [""])]
        for i, part in enumerate(wrapped):
            left = "".join(c.ljust(widths[j] + 2) for j, c in enumerate(r[:-1])) if i == 0 else " " * lead
            lines.append("│ " + (left + part).ljust(inner) + " │")
    lines.append("╰" + "─" * (width - 2) + "╯")
    return lines


def help_text(width: int | None = None) -> str:
    """The top-level help: usage, description, exit codes, root options and the commands with their summaries."""
    if width is None:  # what typer's console takes: $TERMINAL_WIDTH, else the terminal's (or $COLUMNS, else 80)
        import shutil

        fixed = os.environ.get("TERMINAL_WIDTH", "")
        width = int(fixed) if fixed.isdigit() else shutil.get_terminal_size((80, 24)).columns
    width = max(width, 40)
    body = width - 2
    out = ["", " Usage: planner [OPTIONS] COMMAND [ARGS]...", ""]
    for para in (DESCRIPTION, EXIT_CODES):
        out += [" " + line for line in textwrap.wrap(para, body, break_on_hyphens=False)] + [""]
    out += _panel("Options", [(name, " " * 4, "<bool>", h) for name, h in ROOT_OPTIONS], width)  # (no short names)
    out += _panel("Commands", [(name, s) for name, s in SUMMARIES.items()], width)
    return "\n".join(out) + "\n\n"


def _completing() -> bool:
    return any(k.startswith("_PLANNER_COMPLETE") or k == "_TYPER_COMPLETE_ARGS" for k in os.environ)


def fast_path(args: list[str]) -> int | None:
    """Answer `planner`, `planner --help` and `planner --version` from the registry (the exit code), or None when
    ``args`` ask for anything else."""
    if _completing() or args not in ([], ["--help"], ["--version"]):
        return None
    if args == ["--version"]:
        print(f"planner {version()}")
        return 0
    sys.stdout.write(help_text())
    return 0 if args else 2  # no command: the help, and the exit code of a usage error
