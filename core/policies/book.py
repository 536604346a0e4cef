"""Occupancy bookkeeping the baseline policies share, so they differ only in their rule.

:class:`SpanBook` counts the compute tier's occupancy per op under the decisions so far, with the same
minimum extents as :mod:`core.schedule`, the lower tiers' occupancy, picks tiers, words infeasibility and
builds the explained decisions. Its geometry (slots a span frees, covering spans, dirty or clean, idle time,
lower-tier windows) is :mod:`core.spans`', the one definition the planner, the scheduler and the MILP use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from core.errors import InfeasibleError
from core.graph import Graph
from core.hardware import Hardware
from core.liveness import Liveness, Span
from core.plan import Decision
from core.policies.base import Placement
from core.schedule import estimate_slot_starts, op_durations
from core.spans import covering_span, covers, freed_slots, idle_s, is_dirty, lower_window, recompute_ok
from core.units import format_bytes, format_time

__all__ = ["SpanBook"]


class SpanBook:
    """Occupancy of every tier per op slot under a growing set of decisions.

    The compute tier starts at :attr:`Liveness.keep_bytes` (nothing moved) and loses a span's bytes over the
    slots the span frees with minimum extents: ``inner`` frees the ops strictly inside it, ``initial`` the ops
    before the first use, ``wrap`` the ops after the last use and before the first, ``unused`` all of them —
    exactly what :mod:`core.schedule` counts before it checks capacity. Lower tiers count a copy over the
    slots the scheduler keeps it there (the whole step for persistent tensors), once per tensor and tier,
    plus the staging copies of multi-hop routes (SSD via DDR) at their minimum extents.
    """

    def __init__(self, graph: Graph, hw: Hardware, live: Liveness, *, policy: str) -> None:
        self.g, self.hw, self.live, self.policy = graph, hw, live, policy
        self.n = live.n_ops
        self.C = hw.compute_tier
        self.cap = hw.capacity(self.C)
        self.hbm = np.asarray(live.keep_bytes, dtype=np.int64).copy()
        self.tiers = hw.offload_tiers
        self.dur = op_durations(graph, hw)
        self.T = estimate_slot_starts(self.dur)
        self.lower = {t: np.zeros(max(self.n, 1), dtype=np.int64) for t in self.tiers}
        self.lower_cap = {t: hw.capacity(t) for t in self.tiers}
        self._hull: dict[tuple[str, str], tuple[int, int]] = {}
        self.assignment: dict[int, tuple[str, str]] = {}
        self.pinned: set[int] = set()

    # ------------------------------------------------------------------------------ span geometry
    def freed(self, span: Span) -> list[tuple[int, int]]:
        """Slot ranges ``[lo, hi)`` of the compute tier the span frees when it is not kept."""
        return freed_slots(span, self.n)

    def covers(self, span: Span, op: int) -> bool:
        return covers(span, op, self.n)

    def idle_s(self, span: Span) -> float:
        """Modelled compute time inside the span (what a transfer can hide under)."""
        return idle_s(span, self.T)

    def dirty(self, span: Span) -> bool:
        """Whether offloading needs a copy-out (no fresh copy below otherwise)."""
        return is_dirty(self.g, self.live, span)

    def transfer_s(self, span: Span, tier: str) -> tuple[float, float]:
        """Copy-out and copy-in seconds of offloading ``span`` to ``tier`` (latency included, no contention)."""
        if span.kind == "unused":
            return 0.0, 0.0
        wb = self.hw.route_time_s(self.C, tier, span.bytes) if self.dirty(span) else 0.0
        return wb, self.hw.route_time_s(tier, self.C, span.bytes)

    # ------------------------------------------------------------------------------ lower tiers
    def _lower_interval(self, span: Span) -> tuple[int, int]:
        return lower_window(self.g, span, self.n)

    def _lower_new(self, span: Span, tier: str) -> list[tuple[int, int]]:
        """Slots of ``tier`` this span's copy adds to what the tensor already holds there."""
        lo, hi = self._lower_interval(span)
        old = self._hull.get((span.tensor, tier))
        if old is None:
            return [(lo, hi)] if hi > lo else []
        olo, ohi = old
        return [(a, b) for a, b in ((min(lo, olo), olo), (ohi, max(hi, ohi))) if b > a]

    def _staging(self, span: Span, tier: str) -> list[tuple[str, int, int]]:
        """Copies in intermediate tiers of multi-hop routes, at the minimum extents the scheduler counts.

        A copy-out's staging copy lasts from the slot after the use until the slot its route is estimated to
        finish (one slot of margin); a copy-in's lasts at least its deadline slot (it only grows where room).
        """
        n, C = self.n, self.C
        out: list[tuple[str, int, int]] = []
        if span.kind == "unused":
            return out
        if self.dirty(span):
            route = self.hw.route(C, tier)
            if len(route) > 1:
                lo = min(span.start_op + 1, n)
                t_end = float(self.T[lo]) + sum(link.transfer_time_s(span.bytes) for link in route)
                after = int(np.searchsorted(self.T[:n], t_end - 1e-15, side="left"))
                hi = min(n, max(min(n, after + 2), lo + 2))
                out += [(link.dst, lo, hi) for link in route[:-1]]
        route = self.hw.route(tier, C)
        if len(route) > 1:
            b = span.end_op
            out += [(link.dst, b, min(b + 1, n)) for link in route[:-1]]
        return out

    def lower_fits(self, span: Span, tier: str) -> bool:
        ranges: dict[str, list[tuple[int, int]]] = {}
        for t, a, b in [(tier, a, b) for a, b in self._lower_new(span, tier)] + self._staging(span, tier):
            if t in self.lower and b > a:
                ranges.setdefault(t, []).append((a, b))
        for t, rs in ranges.items():
            lo, hi = min(a for a, _ in rs), max(b for _, b in rs)
            extra = np.zeros(hi - lo, dtype=np.int64)
            for a, b in rs:
                extra[a - lo:b - lo] += span.bytes
            if int((self.lower[t][lo:hi] + extra).max()) > self.lower_cap[t]:
                return False
        return True

    def tier_for(self, span: Span, tiers: Iterable[str] | None = None) -> str | None:
        """First tier (fastest route to the compute tier first) with room for the span's copy."""
        for tier in self.tiers if tiers is None else tiers:
            if self.lower_fits(span, tier):
                return tier
        return None

    # ------------------------------------------------------------------------------ decisions
    def offload(self, sid: int, tier: str) -> None:
        span = self.live.spans[sid]
        self.assignment[sid] = ("offload", tier)
        for lo, hi in self.freed(span):
            self.hbm[lo:hi] -= span.bytes
        for t, a, b in [(tier, a, b) for a, b in self._lower_new(span, tier)] + self._staging(span, tier):
            if t in self.lower:
                self.lower[t][a:b] += span.bytes
        lo, hi = self._lower_interval(span)
        old = self._hull.get((span.tensor, tier))
        self._hull[(span.tensor, tier)] = (lo, hi) if old is None else (min(lo, old[0]), max(hi, old[1]))

    def recompute_inputs(self, sid: int) -> list[int] | None:
        """Spans that must stay kept so the producer can re-run at the span's end; None if impossible."""
        if not recompute_ok(self.g, self.live, sid):
            return None
        span = self.live.spans[sid]
        b = span.end_op
        out: list[int] = []
        for x in self.g.ops[self.g.producer[span.tensor]].inputs:
            if b in self.live.uses[x]:
                continue
            cover = covering_span(self.live, x, b)
            if cover is None or cover in self.assignment:
                return None
            out.append(cover)
        return out

    def recompute(self, sid: int) -> None:
        """Drop the span's copy after its first use and re-run its producer before the next (pins its inputs)."""
        pins = self.recompute_inputs(sid)
        if pins is None:
            raise ValueError(f"span {sid} cannot be recomputed")
        self.pinned.update(pins)
        span = self.live.spans[sid]
        self.assignment[sid] = ("recompute", self.C)
        for lo, hi in self.freed(span):
            self.hbm[lo:hi] -= span.bytes

    # ------------------------------------------------------------------------------ checks
    def over(self) -> np.ndarray:
        """Op indices where the compute tier is still over capacity."""
        return np.flatnonzero(self.hbm > self.cap)

    def raise_if_over(self, hint: str) -> None:
        if not self.n:
            return
        worst = int(np.argmax(self.hbm))
        need = int(self.hbm[worst])
        if need > self.cap:
            raise InfeasibleError(
                f"policy '{self.policy}': {self.C} still needs {format_bytes(need)} while op '{self.g.ops[worst].id}' "
                f"runs but holds {format_bytes(self.cap)} ({format_bytes(need - self.cap)} too much); {hint}",
                op=self.g.ops[worst].id, tier=self.C, need_bytes=need, have_bytes=self.cap,
            )

    def no_room(self, span: Span, why: str = "") -> InfeasibleError:
        room = ", ".join(f"{t} {format_bytes(self.lower_cap[t])}" for t in self.tiers) or "no lower tier"
        return InfeasibleError(
            f"policy '{self.policy}': {span.kind} span of '{span.tensor}' ({format_bytes(span.bytes)}) must leave "
            f"{self.C}{why}, but no lower tier has room for it over that span (usable: {room})",
            reason="lower_capacity", need_bytes=span.bytes,
        )

    def placement(self, scores: Mapping[int, float] | None = None, terms: Mapping[int, Mapping[str, float]] | None = None,
                  reasons: Mapping[int, str] | None = None) -> Placement:
        """The assignment plus one explained :class:`Decision` per span."""
        scores, terms, reasons = scores or {}, terms or {}, reasons or {}
        out: list[Decision] = []
        uses = self.live.uses
        first = self.tiers[0] if self.tiers else None
        for span in self.live.spans:
            action, tier = self.assignment.get(span.id, ("keep", self.C))
            t: dict[str, float] = {
                "bytes_freed": float(span.bytes) if action != "keep" else 0.0,
                "idle_s": self.idle_s(span),
                "access_count": float(len(uses[span.tensor])),
            }
            probe = tier if action == "offload" else first
            if probe is not None:
                wb, pf = self.transfer_s(span, probe)
                t["transfer_s"] = wb + pf
                t["exposed_s"] = max(0.0, wb + pf - t["idle_s"]) if action == "offload" else 0.0
            if recompute_ok(self.g, self.live, span.id):
                t["recompute_s"] = float(self.dur[self.g.producer[span.tensor]])
            t.update(terms.get(span.id, {}))
            reason = reasons.get(span.id) or self._reason(span, action, tier, t)
            out.append(Decision(span.tensor, span.start_op, span.end_op, action, tier, float(scores.get(span.id, 0.0)),
                                t, reason))
        return Placement(dict(self.assignment), tuple(out))

    def _reason(self, span: Span, action: str, tier: str, t: Mapping[str, float]) -> str:
        if action == "keep":
            return f"kept in {self.C}" + (" (a recompute needs it)" if span.id in self.pinned else "")
        if action == "recompute":
            return f"dropped and recomputed ({format_time(t.get('recompute_s', 0.0))} of compute)"
        return (f"moved to {tier} for {format_time(t['idle_s'])} idle: frees {format_bytes(span.bytes)}, copies take "
                f"{format_time(t.get('transfer_s', 0.0))}")
