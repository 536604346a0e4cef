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
from core.spans import covering_span, freed_slot_ranges, idle_s, recompute_ok, span_kind_codes, spare_outputs
from core.units import format_bytes, format_time

__all__ = ["TIERPLAN", "ORDERS", "decide_tierplan", "recompute_setup", "recompute_precommit", "long_offloads"]



#: Capacities above this are clipped for the compiled sweep's int64 arithmetic (no graph holds 2**62 bytes).
_BIG_BYTES = 2**62


@dataclass(frozen=True)
class _SpanTable:
    """One liveness's spans as flat arrays (index = span id), with their geometry on every lower tier
    (``rg_*`` at ``tier * n_spans + id``; two compacted ranges per row, see :func:`core.spans.freed_slot_ranges`).
    It depends only on the liveness, the hardware, the slack and the host ops' tiers, so every ranking order
    of one setup and the explanations share it (built once instead of per order and per span)."""

    nbytes: np.ndarray
    kind: np.ndarray
    start: np.ndarray
    end: np.ndarray
    length_ops: np.ndarray
    #: the ``weight`` order's key: bytes x ops idle, negated
    weight: np.ndarray
    idle_s: np.ndarray
    #: the only lower tier the span may move to (host ops read it there), -1: any
    only: np.ndarray
    recompute_ok: np.ndarray
    #: the producer's duration, for spans that may be recomputed
    recompute_s: np.ndarray
    fs_n: np.ndarray
    fs_lo: np.ndarray
    fs_hi: np.ndarray
    lw_lo: np.ndarray
    lw_hi: np.ndarray
    lk_lo: np.ndarray
    lk_hi: np.ndarray
    rg_n: np.ndarray
    rg_lo: np.ndarray
    rg_hi: np.ndarray
    rg_exposed_s: np.ndarray
    rg_wb_s: np.ndarray
    rg_pf_s: np.ndarray


