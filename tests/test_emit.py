"""Deployment configs (planner.report.emit): the exact flags per engine, documented flag names only,
clear errors for combinations an engine cannot run, and a Kubernetes manifest that parses."""

import itertools
import json
import re
from pathlib import Path

import pytest
import yaml

from planner.errors import PlannerError
from planner.report.emit import (
    DOCUMENTED_FLAGS,
    FLAG_SOURCES,
    TRTLLM_YAML_SOURCES,
    WEIGHT_FORMATS,
    emit,
    flag_map,
    split_script,
)
from planner.specs.loader import data_dir, get_model

# ---- plans ------------------------------------------------------------------------------------
BASE = dict(
    model="llama-3.1-70b", hf_repo="meta-llama/Llama-3.1-70B-Instruct", hardware="h100-sxm", gpus=8,
    tp=4, pp=1, ep=1, dp=2, attention_dp=False, weights="bf16", kv="bf16",
    max_num_seqs=128, max_num_batched_tokens=8192, chunked_prefill=True, max_model_len=32768,
    speculative=None, disaggregated=None, kv_offload_gib=0, gpu_memory_utilization=0.9,
)
DENSE = dict(BASE)
FP8 = dict(BASE, weights="fp8", kv="fp8", tp=2, dp=4, max_num_seqs=256)
DEEPSEEK = dict(BASE, model="deepseek-v3", hf_repo="deepseek-ai/DeepSeek-V3", tp=8, ep=8, dp=1, attention_dp=True,
                weights="fp8", kv="bf16", max_num_seqs=512, max_num_batched_tokens=16384, max_model_len=16384)
SPEC_DRAFT = dict(BASE, model="llama-3.1-8b", hf_repo="meta-llama/Llama-3.1-8B-Instruct", tp=1, dp=1, gpus=1,
                  speculative={"method": "draft", "num_speculative_tokens": 4, "draft_model": "meta-llama/Llama-3.2-1B-Instruct"})
SPEC_MTP = dict(DEEPSEEK, speculative={"method": "mtp", "num_speculative_tokens": 2, "draft_model": None})
SPEC_NGRAM = dict(DENSE, speculative={"method": "ngram", "num_speculative_tokens": 3, "draft_model": None})
DISAGG = dict(FP8, dp=1, gpus=8, tp=4, disaggregated={"prefill_workers": 2, "decode_workers": 1, "prefill_tp": 2, "decode_tp": 4})

ALL_PLANS = {"dense": DENSE, "fp8": FP8, "deepseek": DEEPSEEK, "draft": SPEC_DRAFT, "mtp": SPEC_MTP, "ngram": SPEC_NGRAM,
             "disagg": DISAGG}

HEAD = {"vllm": 3, "sglang": 3, "trtllm": 2}  # program tokens before the flags


def servers(text: str, engine: str) -> list[list[str]]:
    """The server launch commands of an emitted script (router / disaggregated proxy excluded)."""
    cmds, _ = split_script(text)
    prog = {"vllm": ["vllm", "serve"], "sglang": ["python", "-m", "sglang.launch_server"], "trtllm": ["trtllm-serve"]}[engine]
    return [c for c in cmds if c[:len(prog)] == prog and c[1] != "disaggregated"]


def flags(argv: list[str], engine: str) -> dict:
    return flag_map(argv[HEAD[engine]:])


def one(text: str, engine: str) -> tuple[list[str], dict]:
    cmds = servers(text, engine)
    assert len(cmds) == 1, cmds
    return cmds[0], flags(cmds[0], engine)


