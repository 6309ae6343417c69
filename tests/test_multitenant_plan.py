"""Multi-tenant planning in the steady state and the plan search: LoRA adapters (S-LoRA, ExpertWeave), one GPU split
between prefill and decode (semi-PD, Nexus). Hand-computed bytes and probabilities, limits, the papers' directions."""

from __future__ import annotations

import numpy as np
import pytest

from cli_helpers import run
from planner.costmodel.lora import (LoraSpec, adapter_bytes, adapter_flops_per_token, expected_distinct, miss_rate,
                                    parse_lora)
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step
from planner.serving.batching import inflight
from planner.serving.intragpu import best_share, intra_gpu_pd
from planner.serving.predict import PlanSpec, estimate
from planner.search.evaluate import Workload
from planner.search.run import Constraints, search
from planner.search.space import SpaceOptions
from planner.specs.loader import get_hardware, get_model


# ---------------------------------------------------------------- adapters by hand

def test_adapter_bytes_llama_3_1_8b_rank16_qkvo_by_hand():
    # hidden 4096; q 32 heads x 128 = 4096 out; k, v 8 heads x 128 = 1024 out; o 4096 -> 4096; 32 layers; bf16
    per_layer = (4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096)
    expect = 16 * per_layer * 32 * 2
    m = get_model("llama-3.1-8b")
    spec = parse_lora("100:16:q,k,v,o")
    assert adapter_bytes(m, spec) == expect == 27_262_976
    assert adapter_flops_per_token(m, spec) == 2 * 16 * per_layer * 32


def test_expert_adapters_store_one_per_expert_and_run_top_k():
    """ExpertWeave: a rank-r adapter on each expert's gate/up/down; a token runs only its top_k experts' adapters."""
    m = get_model("mixtral-8x7b")
    e = m.moe
    per_expert = 3 * (m.hidden_size + e.expert_intermediate_size) * m.num_moe_layers
    spec = parse_lora("10:8:experts")
    assert adapter_bytes(m, spec) == 8 * per_expert * e.num_experts * 2
    assert adapter_flops_per_token(m, spec) == 2 * 8 * per_expert * e.top_k


def test_zipf_miss_rate_is_one_minus_top_m_probabilities():
    # N = 3, s = 1: p = (1, 1/2, 1/3) / (11/6); resident M = 1 misses 1 - 6/11 = 5/11
    assert miss_rate(LoraSpec(3, 16, resident=1, popularity="zipf:1")) == pytest.approx(5 / 11)
    assert miss_rate(LoraSpec(3, 16, resident=2, popularity="zipf:1")) == pytest.approx(2 / 11)
    assert miss_rate(LoraSpec(1000, 16, resident=250)) == pytest.approx(0.75)  # uniform: 1 - M/N
    assert miss_rate(LoraSpec(1000, 16)) == 0.0  # all resident


def test_expected_distinct_adapters():
    spec = LoraSpec(50, 16, popularity="zipf:1.1")
    p = np.arange(1, 51) ** -1.1
    p /= p.sum()
    b = np.array([1.0, 7.0, 40.0])
    exact = np.array([(1 - (1 - p) ** x).sum() for x in b])
    got = expected_distinct(spec, b)
    assert got[0] == pytest.approx(1.0)
    assert got == pytest.approx(exact, rel=0.02)  # interpolated on a log grid of batch sizes
    assert expected_distinct(LoraSpec(4, 16), 1e4) == pytest.approx(4.0)


# ---------------------------------------------------------------- adapters in the steady state

KW = dict(isl=1024, osl=256, concurrency=64)


def test_resident_adapters_come_out_of_the_kv_cache():
    base = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=1024, osl=256)
    lora = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(lora="1000:16", lora_resident=400), isl=1024, osl=256)
    taken = 400 * 27_262_976
    assert lora.lora["resident_bytes_per_gpu"] == taken
    per_seq = base.memory["kv_bytes_per_token"] * (1024 + 256)
    assert base.max_concurrency - lora.max_concurrency == pytest.approx(taken / per_seq, abs=2)


def test_slora_thousands_of_adapters_small_throughput_loss():
    """S-LoRA (arXiv 2311.03285): thousands of rank-16 adapters on one GPU at a small throughput cost against the
    base model. Here: 2000 adapters, 200 resident, Zipf popularity; loss under a quarter and growing with the
    distinct adapters per batch."""
    base = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), **KW)
    few = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(lora="5:16", lora_popularity="zipf:1"), **KW)
    many = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(lora="2000:16", lora_resident=200, lora_popularity="zipf:1"), **KW)
    assert many.output_tokens_per_s < few.output_tokens_per_s < base.output_tokens_per_s
    assert many.output_tokens_per_s > 0.75 * base.output_tokens_per_s
    assert many.lora["distinct_adapters_per_step"] > few.lora["distinct_adapters_per_step"]
    assert 0 < many.lora["miss_rate"] < 1 and many.lora["ttft_added_s"] > 0


