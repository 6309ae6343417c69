"""TensorRT-LLM 1.x perf-overview rows as trtllm-bench ran them: the batch and token limits it sizes from the
dataset lengths (tensorrt_llm/bench/build/tuning.py, bench/benchmark/utils/general.py), and the finite burst of
``num_requests`` requests it queues at once, simulated request by request."""

import csv
import math
import time
from pathlib import Path

import pytest

from planner.calibrate import validate as V
from planner.calibrate.bench_settings import (PERF_OVERVIEW_REQUESTS, PERF_OVERVIEW_REQUESTS_0_20, bench_engine, offline,
                                              perf_overview_requests, stored_params, trtllm_bench_max_batch,
                                              trtllm_bench_settings)
from planner.calibrate.published_fit import SIMULATED_COLUMNS, load_rows
from planner.serving.published import predict_offline_bench
from planner.specs.loader import get_hardware, get_model

GIB = 2.0**30
SOURCE = "trtllm perf-overview, TensorRT-LLM release/1.2 (test row), max throughput"


def _row(parallel="tp1", model="gpt-oss-20b", hw="h200-sxm", isl=1024, osl=1024, n="3000", weights="fp8", kv="",
         weights_ran="mxfp4", kv_ran="bf16"):
    return {"source": SOURCE, "model": model, "hardware": hw, "parallel": parallel, "weights": weights, "kv": kv,
            "isl": str(isl), "osl": str(osl), "output_tokens_per_s_per_gpu": "1000", "weights_ran": weights_ran,
            "kv_ran": kv_ran, "num_requests": n}


def test_trtllm_bench_sizes_its_token_budget_and_keeps_room_for_a_whole_prompt():
    m, hw = get_model("gpt-oss-20b"), get_hardware("h100-sxm")
    engine_gib = stored_params(m, "mxfp4") * 2 / GIB  # stored elements x 2 B (MXFP4 is outside its table)
    per_token_gib = 2 * 24 * 8 * 64 * 2 / GIB  # all 24 layers at full length, 8 KV heads of 64, a 16-bit cache
    free = hw.memory_capacity_bytes / GIB - engine_gib
    # 1000/1000: ~595 requests -> batch 640; raw tokens 595 x 2 = 1,190 -> the 2048 floor; 1000 + 640 fits in it
    raw = free * 0.95 / (per_token_gib * 2000)
    assert 512 < raw < 640 and raw * 2 < 2048
    assert trtllm_bench_settings(m, hw, 1, 1, 1000, 1000, "mxfp4", "bf16") == (640, 2048)
    # 8192/1024: ~129 requests -> batch 160 (32s); raw tokens 129 x 9 = 1,163 -> 2048, but without chunked prefill a
    # step must hold an 8192-token prompt beside a full batch: 8192 + 160
    raw = free * 0.95 / (per_token_gib * 9216)
    assert 128 < raw < 160 and raw * 9 < 2048
    assert trtllm_bench_settings(m, hw, 1, 1, 8192, 1024, "mxfp4", "bf16") == (160, 8192 + 160)
    # many short requests on a B200 with an FP8 cache: ~3,178 -> batch 3328 (256s); raw tokens ~6,355 -> 512s: 6656
    big = get_hardware("b200")
    raw = (big.memory_capacity_bytes / GIB - engine_gib) * 0.95 / (per_token_gib / 2 * 2048)
    assert 3072 < raw < 3328 and 4096 <= raw * 2 < 6656
    assert trtllm_bench_settings(m, big, 1, 1, 1024, 1024, "mxfp4", "fp8") == (3328, 6656)


def test_trtllm_bench_splits_its_batch_over_the_micro_batches_of_a_pipeline():
    m, hw = get_model("llama-3.3-70b"), get_hardware("b200")
    one_stage = trtllm_bench_settings(m, hw, 1, 1, 1024, 1024, "fp4", "bf16")
    b2, t2 = trtllm_bench_settings(m, hw, 2, 1, 1024, 1024, "fp4", "bf16")  # --tp 1 --pp 2
    engine_gib = stored_params(m, "fp4") * 0.5 / GIB
    per_req = 2 * 80 * 8 * 128 * 2 / GIB * 2048
    raw = (2 * hw.memory_capacity_bytes / GIB - engine_gib) * 0.95 / per_req / 2  # per micro-batch: ~258
    assert 256 < raw < 384 and b2 == 128 * math.ceil(raw / 128) == 384
    # one stage: ~243 requests -> 256; two stages hold twice the memory for the same weights, split in two
    assert one_stage == (256, 2048)
    # two micro-batches in flight: the sequences running at once
    assert trtllm_bench_max_batch(m, hw, 2, 1, 1024, 1024, "fp4", "bf16") == 2 * b2
    assert t2 >= 1024 + b2


