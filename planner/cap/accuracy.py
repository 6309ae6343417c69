"""Accuracy placeholder per precision: recovery relative to the bf16 model (1.0).

Values are midpoints of published recovery ranges (see the sources); the plan issue
replaces this with per-task sensitivities. Multiplicative: A = r_weights x r_kv.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recovery:
    value: float
    source: str


WEIGHTS: dict[str, Recovery] = {
    "fp32": Recovery(1.0, "reference precision"),
    "bf16": Recovery(1.0, "reference precision"),
    "fp16": Recovery(1.0, "reference precision"),
    "fp8": Recovery(0.997, "FP8 W8A8 lossless at every scale: 'Give Me BF16 or Give Me Death' arXiv 2411.02355; Llama-3.1-70B-Instruct FP8 OpenLLM 84.40 -> 84.29"),
    "int8": Recovery(0.99, "INT8 W8A8 loses 1-3% untuned, <1.3% tuned (arXiv 2411.02355; neuralmagic Llama-3.1 w8a8 cards)"),
    "int8-wo": Recovery(0.997, "weight-only INT8 g128 ~ FP8 W8A8 (arXiv 2411.02355)"),
    "int4": Recovery(0.98, "W4A16 g128 recovery 97.9% (Llama-3.1-8B MMLU) to 99.8% (70B OpenLLM), neuralmagic w4a16 cards"),
    "w4a8": Recovery(0.97, "QoQ W4A8 +0.2..+0.75 WikiText2 PPL (QServe README)"),
    "fp4": Recovery(0.975, "NVFP4 about W4A16 quality, recovery 0.96-0.99 (Nemotron NVFP4 MMLU-Pro 78.3 -> 77.4, secondary)"),
    "mxfp4": Recovery(0.93, "MXFP4 with RTN/GPTQ 'severely degrades' (Egiazarian et al. arXiv 2509.23202): 0.90-0.95, rough"),
    "q8_0": Recovery(0.997, "8-bit block quantization ~ INT8 weight-only"),
    "q4_0": Recovery(0.97, "4.5-bit round-to-nearest blocks, no calibration: below AWQ/GPTQ int4 (0.97-0.99)"),
}

KV: dict[str, Recovery] = {
    "fp32": Recovery(1.0, "reference precision"),
    "bf16": Recovery(1.0, "reference precision"),
    "fp16": Recovery(1.0, "reference precision"),
    "fp8": Recovery(0.998, "FP8 E4M3 KV 'only minimally degrades' (vLLM docs quantized_kvcache)"),
    "int8": Recovery(0.998, "KV INT8 MMLU 35.64 -> 35.58 (llama2-7b-chat, LMDeploy kv_quant docs)"),
    "int4": Recovery(0.985, "KV INT4 MMLU 63.91 -> 62.36, GSM8K 70.13 -> 66.87 (internlm2-chat-7b, LMDeploy kv_quant docs)"),
    "q8_0": Recovery(0.998, "as int8 KV"),
    "q4_0": Recovery(0.985, "as int4 KV"),
}


def accuracy(weights: str, kv: str) -> dict:
    w, k = WEIGHTS[weights], KV[kv]
    lowered_by = [f"weights {weights} ({w.value:.3f})"] if w.value < 1 else []
    lowered_by += [f"KV {kv} ({k.value:.3f})"] if k.value < 1 else []
    return {"score": round(w.value * k.value, 4), "relative_to": "bf16 model = 1.0", "lowered_by": lowered_by,
            "sources": [s for s, v in ((w.source, w.value), (k.source, k.value)) if v < 1]}
