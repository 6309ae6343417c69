"""Predict the published vLLM arrival-rate runs (``vllm_rate.csv``) with the event simulator.

Each experiment (rows sharing ``experiment``) is one vLLM replica (the ``vllm`` engine profile of the
row's release, the row's tp, weights, ``max_num_batched_tokens`` and ``max_num_seqs``) fed the
row's workload: Poisson arrivals in stages (``2.5 req/s x 600s then 6.0 req/s x 600s``) over the
prompts of inference-perf's shared-prefix generator (``9 system prompts x 5 users``: 45 prompts, a
system prompt per group and one question per user, made once and sent in turn), fixed lengths at the
row's measured means (``mean_isl``/``mean_osl``) when given, else the description's
``system_prompt_len + question_len`` and ``output_len``. A prompt's first request finds its system
prompt in vLLM's prefix cache, every later one the whole prompt but its last partial block
(``requests_for``). The published runs show it: their prompt lengths stay within a few tokens of
system prompt + question over thousands of requests (no history is carried from turn to turn), and
their inter-token latency grows from one stage to the next by what the added decodes cost, not by a
prefill of every question (llama-2-70b at TP4, 8 -> 20 req/s: the step grows from 18.9 to 22.3 ms, where
prefilling each question would add ~140 tokens a step, 4.8 TFLOP per GPU, more than an H100's 989 TFLOP/s
dense peak does in 3.4 ms). One simulation per experiment; a
stage row compares the requests that arrived in that stage, the ``all`` row every request. Compared:
mean TTFT, mean inter-token latency (``mean_itl_s``), mean end-to-end latency. Nothing is tuned per
row; the engine's host costs are the profile's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from planner.errors import PlannerError
from planner.serving.sim import Pool, Scheduler, Simulator, replica_for
from planner.serving.workload import Requests

SEED = 0
METRICS = (("mean_ttft_s", "ttft_s"), ("mean_itl_s", "tpot_s"), ("mean_e2e_s", "e2e_s"))


@dataclass
class RateWorkload:
    system_tokens: int
    question_tokens: int
    output_tokens: int
    prompts: int  # distinct system prompts (0: the description does not say)
    users: int  # questions per system prompt (0: not said)
    stages: list[tuple[float, float]]  # (requests/s, seconds)

    @property
    def edges_s(self) -> list[float]:
        return list(np.cumsum([0.0] + [d for _, d in self.stages]))


def parse_description(text: str, where: str) -> RateWorkload:
    def num(pat: str) -> int:
        m = re.search(pat, text)
        if not m:
            raise PlannerError(f"{where}: workload_description lacks {pat.split(' ')[0]!r}: {text!r}")
        return int(m.group(1))

    m = re.search(r"(\d+) system prompts x (\d+) users", text)
    stages = [(float(r), float(d)) for r, d in re.findall(r"([\d.]+) req/s x (\d+(?:\.\d+)?)s", text)]
    if not stages:
        raise PlannerError(f"{where}: workload_description names no 'R req/s x Ds' stage: {text!r}")
    return RateWorkload(num(r"system_prompt_len (\d+)"), num(r"question_len (\d+)"), num(r"output_len (\d+)"),
                        int(m.group(1)) if m else 0, int(m.group(2)) if m else 0, stages)


def scaled(wl: RateWorkload, factor: float) -> RateWorkload:
    """The workload with every stage ``factor`` as long (same rates): the calibration's shorter replay."""
    return RateWorkload(wl.system_tokens, wl.question_tokens, wl.output_tokens, wl.prompts, wl.users,
                        [(r, d * factor) for r, d in wl.stages])


def requests_for(wl: RateWorkload, isl: int, osl: int, seed: int = SEED, block_tokens: int = 1) -> Requests:
    """Poisson arrivals stage by stage over the workload's distinct prompts, sent in turn. inference-perf's
    shared-prefix generator (``SharedPrefixDataGenerator``) makes ``prompts x users`` prompts once (a system prompt
    per group, one question per user) and request ``k`` carries prompt ``k mod (prompts x users)``: a prompt's first
    request finds only its system prompt in the prefix cache, every later one the whole prompt but its last
    partial block (vLLM caches whole blocks of ``block_tokens`` and recomputes at least the last token). The cache
    holds the distinct prompts' blocks throughout (``prefix_pool_tokens``). A description that does not give the
    prompt count shares only the system prompt."""
    rng = np.random.default_rng(seed)
    times = []
    for (rate, dur), t0 in zip(wl.stages, wl.edges_s):
        n = int(round(rate * dur))
        times.append(t0 + np.sort(rng.uniform(0.0, dur, n)))  # n Poisson arrivals in the stage, given their count
    t = np.concatenate(times)
    n = len(t)
    b = max(int(block_tokens), 1)
    system = min(wl.system_tokens, isl - 1) // b * b
    whole = (isl - 1) // b * b
    distinct = wl.prompts * wl.users
    if distinct:
        prefix = np.where(np.arange(n) < distinct, system, whole).astype(np.int64)
        pool = wl.prompts * system + distinct * (whole - system)
        # requests that send the same prompt share its cached blocks (a decode step reads them once); the system
        # prompt the users of a group share beside their own questions is not counted as shared between prompts
        group = np.arange(n, dtype=np.int64) % distinct
    else:
        prefix, pool, group = np.full(n, system, np.int64), None, None
    return Requests(t, np.full(n, isl, np.int64), np.full(n, osl, np.int64), prefix, np.full(n, -1, np.int64), np.zeros(n),
                    source="vllm_rate workload", prefix_pool_tokens=pool, share_group=group)


