"""Every example study runs (a reduced sweep through tables, plots and HTML) so none can rot, and its full run
equals the committed outputs in examples/out, which examples/README.md quotes table by table (so it quotes what the
planner computes now); study files validate strictly."""

from pathlib import Path

import pytest

from planner.errors import PlannerError
from planner.studies.report import write_html, write_plots, write_tables
from planner.studies.runner import run_study
from planner.studies.schema import load_study

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def reduced(study, n=2):
    pts = study.sweep.points()[:n]
    axes = {k: [p[k] for p in pts] for k in study.sweep.axes}
    return study.model_copy(update={"sweep": study.sweep.model_copy(update={"mode": "zip", "axes": axes})})


def test_there_are_at_least_eight_examples():
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    study = reduced(load_study(path))
    rows = run_study(study, workers=1)
    assert rows
    metric_keys = {"output_tokens_per_s_per_gpu", "output_tokens_per_s", "gpus", "ttft_mean_s", "feasible", "goodput_rps"}
    for r in rows:
        assert r.get("error") or metric_keys & set(r), r
    write_tables(study, rows, tmp_path)
    plots = write_plots(study, rows, tmp_path)
    html = write_html(study, rows, plots, tmp_path / "r.html")
    text = html.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_outputs_are_current(path):
    """Every point of every study, run in full, equals the committed outputs (what examples/README.md quotes)."""
    study = load_study(path)
    _matches_committed_outputs(study, run_study(study, workers=1))


def _matches_committed_outputs(study, rows):
    """The outputs committed in examples/out (and quoted in examples/README.md) are what the planner computes now:
    each point equals the committed run's same point in every column the study reports."""
    import json
    import math

    from planner.studies.report import columns

    f = EXAMPLES[0].parent / "out" / study.name / f"{study.name}.json"
    committed = json.loads(f.read_text())["points"]
    axes = list(study.sweep.axes)
    for r in rows:
        same = [p for p in committed if all(p.get(a) == r.get(a) for a in axes)]
        assert same, f"{study.name}: no committed point for {({a: r.get(a) for a in axes})}: regenerate examples/out"
        for c in columns(study, rows):
            want, got = same[0].get(c), r.get(c)
            if isinstance(got, float) and isinstance(want, (int, float)) and math.isfinite(got):
                assert got == pytest.approx(want, rel=1e-6), f"{study.name} {c}: {got} now, {want} committed: regenerate examples/out"
            elif isinstance(got, (str, bool, int)) and not isinstance(got, float):
                assert got == want, f"{study.name} {c}: {got!r} now, {want!r} committed: regenerate examples/out"


def test_readme_tables_quote_the_committed_outputs():
    """Every table examples/README.md prints under a study is that study's committed output (examples/out/NAME/NAME.json),
    row by row, each cell as the report formats it: a table cannot drift from the outputs it says it quotes."""
    import json
    import re

    from planner.studies.report import fmt

    def cell(v):
        return ", ".join(map(str, v)) if isinstance(v, list) else fmt(v)  # fmt prints a string as it is

    lines = (EXAMPLES[0].parent / "README.md").read_text().split("\n")
    checked, name = 0, None
    for i, line in enumerate(lines):
        m = re.match(r"## \d+-(.+)", line)
        if m:
            name = m.group(1)
        if not (name and line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---")):
            continue
        header = [c.strip() for c in line.strip().strip("|").split("|")]
        rows = []
        for r in lines[i + 2:]:
            if not r.startswith("|"):
                break
            rows.append(r)
        points = json.loads((EXAMPLES[0].parent / "out" / name / f"{name}.json").read_text())["points"]
        assert len(rows) == len(points), f"{name}: {len(rows)} rows in examples/README.md, {len(points)} points committed"
        for row, point in zip(rows, points):
            want = "| " + " | ".join(cell(point.get(h)) for h in header) + " |"
            assert row.rstrip() == want, f"{name}: README row {row!r} is not the committed output {want!r}"
        checked += 1
        name = None  # one table per study
    assert checked == len(EXAMPLES)


def test_wrong_key_names_file_line_and_expectation(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: x\ncommand: estimate\nbase:\n  model: llama-3.1-8b\n  hardware: h100-sxm\n  gpuz: 2\n")
    with pytest.raises(PlannerError, match=r"s\.yaml:6: base\.gpuz: Extra inputs are not permitted \(an estimate point takes: model, hardware"):
        load_study(f)


def test_wrong_type_in_sweep_names_its_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: x\ncommand: estimate\nbase:\n  model: llama-3.1-8b\n  hardware: h100-sxm\nsweep:\n  axes:\n    isl: [128, lots]\n")
    with pytest.raises(PlannerError, match=r"s\.yaml:8: sweep\.axes\.isl"):
        load_study(f)


def test_zip_axes_must_match(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: x\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm}\nsweep:\n  mode: zip\n  axes: {isl: [1, 2], osl: [3]}\n")
    with pytest.raises(PlannerError, match="same length"):
        load_study(f)


def test_report_numbers_keep_three_significant_figures_without_exponents_near_a_thousand():
    """fmt prints three significant figures and whole numbers with separators from 999.5 up, so a throughput of
    999.6 tokens/s reads 1,000, not 1e+03 (what '.3g' alone prints)."""
    from planner.studies.report import fmt

    assert fmt(999.6) == "1,000" and fmt(1036.4) == "1,036" and fmt(394.2) == "394" and fmt(99.96) == "100"
    assert fmt(0.0287) == "0.0287" and fmt(-999.7) == "-1,000" and fmt(None) == "-"
