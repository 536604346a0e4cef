"""Liveness: where each tensor is used, its idle spans between uses, and occupancy with nothing offloaded.

A span is the gap between two consecutive uses of a tensor; it is the unit a policy decides on (keep,
offload, recompute). Persistent tensors also have a wrap-around span from their last use to their first
use in the next step; tensors that exist at step start without being persistent (inputs) have an initial
span from step start to their first use.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from operator import attrgetter

import numpy as np

from core.gc_pause import paused_gc
from core.graph import Graph

__all__ = ["Span", "Liveness", "analyze", "SPAN_KINDS", "GraphRefs", "graph_refs"]

#: inner: between two uses; initial: step start -> first use of a non-persistent tensor that exists at
#: start; wrap: last use -> first use of the next step (persistent); unused: a persistent tensor no op uses.
SPAN_KINDS = ("inner", "initial", "wrap", "unused")


@dataclass(frozen=True, slots=True)
class Span:
    """Idle gap of ``tensor`` after the use at op ``start_op`` until the use at op ``end_op``.

    For ``wrap`` spans ``end_op <= start_op`` (the gap runs through the step boundary); ``initial`` spans
    have ``start_op == -1``; ``unused`` spans cover the whole step (``-1``, ``n_ops``).
    """

    id: int
    tensor: str
    start_op: int
    end_op: int
    kind: str
    bytes: int


@dataclass(frozen=True)
class Liveness:
    """Uses and spans of every tensor, plus per-op occupancy arrays (index = op position)."""

    graph: Graph
    uses: Mapping[str, tuple[int, ...]]
    mutations: Mapping[str, frozenset[int]]
    spans: tuple[Span, ...]
    spans_of: Mapping[str, tuple[int, ...]]
    #: bytes of the inputs and outputs of each op: what must be in the compute tier while it runs
    required_bytes: np.ndarray
    #: compute-tier occupancy during each op when nothing is ever moved
    keep_bytes: np.ndarray
    #: ops that run on a lower tier's own compute (their uses are not compute-tier uses)
    host_ops: frozenset[int] = frozenset()
    #: reads added on top of the graph's (recompute inputs), tensor -> op indices
    extra_uses: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def n_ops(self) -> int:
        return len(self.graph.ops)

    @cached_property
    def no_offload_peak_bytes(self) -> int:
        return int(self.keep_bytes.max()) if self.n_ops else self.graph.persistent_bytes

    def span_length_ops(self, span: Span) -> int:
        """Ops strictly inside the span (wrap spans count the ops on both sides of the step boundary)."""
        if span.kind == "wrap":
            return self.n_ops - span.start_op - 1 + span.end_op
        return span.end_op - span.start_op - 1


class GraphRefs:
    """A graph's reads, writes and in-place updates as flat (op, tensor) index arrays, built once per graph
    (the planner analyses the same graph again with host ops and recompute inputs)."""

    def __init__(self, graph: Graph) -> None:
        tensors = graph.tensors
        self.names = list(map(attrgetter("id"), tensors))
        index = dict(zip(self.names, range(len(tensors))))
        self.index = index
        self.bytes = np.fromiter(map(attrgetter("bytes"), tensors), dtype=np.int64, count=len(tensors))
        self.persistent = np.fromiter(map(attrgetter("persistent"), tensors), dtype=bool, count=len(tensors))
        self.in_op, self.in_t = self._flat(graph, index, "inputs")
        self.out_op, self.out_t = self._flat(graph, index, "outputs")
        self.mut_op, self.mut_t = self._flat(graph, index, "mutates")
        self.produced = np.zeros(len(tensors), dtype=bool)
        self.produced[self.out_t] = True

    @staticmethod
    def _flat(graph: Graph, index: Mapping[str, int], attr: str) -> tuple[np.ndarray, np.ndarray]:
        lists = list(map(attrgetter(attr), graph.ops))
        counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        total = int(counts.sum())
        tensors = np.fromiter(map(index.__getitem__, chain.from_iterable(lists)), dtype=np.int64, count=total)
        return np.repeat(np.arange(len(lists), dtype=np.int64), counts), tensors


_REFS: dict[int, tuple[weakref.ref[Graph], GraphRefs]] = {}


def graph_refs(graph: Graph) -> GraphRefs:
    """The flat references of ``graph``, built on first use and kept while the graph lives."""
    hit = _REFS.get(id(graph))
    if hit is not None and hit[0]() is graph:
        return hit[1]
    refs = GraphRefs(graph)
    key = id(graph)

    def _forget(_ref: weakref.ref[Graph], key: int = key) -> None:
        _REFS.pop(key, None)

    _REFS[key] = (weakref.ref(graph, _forget), refs)
    return refs


def analyze(graph: Graph, host_ops: frozenset[int] = frozenset(),
            extra_uses: Mapping[str, tuple[int, ...]] | None = None) -> Liveness:
    """Compute uses, spans and the no-offload occupancy of ``graph`` (array code over all references).

    Ops in ``host_ops`` run on a lower tier's own compute (CPU Adam): their reads and writes are not uses
    in the compute tier, so they neither need room there nor split spans. ``extra_uses`` adds reads that
    are not in the graph, such as the inputs of an op recomputed just before op ``i`` (they must be in the
    compute tier there).
    """
    # Millions of spans and tuples, none in a cycle: full collections over the caller's heap (a 10⁶-op
    # graph is ~10⁷ objects) would otherwise cost more than the analysis itself.
    with paused_gc():
        return _analyze(graph, host_ops, extra_uses)


def _analyze(graph: Graph, host_ops: frozenset[int], extra_uses: Mapping[str, tuple[int, ...]] | None) -> Liveness:
    n = len(graph.ops)
    refs = graph_refs(graph)
    n_t = len(refs.names)
    # (tensor, op) pairs of every use: an input read twice by one op counts once; inputs and outputs of an
    # op are disjoint (graph validation), and each tensor has at most one producer.
    op = np.concatenate((refs.in_op, refs.out_op))
    tensor = np.concatenate((refs.in_t, refs.out_t))
    mut_op, mut_t = refs.mut_op, refs.mut_t
    if host_ops:
        host = np.zeros(n, dtype=bool)
        host[[i for i in host_ops if 0 <= i < n]] = True
        keep = ~host[op]
        op, tensor = op[keep], tensor[keep]
        keep = ~host[mut_op]
        mut_op, mut_t = mut_op[keep], mut_t[keep]
    pair = np.unique(tensor * (n + 1) + op)
    required = np.zeros(n + 1, dtype=np.int64)
    np.add.at(required, pair % (n + 1), refs.bytes[pair // (n + 1)])
    required = required[:n]
    if extra_uses:
        ex_t = np.fromiter((refs.index[t] for t, slots in extra_uses.items() for _ in slots), dtype=np.int64)
        ex_op = np.fromiter((i for slots in extra_uses.values() for i in slots), dtype=np.int64, count=len(ex_t))
        extra = np.setdiff1d(np.unique(ex_t * (n + 1) + ex_op), pair, assume_unique=True)
        np.add.at(required, extra % (n + 1), refs.bytes[extra // (n + 1)])
        pair = np.union1d(pair, extra)
    use_t, use_op = pair // (n + 1), pair % (n + 1)  # sorted by tensor, then op
    bounds = np.searchsorted(use_t, np.arange(n_t + 1))
    n_uses = np.diff(bounds)
    op_list = use_op.tolist()
    names = refs.names
    b = bounds.tolist()
    uses = dict(zip(names, map(tuple, map(op_list.__getitem__, map(slice, b[:-1], b[1:])))))

    # spans, ordered per tensor as [unused | initial], inner ..., [wrap]
    has = n_uses > 0
    first_use = np.where(has, use_op[np.minimum(bounds[:-1], len(use_op) - 1)] if len(use_op) else 0, -1)
    last_use = np.where(has, use_op[np.maximum(bounds[1:] - 1, 0)] if len(use_op) else 0, -1)
    gap = np.flatnonzero((use_t[1:] == use_t[:-1]) & (use_op[1:] > use_op[:-1] + 1))
    unused = np.flatnonzero(refs.persistent & ~has)
    initial = np.flatnonzero(~refs.persistent & has & ~refs.produced)
    wrap = np.flatnonzero(refs.persistent & has)
    s_t = np.concatenate((unused, initial, use_t[gap], wrap))
    s_rank = np.concatenate((np.zeros(len(unused) + len(initial), dtype=np.int64), gap + 1,
                             np.full(len(wrap), len(use_op) + 2, dtype=np.int64)))
    s_start = np.concatenate((np.full(len(unused) + len(initial), -1, dtype=np.int64), use_op[gap], last_use[wrap]))
    s_end = np.concatenate((np.full(len(unused), n, dtype=np.int64), first_use[initial], use_op[gap + 1],
                            first_use[wrap]))
    s_kind = np.concatenate((np.full(len(unused), 3, dtype=np.int64), np.full(len(initial), 1, dtype=np.int64),
                             np.zeros(len(gap), dtype=np.int64), np.full(len(wrap), 2, dtype=np.int64)))
    order = np.lexsort((s_rank, s_t))
    s_t, s_start, s_end, s_kind = s_t[order], s_start[order], s_end[order], s_kind[order]
    kinds = [SPAN_KINDS[k] for k in s_kind.tolist()]
    spans = tuple(map(Span, range(len(s_t)), [names[k] for k in s_t.tolist()], s_start.tolist(), s_end.tolist(),
                      kinds, refs.bytes[s_t].tolist()))
    sb = np.searchsorted(s_t, np.arange(n_t + 1)).tolist()
    spans_of = dict(zip(names, map(tuple, map(range, sb[:-1], sb[1:]))))

    # occupancy with nothing moved: persistent tensors all step; others from production (or the step
    # start) to their last use
    live_rows = np.flatnonzero(~refs.persistent & has)
    start = np.where(refs.produced[live_rows], first_use[live_rows], 0)
    diff = np.zeros(n + 1, dtype=np.int64)
    diff[0] += int(refs.bytes[refs.persistent].sum())
    np.add.at(diff, start, refs.bytes[live_rows])
    np.add.at(diff, last_use[live_rows] + 1, -refs.bytes[live_rows])
    keep_bytes = np.cumsum(diff[:n]) if n else np.zeros(0, dtype=np.int64)

    grouped: dict[str, list[int]] = {}  # in op order, as the tensors are first updated
    for t, i in zip(mut_t.tolist(), mut_op.tolist()):
        grouped.setdefault(names[t], []).append(i)
    mutations = {k: frozenset(v) for k, v in grouped.items()}
    return Liveness(
        graph=graph,
        uses=uses,
        mutations=mutations,
        spans=spans,
        spans_of=spans_of,
        required_bytes=required,
        keep_bytes=keep_bytes,
        host_ops=host_ops,
        extra_uses={k: tuple(v) for k, v in (extra_uses or {}).items()},
    )
