"""Many estimate points of one plan in one vectorized pass (studies sweep isl, osl, batch and concurrency).

``estimate`` prices one point per call: it builds the plan arrays, the cost model and the memory model, then two
cost-model steps. A study of 1,000 points over the same (model, hardware, engine, plan) repeats the first part
1,000 times. ``estimate_points`` does that part once and sends every point's (isl, osl, running batch) through
``inflight`` / ``static_batch`` as one array, so the numbers come from the same serving model as ``estimate``.

It covers plans whose techniques are all of the steady-state kind (chunked prefill, speculation with a one-layer
draft head, KV eviction, prefix caching, context extension, context and attention parallelism); ``is_plain``
says which. Anything else (LoRA, draft models, offload, prompt compression, sparse attention, ...) and any point
``estimate`` would refuse comes back as None, for the caller to price with ``estimate`` itself.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from planner.cap.accuracy import accuracy as accuracy_of
from planner.cap.accuracy import model_terms
from planner.costmodel.collectives import host_link_bytes_per_s
from planner.costmodel.memory import kv_bytes_per_seq, max_context
from planner.serving.batching import Techniques, inflight, static_batch
from planner.serving.predict import PlanSpec, eviction_of, fitting, on_demand_tokens, prepare, recompute_tokens, running
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware
from planner.specs.model import Model

# PlanSpec fields this path prices; every other field must keep its default
HANDLED = frozenset({"tp", "pp", "ep", "dp", "weights", "kv", "activations", "attention_dp", "cp", "chunk_tokens",
                     "spec_k", "spec_alpha", "spec_auto", "eviction", "prefix_hit_tokens", "context_extension"})
_DEFAULTS = PlanSpec()

# the outputs of ``Estimate.to_dict()`` a point carries here (nested keys joined by '.')
OUTPUTS = ("gpus", "fits", "ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu",
           "requests_per_s", "max_context_tokens", "max_concurrency", "accuracy.score", "memory.weights_bytes",
           "memory.kv_cache_bytes", "cost.usd_per_hour", "cost.usd_per_million_output_tokens",
           "plan.batch_or_concurrency", "plan.techniques.spec_k_used")


def is_plain(plan: PlanSpec) -> bool:
    """Whether every technique of ``plan`` is one this path prices."""
    return all(getattr(plan, f.name) == getattr(_DEFAULTS, f.name) for f in fields(PlanSpec) if f.name not in HANDLED)


def _counts(batching: str, batch: list, concurrency: list, capped: np.ndarray, demand: np.ndarray, dp: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(requested n over the deployment, n per replica, running n per replica, ok) per point, as ``estimate`` picks
    them (predict._admit: the dp replicas share the clients evenly, an on-demand engine runs up to ``demand`` of
    them); ok is False where it would refuse."""
    k = len(batch)
    n, rep, run, ok = np.zeros(k, np.int64), np.zeros(k), np.zeros(k), np.ones(k, bool)
    for i in range(k):
        b, c, cap = batch[i], concurrency[i], int(capped[i])
        if batching == "static" and b is not None and b >= 1 and b % dp == 0:
            n[i], rep[i], run[i] = b, b // dp, b // dp
        elif batching == "inflight" and (c is None or c == "max"):
            n[i], rep[i], run[i] = cap * dp, cap, cap
        elif batching == "inflight" and isinstance(c, (int, np.integer)) and c >= dp:
            n[i] = int(c)
            rep[i] = n[i] / dp
            run[i] = running(rep[i], cap, int(demand[i]))
        else:
            ok[i] = False  # estimate answers (or refuses) these itself
    return n, rep, run, ok


def _timing(cm, pg, plan: PlanSpec, hw, cap, evict, batching: str, n, run, isl, osl, kv_per_token: float, recompute=0.0):
    """The serving model over the points (one plan row per point): estimate's static or in-flight steady state."""
    if batching == "static":
        return static_batch(cm, pg, n, isl, osl)
    tech = Techniques(chunk_tokens=plan.chunk_tokens, spec_k=plan.spec_k, spec_alpha=plan.spec_alpha,
                      offload_fraction=0.0, host_bw_bytes_per_s=host_link_bytes_per_s(hw),
                      kv_budget_tokens=evict[1] if evict else np.inf, prefix_hit_tokens=plan.prefix_hit_tokens,
                      spec_auto=plan.spec_auto, draft=None, compress_ratio=cap.ratio,
                      compress_s=cap.compress_s(cm, pg, isl), adapter_load_s=0.0, recompute_tokens=recompute)
    return inflight(cm, pg, n, isl, osl, tech, max_running=run, kv_bytes_per_token=kv_per_token, breakdown=False)


