"""A proven lower bound on the step time of any plan in a given op order: an LP relaxation over idle spans.

Every valid plan (docs/formats.md, "Plan semantics") that runs the ops on the compute tier's stream in the
graph's order — with a given set of optimizer-style ops on a tier's own compute (``op_tiers``) — satisfies
the constraints below, so the LP optimum is at most its step time. :func:`lower_bound` solves it with
scipy's HiGHS; :func:`plan_lower_bound` takes the smaller bound over the host placements a planner may
choose, and :func:`guided_assignment` rounds the LP's fractions into decisions (issue 10, "guidance").

Model. The ops are grouped into ``K`` consecutive **blocks** (``K = n`` for small graphs, so each block is
one op). Block ``k`` lasts ``τ_k`` from the end of the op before it to the end of its last op; the last
block also holds the time after the last op until the step ends. The step time is ``Σ τ_k``.

* **Compute.** ``τ_k`` ≥ the modelled time of the block's compute-tier ops; ``Σ τ`` ≥ all of it plus the
  recomputes; each host tier's ops fit in ``Σ τ`` too.
* **Memory.** While op ``i`` runs (ops that take no time are skipped), the compute tier holds every tensor live at ``i`` (the no-offload
  occupancy ``keep_bytes``) except the idle spans not kept there. Each span ``s`` has an offload fraction
  ``o_s`` and a recompute fraction ``r_s`` (``o_s + r_s ≤ 1``) that count as away **for the whole span**:
  ``keep_i − Σ_{s ∋ i} bytes_s (o_s + r_s) ≤ capacity``.
* **Copies.** An offloaded span brings its bytes back over the links *into* the compute tier within its
  idle window (the blocks from the one after its previous use to the one of its next use; wrap-around spans
  of persistent tensors: through the step boundary). When the span holds a version created in this step
  on the compute tier (an output, or an in-place update there), that version must have been copied *out*
  once, between its creation and the end of the window; one copy-out serves every span of a version.
  Per block, copy-ins are at most the summed bandwidth of the links into the compute tier times ``τ_k``,
  copy-outs likewise for the links out of it.
* **Storage.** What is away at op ``i``, not recomputed and used again on the compute tier (tensors it
  never uses may stay below for good) has a copy in some lower tier (at most its
  capacity), and what sits in tier ``T`` must leave ``T`` over its out-links before its next use, within
  one step: ``bytes in T at i ≤ Σ out-bandwidth(T) × step``. (This is what makes a spill to SSD cost SSD
  time.)
* **Host ops.** An op on a host tier needs its compute-tier-produced inputs (gradients) copied out after
  they are produced, and a weight it updates that the compute tier reads again is copied back in before
  that read.
* **Recompute.** A span whose producer may be re-run (recomputable, updates nothing, no persistent output)
  may be dropped for ``duration(producer) / outputs(producer)`` of compute: one re-run regenerates each
  output once.

What is relaxed (why it is a bound and not a plan): fractional decisions; fluid copies (no latency, a copy's
bytes may split across blocks, copy-ins and copy-outs run at once); links aggregated per direction and per
block; a span counts as away for its whole idle window, even while its copy is still there or already
back; lower tiers only constrain what must leave them within a step, and staging copies and the other hops
of multi-hop routes are not constrained; a recompute's inputs
need not be present; and with ``K < n`` a span's copies may use whole blocks it only partly overlaps. Every
plan's step time is at least the bound; the bound is not always reachable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_array

from core.graph import Graph
from core.hardware import Hardware, op_time_s
from core.liveness import Liveness, Span, analyze
from core.plan import Plan
from core.schedule import estimate_slot_starts, op_durations
from core.spans import idle_s, recompute_ok

__all__ = ["Bound", "RELAXATIONS", "DEFAULT_MAX_BLOCKS", "lower_bound", "plan_lower_bound", "host_ops_of",
           "guided_assignment", "guided_plan", "with_bound"]

#: What the LP relaxes, for the UI and the docs.
RELAXATIONS = (
    "fractional keep / offload / recompute per idle span",
    "fluid copies: no latency, bytes split freely across the span's window, both directions at once",
    "links aggregated per direction (into / out of the compute tier) and per block of ops",
    "a span counts as away for its whole idle window; lower tiers only bound what must come back over their "
    "out-links within a step; staging copies are free",
    "a recompute's inputs need not be present; op order and host placement fixed",
)
#: Blocks of ops the LP works on; bigger graphs group consecutive ops (weaker but faster).
DEFAULT_MAX_BLOCKS = 32
#: Safety margin against the solver's feasibility tolerance (the bound is shaded down by this fraction).
_SHADE = 1e-6
#: Bytes below this fraction of the compute tier's capacity are below HiGHS's coefficient tolerance.
_TINY = 1e-7


@dataclass(frozen=True)
class Bound:
    """``lower_bound_s`` ≤ the step time of every valid plan in this order with these host ops.

    ``status``: ``optimal`` (LP solved), ``infeasible`` (no plan fits even in the relaxation) or
    ``fallback`` (the solver failed); in both of the latter the bound is the compute time alone. ``offload`` and
    ``recompute`` are the LP's fractions per span id of ``liveness`` (for guidance).
    """

    lower_bound_s: float
    status: str
    solve_time_s: float
    blocks: int
    variables: int
    rows: int
    op_tiers: Mapping[int, str] = field(default_factory=dict)
    offload: Mapping[int, float] = field(default_factory=dict)
    recompute: Mapping[int, float] = field(default_factory=dict)
    liveness: Liveness | None = None


class _LP:
    """Sparse LP builder: rows ``lo ≤ a·x ≤ hi``, objective ``c·x``, variables ≥ 0 with optional upper bound."""

    def __init__(self) -> None:
        self.ub: list[float] = []
        self.cost: list[float] = []
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.lo: list[float] = []
        self.hi: list[float] = []

    def var(self, ub: float = math.inf, cost: float = 0.0) -> int:
        self.ub.append(ub)
        self.cost.append(cost)
        return len(self.ub) - 1

    def row(self, terms: Iterable[tuple[int, float]], lo: float, hi: float) -> None:
        k = len(self.lo)
        for col, val in terms:
            if val:
                self.r.append(k)
                self.c.append(col)
                self.v.append(val)
        self.lo.append(lo)
        self.hi.append(hi)

    def solve(self) -> Any:
        n = len(self.ub)
        a = coo_array((self.v, (self.r, self.c)), shape=(len(self.lo), n)).tocsr()
        lo, hi = np.array(self.lo), np.array(self.hi)
        eq = lo == hi
        ub_rows = ~eq
        a_ub = []
        b_ub = []
        finite_hi = ub_rows & np.isfinite(hi)
        finite_lo = ub_rows & np.isfinite(lo)
        if finite_hi.any():
            a_ub.append(a[finite_hi])
            b_ub.append(hi[finite_hi])
        if finite_lo.any():
            a_ub.append(-a[finite_lo])
            b_ub.append(-lo[finite_lo])
        from scipy.sparse import vstack

        return linprog(
            c=np.array(self.cost),
            A_ub=vstack(a_ub).tocsr() if a_ub else None, b_ub=np.concatenate(b_ub) if b_ub else None,
            A_eq=a[eq] if eq.any() else None, b_eq=hi[eq] if eq.any() else None,
            bounds=np.column_stack([np.zeros(n), np.array(self.ub)]), method="highs",
        )


def _host_time_s(graph: Graph, hw: Hardware, op_index: int, tier: str) -> float:
    """Duration of an op run on ``tier``'s own compute, as the scheduler times it (inf: no compute)."""
    compute = hw.tier_by_name[tier].compute
    if compute is None:
        return math.inf
    return op_time_s(graph.ops[op_index], compute, hw.compute)


