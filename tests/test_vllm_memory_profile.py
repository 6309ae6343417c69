"""vLLM's KV cache is what its memory profile leaves: utilization x device memory - (weights + the profile run's
torch peak + the non-torch memory it adds). The peak is the sampler warm-up on min(max_num_seqs, batched tokens) rows
of full-vocabulary logits (38.8 bytes a logit: fp32 copies, sorted values and int64 indices for top-k/top-p,
probabilities) unless the forward pass of the batched tokens is larger; NCCL adds to the non-torch memory when a
replica spans several GPUs. Checked by hand and against the published startup logs (vllm_kv_memory.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from planner.calibrate.memory_rows import predict_kv_memory
from planner.costmodel.memory import memory
from planner.costmodel.plans import make_plans
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model

GiB = 2.0**30
DATA = Path(__file__).resolve().parents[1] / "measurements" / "published" / "vllm_kv_memory.csv"


def _mem(model, hw, tp, weights="bf16", engine="vllm@0.15"):
    m, h = get_model(model), get_hardware(hw)
    eng = get_engine(engine).for_hardware(h)
    return m, h, eng, memory(m, h, make_plans(m, h, tp=tp, weights=weights, kv="bf16", engine=eng), eng)


def test_llama_8b_on_an_h100_by_hand():
    m, h, eng, r = _mem("llama-3.1-8b", "h100-sxm", 1)
    assert (eng.max_seqs, eng.max_batched_tokens) == (1024, 8192)  # vLLM's server defaults on a >= 70 GiB GPU
    sampler = 1024 * 128256 * 38.8  # the sampler warm-up outweighs the forward pass of 8,192 tokens (0.78 GiB)
    assert float(r.activation_bytes[0]) == pytest.approx(sampler)
    assert float(r.runtime_bytes[0]) == pytest.approx(0.14 * GiB)
    # vLLM's fraction is of the total CUDA reports (79.18 GiB in the same logs), not nvidia-smi's 79.65
    assert h.memory_visible_bytes / GiB == pytest.approx(79.18, abs=0.005)
    want = 0.9 * h.memory_visible_bytes - float(r.weights_bytes[0]) - sampler - 0.14 * GiB
    assert float(r.kv_capacity_bytes[0]) == pytest.approx(want)
    # the startup log of this configuration (llm-d, vLLM 0.11): 51.38 GiB
    assert float(r.kv_capacity_bytes[0]) / GiB == pytest.approx(51.38, rel=0.005)


def test_the_sampler_term_is_the_vocabulary_s_not_the_model_s():
    """Qwen3-0.6B and Qwen3-32B share a 151,936-entry vocabulary: the same profiled peak (5.56 and 5.64 GiB logged)."""
    small, big = (_mem(x, "h100-sxm", 1)[3] for x in ("qwen3-0.6b", "qwen3-32b"))
    assert float(small.activation_bytes[0]) == float(big.activation_bytes[0]) == pytest.approx(1024 * 151936 * 38.8)
    # on an A100 vLLM keeps 256 sequences: a quarter of the warm-up
    a100 = _mem("qwen3-0.6b", "a100-sxm-80gb", 1)[3]
    assert float(a100.activation_bytes[0]) == pytest.approx(256 * 151936 * 38.8)


def test_a_replica_of_several_gpus_adds_nccl_memory_on_each():
    one = _mem("qwen3-32b", "h100-sxm", 1)[3]
    two = _mem("qwen3-32b", "h100-sxm", 2)[3]
    assert float(two.runtime_bytes[0]) - float(one.runtime_bytes[0]) == pytest.approx(0.41 * GiB)
    # TensorRT-LLM keeps its 1 GiB runtime prior and its own activation estimate
    trt = _mem("qwen3-32b", "h100-sxm", 2, engine="trtllm@0.14")[3]
    assert float(trt.runtime_bytes[0]) == pytest.approx(1.0 * GiB)


def test_a_checkpoint_vllm_cannot_fit_does_not_fit():
    """Llama-3.3-70B FP8 on one H100: vLLM's log shows -1.44 GiB for the cache ('No available memory for the cache
    blocks'); the planner leaves none either."""
    r = _mem("llama-3.3-70b", "h100-sxm", 1, weights="fp8")[3]
    assert float(r.kv_capacity_bytes[0]) < 0


