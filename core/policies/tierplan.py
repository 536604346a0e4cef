"""Tierplan's own policy (the default): a capacity sweep judged by the real scheduler.

The policy sweeps the ops in execution order with the occupancy of the compute tier as if nothing moved.
Wherever it exceeds capacity it relieves that op by picking, among the idle spans that cover it, the one
with the lowest **exposed time per byte-second freed**: exposed time is what the copy-out + copy-in (or
the recompute) cannot hide under the compute in the span, given the link time already committed there
(bandwidth loss); byte-seconds freed are the span's bytes times how far ahead the relief reaches (so, at
equal cost, the tensor needed farthest in the future goes first, as in Belady's rule). Clean copies are
dropped instead of written back, persistent tensors may start the step in a lower tier (wrap-around span),
and cheap single-output producers are recomputed when that is cheaper than moving their output. Every span
gets a :class:`~core.plan.Decision` with its named terms, so the UI can say why.

The ranking is a heuristic, so :func:`decide_tierplan` runs the sweep under several orders (and with the
optimizer updates on the host CPUs when the hardware has them), schedules each result with the real
scheduler and keeps the fastest: a small portfolio judged exactly rather than one guess.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import core.kernels as kernels
from core.errors import InfeasibleError
from core.graph import Graph
from core.hardware import Hardware
from core.kernels import use_compiled
from core.liveness import Liveness, Span, analyze
from core.plan import Decision
from core.policies.base import ParamSpec, Placement, PolicyInfo
from core.policies.host import host_candidates
from core.schedule import Schedule, build_schedule, estimate_slot_starts, op_durations, schedule_end_s
from core.spans import covering_span, freed_slots, idle_s, is_dirty, lower_window, recompute_ok, spare_outputs
from core.units import format_bytes, format_time

__all__ = ["TIERPLAN", "ORDERS", "decide_tierplan", "recompute_setup", "recompute_precommit", "long_offloads"]


#: How many live candidates are re-scored per pick (bounds the lazy-greedy re-evaluation).
_LOOKAHEAD = 8


class _LinkLoad:
    """Committed transfer seconds per op slot on one link (Fenwick tree with range add / range sum; the
    arithmetic is :func:`core.kernels.fenwick_add` / :func:`~core.kernels.fenwick_total`, compiled on big
    graphs and plain Python over lists on small ones)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.b1: Any
        self.b2: Any
        if use_compiled(n):
            self.b1, self.b2 = np.zeros(n + 2), np.zeros(n + 2)
            self._add, self._total = kernels.kernel(kernels.fenwick_add), kernels.kernel(kernels.fenwick_total)
        else:
            self.b1, self.b2 = [0.0] * (n + 2), [0.0] * (n + 2)
            self._add, self._total = kernels.fenwick_add, kernels.fenwick_total

    def add(self, lo: int, hi: int, per_slot: float) -> None:
        self._add(self.b1, self.b2, self.n, lo, hi, per_slot)

    def total(self, lo: int, hi: int) -> float:
        """Sum of the per-slot load over slots ``lo..hi-1``."""
        return float(self._total(self.b1, self.b2, lo, hi))