def _int(row: dict, key: str) -> int | None:
    v = (row.get(key) or "").strip()
    return int(float(v)) if v else None


def _mean_len(rows: list[dict], key: str, default: int) -> int:
    vals = [float(r[key]) for r in rows if (r.get(key) or "").strip()]
    return int(round(sum(vals) / len(vals))) if vals else default


def _experiment(rows: list[dict], file: str, *, duration_scale: float = 1.0):
    """(SimResult, workload, config label) of one experiment's rows, or raise PlannerError. ``duration_scale``
    shortens every stage (the calibration's cheaper replay)."""
    r0 = rows[0]
    wl = parse_description(r0["workload_description"], f"{file} {r0['experiment']}")
    if duration_scale != 1.0:
        wl = scaled(wl, duration_scale)
    isl = _mean_len(rows, "mean_isl", wl.system_tokens + wl.question_tokens)
    osl = _mean_len(rows, "mean_osl", wl.output_tokens)
    from planner.calibrate.published_fit import engine_of

    engine = engine_of(r0)  # "vllm@0.15.1 (...)": get_engine resolves it to the release's profile
    tp = _int(r0, "tp") or 1
    sched = Scheduler(max_seqs=_int(r0, "max_num_seqs"), max_batched_tokens=_int(r0, "max_num_batched_tokens"))
    from planner.specs.engine import get_engine

    eng = get_engine(engine)
    util = (r0.get("gpu_mem_util") or "").strip()
    if util:
        eng = eng.with_(utilization=float(util))
    weights = (r0.get("weights") or "bf16").strip()
    rep = replica_for(r0["model"], r0["hardware"], tp=tp, weights=weights, kv=(r0.get("kv") or None), engine=eng, sched=sched,
                      max_input=isl + osl)
    res = Simulator([Pool(rep, 1)], requests_for(wl, isl, osl, block_tokens=rep.block_tokens)).run()
    cfg = f"tp{tp} {weights} {r0['workload']} {isl}/{osl} mbt={rep.max_batched_tokens} seqs={rep.max_seqs}"
    return res, wl, cfg


def predict_vllm_rate(rows: list[dict], file: str = "vllm_rate.csv", *,
                      duration_scale: float = 1.0) -> list[tuple[int, str, str, float, float | None, str]]:
    """(row index, what, config, measured, predicted or None, note) for the rows of ``vllm_rate.csv``."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.get("experiment") or f"row{i}", []).append(i)
    out = []
    for exp, idx in groups.items():
        try:
            res, wl, cfg = _experiment([rows[i] for i in idx], file, duration_scale=duration_scale)
            err = None
        except PlannerError as e:
            res, wl, cfg, err = None, None, "", str(e)
        for i in idx:
            out += _row_predictions(rows[i], i, res, wl, cfg, err)
    return out


def _derived_itl(row: dict, wl) -> float | None:
    """(mean e2e - mean TTFT) / (mean output - 1): the mean gap between output tokens."""
    try:
        e2e, ttft = float(row["mean_e2e_s"]), float(row["mean_ttft_s"])
    except (KeyError, TypeError, ValueError):
        return None
    osl = float(row["mean_osl"]) if (row.get("mean_osl") or "").strip() else (wl.output_tokens if wl else None)
    return (e2e - ttft) / (osl - 1.0) if osl and osl > 1 else None


def _row_predictions(row: dict, i: int, res, wl, cfg: str, err: str | None) -> list[tuple]:
    stage = (row.get("stage") or "").strip()
    notes = []
    n_req, n_fail = _int(row, "n_requests"), _int(row, "n_failed")
    if n_req and n_fail:
        notes.append(f"overloaded: {n_fail} of {n_req} requests failed in the run (their latencies are not in the means)")
    out = []
    itl_derived = _derived_itl(row, wl)
    for col, attr in METRICS:
        v = (row.get(col) or "").strip()
        if not v:
            continue
        meas = float(v)
        note = "; ".join(notes)
        if col == "mean_itl_s" and itl_derived is not None and abs(meas - itl_derived) > 0.25 * itl_derived:
            # the source's mean_itl_s of these runs equals its mean_tpot_s (about half the real gap)
            meas = itl_derived
            note = "; ".join(notes + [f"ITL from (e2e - TTFT) / (output - 1) = {itl_derived * 1e3:.2f} ms: the row's "
                                      f"mean_itl_s ({float(v) * 1e3:.2f} ms) is its mean_tpot_s, about half of it"])
        if res is None:
            out.append((i, col, cfg, meas, None, f"unpredictable: {err}"))
            continue
        sel = res.done.copy()
        if stage not in ("", "all"):
            k = int(stage)
            lo, hi = wl.edges_s[k], wl.edges_s[k + 1]
            sel &= (res.arrival_s >= lo) & (res.arrival_s < hi)
        x = getattr(res, attr)[sel]
        x = x[np.isfinite(x)]
        pred = float(x.mean()) if len(x) else math.nan
        out.append((i, col, f"{cfg} stage={stage or 'all'}", meas, pred, note))
    return out