def test_published_startup_logs():
    with DATA.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = predict_kv_memory(rows, DATA.name)
    assert len(got) == 2 * len(rows) and all(p is not None for *_, p, _ in got)
    kv = {(rows[i]["model"], rows[i]["hardware"], rows[i]["tp"]): (meas, pred) for i, what, _, meas, pred, _ in got
          if what == "kv_cache_gib"}
    # the H100 logs of vLLM 0.11 (dense models, all but gpt-oss): within 3 %, or 0.5 GiB of a small cache
    for key in [("llama-3.1-8b", "h100-sxm", "1"), ("qwen3-0.6b", "h100-sxm", "1"), ("qwen3-32b", "h100-sxm", "2"),
                ("llama-3.3-70b", "h100-sxm", "2"), ("qwen3-32b", "h100-sxm", "1")]:
        meas, pred = kv[key]
        assert abs(pred - meas) <= max(0.03 * meas, 0.5), key
    # the A100 logs (vLLM 0.10.1.1, which prints 'Using FlashInfer for top-p & top-k sampling': its profile charges
    # FlashInfer's 13 bytes a logit, sampler_bytes_from): the single-node ones within 1.5 %
    a100 = [(meas, pred) for i, what, _, meas, pred, _ in got
            if what == "kv_cache_gib" and rows[i]["hardware"] == "a100-sxm-80gb"]
    assert len(a100) == 4 and all(abs(p - m) <= 0.015 * m for m, p in a100)
    # the A100 40GB log (TP2 across two nodes, gpu-memory-utilization 0.5): a card no other log is from, 5.5 % high
    # (NCCL's buffers for a ring across nodes are not priced apart from the NVLink figure)
    meas, pred = kv[("qwen2.5-7b", "a100-sxm-40gb", "2")]
    assert abs(pred - meas) <= 0.06 * meas
    # every checkpoint's bytes to 1 %, gpt-oss's as vLLM pads its MXFP4 experts
    weights = [(meas, pred) for i, what, _, meas, pred, _ in got if what == "weights_gib"]
    assert len(weights) == len(rows) == 12 and all(abs(p / m - 1) < 0.01 for m, p in weights)


def test_memory_logs_are_validated_apart_from_the_speed_tables():
    """The memory rows are `planner validate` rows of their own; the cross-validated speed tables and the error bands
    (throughput, TTFT, TPOT residuals) do not take them, and no fit does."""
    from planner.calibrate import crossval
    from planner.calibrate.published_fit import load_rows

    assert crossval._simulated_rows([DATA]) == []
    assert load_rows([DATA])[0] == []


def test_cross_validating_only_memory_logs_is_one_clear_error(capsys):
    from cli_helpers import run

    code, _, err = run(["validate", str(DATA), "--cross-validate", "hardware"], capsys)
    assert code == 2 and "no speed or latency rows" in err and "Traceback" not in err


def test_vllm_loads_mxfp4_experts_with_the_hidden_dimension_padded_to_256():
    """gpt-oss's 2,880-wide hidden dimension is held as 3,072 by vLLM's MXFP4 MoE kernels (round_up(hidden, 256)):
    1/15 more expert bytes, in memory and in every expert weight read; other engines and formats keep the checkpoint's
    shapes."""
    from planner.costmodel.step import CostModel, Op, Step

    m, h = get_model("gpt-oss-120b"), get_hardware("h100-sxm")
    vllm, trt = get_engine("vllm@0.15").for_hardware(h), get_engine("trtllm@1.1")
    pv, pt = (make_plans(m, h, tp=1, weights="mxfp4", kv="bf16", engine=e) for e in (vllm, trt))
    assert float(np.ravel(pv.expert_pad)[0]) == pytest.approx(3072 / 2880) and float(np.ravel(pt.expert_pad)[0]) == 1.0
    experts = m.param_counts()["experts"] * 4.25 / 8  # MXFP4: an E8M0 scale per 32
    wv, wt = (float(memory(m, h, p, e).weights_bytes[0]) for p, e in ((pv, vllm), (pt, trt)))
    assert wv - wt == pytest.approx(experts * (3072 / 2880 - 1), rel=1e-9)
    assert float(np.ravel(make_plans(m, h, tp=1, weights="fp8", kv="bf16", engine=vllm).expert_pad)[0]) == 1.0
    step = Step(decode_seqs=64.0, decode_ctx=2000.0)
    read = [float(next(o for o in CostModel(m, h, engine=e).step(p, step).ops if o.name == Op.EXPERTS).bytes[0])
            for p, e in ((pv, vllm), (pt, trt))]
    assert read[0] > read[1] * 1.05


