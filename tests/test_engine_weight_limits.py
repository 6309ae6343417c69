"""A weight format the engine has no kernel for on a device (its profile's ``unsupported`` list: TensorRT-LLM 1.x's
PyTorch backend runs no INT8 W8A8, vLLM's INT8 W8A8 stops before Blackwell) is refused by every command that prices
one plan, and left out of plan's search with a note, never priced as if the engine ran it."""

from __future__ import annotations

import pytest

from planner.errors import PlannerError
from planner.search.space import SpaceOptions, precisions
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware
from tests.cli_helpers import run, run_json

TRT_INT8 = "TensorRT-LLM 1.1 runs no INT8 W8A8"
VLLM_B200 = "vLLM 0.15 runs no INT8 W8A8 on Blackwell"


def test_the_refusal_is_one_sentence_naming_engine_reason_and_device():
    msg = get_engine("trtllm").weights_refusal("int8", get_hardware("h200-sxm"))
    assert msg.startswith(TRT_INT8) and "(h200-sxm)" in msg and "\n" not in msg
    # the names users write for the format are the same format
    assert get_engine("trtllm").weights_refusal("w8a8-int8", get_hardware("h200-sxm")) == msg
    assert get_engine("vllm").weights_refusal("int8", get_hardware("b200")).startswith(VLLM_B200)
    # where a kernel exists there is nothing to refuse
    assert get_engine("vllm").weights_refusal("int8", get_hardware("h100-sxm")) is None
    assert get_engine("trtllm@0.14").weights_refusal("int8", get_hardware("a100-sxm-80gb")) is None  # TensorRT backend
    assert get_engine("trtllm").weights_refusal("fp8", get_hardware("h200-sxm")) is None


