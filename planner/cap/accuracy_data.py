"""Schema and loader of ``accuracy/accuracy.yaml``: every published delta the accuracy model uses.

Validated with pydantic (extra keys forbidden) and cached; ``planner.cap.accuracy`` and
``planner.cap.techniques`` read it through ``data()``.
"""

from __future__ import annotations

import functools
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.specs.loader import data_dir, load_spec_file

Basis = Literal["measured", "secondary", "derived", "assumption"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Recovery(_Strict):
    """One weight or KV format: recovery r against bf16, with the published spread."""

    r: float = Field(ge=0.0, le=1.0)
    low: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    high: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    basis: Basis
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _range(self):
        if self.low is not None and self.low > self.r:
            raise ValueError(f"low {self.low} above r {self.r}")
        if self.high is not None and self.high < self.r:
            raise ValueError(f"high {self.high} below r {self.r}")
        return self


class EvictionMethod(_Strict):
    name: str
    scores: list[float]
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


class EvictionTable(_Strict):
    model: str
    benchmark: str
    context_tokens: int = Field(gt=0)
    full_kv_score: float = Field(gt=0)
    budgets_tokens: list[int]
    source: str = Field(min_length=1)
    methods: dict[str, EvictionMethod]

    @model_validator(mode="after")
    def _shape(self):
        b = self.budgets_tokens
        if not b or any(x <= 0 for x in b) or any(y <= x for x, y in zip(b, b[1:])) or b[-1] >= self.context_tokens:
            raise ValueError("budgets_tokens must rise strictly, from above 0 to below context_tokens")
        for mid, m in self.methods.items():
            if len(m.scores) != len(b):
                raise ValueError(f"{mid}: {len(m.scores)} scores for {len(b)} budgets")
        return self


class TaskClass(_Strict):
    k: float = Field(ge=0.0)
    low: Optional[float] = None
    high: Optional[float] = None
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


class SizeAdjustment(_Strict):
    applies_to: Literal["weights"]
    reference_params: float = Field(gt=0)
    exponent: float
    clip: tuple[float, float]
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


class Lossless(_Strict):
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


def _falling(what: str, r: list[float]) -> None:
    if any(not 0.0 <= v <= 1.0 for v in r):
        raise ValueError(f"{what}: recoveries must lie in [0, 1]")
    if any(b > a for a, b in zip(r, r[1:])):
        raise ValueError(f"{what}: recovery must not rise as the technique gets more aggressive")


class ExtensionMethod(_Strict):
    """A RoPE-scaling method: PPL rows (serve time) or benchmark points (fine-tuned checkpoint)."""

    name: str
    ppl: Optional[list[tuple[float, Optional[float], Optional[float]]]] = None
    points: Optional[list[tuple[float, float]]] = None
    basis: Basis
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_kind(self):
        rows = self.ppl if self.ppl is not None else self.points
        if (self.ppl is None) == (self.points is None) or not rows:
            raise ValueError(f"{self.name}: give exactly one of ppl or points, non-empty")
        s = [row[0] for row in rows]
        if s[0] <= 1.0 or any(b <= a for a, b in zip(s, s[1:])):
            raise ValueError(f"{self.name}: extension factors must rise strictly from above 1")
        if self.points is not None:
            _falling(self.name, [r for _, r in self.points])
        return self


class ContextExtension(_Strict):
    trained_length_tokens: int = Field(gt=0)
    base_ppl: float = Field(gt=0)
    ppl_to_loss: float = Field(gt=0)
    ppl_to_loss_evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)
    aliases: dict[str, str] = {}
    methods: dict[str, ExtensionMethod]


class CompressionMethod(_Strict):
    name: str
    tokens: list[int]
    scores: list[float]
    basis: Basis
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


class PromptCompression(_Strict):
    benchmark: str
    target_model: str
    original_tokens: int = Field(gt=0)
    original_score: float = Field(gt=0)
    floor_tokens: int = Field(gt=0)
    floor_score: float = Field(ge=0)
    floor_evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)
    aliases: dict[str, str] = {}
    methods: dict[str, CompressionMethod]

    @model_validator(mode="after")
    def _shape(self):
        for mid, m in self.methods.items():
            t = m.tokens
            if len(t) != len(m.scores) or not t:
                raise ValueError(f"{mid}: {len(m.scores)} scores for {len(t)} token counts")
            if t[0] >= self.original_tokens or t[-1] <= self.floor_tokens or any(b >= a for a, b in zip(t, t[1:])):
                raise ValueError(f"{mid}: token counts must fall strictly, between the original and the floor")
            _falling(mid, [min(1.0, v / self.original_score) for v in m.scores]
                     + [self.floor_score / self.original_score])
        return self


class SparseMethod(_Strict):
    name: str
    knob: str = Field(min_length=1)
    points: Optional[list[tuple[float, float]]] = None
    eviction: Optional[str] = None
    basis: Basis
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.points is None) == (self.eviction is None):
            raise ValueError(f"{self.name}: give exactly one of points or eviction")
        if self.points is not None:
            kept = [p[0] for p in self.points]
            if not kept or kept[0] >= 1.0 or kept[-1] <= 0.0 or any(b >= a for a, b in zip(kept, kept[1:])):
                raise ValueError(f"{self.name}: kept fractions must fall strictly, inside (0, 1)")
            _falling(self.name, [r for _, r in self.points])
        return self


class SparseAttention(_Strict):
    aliases: dict[str, str] = {}
    methods: dict[str, SparseMethod]


class Rule(_Strict):
    """A combination rule with no published number of its own (the inputs carry the numbers)."""

    rule: str = Field(min_length=1)
    basis: Optional[Basis] = None
    evidence: str = Field(min_length=1)
    source: str = Field(min_length=1)


class AccuracyData(_Strict):
    weights: dict[str, Recovery]
    kv: dict[str, Recovery]
    eviction: EvictionTable
    tasks: dict[str, TaskClass]
    size_adjustment: SizeAdjustment
    lossless: dict[str, Lossless]
    context_extension: ContextExtension
    prompt_compression: PromptCompression
    sparse_attention: SparseAttention
    expert_precision: Rule
    cache_routing: Rule

    @model_validator(mode="after")
    def _links(self):
        for name, sec in (("context_extension", self.context_extension), ("prompt_compression", self.prompt_compression),
                          ("sparse_attention", self.sparse_attention)):
            bad = {a: t for a, t in sec.aliases.items() if t not in sec.methods or a in sec.methods}
            if bad:
                raise ValueError(f"{name}: aliases {bad} must name a method and not shadow one")
        for mid, m in self.sparse_attention.methods.items():
            if m.eviction is not None and m.eviction not in self.eviction.methods:
                raise ValueError(f"sparse_attention.{mid}: unknown eviction curve {m.eviction!r}")
        return self


def data_path():
    return data_dir("accuracy") / "accuracy.yaml"


@functools.cache
def data() -> AccuracyData:
    """The published deltas (validated; cached)."""
    p = data_path()
    return load_spec_file(AccuracyData, p)