class _Tierplan:
    def __init__(self, graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any], order: str = "cost",
                 op_tiers: Mapping[int, str] | None = None,
                 region_cache: dict[tuple[int, str], tuple[list[tuple[int, int]], float, float, float]] | None = None,
                 precommit: Mapping[int, tuple[str, str]] | None = None) -> None:
        self.g, self.hw, self.live = graph, hw, live
        self.n = live.n_ops
        self.C = hw.compute_tier
        self.cap = int(hw.capacity(self.C) * (1.0 - float(params["hbm_reserve"])))
        self.slack = float(params["prefetch_slack"])
        self.allow_recompute = bool(params["recompute"])
        self.order = order
        #: spans decided before the sweep (recomputed up front), freed over their idle ops
        self.precommit = dict(precommit or {})
        self.op_tiers = dict(op_tiers or {})
        #: tensors read by host ops may only move to that host tier (it must hold them when the op runs)
        self.only_tier = {x: t for i, t in self.op_tiers.items() for x in graph.ops[i].inputs}
        self.dur = op_durations(graph, hw)
        self.T = estimate_slot_starts(self.dur)
        self.tiers = hw.offload_tiers
        self.lower_cap = {t: hw.capacity(t) for t in self.tiers}
        biggest = max((t.bytes for t in graph.tensors), default=0)
        for t in self.tiers:  # room for staging copies when a route passes through this tier
            if any(len(hw.route(self.C, other)) > 1 and t in [link.dst for link in hw.route(self.C, other)[:-1]] for other in self.tiers):
                self.lower_cap[t] = max(0, self.lower_cap[t] - 2 * biggest)
        self.lower_occ = {t: np.zeros(self.n + 1, dtype=np.int64) for t in self.tiers}
        self.lower_peak = dict.fromkeys(self.tiers, 0)
        self.load = {(link.src, link.dst): _LinkLoad(self.n) for link in hw.links}
        self.first_hop = {(a, b): (hw.route(a, b)[0].src, hw.route(a, b)[0].dst)
                          for t in self.tiers for a, b in ((self.C, t), (t, self.C))}
        self.choice: dict[int, tuple[str, str]] = {}
        self.terms: dict[int, dict[str, float]] = {}
        self.pinned: set[int] = set()
        self.applied: dict[int, list[tuple[int, int]]] = {}  # slots each choice frees (for pruning)
        # span geometry depends only on the liveness, the hardware and the slack: shared across orders
        self._regions = region_cache if region_cache is not None else {}
        self.heads: list[list[int]] = []  # [first slot resident again, needed at, bytes] of chosen copy-ins

    # ------------------------------------------------------------------------------ span geometry
    # (the geometry itself is core.spans'; these bind it to this graph and its modelled slot starts)
    def idle_s(self, span: Span) -> float:
        return idle_s(span, self.T)

    def dirty(self, span: Span) -> bool:
        """Whether offloading needs a copy-out (no fresh copy below is assumed otherwise)."""
        return is_dirty(self.g, self.live, span)

    def regions(self, span: Span, tier: str) -> tuple[list[tuple[int, int]], float, float, float]:
        """Slots freed when hiding the copies, exposed seconds, copy-out and copy-in seconds (cached:
        they depend only on the span and the tier)."""
        key = (span.id, tier)
        hit = self._regions.get(key)
        if hit is None:
            if (-1, tier) not in self._regions:  # (-1, tier) marks "all spans done for this tier"
                self._precompute_regions(tier)
                hit = self._regions.get(key)
            if hit is None:
                hit = self._regions[key] = self._regions_uncached(span, tier)
        return hit

    def _precompute_regions(self, tier: str) -> None:
        """:meth:`_regions_uncached` for every span at once (numpy), same arithmetic in the same order."""
        self._regions[(-1, tier)] = ([], 0.0, 0.0, 0.0)
        spans = self.live.spans
        if not spans or not self.n:
            return
        hw, T, n, C = self.hw, self.T, self.n, self.C
        nbytes = np.array([sp.bytes for sp in spans], dtype=np.float64)
        kinds = [sp.kind for sp in spans]
        a = np.array([sp.start_op for sp in spans], dtype=np.int64)
        b = np.array([sp.end_op for sp in spans], dtype=np.int64)
        dirty = np.array([self.dirty(sp) for sp in spans], dtype=bool)
        wb = np.zeros(len(spans))
        for link in hw.route(C, tier):
            wb += link.latency_s + nbytes / link.bandwidth_Bps
        wb = np.where(dirty, wb, 0.0)
        pf = np.zeros(len(spans))
        for link in hw.route(tier, C):
            pf += link.latency_s + nbytes / link.bandwidth_Bps
        bb = np.clip(b, 0, n)
        p = np.searchsorted(T[:n], T[bb] - pf * (1 + self.slack), side="right") - 1
        p = np.maximum(0, np.minimum(p, b))
        a1 = np.clip(a + 1, 0, n)
        r = np.where(wb > 0, np.searchsorted(T[:n], T[a1] + wb, side="left"), a + 1)
        r = np.minimum(np.maximum(r, a + 1), n)
        for k, sp in enumerate(spans):
            kind = kinds[k]
            if kind == "unused":
                self._regions[(sp.id, tier)] = ([(0, n)], 0.0, 0.0, 0.0)
                continue
            pk, pfk = int(p[k]), float(pf[k])
            if kind == "initial":
                self._regions[(sp.id, tier)] = ([(0, pk)], max(0.0, pfk - float(T[b[k]])), 0.0, pfk)
                continue
            wbk, rk = float(wb[k]), int(r[k])
            if kind == "wrap":
                exposed = max(0.0, wbk - float(T[n] - T[a1[k]])) + max(0.0, pfk - float(T[b[k]]))
                self._regions[(sp.id, tier)] = ([(0, pk), (rk, n)], exposed, wbk, pfk)
                continue
            exposed = max(0.0, wbk + pfk - float(T[b[k]] - T[a1[k]]))
            self._regions[(sp.id, tier)] = ([(rk, pk)] if pk > rk else [], exposed, wbk, pfk)

    def _regions_uncached(self, span: Span, tier: str) -> tuple[list[tuple[int, int]], float, float, float]:
        hw, T, n, C = self.hw, self.T, self.n, self.C
        wb = hw.route_time_s(C, tier, span.bytes) if self.dirty(span) else 0.0
        pf = hw.route_time_s(tier, C, span.bytes)
        if span.kind == "unused":
            return [(0, n)], 0.0, 0.0, 0.0
        b = span.end_op
        p = int(np.searchsorted(T[:n], T[b] - pf * (1 + self.slack), side="right")) - 1
        p = max(0, min(p, b))
        if span.kind == "initial":
            return [(0, p)], max(0.0, pf - float(T[b])), 0.0, pf
        a = span.start_op
        r = int(np.searchsorted(T[:n], T[a + 1] + wb, side="left")) if wb else a + 1
        r = min(max(r, a + 1), n)
        if span.kind == "wrap":  # the copy-out must fit after the last use, the copy-in before the first
            exposed = max(0.0, wb - float(T[n] - T[a + 1])) + max(0.0, pf - float(T[b]))
            return [(0, p), (r, n)], exposed, wb, pf
        exposed = max(0.0, wb + pf - self.idle_s(span))
        return ([(r, p)] if p > r else []), exposed, wb, pf

    # ------------------------------------------------------------------------------ the sweep
    def run(self) -> Placement:
        live, n, cap = self.live, self.n, self.cap
        keep = live.keep_bytes
        if self.precommit:
            keep = self._precommitted(keep)
            self.choice.update(self.precommit)
        if n == 0 or keep.max() <= cap:
            return Placement(dict(self.choice))
        buckets: list[list[tuple[int, int, int, str]]] = [[] for _ in range(n + 1)]
        for span in live.spans:
            if span.bytes == 0 or (live.span_length_ops(span) <= 0 and span.kind != "unused"):
                continue
            hidden = self._entry_regions(span)
            for lo, hi in hidden:
                buckets[lo].append((span.id, lo, hi, "offload"))
            for lo, hi in self._forced_regions(span):
                if hi > lo and (lo, hi) not in hidden:
                    buckets[lo].append((span.id, lo, hi, "forced"))
            if self.allow_recompute and recompute_ok(self.g, live, span.id):
                buckets[span.start_op + 1].append((span.id, span.start_op + 1, span.end_op, "recompute"))
        heap: list[tuple[float, float, int, int, int, str]] = []
        delta = np.zeros(n + 1, dtype=np.int64)
        running = 0
        for s in range(n):
            for sid, lo, hi, kind in buckets[s]:
                if sid not in self.choice:  # cheap static key; re-scored with congestion when popped
                    heapq.heappush(heap, (*self._key(sid, s, hi, kind, self._static_cost(sid, kind)), sid, lo, hi, kind))
            running += int(delta[s])
            cur = int(keep[s]) + running
            while cur > cap:
                picked = self._pop(heap, s)
                if picked is None:
                    squeezed = self._squeeze(s, delta)
                    if not squeezed:
                        self._infeasible(s, cur)
                    running -= squeezed
                    cur -= squeezed
                    continue
                sid, kind, tier = picked
                freed = self._apply(sid, s, kind, tier, delta)
                running -= freed
                cur -= freed
        self._prune()
        return Placement(dict(self.choice))

    def _precommitted(self, keep: np.ndarray) -> np.ndarray:
        """``keep`` less the spans recomputed up front, plus the spare outputs their re-runs regenerate
        (held while the op they serve runs)."""
        keep = keep.astype(np.int64).copy()
        for sid in self.precommit:
            span = self.live.spans[sid]
            keep[span.start_op + 1:span.end_op] -= span.bytes
            if self.precommit[sid][0] == "recompute" and 0 <= span.end_op < self.n:
                keep[span.end_op] += sum(self.g.tensor_by_id[y].bytes for y in spare_outputs(self.g, span))
        return keep

    def _prune(self) -> None:
        """Reverse delete: the sweep relieves each op greedily, so later choices can make earlier ones
        unnecessary. Undo the most expensive choices (copy time per byte) whose bytes fit back everywhere
        they were freed."""
        occ = self._precommitted(self.live.keep_bytes.astype(np.int64))
        for sid, regions in self.applied.items():
            for lo, hi in regions:
                occ[lo:hi] -= self.live.spans[sid].bytes
        def expense(sid: int) -> float:
            t = self.terms.get(sid, {})
            return (t.get("wb_s", 0.0) + t.get("pf_s", 0.0)) / max(self.live.spans[sid].bytes, 1)
        for sid in sorted(self.applied, key=expense, reverse=True):
            if self.choice.get(sid, ("keep",))[0] != "offload":
                continue
            size = self.live.spans[sid].bytes
            regions = [(lo, hi) for lo, hi in self.applied[sid] if hi > lo]
            if all(int(occ[lo:hi].max()) + size <= self.cap for lo, hi in regions):
                for lo, hi in regions:
                    occ[lo:hi] += size
                del self.choice[sid]
                self.terms.pop(sid, None)

    def _entry_regions(self, span: Span) -> list[tuple[int, int]]:
        fastest = self.tiers[0]
        regs, _, _, _ = self.regions(span, fastest)
        return [(lo, hi) for lo, hi in regs if hi > lo]

    def _forced_regions(self, span: Span) -> list[tuple[int, int]]:
        """Everything the span could free if its copies were allowed to stall the compute."""
        return freed_slots(span, self.n)

    def _key(self, sid: int, s: int, hi: int, kind: str, cost: float | None = None) -> tuple[float, float]:
        span = self.live.spans[sid]
        end = self.T[hi] if hi <= self.n else self.T[self.n]
        if span.kind == "wrap" and s < span.end_op:
            end = end + (self.T[self.n] - self.T[span.start_op + 1])
        benefit = span.bytes * max(float(end - self.T[s]), 1e-12)
        if cost is None:
            cost = self._cost(sid, kind)[0]
        if self.order == "weight":  # heaviest span (bytes x length) first, hidden ones before exposed ones
            length = self.live.span_length_ops(span) if span.kind != "unused" else self.n
            return float(cost > 0), -float(span.bytes) * max(length, 1)
        if self.order == "reach":  # farthest relief first (Belady), hidden before exposed
            return float(cost > 0), -float(end)
        if self.order == "idle":  # longest idle time first, hidden before exposed (Capuchin's swap order)
            return float(cost > 0), -self.idle_s(span)
        return cost / benefit, -benefit

    def _static_cost(self, sid: int, kind: str) -> float:
        """Exposed seconds on the fastest lower tier with empty links (a lower bound of :meth:`_cost`)."""
        span = self.live.spans[sid]
        if kind == "recompute":
            return float(self.dur[self.g.producer[span.tensor]])
        _, exposed, wb, pf = self.regions(span, self.tiers[0])
        return wb + pf if kind == "forced" else exposed

    def _cost(self, sid: int, kind: str) -> tuple[float, str]:
        """Exposed seconds of the best way to free the span, and the tier it uses: the least exposure,
        and for tensors no op reads (stored-only weights such as unrouted experts) the coldest tier among
        equals, so they leave the fast lower tier to data that is read back (tiers are fastest first)."""
        span = self.live.spans[sid]
        if kind == "recompute":
            q = self.g.producer[span.tensor]
            return float(self.dur[q]), self.C
        best: tuple[float, str] | None = None
        allowed = self.tiers if span.tensor not in self.only_tier else (self.only_tier[span.tensor],)
        for tier in allowed:
            if not self._lower_fits(span, tier):
                continue
            _, exposed, wb, pf = self.regions(span, tier)
            if kind == "forced":
                exposed = wb + pf
            exposed += self._congestion(span, tier, wb, pf)
            roomy = span.kind == "unused"
            if best is None or exposed < best[0] - 1e-12 or (exposed <= best[0] + 1e-12 and roomy):
                best = (exposed, tier)
            if best[0] <= 0.0 and not roomy:
                break  # nothing beats a fully hidden move on the fastest tier with room
        return best if best is not None else (float("inf"), "")

    def _lower_window(self, span: Span) -> tuple[int, int]:
        return lower_window(self.g, span, self.n)

    def _lower_fits(self, span: Span, tier: str) -> bool:
        if self.lower_peak[tier] + span.bytes <= self.lower_cap[tier]:
            return True  # fits even at the busiest slot: no need to look at the window
        lo, hi = self._lower_window(span)
        return bool((self.lower_occ[tier][lo:hi].max(initial=0) + span.bytes) <= self.lower_cap[tier])

    def _link_windows(self, span: Span) -> tuple[tuple[int, int], tuple[int, int]]:
        """Op slots whose link time a span's copy-out and copy-in are charged to: the idle span itself, and
        for spans that start the step elsewhere (wrap, initial) the ops before the first use, where the
        copy-in must happen. Charging a wrap span's copy-out there too (rather than after its last use)
        is a heuristic; it measured better on the samples and the synthetic benchmark (the real schedule
        judges the portfolio anyway)."""
        a, b = span.start_op, span.end_op
        if span.kind == "inner":
            return (a + 1, b), (a + 1, b)
        return (0, max(b, 1)), (0, max(b, 1))

    def _congestion(self, span: Span, tier: str, wb: float, pf: float) -> float:
        """Extra exposure when the links are already busy where the copies must run (bandwidth loss)."""
        lo, hi = self._link_windows(span)[0]
        if hi <= lo:
            return 0.0
        window = max(float(self.T[hi] - self.T[lo]), 1e-12)
        extra = 0.0
        if wb > 0:
            used = self.load[self.first_hop[(self.C, tier)]].total(lo, hi)
            extra += max(0.0, used + wb - window) - max(0.0, used - window)
        if pf > 0:
            used = self.load[self.first_hop[(tier, self.C)]].total(lo, hi)
            extra += max(0.0, used + pf - window) - max(0.0, used - window)
        return extra

    def _pop(self, heap: list[Any], s: int) -> tuple[int, str, str] | None:
        """Best candidate covering op ``s``. Keys go stale as links fill up, so up to ``_LOOKAHEAD`` live
        entries are re-scored and the best is taken (the rest go back): lazy greedy with a bounded window.
        Recomputes whose inputs cannot be pinned are dropped and the search goes on."""
        while heap:
            picked = self._pop_window(heap, s)
            if picked is not None:
                return picked
        return None

    def _pop_window(self, heap: list[Any], s: int) -> tuple[int, str, str] | None:
        seen: list[tuple[tuple[float, float], int, int, int, str, str]] = []
        twins: list[Any] = []  # a second entry of a span already in ``seen`` (another region): keep it
        while heap and len(seen) < _LOOKAHEAD:
            entry = heapq.heappop(heap)
            _, _, sid, lo, hi, kind = entry
            if sid in self.choice or sid in self.pinned or not lo <= s < hi:
                continue
            if any(item[1] == sid for item in seen):
                twins.append(entry)
                continue
            cost, tier = self._cost(sid, kind)
            if cost == float("inf"):
                continue
            fresh = self._key(sid, s, hi, kind, cost)
            seen.append((fresh, sid, lo, hi, kind, tier))
            # stored keys are lower bounds (links only fill up, relief only shrinks): once the best
            # re-scored key is no worse than the best stored one, nothing left in the heap can beat it
            if not heap or min(item[0] for item in seen) <= (heap[0][0], heap[0][1]):
                break
        for entry in twins:
            heapq.heappush(heap, entry)
        seen.sort(key=lambda item: item[0])
        for k, (_, sid, _, _, kind, tier) in enumerate(seen):
            if kind == "recompute" and not self._pin_inputs(sid):
                continue
            for other in seen[k + 1:]:
                heapq.heappush(heap, (*other[0], other[1], other[2], other[3], other[4]))
            return sid, kind, tier
        return None

    def _pin_inputs(self, sid: int) -> bool:
        """Recompute at the span end needs the producer's inputs there. Inputs the op at the span end reads
        anyway cost nothing; otherwise the input's idle span covering that op is pinned in the compute tier,
        which is only accepted when that span lies inside this one (pinning a long span would cost more
        memory than the recompute frees)."""
        span = self.live.spans[sid]
        b = span.end_op
        op = self.g.ops[self.g.producer[span.tensor]]
        to_pin: list[int] = []
        for x in op.inputs:
            if b in self.live.uses[x]:
                continue
            cover = self._covering(x, b)
            if cover is None or cover in self.choice:
                return False
            cs = self.live.spans[cover]
            if cs.kind != "inner" or cs.start_op < span.start_op or cs.end_op > b + 1:
                return False
            to_pin.append(cover)
        self.pinned.update(to_pin)
        return True

    def _covering(self, tensor: str, slot: int) -> int | None:
        return covering_span(self.live, tensor, slot)

    def _apply(self, sid: int, s: int, kind: str, tier: str, delta: np.ndarray) -> int:
        """Record the choice, update future occupancy, lower tiers and link load; bytes freed at ``s``."""
        span = self.live.spans[sid]
        n = self.n
        if kind == "recompute":
            self.choice[sid] = ("recompute", self.C)
            regions = [(span.start_op + 1, span.end_op)]
            wb = pf = 0.0
        else:
            self.choice[sid] = ("offload", tier)
            regions, _, wb, pf = self.regions(span, tier)
            regions = [(lo, hi) for lo, hi in regions if hi > lo]
            if kind == "forced" or not any(lo <= s < hi for lo, hi in regions):
                regions = self._forced_regions(span)  # this tier cannot hide it here: accept the stall
            lo, hi = self._lower_window(span)
            self.lower_occ[tier][lo:hi] += span.bytes
            self.lower_peak[tier] = max(self.lower_peak[tier], int(self.lower_occ[tier][lo:hi].max(initial=0)))
            for seconds, (src, dst), (a, b) in zip((wb, pf), ((self.C, tier), (tier, self.C)), self._link_windows(span)):
                if seconds > 0 and b > a:
                    link = self.hw.route(src, dst)[0]
                    self.load[(link.src, link.dst)].add(a, b, seconds / (b - a))
        self.applied[sid] = [(lo, min(hi, n)) for lo, hi in regions]
        freed_now = 0
        for lo, hi in regions:
            lo, hi = max(lo, s), min(hi, n)
            if hi <= lo:
                continue
            if lo == s:  # applies from now on through the caller's running sum
                freed_now += span.bytes
            else:
                delta[lo] -= span.bytes
            delta[hi] += span.bytes
        if kind == "offload" and span.kind != "unused" and regions:
            b = span.end_op
            head_end = regions[0][1] if span.kind == "wrap" else regions[-1][1]
            if head_end < b and head_end > s:
                self.heads.append([head_end, b, span.bytes, sid])
        self.terms[sid] = {"wb_s": wb, "pf_s": pf, "chosen_at_op": float(s)}
        return freed_now

    def _squeeze(self, s: int, delta: np.ndarray) -> int:
        """Last resort at op ``s``: start a chosen copy-in later than hiding would like (the schedule then
        stalls for it), the one needed farthest ahead first. Returns bytes freed at ``s``."""
        best = None
        for h in self.heads:
            if h[0] <= s < h[1] and (best is None or h[1] > best[1]):
                best = h
        if best is not None:
            old = best[0]
            best[0] = s + 1
            self.applied[best[3]] = [(lo, s + 1 if hi == old else hi) for lo, hi in self.applied[best[3]]]
            delta[s + 1] += best[2]
            return int(best[2])
        return self._squeeze_tail(s, delta)

    def _squeeze_tail(self, s: int, delta: np.ndarray) -> int:
        """Then: a chosen offload whose copy-out the sweep counted as not done by op ``s`` (it could not
        hide) is counted gone from ``s`` on, as the scheduler counts it (it frees the copy at its minimum
        extent and makes the op wait for the copy-out): the largest first. Returns bytes freed at ``s``."""
        best: tuple[int, int, int] | None = None
        for sid, (action, _) in self.choice.items():
            if action != "offload" or sid in self.precommit:
                continue
            span = self.live.spans[sid]
            applied = self.applied.get(sid, [])
            if span.kind not in ("inner", "wrap") or any(lo <= s < hi for lo, hi in applied):
                continue
            for lo, hi in freed_slots(span, self.n):
                if lo <= s < hi:
                    end = min([hi, *(a for a, b in applied if b > a and a > s)])
                    if best is None or span.bytes > best[1]:
                        best = (sid, span.bytes, end)
        if best is None:
            return 0
        sid, nbytes, end = best
        self.applied.setdefault(sid, []).append((s, end))
        delta[end] += nbytes
        return int(nbytes)

    def _infeasible(self, s: int, cur: int) -> None:
        op = self.g.ops[s]
        raise InfeasibleError(
            f"{self.C} cannot fit op '{op.id}': {format_bytes(cur)} must be resident there (inputs, outputs and "
            f"tensors whose idle time is too short to move or that no lower tier has room for) but {self.C} holds "
            f"{format_bytes(self.cap)}",
            op=op.id, tier=self.C, need_bytes=cur, have_bytes=self.cap,
        )

    # ------------------------------------------------------------------------------ explanations
    def explain(self) -> tuple[Decision, ...]:
        out: list[Decision] = []
        uses = self.live.uses
        for span in self.live.spans:
            action, tier = self.choice.get(span.id, ("keep", self.C))
            idle = self.idle_s(span)
            terms: dict[str, float] = {
                "order": float(ORDERS.index(self.order)),
                "bytes_freed": float(span.bytes) if action != "keep" else 0.0,
                "idle_s": idle,
                "access_count": float(len(uses[span.tensor])),
            }
            if self.tiers:
                _, exposed, wb, pf = self.regions(span, tier if action == "offload" else self.tiers[0])
                terms.update(transfer_s=wb + pf, exposed_s=exposed if action != "recompute" else 0.0)
            if recompute_ok(self.g, self.live, span.id):
                terms["recompute_s"] = float(self.dur[self.g.producer[span.tensor]])
            extra = self.terms.get(span.id, {})
            score = (terms["bytes_freed"] * idle) / (1e-9 + terms.get("exposed_s", 0.0) + terms.get("recompute_s", 0.0) * (action == "recompute"))
            out.append(Decision(span.tensor, span.start_op, span.end_op, action, tier, score,
                                terms | ({"chosen_at_op": extra["chosen_at_op"]} if extra else {}),
                                self._reason(span, action, tier, terms)))
        return tuple(out)

    def _reason(self, span: Span, action: str, tier: str, terms: Mapping[str, float]) -> str:
        size = format_bytes(span.bytes)
        idle = format_time(terms["idle_s"])
        if action == "keep":
            return f"kept in {self.C}: room enough while it waits {idle}" if span.id not in self.pinned else \
                f"kept in {self.C}: a recompute needs it"
        if action == "recompute":
            return (f"dropped and recomputed ({format_time(terms.get('recompute_s', 0.0))} of compute) instead of "
                    f"moving {size}")
        exposed = terms.get("exposed_s", 0.0)
        hidden = "fully hidden" if exposed <= 0 else f"{format_time(exposed)} not hidden"
        return f"moved to {tier} while idle for {idle}: frees {size}; copies take {format_time(terms.get('transfer_s', 0.0))} ({hidden})"