# ---- documented flags -------------------------------------------------------------------------
def test_every_flag_has_a_source():
    assert set(FLAG_SOURCES) == {"vllm", "sglang", "trtllm", "k8s"}
    for engine, table in FLAG_SOURCES.items():
        for flag, src in table.items():
            assert flag.startswith("-") and src.strip(), (engine, flag)
            assert "http" in src or "/" in src, (engine, flag, src)  # a page or a source file


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
@pytest.mark.parametrize("name", list(ALL_PLANS))
def test_only_documented_flags(engine, name):
    try:
        text = emit(engine, ALL_PLANS[name])
    except PlannerError:
        pytest.skip("combination not runnable on this engine (tested below)")
    cmds, files = split_script(text)
    assert cmds
    for argv in cmds:
        head = 2 if argv[:2] == ["trtllm-serve", "disaggregated"] else 3 if argv[0] == "python" else HEAD[engine]
        used = set(flag_map(argv[head:]))
        assert used <= DOCUMENTED_FLAGS[engine], used - DOCUMENTED_FLAGS[engine]
    if engine == "trtllm":
        for fname, content in files.items():
            if fname == "disagg_config.yaml":
                continue
            d = yaml.safe_load(content)
            keys = {k for k, v in d.items() if not isinstance(v, dict) or k == "speculative_config"}
            keys |= {f"{k}.{kk}" for k, v in d.items() if isinstance(v, dict) and k != "speculative_config" for kk in v}
            assert keys <= set(TRTLLM_YAML_SOURCES), keys - set(TRTLLM_YAML_SOURCES)


# ---- dense tensor-parallel plan ---------------------------------------------------------------
def test_vllm_dense():
    text = emit("vllm", DENSE)
    argv, f = one(text, "vllm")
    assert argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct"]
    assert f == {
        "--tensor-parallel-size": "4", "--pipeline-parallel-size": "1", "--dtype": "bfloat16",
        "--max-model-len": "32768", "--max-num-seqs": "128", "--max-num-batched-tokens": "8192",
        "--enable-chunked-prefill": None, "--gpu-memory-utilization": "0.9", "--port": "8000",
    }
    assert "run 2 replica(s)" in text


def test_sglang_dense():
    argv, f = one(emit("sglang", DENSE), "sglang")
    assert f == {
        "--model-path": "meta-llama/Llama-3.1-70B-Instruct", "--tp-size": "4", "--pp-size": "1", "--dtype": "bfloat16",
        "--context-length": "32768", "--max-running-requests": "128", "--chunked-prefill-size": "8192",
        "--mem-fraction-static": "0.9", "--stream-interval": "10", "--host": "0.0.0.0", "--port": "8000",
    }


def test_trtllm_dense():
    text = emit("trtllm", DENSE)
    argv, f = one(text, "trtllm")
    assert argv[1] == "meta-llama/Llama-3.1-70B-Instruct"
    assert f == {
        "--backend": "pytorch", "--host": "0.0.0.0", "--port": "8000", "--tp_size": "4", "--pp_size": "1",
        "--max_batch_size": "128", "--max_num_tokens": "8192", "--max_seq_len": "32768",
        "--kv_cache_free_gpu_memory_fraction": "0.9", "--extra_llm_api_options": "extra-llm-api-config.yml",
    }
    _, files = split_script(text)
    assert yaml.safe_load(files["extra-llm-api-config.yml"]) == {
        "dtype": "bfloat16", "enable_chunked_prefill": True,
        "kv_cache_config": {"dtype": "auto", "free_gpu_memory_fraction": 0.9},
        "stream_interval": 10,  # a chunk every 10 steps for the API server's thread, as the profile prices
    }


def test_no_chunked_prefill_fits_a_whole_prompt_in_one_step():
    plan = dict(DENSE, chunked_prefill=False, max_num_batched_tokens=8192)  # < max_model_len 32768
    text = emit("vllm", plan)
    assert one(text, "vllm")[1]["--max-num-batched-tokens"] == "32768"
    assert "raised from 8192 to 32768: without chunked prefill" in text
    assert one(emit("trtllm", plan), "trtllm")[1]["--max_num_tokens"] == "32768"
    assert one(emit("sglang", plan), "sglang")[1]["--max-prefill-tokens"] == "8192"  # SGLang lifts it to the context itself


def test_chunked_prefill_off():
    plan = dict(DENSE, chunked_prefill=False, max_num_batched_tokens=32768)
    assert "--no-enable-chunked-prefill" in one(emit("vllm", plan), "vllm")[1]
    f = one(emit("sglang", plan), "sglang")[1]
    assert f["--chunked-prefill-size"] == "-1" and f["--max-prefill-tokens"] == "32768"
    _, files = split_script(emit("trtllm", plan))
    assert yaml.safe_load(files["extra-llm-api-config.yml"])["enable_chunked_prefill"] is False