def test_a_miss_costs_one_load_over_the_host_link():
    from planner.costmodel.collectives import host_link_bytes_per_s

    hw = get_hardware("h100-sxm")
    e = estimate("llama-3.1-8b", hw, PlanSpec(tp=2, lora="100:16", lora_resident=10), **KW)
    load = 27_262_976 / 2 / host_link_bytes_per_s(hw)
    assert e.lora["load_s"] == pytest.approx(load)
    assert e.lora["ttft_added_s"] == pytest.approx(0.9 * load)


def test_estimate_and_plan_search_price_adapters_as_one_computation():
    isl, osl, c = 2048, 256, 32
    text, res_, pop = "1000:16:attn", 100, "zipf:1"
    est = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(weights="fp8", kv="fp8", lora=text, lora_resident=res_,
                                                        lora_popularity=pop), isl=isl, osl=osl, concurrency=c)
    opts = SpaceOptions(weights=("fp8",), kv=("fp8",), max_pp=1, concurrency=(c,), chunk_tokens=(0,), offload=False,
                        disaggregated=False, lora=parse_lora(text, res_, pop))
    res = search("llama-3.1-8b", ["h100-sxm"], 1, Workload(isl, osl), Constraints(gpus=1), opts=opts)
    cols = res.table.cols
    i = int(np.nonzero(cols["concurrency"] == c)[0][0])
    assert cols["ttft_s"][i] == pytest.approx(est.ttft_s, rel=1e-9)
    assert cols["tpot_s"][i] == pytest.approx(est.tpot_s, rel=1e-9)


# ---------------------------------------------------------------- one GPU split between prefill and decode

def _setup():
    m, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    return CostModel(m, hw), make_plans(m, hw, tp=1, pp=1, ep=1, adp=1, weights="bf16", kv="bf16")


def test_all_sms_to_prefill_is_the_prefill_only_limit():
    cm, p = _setup()
    whole = cm.step(p, Step(prefill_seqs=1.0, prefill_tokens=2048)).time_s
    near = intra_gpu_pd(cm, p, 32, 2048, 256, 0.999)
    assert near["prefill_s"] == pytest.approx(whole, rel=0.01)
    # and decode, with almost no SMs, is left almost no throughput
    assert near["output_tokens_per_s"] < 0.05 * intra_gpu_pd(cm, p, 32, 2048, 256, 0.5)["output_tokens_per_s"]


def test_prefill_time_falls_and_decode_time_rises_with_the_prefill_share():
    cm, p = _setup()
    r = [intra_gpu_pd(cm, p, 64, 2048, 256, f) for f in (0.2, 0.4, 0.6, 0.8)]
    assert all(a["prefill_s"] > b["prefill_s"] for a, b in zip(r, r[1:]))
    assert all(a["tpot_s"] <= b["tpot_s"] + 1e-12 for a, b in zip(r, r[1:]))


def test_semi_pd_beats_aggregated_tpot_at_the_same_gpu_and_slo():
    """semi-PD / Nexus: at high load the split GPU holds a lower TPOT than the aggregated engine (prefills no longer
    stall the decode steps) with TTFT still inside a loose SLO, at as many tokens/s or more. At 256 sequences: at
    128 the share that holds the TPOT (0.6 of the SMs) leaves its prefill worker 98 % busy since the prefill GEMMs
    were fitted on the first-token rows (half-rate at ~117 tokens), so no share met a 0.3 s TTFT there."""
    cm, p = _setup()
    agg = inflight(cm, p, 256, 1024, 256)
    split = best_share(cm, p, 256, 1024, 256, ttft_s=0.3, tpot_s=float(agg.tpot_s[0]) * 0.95)
    assert float(split["ttft_s"][0]) <= 0.3
    assert float(split["tpot_s"][0]) < 0.95 * float(agg.tpot_s[0])
    assert float(split["output_tokens_per_s"][0]) >= float(agg.output_tokens_per_s[0])


def test_estimate_reports_the_split_beside_the_aggregated_plan():
    e = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(intra_gpu_pd="auto"), isl=1024, osl=256, concurrency=128)
    d = e.intra_gpu_pd
    assert 0 < d["prefill_share"] < 1 and d["prefill_utilization"] < 1
    assert e.tpot_s == d["tpot_s"] and e.ttft_s == d["ttft_s"]
    assert d["aggregated"]["tpot_s"] > 0


