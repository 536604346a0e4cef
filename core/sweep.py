"""What-if sweeps: step time against compute-tier capacity and link bandwidth, the smallest capacity that
keeps the slowdown under a bound, and grids of models × hardware × budgets × policies.

Each point is a full plan (policy + schedule), so sweeps show exactly what the planner would do; the graph
is analysed once and shipped to the workers once. Points run on :mod:`core.executor` (serial, a local
process pool — the default beyond a few points — or Dask); every executor gives the same results, because a
point depends only on its inputs. The ``iter_*`` functions yield ``(index, point)`` as points complete, for
callers that stream them (the What-if page, the CLI's progress bar); the others return lists in order.
``time_budget_s`` is each point's planning budget (:func:`core.planner.make_plan`): 0 plans every point
with the fast first plan only (deterministic, several times cheaper), None runs every refinement stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from core.errors import InfeasibleError
from core.executor import default_workers, map_points, resolve_executor
from core.graph import Graph
from core.hardware import Hardware, with_capacity
from core.liveness import Liveness, analyze
from core.plan import Plan
from core.planner import make_plan
from core.units import format_bandwidth, format_bytes

__all__ = ["SweepPoint", "Heatmap", "GridPoint", "sweep_capacity", "iter_sweep_capacity", "sweep_bandwidth",
           "iter_sweep_bandwidth", "min_capacity_for_slowdown", "heatmap", "iter_heatmap", "empty_heatmap", "fill_heatmap", "grid_sweep", "iter_grid_sweep",
           "with_link_bandwidth", "capacity_grid"]

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
    #: the plan itself, only when the sweep was asked to keep plans (tests replay them)
    plan: Plan | None = None


@dataclass(frozen=True)
class Heatmap:
    """``step_time_s[i, j]`` for ``capacities_bytes[i]`` × ``bandwidths_Bps[j]`` (NaN where infeasible)."""

    capacities_bytes: tuple[int, ...]
    bandwidths_Bps: tuple[float, ...]
    step_time_s: np.ndarray
    slowdown: np.ndarray
    link: str


@dataclass(frozen=True)
class GridPoint:
    """One cell of a grid sweep: ``model`` on ``hardware`` at ``budget`` × its no-offload peak with ``policy``."""

    model: str
    hardware: str
    budget: float
    policy: str
    point: SweepPoint


@dataclass(frozen=True)
class _Case:
    """Everything a worker needs for the points of one sweep (sent to each worker once)."""

    graph: Graph
    hardware: Hardware
    liveness: Liveness
    policy: str
    params: Mapping[str, Any] | None
    tier: str
    link: str | None = None
    keep_plans: bool = False
    #: per point: make_plan's time budget (0: the fast first plan only; None: every refinement stage)
    time_budget_s: float | None = None


def _plan_point(case: _Case, hw: Hardware, policy: str, capacity: int, bandwidth: float = 0.0) -> SweepPoint:
    try:
        plan = make_plan(case.graph, hw, policy=policy, params=case.params, liveness=case.liveness,
                         time_budget_s=case.time_budget_s)
    except InfeasibleError as exc:
        return SweepPoint(capacity, float("nan"), float("nan"), 0, False, str(exc), bandwidth)
    m = plan.metrics
    return SweepPoint(capacity, float(m["step_time_s"]), float(m["slowdown"]), int(m["peak_bytes"][hw.compute_tier]),
                      True, "", bandwidth, plan if case.keep_plans else None)


def _capacity_point(case: _Case, capacity: int) -> SweepPoint:
    """Worker: one plan with ``case.tier`` at ``capacity``."""
    return _plan_point(case, with_capacity(case.hardware, case.tier, int(capacity)), case.policy, int(capacity))


def _grid_cell(case: _Case, point: tuple[int, float]) -> SweepPoint:
    """Worker: one plan with the compute tier at ``capacity`` and ``case.link`` at ``bandwidth`` (0: as is)."""
    capacity, bandwidth = point
    hw = case.hardware if not bandwidth or case.link is None else with_link_bandwidth(case.hardware, case.link, bandwidth)
    return _plan_point(case, with_capacity(hw, case.tier, int(capacity)), case.policy, int(capacity), float(bandwidth))


def _case(graph: Graph, hw: Hardware, policy: str, params: Mapping[str, Any] | None, liveness: Liveness | None,
          tier: str | None = None, link: str | None = None, keep_plans: bool = False,
          time_budget_s: float | None = None) -> _Case:
    return _Case(graph, hw, liveness or analyze(graph), policy, params, tier or hw.compute_tier, link, keep_plans,
                 time_budget_s)


def _collect(stream: Iterator[tuple[int, Any]], n: int, progress: Progress | None,
             label: Callable[[int], str]) -> list[Any]:
    out: list[Any] = [None] * n
    for done, (k, value) in enumerate(stream, start=1):
        out[k] = value
        if progress:
            progress(done / n, label(k))
    return out


def iter_sweep_capacity(graph: Graph, hw: Hardware, *, policy: str = "tierplan", capacities_bytes: Sequence[int],
                        tier: str | None = None, params: Mapping[str, Any] | None = None,
                        liveness: Liveness | None = None, executor: str = "auto", scheduler: str | None = None,
                        workers: int | None = None, time_budget_s: float | None = None,
                        keep_plans: bool = False, chunks: int | None = None) -> Iterator[tuple[int, SweepPoint]]:
    """``(index, point)`` per capacity of ``tier`` (default: the compute tier), as each plan completes
    (``chunks``: tasks the points travel in, :func:`core.executor.map_points`; one per point streams each)."""
    case = _case(graph, hw, policy, params, liveness, tier, keep_plans=keep_plans, time_budget_s=time_budget_s)
    return map_points(_capacity_point, [int(c) for c in capacities_bytes], shared=case, executor=executor,
                      scheduler=scheduler, workers=workers, chunks=chunks)


def sweep_capacity(graph: Graph, hw: Hardware, *, policy: str = "tierplan", capacities_bytes: Sequence[int],
                   tier: str | None = None, params: Mapping[str, Any] | None = None,
                   progress: Progress | None = None, liveness: Liveness | None = None, executor: str = "auto",
                   scheduler: str | None = None, workers: int | None = None, time_budget_s: float | None = None,
                   keep_plans: bool = False) -> list[SweepPoint]:
    """One plan per capacity of ``tier`` (default: the compute tier), in the order given.

    ``progress(fraction, text)`` is called as points complete, e.g. ``"HBM = 28.8 GiB"``.
    """
    tier = tier or hw.compute_tier
    caps = [int(c) for c in capacities_bytes]
    stream = iter_sweep_capacity(graph, hw, policy=policy, capacities_bytes=caps, tier=tier, params=params,
                                 liveness=liveness, executor=executor, scheduler=scheduler, workers=workers,
                                 time_budget_s=time_budget_s, keep_plans=keep_plans)
    return _collect(stream, len(caps), progress, lambda k: f"{tier} = {format_bytes(caps[k])}")


def _default_link(hw: Hardware) -> str:
    first = next((lk for lk in hw.links if lk.src == hw.compute_tier), None)
    if first is None:
        raise InfeasibleError(f"no link leaves {hw.compute_tier}, so there is no bandwidth to vary")
    return f"{first.src}->{first.dst}"


def iter_sweep_bandwidth(graph: Graph, hw: Hardware, *, policy: str = "tierplan", bandwidths_Bps: Sequence[float],
                         link: str | None = None, params: Mapping[str, Any] | None = None,
                         liveness: Liveness | None = None, executor: str = "auto", scheduler: str | None = None,
                         workers: int | None = None, time_budget_s: float | None = None,
                         keep_plans: bool = False) -> Iterator[tuple[int, SweepPoint]]:
    """``(index, point)`` per bandwidth of ``link`` (both directions; default: the first link out of the
    compute tier) at the current compute-tier capacity, as each plan completes."""
    case = _case(graph, hw, policy, params, liveness, link=link or _default_link(hw), keep_plans=keep_plans,
                 time_budget_s=time_budget_s)
    cap = hw.capacity(hw.compute_tier)
    return map_points(_grid_cell, [(cap, float(b)) for b in bandwidths_Bps], shared=case, executor=executor,
                      scheduler=scheduler, workers=workers)


def sweep_bandwidth(graph: Graph, hw: Hardware, *, policy: str = "tierplan", bandwidths_Bps: Sequence[float],
                    link: str | None = None, params: Mapping[str, Any] | None = None,
                    progress: Progress | None = None, liveness: Liveness | None = None, executor: str = "auto",
                    scheduler: str | None = None, workers: int | None = None, time_budget_s: float | None = None,
                    keep_plans: bool = False) -> list[SweepPoint]:
    """One plan per bandwidth of ``link``, in the order given."""
    link = link or _default_link(hw)
    bws = [float(b) for b in bandwidths_Bps]
    stream = iter_sweep_bandwidth(graph, hw, policy=policy, bandwidths_Bps=bws, link=link, params=params,
                                  liveness=liveness, executor=executor, scheduler=scheduler, workers=workers,
                                  time_budget_s=time_budget_s, keep_plans=keep_plans)
    return _collect(stream, len(bws), progress, lambda k: f"{link} = {format_bandwidth(bws[k])}")


def capacity_grid(liveness: Liveness, tolerance: float) -> tuple[int, int]:
    """``(low, step)`` of the capacities :func:`min_capacity_for_slowdown` searches: ``low + i * step`` up to
    the no-offload peak; ``low`` is one byte under the largest op's own need, so it never fits."""
    hi = max(int(liveness.no_offload_peak_bytes), 1)
    lo = max(int(liveness.required_bytes.max()) if liveness.n_ops else 0, 1) - 1
    return lo, max(int(hi * tolerance), 1)


