"""Liveness: where each tensor is used, its idle spans between uses, and occupancy with nothing offloaded.

A span is the gap between two consecutive uses of a tensor; it is the unit a policy decides on (keep,
offload, recompute). Persistent tensors also have a wrap-around span from their last use to their first
use in the next step; tensors that exist at step start without being persistent (inputs) have an initial
span from step start to their first use.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise

import numpy as np

from core.graph import Graph

__all__ = ["Span", "Liveness", "analyze", "SPAN_KINDS"]

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


def analyze(graph: Graph, host_ops: frozenset[int] = frozenset(),
            extra_uses: Mapping[str, tuple[int, ...]] | None = None) -> Liveness:
    """Compute uses, spans and the no-offload occupancy of ``graph`` in one pass over its ops.

    Ops in ``host_ops`` run on a lower tier's own compute (CPU Adam): their reads and writes are not uses
    in the compute tier, so they neither need room there nor split spans. ``extra_uses`` adds reads that
    are not in the graph, such as the inputs of an op recomputed just before op ``i`` (they must be in the
    compute tier there).
    """
    n = len(graph.ops)
    uses: dict[str, list[int]] = {t.id: [] for t in graph.tensors}
    mutations: dict[str, set[int]] = {}
    required = np.zeros(n, dtype=np.int64)
    size = {t.id: t.bytes for t in graph.tensors}
    for i, op in enumerate(graph.ops):
        if i in host_ops:
            continue
        total = 0
        for tid in op.inputs:
            lst = uses[tid]
            if not lst or lst[-1] != i:
                lst.append(i)
                total += size[tid]
        for tid in op.outputs:
            uses[tid].append(i)
            total += size[tid]
        for tid in op.mutates:
            mutations.setdefault(tid, set()).add(i)
        required[i] = total
    for tid, slots in (extra_uses or {}).items():
        for i in slots:
            if i not in uses[tid]:
                bisect.insort(uses[tid], i)
                required[i] += size[tid]

    spans: list[Span] = []
    spans_of: dict[str, tuple[int, ...]] = {}
    diff = np.zeros(n + 1, dtype=np.int64)
    producer = graph.producer
    for t in graph.tensors:
        u = uses[t.id]
        ids: list[int] = []
        if t.persistent:
            diff[0] += t.bytes
            if not u:
                ids.append(len(spans))
                spans.append(Span(len(spans), t.id, -1, n, "unused", t.bytes))
        elif u:
            first = u[0] if t.id in producer else 0
            diff[first] += t.bytes
            diff[u[-1] + 1] -= t.bytes
            if t.id not in producer:
                ids.append(len(spans))
                spans.append(Span(len(spans), t.id, -1, u[0], "initial", t.bytes))
        for a, b in pairwise(u):
            if b > a + 1:
                ids.append(len(spans))
                spans.append(Span(len(spans), t.id, a, b, "inner", t.bytes))
        if t.persistent and u:
            ids.append(len(spans))
            spans.append(Span(len(spans), t.id, u[-1], u[0], "wrap", t.bytes))
        spans_of[t.id] = tuple(ids)
    keep = np.cumsum(diff[:n]) if n else np.zeros(0, dtype=np.int64)
    return Liveness(
        graph=graph,
        uses={k: tuple(v) for k, v in uses.items()},
        mutations={k: frozenset(v) for k, v in mutations.items()},
        spans=tuple(spans),
        spans_of=spans_of,
        required_bytes=required,
        keep_bytes=keep,
        host_ops=host_ops,
        extra_uses={k: tuple(v) for k, v in (extra_uses or {}).items()},
    )
