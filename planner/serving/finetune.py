"""Fine-tuning beside serving (FlexLLM, arXiv 2402.18789) and fine-tuned variants sharing base blocks (BlockLLM,
arXiv 2404.18322).

FlexLLM co-serving: a PEFT job's tokens ride in the inference engine's steps. Decode steps are memory bound, so the
tensor cores have room; each step carries F fine-tuning tokens beside the running decodes. A fine-tuning token costs
FINETUNE_FORWARD_MULTIPLE forward passes through the frozen base (forward, the backward pass's activation gradients,
and recomputing the checkpointed forward) plus its adapter's own FLOPs; they are priced as prefill tokens of
fine-tuning sequences in the same step (serving/batching.py's steady state, costmodel/step.py's step). The job gets
the largest F whose added step time keeps the inference TPOT within the limit: tokens/s = F / (TPOT with F).
Not modelled: the fine-tuning activations' memory (taken from the activation buffer the engine already reserves) and
the optimizer step of the adapter weights (tiny for rank <= 64).

BlockLLM: N fine-tuned variants of one model, a fraction s of whose blocks are shared (identical to the base); one
copy of the shared blocks and N copies of the rest: W (1 + (N - 1)(1 - s)) against N W for a full copy each.
"""

from __future__ import annotations

import functools

import numpy as np

from planner.costmodel.step import Step

# forward + backward (activation gradients only: the base is frozen) + recompute of the checkpointed forward
FINETUNE_FORWARD_MULTIPLE = 3.0
FINETUNE_SOURCE = ("prior: a PEFT token costs ~3 forward passes of the frozen base (forward, activation-gradient "
                   "backward, checkpoint recompute); FlexLLM (arXiv 2402.18789) co-serves them in inference steps")


@functools.cache
def token_grid() -> np.ndarray:
    """Fine-tuning tokens per step tried (built on first use, not at import: np.unique loads numpy.ma)."""
    return np.unique(np.concatenate([[0.0], np.geomspace(16, 65536, 49)]))


def co_finetune(cm, plans, running, ctx, tpot_s: float, tpot_limit_s: float, seq_tokens: int) -> dict:
    """Fine-tuning tokens/s a PEFT job gets beside an inference steady state of ``running`` decodes at context ``ctx``
    (whose TPOT is ``tpot_s``) while TPOT stays within ``tpot_limit_s``; and alone on the same GPUs."""
    F = token_grid()
    seqs = FINETUNE_FORWARD_MULTIPLE * F / seq_tokens  # sequences' worth of forward-equivalent tokens per step
    take = np.zeros(len(F), dtype=np.int64)
    p = plans.take(take)
    base = cm.step(p, Step(decode_seqs=running, decode_ctx=ctx))
    mixed = cm.step(p, Step(prefill_seqs=seqs, prefill_tokens=seq_tokens, decode_seqs=running, decode_ctx=ctx))
    added = np.maximum(mixed.time_s - base.time_s, 0.0)
    tpot = tpot_s + added
    ok = tpot <= tpot_limit_s
    i = int(np.nonzero(ok)[0].max()) if ok.any() else 0
    alone = cm.step(p, Step(prefill_seqs=seqs, prefill_tokens=seq_tokens))
    rate_alone = np.where(F > 0, F / alone.time_s, 0.0)
    best_alone = float(rate_alone.max())
    got = float(F[i] / tpot[i]) if ok.any() and F[i] > 0 else 0.0
    return {"tokens_per_s": got, "tokens_per_step": float(F[i]) if ok.any() else 0.0,
            "inference_tpot_s": float(tpot[i]), "inference_tpot_alone_s": float(tpot_s), "tpot_limit_s": float(tpot_limit_s),
            "dedicated_tokens_per_s": best_alone, "share_of_dedicated": got / best_alone if best_alone > 0 else 0.0,
            "forward_multiple": FINETUNE_FORWARD_MULTIPLE, "sequence_tokens": int(seq_tokens),
            "meets_limit": bool(ok.any()), "source": FINETUNE_SOURCE}


def shared_variants(weights_bytes: float, variants: int, shared: float) -> dict:
    """BlockLLM: bytes of ``variants`` fine-tuned copies sharing a fraction ``shared`` of the base blocks."""
    together = weights_bytes * (1.0 + (variants - 1) * (1.0 - shared))
    full = weights_bytes * variants
    return {"variants": variants, "shared_fraction": shared, "weights_bytes": together, "full_copies_bytes": full,
            "saved_bytes": full - together, "extra_bytes_over_base": together - weights_bytes,
            "source": "BlockLLM (arXiv 2404.18322): shared blocks held once, the rest per variant"}


def parse_variants(text: str | None) -> tuple[int, float] | None:
    from planner.errors import PlannerError

    if not text:
        return None
    n, _, s = str(text).partition(":")
    try:
        n_i, s_f = int(n), float(s)
    except ValueError:
        raise PlannerError(f"--shared-variants takes VARIANTS:SHARED_FRACTION such as 8:0.75, got {text!r}") from None
    if n_i < 1:
        raise PlannerError(f"--shared-variants {text}: at least one variant")
    if not 0.0 < s_f < 1.0:
        raise PlannerError(f"--shared-variants {text}: the shared fraction must be inside (0, 1)")
    return n_i, s_f
