"""A step outside CUDA graphs waits on the host: its kernel calls x Engine.eager_kernel_overhead_s, overlapped with
the device's work (the step takes the longer of the two), in the cost model and so in the simulator."""

import numpy as np
import pytest

from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step, kernel_calls
from planner.serving.predict import PlanSpec, estimate
from planner.serving.sim.steptable import StepTable
from planner.serving.simulator import Pool, Simulator, replica_for
from planner.serving.workload import fixed_workload, generate
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model

CALL_S = 1e-3  # far above a kernel's device time: every eager step here is the host's
# Llama 3.1 8B on one GPU: 32 layers x 8 priced calls (two norms, QKV, attention, output projection, up, activation,
# down; no all-reduce at TP1) + embedding, final norm and head
CALLS = 32 * 8 + 3


def _engine(**kw):
    return get_engine("vllm").with_(async_scheduling=False, step_host_s=0.0, step_host_per_seq_s=0.0).set_by_user(**kw)


def _setup(pp=1, **kw):
    m, hw, eng = get_model("llama-3.1-8b"), get_hardware("h100-sxm"), _engine(cuda_graph_max_batch=8, **kw)
    return CostModel(m, hw, engine=eng), make_plans(m, hw, pp=pp, engine=eng)


def test_a_prompt_step_takes_the_longer_of_the_device_and_the_host():
    cm, plans = _setup(eager_kernel_overhead_s=CALL_S)
    graph, _ = _setup()
    prompt = Step(prefill_seqs=1, prefill_tokens=512)
    device = graph.step(plans, prompt).time_s[0]
    assert device < 0.1 * CALLS * CALL_S
    st = cm.step(plans, prompt)
    assert st.time_s[0] == pytest.approx(CALLS * CALL_S)
    assert st.host_floor_s[0] == pytest.approx(CALLS * CALL_S)
    # a long prompt's device work covers the host's calls: the step is the device's
    long = Step(prefill_seqs=1, prefill_tokens=8192)
    slow, _ = _setup(eager_kernel_overhead_s=1e-6)
    assert slow.step(plans, long).time_s[0] == graph.step(plans, long).time_s[0]


def test_each_pipeline_stage_issues_its_own_layers_calls():
    """Two stages of 16 layers: a stage's host issues 16 x 8 calls + the once-per-step ones (embedding, final norm,
    head and now the send to the next stage), and a prompt crosses both stages, so its latency is the host's time
    for all 32 layers."""
    cm, plans = _setup(pp=2, eager_kernel_overhead_s=CALL_S)
    st = cm.step(plans, Step(prefill_seqs=1, prefill_tokens=512))
    assert st.time_s[0] == pytest.approx((2 * 16 * 8 + 4) * CALL_S)
    assert st.stage_time_s[0] == pytest.approx((16 * 8 + 4) * CALL_S)


def test_decode_steps_replay_graphs_up_to_the_captured_batch_of_sequences():
    cm, plans = _setup(eager_kernel_overhead_s=CALL_S)
    graph, _ = _setup()
    for inside in (Step(decode_seqs=8, decode_ctx=1000), Step(decode_seqs=8, decode_ctx=1000, decode_tokens=3)):
        # a captured graph holds sequences: 8 of them verifying 2 drafts each (24 tokens) still replay it
        assert cm.step(plans, inside).time_s[0] == graph.step(plans, inside).time_s[0]
    assert cm.step(plans, Step(decode_seqs=9, decode_ctx=1000)).time_s[0] == pytest.approx(CALLS * CALL_S)


def test_the_step_table_holds_the_graph_edge_exactly():
    cm, plans = _setup(eager_kernel_overhead_s=CALL_S)
    table = StepTable(cm, plans, max_seqs=64, max_ctx=4096, max_prefill=4096, max_span=4096)
    for n in (8, 9):
        assert table.decode(n, 1000.0) == pytest.approx(cm.step(plans, Step(decode_seqs=n, decode_ctx=1000)).time_s[0])


def test_the_simulator_prices_eager_steps_from_the_cost_model():
    reqs = generate(fixed_workload(512, 64), 10, rate=1.0, seed=0)
    reqs.arrival_s = 10.0 * np.arange(10)  # each runs alone
    res = {}
    for name, kw in {"graph": {}, "eager": {"eager_kernel_overhead_s": CALL_S}}.items():
        eng = _engine(request_overhead_s=0.0, cuda_graph_max_batch=8, **kw)
        res[name] = Simulator([Pool(replica_for("llama-3.1-8b", "h100-sxm", engine=eng, max_input=4096), 1)], reqs).run()
    assert np.allclose(res["eager"].ttft_s, CALLS * CALL_S, rtol=1e-6)  # the prompt step is the host's
    assert np.mean(res["graph"].ttft_s) < 0.1 * CALLS * CALL_S
    assert np.allclose(res["eager"].tpot_s, res["graph"].tpot_s)  # one sequence decodes inside the graphs


def test_sglangs_value_is_its_logged_step_over_the_calls_priced_in_it():
    """sglang-0.5's 5.07e-5 s a call: DeepSeek-V3's eager one-token prompt step took 82.6 ms in SGLang's own log (PR
    12160, which names no GPU), over the 1,629 calls the planner prices in that step at TP8 in the released FP8 where
    none of SGLang's DeepSeek fusions applies (expert parallelism on Hopper); the fused shared expert of Hopper and of
    CDNA3 takes 3 calls a MoE layer off that (1,455), SM100's norms in the all-reduce 2 a layer (1,507)."""
    m, eng = get_model("deepseek-v3"), get_engine("sglang")
    for hw_id, ep, calls in (("h200-sxm", 8, 1629), ("h200-sxm", 1, 1455), ("mi300x", 1, 1455), ("b200", 1, 1507)):
        hw = get_hardware(hw_id)
        plans = make_plans(m, hw, tp=8, ep=ep, weights="fp8", kv="bf16", engine=eng)
        st = CostModel(m, hw, engine=eng).step(plans, Step(prefill_seqs=1, prefill_tokens=1))
        assert float(kernel_calls(st.ops)[0]) == calls, hw_id
    assert eng.eager_kernel_overhead_s == pytest.approx(82.6e-3 / 1629, rel=0.01)


def test_estimate_notes_a_host_bound_prompt_step_and_not_a_decode_step_in_graphs():
    est = estimate("llama-3.1-8b", "b200", PlanSpec(), isl=256, osl=256, concurrency=8, engine="sglang")
    prompt = [n for n in est.notes if n.startswith("the prompt step runs outside CUDA graphs")]
    assert len(prompt) == 1 and "kernel calls at 51 us each" in prompt[0]
    assert not any(n.startswith("the decode step runs outside CUDA graphs") for n in est.notes)
