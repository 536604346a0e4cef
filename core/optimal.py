"""Optimal reference for small graphs: a MILP lower bound on the step time of any plan, and its decisions.

For graphs of tens of ops, :func:`optimal_reference` solves (``scipy.optimize.milp``, HiGHS) a mixed-integer
program over the same decision space every policy uses — per idle span: keep, offload to a lower tier, or
recompute its producer right before the next use — with the op order fixed.

Model. Stage ``i`` is the time from the end of op ``i-1`` to the end of op ``i`` (stage ``n`` runs from the
end of the last op to the end of the step); the step time is the sum of the stage times ``t_i``.

* ``t_i ≥ duration(op i) + durations of the producers recomputed for op i``.
* Each offloaded span moves its bytes over every hop of its route: the copy-in (and, when no fresh copy is
  below, the copy-out) in the stages of its idle gap — after the use before it, before the use after it
  (wrap-around spans: copy-in before the first use, copy-out after the last use, stage ``n`` included).
  Bytes on a link in stage ``i`` are at most ``bandwidth × t_i``.
* Just before each op ends, the compute tier holds the no-offload occupancy minus the spans not kept there,
  plus each offloaded span whose copy is still there (its copy-out's first hop not finished by the end of
  the stage) or already back (a byte of its copy-in moved by then) — a binary per span and op; at most its
  capacity.
* A copy-out is needed unless an earlier offload of the same tensor version (since it was produced or last
  mutated) to the same tier, or the step-start copy of a persistent tensor, left a fresh copy there.
* Recompute keeps the producer's inputs: each span holding one of them at that op must be kept.

Every plan :mod:`core.schedule` can build from such decisions (and every physically valid plan with that op
order and those decisions) satisfies these constraints, so the optimum is a **lower bound** on its step
time. It is not always reachable, because the model relaxes: transfers are fluid (no latency, bytes may
split across stages), memory is checked once per op and a copy-out ending inside a stage counts as
done at the stage start, lower-tier capacities and staging copies are not constrained, and the op
order is fixed. The decisions are then scheduled with :func:`core.schedule.build_schedule` to give an
achievable step time; when that equals the bound the result is optimal (``is_lower_bound`` False).

The solver stops after ``time_limit_s``; the bound is then HiGHS's best dual bound (still valid, weaker),
and ``status`` says ``"time_limit"``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from core.errors import InfeasibleError
from core.graph import Graph
from core.hardware import Hardware
from core.liveness import Liveness, Span, analyze
from core.schedule import build_schedule, op_durations, schedule_end_s
from core.spans import covering_span, freed_slots, is_dirty, recompute_ok
from core.units import format_bytes, format_time

__all__ = ["OptimalResult", "optimal_reference", "RELAXATIONS", "MAX_OPS"]

#: What the model relaxes (why its optimum is a lower bound), shown to users.
RELAXATIONS = (
    "fluid transfers (no latency, bytes may split across stages, copy-in may overlap copy-out)",
    "memory checked just before each op ends (a copy-out finishing inside a stage frees its copy early)",
    "lower-tier capacities and staging copies not constrained",
    "op order fixed; recompute re-runs the single producer op",
)
#: Beyond this many ops the model is refused (the solve would not finish in reasonable time).
MAX_OPS = 120


@dataclass(frozen=True)
class OptimalResult:
    """Lower bound on the step time (``step_time_s``) and the decisions that reach the model optimum.

    ``status``: ``optimal`` (model solved), ``time_limit`` (gave up; the bound is the best proven so far),
    ``infeasible`` (no decisions fit the compute tier even in the relaxed model), ``too_large`` or
    ``error``. ``plan_step_time_s`` is the step time of ``decisions`` scheduled by :mod:`core.schedule`
    (None when that fails); ``is_lower_bound`` is False only when it equals the bound.
    """

    step_time_s: float
    is_lower_bound: bool
    status: str
    message: str
    solve_time_s: float
    decisions: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    plan_step_time_s: float | None = None


class _Model:
    """Sparse MILP builder: variables with bounds/integrality, rows ``lo ≤ a·x ≤ hi``, objective ``c·x``."""

    def __init__(self) -> None:
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.integer: list[int] = []
        self.cost: list[float] = []
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []

    def var(self, lb: float = 0.0, ub: float = math.inf, *, integer: bool = False, cost: float = 0.0) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(int(integer))
        self.cost.append(cost)
        return len(self.lb) - 1

    def row(self, terms: Mapping[int, float] | list[tuple[int, float]], lo: float, hi: float) -> None:
        r = len(self.row_lo)
        items = terms.items() if isinstance(terms, Mapping) else terms
        for col, val in items:
            if val:
                self.rows.append(r)
                self.cols.append(col)
                self.vals.append(val)
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def solve(self, time_limit_s: float) -> Any:
        n = len(self.lb)
        a = coo_array((self.vals, (self.rows, self.cols)), shape=(len(self.row_lo), n)).tocsr()
        return milp(
            c=np.array(self.cost), integrality=np.array(self.integer), bounds=Bounds(np.array(self.lb), np.array(self.ub)),
            constraints=LinearConstraint(a, np.array(self.row_lo), np.array(self.row_hi)),
            options={"time_limit": max(0.01, float(time_limit_s)), "mip_rel_gap": 1e-7, "disp": False},
        )


@dataclass
class _Option:
    """Offloading one span to one tier: its binary, copy-out fraction and per-hop, per-stage byte variables."""

    span: Span
    tier: str
    var: int
    wb: int | None = None
    wb_hops: list[dict[int, int]] = field(default_factory=list)  # hop -> {stage: var}
    pf_hops: list[dict[int, int]] = field(default_factory=list)


def _windows(span: Span, n: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Stages for copy-out and copy-in, and the ops where unfinished copy-out / finished copy-in occupy memory."""
    a, b = span.start_op, span.end_op
    if span.kind == "inner":
        stages = list(range(a + 1, b + 1))
        ops = list(range(a + 1, b))
        return stages, stages, ops, ops
    if span.kind == "initial":
        return [], list(range(0, b + 1)), [], list(range(0, b))
    if span.kind == "wrap":
        return list(range(a + 1, n + 1)), list(range(0, b + 1)), list(range(a + 1, n)), list(range(0, b))
    return [], [], [], []


