"""Engine profiles (engines/*.yaml): every file loads, every value names its source, versions
resolve, unknown names fail with one line, and device-dependent defaults follow the engines' rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from planner.errors import PlannerError
from planner.specs.engine import ENGINES, Engine, EngineSpec, engine_ids, get_engine, profiles
from planner.specs.loader import data_dir, get_hardware, load_spec_file

FILES = sorted(Path(data_dir("engines")).glob("*.yaml"))
REQUIRED = ("id", "version", "utilization", "kv_policy", "runtime_bytes", "max_batched_tokens", "kv_block_tokens",
            "max_seqs", "kernel_overhead_s", "step_overhead_s", "chunked_prefill", "schedule", "prefix_caching",
            "cuda_graph_max_batch", "eager_kernel_overhead_s", "preemption", "async_scheduling", "step_host_s",
            "step_host_per_seq_s", "request_overhead_s", "spec_methods", "flags", "source")


def test_the_briefed_profiles_exist():
    names = set(profiles())
    for n in ("vllm@0.15", "vllm@0.6", "sglang@0.5", "trtllm@1.1", "trtllm@0.14", "trtllm@0.9"):
        assert n in names
    assert any(n.startswith("llamacpp@") for n in names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_profile_loads_and_sources_every_value(path):
    spec = load_spec_file(EngineSpec, path)
    assert path.stem.startswith(spec.id)
    for name, s in {**spec.settings, **spec.cli}.items():
        assert s.source.strip(), (path.name, name)
    eng = spec.to_engine()
    for attr in REQUIRED:
        assert hasattr(eng, attr), attr
    assert 0 < eng.utilization <= 1 and eng.max_seqs >= 1 and eng.kv_block_tokens >= 1 and eng.max_batched_tokens >= 1
    assert eng.kv_policy in ("free", "total", "static") and eng.schedule in ("decode_first", "prefill_first")
    assert eng.preemption in ("recompute", "swap", None)
    for flag in eng.flags.values():
        assert flag.startswith("-"), (path.name, flag)


def test_a_null_value_keeps_the_documented_prior(tmp_path):
    # TensorRT-LLM 0.9 publishes no serving batch cap: the profile says null and the prior stands
    raw = yaml.safe_load((Path(data_dir("engines")) / "trtllm-0.9.yaml").read_text())
    assert raw["settings"]["max_seqs"]["value"] is None
    assert get_engine("trtllm@0.9").max_seqs == Engine().max_seqs


def test_unknown_setting_is_rejected(tmp_path):
    bad = tmp_path / "x-1.0.yaml"
    bad.write_text("id: x\nversion: '1.0'\nname: X\nsource: s\nsettings:\n  max_sequences: {value: 3, source: s}\n")
    with pytest.raises(PlannerError, match="max_sequences"):
        load_spec_file(EngineSpec, bad)


@pytest.mark.parametrize("setting,value", [("masked_mha_fp32_fraction", 1.5), ("masked_mha_fp32_fraction", "fast"),
                                           ("xqa_query_groups", [0]), ("xqa_query_groups", 8),
                                           ("gemm_fp16_accumulate", "yes"), ("hip_graphs", "yes"), ("dequant_gemm_above", -1),
                                           ("dequant_gemm_above", 32.5), ("decode_reread_until", "soon"),
                                           ("decode_reread_until", 0.6), ("decode_reread_archs", "cdna2")])
def test_decode_kernel_settings_out_of_range_are_one_line(tmp_path, setting, value):
    bad = tmp_path / "x-1.0.yaml"
    bad.write_text(f"id: x\nversion: '1.0'\nname: X\nsource: s\nsettings:\n  {setting}: {{value: {value!r}, source: s}}\n")
    with pytest.raises(PlannerError, match=setting):
        load_spec_file(EngineSpec, bad)


def test_version_resolution():
    assert get_engine("vllm").version == "0.15"  # the newest profile
    assert get_engine("vllm@0.6").version == "0.6"
    assert get_engine("vllm@0.15.1") is get_engine("vllm@0.15")  # a patch release uses its minor series
    # ... and carries its number where the profile bounds a kernel path by release (vllm@0.6: decode_reread_until)
    assert get_engine("vllm@0.6.3") == get_engine("vllm@0.6") and get_engine("vllm@0.6.3").release == "0.6.3"
    assert get_engine("vllm@0.6").release is None and get_engine("vllm@0.15.1").release is None
    assert get_engine("trtllm@0.14.0") is get_engine("trtllm@0.14")
    assert get_engine("vllm@0.15.1 (per the release notes)") is get_engine("vllm@0.15")  # a table's version cell
    assert get_engine("trtllm").version == "1.1"
    assert get_engine("trtllm@0.14").name == "trtllm@0.14"
    assert ENGINES["vllm"] is get_engine("vllm") and "sglang" in ENGINES
    # the engines' own names, in any case, name the same profiles
    for name, want in {"vLLM": "vllm@0.15", "SGLang": "sglang@0.5", "TensorRT-LLM": "trtllm@1.1", "tensorrt_llm@0.14.0": "trtllm@0.14",
                       "trt-llm@0.9": "trtllm@0.9", "llama.cpp": "llamacpp@b3000", "vLLM@0.15.1": "vllm@0.15"}.items():
        assert get_engine(name) is get_engine(want), name
    assert "vllm" in engine_ids() and "vllm@0.6" in engine_ids()


def test_llamacpp_builds_resolve_to_their_era():
    """llama.cpp names releases by build: builds from b3000 on replay single-token decode as a CUDA graph (their
    profile), earlier ones launch every op from the host (the profile of the bundled tables that name no build); the
    newest llama.cpp profile is the newest build's, and a build without a profile of its own says which era priced it."""
    assert get_engine("llamacpp").name == "llamacpp@b3000" and get_engine("llamacpp").cuda_graph_max_batch == 1
    assert get_engine("llamacpp@unpinned").cuda_graph_max_batch is None
    for build, era in {"b6918": "llamacpp@b3000", "b3000": "llamacpp@b3000", "b1600": "llamacpp@unpinned"}.items():
        e = get_engine(f"llamacpp@{build}")
        assert e.name == era, build
        assert e.requested == (None if f"llamacpp@{build}" == era else f"llamacpp@{build}"), build


