"""From decisions to a timed plan: copies, transfers on per-link streams, frees — valid by construction.

A policy says, per idle span, keep / offload to a tier / recompute. This module turns that into events:

1. **Copies at op granularity.** Every copy of a tensor in a tier occupies a range of op slots. Slot ``i``
   is the time from the end of op ``i-1`` to the end of op ``i``. Write-backs ("tails") and prefetches
   ("heads") have flexible extents: a tail keeps the compute-tier copy until the slot its copy-out is
   expected to finish, a head allocates from the slot its copy-in may start.
2. **Capacity.** Occupancy per tier and slot is counted with every extent at its minimum; extents then
   grow toward what the link timing wants while capacity allows. If the minimum does not fit, the
   decisions are infeasible and the message names the op and the bytes.
3. **Timing.** A slot-by-slot simulation places each transfer on its link (FIFO, never overlapping) no
   earlier than its slot, each op after its inputs are ready, and makes a slot wait for every copy the
   capacity count assumed gone. So the count is an upper bound of the real occupancy at every instant and
   the plan is physically valid; estimates that were too optimistic only cost stall time.
4. **Refining passes.** When the simulated step stalls, the extents are granted again against the slot
   starts the simulation found (write-backs first, then copy-ins first) and the faster timing is kept: in
   link-bound phases a copy-in then streams in while the previous copy-out drains, when capacity allows.
   Each pass is steps 2-3 again, so it is valid by the same argument.

Mechanics: once every tensor is placed, the copies and moves become flat arrays (:class:`_Columns`) and the
sequential loops — the grants of step 2, the simulation of step 3 — run as :mod:`core.kernels` (numba-compiled
on big graphs, the same source as plain Python on small ones; identical plans either way). Events become
tuples only when someone reads them, so refining passes that lose cost no objects.

Policy parameters the scheduler reads: ``prefetch_slack`` (start copy-ins earlier by this fraction of
their duration; Tierplan's own knob, default 0 for policies without it).
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

import core.kernels as kernels
from core.errors import InfeasibleError
from core.gc_pause import paused_gc
from core.graph import Graph
from core.hardware import Compute, Hardware, Link, op_time_s
from core.kernels import use_compiled
from core.liveness import Liveness, graph_refs
from core.plan import ComputeEvent, Decision, Event, FreeEvent, Plan, TransferEvent
from core.spans import recompute_blocker, spare_outputs
from core.units import format_bytes

__all__ = ["Assignment", "Schedule", "op_durations", "estimate_slot_starts", "build_plan", "build_schedule",
           "schedule_end_s"]

#: span id -> ("offload", tier) | ("recompute", compute_tier); spans not listed are kept.
Assignment = Mapping[int, tuple[str, str]]


def op_durations(graph: Graph, hw: Hardware) -> np.ndarray:
    """Modelled duration of every op on the compute tier."""
    return np.array([op_time_s(op, hw.compute) for op in graph.ops], dtype=np.float64)


def estimate_slot_starts(durations: np.ndarray) -> np.ndarray:
    """Start time of each op (plus the end as a last entry) if nothing ever waits."""
    out = np.zeros(len(durations) + 1, dtype=np.float64)
    np.cumsum(durations, out=out[1:])
    return out


@dataclass(slots=True)
class _Copy:
    """A copy's slot range in a tier (``free_slot`` exclusive; ``n_ops`` means it survives the step)."""

    tensor: str
    tier: str
    nbytes: int
    alloc_slot: int
    free_slot: int


@dataclass(slots=True)
class _Move:
    """A copy over a route, issued at a slot. Heads (prefetches) have a deadline; tails free their source."""

    tensor: str
    route: tuple[Link, ...]
    nbytes: int
    issue_slot: int
    deadline_slot: int | None = None  # op that needs the data (heads only)
    min_slot: int = 0  # heads: earliest slot (after the previous compute-tier copy is gone)
    max_slot: int = 0  # tails: latest slot the source copy may be held (before the next head)
    head_copy: _Copy | None = None  # the compute-tier copy a head creates
    tail_copy: _Copy | None = None  # the compute-tier copy a tail frees
    free_source: bool = False  # free the source copy when the first hop ends (non-home lower copies)
    stale_dst: bool = False  # a stale copy sits at the destination and is freed when the last hop starts
    staging: list[_Copy] = field(default_factory=list)  # intermediate copies on multi-hop routes
    src_copy: _Copy | None = None
    span_id: int = -1  # heads: the span whose copy-in this is (for policies' prefetch hints)


@dataclass(frozen=True)
class Schedule:
    """The result before it becomes a :class:`Plan` (kept for tests and the UI)."""

    initial: dict[str, tuple[str, ...]]
    events: Sequence[Event]
    #: bytes counted per tier and op slot: an upper bound of the real occupancy while that op runs
    slot_bytes: dict[str, np.ndarray]
    #: the time the last event ends, when the simulation measured it (else :func:`schedule_end_s` computes it)
    end_s: float | None = field(default=None, compare=False)


@dataclass
class _Columns:
    """The copies and moves of a :class:`_Builder` as flat arrays for :mod:`core.kernels` (built once, when
    every tensor is placed). ``c_alloc``/``c_free``/``m_issue`` are the state the grants change; the rest
    is fixed."""

    c_tier: np.ndarray
    c_bytes: np.ndarray
    c_alloc: np.ndarray
    c_free: np.ndarray
    m_t: np.ndarray
    m_nbytes: np.ndarray
    m_head: np.ndarray
    m_issue: np.ndarray
    m_deadline: np.ndarray  # deadline slot (0 for tails)
    m_min: np.ndarray
    m_max: np.ndarray
    m_prefetch: np.ndarray  # a policy's issue slot for a head (-1: none)
    m_rptr: np.ndarray  # CSR over the route's links
    m_rlink: np.ndarray
    m_stage: np.ndarray  # per hop: the staging copy freed when hop k >= 1 ends (-1 on the first hop)
    m_tail: np.ndarray  # the compute-tier copy a tail frees (-1: a head)
    m_headc: np.ndarray  # the compute-tier copy a head creates (-1: a tail)
    m_src: np.ndarray
    m_free_source: np.ndarray
    m_stale: np.ndarray
    tails: np.ndarray  # tail moves in issue order (stable)
    heads: np.ndarray  # head moves by deadline (stable)


