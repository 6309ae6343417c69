"""Workloads: who sends what, and when.

A workload is an input-length and an output-length distribution, an arrival process, a
shared-prefix fraction (prefix-cache hits skip that part of prefill) and optionally
multi-turn conversations (later turns carry the earlier turns as a prefix whose KV the
engine may still hold). It comes from a built-in name, a YAML file, command-line flags or
a CSV trace (BurstGPT's columns ``Timestamp,Model,Request tokens,Response tokens,Total
tokens,Log Type`` work as they are). Sampling is seeded: the same seed gives the same
requests.

YAML schema (every key but ``input``/``output`` optional)::

    name: my-chat
    source: "where the numbers come from"
    input:  {dist: lognormal, mean: 1020, std: 900, min: 16, max: 8192}
    output: {dist: zipf, a: 1.1, min: 1, max: 2048}
    arrival: {process: gamma, cv: 2.0}      # poisson | gamma (cv) | trace (file)
    rate: 4.0                               # requests/s (``--rate`` overrides)
    shared_prefix: 0.2                      # fraction of each prompt served from the prefix cache
    conversation: {turns: 3, think_time_s: 15, new_input: {dist: fixed, value: 120}}

Length distributions: ``fixed`` (value), ``normal`` (mean, std), ``lognormal`` (mean, std of
the length itself, or median and sigma), ``zipf`` (a, min, max: p(k) ~ k^-a on [min, max];
BurstGPT's generator uses Zipf lengths), ``uniform`` (min, max), ``empirical`` (file, column:
resample a CSV column). Every sample is rounded and clipped to [min, max] (min defaults to 1).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from planner.errors import PlannerError, unknown
from planner.serving.classes import ServiceClass, assign_classes
from planner.specs.loader import read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lengths(_Strict):
    """A token-length distribution (``mixture``: a share-weighted mix of ``parts``, each a distribution of its own,
    for a request set drawn from several sources)."""

    dist: Literal["fixed", "normal", "lognormal", "zipf", "uniform", "empirical", "mixture"] = "fixed"
    value: Optional[float] = None  # fixed
    mean: Optional[float] = None  # normal, lognormal
    std: Optional[float] = None
    median: Optional[float] = None  # lognormal, with sigma
    sigma: Optional[float] = None
    a: Optional[float] = None  # zipf exponent (> 0)
    min: int = 1
    max: int = 1_000_000
    file: Optional[str] = None  # empirical
    column: Optional[str] = None
    parts: Optional[list["LengthPart"]] = None  # mixture

    @model_validator(mode="after")
    def _check(self):
        d = self.dist
        need = {"fixed": ("value",), "normal": ("mean", "std"), "zipf": ("a",), "empirical": ("file", "column"), "uniform": (),
                "mixture": ("parts",)}
        for k in need.get(d, ()):
            if getattr(self, k) is None:
                raise ValueError(f"{d} lengths need '{k}'")
        if d == "lognormal" and not ((self.mean is not None and self.std is not None) or (self.median is not None and self.sigma is not None)):
            raise ValueError("lognormal lengths need 'mean' and 'std', or 'median' and 'sigma'")
        if self.min < 1 or self.max < self.min:
            raise ValueError(f"need 1 <= min <= max, got min={self.min} max={self.max}")
        for k in ("value", "mean", "median", "a"):
            v = getattr(self, k)
            if v is not None and v <= 0:
                raise ValueError(f"'{k}' must be positive")
        for k in ("std", "sigma"):
            v = getattr(self, k)
            if v is not None and v < 0:
                raise ValueError(f"'{k}' must not be negative")
        if d == "mixture" and not self.parts:
            raise ValueError("mixture lengths need at least one part")
        if d != "mixture" and self.parts:
            raise ValueError(f"'parts' belong to mixture lengths, not {d}")
        return self

    def describe(self) -> str:
        d = self.dist
        if d == "fixed":
            return f"{self.value:g}"
        if d == "normal":
            return f"normal({self.mean:g}, sd {self.std:g})"
        if d == "lognormal":
            return f"lognormal(mean {self.mean:g}, sd {self.std:g})" if self.mean is not None else f"lognormal(median {self.median:g}, sigma {self.sigma:g})"
        if d == "zipf":
            return f"zipf(a={self.a:g}) on [{self.min}, {self.max}]"
        if d == "uniform":
            return f"uniform[{self.min}, {self.max}]"
        if d == "mixture":
            total = sum(q.share for q in self.parts)
            return "mixture(" + ", ".join(f"{q.share / total:.0%} {q.lengths.describe()}" for q in self.parts) + ")"
        return f"empirical({Path(self.file).name}:{self.column})"

    def sample(self, rng: np.random.Generator, n: int, base: Path | None = None) -> np.ndarray:
        d = self.dist
        if d == "fixed":
            x = np.full(n, float(self.value))
        elif d == "normal":
            x = rng.normal(self.mean, self.std, n)
        elif d == "lognormal":
            if self.median is not None:
                mu, s = math.log(self.median), self.sigma
            else:
                s2 = math.log1p((self.std / self.mean) ** 2)
                mu, s = math.log(self.mean) - s2 / 2.0, math.sqrt(s2)
            x = rng.lognormal(mu, s, n)
        elif d == "zipf":
            hi = min(self.max, 10_000_000)
            k = np.arange(self.min, hi + 1, dtype=float)
            cdf = np.cumsum(k ** -self.a)
            x = k[np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1]), len(k) - 1)]
        elif d == "uniform":
            x = rng.integers(self.min, self.max + 1, n).astype(float)
        elif d == "mixture":
            shares = np.array([q.share for q in self.parts], float)
            pick = rng.choice(len(self.parts), size=n, p=shares / shares.sum())
            x = np.zeros(n)
            for i, q in enumerate(self.parts):
                sel = pick == i
                if sel.any():
                    x[sel] = q.lengths.sample(rng, int(sel.sum()), base)
        else:
            vals = read_column(_resolve(self.file, base), self.column)
            x = vals[rng.integers(0, len(vals), n)]
        return np.clip(np.rint(x), self.min, self.max).astype(np.int64)

    def mean_tokens(self, base: Path | None = None) -> float:
        """Mean of the clipped distribution (by sampling for shapes without a closed form)."""
        if self.dist == "fixed":
            return float(np.clip(round(self.value), self.min, self.max))
        return float(self.sample(np.random.default_rng(12345), 20000, base).mean())


class LengthPart(_Strict):
    """One source of a mixture of lengths: its share of the requests and its own distribution."""

    share: float = Field(gt=0)
    lengths: Lengths


Lengths.model_rebuild()


class Arrival(_Strict):
    process: Literal["poisson", "gamma", "trace"] = "poisson"
    cv: float = Field(default=1.0, gt=0)  # gamma: coefficient of variation of the gaps (1 = Poisson)
    file: Optional[str] = None  # trace

    @model_validator(mode="after")
    def _check(self):
        if self.process == "trace" and not self.file:
            raise ValueError("a trace arrival process needs 'file'")
        return self

    def describe(self) -> str:
        if self.process == "gamma":
            return f"gamma (cv {self.cv:g}, shape {1 / self.cv ** 2:.3g})"
        if self.process == "trace":
            return f"trace {Path(self.file).name}"
        return "poisson"

    def times(self, rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
        """Arrival times (s) of ``n`` requests at mean ``rate``; rate inf = all at t=0."""
        if math.isinf(rate):
            return np.zeros(n)
        if self.process == "gamma":
            shape = 1.0 / self.cv**2
            gaps = rng.gamma(shape, 1.0 / (rate * shape), n)
        else:
            gaps = rng.exponential(1.0 / rate, n)
        t = np.cumsum(gaps)
        return t - t[0]


class Conversation(_Strict):
    turns: Union[int, Lengths] = 1
    think_time_s: float = Field(default=10.0, ge=0)  # mean (exponential) gap between a reply and the next turn
    new_input: Optional[Lengths] = None  # tokens the user adds per later turn (default: the input distribution)


class WorkloadSpec(_Strict):
    name: str = "custom"
    source: str = "user-defined"
    description: str = ""
    input: Lengths
    output: Lengths
    arrival: Arrival = Arrival()
    rate: Optional[float] = Field(default=None, gt=0)
    shared_prefix: float = Field(default=0.0, ge=0, lt=1)
    # a benchmark's sampler keeps only the requests whose input + output is at most this many tokens and draws again
    # for the rest (vLLM bench's ShareGPT sampler: 2048), so long pairs are left out, not clipped; None: no bound
    max_total: Optional[int] = Field(default=None, ge=2)
    conversation: Optional[Conversation] = None
    classes: Optional[list[ServiceClass]] = None  # priority classes with their own SLOs (planner.serving.classes)
    base_dir: Optional[str] = Field(default=None, exclude=True)  # where relative paths resolve

    @property
    def base(self) -> Path | None:
        return Path(self.base_dir) if self.base_dir else None

    def describe(self) -> str:
        s = f"input {self.input.describe()}, output {self.output.describe()}, arrivals {self.arrival.describe()}"
        if self.shared_prefix:
            s += f", shared prefix {self.shared_prefix:.0%}"
        if self.max_total:
            s += f", input + output <= {self.max_total}"
        if self.conversation and (not isinstance(self.conversation.turns, int) or self.conversation.turns > 1):
            t = self.conversation.turns
            s += f", {t if isinstance(t, int) else t.describe()} turns, think {self.conversation.think_time_s:g} s"
        return s

    def mean_lengths(self) -> tuple[float, float]:
        """(mean input, mean output) tokens of one request (multi-turn: of one turn, history included)."""
        reqs = generate(self, 4000, rate=1.0, seed=777)
        return float(reqs.input_tokens.mean()), float(reqs.output_tokens.mean())


# ------------------------------------------------------------------ requests

@dataclass
class Requests:
    """Columns of a request list. Follow-up turns have ``arrival_s`` NaN: they arrive
    ``think_s`` after their ``parent`` finishes."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray  # whole prompt (history of earlier turns included)
    output_tokens: np.ndarray
    prefix_tokens: np.ndarray  # leading tokens shared with other requests (served by the prefix cache)
    parent: np.ndarray  # index of the previous turn, -1 for none
    think_s: np.ndarray
    source: str = ""
    notes: list[str] = field(default_factory=list)
    adapter: Optional[np.ndarray] = None  # LoRA adapter id per request (planner.serving.sim.adapters)
    adapter_column: Optional[np.ndarray] = None  # a trace's ``adapter`` column, as read
    priority: Optional[np.ndarray] = None  # lower is served first (the priority scheduler)
    klass: Optional[np.ndarray] = None  # service class index per request
    classes: list = field(default_factory=list)
    # tokens the prefix cache keeps resident for the shared prefixes (distinct prompts that repeat each hold their
    # own blocks); None: one shared prefix, the longest ``prefix_tokens``
    prefix_pool_tokens: Optional[int] = None
    # a shared closed loop of this many slots (0: none): the first ``slots`` requests arrive at 0 and each completion,
    # of whichever request, releases the next one in order (shared_closed_loop)
    slots: int = 0
    # which of a benchmark client's distinct prompts each request sends (-1: a prompt of its own); a prompt sent again
    # finds its blocks in the prefix cache while they are still resident (reused_prompts)
    prompt_key: Optional[np.ndarray] = None
    # which cached prefix each request's ``prefix_tokens`` are (equal ids: the same physical blocks, which a decode step
    # reads once for all the running sequences that share them while they fit in the device's cache); None: one shared
    # prefix (a system prompt), or with ``prompt_key`` the prompt a client sends again
    share_group: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.input_tokens)

    @property
    def has_turns(self) -> bool:
        return bool((self.parent >= 0).any())


