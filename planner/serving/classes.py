"""Service classes of a workload (Llumnix priorities, FastSwitch fairness): each class has a share of
the requests, a priority (lower is served first, as vLLM's ``--scheduling-policy priority``) and its
own SLOs, so that a run reports percentiles and attainment per class.

YAML (inside a workload)::

    classes:
      - {name: interactive, share: 0.2, priority: 0, ttft_slo_s: 0.5, tpot_slo_s: 0.05}
      - {name: batch, share: 0.8, priority: 1}
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planner.errors import PlannerError


class ServiceClass(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    share: float = Field(gt=0, le=1)
    priority: int = 0
    ttft_slo_s: Optional[float] = Field(default=None, gt=0)
    tpot_slo_s: Optional[float] = Field(default=None, gt=0)


def check_classes(classes: list[ServiceClass]) -> None:
    total = sum(c.share for c in classes)
    if abs(total - 1.0) > 1e-6:
        raise PlannerError(f"workload classes: shares must add up to 1, they add up to {total:g}")
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise PlannerError(f"workload classes: names must differ, got {names}")


def assign_classes(reqs, classes: list[ServiceClass], seed: int) -> None:
    """Draw each conversation's class by the shares (later turns keep their first turn's class) and set
    ``reqs.klass``, ``reqs.priority`` and ``reqs.classes``."""
    check_classes(classes)
    n = len(reqs)
    rng = np.random.default_rng([seed, 0xC1A55])
    cdf = np.cumsum([c.share for c in classes])
    k = np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(n), side="right"), len(classes) - 1).astype(np.int64)
    for i in np.nonzero(reqs.parent >= 0)[0]:
        k[i] = k[reqs.parent[i]]
    reqs.klass = k
    reqs.priority = np.array([c.priority for c in classes], dtype=np.float64)[k]
    reqs.classes = list(classes)
