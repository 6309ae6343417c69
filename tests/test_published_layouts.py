"""Published rows with a pipeline-parallel layout (``parallel`` = tp1pp2, dep2pp2: the RTX 6000 Pro tables of the
TensorRT-LLM perf overview) are parsed once, predicted at that layout by validate and by the fit's vectorized path
alike, and priced per GPU over every stage."""

import csv
from pathlib import Path

import numpy as np
import pytest

from planner.calibrate import validate as V
from planner.calibrate.bench_settings import (PERF_OVERVIEW_GRAPH_SIZES, captured_graph_sizes, row_bench_limits,
                                             trtllm_bench_max_batch, trtllm_bench_settings)
from planner.calibrate.published_fit import Predictor, load_rows, parallel_label, parse_parallel, parse_row
from planner.errors import PlannerError
from planner.specs.loader import get_hardware, get_model

SOURCE = "trtllm perf-overview, TensorRT-LLM release/1.2 (test row), max throughput"


@pytest.mark.parametrize("text, want", [
    ("tp8", (8, 1, 1, 1)), ("dep4", (1, 1, 4, 4)), ("tp1pp2", (1, 2, 1, 1)), ("dep2pp2", (1, 2, 2, 2)),
    ("TP1,PP2", (1, 2, 1, 1)), ("dep8_pp1", (1, 1, 8, 8)), ("adp8", (1, 1, 1, 8)), ("adp4pp2", (1, 2, 1, 4)),
    ("tp8ep8", (8, 1, 8, 1)), ("TP4/EP2", (4, 1, 2, 1)), ("tp4ep4pp2", (4, 2, 4, 1)),
])
def test_parallel_labels(text, want):
    assert parse_parallel(text) == want
    assert parse_parallel(parallel_label(*want)) == want  # the label a prediction's config prints reads back the same


@pytest.mark.parametrize("text", ["pp2", "tp0", "dep", "tp2pp0", "ep4", "tp2 x pp2", "adp0", "", "tp4ep3", "dep4ep4", "tp4ep0"])
def test_bad_parallel_labels_are_refused(text):
    assert parse_parallel(text) is None


def _row(parallel, model="llama-3.3-70b", hw="b200", isl=1024, osl=1024, weights="fp4"):
    return {"source": SOURCE, "model": model, "hardware": hw, "parallel": parallel, "weights": weights, "kv": "",
            "isl": str(isl), "osl": str(osl), "output_tokens_per_s_per_gpu": "1000"}


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    f = tmp_path / "layouts.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return f


def test_a_pipeline_row_is_predicted_at_its_layout_by_validate_and_the_fit_alike(tmp_path, monkeypatch):
    rows = [_row("tp1pp2"), _row("tp2"), _row("tp1"), _row("dep2pp2", model="qwen3-235b-a22b", isl=1024, osl=8192)]
    f = _write(tmp_path, rows)
    seen = []
    real = V.estimate
    monkeypatch.setattr(V, "estimate", lambda *a, **k: seen.append(a[2]) or real(*a, **k))
    by_validate = [V.predict_row(r, f, i) for i, r in enumerate(rows, start=2)]
    assert [(p.tp, p.pp, p.ep, p.attention_dp) for p in seen] == [(1, 2, 1, 1), (2, 1, 1, 1), (1, 1, 1, 1), (1, 2, 2, 2)]
    assert [c for _, c, _, _ in by_validate][0].startswith("tp1pp2 ")
    assert [c for _, c, _, _ in by_validate][3].startswith("dep2pp2 ")
    fit_rows, skipped = load_rows([f])
    assert not skipped and [r.pp for r in fit_rows] == [2, 1, 1, 2]
    by_fit = Predictor(fit_rows).predict()
    assert by_fit == pytest.approx([p for _, _, _, p in by_validate], rel=1e-6)
    # per GPU over every stage: two stages of one GPU each hold half the weights, so they admit more sequences
    # than one GPU, but split the group's output over two GPUs
    pp2, tp1 = by_validate[0][3], by_validate[2][3]
    assert 0 < pp2 < 2 * tp1