# ---------------------------------------------------------------- bad values: one line, exit 2

@pytest.mark.parametrize("args", [
    ["--lora", "100:0"], ["--lora", "0:16"], ["--lora", "10:16", "--lora-resident", "20"], ["--lora", "10:16:qq"],
    ["--lora", "10:16", "--lora-popularity", "zipf:-1"], ["--lora-resident", "4"], ["--intra-gpu-pd", "1.0"],
    ["--intra-gpu-pd", "0"], ["--intra-gpu-pd", "half"], ["--lora", "10:16:experts"],
])
def test_bad_values_one_line_exit_2(args, capsys):
    code, out, err = run(["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", *args], capsys)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_plan_lora_bad_rank_exit_2(capsys):
    code, _, err = run(["plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--gpus", "1", "--lora", "5:0"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_plan_table_holds_intra_gpu_rows_beside_aggregated_and_disaggregated():
    opts = SpaceOptions(weights=("bf16",), kv=("bf16",), max_pp=1, concurrency=(32, 128), chunk_tokens=(0,), offload=False,
                        intra_gpu_pd="0.6")
    res = search("llama-3.1-8b", ["h100-sxm"], 2, Workload(1024, 256), Constraints(gpus=2), opts=opts)
    c = res.table.cols
    intra = np.nonzero(c["intra_f"] > 0)[0]
    assert len(intra) and np.any(c["disagg"]) and np.any((c["intra_f"] == 0) & ~c["disagg"])
    assert np.all(c["intra_f"][intra] == 0.6)
    i = int(intra[(c["concurrency"][intra] == 32) & (c["tp"][intra] == 1)][0])
    from planner.specs.engine import get_engine

    m, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    eng = get_engine("trtllm").for_hardware(hw)
    cm = CostModel(m, hw, engine=eng)
    p = make_plans(m, hw, tp=1, pp=1, ep=1, adp=1, weights="bf16", kv="bf16", engine=eng)
    direct = intra_gpu_pd(cm, p, 32, 1024, 256, 0.6, overhead_s=float(getattr(eng, "request_overhead_s", 0) or 0))
    assert c["tpot_s"][i] == pytest.approx(float(direct["tpot_s"][0]), rel=1e-9)
    assert c["ttft_s"][i] == pytest.approx(float(direct["ttft_s"][0]), rel=1e-9)


# ---------------------------------------------------------------- several models on one pool

def test_low_rate_models_share_one_gpu_time_sliced():
    from planner.search.placement import place, tenant
    from planner.specs.engine import get_engine

    d = place(["llama-3.1-8b", "qwen3-8b"], [1.0, 0.5], "h100-sxm", ttft_s=0.5, tpot_s=0.05)
    assert d["gpus"] == 1 and d["gpus_one_pool_per_model"] == 2 and d["gpus_saved"] == 1
    g = d["placement"][0]
    assert g["shared"] and g["memory_bytes"] <= g["usable_bytes"]
    hw, eng = get_hardware("h100-sxm"), get_engine("trtllm")
    ts = [tenant(m, r, hw, eng, "bf16", 1024, 256, 0.5, 0.05, 8) for m, r in (("llama-3.1-8b", 1.0), ("qwen3-8b", 0.5))]
    steps = [t.at(g["models"][t.model]["concurrency"])[1] for t in ts]
    # time-slicing: every model waits a whole round (each model's step) per token
    for t in ts:
        assert g["models"][t.model]["tpot_s"] == pytest.approx(sum(steps))
        # Little's law: the running batch carries the rate at one token per round
        m = g["models"][t.model]
        assert m["concurrency"] / (m["tpot_s"] * 256) >= m["rate"]
        assert m["ttft_s"] > t.at(m["concurrency"])[0]  # a new prompt waits out the other model's step


def test_tight_tpot_keeps_models_apart_and_high_rates_get_dedicated_replicas():
    from planner.search.placement import place

    loose = place(["llama-3.1-8b", "qwen3-8b"], [1.0, 1.0], "h100-sxm", tpot_s=0.05)
    alone = loose["models"]["llama-3.1-8b"]
    # a TPOT limit below two models' summed decode steps cannot be time-sliced: one GPU each
    from planner.search.placement import tenant
    from planner.specs.engine import get_engine

    t = tenant("llama-3.1-8b", 1.0, get_hardware("h100-sxm"), get_engine("trtllm"), "bf16", 1024, 256, None, None, 8)
    limit = 1.5 * t.at(1)[1]
    tight = place(["llama-3.1-8b", "qwen3-8b"], [1.0, 1.0], "h100-sxm", tpot_s=limit)
    assert tight["gpus"] == 2 and not any(g["shared"] for g in tight["placement"])
    big = place(["llama-3.1-8b"], [2.5 * alone["capacity_rps_per_replica"]], "h100-sxm", tpot_s=0.05)
    assert big["gpus"] == 3 and big["placement"][0]["replicas"] == 2


def test_plan_models_errors_exit_2(capsys):
    code, _, err = run(["plan", "--models", "llama-3.1-405b,qwen3-8b", "--rates", "1,1", "--hardware", "l40s", "--gpus", "4"], capsys)
    assert code == 2 and "fits nowhere" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["plan", "--models", "llama-3.1-8b,qwen3-8b", "--rates", "1", "--hardware", "h100-sxm", "--gpus", "4"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- fine-tuning beside serving, shared variants

def test_flexllm_finetuning_fills_what_the_tpot_limit_leaves():
    kw = dict(isl=1024, osl=256)
    none = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(finetune_tpot_s=0.005), concurrency=32, **kw)
    assert none.finetune["tokens_per_s"] == 0.0 and not none.finetune["meets_limit"]  # inference alone is slower
    loose = [estimate("llama-3.1-8b", "h100-sxm", PlanSpec(finetune_tpot_s=lim), concurrency=32, **kw).finetune
             for lim in (0.02, 0.03, 0.06)]
    tok = [f["tokens_per_s"] for f in loose]
    assert 0 < tok[0] <= tok[1] <= tok[2]
    assert all(f["inference_tpot_s"] <= f["tpot_limit_s"] for f in loose)
    # FlexLLM: under heavy inference load the co-served job keeps most of a dedicated GPU's fine-tuning progress
    assert loose[1]["share_of_dedicated"] > 0.5
    heavy = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(finetune_tpot_s=0.03), concurrency=128, **kw).finetune
    assert heavy["tokens_per_s"] < loose[1]["tokens_per_s"]  # more inference, less room for training


def test_blockllm_shared_blocks_by_hand():
    base = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(), isl=1024, osl=256)
    e = estimate("llama-3.1-8b", "h100-sxm", PlanSpec(shared_variants="4:0.75"), isl=1024, osl=256)
    W = base.memory["weights_bytes"]
    v = e.variants
    assert v["weights_bytes"] == pytest.approx(W * (1 + 3 * 0.25))
    assert v["saved_bytes"] == pytest.approx(3 * 0.75 * W)
    per_seq = base.memory["kv_bytes_per_token"] * 1280
    assert base.max_concurrency - e.max_concurrency == pytest.approx(3 * 0.25 * W / per_seq, abs=2)


