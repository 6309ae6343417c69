"""The CLI contract: JSON keys, clear one-line errors with exit code 2, no tracebacks."""

import json
import subprocess
import sys

import pytest

from cli_helpers import run, run_json




ESTIMATE_KEYS = {"ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu",
                 "requests_per_s", "memory", "max_context_tokens", "max_concurrency", "accuracy", "cost", "plan", "breakdown"}


def test_estimate_json_contract(capsys):
    code, out, err = run(["estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "4", "--weights", "fp8", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert ESTIMATE_KEYS <= set(d)
    assert {"fits", "weights_bytes", "kv_cache_bytes", "total_bytes_per_gpu", "capacity_bytes_per_gpu"} <= set(d["memory"])
    assert d["memory"]["fits"] is True
    assert d["plan"]["tp"] == 4
    # physics: per-GPU throughput is the total over 4 GPUs; e2e = ttft + (osl-1) x tpot
    assert d["output_tokens_per_s_per_gpu"] == pytest.approx(d["output_tokens_per_s"] / 4)
    assert d["e2e_latency_s"] == pytest.approx(d["ttft_s"] + 255 * d["tpot_s"])
    assert d["cost"]["usd_per_million_output_tokens"] > 0
    assert all(r["bound"] in ("compute", "memory", "communication", "overhead") for r in d["breakdown"]["decode"])


def test_static_batching(capsys):
    code, out, err = run(["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--batching", "static", "--batch", "16",
                          "--isl", "128", "--osl", "64", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["requests_per_s"] * 64 == pytest.approx(d["output_tokens_per_s"])


def test_does_not_fit_answers_and_exits_2(capsys):
    # the JSON answer is still printed, and the exit code says nothing fits (one line on stderr)
    code, out, err = run(["estimate", "-m", "llama-3.1-405b", "-H", "l4", "--json"], capsys)
    assert code == 2
    d = json.loads(out)
    assert d["memory"]["fits"] is False
    assert "does not fit" in d["reason"] and err.startswith("error: does not fit") and len(err.strip().splitlines()) == 1


def test_does_not_fit_points_to_the_released_format(capsys):
    # gpt-oss-120b in bf16 is 218 GiB; it is released with MXFP4 experts (60.8 GiB, its model card), which fit one H100
    code, out, err = run(["estimate", "-m", "gpt-oss-120b", "-H", "h100-sxm", "--weights", "bf16"], capsys)
    assert code == 2 and "released with mxfp4 experts, 60.8 GiB: --weights mxfp4" in err
    assert "error band" not in out  # no band around numbers a plan that does not fit has none of
    code, _, err = run(["estimate", "-m", "gpt-oss-120b", "-H", "h100-sxm", "--weights", "mxfp4"], capsys)
    assert code == 0, err
    # without --weights a model is served in the format it is released in; a 16-bit release stays bf16
    for model, fmt in (("gpt-oss-120b", "mxfp4"), ("deepseek-v3", "fp8"), ("llama-3.1-8b", "bf16")):
        code, out, err = run(["estimate", "-m", model, "-H", "h200-sxm", "--gpus", "8", "--json"], capsys)
        assert code == 0 and json.loads(out)["plan"]["weights"] == fmt, (model, err)
    # a dense model released in bf16 gets no such pointer
    code, _, err = run(["estimate", "-m", "llama-3.1-405b", "-H", "l4"], capsys)
    assert code == 2 and "released with" not in err


@pytest.mark.parametrize("args, fragment", [
    (["estimate", "-m", "llama-3.1-70", "-H", "h100-sxm"], "did you mean"),
    (["estimate", "-m", "llama-3.1-70b", "-H", "h100"], "unknown hardware"),
    (["estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--tp", "3"], "does not divide"),
    (["estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--weights", "fp7"], "unknown precision"),
    (["estimate", "-m", "llama-3.1-70b", "-H", "a100-sxm-80gb", "--weights", "fp8", "--activations", "fp8"], "cannot run"),
    (["estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--isl", "0"], "at least 1"),
    (["estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "-2"], "positive"),
    (["estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--rate", "0"], "must be positive"),
    (["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--requests", "50"], "give --rate, or --concurrency N"),
    (["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--rate", "2", "--requests", "0"], "at least 1"),
    (["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--ep", "2"], "mixture-of-experts"),
    (["validate", "/nonexistent.csv"], "does not exist"),
    (["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--endpoint", "responses"], "'completions' or 'chat'"),
    (["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--memory-fraction", "1.5"], "at most 1"),
    (["estimate", "-m", "gpt-oss-120b", "-H", "h100-sxm", "--engine", "vllm"], "--gpu-memory-utilization 0.92"),
    (["plan", "-m", "gpt-oss-120b", "-H", "h100-sxm", "--gpus", "1", "--engine", "vllm", "--isl", "1000", "--osl", "1000"],
     "--memory-fraction sets another"),
])
def test_user_errors_exit_2_one_line(args, fragment, capsys):
    code, out, err = run(args, capsys)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_malformed_yaml_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "hw.yaml"
    bad.write_text("id: x\nname: [unclosed\n")
    code, _, err = run(["estimate", "-m", "llama-3.1-8b", "-H", str(bad)], capsys)
    assert code == 2 and f"{bad}:" in err


def test_malformed_json_import(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 10,\n oops}')
    code, _, err = run(["models", "import", str(bad)], capsys)
    assert code == 2 and "config.json:2" in err


def test_models_show_counts(capsys):
    code, out, _ = run(["models", "show", "deepseek-v3", "--json"], capsys)
    d = json.loads(out)
    assert code == 0
    assert abs(d["total_params"] - 671e9) / 671e9 < 0.01
    assert d["active_params"] < d["total_params"]
    # the routing skew the cost model prices, with where it comes from (DeepSeek-V3 has the 256 experts it was measured on)
    assert d["routing_skew"] == pytest.approx(1.28) and "DeepSeek-R1" in d["routing_skew_source"]
    code, out, _ = run(["models", "show", "mixtral-8x7b", "--json"], capsys)
    assert json.loads(out)["routing_skew"] == pytest.approx(1.28 * (8 / 256) ** 0.5, abs=1e-4)
    code, out, _ = run(["models", "show", "llama-3.1-8b", "--json"], capsys)
    assert "routing_skew" not in json.loads(out)


def test_models_import_roundtrip(tmp_path, capsys):
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
           "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 131072,
           "hidden_act": "silu", "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    out_yaml = tmp_path / "m.yaml"
    code, out, err = run(["models", "import", str(path), "--id", "my-8b", "--out", str(out_yaml)], capsys)
    assert code == 0, err
    code, out, err = run(["models", "show", str(out_yaml), "--json"], capsys)
    assert code == 0, err
    # the Llama-3.1-8B architecture: 8.03B parameters
    assert json.loads(out)["total_params"] == pytest.approx(8.03e9, rel=0.01)


def test_fit_and_lists(capsys):
    code, out, _ = run(["fit", "-m", "llama-3.1-70b", "-H", "h200-sxm", "--weights", "fp8", "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["fits"] and d["max_context_tokens"] > 0 and d["max_concurrency"] > 0
    assert run(["hardware", "list"], capsys)[0] == 0
    assert run(["models", "list"], capsys)[0] == 0
    code, out, _ = run(["hardware", "show", "h100-nvl", "--json"], capsys)
    assert code == 0 and json.loads(out)["id"] == "h100-nvl"


def test_unpublished_peak_is_said_not_invented(capsys):
    # the Xeon 8480+'s AMX bf16 peak is not published (its AMX-loaded clock is not): the planner says so instead of
    # deriving one from a guessed clock
    code, _, err = run(["estimate", "-m", "llama-3.1-8b", "-H", "xeon-8480", "--engine", "llamacpp"], capsys)
    assert code == 2 and "xeon-8480" in err and "bf16" in err


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "planner", "estimate", "-m", "nope", "-H", "h100-sxm"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown model")


def test_the_command_ends_without_teardown_but_with_its_output(tmp_path):
    """The console entry (planner.cli.app.cli) leaves by os._exit: everything printed and written still arrives,
    the exit code is main's, and a reader that stops early ends it quietly."""
    r = subprocess.run([sys.executable, "-m", "planner", "estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["model"] == "llama-3.1-8b" and not r.stderr
    out = tmp_path / "s"
    study = tmp_path / "s.yaml"
    study.write_text("name: s\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm}\nsweep: {axes: {tp: [1, 2]}}\n")
    r = subprocess.run([sys.executable, "-m", "planner", "study", str(study), "--out", str(out), "--workers", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = (out / "s.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and json.loads((out / "s.json").read_text())
    # a pipe closed after the first line: exit 0, no traceback
    p = subprocess.Popen([sys.executable, "-m", "planner", "plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "8"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 0 and "Traceback" not in err


@pytest.mark.parametrize("args", [["nosuchcommand"], ["estimate", "--model"], ["plan", "--gpus", "two"]])
def test_usage_errors_are_one_line(args, capsys):
    code, _, err = run(args, capsys)
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_validate_reads_other_tables_vocabulary(tmp_path, capsys):
    # precision spellings of other tables (float16; llama.cpp's upper-case GGUF type names), and llama.cpp
    # prompt-processing rows (pp512)
    f = tmp_path / "ll.csv"
    f.write_text("source,model,hardware,weights,phase,tokens,tokens_per_s\n"
                 "x,llama-2-7b,rtx-4090,float16,decode,,60\nx,llama-2-7b,rtx-4090,Q4_K_M,prefill,512,5000\n")
    code, out, err = run(["validate", str(f), "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["what"] for r in rows] == ["decode_tokens_per_s", "prefill_tokens_per_s"]
    assert all(r["predicted"] > 0 for r in rows)


def test_validate_reports_unpredictable_rows_and_goes_on(tmp_path, capsys):
    f = tmp_path / "v.csv"
    f.write_text("source,model,hardware,weights,phase,tokens,tokens_per_s\n"
                 "x,llama-9-7b,rtx-4090,fp16,decode,,60\nx,llama-2-7b,rtx-4090,fp16,decode,,60\n")
    code, out, err = run(["validate", str(f), "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["per_file"][0]["rows"] == 2 and d["per_file"][0]["predicted"] == 1
    assert "unknown model 'llama-9-7b'" in d["rows"][0]["note"]
    # a malformed number is still bad input
    f.write_text("source,model,hardware,weights,phase,tokens,tokens_per_s\nx,llama-2-7b,rtx-4090,fp16,decode,,lots\n")
    code, _, err = run(["validate", str(f)], capsys)
    assert code == 2 and "not a number" in err


# ---- a CLI people trust on first use (issue 13)

def test_readme_python_api_block_runs(capsys):
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(block, "README.md (Python API)", "exec"), {})
    out = capsys.readouterr().out
    assert "TTFT" in out and "fits: True" in out and "h100-sxm" in out


def test_version_and_completion_options(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("planner ")
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "--install-completion" in out and "Exit codes" in out


def test_hugging_face_ids_and_any_case(capsys):
    code, out, err = run(["fit", "-m", "meta-llama/Llama-3.1-8B-Instruct", "-H", "H100-SXM", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["model"] == "llama-3.1-8b" and d["hardware"] == "h100-sxm"
    code, out, _ = run(["fit", "-m", "LLAMA-3.1-8B", "-H", "h100-sxm", "--json"], capsys)
    assert code == 0 and json.loads(out)["model"] == "llama-3.1-8b"


def test_config_json_is_a_model(tmp_path, capsys):
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
           "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 131072,
           "hidden_act": "silu", "tie_word_embeddings": False}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    code, out, err = run(["fit", "-m", str(p), "-H", "h100-sxm", "--json"], capsys)
    assert code == 0, err
    # the same architecture as the built-in llama-3.1-8b: the same weight bytes
    code2, out2, _ = run(["fit", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--json"], capsys)
    assert json.loads(out)["memory"]["weights_bytes"] == pytest.approx(json.loads(out2)["memory"]["weights_bytes"], rel=1e-6)


def _plan_json(args, capsys):
    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "2", "--json", *args], capsys)
    assert code == 0, err
    d = json.loads(out)
    d.pop("timing")
    return d


def test_durations_take_units(capsys):
    assert _plan_json(["--ttft", "500ms", "--tpot", "30ms"], capsys) == _plan_json(["--ttft", "0.5", "--tpot", "0.03s"], capsys)


def test_default_accuracy_floor_and_runner_up(capsys):
    d = _plan_json([], capsys)
    assert d["recommended"]["accuracy"] >= 0.99
    assert all(p["accuracy"] >= 0.99 for p in d["frontier"])
    free = _plan_json(["--min-accuracy", "0"], capsys)
    assert min(p["accuracy"] for p in free["frontier"]) < 0.99  # the floor did bind by default
    # the runner-up is the best plan of another layout/precision on the objective, not the most accurate one
    from planner.studies.params import PlanRequest, plan_search

    res = plan_search(PlanRequest(model="llama-3.1-8b", hardware="h100-sxm", gpus=2))
    shape = lambda p: (p["plan"]["hardware"], p["plan"]["mode"], p["plan"]["tp"], p["plan"]["pp"], p["plan"]["weights"], p["plan"]["kv"])
    others = [p for p in res.frontier if shape(p) != shape(res.recommended)]
    assert res.runner_up["output_tokens_per_s_per_gpu"] >= max(p["output_tokens_per_s_per_gpu"] for p in others) * (1 - 1e-12)
    assert res.runner_up["label"] in res.why


def test_plan_table_says_the_floor_applies(capsys):
    code, out, _ = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1", "--top", "3"], capsys)
    assert code == 0 and "accuracy >= 0.99" in out and "MLPerf 99 % rule" in out


def test_csv_outputs(capsys):
    import csv
    import io

    code, out, _ = run(["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 1 and float(rows[0]["ttft_s"]) > 0 and float(rows[0]["memory_weights_bytes"]) > 1e10
    code, out, _ = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1", "--csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows and all(float(r["accuracy"]) >= 0.99 for r in rows)


def test_json_with_emit_keeps_both(capsys):
    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1", "--json", "--emit", "vllm"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["recommended"] and d["deployment"]["target"] == "vllm" and "vllm serve" in d["deployment"]["text"]


def test_piped_output_keeps_full_width():
    import os

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run([sys.executable, "-m", "planner", "plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1", "--top", "3"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("│ h100-sxm")]
    # one table row per plan: the label and its CAP trade are not folded into 5-character cells
    assert len(rows) == 3 and all("gives up" in ln for ln in rows) and max(map(len, r.stdout.splitlines())) > 120


def test_study_exit_codes(tmp_path, capsys):
    s = tmp_path / "s.yaml"
    s.write_text("name: s\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm}\nsweep: {axes: {weights: [bf16, fp7]}}\n")
    code, out, err = run(["study", str(s), "--json", "--workers", "1"], capsys)
    d = json.loads(out)
    assert code == 1 and d["failed"] == 1 and "1 of 2 points" in err and len(err.strip().splitlines()) == 1
    s.write_text("name: s\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm}\nsweep: {axes: {weights: [fp7, fp9]}}\n")
    code, _, err = run(["study", str(s), "--workers", "1"], capsys)
    assert code == 2 and "every point" in err


def test_capacity_and_fit_exit_2_when_nothing_fits(capsys):
    code, _, err = run(["fit", "-m", "llama-3.1-405b", "-H", "l4"], capsys)
    assert code == 2 and err.startswith("error: does not fit")


def test_options_are_declared_once():
    # each command's options are its request model's fields, and study points validate against the same model
    import typer

    from planner.cli.app import _command
    from planner.studies.params import REQUESTS
    from planner.studies.schema import PARAMS

    group = _command()
    for name, cls in REQUESTS.items():
        opts = {p.name for p in group.commands[name].params}
        assert set(cls.model_fields) <= opts, (name, set(cls.model_fields) - opts)
        assert opts - set(cls.model_fields) <= {"as_json", "as_csv", "plot", "plot_terminal", "top", "emit", "help"}, name
        if name in PARAMS:
            assert PARAMS[name] is cls
    assert isinstance(group, typer.core.TyperGroup)


def test_one_spec_parser_for_plan_and_simulate(capsys):
    # the same DRAFT:ACCEPTANCE range everywhere: acceptance 1.0 is rejected by both commands
    for cmd in (["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1"], ["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm"]):
        code, _, err = run(cmd + ["--spec", "3:1.0"], capsys)
        assert code == 2 and "acceptance in [0, 1)" in err


def test_study_paths_are_relative_to_the_study_file(tmp_path, capsys, monkeypatch):
    import pathlib
    import shutil

    root = pathlib.Path(__file__).resolve().parents[1]
    (tmp_path / "specs").mkdir()
    shutil.copy(root / "model_specs" / "llama-3.1-8b.yaml", tmp_path / "specs" / "m.yaml")
    s = tmp_path / "s.yaml"
    s.write_text("name: rel\ncommand: estimate\nbase: {model: specs/m.yaml, hardware: h100-sxm}\n")
    monkeypatch.chdir(root)  # somewhere else: the path must not depend on the working folder
    code, out, err = run(["study", str(s), "--json", "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert json.loads(out)["points"][0]["error"] == ""


def test_json_results_diff_clean_apart_from_timing(capsys):
    args = ["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--rate", "5", "--requests", "100", "--json"]
    runs = []
    for _ in range(2):
        code, out, err = run(args, capsys)
        assert code == 0, err
        d = json.loads(out)
        assert d["timing"]["simulator_wall_s"] >= 0 and "wall_s" not in d["simulator"]
        d.pop("timing")
        runs.append(d)
    assert runs[0] == runs[1]


def test_profile_and_calibrate_speak_json(tmp_path, capsys):
    """`--json` on profile and calibrate: one JSON object on stdout (issue 13: every command has it)."""
    import json

    from tests.cli_helpers import run

    code, out, _ = run(["profile", "--quick", "--tiny", "--out", str(tmp_path), "--json"], capsys)
    assert code == 0
    prof = json.loads(out)
    assert prof["status"] == "complete" and prof["rows_written"] > 0
    code, out, _ = run(["calibrate", prof["folder"], "--json"], capsys)
    assert code == 0
    fit = json.loads(out)["captures"][0]
    assert fit["rows"] > 0 and 0 <= fit["median_ape"] and fit["written"].endswith("calibrated.yaml")


def test_calibrate_names_a_corrupt_kernels_csv(tmp_path, capsys):
    from tests.cli_helpers import run

    cases = {"cols": b"a,b\n1,2\n", "binary": b"\xff\xfe\x00bad", "value": b"op,dtype,median_s\ngemm,fp32,abc\n"}
    for name, data in cases.items():
        d = tmp_path / name
        d.mkdir()
        (d / "kernels.csv").write_bytes(data)
        code, _, err = run(["calibrate", str(d)], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and str(d / "kernels.csv") in lines[0], (name, err)


def test_capacity_sizes_an_mla_model(capsys):
    # the plan search offers DeepSeek-V3 data-parallel-attention layouts the simulator does not replay; capacity used to
    # build them as one GPU holding the whole model and answer "no deployment within 64 GPUs" at 2 req/s
    code, out, err = run(["capacity", "-m", "deepseek-v3", "-H", "h200-sxm", "--rate", "2", "--workload", "chat", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["feasible"] and d["gpus"] >= 8 and d["plan"]["weights"] == "fp8"  # 671 B parameters in FP8: 8 x 141 GB
    # its data-parallel-attention layout is sized by simulation beside the best tp/pp/ep one, and disaggregated
    # groups (prefill and decode pools) in whole groups
    assert any("adp8" in c["plan"] for c in d["candidates"]) and any("adp" not in c["plan"] for c in d["candidates"])
    groups = [c for c in d["candidates"] if "disagg" in c["plan"] and c["replicas"]]
    assert groups and all(c["gpus"] == c["replicas"] * c["gpus_per_replica"] >= 16 for c in groups)


def test_a_simulated_rate_runs_attention_dp(capsys):
    # estimate --rate replays the data-parallel-attention replica (it was refused before the simulator had one)
    code, out, err = run(["estimate", "-m", "deepseek-v3", "-H", "h200-sxm", "--gpus", "8", "--attention-dp", "8", "--ep", "8",
                          "--rate", "2", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["plan"]["attention_dp"] == 8 and d["serving"]["requests_per_s"] == pytest.approx(2.0, rel=0.15)
    assert d["tpot_s"] > 0 and d["ttft_s"] > 0
    # balanced prompts (TensorRT-LLM enable_balance, the profile's default): a lower TPOT for a longer TTFT at 10 req/s
    # than with the engine's own default, off
    runs = {}
    for extra in (["--attention-dp-balance", "0"], ["--attention-dp-balance", "50"]):
        code, out, err = run(["estimate", "-m", "deepseek-v3", "-H", "h200-sxm", "--gpus", "8", "--attention-dp", "8", "--ep", "8",
                              "--rate", "10", "--json", *extra], capsys)
        assert code == 0, err
        runs[extra[-1] != "0"] = json.loads(out)
    assert runs[True]["tpot_s"] < runs[False]["tpot_s"] and runs[True]["ttft_s"] > runs[False]["ttft_s"]
    # without --rate the closed loop's steady state holds its prompts too (tests/test_adp_balance_estimate.py)
    steady = {}
    for extra in (["--attention-dp-balance", "0"], ["--attention-dp-balance", "50"]):
        code, out, err = run(["estimate", "-m", "deepseek-v3", "-H", "h200-sxm", "--gpus", "8", "--attention-dp", "8",
                              "--ep", "8", "--concurrency", "64", "--json", *extra], capsys)
        assert code == 0, err
        steady[extra[-1] != "0"] = json.loads(out)
    # held prompts share prompt steps, one a rank, where unheld ones come a few at a time: a lower TPOT for the wait
    assert steady[True]["ttft_s"] > steady[False]["ttft_s"] and steady[True]["tpot_s"] < steady[False]["tpot_s"]


def test_simulate_attention_dp_balance(capsys):
    code, out, err = run(["simulate", "-m", "deepseek-v3", "-H", "h200-sxm", "--attention-dp", "8", "--ep", "8",
                          "--attention-dp-balance", "50", "--rate", "4", "--requests", "300", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["pools"][0]["plan"]["attention_dp_balance_steps"] == 50
    code, _, err = run(["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--attention-dp-balance", "50", "--rate", "4"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--attention-dp 2 or more" in lines[0], err


def test_simulate_attention_dp_and_what_it_refuses(capsys):
    code, out, err = run(["simulate", "-m", "deepseek-v3", "-H", "h200-sxm", "--attention-dp", "8", "--ep", "8",
                          "--rate", "4", "--requests", "300", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["gpus"] == 8 and d["pools"][0]["plan"]["attention_dp"] == 8 and d["completed"] == 300
    code, out, err = run(["simulate", "-m", "deepseek-v3", "-H", "h200-sxm", "--attention-dp", "8", "--ep", "8", "--disagg", "1:1",
                          "--prefill-tp", "2", "--prefill-attention-dp", "4", "--rate", "4", "--requests", "300", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)  # prefill: 4 ranks of tp2, decode: 8 ranks of one GPU; experts over 8 GPUs in both
    assert d["gpus"] == 16 and [(p["plan"]["tp"], p["plan"]["attention_dp"], p["plan"]["ep"]) for p in d["pools"]] == [(2, 4, 8), (1, 8, 8)]
    for extra, words in ((["--prefill-attention-dp", "4"], "--disagg"), (["--fleet", "deepseek-v3:1"], "--attention-dp"),
                         (["--disagg", "1:1", "--prefill-ep", "3"], "the prefill pool: ep=3")):
        code, _, err = run(["simulate", "-m", "deepseek-v3", "-H", "h200-sxm", "--attention-dp", "8", "--ep", "8",
                            "--rate", "4", *extra], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in err, err




def test_memory_fraction_lets_gpt_oss_120b_fit_one_h100_as_vllm_logs_it(capsys):
    """At vLLM's default 0.9 the MXFP4 gpt-oss-120b and vLLM's profiling peak exceed one H100 (the error says which
    fraction fits, above); llm-d's startup log of the same run at --gpu-memory-utilization 0.95 has 3.33 GiB of KV cache
    (measurements/published/vllm_kv_memory.csv)."""
    code, out, err = run(["estimate", "-m", "gpt-oss-120b", "-H", "h100-sxm", "--engine", "vllm", "--isl", "1000",
                          "--osl", "1000", "--concurrency", "8", "--memory-fraction", "0.95", "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)["memory"]
    kv = m["usable_bytes_per_gpu"] - m["weights_bytes"] - m["activation_bytes"] - m["runtime_bytes"]
    assert m["fits"] and kv / 2**30 == pytest.approx(3.33, rel=0.15)


def test_a_memory_fraction_the_user_sets_survives_the_engine_s_device_defaults():
    """SGLang derives its --mem-fraction-static from device memory (a device rule); the user's value stays as set."""
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware

    h100 = get_hardware("h100-sxm")
    default = get_engine("sglang").for_hardware(h100).utilization
    pinned = get_engine("sglang").set_by_user(utilization=0.7).for_hardware(h100)
    assert pinned.utilization == 0.7 != default and pinned.pinned == ("utilization",)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_fraction_to_hold_inverts_memory_under_each_policy(engine):
    """At the fraction fraction_to_hold names, memory() leaves exactly the KV asked for (of the whole GPU: vLLM; SGLang's
    static pool of weights and KV; TensorRT-LLM's share of the memory free after the weights)."""
    from planner.costmodel.memory import fraction_to_hold, memory
    from planner.costmodel.plans import make_plans
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware, get_model

    m, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    eng = get_engine(engine).for_hardware(hw)
    p = make_plans(m, hw, tp=1, weights="bf16", kv="bf16", engine=eng)
    r = memory(m, hw, p, eng)
    w, act, rt = float(r.weights_bytes[0]), float(r.activation_bytes[0]), float(r.runtime_bytes[0])
    f = fraction_to_hold(eng, hw.memory_visible_bytes, w, act + rt, rt, 10 * 2**30)
    again = memory(m, hw, p, eng.set_by_user(utilization=f))
    assert float(again.kv_capacity_bytes[0]) == pytest.approx(10 * 2**30, rel=1e-9)


def test_simulate_recv_interval_sets_the_schedulers_polling(capsys):
    """`planner simulate --recv-interval N` (SGLang's --scheduler-recv-interval): a closed loop of varied ShareGPT
    lengths waits for the scheduler's next poll, so its TTFT rises and its throughput does not; 0 is refused."""
    base = ["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "sglang", "--clients", "8", "--workload",
            "sharegpt", "--requests", "200", "--json"]
    ttft = {}
    for extra in ([], ["--recv-interval", "30"]):
        s = run_json(base + extra, capsys)
        ttft[bool(extra)] = (s["ttft_s"]["mean"], s["output_tokens_per_s"])
    assert ttft[True][0] > 3 * ttft[False][0] and ttft[True][1] <= ttft[False][1]
    code, _, err = run(base + ["--recv-interval", "0"], capsys)
    assert code == 2 and "recv-interval" in err


def test_a_rate_run_past_the_plan_s_throughput_says_so_and_its_length_is_the_user_s(capsys):
    """TensorRT-LLM 0.14's online-serving page (Llama 3.1 70B, four H100s, 467/256 tokens, 500 requests at 32 req/s)
    served 12-15 req/s: past that, the backlog grows through a run, so what a run of N requests measures depends on N.
    `--requests` sets N (the page's 500 is the replay `validate` runs, to the bit), the default is 1000, and a note says
    the rate is past the throughput; a run the plan keeps up with has no such note, and neither carries the closed
    loop's notes."""
    base = ["estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--tp", "4", "--weights", "bf16", "--isl", "467", "--osl",
            "256", "--engine", "trtllm@0.14", "--json"]
    short = run_json(base + ["--rate", "32", "--requests", "500"], capsys)
    long = run_json(base + ["--rate", "32"], capsys)
    assert short["serving"]["requests"] == 500 and long["serving"]["requests"] == 1000
    assert long["ttft_s"] > 2 * short["ttft_s"]  # twice the run, a longer backlog
    for d in (short, long):
        assert any("more than the plan serves" in n for n in d["notes"])
        assert not any("staggered loop" in n or "clients" in n for n in d["notes"])
    easy = run_json(base + ["--rate", "4", "--requests", "300"], capsys)
    assert not any("more than the plan serves" in n for n in easy["notes"])


def test_the_rate_run_s_default_length_is_the_api_s():
    import inspect

    from planner.api import estimate_at_rate
    from planner.studies.params import DEFAULT_RATE_REQUESTS

    assert inspect.signature(estimate_at_rate).parameters["requests"].default == DEFAULT_RATE_REQUESTS


def test_rate_inf_prices_a_burst_below_the_steady_state(capsys):
    """`--rate inf` queues every request at once, as a throughput benchmark does. With 300 requests of 1000/1000
    tokens on one H100 (Llama 3.1 8B; 224 fit at once) the run fills, runs a second wave of a third of its batch, whose
    decode steps each read the whole weights for fewer sequences, and drains, so it moves fewer tokens a second than
    the steady state `--concurrency max` prices (0.90x when written), and says so."""
    # the engine's waves, not the API server's thread (a chunk every 64 steps leaves it idle)
    base = ["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--isl", "1000", "--osl", "1000", "--stream-interval", "64",
            "--json"]
    steady = run_json(base + ["--concurrency", "max"], capsys)
    burst = run_json(base + ["--rate", "inf", "--requests", "300"], capsys)
    assert burst["serving"]["arrivals"] == "burst" and burst["serving"]["requests"] == 300
    assert steady["plan"]["running"] < 300 < 2 * steady["plan"]["running"]
    assert burst["output_tokens_per_s"] < 0.95 * steady["output_tokens_per_s"]
    assert any(n.startswith("a burst:") for n in burst["notes"])
    code, out, err = run(base[:-1] + ["--rate", "-1"], capsys)
    assert code == 2 and "must be positive" in err
