"""Key figures of a plan, and the curves the UI draws: occupancy per tier by kind, stream timelines.

Definitions (docs/formats.md repeats them; the validator recomputes the compared ones its own way):

- ``step_time_s``: the latest end (or free time) over all events; the step starts at 0.
- ``compute_time_s``: total duration of first runs on the compute tier; ``host_compute_time_s`` the same on
  other tiers; ``recompute_time_s``: total duration of recompute events, wherever they run.
- ``stall_time_s``: step time minus the busy time of the compute tier's stream (compute waiting for data).
- ``overlap_ratio``: share of the time when some transfer runs that the compute tier is busy too
  (1.0 when nothing moves).
- ``peak_bytes`` per tier: the highest occupancy, frees at a time counted before allocations at that time.
- ``transfer_bytes`` / ``transfer_time_s`` per ``"SRC->DST"`` link; ``slowdown``: step time over the
  compute-only time (every op once on the compute tier, nothing else), minus one.

The planner calls :func:`compute_metrics` for every plan, so it is array code.

>>> from core.graph import graph_from_dict
>>> g = graph_from_dict({"format": "tierplan-graph/1", "name": "g",
...     "tensors": [{"id": "w", "bytes": 4, "kind": "weight"}, {"id": "y", "bytes": 8, "kind": "activation"}],
...     "ops": [{"id": "f", "inputs": ["w"], "outputs": ["y"], "time_s": 1.0}]})
>>> no_offload_peak_bytes(g)
12
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from core.gc_pause import paused_gc
from core.graph import TENSOR_KINDS, Graph
from core.hardware import HARDWARE_FORMAT, Compute, Hardware, hardware_from_dict, op_time_s
from core.liveness import graph_refs
from core.plan import ComputeEvent, Event, FreeEvent, Plan, TransferEvent

__all__ = [
    "Curve",
    "Stream",
    "compute_metrics",
    "compute_only_time_s",
    "downsample_step",
    "no_offload_curves",
    "no_offload_peak_bytes",
    "occupancy_curves",
    "plan_hardware",
    "stream_timelines",
]

_I64 = np.int64


@dataclass(frozen=True)
class Curve:
    """Occupancy of one tier as step functions: ``bytes_by_kind[kind][k]`` holds from ``times_s[k]`` to
    ``times_s[k+1]`` (the last value holds after the step end)."""

    times_s: np.ndarray
    bytes_by_kind: Mapping[str, np.ndarray]

    @property
    def total_bytes(self) -> np.ndarray:
        total = np.zeros(len(self.times_s), dtype=_I64)
        for values in self.bytes_by_kind.values():
            total = total + values
        return total


@dataclass(frozen=True)
class Stream:
    """One stream's busy intervals: a tier's compute (``kind="compute"``) or a directed link (``"link"``)."""

    name: str
    kind: str
    starts_s: np.ndarray
    ends_s: np.ndarray
    labels: list[str]
    categories: list[str]


# ----------------------------------------------------------------------------------------------- graph


class _GraphFacts:
    """Per-graph arrays reused across plans (sweeps plan the same graph many times)."""

    def __init__(self, graph: Graph) -> None:
        refs = graph_refs(graph)  # the flat references core.liveness already built for this graph
        self.tensor_index = refs.index
        self.bytes = refs.bytes
        kind_code = {k: j for j, k in enumerate(TENSOR_KINDS)}
        self.kind_of = np.fromiter((kind_code[t.kind] for t in graph.tensors), dtype=_I64, count=len(graph.tensors))
        self.op_index = graph.op_index
        self.out_ptr = np.zeros(len(graph.ops) + 1, dtype=_I64)
        self.out_ptr[1:] = np.cumsum(np.bincount(refs.out_op, minlength=len(graph.ops)))
        self.out_t = refs.out_t
        self.category = [op.category for op in graph.ops]
        self._times: dict[Compute, np.ndarray] = {}
        self._peak: int | None = None

    def op_times(self, graph: Graph, compute: Compute) -> np.ndarray:
        times = self._times.get(compute)
        if times is None:
            times = np.array([op_time_s(op, compute) for op in graph.ops], dtype=np.float64)
            self._times[compute] = times
        return times


_FACTS: dict[int, tuple[weakref.ref[Graph], _GraphFacts]] = {}


def _facts(graph: Graph) -> _GraphFacts:
    hit = _FACTS.get(id(graph))
    if hit is not None and hit[0]() is graph:
        return hit[1]
    facts = _GraphFacts(graph)
    key = id(graph)

    def forget(_ref: weakref.ref[Graph]) -> None:
        _FACTS.pop(key, None)

    _FACTS[key] = (weakref.ref(graph, forget), facts)
    return facts


def _sequential_lifetimes(graph: Graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the all-in-one-tier sequential schedule: per tensor the first and last op index it is alive
    during (-1 for "from the step start"; ``len(ops)`` for "to the step end"), and whether it is alive at all."""
    refs = graph_refs(graph)
    n = len(graph.ops)
    first = np.full(len(graph.tensors), -1, dtype=_I64)
    last = np.full(len(graph.tensors), -1, dtype=_I64)
    first[refs.out_t] = refs.out_op  # one producer per tensor
    np.maximum.at(last, refs.in_t, refs.in_op)
    np.maximum.at(last, refs.out_t, refs.out_op)
    last[refs.persistent] = n
    alive = last >= np.maximum(first, 0)
    return first, last, alive