def _freed_ops(span: Span, n: int) -> list[int]:
    """The ops :func:`core.spans.freed_slots` frees, one by one (the model has a row per op)."""
    return [i for lo, hi in freed_slots(span, n) for i in range(lo, hi)]


def _version_of(live: Liveness, graph: Graph, span: Span) -> int:
    """Index of the tensor version the span holds (a version starts at production and at each mutation)."""
    if span.kind in ("initial", "unused"):
        return 0
    muts = live.mutations.get(span.tensor, frozenset())
    produced = span.tensor in graph.producer
    uses = live.uses[span.tensor]
    return sum(1 for j, u in enumerate(uses) if u <= span.start_op and (u in muts or (produced and j == 0)))


def optimal_reference(graph: Graph, hw: Hardware, *, time_limit_s: float = 10.0,
                      liveness: Liveness | None = None) -> OptimalResult:
    """Lower bound on the step time of any plan of ``graph`` on ``hw`` (see the module docstring)."""
    started = time.perf_counter()
    live = liveness or analyze(graph)
    n = live.n_ops
    C = hw.compute_tier
    cap = hw.capacity(C)
    dur = op_durations(graph, hw)
    if n > MAX_OPS:
        return OptimalResult(math.nan, True, "too_large", f"the exact reference is for small graphs (≤ {MAX_OPS} ops); "
                             f"this one has {n}", 0.0)
    if n == 0:
        return OptimalResult(0.0, False, "optimal", "no ops", 0.0)
    if int(live.required_bytes.max()) > cap:
        i = int(live.required_bytes.argmax())
        return OptimalResult(math.inf, False, "infeasible", f"op '{graph.ops[i].id}' alone needs "
                             f"{format_bytes(int(live.required_bytes[i]))} in {C}, which holds {format_bytes(cap)}", 0.0)

    unit_b = float(max(1, max((s.bytes for s in live.spans), default=1)))
    unit_t = float(max(dur.sum(), 1e-9))
    m = _Model()
    stage = [m.var(cost=1.0) for _ in range(n + 1)]  # stage times in unit_t
    keep: dict[int, int] = {}
    rec: dict[int, int] = {}
    options: dict[int, list[_Option]] = {}
    tiers = [t for t in hw.offload_tiers if hw.has_route(C, t) and hw.has_route(t, C)]

    spans = [s for s in live.spans if s.bytes > 0 and _freed_ops(s, n)]
    for s in spans:
        keep[s.id] = m.var(0, 1, integer=True)
        options[s.id] = [_Option(s, tier, m.var(0, 1, integer=True)) for tier in tiers]
        if recompute_ok(graph, live, s.id):
            rec[s.id] = m.var(0, 1, integer=True)
        m.row([(keep[s.id], 1.0), *((o.var, 1.0) for o in options[s.id]), *([(rec[s.id], 1.0)] if s.id in rec else [])],
              1.0, 1.0)

    # recompute: the producer's inputs must be in the compute tier at the span's end
    for sid, r in rec.items():
        s = live.spans[sid]
        for x in graph.ops[graph.producer[s.tensor]].inputs:
            if s.end_op in live.uses[x]:
                continue
            cover = covering_span(live, x, s.end_op)
            if cover is None:
                m.row([(r, 1.0)], 0.0, 0.0)
            elif cover in keep:
                m.row([(r, 1.0), (keep[cover], -1.0)], -math.inf, 0.0)

    # copies: bytes per hop and stage; copy-out needed unless a fresh copy is below
    link_load: dict[tuple[tuple[str, str], int], list[int]] = {}
    by_version: dict[tuple[str, int, str], list[_Option]] = {}
    for s in spans:
        size = s.bytes / unit_b
        wb_st, pf_st, _, _ = _windows(s, n)
        for o in options[s.id]:
            may_dirty = is_dirty(graph, live, s)
            if may_dirty:
                o.wb = m.var(0, 1)
                for link in hw.route(C, o.tier):
                    hop = {j: m.var() for j in wb_st}
                    o.wb_hops.append(hop)
                    m.row([*((v, 1.0) for v in hop.values()), (o.wb, -size)], 0.0, 0.0)
                    for j, v in hop.items():
                        link_load.setdefault(((link.src, link.dst), j), []).append(v)
            if pf_st:
                for link in hw.route(o.tier, C):
                    hop = {j: m.var() for j in pf_st}
                    o.pf_hops.append(hop)
                    m.row([*((v, 1.0) for v in hop.values()), (o.var, -size)], 0.0, 0.0)
                    for j, v in hop.items():
                        link_load.setdefault(((link.src, link.dst), j), []).append(v)
            by_version.setdefault((s.tensor, _version_of(live, graph, s), o.tier), []).append(o)
    for (tensor, version, tier), opts in by_version.items():
        t = graph.tensor_by_id[tensor]
        fresh_at_start: list[int] = []
        if version == 0 and t.persistent:  # the step-start copy below (home of the wrap-around span)
            fresh_at_start = [o.var for sid in live.spans_of[tensor] for o in options.get(sid, ())
                              if o.tier == tier and o.span.kind == "wrap"]
        elif version == 0:  # an input that starts the step below
            fresh_at_start = [o.var for sid in live.spans_of[tensor] for o in options.get(sid, ())
                              if o.tier == tier and o.span.kind == "initial"]
        opts = sorted(opts, key=lambda o: (o.span.kind == "wrap", o.span.start_op))
        for k, o in enumerate(opts):
            if o.wb is None:
                continue
            earlier = [p.var for p in opts[:k]] + [v for v in fresh_at_start if v != o.var]
            m.row([(o.wb, 1.0), (o.var, -1.0), *((v, 1.0) for v in earlier)], 0.0, math.inf)

    # stage times: compute (plus recomputes) and every link's bytes
    rec_at: dict[int, list[tuple[int, float]]] = {}
    for sid, r in rec.items():
        s = live.spans[sid]
        rec_at.setdefault(s.end_op, []).append((r, float(dur[graph.producer[s.tensor]]) / unit_t))
    for i in range(n):
        m.row([(stage[i], 1.0), *((r, -d) for r, d in rec_at.get(i, ()))], float(dur[i]) / unit_t, math.inf)
    bw = {(link.src, link.dst): link.bandwidth_Bps * unit_t / unit_b for link in hw.links}
    for (key, j), vars_ in link_load.items():
        m.row([*((v, 1.0) for v in vars_), (stage[j], -bw[key])], -math.inf, 0.0)

    # compute-tier capacity at every op
    mem_terms: list[dict[int, float]] = [{} for _ in range(n)]
    mem_const = np.asarray(live.keep_bytes, dtype=np.float64) / unit_b
    for s in spans:
        size = s.bytes / unit_b
        for i in _freed_ops(s, n):
            mem_const[i] -= size
            mem_terms[i][keep[s.id]] = mem_terms[i].get(keep[s.id], 0.0) + size
        _, _, wb_ops, pf_ops = _windows(s, n)
        for o in options[s.id]:
            # z = 1 when the compute-tier copy exists just before op i ends: until the copy-out's first hop is
            # done (which may be before op i starts), and from the moment the copy-in's last hop starts
            for i in sorted(set(wb_ops) | set(pf_ops)):
                z = m.var(0, 1, integer=True)
                m.row([(z, 1.0), (o.var, -1.0)], -math.inf, 0.0)
                mem_terms[i][z] = size
                if o.wb is not None and i in wb_ops:  # gone => all copied out by the end of stage i
                    m.row([*((v, 1.0) for j, v in o.wb_hops[0].items() if j <= i), (o.wb, -size), (z, size)],
                          0.0, math.inf)
                if o.pf_hops and i in pf_ops:  # gone => no copy-in byte moved by the end of stage i
                    m.row([*((v, 1.0) for j, v in o.pf_hops[-1].items() if j <= i), (z, -size)], -math.inf, 0.0)
    for i in range(n):
        m.row(mem_terms[i], -math.inf, cap / unit_b - mem_const[i])

    res = m.solve(time_limit_s - (time.perf_counter() - started))
    sol = getattr(res, "x", None)
    if int(getattr(res, "status", 4)) == 0 and sol is not None:
        # many decision sets reach the relaxed optimum: among them, take the one moving the fewest bytes
        # (recompute counted as its seconds of work), which is the one most likely to schedule well
        best = float(np.dot(m.cost, sol))
        m.row([(v, 1.0) for v in stage], -math.inf, best * (1 + 1e-7) + 1e-12)
        m.cost = [0.0] * len(m.cost)
        for opts in options.values():
            for o in opts:
                m.cost[o.var] = o.span.bytes / unit_b * (1 + len(o.wb_hops) + len(o.pf_hops))
        for sid, r in rec.items():
            m.cost[r] = float(dur[graph.producer[live.spans[sid].tensor]]) / unit_t
        left = time_limit_s - (time.perf_counter() - started)
        if left > 0.05:
            second = m.solve(left)
            if getattr(second, "x", None) is not None:
                sol = second.x
    solve_s = time.perf_counter() - started
    relaxed = "; ".join(RELAXATIONS)
    status_code = int(getattr(res, "status", 4))
    if status_code == 2:
        return OptimalResult(math.inf, False, "infeasible", "no keep/offload/recompute decisions fit "
                             f"{C} ({format_bytes(cap)}) even in the relaxed model, so no policy can", solve_s)
    bound = getattr(res, "mip_dual_bound", None)
    if bound is None and status_code == 0:  # no integer variable left: a plain LP, solved exactly
        bound = getattr(res, "fun", None)
    if bound is None or not math.isfinite(bound):
        if status_code == 1:
            return OptimalResult(float(dur.sum()), True, "time_limit",
                                 f"gave up after {format_time(solve_s)} (time limit) before proving a bound; only the "
                                 f"compute time {format_time(float(dur.sum()))} bounds the step time", solve_s)
        return OptimalResult(math.nan, True, "error", f"HiGHS gave no bound: {getattr(res, 'message', '')}", solve_s)
    bound_s = max(float(bound) * unit_t, float(dur.sum()))
    decisions: dict[int, tuple[str, str]] = {}
    if sol is not None:
        for s in spans:
            for o in options[s.id]:
                if sol[o.var] > 0.5:
                    decisions[s.id] = ("offload", o.tier)
            if s.id in rec and sol[rec[s.id]] > 0.5:
                decisions[s.id] = ("recompute", C)
    plan_s: float | None = None
    note = ""
    if sol is not None:
        try:
            sched = build_schedule(graph, hw, live, decisions)
            plan_s = schedule_end_s(sched)
        except InfeasibleError as exc:
            note = f" Its decisions do not schedule: {exc}."
    status = "optimal" if status_code == 0 else "time_limit"
    exact = plan_s is not None and status == "optimal" and plan_s <= bound_s * (1 + 1e-6) + 1e-12
    if exact:
        msg = f"optimal: a valid plan reaches the bound {format_time(bound_s)}"
    elif status == "optimal":
        msg = (f"lower bound {format_time(bound_s)} (model solved; it relaxes {relaxed})"
               + (f"; its decisions scheduled give {format_time(plan_s)}" if plan_s is not None else ""))
    else:
        msg = (f"gave up after {format_time(solve_s)} (time limit): best proven lower bound {format_time(bound_s)}, "
               f"gap {float(getattr(res, 'mip_gap', math.nan) or 0.0):.1%}")
    return OptimalResult(bound_s, not exact, status, msg + note, solve_s, decisions, plan_s)
