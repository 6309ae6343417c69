"""What machine is this: host id, CPU/memory/OS facts, numpy's BLAS, and its thread count.

Everything here is best effort and never fails a run: a fact that cannot be read is left out
(or recorded as ``unknown``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import socket
import subprocess
from functools import cache

import numpy as np


# ---- CPU, memory, OS ----------------------------------------------------------------------
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@cache
def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return _sysctl("machdep.cpu.brand_string") or platform.processor() or platform.machine() or "unknown"


def logical_cores() -> int:
    return os.cpu_count() or 1


def physical_cores() -> int:
    pairs, phys, core = set(), None, None
    for line in _cpuinfo().splitlines() + [""]:
        if ":" in line:
            key, val = (s.strip() for s in line.split(":", 1))
            if key == "physical id":
                phys = val
            elif key == "core id":
                core = val
        elif not line.strip():
            if core is not None:
                pairs.add((phys, core))
            phys = core = None
    if pairs:
        return len(pairs)
    n = _sysctl("hw.physicalcpu")
    return int(n) if n and n.isdigit() else logical_cores()


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        n = _sysctl("hw.memsize")
        return int(n) if n and n.isdigit() else None


def _parse_size(text: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2).upper()]


@cache
def last_level_cache_bytes() -> int | None:
    """Size of the largest (last-level) data/unified cache seen by cpu0."""
    best = None
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in os.listdir(base):
            if not idx.startswith("index"):
                continue
            with open(f"{base}/{idx}/type") as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(f"{base}/{idx}/size") as f:
                size = _parse_size(f.read())
            if size and (best is None or size > best):
                best = size
    except OSError:
        pass
    if best is None:
        for name in ("hw.l3cachesize", "hw.l2cachesize"):
            n = _sysctl(name)
            if n and n.isdigit() and int(n) > 0:
                return int(n)
    return best


def hostname_hash() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:16]


# ---- host id ------------------------------------------------------------------------------
_NOISE = re.compile(r"\(r\)|\(tm\)|\bcpu\b|\bprocessor\b|@\s*[\d.]+\s*ghz|\b\d+-core\b|\bwith radeon.*$", re.IGNORECASE)


def slug(text: str) -> str:
    text = _NOISE.sub(" ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def host_id(gpu_name: str | None = None, gpu_count: int = 1) -> str:
    """A stable folder name for this machine, e.g. ``cpu-intel-xeon-platinum-8370c-2c``."""
    hid = f"cpu-{slug(cpu_model())}-{logical_cores()}c"
    if gpu_name:
        hid += f"-gpu-{slug(gpu_name)}" + (f"-x{gpu_count}" if gpu_count > 1 else "")
    return hid


# ---- numpy's BLAS and its threads ---------------------------------------------------------
def _threadpoolctl():
    try:
        import threadpoolctl

        return threadpoolctl
    except ImportError:
        return None


@cache
def _openblas():
    """The OpenBLAS library numpy loaded, and the symbol suffix its build uses (ctypes fallback)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("openblas_", ""), ("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "64_")):
            if hasattr(lib, f"{prefix}set_num_threads{suffix}"):
                return lib, prefix, suffix, path
    return None


def _ob_call(name: str, restype=ctypes.c_int, *args):
    ob = _openblas()
    if ob is None:
        return None
    lib, prefix, suffix, _ = ob
    fn = getattr(lib, f"{prefix}{name}{suffix}", None)
    if fn is None:
        return None
    fn.restype = restype
    return fn(*args)


def blas_threads() -> int | None:
    tp = _threadpoolctl()
    if tp is not None:
        info = [d for d in tp.threadpool_info() if d.get("user_api") == "blas"]
        if info:
            return int(info[0]["num_threads"])
    n = _ob_call("get_num_threads")
    return int(n) if n is not None else None


def set_blas_threads(n: int) -> int | None:
    """Set numpy's BLAS thread count (threadpoolctl if installed, else OpenBLAS via ctypes).

    Returns the count now in force, or None when it cannot be read.
    """
    tp = _threadpoolctl()
    if tp is not None:
        tp.threadpool_limits(limits=n, user_api="blas")
    elif _openblas() is not None:
        _ob_call("set_num_threads", None, ctypes.c_int(n))
    return blas_threads()


def numpy_blas_info() -> dict:
    info: dict = {"version": np.__version__}
    tp = _threadpoolctl()
    if tp is not None:
        libs = [d for d in tp.threadpool_info() if d.get("user_api") == "blas"]
        if libs:
            d = libs[0]
            info["blas"] = {k: d.get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads", "filepath")}
            info["blas"]["source"] = "threadpoolctl"
            return info
    blas: dict = {}
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = {"name": cfg.get("name"), "version": cfg.get("version"), "config": cfg.get("openblas configuration")}
    except Exception:  # older numpy: parse np.__config__
        cfg = getattr(np.__config__, "blas_opt_info", None) or getattr(np.__config__, "blas_ilp64_opt_info", None) or {}
        if cfg:
            blas = {"name": ",".join(cfg.get("libraries", [])) or None}
    ob = _openblas()
    if ob is not None:
        core = _ob_call("get_corename", ctypes.c_char_p)
        conf = _ob_call("get_config", ctypes.c_char_p)
        if core:
            blas["corename"] = core.decode(errors="replace")
        if conf:
            blas["runtime_config"] = conf.decode(errors="replace").strip()
        blas["filepath"] = ob[3]
    blas["num_threads"] = blas_threads()
    blas["source"] = "numpy.show_config" + (" + openblas" if ob is not None else "")
    info["blas"] = blas
    return info


# ---- GPU (torch) --------------------------------------------------------------------------
def torch_info(torch_mod, device: str) -> dict:
    info = {"version": torch_mod.__version__, "cuda": getattr(torch_mod.version, "cuda", None),
            "threads": torch_mod.get_num_threads()}
    if device == "cuda":
        props = torch_mod.cuda.get_device_properties(0)
        info.update(gpu_name=torch_mod.cuda.get_device_name(0), gpu_count=torch_mod.cuda.device_count(),
                    gpu_memory_bytes=int(props.total_memory),
                    compute_capability=".".join(map(str, torch_mod.cuda.get_device_capability(0))),
                    driver=_nvidia_driver())
    return info


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def cpu_governor() -> str | None:
    """The cpufreq scaling governor of cpu0 (``performance``, ``powersave``...); None in most VMs."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") as f:
            return f.read().strip() or None
    except OSError:
        return None


THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def thread_env() -> dict:
    """Thread-count environment variables that change what BLAS and torch use (unset ones left out)."""
    return {k: os.environ[k] for k in THREAD_ENV if k in os.environ}


def peak_rss_bytes() -> int | None:
    """This process's peak resident set (resource.getrusage; kilobytes on Linux, bytes on macOS)."""
    try:
        import resource
        import sys

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)
    except (ImportError, OSError):
        return None


def host_facts() -> dict:
    uname = platform.uname()
    return {
        "hostname_sha256": hostname_hash(),
        "cpu_model": cpu_model(),
        "logical_cores": logical_cores(),
        "physical_cores": physical_cores(),
        "memory_bytes": memory_bytes(),
        "last_level_cache_bytes": last_level_cache_bytes(),
        "os": platform.platform(),
        "kernel": uname.release,
        "machine": uname.machine,
        "cpu_governor": cpu_governor(),
        "thread_env": thread_env(),
    }