def no_offload_peak_bytes(graph: Graph) -> int:
    """Peak of the compute tier if every tensor lived there, ops running one after the other in list order.

    Op outputs are allocated at the op's start; a non-persistent tensor is freed at the end of its last use
    (an input nobody reads is freed at once); persistent tensors and tensors with no producer are present
    from time 0.
    """
    facts = _facts(graph)
    if facts._peak is None:
        first, last, alive = _sequential_lifetimes(graph)
        n = len(graph.ops)
        if n == 0:
            facts._peak = int(graph.persistent_bytes)
        else:
            diff = np.zeros(n + 1, dtype=_I64)
            rows = np.flatnonzero(alive)
            np.add.at(diff, np.maximum(first[rows], 0), facts.bytes[rows])
            np.add.at(diff, np.minimum(last[rows], n - 1) + 1, -facts.bytes[rows])
            facts._peak = int(np.cumsum(diff[:n]).max())
    return facts._peak


def compute_only_time_s(graph: Graph, hardware: Hardware) -> float:
    """Every op once on the compute tier's compute, nothing else: the floor of any plan's step time."""
    return float(_facts(graph).op_times(graph, hardware.compute).sum())


# ----------------------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class _Columns:
    """Events split by type into arrays (names resolved to indices)."""

    c_op: np.ndarray
    c_start: np.ndarray
    c_end: np.ndarray
    c_tier: np.ndarray
    c_recompute: np.ndarray
    x_tensor: np.ndarray
    x_link: np.ndarray
    x_start: np.ndarray
    x_end: np.ndarray
    f_tensor: np.ndarray
    f_tier: np.ndarray
    f_time: np.ndarray


_CODE = {ComputeEvent: 0, TransferEvent: 1, FreeEvent: 2}


def _pick(events: Sequence[Event], idx: np.ndarray) -> list[Event]:
    if len(idx) == 0:
        return []
    if len(idx) == 1:
        return [events[int(idx[0])]]
    return list(itemgetter(*idx.tolist())(events))


def _ints(lookup: Mapping[Any, int], names: Iterable[Any], count: int) -> np.ndarray:
    return np.fromiter(map(lookup.__getitem__, names), dtype=_I64, count=count)