@pytest.mark.parametrize("name, match", [
    ("vlm", r"unknown engine 'vlm' \(did you mean 'vllm'"),
    ("vllm@abc", r"unknown vllm version 'abc'"),
    ("tensorrt", r"unknown engine 'tensorrt'"),
])
def test_unknown_engine_is_one_line(name, match):
    with pytest.raises(PlannerError, match=match) as e:
        get_engine(name)
    assert "\n" not in str(e.value)


def test_a_release_without_a_profile_maps_to_its_era():
    """The releases the published rows ran map as their engines changed: vLLM's V1 engine from 0.8 (asynchronous
    scheduling by default from 0.14), TensorRT-LLM's in-flight batching C++ runtime from 0.10 and its PyTorch backend
    from 0.19; an engine with one line of profiles (SGLang) to its newest; an unparsable version or an unknown engine to
    nothing."""
    from planner.specs.engine import era_profile

    cases = {("vllm", "0.7.3"): "vllm@0.6", ("vllm", "0.8.4"): "vllm@0.11", ("vllm", "0.10.2"): "vllm@0.11",
             ("vllm", "0.13.0"): "vllm@0.11", ("vllm", "0.14.1"): "vllm@0.15", ("vllm", "0.16"): "vllm@0.15",
             ("trtllm", "0.9.0"): "trtllm@0.9", ("trtllm", "0.12"): "trtllm@0.14", ("trtllm", "0.18.2"): "trtllm@0.14",
             ("trtllm", "0.19"): "trtllm@1.1", ("trtllm", "1.0.0"): "trtllm@1.1", ("sglang", "0.4.6"): "sglang@0.5",
             ("vllm", "abc"): None, ("nope", "1.0"): None}
    for (eid, ver), want in cases.items():
        assert era_profile(eid, ver) == want, (eid, ver)


@pytest.mark.parametrize("name, profile, era", [
    ("vllm@0.3", "vllm@0.6", "the V0 engine, before 0.8"),
    ("vllm@0.9", "vllm@0.11", "the V1 engine without asynchronous scheduling by default, vLLM 0.8-0.13"),
    ("vllm@0.14", "vllm@0.15", "the V1 engine with asynchronous scheduling, vLLM 0.14 on"),
    ("trtllm@0.12.0", "trtllm@0.14", "the C++ runtime's in-flight batching, 0.10-0.18"),
    ("trtllm@1.2", "trtllm@1.1", "the PyTorch backend, 0.19 on"),
])
def test_a_release_without_a_profile_is_priced_by_its_era_and_says_so(name, profile, era):
    """A release the profiles do not name runs on its era's profile (the same engine, equal to it), and the profile
    carries the release asked for, so the answer can say which profile priced it; a named profile says nothing."""
    e = get_engine(name)
    assert e.name == profile and e == get_engine(profile) and e.requested == name
    assert e.era_note == (f"{name.replace('@', ' ')} has no profile of its own: priced with {profile}, the profile of its "
                          f"release era ({era})")
    assert get_engine(profile).era_note is None and get_engine("vllm@0.15.1").era_note is None
    assert e.with_(max_seqs=7).requested == name  # derived profiles keep it (for_hardware, the serving layer's)


