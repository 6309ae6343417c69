"""The simulator's event loop compiled from C (``_fastcore.c``), with results identical to the Python loop's to the
last bit (the same events in the same order, the same floating-point operations in the same order).

Covered (``reason`` says why not otherwise): every built-in configuration -- aggregated replicas and disaggregated
prefill/decode pools (each prompt's KV crossing to the least-loaded decode replica); reserve-mode KV admission
(TensorRT-LLM's GUARANTEED_NO_EVICT) and on-demand KV with recompute or swap preemption (vLLM, SGLang); FCFS,
priority and slo-aware queues; priority preemption (lower-priority decodes swapped out, by bandwidth or block by
block); live migration between the replicas of a pool; speculative decoding; LoRA adapters (an LRU resident set,
loads one after another on the host link); the pinned shared prefix and follow-up turns with their history in the
LRU prefix cache; the round-robin, least-outstanding, static and threshold routers with session affinity. The
Python loop runs for a router of one's own (a subclass, or IC-Cache's), for live migration beside disaggregated
pools, and where no C compiler is found; it stays the reference ``tests/test_sim_fastcore.py`` compares against.

The C file is compiled once with the system's C compiler (``$CC``, else ``cc``) into the planner's cache
folder (planner.specs.datacache.cache_dir, or a temporary folder when the cache is off), under a name that
hashes the source, the compiler and the platform; nothing is compiled at install time, so a source checkout,
an editable install and a wheel all work the same. ``PLANNER_SIM_CORE=python`` chooses the Python loop,
``PLANNER_SIM_CORE=c`` makes a configuration or machine the core cannot serve an error. ``SimResult.core`` says
which ran.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from planner.errors import PlannerError

SOURCE = Path(__file__).with_name("_fastcore.c")
FLAGS = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC"]
_lib: ctypes.CDLL | None = None
_error: str | None = None  # why the compiled core is not available (after a failed load)
_P = ctypes.c_void_p
PROGRESS = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64)
REP_OUT = 10  # values per replica the core writes back (_fastcore.c: REP_OUT_STRIDE)


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc.split()[0]) and cc


def _build(cc: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".fastcore-", suffix=".so")
    os.close(fd)
    try:
        res = subprocess.run([*cc.split(), *FLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise OSError(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"{cc} exited with {res.returncode}")
        os.replace(tmp, out)
        for old in out.parent.glob("fastcore-*.so"):  # builds of older sources: never loaded again
            if old != out:
                old.unlink(missing_ok=True)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load() -> ctypes.CDLL | None:
    """The compiled core (built on first use), or None with ``_error`` saying why."""
    global _lib, _error
    if _lib is not None or _error is not None:
        return _lib
    from planner.specs.datacache import cache_dir

    cc = _compiler()
    if sys.platform == "win32" or cc is None:
        _error = "no C compiler found (set CC)" if cc is None else "the compiled core is not built on Windows"
        return None
    try:
        src = SOURCE.read_bytes()
    except OSError:
        _error = f"the core's source {SOURCE.name} is missing from this installation"
        return None
    key = hashlib.sha256(src + " ".join([cc, *FLAGS, platform.machine(), sys.platform]).encode()).hexdigest()[:16]
    tmp_folder = Path(tempfile.gettempdir()) / f"planner-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    folders = [f for f in (cache_dir(), tmp_folder) if f is not None]  # a read-only cache folder: the temporary one
    lib = None
    for i, folder in enumerate(folders):
        path = folder / f"fastcore-{key}.so"
        try:
            if not path.exists():
                _build(cc, path)
            lib = ctypes.CDLL(str(path))
            break
        except subprocess.SubprocessError as e:
            _error = f"building the compiled core failed: {e}"
            return None
        except OSError as e:
            if i == len(folders) - 1:
                _error = f"building the compiled core failed: {e}"
                return None
    fn = lib.fastcore_run
    fn.restype = ctypes.c_int
    fn.argtypes = [_P] * 33 + [PROGRESS]
    _lib = lib
    return lib


def wanted() -> str:
    """$PLANNER_SIM_CORE: auto (default), c or python."""
    v = os.environ.get("PLANNER_SIM_CORE", "auto").strip().lower() or "auto"
    if v not in ("auto", "c", "python"):
        raise PlannerError(f"PLANNER_SIM_CORE must be auto, c or python, not {v!r}")
    return v


_ROLES = {"both": 0, "prefill": 1, "decode": 2}  # a pool's role, as the C core numbers them
_POLICIES = {"FCFSQueue": 0, "PriorityQueue": 1, "SLOAwareQueue": 2}  # planner.serving.sim.queues, as the C core numbers them


def reason(sim) -> str | None:
    """Why the compiled core cannot run this simulation (None: it can)."""
    from planner.serving.sim.routers import LeastOutstanding, RoundRobin, Static, Threshold

    if type(sim.router) not in (LeastOutstanding, RoundRobin, Static, Threshold):
        return f"the {sim.router.label()} router"
    if sim.migrator is not None and any(p.role != "both" for p in sim.pools):
        return "live migration beside disaggregated pools"
    if sim.pkey is not None:
        return "a client's reused prompts"
    for r in sim.replicas:
        if type(r.waiting).__name__ not in _POLICIES:
            return f"the {r.m.policy} queue"
        if r.recv_every > 1:
            return "a scheduler that polls for new requests every few decode steps"
    return None


def run(sim, qs, ext_t: np.ndarray, ext_id: np.ndarray) -> int:
    """Run ``sim`` (a planner.serving.sim.core.Simulator the core covers) in C over its outside arrivals ``ext_t`` /
    ``ext_id`` (in time order): fills its request table, each replica's busy time, batch integral and step count,
    and ``qs`` (its QueueSampler, whose first sample time and interval it starts from); returns the events."""
    from planner.serving.sim.replica import RATIO_DECAY, RATIO_INIT, RATIO_MIN, RETRACT_STEPS

    lib = load()
    assert lib is not None
    reps, tab = sim.replicas, sim.table
    # the replicas of each pool (the Python loop numbers them pool by pool, so each pool's are contiguous)
    pools = [[r for r in reps if r.pool_idx == p] for p in range(len(sim.pools))]
    pint, pdbl, tint, tdat, trow = [], [], [], [], []
    off = 0
    for members in pools:
        r = members[0]
        t = r.table
        rows = t._rows
        pint += [r.max_seqs, r.B, r.kv.total, int(r.chunked), int(r.prefill_first), int(r.schedules_ahead), len(members),
                 int(r.reserve), int(r.swap), int(r.prefix_caching), r.kv.pinned, _POLICIES[type(r.waiting).__name__],
                 r.adapters.slots if r.adapters is not None else 0, _ROLES[r.role], int(r.fair), int(r.block_swap), r.swap_group,
                 int(r.m.kv_transfers_per_block), int(r.ratio_mode), RETRACT_STEPS, r.dec.clip or 0, r.m.attention_dp,
                 r.balance, r.dec.ctas, r.dec.sms]
        q = r.waiting  # the slo-aware queue's deadline terms (0 for the others)
        pdbl += [float(r.mbt), float(r.request_overhead_s), float(r.m.swap_s_per_token),
                 float(r.E), float(r.dtok), float(getattr(q, "ttft", 0.0)), float(getattr(q, "prefill_s_per_token", 0.0)),
                 float(r.adapters.load_s) if r.adapters is not None else 0.0, float(r.m.kv_transfer_latency_s),
                 float(r.m.kv_transfer_s_per_token), float(r.m.swap_transfer_s), float(r.chunk_max), RATIO_INIT, RATIO_MIN,
                 RATIO_DECAY, float(r.dec.reread_cap), float(r.fe_req), float(r.fe_chunk), float(r.fe_every)]
        parts = [t.n_ax, t.c_ax, t.p_ax, t.l_ax, t.grid[:, :, 0, 0], t.grid]  # the grid the table interpolates
        head = sum(len(x) if isinstance(x, list) else x.size for x in parts)
        tint += [len(t.n_ax), len(t.c_ax), len(t.p_ax), len(t.l_ax), len(rows), off]
        block = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in parts] + [np.array([w for _, _, w, _ in rows])])
        tdat.append(block)
        trow.append(np.concatenate([np.zeros(head, dtype=np.int64), np.array([i for _, _, _, i in rows], dtype=np.int64)]))
        off += block.size
    router = type(sim.router).__name__
    rcode = {"RoundRobin": 0, "LeastOutstanding": 1, "Static": 2, "Threshold": 3}[router]
    max_events = sim.max_events if sim.max_events is not None else -1
    turns = int(len(tab.parent) > 0 and tab.parent.max() >= 0)
    adapter = None if sim.adapter is None else np.ascontiguousarray(np.asarray(sim.adapter), dtype=np.int64)
    n_adapters = int(adapter.max()) + 1 if adapter is not None and adapter.size else 0
    ipar = np.array([sim.n, len(ext_id), len(pools), len(reps), rcode, getattr(sim.router, "threshold", 0), max_events, turns,
                     n_adapters, len(pint) // len(pools), len(pdbl) // len(pools), REP_OUT,
                     sim.migrator.threshold if sim.migrator is not None else -1, max(sim.slot_next, 0), tab.groups],
                    dtype=np.int64)
    dpar = np.array([qs.next, qs.dt])
    rep_out = np.zeros(REP_OUT * len(reps))
    mig_out, mig_log = np.zeros(3), np.zeros(4 * 1000)  # Migrator: count, copy s, downtime s; its first 1,000 records
    priority = None if tab.priority is None else np.ascontiguousarray(np.asarray(tab.priority), dtype=np.float64)
    q_t, q_w, q_r, cnt = np.zeros(4002), np.zeros(4002, dtype=np.int64), np.zeros(4002, dtype=np.int64), np.zeros(3, dtype=np.int64)
    arrays = [ipar, dpar, np.array(pint, dtype=np.int64), np.array(pdbl), np.array(tint, dtype=np.int64),
              np.concatenate(tdat), np.concatenate(trow), ext_t, ext_id, tab.input_tokens, tab.output_tokens, tab.prefix_tokens,
              tab.parent, tab.child, tab.think_s, tab.arrival_s, priority, adapter,
              tab.first_token_s, tab.finish_s, tab.generated, tab.preemptions, tab.rejected, tab.replica, tab.pool, rep_out, q_t, q_w, q_r, cnt, mig_out, mig_log,
              tab.share_group]
    for a in arrays:
        assert a is None or a.flags.c_contiguous
    progress = sim.progress
    cb = PROGRESS(lambda done, total: progress(int(done), int(total))) if progress is not None else PROGRESS()
    rc = lib.fastcore_run(*[None if a is None else a.ctypes.data for a in arrays], cb)
    if rc == 1:
        raise PlannerError(f"simulation stopped after {sim.max_events} events")
    if rc == 2:
        raise MemoryError("the compiled simulator core ran out of memory")
    if rc == 3:
        raise RuntimeError("the compiled simulator core and planner/serving/sim/fastcore.py disagree on the array layout")
    for k, r in enumerate(reps):
        o = rep_out[REP_OUT * k: REP_OUT * k + REP_OUT]
        r.busy_s, r.batch_time, r.steps, r.unfinished, r.preemptions = float(o[0]), float(o[1]), int(o[2]), int(o[3]), int(o[4])
        r.kv.hit_tokens, r.kv.hits = int(o[5]), int(o[6])
        if r.adapters is not None:  # what lora_summary reads
            r.adapters.hits, r.adapters.misses, r.adapters.evictions = int(o[7]), int(o[8]), int(o[9])
    if sim.migrator is not None:  # what Migrator.summary reads, and its log of the first 1,000 migrations
        mg = sim.migrator
        mg.count, mg.copy_s, mg.downtime_s = int(mig_out[0]), float(mig_out[1]), float(mig_out[2])
        mg.log = [(float(c), int(g), float(t1), float(t2)) for c, g, t1, t2 in mig_log[:4 * min(mg.count, 1000)].reshape(-1, 4)]
    ns = int(cnt[0])
    qs.t, qs.w, qs.r = q_t[:ns].tolist(), q_w[:ns].tolist(), q_r[:ns].tolist()
    sim.completed = int(cnt[2])
    return int(cnt[1])
