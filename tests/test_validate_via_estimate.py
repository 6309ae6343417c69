"""``planner validate --via estimate``: the serving benchmarks' closed loops priced as a user prices them,
``estimate --concurrency N`` with each run's layout, flags and mean lengths, and the max-throughput rows as
``estimate --concurrency max`` at the engine release's defaults, beside the request-by-request replay; in sample and
with ``--cross-validate`` on each held-out device or file."""

import json
import statistics

import pytest

from cli_helpers import run
from planner.calibrate.validate import builtin_published, validate

INFERENCEX = "serving_bench_inferencex.csv"


def _path(name):
    return str(next(p for p in builtin_published() if p.name == name))


@pytest.fixture(scope="module")
def both():
    return {via: validate([_path(INFERENCEX)], via=via) for via in ("replay", "estimate")}


def test_the_same_rows_come_back_in_the_same_order(both):
    rep, est = both["replay"].rows, both["estimate"].rows
    assert len(rep) == len(est) == 932
    assert [(r.what, r.config, r.measured) for r in rep] == [(r.what, r.config, r.measured) for r in est]
    # every InferenceX row is a closed loop of fresh prompts: all of them go through estimate
    assert all(r.note.startswith("estimate --concurrency") for r in est)
    assert all(r.predicted is not None for r in est)


def test_the_user_path_stays_as_close_as_recorded(both):
    """The medians this path measured when it was added (December 2026): median TTFT 25.8 %, TPOT 12.9 %, output
    rate per GPU 11.9 %, within a point of the replay's (26.5, 12.4, 12.1 %). Since SGLang's prompts run in prefill
    steps of their own in the steady state too (the simulator's rule) its rows follow the replay run by run, within
    0-3 %, and the medians read 26.0, 12.6 and 12.6 % (the output rate's 11.9 had been an error of the steady state
    partly cancelling one of the model's: SGLang on MI300X at 64 clients read 1.53x where the replay reads 1.44x). A
    change to the steady state that takes estimate's closed loops further from the runs fails here."""
    recorded = {"median_ttft_s": 0.260, "mean_tpot_s": 0.126, "output_tokens_per_s_per_gpu": 0.126}
    for what, median in recorded.items():
        ape = [r.ape for r in both["estimate"].rows if r.what == what]
        assert statistics.median(ape) <= median + 0.005, what


def test_open_loops_and_reused_prompts_are_still_replayed():
    """serving_bench_l4.csv mixes a burst, closed loops of fresh prompts and a closed loop of one prompt sent 100
    times: only the fresh closed loops change path."""
    rep, est = (validate([_path("serving_bench_l4.csv")], via=v).rows for v in ("replay", "estimate"))
    assert len(rep) == len(est)
    moved = [(a, b) for a, b in zip(rep, est) if b.note.startswith("estimate --concurrency")]
    assert moved and all("clients=" in b.config for _, b in moved)
    kept = [(a, b) for a, b in zip(rep, est) if not b.note.startswith("estimate --concurrency")]
    assert kept and all(a.predicted == b.predicted for a, b in kept)


def test_a_run_of_no_more_prompts_than_clients_is_one_burst_and_is_replayed(tmp_path):
    """Eight clients sending eight prompts all start at once and never send again: no steady state to price."""
    header = "source,engine,engine_version,model,hardware,tp,dataset,isl,osl,num_prompts,rate,max_concurrency,mean_ttft_s,mean_tpot_s"
    lines = [header] + [f"test,vllm,0.11.0,llama-3.1-8b,h100-sxm,1,random,1024,256,{n},inf,8,0.1,0.01" for n in (8, 32)]
    f = tmp_path / "loops.csv"
    f.write_text("\n".join(lines) + "\n")
    rows = validate([str(f)], via="estimate").rows
    burst, loop = [r for r in rows if "x8 " in r.config], [r for r in rows if "x32 " in r.config]
    assert burst and not any(r.note.startswith("estimate --concurrency") for r in burst)
    assert loop and all(r.note.startswith("estimate --concurrency") for r in loop)


def test_the_cli_option(capsys):
    code, out, _ = run(["validate", _path("serving_bench_l4.csv"), "--via", "estimate", "--json"], capsys)
    assert code == 0 and any(r["note"].startswith("estimate --concurrency") for r in json.loads(out)["rows"])
    code, _, err = run(["validate", "--via", "steady"], capsys)
    assert code == 2 and "--via takes replay or estimate" in err and "Traceback" not in err
    code, _, err = run(["validate", "--via", "estimate", "--cross-validate", "hardware", "--record"], capsys)
    assert code == 2 and "does not combine with --via estimate" in err and "Traceback" not in err