# ---- fp8 weights + fp8 KV ---------------------------------------------------------------------
def test_fp8_fp8kv():
    text = emit("vllm", FP8)
    f = one(text, "vllm")[1]
    assert f["--quantization"] == "fp8" and f["--kv-cache-dtype"] == "fp8" and "--dtype" not in f
    assert f["--tensor-parallel-size"] == "2" and f["--max-num-seqs"] == "256"
    assert "on-the-fly" in text or "while loading" in text  # the comment says what --quantization fp8 does

    f = one(emit("sglang", FP8), "sglang")[1]
    assert f["--quantization"] == "fp8" and f["--kv-cache-dtype"] == "fp8_e4m3" and f["--tp-size"] == "2"

    text = emit("trtllm", FP8)
    argv, f = one(text, "trtllm")
    assert "--quantization" not in f
    assert argv[1] == "/models/llama-3.1-70b-fp8" and "ModelOpt" in text  # a pre-quantized checkpoint, said so
    _, files = split_script(text)
    assert yaml.safe_load(files["extra-llm-api-config.yml"])["kv_cache_config"]["dtype"] == "fp8"


def test_native_fp8_checkpoint_needs_no_quantization_flag():
    for engine in ("vllm", "sglang", "trtllm"):
        argv, f = one(emit(engine, DEEPSEEK), engine)
        assert "--quantization" not in f
        assert "deepseek-ai/DeepSeek-V3" in argv


def test_int4_and_fp4_checkpoints():
    plan = dict(BASE, weights="int4")
    for engine in ("vllm", "sglang", "trtllm"):
        text = emit(engine, plan)
        assert re.search(r"^# int4 weights: .*AWQ.*GPTQ", text, re.M), text
        argv, f = one(text, engine)
        assert "/models/llama-3.1-70b-awq-int4" in argv and "--quantization" not in f
    plan = dict(BASE, weights="fp4")
    assert one(emit("vllm", plan), "vllm")[1]["--quantization"] == "modelopt_fp4"
    assert one(emit("sglang", plan), "sglang")[1]["--quantization"] == "modelopt_fp4"
    assert "--quantization" not in one(emit("trtllm", plan), "trtllm")[1]


def test_gpt_oss_mxfp4():
    plan = dict(BASE, model="gpt-oss-120b", hf_repo="openai/gpt-oss-120b", weights="mxfp4", tp=2, dp=1)
    for engine in ("vllm", "sglang", "trtllm"):
        argv, f = one(emit(engine, plan), engine)
        assert "openai/gpt-oss-120b" in argv and "--quantization" not in f and "--dtype" not in f


# ---- MoE: expert parallel + attention data parallel (DeepSeek-V3) ----------------------------------
def test_vllm_deepseek_ep_attention_dp():
    f = one(emit("vllm", DEEPSEEK), "vllm")[1]
    assert f == {
        "--tensor-parallel-size": "1", "--pipeline-parallel-size": "1", "--data-parallel-size": "8",
        "--enable-expert-parallel": None, "--max-model-len": "16384",
        "--max-num-seqs": "64", "--max-num-batched-tokens": "2048",  # per data-parallel rank
        "--enable-chunked-prefill": None, "--gpu-memory-utilization": "0.9", "--port": "8000",
    }


def test_sglang_deepseek_ep_attention_dp():
    f = one(emit("sglang", DEEPSEEK), "sglang")[1]
    assert f == {
        "--model-path": "deepseek-ai/DeepSeek-V3", "--tp-size": "8", "--pp-size": "1", "--dp-size": "8",
        "--enable-dp-attention": None, "--ep-size": "8", "--context-length": "16384",
        "--max-running-requests": "512", "--chunked-prefill-size": "16384",  # SGLang splits these over DP ranks itself
        "--mem-fraction-static": "0.9", "--stream-interval": "10", "--host": "0.0.0.0", "--port": "8000",
    }


def test_trtllm_deepseek_ep_attention_dp():
    text = emit("trtllm", DEEPSEEK)
    f = one(text, "trtllm")[1]
    assert f["--tp_size"] == "8" and f["--ep_size"] == "8"
    assert f["--max_batch_size"] == "64" and f["--max_num_tokens"] == "2048"  # per attention-DP rank
    _, files = split_script(text)
    opts = yaml.safe_load(files["extra-llm-api-config.yml"])
    assert opts["enable_attention_dp"] is True and "dtype" not in opts
    # prompts lined up one per rank, as plan priced the attention-DP layout (simulate --attention-dp-balance 50)
    assert opts["attention_dp_config"] == {"enable_balance": True, "timeout_iters": 50}


