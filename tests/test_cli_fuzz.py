"""Fuzz the CLI with generated bad invocations (options, YAML, CSV, paths): every one must end in
exactly one line on stderr starting 'error:', exit code 2, and no traceback. In-process, so fast."""

import random
import string

import pytest

from cli_helpers import run
from planner.studies.params import REQUESTS

GOOD = {"model": "llama-3.1-8b", "hardware": "h100-sxm"}
BASE = {
    "estimate": ["-m", "llama-3.1-8b", "-H", "h100-sxm"],
    "fit": ["-m", "llama-3.1-8b", "-H", "h100-sxm"],
    "plan": ["-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1"],
    "capacity": ["-m", "llama-3.1-8b", "-H", "h100-sxm", "--rate", "1"],
    "simulate": ["-m", "llama-3.1-8b", "-H", "h100-sxm", "--requests", "20"],
}

# values no option of each kind accepts
BAD_POSITIVE_INT = ["0", "-1", "-999", "1.5", "abc", "", "nan", "1e3", "0x10", " ", "--", "∞"]
BAD_TOKENS = BAD_POSITIVE_INT + ["100000001", "99999999999999"]
BAD_POSITIVE_FLOAT = ["0", "-1", "-0.5", "nan", "inf", "-inf", "abc", "", "1e400", "NaN", "1,5", "--1"]
BAD_DURATION = ["0", "-1", "-1ms", "nan", "inf", "0ms", "abc", "5 parsecs", "1e400", "ms", "1.2.3s", "s", "-inf"]
BAD_ACCURACY = ["1.5", "-0.1", "nan", "inf", "2", "abc", "1.0001"]
BAD_PERCENTILE = ["0", "100", "150", "-5", "nan", "inf"]
BAD_SIM_RATE = ["0", "-1", "nan", "-inf", "abc", "", "infinite", "1/s"]


def _garbage(rng: random.Random, n: int = 12) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + "-_.") for _ in range(rng.randint(1, n))) + "zq"


def _kind(cls, name: str) -> str | None:
    f = cls.model_fields[name]
    s = repr(f.annotation) + repr(f.metadata)
    if name in ("ttft", "tpot", "ttft_p99", "tpot_p99", "ttft_slo", "tpot_slo"):
        return "duration"
    if name == "min_accuracy":
        return "accuracy"
    if name == "percentile":
        return "percentile"
    if name in ("isl", "osl", "min_context"):
        return "tokens"
    if name in ("gpus", "tp", "pp", "ep", "dp", "batch", "max_gpus", "max_seqs", "max_batched_tokens", "prefill_tp"):
        return "posint"
    if name == "rate" and ("str" in s or "_estimate_rate" in s):  # simulate, estimate: requests/s or 'inf' (all at once)
        return "simrate"
    if name in ("rate", "cv", "max_cost") and "float" in s:
        return "posfloat"
    if "Literal" in s and name not in ("concurrency",):
        return "literal"
    return None


def option_cases() -> list[list[str]]:
    rng = random.Random(13)
    pools = {"duration": BAD_DURATION, "accuracy": BAD_ACCURACY, "percentile": BAD_PERCENTILE, "tokens": BAD_TOKENS,
             "posint": BAD_POSITIVE_INT, "posfloat": BAD_POSITIVE_FLOAT, "simrate": BAD_SIM_RATE}
    out = []
    for cmd, base in BASE.items():
        cls = REQUESTS[cmd]
        for name in cls.model_fields:
            kind = _kind(cls, name)
            if kind is None:
                continue
            flag = "--" + name.replace("_", "-")
            bad = [_garbage(rng) for _ in range(6)] if kind == "literal" else pools[kind]
            for v in bad:
                args = [a for a in base]
                if flag in args:  # replace the base value
                    i = args.index(flag)
                    args = args[:i] + args[i + 2:]
                out.append([cmd, *args, flag, v])
    return out


def id_cases() -> list[list[str]]:
    rng = random.Random(7)
    out = []
    for cmd in BASE:
        for _ in range(20):
            args = list(BASE[cmd])
            which = rng.choice(["-m", "-H"])
            args[args.index(which) + 1] = rng.choice([_garbage(rng), _garbage(rng).upper(), "org/" + _garbage(rng), "h100", "llama"])
            out.append([cmd, *args])
        for w in ("fp7", "int3", _garbage(rng), "BF17"):
            out.append([cmd, *BASE[cmd], "--weights", w])
        for opt in ("--kv", "--engine"):
            out += [[cmd, *BASE[cmd], opt, _garbage(rng)] for _ in range(3)]
    out += [["hardware", "show", _garbage(rng)] for _ in range(5)] + [["models", "show", _garbage(rng)] for _ in range(5)]
    return out


