"""What-if sweeps: step time against compute-tier capacity and link bandwidth, and the smallest capacity
that keeps the slowdown under a bound.

Each point is a full plan (policy + schedule), so sweeps show exactly what the planner would do; the graph
is analysed once and reused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from core.errors import InfeasibleError
from core.graph import Graph
from core.hardware import Hardware, with_capacity
from core.liveness import Liveness, analyze
from core.planner import make_plan

__all__ = ["SweepPoint", "Heatmap", "sweep_capacity", "min_capacity_for_slowdown", "heatmap", "with_link_bandwidth"]

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class SweepPoint:
    capacity_bytes: int
    step_time_s: float
    slowdown: float
    peak_bytes: int
    feasible: bool
    message: str = ""
    bandwidth_Bps: float = 0.0


@dataclass(frozen=True)
class Heatmap:
    """``step_time_s[i, j]`` for ``capacities_bytes[i]`` × ``bandwidths_Bps[j]`` (NaN where infeasible)."""

    capacities_bytes: tuple[int, ...]
    bandwidths_Bps: tuple[float, ...]
    step_time_s: np.ndarray
    slowdown: np.ndarray
    link: str


def _point(graph: Graph, hw: Hardware, live: Liveness, policy: str, params: Mapping[str, Any] | None,
           capacity: int, bandwidth: float = 0.0) -> SweepPoint:
    try:
        plan = make_plan(graph, hw, policy=policy, params=params, liveness=live)
    except InfeasibleError as exc:
        return SweepPoint(capacity, float("nan"), float("nan"), 0, False, str(exc), bandwidth)
    m = plan.metrics
    return SweepPoint(capacity, float(m["step_time_s"]), float(m["slowdown"]), int(m["peak_bytes"][hw.compute_tier]),
                      True, "", bandwidth)


def sweep_capacity(graph: Graph, hw: Hardware, *, policy: str = "tierplan", capacities_bytes: Sequence[int],
                   tier: str | None = None, params: Mapping[str, Any] | None = None,
                   progress: Progress | None = None, liveness: Liveness | None = None) -> list[SweepPoint]:
    """One plan per capacity of ``tier`` (default: the compute tier)."""
    tier = tier or hw.compute_tier
    live = liveness or analyze(graph)
    out = []
    for k, cap in enumerate(capacities_bytes):
        out.append(_point(graph, with_capacity(hw, tier, int(cap)), live, policy, params, int(cap)))
        if progress:
            progress((k + 1) / len(capacities_bytes), f"{tier} = {int(cap)} B")
    return out


def min_capacity_for_slowdown(graph: Graph, hw: Hardware, *, policy: str = "tierplan", max_slowdown: float = 0.02,
                              params: Mapping[str, Any] | None = None, tolerance: float = 0.01,
                              liveness: Liveness | None = None) -> int | None:
    """Smallest compute-tier capacity whose plan slows the step by at most ``max_slowdown`` (bisection).

    The upper end is the no-offload peak (slowdown 0 by definition); None if even that fails. Bisection
    assumes more capacity never hurts, which holds for these policies up to scheduling noise; the result is
    within ``tolerance`` (a fraction of the peak) of the boundary found.
    """
    live = liveness or analyze(graph)
    hi = max(int(live.no_offload_peak_bytes), 1)
    top = _point(graph, with_capacity(hw, hw.compute_tier, hi), live, policy, params, hi)
    if not top.feasible or top.slowdown > max_slowdown:
        return None
    lo = max(int(live.required_bytes.max()) if live.n_ops else 0, 1) - 1
    step = max(int(hi * tolerance), 1)
    while hi - lo > step:
        mid = (lo + hi) // 2
        p = _point(graph, with_capacity(hw, hw.compute_tier, mid), live, policy, params, mid)
        if p.feasible and p.slowdown <= max_slowdown:
            hi = mid
        else:
            lo = mid
    return hi


def with_link_bandwidth(hw: Hardware, link: str, bandwidth_Bps: float) -> Hardware:
    """A copy of ``hw`` with the link named ``SRC->DST`` (and its reverse, if present) at ``bandwidth_Bps``."""
    src, _, dst = link.partition("->")
    pairs = {(src, dst), (dst, src)}
    return replace(hw, links=tuple(replace(lk, bandwidth_Bps=bandwidth_Bps) if (lk.src, lk.dst) in pairs else lk
                                   for lk in hw.links))


def heatmap(graph: Graph, hw: Hardware, *, policy: str = "tierplan", capacities_bytes: Sequence[int],
            bandwidths_Bps: Sequence[float], link: str | None = None, params: Mapping[str, Any] | None = None,
            progress: Progress | None = None, liveness: Liveness | None = None) -> Heatmap:
    """Step time over compute-tier capacity × bandwidth of ``link`` (default: the first link out of the
    compute tier, set in both directions)."""
    if link is None:
        first = next(lk for lk in hw.links if lk.src == hw.compute_tier)
        link = f"{first.src}->{first.dst}"
    live = liveness or analyze(graph)
    steps = np.full((len(capacities_bytes), len(bandwidths_Bps)), np.nan)
    slow = np.full_like(steps, np.nan)
    total = len(capacities_bytes) * len(bandwidths_Bps)
    done = 0
    for j, bw in enumerate(bandwidths_Bps):
        hw_bw = with_link_bandwidth(hw, link, float(bw))
        for i, cap in enumerate(capacities_bytes):
            p = _point(graph, with_capacity(hw_bw, hw.compute_tier, int(cap)), live, policy, params, int(cap), float(bw))
            if p.feasible:
                steps[i, j], slow[i, j] = p.step_time_s, p.slowdown
            done += 1
            if progress:
                progress(done / total, f"{done}/{total} plans")
    return Heatmap(tuple(int(c) for c in capacities_bytes), tuple(float(b) for b in bandwidths_Bps), steps, slow, link)
