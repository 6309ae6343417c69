"""Static batching and the in-flight (continuous) batching steady state, vectorized over plans.

This is the one serving model of a steady workload: ``estimate``, ``plan`` (search/evaluate.py), ``capacity``
and the studies all price in-flight batching through ``inflight``, and the event simulator prices its steps
through the same cost model. Each serving technique is written here once, as a term of the steady state:
chunked prefill, speculative decoding (a one-layer draft head or a draft model, with k fixed or chosen per
batch for the most tokens/s), prompt compression (fewer prompt tokens, plus the compressor's own time), KV
offload to host memory, KV eviction to a token budget, prefix caching, LoRA adapter loads on a cache miss (the
adapter GEMMs are a cost-model op), the engine's per-request overhead, and closed-loop clients beyond what the
engine admits (they queue). Sparse attention and context parallelism are
plan properties the cost model applies (costmodel/sparse.py, costmodel/step.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.costmodel.plans import PlanArrays
from planner.costmodel.step import CostModel, Step, StepCost, micro_batches
from planner.serving.shared_prefix import read_saving

DECODE_POINTS = 8  # midpoint rule over the decode contexts; step time is piecewise linear in context
# adaptive speculation (SmartSpec, arXiv 2406.14066): k is chosen per batch among 0..SPEC_AUTO_MAX_K draft tokens
SPEC_AUTO_MAX_K = 8


@dataclass
class Techniques:
    """Serving techniques of a steady state; every field may be a per-plan array (numpy broadcasting)."""

    chunk_tokens: np.ndarray | float = 0.0  # chunked-prefill token budget per step; 0 = a prompt in one step
    spec_k: np.ndarray | float = 0.0  # draft tokens per speculative step (one-layer head: MTP / EAGLE style)
    spec_alpha: np.ndarray | float = 0.0  # per-token acceptance probability
    offload_fraction: np.ndarray | float = 0.0  # share of the decode KV read that comes over the host link
    host_bw_bytes_per_s: float = np.inf  # achievable host-link bandwidth (KV offload reads)
    kv_budget_tokens: np.ndarray | float = np.inf  # KV eviction keeps at most this many tokens per sequence
    prefix_hit_tokens: np.ndarray | float = 0.0  # prompt tokens found in the prefix cache (not recomputed)
    # the hits are one prefix the running sequences share, read once a decode step while it fits the device's cache:
    # SharedPrefix.read (serving/shared_prefix.py); None: every sequence's read of its hits is priced
    shared_read: tuple | None = None
    spec_auto: np.ndarray | bool = False  # choose k per row for the most tokens/s at its batch (spec_k ignored there)
    draft: object | None = None  # a draft model (serving/draft.py: DraftModel); None: a one-layer head in the target
    compress_ratio: np.ndarray | float = 1.0  # prompt compression: original / compressed prompt tokens
    compress_s: np.ndarray | float = 0.0  # device seconds the compressor spends on one original prompt
    # LoRA adapters (costmodel/lora.py): expected seconds a request waits for its adapter over the host link (miss
    # rate x one load) before its prefill; the adapter GEMMs of every step are an op of the cost model (cm.lora)
    adapter_load_s: np.ndarray | float = 0.0
    # attention-DP balancing (TensorRT-LLM attention_dp_config enable_balance, timeout_iters): new prompts are held until
    # every rank can take one, at most this many decode steps; 0: they enter as they arrive; None: the engine's
    # (CostModel.adp_balance: Engine.attention_dp_balance)
    adp_balance: float | None = None
    # prompt tokens a request's prefill is computed again for, on average: an engine that admits greedily on demand
    # with clients queued (predict: recompute_tokens) preempts the prompts it over-admits and prefills them again
    recompute_tokens: np.ndarray | float = 0.0

    def tokens_per_step(self) -> np.ndarray:
        """Tokens a sequence emits per decode step: (1 - a^(k+1)) / (1 - a), 1 without speculation."""
        k, a = np.asarray(self.spec_k, float), np.asarray(self.spec_alpha, float)
        return np.where(k > 0, (1 - a ** (k + 1)) / np.maximum(1 - a, 1e-9), 1.0)


@dataclass
class Timing:
    ttft_s: np.ndarray  # includes the engine's per-request overhead and any wait for admission
    tpot_s: np.ndarray  # mean time between output tokens after the first
    e2e_s: np.ndarray
    output_tokens_per_s: np.ndarray  # per replica
    requests_per_s: np.ndarray  # per replica
    concurrency: np.ndarray  # sequences running (admitted) per replica
    queue_wait_s: np.ndarray  # mean wait before admission (closed-loop clients beyond what the engine admits)
    prefill: StepCost | None  # a representative prefill step (for the breakdown)
    decode: StepCost | None  # a representative decode step
    spec_k: np.ndarray | float = 0.0  # draft tokens per step used (the chosen ones under adaptive speculation)
    shared_read_tokens: np.ndarray | float = 0.0  # tokens a sequence's decode reads came to less (a shared prefix)
    poll_wait_s: np.ndarray | float = 0.0  # mean wait for the scheduler's next poll past one step (Engine.recv_interval)
    balance_wait_s: np.ndarray | float = 0.0  # mean hold of a prompt for attention-DP balancing (Techniques.adp_balance)
    api_thread_busy: np.ndarray | float = 0.0  # share of the API server's thread the run needs (api_thread; > 1: its pace)


def model_prompt_tokens(isl, compress_ratio) -> np.ndarray:
    """Prompt tokens the model sees: ceil(isl / ratio) under prompt compression (the compressor reads all isl)."""
    return np.ceil(np.asarray(isl, float) / np.asarray(compress_ratio, float))


def prompt_chunk(chunk_tokens, new_tok) -> np.ndarray:
    """Prompt tokens one step carries: the whole prompt without a chunk budget (0), else at most the budget."""
    B = np.asarray(chunk_tokens, float)
    return np.where(B > 0, np.minimum(B, new_tok), new_tok)


def _mean_decode(cm: CostModel, plans: PlanArrays, seqs, ctx0, n_steps) -> tuple[np.ndarray, np.ndarray, StepCost]:
    """Mean step latency and mean stage time over ``n_steps`` decode steps from context ctx0+1."""
    n_steps = np.maximum(np.asarray(n_steps, float), 1.0)
    shape = np.broadcast_shapes(plans.tp.shape, np.shape(seqs), np.shape(ctx0), np.shape(n_steps))
    frac = (np.arange(DECODE_POINTS) + 0.5) / DECODE_POINTS
    # every midpoint context in one step call: a leading axis of DECODE_POINTS broadcasts through the cost model
    ctx = np.asarray(ctx0, float) + 1 + frac.reshape((-1,) + (1,) * len(shape)) * n_steps
    sc = cm.step(plans, Step(decode_seqs=seqs, decode_ctx=ctx))
    lat = np.broadcast_to(sc.time_s, (DECODE_POINTS,) + shape).mean(axis=0)
    stage = np.broadcast_to(sc.stage_time_s, (DECODE_POINTS,) + shape).mean(axis=0)
    mid = cm.step(plans, Step(decode_seqs=seqs, decode_ctx=ctx[DECODE_POINTS // 2]))  # the breakdown's representative step
    return lat, stage, mid


def _request_overhead_s(cm: CostModel) -> float:
    return float(getattr(cm.engine, "request_overhead_s", 0.0) or 0.0)


def static_batch(cm: CostModel, plans: PlanArrays, batch, isl, osl) -> Timing:
    """All ``batch`` requests start together: one prefill, then ``osl - 1`` decode steps.

    Under pipeline parallelism the batch is split into up to pp micro-batches that keep the stages
    busy (a decode round costs pp stage times of batch/pp sequences); a batch smaller than pp splits
    into one micro-batch per request, and a single request (llama.cpp's layer split at batch 1) walks
    the stages one after another with nothing to overlap.
    """
    batch, isl, osl = (np.asarray(x, float) for x in (batch, isl, osl))
    pp = plans.pp.astype(float)
    micros = micro_batches(pp, batch)
    micro = np.maximum(batch / micros, 1.0)
    pf = cm.step(plans, Step(prefill_seqs=micro, prefill_tokens=isl))
    # prefill of the micro-batches streams through the pipe: the first crosses every stage (pf.time_s), each
    # further one leaves the last stage one stage time later
    ttft = pf.time_s + (micros - 1) * pf.stage_time_s + _request_overhead_s(cm)
    lat, stage, mid = _mean_decode(cm, plans, micro, isl, osl - 1)
    # a decode round: each micro-batch passes every stage (lat); with m of them in the pipe the busiest stage serves
    # all m in turn (m x stage), so a single request pays one pass, not pp stage times
    tpot = np.maximum(lat, micros * stage)
    e2e = ttft + (osl - 1) * tpot
    tokens = batch * osl
    return Timing(ttft, tpot, e2e, tokens / e2e, batch / e2e, batch, np.zeros_like(ttft), pf, mid)


def inflight(cm: CostModel, plans: PlanArrays, concurrency, isl, osl, tech: Techniques | None = None, *,
             max_running=None, kv_bytes_per_token=None, breakdown: bool = True) -> Timing:
    """The steady state (``_steady``); under adaptive speculation, the k in 0..SPEC_AUTO_MAX_K that gives each row
    the most output tokens/s at its batch (goodput-optimal k, SmartSpec style: long drafts pay at small batches,
    where decode is memory bound, and cost at large ones, where the verify step turns compute bound)."""
    tech = tech or Techniques()
    auto = np.asarray(tech.spec_auto, bool)
    kw = dict(max_running=max_running, kv_bytes_per_token=kv_bytes_per_token, breakdown=breakdown)
    if not auto.any():
        return _steady(cm, plans, concurrency, isl, osl, tech, **kw)
    best = None
    for k in range(SPEC_AUTO_MAX_K + 1):
        t = _steady(cm, plans, concurrency, isl, osl, replace(tech, spec_k=np.where(auto, k, tech.spec_k)), **kw)
        if best is None:
            best = t
            continue
        better = t.output_tokens_per_s > best.output_tokens_per_s * (1 + 1e-9)
        merged = {f: np.where(better, getattr(t, f), getattr(best, f)) for f in
                  ("ttft_s", "tpot_s", "e2e_s", "output_tokens_per_s", "requests_per_s", "concurrency", "queue_wait_s", "spec_k",
                   "shared_read_tokens", "api_thread_busy")}
        steps = (t.prefill, t.decode) if np.all(better) else (best.prefill, best.decode)
        best = Timing(**merged, prefill=steps[0], decode=steps[1])
    return best


def _steady(cm: CostModel, plans: PlanArrays, concurrency, isl, osl, tech: Techniques, *,
            max_running=None, kv_bytes_per_token=None, breakdown: bool = True) -> Timing:
    """Steady state of continuous batching with ``concurrency`` clients in a closed loop.

    At most ``max_running`` sequences run at once (what KV memory and the engine's batch cap admit); the other
    clients wait in the queue, so their TTFT includes the wait and TPOT stops growing once the batch is capped.
    Each step every running sequence emits E tokens (E = 1 without speculation); on average running x E / osl
    sequences finish per step and as many new prompts are prefilled in the same step (in-flight batching mixes
    prefill and decode). The throughput pays the mean step over both kinds; a client's TPOT pays only the other
    clients' prompt steps (its own prompt comes before its first token). TTFT is the latency of the steps that carry
    one whole prompt (or its chunks) beside the running decodes, plus the engine's per-request overhead and the queue
    wait.
    ``kv_bytes_per_token`` (per device) prices KV offload reads over the host link.
    """
    c, osl = (np.asarray(x, float) for x in (concurrency, osl))
    isl = model_prompt_tokens(isl, tech.compress_ratio)
    run = c if max_running is None else np.minimum(c, np.maximum(np.asarray(max_running, float), 1.0))
    pp, adp = plans.pp.astype(float), plans.adp.astype(float)
    k = np.asarray(tech.spec_k, float)
    E = tech.tokens_per_step()
    hit = np.minimum(np.asarray(tech.prefix_hit_tokens, float), isl - 1.0)
    new_tok = isl - hit  # prompt tokens each new request computes
    micro = np.maximum(run / pp, 1.0)
    micros = micro_batches(pp, run)  # a lone request walks the stages in turn: its round is one pass
    new = micro * E / osl  # prompts started per step per micro-batch
    ctx = np.minimum(isl + osl / 2.0, tech.kv_budget_tokens)  # decode attends over the kept tokens only
    # a prefix the running sequences share is read once a step while it and a wave of attention fit the device's cache
    # (the simulator's rule): their KV reads come to that many tokens a sequence less
    saved = read_saving(tech.shared_read, hit, micro, ctx)
    rctx = ctx - saved
    # a prompt enters whole, or in ceil(new_tok / B) chunks of B tokens, one chunk per step beside the decodes
    chunk = prompt_chunk(tech.chunk_tokens, new_tok)
    n_chunks = np.ceil(new_tok / chunk)
    # Under attention data parallelism the ranks step together, so a prompt on one rank holds every rank's decodes for
    # its step, and a prompt step carries the prompts there are, one a rank, in parallel. TensorRT-LLM's attention-DP
    # balancing lines one up for every rank on purpose (the hold below prices its wait), as the offline benchmarks'
    # equal-length requests do: such a step starts adp prompts. Without it, with the clients out of step, a prompt
    # step carries the first prompt and those that arrive while it waits for its step, new a step over W steps: half
    # the step it arrived in, the step an engine that schedules ahead (async scheduling) has already formed, and a
    # poll cycle's N - 1 steps; so 1 + new W of them (the simulator's closed loops run 1.2-1.9 a prompt step at 0.14-0.55
    # prompts a step; with every rank's prompts lined up, as before, estimate read 1.07-2.67x their throughput)
    per_step = np.minimum(adp, np.maximum(micro, 1.0))
    B = float(cm.adp_balance if tech.adp_balance is None else tech.adp_balance)
    if not B:
        window = 0.5 + (1.0 if cm.async_scheduling else 0.0) + (cm.recv_interval - 1)
        per_step = np.where(adp > 1, np.clip(1.0 + micro * E / osl * window, 1.0, per_step), per_step)
    first = cm.step(plans, Step(prefill_seqs=per_step, prefill_tokens=chunk, prefill_past=hit + (n_chunks - 1) * chunk / 2.0,
                                decode_seqs=np.maximum(micro - per_step, 0.0), decode_ctx=rctx, decode_tokens=k + 1),
                    parts=breakdown)
    dec = cm.step(plans, Step(decode_seqs=micro, decode_ctx=rctx, decode_tokens=k + 1), parts=breakdown)
    # Steps come in two kinds: a share f = new x n_chunks of them carry a prompt chunk, the rest only decode. The
    # step time is a roofline (a max), so the mean of the two kinds is not the time of one averaged step. Where
    # more than one chunk arrives per step (f > 1), every step carries new x new_tok prompt tokens.
    # prompt steps per step, with the prefills that preemptions make the engine compute again
    new_pf = new * (1.0 + np.asarray(tech.recompute_tokens, float) / np.maximum(new_tok, 1.0))
    f = new_pf * n_chunks / per_step  # a prompt step starts per_step prompts (one per attention-DP rank)
    t_pf, t_dec = np.maximum(first.time_s, micros * first.stage_time_s), np.maximum(dec.time_s, micros * dec.stage_time_s)
    ff = np.minimum(f, 1.0)
    with np.errstate(invalid="ignore"):  # a plan whose links cannot carry its collectives prices steps at inf
        t = np.where(ff >= 1.0, t_pf, ff * t_pf + (1.0 - ff) * t_dec)
    # (an engine that runs its prompts in steps of their own is priced below instead)
    busy = np.nonzero(np.broadcast_to(f > 1.0, t.shape))[0] if not cm.prefill_first else ()
    if len(busy):
        sub = plans.take(busy)
        pick = lambda x: np.broadcast_to(np.asarray(x, float), t.shape)[busy]  # noqa: E731
        mixed = cm.step(sub, Step(prefill_seqs=pick(new_pf), prefill_tokens=pick(new_tok), prefill_past=pick(hit),
                                  decode_seqs=np.maximum(pick(micro) - pick(new_pf), 0.0), decode_ctx=pick(rctx),
                                  decode_tokens=pick(k) + 1), parts=False)
        t = np.array(t, dtype=float, copy=True)
        t[busy] = np.maximum(mixed.time_s, pick(micros) * mixed.stage_time_s)
    # what one client's tokens wait for: the prompt steps of the others in its micro-batch, not its own prompt's (which
    # comes before its first token): a lone client decodes at the decode step alone, while the mean step above (the
    # throughput's) carries every prompt
    others = np.maximum(micro - 1.0, 0.0) / micro  # the share of a micro-batch's prompts that are not one's own
    ff_seen = ff * others
    with np.errstate(invalid="ignore"):
        t_seen = np.where(ff >= 1.0, t, ff_seen * t_pf + (1.0 - ff_seen) * t_dec)
    n_poll = cm.recv_interval
    solo = None
    if cm.prefill_first:
        # an engine that prefills while prompts wait and pauses the running decodes meanwhile (SGLang: no mixed chunk)
        # runs the prompts in steps of their own, as the simulator's replica does: after a decode step the prompts that
        # reached it (new a step, or the N x new of a poll cycle) enter one prefill step, up to its token budget, a
        # prompt longer than the budget in budget-sized chunks; the decode steps pay every such step in full
        solo, s_pf = _prefill_steps(cm, plans, new_pf, new_tok, hit, micros, n_poll, tech.chunk_tokens)
        t = t_dec + s_pf * solo
        t_seen = t_dec + s_pf * others * solo
    # the drafts ride in every step; each prompt's own device work (compressor, draft prefill) comes before its first
    # token too, so a client's tokens wait only on the others'
    draft, per_prompt = _draft_time(tech, dec, k, micro, ctx), new * _per_prompt_s(tech, new_tok)
    t, t_seen = t + draft + per_prompt, t_seen + draft + per_prompt * others
    off = np.asarray(tech.offload_fraction, float)
    if np.any(off > 0) and kv_bytes_per_token is not None:
        offload_s = off * (micro / adp * ctx * kv_bytes_per_token) / tech.host_bw_bytes_per_s
        t, t_seen = t + offload_s, t_seen + offload_s
    tpot = t_seen / E
    # a scheduler that polls for new requests every N decode steps (Engine.recv_interval; SGLang's
    # --scheduler-recv-interval) and at once after a prompt step: a closed loop's prompt reaches it at an evenly placed
    # point of the poll cycle and waits 1..N decode steps for the next poll, (N + 1) / 2 on average, of which the first
    # is the step ``rest`` below counts; the prompts that reached it in those N steps, about N x new, then enter
    # together, so its own prompt step carries them too (as the simulator's replica polls)
    poll_wait, prompt = 0.0, first
    if n_poll > 1:
        poll_wait = np.where(run > 1, (n_poll - 1) / 2.0 * (t_dec + draft), 0.0)
        polled = np.clip(new * n_poll, per_step, np.maximum(micro, per_step))
        if solo is None:
            prompt = cm.step(plans, Step(prefill_seqs=polled, prefill_tokens=chunk,
                                         prefill_past=hit + (n_chunks - 1) * chunk / 2.0,
                                         decode_seqs=np.maximum(micro - polled, 0.0), decode_ctx=rctx,
                                         decode_tokens=k + 1), parts=False)
    # attention-DP balancing holds a prompt until one waits for every rank (the prompt step then starts one a rank, as
    # ``first`` has it) or B decode steps have passed since the first was held. With the clients out of step the prompts
    # arrive evenly, ``new`` a step: the ranks' adp - 1 others come in (adp - 1) / new steps, over which a held prompt
    # waits half on average; past B steps the hold times out with k = 1 + new x B of them, the first waiting all B
    # steps and the others B / 2 on average
    hold = 0.0
    if B > 0:
        ranks_left = np.minimum(adp, np.maximum(micro, 1.0)) - 1.0
        fill = ranks_left / np.maximum(new, 1e-30)
        k_held = 1.0 + new * B
        steps = np.where(fill <= B, fill / 2.0, (B + (k_held - 1.0) * B / 2.0) / k_held)
        hold = np.where((run > 1) & (ranks_left > 0), steps * (t_dec + draft), 0.0)
    # TTFT: the prompt in one step, or its chunks, each beside the running decodes
    # an engine that schedules ahead (async scheduling) has the next step formed while one runs: a prompt that
    # arrives while others decode joins the step after the next, one mean step later (the simulator does the same)
    lag = np.where(run > 1, t, 0.0) if cm.async_scheduling else 0.0
    # and a closed loop's prompt reaches the engine the front-end time after the step boundary its client's last reply
    # ended at, while the step the others started there runs: it waits out that step's rest (with two clients or more
    # the clients fall out of step, one prompt per boundary, as the simulator has them)
    overhead = _request_overhead_s(cm)
    rest = np.where(run > 1, np.maximum(t - overhead, 0.0), 0.0)
    if solo is None:
        own = n_chunks * np.maximum(prompt.time_s, prompt.stage_time_s)
    else:  # its chunks' prefill steps, beside the prompts that entered with it; the step it waits out is a decode step
        own = np.ceil(new_tok / np.maximum(_prefill_chunk(cm, new_tok, tech.chunk_tokens), 1.0)) * solo
        rest = np.where(run > 1, np.maximum(t_dec + draft - overhead, 0.0), 0.0)
    service_ttft = (own + overhead + _per_prompt_s(tech, new_tok)
                    + np.asarray(tech.adapter_load_s, float) + lag + rest + poll_wait + hold)
    tokens_per_s = run * E / t
    rps = tokens_per_s / osl
    # the API server's one thread (api_thread): below its capacity a prompt pays its preparation and first chunk there
    # and the wait behind the thread's other jobs
    u, thread_s = api_thread(cm.engine, rps, tokens_per_s, E)
    service_ttft = service_ttft + thread_s
    # closed loop: clients beyond the running batch wait (c - running) / throughput for a slot
    wait = np.where(c > run, (c - run) / np.maximum(rps, 1e-30), 0.0)
    ttft = service_ttft + wait
    if np.any(u > 1.0):
        # past its capacity the thread sets the pace (the simulator's FIFO of preparations and chunks): the loop's c
        # clients complete at the thread's rate, rps / u, so a request takes c u / rps in all (Little's law). The engine,
        # u times faster, releases a reply's chunks while the thread's backlog grows (u - 1) seconds a second, so they
        # are seen u times as far apart as it makes them; the rest of the request's time passes before its first token,
        # its preparation queued behind the chunks already released
        sat = u > 1.0
        slow = np.maximum(u, 1.0)
        tpot_sat = tpot * slow
        ttft_sat = np.maximum(service_ttft, c * slow / np.maximum(rps, 1e-30) - (osl - 1) * tpot_sat)
        tokens_per_s, rps = tokens_per_s / slow, rps / slow
        tpot = np.where(sat, tpot_sat, tpot)
        wait = np.where(sat, ttft_sat - service_ttft, wait)
        ttft = np.where(sat, ttft_sat, ttft)
    e2e = ttft + (osl - 1) * tpot
    return Timing(ttft, tpot, e2e, tokens_per_s, rps, run, wait, first if breakdown else None, dec if breakdown else None,
                  spec_k=k, shared_read_tokens=saved, poll_wait_s=poll_wait, balance_wait_s=hold, api_thread_busy=u)


# below this share of the API thread busy, the steady state prices its queue as M/G/1; above, the wait it would add
# is the saturated pace's (the loop slows by the share itself), so the wait is held at this share's
THREAD_WAIT_CAP = 0.95


def api_thread(engine, rps, tokens_per_s, E=1.0):
    """(u, s): the share of the API server's one thread a steady run keeps busy (Engine.api_request_s a request and
    api_chunk_s a streamed chunk: the request's first token, then one chunk every stream_interval decode steps of E
    tokens each), and the seconds that thread adds to a prompt's first token below its capacity: its preparation and
    first chunk, and the mean wait behind the other jobs (M/G/1, Pollaczek-Khinchine: lambda E[S^2] / (2 (1 - u))).
    (0, 0) for an engine without such a thread."""
    a, ch = float(getattr(engine, "api_request_s", 0.0) or 0.0), float(getattr(engine, "api_chunk_s", 0.0) or 0.0)
    if a <= 0.0 and ch <= 0.0:
        return 0.0, 0.0
    every = float(getattr(engine, "stream_interval", 1) or 1)
    rps, tokens_per_s = np.asarray(rps, float), np.asarray(tokens_per_s, float)
    chunks = rps + np.maximum(tokens_per_s - rps, 0.0) / (np.asarray(E, float) * every)  # chunks a second
    u = rps * a + chunks * ch
    second_moment = rps * a * a + chunks * ch * ch  # lambda E[S^2]: seconds^2 of thread work a second
    wait = second_moment / (2.0 * (1.0 - np.minimum(u, THREAD_WAIT_CAP)))
    return u, a + ch + 2.0 * wait  # the preparation and the first chunk each wait once


def _prefill_budget(cm: CostModel, chunk_tokens) -> np.ndarray:
    """Prompt tokens one prefill step holds on an engine that prefills in steps of their own: the chunked-prefill
    budget asked for (--chunk-tokens), else the engine's max_batched_tokens (SGLang's chunked_prefill_size)."""
    asked = np.asarray(chunk_tokens, float)
    return np.where(asked > 0, asked, float(cm.engine.max_batched_tokens))


def _prefill_chunk(cm: CostModel, new_tok, chunk_tokens=0):
    """Prompt tokens one such step takes from a prompt: the whole prompt, or the budget's worth when longer."""
    return np.minimum(np.asarray(new_tok, float), _prefill_budget(cm, chunk_tokens))