def test_trtllm_bench_counts_a_packed_checkpoint_s_stored_elements():
    """huggingface_hub's parameter_count counts tensor elements: a packed 4-bit tensor holds two weights per element
    and its block scales are elements too, so trtllm-bench sizes a 4-bit checkpoint's engine at about half its bytes."""
    oss = get_model("gpt-oss-120b")
    c = oss.param_counts()
    assert stored_params(oss, "mxfp4") == pytest.approx(sum(c.values()) - c["experts"] * (1 - 0.5 - 1 / 32))
    assert 62e9 < stored_params(oss, "mxfp4") < 64e9  # of 117e9 weights
    llama = get_model("llama-3.3-70b")
    c = llama.param_counts()
    linear = c["attention"] + c["dense_mlp"]
    assert stored_params(llama, "fp4") == pytest.approx(sum(c.values()) - linear * (1 - 0.5 - 1 / 16))
    assert stored_params(llama, "fp8") == sum(c.values()) and stored_params(llama, "bf16") == sum(c.values())
    # so gpt-oss-120b (2 B per counted element, MXFP4 being outside its table) fits one GB200 in its estimate
    assert trtllm_bench_settings(oss, get_hardware("gb200"), 1, 1, 1024, 1024, "mxfp4", "fp8")[0] > 0


def test_a_layout_trtllm_bench_cannot_size_is_unknown():
    # Llama 3.3 70B in INT4, a format outside its table (2 B per parameter: 131 GiB), on one 80 GB H100
    assert trtllm_bench_settings(get_model("llama-3.3-70b"), get_hardware("h100-sxm"), 1, 1, 1024, 1024, "int4",
                                 "fp8") == (0, 0)


def test_the_page_s_request_counts_and_what_a_blank_cell_takes():
    assert perf_overview_requests(1024, 1024) == (3000, "")
    assert perf_overview_requests(8192, 1024) == (1500, "")
    assert perf_overview_requests(32768, 1024) == (1000, "")
    # 1000/1000 is not in the 1.x table; the 0.20 edition of the page lists it
    n, note = perf_overview_requests(1000, 1000)
    assert n == PERF_OVERVIEW_REQUESTS_0_20[(1000, 1000)] == 3000 and "0.20" in note
    # a pair no edition lists: the nearest listed pair's count, said in the note
    n, note = perf_overview_requests(1024, 2048)
    assert n == PERF_OVERVIEW_REQUESTS_0_20[(1000, 2000)] and "1000/2000" in note


def test_bundled_perf_overview_rows_state_the_page_s_request_counts():
    from planner.calibrate.validate import builtin_published

    files = {f.name: f for f in builtin_published()}
    tables = {"perf_overview_1_2.csv": PERF_OVERVIEW_REQUESTS, "perf_overview_1_2_b300.csv": PERF_OVERVIEW_REQUESTS,
              "modern_per_gpu.csv": PERF_OVERVIEW_REQUESTS,
              "perf_overview_rtx_pro_6000.csv": PERF_OVERVIEW_REQUESTS, "perf_overview_0_20.csv": PERF_OVERVIEW_REQUESTS_0_20,
              "perf_overview_1_0.csv": PERF_OVERVIEW_REQUESTS_0_20,
              "perf_overview_1_1.csv": PERF_OVERVIEW_REQUESTS}
    for name, table in tables.items():
        rows = list(csv.DictReader(files[name].open()))
        assert "num_requests" in rows[0] and "num_requests" in SIMULATED_COLUMNS
        for r in rows:
            key = (int(r["isl"]), int(r["osl"]))
            assert r["num_requests"] == (str(table[key]) if key in table else "")
        # the 0.20 page's data ran with CUDA graphs off (its "v0.20 PLEASE READ" note); the 1.x pages' with them
        assert {r.get("cuda_graphs") or "" for r in rows} == ({"off"} if name == "perf_overview_0_20.csv" else {""})
    # simulated, so the fit's vectorized path does not take them (they were never fitted: joint.NOT_FITTED)
    assert load_rows([files["modern_per_gpu.csv"]])[0] == []