def _csr_of(n_rows: int, pairs: Iterable[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and flat values of sparse rows given as (row, value) pairs (values keep their order per row)."""
    flat = np.fromiter((v for pair in pairs for v in pair), dtype=np.int64).reshape(-1, 2)
    order = np.argsort(flat[:, 0], kind="stable")
    ptr = np.searchsorted(flat[order, 0], np.arange(n_rows + 1)).astype(np.int64)
    return ptr, flat[order, 1].copy()


def _csr(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and flat values of a list of integer lists."""
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    flat = np.fromiter((v for row in rows for v in row), dtype=np.int64, count=int(ptr[-1]))
    return ptr, flat


class _Builder:
    def __init__(self, graph: Graph, hw: Hardware, live: Liveness, assignment: Assignment, params: Mapping[str, Any],
                 op_tiers: Mapping[int, str] | None = None, prefetch_from: Mapping[int, int] | None = None):
        self.graph, self.hw, self.live, self.assignment = graph, hw, live, assignment
        self.op_tiers = dict(op_tiers or {})
        self.prefetch_from = dict(prefetch_from or {})
        if set(self.op_tiers) != set(live.host_ops):
            raise ValueError("op_tiers must name exactly the host ops the liveness was built with")
        #: tensor -> tier of the host ops that read it (each tensor is read by host ops of one tier)
        self.host_tier_of: dict[str, str] = {}
        self.host_done: dict[str, int] = {}  # tensor -> last host op reading it
        for i, tier in sorted(self.op_tiers.items()):
            if self.hw.tier_by_name[tier].compute is None:
                raise InfeasibleError(f"op '{graph.ops[i].id}' is placed on {tier}, which has no compute of its own", reason="placement")
            for x in graph.ops[i].inputs:
                if self.host_tier_of.setdefault(x, tier) != tier:
                    raise InfeasibleError(f"tensor '{x}' is read by host ops on two tiers", reason="placement")
                self.host_done[x] = i
        self.last_read: dict[str, float] = {}  # tensor -> end of the last compute-tier op that used it
        self.refresh: dict[int, list[str]] = {}  # host op -> weights whose compute-tier copy it makes stale
        self.host_frees: dict[int, list[str]] = {}  # host op -> tensors freed in its tier when it ends
        self.n = len(graph.ops)
        self.C = hw.compute_tier
        # a policy's own knob (Tierplan has one); without it copy-ins start as late as the link estimate allows
        self.slack = float(params.get("prefetch_slack", 0.0))
        self.durations = op_durations(graph, hw)
        for i in self.op_tiers:
            self.durations[i] = 0.0  # not on the compute stream
        self.host_durations = {i: op_time_s(graph.ops[i], self._tier_compute(t), hw.compute) for i, t in self.op_tiers.items()}
        self.copies: list[_Copy] = []
        self.moves: list[_Move] = []
        self._cols: _Columns | None = None  # the copies and moves as arrays, once all are made
        self._static: tuple[Any, ...] | None = None
        self.slot_begin_s = np.zeros(self.n + 1, dtype=np.float64)
        self.end_s: float | None = None  # the end of the last event of the latest simulation
        self.initial: dict[str, tuple[str, ...]] = {}
        self.free_at_op_end: list[list[tuple[str, str]]] = [[] for _ in range(self.n)]
        self.free_at_start: list[tuple[str, str]] = []
        self.recompute_at: dict[int, list[int]] = {}
        rec_time = np.zeros(self.n)
        for sid, (action, _) in assignment.items():
            if action == "recompute":
                span = live.spans[sid]
                blocker = recompute_blocker(graph, live, sid, multi_output=True)
                if blocker is not None:  # a policy bug: the re-run would regenerate another version
                    raise ValueError(f"span {sid} of '{span.tensor}' may not be recomputed: {blocker}")
                q = graph.producer[span.tensor]
                for x in graph.ops[q].inputs:  # the re-run reads them: they must still be there
                    if not graph.tensor_by_id[x].persistent and max(live.uses[x], default=-1) < span.end_op:
                        raise InfeasibleError(
                            f"recomputing '{span.tensor}' before op '{graph.ops[span.end_op].id}' re-runs "
                            f"'{graph.ops[q].id}', whose input '{x}' is dead by then", reason="placement")
                self.recompute_at.setdefault(span.end_op, []).append(q)
                rec_time[span.end_op] += self.durations[q]
                # the re-run regenerates the producer's other (dead) outputs too: spare copies, freed when
                # the op it serves ends (core.spans.recompute_blocker, ``multi_output``)
                for y in spare_outputs(graph, span):
                    self._copy(y, self.C, graph.tensor_by_id[y].bytes, span.end_op, span.end_op + 1)
                    self.free_at_op_end[span.end_op].append((y, self.C))
        self.est = estimate_slot_starts(self.durations + rec_time)
        self._est_of: np.ndarray | None = None  # the ``est`` array that ``_est_values`` lists
        self._est_values: list[float] = []

    def _tier_compute(self, tier: str) -> Compute:
        compute = self.hw.tier_by_name[tier].compute
        if compute is None:
            raise InfeasibleError(f"tier {tier} has no compute of its own", reason="placement", tier=tier)
        return compute

    # ------------------------------------------------------------------------------------ per tensor
    def _action(self, sid: int) -> tuple[str, str]:
        return self.assignment.get(sid, ("keep", self.C))

    def _copy(self, tensor: str, tier: str, nbytes: int, alloc: int, free: int) -> _Copy:
        c = _Copy(tensor, tier, nbytes, alloc, free)
        self.copies.append(c)
        return c

    def _staging(self, tensor: str, route: tuple[Link, ...], nbytes: int, alloc: int, free: int) -> list[_Copy]:
        return [self._copy(tensor, link.dst, nbytes, alloc, free) for link in route[:-1]]

    def tensor(self, tid: str) -> None:
        g, live, C, n = self.graph, self.live, self.C, self.n
        t = g.tensor_by_id[tid]
        uses = live.uses[tid]
        muts = live.mutations.get(tid, frozenset())
        spans = [live.spans[s] for s in live.spans_of[tid]]
        inner = {s.start_op: s for s in spans if s.kind == "inner"}
        lead = next((s for s in spans if s.kind in ("initial", "wrap", "unused")), None)
        produced = tid in g.producer
        size = t.bytes
        H = self.host_tier_of.get(tid)
        if H is not None:
            if produced and self.graph.producer[tid] in self.op_tiers:
                raise InfeasibleError(f"tensor '{tid}' is produced by a host op; only ops without outputs run there", reason="placement")
            if not uses:
                if not t.persistent:
                    raise InfeasibleError(f"tensor '{tid}' is read on {H} but never exists in {C}", reason="placement")
                self.initial[tid] = (H,)
                self._copy(tid, H, size, 0, n)
                return
            if t.persistent:
                if lead is not None and self._action(lead.id)[0] == "offload" and self._action(lead.id)[1] != H:
                    raise InfeasibleError(f"'{tid}' is updated on {H} but placed in {self._action(lead.id)[1]} between steps", reason="placement")
                if self.host_done[tid] < uses[-1]:
                    raise InfeasibleError(f"'{tid}' is used in {C} after the host op that updates it", reason="placement")
            elif not produced or self.host_done[tid] < uses[-1]:
                raise InfeasibleError(f"'{tid}' must be produced in {C} and read last by the host op", reason="placement")

        if not uses:  # nothing reads it: it only has to be stored somewhere
            action, tier = self._action(lead.id) if lead else ("keep", C)
            home = tier if action == "offload" else C
            self.initial[tid] = (home,)
            if t.persistent:
                self._copy(tid, home, size, 0, n)
            else:
                self.free_at_start.append((tid, home))
            return

        # lower copies of this tensor: tier -> [copy, fresh, home]
        lower: dict[str, list[Any]] = {}
        hbm: _Copy | None = None
        lead_action = self._action(lead.id) if lead else ("keep", C)
        if produced:
            hbm = self._copy(tid, C, size, uses[0], n)
        elif lead_action[0] == "offload":
            L = lead_action[1]
            self.initial[tid] = (L,)
            lower[L] = [self._copy(tid, L, size, 0, n), True, t.persistent]
            hbm = self._head(tid, L, size, lower[L][0], deadline=uses[0], min_slot=0, free_source=not t.persistent,
                             span_id=lead.id if lead else -1)
            if not t.persistent:
                lower[L][0].free_slot = uses[0] + 1
                del lower[L]
        else:
            hbm = self._copy(tid, C, size, 0, n)
            initial = [C]
            if H is not None and t.persistent:  # the host op updates the copy in H; C is refreshed after it
                initial.append(H)
                lower[H] = [self._copy(tid, H, size, 0, n), True, True]
                self.refresh.setdefault(self.host_done[tid], []).append(tid)
            elif t.persistent and not muts:
                offload_tiers = [self._action(s.id)[1] for s in spans if s.kind == "inner" and self._action(s.id)[0] == "offload"]
                if offload_tiers:
                    L = offload_tiers[0]
                    initial.append(L)
                    lower[L] = [self._copy(tid, L, size, 0, n), True, True]
            self.initial[tid] = tuple(initial)

        for j, u in enumerate(uses):
            if u in muts or (produced and j == 0):
                for L in list(lower):
                    cp, _, home = lower[L]
                    if home:
                        lower[L][1] = False
                    else:
                        cp.free_slot = u + 1
                        self.free_at_op_end[u].append((tid, L))
                        del lower[L]
            span = inner.get(u)
            if j == len(uses) - 1:
                if H is not None and not t.persistent:  # copy out for the host op, which frees it when done
                    assert hbm is not None
                    cp = self._copy(tid, H, size, u + 1, n)
                    self._tail(tid, H, size, hbm, u, max_slot=n, dst_copy=cp, stale=False)
                    self.host_frees.setdefault(self.host_done[tid], []).append(tid)
                    return
                self._after_last_use(tid, size, u, hbm, lower, lead_action, t.persistent)
                return
            nxt = uses[j + 1]
            if span is None:
                continue
            action, tier = self._action(span.id)
            if action == "keep":
                continue
            assert hbm is not None
            if action == "recompute":
                hbm.free_slot = u + 1
                self.free_at_op_end[u].append((tid, C))
                hbm = self._copy(tid, C, size, nxt, n)
                continue
            # a copy already held on the way to ``tier`` serves the span (a route must never stage a second
            # copy in a tier that holds one: double allocation, and the staging free would drop the home copy)
            L = self._nearest_copy(tier, lower)
            if L in lower and lower[L][1]:  # a fresh copy below: drop, do not write back
                hbm.free_slot = u + 1
                self.free_at_op_end[u].append((tid, C))
                src = lower[L][0]
            else:
                stale = lower.get(L)
                if stale is not None:
                    cp = stale[0]
                else:
                    cp = self._copy(tid, L, size, u + 1, n)
                self._tail(tid, L, size, hbm, u, max_slot=nxt, dst_copy=cp, stale=stale is not None)
                lower[L] = [cp, True, stale[2] if stale else False]
                src = cp
            reuse = self._reused_later(tid, uses, j + 1, inner, muts, L)
            home = lower[L][2]
            hbm = self._head(tid, L, size, src, deadline=nxt, min_slot=u + 1, free_source=not (home or reuse),
                             span_id=span.id)
            if not (home or reuse):
                src.free_slot = nxt + 1
                del lower[L]

    def _nearest_copy(self, tier: str, lower: Mapping[str, Any]) -> str:
        """``tier``, or the tier holding a copy of the tensor that the routes to and from ``tier`` pass
        through (closest to the compute tier first): the span is served from that copy instead."""
        seen = {tier}
        while True:
            via = [link.dst for link in self.hw.route(self.C, tier)[:-1]] + \
                  [link.dst for link in reversed(self.hw.route(tier, self.C)[:-1])]
            nxt = next((m for m in via if m in lower and m not in seen), None)
            if nxt is None:
                return tier
            seen.add(nxt)
            tier = nxt

    def _reused_later(self, tid: str, uses: Sequence[int], j: int, inner: Mapping[int, Any], muts: frozenset[int], L: str) -> bool:
        """Is a fresh copy in ``L`` useful again (a later offload to ``L`` before the next mutation)?"""
        for k in range(j, len(uses)):
            if uses[k] in muts:
                return False
            span = inner.get(uses[k])
            if span is not None and k < len(uses) - 1 and self._action(span.id) == ("offload", L):
                return True
        return False

    def _after_last_use(self, tid: str, size: int, u: int, hbm: _Copy | None, lower: dict[str, list[Any]],
                        lead_action: tuple[str, str], persistent: bool) -> None:
        C = self.C
        assert hbm is not None
        if not persistent:
            hbm.free_slot = u + 1
            self.free_at_op_end[u].append((tid, C))
            for L, (cp, _, _) in lower.items():
                cp.free_slot = u + 1
                self.free_at_op_end[u].append((tid, L))
            return
        if lead_action[0] == "offload":
            L = lead_action[1]
            cp, fresh, _ = lower[L]
            if fresh:
                hbm.free_slot = u + 1
                self.free_at_op_end[u].append((tid, C))
            else:
                self._tail(tid, L, size, hbm, u, max_slot=self.n, dst_copy=cp, stale=True)
            for other, (ocp, _, home) in lower.items():
                if other != L and not home:
                    ocp.free_slot = u + 1
                    self.free_at_op_end[u].append((tid, other))
            return
        # kept across the step boundary: the compute-tier copy stays; temporary lower copies go
        for L, (cp, _, home) in lower.items():
            if not home:
                cp.free_slot = u + 1
                self.free_at_op_end[u].append((tid, L))

    def _head(self, tid: str, L: str, size: int, src: _Copy, *, deadline: int, min_slot: int, free_source: bool,
              span_id: int) -> _Copy:
        route = self.hw.route(L, self.C)
        hbm = self._copy(tid, self.C, size, deadline, self.n)
        mv = _Move(tid, route, size, issue_slot=deadline, deadline_slot=deadline, min_slot=min_slot, head_copy=hbm,
                   span_id=span_id,
                   free_source=free_source, src_copy=src)
        mv.staging = self._staging(tid, route, size, deadline, deadline + 1)
        self.moves.append(mv)
        return hbm

    def _tail(self, tid: str, L: str, size: int, hbm: _Copy, u: int, *, max_slot: int, dst_copy: _Copy, stale: bool) -> None:
        route = self.hw.route(self.C, L)
        hbm.free_slot = u + 1
        mv = _Move(tid, route, size, issue_slot=u + 1, max_slot=max_slot, tail_copy=hbm, stale_dst=stale, src_copy=hbm)
        end_slot = min(self.n, self._slot_after(self._est()[min(u + 1, self.n)] + self._route_time(route, size)) + 1)
        mv.staging = self._staging(tid, route, size, u + 1, max(end_slot, u + 2))
        self.moves.append(mv)

    # ------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _route_time(route: Sequence[Link], nbytes: int) -> float:
        return sum(link.transfer_time_s(nbytes) for link in route)

    def _est(self) -> list[float]:
        """``est`` as a list: one bisect on it costs a tenth of an ``np.searchsorted`` call on a scalar (each
        write-back asks once: 2·10⁴ times at 10⁵ ops). Same IEEE doubles, so the same slots."""
        if self._est_of is not self.est:
            self._est_values, self._est_of = self.est.tolist(), self.est
        return self._est_values

    def _slot_after(self, time_s: float) -> int:
        """First slot whose start is at or after ``time_s`` (``n`` when past the end)."""
        return min(self.n, bisect_left(self._est(), time_s - 1e-15, 0, self.n))

    def _slot_before(self, time_s: float) -> int:
        """Last slot whose start is at or before ``time_s``."""
        return max(0, bisect_right(self._est(), time_s + 1e-15, 0, self.n) - 1)

    # ------------------------------------------------------------------------------------ columns
    def columns(self) -> _Columns:
        """The copies and moves as arrays (built on first use: every tensor must be placed by then; from then
        on the arrays, not the :class:`_Copy`/:class:`_Move` objects, hold the extents)."""
        cols = self._cols
        if cols is not None:
            return cols
        tier_ix = {t.name: k for k, t in enumerate(self.hw.tiers)}
        link_ix = self._link_index()
        copy_ix = {id(c): k for k, c in enumerate(self.copies)}
        t_ix = graph_refs(self.graph).index
        copies, moves = self.copies, self.moves
        n_m = len(moves)

        def ints(values: Any, count: int) -> np.ndarray:
            return np.fromiter(values, dtype=np.int64, count=count)

        def of_copies(attr: str) -> np.ndarray:
            return ints(map(operator.attrgetter(attr), copies), len(copies))

        def of_moves(attr: str) -> np.ndarray:
            return ints(map(operator.attrgetter(attr), moves), n_m)

        def copy_of(attr: str) -> np.ndarray:
            return ints((-1 if c is None else copy_ix[id(c)] for c in map(operator.attrgetter(attr), moves)), n_m)

        routes = list(map(operator.attrgetter("route"), moves))
        m_rptr = np.zeros(n_m + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, routes), dtype=np.int64, count=n_m), out=m_rptr[1:])
        m_rlink = ints((link_ix[(link.src, link.dst)] for route in routes for link in route), int(m_rptr[-1]))
        m_stage = ints((-1 if k == 0 else copy_ix[id(m.staging[k - 1])] for m in moves for k in range(len(m.route))),
                       len(m_rlink))
        head = np.fromiter((m.head_copy is not None for m in moves), dtype=bool, count=n_m)
        issue = of_moves("issue_slot")
        deadline = ints((m.deadline_slot or 0 for m in moves), n_m)
        idx = np.arange(n_m)
        tails = idx[~head][np.argsort(issue[~head], kind="stable")]
        heads = idx[head][np.argsort(deadline[head], kind="stable")]
        prefetch = np.full(n_m, -1, dtype=np.int64)
        if self.prefetch_from:
            for k in np.flatnonzero(head).tolist():
                prefetch[k] = self.prefetch_from.get(moves[k].span_id, -1)
        cols = _Columns(
            c_tier=ints(map(tier_ix.__getitem__, map(operator.attrgetter("tier"), copies)), len(copies)),
            c_bytes=of_copies("nbytes"), c_alloc=of_copies("alloc_slot"), c_free=of_copies("free_slot"),
            m_t=ints(map(t_ix.__getitem__, map(operator.attrgetter("tensor"), moves)), n_m),
            m_nbytes=of_moves("nbytes"), m_head=head, m_issue=issue, m_deadline=deadline,
            m_min=of_moves("min_slot"), m_max=of_moves("max_slot"), m_prefetch=prefetch,
            m_rptr=m_rptr, m_rlink=m_rlink, m_stage=m_stage,
            m_tail=copy_of("tail_copy"), m_headc=copy_of("head_copy"), m_src=copy_of("src_copy"),
            m_free_source=np.fromiter(map(operator.attrgetter("free_source"), moves), dtype=bool, count=n_m),
            m_stale=np.fromiter(map(operator.attrgetter("stale_dst"), moves), dtype=bool, count=n_m),
            tails=tails, heads=heads,
        )
        self._cols = cols
        return cols

    def _link_index(self) -> dict[tuple[str, str], int]:
        """(src, dst) -> index of the link in ``hw.links`` (the first one; a link pair is one stream)."""
        out: dict[tuple[str, str], int] = {}
        for k, link in enumerate(self.hw.links):
            out.setdefault((link.src, link.dst), k)
        return out

    # ------------------------------------------------------------------------------------ capacity
    def occupancy(self) -> dict[str, np.ndarray]:
        n, cols = self.n, self.columns()
        n_tiers = len(self.hw.tiers)
        live = cols.c_free > cols.c_alloc
        tier, nbytes = cols.c_tier[live], cols.c_bytes[live]
        diffs = np.zeros(n_tiers * (n + 1), dtype=np.int64)
        np.add.at(diffs, tier * (n + 1) + cols.c_alloc[live], nbytes)
        np.add.at(diffs, tier * (n + 1) + np.minimum(cols.c_free[live], n), -nbytes)
        rows = diffs.reshape(n_tiers, n + 1)
        return {t.name: np.cumsum(rows[k, :n]) for k, t in enumerate(self.hw.tiers)}

    def check(self, occ: Mapping[str, np.ndarray]) -> None:
        self._check_after_last_op(occ)
        for tier in self.hw.tiers:
            o = occ[tier.name]
            if not len(o):
                continue
            worst = int(np.argmax(o))
            if o[worst] > tier.capacity_bytes:
                op = self.graph.ops[worst]
                need = int(o[worst])
                raise InfeasibleError(
                    f"{tier.name} over capacity while op '{op.id}' runs: this plan needs {format_bytes(need)} "
                    f"there but {tier.name} holds {format_bytes(tier.capacity_bytes)} "
                    f"({format_bytes(need - tier.capacity_bytes)} too much)",
                    reason="policy" if tier.name == self.C else "lower_capacity", op=op.id, tier=tier.name,
                    need_bytes=need, have_bytes=tier.capacity_bytes,
                )

    def _check_after_last_op(self, occ: Mapping[str, np.ndarray]) -> None:
        """Write-backs issued after the last op stage their copies in intermediate tiers (SSD via DDR) after
        every slot: count them on top of what the last slot holds there (an upper bound, nothing freed)."""
        n = self.n
        if not n:
            return
        cols = self.columns()
        ct = [t.name for t in self.hw.tiers].index(self.C)
        late = np.flatnonzero((cols.c_alloc >= n) & (cols.c_tier != ct))
        if not len(late):
            return
        tiers, first = np.unique(cols.c_tier[late], return_index=True)
        for k in tiers[np.argsort(first)].tolist():  # in the order the copies were made
            tier = self.hw.tiers[k].name
            need = int(occ[tier][n - 1]) + int(cols.c_bytes[late][cols.c_tier[late] == k].sum())
            cap = self.hw.capacity(tier)
            if need > cap:
                raise InfeasibleError(
                    f"{tier} over capacity after the last op: the write-backs staged there at the step end need "
                    f"{format_bytes(need)} but {tier} holds {format_bytes(cap)} ({format_bytes(need - cap)} too much)",
                    reason="lower_capacity", tier=tier, need_bytes=need, have_bytes=cap,
                )

    def grant_extents(self, *, heads_first: bool = False) -> dict[str, np.ndarray]:
        """Grow tails and heads toward the link-timing estimate wherever capacity allows.

        Whoever is granted first gets the room where both want it: write-backs first keep compute from
        waiting for copy-outs; copy-ins first let the next tensor stream in while the previous one drains
        (the refining passes of :func:`build_schedule` try both)."""
        occ = self.occupancy()
        self.check(occ)
        caps = {t.name: t.capacity_bytes for t in self.hw.tiers}
        if heads_first:
            self._grant_heads(occ, caps)
            self._grant_tails(occ, caps)
        else:
            self._grant_tails(occ, caps)
            self._grant_heads(occ, caps)
        return occ

    def _links(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Source tier, destination tier, latency and bandwidth of every link, as arrays."""
        tier_ix = {t.name: k for k, t in enumerate(self.hw.tiers)}
        links = self.hw.links
        return (np.array([tier_ix[link.src] for link in links], dtype=np.int64),
                np.array([tier_ix[link.dst] for link in links], dtype=np.int64),
                np.array([link.latency_s for link in links], dtype=np.float64),
                np.array([link.bandwidth_Bps for link in links], dtype=np.float64))

    def _grant_tails(self, occ: dict[str, np.ndarray], caps: Mapping[str, int]) -> None:
        """Write-backs in issue order: each keeps its compute-tier copy until the slot its copy-out is
        expected to end (FIFO on the first link, from the estimated slot starts), while capacity allows."""
        cols = self.columns()
        _, _, lat, bw = self._links()
        first_link = cols.m_rlink[cols.m_rptr[:-1]] if len(cols.m_rlink) else np.zeros(0, dtype=np.int64)
        kernels.grant_tails(use_compiled(self.n), self.n, int(caps[self.C]), self.est, occ[self.C], cols.tails,
                            cols.m_issue, cols.m_nbytes, cols.m_max, first_link, lat, bw,
                            np.zeros(len(self.hw.links)), cols.m_tail, cols.c_free)

    def _grant_heads(self, occ: dict[str, np.ndarray], caps: Mapping[str, int]) -> None:
        """Copy-ins: as late as possible on each link (latest deadline first), then capacity to the earliest
        need first. A head may be issued while the copy-out before it is still running (both are counted in
        those slots); the simulation starts it only once the old copy is gone."""
        cols, n = self.columns(), self.n
        tiers = [t.name for t in self.hw.tiers]
        _, dst, lat, bw = self._links()
        flat = np.concatenate([occ[t] for t in tiers]) if n else np.zeros(0, dtype=np.int64)
        cap_flat = np.array([caps[t] for t in tiers], dtype=np.int64)
        kernels.grant_heads(use_compiled(n), n, tiers.index(self.C), cap_flat, self.est, flat, cols.heads,
                            cols.m_deadline, cols.m_min, cols.m_prefetch, cols.m_nbytes, float(self.slack),
                            cols.m_rptr, cols.m_rlink, cols.m_stage, dst, lat, bw,
                            np.full(len(self.hw.links), np.inf), cols.m_issue, cols.m_headc, cols.c_alloc, cols.c_tier)
        for k, t in enumerate(tiers):
            occ[t][:] = flat[k * n:(k + 1) * n]

    # ------------------------------------------------------------------------------------ timing
    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every copy's slot range and every move's issue slot, to undo :meth:`grant_extents`."""
        cols = self.columns()
        return cols.c_alloc.copy(), cols.c_free.copy(), cols.m_issue.copy()

    def restore(self, snap: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        cols = self.columns()
        cols.c_alloc[:], cols.c_free[:], cols.m_issue[:] = snap

    def _sim_static(self) -> tuple[Any, ...]:
        """The simulation's inputs that no grant changes (graph, hardware, frees, host ops), built once."""
        if self._static is not None:
            return self._static
        g, n, hw = self.graph, self.n, self.hw
        refs = graph_refs(g)
        tiers = [t.name for t in hw.tiers]
        tier_ix = {t: k for k, t in enumerate(tiers)}
        n_tiers = len(tiers)
        t_ix = refs.index
        in_ptr = np.searchsorted(refs.in_op, np.arange(n + 1)).astype(np.int64)
        out_ptr = np.searchsorted(refs.out_op, np.arange(n + 1)).astype(np.int64)
        mut_ptr = np.searchsorted(refs.mut_op, np.arange(n + 1)).astype(np.int64)
        rc_ptr, rc_q = _csr_of(n, ((i, q) for i, qs in self.recompute_at.items() for q in sorted(qs)))
        fe_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, self.free_at_op_end), dtype=np.int64, count=n), out=fe_ptr[1:])
        fe_t = np.fromiter((t_ix[t] for row in self.free_at_op_end for t, _ in row), dtype=np.int64, count=int(fe_ptr[-1]))
        fe_tier = np.fromiter((tier_ix[tier] for row in self.free_at_op_end for _, tier in row), dtype=np.int64,
                              count=len(fe_t))
        hf_ptr, hf_t = _csr_of(n, ((i, t_ix[t]) for i, ts in self.host_frees.items() for t in ts))
        rf_ptr, rf_t = _csr_of(n, ((i, t_ix[t]) for i, ts in self.refresh.items() for t in ts))
        link_ix = self._link_index()
        rt_ptr, rt_link = _csr([[link_ix[(link.src, link.dst)] for link in hw.route(a, b)] if hw.has_route(a, b) else []
                                for a in tiers for b in tiers])
        op_tier = np.full(n, -1, dtype=np.int64)
        host_dur = np.zeros(n, dtype=np.float64)
        for i, tier in self.op_tiers.items():
            op_tier[i] = tier_ix[tier]
            host_dur[i] = self.host_durations[i]
        ready0 = np.full(len(refs.names) * n_tiers, np.nan)
        for tid, held in self.initial.items():
            for tier in held:
                ready0[t_ix[tid] * n_tiers + tier_ix[tier]] = 0.0
        self._static = (tiers, tier_ix, n_tiers, in_ptr, refs.in_t, out_ptr, refs.out_t, mut_ptr, refs.mut_t, rc_ptr,
                        rc_q, fe_ptr, fe_t, fe_tier, hf_ptr, hf_t, rf_ptr, rf_t, rt_ptr, rt_link, op_tier, host_dur, ready0)
        return self._static

    def simulate(self) -> Sequence[Event]:
        """Time every op, transfer and free slot by slot (module docstring, step 3); sets ``slot_begin_s``
        and ``end_s`` (the end of the last event)."""
        g, n = self.graph, self.n
        cols = self.columns()
        (tiers, tier_ix, n_tiers, in_ptr, in_t, out_ptr, out_t, mut_ptr, mut_t, rc_ptr, rc_q, fe_ptr, fe_t, fe_tier,
         hf_ptr, hf_t, rf_ptr, rf_t, rt_ptr, rt_link, op_tier, host_dur, ready0) = self._sim_static()
        src, dst, lat, bw = self._links()
        C = tier_ix[self.C]
        refs = graph_refs(g)
        # moves per issue slot: copy-outs before copy-ins, then by deadline, then in creation order
        n_m = len(cols.m_t)
        slot = np.minimum(cols.m_issue, n)
        iss_m = np.lexsort((np.arange(n_m), cols.m_deadline, cols.m_head, slot)).astype(np.int64)
        iss_ptr = np.searchsorted(slot[iss_m], np.arange(n + 2)).astype(np.int64)
        hops = len(cols.m_rlink)
        cap = n + len(rc_q) + 2 * hops + n_m + len(fe_t) + len(hf_t) + 3 * len(rf_t) * max(1, len(rt_link)) + 1
        ev_kind = np.zeros(cap, dtype=np.int64)
        ev_x = np.zeros(cap, dtype=np.int64)
        ev_a = np.zeros(cap, dtype=np.int64)
        ev_b = np.zeros(cap, dtype=np.int64)
        ev_t0 = np.zeros(cap, dtype=np.float64)
        ev_t1 = np.zeros(cap, dtype=np.float64)
        self.slot_begin_s = np.zeros(n + 1, dtype=np.float64)
        count, end_s = kernels.simulate(
            use_compiled(n), n, C, n_tiers, bool(self.host_tier_of), self.durations, op_tier, host_dur,
            in_ptr, in_t, out_ptr, out_t, mut_ptr, mut_t, rc_ptr, rc_q, fe_ptr, fe_t, fe_tier, hf_ptr, hf_t,
            rf_ptr, rf_t, rt_ptr, rt_link, src, dst, lat, bw, refs.bytes, iss_ptr, iss_m, cols.m_t, cols.m_nbytes,
            cols.m_head, cols.m_rptr, cols.m_rlink, cols.m_stage, cols.m_tail, cols.m_src, cols.m_free_source,
            cols.m_stale, cols.c_free, ready0.copy(), np.zeros(len(ready0)), np.full(len(refs.names), -np.inf),
            np.zeros(len(self.hw.links)), np.zeros(n + 1), np.zeros(n_tiers), self.slot_begin_s,
            ev_kind, ev_x, ev_a, ev_b, ev_t0, ev_t1)
        self.end_s = float(end_s)
        head: list[Event] = [FreeEvent(tid, tier, 0.0) for tid, tier in self.free_at_start]
        cols_out = (ev_kind[:count].copy(), ev_x[:count].copy(), ev_a[:count].copy(), ev_b[:count].copy(),
                    ev_t0[:count].copy(), ev_t1[:count].copy())
        op_ids, tensor_ids = [op.id for op in g.ops], refs.names
        return _LazyEvents(head, lambda: _events(count, *cols_out, op_ids, tensor_ids, tiers))


