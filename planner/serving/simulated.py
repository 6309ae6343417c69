"""``estimate`` through the serving event simulator: fixed-length requests at an arrival rate (``--rate``), or from a
closed loop of clients that each send the next request when the last one ends (``--concurrency N --requests M``, a
benchmark's ``--max-concurrency N --num-prompts M``). The analytic steady state (planner.serving.predict.estimate)
prices the plan; the simulator replays the run request by request, which a steady state cannot: a burst's fill and
drain, a queue that grows past the plan's throughput, and the waves a closed loop of identical lengths keeps (clients
that start together finish together and send their next prompts together). Library callers reach it through
planner.api; validation (``--via estimate``) through this module, which imports nothing above the serving layer."""

from __future__ import annotations

import math

import numpy as np

from planner.errors import PlannerError
from planner.serving.planspec import PlanSpec
from planner.serving.predict import adp_balance_for, estimate, plan_budget_beside_prompt
from planner.specs.engine import Engine, get_engine
from planner.specs.hardware import Hardware
from planner.specs.loader import get_model
from planner.specs.model import Model


def simulated_estimate(
    model: str | Model,
    hardware: str | Hardware,
    plan: PlanSpec | None = None,
    *,
    rate: float | None = None,
    clients: int | None = None,
    isl: int = 1024,
    osl: int = 256,
    engine: Engine | str = "trtllm",
    requests: int = 1000,
    seed: int = 0,
    progress=None,
    adp_balance: int | None = None,
) -> dict:
    """``estimate``'s keys with the simulated means (``ttft_s`` mean TTFT, ``tpot_s`` mean inter-token latency,
    ``e2e_latency_s``, achieved throughput) and a ``serving`` block with percentiles and utilization, for ``requests``
    requests of ``isl`` / ``osl`` tokens each on ``plan.dp`` replicas (least-outstanding routing). Exactly one of
    ``rate`` (requests/s, Poisson arrivals; ``math.inf``: all at once) and ``clients`` (a closed loop of that many
    clients over the whole deployment: the first ``clients`` requests arrive at once, each later one when a request
    ends; independent prompts, so the prefix cache serves none but the plan's shared prefix). ``adp_balance``: with
    attention DP, hold new prompts until every rank can take one, at most that many decode steps. The plan's serving
    techniques are replayed as `planner simulate` replays them; those it does not replay are refused
    (unsimulated_flags)."""
    from planner.serving.run import plan_techniques, request_adapters
    from planner.serving.simulator import Pool, Scheduler, Simulator, replica_for
    from planner.serving.workload import fixed_workload, generate, shared_closed_loop

    plan, asked = plan or PlanSpec(), engine
    if (rate is None) == (clients is None):
        raise PlannerError("a simulated estimate takes an arrival rate or a number of clients in a closed loop, not both")
    if rate is not None and not rate > 0:
        raise PlannerError(f"--rate must be positive, got {rate:g}")
    if clients is not None:
        check_closed_loop(clients, requests, plan.dp)
    left_out = unsimulated_flags(plan)
    if left_out:
        raise PlannerError(f"a simulated estimate (--rate, or --concurrency with --requests) does not replay "
                           f"{', '.join(left_out)}: the steady state (without --rate and --requests) prices "
                           + ("them" if len(left_out) > 1 else "it"))
    base = estimate(model, hardware, plan, isl=isl, osl=osl, batching="inflight", concurrency="max", engine=engine,
                    adp_balance=adp_balance)
    if base.max_concurrency < 1:
        d = base.to_dict()
        d["serving"] = None
        d["notes"] = d["notes"] + ["not simulated: no sequence of isl + osl tokens fits"]
        return d
    m = get_model(model) if isinstance(model, str) else model
    # an engine that runs prompts whole needs room in its step budget for a prompt beside the running decodes: priced
    # with the budget raised to that, as estimate's steady state is (its note says so), not at a default that would
    # admit one prompt at a time
    eng = get_engine(engine)
    balance = adp_balance_for(eng, plan.attention_dp, adp_balance)  # the request's (base checked it), else the engine's
    need = plan_budget_beside_prompt(eng, isl, base.plan["running"] / max(plan.dp, 1) / max(plan.attention_dp, 1), plan)
    if need is not None:
        engine = eng = eng.set_by_user(max_batched_tokens=int(math.ceil(need)))
    if clients is not None and not plan.shared_prefix:
        # independent random prompts: nothing of one is another's, so the prefix cache serves none (a prefix every
        # prompt starts with, --shared-prefix, it serves)
        engine = eng.with_(prefix_caching=False)
    reqs = generate(fixed_workload(isl, osl, shared_prefix=plan.shared_prefix), requests,
                    rate=math.inf if clients is not None else rate, seed=seed)
    if clients is not None:
        reqs = shared_closed_loop(reqs, clients)
    # the serving techniques the simulator replays, as `planner simulate` takes them: speculation (the scheduler's
    # drafts and acceptance, a draft model's steps), a chunked-prefill budget, context parallelism, context extension,
    # prompt compression (prompts enter shortened) and sparse attention, expert-parallel load balancing and adapters
    run_notes: list[str] = []
    techniques, max_input = plan_techniques(plan, reqs, run_notes, float(isl + osl), cp=plan.cp,
                                            draft_model=plan.draft_model, k=plan.spec_k, alpha=plan.spec_alpha,
                                            context_extension=plan.context_extension,
                                            prompt_compression=plan.prompt_compression,
                                            sparse_attention=plan.sparse_attention)
    chunk = int(plan.chunk_tokens)
    sched = Scheduler(adp_balance=balance or None, spec_k=int(plan.spec_k), spec_alpha=float(plan.spec_alpha),
                      max_batched_tokens=chunk or None, chunked_prefill=True if chunk else None)
    sched.check()
    # LoRA adapters: each request's adapter drawn as `simulate --lora` draws it, the resident ones cached per replica
    lora = request_adapters(reqs, plan.lora, plan.lora_resident, plan.lora_popularity, seed, None)
    rep = replica_for(m, hardware, tp=plan.tp, pp=plan.pp, ep=plan.ep, adp=plan.attention_dp, weights=plan.weights,
                      kv=plan.kv_format(engine, m), activations=plan.activations, engine=engine, max_input=max_input,
                      min_prompt=float(reqs.input_tokens.min()),  # a shared block pool's windowed layers at their window
                      sched=sched, techniques=techniques, eplb=plan.eplb, lora=lora)
    res = Simulator([Pool(rep, plan.dp)], reqs, progress=progress).run()
    s = res.summary()
    # memory and the per-op breakdown at the batch the replicas actually ran (time-averaged)
    batch = max(1, int(round(float(np.mean(res.replica_mean_batch)))))
    # the replicas' mean batch, over the whole deployment (estimate's clients count every replica)
    d = estimate(m, hardware, plan, isl=isl, osl=osl, batching="inflight", concurrency=min(batch * plan.dp, base.max_concurrency),
                 engine=engine).to_dict()
    d["max_concurrency"], d["concurrency_cap"] = base.max_concurrency, base.concurrency_cap
    tok = s["output_tokens_per_s"] or float("nan")
    d.update(ttft_s=s["ttft_s"]["mean"], tpot_s=s["tpot_s"]["mean"] if s["tpot_s"]["mean"] is not None else float("nan"),
             e2e_latency_s=s["e2e_latency_s"]["mean"], output_tokens_per_s=tok, output_tokens_per_s_per_gpu=tok / plan.gpus,
             requests_per_s=s["requests_per_s"])
    d["plan"] = {**d["plan"], "batching": "simulated", "batch_or_concurrency": batch * plan.dp, "max_seqs": rep.max_seqs,
                 "rate": rate, "clients": clients}
    price = d["cost"]["usd_per_hour"]
    own = d["cost"].get("usd_per_hour_owned")
    d["cost"] = {**d["cost"], "usd_per_million_output_tokens": price / (tok * 3600) * 1e6 if price and tok > 0 else None,
                 "usd_per_million_output_tokens_owned": own / (tok * 3600) * 1e6 if own and tok > 0 else None}
    arrivals = "closed loop" if clients is not None else "burst" if math.isinf(rate) else "poisson"
    d["serving"] = {"rate": rate, "clients": clients, "requests": requests, "seed": seed, "arrivals": arrivals,
                    **{k: s[k] for k in ("ttft_s", "tpot_s", "e2e_latency_s", "requests_per_s", "output_tokens_per_s",
                                         "utilization", "queue", "preemptions", "completed", "duration_s")},
                    "simulator": {"events": res.events, "wall_s": res.wall_s}}
    # the plan's own notes (formats, front end), not the closed loop's that pricing the memory at the mean batch adds
    d["notes"] = list(base.notes) + run_notes + _run_notes(base, m, hardware, plan, isl, osl, asked, adp_balance, rate,
                                                           clients, requests, d)
    return d