def _span_table(p: _Tierplan) -> _SpanTable:
    """:class:`_SpanTable` of a planner's liveness: the copy times and hidden regions per tier are the numpy
    form of the per-span arithmetic (same operations in the same order, so the same floats)."""
    g, live, hw, T, n, C = p.g, p.live, p.hw, p.T, p.n, p.C
    spans = live.spans
    m = len(spans)
    nbytes = np.fromiter((sp.bytes for sp in spans), dtype=np.int64, count=m)
    kind = span_kind_codes(spans)
    a = np.fromiter((sp.start_op for sp in spans), dtype=np.int64, count=m)
    b = np.fromiter((sp.end_op for sp in spans), dtype=np.int64, count=m)
    inner, initial, wrap, unused = (kind == k for k in range(4))
    length = np.where(wrap, n - a - 1 + b, b - a - 1)
    weight = -nbytes.astype(np.float64) * np.maximum(np.where(unused, n, length), 1)
    fs_n, fs_lo, fs_hi = freed_slot_ranges(kind, a, b, n)
    d = T[fs_hi] - T[fs_lo]
    idle = np.where(fs_n >= 1, d[:, 0], 0.0) + np.where(fs_n >= 2, d[:, 1], 0.0) if m else np.zeros(0)
    persistent = np.fromiter((g.tensor_by_id[sp.tensor].persistent for sp in spans), dtype=bool, count=m)
    mutated = np.fromiter((bool(live.mutations.get(sp.tensor)) for sp in spans), dtype=bool, count=m)
    dirty = ~(initial | unused) & np.where(persistent, mutated, True)  # core.spans.is_dirty
    whole = wrap | unused | persistent  # core.spans.lower_window
    lw_lo = np.where(whole, 0, np.maximum(a + 1, 0))
    lw_hi = np.where(whole, n, np.minimum(b + 1, n))
    # op slots whose link time a span's copy-out and copy-in are charged to: the idle span itself, and for
    # spans that start the step elsewhere (wrap, initial) the ops before the first use, where the copy-in
    # must happen. Charging a wrap span's copy-out there too (rather than after its last use) is a
    # heuristic; it measured better on the samples and the synthetic benchmark (the real schedule judges
    # the portfolio anyway).
    lk_lo = np.where(inner, a + 1, 0)
    lk_hi = np.where(inner, b, np.maximum(b, 1))
    tier_of = {t: k for k, t in enumerate(p.tiers)}
    only = np.fromiter((tier_of[p.only_tier[sp.tensor]] if sp.tensor in p.only_tier else -1 for sp in spans),
                       dtype=np.int64, count=m)
    rc_ok = np.zeros(m, dtype=bool)
    rc_s = np.zeros(m)
    for k in np.flatnonzero(inner):
        if recompute_ok(g, live, int(k)):
            rc_ok[k] = True
            rc_s[k] = float(p.dur[g.producer[spans[k].tensor]])
    n_t = len(p.tiers)
    rg_n = np.zeros(n_t * m, dtype=np.int64)
    rg_lo = np.zeros(2 * n_t * m, dtype=np.int64)
    rg_hi = np.zeros(2 * n_t * m, dtype=np.int64)
    rg_exp, rg_wb, rg_pf = np.zeros(n_t * m), np.zeros(n_t * m), np.zeros(n_t * m)
    size = nbytes.astype(np.float64)
    bb = np.clip(b, 0, n)
    a1 = np.clip(a + 1, 0, n)
    for ti, tier in enumerate(p.tiers):
        wb = np.zeros(m)
        for link in hw.route(C, tier):
            wb += link.latency_s + size / link.bandwidth_Bps
        wb = np.where(dirty, wb, 0.0)
        pf = np.zeros(m)
        for link in hw.route(tier, C):
            pf += link.latency_s + size / link.bandwidth_Bps
        pos = np.searchsorted(T[:n], T[bb] - pf * (1 + p.slack), side="right") - 1
        pos = np.maximum(0, np.minimum(pos, b))
        r = np.where(wb > 0, np.searchsorted(T[:n], T[a1] + wb, side="left"), a + 1)
        r = np.minimum(np.maximum(r, a + 1), n)
        exposed = np.where(initial, np.maximum(0.0, pf - T[bb]), 0.0)
        exposed = np.where(wrap, np.maximum(0.0, wb - (T[n] - T[a1])) + np.maximum(0.0, pf - T[bb]), exposed)
        exposed = np.where(inner, np.maximum(0.0, wb + pf - (T[bb] - T[a1])), exposed)
        # hidden regions: unused (0, n); initial (0, p); wrap (0, p) and (r, n); inner (r, p); empty ones dropped
        lo0 = np.where(inner, r, 0)
        hi0 = np.where(unused, n, np.where(inner, pos, pos))
        ok0 = hi0 > lo0
        ok1 = wrap & (n > r)
        rows = slice(ti * m, (ti + 1) * m)
        rg_n[rows] = ok0.astype(np.int64) + ok1
        first_lo = np.where(ok0, lo0, np.where(ok1, r, 0))
        first_hi = np.where(ok0, hi0, np.where(ok1, n, 0))
        both = ok0 & ok1
        rg_lo[2 * ti * m:2 * (ti + 1) * m:2], rg_hi[2 * ti * m:2 * (ti + 1) * m:2] = first_lo, first_hi
        rg_lo[2 * ti * m + 1:2 * (ti + 1) * m:2] = np.where(both, r, 0)
        rg_hi[2 * ti * m + 1:2 * (ti + 1) * m:2] = np.where(both, n, 0)
        rg_exp[rows] = np.where(unused, 0.0, exposed)
        rg_wb[rows] = np.where(unused | initial, 0.0, wb)
        rg_pf[rows] = np.where(unused, 0.0, pf)
    return _SpanTable(nbytes, kind, a, b, length, weight, idle, only, rc_ok, rc_s, fs_n, fs_lo.ravel(),
                      fs_hi.ravel(), lw_lo, lw_hi, lk_lo, lk_hi, rg_n, rg_lo, rg_hi, rg_exp, rg_wb, rg_pf)


