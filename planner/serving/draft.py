"""The context and speculation techniques' own costs outside the target model's steps:

* a draft model for speculative decoding (a small model of the same family): its weights and KV cache share the
  target's devices, and its decode and prefill steps are priced by the same cost model (costmodel/step.py) as
  the target's, with the target's tensor-parallel split where the draft's heads allow it;
* a prompt compressor (LLMLingua family): a small encoder or LM that reads the whole original prompt once on the
  same devices before the target prefills the compressed prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.costmodel.memory import kv_bytes_per_seq, weight_bytes_per_device
from planner.costmodel.plans import PlanArrays, check_divisibility, make_plans
from planner.costmodel.step import CostModel, Step
from planner.errors import PlannerError
from planner.specs.hardware import Hardware
from planner.specs.model import Model


class DraftModel:
    """A draft model beside the target: per target plan row, the draft runs with the target's tp (1 where its
    heads do not split that way), no pipeline, the target's weight and KV formats."""

    def __init__(self, draft: Model, hw: Hardware, target: PlanArrays, *, weights: str | list[str], kv: str | list[str],
                 engine=None):
        self.model = draft
        tp = np.asarray(target.tp, np.int64)
        trial = make_plans(draft, hw, tp=tp, weights=weights, kv=kv, check=False, engine=engine)
        tp = np.where(check_divisibility(draft, trial), tp, 1)
        self.plans = make_plans(draft, hw, tp=tp, adp=np.asarray(target.adp, np.int64), weights=weights, kv=kv,
                                check=False, engine=engine)
        self.cm = CostModel(draft, hw, engine=engine)

    def weight_bytes(self) -> np.ndarray:
        """Draft weights on each of the target's devices."""
        return weight_bytes_per_device(self.model, self.plans)

    def kv_bytes_per_seq(self, ctx, block_tokens: int = 1) -> np.ndarray:
        return kv_bytes_per_seq(self.model, self.plans, ctx, block_tokens)

    def decode_step_s(self, seqs, ctx) -> np.ndarray:
        """One draft decode step over ``seqs`` running sequences at context ``ctx`` (one drafted token each)."""
        sc = self.cm.step(self.plans, Step(decode_seqs=seqs, decode_ctx=ctx))
        return sc.time_s

    def prefill_s(self, tokens) -> np.ndarray:
        """The draft's prefill of one prompt of ``tokens`` tokens (it needs its own KV of the prompt)."""
        return self.cm.step(self.plans, Step(prefill_seqs=1.0, prefill_tokens=tokens)).time_s


@dataclass(frozen=True)
class Compressor:
    """A prompt compressor's architecture, enough to price it: parameters (memory), and the dense layers a token
    passes through (compute). Encoders classify every token in one pass over windows of ``window`` tokens."""

    model: str
    params: float  # all parameters, embeddings included (weights held in memory, 16 bit)
    layers: int
    hidden: int
    ffn: int
    window: int  # tokens per forward pass (the encoder's maximum input; the prompt is split into such windows)
    source: str

    def flops_per_token(self) -> float:
        """Dense-layer FLOPs per token (QKV/O projections + MLP) plus attention within its window."""
        per_layer = 2.0 * (4 * self.hidden * self.hidden + 2 * self.hidden * self.ffn) + 4.0 * self.window * self.hidden
        return per_layer * self.layers


# the compressor each method runs (prompt-compression method ids of planner/cap)
COMPRESSORS = {
    "llmlingua-2": Compressor("xlm-roberta-large", 560e6, 24, 1024, 4096, 512,
                              "LLMLingua-2 arXiv 2403.12968 §4 (XLM-RoBERTa-large token classifier); "
                              "microsoft/llmlingua-2-xlm-roberta-large-meetingbank model card; XLM-R arXiv 1911.02116 Table 7 (550M)"),
    "llmlingua-2-small": Compressor("bert-base-multilingual-cased", 178e6, 12, 768, 3072, 512,
                                    "microsoft/llmlingua-2-bert-base-multilingual-cased-meetingbank model card; "
                                    "google-bert/bert-base-multilingual-cased (12 layers, 768 hidden)"),
    "llmlingua": Compressor("llama-2-7b", 6.74e9, 32, 4096, 3 * 11008 // 2, 4096,
                            "LLMLingua arXiv 2310.05736 (small LM: LLaMA-7B); llmlingua PromptCompressor default NousResearch/Llama-2-7b-hf"),
    "longllmlingua": Compressor("llama-2-7b", 6.74e9, 32, 4096, 3 * 11008 // 2, 4096,
                                "LongLLMLingua arXiv 2310.06839 (LLaMA-2-7B small LM)"),
    "selective-context": Compressor("gpt2", 124e6, 12, 768, 3072, 1024,
                                    "Selective Context arXiv 2310.06201 (self-information from GPT-2 small)"),
}


def compressor(method: str) -> Compressor:
    from planner.cap.techniques import compression_method

    mid = compression_method(method)
    if mid not in COMPRESSORS:
        raise PlannerError(f"no compressor on record for prompt-compression method {method!r}")
    return COMPRESSORS[mid]


def compressor_time_s(comp: Compressor, cm: CostModel, plans: PlanArrays, prompt_tokens) -> np.ndarray:
    """Device seconds to compress one prompt of ``prompt_tokens`` original tokens: a roofline over the
    compressor's FLOPs at the device's achievable GEMM rate (the compressor runs on one device in 16 bit, so the
    16-bit rate of ``plans`` applies when its weights are 16 bit) and one read of its weights per window."""
    n = np.asarray(prompt_tokens, float)
    flops = comp.flops_per_token() * n
    windows = np.ceil(n / comp.window)
    t_c = flops / np.asarray(plans.attn_flops, float)  # the 16-bit tensor-core rate (attention runs at it too)
    t_m = windows * comp.params * 2.0 / cm.bw
    return np.maximum(t_c, t_m) + windows * cm.kernel_s * comp.layers * 6


def compressor_bytes(comp: Compressor | None) -> float:
    """Compressor weights held on the device (16 bit)."""
    return 0.0 if comp is None else 2.0 * comp.params