def test_the_era_note_reaches_estimate_and_plan():
    from planner.api import estimate, plan

    note = get_engine("vllm@0.9").era_note
    e = estimate("llama-3.1-8b", "h100-sxm", engine="vllm@0.9")
    assert e.notes[0] == note and "vllm@0.11" in note
    assert note not in estimate("llama-3.1-8b", "h100-sxm", engine="vllm@0.11").notes
    p = plan("llama-3.1-8b", "h100-sxm", gpus=1, engine="vllm@0.9")
    assert p.notes[0] == note


def test_versions_differ_where_the_engines_changed():
    new, old = get_engine("vllm@0.15"), get_engine("vllm@0.6")
    assert new.chunked_prefill is True and old.chunked_prefill is None  # V0 decides by context length
    assert new.prefix_caching and not old.prefix_caching
    assert new.async_scheduling and not old.async_scheduling
    assert not get_engine("vllm@0.11").async_scheduling  # on by default only from 0.14 (the 0.15 profile)
    assert (new.schedule, old.schedule) == ("decode_first", "prefill_first")
    assert get_engine("trtllm@1.1").kv_block_tokens == 32 and get_engine("trtllm@0.14").kv_block_tokens == 64


def test_memory_policies_match_the_engines():
    assert get_engine("vllm").kv_policy == "total" and get_engine("sglang").kv_policy == "static"
    assert get_engine("trtllm").kv_policy == "free"


def test_sglang_s_fraction_holds_weights_and_kv_of_the_memory_free_before_loading():
    """SGLang: KV = mem_fraction_static x (memory free before the weights load) - weights; activations and CUDA graphs
    live in the rest. Its published startup log for Llama-3.1-8B at TP1 with the fraction at 0.88 (78.81 GiB free
    before loading, 15.09 GiB of weights) allocates 27.13 + 27.13 GiB of K and V."""
    from planner.costmodel.memory import memory
    from planner.costmodel.plans import make_plans
    from planner.specs.loader import get_hardware, get_model

    m, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    eng = get_engine("sglang@0.5").for_hardware(hw).with_(utilization=0.88)
    p = make_plans(m, hw, tp=1, weights="bf16", kv="bf16", engine=eng)
    r = memory(m, hw, p, eng)
    GiB = 2.0**30
    assert float(r.runtime_bytes[0]) == pytest.approx(0.37 * GiB)
    # the fraction is of the memory CUDA reports free before loading: its total (79.18 GiB) less the context
    assert hw.memory_visible_bytes / GiB == pytest.approx(79.18, abs=0.005)
    want = 0.88 * (hw.memory_visible_bytes - 0.37 * GiB) - float(r.weights_bytes[0])
    assert float(r.kv_capacity_bytes[0]) == pytest.approx(want)  # no activation term: it lives in the reserve
    assert float(r.kv_capacity_bytes[0]) / GiB == pytest.approx(54.26, rel=0.005)
    # NCCL on each GPU of a multi-GPU replica comes out of the memory before loading too
    p8 = make_plans(get_model("llama-3.1-70b"), get_hardware("h200-sxm"), tp=8, weights="bf16", kv="bf16", engine=eng)
    assert float(memory(get_model("llama-3.1-70b"), get_hardware("h200-sxm"), p8, eng).runtime_bytes[0]) == \
        pytest.approx((0.37 + 1.9) * GiB)


def test_vllm_batch_defaults_follow_device_memory():
    eng = get_engine("vllm")
    h100, a100, l40s = (get_hardware(h) for h in ("h100-sxm", "a100-sxm-80gb", "l40s"))
    assert eng.for_hardware(h100).max_seqs == 1024 and eng.for_hardware(h100).max_batched_tokens == 8192
    assert eng.for_hardware(a100).max_seqs == 256  # >= 70 GiB, but vLLM keeps the A100 on the small defaults
    assert eng.for_hardware(l40s).max_seqs == 256 and eng.for_hardware(l40s).max_batched_tokens == 2048