_FLAG_OF = {"spec_k": "--spec auto", "finetune_tpot_s": "--finetune-tpot"}
# the techniques simulated_estimate replays (as `planner simulate` does); speculation with a fixed draft length
SIMULATED_TECHNIQUES = frozenset({"chunk_tokens", "spec_k", "spec_alpha", "draft_model", "shared_prefix", "cp",
                                  "context_extension", "prompt_compression", "sparse_attention", "eplb", "lora",
                                  "lora_resident", "lora_popularity"})


def unsimulated_flags(plan: PlanSpec) -> list[str]:
    """The flags of ``plan``'s serving techniques that simulated_estimate does not replay (KV offload and eviction,
    prefix-cache hits, CPU-assisted MoE, an intra-GPU split, co-served fine-tuning, shared variants, weight streaming,
    an adaptive draft length), as the user gave them; empty where it replays the whole plan."""
    plain, asked = PlanSpec().techniques(), plan.techniques()
    flags = [_FLAG_OF.get(k, "--" + k.replace("_", "-")) for k, v in asked.items()
             if v != plain[k] and (k not in SIMULATED_TECHNIQUES or (k == "spec_k" and plan.spec_auto))]
    return flags + (["--weight-offload"] if plan.weight_offload else [])


def check_closed_loop(clients: int, requests: int, dp: int) -> None:
    """A PlannerError for a closed loop that cannot run: no client, fewer clients than replicas, or no request."""
    if clients < 1 or requests < 1:
        raise PlannerError(f"a closed loop needs at least one client and one request (got --concurrency {clients}, "
                           f"--requests {requests})")
    if clients < dp:
        raise PlannerError(f"--concurrency {clients} leaves some of the {dp} replicas (--dp) without a client: give at "
                           f"least {dp}")