@pytest.mark.parametrize("args, match", [
    (["estimate", "-m", "deepseek-r1", "-H", "h200-sxm", "--engine", "trtllm", "--weights", "int8", "--tp", "8"], TRT_INT8),
    (["estimate", "-m", "llama-3.1-8b", "-H", "b200", "--engine", "vllm", "--weights", "int8"], VLLM_B200),
    (["simulate", "-m", "llama-3.1-8b", "-H", "b200", "--engine", "vllm", "--weights", "int8", "--rate", "1",
      "--requests", "10"], VLLM_B200),
    (["fit", "-m", "llama-3.1-8b", "-H", "b200", "--engine", "vllm", "--weights", "int8"], VLLM_B200),
    (["plan", "-m", "llama-3.1-8b", "-H", "b200", "--gpus", "1", "--engine", "vllm", "--weights", "int8"], VLLM_B200),
    (["capacity", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--rate", "5", "--weights", "int8"], TRT_INT8),
    (["capacity", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--rate", "5", "--kv", "int8"], "TensorRT-LLM 1.1 has no int8 KV cache"),
])
def test_a_command_asked_for_a_format_the_engine_cannot_run_exits_2_in_one_line(args, match, capsys):
    code, out, err = run(args, capsys)
    assert code == 2 and out == ""
    assert err.strip().startswith("error: " + match) and len(err.strip().splitlines()) == 1


def test_the_same_format_on_an_engine_that_runs_it_is_priced(capsys):
    d = run_json(["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "vllm", "--weights", "int8", "--json"], capsys)
    assert d["fits"] and d["output_tokens_per_s"] > 0


def test_the_search_leaves_the_format_out_and_says_why(capsys):
    hw = get_hardware("h200-sxm")
    refused = {}
    ws, _ = precisions(hw, SpaceOptions(), "fp8", get_engine("trtllm"), refused)
    assert "int8" not in ws and "fp8" in ws and refused["int8 weights"].startswith(TRT_INT8)
    ws, _ = precisions(hw, SpaceOptions(), "fp8", get_engine("vllm"), refused := {})
    assert "int8" in ws and "int8 weights" not in refused  # vLLM runs INT8 W8A8 on Hopper
    # asked for together with a format it runs: the rest is searched; asked for alone: the refusal is the error
    ws, _ = precisions(get_hardware("b200"), SpaceOptions(weights=["int8", "fp8"]), None, get_engine("vllm"))
    assert ws == ["fp8"]
    with pytest.raises(PlannerError, match=VLLM_B200):
        precisions(get_hardware("b200"), SpaceOptions(weights=["int8"]), None, get_engine("vllm"))
    # DeepSeek-R1 on eight H200s, where INT8 W8A8 had been the default engine's recommendation
    d = run_json(["plan", "-m", "deepseek-r1", "-H", "h200-sxm", "--gpus", "8", "--isl", "1000", "--osl", "1000",
                  "--ttft", "2", "--tpot", "0.05", "--json"], capsys)
    assert d["frontier"] and all(p["plan"]["weights"] != "int8" for p in d["frontier"])
    assert d["recommended"]["plan"]["weights"] != "int8"
    assert any(n.startswith("int8 weights left out on h200-sxm: " + TRT_INT8) for n in d["notes"])


def test_a_kv_cache_the_engine_cannot_store_is_refused_and_left_out(capsys):
    sg, trt = get_engine("sglang"), get_engine("trtllm")
    assert "fp8_e4m3" in sg.cannot_store("int8") and sg.cannot_store("fp8") is None and sg.cannot_store("bf16") is None
    assert trt.cannot_store("int4") and get_engine("vllm").cannot_store("int8") is None  # vLLM's per-token-head INT8
    assert get_engine("trtllm@0.14").cannot_store("int8") is None  # no limit on record for the TensorRT backend
    code, out, err = run(["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "sglang", "--kv", "int8"], capsys)
    assert code == 2 and err.strip().startswith("error: SGLang 0.5 has no int8 KV cache") and len(err.strip().splitlines()) == 1
    # the search tries the caches the engine's profile lists (TensorRT-LLM 1.1: 16 bit and fp8); one asked for that it
    # cannot store is left out with a note, and asked for alone it is the error
    _, kvs = precisions(get_hardware("h100-sxm"), SpaceOptions(), None, trt)
    assert kvs == ["bf16", "fp8"]
    refused = {}
    _, kvs = precisions(get_hardware("h100-sxm"), SpaceOptions(kv=["int8", "fp8"]), None, trt, refused)
    assert kvs == ["fp8"] and refused["int8 KV cache"].startswith("TensorRT-LLM 1.1 stores no such cache")
    with pytest.raises(PlannerError, match="has no int8 KV cache"):
        precisions(get_hardware("h100-sxm"), SpaceOptions(kv=["int8"]), None, trt)
    d = run_json(["plan", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "8", "--isl", "2000", "--osl", "500",
                  "--ttft", "2", "--tpot", "0.05", "--kv", "int8,int4,fp8", "--json"], capsys)
    assert d["frontier"] and all(p["plan"]["kv"] == "fp8" for p in d["frontier"])
    assert any(n.startswith("int8 KV cache and int4 KV cache left out on h100-sxm: TensorRT-LLM 1.1 stores no such cache")
               for n in d["notes"])


def test_llama_cpp_plans_gguf_types_and_refuses_checkpoint_formats(capsys):
    """llama.cpp serves GGUF files: its plan search tries GGUF types (its profile's search_weights) and its own caches
    (q8_0, q4_0), and a GPU serving engine's checkpoint format (FP8, AWQ INT4, NVFP4, ...) is refused, not priced."""
    lc = get_engine("llamacpp")
    assert "q4_k_m" in lc.search_weights and "fp8" not in lc.search_weights
    ws, kvs = precisions(get_hardware("rtx-4090"), SpaceOptions(), None, lc)
    assert set(ws) <= set(lc.search_weights) and "q4_k_m" in ws and set(kvs) == {"bf16", "q8_0", "q4_0"}
    d = run_json(["plan", "-m", "llama-3.1-8b", "-H", "rtx-4090", "--gpus", "1", "--engine", "llamacpp", "--isl", "512",
                  "--osl", "256", "--json"], capsys)
    assert d["frontier"] and all(p["plan"]["weights"] in lc.search_weights for p in d["frontier"])
    assert all(p["plan"]["kv"] in ("bf16", "fp16", "q8_0", "q4_0") for p in d["frontier"])
    for args, match in ((["--weights", "fp8"], "llama.cpp b3000 and later runs no FP8 checkpoints"),
                        (["--weights", "int4"], "llama.cpp b3000 and later runs no INT4 AWQ/GPTQ checkpoints"),
                        (["--kv", "fp8"], "llama.cpp b3000 and later has no fp8 KV cache")):
        code, out, err = run(["estimate", "-m", "llama-3.1-8b", "-H", "rtx-4090", "--engine", "llamacpp", *args], capsys)
        assert code == 2 and err.strip().startswith("error: " + match) and len(err.strip().splitlines()) == 1, err
    # its own types and caches are priced; MXFP4 only from the builds that have it (gpt-oss, August 2025)
    d = run_json(["estimate", "-m", "llama-3.1-8b", "-H", "rtx-4090", "--engine", "llamacpp", "--weights", "q4_k_m",
                  "--kv", "q8_0", "--json"], capsys)
    assert d["fits"] and d["output_tokens_per_s"] > 0
    assert lc.cannot_run("mxfp4", None) is None and get_engine("llamacpp@unpinned").cannot_run("mxfp4", None)


def test_a_papers_kernel_is_priced_when_asked_but_not_searched(capsys):
    """W4A8 on a GPU without FP8 runs INT8 activations, QServe's kernel (no serving engine's: TensorRT-LLM's W4A8 AWQ
    takes FP8 activations, Ada and later): plan's search leaves it out unless --weights names it, and estimate prices
    it when asked (example 10's what-if). Where the device has FP8 the engines' W4A8 is searched."""
    from planner.specs.quant import get_format, resolve

    a100, h100 = get_hardware("a100-sxm-80gb"), get_hardware("h100-sxm")
    assert resolve(get_format("w4a8"), a100).paper_kernel and not resolve(get_format("w4a8"), h100).paper_kernel
    ws, _ = precisions(a100, SpaceOptions(), None, get_engine("vllm"))
    assert "w4a8" not in ws and "int8" in ws
    ws, _ = precisions(a100, SpaceOptions(weights=["w4a8", "int4"]), None, get_engine("vllm"))
    assert "w4a8" in ws
    assert "w4a8" in precisions(h100, SpaceOptions(), None, get_engine("trtllm"))[0]
    d = run_json(["estimate", "-m", "llama-3-8b", "-H", "a100-sxm-80gb", "--weights", "w4a8", "--kv", "int4",
                  "--engine", "trtllm@0.14", "--json"], capsys)
    assert d["fits"] and d["output_tokens_per_s"] > 0