def test_before_hopper_the_marlin_kernel_also_pads_each_rank_s_intermediate_slice():
    """On an A100 vLLM runs MXFP4 experts in Marlin, which rounds each rank's intermediate slice up to 128: gpt-oss's
    2,880 at TP4 is 720 a rank, held as 768 (with the hidden dimension's 3,072: 1.138x the expert bytes); on an H100
    (Triton) only the hidden dimension is padded."""
    m = get_model("gpt-oss-120b")
    vllm = get_engine("vllm@0.15")
    a100 = make_plans(m, get_hardware("a100-sxm-80gb"), tp=4, weights="mxfp4", kv="bf16", engine=vllm)
    h100 = make_plans(m, get_hardware("h100-sxm"), tp=4, weights="mxfp4", kv="bf16", engine=vllm)
    assert float(np.ravel(a100.expert_pad)[0]) == pytest.approx(3072 / 2880 * 768 / 720)
    assert float(np.ravel(h100.expert_pad)[0]) == pytest.approx(3072 / 2880)
    tp2 = make_plans(m, get_hardware("a100-sxm-80gb"), tp=2, weights="mxfp4", kv="bf16", engine=vllm)
    assert float(np.ravel(tp2.expert_pad)[0]) == pytest.approx(3072 / 2880 * 1536 / 1440)  # 1,440 a rank -> 1,536


def test_engines_take_their_fraction_of_the_total_cuda_reports():
    """nvidia-smi's memory.total (the spec's capacity) includes what the driver reserves; CUDA's total, which vLLM
    multiplies gpu_memory_utilization by, does not: on an H100 79.18 of 79.65 GiB, on an RTX 3090 23.67 of 24.0."""
    for hw, smi_mib, cuda_mib in (("h100-sxm", 81559, 81080), ("rtx-3090", 24576, 24238), ("l4", 23034, 22518)):
        h = get_hardware(hw)
        assert (h.memory_capacity_bytes / 2**20, h.memory_visible_bytes / 2**20) == (smi_mib, cuda_mib)
        m, _, eng, r = _mem("llama-3.1-8b", hw, 1)
        assert float(r.usable_bytes[0]) == pytest.approx(eng.utilization * cuda_mib * 2**20)
    # a device with no CUDA-side figure on record keeps its capacity
    h = get_hardware("rtx-4090")
    assert h.memory.visible is None and h.memory_visible_bytes == h.memory_capacity_bytes


def test_vllm_v0_memory_accounting_follows_the_release():
    """V0's profile changed twice: free memory before and after the profile run (through 0.6.4), a device-wide
    non-torch figure taking in the context and torch's cached blocks (PR 10511: 1.79 GiB on an H100), then the
    non-torch increase alone (PR 11809, 0.7: 0.10-0.16 GiB). A release named finer than the profile gets its own."""
    rt = {v: get_engine(v).runtime_at_release / GiB for v in ("vllm@0.6", "vllm@0.4.1", "vllm@0.6.4", "vllm@0.6.5",
                                                               "vllm@0.6.6", "vllm@0.7.3")}
    assert rt == pytest.approx({"vllm@0.6": 0.48, "vllm@0.4.1": 0.48, "vllm@0.6.4": 0.48, "vllm@0.6.5": 1.79,
                                "vllm@0.6.6": 1.79, "vllm@0.7.3": 0.13})
    # the RTX 3090 log the 0.4-0.6.4 value comes from: vLLM 0.4.1, Llama-3-8B, '# GPU blocks: 2358' of 16 tokens
    m, h, eng, r = _mem("llama-3-8b", "rtx-3090", 1, engine="vllm@0.4.1")
    assert eng.max_seqs == 256 and float(r.activation_bytes[0]) == pytest.approx(256 * 128256 * 41.2)
    per_token = 2 * m.num_layers * m.num_kv_heads * m.head_dim * 2  # K and V, 16-bit: 128 KiB
    assert per_token == 131072
    blocks = float(r.kv_capacity_bytes[0]) / (16 * per_token)
    assert blocks == pytest.approx(2358, rel=0.005)
    # 0.7 on: the non-torch increase, as the V1 releases log it
    assert get_engine("vllm@0.7.3").runtime_at_release < get_engine("vllm@0.4.1").runtime_at_release


