"""``estimate --recv-interval N``: a scheduler that polls for new requests every N decode steps (SGLang's
--scheduler-recv-interval) priced in the analytic closed loop as the simulator prices it: a prompt that arrives while
others decode waits for the next poll, 1..N decode steps, and enters with the prompts that arrived in the meantime."""

import numpy as np
import pytest

from cli_helpers import run
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step
from planner.serving.batching import Techniques, inflight
from planner.serving.predict import PlanSpec, estimate
from planner.serving.sim import Pool, Simulator, replica_for
from planner.serving.workload import generate, random_range_workload, shared_closed_loop
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model


def _engine(n):
    # the poll alone: without the API server's thread (tests/test_api_server_queue.py)
    return get_engine("sglang").set_by_user(recv_interval=n).with_(prefix_caching=False).without_api_thread()


def test_the_poll_wait_from_first_principles():
    """(N + 1) / 2 decode steps on average where one step was waited before, the extra (N - 1) / 2 at the decode step's
    time; the prompt step then carries the N x (clients / osl) prompts that reached the engine in N steps. On an engine
    that mixes prompts into the decode steps (decode_first) TPOT and throughput do not change: the same prompts are
    computed, only later and together."""
    m, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    c, isl, osl, n = 64, 1024, 256, 16
    out = {}
    for every in (1, n):
        eng = _engine(every).with_(schedule="decode_first").for_hardware(hw, 1, 1)
        cm = CostModel(m, hw, engine=eng)
        p = make_plans(m, hw, weights="bf16", kv="bf16", engine=eng)
        out[every] = inflight(cm, p, c, isl, osl, Techniques(), max_running=c)
        dec = cm.step(p, Step(decode_seqs=c, decode_ctx=isl + osl / 2))
        polled = n * c / osl  # prompts that reach the engine in n decode steps: 4 at 64 clients of 256 tokens
        one = cm.step(p, Step(prefill_seqs=1, prefill_tokens=isl, decode_seqs=c - 1, decode_ctx=isl + osl / 2))
        together = cm.step(p, Step(prefill_seqs=polled, prefill_tokens=isl, decode_seqs=c - polled, decode_ctx=isl + osl / 2))
    t_dec = float(dec.time_s[0])
    extra = (n - 1) / 2 * t_dec + float(together.time_s[0] - one.time_s[0])
    assert float(out[n].ttft_s[0] - out[1].ttft_s[0]) == pytest.approx(extra, rel=1e-9)
    assert float(out[n].poll_wait_s[0]) == pytest.approx((n - 1) / 2 * t_dec, rel=1e-9)
    assert float(together.time_s[0]) > float(one.time_s[0])  # four prompts in the step, not one
    for key in ("tpot_s", "output_tokens_per_s", "requests_per_s"):
        assert float(getattr(out[n], key)[0]) == pytest.approx(float(getattr(out[1], key)[0]), rel=1e-12)


def test_prefill_first_steps_from_first_principles():
    """SGLang prefills while prompts wait and pauses the decodes meanwhile (no mixed chunk), so a decode step pays the
    prompt steps in full: the prompts that reach the engine in max(N, 2) decode steps (two: its overlap scheduler has
    the next step formed before a reply's next prompt arrives) share one prefill step, c / osl prompts a step, and

        throughput = c / (t_dec + s t_pf)      TPOT = t_dec + s t_pf (c - 1) / c      s = (c / osl) / q

    with q = max(1, prompts waiting) prompts in the step of time t_pf. Polling every N steps batches more prompts into
    fewer prefill steps, so here, unlike the mixed steps above, the throughput rises with N."""
    m, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    c, isl, osl = 256, 1024, 512
    got = {}
    for every in (1, 16):
        eng = _engine(every).for_hardware(hw, 1, 1)
        assert eng.schedule == "prefill_first" and eng.async_scheduling
        cm = CostModel(m, hw, engine=eng)
        p = make_plans(m, hw, weights="bf16", kv="bf16", engine=eng)
        got[every] = inflight(cm, p, c, isl, osl, Techniques(), max_running=c)
        new = c / osl
        q = max(1.0, new * max(every, 2))
        t_dec = float(cm.step(p, Step(decode_seqs=c, decode_ctx=isl + osl / 2)).time_s[0])
        t_pf = float(cm.step(p, Step(prefill_seqs=q, prefill_tokens=isl)).time_s[0])
        s = new / q
        assert float(got[every].output_tokens_per_s[0]) == pytest.approx(c / (t_dec + s * t_pf), rel=1e-9)
        assert float(got[every].tpot_s[0]) == pytest.approx(t_dec + s * t_pf * (c - 1) / c, rel=1e-9)
    assert float(got[16].output_tokens_per_s[0]) > float(got[1].output_tokens_per_s[0])


def test_a_lone_client_finds_the_engine_idle():
    """With one client nothing decodes when its next prompt arrives, and an idle scheduler polls at once."""
    one, polled = (estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=1024, osl=256, concurrency=1, engine=_engine(n))
                   for n in (1, 30))
    assert polled.ttft_s == pytest.approx(one.ttft_s, rel=1e-12)
    assert any("a lone client's prompt does not wait" in note for note in polled.notes)


@pytest.mark.parametrize("clients", [16, 64])
def test_estimate_agrees_with_the_simulator(clients):
    """The same closed loop through both models, lengths drawn as InferenceX's client draws them (uniform over 0.8-1.0
    of the asked length, so the clients fall out of step as in the analytic steady state): the wait the poll adds to
    the median TTFT (the first wave's burst, which the steady state does not have, lifts the simulator's mean) agrees
    within 25 %, and the median TTFT with it within 20 %."""
    isl, osl, n = 1024, 1024, 30
    ttft = {}
    for every in (1, n):
        eng = _engine(every)
        rep = replica_for("llama-3.1-8b", "h100-sxm", engine=eng, max_input=isl + osl)
        reqs = shared_closed_loop(generate(random_range_workload(isl, osl, 0.8), 10 * clients, rate=float("inf"), seed=0),
                                  clients)
        sim = Simulator([Pool(rep, 1)], reqs).run().summary()["ttft_s"]["p50"]
        est = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=int(0.9 * isl), osl=int(0.9 * osl),
                       concurrency=clients, engine=eng).ttft_s
        ttft[every] = (sim, est)
    (s1, e1), (sn, en) = ttft[1], ttft[n]
    assert sn > 3 * s1 and en > 3 * e1  # the poll is most of a prompt's wait at 30 decode steps
    assert en - e1 == pytest.approx(sn - s1, rel=0.25)
    assert en == pytest.approx(sn, rel=0.2)


def test_the_cli_takes_recv_interval_and_refuses_zero(capsys):
    base = ["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "sglang", "--concurrency", "64", "--json"]
    code, out, _ = run(base + ["--recv-interval", "30"], capsys)
    assert code == 0 and "polls for new requests every 30 decode steps" in out
    code, _, err = run(base + ["--recv-interval", "0"], capsys)
    assert code == 2 and "recv-interval" in err and "Traceback" not in err