class _LazyEvents(Sequence[Event]):
    """The events of one simulation, made into tuples on first use: the refining passes of
    :func:`build_schedule` that lose are never built (at 10⁵ ops that is most of a pass's cost)."""

    def __init__(self, head: list[Event], build: Callable[[], list[Event]]) -> None:
        self._head = head
        self._build: Callable[[], list[Event]] | None = build
        self._items: list[Event] = []

    def _all(self) -> list[Event]:
        if self._build is not None:
            self._items = self._head + self._build()
            self._build = None
        return self._items

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, k: Any) -> Any:
        return self._all()[k]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return list(self._all()) == list(other) if isinstance(other, Sequence) else NotImplemented

    def __hash__(self) -> int:
        raise TypeError("unhashable type: '_LazyEvents'")

    def __repr__(self) -> str:
        return repr(self._all())


def _events(count: int, kind: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray, t0: np.ndarray,
            t1: np.ndarray, op_ids: Sequence[str], tensor_ids: Sequence[str], tiers: Sequence[str]) -> list[Event]:
    """The simulation's event columns as :class:`~core.plan.Event` tuples, in the order they happened
    (built per kind with ``map``, then put back in order: no Python loop per event)."""
    kind, x, a, b, t0, t1 = kind[:count], x[:count], a[:count], b[:count], t0[:count], t1[:count]
    tier_names = np.array(tiers, dtype=object)
    groups: list[list[Event]] = []
    where: list[np.ndarray] = []
    for code in (kernels.EV_COMPUTE, kernels.EV_TRANSFER, kernels.EV_FREE):
        rows = np.flatnonzero(kind == code)
        where.append(rows)
        xs = x[rows].tolist()
        if code == kernels.EV_COMPUTE:
            groups.append(list(map(tuple.__new__, repeat(ComputeEvent), zip(
                map(op_ids.__getitem__, xs), t0[rows].tolist(), t1[rows].tolist(), tier_names[a[rows]].tolist(),
                (b[rows] == 1).tolist()))))
        elif code == kernels.EV_TRANSFER:
            groups.append(list(map(tuple.__new__, repeat(TransferEvent), zip(
                map(tensor_ids.__getitem__, xs), tier_names[a[rows]].tolist(), tier_names[b[rows]].tolist(),
                t0[rows].tolist(), t1[rows].tolist()))))
        else:
            groups.append(list(map(tuple.__new__, repeat(FreeEvent), zip(
                map(tensor_ids.__getitem__, xs), tier_names[a[rows]].tolist(), t0[rows].tolist()))))
    flat: list[Event] = [e for group in groups for e in group]
    if count <= 1:
        return flat
    pos = np.empty(count, dtype=np.int64)
    pos[np.concatenate(where)] = np.arange(count)
    return list(operator.itemgetter(*pos.tolist())(flat))