def test_attention_dp_groups_with_attention_tp():
    plan = dict(DEEPSEEK, attention_dp_size=4)  # 4 attention groups of tp 2
    f = one(emit("vllm", plan), "vllm")[1]
    assert f["--tensor-parallel-size"] == "2" and f["--data-parallel-size"] == "4"
    f = one(emit("sglang", plan), "sglang")[1]
    assert f["--tp-size"] == "8" and f["--dp-size"] == "4"
    with pytest.raises(PlannerError, match="every one of the 8"):
        emit("trtllm", plan)


def test_moe_tp_with_partial_ep():
    plan = dict(BASE, model="mixtral-8x7b", hf_repo="mistralai/Mixtral-8x7B-Instruct-v0.1", tp=8, ep=4, dp=1)
    assert one(emit("sglang", plan), "sglang")[1]["--ep-size"] == "4"
    assert one(emit("trtllm", plan), "trtllm")[1]["--ep_size"] == "4"
    with pytest.raises(PlannerError, match="cannot run ep=4"):
        emit("vllm", plan)
    assert "--enable-expert-parallel" in one(emit("vllm", dict(plan, ep=8)), "vllm")[1]


# ---- speculative decoding -----------------------------------------------------------------------
def test_speculative_draft():
    f = one(emit("vllm", SPEC_DRAFT), "vllm")[1]
    assert json.loads(f["--speculative-config"]) == {
        "method": "draft_model", "model": "meta-llama/Llama-3.2-1B-Instruct", "num_speculative_tokens": 4}
    f = one(emit("sglang", SPEC_DRAFT), "sglang")[1]
    assert {k: f[k] for k in f if k.startswith("--speculative")} == {
        "--speculative-algorithm": "STANDALONE", "--speculative-draft-model-path": "meta-llama/Llama-3.2-1B-Instruct",
        "--speculative-num-steps": "4", "--speculative-eagle-topk": "1", "--speculative-num-draft-tokens": "5"}
    _, files = split_script(emit("trtllm", SPEC_DRAFT))
    opts = yaml.safe_load(files["extra-llm-api-config.yml"])
    assert opts["speculative_config"] == {"decoding_type": "DraftTarget", "max_draft_len": 4,
                                          "speculative_model_dir": "meta-llama/Llama-3.2-1B-Instruct"}
    assert opts["disable_overlap_scheduler"] is True


def test_speculative_draft_without_model_gets_a_suggestion():
    plan = dict(SPEC_DRAFT, speculative=dict(SPEC_DRAFT["speculative"], draft_model=None))
    text = emit("vllm", plan)
    assert json.loads(one(text, "vllm")[1]["--speculative-config"])["model"] == "meta-llama/Llama-3.2-1B-Instruct"
    assert "suggested" in text
    plan = dict(plan, model="mistral-7b", hf_repo="mistralai/Mistral-7B-Instruct-v0.1")
    assert json.loads(one(emit("vllm", plan), "vllm")[1]["--speculative-config"])["model"] == "/models/draft-model"


def test_speculative_mtp():
    f = one(emit("vllm", SPEC_MTP), "vllm")[1]
    assert json.loads(f["--speculative-config"]) == {"method": "mtp", "num_speculative_tokens": 2}
    f = one(emit("sglang", SPEC_MTP), "sglang")[1]
    assert (f["--speculative-algorithm"], f["--speculative-num-steps"], f["--speculative-eagle-topk"],
            f["--speculative-num-draft-tokens"]) == ("EAGLE", "2", "1", "3")
    assert "--speculative-draft-model-path" not in f
    _, files = split_script(emit("trtllm", SPEC_MTP))
    assert yaml.safe_load(files["extra-llm-api-config.yml"])["speculative_config"] == {
        "decoding_type": "MTP", "max_draft_len": 2, "num_nextn_predict_layers": 2}


def test_speculative_ngram():
    f = one(emit("vllm", SPEC_NGRAM), "vllm")[1]
    assert json.loads(f["--speculative-config"]) == {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4}
    f = one(emit("sglang", SPEC_NGRAM), "sglang")[1]
    assert f["--speculative-algorithm"] == "NGRAM" and f["--speculative-num-draft-tokens"] == "3"
    _, files = split_script(emit("trtllm", SPEC_NGRAM))
    assert yaml.safe_load(files["extra-llm-api-config.yml"])["speculative_config"] == {
        "decoding_type": "NGram", "max_draft_len": 3, "max_matching_ngram_size": 4}


