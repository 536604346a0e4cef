"""The single entry point :func:`make_plan`: decide with a policy, schedule, and replay before returning.

A policy decides per idle span (keep, offload, recompute; :mod:`core.policies`), :mod:`core.schedule`
times the decisions. ``make_plan`` then replays the result with the independent validator
(:func:`core.validate.validate_plan`, cheap next to planning) and never returns a plan it rejects: a
rejection is a bug in Tierplan and raises :class:`~core.errors.PlanBugError` naming the rule.

For the default policy the candidates are Tierplan's portfolio (:mod:`core.policies.tierplan`) plus the
plans of the baselines with their own default parameters: the fastest valid one wins (ties: fewer bytes
moved), so wherever a baseline finds a valid plan the default finds one too, at least as fast. The
fastest candidate then gets the scheduler's refining passes (:func:`core.schedule.build_schedule`), which
pay off in link-bound phases and cost little, so they run once rather than for every candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from core.errors import InfeasibleError, PlanBugError
from core.graph import Graph
from core.hardware import Hardware, with_capacity
from core.liveness import Liveness, analyze
from core.plan import Decision, Plan
from core.policies.base import Placement, resolve_params
from core.policies.registry import BASELINES, get_policy
from core.policies.tierplan import TIERPLAN
from core.schedule import Schedule, build_plan, build_schedule, schedule_end_s
from core.units import format_bytes

__all__ = ["make_plan", "check_fits_at_all"]


@dataclass(frozen=True)
class _Candidate:
    """A scheduled placement of some policy (``source``), ranked by step time then bytes moved."""

    source: str
    params: Mapping[str, Any]
    placement: Placement
    liveness: Liveness
    schedule: Schedule
    step_s: float
    moved_bytes: int
    #: the hardware it was scheduled on (``hw`` with less compute-tier room for Tierplan's reserve)
    room: Hardware


def make_plan(graph: Graph, hardware: Hardware, *, policy: str = "tierplan", params: Mapping[str, Any] | None = None,
              liveness: Liveness | None = None, reorder: bool = True, bound: bool = True,
              search_s: float = 0.5) -> Plan:
    """Plan one step of ``graph`` on ``hardware`` with ``policy``.

    ``reorder`` (Tierplan only; baselines run in the graph's order, as published): also plan in the refined
    execution order of :func:`core.order.refine_order` and keep whichever valid plan is faster; the plan
    records the order it used (``order``, ``order_moves``). In each order Tierplan also tries the rounded
    solution of the LP bound (:func:`core.bound.guided_plan`) and a local search on its best placement
    (:mod:`core.search`, ``search_s`` seconds; 0 = off). ``bound``: attach the LP lower bound of the plan's
    order (``lower_bound_s``, ``gap_to_bound``; :func:`core.bound.with_bound`).

    Raises
    ------
    InputError
        unknown policy or parameter.
    InfeasibleError
        no candidate fits; ``reason`` says why (see :data:`core.errors.InfeasibleReason`).
    PlanBugError
        every candidate that fits was rejected by the validator (a bug; never returned as a plan).
    """
    from core.bound import guided_plan, lower_bound, with_bound
    from core.order import refine_order

    orders: list[tuple[Graph, Any]] = [(graph, None)]
    if reorder and policy == TIERPLAN.key:
        refined = refine_order(graph)
        if refined.changed:
            orders.append((refined.graph, refined))
    best: tuple[Plan, Graph, Any] | None = None
    failure: InfeasibleError | None = None
    for g, refined in orders:
        found: list[Plan] = []
        # in the refined order the baselines' rules add nothing measured (llama2-7b-train, resnet50-train,
        # llama3-70b-train at 50 %: same step time) and cost a third of the planning time: left out there
        order_params = params if refined is None else {**(params or {}), "baselines": 0}
        try:
            found.append(_plan_in_order(g, hardware, policy=policy, params=order_params,
                                        liveness=liveness if refined is None else None, search_s=search_s))
        except InfeasibleError as exc:
            failure = failure or exc
        lp = lower_bound(g, hardware) if bound or policy == TIERPLAN.key else None
        if policy == TIERPLAN.key and lp is not None and found:  # the LP's rounding, when it beats the greedy
            guided = guided_plan(g, hardware, lp, policy=policy, params=found[0].policy_params)
            if guided is not None:
                found.append(guided)
        for plan in found:
            if refined is not None:
                plan = replace(plan, order=refined.order, order_moves=tuple(m.to_dict() for m in refined.moves),
                               policy_params=best[0].policy_params if best is not None else plan.policy_params)
            if best is None or plan.metrics["step_time_s"] < best[0].metrics["step_time_s"] * (1 - 1e-9):
                best = (plan, g, lp)
    if best is None:
        assert failure is not None
        raise failure
    plan, in_order, lp = best
    return with_bound(plan, in_order, hardware, known=lp) if bound else plan


def _plan_in_order(graph: Graph, hardware: Hardware, *, policy: str, params: Mapping[str, Any] | None,
                   liveness: Liveness | None, search_s: float = 0.0) -> Plan:
    """The best valid plan of ``policy`` with the ops in ``graph``'s own order (see :func:`make_plan`)."""
    info = get_policy(policy)
    resolved = resolve_params(info, params)
    live = liveness or analyze(graph)
    check_fits_at_all(graph, hardware, live)
    failure: InfeasibleError | None = None
    placements: list[tuple[str, Mapping[str, Any], Placement]] = []
    try:
        first = info.decide(graph, hardware, live, resolved)
        placements += [(policy, resolved, p) for p in (first, *first.alternatives)]
    except InfeasibleError as exc:
        failure = exc
    candidates: list[_Candidate] = []
    for source, source_params, placement in placements:
        try:
            candidates.append(_schedule(graph, hardware, hardware, live, source, source_params, placement))
        except InfeasibleError as exc:
            failure = failure or exc
    if policy == TIERPLAN.key and int(resolved.get("baselines", 1)):
        candidates += _baseline_candidates(graph, hardware, live, resolved)
    candidates.sort(key=lambda c: (c.step_s, c.moved_bytes))  # stable: the policy's own order breaks ties
    # the fastest gets the scheduler's refining passes (extents re-granted against the simulated slot starts)
    refined = [_refine(graph, hardware, c) for c in candidates[:_REFINED]]
    candidates = sorted(refined, key=lambda c: (c.step_s, c.moved_bytes)) + candidates[_REFINED:]
    if policy == TIERPLAN.key and search_s > 0 and candidates and candidates[0].placement.assignment:
        searched = _search(graph, candidates[0], search_s)
        if searched is not None:
            candidates.insert(0, searched)
    rejected: tuple[str, tuple[str, ...]] | None = None
    for cand in candidates:
        plan = _to_plan(graph, hardware, cand, policy, resolved)
        errors = _replay_errors(graph, plan)
        if not errors:
            return plan
        rejected = rejected or (cand.source, errors)
    if rejected is not None:
        raise PlanBugError(rejected[0], rejected[1])
    assert failure is not None
    raise failure


def _search(graph: Graph, cand: _Candidate, budget_s: float) -> _Candidate | None:
    """``cand`` improved by :func:`core.search.local_search` (None when nothing helped)."""
    from core.search import local_search, revise_decisions

    p = cand.placement
    found = local_search(graph, cand.room, cand.liveness, p.assignment, params=cand.params, op_tiers=p.op_tiers,
                         prefetch_from=p.prefetch_from, schedule=cand.schedule, budget_s=budget_s)
    if not found.improved:
        return None
    decisions = p.decisions or (p.explain_later() if p.explain_later is not None else ())
    decisions = revise_decisions(decisions, cand.liveness, p.assignment, found.assignment, cand.room.compute_tier)
    placement = replace(p, assignment=found.assignment, prefetch_from=found.prefetch_from, decisions=decisions,
                        explain_later=None, schedule=found.schedule, alternatives=())
    return replace(cand, placement=placement, schedule=found.schedule, step_s=found.step_s)


#: How many of the fastest candidates get the scheduler's refining passes before the final choice (more measured
#: no better step on the samples and the synthetic benchmark, at a CPU cost; bench/bench_candidates.py).
_REFINED = 1


def _refine(graph: Graph, hw: Hardware, cand: _Candidate) -> _Candidate:
    """``cand`` rescheduled with the scheduler's second pass (a no-op when the first did not stall)."""
    p = cand.placement
    room = cand.room
    sched = build_schedule(graph, room, cand.liveness, p.assignment, cand.params, p.op_tiers, p.prefetch_from,
                           refine=True)
    step = schedule_end_s(sched)
    return replace(cand, schedule=sched, step_s=step) if step < cand.step_s else cand


def _baseline_candidates(graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any]) -> list[_Candidate]:
    """Each baseline's plan with its own default parameters, within Tierplan's own limits: on the compute
    tier less Tierplan's ``hbm_reserve``, without recomputes when ``recompute`` is off and without host ops
    when ``host_compute`` is off. A baseline whose rule fails here is simply not a candidate."""
    C = hw.compute_tier
    reserve = float(params.get("hbm_reserve", 0.0))
    room = hw if reserve <= 0 else with_capacity(hw, C, int(hw.capacity(C) * (1.0 - reserve)))
    out: list[_Candidate] = []
    for key in BASELINES:
        base = get_policy(key)
        base_params = resolve_params(base, None)
        try:
            placement = base.decide(graph, room, live, base_params)
            if not int(params.get("recompute", 1)) and any(a == "recompute" for a, _ in placement.assignment.values()):
                continue
            if not int(params.get("host_compute", 1)) and placement.op_tiers:
                continue
            out.append(_schedule(graph, hw, room, live, key, base_params, placement))
        except InfeasibleError:
            continue
    return out


