"""The fast paths give the same answers as the plain ones: vectorized study points equal ``estimate`` point by point,
and the lazily built command line shows the same help while importing less. (Timings live in benchmarks/.)"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from planner.api import PlanSpec, estimate
from planner.errors import PlannerError
from planner.serving import predict_many
from planner.serving.predict_many import OUTPUTS, estimate_points, is_plain, pick, same
from planner.studies.runner import run_point, run_study
from planner.studies.schema import Study

ISL = [1, 128, 2048, 8192, 32768, 100_000, 700, 4096, 64, 16384]
OSL = [1, 64, 512, 2048, 8192, 1000, 33, 128, 4096, 256]

CASES = {  # (model, hardware, plan, batching, engine)
    "dense-fp8-tp4": ("llama-3.1-70b", "h100-sxm", PlanSpec(tp=4, weights="fp8"), "inflight", "trtllm"),
    "dense-one-gpu-tight": ("llama-3.1-70b", "h100-sxm", PlanSpec(weights="int4"), "inflight", "vllm"),
    "dense-static-pp2": ("llama-3.1-8b", "a100-sxm-80gb", PlanSpec(pp=2), "static", "trtllm"),
    "moe-mla-adp": ("deepseek-v3", "h200-sxm", PlanSpec(tp=1, ep=8, attention_dp=8, weights="fp8"), "inflight", "trtllm"),
    "moe-no-price": ("mixtral-8x7b", "h100-nvl", PlanSpec(tp=2), "inflight", "trtllm"),
    "techniques": ("llama-3.1-8b", "h100-sxm", PlanSpec(chunk_tokens=512, spec_k=3, spec_alpha=0.7, prefix_hit_tokens=32,
                                                        eviction="snapkv:2048"), "inflight", "trtllm"),
    "adaptive-spec-cp": ("qwen3-32b", "h100-sxm", PlanSpec(tp=2, cp=2, spec_alpha=0.8, spec_auto=True,
                                                           context_extension="yarn:4"), "inflight", "vllm"),
    "replicas-dp2": ("llama-3.1-8b", "h100-sxm", PlanSpec(dp=2, weights="fp8"), "inflight", "vllm"),
    "replicas-static-dp2": ("llama-3.1-8b", "l40s", PlanSpec(dp=2), "static", "trtllm"),
}


def _scalar(model, hw, plan, batching, engine, isl, osl, n):
    kw = {"batch": n} if batching == "static" else {"concurrency": n}
    try:
        return estimate(model, hw, plan, isl=isl, osl=osl, batching=batching, engine=engine, **kw).to_dict()
    except PlannerError:
        return None


@pytest.mark.parametrize("case", sorted(CASES))
def test_points_equal_estimate_point_by_point(case):
    model, hw, plan, batching, engine = CASES[case]
    counts = [1, 7, 64, "max", 2048, 3, 512, "max", 16, 100_000] if batching == "inflight" else [1, 7, 64, 256, 2, 3, 512, 5000, 16, 1]
    counts = [c * plan.dp if isinstance(c, int) else c for c in counts]  # a whole batch or client per replica
    kw = {"batch": counts} if batching == "static" else {"concurrency": counts}
    fast = estimate_points(model, hw, plan, isl=ISL, osl=OSL, batching=batching, engine=engine, **kw)
    priced = 0
    for i, d in enumerate(fast):
        ref = _scalar(model, hw, plan, batching, engine, ISL[i], OSL[i], counts[i])
        if d is None:
            continue  # estimate answers these itself (the runner sends them there)
        assert ref is not None, f"{case} point {i}: estimate refuses what the vectorized path priced"
        assert same(d, ref), [(k, pick(d, k), pick(ref, k)) for k in OUTPUTS if pick(d, k) != pick(ref, k)]
        priced += 1
    assert priced >= 8, f"{case}: only {priced} of {len(fast)} points took the vectorized path"
    fitting = [d for d in fast if d is not None and d["fits"]]
    assert fitting and all(d["ttft_s"] > 0 and d["tpot_s"] > 0 for d in fitting)  # not a pass over NaNs


def test_clients_and_batches_count_the_whole_deployment():
    # --concurrency and --batch count every replica together: 2 replicas with 64 clients run as 1 with 32 each, twice
    one = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="fp8"), isl=1024, osl=256, concurrency=32)
    two = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="fp8", dp=2), isl=1024, osl=256, concurrency=64)
    assert two.ttft_s == pytest.approx(one.ttft_s) and two.tpot_s == pytest.approx(one.tpot_s)
    assert two.output_tokens_per_s == pytest.approx(2 * one.output_tokens_per_s)
    assert two.output_tokens_per_s_per_gpu == pytest.approx(one.output_tokens_per_s_per_gpu)
    assert (two.plan["batch_or_concurrency"], two.plan["running"]) == (64, 64)
    # past what memory admits, the queue note counts the whole deployment too
    many = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="fp8", dp=2), isl=1024, osl=256, concurrency=100_000)
    cap = many.max_concurrency
    assert many.plan["running"] == cap and f"{100_000 - cap} wait" in " ".join(many.notes)
    st1 = estimate("llama-3.1-8b", "l40s", PlanSpec(), isl=512, osl=64, batching="static", batch=4)
    st2 = estimate("llama-3.1-8b", "l40s", PlanSpec(dp=2), isl=512, osl=64, batching="static", batch=8)
    assert st2.tpot_s == pytest.approx(st1.tpot_s) and st2.output_tokens_per_s == pytest.approx(2 * st1.output_tokens_per_s)
    with pytest.raises(PlannerError, match="without a client"):
        estimate("llama-3.1-8b", "h100-sxm", PlanSpec(dp=4), concurrency=3)
    with pytest.raises(PlannerError, match="multiple of 2"):
        estimate("llama-3.1-8b", "l40s", PlanSpec(dp=2), batching="static", batch=5)


def test_plans_with_other_techniques_are_left_to_estimate():
    for plan in (PlanSpec(lora="100:16"), PlanSpec(kv_offload=True), PlanSpec(prompt_compression="llmlingua-2:4"),
                 PlanSpec(spec_k=2, spec_alpha=0.6, draft_model="llama-3.2-1b"), PlanSpec(weight_offload="host")):
        assert not is_plain(plan)
        assert estimate_points("llama-3.1-8b", "h100-sxm", plan, isl=[512] * 3, osl=[64] * 3) == [None] * 3
    assert is_plain(PlanSpec(tp=2, spec_k=2, spec_alpha=0.5, eviction="snapkv:1024"))


def _study(axes: dict, base: dict | None = None) -> Study:
    return Study.model_validate({"name": "t", "command": "estimate", "sweep": {"mode": "product", "axes": axes},
                                 "base": base or {"model": "llama-3.1-70b", "hardware": "h100-sxm", "gpus": 4, "weights": "fp8"}})


def _rows_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert list(x) == list(y)  # same columns, same order
        for k in x:
            u, v = x[k], y[k]
            assert type(u) is type(v), (k, u, v)
            if isinstance(u, float) and not (math.isnan(u) and math.isnan(v)):
                assert u == pytest.approx(v, rel=1e-9, abs=0), k
            elif not isinstance(u, float):
                assert u == v, k


def test_study_rows_equal_one_estimate_per_point():
    # two groups of 12 (tp 4 and tp 8), a group too small to share (tp 2 x 2 points, not fitting at 128k) and
    # points that fail validation (context past the model's) with their error column
    study = _study({"gpus": [4, 8], "isl": [256, 4096, 131072], "osl": [128, 2048],
                    "concurrency": [1, 64]})
    rows = run_study(study, workers=1)
    _rows_equal(rows, [run_point("estimate", p) for p in study.point_params()])
    assert any(r["error"] for r in rows) and sum(not r["error"] for r in rows) >= 16


def test_study_points_that_differ_only_in_engine_settings_are_priced_on_their_own_engine():
    # the memory fraction, the sampler path and the polling interval change the engine, not the plan: a group of
    # points priced in one pass must share them (the first point's engine used to price the whole group)
    base = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "engine": "vllm", "isl": 1024, "osl": 256}
    study = _study({"memory_fraction": [0.5, 0.9], "concurrency": [1, 8, 64, 128, 256, 512, 1024, 2048]}, base)
    rows = run_study(study, workers=1)
    _rows_equal(rows, [run_point("estimate", p) for p in study.point_params()])
    by_fraction = {r["memory_fraction"]: r for r in rows if r["concurrency"] == 2048}
    assert by_fraction[0.5]["output_tokens_per_s"] != by_fraction[0.9]["output_tokens_per_s"]
    study = _study({"recv_interval": [1, 30], "concurrency": [2, 4, 8, 16, 32, 64, 128, 256]},
                   {**base, "engine": "sglang"})
    rows = run_study(study, workers=1)
    _rows_equal(rows, [run_point("estimate", p) for p in study.point_params()])
    by_interval = {r["recv_interval"]: r["ttft_s"] for r in rows if r["concurrency"] == 64}
    assert by_interval[30] > 2 * by_interval[1]


def test_study_with_a_drifted_fast_path_falls_back_to_estimate(monkeypatch):
    # the first point of each group is also priced by estimate: a disagreement sends the whole group there
    real = predict_many.estimate_points

    def drifted(*a, **k):
        out = real(*a, **k)
        for d in out:
            if d is not None:
                d["tpot_s"] *= 1.01
        return out

    monkeypatch.setattr(predict_many, "estimate_points", drifted)
    study = _study({"isl": [256, 1024, 4096], "osl": [64, 512, 1024]})
    _rows_equal(run_study(study, workers=1), [run_point("estimate", p) for p in study.point_params()])


# ------------------------------------------------------------------ start-up

def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["--version"], []])
def test_help_and_version_import_no_cli_framework_numerics_or_command(args):
    r = _python("import sys\nfrom planner.cli.app import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
                "print('MODULES', *sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'scipy', 'matplotlib', "
                "'markdown_it', 'pygments', 'typer', 'rich', 'pydantic', 'yaml') or m.startswith('planner.costmodel') "
                "or m.startswith('planner.cli.') and m != 'planner.cli.registry' and m != 'planner.cli.app'))" % args)
    assert r.returncode == 0, r.stderr
    assert ("planner " if args == ["--version"] else "Commands") in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "MODULES"


def _words(text: str) -> list[str]:
    return [w for w in text.translate({ord(c): " " for c in "╭╮╰╯│─"}).split()]


@pytest.mark.parametrize("columns", ["60", "100"])
def test_top_level_help_says_what_typer_would(columns):
    # the registry's help (no typer) against typer's rendering of the whole command tree
    env = {**os.environ, "COLUMNS": columns}
    fast = subprocess.run([sys.executable, "-m", "planner", "--help"], capture_output=True, text=True, timeout=120, env=env)
    typer_help = subprocess.run([sys.executable, "-c", "from planner.cli import app\napp._command().main(args=['--help'], "
                                 "standalone_mode=False, prog_name='planner')"], capture_output=True, text=True,
                                timeout=120, env=env)
    assert fast.returncode == typer_help.returncode == 0, typer_help.stderr
    assert _words(fast.stdout) == _words(typer_help.stdout), \
        "planner/cli/registry.py (SUMMARIES, ROOT_OPTIONS) no longer matches the commands' help: update it"
    assert "Commands" in fast.stdout and "--install-completion" in fast.stdout


def test_no_command_prints_the_help_and_exits_2():
    r = subprocess.run([sys.executable, "-m", "planner"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Usage: planner" in r.stdout and r.stderr == ""


@pytest.mark.parametrize("args", [["estimate", "--help"], ["hardware", "--help"], ["study", "--help"]])
def test_help_text_is_the_same_with_the_whole_tree_and_real_markdown(args):
    # fast: the stand-in markdown and traceback modules and, for a command, only its module; reference: both
    # imported up front (no stand-ins) and every command registered first
    run = "from planner.cli.app import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n" % args
    fast = _python(run)
    full = _python("import rich.markdown, rich.traceback\nfrom planner.cli import app\napp._command()\n" + run)
    assert fast.returncode == full.returncode == 0
    assert fast.stdout == full.stdout and "Usage" in fast.stdout


def test_every_command_is_registered_by_the_module_the_table_names():
    from planner.cli import app as app_mod

    app_mod._command()  # the whole tree
    seen = {}
    for info in app_mod.app.registered_commands:
        seen[info.name] = info.callback.__module__
    for info in app_mod.app.registered_groups:
        seen[info.name] = info.typer_instance.registered_commands[0].callback.__module__
    assert set(seen) == set(app_mod.MODULES)
    assert all(mod == f"planner.cli.{app_mod.MODULES[name]}" for name, mod in seen.items()), seen


# ------------------------------------------------------------------ `planner estimate` without typer

# (a command line after `estimate`, whether the direct reading takes it; the others go to typer as before)
DIRECT_LINES = [
    (["-m", "llama-3.1-8b", "-H", "h100-sxm"], True),
    (["--model", "deepseek-v3", "--hardware", "h200-sxm", "--gpus", "8", "--weights", "fp8", "--json"], True),
    (["--model=llama-3.1-70b", "--hardware=h100-sxm", "--gpus=2", "--kv-offload", "--spec", "3:0.7", "--pue", "1.2",
      "--csv", "--isl", "4096", "--utilization", ".5", "--rate", "2e1", "--model-offload=x"], False),  # a typo
    (["--model=llama-3.1-70b", "--hardware=h100-sxm", "--gpus=2", "--kv-offload", "--spec", "3:0.7", "--pue", "1.2",
      "--csv", "--isl", "4096", "--utilization", ".5", "--rate", "2e1"], True),
    (["-H", "l4", "-m", "qwen3-8b", "--no-kv-offload", "--concurrency", "max", "--json", "--csv"], True),
    (["-m", "", "-H", "h100-sxm", "--batching", "static", "--batch", "0"], True),  # pydantic's checks, as before
    (["-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1.5"], False),  # typer's own message for a non-integer
    (["-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "-1"], False),
    (["-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "2", "--gpus", "4"], False),  # repeated: typer's rule
    (["-m", "llama-3.1-8b", "-H", "h100-sxm", "--json=1"], False),
    (["-m", "llama-3.1-8b", "-H", "h100-sxm", "--pue", "inf"], False),
    (["-m", "llama-3.1-8b", "-H", "h100-sxm", "--model"], False),  # no value
    (["-m", "llama-3.1-8b"], False),  # a required option missing
    (["-m", "llama-3.1-8b", "-H", "h100-sxm", "--help"], False),
    (["-m", "llama-3.1-8b", "-H", "h100-sxm", "extra"], False),
    (["-mllama-3.1-8b", "-H", "h100-sxm"], False),
]


# the same for `planner plan`: list options given once, a path, an integer in a range, a text option
PLAN_LINES = [
    (["-m", "deepseek-v3", "-H", "h200-sxm", "--gpus", "64", "--isl", "2000", "--osl", "500", "--json"], True),
    (["-m", "llama-3.1-70b", "-H", "h100-sxm,b200", "--gpus", "8", "--concurrency", "1,8,64", "--weights", "fp8,bf16",
      "--plot", "out.png", "--top", "3", "--emit", "vllm", "--no-disagg", "--ttft", "500ms", "--min-accuracy", "0.98"], True),
    (["-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "8", "--top", "0"], False),  # out of --top's range: typer's message
    (["-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "8", "--top", "10001"], False),
    (["-m", "llama-3.1-70b", "-H", "h100-sxm", "-H", "b200", "--gpus", "8"], False),  # a list option repeated: typer's rule
    (["-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "8", "--spec", "3:0.7", "--eviction", "snapkv:2048", "--offload",
      "--plot-terminal", "--csv"], True),
    (["-m", "llama-3.1-70b", "--gpus", "8"], False),  # --hardware is required
]


@pytest.mark.parametrize("command,line,direct_reads",
                         [("estimate", *x) for x in DIRECT_LINES] + [("plan", *x) for x in PLAN_LINES])
def test_a_plain_line_gets_the_values_typer_would_pass(command, line, direct_reads, monkeypatch):
    from planner.cli import app as app_mod, options

    assert command in app_mod.DIRECT
    app_mod._register((command,))
    direct = options.parse_direct(command, list(line))
    assert (direct is not None) == direct_reads
    seen = []
    monkeypatch.setattr(options, "invoke", lambda req_name, ui, body, kw: seen.append(dict(kw)))
    try:
        app_mod._command([command]).main(args=[command, *line], standalone_mode=False, prog_name="planner")
    except Exception as e:  # noqa: BLE001 -- typer refused the line (a usage error): the direct reading declined it
        assert hasattr(e, "format_message") and direct is None, (line, e)
        return
    if direct is not None:
        assert seen == [direct]
        assert all(type(direct[k]) is type(v) for k, v in seen[0].items())  # 2 and 2.0 differ here


def test_plain_estimate_needs_neither_typer_nor_rich_for_json():
    # the first run after a data change (a fresh checkout, as in CI) parses the YAML and fills the spec cache;
    # the path measured here is the one every later run takes
    warm = _python("from planner.cli.app import main\ntry:\n    main(['estimate', '-m', 'llama-3.1-8b', '-H', 'h100-sxm', "
                   "'--json'])\nexcept SystemExit:\n    pass\n")
    assert warm.returncode == 0, warm.stderr
    r = _python("import sys\nfrom planner.cli.app import main\ntry:\n    main(['estimate', '-m', 'llama-3.1-8b', '-H', "
                "'h100-sxm', '--json'])\nexcept SystemExit:\n    pass\nprint('MODULES', *sorted(m for m in sys.modules "
                "if m.split('.')[0] in ('typer', 'rich', 'yaml') or m in ('numpy.ma', 'importlib.metadata')))")
    assert r.returncode == 0, r.stderr
    assert '"ttft_s"' in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "MODULES"


def test_plain_plan_needs_neither_typer_nor_rich_for_json():
    line = "'plan', '-m', 'llama-3.1-8b', '-H', 'h100-sxm', '--gpus', '2', '--json'"
    warm = _python(f"from planner.cli.app import main\ntry:\n    main([{line}])\nexcept SystemExit:\n    pass\n")
    assert warm.returncode == 0, warm.stderr
    r = _python(f"import sys\nfrom planner.cli.app import main\ntry:\n    main([{line}])\nexcept SystemExit:\n    pass\n"
                "print('MODULES', *sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'yaml')))")
    assert r.returncode == 0, r.stderr
    assert '"recommended"' in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "MODULES"


@pytest.mark.parametrize("line", [
    ["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "2", "--csv"],  # runs without typer
    ["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm"],  # without typer, rich for the table
    ["models", "list"],  # through typer
])
def test_a_reader_that_stops_early_ends_the_command_quietly(line):
    # the pipe's reader is gone before the command writes (`planner ... | head` once head has its lines): exit 0,
    # nothing on stderr (it was a traceback where typer was not loaded: a nested empty tuple in an except clause)
    p = subprocess.Popen([sys.executable, "-m", "planner", *line], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "COLUMNS": "100"})
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert err == ""


def test_a_simulated_rate_reports_the_whole_deployment():
    # estimate --rate R with --dp replicas: the reported batch and the memory at it count every replica together, the
    # memory per GPU being that of one replica at its own mean batch
    from planner.api import estimate_at_rate

    d = estimate_at_rate("llama-3.1-8b", "h100-sxm", PlanSpec(dp=2), rate=20, isl=1024, osl=256, requests=400)
    per_replica = d["plan"]["batch_or_concurrency"] // 2
    assert d["plan"]["batch_or_concurrency"] == d["plan"]["running"] == 2 * per_replica
    one = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=1024, osl=256, concurrency=per_replica)
    assert d["memory"]["kv_cache_bytes"] == pytest.approx(one.memory["kv_cache_bytes"])