def test_the_simulator_takes_the_limits_the_engine_picks_on_the_device():
    # simulate, capacity and the MLPerf / online predictions build their replicas with the same device defaults as
    # estimate and plan (vLLM on a >= 70 GiB GPU: 1024 sequences, 8192 batched tokens); a scheduler limit still wins
    from planner.serving.sim.config import Scheduler, replica_for

    rep = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm")
    assert (rep.max_seqs, rep.max_batched_tokens) == (1024, 8192)
    assert replica_for("llama-3.1-8b", "a100-sxm-80gb", engine="vllm").max_seqs == 256
    own = replica_for("llama-3.1-8b", "h100-sxm", engine="vllm", sched=Scheduler(max_seqs=128, max_batched_tokens=2048))
    assert (own.max_seqs, own.max_batched_tokens) == (128, 2048)
    sg = replica_for("llama-3.1-8b", "h100-sxm", engine="sglang")
    assert sg.max_batched_tokens == get_engine("sglang").for_hardware(get_hardware("h100-sxm")).max_batched_tokens == 8192


def test_sglang_memory_fraction_is_its_reserved_memory_rule():
    eng = get_engine("sglang")
    hw = get_hardware("h100-sxm")
    e = eng.for_hardware(hw)
    cap_mib = hw.memory_capacity_bytes / 2**20
    reserved = max(512 + 1.5 * 8192 + 2 * 256 + 1024 / 8, 10240)  # chunked prefill 8k, graphs to 256, tp 1
    assert e.max_batched_tokens == 8192 and e.cuda_graph_max_batch == 256
    assert e.utilization == pytest.approx((cap_mib - reserved) / cap_mib, abs=1e-3)
    assert eng.for_hardware(hw, tp=8).cuda_graph_max_batch == 512
    # more tensor-parallel ranks reserve more memory: a smaller static fraction
    assert eng.for_hardware(hw, tp=8).utilization < e.utilization


def test_kernel_limits_come_from_the_profile():
    vllm = get_engine("vllm")
    assert "Blackwell" in vllm.cannot_run("int8", get_hardware("b200"))
    assert vllm.cannot_run("int8", get_hardware("h100-sxm")) is None
    assert vllm.cannot_run("fp8", get_hardware("b200")) is None
    assert get_engine("trtllm").cannot_run("int8", None)  # no device needed: the backend lacks it


def test_calibration_overlay(tmp_path, monkeypatch):
    import shutil

    import planner.specs.engine as E

    root = tmp_path / "engines"
    shutil.copytree(data_dir("engines"), root, ignore=shutil.ignore_patterns("calibration"))
    (root / "calibration").mkdir()
    (root / "calibration" / "vllm.yaml").write_text("engine: vllm@0.15\nstep_host_s: 0.002\nnote: fitted\n")
    (root / "calibration" / "bands.yaml").write_text("uncertainty: {ttft_s: 0.2}\n")  # not an engine file: skipped
    monkeypatch.setattr(E, "_engines_dir", lambda: root)
    E.profiles.cache_clear()
    try:
        assert E.get_engine("vllm@0.15").step_host_s == 0.002
        assert E.get_engine("vllm@0.6").step_host_s == 0.0
    finally:
        E.profiles.cache_clear()


def test_generic_engine_is_unchanged():
    e = Engine()
    assert (e.id, e.utilization, e.kv_policy, e.max_seqs, e.max_batched_tokens, e.kv_block_tokens) == \
        ("trtllm", 0.9, "free", 2048, 8192, 64)
    assert e.with_(max_seqs=8).max_seqs == 8 and e.name == "trtllm"


