"""All-reduce bandwidth across the GPUs of one machine (torch.distributed; NCCL on CUDA).

One process per GPU, spawned here; rank 0 writes the timings to a JSON file that the parent
reads. Runs only with several GPUs (``gloo`` on the CPU exists for testing the plumbing).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile

from planner.harness.backends import DTYPE_SIZE
from planner.harness.timing import summarize


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, backend: str, sizes: list[int], dtype: str, repeats: int, out: str):
    import time

    import torch
    import torch.distributed as dist

    cuda = backend == "nccl"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    t_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    dev = f"cuda:{rank}" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    results = []
    try:
        for nbytes in sizes:
            x = torch.ones(max(1, nbytes // DTYPE_SIZE[dtype]), dtype=t_dtype, device=dev)
            for _ in range(2):  # warm-up (NCCL sets up its rings on the first call)
                dist.all_reduce(x)
            sync()
            times = []
            for _ in range(repeats):  # every rank runs the same count: collectives must match
                dist.barrier()
                sync()
                t0 = time.perf_counter()
                dist.all_reduce(x)
                sync()
                times.append(time.perf_counter() - t0)
            slowest = torch.tensor(times, dtype=torch.float64, device=dev)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)  # a collective ends when its slowest rank does
            results.append({"elements": x.numel(), "times": slowest.cpu().tolist()})
    finally:
        if rank == 0:
            with open(out, "w") as f:
                json.dump(results, f)
        dist.destroy_process_group()


def allreduce_rows(world: int, sizes_bytes: list[int], dtype: str, repeats: int = 10, backend: str = "nccl") -> list[dict]:
    """kernels.csv rows for all-reduce: m = elements per rank, batch = ranks, bytes = buffer bytes per rank."""
    import torch.multiprocessing as mp

    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        mp.spawn(_worker, args=(world, _free_port(), backend, list(sizes_bytes), dtype, repeats, out), nprocs=world, join=True)
        with open(out) as f:
            results = json.load(f)
    finally:
        os.unlink(out)
    rows = []
    for r in results:
        s = summarize(r["times"])
        rows.append({"op": "allreduce", "backend": "torch", "device": "cuda" if backend == "nccl" else "cpu", "dtype": dtype,
                     "m": r["elements"], "batch": world, "bytes": r["elements"] * DTYPE_SIZE[dtype],
                     "repeats": s.repeats, "median_s": s.median_s, "p10_s": s.p10_s, "p90_s": s.p90_s, "threads": None})
    return rows