def _schedule(graph: Graph, hw: Hardware, room: Hardware, live: Liveness, source: str, params: Mapping[str, Any],
              placement: Placement) -> _Candidate:
    """Schedule ``placement`` within ``room`` (``hw`` with less compute-tier capacity, or ``hw`` itself)."""
    p_live = placement.liveness or live
    sched = placement.schedule
    if sched is None:
        sched = build_schedule(graph, room, p_live, placement.assignment, params, placement.op_tiers,
                               placement.prefetch_from, refine=False)
    moved = sum(p_live.spans[sid].bytes for sid, (action, _) in placement.assignment.items() if action == "offload")
    return _Candidate(source, params, placement, p_live, sched, schedule_end_s(sched), moved, room)


def _to_plan(graph: Graph, hw: Hardware, cand: _Candidate, policy: str, params: Mapping[str, Any]) -> Plan:
    placement = cand.placement
    decisions: tuple[Decision, ...] = placement.decisions
    if not decisions and placement.explain_later is not None:
        decisions = placement.explain_later()
    if cand.source != policy:  # a baseline's plan won the portfolio: say so on every decision
        decisions = tuple(replace(d, reason=f"{d.reason} [{policy} kept the {cand.source} candidate: fastest]")
                          for d in decisions)
    return build_plan(graph, hw, cand.liveness, placement.assignment, policy=policy, decisions=decisions,
                      params=params, op_tiers=placement.op_tiers, schedule=cand.schedule,
                      prefetch_from=placement.prefetch_from)


