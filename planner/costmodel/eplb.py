"""Expert-parallel load balancing (EPLB): hot experts replicated into redundant slots and the slots placed so every
expert-parallel rank expects the same load (DeepSeek's EPLB; TensorRT-LLM's MoE load balancer; vLLM and SGLang
``--enable-eplb``).

Without it a rank holds E / ep experts in a fixed order, and a trained router's skew (costmodel/step.py
``routing_skew``) leaves the busiest rank far above the mean (``ep_imbalance``). With it, the balancer sees the load
each expert takes and (1) gives the R redundant slots to the heaviest experts, each replica taking an equal share of
its expert's tokens, then (2) packs the E + R slots into ep ranks of (E + R) / ep slots each, heaviest first onto the
least loaded rank with room. What it cannot remove:

- an expert heavier than a rank's mean load that has too few replicas to split it: the placement bound
  (``placement_imbalance``, computed on expert loads with the routing's CV and a lognormal tail, ``expert_loads``);
- the drift between the statistics the placement was computed from and the batch at hand, plus the sampling of
  each batch's tokens: the ranks' loads still vary, and the busiest of ep sits about sqrt(2 ln ep) standard
  deviations above the mean, as in ``ep_imbalance``.

The drift is one measured number. TensorRT-LLM's large-scale EP study (tech blog 4, Table 1: DeepSeek-R1 on GB200, a
machine-translation dataset, averages over layers and iterations) measured the ranks' loads with its offline EPLB at a
mean of 1,024 routed tokens per rank: standard deviation 52.0 with 9 slots per rank at EP32 (288 slots, 32 redundant)
and 53.9 with 8 per rank at EP36 (the same 288), CVs 0.0508 and 0.0526, the hottest rank 1.109x and 1.115x the mean
(against 491.6 and 2.564x without EPLB). Sampling alone gives sqrt((1 - 1/ep) / 1024) = 0.0308 at that mean; what is
left, sqrt(CV^2 - 0.0308^2), is 0.0404 and 0.0427: EPLB_RESIDUAL_CV takes their mean. The study's balancer was fitted
to statistics of the same dataset (iterations 100-200 of the run it then balanced), so this is the residual of a
placement that matches the traffic; an online balancer that lags a changing mix leaves more."""

from __future__ import annotations

import functools
import heapq

import numpy as np

EPLB_RESIDUAL_CV = 0.0416  # rank-load CV an EPLB placement leaves beyond sampling (module docstring)


@functools.lru_cache(maxsize=64)
def expert_loads(experts: int, skew: float) -> tuple[float, ...]:
    """The loads of one MoE layer's ``experts`` experts, mean 1, heaviest first: the (i - 1/2) / E quantiles of a
    lognormal distribution with coefficient of variation ``skew``; all 1 without skew. The placement turns on the
    hottest experts, and the study's Table 1 measured them heavier-tailed than a Gamma of the same CV: by expert slot
    without EPLB its imbalance ratio is 10.948, the hottest of 256 experts 11.95x the mean, where 256 draws of a Gamma
    with CV 1.28 peak at 8.3x on average and of a lognormal at 10.7x (this quantile: 10.6x)."""
    if skew <= 0.0:
        return (1.0,) * experts
    from scipy.special import ndtri  # the normal quantile (scipy.stats would import far more)

    sigma = np.sqrt(np.log1p(skew**2))
    q = np.exp(sigma * ndtri((np.arange(experts, 0, -1) - 0.5) / experts))
    return tuple((q / q.mean()).tolist())


@functools.lru_cache(maxsize=256)
def placement_imbalance(experts: int, redundant: int, ep: int, skew: float) -> float:
    """The busiest rank's expected load over the mean after the balancer places a layer's experts: the ``redundant``
    extra slots go one at a time to the expert whose replicas carry the most each (greedy replication, as DeepSeek's
    EPLB replicates), then the E + R slots are packed ``(E + R) / ep`` to a rank, heaviest first onto the least loaded
    rank with a free slot (longest-processing-time packing with equal slot counts)."""
    if ep <= 1:
        return 1.0
    loads = expert_loads(experts, skew)
    copies = [1] * experts
    heap = [(-w, i) for i, w in enumerate(loads)]
    heapq.heapify(heap)
    for _ in range(redundant):
        _, i = heapq.heappop(heap)
        copies[i] += 1
        heapq.heappush(heap, (-loads[i] / copies[i], i))
    slots = sorted((loads[i] / copies[i] for i in range(experts) for _ in range(copies[i])), reverse=True)
    per_rank = len(slots) // ep
    ranks = [(0.0, r) for r in range(ep)]  # (load, rank): the least loaded rank with room on top
    held = [0] * ep
    rank_load = [0.0] * ep
    for w in slots:
        load, r = heapq.heappop(ranks)
        rank_load[r] = load + w
        held[r] += 1
        if held[r] < per_rank:
            heapq.heappush(ranks, (rank_load[r], r))
        if not ranks:
            break
    return max(rank_load) / (sum(rank_load) / ep)


def eplb_imbalance(assignments, ep, experts: int, redundant: int, skew: float):
    """Expected load of the busiest of ``ep`` expert-parallel ranks over the mean with EPLB: ``assignments``
    token-to-expert assignments over ``experts`` experts and ``redundant`` extra slots. The ranks' loads vary by
    sampling (Binomial(n, 1/ep), as in ``ep_imbalance``) and by the placement's drift from the traffic
    (EPLB_RESIDUAL_CV); the busiest sits sqrt(2 ln ep) of their standard deviations above the mean, and never below
    the placement bound (a rank left at ``placement_imbalance`` x the mean, its own load varying by one standard
    deviation)."""
    n = np.maximum(np.asarray(assignments, float), 1.0)
    ep = np.maximum(np.asarray(ep, float), 1.0)
    cv = np.sqrt((1.0 - 1.0 / ep) / (n / ep) + EPLB_RESIDUAL_CV**2)
    bound = np.ones(np.shape(ep))
    for e in np.unique(ep):
        if e > 1:
            bound = np.where(ep == e, placement_imbalance(experts, redundant, int(e), round(float(skew), 6)), bound)
    busiest = np.maximum(1.0 + np.sqrt(2.0 * np.log(ep)) * cv, bound * (1.0 + cv))
    return np.where(ep > 1, busiest, 1.0)


def expert_slots(eplb_redundant, experts: int):
    """Expert slots over experts for each plan (PlanArrays.eplb_redundant): (E + R) / E where a balancer holds R
    redundant replicas (each rank keeps (E + R) / ep slots, a replica holds its expert's weights, and a touched hot
    expert's replicas each read them), else 1."""
    return 1.0 + np.maximum(np.asarray(eplb_redundant, float), 0.0) / experts