def _columns(graph: Graph, hardware: Hardware, events: Sequence[Event]) -> _Columns:
    facts = _facts(graph)
    tiers = {t.name: k for k, t in enumerate(hardware.tiers)}
    compute_tiers = {**tiers, "": tiers[hardware.compute_tier]}
    link_id = np.full((len(tiers), len(tiers)), -1, dtype=_I64)
    for j, link in enumerate(hardware.links):
        link_id[tiers[link.src], tiers[link.dst]] = j
    codes = np.fromiter(map(_CODE.__getitem__, map(type, events)), dtype=np.int8, count=len(events))
    comp = _pick(events, np.flatnonzero(codes == 0))
    trans = _pick(events, np.flatnonzero(codes == 1))
    frees = _pick(events, np.flatnonzero(codes == 2))
    ti, oi = facts.tensor_index, facts.op_index
    if comp:
        ops, cs, ce, ct, cr = zip(*comp)
        n = len(ops)
        c = (_ints(oi, ops, n), np.array(cs, dtype=float), np.array(ce, dtype=float), _ints(compute_tiers, ct, n),
             np.array(cr, dtype=bool))
    else:
        c = (np.zeros(0, _I64), np.zeros(0), np.zeros(0), np.zeros(0, _I64), np.zeros(0, bool))
    if trans:
        xt, xs, xd, xa, xb = zip(*trans)
        n = len(xt)
        x_link = link_id[_ints(tiers, xs, n), _ints(tiers, xd, n)]
        x = (_ints(ti, xt, n), x_link, np.array(xa, dtype=float), np.array(xb, dtype=float))
    else:
        x = (np.zeros(0, _I64), np.zeros(0, _I64), np.zeros(0), np.zeros(0))
    if frees:
        ft, fk, fa = zip(*frees)
        n = len(ft)
        f = (_ints(ti, ft, n), _ints(tiers, fk, n), np.array(fa, dtype=float))
    else:
        f = (np.zeros(0, _I64), np.zeros(0, _I64), np.zeros(0))
    return _Columns(*c, *x, *f)