def test_engines_cli(capsys):
    import json

    from cli_helpers import run

    code, out, _ = run(["engines", "list", "--json"], capsys)
    assert code == 0 and {"vllm@0.15", "sglang@0.5", "trtllm@1.1"} <= {e["name"] for e in json.loads(out)}
    # which releases have an expert-parallel load balancer (--eplb), each with the flag or key that turns it on
    assert {e["name"] for e in json.loads(out) if e["eplb"]} == {"trtllm@1.1", "vllm@0.11", "vllm@0.15", "sglang@0.5"}
    code, out, _ = run(["engines", "show", "vllm", "-H", "h100-sxm", "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["max_seqs"] == 1024 and d["settings"]["max_seqs"]["flag"] == "--max-num-seqs"
    assert d["settings"]["max_seqs"]["source"]
    # the block-FP8 kernel bandwidth reads back as the profile writes it
    assert d["settings"]["block_fp8_bw"]["value"] == {"hopper": {"dense": 0.66, "moe": 0.48}}
    assert d["settings"]["block_fp8_compute"]["value"] == {"hopper": {"dense": 0.87, "moe": 0.37}}
    # a host cost the calibration lays over the profile names where the calibration took it
    assert d["settings"]["request_overhead_s"]["source"].startswith("rate fit")
    code, out, _ = run(["engines", "show", "sglang", "--json"], capsys)
    fe = json.loads(out)["settings"]["request_overhead_s"]
    assert fe["value"] > 0 and fe["source"].startswith("inferred") and "HTTP server" in fe["source"]
    code, out, err = run(["engines", "show", "vlm"], capsys)
    assert code == 2 and not out and err.count("\n") == 1 and "did you mean 'vllm'" in err


def test_an_engine_runs_only_where_its_profile_says(capsys):
    """TensorRT-LLM runs on NVIDIA GPUs only: asked for an AMD GPU (explicitly, or as the default engine), estimate
    says so in one line and names the engines that do run there; a plan over NVIDIA and AMD devices leaves the AMD one
    out and says why, with the engines that run on every device asked; vLLM runs on both."""
    import json

    from cli_helpers import run

    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware

    assert get_engine("trtllm").cannot_run_on(get_hardware("h100-sxm")) is None
    assert "NVIDIA" in get_engine("trtllm").cannot_run_on(get_hardware("mi300x"))
    assert get_engine("vllm").cannot_run_on(get_hardware("mi300x")) is None
    assert get_engine("sglang").cannot_run_on(get_hardware("tpu-v5e")) and get_engine("llamacpp").cannot_run_on(get_hardware("m4-max")) is None
    for extra in ([], ["--engine", "trtllm"]):
        code, out, err = run(["estimate", "-m", "llama-3.1-8b", "-H", "mi300x", *extra], capsys)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert "TensorRT-LLM" in err and "mi300x is an AMD GPU" in err and "vllm" in err and "sglang" in err
    code, out, err = run(["estimate", "-m", "llama-3.1-8b", "-H", "mi300x", "--engine", "vllm", "--json"], capsys)
    assert code == 0 and json.loads(out)["tpot_s"] > 0
    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm,mi300x", "--gpus", "1", "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    (why,) = d["search"]["skipped_hardware"].values()
    assert list(d["search"]["skipped_hardware"]) == ["mi300x"] and "vllm" in why and "sglang" in why
    assert {r["plan"]["hardware"] for r in d["frontier"]} == {"h100-sxm"}
    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "mi300x", "--gpus", "1"], capsys)
    assert code == 2 and "mi300x is an AMD GPU" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(["simulate", "-m", "llama-3.1-8b", "-H", "mi300x", "--rate", "1", "--requests", "20"], capsys)
    assert code == 2 and "mi300x is an AMD GPU" in err


