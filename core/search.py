"""Local search on a winning placement under a budget of schedule builds: small changes, each judged by the
real scheduler.

The greedy sweep decides span by span with estimated costs; the exact schedule then shows where the compute
stream actually waits. :func:`local_search` looks at the op with the longest stall and tries, for the spans
whose copies that op waits for: issuing the copy-in earlier (a prefetch point further back), recomputing
the span instead of moving it, moving it to another tier, or keeping it (when the compute tier has room).
A change is kept when the scheduled step time drops; the search stops when no change helps or the budget is
spent. Every candidate goes through :func:`core.schedule.build_schedule`, so what it returns is as valid
as any other schedule (the caller still replays it).

**Budget.** The budget is a count of schedule builds (``max_builds``), not seconds: the same inputs give the
same plan on a quiet laptop, a loaded CI runner and every sweep executor. :func:`default_builds` scales the
count with the schedule (a build costs about the same per event), chosen so a search takes about what
the former 0.5 s wall-clock budget allowed on a quiet machine. A wall-clock cap (``budget_s``) applies only
when a caller asks for one (the user's ``--time-budget``); then the result depends on the machine's speed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import InfeasibleError
from core.graph import Graph
from core.hardware import Hardware
from core.liveness import Liveness
from core.plan import ComputeEvent, Decision, TransferEvent
from core.schedule import Schedule, build_schedule
from core.spans import recompute_ok

__all__ = ["SearchResult", "SEARCH_WORK", "default_builds", "local_search", "stalls_by_op", "revise_decisions"]

#: Schedule builds the default search may spend, in units of events of the schedule it starts from: a build
#: costs about 17-27 us of CPU per event (measured CPU time: llama2-7b-train 0.083 s per build of 3,088
#: events, llama3-70b-train 0.082 s of 4,477, llama2-7b-decode 0.015 s of 905). The former 0.5 s wall-clock
#: budget allowed, on a quiet machine, 6-37 builds per order on the samples at 50 % of their peak; 30,000
#: gives 6-33 there (about 0.3-0.6 s of CPU per searched order) and with MIN_BUILDS never fewer builds than it
#: used where they still improved the plan (deepseek-v3-decode on gh200: 6).
SEARCH_WORK = 30_000
#: The fewest builds a default search gets, however large the schedule (the first tail swap and a few moves).
MIN_BUILDS = 8
#: The most builds a default search gets, however small the schedule (it usually stops first: no move helps).
MAX_BUILDS = 256


def default_builds(n_events: int) -> int:
    """Schedule builds of a default local search from a schedule of ``n_events`` events.

    >>> default_builds(3088), default_builds(905), default_builds(40)
    (9, 33, 256)
    """
    return max(MIN_BUILDS, min(MAX_BUILDS, SEARCH_WORK // max(1, n_events)))


@dataclass(frozen=True)
class SearchResult:
    """The best placement found (``assignment``, ``prefetch_from``), its schedule and what was tried."""

    assignment: Mapping[int, tuple[str, str]]
    prefetch_from: Mapping[int, int]
    schedule: Schedule
    step_s: float
    tried: int
    improved: int
    moves: tuple[str, ...] = field(default_factory=tuple)


def _end(schedule: Schedule) -> float:
    return max((getattr(e, "end", getattr(e, "time", 0.0)) for e in schedule.events), default=0.0)


def stalls_by_op(graph: Graph, schedule: Schedule, compute_tier: str) -> list[tuple[float, int]]:
    """(seconds the compute stream waited before op i, i), longest first."""
    index = graph.op_index
    runs = sorted((e for e in schedule.events if isinstance(e, ComputeEvent) and e.tier == compute_tier),
                  key=lambda e: e.start)
    out = []
    free = 0.0
    for e in runs:
        if e.start > free + 1e-12 and not e.recompute:
            out.append((e.start - free, index[e.op]))
        free = max(free, e.end)
    return sorted(out, reverse=True)


def local_search(graph: Graph, hw: Hardware, live: Liveness, assignment: Mapping[int, tuple[str, str]], *,
                 params: Mapping[str, Any] | None = None, op_tiers: Mapping[int, str] | None = None,
                 prefetch_from: Mapping[int, int] | None = None, schedule: Schedule | None = None,
                 max_builds: int | None = None, budget_s: float | None = None, worst_ops: int = 3) -> SearchResult:
    """Improve ``assignment`` around the ``worst_ops`` longest stalls until ``max_builds`` schedules have been
    built (default :func:`default_builds` of the starting schedule's size; building that one, when not
    given, counts as none) or, when
    ``budget_s`` is given, that many seconds have passed, whichever comes first (no recompute when
    ``params["recompute"]`` is 0). Without ``budget_s`` the result depends only on the inputs."""
    started = time.perf_counter()
    C = hw.compute_tier
    allow_recompute = bool(int((params or {}).get("recompute", 1)))
    best_a = dict(assignment)
    best_p = dict(prefetch_from or {})
    best_s = schedule if schedule is not None else build_schedule(graph, hw, live, best_a, params, op_tiers, best_p)
    best_t = _end(best_s)
    if max_builds is None:
        max_builds = default_builds(len(best_s.events))
    tried = improved = 0
    moves: list[str] = []
    ends_at: dict[int, list[int]] = {}
    for span in live.spans:
        if span.kind != "unused":
            ends_at.setdefault(span.end_op, []).append(span.id)

    def spent() -> bool:
        return tried >= max_builds or (budget_s is not None and time.perf_counter() - started >= budget_s)

    def attempt(a: dict[int, tuple[str, str]], p: dict[int, int], what: str) -> bool:
        nonlocal best_a, best_p, best_s, best_t, tried, improved
        tried += 1
        try:
            sched = build_schedule(graph, hw, live, a, params, op_tiers, p)
        except InfeasibleError:
            return False
        t = _end(sched)
        if t < best_t * (1 - 1e-9):
            best_a, best_p, best_s, best_t = a, p, sched, t
            improved += 1
            moves.append(what)
            return True
        return False

    # the step's end: a copy-out still running after the last op (an update's state written back last) is
    # pure tail; keeping that span and moving a kept one of at least its size instead may hide it
    swapped = True
    while swapped and not spent():
        swapped = False
        for a, what in _tail_swaps(graph, hw, live, best_a, best_s):
            if spent():
                break
            if attempt(a, dict(best_p), what):
                swapped = True
                break
    progress = True
    while progress and not spent():
        progress = False
        for _, i in stalls_by_op(graph, best_s, C)[:worst_ops]:
            for sid in ends_at.get(i, ()):
                if spent():
                    break
                action, tier = best_a.get(sid, ("keep", C))
                if action == "keep":
                    continue
                span = live.spans[sid]
                options: list[tuple[dict[int, tuple[str, str]], dict[int, int], str]] = []
                if action == "offload":
                    lo = 0 if span.kind in ("initial", "wrap") else span.start_op + 1
                    here = best_p.get(sid, i)
                    for target in sorted({(lo + here) // 2, max(lo, here - 1)}):
                        if lo <= target < here:
                            options.append((best_a, {**best_p, sid: target},
                                            f"copy-in of '{span.tensor}' issued at op {target} instead of {here}"))
                    if allow_recompute and recompute_ok(graph, live, sid) and _inputs_kept(graph, live, best_a, sid):
                        options.append(({**best_a, sid: ("recompute", C)}, best_p, f"'{span.tensor}' recomputed"))
                    for other in hw.offload_tiers:
                        if other != tier:
                            options.append(({**best_a, sid: ("offload", other)}, best_p,
                                            f"'{span.tensor}' moved to {other} instead of {tier}"))
                keep = {k: v for k, v in best_a.items() if k != sid}
                options.append((keep, {k: v for k, v in best_p.items() if k != sid}, f"'{span.tensor}' kept in {C}"))
                for a, p, what in options:
                    if spent():
                        break
                    if attempt(dict(a), dict(p), what):
                        progress = True
                        break
            if progress:
                break
    return SearchResult(best_a, best_p, best_s, best_t, tried, improved, tuple(moves))


#: How many kept spans :func:`_tail_swaps` offers in exchange for the tail's span.
_TAIL_SWAPS = 4


def _tail_swaps(graph: Graph, hw: Hardware, live: Liveness, assignment: Mapping[int, tuple[str, str]],
                schedule: Schedule) -> list[tuple[dict[int, tuple[str, str]], str]]:
    """Swaps for the offloaded span whose copy-out ends the step after the last compute-tier op: that span
    kept, and one kept span of at least its bytes moved to the same tier instead (candidates: spans whose
    next use runs farthest in time from both ends of the step, so their copies have compute to hide under; ties:
    the smaller first). On llama2-7b-train at 50 % on h100-sxm the embedding's Adam state, updated last,
    is written back after everything else (0.81 s -> see tests/test_search.py)."""
    C, n = hw.compute_tier, live.n_ops
    runs = [e for e in schedule.events if isinstance(e, ComputeEvent)]
    outs = [e for e in schedule.events if isinstance(e, TransferEvent) and e.src == C]
    if not runs or not outs:
        return []
    last_op = max(e.end for e in runs)
    tail = max(outs, key=lambda e: e.end)
    if tail.end <= last_op:
        return []
    ends = [sid for sid in live.spans_of[tail.tensor] if assignment.get(sid, ("keep", C))[0] == "offload"]
    if not ends:
        return []
    sid = max(ends, key=lambda k: live.spans[k].start_op)
    span, tier = live.spans[sid], assignment[sid][1]
    host_read = {x for i in live.host_ops for x in graph.ops[i].inputs}
    pool = [s for s in live.spans if s.id not in assignment and s.kind in ("inner", "wrap") and s.bytes >= span.bytes
            and s.tensor != span.tensor and s.tensor not in host_read and live.span_length_ops(s) >= 2]
    at = {graph.op_index[e.op]: e.start for e in runs if not e.recompute}
    step = max(tail.end, last_op)

    def hidden(s: Any) -> float:  # how far (in time) the span's next use lies from both ends of the step
        t = at.get(s.end_op, 0.0) if s.end_op < n else step
        return min(t, step - t)

    pool.sort(key=lambda s: (-hidden(s), s.bytes))
    keep = {k: v for k, v in assignment.items() if k != sid}
    return [({**keep, other.id: ("offload", tier)},
             f"'{span.tensor}' kept in {C} (its copy-out ended the step), '{other.tensor}' moved to {tier} instead")
            for other in pool[:_TAIL_SWAPS]]


def _inputs_kept(graph: Graph, live: Liveness, assignment: Mapping[int, tuple[str, str]], sid: int) -> bool:
    """A re-run just before the span's end needs its producer's inputs there: none of them may be away."""
    span = live.spans[sid]
    for x in graph.ops[graph.producer[span.tensor]].inputs:
        for other in live.spans_of[x]:
            o = live.spans[other]
            if other in assignment and o.kind == "inner" and o.start_op < span.end_op < o.end_op:
                return False
            if other in assignment and o.kind != "inner":
                return False
    return True


def revise_decisions(decisions: tuple[Decision, ...], live: Liveness, before: Mapping[int, tuple[str, str]],
                     after: Mapping[int, tuple[str, str]], compute_tier: str) -> tuple[Decision, ...]:
    """The policy's decisions with the spans local search changed updated (action, tier, reason)."""
    changed = {}
    for sid in set(before) | set(after):
        old, new = before.get(sid, ("keep", compute_tier)), after.get(sid, ("keep", compute_tier))
        if old != new:
            span = live.spans[sid]
            changed[(span.tensor, span.start_op, span.end_op)] = (old, new)
    out = []
    for d in decisions:
        hit = changed.get((d.tensor, d.start_op, d.end_op))
        if hit is None:
            out.append(d)
            continue
        (old_action, old_tier), (action, tier) = hit
        out.append(replace(d, action=action, tier=tier,
                           reason=f"local search: {action} ({tier}) instead of {old_action} ({old_tier}) "
                                  "gave a shorter exact schedule"))
    return tuple(out)