# ---- disaggregated prefill / decode -------------------------------------------------------------
def test_vllm_disaggregated():
    text = emit("vllm", DISAGG)
    pre, dec = servers(text, "vllm")
    fp, fd = flags(pre, "vllm"), flags(dec, "vllm")
    assert fp["--tensor-parallel-size"] == "2" and fd["--tensor-parallel-size"] == "4"
    assert json.loads(fp["--kv-transfer-config"]) == {"kv_connector": "NixlConnector", "kv_role": "kv_producer"}
    assert json.loads(fd["--kv-transfer-config"]) == {"kv_connector": "NixlConnector", "kv_role": "kv_consumer"}
    assert fp["--port"] != fd["--port"]
    assert "run 2 prefill worker(s)" in text and "run 1 decode worker(s)" in text


def test_sglang_disaggregated():
    text = emit("sglang", DISAGG)
    pre, dec = servers(text, "sglang")
    fp, fd = flags(pre, "sglang"), flags(dec, "sglang")
    assert fp["--disaggregation-mode"] == "prefill" and fd["--disaggregation-mode"] == "decode"
    assert fp["--tp-size"] == "2" and fd["--tp-size"] == "4"
    cmds, _ = split_script(text)
    router = [c for c in cmds if c[:3] == ["python", "-m", "sglang_router.launch_router"]]
    assert len(router) == 1 and "--pd-disaggregation" in router[0]
    assert "run 2 prefill worker(s)" in text and "run 1 decode worker(s)" in text


def test_trtllm_disaggregated():
    text = emit("trtllm", DISAGG)
    pre, dec = servers(text, "trtllm")
    fp, fd = flags(pre, "trtllm"), flags(dec, "trtllm")
    assert fp["--tp_size"] == "2" and fd["--tp_size"] == "4"
    cmds, files = split_script(text)
    pcfg = yaml.safe_load(files[fp["--extra_llm_api_options"]])
    dcfg = yaml.safe_load(files[fd["--extra_llm_api_options"]])
    assert pcfg["cache_transceiver_config"]["backend"] == dcfg["cache_transceiver_config"]["backend"] == "NIXL"
    assert pcfg["disable_overlap_scheduler"] is True
    dis = yaml.safe_load(files["disagg_config.yaml"])
    assert dis["context_servers"]["num_instances"] == 2 and len(dis["context_servers"]["urls"]) == 2
    assert dis["generation_servers"]["num_instances"] == 1
    assert ["trtllm-serve", "disaggregated", "-c", "disagg_config.yaml"] in cmds


def test_disaggregated_moe_role_ep():
    plan = dict(DEEPSEEK, disaggregated={"prefill_workers": 1, "decode_workers": 1, "prefill_tp": 4, "decode_tp": 8})
    pre, dec = servers(emit("sglang", plan), "sglang")
    fp, fd = flags(pre, "sglang"), flags(dec, "sglang")
    assert (fp["--tp-size"], fp["--dp-size"], fp["--ep-size"]) == ("4", "4", "4")  # ep capped at the role's tp
    assert (fd["--tp-size"], fd["--dp-size"], fd["--ep-size"]) == ("8", "8", "8")


def test_disaggregated_roles_with_their_own_attention_dp():
    plan = dict(DEEPSEEK, ep=4, disaggregated={"prefill_workers": 2, "decode_workers": 1, "prefill_tp": 4, "decode_tp": 8,
                                               "prefill_attention_dp": 1, "decode_attention_dp": 8})
    pre, dec = servers(emit("sglang", plan), "sglang")
    fp, fd = flags(pre, "sglang"), flags(dec, "sglang")
    assert "--dp-size" not in fp and "--enable-dp-attention" not in fp and fp["--ep-size"] == "4"
    assert (fd["--dp-size"], fd["--ep-size"]) == ("8", "4")
    pre, dec = servers(emit("vllm", dict(plan, ep=1)), "vllm")
    assert flags(pre, "vllm")["--tensor-parallel-size"] == "4" and "--data-parallel-size" not in flags(pre, "vllm")
    assert flags(dec, "vllm")["--data-parallel-size"] == "8"
    with pytest.raises(PlannerError, match="prefill_attention_dp=3 must divide"):
        emit("sglang", dict(plan, disaggregated=dict(plan["disaggregated"], prefill_attention_dp=3)))