def _resolve(path: str, base: Path | None) -> Path:
    p = Path(path)
    if not p.is_absolute() and base is not None:
        p = base / p
    return p


def read_column(path: Path, column: str) -> np.ndarray:
    rows, cols = _read_csv(path)
    if column not in cols:
        raise PlannerError(f"{path} has no column {column!r} (columns: {', '.join(cols)})")
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            v = float(r[column])
        except (TypeError, ValueError):
            raise PlannerError(f"{path}:{i}: column {column!r} is not a number: {r[column]!r}") from None
        if v > 0:
            out.append(v)
    if not out:
        raise PlannerError(f"{path}: column {column!r} holds no positive values")
    return np.array(out)


def _read_csv(path: Path) -> tuple[list[dict], list[str]]:
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            cols = list(reader.fieldnames or [])
    except OSError as e:
        raise PlannerError(f"cannot read {path}: {e.strerror}") from None
    if not cols:
        raise PlannerError(f"{path} is empty or has no header")
    return rows, cols


TIME_COLS = ("Timestamp", "timestamp", "arrival_s", "arrival_time", "time", "time_s")
INPUT_COLS = ("Request tokens", "input_tokens", "input", "isl", "prompt_tokens", "ContextTokens")
OUTPUT_COLS = ("Response tokens", "output_tokens", "output", "osl", "completion_tokens", "GeneratedTokens")