def _prefill_steps(cm: CostModel, plans: PlanArrays, new_pf, new_tok, hit, micros, n_poll: int, chunk_tokens=0):
    """(time of one prefill-only step, prefill steps per decode step) on an engine that runs prompts in steps of their
    own (Engine.schedule prefill_first). The prompts that wait when a step is formed, new_pf a decode step over the
    steps since the last prefill step (a poll cycle of N steps, or two with async scheduling), share one step up to
    its token budget; a prompt longer than the budget takes one chunk a step. A step carries q = clip(prompts waiting,
    1, budget / chunk) chunks, and a decode step needs new_pf x chunks per prompt / q of them."""
    chunk_b = _prefill_chunk(cm, new_tok, chunk_tokens)
    n_b = np.ceil(np.asarray(new_tok, float) / np.maximum(chunk_b, 1.0))
    # a prompt sent when a reply ends reaches the engine after the step that followed it began; an engine that forms
    # each step while the one before runs (async scheduling: SGLang's overlap scheduler) has formed the step after
    # that too, so the prompts of two decode steps' replies meet in one prefill step (the simulator's replica, which
    # forms steps the same way, runs about one prefill step every two decode steps at 1,024/1,024)
    cycle = max(int(n_poll), 2 if cm.async_scheduling else 1)
    waiting = np.asarray(new_pf, float) * cycle
    q = np.clip(waiting, 1.0, np.maximum(_prefill_budget(cm, chunk_tokens) / np.maximum(chunk_b, 1.0), 1.0))
    step = cm.step(plans, Step(prefill_seqs=q, prefill_tokens=chunk_b, prefill_past=hit + (n_b - 1.0) * chunk_b / 2.0),
                   parts=False)
    return np.maximum(step.time_s, micros * step.stage_time_s), np.asarray(new_pf, float) * n_b / q


def _draft_time(tech: Techniques, dec: StepCost, k, micro, ctx):
    """Drafting k tokens per step: k one-layer head passes (MTP / EAGLE), or k decode steps of the draft model."""
    if tech.draft is None:
        return k * dec.draft_token_time_s()
    return k * tech.draft.decode_step_s(micro, ctx)


def _per_prompt_s(tech: Techniques, new_tok):
    """Device time each new prompt adds outside the target's steps: the prompt compressor over the original prompt
    and the draft model's prefill of the (compressed) prompt."""
    out = np.asarray(tech.compress_s, float)
    if tech.draft is not None:  # rows that speculate keep the draft's KV of each prompt
        uses = (np.asarray(tech.spec_k) > 0) | np.asarray(tech.spec_auto, bool)
        out = out + np.where(uses, tech.draft.prefill_s(new_tok), 0.0)
    return out
