"""The entry points :func:`plan_anytime` and :func:`make_plan`: decide with a policy, schedule, and replay
before returning, first fast, then better.

A policy decides per idle span (keep, offload, recompute; :mod:`core.policies`), :mod:`core.schedule`
times the decisions. Every plan handed out is replayed with the independent validator first
(:func:`core.validate.validate_plan`, cheap next to planning) and a plan it rejects is never returned: when
every candidate is rejected that is a bug in Tierplan and raises :class:`~core.errors.PlanBugError` naming
the rule.

**Anytime planning.** For the default policy the work is a pipeline of stages (:data:`STAGES`), each
keeping the fastest valid plan found so far (ties: the earlier one), so the plan only ever gets better:

``first``
    one ranking order (``portfolio=0``), baselines only when that finds no valid plan, graph order, no LP:
    the plan a user sees at once (no scipy import on this path).
``portfolio``
    every ranking order of :mod:`core.policies.tierplan` (the user's parameters), graph order.
``reorder``
    the same in the refined execution order of :func:`core.order.refine_order` (when it changes anything).
``baselines``
    the baselines' plans with their own default parameters as further candidates (graph order, as published),
    so wherever a baseline finds a valid plan the default finds one at least as fast.
``bound``
    the LP lower bound of each order (:func:`core.bound.lower_bound`) and its rounded solution
    (:func:`core.bound.guided_plan`) as a candidate; the plan then carries ``lower_bound_s``/``gap_to_bound``.
``search``
    local search (:mod:`core.search`) on the best candidate of each order, bounded by a count of schedule
    builds (:func:`core.search.default_builds`), so the default plan is the same on every machine and load;
    a wall-clock cap applies only under ``time_budget_s`` (or an explicit ``search_s``).

The fastest candidate of each order gets the scheduler's refining pass (:func:`core.schedule.build_schedule`)
before it is compared, which pays off in link-bound phases. Without a time budget every stage runs and the
result is today's default plan (or a faster one found on the way); with ``time_budget_s`` a stage starts only
when its estimated cost (a multiple of the first plan's measured time) fits what is left, and the plan records
which stages ran (``Plan.planning``). Other policies have two stages: ``first`` (their plan) and ``bound``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # the LP module imports scipy: only the bound stage loads it
    from core.bound import Bound
    from core.order import RefinedOrder

__all__ = ["PlanUpdate", "STAGES", "plan_anytime", "make_plan", "check_fits_at_all", "warm_up"]

#: The refinement stages of the default policy, in the order they run (see the module docstring).
STAGES: tuple[str, ...] = ("first", "portfolio", "reorder", "baselines", "bound", "search")

#: Estimated cost of a stage, in units of a stage already measured in this run (a stage starts under a time
#: budget only when its estimate fits what is left): the portfolio runs four ranking orders where the first
#: plan runs one; the refined order repeats the portfolio; the baselines decide and schedule three plans;
#: the LP of one order took 0.5-2x the portfolio's time on the samples (llama2-7b-train, resnet50-train,
#: llama3-70b-train, deepseek-v3-decode), so 2x.
_COST_VS_FIRST = {"portfolio": 3.0, "baselines": 2.0}
_COST_VS_PORTFOLIO = {"reorder": 1.0, "bound": 2.0}


@dataclass(frozen=True)
class PlanUpdate:
    """The best valid plan after one stage of :func:`plan_anytime`.

    ``stage``: the stage just finished (or skipped, ``ran`` False); ``improved``: whether it made the plan
    faster; ``gap_to_bound``: the plan's distance to the LP bound once the bound stage ran (None before).
    """

    plan: Plan
    stage: str
    stages_done: int
    stages_total: int
    elapsed_s: float
    improved: bool
    ran: bool = True
    gap_to_bound: float | None = None
    lower_bound_s: float | None = None

    @property
    def final(self) -> bool:
        """Whether this is the last update (``make_plan`` returns its plan)."""
        return self.stages_done >= self.stages_total

    @property
    def step_time_s(self) -> float:
        return float(self.plan.metrics["step_time_s"])


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


@dataclass
class _Order:
    """Working state of one execution order while the stages run: its candidates so far, the memo of the
    refining pass and of the replay per candidate (a candidate compared again in a later stage is not
    rescheduled or replayed again), its LP bound once solved."""

    graph: Graph
    refined: RefinedOrder | None
    live: Liveness
    params: dict[str, Any]
    candidates: list[_Candidate] = field(default_factory=list)
    refined_pass: dict[int, _Candidate] = field(default_factory=dict)
    replayed: dict[int, tuple[Plan, tuple[str, ...]]] = field(default_factory=dict)
    lp: Bound | None = None
    #: whether some stage found a valid plan in this order
    found: bool = False


class _Failures:
    """The first infeasibility and the first validator rejection met on the way (raised when no stage
    finds a plan: a rejection first, since it is a bug)."""

    def __init__(self) -> None:
        self.infeasible: InfeasibleError | None = None
        self.rejected: tuple[str, tuple[str, ...]] | None = None

    def error(self) -> Exception:
        if self.rejected is not None:
            return PlanBugError(self.rejected[0], self.rejected[1])
        return self.infeasible or InfeasibleError("no candidate plan fits")


def make_plan(graph: Graph, hardware: Hardware, *, policy: str = "tierplan", params: Mapping[str, Any] | None = None,
              liveness: Liveness | None = None, reorder: bool = True, bound: bool = True,
              search_s: float | None = None, search_builds: int | None = None,
              time_budget_s: float | None = None) -> Plan:
    """Plan one step of ``graph`` on ``hardware`` with ``policy``: the last plan of :func:`plan_anytime`.

    ``reorder`` (Tierplan only; baselines run in the graph's order, as published): also plan in the refined
    execution order of :func:`core.order.refine_order` and keep whichever valid plan is faster; the plan
    records the order it used (``order``, ``order_moves``). ``bound``: attach the LP lower bound of the plan's
    order (``lower_bound_s``, ``gap_to_bound``; :func:`core.bound.with_bound`). ``search_builds``: schedule
    builds of local search per order (None: :func:`core.search.default_builds` for the graph's size; 0 = off).
    ``search_s``: a wall-clock cap on local search per order (None: none, so the plan does not depend on the
    machine's speed; 0 = off). ``time_budget_s``: stop refining when it is spent (0: the first plan only;
    None: every stage); only then, or with ``search_s``, can a plan depend on the machine's load.

    Raises
    ------
    InputError
        unknown policy or parameter.
    InfeasibleError
        no candidate fits; ``reason`` says why (see :data:`core.errors.InfeasibleReason`).
    PlanBugError
        every candidate that fits was rejected by the validator (a bug; never returned as a plan).

    Examples
    --------
    >>> from core import load_sample, load_preset
    >>> make_plan(load_sample("tiny"), load_preset("teaching"), time_budget_s=0).planning["stages_run"]
    ('first',)
    """
    updates = plan_anytime(graph, hardware, policy=policy, params=params, liveness=liveness, reorder=reorder,
                           bound=bound, search_s=search_s, search_builds=search_builds, time_budget_s=time_budget_s)
    return collections.deque(updates, maxlen=1)[0].plan


def plan_anytime(graph: Graph, hardware: Hardware, *, policy: str = "tierplan",
                 params: Mapping[str, Any] | None = None, liveness: Liveness | None = None, reorder: bool = True,
                 bound: bool = True, search_s: float | None = None, search_builds: int | None = None,
                 time_budget_s: float | None = None) -> Iterator[PlanUpdate]:
    """A fast first plan, then one :class:`PlanUpdate` per refinement stage (see the module docstring), each
    with the best valid plan so far; the last one is :func:`make_plan`'s answer.

    The first update comes once a valid plan exists (stages run past the budget until one does). Parameters
    and errors as :func:`make_plan`; the errors are raised before the first update.
    """
    if time_budget_s is not None and not time_budget_s >= 0:
        from core.errors import InputError

        raise InputError(f"must be a number of seconds >= 0, got {time_budget_s!r}", field="time_budget_s")
    return _Run(graph, hardware, policy, params, liveness, reorder, bound, search_s, search_builds,
                time_budget_s).updates()


class _Run:
    """One :func:`plan_anytime` call: the stage list, the best plan so far and the clock."""

    def __init__(self, graph: Graph, hw: Hardware, policy: str, params: Mapping[str, Any] | None,
                 liveness: Liveness | None, reorder: bool, bound: bool, search_s: float | None,
                 search_builds: int | None, budget_s: float | None) -> None:
        info = get_policy(policy)
        self.hw, self.policy, self.bound_wanted = hw, policy, bound
        self.search_s = None if search_s is None else max(0.0, float(search_s))
        self.search_builds = None if search_builds is None else max(0, int(search_builds))
        self.budget_s = budget_s
        self.resolved = resolve_params(info, params)
        self.tierplan = policy == TIERPLAN.key
        live = liveness or analyze(graph)
        check_fits_at_all(graph, hw, live)  # no policy can succeed: say why before any stage runs
        self.base = _Order(graph, None, live, self.resolved)
        self.orders: list[_Order] = [self.base]
        self.failures = _Failures()
        self.best: Plan | None = None
        self.best_order: _Order | None = None
        self.found_by = ""
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.t0 = time.perf_counter()
        #: seconds each stage that ran took (the estimates of the later ones)
        self.took: dict[str, float] = {}
        mode = int(self.resolved.get("baselines", 0))
        #: the order the first plan is made in: the graph's, with one ranking order (its own candidates
        #: when the user asked for the whole portfolio, which the ``portfolio`` stage then plans)
        self.quick = self.base
        self._bounded: tuple[Plan, Bound | None, Plan] | None = None
        if self.tierplan:
            self.stages = ["first"]
            if int(self.resolved.get("portfolio", 1)):
                quick = {**self.resolved, "portfolio": 0, "baselines": _no_always(self.resolved)}
                self.quick = _Order(graph, None, live, resolve_params(TIERPLAN, quick))
                self.stages.append("portfolio")  # the user's own parameters (the first plan uses reduced ones)
            if reorder:
                self.stages.append("reorder")
            if mode == BASELINES_ALWAYS:
                self.stages.append("baselines")
            self.stages.append("bound")  # its rounding is a candidate even when the bound is not reported
            if self.search_s != 0 and self.search_builds != 0:
                self.stages.append("search")
        else:
            self.stages = ["first"] + (["bound"] if bound else [])

    # ------------------------------------------------------------------------------------------ driver
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def updates(self) -> Iterator[PlanUpdate]:
        total = len(self.stages)
        for k, stage in enumerate(self.stages, start=1):
            run = self.best is None or self._fits(stage)
            before = self.best
            if run:
                started = self.elapsed()
                getattr(self, f"_stage_{stage}")()
                self.ran.append(stage)
                self.took[stage] = self.elapsed() - started
            else:
                self.skipped.append(stage)
            if self.best is None:
                if k == total:
                    raise self.failures.error()
                continue
            plan = self._shown(final=k == total)
            yield PlanUpdate(plan, stage, k, total, self.elapsed(), self.best is not before and before is not None,
                             run, plan.gap_to_bound, plan.lower_bound_s)

    def _fits(self, stage: str) -> bool:
        """Whether ``stage`` may start under the time budget (always without one)."""
        if self.budget_s is None:
            return True
        left = self.budget_s - self.elapsed()
        if stage == "search":
            return left > 0.05
        return left > 0 and self._estimate(stage) <= left

    def _full_portfolio(self) -> bool:
        """Whether later stages plan with the user's whole portfolio (else the time budget left it out)."""
        return self.quick is self.base or "portfolio" in self.ran

    def _estimate(self, stage: str, orders: int = 1) -> float:
        """Seconds ``stage`` should take, from the stages measured so far (see :data:`_COST_VS_FIRST`)."""
        first = self.took.get("first", 0.0)
        if stage in _COST_VS_FIRST:
            return _COST_VS_FIRST[stage] * first
        if stage == "reorder" and not self._full_portfolio():
            return first  # one ranking order, as the first plan
        portfolio = self.took.get("portfolio", _COST_VS_FIRST["portfolio"] * first)
        return _COST_VS_PORTFOLIO.get(stage, 1.0) * portfolio * orders

    def _consider(self, plan: Plan | None, order: _Order, stage: str) -> None:
        """Keep ``plan`` when it is strictly faster than the best so far (ties keep the earlier plan)."""
        if plan is None:
            return
        order.found = True
        if order.refined is not None:
            plan = replace(plan, order=order.refined.order, order_moves=tuple(m.to_dict() for m in order.refined.moves),
                           policy_params=dict(self.resolved))
        if self.best is None or plan.metrics["step_time_s"] < self.best.metrics["step_time_s"] * (1 - 1e-9):
            self.best, self.best_order, self.found_by = plan, order, stage

    def _shown(self, *, final: bool) -> Plan:
        """The best plan with its bound (when its order's LP is solved and the bound was asked for) and what
        the planning did (``Plan.planning``)."""
        assert self.best is not None and self.best_order is not None
        plan = self.best
        order = self.best_order
        if self.bound_wanted and order.lp is not None:
            if self._bounded is None or self._bounded[0] is not plan or self._bounded[1] is not order.lp:
                from core.bound import with_bound  # (a plan with host ops solves one more LP: once)

                self._bounded = (plan, order.lp, with_bound(plan, order.graph, self.hw, known=order.lp))
            plan = self._bounded[2]
        if not self.bound_wanted:
            bound_note = "off"
        elif plan.lower_bound_s is not None:
            bound_note = "computed"
        elif "bound" in self.skipped:
            bound_note = "not computed: the time budget ran out before the bound stage"
        elif "bound" in self.ran:
            bound_note = "not computed: the LP has no finite bound for this order"
        else:
            bound_note = "not computed yet"
        planning = {"stages_run": tuple(self.ran), "stages_skipped": tuple(self.skipped),
                    "stages_pending": () if final else tuple(s for s in self.stages
                                                             if s not in self.ran and s not in self.skipped),
                    "found_by": self.found_by, "time_budget_s": self.budget_s, "bound": bound_note}
        return replace(plan, planning=planning)

    # ------------------------------------------------------------------------------------------ stages
    def _stage_first(self) -> None:
        params = self.quick.params if self.quick is not self.base else \
            {**self.resolved, "baselines": _no_always(self.resolved)} if self.tierplan else self.resolved
        self._consider(self._best_in(self.quick, params, fresh=True), self.base, "first")

    def _graph_order(self) -> _Order:
        """The graph-order candidates the later stages work on: the portfolio's, else the first plan's."""
        return self.base if self.base.candidates or self.quick is self.base else self.quick

    def _stage_portfolio(self) -> None:
        self._consider(self._best_in(self.base, {**self.resolved, "baselines": _no_always(self.resolved)},
                                     fresh=True), self.base, "portfolio")

    def _stage_reorder(self) -> None:
        from core.order import refine_order

        refined = refine_order(self.base.graph)
        if not refined.changed:
            return
        # in the refined order the baselines' rules add nothing measured (llama2-7b-train, resnet50-train,
        # llama3-70b-train at 50 %: same step time) and cost a third of the planning time: left out there.
        # When the time budget left the portfolio out, the refined order gets the first plan's one ranking
        # order too (on llama2-7b-train that alone is most of the gain)
        params = self.resolved if self._full_portfolio() else self.quick.params
        order = _Order(refined.graph, refined, analyze(refined.graph), {**params, "baselines": 0})
        self.orders.append(order)
        self._consider(self._best_in(order, order.params, fresh=True), order, "reorder")

    def _stage_baselines(self) -> None:
        order = self._graph_order()
        order.candidates += _baseline_candidates(order.graph, self.hw, order.live, self.resolved)
        self._consider(self._best_in(order, self.resolved), self.base, "baselines")

    def _stage_bound(self) -> None:
        from core.bound import guided_plan, lower_bound

        # the order of the best plan first: its bound is the one reported; under a time budget the other
        # order's LP (only a candidate's source then) runs when its estimate still fits
        orders = self.orders if self.budget_s is None else sorted(self.orders, key=lambda o: o is not self.best_order)
        for k, order in enumerate(orders):
            if k and self.budget_s is not None and self._estimate("bound") > self.budget_s - self.elapsed():
                break
            order.lp = lower_bound(order.graph, self.hw)
            # (as before: the LP's rounding refines an order that has a plan; none where it cannot win)
            if self.tierplan and order.found and not self._bound_rules_out(order.lp):
                guided = guided_plan(order.graph, self.hw, order.lp, policy=self.policy, params=self.resolved,
                                     beat_s=self._to_beat())
                self._consider(guided, order, "bound")

    def _stage_search(self) -> None:
        orders = [o for o in (self._graph_order(), *self.orders[1:]) if o.candidates]
        for k, order in enumerate(orders):
            budget = self.search_s  # None: the count of builds alone bounds the search (deterministic)
            if self.budget_s is not None:  # share what is left between the orders still to search
                left = max(0.0, self.budget_s - self.elapsed()) / (len(orders) - k)
                budget = left if budget is None else min(budget, left)
            lp = self.base.lp if order is self.quick else order.lp
            if self._bound_rules_out(lp) and not any(c.placement.op_tiers for c in order.candidates):
                continue  # nothing in this order (without host ops) can beat the best plan: no search there
            if budget is None or budget > 0:
                params = self.resolved if order is self.base else order.params
                self._consider(self._best_in(order, params, search=_SearchBudget(self.search_builds, budget)),
                               self.base if order is self.quick else order, "search")

    # ------------------------------------------------------------------------------------------ helpers
    def _to_beat(self) -> float | None:
        """The step time a new candidate must get below to be kept (:meth:`_consider`); None before any."""
        return None if self.best is None else float(self.best.metrics["step_time_s"]) * (1 - 1e-9)

    def _bound_rules_out(self, lp: Bound | None) -> bool:
        """Whether an order's LP proves that none of its plans without host ops can beat the best plan: its
        bound is already at the step time to beat (on the samples: where the best plan reaches its bound,
        e.g. llama3-70b-train on gh200 at 50 %, the rounding and the search of that order are skipped)."""
        beat = self._to_beat()
        return lp is not None and beat is not None and lp.status == "optimal" and lp.lower_bound_s >= beat

    def _best_in(self, order: _Order, params: dict[str, Any], *, fresh: bool = False,
                 search: _SearchBudget | None = None) -> Plan | None:
        """The fastest valid plan among ``order``'s candidates (``fresh``: first ask the policy with
        ``params`` for new ones). With ``baselines=1`` the baselines are tried when none is valid."""
        resolved = resolve_params(get_policy(self.policy), params)
        if fresh:
            order.candidates += self._decide(order, resolved)
        plan = _first_valid(order, self.hw, self.policy, resolved, search, self.failures)
        if plan is None and self.tierplan and int(resolved.get("baselines", 0)) == BASELINES_IF_NEEDED:
            extra = _Order(order.graph, order.refined, order.live, resolved,
                           _baseline_candidates(order.graph, self.hw, order.live, resolved))
            plan = _first_valid(extra, self.hw, self.policy, resolved, None, self.failures)
        return plan

    def _decide(self, order: _Order, resolved: dict[str, Any]) -> list[_Candidate]:
        """The policy's placements (best first, then its alternatives) scheduled; failures noted."""
        try:
            first = get_policy(self.policy).decide(order.graph, self.hw, order.live, resolved)
        except InfeasibleError as exc:
            self.failures.infeasible = self.failures.infeasible or exc
            return []
        out: list[_Candidate] = []
        for p in (first, *first.alternatives):
            try:
                out.append(_schedule(order.graph, self.hw, self.hw, order.live, self.policy, resolved, p))
            except InfeasibleError as exc:
                self.failures.infeasible = self.failures.infeasible or exc
        return out


def _no_always(params: Mapping[str, Any]) -> int:
    """The ``baselines`` mode of a stage that leaves the baselines to their own stage."""
    return min(int(params.get("baselines", 0)), BASELINES_IF_NEEDED)


@dataclass(frozen=True)
class _SearchBudget:
    """What one local search may spend: ``builds`` schedule builds (None: the default for the graph's size)
    and, only when a caller set one, ``seconds`` of wall clock."""

    builds: int | None
    seconds: float | None


def _search(graph: Graph, cand: _Candidate, budget: _SearchBudget) -> _Candidate | None:
    """``cand`` improved by :func:`core.search.local_search` (None when nothing helped)."""
    from core.search import local_search, revise_decisions

    p = cand.placement
    found = local_search(graph, cand.room, cand.liveness, p.assignment, params=cand.params, op_tiers=p.op_tiers,
                         prefetch_from=p.prefetch_from, schedule=cand.schedule, max_builds=budget.builds,
                         budget_s=budget.seconds)
    if not found.improved:
        return None
    decisions = p.decisions or (p.explain_later() if p.explain_later is not None else ())
    decisions = revise_decisions(decisions, cand.liveness, p.assignment, found.assignment, cand.room.compute_tier)
    placement = replace(p, assignment=found.assignment, prefetch_from=found.prefetch_from, decisions=decisions,
                        explain_later=None, schedule=found.schedule, alternatives=())
    return replace(cand, placement=placement, schedule=found.schedule, step_s=found.step_s)


#: ``baselines`` parameter of Tierplan: 0 never, 1 only when the portfolio has no valid plan (completeness),
#: 2 always as candidates (default: it also finds faster plans; it costs CPU, see bench/bench_candidates.py).
BASELINES_NEVER, BASELINES_IF_NEEDED, BASELINES_ALWAYS = 0, 1, 2


def _first_valid(order: _Order, hw: Hardware, policy: str, params: Mapping[str, Any], search: _SearchBudget | None,
                 failures: _Failures) -> Plan | None:
    """The fastest of ``order``'s candidates that the validator accepts (rejections noted in
    ``failures``). The fastest gets the scheduler's refining passes and, for Tierplan with ``search``, local
    search (:func:`_search`) first."""
    graph = order.graph
    ranked = sorted(order.candidates, key=lambda c: (c.step_s, c.moved_bytes))  # stable: policy order breaks ties
    # the fastest gets the scheduler's refining passes (extents re-granted against the simulated slot starts)
    refined = []
    for c in ranked[:_REFINED]:
        if id(c) not in order.refined_pass:
            order.refined_pass[id(c)] = _refine(graph, hw, c)
        refined.append(order.refined_pass[id(c)])
    ranked = sorted(refined, key=lambda c: (c.step_s, c.moved_bytes)) + ranked[_REFINED:]
    searched: _Candidate | None = None
    if policy == TIERPLAN.key and search is not None and ranked and ranked[0].placement.assignment:
        searched = _search(graph, ranked[0], search)
        if searched is not None:
            ranked.insert(0, searched)
    for cand in ranked:
        hit = None if cand is searched else order.replayed.get(id(cand))
        if hit is None:
            plan = _to_plan(graph, hw, cand, policy, params)
            hit = (plan, _replay_errors(graph, plan))
            if cand is not searched:  # kept alive by ``order``: its id stays unique
                order.replayed[id(cand)] = hit
        plan, errors = hit
        if not errors:
            return replace(plan, policy_params=dict(params)) if plan.policy_params != params else plan
        failures.rejected = failures.rejected or (cand.source, errors)
    return None


#: How many of the fastest candidates get the scheduler's refining passes before the final choice (more measured
#: no better step on the samples and the synthetic benchmark, at a CPU cost; bench/bench_candidates.py).
_REFINED = 1


def _refine(graph: Graph, hw: Hardware, cand: _Candidate) -> _Candidate:
    """``cand`` rescheduled with the scheduler's second pass (a no-op when the first did not stall, or when
    the policy already tried it: ``Placement.refined``)."""
    p = cand.placement
    if p.refined:
        return cand
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


def warm_up() -> bool:
    """Load (or compile) every numba kernel by planning a four-op training step that must offload, so the
    first real plan of a long-lived process (the dashboard) pays neither numba's import nor the kernels'
    load. Safe on a background thread: other threads stay on the Python path until it is done
    (:func:`core.kernels.warming`). Returns whether the compiled kernels are in use."""
    from core.graph import graph_from_dict
    from core.hardware import hardware_from_dict
    from core.kernels import numba_enabled, warming

    if not numba_enabled():
        return False
    g = graph_from_dict({"format": "tierplan-graph/1", "name": "warm-up", "tensors": [
        {"id": "w1", "bytes": 4, "kind": "weight"}, {"id": "w2", "bytes": 4, "kind": "weight"},
        {"id": "a1", "bytes": 4, "kind": "activation"}, {"id": "a2", "bytes": 4, "kind": "activation"}], "ops": [
        {"id": "f1", "inputs": ["w1"], "outputs": ["a1"], "time_s": 1.0},
        {"id": "f2", "inputs": ["a1", "w2"], "outputs": ["a2"], "time_s": 1.0},
        {"id": "b2", "inputs": ["a2", "w2"], "outputs": [], "time_s": 2.0},
        {"id": "b1", "inputs": ["a1", "w1"], "outputs": [], "time_s": 2.0}]})
    hw = hardware_from_dict({"format": "tierplan-hardware/1", "compute": {"peak_flops": 1e12}, "compute_tier": "HBM",
                             "tiers": [{"name": "HBM", "capacity_bytes": 12}, {"name": "DDR", "capacity_bytes": 64}],
                             "links": [{"src": "HBM", "dst": "DDR", "bandwidth_Bps": 8.0},
                                       {"src": "DDR", "dst": "HBM", "bandwidth_Bps": 8.0}]})
    with warming():
        make_plan(g, hw, time_budget_s=0)
    return True