def test_a_profile_bounded_by_release_is_checked_when_loaded():
    from planner.specs.engine import EngineSpec

    with pytest.raises(ValueError, match="oldest first"):
        EngineSpec.model_validate({"id": "x", "version": "1", "name": "x", "source": "s",
                                   "settings": {"runtime_bytes_from": {"value": {"0.7": "1 GiB", "0.6.5": "2 GiB"},
                                                                       "source": "s"}}})


def test_an_estimate_says_how_much_cache_the_other_sampler_path_would_leave():
    """vLLM's sampler warm-up sets its profile peak at 38.8 bytes a logit on the sorting top-k/top-p path and about 13 on
    FlashInfer's kernels. Where the difference is material the estimate says what the path the release's images do not
    take would leave: more cache for vllm@0.11 (sorting), less for 0.8.5 (its images sample with FlashInfer)."""
    from planner.api import PlanSpec
    from planner.serving.predict import estimate

    rows, vocab = 1024, 128256  # vLLM's defaults on a >= 70 GiB GPU; Llama 3's vocabulary
    diff = f"{rows * vocab * (38.8 - 13) / GiB:.1f} GiB"
    sorts = estimate("llama-3-70b", "h100-pcie", PlanSpec(tp=2), engine="vllm@0.11", isl=206, osl=179, concurrency=8)
    note = [n for n in sorts.notes if "sampler warm-up" in n]
    assert len(note) == 1
    assert f"{diff} more cache" in note[0] and f"{rows * vocab * 38.8 / GiB:.1f} GiB a GPU" in note[0]
    flash = estimate("llama-3-70b", "h100-pcie", PlanSpec(tp=2), engine="vllm@0.8.5", isl=206, osl=179, concurrency=8)
    note = [n for n in flash.notes if "sampler warm-up" in n]
    assert len(note) == 1 and "FlashInfer's top-k/top-p kernels" in note[0]
    assert f"{diff} less cache" in note[0] and f"{rows * vocab * 13 / GiB:.1f} GiB a GPU" in note[0]
    # the profile peak the two releases charge differs by that much (the KV cache is what the profile leaves)
    peak = sorts.memory["activation_bytes"] - flash.memory["activation_bytes"]
    assert peak == pytest.approx(rows * vocab * 25.8, rel=1e-6)
    # a cache of 51 GiB: 3.2 GiB is not material; V0 and TensorRT-LLM have no such second path
    for args in (("llama-3.1-8b", "h100-sxm", "vllm"), ("llama-3-70b", "h100-pcie", "vllm@0.6"),
                 ("llama-3-70b", "h100-pcie", "trtllm")):
        est = estimate(args[0], args[1], PlanSpec(tp=2 if "70b" in args[0] else 1), engine=args[2], concurrency=8)
        assert not [n for n in est.notes if "sampler warm-up" in n], args


def test_the_sampler_path_follows_the_release_and_the_run():
    """vLLM's images sampled top-k/top-p with FlashInfer's kernels from 0.8 until PR 26859 (after 0.11.0) turned them off
    by default (engines/vllm-0.11.yaml sampler_bytes_from); a run whose source says its install sorted keeps 38.8."""
    from planner.errors import PlannerError
    from planner.serving.published import predict_bench_serve

    for release, b in (("0.8.5", 13), ("0.9.2", 13), ("0.10.1.1", 13), ("0.11.0", 38.8), ("0.12", 38.8), ("0.13", 38.8)):
        assert get_engine(f"vllm@{release}").sampler_at_release == b, release
    assert get_engine("vllm@0.11").sampler_at_release == 38.8  # the profile named alone: llm-d's 0.11.0 logs
    assert get_engine("vllm@0.8.5").on_sampler_path("sorting").sampler_at_release == 38.8
    assert get_engine("vllm@0.12").on_sampler_path("flashinfer").sampler_at_release == 13
    with pytest.raises(PlannerError, match="unknown sampler path"):
        get_engine("vllm@0.8.5").on_sampler_path("triton")
    with pytest.raises(PlannerError, match="does not apply"):
        get_engine("trtllm@0.14").on_sampler_path("sorting")
    # a published run that names its path: the same server and load, with and without the column
    row = {"engine": "vllm", "engine_version": "0.8.5", "model": "llama-3-70b", "hardware": "h100-pcie", "tp": "2",
           "dataset": "random", "isl": "206", "osl": "179", "num_prompts": "64", "rate": "inf", "requests_per_s": "1"}
    image, sorted_ = (predict_bench_serve([r])[0][4] for r in (row, {**row, "sampler": "sorting"}))
    assert image > 1.5 * sorted_  # 3.2 GiB more cache a GPU admits more of the burst at once
    with pytest.raises(PlannerError, match="column 'sampler'"):  # a malformed cell stops the file, as other flags do
        predict_bench_serve([{**row, "sampler": "triton"}])
    from planner.specs.engine import EngineSpec

    with pytest.raises(ValueError, match="oldest first"):
        EngineSpec.model_validate({"id": "x", "version": "1", "name": "x", "source": "s",
                                   "settings": {"sampler_bytes_from": {"value": {"0.11": 38.8, "0.8": 13}, "source": "s"}}})