def _run_notes(base, m, hardware, plan, isl, osl, engine, adp_balance, rate, clients, requests, d) -> list[str]:
    """What the simulated run was, and how it sits beside the steady state a user without --rate / --requests gets."""
    if clients is not None:
        run = min(clients, requests)
        notes = [f"simulated {requests} requests from {run} clients in a closed loop, every request {isl:,} prompt and "
                 f"{osl:,} output tokens (a benchmark's --max-concurrency {clients} --num-prompts {requests} on a random "
                 "dataset of one length, --ignore-eos); TTFT/TPOT are means, percentiles under 'serving'"]
        if run >= 2 * plan.dp:  # the steady state of as many clients, for comparison
            eng = get_engine(engine) if plan.shared_prefix else get_engine(engine).with_(prefix_caching=False)
            steady = estimate(m, hardware, plan, isl=isl, osl=osl, batching="inflight", concurrency=run, engine=eng,
                              adp_balance=adp_balance)
            if steady.fits:
                notes.append(f"clients that start together finish together and send their next prompts together, so a "
                             f"loop of one length runs in waves whose prompts queue behind each other: mean TTFT "
                             f"{d['ttft_s'] * 1e3:,.1f} ms here, {steady.ttft_s * 1e3:,.1f} ms in the staggered steady "
                             f"state (--concurrency {run} without --requests: replies of spread lengths, one prompt "
                             f"joining the running decodes at a time), which gives {steady.output_tokens_per_s:,.4g} "
                             "output tokens/s")
        return notes
    arrivals = "all at once" if math.isinf(rate) else f"at {rate:g} req/s (Poisson)"
    notes = [f"simulated {requests} requests {arrivals}; TTFT/TPOT are means, percentiles under 'serving'"]
    if math.isinf(rate):
        notes.append(f"a burst: the throughput is over the whole run, its fill and drain included, as a throughput "
                     f"benchmark of {requests} requests measures it (--requests sets the count); --concurrency max is "
                     f"the steady state, {base.output_tokens_per_s:.4g} output tokens/s")
    elif rate > base.requests_per_s:  # past the steady state at the most sequences memory and the engine admit
        notes.append(f"{rate:g} req/s is more than the plan serves ({base.requests_per_s:.3g} req/s at its max "
                     f"concurrency): the backlog grows through the run, in the queue or the running batch, so TTFT "
                     f"and TPOT depend on its length ({requests} requests; --requests sets it)")
    return notes
