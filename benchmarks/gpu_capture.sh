#!/usr/bin/env bash
# A full `planner profile` capture on one CUDA GPU, in one go, for a machine lent for a few minutes:
# kernel rows (GEMMs of Llama-3.1-8B's layers to 8,192 tokens in bf16 and FP8, square GEMMs in every
# tensor-core format, attention, bandwidth, norms, the MoE loop, host overhead) and end-to-end steps of the
# three reference models and 8 layers of Llama-3.1-8B; then a clock check (burst against sustained GEMMs) and a host
# check (the host's dispatch speed, as captured and pinned to one core); a tarball of the capture and the GPU's clocks.
# The kernel rows are timed as CUDA-graph replays (device time per call); host probes and e2e steps run eagerly.
#
#   OUT=/some/dir bash benchmarks/gpu_capture.sh        # from the repository root
#
# It runs the harness through its Python API (no CLI dependencies beyond the harness's own). A folder .whl of
# wheels (pydantic and its needs) is installed first where the machine lacks them and cannot download.
set -u
OUT=${OUT:-/tmp/planner_gpu_capture}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu \
  --format=csv > "$OUT/nvidia_smi_before.csv" 2>&1
nvidia-smi dmon -s pucm -d 1 > "$OUT/dmon.txt" 2>&1 &
DMON=$!
git rev-parse HEAD > "$OUT/commit.txt" 2>/dev/null || true
timeout "${CAPTURE_TIMEOUT_S:-420}" python3 - <<'EOF'
import sys, time
from pathlib import Path
import torch
from planner.harness.run import ProfileOptions, run_profile

print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0),
      torch.cuda.get_device_properties(0).multi_processor_count, "SMs", flush=True)
t0 = time.time()
r = run_profile(ProfileOptions(device="cuda", out=Path("/tmp/cap"), layers=8, memory_budget_bytes=16 << 30,
                               progress=False, warn=lambda m: print("warning:", m, flush=True),
                               command="planner profile --device cuda --max-memory 16GiB --layers 8"))
print(r.status, r.rows_written, "rows in", round(time.time() - t0, 1), "s ->", r.folder, "layers", r.layers, flush=True)
for s in r.skipped:
    print("skipped:", s)
EOF
echo "capture exit $?"
# the clock a sustained GEMM settles at: a 10-product burst after 3 warm-ups (a common quick check) against 3 s of
# back-to-back products, in windows of 150, with the SM clock, power and temperature nvidia-smi reads after each
timeout 60 python3 - <<'EOF' | tee "$OUT/sustained.txt"
import subprocess, time
import torch

def smi():
    q = "clocks.sm,power.draw,temperature.gpu"
    return subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()

n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
flop = 2 * n**3
time.sleep(5)  # let the chip idle after the capture
print("idle:", smi())
for _ in range(3):
    a @ b
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(10):
    a @ b
e.record(); e.synchronize()
print(f"burst of 10 after 3 warm-ups: {10 * flop / (s.elapsed_time(e) / 1e3) / 1e12:.1f} TFLOP/s; then", smi())
t_end = time.time() + 3.0
while time.time() < t_end:
    s.record()
    for _ in range(150):
        a @ b
    e.record(); e.synchronize()
    print(f"window: {150 * flop / (s.elapsed_time(e) / 1e3) / 1e12:.1f} TFLOP/s;", smi(), flush=True)
EOF
# the host's own speed: one decode step of the dense host-overhead probe (width 64: the host issuing its kernels),
# 300 times as the capture runs it, then with the process pinned to one core and one torch thread
timeout 60 python3 - <<'EOF' | tee "$OUT/host_check.txt"
import os
import numpy as np
from planner.harness.backends import TorchOps
from planner.harness.grids import make_grid
from planner.harness.kernels import Slot, host_cases
from planner.specs.loader import get_model

ops = TorchOps("cuda")
grid = make_grid("quick", get_model("llama-3.1-8b"), 300 << 20, "cuda", budget_bytes=4 << 30, elem_size=2)
case = host_cases(ops, grid, np.random.default_rng(0), Slot())[0]
fn = case.prepare()

def run(n=300):
    ts = np.array([ops.time_call(fn) for _ in range(n)]) * 1e3
    return "p10 %.2f  p50 %.2f  p90 %.2f  max %.2f ms" % (*np.percentile(ts, [10, 50, 90]), ts.max())

with ops.inference():
    for _ in range(20):
        ops.time_call(fn)
    print(case.row["op"], "decode step, batch", case.row["batch"], ", as captured:", run())
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[len(cpus) // 2]})
    ops.torch.set_num_threads(1)
    for _ in range(20):
        ops.time_call(fn)
    print(case.row["op"], "pinned to cpu", cpus[len(cpus) // 2], "with one torch thread:", run())
EOF
kill $DMON 2>/dev/null
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv > "$OUT/nvidia_smi_after.csv" 2>&1
tar czf "$OUT/capture.tgz" -C /tmp/cap . 2>/dev/null && ls -la "$OUT"
python3 - <<'EOF'
import csv, glob
for path in glob.glob("/tmp/cap/*/*/kernels.csv"):
    rows = list(csv.DictReader(open(path)))
    print(len(rows), "kernel rows")
    for r in rows:
        if r["op"] == "gemm" and r["m"] == r["n"] == r["k"]:
            print(f'{r["dtype"]:9s} {r["m"]:>6s}^3  {float(r["flops"]) / float(r["median_s"]) / 1e12:7.1f} TFLOP/s')
        if r["op"] in ("copy", "read", "write"):
            print(f'{r["op"]:9s} {float(r["bytes"]) / float(r["median_s"]) / 1e12:7.2f} TB/s')
EOF