#: Orders in which the sweep ranks the spans covering an over-full op: exposed time per byte-second freed
#: (the cost model), farthest relief first (Belady), heaviest span first (bytes x idle ops), longest idle
#: time first.
ORDERS = ("cost", "reach", "weight", "idle")


def recompute_setup(graph: Graph, hw: Hardware, live: Liveness, only: Mapping[int, tuple[str, str]] | None = None,
                    *, multi_output: bool = False) -> tuple[dict[str, tuple[int, ...]], list[Span]]:
    """Spans cheaper to recompute than to move, and the extra reads that makes. With ``only`` (a plan's
    choices), just the spans that plan moves: recomputing a span it keeps would only cost time.

    A span qualifies when its producer may be recomputed (one output, no in-place update; with
    ``multi_output`` also producers whose other outputs are dead by then, see
    :func:`core.spans.recompute_blocker`) and takes at most half the time of the tensor's round trip to the
    fastest lower tier. Re-running the producer just before the span's end needs the producer's inputs
    there, so each becomes an extra use at that op (the liveness splits their spans around it, and they may
    still move in between). Chains are left out: a span whose producer reads another recomputed tensor is
    not taken.
    """
    if not hw.offload_tiers or not live.n_ops:
        return {}, []
    C, fastest = hw.compute_tier, hw.offload_tiers[0]
    dur = op_durations(graph, hw)
    chosen: list[Span] = []
    for span in live.spans:
        if span.kind != "inner" or span.bytes == 0 or live.span_length_ops(span) < 2:
            continue
        if not recompute_ok(graph, live, span.id, multi_output=multi_output):
            continue
        if only is not None and only.get(span.id, ("keep",))[0] != "offload":
            continue
        q = graph.producer[span.tensor]
        round_trip = hw.route_time_s(C, fastest, span.bytes) + hw.route_time_s(fastest, C, span.bytes)
        if dur[q] <= 0.5 * round_trip:
            chosen.append(span)
    tensors = {s.tensor for s in chosen}
    chosen = [s for s in chosen if not any(x in tensors for x in graph.ops[graph.producer[s.tensor]].inputs)]
    if multi_output:  # a re-run's extra read must not revive another re-run's spare output: biggest first
        kept: list[Span] = []
        reads: dict[str, int] = {}  # tensor -> latest re-run reading it
        spares: dict[str, int] = {}  # spare output -> earliest re-run regenerating it
        for s in sorted(chosen, key=lambda s: -s.bytes):
            inputs = graph.ops[graph.producer[s.tensor]].inputs
            mine = spare_outputs(graph, s)
            if any(s.end_op >= spares.get(x, live.n_ops + 1) for x in inputs) or \
                    any(reads.get(y, -1) >= s.end_op for y in mine):
                continue
            kept.append(s)
            for x in inputs:
                reads[x] = max(reads.get(x, -1), s.end_op)
            for y in mine:
                spares[y] = min(spares.get(y, live.n_ops + 1), s.end_op)
        chosen = sorted(kept, key=lambda s: s.id)
    extra: dict[str, list[int]] = {}
    for s in chosen:
        for x in graph.ops[graph.producer[s.tensor]].inputs:
            if s.end_op not in live.uses[x]:
                extra.setdefault(x, []).append(s.end_op)
    return {x: tuple(sorted(set(v))) for x, v in extra.items()}, chosen


