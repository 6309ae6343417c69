"""A checkpoint named by its Hugging Face repo: the network it quantizes or re-releases, and the weight format its name
states (planner/specs/checkpoint.py), as the model resolver and the commands' defaults read them."""

import json

import pytest

from cli_helpers import run
from planner.errors import PlannerError
from planner.specs import loader
from planner.specs.checkpoint import checkpoint_weights
from planner.studies.params import checkpoint_format

# (name as published, built-in network, weight format the name states)
NAMES = [
    ("nvidia/Llama-3.3-70B-Instruct-FP8", "llama-3.3-70b", "fp8"),
    ("nvidia/Llama-3.1-405B-Instruct-FP8", "llama-3.1-405b", "fp8"),
    ("RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8-dynamic", "llama-3.1-70b", "fp8"),
    ("RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8", "llama-3.1-8b", "int8"),
    ("RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16", "llama-3.1-8b", "int4"),
    ("Qwen/Qwen3-8B-FP8", "qwen3-8b", "fp8"),
    ("nvidia/Qwen3-30B-A3B-FP4", "qwen3-30b-a3b", "fp4"),
    ("nvidia/DeepSeek-R1-FP4", "deepseek-r1", "fp4"),
    ("nvidia/DeepSeek-R1-0528-NVFP4-v2", "deepseek-r1", "fp4"),  # a revision of the quantized checkpoint (TensorRT-LLM 1.2's)
    ("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8", "llama-4-maverick-17b-128e", "fp8"),
    ("Qwen/Qwen2.5-72B-Instruct-AWQ", "qwen2.5-72b", "int4"),
    ("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", "qwen2.5-7b", "int4"),
    ("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int8", "qwen2.5-7b", "int8-wo"),
    ("TheBloke/Llama-2-70B-Chat-GPTQ", "llama-2-70b", "int4"),
    ("unsloth/Llama-3.3-70B-Instruct-bnb-4bit", "llama-3.3-70b", "int4"),
    ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "llama-3.1-8b", "q4_k_m"),
    # re-releases of the same network: a revision date or a thinking variant names no format
    ("Qwen/Qwen3-235B-A22B-Instruct-2507", "qwen3-235b-a22b", None),
    ("Qwen/Qwen3-30B-A3B-Thinking-2507", "qwen3-30b-a3b", None),
    ("deepseek-ai/DeepSeek-V3-0324", "deepseek-v3", None),
    ("mistralai/Mistral-Small-24B-Instruct-2501", "mistral-small-24b", None),
    ("Qwen/Qwen3-30B-A3B-GGUF", "qwen3-30b-a3b", None),  # each GGUF file holds its own quantization
    ("openai/gpt-oss-120b", "gpt-oss-120b", None),  # released in MXFP4: its spec says so, not its name
    ("deepseek-ai/DeepSeek-V3.1-Terminus", "deepseek-v3", None),  # aliases of the same network
    ("Qwen/Qwen3.6-35B-A3B", "qwen3.5-35b-a3b", None),
    ("Qwen/Qwen3.5-35B-A3B-FP8", "qwen3.5-35b-a3b", "fp8"),
    ("moonshotai/Kimi-K2-Thinking", "kimi-k2-thinking", None),  # a release of its own (INT4 experts in its spec)
]


@pytest.mark.parametrize("name,network,fmt", NAMES)
def test_checkpoint_name_resolves_to_its_network_and_format(name, network, fmt):
    assert loader.get_model(name).id == network
    assert checkpoint_weights(name) == fmt


def test_no_built_in_name_changes_meaning():
    """Every built-in id, alias and Hugging Face repo still resolves to its own spec, and no two specs share the
    words a name is first matched on (release words set aside, variant words kept): an ambiguous name would resolve
    to neither."""
    for ident in loader.model_ids():
        assert loader.get_model(ident).id == ident
        assert checkpoint_format(ident) is None  # a built-in id is taken as given: its spec's own format applies
    owners: dict[tuple, set] = {}
    named = [(i, i) for i in loader.model_ids()] + list(loader._aliases("Model").items()) + list(loader._hf_repos().items())
    for name, ident in named:
        assert loader.get_model(name).id == ident
        owners.setdefault(loader._model_words(name, variants=False), set()).add(ident)
    assert not {w: ids for w, ids in owners.items() if len(ids) > 1}
    # an instruct repo's dated re-release still finds its network through the name's words alone
    assert loader._model_by_name("moonshotai/Kimi-K2-Instruct-0905") == "kimi-k2"
    assert loader._model_by_name("moonshotai/Kimi-K2-Base") == "kimi-k2"  # not kimi-k2-thinking
    assert loader._model_by_name("Kimi-K2-Thinking") == "kimi-k2-thinking"


