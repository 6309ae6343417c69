"""Serving engines: how an engine budgets memory and what it adds per kernel and per step.

The hardware spec holds what the device achieves; an engine adds its own software
costs: a kernel-launch gap per op when its kernels are not captured in CUDA graphs,
a scheduler/sampling cost per step, and its batch limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.errors import unknown

GiB = 2.0**30


@dataclass(frozen=True)
class Engine:
    id: str = "trtllm"
    # fraction of device memory the engine may use (vLLM gpu_memory_utilization default 0.9;
    # TensorRT-LLM gives the KV cache 0.9 of the memory left after weights)
    utilization: float = 0.90
    # "free": the KV cache gets `utilization` of the memory left after weights, activations and
    # runtime (TensorRT-LLM kv_cache_free_gpu_memory_fraction); "total": the engine uses
    # `utilization` of the device and the KV cache gets what weights leave (vLLM)
    kv_policy: str = "free"
    # CUDA context, cuBLAS/NCCL workspaces, allocator slack: a prior (~1 GiB non-torch memory)
    runtime_bytes: float = 1.0 * GiB
    max_batched_tokens: int = 8192  # activation workspace is sized for this many tokens (TRT-LLM max_num_tokens default)
    kv_block_tokens: int = 64  # paged-KV block size; a sequence holds whole blocks
    max_seqs: int = 2048  # engine cap on concurrent sequences (TensorRT-LLM max_batch_size default)
    kernel_overhead_s: float = 0.0  # extra gap per op (kernel launches not in CUDA graphs)
    step_overhead_s: float = 0.0  # extra host time per step beyond the hardware's
    source: str = ""

    def runtime_for(self, hw) -> float:
        return self.runtime_bytes if hw.kind in ("gpu", "accelerator", "tpu") else 0.0

    def with_(self, **kw) -> "Engine":
        return replace(self, **kw)


ENGINES: dict[str, Engine] = {
    "trtllm": Engine("trtllm", source="TensorRT-LLM defaults: max_batch_size 2048, max_num_tokens 8192, KV fraction 0.9; decode in CUDA graphs"),
    "vllm": Engine("vllm", kv_policy="total", max_seqs=256, kv_block_tokens=16, source="vLLM defaults: max_num_seqs 256, block size 16, gpu_memory_utilization 0.9; CUDA graphs"),
    "llamacpp": Engine(
        "llamacpp", utilization=1.0, max_seqs=1, kv_block_tokens=1, runtime_bytes=0.5 * GiB,
        kernel_overhead_s=8e-6,
        source="llama.cpp: one stream, no CUDA graphs in the published runs; 8 us per-op launch gap is a prior "
               "(between the ~4-16 us gaps the published single-stream rows imply on desktop and server hosts)",
    ),
}


def get_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise unknown("engine", name, ENGINES)
    return ENGINES[name]