def _pick(cols: list[str], names: tuple[str, ...], what: str, path: Path) -> str:
    low = {c.lower(): c for c in cols}
    for n in names:
        if n.lower() in low:
            return low[n.lower()]
    raise PlannerError(f"{path}: no {what} column (looked for {', '.join(repr(n) for n in names)}; found {', '.join(cols)})")


def read_trace(path: str | Path, *, rate: float | None = None, requests: int | None = None,
               shared_prefix: float = 0.0) -> Requests:
    """Replay a CSV trace: a timestamp (s, or an ISO date), input and output tokens per row.

    Rows with zero output tokens (failed requests in BurstGPT) are dropped. ``rate`` rescales
    time so that the mean arrival rate matches; ``requests`` keeps the first N rows."""
    path = Path(path)
    rows, cols = _read_csv(path)
    tc, ic, oc = _pick(cols, TIME_COLS, "timestamp", path), _pick(cols, INPUT_COLS, "input-token", path), _pick(cols, OUTPUT_COLS, "output-token", path)
    t, isl, osl, ad = [], [], [], []
    acol = next((c for c in cols if c.strip().lower() in ("adapter", "lora", "adapter_id")), None)
    dropped = 0
    for i, r in enumerate(rows, start=2):
        try:
            ts = _timestamp(r[tc])
            a, b = int(float(r[ic])), int(float(r[oc]))
        except (TypeError, ValueError):
            raise PlannerError(f"{path}:{i}: timestamp/token columns must be numbers, got {r[tc]!r}, {r[ic]!r}, {r[oc]!r}") from None
        if b <= 0 or a < 0:
            dropped += 1
            continue
        t.append(ts)
        isl.append(max(a, 1))
        osl.append(b)
        if acol is not None:
            try:
                ad.append(int(float(r[acol])))
            except (TypeError, ValueError):
                raise PlannerError(f"{path}:{i}: the adapter column must hold integer ids, got {r[acol]!r}") from None
    if not t:
        raise PlannerError(f"{path}: no usable rows (every row has zero output tokens)")
    order = np.argsort(np.array(t), kind="stable")
    t = np.array(t)[order]
    isl_a, osl_a = np.array(isl, dtype=np.int64)[order], np.array(osl, dtype=np.int64)[order]
    if requests is not None:
        if requests < 1:
            raise PlannerError("--requests must be at least 1")
        t, isl_a, osl_a = t[:requests], isl_a[:requests], osl_a[:requests]
    ad_a = np.array(ad, dtype=np.int64)[order][:len(t)] if acol is not None else None
    t = t - t[0]
    notes = [f"trace {path.name}: {len(t)} requests over {t[-1]:.1f} s" + (f"; {dropped} rows with zero output tokens dropped" if dropped else "")]
    if rate is not None:
        if math.isinf(rate):
            t = np.zeros_like(t)
        elif t[-1] > 0 and len(t) > 1:
            native = (len(t) - 1) / t[-1]
            t = t * native / rate
            notes.append(f"time scaled by {native / rate:.3g} to a mean rate of {rate:g} req/s (native {native:.3g})")
    n = len(t)
    return Requests(t, isl_a, osl_a, np.floor(shared_prefix * isl_a).astype(np.int64), np.full(n, -1), np.zeros(n),
                    source=f"trace {path.name}", notes=notes, adapter_column=ad_a)