def test_a_table_s_own_ep_and_pp_columns_beside_tp_set_the_layout(tmp_path, monkeypatch):
    """A table may give the layout as tp, ep and pp columns instead of a parallel label: validate and the fit read it
    the same way (tensor-parallel attention over tp, the experts expert-parallel over ep)."""
    cols = {"source": "a vendor table of TensorRT-LLM runs", "model": "qwen3-235b-a22b", "hardware": "h100-sxm",
            "tp": "8", "ep": "8", "pp": "", "weights": "fp8", "kv": "fp8", "isl": "1024", "osl": "1024",
            "output_tokens_per_s_per_gpu": "1000"}
    f = _write(tmp_path, [cols])
    seen = []
    real = V.estimate
    monkeypatch.setattr(V, "estimate", lambda *a, **k: seen.append(a[2]) or real(*a, **k))
    _, cfg, _, pred = V.predict_row(cols, f, 2)
    assert [(p.tp, p.pp, p.ep, p.attention_dp) for p in seen] == [(8, 1, 8, 1)]
    assert cfg.startswith("tp8ep8 ") and pred > 0
    fit_rows, _ = load_rows([f])
    assert [(r.tp, r.pp, r.ep, r.adp) for r in fit_rows] == [(8, 1, 8, 1)]


def test_trtllm_bench_counts_every_stage_s_memory_for_its_batch():
    m, hw = get_model("llama-3.3-70b"), get_hardware("b200")
    # --tp 1 --pp 2: twice the memory for the same per-token KV estimate (all layers, max(tp, kv heads) heads)
    one = trtllm_bench_max_batch(m, hw, 1, 1, 8192, 1024, "fp4", "bf16")
    two = trtllm_bench_max_batch(m, hw, 2, 1, 8192, 1024, "fp4", "bf16")
    assert two > one
    batch, tokens = trtllm_bench_settings(m, hw, 2, 1, 8192, 1024, "fp4", "bf16")  # per micro-batch
    assert batch * 2 == two
    row = _row("tp1pp2", isl=8192)
    # both limits cover the two micro-batches in flight
    assert row_bench_limits(row, "trtllm@1.1", m, hw, 1, 2, 8192, 1024, "fp4", "bf16") == (two, 2 * tokens, 2)
    # a row trtllm-bench did not size (no perf-overview source) keeps the engine's limits
    assert row_bench_limits({**row, "source": "my own run"}, "trtllm@1.1", m, hw, 1, 2, 8192, 1024, "fp4", "bf16") == (0, 0, 1)


def test_validate_runs_a_pipeline_row_at_trtllm_bench_s_limits_per_micro_batch(tmp_path, monkeypatch):
    """validate's in-flight path runs a ppM row as the simulated path does: trtllm-bench's batch and token limits
    times the pp micro-batches in flight, and CUDA graphs captured up to one micro-batch's largest decode batch."""
    m, hw = get_model("llama-3.3-70b"), get_hardware("b200")
    row = _row("tp1pp2")
    f = _write(tmp_path, [row])
    engines = []
    real = V.estimate
    monkeypatch.setattr(V, "estimate", lambda *a, **k: engines.append(k["engine"]) or real(*a, **k))
    V.predict_row(row, f, 2)
    eng = engines[0]
    batch, tokens = trtllm_bench_settings(m, hw, 2, 1, 1024, 1024, "fp4", "bf16")  # the row names no cache: 16 bit
    assert (eng.max_seqs, eng.max_batched_tokens) == (2 * batch, 2 * tokens)
    assert eng.cuda_graph_sizes == captured_graph_sizes(PERF_OVERVIEW_GRAPH_SIZES, batch, tokens)
    assert eng.cuda_graph_max_batch == min(batch, tokens) and eng.cuda_graph_padding


def test_a_bad_parallel_label_is_one_clear_error(tmp_path):
    f = _write(tmp_path, [_row("pp2")])
    with pytest.raises(PlannerError, match="tpN, depN or adpN"):
        parse_row(_row("pp2"), f.name, 2)
    with pytest.raises(PlannerError, match="tpN, depN or adpN"):
        V.predict_row(_row("pp2"), f, 2)
    _, skipped = load_rows([f])
    assert list(skipped) == [f"{f.name}:2"]


