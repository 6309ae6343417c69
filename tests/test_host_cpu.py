"""A device's host CPU where it is not an x86 server's (the Grace parts), and the engines whose executor runs in Python:
the published per-op host times behind the ratio, and the note an estimate carries where both meet (the planner prices
host time per step at an x86 server's; docs/accuracy.md, "TensorRT-LLM 1.x on a Grace host")."""

import pytest

from planner.serving.planspec import PlanSpec
from planner.serving.predict import estimate
from planner.specs.engine import get_engine, profiles
from planner.specs.loader import get_hardware

# TransformerEngine issue 2053: CPU time of one torch.nn.Linear forward (bf16, 2048 hidden, 8192 tokens), microseconds
LINEAR_CPU_US = {"gb200": 37.08, "gh200": 33.17, "h100-dgx": 13.48}


@pytest.mark.parametrize("hw, measured", [("gb200", "gb200"), ("gb300", "gb200"), ("gh200", "gh200"), ("gh200-96gb", "gh200")])
def test_grace_hosts_take_the_published_per_op_time(hw, measured):
    cpu = get_hardware(hw).host_cpu
    assert "Grace" in cpu.name and "2053" in cpu.source
    assert cpu.op_time_ratio == pytest.approx(LINEAR_CPU_US[measured] / LINEAR_CPU_US["h100-dgx"], abs=0.005)


def test_x86_hosts_and_other_arm_hosts_carry_none():
    for hw in ("h100-sxm", "b200", "mi300x", "gb10"):  # GB10's CPU is MediaTek's, not Grace: no measurement on file
        assert get_hardware(hw).host_cpu is None


def test_python_executors_are_marked_with_their_source():
    python = {name for name, e in profiles().items() if e.python_executor}
    assert python == {"vllm@0.6", "vllm@0.11", "vllm@0.15", "sglang@0.5", "trtllm@1.1"}
    for name in python:
        assert "py" in dict(get_engine(name).source_items)["python_executor"]


def _notes(hw, engine):
    return estimate("llama-3.1-8b", hw, PlanSpec(tp=1, weights="bf16"), isl=1024, osl=256, engine=engine).notes


def test_estimate_warns_where_a_python_executor_meets_a_grace_host():
    assert any("host CPU" in n and "2.75x" in n for n in _notes("gb200", "vllm"))
    assert not any("host CPU" in n for n in _notes("gb200", "trtllm@0.14"))  # the C++ executor
    assert not any("host CPU" in n for n in _notes("h100-sxm", "vllm"))