def test_a_run_with_cuda_graphs_off_does_not_pad_its_decode_batches():
    row = _row()
    padded = bench_engine(row, "trtllm@1.1", offline("trtllm@1.1"))
    plain = bench_engine({**row, "cuda_graphs": "off"}, "trtllm@1.1", offline("trtllm@1.1"))
    assert padded.cuda_graph_padding and not getattr(plain, "cuda_graph_padding", False)


def _steady(row, tmp_path):
    """validate's steady-state price of the same row (no num_requests column: the analytic path)."""
    r = {k: v for k, v in row.items() if k != "num_requests"}
    f = tmp_path / "steady.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(r))
        w.writeheader()
        w.writerow(r)
    return V.predict_row(r, f, 2)[3]


def test_a_short_burst_runs_slower_than_the_steady_state_and_a_long_one_approaches_it(tmp_path):
    """With ~1,000 sequences running, 3,000 requests are three batches' worth: the burst's fill (prompts join at
    most a token budget's worth per step) and drain (the last batch empties) are a large share of the run."""
    short, long_ = _row(n="3000"), _row(n="30000")
    (_, what, cfg, _, p_short, _), = predict_offline_bench([short], "t.csv")
    (_, _, _, _, p_long, _), = predict_offline_bench([long_], "t.csv")
    steady = _steady(short, tmp_path)
    assert what == "output_tokens_per_s_per_gpu" and cfg.endswith("x3000")
    assert p_short < p_long
    assert p_short < 0.97 * steady
    assert p_long == pytest.approx(steady, rel=0.08)


def test_a_burst_that_trtllm_bench_could_not_size_still_admits_its_prompts(tmp_path):
    """Where trtllm-bench cannot size the layout the run set its own limits; they must hold a whole prompt beside
    the batch (else an 8192-token prompt could never join a running batch and the burst would run one at a time)."""
    row = _row(model="llama-3.3-70b", hw="h100-sxm", isl=8192, osl=1024, n="1500", weights="int4", weights_ran="",
               kv="fp8", kv_ran="")
    (_, _, _, _, pred, _), = predict_offline_bench([row], "t.csv")
    assert pred > 0.7 * _steady(row, tmp_path)


def test_a_row_that_does_not_fit_predicts_zero_with_a_reason():
    row = _row(model="deepseek-r1", hw="h100-sxm", parallel="tp1", weights="fp8", weights_ran="", kv_ran="")
    (_, _, _, _, pred, note), = predict_offline_bench([row], "t.csv")
    assert pred == 0.0 and "does not fit" in note


def test_the_bundled_bursts_simulate_in_seconds():
    """Every perf-overview burst is one simulation: the three files' 116 rows must stay cheap enough to run in
    every cross-validation fold (a loose bound: seconds on a 2-core machine, not a benchmark)."""
    from planner.calibrate.validate import builtin_published

    files = {f.name: f for f in builtin_published()}
    rows = list(csv.DictReader(files["modern_per_gpu.csv"].open()))
    t0 = time.perf_counter()
    out = predict_offline_bench(rows, "modern_per_gpu.csv")
    assert len(out) == len(rows) and all(p > 0 for *_, p, _ in out)
    assert time.perf_counter() - t0 < 30


