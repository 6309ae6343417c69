"""The format registry (planner.specs.quant): one list of format ids, one default-KV rule,
one alias table, and no copy of them left elsewhere in the package."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import planner
from planner.specs.quant import (
    DEPLOY_KV_FORMATS, DEPLOY_WEIGHT_FORMATS, FORMATS, KV_FORMATS, PRECISION_ALIASES, SEARCH_KV_FORMATS,
    SEARCH_WEIGHT_FORMATS, canonical, default_kv, get_format, kv_bytes_per_element,
)

PKG = Path(planner.__file__).parent
FLOAT_DTYPES = {"fp32", "bf16", "fp16"}  # also the devices' compute dtypes (a preference order is no format list)


def test_every_offered_format_is_registered():
    for ids, table in ((SEARCH_WEIGHT_FORMATS, FORMATS), (DEPLOY_WEIGHT_FORMATS, FORMATS),
                       (SEARCH_KV_FORMATS, KV_FORMATS), (DEPLOY_KV_FORMATS, KV_FORMATS)):
        assert set(ids) <= set(table), set(ids) - set(table)
    assert set(PRECISION_ALIASES.values()) <= set(FORMATS)


@pytest.mark.parametrize("weights, kv", [
    ("bf16", "bf16"), ("fp16", "fp16"), ("fp32", "fp32"),  # the engines' "auto": the model's dtype
    ("fp8", "fp8"),
    ("int8", "bf16"), ("int4", "bf16"), ("fp4", "bf16"), ("mxfp4", "bf16"), ("q4_0", "bf16"),
])
def test_default_kv(weights, kv):
    assert default_kv(weights) == kv
    assert kv in KV_FORMATS


@pytest.mark.parametrize("engine, model, kv", [
    (None, None, "fp8"), ("trtllm", "llama-3.1-70b", "fp8"), ("trtllm@0.14", None, "fp8"),  # ModelOpt FP8 recipes
    ("vllm", "llama-3.1-70b", "bf16"), ("vllm@0.6", None, "bf16"), ("sglang", None, "bf16"),  # --kv-cache-dtype auto
    ("trtllm", "deepseek-r1", "bf16"), (None, "deepseek-v3", "bf16"),  # released in FP8: no KV format in the checkpoint
])
def test_default_kv_of_fp8_weights_follows_the_engine_and_the_checkpoint(engine, model, kv):
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_model

    assert default_kv("fp8", engine, model) == kv
    # objects and ids give the same answer; other formats do not depend on the engine
    assert default_kv("fp8", get_engine(engine) if engine else None, get_model(model) if model else None) == kv
    assert default_kv("bf16", engine, model) == "bf16" and default_kv("fp4", engine, model) == "bf16"


def test_estimate_says_when_fp8_weights_keep_a_16_bit_cache():
    from planner.api import estimate
    from planner.serving.planspec import PlanSpec

    v = estimate("llama-3.1-70b", "h100-sxm", PlanSpec(tp=2, weights="fp8"), engine="vllm")
    v8 = estimate("llama-3.1-70b", "h100-sxm", PlanSpec(tp=2, weights="fp8", kv="fp8"), engine="vllm")
    t = estimate("llama-3.1-70b", "h100-sxm", PlanSpec(tp=2, weights="fp8"), engine="trtllm")
    assert v.plan["kv"] == "bf16" and v8.plan["kv"] == "fp8" and t.plan["kv"] == "fp8"
    assert any("KV cache bf16" in n and "--kv fp8" in n for n in v.notes)
    assert not any("KV cache" in n for n in t.notes + v8.notes)  # asked for, or the engine's own default: no note
    # the 16-bit cache holds half the tokens a sequence needs in the same KV memory: about half the sequences fit
    assert 0.45 < v.max_concurrency / v8.max_concurrency < 0.55


def test_default_kv_is_never_wider_than_the_weights_activation_dtype():
    for w in FORMATS:
        assert kv_bytes_per_element(default_kv(w)) <= max(get_format(w).bytes, 2.0) or w == "fp32"


def test_aliases():
    assert canonical("BFloat16") == "bf16" and canonical(" float16 ") == "fp16"
    assert canonical("nvfp4") == "fp4" and canonical("w4a16") == "int4"
    assert canonical("fp8") == "fp8" and canonical(None) is None


def _sources():
    for p in PKG.rglob("*.py"):
        if p.name != "quant.py":
            yield p, p.read_text()


def test_no_default_kv_rule_is_written_twice():
    rule = re.compile(r'"fp8"\s+if\s+\w+(\.\w+)?\s*==\s*"fp8"')
    hits = [str(p.relative_to(PKG)) for p, text in _sources() if rule.search(text)]
    assert not hits, f"write default_kv(weights) instead of the rule in {hits}"


def test_no_format_id_list_is_duplicated():
    # a literal tuple/list of three or more registered weight-format ids outside the registry
    ids = "|".join(re.escape(f) for f in FORMATS)
    lit = re.compile(rf'[(\[]\s*"(?:{ids})"(?:\s*,\s*"(?:{ids})"){{2,}}\s*,?\s*[)\]]')
    hits = []
    for p, text in _sources():
        for m in lit.finditer(text):
            if set(re.findall(r'"([^"]+)"', m.group(0))) - FLOAT_DTYPES:  # a list of compute dtypes is not one
                hits.append(f"{p.relative_to(PKG)}: {m.group(0)[:60]}")
    allowed = ("cli/catalog.py",)  # catalog's columns are datasheet peak dtypes, not format lists
    hits = [h for h in hits if not h.startswith(allowed)]
    assert not hits, hits


def test_a_plan_search_on_gaudi3_runs_every_format_in_a_measured_16_bit_type():
    # gaudi3 publishes an fp16 peak but only a bf16 matmul fraction: weight-only formats compute in bf16
    from planner.costmodel.plans import format_numbers
    from planner.specs.loader import get_hardware
    from planner.specs.quant import SEARCH_WEIGHT_FORMATS, get_format, resolve

    hw = get_hardware("gaudi3")
    for w in [f for f in SEARCH_WEIGHT_FORMATS if f != "fp16"]:  # fp16 itself runs in fp16 (the search keeps bf16)
        r = resolve(get_format(w), hw)
        assert r.compute_dtype != "fp16", w
        assert format_numbers(hw, w, "bf16")["gemm_flops"] > 0


def test_llama_cpp_k_quant_bits_by_hand():
    """ggml k-quants pack 256 weights per super-block: Q4_K 144 bytes (4.5 bits), Q5_K 176 (5.5), Q6_K 210 (6.5625).
    The _M mixes store attn_v and ffn_down at Q6_K in half the layers: Llama-3-8B's v (4096 x 1024) and down
    (14336 x 4096) are 62.9 M of a layer's 218.1 M weights, half of that is 14 %; Llama-2-7B's 15 %."""
    from planner.specs.quant import canonical

    assert FORMATS["q6_k"].bits == pytest.approx(210 * 8 / 256)
    llama3 = 0.5 * (4096 * 1024 + 14336 * 4096) / (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)
    llama2 = 0.5 * (4096 * 4096 + 11008 * 4096) / (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert 0.14 < llama3 < llama2 < 0.155
    assert FORMATS["q4_k_m"].bits == pytest.approx(4.5 + 0.15 * (6.5625 - 4.5))
    assert FORMATS["q5_k_m"].bits == pytest.approx(5.5 + 0.15 * (6.5625 - 5.5))
    assert FORMATS["q4_k_m"].head_bits == FORMATS["q6_k"].bits  # output.weight is Q6_K
    assert canonical("Q4_K_M") == "q4_k_m" and canonical("q5_k") == "q5_k_m"


def test_a_plan_takes_precision_names_as_users_write_them():
    from planner.serving.planspec import PlanSpec

    p = PlanSpec(weights="Q4_K_M", kv="FP8", activations="float16")
    assert (p.weights, p.kv, p.activations) == ("q4_k_m", "fp8", "fp16")
    assert PlanSpec(weights="awq").weights == "int4" and PlanSpec().kv is None


def test_gguf_presets_take_their_bits_from_published_file_sizes():
    """llama.cpp's other file types price at the bits their Llama-3-70B GGUFs measure (llama.cpp PR 6745's size table),
    output.weight at Q6_K. The same reading of that table's Q4_K_M, Q5_K_M and Q6_K files lands within 0.3 % of the
    bits the ggml block layouts give them, and every preset sits at or above the pure block it is built on (a preset
    only ever widens some tensors) and below Q6_K."""
    from planner.specs.quant import GGUF_MIXES, Q6_K_BITS, gguf_body_bits

    from planner.specs.loader import get_model
    from planner.specs.quant import LLAMA3_70B_OUTPUT, LLAMA3_70B_WEIGHTS

    counts = get_model("llama-3-70b").param_counts()  # the weights the sizes are read over are the spec's
    assert sum(counts.values()) == LLAMA3_70B_WEIGHTS and counts["lm_head"] == LLAMA3_70B_OUTPUT
    # the method, checked on the rows whose bits the layouts fix
    assert gguf_body_bits(39.60) == pytest.approx(FORMATS["q4_k_m"].bits, rel=3e-3)
    assert gguf_body_bits(46.52) == pytest.approx(FORMATS["q5_k_m"].bits, rel=3e-3)
    assert gguf_body_bits(53.91) == pytest.approx(Q6_K_BITS, rel=3e-3)
    # bits per weight of the pure blocks (ggml-common.h): bytes per block x 8 / weights per block
    base = {"q5_k_s": 176 * 8 / 256, "q4_k_s": 144 * 8 / 256, "iq4_nl": 18 * 8 / 32, "iq4_xs": 136 * 8 / 256,
            "q3_k_l": 110 * 8 / 256, "q3_k_m": 110 * 8 / 256, "q3_k_s": 110 * 8 / 256, "iq3_m": 110 * 8 / 256,
            "iq3_s": 110 * 8 / 256, "iq3_xs": 98 * 8 / 256, "iq3_xxs": 98 * 8 / 256, "q2_k": 84 * 8 / 256,
            "q2_k_s": 84 * 8 / 256, "iq2_m": 82 * 8 / 256, "iq2_s": 74 * 8 / 256, "iq2_xs": 74 * 8 / 256,
            "iq2_xxs": 66 * 8 / 256, "iq1_m": 56 * 8 / 256, "iq1_s": 50 * 8 / 256}
    assert set(base) == set(GGUF_MIXES)
    for t, b in base.items():
        f = FORMATS[t]
        assert b - 0.01 <= f.bits < Q6_K_BITS, t
        assert f.weight_only and f.head_bits == Q6_K_BITS and f.compute == "fp16", t
    assert FORMATS["q5_0"].bits == pytest.approx(5.5) and FORMATS["q5_1"].bits == pytest.approx(6.0)
    # fewer bits, less accuracy kept (the perplexity table's order); every format carries an accuracy row
    from planner.cap.accuracy import weight_recovery

    order = sorted(GGUF_MIXES, key=lambda t: FORMATS[t].bits)
    recov = [weight_recovery(t).r for t in order]
    assert recov[0] < recov[-1] and weight_recovery("iq1_s").r < weight_recovery("q2_k").r < weight_recovery("q4_k_s").r
    assert weight_recovery("q4_k_s").r < weight_recovery("q4_k_m").r < weight_recovery("q5_k_s").r


def test_gguf_and_method_names_as_tables_write_them():
    """llama.cpp's F16/F32 and the file-type names, and the method-width forms of the weight-only and W8A8 names."""
    from planner.serving.planspec import PlanSpec
    from planner.specs.checkpoint import checkpoint_weights
    from planner.specs.quant import canonical

    assert canonical("F16") == "fp16" and canonical("F32") == "fp32"
    assert canonical("GPTQ-Int4") == "int4" and canonical("AWQ-INT4") == "int4" and canonical("gptq-int8") == "int8-wo"
    assert canonical("W8A8-FP8") == "fp8" and canonical("w8a8-int8") == "int8"
    assert PlanSpec(weights="IQ4_XS").weights == "iq4_xs" and PlanSpec(weights="Q2_K_S").weights == "q2_k_s"
    # a longer file type is not read as the shorter one it starts with
    assert checkpoint_weights("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-Q2_K_S.gguf") == "q2_k_s"
    assert checkpoint_weights("x/Llama-3-70B-Instruct-IQ3_XS.gguf") == "iq3_xs"
    assert checkpoint_weights("x/Llama-3-70B-Instruct-IQ3_S.gguf") == "iq3_s"
    assert checkpoint_weights("x/Llama-3-8B-Q5_0.gguf") == "q5_0"