def _timestamp(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        from datetime import datetime

        return datetime.fromisoformat(v.strip()).timestamp()


def generate(spec: WorkloadSpec, n: int, *, rate: float | None = None, seed: int = 0) -> Requests:
    """Sample ``n`` requests (turns) of a workload (with its service classes, if it has them)."""
    reqs = _generate(spec, n, rate=rate, seed=seed)
    if spec.classes:
        assign_classes(reqs, spec.classes, seed)
    return reqs


def _generate(spec: WorkloadSpec, n: int, *, rate: float | None = None, seed: int = 0) -> Requests:
    if n < 1:
        raise PlannerError("--requests must be at least 1")
    rate = rate if rate is not None else spec.rate
    if spec.arrival.process == "trace":
        reqs = read_trace(_resolve(spec.arrival.file, spec.base), rate=rate, requests=n, shared_prefix=spec.shared_prefix)
        return reqs
    if rate is None:
        raise PlannerError(f"workload {spec.name!r} names no rate: give --rate R (requests/s, or inf)")
    if rate <= 0:
        raise PlannerError(f"--rate must be positive, got {rate:g}")
    rng = np.random.default_rng(seed)
    conv = spec.conversation
    if conv is None or (isinstance(conv.turns, int) and conv.turns <= 1):
        isl, osl = _pairs(spec, rng, n)
        t = spec.arrival.times(rng, n, rate)
        return Requests(t, isl, osl, np.floor(spec.shared_prefix * isl).astype(np.int64), np.full(n, -1), np.zeros(n),
                        source=spec.name)
    # multi-turn: conversations start by the arrival process; turn k+1 arrives think time after turn k ends
    turns_spec = conv.turns
    est_turns = turns_spec if isinstance(turns_spec, int) else max(turns_spec.mean_tokens(spec.base), 1.0)
    n_conv = max(1, int(math.ceil(n / est_turns)) + 1)
    starts = spec.arrival.times(rng, n_conv, rate / est_turns)
    counts = np.full(n_conv, turns_spec) if isinstance(turns_spec, int) else turns_spec.sample(rng, n_conv, spec.base)
    new_in = conv.new_input or spec.input
    arr, isl, osl, pre, par, think = [], [], [], [], [], []
    for c in range(n_conv):
        hist = 0
        prev = -1
        first_in = int(spec.input.sample(rng, 1, spec.base)[0])
        for k in range(int(counts[c])):
            if len(isl) >= n:
                break
            add = first_in if k == 0 else int(new_in.sample(rng, 1, spec.base)[0])
            o = int(spec.output.sample(rng, 1, spec.base)[0])
            x = hist + add
            arr.append(starts[c] if k == 0 else np.nan)
            isl.append(x)
            osl.append(o)
            pre.append(int(spec.shared_prefix * first_in))  # the system prompt stays at the front of every turn
            par.append(prev)
            think.append(0.0 if k == 0 else float(rng.exponential(conv.think_time_s)) if conv.think_time_s > 0 else 0.0)
            prev = len(isl) - 1
            hist = x + o
        if len(isl) >= n:
            break
    return Requests(np.array(arr, float), np.array(isl, np.int64), np.array(osl, np.int64), np.array(pre, np.int64),
                    np.array(par, np.int64), np.array(think, float), source=spec.name)


def _pairs(spec: WorkloadSpec, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (input, output) length pairs; under ``max_total`` the pairs longer than it are drawn again (a sampler that
    filters), in rounds of the shortfall, until ``n`` remain (in the order drawn)."""
    i_keep, o_keep, have, m = [], [], 0, n  # the first round draws n, each later one twice the shortfall (64 at least)
    for _ in range(201):
        a, b = spec.input.sample(rng, m, spec.base), spec.output.sample(rng, m, spec.base)
        if not spec.max_total:
            return a, b
        k = a + b <= spec.max_total
        i_keep.append(a[k])
        o_keep.append(b[k])
        have += int(k.sum())
        if have >= n:
            return np.concatenate(i_keep)[:n], np.concatenate(o_keep)[:n]
        m = max(2 * (n - have), 64)
    raise PlannerError(f"workload {spec.name!r}: its input + output lengths almost never fit max_total "
                       f"{spec.max_total}; raise max_total or shorten the lengths")


def shared_closed_loop(lengths: Requests, slots: int) -> Requests:
    """The requests of ``lengths`` sent through ``slots`` slots shared by the whole list: the first ``slots`` arrive at
    0, and each completion, of whichever request, releases the next one in list order. This is a benchmark client's
    ``--max-concurrency`` (vLLM's ``bench serve`` and SGLang's ``bench_serving`` wrap every request of the list in one
    ``asyncio.Semaphore(max_concurrency)``, which wakes its waiters first in, first out), not ``slots`` chains that
    each send a fixed share in turn: with lengths that vary, such chains end at different times and leave a tail with
    fewer requests running, where the semaphore keeps all its slots busy until the list runs out."""
    n = len(lengths)
    c = max(1, min(int(slots), n))
    arrival = np.where(np.arange(n) < c, 0.0, np.nan)
    src = f"{c} slots shared by the request list (a benchmark's --max-concurrency)"
    return Requests(arrival, lengths.input_tokens, lengths.output_tokens, lengths.prefix_tokens, np.full(n, -1, np.int64),
                    np.zeros(n), source=src + (f"; {lengths.source}" if lengths.source else ""), slots=c,
                    prefix_pool_tokens=lengths.prefix_pool_tokens, prompt_key=lengths.prompt_key,
                    share_group=lengths.share_group)


SAMPLING = ("shuffle", "sequential", "random")


def reused_prompts(reqs: Requests, entries: int, sampling: str = "shuffle", seed: int = 0) -> Requests:
    """``reqs`` sent from a client's dataset of ``entries`` distinct prompts, as load generators that build a fixed
    set of payloads and reuse it until the run ends do (aiperf's ``--num-dataset-entries``, 100 unless set): request
    j sends entry ``prompt_key[j]``, ``shuffle`` a fresh permutation of the entries each pass, ``sequential`` them in
    order, ``random`` one drawn with replacement. A repeated entry is the same prompt, so it has its first send's
    length, and an engine with a prefix cache serves its blocks again while they stay resident: the simulator keeps
    them, least recently used first, beside the running sequences (planner.serving.sim.kvcache)."""
    n = len(reqs)
    if entries < 1:
        raise PlannerError(f"a client dataset of {entries} prompts: need at least 1")
    if sampling not in SAMPLING:
        raise PlannerError(f"dataset sampling {sampling!r}: one of {', '.join(SAMPLING)}")
    rng = np.random.default_rng(seed)
    if sampling == "random":
        key = rng.integers(0, entries, size=n)
    elif sampling == "sequential":
        key = np.arange(n) % entries
    else:
        passes = -(-n // entries)
        key = np.concatenate([rng.permutation(entries) for _ in range(passes)])[:n]
    key = key.astype(np.int64)
    first = np.full(entries, -1, np.int64)  # the request that sends each entry first
    sent, at = np.unique(key, return_index=True)
    first[sent] = at
    reqs.input_tokens = np.asarray(reqs.input_tokens)[first[key]].astype(np.asarray(reqs.input_tokens).dtype)
    reqs.prompt_key = key
    reqs.source = (reqs.source + "; " if reqs.source else "") + f"{entries} distinct prompts reused ({sampling})"
    return reqs


def sharegpt_workload(mean_input: float, mean_output: float, *, name: str = "sharegpt") -> WorkloadSpec:
    """ShareGPT as the engines' benchmark clients sample it (vLLM ``bench serve --dataset-name sharegpt``: a
    conversation's first prompt and first reply; pairs with a prompt or reply under 4 tokens, a prompt over 1024 or
    prompt + reply over 2048 tokens are left out), with the lognormal spread of the built-in ``sharegpt`` workload and
    its medians set so the lengths kept have the means given (a run's printed totals over its requests)."""
    base = BUILTIN["sharegpt"]
    d = {"name": name, **base}
    d["input"], d["output"] = dict(base["input"]), dict(base["output"])
    mi, mo = float(base["input"]["median"]), float(base["output"]["median"])
    for _ in range(8):  # the filter trims the tails, so the medians that give the means are found by a few rescalings
        d["input"]["median"], d["output"]["median"] = mi, mo
        spec = _validated(d, f"workload {name}")
        i, o = _pairs(spec, np.random.default_rng(4321), 20000)
        mi, mo = mi * mean_input / float(i.mean()), mo * mean_output / float(o.mean())
    d["input"]["median"], d["output"]["median"] = mi, mo
    d["source"] = base["source"] + f"; medians set for means {mean_input:g} / {mean_output:g}"
    return _validated(d, f"workload {name}")


def random_range_workload(isl: int, osl: int, ratio: float, *, name: str | None = None) -> WorkloadSpec:
    """The random dataset of a benchmark client run with ``--random-range-ratio ratio``: each prompt and each reply
    length drawn uniformly over [int(L x ratio), L] for the requested ``--random-input-len`` / ``--random-output-len``
    L, as the clients of SGLang's bench_serving and of InferenceX (utils/bench_serving/benchmark_serving.py,
    sample_random_requests: lower = int(seq_len * range_ratio), upper = seq_len) draw them; their mean is about
    (1 + ratio) / 2 of L. (vLLM's own client reads the ratio differently from mid 2025 on, [L (1 - r), L (1 + r)]:
    a row of that client states its printed means and no ratio.)"""
    if isl < 1 or osl < 1:
        raise PlannerError("input and output lengths must be at least 1 token")
    if not 0.0 <= ratio <= 1.0:
        raise PlannerError(f"a random range ratio is a fraction from 0 to 1, got {ratio:g}")

    def lengths(n: int) -> dict:
        lo = max(1, int(n * ratio))
        return {"dist": "fixed", "value": n} if lo >= n else {"dist": "uniform", "min": lo, "max": n}

    name = name or f"isl{isl}-osl{osl}-range{ratio:g}"
    return _validated({"name": name, "input": lengths(isl), "output": lengths(osl), "arrival": {"process": "poisson"},
                       "source": f"a benchmark client's random dataset: lengths uniform over [int(L x {ratio:g}), L], "
                                 f"L = {isl} prompt and {osl} reply tokens"},
                      f"workload {name}")


def eos_capped_workload(isl: int, mean_output: float, cap: int, *, name: str | None = None) -> WorkloadSpec:
    """Fixed prompts whose replies run to the client's ``cap`` (max_tokens) unless the model ends them first at its EOS
    token, as a benchmark client that sends a cap and does not ignore EOS (no ``--ignore-eos``, no ``min_tokens``) gets
    them: a run's printed mean reply below its cap says some replies ended early. The share ``p`` that ends early, at a
    position uniform over [1, cap] (an assumption: the run prints its mean only), is the one that gives the printed
    mean, (1 - p) cap + p (cap + 1) / 2; a mean under half the cap means every reply ended early, uniform over
    [1, 2 mean - 1]. The replies' spread is what keeps a closed loop's clients from running in lockstep: with lengths
    all equal, every client's request ends at the same step and the next ones arrive together."""
    if isl < 1 or cap < 1 or not 1.0 <= mean_output <= cap:
        raise PlannerError(f"a reply cap of {cap} tokens and a mean reply of {mean_output:g} tokens: need 1 <= mean <= cap")
    half = (cap + 1) / 2.0
    if mean_output >= half:
        p = (cap - mean_output) / (cap - half) if cap > half else 0.0
        parts = [{"share": 1.0 - p, "lengths": {"dist": "fixed", "value": cap}},
                 {"share": p, "lengths": {"dist": "uniform", "min": 1, "max": cap}}] if p > 0 else None
        output = {"dist": "mixture", "parts": parts} if parts else {"dist": "fixed", "value": cap}
    else:
        output = {"dist": "uniform", "min": 1, "max": max(1, int(round(2.0 * mean_output - 1.0)))}
    return _validated({"name": name or f"isl{isl}-cap{cap}", "input": {"dist": "fixed", "value": isl}, "output": output,
                       "arrival": {"process": "poisson"},
                       "source": f"fixed prompts; replies capped at {cap} tokens, ending early at EOS for a mean of "
                                 f"{mean_output:g} (the early share at a uniform position: an assumption)"},
                      f"workload {name or 'eos-capped'}")


# ------------------------------------------------------------------ built-ins

BUILTIN: dict[str, dict] = {
    "chat": {
        "source": "Splitwise (Patel et al., ISCA'24) Azure LLM inference trace 2023, conversation: median prompt 1020, "
                  "median output 129 tokens; the lognormal spread (sigma 1.0 / 0.9) is illustrative",
        "description": "chatbot conversation turns",
        "input": {"dist": "lognormal", "median": 1020, "sigma": 1.0, "min": 4, "max": 16384},
        "output": {"dist": "lognormal", "median": 129, "sigma": 0.9, "min": 1, "max": 4096},
        "arrival": {"process": "poisson"},
    },
    "chat-multiturn": {
        "source": "illustrative: chat lengths (Splitwise medians) in 4-turn conversations with 20 s think time; "
                  "later turns carry the history as a cacheable prefix",
        "description": "multi-turn chat with KV reuse across turns",
        "input": {"dist": "lognormal", "median": 400, "sigma": 0.8, "min": 4, "max": 8192},
        "output": {"dist": "lognormal", "median": 129, "sigma": 0.9, "min": 1, "max": 4096},
        "arrival": {"process": "poisson"},
        "conversation": {"turns": 4, "think_time_s": 20.0, "new_input": {"dist": "lognormal", "median": 80, "sigma": 0.8, "min": 1, "max": 4096}},
    },
    "code": {
        "source": "Splitwise (Patel et al., ISCA'24) Azure LLM inference trace 2023, coding: median prompt 1500, "
                  "median output 13 tokens; the lognormal spread is illustrative",
        "description": "code completion: long prompts, short outputs",
        "input": {"dist": "lognormal", "median": 1500, "sigma": 0.8, "min": 16, "max": 16384},
        "output": {"dist": "lognormal", "median": 13, "sigma": 1.0, "min": 1, "max": 1024},
        "arrival": {"process": "poisson"},
    },
    "rag": {
        "source": "illustrative: retrieval-augmented generation, ~6K-token retrieved context, 10% shared system prompt",
        "description": "long context, short answers",
        "input": {"dist": "lognormal", "median": 6000, "sigma": 0.5, "min": 512, "max": 32768},
        "output": {"dist": "lognormal", "median": 200, "sigma": 0.6, "min": 8, "max": 2048},
        "arrival": {"process": "poisson"},
        "shared_prefix": 0.1,
    },
    "summarization": {
        "source": "illustrative: document summarization, ~3K-token documents, ~250-token summaries",
        "description": "long inputs, medium outputs",
        "input": {"dist": "lognormal", "median": 3000, "sigma": 0.6, "min": 256, "max": 32768},
        "output": {"dist": "lognormal", "median": 250, "sigma": 0.5, "min": 16, "max": 2048},
        "arrival": {"process": "poisson"},
    },
    "reasoning": {
        "source": "illustrative: reasoning models (long chain-of-thought), ~400-token prompts, ~3K-token outputs",
        "description": "short prompts, long outputs",
        "input": {"dist": "lognormal", "median": 400, "sigma": 0.8, "min": 16, "max": 8192},
        "output": {"dist": "lognormal", "median": 3000, "sigma": 0.7, "min": 64, "max": 32768},
        "arrival": {"process": "poisson"},
    },
    "burstgpt": {
        "source": "BurstGPT (arXiv 2401.17644) synthetic generator defaults: Gamma inter-arrivals shape 0.5 "
                  "(cv 1.41), Zipf(a=1.1) lengths; the length bounds are illustrative",
        "description": "bursty API traffic",
        "input": {"dist": "zipf", "a": 1.1, "min": 16, "max": 4096},
        "output": {"dist": "zipf", "a": 1.1, "min": 8, "max": 1024},
        "arrival": {"process": "gamma", "cv": 1.4142135623730951},
    },
    "sharegpt": {
        "source": "ShareGPT (ShareGPT_V3_unfiltered_cleaned_split) as vLLM's benchmark client samples it (benchmarks "
                  "datasets.py / sample_sharegpt_requests: first prompt and first reply, pairs left out below 4 tokens, "
                  "above 1024 prompt tokens or above 2048 in all); means ~220 / ~200 tokens as published runs print them "
                  "(gpustack performance-lab: 215 / 196 with gpt-oss's tokenizer, 219 / 201 with DeepSeek-R1's); the "
                  "lognormal spread (sigma 1.0, prompts and replies) is fitted to the 11 bundled ShareGPT runs "
                  "(serving_bench.csv: DeepSeek-R1 on 8 H200s, 1,000-prompt bursts and 4 clients; Qwen3-8B on an H100 "
                  "at 1-8 clients), where the longest replies set how long a burst lasts: of 0.8, 1.0 and 1.2 it gives "
                  "the smallest median error on requests/s (16.3, 13.8 and 14.1 %; 19 % at the mean lengths), a "
                  "choice made while each client's share ran chained behind its own previous request. With the "
                  "clients' --max-concurrency replayed as the semaphore it is, requests/s alone would now take 0.8 "
                  "(9.5 % over the 27 ShareGPT runs bundled, 13.6 % at 1.0), but with the rate stage refitted every "
                  "other measure holds or slips (in sample 7.62 -> 7.66 %, left out by hardware p90 31.2 -> 31.4 %, "
                  "serving_bench.csv left out 33.9 -> 35.2 %), so 1.0 stays; prompts beyond 1024 tokens are held at "
                  "1024 here (the client leaves them out). Replies are held at 1024 tokens too, a bound on the data, "
                  "not a client filter: the client's seed-0 shuffle makes every run's first N prompts the same "
                  "conversations, and IOG's 200-prompt runs bound their longest reply, since no reply outlasts the "
                  "run and no token comes faster than at one request/s: DeepSeek-R1-Distill-Qwen-32B, a reasoning "
                  "model that writes each reply to its dataset length (mean 211-214 tokens at every rate), ran 43.7 s "
                  "at 32 requests/s on one H100 PCIe and decodes at 41.6 ms a token at 1, so no reply of the first 200 "
                  "exceeds 1,050 tokens (1,018 by QwQ-32B-Preview's run, the same architecture), where the lognormal "
                  "alone draws two of 1,468 and 1,521 in 200, the two that set the predicted duration. Of caps 2044 "
                  "(the pair filter alone), 1536, 1280, 1024 and 768 tokens, "
                  "the gpustack vLLM bursts the rate stage fits give requests/s 12.7, 12.6, 10.0, 8.8 and 8.8 % "
                  "median error before its refit; IOG's held-out runs 30.4, 28.1, 20.1, 16.2 and 8.7 %",
        "description": "chat prompts and replies as the ShareGPT benchmark samples them",
        "input": {"dist": "lognormal", "median": 144, "sigma": 1.0, "min": 4, "max": 1024},
        "output": {"dist": "lognormal", "median": 128, "sigma": 1.0, "min": 4, "max": 1024},
        "arrival": {"process": "poisson"},
        "max_total": 2048,
    },
    "openorca": {
        "source": "MLPerf Inference Llama-2-70B (OpenOrca): mean output 294.45 tokens per sample, the reference "
                  "implementation's (mlcommons/inference language/llama2-70b README, Accuracy Target; a submission's "
                  "mean must lie within 90-110 % of it); inputs capped "
                  "at 1024 tokens by the MLPerf preprocessing (processorca.py --seqlen_limit=1024); the input mean (~300) "
                  "and both spreads are an assumption",
        "description": "MLPerf Llama-2-70B-like question answering",
        "input": {"dist": "lognormal", "mean": 300, "std": 250, "min": 16, "max": 1024},
        "output": {"dist": "lognormal", "mean": 294.45, "std": 256, "min": 1, "max": 1024},
        "arrival": {"process": "poisson"},
    },
}


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def _validated(d: dict, where: str) -> WorkloadSpec:
    try:
        return WorkloadSpec.model_validate(d)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise PlannerError(f"{where}: {loc + ': ' if loc else ''}{err['msg']}") from None


def get_workload(name_or_path: str) -> WorkloadSpec:
    """A built-in workload by name, or a workload YAML file."""
    if name_or_path in BUILTIN:
        return _validated({"name": name_or_path, **BUILTIN[name_or_path]}, f"built-in workload {name_or_path}")
    p = Path(name_or_path)
    if p.suffix.lower() in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise PlannerError(f"workload file {p} does not exist")
        d = read_yaml(p)
        if not isinstance(d, dict):
            raise PlannerError(f"{p}: a workload file is a mapping with at least 'input' and 'output'")
        d.setdefault("name", p.stem)
        d["base_dir"] = str(p.parent.resolve())
        return _validated(d, str(p))
    raise unknown("workload", name_or_path, BUILTIN)


def fixed_workload(isl: int, osl: int, *, process: str = "poisson", cv: float = 1.0, shared_prefix: float = 0.0,
                   name: str | None = None, source: str = "fixed lengths from flags") -> WorkloadSpec:
    if isl < 1 or osl < 1:
        raise PlannerError("input and output lengths must be at least 1 token")
    return _validated({"name": name or f"isl{isl}-osl{osl}", "source": source,
                       "input": {"dist": "fixed", "value": isl}, "output": {"dist": "fixed", "value": osl},
                       "arrival": {"process": process, "cv": cv}, "shared_prefix": shared_prefix}, "workload flags")