#: Re-grant extents against the simulated slot starts when the step stalls more than this fraction.
_REFINE_STALL = 0.01
#: At most this many extra passes (each against the slot starts the previous one simulated), while they help.
_REFINE_PASSES = 4


def build_schedule(graph: Graph, hw: Hardware, live: Liveness, assignment: Assignment,
                   params: Mapping[str, Any] | None = None, op_tiers: Mapping[int, str] | None = None,
                   prefetch_from: Mapping[int, int] | None = None, *, refine: bool = True) -> Schedule:
    """Copies, capacity-checked extents and timed events for ``assignment`` (see module docstring).

    ``op_tiers`` runs those ops on a lower tier's own compute; ``live`` must be built with them as
    ``host_ops``. ``prefetch_from`` (span id -> op index) asks for a span's copy-in to be issued at that op
    instead of as late as the link estimate allows (a policy's prefetch distance); capacity still rules.
    ``refine`` allows the second pass below (portfolios rank candidates without it and refine the best)."""
    with paused_gc():  # ~10⁶ copy and move records at 10⁵ ops, no cycles (core.gc_pause)
        return _build_schedule(graph, hw, live, assignment, params, op_tiers, prefetch_from, refine=refine)


def _build_schedule(graph: Graph, hw: Hardware, live: Liveness, assignment: Assignment,
                    params: Mapping[str, Any] | None, op_tiers: Mapping[int, str] | None,
                    prefetch_from: Mapping[int, int] | None, *, refine: bool) -> Schedule:
    b = _Builder(graph, hw, live, assignment, params or {}, op_tiers, prefetch_from)
    for t in graph.tensors:
        b.tensor(t.id)
    minimum = b.snapshot()
    occ = b.grant_extents()
    best = _simulated(b, occ)
    # Further passes: the extents were granted against slot starts that assume nothing ever waits. Where the
    # simulation stalled (link-bound phases), the real slot starts say much better how long a copy-out
    # keeps its source and how early a copy-in must start: grant again against them (a copy-in then
    # streams in while the previous copy-out drains, when capacity allows) and keep the faster timing.
    step = schedule_end_s(best)
    ideal = float(b.est[b.n])
    starts = b.slot_begin_s.copy()
    for _ in range(_REFINE_PASSES if refine else 0):
        if step <= ideal * (1 + _REFINE_STALL) + 1e-12:
            break
        improved = False
        for heads_first in (False, True):
            b.est = np.maximum.accumulate(starts)
            b.restore(minimum)
            occ = b.grant_extents(heads_first=heads_first)
            again = _simulated(b, occ)
            if schedule_end_s(again) < step * (1 - 1e-9):
                best, step, improved = again, schedule_end_s(again), True
                next_starts = b.slot_begin_s.copy()
        if not improved:
            break
        starts = next_starts
    return best