def test_a_narrower_gguf_type_decodes_faster_and_keeps_less():
    """Batch-1 decode on llama.cpp streams the weights: IQ4_XS (4.26 bits) below Q4_K_M (4.80) below Q5_0 (5.5), in
    time per token and in accuracy kept."""
    from planner import PlanSpec, estimate

    e = {w: estimate("llama-3-8b", "rtx-4090", PlanSpec(weights=w), isl=512, osl=128, batch=1, batching="static",
                     engine="llamacpp") for w in ("iq4_xs", "q4_k_m", "q5_0")}
    assert e["iq4_xs"].tpot_s < e["q4_k_m"].tpot_s < e["q5_0"].tpot_s
    assert e["iq4_xs"].accuracy["score"] < e["q4_k_m"].accuracy["score"] < e["q5_0"].accuracy["score"]


def test_kv_auto_is_the_engines_own_rule_and_an_unknown_cache_is_refused(capsys):
    """`--kv auto` (the engines' --kv-cache-dtype auto) searches each weight format with the cache the engine picks for
    it; a KV name the planner does not know is one line on stderr and exit 2, not an empty search reported as 'the
    weights alone exceed memory'."""
    from cli_helpers import run
    from planner.serving.planspec import PlanSpec
    from planner.specs.quant import default_kv

    assert PlanSpec(kv="auto").kv is None
    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1", "--kv", "auto", "--json"], capsys)
    assert code == 0, err
    pairs = {(p["plan"]["weights"], p["plan"]["kv"]) for p in json.loads(out)["frontier"]}
    assert pairs and all(kv == default_kv(w, "trtllm", "llama-3.1-8b") for w, kv in pairs)
    # a device without bf16 (a T4) keeps the engine's 16-bit cache in fp16
    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "t4", "--gpus", "1", "--kv", "auto", "--min-accuracy", "0",
                          "--json"], capsys)
    assert code == 0, err
    assert "bf16" not in {p["plan"]["kv"] for p in json.loads(out)["frontier"]}
    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1", "--kv", "fp8_e5m2"], capsys)
    assert code == 2 and "unknown KV-cache precision 'fp8_e5m2'" in err and "Traceback" not in err


def test_plan_takes_weight_names_as_users_write_them(capsys):
    """`plan --weights AWQ` searches int4 (estimate always did; plan refused the name)."""
    from cli_helpers import run

    code, out, err = run(["plan", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--gpus", "1", "--weights", "AWQ",
                          "--min-accuracy", "0", "--json"], capsys)
    assert code == 0, err
    assert {p["plan"]["weights"] for p in json.loads(out)["frontier"]} == {"int4"}