def test_unknown_network_points_to_its_config():
    with pytest.raises(PlannerError, match="config.json"):
        loader.get_model("ByteDance-Seed/Seed-OSS-36B-Instruct")


def test_estimate_takes_the_checkpoint_format_and_says_so(capsys):
    code, out, err = run(["estimate", "-m", "nvidia/Llama-3.3-70B-Instruct-FP8", "-H", "h100-sxm", "--tp", "2", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["model"] == "llama-3.3-70b" and d["plan"]["weights"] == "fp8" and d["plan"]["kv"] == "fp8"
    assert "llama-3.3-70b with fp8 weights" in err
    # the same network by its built-in id prices 16-bit weights: twice the bytes per GPU
    code, out2, err2 = run(["estimate", "-m", "llama-3.3-70b", "-H", "h100-sxm", "--tp", "2", "--json"], capsys)
    assert code == 0 and "note:" not in err2
    d16 = json.loads(out2)
    assert d16["plan"]["weights"] == "bf16"
    # FP8 stores the linear layers in one byte a weight; the embedding and lm_head stay 16 bit (two vocab x hidden
    # matrices, untied in Llama 3.3)
    m = loader.get_model("llama-3.3-70b")
    emb = 2 * m.vocab_size * m.hidden_size / 2  # per GPU at tp 2
    linear = (d16["memory"]["weights_bytes"] - 2 * emb) / 2  # 16-bit bytes -> parameters
    assert d["memory"]["weights_bytes"] == pytest.approx(linear + 2 * emb, rel=0.01)


def test_explicit_weights_override_the_name(capsys):
    code, out, err = run(["estimate", "-m", "nvidia/Llama-3.3-70B-Instruct-FP8", "-H", "h100-sxm", "--tp", "2",
                          "--weights", "bf16", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["plan"]["weights"] == "bf16" and "note:" not in err


def test_plan_searches_the_checkpoint_format_only(capsys):
    code, out, err = run(["plan", "-m", "nvidia/Llama-3.1-8B-Instruct-FP8", "-H", "h100-sxm", "--gpus", "1", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["frontier"] and {r["plan"]["weights"] for r in d["frontier"]} == {"fp8"}
    assert d["recommended"]["plan"]["weights"] == "fp8"


@pytest.mark.parametrize("ident", ["gpt-oss-120b", "kimi-k2-thinking"])
def test_a_checkpoint_in_two_precisions_takes_its_own_bytes_in_memory(ident):
    """Served in its experts' released format (gpt-oss MXFP4, Kimi-K2-Thinking INT4), a checkpoint holds its attention,
    dense and shared-expert layers in their own 16 bit: on one device the weights are the released checkpoint's
    bytes (Model.native_weight_bytes), within the norms and router the memory model prices at the plan's width."""
    from planner.costmodel.memory import weight_bytes_per_device
    from planner.costmodel.plans import make_plans
    from planner.specs.loader import get_hardware

    m = loader.get_model(ident)
    fmt = m.released_weights()
    p = make_plans(m, get_hardware("h200-sxm"), tp=1, weights=fmt, kv="bf16", check=False)
    assert float(p.dense_weight_bytes[0]) == 2.0
    assert float(weight_bytes_per_device(m, p)[0]) == pytest.approx(m.native_weight_bytes(), rel=0.01)
    # a plan in another format is one width throughout
    q = make_plans(m, get_hardware("h200-sxm"), tp=1, weights="fp8", kv="bf16", check=False)
    assert q.dense_weight_bytes is None or float(q.dense_weight_bytes[0]) == float(q.weight_bytes[0])