def _replay_errors(graph: Graph, plan: Plan) -> tuple[str, ...]:
    from core.validate import validate_plan

    report = validate_plan(graph, plan)
    return () if report.ok else tuple(report.errors)


def check_fits_at_all(graph: Graph, hw: Hardware, live: Liveness) -> None:
    """Reasons no policy can succeed: an op alone overflows the compute tier, or all tiers together.

    The errors carry ``reason`` ``op_footprint`` (with ``op``, ``need_bytes`` = the op's own inputs and
    outputs, ``have_bytes`` = the compute tier's capacity) or ``persistent_total`` (``need_bytes`` = the
    persistent bytes, ``have_bytes`` = all tiers' capacity together).
    """
    cap = hw.capacity(hw.compute_tier)
    if live.n_ops and live.required_bytes.max() > cap:
        i = int(live.required_bytes.argmax())
        need = int(live.required_bytes[i])
        raise InfeasibleError(
            f"op '{graph.ops[i].id}' needs {format_bytes(need)} of inputs and outputs in {hw.compute_tier} at once, "
            f"but {hw.compute_tier} holds {format_bytes(cap)} ({format_bytes(need - cap)} more than it has)",
            reason="op_footprint", op=graph.ops[i].id, tier=hw.compute_tier, need_bytes=need, have_bytes=cap,
        )
    total = sum(t.capacity_bytes for t in hw.tiers)
    if graph.persistent_bytes > total:
        raise InfeasibleError(
            f"the persistent tensors (weights, optimizer state, KV cache) need {format_bytes(graph.persistent_bytes)} "
            f"but all tiers together hold {format_bytes(total)}",
            reason="persistent_total", need_bytes=graph.persistent_bytes, have_bytes=total,
        )
