"""``estimate --concurrency N --attention-dp-balance B``: TensorRT-LLM's attention-DP balancing (enable_balance,
timeout_iters) holds a new prompt until one waits for every rank, or B decode steps, priced in the closed loop's
steady state with the clients' prompts arriving evenly."""

import csv
import json
from pathlib import Path

import pytest

from cli_helpers import run
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step
from planner.serving.batching import Techniques, inflight
from planner.serving.predict import PlanSpec, estimate
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model

MODEL, HW, ADP, ISL = "qwen3-30b-a3b", "h100-sxm", 8, 1000


def _steady(c, osl, balance):
    m, hw = get_model(MODEL), get_hardware(HW)
    # the hold alone: without the API server's thread, whose ceiling the faster balanced loop would reach first
    eng = get_engine("trtllm").for_hardware(hw, 1, 1).without_api_thread()
    cm = CostModel(m, hw, engine=eng)
    p = make_plans(m, hw, ep=ADP, adp=ADP, weights="bf16", kv="bf16", engine=eng)
    t = inflight(cm, p, c, ISL, osl, Techniques(adp_balance=balance), max_running=c)
    dec = cm.step(p, Step(decode_seqs=c, decode_ctx=ISL + osl / 2, decode_tokens=1))
    return t, float(dec.time_s[0])


@pytest.mark.parametrize("osl", [1000, 8000])
def test_the_hold_from_first_principles(osl):
    """128 clients finish osl-token replies at 128 / osl a decode step. At 1,000 tokens the other 7 ranks' prompts
    come in 54.7 steps, within the 60-step timeout: a held prompt waits half of that. At 8,000 they would take 437
    steps: the hold times out after 60 with 1 + 0.016 x 60 = 1.96 prompts held, the first for all 60 steps, the others
    30 on average. The held prompts then share prompt steps, one a rank, where without the hold a prompt step
    carries the first prompt and those that arrive while it waits for its step (1 + new x 1.5 with the overlap
    scheduler), so balancing gains throughput and inter-token latency."""
    c, B = 128, 60
    plain, _ = _steady(c, osl, 0)
    held, t_dec = _steady(c, osl, B)
    new = c / osl
    fill = (ADP - 1) / new
    k = 1 + new * B
    steps = fill / 2 if fill <= B else (B + (k - 1) * B / 2) / k
    assert (fill <= B) == (osl == 1000)
    assert float(held.balance_wait_s[0]) == pytest.approx(steps * t_dec, rel=1e-9)
    assert float(plain.balance_wait_s) == 0.0
    assert float(held.output_tokens_per_s[0]) > float(plain.output_tokens_per_s[0])
    assert float(held.tpot_s[0]) < float(plain.tpot_s[0])


def test_a_lone_client_is_not_held():
    one = estimate(MODEL, HW, PlanSpec(ep=ADP, attention_dp=ADP), isl=ISL, osl=1000, concurrency=1, engine="trtllm",
                   adp_balance=60)
    free = estimate(MODEL, HW, PlanSpec(ep=ADP, attention_dp=ADP), isl=ISL, osl=1000, concurrency=1, engine="trtllm")
    assert one.ttft_s == pytest.approx(free.ttft_s, rel=1e-12)