def test_a_prompt_longer_than_tensorrt_llm_s_token_budget_is_named_where_it_would_be_refused(capsys):
    """TensorRT-LLM runs prompts whole (chunked prefill off) and refuses one longer than max_num_tokens: estimate
    prices it whole and simulate in budget-sized pieces, each saying which; engines that chunk say nothing."""
    from cli_helpers import run

    trt = get_engine("trtllm@1.1")
    assert trt.prompt_within_budget and trt.chunked_prefill is False and trt.max_batched_tokens == 8192
    assert trt.long_prompt_note(8192) is None  # a prompt that fits the budget alone is admitted
    assert "refuses" in trt.long_prompt_note(8193)
    assert trt.long_prompt_note(32768, budget=40000) is None and trt.long_prompt_note(32768, chunked=True) is None
    assert get_engine("trtllm@0.14").long_prompt_note(20000) and get_engine("vllm").long_prompt_note(32768) is None
    assert get_engine("trtllm@0.9").long_prompt_note(32768) is None  # 0.9 sizes its budget from max_input_len
    args = ["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "trtllm", "--osl", "64", "--json"]
    import json

    code, out, _ = run(args + ["--isl", "16384"], capsys)
    assert code == 0 and any("refuses" in n and "priced whole" in n for n in json.loads(out)["notes"])
    code, out, _ = run(args + ["--isl", "4096"], capsys)
    assert code == 0 and not any("refuses" in n for n in json.loads(out)["notes"])
    sim = ["simulate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "trtllm", "--isl", "16384", "--osl", "64",
           "--rate", "1", "--requests", "20", "--json"]
    code, out, _ = run(sim, capsys)
    assert code == 0 and any("budget-sized pieces" in n for n in json.loads(out)["notes"])
    code, out, _ = run(sim + ["--max-batched-tokens", "20000"], capsys)
    assert code == 0 and not any("refuses" in n for n in json.loads(out)["notes"])


def test_an_engine_version_as_pip_or_a_page_writes_it():
    """`vllm==0.10.1`, `vLLM 0.11`, `TensorRT-LLM v0.14.0`, `llama.cpp b5000` name the same releases as the `@` form;
    an unknown engine is still refused under the name given."""
    for given, same in (("vllm==0.10.1", "vllm@0.10.1"), ("vLLM 0.11", "vllm@0.11"), ("TensorRT-LLM v0.14.0", "trtllm@0.14"),
                        ("TensorRT-LLM 1.0", "trtllm@1.0"), ("sglang 0.4.6", "sglang@0.4.6"), ("llama.cpp b5000", "llamacpp@b5000")):
        a, b = get_engine(given), get_engine(same)
        assert (a.id, a.version, a.requested) == (b.id, b.version, b.requested), given
    with pytest.raises(PlannerError, match="unknown engine 'foo 1.0'"):
        get_engine("foo 1.0")


def test_architecture_keys_in_engine_profiles_name_known_architectures():
    """An engine's per-architecture settings (the generations it refuses, llama.cpp's MMQ multiples, the architectures
    its GQA re-reads, mixed-input tiles, FP8 MLA prefill and library GEMM rates apply to) must name architectures the
    hardware specs use: a misspelt key would silently never apply."""
    from planner.specs.engine import ARCH_LIST_FIELDS, engine_ids, get_engine
    from planner.specs.hardware import ARCHITECTURES

    vendors = {"nvidia", "amd", "intel", "apple", "google", "qualcomm"}
    for ident in engine_ids():
        e = get_engine(ident)
        assert set(e.not_on_architectures) <= set(ARCHITECTURES), ident
        assert {a for a, _ in e.mmq_fp32_ratio} <= set(ARCHITECTURES) | vendors, ident
        for field in ARCH_LIST_FIELDS:
            assert set(getattr(e, field)) <= set(ARCHITECTURES), (ident, field)
        assert {a for a, _ in e.library_gemm_bw} <= set(ARCHITECTURES), ident
    assert {"gqa_reread_archs", "decode_reread_archs", "mixed_input_archs", "mla_fp8_prefill_archs"} <= set(ARCH_LIST_FIELDS)


def test_vllm_refusing_the_full_context_is_said_with_the_length_that_starts():
    """vLLM raises at startup when one sequence of max_model_len (the model's context unless lowered) does not fit its
    KV cache (PR 2163; V1's check_enough_kv_cache_memory). Llama 3.1 8B in BF16 on a 24 GB RTX 4090 leaves room for
    about 43k tokens of its 131,072: the estimate says vLLM refuses the default and names the --max-model-len that
    starts (the longest context the cache holds, as the estimate reports it); SGLang, which has no such check, and an
    H100, whose cache holds the whole context, get no such note."""
    from planner.serving.planspec import PlanSpec
    from planner.serving.predict import estimate

    refusal = lambda e: [n for n in e.notes if "refuses to start" in n]  # noqa: E731
    est = estimate("llama-3.1-8b", "rtx-4090", PlanSpec(weights="bf16"), isl=1000, osl=200, engine="vllm@0.11")
    assert get_engine("vllm@0.11").max_model_len_check and not get_engine("sglang").max_model_len_check
    assert 20_000 < est.max_context_tokens < 131_072
    said = refusal(est)
    assert len(said) == 1 and f"--max-model-len {est.max_context_tokens} or less" in said[0] and "131,072" in said[0]
    assert refusal(estimate("llama-3.1-8b", "rtx-4090", PlanSpec(weights="bf16"), isl=1000, osl=200, engine="sglang")) == []
    h100 = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="bf16"), isl=1000, osl=200, engine="vllm@0.11")
    assert h100.max_context_tokens == 131_072 and refusal(h100) == []
