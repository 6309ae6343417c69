"""Predict the published serving benchmarks with the event simulator (used by ``planner validate``).

* ``online_serving.csv`` (TensorRT-LLM 0.14 behind Triton, 500 requests at ``request_rate``, ``INF`` =
  all at once): one replica of the row's plan with the trtllm engine defaults; fixed isl/osl; Poisson
  arrivals (seed 0). Predicted: mean TTFT, mean inter-token latency, and for the ``INF`` rows the
  request rate the replica sustains (500 / makespan, as measured) -- the saturating rate.
* ``mlperf_llm.csv`` (8-GPU systems): the input lengths are not in the file; we assume the MLPerf
  OpenOrca-like distribution of the ``openorca`` built-in workload (lognormal, mean ~300 tokens, capped at
  1024 by the MLPerf preprocessing) and outputs lognormal with the row's mean, capped at 1024. A row whose mean
  is the accuracy rule's floor (90 % of the reference's tokens per sample, the lowest a submission may produce)
  is read as the reference's mean: the rule bounds a submission's mean to 90-110 % of it, and submissions run
  the reference network greedily, so their outputs track its length (``MLPERF_TOKENS_PER_SAMPLE``). The plan
  is the planner's choice among tp in {1, 2, 4, 8} (x ep for MoE) with 8 / tp replicas: the best
  offline throughput. Offline = all samples at once (24,576 for Llama-2-70B, 15,000 for Mixtral, the
  MLPerf dataset sizes); server = the highest Poisson rate whose p99 TTFT and TPOT meet the benchmark's limits
  (Llama-2-70B and Mixtral: 2 s and 200 ms; MLPERF_LIMITS), interactive the same under the tighter ones of its
  Interactive scenario (Llama-2-70B: 450 ms and 40 ms), reported as output tokens/s. Only the two benchmarks whose
  prompt lengths can be drawn are replayed (MLPERF_DATASETS); another model's row says why it is not predicted.
* ``serving_bench.csv`` (``vllm bench serve`` / ``sglang.bench_serving`` runs that vLLM and SGLang users and
  vendors published with their full result blocks): one replica of the row's engine release (its online profile:
  the API front end is in the path) and layout, sent ``num_prompts`` requests of the row's mean lengths (the
  printed totals over the successful requests) all at once (``rate`` = inf), Poisson at ``rate`` (seed 0), or by
  ``max_concurrency`` requests at a time (the client's semaphore: each completion sends the next prompt of the list).
  Predicted: request and output-token throughput over the run (completed / first send to last finish, as
  the clients print it), mean TTFT, mean TPOT. Not joint-fit rows: the vLLM 0.8-0.11 runs fit vLLM 0.11's rate stage
  (planner.calibrate.rate_fit.BENCH_ENGINES); the SGLang and trtllm-serve runs are held out.
* the TensorRT-LLM 0.20 and 1.x perf-overview tables (``perf_overview_0_20.csv``, ``perf_overview_1_0.csv``,
  ``perf_overview_1_1.csv``, ``perf_overview_1_2.csv``, ``perf_overview_1_2_b300.csv``, ``modern_per_gpu.csv``,
  ``perf_overview_rtx_pro_6000.csv``:
  ``trtllm-bench throughput``): one replica of the row's layout, the release's offline profile (no API front end) with
  the batch and token limits trtllm-bench sized for the row's lengths and decode batches padded to the page's captured
  CUDA-graph sizes unless the row ran with CUDA graphs off (``cuda_graphs``; planner/calibrate/bench_settings.py),
  sent ``num_requests`` identical requests all at once. Predicted: output tokens/s per GPU over the run (first request
  in to last out, as trtllm-bench reports it), so the fill and drain of a burst of one to six batches count.
No parameter is tuned per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.errors import PlannerError
from planner.serving.simulator import keeps_up
from planner.serving.simulator import SLO, Pool, Scheduler, Simulator, replica_for
from planner.serving.workload import (SAMPLING, Lengths, eos_capped_workload, fixed_workload, generate, get_workload,
                                      random_range_workload, reused_prompts, shared_closed_loop, sharegpt_workload)
from planner.specs.quant import canonical, default_kv, kv_asked

ONLINE_REQUESTS = 500
# an Offline query lasts 1.1 x the 600 s minimum duration at the system's own rate (_offline_query); the simulated
# share of one replica starts from a pilot of MLPERF_PILOT samples and is held to MLPERF_MAX_QUERY (simulation time)
MLPERF_OFFLINE_QUERY_S = 1.1 * 600.0
MLPERF_PILOT = 3000
MLPERF_MAX_QUERY = 60000
MLPERF_SERVER_SLO = SLO(ttft_s=2.0, tpot_s=0.2)
# the p99 TTFT and TPOT limits of each LLM benchmark's Server and Interactive runs (mlcommons/inference loadgen/mlperf.conf
# @001712e9 ttft_latency / tpot_latency; tools/submission/submission_checker/constants.py @001d64ca LLM_LATENCY_LIMITS;
# Llama-2-70B's interactive limits were the benchmark llama2-70b-interactive in v5.0, its Interactive scenario from v5.1)
MLPERF_LIMITS = {
    "llama-2-70b": {"server": MLPERF_SERVER_SLO, "interactive": SLO(ttft_s=0.45, tpot_s=0.04)},
    "mixtral-8x7b": {"server": MLPERF_SERVER_SLO},
    "llama-3.1-8b": {"server": SLO(ttft_s=2.0, tpot_s=0.1), "interactive": SLO(ttft_s=0.5, tpot_s=0.03)},
    "llama-3.1-405b": {"server": SLO(ttft_s=6.0, tpot_s=0.175), "interactive": SLO(ttft_s=4.5, tpot_s=0.08)},
    "deepseek-r1": {"server": SLO(ttft_s=2.0, tpot_s=0.08), "interactive": SLO(ttft_s=1.5, tpot_s=0.015)},
}
# the benchmarks whose prompt lengths the replay can draw (_mlperf_workload): the others (GPT-J's and Llama 3.1 8B's
# CNN/DailyMail, Llama 3.1 405B's long documents, DeepSeek-R1's reasoning sets) publish no input-length statistics
MLPERF_DATASETS = ("llama-2-70b", "mixtral-8x7b")
# the reference implementation's mean output tokens per sample; a closed submission's mean must lie within 90-110 %
# of it (mlcommons/inference language/llama2-70b/README.md "Accuracy Target": 294.45;
# language/mixtral-8x7b/README.md: 144.84, "90%-110% of the generated tokens_per_samples")
MLPERF_TOKENS_PER_SAMPLE = {"llama-2-70b": 294.45, "mixtral-8x7b": 144.84}
MLPERF_TOKENS_WINDOW = (0.9, 1.1)
SERVER_REQUESTS = 6000


def _engine_of(row: dict) -> str:
    """The engine release the row ran (TensorRT-LLM 0.14 for the online rows, 0.9-era for MLPerf v4.0)."""
    from planner.calibrate.published_fit import engine_of

    return engine_of(row)


def endpoint_of(row: dict, where: str = "row") -> str:
    """The API endpoint a serving-benchmark run's client went through, from its optional ``endpoint`` column:
    ``chat`` (/v1/chat/completions: `vllm bench serve --backend openai-chat`) or ``completions`` (/v1/completions or a
    native generate route: the benchmark clients' default backends); an empty cell reads completions."""
    from planner.specs.engine import ENDPOINTS

    v = (row.get("endpoint") or "").strip().lower() or "completions"
    if v not in ENDPOINTS:
        raise PlannerError(f"{where}: endpoint must be one of {', '.join(ENDPOINTS)}, got {v!r}")
    return v


def _count(row: dict, key: str, where: str, default: int) -> int:
    """An optional whole-number column (``default`` where the cell is empty)."""
    return int(_num(row, key, where)) if (row.get(key) or "").strip() else default


def _num(row: dict, key: str, where: str) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        raise PlannerError(f"{where}: column {key!r} is missing or not a number") from None


def predict_online(rows: list[dict], file: str = "online_serving.csv") -> list[tuple[int, str, str, float, float, str]]:
    """(row index, what, config, measured, predicted, note) for rows of the online-serving schema."""
    reps: dict[tuple, object] = {}
    # saturation per configuration: the measured rate of its INF row (else its highest measured rate)
    groups: dict[tuple, float] = {}
    for r in rows:
        key = (r["model"], r["hardware"], r.get("tp") or "1", r.get("weights") or "bf16", r.get("kv") or "", r["isl"], r["osl"])
        meas = _num(r, "measured_requests_per_s", file)
        if str(r["request_rate"]).strip().upper() == "INF":
            groups[key] = meas
        else:
            groups.setdefault(key + ("max",), 0.0)
            groups[key + ("max",)] = max(groups[key + ("max",)], meas)
    out = []
    for i, r in enumerate(rows):
        where = f"{file}:{i + 2}"
        tp = int(_num(r, "tp", where)) if r.get("tp") else 1
        weights, kv = r.get("weights") or "bf16", kv_asked(r.get("kv"))
        isl, osl = int(_num(r, "isl", where)), int(_num(r, "osl", where))
        key = (r["model"], r["hardware"], r.get("tp") or "1", weights, r.get("kv") or "", r["isl"], r["osl"])
        cfg = f"tp{tp} {weights} {isl}/{osl} rate={r['request_rate']}"
        if key not in reps:
            try:
                reps[key] = replica_for(r["model"], r["hardware"], tp=tp, weights=weights, kv=kv, engine=_engine_of(r),
                                        max_input=isl + osl)
            except PlannerError as e:  # an unknown model or device, a layout that cannot hold it: this row, not the file
                reps[key] = f"{where}: {e}"
        if isinstance(reps[key], str):
            out.append((i, "mean_ttft_s", cfg, _num(r, "mean_ttft_s", where), None, reps[key]))
            continue
        rate_s = str(r["request_rate"]).strip().upper()
        rate = math.inf if rate_s == "INF" else _num(r, "request_rate", where)
        reqs = generate(fixed_workload(isl, osl), ONLINE_REQUESTS, rate=rate, seed=0)
        res = Simulator([Pool(reps[key], 1)], reqs).run()
        s = res.summary()
        sat = groups.get(key, groups.get(key + ("max",), math.inf))
        below = math.isfinite(rate) and rate < sat
        note = "below saturation" if below else ("all at once" if rate_s == "INF" else "at or above saturation")
        out.append((i, "mean_ttft_s", cfg, _num(r, "mean_ttft_s", where), s["ttft_s"]["mean"], note))
        if osl > 1:
            out.append((i, "mean_itl_s", cfg, _num(r, "mean_itl_s", where), s["tpot_s"]["mean"], note))
        if rate_s == "INF":
            out.append((i, "saturation_requests_per_s", cfg, _num(r, "measured_requests_per_s", where), s["requests_per_s"], note))
    return out


def _layouts(model: str, gpus: int) -> list[tuple[int, int, int]]:
    """(tp, pp, ep) of every replica layout an MLPerf system of ``gpus`` GPUs could run: tensor- and pipeline-parallel
    degrees that are powers of two with tp x pp <= gpus and dividing it (NVIDIA's v5.0 Llama-2-70B configurations
    run tp1 pp2 on H100 and B200, tp1 on H200: closed/NVIDIA/configs/llama2-70b/Offline), experts parallel over the
    tensor-parallel group or not."""
    from planner.specs.loader import get_model

    m = get_model(model)
    out = []
    tp = 1
    while tp <= gpus:
        pp = 1
        while tp * pp <= gpus:
            if gpus % (tp * pp) == 0:
                for ep in sorted({1, tp}) if m.moe else [1]:
                    out.append((tp, pp, ep))
            pp *= 2
        tp *= 2
    return out


def _layout_label(tp: int, pp: int, ep: int, replicas: int) -> str:
    return f"tp{tp}" + (f" pp{pp}" if pp > 1 else "") + (f" ep{ep}" if ep > 1 else "") + f" x{replicas}"


def mlperf_output_mean(model: str, stated: float) -> tuple[float, str]:
    """(mean output tokens to simulate, note) for an MLPerf row stating ``stated``: the reference's tokens per sample
    where ``stated`` is the accuracy rule's floor or ceiling for that model (a bound, not a measured mean), else
    ``stated``."""
    ref = MLPERF_TOKENS_PER_SAMPLE.get(model)
    if ref is not None:
        for f in MLPERF_TOKENS_WINDOW:
            if abs(stated - f * ref) <= 1e-3 * ref:
                return ref, (f"{stated:g} output tokens is the accuracy rule's bound ({f:.0%} of the reference's "
                             f"{ref:g} tokens per sample); the reference's mean taken")
    return stated, ""


# MLPerf's Mixtral-8x7B set is 5,000 samples each of OpenOrca, GSM8K and MBXP (mlcommons/inference
# language/mixtral-8x7b/README.md), its prompts capped at 2,048 tokens (G_MAX_INPUT_TOK_LEN in NVIDIA's harness). Its
# GSM8K prompts are few-shot: the sample NVIDIA's preprocess_data.py prints (train.548, '[INST] As an expert problem
# solver solve step by step ...') has 657 prompt tokens, nearly all of them the fixed worked examples, so that third is
# taken at 657 with the spread of GSM8K's questions (sd 40, an assumption); the OpenOrca and MBXP thirds have no
# published lengths and take the `openorca` assumption (mean 300) as Llama-2-70B's set does
# (mlcommons/inference_results_v4.1 closed/Oracle/code/mixtral-8x7b/tensorrt/preprocess_data.py)
MIXTRAL_GSM8K_PROMPT = {"dist": "normal", "mean": 657.0, "std": 40.0, "min": 400, "max": 2048}


def _mlperf_workload(mean_output: float, model: str = "llama-2-70b"):
    base = get_workload("openorca")
    out = base.output.model_copy(update={"mean": mean_output, "std": 0.87 * mean_output})
    spec = base.model_copy(update={"output": out, "name": f"openorca (mean output {mean_output:g})"})
    if model != "mixtral-8x7b":
        return spec
    inp = Lengths.model_validate({"dist": "mixture", "max": 2048, "parts": [
        {"share": 2.0, "lengths": base.input.model_dump()},
        {"share": 1.0, "lengths": MIXTRAL_GSM8K_PROMPT}]})
    return spec.model_copy(update={"input": inp, "name": f"mlperf mixtral (mean output {mean_output:g})",
                                   "source": "MLPerf Mixtral-8x7B: a third GSM8K few-shot prompts (657 tokens in the "
                                             "sample NVIDIA's harness prints), two thirds OpenOrca and MBXP taken as "
                                             "the openorca assumption"})


class _MLPerf:
    def __init__(self):
        self.cache: dict[tuple, dict] = {}

    def predict(self, model: str, hardware: str, gpus: int, weights: str, kv: str, mean_output: float,
                engine: str = "trtllm", activations: str | None = None,
                layout: tuple[int, int, int] | None = None, max_batch: int | None = None,
                max_tokens_step: int | None = None, limits: str = "server") -> dict:
        """Offline and server tokens/s of the best layout the planner finds for the system, or of ``layout`` (tp, pp,
        ep), the one the submission ran, where its configuration names it; ``max_batch``: the batch limit of each of
        its engines (the configuration's gpu_batch_size, or a vLLM harness's max_num_seqs and target decode batch), where
        named, else the engine profile's; ``max_tokens_step``: its tokens a step (max_num_batched_tokens), likewise.
        ``limits``: the latency limits of the rate (``server`` or ``interactive``: MLPERF_LIMITS); under the tighter
        interactive ones every layout is tried, since the one that serves most tokens offline may meet no such TPOT."""
        from planner.specs.loader import get_model

        get_model(model)  # an unknown model says so first
        if model not in MLPERF_DATASETS:
            raise PlannerError(f"MLPerf's {model} benchmark publishes no statistics of its prompt lengths, so its run "
                               f"cannot be replayed (known: {', '.join(MLPERF_DATASETS)})")
        slo = MLPERF_LIMITS[model].get(limits)
        if slo is None:
            raise PlannerError(f"MLPerf's {model} benchmark has no {limits} scenario")
        key = (model, hardware, gpus, weights, kv, round(mean_output, 3), engine, activations, layout, max_batch, max_tokens_step,
               limits)
        if key in self.cache:
            return self.cache[key]
        spec = _mlperf_workload(mean_output, model)
        nodes = max(1.0, gpus / 8.0)
        from planner.calibrate.bench_settings import offline as no_front_end

        # LoadGen hands the system under test pre-tokenized samples in process: no API front end (HTTP, tokenize,
        # detokenize) stands in the path, so the release's per-request time does not apply (as for trtllm-bench)
        eng = no_front_end(engine)
        # the submission's own limits, pinned over the engine's per-device defaults (vLLM picks 1,024 sequences and
        # 8,192 batched tokens on a GPU of 70 GiB or more: Engine.for_hardware)
        pinned = {k: v for k, v in (("max_seqs", max_batch), ("max_batched_tokens", max_tokens_step)) if v is not None}
        if pinned:
            eng = eng.set_by_user(**pinned)
        offline = []
        for tp, pp, ep in [layout] if layout is not None else _layouts(model, gpus):
            try:
                rep = replica_for(model, hardware, tp=tp, pp=pp, ep=ep, weights=weights, kv=kv, activations=activations,
                                  engine=eng, max_input=2048)
            except PlannerError:
                continue
            replicas = gpus // (tp * pp)
            tok, rps = _offline_query(rep, spec)
            offline.append((tok * replicas, rps * replicas, _layout_label(tp, pp, ep, replicas), Pool(rep, replicas)))
        if not offline:
            if layout is not None:
                raise PlannerError(f"{model} in {weights} does not fit on {gpus} x {hardware} at the submitted layout "
                                   f"{_layout_label(*layout, gpus // (layout[0] * layout[1]))}")
            raise PlannerError(f"no layout of {model} fits on {gpus} x {hardware} in {weights}")
        offline.sort(key=lambda x: -x[0])
        best = offline[0]
        # server: the planner's layouts whose offline throughput is near the best (every layout under the interactive
        # limits), highest rate meeting the p99 limits
        server = []
        for tok, rps, label, pool in offline:
            if tok < 0.85 * best[0] and limits == "server":
                continue
            mean_out = None

            def ok(rate: float) -> tuple[bool, float]:
                # MLPerf server runs last at least 600 s
                reqs = generate(spec, int(min(max(SERVER_REQUESTS, rate * 600.0), 15000 * nodes)), rate=rate, seed=0)
                res = Simulator([pool], reqs).run()
                d = res.done
                p_ttft = float(np.percentile(res.ttft_s[d], 99))
                p_tpot = float(np.nanpercentile(res.tpot_s[d], 99))
                good = p_ttft <= slo.ttft_s and p_tpot <= slo.tpot_s and keeps_up(res)
                return good, float(res.output_tokens[d].mean())

            lo, hi = 0.0, rps
            good, mean_out = ok(hi)
            if good:
                lo = hi
            else:
                g, mo = ok(0.5 * rps)
                if g:
                    lo, mean_out = 0.5 * rps, mo
                else:
                    hi = 0.5 * rps
                for _ in range(5):
                    mid = (lo + hi) / 2.0
                    g, mo = ok(mid)
                    if g:
                        lo, mean_out = mid, mo
                    else:
                        hi = mid
            if lo > 0:
                server.append((lo * (mean_out or mean_output), label))
        server.sort(key=lambda x: -x[0])
        out = {"offline": best[0], "offline_plan": best[2],
               "server": server[0][0] if server else 0.0, "server_plan": server[0][1] if server else "-"}
        self.cache[key] = out
        return out


def _offline_query(rep, spec) -> tuple[float, float]:
    """(output tokens/s, requests/s) of one replica through an MLPerf Offline query. LoadGen sends the whole query at
    once and sizes it to last its minimum duration: samples_per_query = 1.1 x target_qps x min_duration (600 s), the
    submitter's target_qps being its expected rate (an H100-NVL x8 Llama-2-70B summary: target_qps 50, 33,000 samples;
    mlcommons/inference_results_v4.0 closed/NVIDIA/results/H100-NVL-94GBx8_TRT/.../Offline mlperf_log_summary.txt).
    The query splits evenly over identical replicas, so one replica gets its share, sized from its own simulated rate
    (a pilot of MLPERF_PILOT samples, then the size that rate asks for, until the two agree): its ramp and drain weigh
    as they do in the real run. A fixed count spread over many replicas (as before) was mostly ramp and drain and put
    an 8-GPU system's tokens/s per GPU up to a third below one GPU's of the same layout."""
    def query(n: int) -> dict:
        return Simulator([Pool(rep, 1)], generate(spec, n, rate=math.inf, seed=0)).run().summary()

    n = MLPERF_PILOT
    res = query(n)
    for _ in range(3):  # a longer query runs nearer steady state, faster: a few rounds to the size that lasts 660 s
        want = int(min(math.ceil(MLPERF_OFFLINE_QUERY_S * (res["requests_per_s"] or 0.0)), MLPERF_MAX_QUERY))
        if abs(want - n) <= 0.05 * n:
            break
        n = want
        res = query(n)
    return res["output_tokens_per_s"] or 0.0, res["requests_per_s"] or 0.0


def predict_mlperf(rows: list[dict], file: str = "mlperf_llm.csv"):
    """(row index, what, config, measured, predicted, note) for rows of the MLPerf schema, one at a time (each new
    system configuration runs the simulator for a while: a caller can show progress)."""
    mp = _MLPerf()
    for i, r in enumerate(rows):
        where = f"{file}:{i + 2}"
        gpus = int(_num(r, "gpus", where))
        weights = r.get("weights") or "bf16"
        kv = kv_asked(r.get("kv")) or default_kv(weights, _engine_of(r), r["model"])
        scen = (r.get("scenario") or "").strip().lower()
        if scen not in ("offline", "server", "interactive"):
            raise PlannerError(f"{where}: scenario {r.get('scenario')!r} is not offline, server or interactive")
        measured = _num(r, "output_tokens_per_s", where)
        act = r.get("activations") or None  # the activation format where the submission states one (W4A4 MXFP4)
        fmt = weights + (f"/a-{act}" if act else "")
        mean_out, why = mlperf_output_mean(r["model"], _num(r, "mean_output_tokens", where))
        layout = _mlperf_layout(r, gpus, where)
        max_batch = _count(r, "max_batch", where, 0) or None
        max_tokens_step = _count(r, "max_batched_tokens", where, 0) or None
        try:
            p = mp.predict(r["model"], r["hardware"], gpus, weights, kv, mean_out, _engine_of(r), act, layout, max_batch,
                           max_tokens_step, limits="interactive" if scen == "interactive" else "server")
        except PlannerError as e:  # a row the planner cannot predict is reported beside the others
            yield i, "output_tokens_per_s", f"{gpus} gpus {fmt} {scen}", measured, None, f"{where}: {e}"
            continue
        plan = p["offline_plan"] if scen == "offline" else p["server_plan"]
        value = p["offline"] if scen == "offline" else p["server"]
        if not value > 0:
            limit = MLPERF_LIMITS[r["model"]]["interactive" if scen == "interactive" else "server"]
            yield (i, "output_tokens_per_s", f"{gpus} gpus {fmt} {scen}", measured, None,
                   f"{where}: no layout the planner tried meets the {scen} limits (p99 TTFT {limit.ttft_s:g} s, p99 TPOT "
                   f"{limit.tpot_s * 1e3:g} ms) at any rate")
            continue
        ran = "the submission's layout (its configuration)" if layout is not None else "the planner's best layout"
        if max_batch:
            ran += f", {max_batch} sequences an engine"
        if max_tokens_step:
            ran += f", {max_tokens_step:,} batched tokens a step"
        inputs = _mlperf_workload(mean_out, r["model"]).input.describe()
        yield (i, "output_tokens_per_s", f"{gpus} gpus {fmt} {scen} ({plan})", measured,
               value, "; ".join(x for x in (f"input lengths {inputs} (assumed where the set does not publish them)",
                                              ran, why) if x))


def _mlperf_layout(r: dict, gpus: int, where: str) -> tuple[int, int, int] | None:
    """(tp, pp, ep) of an MLPerf row whose ``tp`` / ``pp`` / ``ep`` columns name the layout its submission's
    configuration ran (tensor_parallelism, pipeline_parallelism; an empty cell is 1); None where they are all empty:
    the row is then predicted at the best layout the planner finds."""
    if not any((r.get(c) or "").strip() for c in ("tp", "pp", "ep")):
        return None
    tp, pp, ep = (_count(r, c, where, 1) for c in ("tp", "pp", "ep"))
    if gpus % (tp * pp):
        raise PlannerError(f"{where}: tp {tp} x pp {pp} does not divide the system's {gpus} GPUs")
    return tp, pp, ep


# (column, summary key[.statistic], power): a single request's decode rate (``decode_tokens_per_s``) is 1 / its mean
# TPOT; a distribution's statistic is its mean unless the key names another (``ttft_s.p50``: the median TTFT)
BENCH_METRICS = (("requests_per_s", "requests_per_s", 1), ("output_tokens_per_s", "output_tokens_per_s", 1),
                 ("total_tokens_per_s", "total_tokens_per_s", 1),
                 ("mean_ttft_s", "ttft_s", 1), ("mean_tpot_s", "tpot_s", 1), ("decode_tokens_per_s", "tpot_s", -1),
                 ("median_ttft_s", "ttft_s.p50", 1), ("median_tpot_s", "tpot_s.p50", 1),
                 ("output_tokens_per_s_per_gpu", "output_tokens_per_s", 1),
                 ("total_tokens_per_s_per_gpu", "total_tokens_per_s", 1))
# rates a table prints per GPU: the run's rate over its GPUs (replicas x tp x pp x attention-DP ranks)
PER_GPU_METRICS = ("output_tokens_per_s_per_gpu", "total_tokens_per_s_per_gpu")


def _tokens(mean: float) -> int:
    """A printed mean length as the whole tokens a request is priced at (at least one)."""
    return max(int(round(mean)), 1)


@dataclass
class BenchRun:
    """One row of the serving-benchmark schema as the run was set up (bench_run): its layout, lengths, client, server
    flags and metrics."""

    tp: int
    ep: int
    pp: int
    adp: int
    balance: int  # attention_dp_balance: decode steps the engine holds new prompts for (0: off)
    weights: str | None  # None: the checkpoint as released
    kv: str | None
    mean_in: float  # the printed mean prompt and reply, or with a range ratio the lengths the client was asked for
    mean_out: float
    ratio: float | None  # --random-range-ratio
    n: int  # prompts sent
    rate: float  # requests/s (inf: all at once)
    clients: int  # --max-concurrency (0: an open loop at the rate)
    replicas: int
    cap: int  # the client's reply cap (max_tokens; 0: none printed)
    entries: int  # distinct prompts a client reuses (0: every prompt new)
    sampling: str
    server: dict  # the run's own server flags (server_settings)
    sampler: str
    cfg: str
    measured: list  # (column, summary key, power, value)

    @property
    def isl(self) -> int:
        return _tokens(self.mean_in)

    @property
    def osl(self) -> int:
        return _tokens(self.mean_out)

    @property
    def capped(self) -> bool:
        """Replies capped by max_tokens, some of them ended at EOS (eos_capped_workload)."""
        return bool(self.cap) and self.cap > self.mean_out + 0.5


def bench_run(r: dict, where: str) -> BenchRun:
    """A serving-benchmark row's setup; a PlannerError naming ``where`` for a malformed cell (it stops the file)."""
    from planner.specs.engine import SAMPLER_PATHS

    tp, ep, pp, adp = (_count(r, k, where, 1) for k in ("tp", "ep", "pp", "attention_dp"))
    balance = _count(r, "attention_dp_balance", where, 0)
    weights, kv = canonical((r.get("weights") or "").strip()) or None, kv_asked(r.get("kv"))
    mean_in, mean_out = _num(r, "isl", where), _num(r, "osl", where)
    isl, osl = _tokens(mean_in), _tokens(mean_out)
    ratio = _num(r, "random_range_ratio", where) if (r.get("random_range_ratio") or "").strip() else None
    n = int(_num(r, "num_prompts", where))
    rate_s = str(r.get("rate") or "inf").strip().lower()
    rate = math.inf if rate_s in ("inf", "") else _num(r, "rate", where)
    clients = _count(r, "max_concurrency", where, 0)
    # identical replicas behind a round-robin balancer (NGINX's default), the client's requests spread over them
    replicas = _count(r, "replicas", where, 1)
    engine = _engine_of(r)
    cfg = (f"{engine} tp{tp}{f' pp{pp}' if pp > 1 else ''}{f' adp{adp}' if adp > 1 else ''}{f' ep{ep}' if ep > 1 else ''} "
           f"{weights or 'released'} {isl}/{osl}{f' range {ratio:g}' if ratio is not None else ''} x{n} "
           + (f"clients={clients}" if clients else f"rate={rate_s}")
           + (f" replicas={replicas}" if replicas > 1 else ""))
    measured = [(col, attr, power, float(r[col])) for col, attr, power in BENCH_METRICS if (r.get(col) or "").strip()]
    server = server_settings(r, where)  # a malformed cell stops the file, as a malformed length does
    sampler = (r.get("sampler") or "").strip().lower()
    if sampler and sampler not in SAMPLER_PATHS:
        raise PlannerError(f"{where}: column 'sampler' is {r.get('sampler')!r}; it takes {' or '.join(SAMPLER_PATHS)} "
                           "(the top-k/top-p path the run's install took), or an empty cell")
    cap = _count(r, "max_tokens", where, 0)  # the client's reply cap, where the row prints it
    if cap and cap + 0.5 < mean_out:
        raise PlannerError(f"{where}: its mean reply of {mean_out:g} tokens is above its max_tokens {cap}")
    entries = _count(r, "dataset_entries", where, 0)  # the client's distinct prompts, where it reuses them
    sampling = (r.get("dataset_sampling") or "shuffle").strip().lower()
    if entries < 0 or sampling not in SAMPLING:
        raise PlannerError(f"{where}: dataset_entries {r.get('dataset_entries')!r} / dataset_sampling "
                           f"{r.get('dataset_sampling')!r}: a count of at least 1 and one of {', '.join(SAMPLING)}")
    return BenchRun(tp, ep, pp, adp, balance, weights, kv, mean_in, mean_out, ratio, n, rate, clients, replicas, cap,
                    entries, sampling, server, sampler, cfg, measured)


def bench_serve_engine(r: dict, b: BenchRun, where: str):
    """The engine release a serving-benchmark row ran, on its endpoint, with its scheduling and sampler path and its
    own server flags; and the weights it served (the checkpoint as released where the row names none). A
    PlannerError: this row cannot be predicted."""
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_model

    eng = get_engine(_engine_of(r)).on_endpoint(endpoint_of(r, where))
    sched_ahead = (r.get("async_scheduling") or "").strip().lower()
    if sched_ahead:  # the release's default, or the run's --async-scheduling
        eng = eng.with_(async_scheduling=sched_ahead == "true")
    if b.server:  # the run's own server flags, where its table prints them (pinned over the device's defaults)
        eng = eng.set_by_user(**b.server)
    if b.sampler:  # the top-k/top-p path the run's install took, where its source says (vLLM's V1 profile)
        eng = eng.on_sampler_path(b.sampler)
    # the checkpoint as released (bf16 for most, MXFP4 for gpt-oss, FP8 for DeepSeek-R1)
    weights = b.weights or get_model(r["model"]).released_weights() or "bf16"
    return eng, weights


def bench_lengths(r: dict, b: BenchRun):
    """The distribution a serving-benchmark row's lengths are drawn from, or None where every request is exactly its
    stated lengths (a loop of one length). ShareGPT lengths vary as the benchmark client samples them, and in a burst
    the longest replies set how long the run lasts; a random range (--random-range-ratio) draws each length over it;
    replies capped by max_tokens end early at EOS; random datasets without a ratio (vLLM's default 0) run at their
    stated lengths."""
    if (r.get("dataset") or "").strip().lower() == "sharegpt":
        return sharegpt_workload(b.mean_in, b.mean_out)
    if b.ratio is not None:
        return random_range_workload(b.isl, b.osl, b.ratio)
    if b.capped:
        return eos_capped_workload(b.isl, b.mean_out, b.cap)
    return None


def predict_bench_serve(rows: list[dict], file: str = "serving_bench.csv",
                        lines: list[int] | None = None) -> list[tuple[int, str, str, float, float | None, str]]:
    """(row index, what, config, measured, predicted or None, note) for rows of the serving-benchmark schema. An optional
    ``replicas`` column: the run's identical replicas behind a round-robin balancer, simulated as that many; optional
    ``max_num_seqs``, ``max_num_batched_tokens`` and ``gpu_memory_utilization`` columns: the server flags the run set
    (server_settings), which replace the engine's defaults on the device; an optional ``max_tokens`` column: the reply
    cap the client sent, where the run did not ignore EOS, so a printed mean reply below it says some replies ended
    early (eos_capped_workload: their spread keeps a closed loop's clients out of lockstep); optional
    ``dataset_entries`` and ``dataset_sampling`` (shuffle, sequential, random) columns: a client that sends that many
    distinct prompts over and over (aiperf's --num-dataset-entries), which the engine's prefix cache serves again
    while they stay resident (reused_prompts); empty: every prompt new, the prefix cache off in a closed loop; an optional
    ``random_range_ratio`` column: the client's random dataset drew each length uniformly over [int(L x ratio), L]
    (random_range_workload), ``isl`` / ``osl`` then being the requested --random-input-len / --random-output-len L,
    not printed means; an optional ``attention_dp`` column: data-parallel attention ranks (with ``ep`` for the experts,
    ``tp`` within a rank), and ``attention_dp_balance``: the decode steps the engine holds new prompts for until every
    rank can take one (TensorRT-LLM's attention_dp_config enable_balance with its timeout_iters); ``output_tokens_per_s_per_gpu``
    / ``total_tokens_per_s_per_gpu``: the run's rates over its GPUs. ``lines``: the rows' line numbers in ``file``
    where they are a subset of it (error messages)."""
    out = []
    for i, r in enumerate(rows):
        where = f"{file}:{lines[i] if lines else i + 2}"
        b = bench_run(r, where)
        cfg, measured, clients, replicas = b.cfg, b.measured, b.clients, b.replicas
        tp, ep, pp, adp, isl, osl = b.tp, b.ep, b.pp, b.adp, b.isl, b.osl
        try:
            eng, weights = bench_serve_engine(r, b, where)
            spec = bench_lengths(r, b) or fixed_workload(isl, osl)
            reqs = generate(spec, b.n, rate=b.rate, seed=0)  # rate inf: every request at 0
            if spec.max_total:  # the drawn lengths scaled to the run's printed totals (a few hundred draws miss them)
                reqs.input_tokens, reqs.output_tokens = (
                    _with_mean(reqs.input_tokens, b.mean_in, spec.input.min, spec.input.max),
                    _with_mean(reqs.output_tokens, b.mean_out, spec.output.min, spec.output.max))
            elif b.capped:  # the drawn replies scaled to the run's printed mean
                reqs.output_tokens = _with_mean(reqs.output_tokens, b.mean_out, 1, b.cap)
            if b.entries:
                # a client that builds a set of distinct payloads and reuses it until the run ends (aiperf's
                # --num-dataset-entries): a prompt sent again is served from the prefix cache while its blocks last
                reqs = reused_prompts(reqs, b.entries, b.sampling, seed=0)
            if clients:
                # --max-concurrency: the client's semaphore over its whole request list, so each completion sends the
                # next prompt (shared_closed_loop); independent prompts, which share no prefix with each other, unless
                # the client reuses them
                if not b.entries:
                    eng = eng.with_(prefix_caching=False)
                reqs = shared_closed_loop(reqs, clients)
            longest = int((reqs.input_tokens + reqs.output_tokens).max())
            rep = replica_for(r["model"], r["hardware"], tp=tp, pp=pp, ep=ep, adp=adp, weights=weights, kv=b.kv, engine=eng,
                              max_input=longest, min_prompt=float(reqs.input_tokens.min()),
                              sched=Scheduler(adp_balance=b.balance) if b.balance else None)
            s = Simulator([Pool(rep, replicas)], reqs, router="round-robin").run().summary()
        except PlannerError as e:
            out += [(i, col, cfg, meas, None, f"unpredictable: {e}") for col, _, _, meas in measured]
            continue
        if not s["completed"]:
            why = (f"unpredictable: no request completes on this replica (its KV cache holds {rep.kv_blocks * rep.block_tokens:,} "
                   f"tokens; a request needs {isl + osl:,})")
            out += [(i, col, cfg, meas, None, why) for col, _, _, meas in measured]
            continue
        for col, attr, power, meas in measured:
            key, _, stat = attr.partition(".")
            v = s[key]
            v = v[stat or "mean"] if isinstance(v, dict) else v
            pred = None if v is None or not v > 0 else float(v) ** power
            if pred is not None and col in PER_GPU_METRICS:
                pred /= replicas * tp * pp * adp
            out.append((i, col, cfg, meas, pred, (r.get("note") or "").strip()))
    return out


# what estimate reports for each metric of the serving-benchmark schema, from its dict (the steady state's means)
_ESTIMATE_METRICS = {"requests_per_s": lambda e, io: e["requests_per_s"], "output_tokens_per_s": lambda e, io: e["output_tokens_per_s"],
                     "total_tokens_per_s": lambda e, io: e["output_tokens_per_s"] * io,
                     "mean_ttft_s": lambda e, io: e["ttft_s"], "median_ttft_s": lambda e, io: e["ttft_s"],
                     "mean_tpot_s": lambda e, io: e["tpot_s"], "median_tpot_s": lambda e, io: e["tpot_s"],
                     "decode_tokens_per_s": lambda e, io: 1.0 / e["tpot_s"],
                     "output_tokens_per_s_per_gpu": lambda e, io: e["output_tokens_per_s"],
                     "total_tokens_per_s_per_gpu": lambda e, io: e["output_tokens_per_s"] * io}


def estimate_closed_loops(rows: list[dict], file: str = "serving_bench.csv") -> dict[int, list[tuple]]:
    """Row index -> [(what, config, measured, predicted or None, note)] for the closed loops of the serving-benchmark
    schema (``max_concurrency`` clients, prompts not reused) priced as a user prices them: ``estimate --concurrency N``
    with the row's layout, precision, server flags, polling interval and attention-DP balance, at its mean lengths (the
    middle of a random range), the analytic steady state in place of the replay (``planner validate --via estimate``).
    A closed loop of one fixed length (a random dataset without a range ratio, replies not capped short of their
    length) is priced as a user who knows the benchmark's request count prices it, ``estimate --concurrency N --requests
    M``: simulated, since its clients run in waves that the steady state (clients out of step) does not have.
    Open loops, reused prompts and a run of no more prompts than clients (one burst, every prompt sent at once: no
    steady state, what `simulate --rate inf` prices) are not in it: the caller replays them (predict_bench_serve)."""
    from planner.serving.planspec import PlanSpec
    from planner.serving.predict import estimate
    from planner.serving.simulated import simulated_estimate

    out: dict[int, list[tuple]] = {}
    for i, r in enumerate(rows):
        where = f"{file}:{i + 2}"
        b = bench_run(r, where)
        if not b.clients or b.entries or b.n <= b.clients:
            continue
        mid = (1.0 + b.ratio) / 2.0 if b.ratio is not None else 1.0  # a random range's mean over the asked length
        isl, osl = _tokens(b.mean_in * mid), _tokens(b.mean_out * mid)
        gpus = b.replicas * b.tp * b.pp * b.adp
        one_length = bench_lengths(r, b) is None
        note = ("estimate --concurrency --requests: a closed loop of one length, simulated (means; a median is read as "
                "the mean)" if one_length else "estimate --concurrency: the steady state's means (a median is read as "
                "the mean)")
        try:
            eng, weights = bench_serve_engine(r, b, where)
            plan = PlanSpec(tp=b.tp, pp=b.pp, ep=b.ep, dp=b.replicas, attention_dp=b.adp, weights=weights, kv=b.kv)
            kw = dict(isl=isl, osl=osl, engine=eng.with_(prefix_caching=False), adp_balance=b.balance or None)
            e = (simulated_estimate(r["model"], r["hardware"], plan, clients=b.clients, requests=b.n, **kw) if one_length
                 else estimate(r["model"], r["hardware"], plan, concurrency=b.clients, **kw).to_dict())
        except PlannerError as err:
            out[i] = [(col, b.cfg, meas, None, f"unpredictable: {err}") for col, _, _, meas in b.measured]
            continue
        rows_out = []
        for col, _, _, meas in b.measured:
            if not e["fits"]:
                rows_out.append((col, b.cfg, meas, None, f"unpredictable: {e['reason']}"))
                continue
            v = _ESTIMATE_METRICS[col](e, (isl + osl) / osl)
            if v is None or not math.isfinite(v):  # a simulated loop in which no request completed
                rows_out.append((col, b.cfg, meas, None, "unpredictable: no request of the simulated loop completes"))
                continue
            rows_out.append((col, b.cfg, meas, v / gpus if col in PER_GPU_METRICS else v, note))
        out[i] = rows_out
    return out


ESTIMATE_MAX_NOTE = ("estimate --concurrency max: the steady state at the engine release's own defaults (not the "
                     "benchmark tool's sizing), its requests submitted in process as the benchmark's are (no API server)")


def estimate_max_throughput(model: str, hardware: str, tp: int, pp: int, ep: int, adp: int, weights: str, kv: str | None,
                            isl: int, osl: int, release: str) -> tuple[float | None, str]:
    """(output tokens/s per GPU, note) for a max-throughput row priced as a user asks for it: ``estimate --concurrency
    max`` at the row's layout, precision, engine release and lengths (``planner validate --via estimate``; ``kv`` None:
    the release's default KV format for those weights, as estimate picks it). The
    release's own defaults apply, as for a user who names it, not the limits the benchmark tool sized for the run
    (which the replay takes); its requests are submitted in process, as trtllm-bench's are, so no API server stands in
    front (calibrate.bench_settings.offline, as for the replay); (None, why) where the plan does not fit."""
    from planner.calibrate.bench_settings import offline
    from planner.serving.planspec import PlanSpec
    from planner.serving.predict import estimate

    try:
        e = estimate(model, hardware, PlanSpec(tp=tp, pp=pp, ep=ep, attention_dp=adp, weights=weights, kv=kv), isl=isl,
                     osl=osl, concurrency="max", engine=offline(release))
    except PlannerError as err:
        return None, f"unpredictable: {err}"
    if not e.fits:
        return None, f"unpredictable: {e.reason}"
    return e.output_tokens_per_s_per_gpu, ESTIMATE_MAX_NOTE


def _burst_row(r: dict, where: str) -> tuple[str, str | None, tuple[int, int, int, int], int, int]:
    """A trtllm-bench row's weights and KV format (as its run ran them), layout (tp, pp, ep, attention DP) and lengths."""
    from planner.calibrate.published_fit import row_parallel, row_precisions

    weights, kv = row_precisions(r)
    return weights, kv, row_parallel(r, where), int(_num(r, "isl", where)), int(_num(r, "osl", where))


def estimate_offline_bench(rows: list[dict], file: str = "perf_overview_1_2.csv",
                           lines: list[int] | None = None) -> list[tuple[int, str, str, float, float | None, str]]:
    """predict_offline_bench's rows (``trtllm-bench throughput`` bursts) priced by estimate_max_throughput instead of
    the replayed burst."""
    from planner.calibrate.published_fit import parallel_label, release_of

    out = []
    for i, r in enumerate(rows):
        where = f"{file}:{lines[i] if lines else i + 2}"
        weights, kv, (tp, pp, ep, adp), isl, osl = _burst_row(r, where)
        meas = _num(r, "output_tokens_per_s_per_gpu", where)
        cfg = f"{parallel_label(tp, pp, ep, adp)} {weights} {isl}/{osl} max"
        try:
            release = release_of(r)
        except PlannerError as e:
            out.append((i, "output_tokens_per_s_per_gpu", cfg, meas, None, f"{where}: {e}"))
            continue
        pred, note = estimate_max_throughput(r["model"], r["hardware"], tp, pp, ep, adp, weights, kv, isl, osl, release)
        out.append((i, "output_tokens_per_s_per_gpu", cfg, meas, pred, note))
    return out


# optional columns of the serving-benchmark schema: a server flag the run set, as vLLM names it -> the engine setting
SERVER_FLAGS = (("max_num_seqs", "max_seqs", int), ("max_num_batched_tokens", "max_batched_tokens", int),
                ("gpu_memory_utilization", "utilization", float), ("scheduler_recv_interval", "recv_interval", int),
                ("stream_interval", "stream_interval", int))


def server_settings(r: dict, where: str) -> dict:
    """The engine settings a serving-benchmark row's own server flags set (``max_num_seqs``,
    ``max_num_batched_tokens``, ``gpu_memory_utilization``, ``scheduler_recv_interval``: decode steps between the
    scheduler's polls for new requests, SGLang's --scheduler-recv-interval; ``stream_interval``: decode steps between a
    streamed reply's chunks, SGLang's --stream-interval and TensorRT-LLM's stream_interval;
    an empty or absent cell: the engine's default on the device). A PlannerError for a value that is not a positive
    number, or a memory fraction above 1."""
    out = {}
    for col, field, kind in SERVER_FLAGS:
        cell = (r.get(col) or "").strip()
        if not cell:
            continue
        v = _num(r, col, where)
        if not v > 0 or (kind is int and v != int(v)) or (field == "utilization" and v > 1.0):
            raise PlannerError(f"{where}: column {col!r} is {cell!r}; it takes a positive "
                               + ("whole number" if kind is int else "fraction of device memory, at most 1"))
        out[field] = kind(v)
    return out


def _with_mean(x: np.ndarray, mean: float, lo: int, hi: int) -> np.ndarray:
    """Whole-token lengths ``x`` scaled so their mean is ``mean`` (within a token), kept in [lo, hi]."""
    y = x.astype(float)
    for _ in range(4):
        y = np.clip(y * mean / max(float(y.mean()), 1e-9), lo, hi)
    return np.rint(y).astype(np.int64)


def predict_offline_bench(rows: list[dict], file: str = "perf_overview_1_2.csv",
                          lines: list[int] | None = None) -> list[tuple[int, str, str, float, float, str]]:
    """(row index, what, config, measured, predicted, note) for ``trtllm-bench throughput`` rows of the perf
    overviews: ``num_requests`` requests of the row's lengths queued at once through one replica of its layout (a
    blank count: planner.calibrate.bench_settings.perf_overview_requests, said in the note)."""
    from planner.calibrate.bench_settings import bench_engine, bench_limits, bench_sized, offline, perf_overview_requests
    from planner.calibrate.published_fit import parallel_label, release_of
    from planner.specs.loader import get_hardware, get_model

    out = []
    for i, r in enumerate(rows):
        where = f"{file}:{lines[i] if lines else i + 2}"
        weights, kv, (tp, pp, ep, adp), isl, osl = _burst_row(r, where)
        try:  # a model, device or engine the planner does not know: this row unpredicted, the file's others predicted
            release = release_of(r)
            m, hw = get_model(r["model"]), get_hardware(r["hardware"])
        except PlannerError as e:
            out.append((i, "output_tokens_per_s_per_gpu", "", _num(r, "output_tokens_per_s_per_gpu", where), None, f"{where}: {e}"))
            continue
        kv = kv or default_kv(weights, release, m)
        ranks = tp * adp  # trtllm-bench's --tp: attention-DP ranks hold a tensor-parallel share each
        limits = bench_limits(m, hw, ranks, pp, isl, osl, weights, kv)  # per rank; pp micro-batches in flight
        eng = bench_engine(r, release, bench_sized(offline(release), limits, isl), limits[2])
        if (r.get("num_requests") or "").strip():
            n, note = int(_num(r, "num_requests", where)), ""
        else:
            n, note = perf_overview_requests(isl, osl)
        cfg = f"{parallel_label(tp, pp, ep, adp)} {weights} {isl}/{osl} x{n}"
        meas = _num(r, "output_tokens_per_s_per_gpu", where)
        try:
            rep = replica_for(m, hw, tp=tp, pp=pp, ep=ep, adp=adp, weights=weights, kv=kv, engine=eng, max_input=isl + osl)
        except PlannerError as e:
            out.append((i, "output_tokens_per_s_per_gpu", cfg, meas, 0.0, f"does not fit: {e}"))
            continue
        res = Simulator([Pool(rep, 1)], generate(fixed_workload(isl, osl), n, rate=math.inf, seed=0)).run()
        tok = res.summary()["output_tokens_per_s"] or 0.0
        out.append((i, "output_tokens_per_s_per_gpu", cfg, meas, tok / (tp * pp * adp), note))
    return out