def test_the_user_can_name_the_installs_sampler_path(capsys):
    """`--sampler sorting|flashinfer` prices the path the user's install takes: more cache on FlashInfer's kernels than
    on sorting at vLLM 0.12, whose images sort; FlashInfer's kernels only on NVIDIA, and only for an engine that prices
    a sampler warm-up with two paths: anything else is one sentence and exit 2."""
    from typing import get_args

    from cli_helpers import run, run_json
    from planner.specs.engine import SAMPLER_PATHS
    from planner.studies.params import Sampler

    assert get_args(Sampler) == SAMPLER_PATHS
    base = ["estimate", "-m", "llama-3-70b", "-H", "h100-pcie", "--tp", "2", "--engine", "vllm@0.12", "--isl", "206",
            "--osl", "179", "--concurrency", "8", "--json"]
    act = {p: run_json(base + ["--sampler", p], capsys)["memory"]["activation_bytes"] for p in SAMPLER_PATHS}
    default = run_json(base, capsys)["memory"]["activation_bytes"]
    assert default == act["sorting"] and act["sorting"] - act["flashinfer"] == pytest.approx(1024 * 128256 * 25.8, rel=1e-6)
    for args, why in ((["-m", "llama-3.1-8b", "-H", "mi300x", "--engine", "vllm@0.8.5", "--sampler", "flashinfer"], "NVIDIA GPUs only"),
                      (["-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "trtllm", "--sampler", "sorting"], "does not apply")):
        code, out, err = run(["estimate"] + args, capsys)
        assert code == 2 and why in err and "Traceback" not in err and err.count("\n") == 1
    # a plan over several devices leaves out the ones the named path cannot run on, and says why
    plan = run_json(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm,mi300x", "--gpus", "1", "--engine", "vllm@0.12",
                     "--sampler", "flashinfer", "--isl", "1000", "--osl", "200", "--json"], capsys)
    assert list(plan["search"]["skipped_hardware"]) == ["mi300x"]
    assert "NVIDIA GPUs only" in plan["search"]["skipped_hardware"]["mi300x"]


def test_the_emitted_config_carries_what_the_plan_priced(capsys):
    """`plan --emit` writes the memory fraction the user set and, where --sampler named the path, the environment that
    makes vLLM take it (VLLM_USE_FLASHINFER_SAMPLER), so the server's memory profile charges what the plan did; without
    --sampler the release's own path stands and nothing is set."""
    from cli_helpers import run

    base = ["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1", "--engine", "vllm@0.12", "--isl", "1000",
            "--osl", "200", "--memory-fraction", "0.95"]
    for extra, env in ((["--sampler", "flashinfer"], "VLLM_USE_FLASHINFER_SAMPLER=1 vllm serve"),
                       (["--sampler", "sorting"], "VLLM_USE_FLASHINFER_SAMPLER=0 vllm serve"), ([], None)):
        code, out, err = run(base + extra + ["--emit", "vllm"], capsys)
        assert code == 0, err
        assert "--gpu-memory-utilization 0.95" in out
        assert (env in out) if env else "VLLM_USE_FLASHINFER_SAMPLER" not in out
    code, out, err = run(base + ["--sampler", "flashinfer", "--emit", "k8s"], capsys)
    assert code == 0 and "name: VLLM_USE_FLASHINFER_SAMPLER" in out and "value: '1'" in out