#: Ranking orders tried after the up-front recomputes (Belady's wins on llama2-7b-train at 30-50 % on
#: h100-sxm, the cost model on resnet50-train at 30 % on t4-flexgen; the other two never won there).
_RECOMPUTE_ORDERS = ("reach", "cost")
#: How many of the fastest candidates get the scheduler's refining passes before the portfolio picks one: the
#: first pass ranks them poorly in link-bound steps (llama2-7b-train at 50 % on h100-sxm: the fastest at the
#: first pass, 1.19 s, refines to 0.92 s, the fourth, 1.22 s, to 0.85 s; the three fastest of the recompute
#: variants' candidates measured as good as all of them). Graphs above ``_REFINE_MAX_OPS``
#: ops skip it (its cost grows with the graph; the planner still refines its winner).
_REFINE_TOP, _REFINE_MAX_OPS = 3, 20_000
_REFINE_TOP_SMALL, _REFINE_ALL_OPS = 6, 1_000
#: The up-front recomputes are tried on a setup (host placement) only when its plain sweep came within this
#: factor of the best one.
_SETUP_SLACK = 1.5
#: Spans at least this fraction of the step long are the activations worth moving up front (see
#: :func:`long_offloads`).
_LONG_SPAN = 0.125


def long_offloads(graph: Graph, hw: Hardware, live: Liveness, precommit: Mapping[int, tuple[str, str]],
                  op_tiers: Mapping[int, str]) -> dict[int, tuple[str, str]] | None:
    """``precommit`` plus every long idle span of a non-persistent tensor (an activation stashed across the
    forward/backward boundary, at least :data:`_LONG_SPAN` of the ops) moved to the fastest lower tier, or
    None when there is none. In a training step the link out of the compute tier idles during the forward
    pass (the optimizer state only becomes dirty in backward): moving activations then, rather than more
    optimizer state later, shortens the link-bound tail (llama2-7b-train at 50 % on h100-sxm: 0.85 s ->
    0.81 s). Left out: tensors host ops read, and anything when the lower tier would fill past half."""
    if not hw.offload_tiers or not live.n_ops:
        return None
    tier = hw.offload_tiers[0]
    host_read = {x for i in op_tiers for x in graph.ops[i].inputs}
    least = max(2, int(live.n_ops * _LONG_SPAN))
    out = dict(precommit)
    total = 0
    for span in live.spans:
        if span.kind != "inner" or span.id in out or span.bytes == 0 or span.tensor in host_read:
            continue
        if graph.tensor_by_id[span.tensor].persistent or live.span_length_ops(span) < least:
            continue
        out[span.id] = ("offload", tier)
        total += span.bytes
    if len(out) == len(precommit) or total > 0.5 * hw.capacity(tier):
        return None
    return out