def estimate_points(model: str | Model, hardware: str | Hardware, plan: PlanSpec, *, isl, osl, batching: str = "inflight",
                    batch=None, concurrency=None, engine: Engine | str = "trtllm") -> list[dict | None]:
    """``estimate`` of one plan at many points: ``isl``, ``osl``, ``batch`` and ``concurrency`` are per-point
    sequences (batch/concurrency entries as ``estimate`` takes them). Each point gets a dict with the keys of
    ``OUTPUTS`` laid out as in ``Estimate.to_dict()``, or None where ``estimate`` itself must answer."""
    isl, osl = np.asarray(isl, np.int64), np.asarray(osl, np.int64)
    k = len(isl)
    batch = list(batch) if batch is not None else [None] * k
    concurrency = list(concurrency) if concurrency is not None else [None] * k
    if not is_plain(plan) or k == 0:
        return [None] * k
    if plan.spec_k < 0 or not 0.0 <= plan.spec_alpha < 1.0 or plan.chunk_tokens < 0 or plan.prefix_hit_tokens < 0 or plan.cp < 1:
        return [None] * k  # estimate's own message
    # the same start as estimate (it refuses what estimate refuses); no technique of a plain plan reads isl or osl
    m, hw, engine, kv, _, p, cap, cm, mem = prepare(model, hardware, plan, int(isl[0]), int(osl[0]), engine)
    evict = eviction_of(plan)
    adp = plan.attention_dp
    seq = isl + osl if evict is None else np.minimum(isl + osl, evict[1])
    kv_cap = max(float(mem.kv_capacity_bytes[0]), 0.0)
    per_seq = np.broadcast_to(kv_bytes_per_seq(m, p, seq, engine.kv_block_tokens, engine), (k,)).astype(float)
    fit_n = fitting(per_seq, kv_cap, adp)
    seats = engine.max_seqs * adp
    capped = np.minimum(fit_n, seats)
    # an engine that grows sequences on demand runs more than fit at full length in a loop of more clients
    # (predict.on_demand_tokens): as many as the cache holds at their mean length
    held = on_demand_tokens(engine, isl, osl)
    per_seq_mean = per_seq
    demand = capped
    if held is not None and evict is None:
        per_seq_mean = np.broadcast_to(kv_bytes_per_seq(m, p, held, engine.kv_block_tokens, engine), (k,)).astype(float)
        demand = np.where(fit_n < seats, np.maximum(np.minimum(fitting(per_seq_mean, kv_cap, adp), seats), capped), capped)
    limit_ctx = int(int(max_context(m, mem, p, cap.extension_factor)[0]) * cap.ratio)
    n, rep, run, ok = _counts(batching, batch, concurrency, capped, demand, max(int(plan.dp), 1))
    ok &= (isl >= 1) & (osl >= 1)
    weights_b = float(mem.weights_bytes[0])
    kv_per_token = float(mem.kv_full_per_token[0] + mem.kv_swa_per_token[0])
    kv_need = np.where(run <= fit_n, per_seq, per_seq_mean) * np.maximum(run, 0) / adp
    other = float(mem.activation_bytes[0] + mem.runtime_bytes[0]) + cap.extra_bytes()
    usable = float(mem.usable_bytes[0])
    fits = (run >= 1) & (weights_b + kv_need + other <= usable + 1e-6 * usable)
    go = np.nonzero(ok & (fits | ((run >= 1) & (batching == "static"))))[0]  # estimate times these
    ttft, tpot, e2e, tok, rps = (np.full(k, np.nan) for _ in range(5))
    spec = np.full(k, float(plan.spec_k))
    if len(go):
        again = recompute_tokens(engine, rep[go], run[go], demand[go], seats, osl[go])  # prefills preemptions repeat
        t = _timing(cm, p.take(np.zeros(len(go), np.int64)), plan, hw, cap, evict, batching, rep[go], run[go], isl[go],
                    osl[go], kv_per_token, again)
        ttft[go], tpot[go], e2e[go] = t.ttft_s, t.tpot_s, t.e2e_s
        tok[go], rps[go] = t.output_tokens_per_s * plan.dp, t.requests_per_s * plan.dp
        if batching != "static":
            spec[go] = np.broadcast_to(np.asarray(t.spec_k, float), (len(go),))
    gpus = plan.gpus
    price = hw.price.usd_per_hour if hw.price else None
    scores: dict = {}
    out: list[dict | None] = []
    for i in range(k):
        if not ok[i]:
            out.append(None)
            continue
        ev = (evict[0], evict[1], int(isl[i] + osl[i])) if evict else None
        if ev not in scores:
            scores[ev] = accuracy_of(plan.weights, kv, task="general", eviction=ev, **model_terms(m),
                                     **cap.accuracy_knobs())["score"]
        f, tk = bool(fits[i]), float(tok[i])
        out.append({
            "gpus": gpus, "fits": f, "ttft_s": float(ttft[i]), "tpot_s": float(tpot[i]), "e2e_latency_s": float(e2e[i]),
            "output_tokens_per_s": tk, "output_tokens_per_s_per_gpu": tk / gpus if gpus else float("nan"),
            "requests_per_s": float(rps[i]), "max_context_tokens": limit_ctx, "max_concurrency": int(capped[i]) * plan.dp,
            "accuracy": {"score": scores[ev]},
            "memory": {"weights_bytes": weights_b, "kv_cache_bytes": float(kv_need[i])},
            "cost": {"usd_per_hour": price * gpus if price else None,
                     "usd_per_million_output_tokens": (price * gpus / (tk * 3600) * 1e6) if price and f and tk > 0 else None},
            "plan": {"batch_or_concurrency": int(n[i]), "techniques": {"spec_k_used": float(spec[i])}},
        })
    return out


def pick(d: dict, key: str):
    """One of ``OUTPUTS`` ('a.b.c') from an estimate dict."""
    for part in key.split("."):
        d = d[part]
    return d


def same(a: dict, b: dict, rel: float = 1e-9) -> bool:
    """Whether two estimate dicts agree on every one of ``OUTPUTS`` (floats to ``rel``; NaN equals NaN)."""
    for key in OUTPUTS:
        x, y = pick(a, key), pick(b, key)
        if isinstance(x, float) or isinstance(y, float):
            if x is None or y is None:
                if x is not y:
                    return False
            elif not (np.isnan(x) and np.isnan(y)) and abs(x - y) > rel * max(abs(x), abs(y)):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True
