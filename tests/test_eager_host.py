"""A step outside CUDA graphs waits on the host: its kernel calls x Engine.eager_kernel_overhead_s, overlapped with
the device's work (the step takes the longer of the two), in the cost model and so in the simulator."""

import numpy as np
import pytest

from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step
from planner.serving.simulator import Pool, Simulator, replica_for
from planner.serving.workload import fixed_workload, generate
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model

CALL_S = 1e-3  # far above a kernel's device time: every eager step here is the host's
# Llama 3.1 8B on one GPU: 32 layers x 8 priced calls (two norms, QKV, attention, output projection, up, activation,
# down; no all-reduce at TP1) + embedding, final norm and head
CALLS = 32 * 8 + 3


def _setup(**kw):
    m, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    eng = get_engine("vllm").with_(async_scheduling=False, step_host_s=0.0, step_host_per_seq_s=0.0, **kw)
    return CostModel(m, hw, engine=eng), make_plans(m, hw, engine=eng), eng


def test_a_prompt_step_takes_the_longer_of_the_device_and_the_host():
    cm, plans, _ = _setup(eager_kernel_overhead_s=CALL_S, cuda_graph_max_batch=8)
    graph, _, _ = _setup(cuda_graph_max_batch=8)
    prompt = Step(prefill_seqs=1, prefill_tokens=512)
    device = graph.step(plans, prompt).time_s[0]
    assert device < 0.1 * CALLS * CALL_S
    assert cm.step(plans, prompt).time_s[0] == pytest.approx(CALLS * CALL_S)
    # a long prompt's device work covers the host's calls: the step is the device's
    long = Step(prefill_seqs=1, prefill_tokens=8192)
    slow, _, _ = _setup(eager_kernel_overhead_s=1e-6, cuda_graph_max_batch=8)
    assert slow.step(plans, long).time_s[0] == graph.step(plans, long).time_s[0]


def test_decode_steps_replay_graphs_up_to_the_captured_batch():
    cm, plans, _ = _setup(eager_kernel_overhead_s=CALL_S, cuda_graph_max_batch=8)
    graph, _, _ = _setup(cuda_graph_max_batch=8)
    inside, beyond = Step(decode_seqs=8, decode_ctx=1000), Step(decode_seqs=9, decode_ctx=1000)
    assert cm.step(plans, inside).time_s[0] == graph.step(plans, inside).time_s[0]
    assert cm.step(plans, beyond).time_s[0] == pytest.approx(CALLS * CALL_S)


def test_the_simulator_prices_eager_steps_from_the_cost_model():
    reqs = generate(fixed_workload(512, 64), 10, rate=1.0, seed=0)
    reqs.arrival_s = 10.0 * np.arange(10)  # each runs alone
    res = {}
    for name, kw in {"graph": {}, "eager": {"eager_kernel_overhead_s": CALL_S}}.items():
        eng = get_engine("vllm").with_(async_scheduling=False, step_host_s=0.0, step_host_per_seq_s=0.0,
                                       request_overhead_s=0.0, cuda_graph_max_batch=8, **kw)
        res[name] = Simulator([Pool(replica_for("llama-3.1-8b", "h100-sxm", engine=eng, max_input=4096), 1)], reqs).run()
    host = CALLS * CALL_S
    assert np.allclose(res["eager"].ttft_s, host, rtol=1e-6)  # the prompt step is the host's
    assert np.mean(res["graph"].ttft_s) < 0.1 * host
    assert np.allclose(res["eager"].tpot_s, res["graph"].tpot_s)  # one sequence decodes inside the graphs