def usage_cases() -> list[list[str]]:
    rng = random.Random(11)
    out = [[_garbage(rng)] for _ in range(10)]
    for cmd, base in BASE.items():
        out += [[cmd, *base, "--" + _garbage(rng)] for _ in range(6)]
        out += [[cmd, *base, base[-2]]]  # an option without its value
        out += [[cmd]]  # required options missing
    out += [["estimate", *BASE["estimate"], "--batching", "static"],  # static needs --batch
            ["estimate", *BASE["estimate"], "--batch", "4"],  # --batch without static
            ["estimate", *BASE["estimate"], "--rate", "2", "--batching", "static", "--batch", "2"],
            ["estimate", *BASE["estimate"], "--tp", "3"], ["estimate", *BASE["estimate"], "--gpus", "4", "--tp", "3"],
            ["estimate", *BASE["estimate"], "--gpus", "1000000"], ["plan", "-m", "llama-3.1-8b", "-H", "m3-max", "--gpus", "2"],
            ["estimate", "-m", "llama-3.1-8b", "-H", "m3-max", "--tp", "2"], ["estimate", *BASE["estimate"], "--isl", "200000"],
            ["plan", *BASE["plan"], "--min-context", "10000000"], ["plan", *BASE["plan"], "--spec", "0:0.5"],
            ["plan", *BASE["plan"], "--spec", "3:1.0"], ["plan", *BASE["plan"], "--spec", "x"], ["simulate", *BASE["simulate"], "--spec", "3:1.5"],
            ["plan", *BASE["plan"], "--eviction", "snapkv:0"], ["plan", *BASE["plan"], "--eviction", "nosuch:100"],
            ["plan", *BASE["plan"], "--emit", "nosuch"], ["plan", *BASE["plan"], "--top", "0"], ["plan", *BASE["plan"], "--json", "--csv"],
            ["plan", *BASE["plan"], "--ttft", "0.0001"],  # nothing meets it: exit 2, the binding constraint named
            ["capacity", "-m", "llama-3.1-8b", "-H", "h100-sxm"], ["capacity", *BASE["capacity"], "--hourly", "1,2", "--daily", "x.csv"],
            ["capacity", *BASE["capacity"], "--hourly", "a,b"], ["simulate", "-H", "h100-sxm"],
            ["simulate", *BASE["simulate"], "--disagg", "0:1"], ["simulate", *BASE["simulate"], "--disagg", "x"],
            ["simulate", *BASE["simulate"], "--shared-prefix", "1"], ["simulate", *BASE["simulate"], "--rate", "-3"],
            ["simulate", *BASE["simulate"], "--rate", "nan"], ["study", "/nonexistent/s.yaml"], ["validate", "/nonexistent.csv"]]
    return out


YAML_GARBAGE = ["id: x\nname: [unclosed\n", "- a\n- b\n", "just a string", "id: x\n", "{{{{", "id: 3\nname: 4\nvendor: []\n",
                "\x00\x01\x02", "a: b: c: d", "id: x\nmemory: {capacity: lots}\n", "? [a]\n: b\n", "", "null", "42"]
CSV_GARBAGE = ["", "a,b,c\n1,2\n", "timestamp,input_tokens,output_tokens\nx,y,z\n", "timestamp,input_tokens,output_tokens\n1,-5,3\n",
               "\x00\xff\xfe", "rate\nabc\n", "rate\n-1\n", "rate\nnan\n", "model,hardware\n,,,,\n", "timestamp\n1\n2\n"]