def _simulated(b: _Builder, occ: dict[str, np.ndarray]) -> Schedule:
    """One simulation of ``b``'s current extents as a :class:`Schedule` (with the end it measured)."""
    b.end_s = None
    events = b.simulate()
    return Schedule(b.initial, events, occ, b.end_s)


def schedule_end_s(schedule: Schedule) -> float:
    """The time the last event of ``schedule`` ends (its step time)."""
    if schedule.end_s is not None:
        return schedule.end_s
    return max((e.end if not isinstance(e, FreeEvent) else e.time for e in schedule.events), default=0.0)


def build_plan(graph: Graph, hw: Hardware, live: Liveness, assignment: Assignment, *, policy: str,
               decisions: Sequence[Decision] = (), params: Mapping[str, Any] | None = None,
               op_tiers: Mapping[int, str] | None = None, schedule: Schedule | None = None,
               prefetch_from: Mapping[int, int] | None = None) -> Plan:
    """A complete :class:`Plan` (events, decisions, metrics) for ``assignment`` (``schedule``: one already
    built for exactly these decisions, reused instead of building it again)."""
    from core.hardware import hardware_to_dict
    from core.metrics import compute_metrics

    sched = schedule if schedule is not None else build_schedule(graph, hw, live, assignment, params, op_tiers,
                                                                 prefetch_from)
    metrics = compute_metrics(graph, hw, sched.events, sched.initial)
    return Plan(
        graph=graph.name, policy=policy, hardware=hardware_to_dict(hw), initial=sched.initial,
        events=tuple(sched.events), decisions=tuple(decisions), metrics=metrics,
        policy_params=dict(params or {}),
    )