def test_a_label_wider_than_the_release_means_the_release_ran():
    """Benchmark pages label rows by their table's precision (gpt-oss filed under FP8 on Hopper and FP4 on Blackwell);
    a quantized label wider than the model's release names no checkpoint anyone runs, so the row ran the release. A
    16-bit label (an upcast), a label as narrow as the release, a model released in 16 bit, and a row whose own run
    settings say what ran keep what they say."""
    from planner.calibrate.published_fit import ran_weights

    assert ran_weights("gpt-oss-120b", "fp8") == "mxfp4"  # 8 bits against the release's 4.25
    assert ran_weights("gpt-oss-20b", "fp4") == "mxfp4"  # NVFP4's 4.5 bits against 4.25
    assert ran_weights("gpt-oss-120b", "bf16") == "bf16"
    assert ran_weights("deepseek-r1", "fp8") == "fp8" and ran_weights("deepseek-r1", "int8") == "int8"
    assert ran_weights("deepseek-r1", "fp4") == "fp4"
    assert ran_weights("llama-3.1-70b", "fp8") == "fp8"
    assert V.row_precisions(_row(weights="fp8", weights_ran="", kv="fp8", kv_ran="")) == ("mxfp4", "fp8")
    assert V.row_precisions(_row(weights="fp8", weights_ran="int4", kv="fp8", kv_ran="")) == ("int4", "fp8")
    # a cache cell of "auto" (the engines' kv-cache dtype flag) is the engine's own rule, as a blank one is
    assert V.row_precisions(_row(weights="fp8", weights_ran="", kv="auto", kv_ran="")) == ("mxfp4", None)
    (_, _, cfg, _, pred, note), = predict_offline_bench([_row(weights="fp8", weights_ran="", kv="auto", kv_ran="")], "t.csv")
    assert pred > 0 and "does not fit" not in note


def test_a_table_without_request_counts_still_runs_its_trtllm_bench_rows_as_bursts(tmp_path):
    """The schema the shared validation tables use (no num_requests, no weights_ran): a 1.x perf-overview row is
    still the burst trtllm-bench ran, at the page's count for its lengths, and in the release it loaded; a
    TensorRT-LLM 0.14 max-throughput row stays at the steady state."""
    cols = ["source", "model", "hardware", "parallel", "weights", "kv", "isl", "osl", "output_tokens_per_s_per_gpu"]
    f = tmp_path / "modern.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerow({"source": "trtllm perf-overview 1.1/1.2 era (developer-guide), max throughput", "model": "gpt-oss-20b",
                    "hardware": "h100-sxm", "parallel": "tp1", "weights": "fp8", "kv": "fp8", "isl": "1000", "osl": "1000",
                    "output_tokens_per_s_per_gpu": "11557"})
        w.writerow({"source": "trtllm-bench, TensorRT-LLM 0.14.0 perf-overview, max throughput", "model": "llama-3.1-8b",
                    "hardware": "h100-sxm", "parallel": "tp1", "weights": "fp8", "kv": "fp8", "isl": "128", "osl": "128",
                    "output_tokens_per_s_per_gpu": "27000"})
        w.writerow({"source": "trtllm perf-overview 1.1/1.2 era (developer-guide), max throughput", "model": "no-such-9b",
                    "hardware": "h100-sxm", "parallel": "tp1", "weights": "fp8", "kv": "fp8", "isl": "1000", "osl": "1000",
                    "output_tokens_per_s_per_gpu": "5000"})
    rows = V.validate([str(f)]).rows
    assert rows[2].predicted is None and "unknown model" in rows[2].note  # one unknown model: that row, not the file
    assert rows[0].config.startswith("tp1 mxfp4 1000/1000 x3000") and rows[0].predicted > 0
    assert "3000 requests" in rows[0].note and "read as the released mxfp4 checkpoint" in rows[0].note
    assert rows[1].config.endswith("max") and rows[1].predicted > 0
    from planner.calibrate.bench_settings import bench_runs

    assert bench_runs("TensorRT-LLM 1.0 performance overview, max throughput", "trtllm@1.1")  # the page's title spelt out


@pytest.mark.parametrize("name", ["online_serving.csv", "mlperf_llm.csv", "serving_bench.csv"])
def test_one_unknown_model_leaves_its_row_unpredicted_not_the_file(tmp_path, name):
    """A row naming a model the planner lacks is reported beside the others, in every simulated schema."""
    from planner.calibrate.validate import builtin_published

    src = {f.name: f for f in builtin_published()}[name]
    rows = list(csv.DictReader(src.open()))[:1]
    bad = dict(rows[0], model="no-such-model-9b")
    f = tmp_path / name
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([rows[0], bad])
    got = V.validate([str(f)]).rows
    assert any(r.predicted is not None for r in got if r.model != "no-such-model-9b")
    unknown = [r for r in got if r.model == "no-such-model-9b"]
    assert unknown and all(r.predicted is None and "unknown model" in r.note for r in unknown)