def test_the_inferencex_balance_rows_read_closer_with_the_hold():
    """The held-out InferenceX rows whose TensorRT-LLM recipes balance attention DP (timeout 60 steps), run through
    estimate as a user copying the recipe would: the hold takes their median TTFT from well below the measured
    (about 0.3x) to within a factor of 1.5 on most of them."""
    path = Path(__file__).resolve().parents[1] / "measurements" / "published" / "serving_bench_inferencex.csv"
    ratios = {}
    for r in csv.DictReader(open(path)):
        if not (r.get("attention_dp_balance") or "").strip():
            continue
        ratio = float(r["random_range_ratio"])
        isl, osl = (int(float(r[x]) * (1 + ratio) / 2) for x in ("isl", "osl"))
        plan = PlanSpec(tp=int(r["tp"]), ep=int(r["ep"]), attention_dp=int(r["attention_dp"]), weights=r["weights"],
                        kv=r["kv"] or None)
        eng = get_engine(f"trtllm@{r['engine_version']}")
        if (r.get("stream_interval") or "").strip():  # the recipe's stream_interval, as a user copying it would set
            eng = eng.set_by_user(stream_interval=int(r["stream_interval"]))
        for bal in (0, int(r["attention_dp_balance"])):
            e = estimate(r["model"], r["hardware"], plan, isl=isl, osl=osl, concurrency=int(r["max_concurrency"]),
                         engine=eng, adp_balance=bal)
            ratios.setdefault(bal > 0, []).append(e.ttft_s / float(r["median_ttft_s"]))
    without, held = sorted(ratios[False]), sorted(ratios[True])
    assert len(held) >= 10
    assert without[len(without) // 2] < 0.5
    assert 0.6 < held[len(held) // 2] < 1.2
    assert sum(1 / 1.5 < x < 1.5 for x in held) >= 0.6 * len(held)


def test_the_cli_takes_the_balance_with_concurrency_and_refuses_it_without_ranks(capsys):
    base = ["estimate", "-m", MODEL, "-H", HW, "--engine", "trtllm", "--concurrency", "128", "--isl", "1000", "--osl",
            "1000", "--json"]
    code, out, _ = run(base + ["--ep", "8", "--attention-dp", "8", "--attention-dp-balance", "60"], capsys)
    assert code == 0 and "attention-DP balancing holds a new prompt" in out
    code, _, err = run(base + ["--attention-dp-balance", "60"], capsys)
    assert code == 2 and "--attention-dp 2 or more" in err and "Traceback" not in err
    code, _, err = run(["estimate", "-m", MODEL, "-H", HW, "--ep", "8", "--attention-dp", "8", "--batching", "static",
                        "--batch", "8", "--attention-dp-balance", "60"], capsys)
    assert code == 2 and "static batch" in err


@pytest.mark.parametrize("engine, steps", [("trtllm", 50), ("trtllm@1.0", 50), ("sglang", 0), ("vllm", 0)])
def test_attention_dp_is_priced_as_the_engine_profile_deploys_it(engine, steps):
    """Without --attention-dp-balance, attention DP is priced with the profile's balancing: TensorRT-LLM 1.x holds
    prompts up to 50 steps (attention_dp_config enable_balance, which plan --emit writes and NVIDIA's recipes set), and
    a note says so and what the engine's own default (off) gives; vLLM and SGLang have no such hold. 0 turns it off."""
    from planner.report.emit import ADP_BALANCE_STEPS

    plan = PlanSpec(ep=ADP, attention_dp=ADP)
    kw = dict(isl=ISL, osl=1000, concurrency=128, engine=engine)
    default = estimate(MODEL, HW, plan, **kw)
    asked = estimate(MODEL, HW, plan, adp_balance=steps, **kw)
    off = estimate(MODEL, HW, plan, adp_balance=0, **kw)
    assert get_engine(engine).attention_dp_balance == steps
    assert (default.ttft_s, default.tpot_s) == pytest.approx((asked.ttft_s, asked.tpot_s), rel=1e-12)
    said = [n for n in default.notes if "the engine's own default is off" in n]
    assert len(said) == (steps > 0) and not any("the engine's own default is off" in n for n in asked.notes + off.notes)
    if steps:
        assert ADP_BALANCE_STEPS == steps  # the emitted config holds what was priced
        assert default.output_tokens_per_s > off.output_tokens_per_s and default.ttft_s > off.ttft_s
        # the note's figures for the engine's own default are the estimate asked for it
        assert f"TTFT {off.ttft_s * 1e3:,.1f} ms" in said[0] and f"TPOT {off.tpot_s * 1e3:,.2f} ms" in said[0]
        assert f"{off.output_tokens_per_s_per_gpu:,.0f} output tokens/s per GPU" in said[0]
    else:
        assert default.output_tokens_per_s == pytest.approx(off.output_tokens_per_s, rel=1e-12)


def test_the_rate_run_and_the_simulator_take_the_profile_default_too():
    """estimate --rate and simulate hold attention-DP prompts as the steady state does: by the engine profile unless
    asked (0: off)."""
    from planner.api import estimate_at_rate

    plan = PlanSpec(ep=ADP, attention_dp=ADP)
    kw = dict(rate=20.0, isl=ISL, osl=200, engine="trtllm", requests=300)
    default, asked, off = (estimate_at_rate(MODEL, HW, plan, **kw, **b) for b in ({}, {"adp_balance": 50}, {"adp_balance": 0}))
    assert default["ttft_s"] == pytest.approx(asked["ttft_s"], rel=1e-12)
    assert default["ttft_s"] != pytest.approx(off["ttft_s"], rel=1e-3)


def test_each_simulated_pool_holds_prompts_by_its_own_ranks(capsys):
    """simulate resolves the profile's balance per pool: a disaggregated deployment whose prefill pool has no attention
    DP (tp8) beside an attention-DP decode pool runs, the decode pool balanced and the prefill pool not; SGLang's pools
    and --attention-dp-balance 0 never hold."""
    base = ["simulate", "-m", "deepseek-v3", "-H", "h200-sxm", "--attention-dp", "8", "--ep", "8", "--rate", "4",
            "--requests", "200", "--json"]
    held = lambda out: [p["plan"].get("attention_dp_balance_steps") for p in json.loads(out)["pools"]]  # noqa: E731
    code, out, err = run(base + ["--disagg", "1:1", "--prefill-tp", "8", "--prefill-attention-dp", "1", "--prefill-ep", "8"],
                         capsys)
    assert code == 0, err
    assert held(out) == [None, 50]
    for extra in (["--engine", "sglang"], ["--attention-dp-balance", "0"]):
        code, out, err = run(base + extra, capsys)
        assert code == 0 and held(out) == [None], err