class _Tierplan:
    def __init__(self, graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any], order: str = "cost",
                 op_tiers: Mapping[int, str] | None = None, region_cache: dict[str, Any] | None = None,
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
        self.choice: dict[int, tuple[str, str]] = {}
        self.terms: dict[int, dict[str, float]] = {}
        self.pinned: set[int] = set()
        # span geometry depends only on the liveness, the hardware and the slack: shared across orders
        self._cache = region_cache if region_cache is not None else {}

    # ------------------------------------------------------------------------------ span geometry
    # (the geometry itself is core.spans'; the table binds it to this graph and its modelled slot starts)
    @property
    def table(self) -> _SpanTable:
        table: _SpanTable | None = self._cache.get("table")
        if table is None:
            table = self._cache["table"] = _span_table(self)
        return table

    def idle_s(self, span: Span) -> float:
        return idle_s(span, self.T)

    def regions(self, span: Span, tier: str) -> tuple[list[tuple[int, int]], float, float, float]:
        """Slots freed when hiding the copies (empty ranges dropped), exposed seconds, copy-out and copy-in
        seconds of moving ``span`` to ``tier``."""
        tab = self.table
        k = self.tiers.index(tier) * len(tab.nbytes) + span.id
        ranges = [(int(tab.rg_lo[2 * k + j]), int(tab.rg_hi[2 * k + j])) for j in range(int(tab.rg_n[k]))]
        return ranges, float(tab.rg_exposed_s[k]), float(tab.rg_wb_s[k]), float(tab.rg_pf_s[k])

    # ------------------------------------------------------------------------------ the sweep
    def run(self) -> Placement:
        """Sweep the ops (:func:`core.kernels.tierplan_sweep`: the greedy relief of every over-full op, then
        the reverse delete) and record the choices."""
        live, n, cap = self.live, self.n, self.cap
        keep = live.keep_bytes
        if self.precommit:
            keep = self._precommitted(keep)
            self.choice.update(self.precommit)
        if n == 0 or keep.max() <= cap:
            return Placement(dict(self.choice))
        tab = self.table
        m, n_t = len(tab.nbytes), len(self.tiers)
        e_sid, e_lo, e_hi, e_kind, static = self._entries(tab)
        e_ptr = np.zeros(n + 2, dtype=np.int64)
        np.cumsum(np.bincount(e_lo, minlength=n + 1)[:n + 1], out=e_ptr[1:])
        pin_bad, pin_ptr, pin_sid = self._pins(tab)
        act = np.zeros(m, dtype=np.int64)
        act_tier = np.full(m, -1, dtype=np.int64)
        for sid, (action, _) in self.precommit.items():
            act[sid] = kernels.ACT_RECOMPUTE if action == "recompute" else kernels.ACT_OFFLOAD
        links = {(link.src, link.dst): k for k, link in enumerate(self.hw.links)}
        hop_out = np.array([links[(r[0].src, r[0].dst)] for r in (self.hw.route(self.C, t) for t in self.tiers)],
                           dtype=np.int64)
        hop_in = np.array([links[(r[0].src, r[0].dst)] for r in (self.hw.route(t, self.C) for t in self.tiers)],
                          dtype=np.int64)
        lower_cap = np.array([min(self.lower_cap[t], _BIG_BYTES) for t in self.tiers], dtype=np.int64)
        keep = np.asarray(keep, dtype=np.int64)
        pinned = np.zeros(m, dtype=bool)
        picks = np.zeros(m, dtype=np.int64)
        t_wb, t_pf, t_at = np.zeros(m), np.zeros(m), np.zeros(m)
        status, n_picks, s_bad, need = kernels.tierplan_sweep(
            use_compiled(n), ORDERS.index(self.order), n, m, n_t, min(cap, _BIG_BYTES), keep, self.T, tab.nbytes,
            tab.kind, tab.start, tab.end, tab.weight, tab.idle_s, tab.only, tab.recompute_s, tab.fs_n, tab.fs_lo,
            tab.fs_hi, tab.lw_lo, tab.lw_hi, tab.lk_lo, tab.lk_hi, tab.rg_n, tab.rg_lo, tab.rg_hi, tab.rg_exposed_s,
            tab.rg_wb_s, tab.rg_pf_s, static, e_ptr, e_sid, e_lo, e_hi, e_kind, pin_bad, pin_ptr, pin_sid,
            lower_cap, np.zeros(n_t, dtype=np.int64), hop_out, hop_in, np.zeros((len(links), n + 2)),
            np.zeros((len(links), n + 2)), np.zeros(n + 1, dtype=np.int64), np.full(m, -1, dtype=np.int64), act,
            act_tier, pinned, picks, t_wb, t_pf, t_at, np.zeros(n_t * (n + 1), dtype=np.int64), keep.copy())
        if status:
            self._infeasible(int(s_bad), int(need))
        for sid in picks[:n_picks].tolist():
            if act[sid] == kernels.ACT_KEEP:
                continue  # undone by the reverse delete
            self.choice[sid] = ("recompute", self.C) if act[sid] == kernels.ACT_RECOMPUTE else \
                ("offload", self.tiers[act_tier[sid]])
            self.terms[sid] = {"wb_s": float(t_wb[sid]), "pf_s": float(t_pf[sid]), "chosen_at_op": float(t_at[sid])}
        self.pinned = set(np.flatnonzero(pinned).tolist())
        return Placement(dict(self.choice))

    def _entries(self, tab: _SpanTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Heap entries (span, first slot, end slot, kind, static cost), sorted by first slot: each region
        where the span's copies hide on the fastest tier, each further slot range it frees if its copies may
        stall the compute ("forced"), and the recompute of the spans that may be. The static cost is the
        exposure on the fastest tier with empty links, a lower bound of the re-scored one."""
        m = len(tab.nbytes)
        ids = np.arange(m, dtype=np.int64)
        live = (tab.nbytes != 0) & ((tab.length_ops > 0) | (tab.kind == kernels.SP_UNUSED))
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]] = []
        if self.tiers:
            h_lo, h_hi = tab.rg_lo[:2 * m].reshape(m, 2), tab.rg_hi[:2 * m].reshape(m, 2)
            exposed, moved = tab.rg_exposed_s[:m], tab.rg_wb_s[:m] + tab.rg_pf_s[:m]
            for j in range(2):
                parts.append((live & (tab.rg_n[:m] > j), h_lo[:, j], h_hi[:, j], kernels.ENTRY_OFFLOAD, exposed))
        else:
            h_lo = h_hi = np.zeros((m, 2), dtype=np.int64)
            moved = np.zeros(m)
        f_lo, f_hi = tab.fs_lo.reshape(m, 2), tab.fs_hi.reshape(m, 2)
        for j in range(2):
            same = np.zeros(m, dtype=bool)
            for k in range(2):
                if self.tiers:
                    same |= (tab.rg_n[:m] > k) & (h_lo[:, k] == f_lo[:, j]) & (h_hi[:, k] == f_hi[:, j])
            parts.append((live & (tab.fs_n > j) & ~same, f_lo[:, j], f_hi[:, j], kernels.ENTRY_FORCED, moved))
        if self.allow_recompute:
            parts.append((live & tab.recompute_ok, tab.start + 1, tab.end, kernels.ENTRY_RECOMPUTE, tab.recompute_s))
        sid = np.concatenate([ids[mask] for mask, *_ in parts])
        lo = np.concatenate([lo[mask] for mask, lo, *_ in parts])
        hi = np.concatenate([hi[mask] for mask, _, hi, *_ in parts])
        kind = np.concatenate([np.full(int(mask.sum()), k, dtype=np.int64) for mask, _, _, k, _ in parts])
        cost = np.concatenate([c[mask] for mask, _, _, _, c in parts])
        by_slot = np.argsort(lo, kind="stable")
        return sid[by_slot], lo[by_slot], hi[by_slot], kind[by_slot], cost[by_slot]

    def _pins(self, tab: _SpanTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Recompute at the span end needs the producer's inputs there. Inputs the op at the span end reads
        anyway cost nothing; otherwise the input's idle span covering that op must stay in the compute tier
        (pinned), which is only accepted when that span lies inside this one (pinning a long span would cost
        more memory than the recompute frees). Per span: whether that rules it out (``bad``), and the spans
        to pin (CSR); whether they are still free to pin is the sweep's question."""
        m = len(tab.nbytes)
        bad = np.zeros(m, dtype=bool)
        counts = np.zeros(m + 1, dtype=np.int64)
        covers: list[int] = []
        if self.allow_recompute:
            spans, uses = self.live.spans, self.live.uses
            for sid in np.flatnonzero(tab.recompute_ok).tolist():
                span = spans[sid]
                b = span.end_op
                mine: list[int] = []
                for x in self.g.ops[self.g.producer[span.tensor]].inputs:
                    if b in uses[x]:
                        continue
                    cover = covering_span(self.live, x, b)
                    if cover is None or spans[cover].kind != "inner" or spans[cover].start_op < span.start_op \
                            or spans[cover].end_op > b + 1:
                        bad[sid] = True
                        break
                    mine.append(cover)
                if not bad[sid]:
                    covers.extend(mine)
                    counts[sid + 1] = len(mine)
        return bad, np.cumsum(counts), np.array(covers, dtype=np.int64)

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
