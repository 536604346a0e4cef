"""Replay of a ``tierplan-plan/1`` plan against its graph: every physical rule, checked independently.

The validator knows nothing of the planner: it rebuilds every copy's lifetime from the events alone and
checks the rules documented in docs/formats.md — each op computed once, inputs ready and fresh in the tier
where an op runs, no use after free, no double allocation, links and compute streams never overlapping,
durations at least the modelled time, capacity respected at every instant in every tier, freshness of
mutated tensors, and a step end that leaves exactly the state the step started from. It then recomputes
the metrics its own way and compares them with those the plan reports.

It runs on every plan in the tests and on benchmarks of 10⁵ ops, so it is array code: times are replaced
by their exact ranks, every "which copy is this?" question becomes a sort of integer keys or a binary
search, and Python loops only run over the (few) items that break a rule, to word the message.

>>> from core.graph import graph_from_dict
>>> from core.plan import Plan, ComputeEvent, FreeEvent
>>> g = graph_from_dict({"format": "tierplan-graph/1", "name": "g",
...     "tensors": [{"id": "w", "bytes": 4, "kind": "weight"}, {"id": "y", "bytes": 4, "kind": "activation"}],
...     "ops": [{"id": "f", "inputs": ["w"], "outputs": ["y"], "time_s": 1.0}]})
>>> hw = {"compute": {"peak_flops": 1e12}, "tiers": [{"name": "HBM", "capacity_bytes": 8}], "links": [],
...       "compute_tier": "HBM"}
>>> plan = Plan("g", "none", hw, {"w": ("HBM",)},
...             (ComputeEvent("f", 0.0, 1.0, "HBM"), FreeEvent("y", "HBM", 1.0)))
>>> validate_plan(g, plan, check_metrics=False).ok
True
"""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from core.errors import InputError
from core.graph import Graph, Op
from core.hardware import HARDWARE_FORMAT, Compute, Hardware, hardware_from_dict
from core.plan import ComputeEvent, FreeEvent, Plan, TransferEvent
from core.units import format_bytes, format_time

__all__ = [
    "DURATION_RTOL", "METRIC_KEYS", "METRIC_RTOL", "ValidationReport", "host_time_scale", "modelled_time_s",
    "validate_plan",
]

#: Durations may fall short of the modelled time by this relative amount (floating point only).
DURATION_RTOL = 1e-9
#: Reported metrics must match the replay within this relative tolerance.
METRIC_RTOL = 1e-6
#: The metrics the validator recomputes and compares.
METRIC_KEYS = (
    "step_time_s", "compute_time_s", "recompute_time_s", "stall_time_s", "peak_bytes", "transfer_bytes",
    "overlap_ratio",
)

_I64 = np.int64
_EMPTY_I = np.zeros(0, dtype=_I64)
_EMPTY_F = np.zeros(0, dtype=np.float64)
_EMPTY_B = np.zeros(0, dtype=bool)
# Creation kinds of a copy.
_INITIAL, _COMPUTE, _RECOMPUTE, _TRANSFER = 0, 1, 2, 3


@dataclass(frozen=True)
class ValidationReport:
    """``ok`` when no rule is broken; ``errors`` are one sentence each (the first ``max_errors``)."""

    ok: bool
    errors: tuple[str, ...]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error_count: int = 0


def _roofline_s(op: Op, compute: Compute) -> float:
    t_flops = op.flops / (compute.peak_flops * compute.efficiency)
    t_mem = 0.0
    if compute.memory_bandwidth_Bps > 0:
        t_mem = op.bytes_accessed / (compute.memory_bandwidth_Bps * compute.memory_efficiency)
    return max(t_flops, t_mem)


def host_time_scale(device: Compute, host: Compute) -> float:
    """How many times longer a fixed-``time_s`` op takes on ``host`` than on the accelerator ``device``.

    ``time_s`` is the op's time on the device (docs/formats.md, "Op time on a compute"): on a host it is
    scaled by the larger of the effective FLOP rates' ratio and the effective memory bandwidths' ratio (the
    latter only when both computes give a bandwidth). That is never below the ratio of any op's own
    rooflines, so a slow host never looks as fast as the device, whatever work the measured time stood for.
    """
    ratios = [(device.peak_flops * device.efficiency) / (host.peak_flops * host.efficiency)]
    if device.memory_bandwidth_Bps > 0 and host.memory_bandwidth_Bps > 0:
        ratios.append(
            (device.memory_bandwidth_Bps * device.memory_efficiency) / (host.memory_bandwidth_Bps * host.memory_efficiency)
        )
    return max(ratios)


def modelled_time_s(op: Op, compute: Compute, device: Compute) -> float:
    """The validator's own duration model of ``op`` on ``compute`` (``device`` is the accelerator's compute).

    Written here rather than imported so that a fault in the planner's timing cannot hide from the replay.
    """
    if op.time_s is None:
        return _roofline_s(op, compute)
    return op.time_s if compute == device else op.time_s * host_time_scale(device, compute)


class _Ids(dict):  # type: ignore[type-arg]
    """Name -> index, -1 for unknown names (so that ``map`` stays in C)."""

    def __missing__(self, key: object) -> int:
        return -1


_EVENT_CODE = _Ids({ComputeEvent: 0, TransferEvent: 1, FreeEvent: 2})


# ------------------------------------------------------------------------------------------- graph tables


class _GraphTables:
    """The graph as arrays: tensor attributes, and op inputs/outputs in CSR form. Built once per graph."""

    def __init__(self, graph: Graph) -> None:
        tensors = graph.tensors
        self.tensor_ids = [t.id for t in tensors]
        self.tensor_index = _Ids(zip(self.tensor_ids, range(len(tensors))))
        self.bytes = np.fromiter((t.bytes for t in tensors), dtype=_I64, count=len(tensors))
        self.persistent = np.fromiter((t.persistent for t in tensors), dtype=bool, count=len(tensors))
        producer = graph.producer
        self.produced = np.fromiter((t.id in producer for t in tensors), dtype=bool, count=len(tensors))
        ops = graph.ops
        self.ops = ops
        self.op_index = _Ids(zip((op.id for op in ops), range(len(ops))))
        ti = self.tensor_index
        self.in_ptr = np.zeros(len(ops) + 1, dtype=_I64)
        self.in_ptr[1:] = np.cumsum([len(op.inputs) for op in ops])
        self.in_t = _ints(ti, chain.from_iterable(op.inputs for op in ops), int(self.in_ptr[-1]))
        self.in_mut = np.zeros(len(self.in_t), dtype=bool)
        for k, op in enumerate(ops):
            if op.mutates:
                for j, x in enumerate(op.inputs):
                    if x in op.mutates:
                        self.in_mut[self.in_ptr[k] + j] = True
        self.out_ptr = np.zeros(len(ops) + 1, dtype=_I64)
        self.out_ptr[1:] = np.cumsum([len(op.outputs) for op in ops])
        self.out_t = _ints(ti, chain.from_iterable(op.outputs for op in ops), int(self.out_ptr[-1]))
        self.recomputable = np.fromiter((op.recomputable for op in ops), dtype=bool, count=len(ops))
        self.host_ok = np.fromiter((op.host_ok for op in ops), dtype=bool, count=len(ops))
        self.mutates_any = np.fromiter((bool(op.mutates) for op in ops), dtype=bool, count=len(ops))
        out_persistent = self.persistent[self.out_t] if len(self.out_t) else _EMPTY_B
        self.out_persistent_any = np.zeros(len(ops), dtype=bool)
        if len(out_persistent):
            owner = np.repeat(np.arange(len(ops)), np.diff(self.out_ptr))
            self.out_persistent_any[owner[out_persistent]] = True
        self.producer_op = np.full(len(tensors), -1, dtype=_I64)
        for tid, k in producer.items():
            self.producer_op[self.tensor_index[tid]] = k
        self.in_owner = np.repeat(np.arange(len(ops), dtype=_I64), np.diff(self.in_ptr))
        self._times: dict[tuple[Compute, Compute], np.ndarray] = {}
        self._versions: dict[tuple[str, ...] | None, np.ndarray] = {}

    def op_times(self, compute: Compute, device: Compute) -> np.ndarray:
        """Modelled time of every op on ``compute`` (:func:`modelled_time_s`), cached per compute."""
        key = (compute, device)
        times = self._times.get(key)
        if times is None:
            times = np.fromiter(
                (modelled_time_s(op, compute, device) for op in self.ops), dtype=np.float64, count=len(self.ops)
            )
            self._times[key] = times
        return times

    def read_versions(self, pos: np.ndarray) -> np.ndarray:
        """Per op input (CSR position): how many in-place updates of that tensor come before the op in the
        execution order whose op positions are ``pos`` (a mutator's own update is not counted)."""
        mut_rows = np.flatnonzero(self.in_mut)
        t_m = self.in_t[mut_rows]
        p_m = pos[self.in_owner[mut_rows]]
        n = len(self.ops) + 1
        keys = np.sort(t_m * n + p_m)
        q = self.in_t * n + pos[self.in_owner]
        return np.searchsorted(keys, q, side="left") - np.searchsorted(keys, self.in_t * n, side="left")