def min_capacity_for_slowdown(graph: Graph, hw: Hardware, *, policy: str = "tierplan", max_slowdown: float = 0.02,
                              params: Mapping[str, Any] | None = None, tolerance: float = 0.01,
                              liveness: Liveness | None = None, executor: str = "auto",
                              scheduler: str | None = None, workers: int | None = None,
                              probes: int | None = None, progress: Progress | None = None,
                              time_budget_s: float | None = None) -> int | None:
    """Smallest compute-tier capacity whose plan slows the step by at most ``max_slowdown``.

    The search runs on a fixed grid (:func:`capacity_grid`: steps of ``tolerance`` × the no-offload peak,
    ending at the peak, where the slowdown is 0 by definition; None if even the peak fails). Each round
    plans ``probes`` evenly spaced grid points of the open bracket at once (default: 1, bisection, when
    serial; the number of workers otherwise), so a round on W workers shrinks the bracket W+1 times. It
    assumes more capacity never hurts, which holds for these policies up to scheduling noise; for a
    monotone policy every probe count and executor returns the same grid point.
    """
    live = liveness or analyze(graph)
    hi_cap = max(int(live.no_offload_peak_bytes), 1)
    lo_cap, step = capacity_grid(live, tolerance)
    n_steps = max(1, -(-(hi_cap - lo_cap) // step))  # grid indices 0 (never fits) … n_steps (the peak)

    def cap_at(i: int) -> int:
        return hi_cap if i >= n_steps else lo_cap + i * step

    kind = "dask" if scheduler and executor == "auto" else resolve_executor(executor, 2 * n_steps, workers)
    if probes is None:
        probes = 1 if kind == "serial" else (workers or default_workers())
    probes = max(1, int(probes))
    case = _case(graph, hw, policy, params, live, time_budget_s=time_budget_s)

    def ok(p: SweepPoint) -> bool:
        return p.feasible and p.slowdown <= max_slowdown

    lo, hi = 0, n_steps
    first = True
    planned = 0
    while hi - lo > 1 or first:
        inner = sorted({lo + (hi - lo) * (j + 1) // (probes + 1) for j in range(probes)} - {lo, hi})
        grid = ([hi] if first else []) + inner  # the first round also checks the peak itself
        caps = [cap_at(i) for i in grid]
        results = dict(map_points(_capacity_point, caps, shared=case, executor=kind, scheduler=scheduler,
                                  workers=workers))
        planned += len(caps)
        if first:
            first = False
            if not ok(results[0]):
                return None
            results = {k - 1: v for k, v in results.items() if k}
        passing = [grid_i for k, grid_i in enumerate(inner) if ok(results[k])]
        new_hi = min(passing, default=hi)
        failing = [grid_i for k, grid_i in enumerate(inner) if not ok(results[k]) and grid_i < new_hi]
        lo, hi = max(failing, default=lo), new_hi
        if progress:
            progress(1.0 - math.log(max(hi - lo, 1)) / math.log(n_steps + 1),
                     f"{case.tier} between {format_bytes(cap_at(lo))} and {format_bytes(cap_at(hi))} "
                     f"({planned} plans)")
    return cap_at(hi)


def with_link_bandwidth(hw: Hardware, link: str, bandwidth_Bps: float) -> Hardware:
    """A copy of ``hw`` with the link named ``SRC->DST`` (and its reverse, if present) at ``bandwidth_Bps``."""
    src, _, dst = link.partition("->")
    pairs = {(src, dst), (dst, src)}
    return replace(hw, links=tuple(replace(lk, bandwidth_Bps=bandwidth_Bps) if (lk.src, lk.dst) in pairs else lk
                                   for lk in hw.links))


def iter_heatmap(graph: Graph, hw: Hardware, *, policy: str = "tierplan", capacities_bytes: Sequence[int],
                 bandwidths_Bps: Sequence[float], link: str | None = None, params: Mapping[str, Any] | None = None,
                 liveness: Liveness | None = None, executor: str = "auto", scheduler: str | None = None,
                 workers: int | None = None, time_budget_s: float | None = None, chunks: int | None = None
                 ) -> Iterator[tuple[tuple[int, int], SweepPoint]]:
    """``((i, j), point)`` for capacity ``i`` × bandwidth ``j`` of ``link`` (default: the first link out of
    the compute tier, set in both directions), as each plan completes."""
    link = link or _default_link(hw)
    caps = [int(c) for c in capacities_bytes]
    cells = [(c, float(b)) for b in bandwidths_Bps for c in caps]
    case = _case(graph, hw, policy, params, liveness, link=link, time_budget_s=time_budget_s)
    for k, point in map_points(_grid_cell, cells, shared=case, executor=executor, scheduler=scheduler,
                               workers=workers, chunks=chunks):
        yield (k % len(caps), k // len(caps)), point


def heatmap(graph: Graph, hw: Hardware, *, policy: str = "tierplan", capacities_bytes: Sequence[int],
            bandwidths_Bps: Sequence[float], link: str | None = None, params: Mapping[str, Any] | None = None,
            progress: Progress | None = None, liveness: Liveness | None = None, executor: str = "auto",
            scheduler: str | None = None, workers: int | None = None, time_budget_s: float | None = None) -> Heatmap:
    """Step time over compute-tier capacity × bandwidth of ``link`` (default: the first link out of the
    compute tier, set in both directions)."""
    link = link or _default_link(hw)
    caps = [int(c) for c in capacities_bytes]
    bws = [float(b) for b in bandwidths_Bps]
    grid = empty_heatmap(caps, bws, link)
    stream = iter_heatmap(graph, hw, policy=policy, capacities_bytes=caps, bandwidths_Bps=bws, link=link,
                          params=params, liveness=liveness, executor=executor, scheduler=scheduler, workers=workers,
                          time_budget_s=time_budget_s)
    for done, ((i, j), p) in enumerate(stream, start=1):
        fill_heatmap(grid, i, j, p)
        if progress:
            progress(done / (len(caps) * len(bws)),
                     f"{hw.compute_tier} = {format_bytes(caps[i])}, {link} = {format_bandwidth(bws[j])}")
    return grid


def empty_heatmap(capacities_bytes: Sequence[int], bandwidths_Bps: Sequence[float], link: str) -> Heatmap:
    """A heatmap with every cell NaN, to fill as points arrive (:func:`fill_heatmap`)."""
    steps = np.full((len(capacities_bytes), len(bandwidths_Bps)), np.nan)
    return Heatmap(tuple(int(c) for c in capacities_bytes), tuple(float(b) for b in bandwidths_Bps), steps,
                   np.full_like(steps, np.nan), link)


def fill_heatmap(grid: Heatmap, i: int, j: int, point: SweepPoint) -> None:
    """Write one point into cell ``(i, j)`` (left NaN when infeasible)."""
    if point.feasible:
        grid.step_time_s[i, j], grid.slowdown[i, j] = point.step_time_s, point.slowdown


# -------------------------------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class _Grid:
    """The inputs of a grid sweep; each worker analyses a model the first time one of its points runs."""

    graphs: Mapping[str, Graph]
    hardware: Mapping[str, Hardware]
    params: Mapping[str, Any] | None
    keep_plans: bool
    time_budget_s: float | None = None


#: in a worker: id(graph) -> (graph, its liveness); holding the graph keeps its id from being reused
_GRID_LIVENESS: dict[int, tuple[Graph, Liveness]] = {}


def _grid_point(grid: _Grid, point: tuple[str, str, float, str]) -> SweepPoint:
    """Worker: ``model`` on ``hardware`` with the compute tier at ``budget`` × the no-offload peak."""
    model, hw_key, budget, policy = point
    graph = grid.graphs[model]
    hit = _GRID_LIVENESS.get(id(graph))
    if hit is None or hit[0] is not graph:
        if len(_GRID_LIVENESS) > 64:
            _GRID_LIVENESS.clear()
        hit = _GRID_LIVENESS[id(graph)] = (graph, analyze(graph))
    live = hit[1]
    hw = grid.hardware[hw_key]
    case = _Case(graph, hw, live, policy, grid.params, hw.compute_tier, keep_plans=grid.keep_plans,
                 time_budget_s=grid.time_budget_s)
    capacity = max(1, int(live.no_offload_peak_bytes * budget))
    return _plan_point(case, with_capacity(hw, hw.compute_tier, capacity), policy, capacity)


def iter_grid_sweep(graphs: Mapping[str, Graph], hardware: Mapping[str, Hardware], *, budgets: Sequence[float],
                    policies: Sequence[str], params: Mapping[str, Any] | None = None, executor: str = "auto",
                    scheduler: str | None = None, workers: int | None = None, time_budget_s: float | None = None,
                    keep_plans: bool = False) -> Iterator[tuple[int, GridPoint]]:
    """``(index, cell)`` of models × hardware × budgets (fractions of each model's no-offload peak) ×
    policies, in that nesting order, as each plan completes."""
    cells = [(m, h, float(b), p) for m in graphs for h in hardware for b in budgets for p in policies]
    grid = _Grid(dict(graphs), dict(hardware), params, keep_plans, time_budget_s)
    for k, point in map_points(_grid_point, cells, shared=grid, executor=executor, scheduler=scheduler,
                               workers=workers):
        yield k, GridPoint(*cells[k], point)


def grid_sweep(graphs: Mapping[str, Graph], hardware: Mapping[str, Hardware], *, budgets: Sequence[float],
               policies: Sequence[str], params: Mapping[str, Any] | None = None, progress: Progress | None = None,
               executor: str = "auto", scheduler: str | None = None, workers: int | None = None,
               time_budget_s: float | None = None, keep_plans: bool = False) -> list[GridPoint]:
    """Every cell of :func:`iter_grid_sweep`, in nesting order."""
    n = len(graphs) * len(hardware) * len(budgets) * len(policies)
    stream = iter_grid_sweep(graphs, hardware, budgets=budgets, policies=policies, params=params, executor=executor,
                             scheduler=scheduler, workers=workers, time_budget_s=time_budget_s, keep_plans=keep_plans)
    cells: list[GridPoint] = [None] * n  # type: ignore[list-item]
    for done, (k, cell) in enumerate(stream, start=1):
        cells[k] = cell
        if progress:
            progress(done / n, f"{cell.model} on {cell.hardware} at {cell.budget * 100:g} % with {cell.policy}")
    return cells