# ---- KV offload to host memory ------------------------------------------------------------------
def test_kv_offload():
    plan = dict(DENSE, kv_offload_gib=100.0)
    f = one(emit("vllm", plan), "vllm")[1]
    assert f["--kv-offloading-size"] == "400" and f["--kv-offloading-backend"] == "native"  # summed over tp=4
    f = one(emit("sglang", plan), "sglang")[1]
    assert "--enable-hierarchical-cache" in f and f["--hicache-size"] == "107"  # 100 GiB = 107 GB per rank
    _, files = split_script(emit("trtllm", plan))
    assert yaml.safe_load(files["extra-llm-api-config.yml"])["kv_cache_config"]["host_cache_size"] == 100 * 2**30


# ---- combinations an engine cannot run -----------------------------------------------------------
@pytest.mark.parametrize("engine, plan, match", [
    ("sglang", dict(DENSE, kv="int8"), "SGLang has no int8 KV cache"),
    ("sglang", dict(DENSE, kv="int4"), "SGLang has no int4 KV cache"),
    ("trtllm", dict(DENSE, kv="int8"), "no int8 KV cache"),
    ("trtllm", dict(DENSE, weights="int8"), "INT8 W8A8"),
    ("trtllm", dict(DENSE, weights="int8-wo"), "INT8 weight-only"),
    ("vllm", dict(DENSE, weights="mxfp4"), "no MXFP4 checkpoint"),
    ("vllm", dict(DENSE, speculative={"method": "mtp", "num_speculative_tokens": 1, "draft_model": None}), "no multi-token"),
    ("vllm", dict(DENSE, ep=2), "is dense"),
    ("trtllm", dict(DENSE, hardware="mi300x"), "NVIDIA GPUs only"),
    ("k8s", dict(DENSE, hardware="tpu-v5e"), "NVIDIA GPUs only"),
    ("vllm", dict(DENSE, hardware="b200", weights="int8"), "no INT8 W8A8 on Blackwell"),
    ("vllm", dict(DISAGG, kv_offload_gib=10.0), "one KV connector"),
    ("sglang", dict(DEEPSEEK, speculative={"method": "ngram", "num_speculative_tokens": 2, "draft_model": None}),
     "does not support --enable-dp-attention"),
    ("sglang", dict(DEEPSEEK, speculative={"method": "draft", "num_speculative_tokens": 2, "draft_model": "x/y"}),
     "does not support --enable-dp-attention"),
    ("vllm", dict(DENSE, tp=4, ep=3, model="mixtral-8x7b"), "must divide tp"),
    ("vllm", dict(DENSE, weights="fp6"), "cannot emit weights"),
    ("vllm", dict(DENSE, max_num_seqs=0), "max_num_seqs"),
])
def test_unsupported_combinations_raise(engine, plan, match):
    with pytest.raises(PlannerError, match=match):
        emit(engine, plan)


def test_vllm_int8_kv_maps_to_per_token_head():
    assert one(emit("vllm", dict(DENSE, kv="int8")), "vllm")[1]["--kv-cache-dtype"] == "int8_per_token_head"


def test_unknown_engine():
    with pytest.raises(PlannerError, match="choose one of vllm, sglang, trtllm, k8s"):
        emit("tgi", DENSE)


def test_errors_are_one_sentence():
    try:
        emit("sglang", dict(DENSE, kv="int8"))
    except PlannerError as e:
        msg = str(e)
    assert "\n" not in msg and msg.count(". ") == 0


# ---- hf_repo ------------------------------------------------------------------------------------
def test_missing_hf_repo_falls_back_to_model_id():
    text = emit("vllm", dict(DENSE, hf_repo=None))
    assert one(text, "vllm")[0][2] == "llama-3.1-70b"
    assert re.search(r"^# no Hugging Face repo is recorded for llama-3.1-70b", text, re.M)