#: The up-front recomputes must take at least this share off the compute tier's worst excess over capacity
#: (llama2-7b-train at 50 %: 30 %, resnet50-train: 16 %; llama3-70b-train, already checkpointed: none).
_MIN_RELIEF = 0.05


def _relieves_peak(graph: Graph, hw: Hardware, live: Liveness, rc: tuple[Liveness, dict[int, tuple[str, str]]],
                   params: Mapping[str, Any], op_tiers: Mapping[int, str]) -> bool:
    """Whether the recomputes of ``rc`` (from :func:`recompute_precommit`) lower the worst excess of the
    no-offload occupancy over the compute tier's room by :data:`_MIN_RELIEF` (else they only cost compute)."""
    planner = _Tierplan(graph, hw, rc[0], params, "cost", op_tiers, {}, rc[1])
    before = int(live.keep_bytes.max()) - planner.cap
    after = int(planner._precommitted(rc[0].keep_bytes).max()) - planner.cap
    return before <= 0 or before - after >= _MIN_RELIEF * before


def _refine_top(graph: Graph, hw: Hardware, params: Mapping[str, Any], ranked: list[_Candidate]) -> list[_Candidate]:
    """``ranked`` with the first :data:`_REFINE_TOP` rescheduled with the refining passes (each kept only
    when faster), ranked again. On graphs of up to :data:`_REFINE_ALL_OPS` ops the first
    :data:`_REFINE_TOP_SMALL` all are (tiny on teaching: the fifth, 0.23 s, refines to 0.20 s, the first
    not at all); on bigger ones a runner-up is refined only when the first one's gain from refining, applied
    to it with half again to spare, could make it the fastest (deepseek-v3-decode: the passes gain little
    there, so the runners-up are left alone)."""
    small = len(graph.ops) <= _REFINE_ALL_OPS
    count = _REFINE_TOP_SMALL if small else _REFINE_TOP
    top = []
    gain = 0.0
    best = float("inf")
    for k, c in enumerate(ranked[:count]):
        if k and not small and c.step_s * (1.0 - 1.5 * gain) >= best:
            top.append(c)
            continue
        p = c.planner
        sched = build_schedule(graph, hw, p.live, c.placement.assignment, params, p.op_tiers, refine=True)
        step = schedule_end_s(sched)
        if k == 0:
            gain = max(0.0, 1.0 - step / c.step_s) if c.step_s > 0 else 0.0
        best = min(best, step, c.step_s)
        top.append(replace(c, step_s=step, schedule=sched, refined=True) if step < c.step_s else
                   replace(c, refined=True))
    return sorted(top, key=lambda c: (c.step_s, c.moved_bytes)) + ranked[count:]


