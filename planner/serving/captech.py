"""The context and attention CAP techniques of one plan, resolved against its model and hardware: context
extension past the trained context (RoPE scaling / YaRN), prompt compression, sparse attention, context
parallelism, and a draft model for speculation. ``estimate`` (serving/predict.py) and the simulator read this;
the plan search (search/evaluate.py) builds the same terms per row. Each technique is costed in C, A and P:
C through the context limit and KV memory, A through planner.cap (the same method ids and knobs), P through
the cost model (costmodel/sparse.py, costmodel/step.py) and the steady state (serving/batching.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.costmodel.plans import PlanArrays
from planner.costmodel.sparse import parse_sparse_attention, with_sparse
from planner.costmodel.step import CostModel
from planner.errors import PlannerError
from planner.serving.draft import Compressor, DraftModel, compressor, compressor_bytes, compressor_time_s
from planner.specs.hardware import Hardware
from planner.specs.model import Model


def _knob(text: str | None, what: str, example: str) -> tuple[str, float] | None:
    if not text:
        return None
    method, sep, v = str(text).partition(":")
    try:
        x = float(v)
    except ValueError:
        x = None
    if not sep or x is None or not np.isfinite(x):
        raise PlannerError(f"{what} takes METHOD:NUMBER such as {example}, got {text!r}")
    return method.strip().lower(), x


def parse_extension_text(text: str | None) -> tuple[str, float] | None:
    """``METHOD:FACTOR`` (yarn:4) -> (canonical method, factor >= 1), or None."""
    from planner.cap.accuracy import parse_extension

    k = _knob(text, "--context-extension", "yarn:4")
    return None if k is None else parse_extension(k)


def parse_compression_text(text: str | None) -> tuple[str, float] | None:
    """``METHOD:RATIO`` (llmlingua-2:4) -> (canonical method, ratio >= 1), or None."""
    from planner.cap.accuracy import parse_compression

    k = _knob(text, "--prompt-compression", "llmlingua-2:4")
    return None if k is None else parse_compression(k)


def parse_sparse_text(text: str | None) -> tuple[str, float] | None:
    return None if not text else parse_sparse_attention(text)


@dataclass
class CapSetup:
    """One plan's context/attention techniques, resolved."""

    extension: tuple[str, float] | None = None
    compression: tuple[str, float] | None = None
    sparse: tuple[str, float] | None = None
    compressor: Compressor | None = None
    draft: DraftModel | None = None

    @property
    def extension_factor(self) -> float:
        return self.extension[1] if self.extension else 1.0

    @property
    def ratio(self) -> float:
        return self.compression[1] if self.compression else 1.0

    def model_isl(self, isl: int) -> int:
        """Prompt tokens the target model sees (compressed)."""
        return int(np.ceil(isl / self.ratio))

    def extra_bytes(self) -> float:
        """Bytes per device the techniques hold beside the target: draft weights, compressor weights."""
        d = float(self.draft.weight_bytes()[0]) if self.draft is not None else 0.0
        return d + compressor_bytes(self.compressor)

    def draft_kv_per_seq(self, ctx, block_tokens: int) -> float:
        return float(self.draft.kv_bytes_per_seq(ctx, block_tokens)[0]) if self.draft is not None else 0.0

    def compress_s(self, cm: CostModel, plans: PlanArrays, isl) -> np.ndarray | float:
        return 0.0 if self.compressor is None else compressor_time_s(self.compressor, cm, plans, isl)

    def accuracy_knobs(self) -> dict:
        return {"context_extension": self.extension, "prompt_compression": self.compression,
                "sparse_attention": self.sparse}

    def notes(self, model: Model, isl: int, osl: int) -> list[str]:
        out = []
        if self.extension:
            out.append(f"{self.extension[0]} x{self.extension[1]:g} RoPE scaling: context up to "
                       f"{int(model.max_context * self.extension[1]):,} tokens (trained {model.max_context:,})")
        if self.compressor is not None:
            out.append(f"{self.compression[0]} compresses each prompt {self.compression[1]:g}x ({isl} -> {self.model_isl(isl)} "
                       f"tokens) with {self.compressor.model} on the same device; its time is in TTFT and in the device time, "
                       "and the max context counts original prompt tokens")
        if self.sparse:
            out.append(f"{self.sparse[0]} sparse attention keeping {self.sparse[1]:g} (full-attention layers)")
        if self.draft is not None:
            out.append(f"draft model {self.draft.model.id}: its weights, KV and steps share the target's devices")
        return out


def cap_setup(plan, model: Model, hw: Hardware, plans: PlanArrays, isl: int, osl: int, engine=None) -> tuple[CapSetup, PlanArrays]:
    """Resolve ``plan``'s techniques (a PlanSpec) and return them with ``plans`` carrying sparse attention."""
    from planner.specs.loader import get_model

    s = CapSetup(extension=parse_extension_text(plan.context_extension),
                 compression=parse_compression_text(plan.prompt_compression),
                 sparse=parse_sparse_text(plan.sparse_attention))
    if s.compression and s.compression[1] > 1:  # ratio 1 keeps every token: no compressor runs
        s.compressor = compressor(s.compression[0])
    if s.sparse:
        plans = with_sparse(plans, s.sparse[0], s.sparse[1], s.model_isl(isl) + osl)
    if plan.draft_model:
        if not (plan.spec_k > 0 or plan.spec_auto):
            raise PlannerError("--draft-model drafts for speculative decoding: give --spec K:ALPHA or auto:ALPHA too")
        d = get_model(plan.draft_model)
        if d.vocab_size != model.vocab_size:
            raise PlannerError(f"draft model {d.id} has a vocabulary of {d.vocab_size:,} tokens, {model.id} one of "
                               f"{model.vocab_size:,}: a draft must share the target's tokenizer")
        s.draft = DraftModel(d, hw, plans, weights=plan.weights, kv=plan.kv_format(engine, model), engine=engine)
    return s, plans
