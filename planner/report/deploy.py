"""Turn a recommended plan (a search result row) into an engine launch config."""

from __future__ import annotations

import math

from planner.serving.host import host_kv_bytes_per_device
from planner.specs.engine import get_engine
from planner.specs.loader import get_hardware, get_model


def deployment_plan(rec: dict, model_id: str, isl: int, osl: int, engine="trtllm") -> dict:
    """The engine-neutral plan dict that ``planner.report.emit.emit`` renders. ``engine``: a release name, or the
    Engine the search priced (with the settings the user set, such as its memory fraction, which the config then
    carries)."""
    p = rec["plan"]
    m = get_model(model_id)
    adp = p["attention_dp"]
    # the limits the engine picks on the device, as the search priced them (vLLM: 8192 batched tokens on an H100)
    eng = (get_engine(engine) if isinstance(engine, str) else engine).for_hardware(get_hardware(p["hardware"]),
                                                                                  p["tp"] * adp, p["pp"])
    chunk = p["chunked_prefill_tokens"] or 0
    # whole prompts (chunk 0) and the engine's own chunked prefill are one steady state when a prompt fits its token
    # budget, and the search keeps one row of such equals: an engine that chunks by default keeps its default then,
    # rather than being told to stop chunking and take whole max-length prompts in one step
    chunked = bool(chunk) or (bool(getattr(eng, "chunked_prefill", False)) and isl <= eng.max_batched_tokens)
    conc = p["concurrency_per_replica"]
    # an engine that runs prompts whole takes the running decodes into the same step budget: the plan was priced with
    # room for a prompt beside them (serving.predict.budget_note), so the server gets that budget, as trtllm-bench
    # sizes it (its limit is per attention-DP rank; the emitters divide this replica-wide one by the ranks)
    toks = chunk or eng.max_batched_tokens
    each = 1.0 + (p["speculative"]["draft_tokens"] if p["speculative"] else 0)  # a decode's tokens a step
    need = None if chunked else eng.budget_beside_prompt(isl, conc / adp - 1.0, each)
    if need is not None:
        toks = math.ceil(need) * adp
    spec = None
    if p["speculative"]:
        spec = {"method": "mtp" if m.mtp_layers > 0 else "draft",
                "num_speculative_tokens": p["speculative"]["draft_tokens"], "draft_model": None}
    dis = None
    if p["mode"] == "disaggregated":
        d = p["disaggregated"]
        # an attention-DP worker is one engine over tp x adp GPUs
        dis = {"prefill_workers": d["prefill_workers"], "decode_workers": d["decode_workers"],
               "prefill_tp": d["prefill_tp"] * d["prefill_attention_dp"], "decode_tp": p["tp"] * adp,
               "prefill_attention_dp": d["prefill_attention_dp"], "decode_attention_dp": adp,
               "prefill_eplb_redundant_experts": d.get("prefill_eplb_redundant_experts")}
    offload_gib = host_kv_bytes_per_device(get_hardware(p["hardware"])) / 2**30 if p["kv_offload_to_host"] else 0.0
    return {
        "model": m.id, "hf_repo": getattr(m, "hf_repo", None), "hardware": p["hardware"], "gpus": rec["gpus"],
        # attention-DP plans run one engine over tp x adp GPUs with data-parallel attention (DeepSeek style)
        "tp": p["tp"] * adp, "pp": p["pp"], "ep": p["ep"], "dp": p["replicas"], "attention_dp": adp > 1, "attention_dp_size": adp,
        "weights": p["weights"], "kv": p["kv"],
        "max_num_seqs": conc, "max_num_batched_tokens": toks,
        "chunked_prefill": chunked, "max_model_len": min(m.max_context, max(isl + osl, rec["max_context_tokens"])),
        "speculative": spec, "disaggregated": dis, "kv_offload_gib": round(offload_gib, 1),
        "gpu_memory_utilization": eng.utilization,
        "eplb_redundant_experts": p.get("eplb_redundant_experts"),
        # the sampler path the user named (--sampler), which the server must take for the memory the plan priced
        "sampler": eng.sampler_path if "sampler" in eng.pinned else None,
    }


def emit_recommended(target: str, rec: dict, model_id: str, isl: int, osl: int, engine="trtllm") -> str:
    from planner.report.emit import emit

    return emit(target, deployment_plan(rec, model_id, isl, osl, engine))