def recompute_precommit(graph: Graph, hw: Hardware, live: Liveness, only: Mapping[int, tuple[str, str]] | None,
                        *, multi_output: bool = False) -> tuple[Liveness, dict[int, tuple[str, str]]] | None:
    """The liveness with :func:`recompute_setup`'s extra reads and its recomputes as decisions on that
    liveness (span ids change when spans split), or None when nothing qualifies. A span whose re-run the
    extra reads make illegal (a sibling output read again later) is left to the sweep."""
    extra, chosen = recompute_setup(graph, hw, live, only=only, multi_output=multi_output)
    if not chosen:
        return None
    rc_live = analyze(graph, host_ops=live.host_ops, extra_uses={
        k: tuple(sorted(set(extra.get(k, ())) | set(live.extra_uses.get(k, ()))))
        for k in set(extra) | set(live.extra_uses)})
    ids = {(s.tensor, s.start_op, s.end_op): s.id for s in rc_live.spans}
    precommit = {}
    for s in chosen:
        sid = ids.get((s.tensor, s.start_op, s.end_op))
        if sid is not None and recompute_ok(graph, rc_live, sid, multi_output=multi_output):
            precommit[sid] = ("recompute", hw.compute_tier)
    return (rc_live, precommit) if precommit else None


@dataclass(frozen=True)
class _Candidate:
    """One scheduled sweep result of the portfolio."""

    step_s: float
    moved_bytes: int
    placement: Placement
    order: str
    planner: _Tierplan
    schedule: Schedule
    #: the refining passes were tried (:func:`_refine_top`)
    refined: bool = False

    def as_placement(self, *, explained: bool) -> Placement:
        """The candidate as the policy's answer; runner-ups are explained only if they are used."""
        p = self.planner
        return Placement(self.placement.assignment, p.explain() if explained else (), p.op_tiers, p.live,
                         self.schedule, explain_later=None if explained else p.explain, refined=self.refined)