def _max_row(name: str, k: int = 0) -> dict:
    import csv

    return list(csv.DictReader(open(_path(name))))[k]


@pytest.mark.parametrize("name", ["perf_overview_1_2.csv", "max_throughput.csv"])
def test_a_max_throughput_row_is_what_estimate_concurrency_max_says(name, tmp_path):
    """A trtllm-bench burst (perf_overview_1_2.csv, num_requests) and a steady-state max-throughput row
    (max_throughput.csv) both come back as the user's ``estimate --concurrency max`` at the row's layout, precision,
    lengths and engine release, with the release's own limits: the number the API gives, not the replay's."""
    from planner.api import estimate
    from planner.calibrate.published_fit import release_of, row_parallel, row_precisions
    from planner.serving.planspec import PlanSpec
    from planner.specs.loader import get_model
    from planner.specs.quant import default_kv

    row = _max_row(name)
    f = tmp_path / name
    f.write_text(open(_path(name)).read().splitlines()[0] + "\n" + open(_path(name)).read().splitlines()[1] + "\n")
    weights, kv = row_precisions(row)
    tp, pp, ep, adp = row_parallel(row, name)
    rel = release_of(row)
    e = estimate(row["model"], row["hardware"], PlanSpec(tp=tp, pp=pp, ep=ep, attention_dp=adp, weights=weights,
                                                          kv=kv or default_kv(weights, rel, get_model(row["model"]))),
                 isl=int(row["isl"]), osl=int(row["osl"]), concurrency="max", engine=rel)
    (est,), (rep,) = (validate([str(f)], via=v).rows for v in ("estimate", "replay"))
    assert est.predicted == pytest.approx(e.output_tokens_per_s_per_gpu, rel=1e-9)
    assert est.measured == rep.measured and est.what == rep.what == "output_tokens_per_s_per_gpu"


def test_cross_validation_through_estimate(capsys):
    """``--cross-validate file --via estimate``: the held-out rows through estimate. serving_bench_l4.csv is validated,
    never fitted, so its fold keeps the calibration in force and each held-out value is the in-sample one."""
    code, out, _ = run(["validate", _path("serving_bench_l4.csv"), "--cross-validate", "file", "--via", "estimate",
                        "--rows", "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["via"] == "estimate" and d["rows"]
    assert all(r["held_out"] == pytest.approx(r["in_sample"]) for r in d["rows"])
    est = {(r.what, r.config): r.predicted for r in validate([_path("serving_bench_l4.csv")], via="estimate").rows}
    assert all(est[(r["what"], r["config"])] == pytest.approx(r["held_out"]) for r in d["rows"])


def test_the_fit_rows_take_the_same_path_as_validate():
    """crossval's fit-row predictions (the vectorized fit's rows) and validate give one number per max-throughput row
    through estimate: the two commands cannot disagree on what the user path says."""
    from planner.calibrate.crossval import in_sample

    ins = {(p.line, p.what): p.predicted for p in in_sample([_path("max_throughput.csv")], via="estimate").predictions}
    rows = validate([_path("max_throughput.csv")], via="estimate").rows
    assert len(ins) == len(rows) > 300
    assert all(ins[(k + 2, r.what)] == pytest.approx(r.predicted) for k, r in enumerate(rows) if r.predicted is not None)


def test_a_held_out_device_is_priced_through_estimate_with_its_fold():
    """A leave-one-hardware-out fold through estimate: the H100's max_throughput.csv rows (TensorRT-LLM 0.14, whose
    steady state the replay prices the same way) come back as the replay's held-out values, not the in-sample ones,
    so estimate runs under the fold's refit (one quick step here) and not the calibration in force."""
    from planner.calibrate import crossval

    f = [_path("max_throughput.csv")]
    ins = {p.key: p.predicted for p in crossval.in_sample(f, via="estimate").predictions}
    rep, est = ({p.key: p.predicted for p in crossval.cross_validate("hardware", f, quick=True, keys=["h100-sxm"],
                                                                      via=v).predictions} for v in ("replay", "estimate"))
    assert len(est) == len(rep) > 100
    assert all(est[k] == pytest.approx(rep[k], rel=1e-9) for k in rep)
    assert all(est[k] != pytest.approx(ins[k], rel=1e-6) for k in est)
