"""Array backends for the harness: the few operations a decoder layer and the kernel
benchmarks need, once for numpy (CPU, fp32) and once for torch (CPU or CUDA).

The transformer (``planner.harness.transformer``) and the kernel grid (``planner.harness.kernels``)
are written once against this small interface, so both backends run the same structure.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from planner.errors import PlannerError
from planner.harness import host

# Tensors larger than this are filled from a seeded random block repeated with a prime period:
# drawing 10^9 normals costs ~25 s on a small CPU, copying a block costs well under one. Values
# stay random-looking and non-zero (rows are shifted copies), which is all timing needs.
_TRUE_RANDOM_MAX = 1 << 22
_BLOCK = 1_000_003  # prime, so the period does not line up with any row length

# rows that time layer code rather than one kernel (calls column 0): the expert loop without its GEMMs
NOT_KERNELS = ("moe_loop",)

DTYPE_SIZE = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2, "fp8_e4m3": 1}


def random_normal(rng: np.random.Generator, shape, std: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Seeded N(0, std^2) values; never all zeros (see _TRUE_RANDOM_MAX for large tensors)."""
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    n = math.prod(shape)
    if n <= _TRUE_RANDOM_MAX:
        return (rng.standard_normal(n, dtype=np.float64) * std).astype(dtype).reshape(shape)
    block = (rng.standard_normal(_BLOCK, dtype=np.float64) * std).astype(dtype)
    out = np.empty(n, dtype=dtype)
    reps = n // _BLOCK
    out[: reps * _BLOCK].reshape(reps, _BLOCK)[:] = block
    out[reps * _BLOCK:] = block[: n - reps * _BLOCK]
    return out.reshape(shape)