def decide_tierplan(graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any]) -> Placement:
    """Run the sweep under each ranking order — with the eligible optimizer ops on the host tier's own
    compute and without — schedule every candidate with the real scheduler and keep the fastest (ties:
    fewer bytes moved). Then try the winner once more with the cheap-to-recompute spans recomputed up
    front (:func:`recompute_setup`), and keep that if it is faster. The decisions record the order; the
    other distinct candidates come back as ``alternatives``, best first."""
    orders = ORDERS if int(params.get("portfolio", 1)) else ORDERS[:1]
    setups: list[tuple[Liveness, dict[int, str]]] = [(live, {})]
    host = host_candidates(graph, hw) if int(params.get("host_compute", 1)) else None
    if host is not None:
        tier, ops = host
        setups.append((analyze(graph, host_ops=ops), dict.fromkeys(ops, tier)))
    found: list[_Candidate] = []
    failure: InfeasibleError | None = None

    def attempt(setup_live: Liveness, op_tiers: dict[int, str], order: str, cache: dict[Any, Any],
                tried: dict[Any, float], precommit: dict[int, tuple[str, str]] | None = None) -> bool:
        nonlocal failure
        try:
            planner = _Tierplan(graph, hw, setup_live, params, order, op_tiers, cache, precommit)
            placement = planner.run()
            key = tuple(sorted(placement.assignment.items()))
            if key in tried:  # another order reached the same decisions: same schedule
                return True
            sched = build_schedule(graph, hw, setup_live, placement.assignment, params, op_tiers, refine=False)
        except InfeasibleError as exc:
            failure = failure or exc
            return True
        step = schedule_end_s(sched)
        tried[key] = step
        moved = sum(setup_live.spans[sid].bytes for sid, (action, _) in placement.assignment.items()
                    if action == "offload")
        found.append(_Candidate(step, moved, placement, order, planner, sched))
        return bool(placement.assignment or op_tiers)

    def best() -> _Candidate:
        return min(found, key=lambda c: (c.step_s, c.moved_bytes))

    for setup_live, op_tiers in setups:
        cache: dict[Any, Any] = {}
        tried: dict[Any, float] = {}
        for order in orders:
            if not attempt(setup_live, op_tiers, order, cache, tried):
                break  # nothing had to move: every order gives the same plan
    if not found:
        assert failure is not None
        raise failure
    top = best()
    if top.placement.assignment and int(params["recompute"]):
        winner = top.planner
        rc = recompute_precommit(graph, hw, winner.live, winner.choice)
        if rc is not None:
            attempt(rc[0], dict(winner.op_tiers), top.order, {}, {}, rc[1])
    if int(params["recompute"]) and found and any(c.placement.assignment for c in found):
        # activation recomputation first (every cheap re-run, several outputs allowed), then the sweep moves
        # the rest: re-runs free memory without link traffic, and in link-bound training steps the traffic,
        # not the compute, sets the step time (llama2-7b-train at 50 %: 1.31 s -> see docs/results.md)
        lead = best().step_s
        for setup_live, op_tiers in setups:
            own = [c.step_s for c in found if c.planner.live is setup_live]
            if not own or min(own) > _SETUP_SLACK * lead:
                continue  # (host Adam on llama2-7b-train: 3.7 s against 1.2 s; not worth a second look)
            rc = recompute_precommit(graph, hw, setup_live, None, multi_output=True)
            if rc is None or not _relieves_peak(graph, hw, setup_live, rc, params, op_tiers):
                continue
            for precommit in (rc[1], long_offloads(graph, hw, rc[0], rc[1], op_tiers)):
                if precommit is None:
                    continue
                cache = {}
                tried = {}
                for order in _RECOMPUTE_ORDERS:
                    attempt(rc[0], dict(op_tiers), order, cache, tried, precommit)
    ranked = sorted(found, key=lambda c: (c.step_s, c.moved_bytes))  # stable: first found wins ties
    # with one ranking order (the anytime planner's fast first plan) only the winner is refined, by the planner:
    # refining the runners-up here cost 40 % of that plan's time on llama2-7b-train
    if len(ranked) > 1 and graph.ops and len(graph.ops) <= _REFINE_MAX_OPS and int(params.get("portfolio", 1)):
        ranked = _refine_top(graph, hw, params, ranked)
    first = ranked[0].as_placement(explained=True)
    return replace(first, alternatives=tuple(c.as_placement(explained=False) for c in ranked[1:]))