def file_cases(tmp) -> list[list[str]]:
    out = []
    for i, text in enumerate(YAML_GARBAGE):
        p = tmp / f"bad{i}.yaml"
        p.write_bytes(text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text)
        out += [["estimate", "-m", str(p), "-H", "h100-sxm"], ["estimate", "-m", "llama-3.1-8b", "-H", str(p)],
                ["study", str(p)], ["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--workload", str(p)],
                ["models", "show", str(p)], ["hardware", "show", str(p)]]
        j = tmp / f"bad{i}.json"
        j.write_text(text)
        out += [["estimate", "-m", str(j), "-H", "h100-sxm"], ["models", "import", str(j)]]
    for i, text in enumerate(CSV_GARBAGE):
        p = tmp / f"bad{i}.csv"
        p.write_bytes(text.encode("latin-1"))
        out += [["simulate", *BASE["simulate"], "--trace", str(p)], ["capacity", *BASE["capacity"][:-2], "--daily", str(p)]]
        if text not in KNOWN_BUGS:
            out.append(["validate", str(p)])
    # studies that are well-formed YAML but wrong
    studies = ["name: ../evil\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm}\n",
               "name: a/b\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm}\n",
               "name: s\ncommand: nosuch\nbase: {}\n", "name: s\ncommand: estimate\nbase: {model: llama-3.1-8b}\n",
               "name: s\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm, ttft: 1}\n",
               "name: s\ncommand: plan\nbase: {model: llama-3.1-8b, hardware: h100-sxm, gpus: 1, ttft: -1}\n",
               "name: s\ncommand: plan\nbase: {model: llama-3.1-8b, hardware: h100-sxm, gpus: 1}\nsweep: {axes: {min_accuracy: [0.5, 1.5]}}\n",
               "name: s\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm}\nsweep: {mode: zip, axes: {isl: [1, 2], osl: [1]}}\n",
               "name: s\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm}\nplots: [{x: isl, y: ttft_s, file: ../x.png}]\n",
               "name: s\ncommand: estimate\nbase: {model: nosuch, hardware: h100-sxm}\n"]  # every point fails: exit 2
    for i, text in enumerate(studies):
        p = tmp / f"study{i}.yaml"
        p.write_text(text)
        out.append(["study", str(p), "--out", str(tmp / "out")])
    return out


def path_cases(tmp) -> list[list[str]]:
    (tmp / "afile").write_text("x")
    (tmp / "adir").mkdir()
    bad_files = ["/nonexistent/dir/x.png", str(tmp / "afile" / "x.png"), str(tmp / "adir"), str(tmp / "x.txt"), str(tmp / "x"),
                 "/proc/x.png", "/sys/x.svg"]
    out = []
    for f in bad_files:
        out += [["plan", *BASE["plan"], "--plot", f], ["capacity", *BASE["capacity"], "--plot", f],
                ["simulate", *BASE["simulate"], "--plot", f]]
    good_study = tmp / "good.yaml"
    good_study.write_text("name: good\ncommand: estimate\nbase: {model: llama-3.1-8b, hardware: h100-sxm}\n")
    for d in ("/proc/planner-out", str(tmp / "afile"), str(tmp / "afile" / "sub"), "/sys/x"):
        out.append(["study", str(good_study), "--out", d])
    for h in ("/nonexistent/r.html", str(tmp / "adir"), str(tmp / "r.txt"), "/proc/r.html"):
        out.append(["study", str(good_study), "--out", str(tmp / "o"), "--html", h])
    cfg = tmp / "config.json"
    cfg.write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,'
                   ' "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 512}')
    for o in ("/nonexistent/m.yaml", str(tmp / "adir"), str(tmp / "m.txt"), "/proc/m.yaml"):
        out.append(["models", "import", str(cfg), "--out", o])
    return out


# a bug outside the CLI that the fuzzer found (reported to its owner): calibrate/validate.py sorts rows whose
# model/hardware cells are empty and fails with a TypeError instead of naming the bad row
KNOWN_BUGS = ["model,hardware\n,,,,\n"]


def _check(cases, capsys):
    bad = []
    for args in cases:
        code, _, err = run(args, capsys)
        lines = err.strip().splitlines()
        if code != 2 or "Traceback" in err or len(lines) != 1 or not lines[0].startswith("error: "):
            bad.append((args, code, err[-300:]))
    assert not bad, f"{len(bad)} of {len(cases)} invocations broke the contract, e.g. {bad[:5]}"
    return len(cases)


def test_fuzz_option_values(capsys):
    assert _check(option_cases(), capsys) >= 500


def test_fuzz_ids_and_usage(capsys):
    assert _check(id_cases() + usage_cases(), capsys) >= 150


def test_fuzz_files_and_paths(tmp_path, capsys):
    assert _check(file_cases(tmp_path) + path_cases(tmp_path), capsys) >= 150


def test_fuzz_count():
    # the contract the issue asked for: at least 1,000 generated bad invocations in all
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        n = len(option_cases()) + len(id_cases()) + len(usage_cases()) + len(file_cases(pathlib.Path(d))) + len(path_cases(pathlib.Path(d)))
    assert n >= 1000, n


@pytest.mark.parametrize("args", [["plan", *BASE["plan"], "--ttft", "300", "--tpot", "0.05"]])
def test_millisecond_hint(args, capsys):
    code, out, err = run(args + ["--json"], capsys)
    assert code == 0 and err.startswith("hint: --ttft 300 is read as 300 seconds") and "300ms" in err


def test_fuzz_rows_without_model_or_hardware(tmp_path, capsys):
    cases = []
    for i, text in enumerate(KNOWN_BUGS):
        p = tmp_path / f"k{i}.csv"
        p.write_text(text)
        cases.append(["validate", str(p)])
    _check(cases, capsys)
