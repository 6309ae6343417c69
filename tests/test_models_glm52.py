"""Z.ai GLM-5.2: GLM-5's network with IndexShare (config.json index_topk_freq 4, index_skip_topk_offset 3): only 21 of
the 78 layers run a sparse-attention indexer and cache its key; the others reuse the last top-k. Checked against the
rule the serving code applies (vLLM models/deepseek_v2.py, transformers GlmMoeDsaConfig indexer_types) and against
GLM-5 term by term."""

from __future__ import annotations

import json

import numpy as np
import pytest

from planner.costmodel.memory import kv_bytes_per_seq
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Op, Step
from planner.errors import PlannerError
from planner.specs.hf_import import spec_from_hf_config
from planner.specs.loader import get_hardware, get_model

from test_model_params import _consistent

H, LAYERS, IH, ID = 6144, 78, 32, 128
INDEXER = 2048 * IH * ID + H * ID + 2 * ID + H * IH  # wq_b, wk, k LayerNorm, weights_proj: 9.37M
FULL = [0, 1, 2] + list(range(6, 78, 4))  # max(i - 3 + 1, 0) % 4 == 0


def test_the_indexer_runs_on_21_of_78_layers():
    m = get_model("glm-5.2")
    assert len(FULL) == 21 and m.indexer_layer_indices() == FULL and m.num_indexer_layers == 21
    ix = m.attention.index
    assert (ix.topk, ix.heads, ix.head_dim, ix.topk_freq, ix.skip_topk_offset) == (2048, IH, ID, 4, 3)
    assert get_model("glm-5").num_indexer_layers == LAYERS  # no index_topk_freq: every layer
    # the engines' default offset (2) where config.json gives a frequency alone: layers 0, 1, then every fourth from 5
    assert [i for i in range(12) if ix.model_copy(update={"skip_topk_offset": 2}).computes(i)] == [0, 1, 5, 9]


def test_parameters_are_glm5_s_less_57_indexers():
    m, g = get_model("glm-5.2"), get_model("glm-5")
    assert m.total_params == g.total_params - 57 * INDEXER
    assert m.active_params == g.active_params - 57 * INDEXER
    assert m.indexer_params() == 21 * INDEXER and m.attention_params() == g.attention_params()
    ok, how = _consistent(m.total_params, m.published_params.total)  # 743.38B against 744B
    assert ok, how


def test_the_indexer_key_is_cached_on_its_21_layers_only():
    m, g, hw = get_model("glm-5.2"), get_model("glm-5"), get_hardware("h200-sxm")
    key = ID + 4  # 128 FP8 values and an fp32 scale
    for kv, elem in (("fp8", 1), ("bf16", 2)):
        p, q = (make_plans(x, hw, tp=8, weights="fp8", kv=kv) for x in (m, g))
        for ctx in (1000, 500000):
            assert float(kv_bytes_per_seq(m, p, ctx)[0]) == pytest.approx(ctx * (LAYERS * 576 * elem + 21 * key))
            assert float(kv_bytes_per_seq(g, q, ctx)[0]) - float(kv_bytes_per_seq(m, p, ctx)[0]) == \
                pytest.approx(ctx * 57 * key)
    assert m.max_context == 1048576


def test_decode_scores_the_context_on_21_layers_and_reads_top_k_on_all():
    m, g, hw = get_model("glm-5.2"), get_model("glm-5"), get_hardware("b200")
    step = Step(decode_seqs=np.array([16.0]), decode_ctx=np.array([200000.0]))
    ops = {}
    for x in (m, g):
        p = make_plans(x, hw, tp=8, weights="fp8", kv="fp8")
        ops[x.id] = {o.name: o for o in CostModel(x, hw).step(p, step).ops}
    a, b = ops["glm-5.2"], ops["glm-5"]
    assert a[Op.INDEXER].count == 21 and b[Op.INDEXER].count == LAYERS
    assert float(a[Op.INDEXER].flops[0]) == pytest.approx(float(b[Op.INDEXER].flops[0]))  # per layer, the same
    # the MLA core reads each query's top 2048 tokens on every layer, shared top-k or not
    assert a[Op.ATTENTION].count == b[Op.ATTENTION].count
    assert float(a[Op.ATTENTION].time_s[0]) == pytest.approx(float(b[Op.ATTENTION].time_s[0]))
    # at 200k tokens of context the indexer dominates GLM-5's attention work; sharing it cuts the step
    t = {k: sum(float(o.time_s[0]) * o.count for o in v.values()) for k, v in ops.items()}
    assert t["glm-5.2"] < 0.8 * t["glm-5"]


def _config(**extra) -> dict:
    cfg = {"architectures": ["GlmMoeDsaForCausalLM"], "model_type": "glm_moe_dsa", "hidden_size": H,
           "num_hidden_layers": LAYERS, "intermediate_size": 12288, "moe_intermediate_size": 2048,
           "num_attention_heads": 64, "num_key_value_heads": 64, "q_lora_rank": 2048, "kv_lora_rank": 512,
           "qk_nope_head_dim": 192, "qk_rope_head_dim": 64, "v_head_dim": 256, "n_routed_experts": 256,
           "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "vocab_size": 154880,
           "max_position_embeddings": 1048576, "index_topk": 2048, "index_n_heads": IH, "index_head_dim": ID,
           "index_topk_freq": 4, "index_skip_topk_offset": 3, "num_nextn_predict_layers": 1,
           "tie_word_embeddings": False, "attention_bias": False, "hidden_act": "silu"}
    cfg.update(extra)
    return cfg


def test_config_imports_as_the_built_in_spec(tmp_path):
    path = tmp_path / "config.json"
    types = ["full" if i in FULL else "shared" for i in range(LAYERS)]
    path.write_text(json.dumps(_config(indexer_types=types)))
    got, _ = spec_from_hf_config(path, "glm52")
    want = get_model("glm-5.2")
    assert got.attention == want.attention and got.moe == want.moe
    assert got.total_params == want.total_params and got.max_context == want.max_context


def test_a_listed_indexer_pattern_the_rule_does_not_give_is_refused(tmp_path):
    path = tmp_path / "config.json"
    types = ["full" if i % 3 == 0 else "shared" for i in range(LAYERS)]
    path.write_text(json.dumps(_config(indexer_types=types)))
    with pytest.raises(PlannerError, match="indexer_types"):
        spec_from_hf_config(path, "odd")


def test_names_resolve_to_their_own_specs():
    assert get_model("zai-org/GLM-5.2").id == "glm-5.2"
    assert get_model("zai-org/GLM-5.2-FP8").id == "glm-5.2"
    assert get_model("zai-org/GLM-5.1").id == "glm-5"
