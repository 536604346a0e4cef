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

Policy parameters the scheduler reads: ``prefetch_slack`` (start copy-ins earlier by this fraction of
their duration; Tierplan's own knob, default 0 for policies without it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import InfeasibleError
from core.graph import Graph
from core.hardware import Compute, Hardware, Link, op_time_s
from core.liveness import Liveness
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


@dataclass
class _Copy:
    """A copy's slot range in a tier (``free_slot`` exclusive; ``n_ops`` means it survives the step)."""

    tensor: str
    tier: str
    nbytes: int
    alloc_slot: int
    free_slot: int


@dataclass
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
    events: list[Event]
    #: bytes counted per tier and op slot: an upper bound of the real occupancy while that op runs
    slot_bytes: dict[str, np.ndarray]


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
                self.recompute_at.setdefault(span.end_op, []).append(q)
                rec_time[span.end_op] += self.durations[q]
                # the re-run regenerates the producer's other (dead) outputs too: spare copies, freed when
                # the op it serves ends (core.spans.recompute_blocker, ``multi_output``)
                for y in spare_outputs(graph, span):
                    self._copy(y, self.C, graph.tensor_by_id[y].bytes, span.end_op, span.end_op + 1)
                    self.free_at_op_end[span.end_op].append((y, self.C))
        self.est = estimate_slot_starts(self.durations + rec_time)

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
        end_slot = min(self.n, self._slot_after(self.est[min(u + 1, self.n)] + self._route_time(route, size)) + 1)
        mv.staging = self._staging(tid, route, size, u + 1, max(end_slot, u + 2))
        self.moves.append(mv)

    # ------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _route_time(route: Sequence[Link], nbytes: int) -> float:
        return sum(link.transfer_time_s(nbytes) for link in route)

    def _slot_after(self, time_s: float) -> int:
        """First slot whose start is at or after ``time_s`` (``n`` when past the end)."""
        return min(self.n, int(np.searchsorted(self.est[: self.n], time_s - 1e-15, side="left")))

    def _slot_before(self, time_s: float) -> int:
        """Last slot whose start is at or before ``time_s``."""
        return max(0, int(np.searchsorted(self.est[: self.n], time_s + 1e-15, side="right")) - 1)

    # ------------------------------------------------------------------------------------ capacity
    def occupancy(self) -> dict[str, np.ndarray]:
        n = self.n
        diffs = {t.name: np.zeros(n + 1, dtype=np.int64) for t in self.hw.tiers}
        for c in self.copies:
            if c.free_slot > c.alloc_slot:
                d = diffs[c.tier]
                d[c.alloc_slot] += c.nbytes
                d[min(c.free_slot, n)] -= c.nbytes
        return {tier: np.cumsum(d[:n]) for tier, d in diffs.items()}

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
        extra: dict[str, int] = {}
        for c in self.copies:
            if c.alloc_slot >= n and c.tier != self.C:
                extra[c.tier] = extra.get(c.tier, 0) + c.nbytes
        for tier, nbytes in extra.items():
            need = int(occ[tier][n - 1]) + nbytes
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

    def _grant_tails(self, occ: dict[str, np.ndarray], caps: Mapping[str, int]) -> None:
        hbm, cap = occ[self.C], caps[self.C]
        link_free: dict[tuple[str, str], float] = {}
        for m in sorted((m for m in self.moves if m.tail_copy is not None), key=lambda m: m.issue_slot):
            first = m.route[0]
            key = (first.src, first.dst)
            start = max(self.est[min(m.issue_slot, self.n)], link_free.get(key, 0.0))
            link_free[key] = start + first.transfer_time_s(m.nbytes)
            want = min(self._slot_after(link_free[key]) + 1, m.max_slot, self.n)
            lo = m.issue_slot
            if want > lo:
                bad = np.flatnonzero(hbm[lo:want] + m.nbytes > cap)
                hi = lo + (int(bad[0]) if len(bad) else want - lo)
                if hi > lo:
                    hbm[lo:hi] += m.nbytes
                    m.tail_copy.free_slot = hi  # type: ignore[union-attr]

    def _grant_heads(self, occ: dict[str, np.ndarray], caps: Mapping[str, int]) -> None:
        hbm, cap = occ[self.C], caps[self.C]
        heads = sorted((m for m in self.moves if m.head_copy is not None), key=lambda m: m.deadline_slot or 0)
        link_start: dict[tuple[str, str], float] = {}
        wanted: dict[int, int] = {}
        for m in reversed(heads):  # as late as possible on each link, latest deadline first
            d = m.deadline_slot
            assert d is not None
            end, total = self.est[d], 0.0
            for link in reversed(m.route):
                key = (link.src, link.dst)
                dur = link.transfer_time_s(m.nbytes)
                end = min(end, link_start.get(key, float("inf"))) - dur
                link_start[key] = end
                total += dur
            wanted[id(m)] = self._slot_before(end - self.slack * total)
        for m in heads:  # capacity goes to the earliest need first
            d = m.deadline_slot
            assert d is not None
            # it may be issued while the copy-out before it is still running (both are counted in those
            # slots); the simulation starts it only once the old copy is gone
            lo = max(m.min_slot, self.prefetch_from.get(m.span_id, wanted[id(m)]))
            if lo < d:
                need = hbm[lo:d] + m.nbytes > cap
                for st in m.staging:
                    need |= occ[st.tier][lo:d] + m.nbytes > caps[st.tier]
                bad = np.flatnonzero(need)
                if len(bad):
                    lo += int(bad[-1]) + 1
                if lo < d:
                    hbm[lo:d] += m.nbytes
                    for st in m.staging:
                        occ[st.tier][lo:d] += m.nbytes
            m.issue_slot = lo
            m.head_copy.alloc_slot = lo  # type: ignore[union-attr]
            for st in m.staging:
                st.alloc_slot = min(lo, d)

    # ------------------------------------------------------------------------------------ timing
    def snapshot(self) -> tuple[list[tuple[int, int]], list[int]]:
        """Every copy's slot range and every move's issue slot, to undo :meth:`grant_extents`."""
        return [(c.alloc_slot, c.free_slot) for c in self.copies], [m.issue_slot for m in self.moves]

    def restore(self, snap: tuple[list[tuple[int, int]], list[int]]) -> None:
        for c, (alloc, free) in zip(self.copies, snap[0], strict=True):
            c.alloc_slot, c.free_slot = alloc, free
        for m, issue in zip(self.moves, snap[1], strict=True):
            m.issue_slot = issue

    def simulate(self) -> list[Event]:
        g, n, C = self.graph, self.n, self.C
        self.last_read = {}
        self.slot_begin_s = np.zeros(n + 1, dtype=np.float64)
        events: list[Event] = []
        issued: list[list[_Move]] = [[] for _ in range(n + 1)]
        for m in self.moves:
            issued[min(m.issue_slot, n)].append(m)
        for lst in issued:
            lst.sort(key=lambda m: (m.head_copy is not None, m.deadline_slot or 0))
        link_free: dict[tuple[str, str], float] = {}
        ready: dict[tuple[str, str], float] = {}
        gone: dict[tuple[str, str], float] = {}
        enforce = [0.0] * (n + 1)
        for tid, tier in self.free_at_start:
            events.append(FreeEvent(tid, tier, 0.0))
        for tid, tiers in self.initial.items():
            for tier in tiers:
                ready[(tid, tier)] = 0.0
        compute_free = 0.0
        host_free: dict[str, float] = {}
        for m in issued[0]:  # heads issued before the first op (tails are never issued at slot 0)
            self._run_move(m, 0.0, link_free, ready, gone, enforce, events)
        for i in range(n):
            slot_begin = max(compute_free, enforce[i])
            self.slot_begin_s[i] = slot_begin
            if i:
                for m in issued[i]:
                    if m.head_copy is not None:
                        self._run_move(m, slot_begin, link_free, ready, gone, enforce, events)
            for q in sorted(self.recompute_at.get(i, ())):
                op = g.ops[q]
                start = max(slot_begin, compute_free, *(ready[(x, C)] for x in op.inputs))
                end = start + float(self.durations[q])
                events.append(ComputeEvent(op.id, start, end, C, True))
                for out in op.outputs:
                    ready[(out, C)] = end
                if self.host_tier_of:  # a re-run reads its inputs again: a host update must wait for it
                    for x in (*op.inputs, *op.outputs):
                        self.last_read[x] = end
                compute_free = end
            op = g.ops[i]
            if i in self.op_tiers:  # on the host tier's own stream; the compute stream goes on meanwhile
                self._run_host_op(i, host_free, link_free, ready, gone, events)
                end = compute_free
            else:
                start = max(slot_begin, compute_free, *(ready[(x, C)] for x in op.inputs))
                end = start + float(self.durations[i])
                events.append(ComputeEvent(op.id, start, end, C))
                for out in op.outputs:
                    ready[(out, C)] = end
                if self.host_tier_of:
                    for x in (*op.inputs, *op.outputs):
                        self.last_read[x] = end
                compute_free = end
            for tid, tier in self.free_at_op_end[i]:
                events.append(FreeEvent(tid, tier, end))
                gone[(tid, tier)] = end
            # copy-outs issued for the next slot start as soon as this op is done, so the next slot can
            # wait for the frees the capacity count assumed
            for m in issued[i + 1]:
                if m.head_copy is None:
                    self._run_move(m, end, link_free, ready, gone, enforce, events)
        if n:
            self.slot_begin_s[n] = compute_free
            for m in issued[n]:
                if m.head_copy is not None:
                    self._run_move(m, compute_free, link_free, ready, gone, enforce, events)
        return events

    def _run_host_op(self, i: int, host_free: dict[str, float], link_free: dict[tuple[str, str], float],
                     ready: dict[tuple[str, str], float], gone: dict[tuple[str, str], float],
                     events: list[Event]) -> None:
        """Run op ``i`` on its host tier (inputs there, fresh), then free what it consumed and bring the
        weights it updated back into the compute tier where they start the step."""
        op, H, C = self.graph.ops[i], self.op_tiers[i], self.C
        # after every earlier op that touched its inputs (an in-place update must not race their reads)
        start = max(host_free.get(H, 0.0), *(ready[(x, H)] for x in op.inputs),
                    *(self.last_read.get(x, 0.0) for x in op.inputs))
        if any(x in self.last_read and self.last_read[x] >= start for x in op.mutates):
            # a read that ends exactly now may have taken no time at all; one ulp later the update is
            # unambiguously after it on the timeline (two streams share no event order)
            start = float(np.nextafter(start, np.inf))
        end = start + float(self.host_durations[i])
        events.append(ComputeEvent(op.id, start, end, H))
        host_free[H] = end
        for tid in op.mutates:
            ready[(tid, H)] = end
        for tid in self.host_frees.get(i, ()):
            events.append(FreeEvent(tid, H, end))
            gone[(tid, H)] = end
        for tid in self.refresh.get(i, ()):
            t = end
            route = self.hw.route(H, C)
            nbytes = self.graph.tensor_by_id[tid].bytes
            for k, link in enumerate(route):
                key = (link.src, link.dst)
                begin = max(t, link_free.get(key, 0.0))
                if k == len(route) - 1:
                    events.append(FreeEvent(tid, C, begin))  # the stale copy goes as the fresh one arrives
                t = begin + link.transfer_time_s(nbytes)
                link_free[key] = t
                events.append(TransferEvent(tid, link.src, link.dst, begin, t))
                if k:
                    events.append(FreeEvent(tid, link.src, t))
                ready[(tid, link.dst)] = t

    def _run_move(self, m: _Move, slot_begin: float, link_free: dict[tuple[str, str], float],
                  ready: dict[tuple[str, str], float], gone: dict[tuple[str, str], float],
                  enforce: list[float], events: list[Event]) -> None:
        tid, n = m.tensor, self.n
        t = max(slot_begin, ready[(tid, m.route[0].src)])
        if m.head_copy is not None:
            t = max(t, gone.get((tid, self.C), 0.0))
        for k, link in enumerate(m.route):
            key = (link.src, link.dst)
            start = max(t, link_free.get(key, 0.0))
            if k == len(m.route) - 1 and m.stale_dst:
                events.append(FreeEvent(tid, link.dst, start))
            end = start + link.transfer_time_s(m.nbytes)
            link_free[key] = end
            events.append(TransferEvent(tid, link.src, link.dst, start, end))
            ready[(tid, link.dst)] = end
            if k == 0:
                if m.tail_copy is not None or m.free_source:
                    events.append(FreeEvent(tid, link.src, end))
                    gone[(tid, link.src)] = end
                    if m.tail_copy is not None and m.tail_copy.free_slot < n:
                        enforce[m.tail_copy.free_slot] = max(enforce[m.tail_copy.free_slot], end)
                    if m.free_source and m.src_copy is not None and m.src_copy.free_slot < n:
                        enforce[m.src_copy.free_slot] = max(enforce[m.src_copy.free_slot], end)
            else:
                st = m.staging[k - 1]
                events.append(FreeEvent(tid, link.src, end))
                gone[(tid, link.src)] = end
                if st.free_slot < n:
                    enforce[st.free_slot] = max(enforce[st.free_slot], end)
            t = end


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
    b = _Builder(graph, hw, live, assignment, params or {}, op_tiers, prefetch_from)
    for t in graph.tensors:
        b.tensor(t.id)
    minimum = b.snapshot()
    occ = b.grant_extents()
    events = b.simulate()
    best = Schedule(b.initial, events, occ)
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
            again = Schedule(b.initial, b.simulate(), occ)
            if schedule_end_s(again) < step * (1 - 1e-9):
                best, step, improved = again, schedule_end_s(again), True
                next_starts = b.slot_begin_s.copy()
        if not improved:
            break
        starts = next_starts
    return best


def schedule_end_s(schedule: Schedule) -> float:
    """The time the last event of ``schedule`` ends (its step time)."""
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