TIERPLAN = PolicyInfo(
    key="tierplan",
    title="Tierplan (cost model)",
    description="Whole-graph planner: relieves each over-capacity op with the idle span that frees the most "
    "byte-seconds per second of exposed copy or recompute time, given link time already committed; tries "
    "four ranking orders, with and without optimizer updates on the host CPUs, and keeps the fastest schedule.",
    source="This project; in the spirit of HyperOffload (MindSpore 2.8, arXiv 2602.00748).",
    params=(
        ParamSpec("prefetch_slack", "Prefetch slack", 0.25, 0.0, 2.0,
                  "Start copy-ins earlier by this fraction of their duration, if memory allows."),
        ParamSpec("hbm_reserve", "HBM reserve", 0.0, 0.0, 0.5, "Fraction of the compute tier kept free."),
        ParamSpec("recompute", "Allow recompute", 1, 0, 1, "Recompute cheap activations instead of moving them.",
                  integer=True),
        ParamSpec("host_compute", "Allow host compute", 1, 0, 1,
                  "Also try running optimizer updates on the host CPUs (as ZeRO-Offload does) and keep it if faster.",
                  integer=True),
        ParamSpec("baselines", "Baselines as candidates", 2, 0, 2,
                  "Schedule each baseline's plan (its own default parameters) as a candidate: 2 always (keep it "
                  "when it is the fastest valid one), 1 only when the portfolio finds no valid plan, 0 never.",
                  integer=True),
        ParamSpec("portfolio", "Try all ranking orders", 1, 0, 1,
                  "Plan with each ranking order (cost model, Belady, span weight, idle time) and keep the fastest "
                  "schedule.",
                  integer=True),
    ),
    decide=decide_tierplan,
)