def _initial_copies(graph: Graph, hardware: Hardware, initial: Mapping[str, Iterable[str]]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(tensor, tier) of every copy present at step start."""
    tiers = {t.name: k for k, t in enumerate(hardware.tiers)}
    names = list(initial)
    wheres: list[Any] = list(initial.values())
    if str in set(map(type, wheres)):
        wheres = [(w,) if isinstance(w, str) else tuple(w) for w in wheres]
    counts = np.fromiter(map(len, wheres), dtype=_I64, count=len(wheres))
    flat = list(chain.from_iterable(wheres))
    i_t = np.repeat(_ints(_facts(graph).tensor_index, names, len(names)), counts)
    return i_t, _ints(tiers, flat, len(flat))


def _allocations(graph: Graph, hardware: Hardware, cols: _Columns, initial: Mapping[str, Iterable[str]]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every change of occupancy: (tier, time, signed bytes, tensor) — creations positive, frees negative."""
    facts = _facts(graph)
    tiers = {t.name: k for k, t in enumerate(hardware.tiers)}
    i_t, i_k = _initial_copies(graph, hardware, initial)
    counts = facts.out_ptr[cols.c_op + 1] - facts.out_ptr[cols.c_op]
    rep = np.repeat(np.arange(len(cols.c_op)), counts)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    out_t = facts.out_t[facts.out_ptr[cols.c_op][rep] + offsets]
    link_dst = np.array([tiers[link.dst] for link in hardware.links], dtype=_I64)
    x_k = link_dst[cols.x_link] if len(cols.x_link) else np.zeros(0, _I64)
    tier = np.concatenate((i_k, cols.c_tier[rep], x_k, cols.f_tier))
    time = np.concatenate((np.zeros(len(i_k)), cols.c_start[rep], cols.x_start, cols.f_time))
    tensor = np.concatenate((i_t, out_t, cols.x_tensor, cols.f_tensor))
    sign = np.concatenate((np.ones(len(i_k) + len(rep) + len(cols.x_tensor), dtype=_I64),
                           -np.ones(len(cols.f_tensor), dtype=_I64)))
    return tier, time, sign * facts.bytes[tensor], tensor


def _peaks(n_tiers: int, tier: np.ndarray, time: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Highest level per tier; at equal times frees (negative) are applied before allocations."""
    order = np.lexsort((delta > 0, time, tier))
    tier, level = tier[order], np.cumsum(delta[order])
    peaks = np.zeros(n_tiers, dtype=_I64)
    bounds = np.searchsorted(tier, np.arange(n_tiers + 1))
    for k in range(n_tiers):
        lo, hi = bounds[k], bounds[k + 1]
        if hi > lo:
            base = level[lo - 1] if lo > 0 else 0
            peaks[k] = max(int(level[lo:hi].max() - base), 0)
    return peaks


def _union(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted intervals covering the same time."""
    if len(starts) == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], np.maximum.accumulate(ends[order])
    head = np.ones(len(s), dtype=bool)
    head[1:] = s[1:] > e[:-1]
    first = np.flatnonzero(head)
    last = np.append(first[1:] - 1, len(s) - 1)
    return s[first], e[last]


def _overlap_s(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Length of time covered by both unions: a sweep counting how many of the two are active."""
    times = np.concatenate((a[0], a[1], b[0], b[1]))
    if len(times) == 0:
        return 0.0
    steps = np.concatenate((np.ones(len(a[0])), -np.ones(len(a[1])), np.ones(len(b[0])), -np.ones(len(b[1]))))
    order = np.lexsort((steps, times))  # at equal times, ends before starts
    times, active = times[order], np.cumsum(steps[order])
    both = active[:-1] == 2
    return float(np.sum(np.diff(times)[both]))


def compute_metrics(graph: Graph, hardware: Hardware, events: Sequence[Event],
                    initial: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    """The figures of one plan (see the module docstring for each definition)."""
    with paused_gc():
        return _compute_metrics(graph, hardware, events, initial)


def _compute_metrics(graph: Graph, hardware: Hardware, events: Sequence[Event],
                     initial: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    cols = _columns(graph, hardware, events)
    ct = [t.name for t in hardware.tiers].index(hardware.compute_tier)
    ends = np.concatenate((cols.c_end, cols.x_end, cols.f_time))
    step = float(ends.max()) if len(ends) else 0.0
    dur = cols.c_end - cols.c_start
    on_ct = cols.c_tier == ct
    first_run = ~cols.c_recompute
    busy = _union(cols.c_start[on_ct], cols.c_end[on_ct])
    busy_s = float(np.sum(busy[1] - busy[0]))
    moving = _union(cols.x_start, cols.x_end)
    moving_s = float(np.sum(moving[1] - moving[0]))
    tier, time, delta, _ = _allocations(graph, hardware, cols, initial)
    peaks = _peaks(len(hardware.tiers), tier, time, delta)
    facts = _facts(graph)
    n_links = len(hardware.links)
    moved = np.zeros(n_links, dtype=_I64)
    np.add.at(moved, cols.x_link, facts.bytes[cols.x_tensor])
    moved_s = np.bincount(cols.x_link, weights=cols.x_end - cols.x_start, minlength=n_links)
    used = np.bincount(cols.x_link, minlength=n_links) > 0
    only = compute_only_time_s(graph, hardware)
    return {
        "step_time_s": step,
        "compute_time_s": float(dur[on_ct & first_run].sum()),
        "compute_only_time_s": only,
        "host_compute_time_s": float(dur[~on_ct & first_run].sum()),
        "recompute_time_s": float(dur[cols.c_recompute].sum()),
        "stall_time_s": step - busy_s,
        "slowdown": step / only - 1.0 if only > 0 else 0.0,
        "peak_bytes": {t.name: int(peaks[k]) for k, t in enumerate(hardware.tiers)},
        "transfer_bytes": {hardware.links[j].name: int(moved[j]) for j in np.flatnonzero(used).tolist()},
        "transfer_time_s": {hardware.links[j].name: float(moved_s[j]) for j in np.flatnonzero(used).tolist()},
        "overlap_ratio": _overlap_s(moving, busy) / moving_s if moving_s > 0 else 1.0,
        "no_offload_peak_bytes": no_offload_peak_bytes(graph),
        "capacity_bytes": {t.name: t.capacity_bytes for t in hardware.tiers},
    }


def plan_hardware(plan: Plan) -> Hardware:
    """The :class:`Hardware` recorded in a plan (its ``hardware`` section)."""
    raw = dict(plan.hardware)
    raw.setdefault("format", HARDWARE_FORMAT)
    return hardware_from_dict(raw, source="plan.hardware")


# ---------------------------------------------------------------------------------------------- curves


def _curves(tiers: Sequence[str], tier: np.ndarray, time: np.ndarray, delta: np.ndarray, kind: np.ndarray,
            end_s: float) -> dict[str, Curve]:
    out: dict[str, Curve] = {}
    for k, name in enumerate(tiers):
        rows = tier == k
        t, d, knd = time[rows], delta[rows], kind[rows]
        times, inverse = np.unique(np.concatenate(([0.0], t, [end_s])), return_inverse=True)
        inverse = inverse[1:-1]
        by_kind: dict[str, np.ndarray] = {}
        for j in np.unique(knd).tolist():
            step = np.zeros(len(times), dtype=_I64)
            sel = knd == j
            np.add.at(step, inverse[sel], d[sel])
            by_kind[TENSOR_KINDS[j]] = np.cumsum(step)
        out[name] = Curve(times, dict(sorted(by_kind.items(), key=lambda kv: TENSOR_KINDS.index(kv[0]))))
    return out


def occupancy_curves(graph: Graph, plan: Plan) -> dict[str, Curve]:
    """Occupancy of every tier over the step, stacked by tensor kind (after offload: the plan as made)."""
    with paused_gc():
        return _occupancy_curves(graph, plan)


def _occupancy_curves(graph: Graph, plan: Plan) -> dict[str, Curve]:
    hardware = plan_hardware(plan)
    cols = _columns(graph, hardware, plan.events)
    tier, time, delta, tensor = _allocations(graph, hardware, cols, plan.initial)
    ends = np.concatenate((cols.c_end, cols.x_end, cols.f_time))
    end_s = float(ends.max()) if len(ends) else 0.0
    return _curves([t.name for t in hardware.tiers], tier, time, delta, _facts(graph).kind_of[tensor], end_s)


def no_offload_curves(graph: Graph, hardware: Hardware) -> dict[str, Curve]:
    """Occupancy before offload: every tensor in the compute tier, ops one after the other in list order
    (outputs allocated at the op's start, non-persistent tensors freed at the end of their last use)."""
    facts = _facts(graph)
    first, last, alive = _sequential_lifetimes(graph)
    n = len(graph.ops)
    times = facts.op_times(graph, hardware.compute)
    op_start = np.concatenate(([0.0], np.cumsum(times)))
    end_s = float(op_start[-1])
    rows = np.flatnonzero(alive)
    born = op_start[np.maximum(first[rows], 0)]
    dies = last[rows]
    freed = rows[dies < n]
    time = np.concatenate((born, op_start[last[freed] + 1]))
    delta = np.concatenate((facts.bytes[rows], -facts.bytes[freed]))
    kind = facts.kind_of[np.concatenate((rows, freed))]
    ct = [t.name for t in hardware.tiers].index(hardware.compute_tier)
    tier = np.full(len(time), ct, dtype=_I64)
    return _curves([t.name for t in hardware.tiers], tier, time, delta, kind, end_s)


def downsample_step(times: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a step function, each bucket of points kept at its maximum so
    peaks survive. ``values`` may be 1-D, or 2-D (series × points, e.g. kinds of a stacked curve): then
    each bucket keeps the column whose total is highest, so the stack stays consistent."""
    times = np.asarray(times)
    values = np.asarray(values)
    n = len(times)
    if n <= max_points or max_points < 1:
        return times, values
    # max_points - 1 buckets over all points but the last, which is kept as is (it closes the time axis).
    edges = np.unique(np.linspace(0, n - 1, max(max_points, 2)).astype(_I64))
    starts = edges[:-1]
    body = values[..., : n - 1]
    total = body if body.ndim == 1 else body.sum(axis=0)
    bucket = np.repeat(np.arange(len(starts)), np.diff(edges))
    bucket_max = np.maximum.reduceat(total, starts)
    is_max = total == bucket_max[bucket]
    first_max = np.full(len(starts), n, dtype=_I64)
    np.minimum.at(first_max, bucket[is_max], np.flatnonzero(is_max))
    keep = np.append(first_max, n - 1)
    return np.append(times[starts], times[-1]), values[..., keep]


def stream_timelines(graph: Graph, plan: Plan) -> list[Stream]:
    """Busy intervals per stream: the compute of each tier that runs something (the compute tier's always),
    then each directed link that carries something, in hardware order; each stream sorted by (start, end)."""
    with paused_gc():
        return _stream_timelines(graph, plan)


def _by_start(starts: np.ndarray, ends: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` ordered by (start, end), ties kept in plan order (a stable sort, like ``sorted``)."""
    return rows[np.lexsort((ends[rows], starts[rows]))]


def _stream_timelines(graph: Graph, plan: Plan) -> list[Stream]:
    hardware = plan_hardware(plan)
    facts = _facts(graph)
    events = plan.events
    codes = np.fromiter(map(_CODE.__getitem__, map(type, events)), dtype=np.int8, count=len(events))
    tier_names = [t.name for t in hardware.tiers]
    out: list[Stream] = []
    comp = _pick(events, np.flatnonzero(codes == 0))
    if comp:
        ops, cs, ce, ct, cr = zip(*comp)
    else:
        ops, cs, ce, ct, cr = (), (), (), (), ()
    tier_of = {name: k for k, name in enumerate(tier_names)}
    tier_of[""] = tier_of[hardware.compute_tier]
    c_tier = np.fromiter((tier_of.get(t, -1) for t in ct), dtype=_I64, count=len(ct))
    c_start, c_end = np.array(cs, dtype=float), np.array(ce, dtype=float)
    compute_k = tier_of[hardware.compute_tier]
    recomputed = np.array(cr, dtype=bool)
    labels_all = np.array(ops, dtype=object)
    cats_all = np.array(list(map(facts.category.__getitem__, map(facts.op_index.__getitem__, ops))), dtype=object)
    if recomputed.any():
        labels_all[recomputed] = [f"{o} (recompute)" for o in labels_all[recomputed]]
        cats_all[recomputed] = "recompute"
    for k, tier in enumerate(tier_names):
        rows = np.flatnonzero(c_tier == k)
        if not len(rows) and k != compute_k:
            continue
        rows = _by_start(c_start, c_end, rows)
        out.append(Stream(f"{tier} compute", "compute", c_start[rows], c_end[rows], labels_all[rows].tolist(),
                          cats_all[rows].tolist()))
    trans = _pick(events, np.flatnonzero(codes == 1))
    if trans:
        xt, xs, xd, xa, xb = zip(*trans)
        link_of = {(lk.src, lk.dst): j for j, lk in enumerate(hardware.links)}
        x_link = np.fromiter((link_of.get(pair, -1) for pair in zip(xs, xd)), dtype=_I64, count=len(xt))
        x_start, x_end = np.array(xa, dtype=float), np.array(xb, dtype=float)
        tensors_all = np.array(xt, dtype=object)
        kind_names = np.array(TENSOR_KINDS, dtype=object)
        kinds = kind_names[facts.kind_of[_ints(facts.tensor_index, xt, len(xt))]]
        for j, link in enumerate(hardware.links):
            rows = np.flatnonzero(x_link == j)
            if not len(rows):
                continue
            rows = _by_start(x_start, x_end, rows)
            out.append(Stream(link.name, "link", x_start[rows], x_end[rows], tensors_all[rows].tolist(),
                              kinds[rows].tolist()))
    return out
