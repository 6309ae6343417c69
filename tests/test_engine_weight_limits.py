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
    refused = {}
    _, kvs = precisions(get_hardware("h100-sxm"), SpaceOptions(), None, trt, refused)
    assert "int8" not in kvs and "fp8" in kvs and refused["int8 KV cache"].startswith("TensorRT-LLM 1.1 stores no such cache")
    with pytest.raises(PlannerError, match="has no int8 KV cache"):
        precisions(get_hardware("h100-sxm"), SpaceOptions(kv=["int8"]), None, trt)
    d = run_json(["plan", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "8", "--isl", "2000", "--osl", "500",
                  "--ttft", "2", "--tpot", "0.05", "--json"], capsys)
    assert all(p["plan"]["kv"] not in ("int8", "int4") for p in d["frontier"])
    assert any(n.startswith("int8 KV cache and int4 KV cache left out on h100-sxm: TensorRT-LLM 1.1 stores no such cache")
               for n in d["notes"])
