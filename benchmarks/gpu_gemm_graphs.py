"""Device time of GEMMs against their token count on one CUDA GPU, free of host dispatch: each case is captured as
a CUDA graph of back-to-back GEMMs (one per copy of the weight, so consecutive GEMMs read their weight from HBM, not
L2) and the graph's replays are timed with CUDA events. What a serving engine that replays graphs pays per GEMM, at
the token counts its decode and prefill steps run; the harness's kernel rows synchronize around every call and carry
the host's dispatch, so they cannot resolve kernels shorter than about 30 us.

    python benchmarks/gpu_gemm_graphs.py OUT.csv            # on a CUDA machine (torch with CUDA)
    python benchmarks/gpu_gemm_graphs.py OUT.csv --dry      # the same code path eagerly on the CPU, tiny shapes (a check)

Shapes: Llama-3.1-8B's four projections, and Llama-3.1-70B's at tensor parallelism 8 (one GPU's shard); bf16
(torch.matmul) and FP8 e4m3 (torch._scaled_mm, per-tensor scales, bf16 out). Values are random, never zeros.
"""

from __future__ import annotations

import csv
import sys
import time

SHAPES = [  # (label, n = output width, k = reduction)
    ("llama8b qkv", 6144, 4096), ("llama8b o", 4096, 4096), ("llama8b gate_up", 28672, 4096), ("llama8b down", 4096, 14336),
    ("llama70b/tp8 qkv", 1280, 8192), ("llama70b/tp8 o", 8192, 1024), ("llama70b/tp8 gate_up", 7168, 8192),
    ("llama70b/tp8 down", 8192, 3584),
]
TOKENS = [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096, 8192]
COLD_BYTES = 256 << 20  # weight copies per graph add up to at least this: > 4x a Hopper's 50-60 MB L2


def main(argv: list[str]) -> int:
    import numpy as np
    import torch

    out_path, dry = argv[0], "--dry" in argv
    dev = "cpu" if dry else "cuda"
    shapes = [(lb, n // 64, k // 64) for lb, n, k in SHAPES[:2]] if dry else SHAPES
    tokens = [1, 4, 16] if dry else TOKENS
    formats = ["bf16"] if dry else ["bf16", "fp8_e4m3"]
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)
    rows = []
    t_start = time.time()
    for dtype in formats:
        for label, n, k in shapes:
            wb = n * k * (2 if dtype == "bf16" else 1)
            copies = max(2, -(-COLD_BYTES // wb)) if not dry else 2
            if dtype == "bf16":
                ws = [(torch.randn((k, n), generator=gen, device=dev) * k**-0.5).to(torch.bfloat16) for _ in range(copies)]
            else:
                ws = [torch.randn((n, k), generator=gen, device=dev).to(torch.float8_e4m3fn).t() for _ in range(copies)]
            one = torch.ones((), device=dev)
            for m in tokens:
                try:
                    if dtype == "bf16":
                        a = torch.randn((m, k), generator=gen, device=dev).to(torch.bfloat16)
                        o = torch.empty((m, n), device=dev, dtype=torch.bfloat16)

                        def body():
                            for w in ws:
                                torch.matmul(a, w, out=o)
                    else:
                        a = torch.randn((m, k), generator=gen, device=dev).to(torch.float8_e4m3fn)

                        def body():
                            for w in ws:
                                torch._scaled_mm(a, w, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

                    reps = 1
                    if dry:
                        t0 = time.perf_counter()
                        body()
                        times = [(time.perf_counter() - t0) / copies]
                    else:
                        body()  # warm-up outside the graph: cuBLAS picks and loads its kernels, allocates workspace
                        torch.cuda.synchronize()
                        s = torch.cuda.Stream()
                        s.wait_stream(torch.cuda.current_stream())
                        with torch.cuda.stream(s):
                            body()
                        torch.cuda.current_stream().wait_stream(s)
                        g = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(g):
                            body()
                        g.replay()
                        torch.cuda.synchronize()
                        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        e0.record(); g.replay(); e1.record(); e1.synchronize()
                        one_replay = e0.elapsed_time(e1) / 1e3
                        reps = max(1, min(50, int(0.02 / max(one_replay, 1e-6))))  # about 20 ms of GEMMs per timing
                        times = []
                        for _ in range(7):
                            e0.record()
                            for _ in range(reps):
                                g.replay()
                            e1.record(); e1.synchronize()
                            times.append(e0.elapsed_time(e1) / 1e3 / (reps * copies))
                        del g
                    t = float(np.median(times))
                    flops = 2.0 * m * n * k
                    byts = wb + m * k * (2 if dtype == "bf16" else 1) + m * n * 2
                    rows.append({"dtype": dtype, "label": label, "m": m, "n": n, "k": k, "weight_bytes": wb, "copies": copies,
                                 "replays": reps * 7, "device_s": f"{t:.4e}", "min_s": f"{min(times):.4e}",
                                 "max_s": f"{max(times):.4e}", "tflops": round(flops / t / 1e12, 2),
                                 "tb_per_s": round(byts / t / 1e12, 3)})
                except (RuntimeError, ValueError) as e:
                    print(f"skipped {dtype} {label} m={m}: {str(e).splitlines()[0][:160]}", flush=True)
            ws = None  # free the copies before the next shape
            if not dry:
                torch.cuda.empty_cache()
        print(f"{dtype}: done at {time.time() - t_start:.1f} s", flush=True)
    with open(out_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        if r["label"] == ("llama8b gate_up" if not dry else rows[0]["label"]) or r["m"] in (1, 256, 8192):
            print(f'{r["dtype"]:9s} {r["label"]:22s} m={r["m"]:5d} {float(r["device_s"]) * 1e6:9.2f} us '
                  f'{r["tflops"]:8.1f} TFLOP/s {r["tb_per_s"]:6.3f} TB/s')
    print(f"{len(rows)} rows in {time.time() - t_start:.1f} s -> {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