def _bf16_bound(model: str, hw: str, isl: int, osl: int, kv_bytes: float) -> float:
    """Output tokens/s per GPU a TP1 decode could reach at most with a ``kv_bytes``-per-element cache: the KV pool is
    0.95 of what the weights leave (the page's --kv_cache_free_gpu_mem_fraction 0.95, here of the whole device: no
    activations, no runtime), every parameter NVFP4 (4 bits + one 8-bit scale per 16: 0.5625 bytes; the 16-bit embedding
    and lm_head would tighten it), the pool full at the mean context isl + osl/2, each step reading all weights and all
    KV at the datasheet bandwidth, and no prefill step at all."""
    m, h = get_model(model), get_hardware(hw)
    weights = sum(m.param_counts().values()) * 0.5625  # bytes
    kv = 0.95 * (h.memory_capacity_bytes - weights)
    per_token = 2 * m.num_layers * m.num_kv_heads * m.head_dim * kv_bytes  # bytes
    seqs = kv / (per_token * (isl + osl / 2))
    return seqs * h.memory_bandwidth_bytes_per_s / (weights + kv)


def _published(name: str) -> list[dict]:
    from planner.specs.loader import data_dir

    with (data_dir("measurements") / "published" / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("name, model, hw, isl, osl", [
    ("perf_overview_1_2.csv", "llama-3.3-70b", "gb200", 1024, 8192),
    ("perf_overview_1_2.csv", "qwen3-30b-a3b", "gb200", 1024, 8192),
    ("perf_overview_1_2.csv", "qwen3-30b-a3b", "b200", 1024, 32768),
    ("perf_overview_rtx_pro_6000.csv", "qwen3-30b-a3b", "rtx-pro-6000", 1000, 1000),
    ("perf_overview_rtx_pro_6000.csv", "qwen3-30b-a3b", "rtx-pro-6000", 1024, 8192),
])
def test_a_16_bit_cache_cannot_reach_these_fp4_rows_so_they_ran_fp8(name, model, hw, isl, osl):
    row = next(r for r in _published(name) if (r["model"], r["hardware"], r["parallel"], int(r["isl"]), int(r["osl"]))
               == (model, hw, "tp1", isl, osl))
    measured = float(row["output_tokens_per_s_per_gpu"])
    assert _bf16_bound(model, hw, isl, osl, 2.0) < measured < _bf16_bound(model, hw, isl, osl, 1.0)
    assert row["kv"] == "" and row["kv_ran"] == "fp8"


def test_fp8_kv_labels_follow_the_checkpoint_not_the_row():
    """Every FP4 row of the ModelOpt checkpoints on the 1.x-era pages (1.0, 1.1-1.2, 1.2) says fp8, whether or not its own
    bound excludes 16 bits; the 0.20 page's rows, none of which the bound excludes, keep the planner's default."""
    for name in ("perf_overview_1_2.csv", "perf_overview_1_2_b300.csv", "perf_overview_rtx_pro_6000.csv",
                 "perf_overview_1_0.csv", "perf_overview_1_1.csv"):
        rows = [r for r in _published(name) if r["weights"] == "fp4" and r["kv"] == ""]
        assert rows and all(r["kv_ran"] == "fp8" for r in rows)
    for r in _published("perf_overview_0_20.csv"):
        if r["weights"] == "fp4" and r["parallel"] == "tp1":
            assert float(r["output_tokens_per_s_per_gpu"]) < _bf16_bound(r["model"], r["hardware"], int(r["isl"]),
                                                                          int(r["osl"]), 2.0)
            assert not r.get("kv_ran")


def test_the_1_0_page_s_moe_rows_run_attention_dp_with_tensor_parallel_experts():
    """The 1.0 perf overview's MoE llm_options set enable_attention_dp and its command names no EP size, so TensorRT-LLM's
    mapping splits each expert tensor-parallel over the row's GPUs (moe_tp_size = tp_size, moe_ep_size = 1): adpN.
    Its dense models run plain tensor parallelism, and a MoE row on one GPU is tp1 (one rank: nothing to split)."""
    rows = _published("perf_overview_1_0.csv")
    assert len(rows) == 210
    for r in rows:
        moe = get_model(r["model"]).moe is not None
        tp, pp, ep, adp = parse_parallel(r["parallel"])
        assert pp == 1 and ep == 1
        gpus = tp * adp
        assert float(r["output_tokens_per_s_per_gpu"]) == pytest.approx(float(r["total_output_tokens_per_s"]) / gpus,
                                                                         abs=0.06)
        if moe and gpus > 1:
            assert r["parallel"] == f"adp{gpus}"
        else:
            assert r["parallel"] == f"tp{gpus}"


def test_the_0_17_table_is_per_gpu_over_tp_with_the_cache_in_the_weights_precision():
    """TensorRT-LLM 0.17's table as transcribed: every row's per-GPU figure is the page's TP-group figure over tp, the
    FP8 columns run an FP8 cache ("If you specify FP8 quantization, the KV cache will automatically be set to FP8 as
    well"), the A100 column FP16, and "GH200 480GB" is the 96 GB HBM3 part, measured at TP1 only."""
    rows = _published("perf_overview_0_17.csv")
    assert len(rows) == 373
    for r in rows:
        assert float(r["output_tokens_per_s_per_gpu"]) == pytest.approx(float(r["total_output_tokens_per_s"]) / int(r["tp"]),
                                                                         abs=1e-4)
        assert r["kv"] == r["weights"] == ("fp16" if r["hardware"] == "a100-sxm-80gb" else "fp8")
    assert {r["tp"] for r in rows if r["hardware"] == "gh200-96gb"} == {"1"}
    assert get_hardware("gh200-96gb").memory_capacity_bytes < get_hardware("gh200").memory_capacity_bytes


def test_a_simulated_replica_needs_links_between_its_devices():
    """MI350X nodes have no scale-out network on record: a 16-GPU tensor-parallel replica has no link to cross. The
    simulator's replica builder refuses it as the estimate does (it used to price the collective as infinite time, so
    no request finished and an MLPerf row of 16 GPUs crashed validate with a TypeError)."""
    from planner.serving.sim.config import replica_for

    with pytest.raises(PlannerError, match="scale-up domain holds 8"):
        replica_for("llama-2-70b", "mi350x", tp=16, weights="fp8", engine="vllm")
    assert replica_for("llama-2-70b", "mi350x", tp=8, weights="fp8", engine="vllm") is not None


def test_mlperf_rows_take_the_submission_s_activation_format(monkeypatch):
    from planner.serving import published

    built = []
    real = published.replica_for

    def fake_generate(spec, n, rate, seed):
        raise RuntimeError("stop after the replica is built")  # nothing is simulated

    monkeypatch.setattr(published, "generate", fake_generate)
    monkeypatch.setattr(published, "replica_for", lambda *a, **k: built.append(k.get("activations")) or real(*a, **k))
    with pytest.raises(RuntimeError, match="stop after"):
        published._MLPerf().predict("llama-2-70b", "mi350x", 8, "mxfp4", "fp8", 265.0, "vllm", "fp4")
    assert built and set(built) == {"fp4"}


def test_an_mlperf_row_s_batch_limits_hold_over_the_engine_s_device_defaults(monkeypatch):
    """A submission's own limits (``max_batch``: its engines' batch limit; ``max_batched_tokens``: tokens a step) are the
    ones its replicas run with, also where the engine picks its own by device memory (vLLM: 1,024 sequences and 8,192
    tokens on a GPU of 70 GiB or more), and the row's note says so."""
    from planner.serving import published
    from planner.specs.loader import get_hardware as hw_of

    engines = []
    real = published.replica_for

    def fake_generate(spec, n, rate, seed):
        raise RuntimeError("stop after the replica is built")

    monkeypatch.setattr(published, "generate", fake_generate)
    monkeypatch.setattr(published, "replica_for", lambda *a, **k: engines.append(k["engine"]) or real(*a, **k))
    with pytest.raises(RuntimeError, match="stop after"):
        published._MLPerf().predict("llama-2-70b", "mi325x", 8, "fp8", "fp8", 265.0, "vllm", None, (1, 1, 1), 832, 40960)
    eng = engines[-1].for_hardware(hw_of("mi325x"))
    assert (eng.max_seqs, eng.max_batched_tokens) == (832, 40960)
    monkeypatch.undo()
    row = {"source": "mlperf-inference-v5.1 closed Vultr 8xMI325X_2xEPYC_9554", "model": "llama-2-70b", "hardware": "mi325x",
           "gpus": "8", "weights": "fp8", "kv": "fp8", "scenario": "server", "mean_output_tokens": "265.005",
           "output_tokens_per_s": "30339.40", "tp": "1", "max_batch": "832", "max_batched_tokens": "40960"}
    (_, _, _, _, pred, note), = list(published.predict_mlperf([row]))
    assert pred > 0 and "832 sequences an engine" in note and "40,960 batched tokens a step" in note


def test_an_mlperf_offline_query_lasts_its_minimum_duration_on_every_system_size(monkeypatch):
    """LoadGen sizes an Offline query to 1.1 x 600 s at the system's rate: each replica's share is simulated that long
    (from a pilot run), so a system's tokens/s per GPU does not depend on how many replicas it has. A fixed sample
    count spread over 8 replicas had made an 8-GPU H200 system's Mixtral rate per GPU a third below one GPU's."""
    from planner.calibrate.bench_settings import offline as offline_profile
    from planner.serving import published

    counts = []
    real = published.generate
    monkeypatch.setattr(published, "generate", lambda spec, n, rate, seed: counts.append(n) or real(spec, n, rate=rate, seed=seed))
    one = published._MLPerf().predict("mixtral-8x7b", "h200-sxm", 1, "fp8", "fp8", 144.84, "trtllm", None, (1, 1, 1))
    assert counts[0] == published.MLPERF_PILOT
    eight = published._MLPerf().predict("mixtral-8x7b", "h200-sxm", 8, "fp8", "fp8", 144.84, "trtllm", None, (1, 1, 1))
    assert eight["offline"] / 8 == pytest.approx(one["offline"], rel=0.01)
    assert eight["offline_plan"] == "tp1 x8"
    # the query itself runs for 1.1 x 600 s at the replica's own rate (the pilot's, within its ramp and drain)
    counts.clear()
    rep = published.replica_for("mixtral-8x7b", "h200-sxm", tp=1, weights="fp8", kv="fp8",
                                engine=offline_profile("trtllm"), max_input=2048)
    tok, rps = published._offline_query(rep, published._mlperf_workload(144.84, "mixtral-8x7b"))
    assert counts[0] == published.MLPERF_PILOT and published.MLPERF_PILOT < counts[-1] <= published.MLPERF_MAX_QUERY
    assert counts[-1] / rps == pytest.approx(published.MLPERF_OFFLINE_QUERY_S, rel=0.05)  # seconds the query lasts
    assert tok * 8 == pytest.approx(eight["offline"], rel=1e-9)


def test_an_mlperf_row_naming_its_layout_is_predicted_at_that_layout():
    from planner.serving.published import predict_mlperf

    row = {"source": "mlperf-inference-v4.1 closed Fujitsu CDI_L40Sx8_TRT", "model": "llama-2-70b", "hardware": "l40s",
           "gpus": "8", "weights": "fp8", "kv": "fp8", "scenario": "offline", "mean_output_tokens": "265.005",
           "output_tokens_per_s": "3717.74", "tp": "4", "pp": ""}
    (_, _, cfg, _, pred, note), = list(predict_mlperf([row]))
    assert "(tp4 x2)" in cfg and "the submission's layout" in note and pred > 0
    with pytest.raises(PlannerError, match="does not divide"):
        list(predict_mlperf([{**row, "tp": "3"}]))


def test_w4a4_mxfp4_runs_at_the_fp4_rate_where_w4a8_runs_at_fp8():
    from planner.serving.planspec import PlanSpec
    from planner.serving.predict import estimate

    w4a8 = estimate("llama-2-70b", "mi355x", PlanSpec(weights="mxfp4", kv="fp8"), isl=2048, osl=2, batching="static",
                    batch=16, engine="vllm")
    w4a4 = estimate("llama-2-70b", "mi355x", PlanSpec(weights="mxfp4", kv="fp8", activations="fp4"), isl=2048, osl=2,
                    batching="static", batch=16, engine="vllm")
    assert w4a8.plan["compute_dtype"] == "fp8" and w4a4.plan["compute_dtype"] == "fp4"
    # a compute-bound prefill of 32k tokens: the MXFP4 x MXFP4 rate is twice the FP8 one on CDNA4 (10.1 vs 5.0
    # PFLOPS), and 4-bit activations halve the activation traffic beside it
    assert 1.5 < w4a8.ttft_s / w4a4.ttft_s <= 2.2


def test_perf_overview_runs_pad_decode_batches_to_captured_cuda_graph_sizes():
    """The perf-overview llm_options (0.19 on: cuda_graph_config enable_padding, batch sizes 1, 2, 4, ..., 256, 384,
    512, 1024, ...): a decode step of 393 sequences replays the 512 graph, so its GEMMs run 512 rows while attention
    reads only the 393 real caches; prefill steps and other engines are not padded."""
    from planner.calibrate.bench_settings import PERF_OVERVIEW_GRAPH_SIZES, bench_engine, offline
    from planner.costmodel.plans import make_plans
    from planner.costmodel.step import CostModel, Op, Step

    m, hw = get_model("llama-3.3-70b"), get_hardware("b200")
    p = make_plans(m, hw, tp=1, weights="fp8", kv="fp8")
    plain = offline("trtllm@1.1")
    padded = bench_engine(_row("tp1"), "trtllm@1.1", plain)
    # the engine's own limits (batch 2048, 8192 tokens) keep the named sizes up to 2048
    assert padded.cuda_graph_padding and padded.cuda_graph_sizes == tuple(s for s in PERF_OVERVIEW_GRAPH_SIZES if s <= 2048)
    assert bench_engine({"source": "MLPerf"}, "trtllm@1.1", plain) is plain

    def ops(eng, step):
        return {o.name: o for o in CostModel(m, hw, engine=eng).step(p, step).ops}

    dec = Step(decode_seqs=393, decode_ctx=1500)
    a, b = ops(plain, dec), ops(padded, dec)
    assert float(np.ravel(b[Op.MLP_UP].flops)[0]) == pytest.approx(float(np.ravel(a[Op.MLP_UP].flops)[0]) * 512 / 393)
    # attention reads the 393 real caches; only the padded rows' queries and outputs add bytes (under 0.5 % here)
    att_a, att_b = float(np.ravel(a[Op.ATTENTION].bytes)[0]), float(np.ravel(b[Op.ATTENTION].bytes)[0])
    assert att_a <= att_b < 1.005 * att_a
    exact = Step(decode_seqs=512, decode_ctx=1500)  # a captured size is not padded
    assert float(np.ravel(ops(padded, exact)[Op.MLP_UP].flops)[0]) == pytest.approx(
        float(np.ravel(ops(plain, exact)[Op.MLP_UP].flops)[0]))
    pre = Step(prefill_seqs=1, prefill_tokens=1000)
    assert float(np.ravel(ops(padded, pre)[Op.MLP_UP].flops)[0]) == pytest.approx(
        float(np.ravel(ops(plain, pre)[Op.MLP_UP].flops)[0]))


def test_mlperf_replicas_have_no_api_front_end(monkeypatch):
    """LoadGen hands the system under test pre-tokenized samples in process: the release's per-request front-end time
    (vLLM 0.15's fitted ~1 ms) is not in an MLPerf run."""
    from planner.errors import PlannerError
    from planner.serving import published
    from planner.specs.engine import get_engine

    seen = []

    def fake(*a, engine=None, **kw):
        seen.append(engine)
        raise PlannerError("stop")

    monkeypatch.setattr(published, "replica_for", fake)
    assert get_engine("vllm@0.15").request_overhead_s > 0
    with pytest.raises(PlannerError):
        published._MLPerf().predict("llama-2-70b", "mi300x", 8, "fp8", "fp8", 280.0, "vllm@0.15")
    assert seen and all(e.request_overhead_s == 0.0 and e.name == "vllm@0.15" for e in seen)


@pytest.mark.parametrize("model, stated, want", [
    ("llama-2-70b", 265.005, 294.45),   # 90 % of the reference's 294.45 tokens per sample: the floor, not a mean
    ("llama-2-70b", 323.895, 294.45),   # 110 %: the ceiling
    ("mixtral-8x7b", 130.356, 144.84),  # 90 % of 144.84
    ("llama-2-70b", 280.0, 280.0),      # a submission's own mean stands
    ("llama-3.1-405b", 265.005, 265.005),  # no reference on record: the stated value stands
])
def test_mlperf_rows_stating_the_accuracy_window_s_bound_are_simulated_at_the_reference_mean(model, stated, want):
    """The MLPerf accuracy rule bounds a submission's mean output to 90-110 % of the reference's tokens per sample;
    a row stating exactly a bound (the validation files' 265.005 for Llama-2-70B) is read as the reference's mean."""
    from planner.serving import published

    got, note = published.mlperf_output_mean(model, stated)
    assert got == pytest.approx(want)
    assert bool(note) == (got != stated)
    ref = published.MLPERF_TOKENS_PER_SAMPLE
    assert ref["llama-2-70b"] * 0.9 == pytest.approx(265.005) and ref["mixtral-8x7b"] * 0.9 == pytest.approx(130.356)


def test_mlperf_prediction_simulates_the_reference_output_mean(monkeypatch):
    from planner.serving import published

    means = []
    monkeypatch.setattr(published._MLPerf, "predict", lambda self, m, hw, g, w, kv, mean, *a, **k: means.append(mean) or
                        {"offline": 1.0, "offline_plan": "tp1 x8", "server": 1.0, "server_plan": "tp1 x8"})
    rows = [{"model": "llama-2-70b", "hardware": "h200-sxm", "gpus": "8", "weights": "fp8", "kv": "fp8",
             "scenario": "offline", "mean_output_tokens": "265.005", "output_tokens_per_s": "1000", "source": "MLPerf"}]
    out = list(published.predict_mlperf(rows))
    assert means == [pytest.approx(294.45)] and "accuracy rule's bound" in out[0][-1]


def test_the_mlperf_replay_tries_pipeline_layouts_as_the_submissions_run_them():
    """NVIDIA's v5.0 Llama-2-70B configuration runs an H100 pair as tp1 pp2: the replay's layouts include every
    power-of-two tensor x pipeline split of the system (and expert parallel over the tensor group for MoE models),
    each filling the GPUs with whole replicas."""
    from planner.serving import published

    dense = published._layouts("llama-2-70b", 8)
    assert (1, 2, 1) in dense and (2, 4, 1) in dense and (8, 1, 1) in dense
    assert all(8 % (tp * pp) == 0 and ep == 1 for tp, pp, ep in dense)
    assert len(dense) == len(set(dense)) == 10  # tp x pp in {1, 2, 4, 8}^2 with tp x pp <= 8
    moe = published._layouts("mixtral-8x7b", 8)
    assert (2, 2, 2) in moe and (2, 2, 1) in moe and (1, 8, 1) in moe
    assert published._layout_label(1, 2, 1, 4) == "tp1 pp2 x4" and published._layout_label(2, 1, 2, 4) == "tp2 ep2 x4"


def test_perf_overview_graphs_stop_at_the_engine_batch_limit():
    """TensorRT-LLM keeps the named CUDA-graph sizes up to min(max_batch_size, max_num_tokens) and, padding on, adds
    that limit itself (model_engine.py _filter_cuda_graph_batch_sizes): a trtllm-bench run sized to 640 sequences and
    2048 tokens pads a 574-sequence decode step to 640 rows, not to the named 1024."""
    from planner.calibrate.bench_settings import PERF_OVERVIEW_GRAPH_SIZES, bench_engine, captured_graph_sizes, offline
    from planner.costmodel.plans import make_plans
    from planner.costmodel.step import CostModel, Op, Step

    assert captured_graph_sizes(PERF_OVERVIEW_GRAPH_SIZES, 640, 2048)[-3:] == (384, 512, 640)
    assert captured_graph_sizes(PERF_OVERVIEW_GRAPH_SIZES, 512, 8192)[-2:] == (384, 512)  # a named size: nothing added
    assert captured_graph_sizes(PERF_OVERVIEW_GRAPH_SIZES, 4096, 300)[-1] == 300  # the token budget binds
    assert captured_graph_sizes((1, 2, 4), 8, 8) == (1, 2, 4)  # every named size below the limit: kept as named
    m, hw = get_model("llama-3.3-70b"), get_hardware("b200")
    p = make_plans(m, hw, tp=1, weights="fp8", kv="fp8")
    plain = offline("trtllm@1.1").with_(max_seqs=640, max_batched_tokens=2048)
    padded = bench_engine(_row("tp1"), "trtllm@1.1", plain)
    assert padded.cuda_graph_sizes[-1] == padded.cuda_graph_max_batch == 640
    dec = Step(decode_seqs=574, decode_ctx=1500)
    up = lambda eng: float(np.ravel({o.name: o for o in CostModel(m, hw, engine=eng).step(p, dec).ops}[Op.MLP_UP].flops)[0])  # noqa: E731
    assert up(padded) == pytest.approx(up(plain) * 640 / 574)
    # two pipeline micro-batches share limits set for both: each captures up to half of them
    two = bench_engine(_row("tp1"), "trtllm@1.1", offline("trtllm@1.1").with_(max_seqs=1280, max_batched_tokens=4096), 2)
    assert two.cuda_graph_sizes[-1] == 640