@pytest.mark.parametrize("args", [["--shared-variants", "4:1.0"], ["--shared-variants", "0:0.5"], ["--finetune-tpot", "0"]])
def test_finetune_and_variants_bad_values_exit_2(args, capsys):
    code, out, err = run(["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", *args], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_capacity_with_heavy_adapters_needs_more_gpus(capsys):
    """capacity --lora: the plan search's candidates and the simulated replicas both serve the adapters."""
    import json

    base = ["capacity", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--rate", "30", "--tpot-p99", "40ms",
            "--max-gpus", "8", "--requests", "400", "--json"]
    code, out, _ = run(base, capsys)
    assert code == 0
    plain = json.loads(out)
    code, out, _ = run(base + ["--lora", "2000:64:all", "--lora-resident", "20", "--lora-popularity", "zipf:0.8"], capsys)
    assert code == 0
    lora = json.loads(out)
    assert lora["gpus"] > plain["gpus"]  # rank-64 adapters on every projection, 1 % resident: heavy
    code, _, err = run(base + ["--lora", "10:16", "--lora-resident", "11"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_several_models_on_one_pool_run_as_a_study(tmp_path):
    """`plan --models A,B --rates RA,RB` has a study form: each point is one placement, with the GPUs it saves."""
    from planner.studies.runner import run_study
    from planner.studies.schema import load_study

    f = tmp_path / "s.yaml"
    f.write_text("name: place\ncommand: plan\nbase: {models: 'llama-3.1-8b,qwen3-8b', hardware: h100-sxm, gpus: 8, "
                 "tpot: 40ms, isl: 1000, osl: 200}\nsweep:\n  mode: zip\n  axes:\n    rates: ['6,1', '6,3']\n")
    rows = run_study(load_study(f), workers=1)
    assert len(rows) == 2 and all(not r.get("error") for r in rows)
    for r in rows:
        assert int(r["gpus_used"]) + int(r["gpus_saved"]) == int(r["gpus_one_pool_per_model"])
        assert int(r["model_count"]) == 2