_TABLES: dict[int, tuple[weakref.ref[Graph], _GraphTables]] = {}


def _tables(graph: Graph) -> _GraphTables:
    hit = _TABLES.get(id(graph))
    if hit is not None and hit[0]() is graph:
        return hit[1]
    tables = _GraphTables(graph)
    key = id(graph)
    _TABLES[key] = (weakref.ref(graph, lambda _ref, key=key: _TABLES.pop(key, None)), tables)
    return tables


def _ints(lookup: Mapping[Any, int], names: Any, count: int) -> np.ndarray:
    return np.fromiter(map(lookup.__getitem__, names), dtype=_I64, count=count)


def _expand(ptr: np.ndarray, flat: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of ``rows``: (row position of each item, flat position of each item)."""
    counts = ptr[rows + 1] - ptr[rows]
    total = int(counts.sum())
    rep = np.repeat(np.arange(len(rows)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return rep, ptr[rows][rep] + offsets


def _union_length(starts: np.ndarray, ends: np.ndarray) -> float:
    """Length of the union of intervals."""
    if len(starts) == 0:
        return 0.0
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], np.maximum.accumulate(ends[order])
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > e[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(s) - 1)
    return float(np.sum(e[last] - s[first]))


# ------------------------------------------------------------------------------------------------ replay


class _Replay:
    def __init__(self, graph: Graph, plan: Plan, max_errors: int) -> None:
        self.graph = graph
        self.plan = plan
        self.max_errors = max_errors
        self.errors: list[str] = []
        self.count = 0
        self.g = _tables(graph)

    # ---------------------------------------------------------------------------------------- messages

    def error(self, message: str) -> None:
        self.count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(message)

    def errors_at(self, items: np.ndarray, word: Callable[[int], str]) -> None:
        """Count every item of ``items``; word messages only while there is room for them."""
        self.count += len(items)
        room = self.max_errors - len(self.errors)
        for k in items[: max(room, 0)].tolist():
            self.errors.append(word(k))

    def t(self, rank: int) -> str:
        """A time (given as its rank) for a message."""
        return "t=" + format_time(float(self.times[rank - 1]), 6) if 0 < rank < self.inf else "t=∞"

    def describe(self, idx: int) -> str:
        if idx < 0:
            return "the initial state"
        e = self.plan.events[idx]
        if type(e) is ComputeEvent:
            kind = "recompute" if e.recompute else "compute"
            where = e.tier or self.hw.compute_tier
            return f"events[{idx}] ({kind} '{e.op}' on {where}, {_fmt_t(e.start)}..{_fmt_t(e.end)})"
        if type(e) is TransferEvent:
            return f"events[{idx}] (transfer '{e.tensor}' {e.src}->{e.dst}, {_fmt_t(e.start)}..{_fmt_t(e.end)})"
        if type(e) is FreeEvent:
            return f"events[{idx}] (free '{e.tensor}' in {e.tier} at {_fmt_t(e.time)})"
        return f"events[{idx}]"

    def tensor(self, t: int) -> str:
        return self.g.tensor_ids[t]

    # ------------------------------------------------------------------------------------------- run

    def run(self) -> dict[str, Any]:
        raw = dict(self.plan.hardware)
        raw.setdefault("format", HARDWARE_FORMAT)
        if "compute" not in raw:
            self.error("plan.hardware has no 'compute' section, so op times cannot be checked")
            return {}
        try:
            self.hw: Hardware = hardware_from_dict(raw, source="plan.hardware")
        except InputError as exc:
            self.error(f"the plan's hardware is invalid: {exc}")
            return {}
        self.setup_hardware()
        self.extract_events()
        self.check_computes()
        self.check_order()
        self.check_transfers()
        self.check_frees()
        self.check_initial()
        self.rank_times()
        self.build_copies()
        self.pair_copies()
        self.check_reads()
        self.build_mutations()
        self.check_versions()
        self.resolve_freshness()
        self.check_races()
        self.check_step_end()
        peaks = self.check_capacity()
        self.check_streams()
        return self.replay_metrics(peaks)

    def setup_hardware(self) -> None:
        hw = self.hw
        self.tier_names = [t.name for t in hw.tiers]
        self.tier_index = _Ids(zip(self.tier_names, range(len(hw.tiers))))
        self.ct = self.tier_index[hw.compute_tier]
        self.capacity = np.array([t.capacity_bytes for t in hw.tiers], dtype=_I64)
        self.tier_compute: list[Compute | None] = [
            hw.compute if k == self.ct else t.compute for k, t in enumerate(hw.tiers)
        ]
        nk = len(hw.tiers)
        self.link_id = np.full((nk, nk), -1, dtype=_I64)
        for j, link in enumerate(hw.links):
            self.link_id[self.tier_index[link.src], self.tier_index[link.dst]] = j
        self.link_latency = np.array([link.latency_s for link in hw.links], dtype=np.float64)
        self.link_bw = np.array([link.bandwidth_Bps for link in hw.links], dtype=np.float64)

    def extract_events(self) -> None:
        """Split events by type into column arrays (names mapped to indices, -1 when unknown)."""
        events = self.plan.events
        codes = np.fromiter(map(_EVENT_CODE.__getitem__, map(type, events)), dtype=np.int8, count=len(events))
        for idx in np.flatnonzero(codes < 0).tolist():
            self.error(f"events[{idx}] is a {type(events[idx]).__name__}, not a compute, transfer or free event")
        self.c_idx = np.flatnonzero(codes == 0)
        self.x_idx = np.flatnonzero(codes == 1)
        self.f_idx = np.flatnonzero(codes == 2)
        comp = [events[i] for i in self.c_idx.tolist()]
        trans = [events[i] for i in self.x_idx.tolist()]
        frees = [events[i] for i in self.f_idx.tolist()]
        op_ix, ti, ki = self.g.op_index, self.g.tensor_index, self.tier_index
        if comp:
            ops, st, en, tiers, rec = zip(*comp)
            self.c_op = np.fromiter(map(op_ix.__getitem__, ops), dtype=_I64, count=len(ops))
            self.c_st = np.array(st, dtype=np.float64)
            self.c_en = np.array(en, dtype=np.float64)
            kc = _Ids(ki)
            kc[""] = self.ct  # a compute event without a tier ran on the compute tier
            self.c_k = np.fromiter(map(kc.__getitem__, tiers), dtype=_I64, count=len(ops))
            self.c_rec = np.array(rec, dtype=bool)
        else:
            self.c_op, self.c_st, self.c_en, self.c_k, self.c_rec = _EMPTY_I, _EMPTY_F, _EMPTY_F, _EMPTY_I, _EMPTY_B
        if trans:
            tens, src, dst, st, en = zip(*trans)
            self.x_t = np.fromiter(map(ti.__getitem__, tens), dtype=_I64, count=len(tens))
            self.x_src = np.fromiter(map(ki.__getitem__, src), dtype=_I64, count=len(tens))
            self.x_dst = np.fromiter(map(ki.__getitem__, dst), dtype=_I64, count=len(tens))
            self.x_st = np.array(st, dtype=np.float64)
            self.x_en = np.array(en, dtype=np.float64)
        else:
            self.x_t, self.x_src, self.x_dst, self.x_st, self.x_en = _EMPTY_I, _EMPTY_I, _EMPTY_I, _EMPTY_F, _EMPTY_F
        if frees:
            tens, tiers, tm = zip(*frees)
            self.f_t = np.fromiter(map(ti.__getitem__, tens), dtype=_I64, count=len(tens))
            self.f_k = np.fromiter(map(ki.__getitem__, tiers), dtype=_I64, count=len(tens))
            self.f_time = np.array(tm, dtype=np.float64)
        else:
            self.f_t, self.f_k, self.f_time = _EMPTY_I, _EMPTY_I, _EMPTY_F

    def _times_ok(self, idx: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Finite, ordered, non-negative times; returns the mask of events usable further on."""
        finite = np.isfinite(starts) & np.isfinite(ends)
        self.errors_at(np.flatnonzero(~finite), lambda k: f"events[{idx[k]}] has a non-finite time")
        backwards = finite & (ends < starts)
        self.errors_at(np.flatnonzero(backwards), lambda k: f"{self.describe(int(idx[k]))} ends before it starts")
        early = finite & (starts < 0)
        self.errors_at(
            np.flatnonzero(early), lambda k: f"{self.describe(int(idx[k]))} happens before the step starts at t=0"
        )
        return finite & ~backwards

    def _keep_computes(self, good: np.ndarray) -> None:
        for name in ("c_idx", "c_op", "c_st", "c_en", "c_k", "c_rec"):
            setattr(self, name, getattr(self, name)[good])

    def check_computes(self) -> None:
        """Known op and tier, allowed tier, recompute rules, each op once, duration ≥ modelled time."""
        g, idx = self.g, self.c_idx
        good = self._times_ok(idx, self.c_st, self.c_en)
        unknown = good & (self.c_op < 0)
        self.errors_at(np.flatnonzero(unknown), lambda k: f"events[{idx[k]}] computes unknown op '{self.plan.events[idx[k]].op}'")
        good &= ~unknown
        bad_tier = good & (self.c_k < 0)
        self.errors_at(
            np.flatnonzero(bad_tier),
            lambda k: f"{self.describe(int(idx[k]))} runs on unknown tier '{self.plan.events[idx[k]].tier}'",
        )
        good &= ~bad_tier
        has_compute = np.array([c is not None for c in self.tier_compute], dtype=bool)
        no_compute = good & ~has_compute[np.maximum(self.c_k, 0)]
        self.errors_at(
            np.flatnonzero(no_compute),
            lambda k: f"{self.describe(int(idx[k]))} runs on tier '{self.tier_names[self.c_k[k]]}', which has no "
            "compute of its own",
        )
        good &= ~no_compute
        self._keep_computes(good)
        idx, op, k_, rec = self.c_idx, self.c_op, self.c_k, self.c_rec
        off = (k_ != self.ct) & ~g.host_ok[op]
        self.errors_at(
            np.flatnonzero(off),
            lambda k: f"{self.describe(int(idx[k]))} runs op '{g.ops[op[k]].id}' on '{self.tier_names[k_[k]]}' but "
            f"only ops with host_ok may run off the compute tier '{self.hw.compute_tier}'",
        )
        not_rec = rec & ~g.recomputable[op]
        self.errors_at(
            np.flatnonzero(not_rec),
            lambda k: f"{self.describe(int(idx[k]))} recomputes op '{g.ops[op[k]].id}', which is not recomputable",
        )
        rec_mut = rec & g.recomputable[op] & g.mutates_any[op]
        self.errors_at(
            np.flatnonzero(rec_mut),
            lambda k: f"{self.describe(int(idx[k]))} recomputes op '{g.ops[op[k]].id}', which updates "
            f"{list(g.ops[op[k]].mutates)} in place",
        )
        rec_pers = rec & g.out_persistent_any[op]
        self.errors_at(
            np.flatnonzero(rec_pers),
            lambda k: f"{self.describe(int(idx[k]))} recomputes op '{g.ops[op[k]].id}', whose outputs are persistent",
        )
        # Each op exactly once as a first run.
        first_runs = np.flatnonzero(~rec)
        counts = np.bincount(op[first_runs], minlength=len(g.ops))
        order = first_runs[np.argsort(op[first_runs], kind="stable")]
        dup = np.zeros(len(order), dtype=bool)
        if len(order):
            dup[1:] = op[order[1:]] == op[order[:-1]]
        first_of = {int(op[p]): int(idx[p]) for p in order[~dup].tolist()} if dup.any() else {}
        self.errors_at(
            order[dup],
            lambda k: f"op '{g.ops[op[k]].id}' is computed more than once: {self.describe(first_of[int(op[k])])} and "
            f"{self.describe(int(idx[k]))} (re-runs must be recompute events)",
        )
        self.errors_at(np.flatnonzero(counts == 0), lambda j: f"op '{g.ops[j].id}' is never computed (no compute event)")
        # Durations.
        model = np.zeros(len(op), dtype=np.float64)
        for tier in np.unique(k_).tolist():
            rows = k_ == tier
            compute = self.tier_compute[tier]
            assert compute is not None
            model[rows] = g.op_times(compute, self.hw.compute)[op[rows]]
        dur = self.c_en - self.c_st
        short = dur < model - _slack(model, self.c_en)
        self.errors_at(
            np.flatnonzero(short),
            lambda k: f"{self.describe(int(idx[k]))} lasts {format_time(dur[k], 6)} but op '{g.ops[op[k]].id}' needs "
            f"{format_time(model[k], 6)} on {self.tier_names[k_[k]]}'s compute",
        )

    def check_order(self) -> None:
        """``plan.order`` (or the graph order) is a legal execution order and the events follow it.

        Legal: a permutation of the ops in which every reader comes after its input's producer and reads
        the same version of every in-place-updated tensor as in the graph order (so updates keep their
        relative order and no reader crosses an update). Followed: on each compute stream, first runs
        start in that order.
        """
        g, ops = self.g, self.g.ops
        n = len(ops)
        self.order_name = "the graph order"
        self.pos = np.arange(n, dtype=_I64)
        raw = self.plan.order
        if raw is not None:
            ids = list(raw)
            idx = _ints(g.op_index, ids, len(ids))
            usable = True
            for k in np.flatnonzero(idx < 0).tolist():
                self.error(f"plan.order[{k}] names unknown op '{ids[k]}'")
                usable = False
            seen = np.full(n, -1, dtype=_I64)
            for k, j in enumerate(idx.tolist()):
                if j < 0:
                    continue
                if seen[j] >= 0:
                    self.error(f"plan.order lists op '{ops[j].id}' twice (at {int(seen[j])} and {k})")
                    usable = False
                else:
                    seen[j] = k
            for j in np.flatnonzero(seen < 0).tolist():
                self.error(f"plan.order does not list op '{ops[j].id}'")
                usable = False
            if usable:
                self.pos = seen
                self.order_name = "plan.order"
                self.check_order_legal()
        self.read_version = g.read_versions(self.pos)
        self.check_stream_order()

    def check_order_legal(self) -> None:
        g, ops, pos = self.g, self.g.ops, self.pos
        prod = g.producer_op[g.in_t] if len(g.in_t) else _EMPTY_I
        early = np.flatnonzero((prod >= 0) & (pos[np.maximum(prod, 0)] > pos[g.in_owner]))
        self.errors_at(
            early,
            lambda j: f"plan.order puts op '{ops[g.in_owner[j]].id}' (at {int(pos[g.in_owner[j]])}) before op "
            f"'{ops[prod[j]].id}' (at {int(pos[prod[j]])}), which produces its input '{g.tensor_ids[g.in_t[j]]}'",
        )
        graph_v = g.read_versions(np.arange(len(ops), dtype=_I64))
        order_v = g.read_versions(pos)
        bad = np.flatnonzero(graph_v != order_v)

        def word(j: int) -> str:
            t, a = int(g.in_t[j]), int(g.in_owner[j])
            mutators = [int(g.in_owner[r]) for r in np.flatnonzero(g.in_mut & (g.in_t == t)).tolist()]
            vg, vo = int(graph_v[j]), int(order_v[j])
            # the update the reader crossed: the next one in the graph order (moved before it) or the last one
            # before it in the graph order (moved after it)
            m = mutators[vg] if vo > vg else mutators[vg - 1]
            side = "before" if vo > vg else "after"
            what = "update" if a in mutators else "op"
            return (
                f"plan.order moves op '{ops[m].id}', which updates '{g.tensor_ids[t]}' in place, {side} {what} "
                f"'{ops[a].id}' that reads it: '{ops[a].id}' would read version {vo} of '{g.tensor_ids[t]}' "
                f"instead of version {vg} (the graph order's)"
            )

        self.errors_at(bad, word)

    def check_stream_order(self) -> None:
        """First runs on one compute stream start in the execution order (ties in time are fine)."""
        first = np.flatnonzero(~self.c_rec)
        if len(first) < 2:
            return
        k_, st, p = self.c_k[first], self.c_st[first], self.pos[self.c_op[first]]
        order = np.lexsort((p, st, k_))
        k_, st, p, rows = k_[order], st[order], p[order], first[order]
        bad = np.flatnonzero((k_[1:] == k_[:-1]) & (p[1:] < p[:-1])) + 1
        ops = self.g.ops

        def word(k: int) -> str:
            a, b = int(rows[k - 1]), int(rows[k])
            return (
                f"{self.describe(int(self.c_idx[a]))} runs before {self.describe(int(self.c_idx[b]))} on the compute "
                f"stream of {self.tier_names[k_[k]]}, but {self.order_name} puts op '{ops[self.c_op[b]].id}' first"
            )

        self.errors_at(bad, word)

    def check_transfers(self) -> None:
        """Known tensor, existing link, duration ≥ latency + bytes / bandwidth."""
        idx, ev = self.x_idx, self.plan.events
        good = self._times_ok(idx, self.x_st, self.x_en)
        unknown = good & (self.x_t < 0)
        self.errors_at(np.flatnonzero(unknown), lambda k: f"events[{idx[k]}] transfers unknown tensor '{ev[idx[k]].tensor}'")
        good &= ~unknown
        bad_tier = good & ((self.x_src < 0) | (self.x_dst < 0))
        self.errors_at(
            np.flatnonzero(bad_tier),
            lambda k: f"{self.describe(int(idx[k]))} names an unknown tier ({ev[idx[k]].src!r} or {ev[idx[k]].dst!r})",
        )
        good &= ~bad_tier
        link = np.where(good, self.link_id[np.maximum(self.x_src, 0), np.maximum(self.x_dst, 0)], -1)
        no_link = good & (link < 0)
        self.errors_at(
            np.flatnonzero(no_link),
            lambda k: f"{self.describe(int(idx[k]))} uses link {ev[idx[k]].src}->{ev[idx[k]].dst}, which does not exist",
        )
        good &= ~no_link
        for name in ("x_idx", "x_t", "x_src", "x_dst", "x_st", "x_en"):
            setattr(self, name, getattr(self, name)[good])
        self.x_link = link[good]
        idx = self.x_idx
        nbytes = self.g.bytes[self.x_t]
        model = self.link_latency[self.x_link] + nbytes / self.link_bw[self.x_link]
        dur = self.x_en - self.x_st
        short = dur < model - _slack(model, self.x_en)
        self.errors_at(
            np.flatnonzero(short),
            lambda k: f"{self.describe(int(idx[k]))} lasts {format_time(dur[k], 6)} but moving "
            f"{_b(int(nbytes[k]))} over {ev[idx[k]].src}->{ev[idx[k]].dst} takes {format_time(model[k], 6)}",
        )

    def check_frees(self) -> None:
        idx, ev = self.f_idx, self.plan.events
        good = self._times_ok(idx, self.f_time, self.f_time)
        unknown = good & (self.f_t < 0)
        self.errors_at(np.flatnonzero(unknown), lambda k: f"events[{idx[k]}] frees unknown tensor '{ev[idx[k]].tensor}'")
        good &= ~unknown
        bad_tier = good & (self.f_k < 0)
        self.errors_at(np.flatnonzero(bad_tier), lambda k: f"{self.describe(int(idx[k]))} names unknown tier '{ev[idx[k]].tier}'")
        good &= ~bad_tier
        self.f_idx, self.f_t, self.f_k, self.f_time = self.f_idx[good], self.f_t[good], self.f_k[good], self.f_time[good]

    def check_initial(self) -> None:
        """Tensors with no producer start in the tiers of ``plan.initial``; produced tensors start nowhere."""
        g = self.g
        init_t: list[int] = []
        init_k: list[int] = []
        listed = np.zeros(len(g.tensor_ids), dtype=bool)
        for tid, where in self.plan.initial.items():
            t = g.tensor_index[tid]
            if t < 0:
                self.error(f"plan.initial names unknown tensor '{tid}'")
                continue
            listed[t] = True
            if g.produced[t]:
                producer = self.graph.ops[self.graph.producer[tid]].id
                self.error(
                    f"plan.initial places '{tid}' in {list(where)}, but it is produced by op '{producer}' and cannot "
                    "exist at step start"
                )
                continue
            seen: list[int] = []
            for tier in where:
                k = self.tier_index[tier]
                if k < 0:
                    self.error(f"plan.initial places '{tid}' in unknown tier '{tier}'")
                elif k in seen:
                    self.error(f"plan.initial lists tier '{tier}' twice for '{tid}'")
                else:
                    seen.append(k)
            if not seen:
                self.error(f"plan.initial gives no tier for '{tid}'")
            init_t.extend([t] * len(seen))
            init_k.extend(seen)
        missing = np.flatnonzero(~g.produced & ~listed)
        self.errors_at(
            missing,
            lambda t: f"tensor '{g.tensor_ids[t]}' has no producer, so it exists at step start, but plan.initial does "
            "not say in which tier",
        )
        self.i_t = np.array(init_t, dtype=_I64)
        self.i_k = np.array(init_k, dtype=_I64)

    def rank_times(self) -> None:
        """Replace every time by its exact rank (1..n; 0 is -∞, ``inf`` is +∞): comparisons become integer ones."""
        all_times = np.concatenate((self.c_st, self.c_en, self.x_st, self.x_en, self.f_time, [0.0]))
        self.times, inverse = np.unique(all_times, return_inverse=True)
        ranks = inverse.astype(_I64) + 1
        self.inf = len(self.times) + 1
        self.m = len(self.times) + 2  # multiplier of composite keys
        nc, nx, nf = len(self.c_st), len(self.x_st), len(self.f_time)
        parts = np.split(ranks, np.cumsum([nc, nc, nx, nx, nf]))
        self.c_sr, self.c_er, self.x_sr, self.x_er, self.f_r = parts[:5]
        self.zero_r = int(parts[5][0])
        self.step_end = float(self.times[-1]) if (nc or nx or nf) else 0.0
        self.step_end = max(self.step_end, 0.0)
        self.end_r = int(np.searchsorted(self.times, self.step_end)) + 1

    def build_copies(self) -> None:
        """Every creation of a copy: initial, op outputs (in the op's tier), transfer destinations."""
        g = self.g
        rep, flat = _expand(g.out_ptr, g.out_t, self.c_op)
        nk = len(self.tier_names)
        ni = len(self.i_t)
        self.cr_t = np.concatenate((self.i_t, g.out_t[flat], self.x_t))
        self.cr_k = np.concatenate((self.i_k, self.c_k[rep], self.x_dst))
        self.cr_alloc = np.concatenate((np.full(ni, self.zero_r, dtype=_I64), self.c_sr[rep], self.x_sr))
        self.cr_ready = np.concatenate((np.full(ni, self.zero_r, dtype=_I64), self.c_er[rep], self.x_er))
        self.cr_vt = np.concatenate((np.zeros(ni, dtype=_I64), self.c_sr[rep], self.x_sr))
        self.cr_event = np.concatenate((np.full(ni, -1, dtype=_I64), self.c_idx[rep], self.x_idx))
        kind = np.where(self.c_rec[rep], _RECOMPUTE, _COMPUTE)
        self.cr_kind = np.concatenate((np.full(ni, _INITIAL, dtype=_I64), kind, np.full(len(self.x_t), _TRANSFER)))
        self.cr_key = self.cr_t * nk + self.cr_k
        self.x_row = np.arange(len(self.x_t)) + ni + len(rep)  # creation row of each transfer's destination

    def pair_copies(self) -> None:
        """Pair each creation with the next free in its (tensor, tier); frees at t come before allocations at t."""
        nk = len(self.tier_names)
        n_c = len(self.cr_key)
        f_key = self.f_t * nk + self.f_k
        keys = np.concatenate((self.cr_key, f_key))
        comp = (keys * self.m + np.concatenate((self.cr_alloc, self.f_r))) * 2
        comp[:n_c] += 1
        order = np.argsort(comp, kind="stable")
        self.cr_free = np.full(n_c, self.inf, dtype=_I64)
        self.cr_free_event = np.full(n_c, -1, dtype=_I64)
        self.kept = np.ones(n_c, dtype=bool)
        if len(order) == 0:
            self.finish_pairing()
            return
        s_key = keys[order]
        is_c = order < n_c
        new = np.ones(len(order), dtype=bool)
        new[1:] = s_key[1:] != s_key[:-1]
        starts = np.flatnonzero(new)
        gid = np.cumsum(new) - 1
        pos = np.arange(len(order)) - starts[gid]
        wrong = is_c != (pos % 2 == 0)
        bad_group = np.zeros(len(starts), dtype=bool)
        bad_group[gid[wrong]] = True
        ok_item = ~bad_group[gid]
        # Regular groups: creation, free, creation, free, ... (maybe a last creation never freed).
        c_pos = np.flatnonzero(ok_item & is_c)
        nxt = c_pos + 1
        has_free = nxt < len(order)
        has_free[has_free] = (gid[nxt[has_free]] == gid[c_pos[has_free]]) & ~is_c[nxt[has_free]]
        rows = order[c_pos[has_free]]
        frees = order[nxt[has_free]] - n_c
        self.cr_free[rows] = self.f_r[frees]
        self.cr_free_event[rows] = self.f_idx[frees]
        ends = np.append(starts[1:], len(order))
        for gidx in np.flatnonzero(bad_group).tolist():
            self.pair_slowly(order[starts[gidx]:ends[gidx]].tolist(), n_c)
        self.finish_pairing()

    def pair_slowly(self, items: list[int], n_c: int) -> None:
        """One (tensor, tier) whose events do not alternate: find which creation or free is wrong, and say why."""
        live = -1
        k = 0
        while k < len(items):
            item = items[k]
            k += 1
            if item >= n_c:
                f = item - n_c
                if live < 0 and k < len(items) and items[k] < n_c:
                    c = items[k]
                    if self.cr_alloc[c] == self.f_r[f] and self.cr_ready[c] <= self.f_r[f]:
                        live = c  # a zero-length copy, created and freed at the same instant
                        k += 1
                if live < 0:
                    self.error(
                        f"{self.describe(int(self.f_idx[f]))} frees a copy that does not exist "
                        f"({self.tier_names[self.f_k[f]]} holds no copy of '{self.tensor(int(self.f_t[f]))}' then)"
                    )
                    continue
                self.cr_free[live] = self.f_r[f]
                self.cr_free_event[live] = self.f_idx[f]
                live = -1
            elif live >= 0:
                self.kept[item] = False
                what = "recomputes a copy" if self.cr_kind[item] == _RECOMPUTE else "allocates a copy"
                tier = self.tier_names[self.cr_k[item]]
                self.error(
                    f"{self.describe(int(self.cr_event[item]))} {what} of '{self.tensor(int(self.cr_t[item]))}' in "
                    f"{tier} while {tier} already holds one (made by {self.describe(int(self.cr_event[live]))}, not "
                    "freed yet): double allocation"
                )
            else:
                live = item

    def finish_pairing(self) -> None:
        """Kept copies sorted by (tensor, tier, allocation): the index every later lookup searches."""
        kept = np.flatnonzero(self.kept)
        comp = self.cr_key[kept] * self.m + self.cr_alloc[kept]
        order = np.argsort(comp, kind="stable")
        self.k_rows = kept[order]
        self.k_comp = comp[order]

    def find_copies(self, keys: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """Per query: the kept copy of that (tensor, tier) allocated last at or before the time, or -1."""
        if len(self.k_rows) == 0:
            return np.full(len(keys), -1, dtype=_I64)
        pos = np.searchsorted(self.k_comp, keys * self.m + ranks, side="right") - 1
        cand = self.k_rows[np.maximum(pos, 0)]
        return np.where((pos >= 0) & (self.cr_key[cand] == keys), cand, -1)

    def check_reads(self) -> None:
        """Every op input and transfer source has a ready copy at the start that stays until the end."""
        g = self.g
        nk = len(self.tier_names)
        rep, flat = _expand(g.in_ptr, g.in_t, self.c_op)
        n_op_reads = len(rep)
        self.r_t = np.concatenate((g.in_t[flat], self.x_t))
        self.r_k = np.concatenate((self.c_k[rep], self.x_src))
        self.r_sr = np.concatenate((self.c_sr[rep], self.x_sr))
        self.r_er = np.concatenate((self.c_er[rep], self.x_er))
        self.r_event = np.concatenate((self.c_idx[rep], self.x_idx))
        self.r_is_op = np.arange(len(self.r_t)) < n_op_reads
        self.r_mut = np.concatenate((g.in_mut[flat] & ~self.c_rec[rep], np.zeros(len(self.x_t), dtype=bool)))
        self.r_flat = flat  # CSR position of each op read (op reads come first in the r_* arrays)
        self.r_rec = self.c_rec[rep]
        keys = self.r_t * nk + self.r_k
        copy = self.find_copies(keys, self.r_sr)
        # A zero-length read at t happens before the frees and allocations at t: it reads the copy that
        # existed just before t (freed at t or later), not one allocated at t.
        zero = np.flatnonzero(self.r_er == self.r_sr)
        if len(zero):
            before = self.find_copies(keys[zero], self.r_sr[zero] - 1)
            # at time 0 the copies that exist "just before" are the initial ones (allocated at 0 too)
            initial = np.flatnonzero(self.cr_kind == _INITIAL)
            at_zero = (before < 0) & (self.r_sr[zero] == self.zero_r)
            if len(initial) and at_zero.any():
                ikeys = self.cr_t[initial] * nk + self.cr_k[initial]
                order = np.argsort(ikeys, kind="stable")
                pos = np.searchsorted(ikeys[order], keys[zero], side="left")
                hit = (pos < len(initial)) & (ikeys[order][np.minimum(pos, len(initial) - 1)] == keys[zero])
                cand = initial[order][np.minimum(pos, len(initial) - 1)]
                before = np.where(at_zero & hit & self.kept[cand], cand, before)
            ok = (before >= 0) & (self.cr_free[np.maximum(before, 0)] >= self.r_sr[zero])
            copy[zero[ok]] = before[ok]
        safe = np.maximum(copy, 0)
        free = self.cr_free[safe]
        present = (copy >= 0) & ((free > self.r_sr) | ((free == self.r_sr) & (self.r_er == self.r_sr)))
        not_ready = present & (self.cr_ready[safe] > self.r_sr)
        freed_early = present & ~not_ready & (free < self.r_er)
        self.r_copy = np.where(present, copy, -1)

        def missing(k: int) -> str:
            e, t, tier = int(self.r_event[k]), self.tensor(int(self.r_t[k])), self.tier_names[self.r_k[k]]
            if self.r_is_op[k]:
                return f"{self.describe(e)} reads '{t}', but {tier} holds no copy of it at its start"
            return f"{self.describe(e)} has no source: {tier} holds no copy of '{t}' at its start"

        def early(k: int) -> str:
            e, t, tier = int(self.r_event[k]), self.tensor(int(self.r_t[k])), self.tier_names[self.r_k[k]]
            c = int(copy[k])
            return (
                f"{self.describe(e)} reads '{t}' at its start, but the copy in {tier} is only ready at "
                f"{self.t(int(self.cr_ready[c]))} (end of {self.describe(int(self.cr_event[c]))})"
            )

        def freed(k: int) -> str:
            e, t, tier = int(self.r_event[k]), self.tensor(int(self.r_t[k])), self.tier_names[self.r_k[k]]
            what = "the op" if self.r_is_op[k] else "the transfer"
            return (
                f"{self.describe(e)} reads '{t}', but its copy in {tier} is freed at {self.t(int(free[k]))}, "
                f"before {what} ends"
            )

        self.errors_at(np.flatnonzero(~present), missing)
        self.errors_at(np.flatnonzero(not_ready), early)
        self.errors_at(np.flatnonzero(freed_early), freed)

    def build_mutations(self) -> None:
        """The first run of a mutating op updates, at its end, the copy it read in its own tier."""
        rows = np.flatnonzero(self.r_mut)
        comp = self.r_t[rows] * self.m + self.r_er[rows]
        order = np.argsort(comp, kind="stable")
        rows = rows[order]
        self.m_comp = comp[order]
        self.m_t = self.r_t[rows]
        self.m_sr = self.r_sr[rows]
        self.m_er = self.r_er[rows]
        self.m_event = self.r_event[rows]
        self.m_copy = self.r_copy[rows]
        same = np.zeros(len(rows), dtype=bool)
        if len(rows):
            same[1:] = (self.m_t[1:] == self.m_t[:-1]) & (self.m_copy[1:] == self.m_copy[:-1]) & (self.m_copy[1:] >= 0)
        self.m_run = np.maximum.accumulate(np.where(same, 0, np.arange(len(rows)))) if len(rows) else _EMPTY_I
        self.mutated = np.zeros(len(self.g.tensor_ids), dtype=bool)
        self.mutated[self.m_t] = True
        self.fresh0 = np.ones(len(self.cr_t), dtype=bool)

    def check_versions(self) -> None:
        """Each run reads the version of every in-place-updated input that the execution order implies.

        The version a read sees is the number of updates of the tensor completed by its start (a zero-time
        update at exactly that instant may count either way: equal times do not order them). A recompute must
        see the version
        its op's first run saw, or it regenerates a different value; and it must not regenerate a tensor
        that was updated in place after its first production (the update would be lost).
        """
        n_op = len(self.r_flat)
        rows = np.flatnonzero(self.mutated[self.r_t[:n_op]])
        if len(rows) == 0 or len(self.m_comp) == 0:
            return
        t, sr = self.r_t[rows], self.r_sr[rows]
        base, lo, hi = self.updates_done(t, sr)
        own = (self.r_mut[rows] & (self.r_er[rows] == sr)).astype(_I64)  # a zero-time update is not its own input
        hi -= own
        want = self.read_version[self.r_flat[rows]]
        bad = np.flatnonzero((want < lo) | (want > hi))
        ops = self.g.ops

        def word(k: int) -> str:
            r = int(rows[k])
            e, x, w = int(self.r_event[r]), self.tensor(int(self.r_t[r])), int(want[k])
            op = ops[self.c_op[np.searchsorted(self.c_idx, e)]].id
            if w < lo[k]:
                upd = self.describe(int(self.m_event[base[k] + w]))
                seen = f"after {upd} updated it in place"
            else:
                j = base[k] + hi[k]
                upd = self.describe(int(self.m_event[j])) if j < len(self.m_event) else "an update"
                seen = f"before {upd} updated it in place"
            if self.r_rec[r]:
                return (
                    f"{self.describe(e)} re-runs op '{op}' on '{x}' {seen}, but the first run read version {w}: "
                    "the recompute regenerates a different value"
                )
            return f"{self.describe(e)} reads '{x}' {seen}, but in {self.order_name} op '{op}' reads version {w}"

        self.errors_at(bad, word)
        # Recomputed outputs that an update had already changed.
        rec = np.flatnonzero((self.cr_kind == _RECOMPUTE) & self.mutated[self.cr_t])
        if len(rec):
            first_sr = np.full(len(self.g.tensor_ids), self.inf, dtype=_I64)
            np.minimum.at(first_sr, self.m_t, self.m_sr)
            first_ev = {}
            for j in np.argsort(self.m_sr, kind="stable")[::-1].tolist():
                first_ev[int(self.m_t[j])] = int(self.m_event[j])
            late = rec[first_sr[self.cr_t[rec]] < self.cr_ready[rec]]
            self.errors_at(
                late,
                lambda c: f"{self.describe(int(self.cr_event[c]))} regenerates '{self.tensor(int(self.cr_t[c]))}', "
                f"which {self.describe(first_ev[int(self.cr_t[c])])} updated in place after its first production: "
                "the re-run yields the old value and the update is lost",
            )

    def updates_done(self, tensors: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query: the index of the tensor's first update (by end time), and how many of its updates are
        surely / possibly complete at that time. A zero-time update at exactly that instant is only possibly
        complete: equal times do not order it against the reader."""
        key = tensors * self.m + ranks
        base = np.searchsorted(self.m_comp, tensors * self.m, side="left")
        possibly = np.searchsorted(self.m_comp, key, side="right") - base
        z_comp = self.m_comp[self.m_sr == self.m_er]  # still sorted
        ties = np.searchsorted(z_comp, key, side="right") - np.searchsorted(z_comp, key, side="left")
        return base, possibly - ties, possibly

    def last_update(self, tensors: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """Index of the tensor's last update completed by each time (an index below the tensor's own if none)."""
        return np.searchsorted(self.m_comp, tensors * self.m + ranks, side="right") - 1

    def fresh_at(self, copies: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """Fresh at a time: fresh when made, and every update of the tensor since then was made on this copy."""
        if len(self.m_comp) == 0:
            return self.fresh0[copies]
        t = self.cr_t[copies]
        a = self.last_update(t, self.cr_vt[copies])
        b = self.last_update(t, ranks)
        safe_b = np.maximum(b, 0)
        since_ok = (b <= a) | ((self.m_copy[safe_b] == copies) & (self.m_run[safe_b] <= a + 1))
        return self.fresh0[copies] & since_ok

    def stale_reason(self, copy: int, rank: int) -> str:
        t = int(self.cr_t[copy])
        a = int(self.last_update(np.array([t]), self.cr_vt[[copy]])[0])
        b = int(self.last_update(np.array([t]), np.array([rank]))[0])
        for k in range(b, a, -1):
            if self.m_copy[k] != copy:
                return f"it was updated in place by {self.describe(int(self.m_event[k]))} after this copy was made"
        if self.cr_kind[copy] in (_COMPUTE, _RECOMPUTE):
            return f"{self.describe(int(self.cr_event[copy]))} made it after the tensor had been updated in place"
        return f"it was made by {self.describe(int(self.cr_event[copy]))} from a stale value"

    def resolve_freshness(self) -> None:
        """Outputs are fresh unless the tensor was updated before; copies take their source's freshness."""
        if len(self.m_comp) == 0:
            return
        # A first run's output is the tensor's first version: no update can precede it (one at the same instant
        # is a zero-time tie, ordered by the execution order). A recompute after an update yields the old value.
        outs = np.flatnonzero((self.cr_kind == _RECOMPUTE) & self.mutated[self.cr_t])
        if len(outs):
            _, surely, _ = self.updates_done(self.cr_t[outs], self.cr_vt[outs])
            self.fresh0[outs] = surely == 0
        n_op_reads = int(self.r_is_op.sum())
        src = self.r_copy[n_op_reads:]
        sel = np.flatnonzero(self.mutated[self.x_t] & (src >= 0))
        dst, src, start = self.x_row[sel], src[sel], self.x_sr[sel]
        fresh = np.ones(len(sel), dtype=bool)
        for _ in range(len(sel) + 1):  # staleness spreads one hop per round; each round can only lower freshness
            fresh = self.fresh_at(src, start)
            if np.array_equal(fresh, self.fresh0[dst]):
                break
            self.fresh0[dst] = fresh
        self.errors_at(
            np.flatnonzero(~fresh),
            lambda k: f"{self.describe(int(self.x_idx[sel[k]]))} copies a stale value: the copy of "
            f"'{self.tensor(int(self.x_t[sel[k]]))}' in {self.tier_names[self.x_src[sel[k]]]} is stale at its start "
            f"({self.stale_reason(int(src[k]), int(start[k]))})",
        )
        reads = np.flatnonzero(self.r_is_op & (self.r_copy >= 0))
        reads = reads[self.mutated[self.r_t[reads]] | ~self.fresh0[self.r_copy[reads]]]
        stale = reads[~self.fresh_at(self.r_copy[reads], self.r_sr[reads])]
        self.errors_at(
            stale,
            lambda k: f"{self.describe(int(self.r_event[k]))} reads a stale copy of '{self.tensor(int(self.r_t[k]))}' "
            f"in {self.tier_names[self.r_k[k]]} ({self.stale_reason(int(self.r_copy[k]), int(self.r_sr[k]))})",
        )

    def check_races(self) -> None:
        """No read of a tensor (by a transfer or another op) while an op updates it in place."""
        if len(self.m_comp) == 0:
            return
        comp = self.m_t * self.m + self.m_sr
        order = np.argsort(comp, kind="stable")
        s_comp = comp[order]
        reads = np.flatnonzero(self.mutated[self.r_t])
        last = np.searchsorted(s_comp, self.r_t[reads] * self.m + self.r_er[reads], side="left") - 1
        hits: list[tuple[int, int]] = []
        for back in (0, 1):
            cand = last - back
            ok = cand >= 0
            m = order[np.maximum(cand, 0)]
            ok &= self.m_t[m] == self.r_t[reads]
            ok &= (self.m_er[m] > self.r_sr[reads]) & (self.m_sr[m] < self.r_er[reads])
            ok &= self.m_event[m] != self.r_event[reads]
            hits.extend(zip(reads[ok].tolist(), m[ok].tolist()))
        hits = sorted(set(hits))

        def word(k: int) -> str:
            r, m = hits[k]
            verb = "reads" if self.r_is_op[r] else "copies"
            return (
                f"{self.describe(int(self.r_event[r]))} {verb} '{self.tensor(int(self.r_t[r]))}' while "
                f"{self.describe(int(self.m_event[m]))} updates it in place"
            )

        self.errors_at(np.arange(len(hits)), word)

    def check_step_end(self) -> None:
        """Persistent tensors end fresh where they started; every other copy is freed by the step end."""
        nk = len(self.tier_names)
        rows = self.k_rows
        keys = self.cr_key[rows]
        last_of_key = np.ones(len(rows), dtype=bool)
        if len(rows):
            last_of_key[:-1] = keys[1:] != keys[:-1]
        last = rows[last_of_key]
        open_ = self.cr_free[last] == self.inf
        home_keys = self.i_t * nk + self.i_k
        home_keys = home_keys[self.g.persistent[self.i_t]]
        is_home = np.isin(self.cr_key[last], home_keys)

        def lost(k: int) -> str:
            c = int(last[k])
            return (
                f"persistent tensor '{self.tensor(int(self.cr_t[c]))}' ends the step without a copy in "
                f"{self.tier_names[self.cr_k[c]]}, where it started (last copy freed at {self.t(int(self.cr_free[c]))})"
            )

        def left(k: int) -> str:
            c = int(last[k])
            t = int(self.cr_t[c])
            what = "persistent tensor" if self.g.persistent[t] else "tensor"
            return (
                f"{what} '{self.tensor(t)}' still has a copy in {self.tier_names[self.cr_k[c]]} at the step end "
                f"({self.t(self.end_r)}; made by {self.describe(int(self.cr_event[c]))}); it must be freed so the "
                "next step starts from the same state"
            )

        self.errors_at(np.flatnonzero(is_home & ~open_), lost)
        self.errors_at(np.flatnonzero(~is_home & open_), left)
        check = np.flatnonzero(is_home & open_)
        check = check[self.mutated[self.cr_t[last[check]]] | ~self.fresh0[last[check]]]
        stale = check[~self.fresh_at(last[check], np.full(len(check), self.end_r, dtype=_I64))]
        self.errors_at(
            stale,
            lambda k: f"persistent tensor '{self.tensor(int(self.cr_t[last[k]]))}' ends the step with a stale copy in "
            f"{self.tier_names[self.cr_k[last[k]]]}, where it started "
            f"({self.stale_reason(int(last[k]), self.end_r)}); it must be written back",
        )

    def check_capacity(self) -> dict[str, int]:
        """Occupancy per tier as a sorted prefix sum (frees before allocations at equal times)."""
        rows = np.flatnonzero(self.kept)
        freed = rows[self.cr_free[rows] < self.inf]
        nbytes = self.g.bytes
        tier = np.concatenate((self.cr_k[rows], self.cr_k[freed]))
        time = np.concatenate((self.cr_alloc[rows], self.cr_free[freed]))
        delta = np.concatenate((nbytes[self.cr_t[rows]], -nbytes[self.cr_t[freed]]))
        comp = (tier * self.m + time) * 2
        comp[: len(rows)] += 1
        order = np.argsort(comp, kind="stable")
        tier, time, level = tier[order], time[order], np.cumsum(delta[order])
        peaks: dict[str, int] = {}
        for k, name in enumerate(self.tier_names):
            lo, hi = np.searchsorted(tier, [k, k + 1])
            if lo == hi:
                peaks[name] = 0
                continue
            seg = level[lo:hi] - (level[lo - 1] if lo > 0 else 0)
            peak = max(int(seg.max()), 0)
            peaks[name] = peak
            cap = int(self.capacity[k])
            if peak > cap:
                first = int(np.argmax(seg > cap))
                worst = int(np.argmax(seg))
                self.error(
                    f"tier {name} exceeds its capacity of {_b(cap)} from {self.t(int(time[lo + first]))} "
                    f"({int(seg[first]) - cap:,} bytes over then; at worst {peak - cap:,} bytes over at "
                    f"{self.t(int(time[lo + worst]))}, holding {_b(peak)})"
                )
        return peaks

    def check_streams(self) -> None:
        """One compute stream per tier, one per directed link: intervals on a stream never overlap."""
        nk = len(self.tier_names)
        stream = np.concatenate((self.c_k, nk + self.x_link))
        sr = np.concatenate((self.c_sr, self.x_sr))
        er = np.concatenate((self.c_er, self.x_er))
        idx = np.concatenate((self.c_idx, self.x_idx))
        order = np.lexsort((er, sr, stream))
        stream, sr, er, idx = stream[order], sr[order], er[order], idx[order]
        clash = np.flatnonzero((stream[1:] == stream[:-1]) & (sr[1:] < er[:-1])) + 1
        links = self.hw.links

        def word(k: int) -> str:
            s = int(stream[k])
            name = f"the compute stream of {self.tier_names[s]}" if s < nk else f"link {links[s - nk].name}"
            return f"{self.describe(int(idx[k]))} overlaps {self.describe(int(idx[k - 1]))} on {name}"

        self.errors_at(clash, word)

    # ------------------------------------------------------------------------------------------ metrics

    def replay_metrics(self, peaks: dict[str, int]) -> dict[str, Any]:
        on_ct = self.c_k == self.ct
        dur = self.c_en - self.c_st
        busy = _union_length(self.c_st[on_ct], self.c_en[on_ct])
        moving = _union_length(self.x_st, self.x_en)
        both = _union_length(
            np.concatenate((self.c_st[on_ct], self.x_st)), np.concatenate((self.c_en[on_ct], self.x_en))
        )
        hidden = busy + moving - both  # |A ∩ B| = |A| + |B| - |A ∪ B|
        moved: dict[str, int] = {}
        per_link = np.zeros(len(self.hw.links), dtype=_I64)
        np.add.at(per_link, self.x_link, self.g.bytes[self.x_t])
        for j in np.flatnonzero(np.bincount(self.x_link, minlength=len(self.hw.links))).tolist():
            moved[self.hw.links[j].name] = int(per_link[j])
        return {
            "step_time_s": self.step_end,
            "compute_time_s": float(dur[on_ct & ~self.c_rec].sum()),
            "recompute_time_s": float(dur[self.c_rec].sum()),
            "stall_time_s": self.step_end - busy,
            "peak_bytes": peaks,
            "transfer_bytes": moved,
            "overlap_ratio": min(max(hidden / moving, 0.0), 1.0) if moving > 0 else 1.0,
        }

    def check_metrics(self, replayed: Mapping[str, Any]) -> None:
        reported = self.plan.metrics
        for key in METRIC_KEYS:
            mine = replayed[key]
            if key not in reported:
                self.error(f"plan.metrics has no '{key}' (the replay gives {mine!r})")
                continue
            theirs = reported[key]
            if isinstance(mine, dict):
                if not isinstance(theirs, Mapping):
                    self.error(f"plan.metrics.{key} should map names to numbers, got {theirs!r}")
                    continue
                for name in sorted(set(mine) | set(theirs)):
                    a, b = mine.get(name, 0), theirs.get(name, 0)
                    if not _close(a, b):
                        self.error(f"plan.metrics.{key}['{name}'] is {b!r} but the replay gives {a!r}")
            elif not _close(mine, theirs, 1e-9 if key == "overlap_ratio" else 1e-12):
                # a ratio of nanosecond intervals carries rounding far above 1e-12 in absolute terms
                self.error(f"plan.metrics.{key} is {theirs!r} but the replay gives {mine!r}")


def _fmt_t(seconds: float) -> str:
    return "t=" + format_time(seconds, 6) if math.isfinite(seconds) else f"t={seconds}"


def _b(nbytes: int) -> str:
    return f"{nbytes:,} bytes ({format_bytes(nbytes)})"


def _slack(model_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """Floating-point slack for a duration check: relative to the model, plus a few ulps of the clock."""
    return DURATION_RTOL * model_s + 1e-15 * np.abs(end_s)


def _close(a: Any, b: Any, abs_tol: float = 1e-12) -> bool:
    if isinstance(b, bool) or not isinstance(b, (int, float)):
        return False
    return abs(a - b) <= METRIC_RTOL * max(abs(a), abs(b)) + abs_tol


def validate_plan(graph: Graph, plan: Plan, *, check_metrics: bool = True, max_errors: int = 50) -> ValidationReport:
    """Replay ``plan`` against ``graph`` and ``plan.hardware``; report every broken rule in one sentence each.

    Parameters
    ----------
    graph : the graph the plan was made for.
    plan : the plan (events, initial placement, hardware section, reported metrics).
    check_metrics : also compare ``plan.metrics`` with the replayed ones (relative tolerance 1e-6).
    max_errors : keep at most this many messages (``error_count`` has the total).

    Returns
    -------
    ValidationReport with ``ok``, the first ``max_errors`` messages, and the replayed metrics.
    """
    # The replay allocates no reference cycles; pausing the cyclic collector keeps big plans from paying for
    # repeated full collections over the caller's heap (a 3x difference at 400k events).
    paused = gc.isenabled()
    gc.disable()
    try:
        replay = _Replay(graph, plan, max_errors)
        metrics = replay.run()
        if check_metrics and metrics:
            replay.check_metrics(metrics)
    finally:
        if paused:
            gc.enable()
    return ValidationReport(replay.count == 0, tuple(replay.errors), metrics, replay.count)
