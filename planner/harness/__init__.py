"""Profiling harness: measure kernels and end-to-end transformer steps on this machine.

Layout: ``host`` (machine facts, host id, BLAS threads), ``backends`` (numpy / torch ops),
``transformer`` (the random-weight decoder), ``timing`` (repeat-until-enough, median/p10/p90),
``grids`` (what each mode measures), ``kernels`` and ``e2e`` (the cases), ``capture`` (CSV rows,
resume, meta.yaml), ``allreduce`` (multi-GPU), ``run`` (``run_profile``, used by ``planner profile``).
"""

from planner.harness.capture import E2E_COLUMNS, KERNEL_COLUMNS
from planner.harness.run import (
    ProfileOptions,
    ProfileResult,
    SimulatedInterrupt,
    run_profile,
    tiny_model,
)

__all__ = ["E2E_COLUMNS", "KERNEL_COLUMNS", "ProfileOptions", "ProfileResult", "SimulatedInterrupt", "run_profile", "tiny_model"]