def test_every_model_spec_names_its_hf_repo():
    files = sorted(Path(data_dir("model_specs")).glob("*.yaml"))
    assert len(files) >= 21  # the original 21 and every model added since
    for f in files:
        m = get_model(f.stem)
        assert m.hf_repo and re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", m.hf_repo), (f.name, m.hf_repo)
        line = next(l for l in f.read_text().splitlines() if l.startswith("hf_repo:"))
        assert "#" in line, f"{f.name}: say in a comment which variant the repo is"
    assert get_model("llama-3.1-70b").hf_repo == "meta-llama/Llama-3.1-70B-Instruct"
    assert get_model("deepseek-v3").hf_repo == "deepseek-ai/DeepSeek-V3"
    assert get_model("gpt-oss-120b").hf_repo == "openai/gpt-oss-120b"


# ---- Kubernetes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dense", "fp8", "deepseek", "draft", "mtp"])
def test_k8s_manifest(name):
    plan = ALL_PLANS[name]
    text = emit("k8s", plan)
    d = yaml.safe_load(text)
    assert d["apiVersion"] == "apps/v1" and d["kind"] == "Deployment"
    assert d["spec"]["replicas"] == plan["dp"]
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"].startswith("vllm/vllm-openai")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == plan["tp"] * plan["pp"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    assert {"containerPort": 8000, "name": "http"} in c["ports"]
    shm = [v for v in pod["volumes"] if v["name"] == "shm"]
    assert shm and shm[0]["emptyDir"]["medium"] == "Memory"
    assert {"name": "shm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    labels = d["metadata"]["labels"]
    assert labels["planner/model"] == plan["model"] and labels["planner/tp"] == str(plan["tp"])
    assert labels["planner/weights"] == plan["weights"] and labels["planner/hardware"] == plan["hardware"]
    assert all(len(v) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", v) for v in labels.values())
    assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    # the container runs exactly the vLLM command's flags
    assert c["command"] == ["vllm", "serve"]
    vargv, _ = one(emit("vllm", plan), "vllm")
    assert c["args"] == vargv[2:]
    assert set(flag_map(c["args"][1:])) <= DOCUMENTED_FLAGS["k8s"]


def test_k8s_disaggregated():
    docs = list(yaml.safe_load_all(emit("k8s", DISAGG)))
    assert [d["metadata"]["labels"]["planner/role"] for d in docs] == ["prefill", "decode"]
    pre, dec = docs
    assert pre["spec"]["replicas"] == 2 and dec["spec"]["replicas"] == 1
    assert pre["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert dec["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert pre["metadata"]["name"] != dec["metadata"]["name"]


# ---- a sweep: every model x format either emits documented flags or says why not ------------------
@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "k8s"])
def test_sweep_models_and_formats(engine):
    models = sorted(f.stem for f in Path(data_dir("model_specs")).glob("*.yaml"))
    for mid, w in itertools.product(models, WEIGHT_FORMATS):
        m = get_model(mid)
        ep = 2 if m.moe else 1
        plan = dict(BASE, model=mid, hf_repo=m.hf_repo, weights=w, kv="fp8", ep=ep, tp=2, max_model_len=min(8192, m.max_context))
        try:
            text = emit(engine, plan)
        except PlannerError as e:
            assert str(e) and "\n" not in str(e)
            continue
        if engine == "k8s":
            yaml.safe_load(text)
            continue
        for argv in servers(text, engine):
            assert set(flags(argv, engine)) <= DOCUMENTED_FLAGS[engine]


# ---- optional: the engines' own argument parsers, where installed -------------------------------
def _emitted(engine):
    for plan in ALL_PLANS.values():
        try:
            yield from servers(emit(engine, plan), engine)
        except PlannerError:
            continue


def test_vllm_own_parser_accepts_the_commands(monkeypatch):
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cpu")  # build the parser on a machine without a GPU
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except Exception:  # not installed (the usual case), or a layout this test does not know
        pytest.skip("vllm is not importable here")
    parser = make_arg_parser(FlexibleArgumentParser())
    for argv in _emitted("vllm"):
        AsyncEngineArgs.from_cli_args(parser.parse_args(argv[3:]))


def test_sglang_own_parser_accepts_the_commands():
    try:
        import argparse

        from sglang.srt.server_args import ServerArgs
    except Exception:
        pytest.skip("sglang is not importable here")
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    for argv in _emitted("sglang"):
        ServerArgs.from_cli_args(parser.parse_args(argv[3:]))


# ---- flags come from the engine profiles ---------------------------------------------------------
def test_emitted_flags_come_from_the_profile(monkeypatch):
    import planner.report.checkpoint as C
    from planner.specs.engine import get_engine

    real = get_engine("vllm")
    renamed = real.with_(flag_items=tuple((k, "--max-seqs-renamed" if k == "max_seqs" else f) for k, f in real.flag_items))
    monkeypatch.setattr(C, "get_engine", lambda name: renamed if name == "vllm" else get_engine(name))
    argv, f = one(emit("vllm", DENSE), "vllm")
    assert "--max-seqs-renamed" in f and "--max-num-seqs" not in f


def test_documented_flags_are_the_profiles():
    from planner.specs.engine import get_engine

    for engine, profile in (("vllm", "vllm"), ("sglang", "sglang"), ("trtllm", "trtllm"), ("k8s", "vllm")):
        assert DOCUMENTED_FLAGS[engine] == frozenset(get_engine(profile).flags.values())
    assert set(TRTLLM_YAML_SOURCES) == set(get_engine("trtllm").keys.values())


def test_mtp_follows_the_model_spec():
    # a model with mtp_layers > 0 takes method "mtp"; one without is refused (DENSE above), an unknown one trusted
    assert get_model("deepseek-v3").mtp_layers == 1
    unknown_model = dict(DENSE, model="acme-7b", hf_repo="acme/acme-7b",
                         speculative={"method": "mtp", "num_speculative_tokens": 1, "draft_model": None})
    assert "mtp" in emit("vllm", unknown_model)


def _recommended(gpus, pp, weights, concurrency, max_context):
    """A search result row as deployment_plan reads it: one aggregated H100 replica, no chunking, no speculation."""
    return {"gpus": gpus, "max_context_tokens": max_context,
            "plan": {"hardware": "h100-sxm", "mode": "aggregated", "tp": 1, "pp": pp, "ep": 1, "attention_dp": 1,
                     "replicas": 1, "weights": weights, "kv": weights, "concurrency_per_replica": concurrency,
                     "chunked_prefill_tokens": None, "speculative": None, "kv_offload_to_host": False}}


def test_recommended_plan_keeps_the_engines_own_chunking_and_device_limits():
    # the search keeps one row of equal steady states, and for a prompt inside the token budget "whole prompts" and
    # vLLM's default chunked prefill are the same one: the emitted server keeps chunking on, with the 8192-token budget
    # vLLM picks on an H100 (the row was priced with it), instead of --no-enable-chunked-prefill and a 131072 budget
    from planner.report.deploy import deployment_plan

    rec = _recommended(gpus=4, pp=4, weights="fp8", concurrency=1024, max_context=131072)
    d = deployment_plan(rec, "llama-3.1-70b", 2000, 500, "vllm")
    assert d["chunked_prefill"] is True and d["max_num_batched_tokens"] == 8192
    flags = one(emit("vllm", d), "vllm")[1]
    assert "--enable-chunked-prefill" in flags and flags["--max-num-batched-tokens"] == "8192"
    # a prompt longer than the budget really is priced whole: chunking stays off
    assert deployment_plan(rec, "llama-3.1-70b", 10000, 500, "vllm")["chunked_prefill"] is False
    # TensorRT-LLM does not chunk by default: whole prompts, as priced
    assert deployment_plan(rec, "llama-3.1-70b", 2000, 500, "trtllm")["chunked_prefill"] is False


def test_the_emitted_server_gets_the_budget_the_plan_was_priced_with():
    # TensorRT-LLM runs prompts whole and its decodes take the step budget first: an 8,192-token prompt beside 47
    # other running sequences needs 8,239 tokens, the budget the plan was priced with (serving.predict.budget_note)
    from planner.report.deploy import deployment_plan

    rec = _recommended(gpus=1, pp=1, weights="bf16", concurrency=48, max_context=9216)
    d = deployment_plan(rec, "llama-3.1-8b", 8192, 1024, "trtllm")
    assert d["chunked_prefill"] is False and d["max_num_batched_tokens"] == 8192 + 47
    assert deployment_plan(rec, "llama-3.1-8b", 4096, 1024, "trtllm")["max_num_batched_tokens"] == 8192