def _blocks(n: int, max_blocks: int) -> np.ndarray:
    """Block id of every op position (and of position ``n``, the time after the last op)."""
    k = max(1, min(n, max_blocks))
    blk = (np.arange(n + 1) * k) // max(n, 1)
    blk[n] = k - 1
    return np.minimum(blk, k - 1)


def _window(span: Span, n: int, blk: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Blocks (inclusive ranges) where the span's copy-in may run."""
    a, b = span.start_op, span.end_op
    if span.kind == "inner":
        return ((int(blk[a + 1]), int(blk[b])),)
    if span.kind == "initial":
        return ((0, int(blk[b])),)
    if span.kind == "wrap":
        late, early = (int(blk[a + 1]), int(blk[n])), (0, int(blk[b]))
        if early[1] + 1 >= late[0]:
            return ((0, int(blk[n])),)
        return (early, late)
    return ()


def _covered(span: Span, n: int) -> list[tuple[int, int]]:
    """Op ranges (half-open) the span relieves when away."""
    if span.kind == "inner":
        return [(span.start_op + 1, span.end_op)]
    if span.kind == "initial":
        return [(0, span.end_op)]
    if span.kind == "wrap":
        return [(span.start_op + 1, n), (0, span.end_op)]
    return [(0, n)]


def host_ops_of(events: Iterable[object], graph: Graph, compute_tier: str) -> dict[int, str]:
    """Op index -> tier for the ops a plan's events run on a tier other than the compute tier."""
    index = graph.op_index
    out: dict[int, str] = {}
    for e in events:
        tier = getattr(e, "tier", None)
        op = getattr(e, "op", None)
        if op is not None and tier and tier != compute_tier and not getattr(e, "recompute", False):
            out[index[op]] = tier
    return out


def lower_bound(graph: Graph, hw: Hardware, *, op_tiers: Mapping[int, str] | None = None,
                max_blocks: int = DEFAULT_MAX_BLOCKS, liveness: Liveness | None = None) -> Bound:
    """The LP bound (module docstring) for ``graph``'s op order with ``op_tiers`` on host tiers."""
    started = time.perf_counter()
    op_tiers = dict(op_tiers or {})
    host = frozenset(op_tiers)
    live = liveness if liveness is not None and liveness.host_ops == host else analyze(graph, host_ops=host)
    n = live.n_ops
    C = hw.compute_tier
    cap = hw.capacity(C)
    dur = op_durations(graph, hw)
    host_dur = {i: _host_time_s(graph, hw, i, t) for i, t in op_tiers.items()}
    for i in host:
        dur[i] = 0.0
    if n == 0:
        return Bound(0.0, "optimal", 0.0, 0, 0, 0, op_tiers, liveness=live)
    if any(math.isinf(v) for v in host_dur.values()):
        return Bound(math.inf, "infeasible", time.perf_counter() - started, 0, 0, 0, op_tiers, liveness=live)
    trivial = max([float(dur.sum())] + [sum(v for i, v in host_dur.items() if op_tiers[i] == t)
                                        for t in set(op_tiers.values())])
    if int(live.required_bytes.max()) > cap:
        return Bound(trivial, "infeasible", time.perf_counter() - started, 0, 0, 0, op_tiers, liveness=live)

    blk = _blocks(n, max_blocks)
    K = int(blk[n]) + 1
    unit_b = float(max(cap, 1))
    # time unit: large enough that every coefficient (bandwidth per unit time) is at most ~1 (HiGHS drops
    # tiny matrix entries, which would make a feasible model look infeasible)
    fastest = max((link.bandwidth_Bps for link in hw.links), default=1.0)
    unit_t = max(float(dur.sum()), trivial, unit_b / fastest, 1e-9)
    lp = _LP()
    tau = [lp.var(cost=1.0) for _ in range(K)]
    block_compute = np.zeros(K)
    np.add.at(block_compute, blk[:n], dur / unit_t)
    for k in range(K):
        lp.row([(tau[k], 1.0)], float(block_compute[k]), math.inf)
    for tier in sorted(set(op_tiers.values())):
        total = sum(v for i, v in host_dur.items() if op_tiers[i] == tier) / unit_t
        lp.row([(t, 1.0) for t in tau], total, math.inf)

    mutated_in_c = {tid: sorted(m) for tid, m in live.mutations.items() if m}
    producer = graph.producer
    spans = [s for s in live.spans if s.bytes > 0 and any(hi > lo for lo, hi in _covered(s, n))]
    # spans too small for the solver's coefficient tolerance count as away for free (a looser model)
    tiny = [s for s in spans if s.bytes < _TINY * unit_b]
    spans = [s for s in spans if s.bytes >= _TINY * unit_b]
    keep = np.asarray(live.keep_bytes, dtype=np.float64).copy()
    for s in tiny:
        for lo, hi in _covered(s, n):
            keep[lo:hi] -= s.bytes
    off: dict[int, int] = {}
    rec: dict[int, int] = {}
    rec_terms: list[tuple[int, float]] = []
    copy_in: dict[tuple[tuple[int, int], ...], list[tuple[int, float]]] = {}
    forced_in: dict[tuple[tuple[int, int], ...], float] = {}
    copy_out: dict[tuple[tuple[int, int], ...], list[tuple[int, float]]] = {}
    forced_out: dict[tuple[tuple[int, int], ...], float] = {}
    version_out: dict[tuple[str, int], tuple[int, list[int], int]] = {}  # (tensor, creation op) -> (var, spans, end)
    host_mutated = {x: i for i, op in ((i, graph.ops[i]) for i in sorted(host)) for x in op.mutates}
    for s in spans:
        size = s.bytes / unit_b
        o = off[s.id] = lp.var(ub=1.0)
        away = [(o, 1.0)]
        if _recomputable(graph, live, s):
            q = producer[s.tensor]
            r = rec[s.id] = lp.var(ub=1.0)
            away.append((r, 1.0))
            rec_terms.append((r, float(dur[q]) / max(1, len(graph.ops[q].outputs)) / unit_t))
            lp.row(away, 0.0, 1.0)
        win = _window(s, n, blk)
        if not win:
            continue
        refresh = s.tensor in host_mutated and _inside(s, host_mutated[s.tensor], n)
        if refresh:  # a host op updates it inside this span: the compute tier must get the new version
            forced_in[win] = forced_in.get(win, 0.0) + size
        else:
            copy_in.setdefault(win, []).append((o, size))
        if refresh:
            continue
        created = _creation(graph, live, s, mutated_in_c)
        if created is None:
            continue
        end = int(blk[s.end_op]) if s.kind == "inner" else K - 1
        key = (s.tensor, created)
        if key not in version_out:
            version_out[key] = (lp.var(ub=1.0), [], end)
        var, members, old_end = version_out[key]
        members.append(o)
        version_out[key] = (var, members, max(old_end, end))
    for (tid, created), (var, members, end) in version_out.items():
        for o in members:
            lp.row([(var, 1.0), (o, -1.0)], 0.0, math.inf)
        win = ((int(blk[created + 1]) if created + 1 <= n else K - 1, end),)
        if win[0][0] > win[0][1]:
            win = ((win[0][1], win[0][1]),)
        copy_out.setdefault(win, []).append((var, graph.tensor_by_id[tid].bytes / unit_b))
    # host ops: their compute-tier-produced inputs go out once after production
    for i in sorted(host):
        for x in graph.ops[i].inputs:
            if x in producer and producer[x] not in host and not graph.tensor_by_id[x].persistent:
                lo_blk = int(blk[min(producer[x] + 1, n)])
                win = ((lo_blk, K - 1),)
                forced_out[win] = forced_out.get(win, 0.0) + graph.tensor_by_id[x].bytes / unit_b

    bw_in = sum(link.bandwidth_Bps for link in hw.links if link.dst == C) * unit_t / unit_b
    bw_out = sum(link.bandwidth_Bps for link in hw.links if link.src == C) * unit_t / unit_b
    for bw, classes, forced in ((bw_in, copy_in, forced_in), (bw_out, copy_out, forced_out)):
        per_block: list[list[tuple[int, float]]] = [[] for _ in range(K)]
        for win in set(classes) | set(forced):
            weighted = classes.get(win, [])
            win_blocks = [k for lo, hi in win for k in range(lo, hi + 1)]
            flows = [lp.var() for _ in win_blocks]
            lp.row([*((f, 1.0) for f in flows), *((v, -c) for v, c in weighted)], forced.get(win, 0.0),
                   forced.get(win, 0.0))
            for k, f in zip(win_blocks, flows):
                per_block[k].append((f, 1.0))
        for k in range(K):
            if per_block[k]:
                if bw <= 0:
                    lp.row(per_block[k], 0.0, 0.0)
                else:
                    lp.row([*per_block[k], (tau[k], -bw)], -math.inf, 0.0)
    if rec_terms:
        lp.row([*((t, 1.0) for t in tau), *((r, -c) for r, c in rec_terms)], float(dur.sum()) / unit_t, math.inf)

    # memory: relief at op i = running sum of the away spans covering it (a chain of n variables)
    need = (keep - cap) / unit_b - _TINY
    starts: list[list[tuple[int, float]]] = [[] for _ in range(n + 1)]
    for s in spans:
        size = s.bytes / unit_b
        terms = [(off[s.id], size)] + ([(rec[s.id], size)] if s.id in rec else [])
        for lo, hi in _covered(s, n):
            if hi <= lo:
                continue
            starts[lo].extend(terms)
            starts[hi].extend((v, -c) for v, c in terms)
    # recompute relief alone (for the storage rows below)
    rec_starts: list[list[tuple[int, float]]] = [[] for _ in range(n + 1)]
    for s in spans:
        if s.id in rec:
            for lo, hi in _covered(s, n):
                if hi > lo:
                    rec_starts[lo].append((rec[s.id], s.bytes / unit_b))
                    rec_starts[hi].append((rec[s.id], -s.bytes / unit_b))
    # storage: what is away at op i and not to be recomputed has a copy in some lower tier, at most its
    # capacity; whatever sits in tier T must leave T (over T's out-links) before its next use, within one step
    lower = [t.name for t in hw.tiers if t.name != C]
    out_bw = {t: sum(link.bandwidth_Bps for link in hw.links if link.src == t) * unit_t / unit_b for t in lower}
    step = lp.var()
    lp.row([(step, 1.0), *((t, -1.0) for t in tau)], 0.0, 0.0)
    # tensors no compute-tier op uses may stay below for good: they never have to come back
    never_back = sum(sp.bytes for sp in spans if sp.kind == "unused") / unit_b
    relief_prev: int | None = None
    rec_prev: int | None = None
    for i in range(n):
        rv = lp.var()
        lp.row([(rv, 1.0), *([(relief_prev, -1.0)] if relief_prev is not None else []),
                *((v, -c) for v, c in starts[i])], 0.0, 0.0)
        relief_prev = rv
        if rec:
            cv = lp.var()
            lp.row([(cv, 1.0), *([(rec_prev, -1.0)] if rec_prev is not None else []),
                    *((v, -c) for v, c in rec_starts[i])], 0.0, 0.0)
            rec_prev = cv
        # (an op that takes no time has no instant at which its outputs must coexist with the rest: frees at
        # t come before allocations at t, so its row is left out)
        if need[i] > 0 and i not in host and dur[i] > 0:
            lp.row([(rv, 1.0)], float(need[i]), math.inf)
            if lower and need[i] > never_back:
                held = [(lp.var(ub=hw.capacity(t) / unit_b), t) for t in lower]
                lp.row([*((z, 1.0) for z, _ in held), *([(rec_prev, 1.0)] if rec_prev is not None else [])],
                       float(need[i] - never_back), math.inf)
                for z, t in held:
                    lp.row([(z, 1.0), (step, -out_bw[t])], -math.inf, 0.0)

    res = lp.solve()
    solve_s = time.perf_counter() - started
    status = int(getattr(res, "status", 4))
    if status == 2:  # no plan fits even in the relaxation; claim no more than the compute time
        return Bound(trivial, "infeasible", solve_s, K, len(lp.ub), len(lp.lo), op_tiers, liveness=live)
    if status != 0 or getattr(res, "fun", None) is None:
        return Bound(trivial, "fallback", solve_s, K, len(lp.ub), len(lp.lo), op_tiers, liveness=live)
    x = res.x
    # shaded by the solver's feasibility tolerance (1e-7 of the scaled units), relatively and absolutely
    value = max(float(res.fun) * (1 - _SHADE) - 1e-7, 0.0) * unit_t
    return Bound(max(value, trivial * (1 - _SHADE)), "optimal", solve_s, K, len(lp.ub), len(lp.lo), op_tiers,
                 {sid: float(x[v]) for sid, v in off.items()}, {sid: float(x[v]) for sid, v in rec.items()}, live)


def _inside(span: Span, i: int, n: int) -> bool:
    return any(lo <= i < hi for lo, hi in _covered(span, n))


def _recomputable(graph: Graph, live: Liveness, span: Span) -> bool:
    """Any plan may re-run the producer (the validator's rule): recomputable, no update, no persistent output."""
    if span.kind != "inner" or span.tensor not in graph.producer:
        return False
    q = graph.producer[span.tensor]
    op = graph.ops[q]
    return op.recomputable and not op.mutates and not any(graph.tensor_by_id[t].persistent for t in op.outputs) \
        and q not in live.host_ops


def _creation(graph: Graph, live: Liveness, span: Span, mutated_in_c: Mapping[str, Sequence[int]]) -> int | None:
    """Op that created (on the compute tier, in this step) the version the span holds; None when that
    version may already have a copy below (it existed at step start)."""
    if span.kind in ("initial", "unused"):
        return None
    muts = mutated_in_c.get(span.tensor, ())
    at = span.start_op
    before = [m for m in muts if m <= at]
    if before:
        return before[-1]
    if span.kind == "wrap" and muts:
        return muts[-1]
    return graph.producer.get(span.tensor)


def plan_lower_bound(graph: Graph, hw: Hardware, host_placements: Sequence[Mapping[int, str]] = ({},), *,
                     max_blocks: int = DEFAULT_MAX_BLOCKS) -> Bound:
    """The smallest :func:`lower_bound` over the given host placements: a bound on every plan in this order
    that uses one of them (the planner tries "none" and "every eligible optimizer op on the host")."""
    best: Bound | None = None
    seen: set[tuple[tuple[int, str], ...]] = set()
    for placement in host_placements:
        key = tuple(sorted(placement.items()))
        if key in seen:
            continue
        seen.add(key)
        b = lower_bound(graph, hw, op_tiers=placement, max_blocks=max_blocks)
        if best is None or b.lower_bound_s < best.lower_bound_s:
            best = b
    assert best is not None
    return best


def guided_assignment(graph: Graph, hw: Hardware, bound: Bound, *,
                      thresholds: Sequence[float] = (0.5, 0.25),
                      margins: Sequence[float] = (0.0, 0.05),
                      allow_recompute: bool = True) -> list[dict[int, tuple[str, str]]]:
    """Decisions from the LP's fractions, rounded at each threshold (lower = more moved, easier to fit):
    a span is recomputed when its recompute share passes the threshold and dominates, offloaded to the
    fastest lower tier when its offload share does; then repaired (:func:`_repair`) so that it fits the
    compute tier with each of ``margins`` to spare. The caller schedules each and keeps the fastest."""
    if bound.liveness is None or not hw.offload_tiers:
        return []
    live = bound.liveness
    tier = hw.offload_tiers[0]
    out: list[dict[int, tuple[str, str]]] = []
    for th in thresholds:
        a: dict[int, tuple[str, str]] = {}
        for sid, o in bound.offload.items():
            r = bound.recompute.get(sid, 0.0)
            if allow_recompute and r >= th and r >= o and recompute_ok(graph, live, sid):
                a[sid] = ("recompute", hw.compute_tier)
            elif max(o, r) >= th:
                a[sid] = ("offload", tier)
        # a re-run needs its producer's inputs in the compute tier: their covering spans stay there
        for sid, (action, _) in list(a.items()):
            if action != "recompute":
                continue
            span = live.spans[sid]
            for x in graph.ops[graph.producer[span.tensor]].inputs:
                for other in live.spans_of[x]:
                    if other in a and span.end_op in _ops_of(live.spans[other], live.n_ops):
                        a[sid] = ("offload", tier)
        for margin in margins:
            fixed = _repair(graph, hw, bound, a, margin)
            if fixed and fixed not in out:
                out.append(fixed)
    return out


def _repair(graph: Graph, hw: Hardware, bound: Bound, assignment: Mapping[int, tuple[str, str]],
            margin: float) -> dict[int, tuple[str, str]]:
    """Add offloads (largest LP share first, then largest span) until the no-offload occupancy minus what the
    decisions move away fits ``(1 - margin)`` of the compute tier at every op (the scheduler also needs
    room for copies in flight, hence the margin)."""
    live = bound.liveness
    assert live is not None
    n = live.n_ops
    a = dict(assignment)
    occ = np.asarray(live.keep_bytes, dtype=np.float64).copy()
    for sid in a:
        for lo, hi in _covered(live.spans[sid], n):
            occ[lo:hi] -= live.spans[sid].bytes
    target = hw.capacity(hw.compute_tier) * (1.0 - margin)
    if (occ <= target).all():
        return a
    tier = hw.offload_tiers[0]
    order = sorted((s for s in live.spans if s.id not in a and s.bytes > 0 and s.kind != "unused"),
                   key=lambda s: (-bound.offload.get(s.id, 0.0), -s.bytes))
    for s in order:
        ranges = [(lo, hi) for lo, hi in _covered(s, n) if hi > lo]
        if not any((occ[lo:hi] > target).any() for lo, hi in ranges):
            continue
        a[s.id] = ("offload", tier)
        for lo, hi in ranges:
            occ[lo:hi] -= s.bytes
        if (occ <= target).all():
            break
    return a


def _ops_of(span: Span, n: int) -> set[int]:
    return {i for lo, hi in _covered(span, n) for i in range(lo, hi)}



def with_bound(plan: Plan, graph: Graph, hw: Hardware, *, max_blocks: int = DEFAULT_MAX_BLOCKS,
               known: Bound | None = None) -> Plan:
    """``plan`` with ``lower_bound_s`` and ``gap_to_bound`` set; ``graph`` has its ops in the plan's order.

    The bound covers every plan in that order that runs no op on a host tier or the same ops there as
    ``plan`` does (the smaller of the two LPs), so a plan is never compared with a bound it is outside of.
    ``known``: the no-host-op bound of this graph, already solved.
    """
    own = host_ops_of(plan.events, graph, hw.compute_tier)
    if known is not None and not known.op_tiers:
        b = known
        if own:
            other = lower_bound(graph, hw, op_tiers=own, max_blocks=max_blocks)
            b = other if other.lower_bound_s < b.lower_bound_s else b
    else:
        b = plan_lower_bound(graph, hw, ({}, own) if own else ({},), max_blocks=max_blocks)
    step = float(plan.metrics.get("step_time_s", 0.0))
    bound_s = float(b.lower_bound_s)
    if not math.isfinite(bound_s):
        return plan
    gap = step / bound_s - 1.0 if bound_s > 0 else 0.0
    return replace(plan, lower_bound_s=bound_s, gap_to_bound=gap)


def guided_plan(graph: Graph, hw: Hardware, bound: Bound, *, policy: str,
                params: Mapping[str, Any] | None = None, beat_s: float | None = None) -> Plan | None:
    """The fastest valid plan among the rounded LP solutions (:func:`guided_assignment`), scheduled by
    :func:`core.schedule.build_plan`; None when no rounding fits. Each decision says it came from the LP.

    ``beat_s``: only a plan faster than this is wanted (the planner's best so far), so a rounding whose
    schedule is not is neither turned into a plan nor replayed (None when no rounding beats it)."""
    from core.errors import InfeasibleError
    from core.plan import Decision
    from core.schedule import build_plan, build_schedule, schedule_end_s
    from core.validate import validate_plan

    live = bound.liveness
    settings = dict(params or {})
    if live is None or bound.status != "optimal" or bound.op_tiers or float(settings.get("hbm_reserve", 0.0)) > 0:
        return None  # (a reserve would need the rounding to fit less than the tier: left to the greedy)
    best: Plan | None = None
    allow_recompute = bool(int(settings.get("recompute", 1)))
    starts = estimate_slot_starts(op_durations(graph, hw))
    for assignment in guided_assignment(graph, hw, bound, allow_recompute=allow_recompute):
        decisions = []
        for sid, (action, tier) in sorted(assignment.items()):
            span = live.spans[sid]
            share = bound.recompute.get(sid, 0.0) if action == "recompute" else bound.offload.get(sid, 0.0)
            verb = "recomputed" if action == "recompute" else f"moved to {tier}"
            # the same named terms as the greedy's decisions, so tables and pages read either alike
            terms = {"bytes_freed": float(span.bytes), "idle_s": idle_s(span, starts),
                     "access_count": float(len(live.uses[span.tensor])), "lp_share": share}
            if action == "offload":
                terms["transfer_s"] = hw.route_time_s(hw.compute_tier, tier, span.bytes) + \
                    hw.route_time_s(tier, hw.compute_tier, span.bytes)
            decisions.append(Decision(span.tensor, span.start_op, span.end_op, action, tier, share, terms,
                                      f"{verb}: the LP bound's relaxation moves {share:.0%} of this span"))
        try:
            sched = build_schedule(graph, hw, live, assignment, dict(params or {}))
        except InfeasibleError:
            continue
        if beat_s is not None and schedule_end_s(sched) > beat_s * (1 + 1e-6):  # a clear loss (margin: metrics)
            continue
        plan = build_plan(graph, hw, live, assignment, policy=policy, decisions=tuple(decisions),
                          params=dict(params or {}), schedule=sched)
        if best is not None and plan.metrics["step_time_s"] >= best.metrics["step_time_s"]:
            continue
        if validate_plan(graph, plan).ok:
            best = plan
    return best