def _slices(n: int, parts: int) -> list[slice]:
    step = -(-n // parts)
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def torch_or_none():
    try:
        import torch

        return torch
    except ImportError:
        return None


class NumpyOps:
    """numpy on the CPU. BLAS (matmul) uses ``threads`` threads; numpy's elementwise ufuncs and
    decode attention (einsum) run on one thread; the bandwidth kernels split their arrays over
    ``threads`` threads."""

    name = "numpy"
    device = "cpu"

    def __init__(self, dtype: str = "fp32", threads: int | None = None):
        if dtype not in ("fp32", "fp64"):
            raise PlannerError(f"the numpy backend supports fp32 and fp64, not {dtype}")
        self.dtype = dtype
        self.np_dtype = np.float32 if dtype == "fp32" else np.float64
        self.elem_size = DTYPE_SIZE[dtype]
        self.threads = threads or host.logical_cores()
        got = host.set_blas_threads(self.threads)
        if got is not None:
            self.threads = got
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def threads_for(self, op: str) -> int:
        """Threads that work on ``op`` (numpy's elementwise ufuncs are single-threaded)."""
        return 1 if op in ("rmsnorm", "silu_mul", "add", "attn_decode", "moe_loop") else self.threads

    # library calls one kernel of each op makes (each pays numpy's per-call dispatch), as written below
    CALLS = {"gemm": 1, "attn_prefill": 11, "attn_decode": 8, "rmsnorm": 7, "silu_mul": 5, "add": 1,
             "copy": 1, "read": 1, "write": 1}

    def calls_for(self, op: str) -> int:
        return 0 if op.startswith("host_") or op in NOT_KERNELS else self.CALLS.get(op, 1)

    # ---- arrays ----
    def randn(self, shape, std: float, rng: np.random.Generator):
        return random_normal(rng, shape, std, self.np_dtype)

    def tokens(self, rng: np.random.Generator, vocab: int, shape):
        return rng.integers(0, vocab, size=shape, dtype=np.int64)

    def empty(self, shape):
        return np.empty(shape, dtype=self.np_dtype)

    def asarray(self, x: np.ndarray):
        return np.asarray(x, dtype=self.np_dtype)

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def cat(self, xs, axis: int):
        return np.concatenate(xs, axis=axis)

    # ---- layer math ----
    def rmsnorm(self, x, w, eps: float = 1e-5):
        return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)) * w

    def silu_mul(self, gate, up):
        return gate / (1.0 + np.exp(-gate)) * up

    def add(self, a, b):
        return a + b

    def attention(self, q, k, v, start: int, scale: float | None = None):
        """Causal GQA attention. q (b, H, t, d) at positions start..start+t-1; k (b, KVH, L, d),
        v (b, KVH, L, dv) with L = start + t. Query heads h use kv head h // (H / KVH); KVH = 1 with
        d != dv is MLA's absorbed decode over the latent cache. ``scale`` defaults to 1/sqrt(d)."""
        b, H, t, d = q.shape
        kvh, L, dv = k.shape[1], k.shape[2], v.shape[-1]
        g = H // kvh
        scale = 1.0 / math.sqrt(d) if scale is None else scale
        qg = (q * scale).reshape(b, kvh, g * t, d)  # one GEMM per kv head covers its g query heads
        if t == 1:
            # decode: b x kvh tiny (g x d) @ (d x L) products. einsum's own loops (one thread) read the
            # cache at a steady rate; BLAS threads stall on thousands of tiny GEMMs on small VMs.
            s = np.einsum("bhqd,bhld->bhql", qg, k)
            s -= s.max(axis=-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            return np.einsum("bhql,bhld->bhqd", s, v).reshape(b, H, t, dv)
        s = np.matmul(qg, k.swapaxes(-1, -2))  # (b, kvh, g*t, L)
        s = s.reshape(b, kvh, g, t, L)
        s += np.triu(np.full((t, L), -np.inf, dtype=s.dtype), k=start + 1)  # key j is visible to query i when j <= start + i
        s = s.reshape(b, kvh, g * t, L)
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        return np.matmul(s, v).reshape(b, H, t, dv)

    # ---- mixture-of-experts routing ----
    def softmax(self, x, axis: int = -1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def topk(self, x, k: int):
        """(values, indices) of the k largest entries along the last axis (unordered)."""
        idx = np.argpartition(x, -k, axis=-1)[..., -k:]
        return np.take_along_axis(x, idx, axis=-1), idx

    def where(self, mask):
        return np.nonzero(mask)

    def zeros_like(self, x):
        return np.zeros_like(x)

    def broadcast_to(self, x, shape):
        return np.broadcast_to(x, shape)

    def index_add(self, out, rows, src):
        out[rows] += src  # rows are distinct: a token picks an expert at most once
        return out

    # ---- kernels (benchmarks) ----
    def gemm(self, x, w, out):
        np.matmul(x, w, out=out)

    def copy(self, dst, src):
        if self._pool is None:
            np.copyto(dst, src)
        else:
            list(self._pool.map(lambda s: np.copyto(dst[s], src[s]), _slices(len(dst), self.threads)))

    def read(self, src):
        if self._pool is None:
            return src.sum()
        return sum(self._pool.map(lambda s: src[s].sum(), _slices(len(src), self.threads)))

    def write(self, dst):
        if self._pool is None:
            dst.fill(1.0)
        else:
            list(self._pool.map(lambda s: dst[s].fill(1.0), _slices(len(dst), self.threads)))

    # ---- timing ----
    clock = "wall"  # or "thread": CPU time of the calling thread (one thread, on a busy machine)

    def time_call(self, fn) -> float:
        now = time.thread_time if self.clock == "thread" else time.perf_counter
        t0 = now()
        fn()
        return now() - t0

    def inference(self):
        import contextlib

        return contextlib.nullcontext()


class TorchOps:
    """torch on ``cpu`` (fp32) or ``cuda`` (bf16 by default). CUDA work is timed with events."""

    name = "torch"

    def __init__(self, device: str = "cpu", dtype: str | None = None, threads: int | None = None):
        torch = torch_or_none()
        if torch is None:
            raise PlannerError("torch is not installed (pip install torch, or the 'harness' extra)")
        if device == "cuda" and not torch.cuda.is_available():
            raise PlannerError("no CUDA device is available")
        self.torch = torch
        self.device = device
        self.dtype = dtype or ("bf16" if device == "cuda" else "fp32")
        self.t_dtype = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.dtype]
        self.elem_size = DTYPE_SIZE[self.dtype]
        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        import torch.nn.functional as F

        self.F = F
        self._gqa = True  # scaled_dot_product_attention(enable_gqa=...) exists from torch 2.5

    def close(self) -> None:
        pass

    def threads_for(self, op: str) -> int:
        return self.threads

    # Python-level torch calls one kernel of each op makes, as written below
    CALLS = {"gemm": 1, "attn_prefill": 1, "attn_decode": 1, "rmsnorm": 6, "silu_mul": 2, "add": 1,
             "copy": 1, "read": 1, "write": 1}

    def calls_for(self, op: str) -> int:
        return 0 if op.startswith("host_") or op in NOT_KERNELS else self.CALLS.get(op, 1)

    # ---- arrays ----
    def _t(self, a: np.ndarray, dtype=None):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(device=self.device, dtype=dtype or self.t_dtype)

    def randn(self, shape, std: float, rng: np.random.Generator):
        # same values as the numpy backend for the same seed (small models compare exactly)
        return self._t(random_normal(rng, shape, std, np.float32))

    def tokens(self, rng: np.random.Generator, vocab: int, shape):
        return self._t(rng.integers(0, vocab, size=shape, dtype=np.int64), self.torch.long)

    def empty(self, shape):
        return self.torch.empty(shape, dtype=self.t_dtype, device=self.device)

    def asarray(self, x: np.ndarray):
        return self._t(np.asarray(x, dtype=np.float32))

    def to_numpy(self, x) -> np.ndarray:
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()

    def cat(self, xs, axis: int):
        return self.torch.cat(xs, dim=axis)

    # ---- layer math ----
    def rmsnorm(self, x, w, eps: float = 1e-5):
        return x * self.torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def silu_mul(self, gate, up):
        return self.F.silu(gate) * up

    def add(self, a, b):
        return a + b

    def attention(self, q, k, v, start: int, scale: float | None = None):
        t, L = q.shape[2], k.shape[2]
        mask, causal = None, False
        if t == 1 and k.shape[1] == 1:
            # decode over one cached head (MLA's absorbed latent, multi-query): every query head reads it once, as two
            # batched products over the sequence. SDPA would expand the cache to every head first (MLA's 576-wide
            # latent also leaves its fused kernels), copying b x heads x L x width elements per call.
            b, H, _, d = q.shape
            s = self.torch.bmm(q.reshape(b, H, d), k[:, 0].transpose(1, 2)).float() * (d**-0.5 if scale is None else scale)
            p = self.torch.softmax(s, dim=-1).to(v.dtype)
            return self.torch.bmm(p, v[:, 0]).reshape(b, H, 1, v.shape[-1])
        if t > 1 and start == 0:
            causal = True
        elif t > 1:
            mask = self.torch.ones(t, L, dtype=self.torch.bool, device=q.device).tril(diagonal=start)
        if self._gqa:
            try:
                return self.F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale,
                                                           enable_gqa=k.shape[1] != q.shape[1])
            except TypeError:  # torch < 2.5
                self._gqa = False
        g = q.shape[1] // k.shape[1]
        if g > 1:
            k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        return self.F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)

    # ---- mixture-of-experts routing ----
    def softmax(self, x, axis: int = -1):
        return self.torch.softmax(x, dim=axis)

    def topk(self, x, k: int):
        return self.torch.topk(x, k, dim=-1)

    def where(self, mask):
        return self.torch.nonzero(mask, as_tuple=True)

    def zeros_like(self, x):
        return self.torch.zeros_like(x)

    def broadcast_to(self, x, shape):
        return x.expand(*shape)

    def index_add(self, out, rows, src):
        return out.index_add_(0, rows, src)

    # ---- kernels (benchmarks) ----
    def gemm(self, x, w, out):
        self.torch.matmul(x, w, out=out)

    def fp8_gemm_available(self) -> str | None:
        """None when torch._scaled_mm with float8_e4m3fn runs here, else why not."""
        torch = self.torch
        if self.device != "cuda":
            return "fp8 GEMMs need CUDA"
        if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
            return f"torch {torch.__version__} has no torch._scaled_mm / float8_e4m3fn"
        if torch.cuda.get_device_capability(0) < (8, 9):
            return "fp8 GEMMs need compute capability 8.9 or newer"
        return None

    def int8_gemm_available(self) -> str | None:
        """None when torch._int_mm runs here (CUDA), else why not."""
        if self.device != "cuda":
            return "int8 GEMMs need CUDA"
        if not hasattr(self.torch, "_int_mm"):
            return f"torch {self.torch.__version__} has no torch._int_mm"
        return None

    def typed_gemm(self, dtype: str, m: int, n: int, k: int, copies: int, rng: np.random.Generator):
        """(a, weights, call): an (m, k) activation, ``copies`` distinct (k, n) weights of ``dtype`` (bf16, fp16,
        fp8_e4m3 through torch._scaled_mm with a bf16 output, int8 through torch._int_mm with an int32 output) and
        ``call(a, w)``, one GEMM. Values are N(0, 1) activations and N(0, 1/k) weights drawn on the device (integers in
        [-64, 64) for int8), never zeros (a product of zeros runs faster than one of real data)."""
        torch = self.torch
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(rng.integers(0, 2**31 - 1)))

        def normal(shape, std):
            return torch.randn(shape, generator=gen, device=self.device, dtype=torch.float32) * std

        if dtype in ("bf16", "fp16"):
            t = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
            a = normal((m, k), 1.0).to(t)
            ws = [normal((k, n), k**-0.5).to(t) for _ in range(copies)]
            out = torch.empty((m, n), dtype=t, device=self.device)
            return a, ws, lambda a, w: torch.matmul(a, w, out=out[: a.shape[0]])
        if dtype == "fp8_e4m3":
            a = normal((m, k), 1.0).to(torch.float8_e4m3fn)
            ws = [normal((n, k), 1.0).to(torch.float8_e4m3fn).t() for _ in range(copies)]  # column-major, as _scaled_mm wants
            one = torch.ones((), dtype=torch.float32, device=self.device)
            return a, ws, lambda a, w: torch._scaled_mm(a, w, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        if dtype == "int8":
            a = torch.randint(-64, 64, (m, k), generator=gen, device=self.device, dtype=torch.int8)
            # column-major (k, n), the layout cuBLASLt's int8 tensor-core kernels take (a row-major one ran 10x slower on an H200)
            ws = [torch.randint(-64, 64, (n, k), generator=gen, device=self.device, dtype=torch.int8).t() for _ in range(copies)]
            return a, ws, lambda a, w: torch._int_mm(a, w)
        raise ValueError(f"no typed GEMM for {dtype}")

    def copy(self, dst, src):
        dst.copy_(src)

    def read(self, src):
        return src.sum()

    def write(self, dst):
        dst.fill_(1.0)

    # ---- timing ----
    clock = "wall"  # or "thread" (CPU only): CPU time of the calling thread

    def time_call(self, fn) -> float:
        if self.device == "cpu" and self.clock == "thread":
            t0 = time.thread_time()
            fn()
            return time.thread_time() - t0
        if self.device == "cuda":
            self.torch.cuda.synchronize()  # nothing queued before counts
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    GRAPH_TARGET_S = 2e-3  # device time one graph replay aims at
    GRAPH_MAX_CALLS = 32

    def graphed(self, fn):
        """(replay, calls): ``fn`` captured ``calls`` times back to back in a CUDA graph (as many as fill about
        GRAPH_TARGET_S, at most GRAPH_MAX_CALLS), and the call that replays it. Timed, a replay over ``calls`` is the
        device's time per call without the host's dispatch, as an engine that replays graphs runs its kernels; a call
        that cycles through weight copies or cache regions captures a different one each time. Raises RuntimeError
        where ``fn`` cannot be captured (a host synchronization inside it)."""
        torch = self.torch
        one = self.time_call(fn)  # eager, synchronized: sizes the graph and warms the library up outside the capture
        calls = int(min(self.GRAPH_MAX_CALLS, max(1, round(self.GRAPH_TARGET_S / max(one, 1e-6)))))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
            fn()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        torch.cuda.synchronize()
        return graph.replay, calls

    def inference(self):
        return self.torch.inference_mode()
