"""Span geometry, one owner: which op slots a span frees, which span covers an op, dirty or clean, idle
time, the slots a lower-tier copy is held, and whether a span may be recomputed.

The planner, the scheduler, every baseline and the MILP reference call these functions instead of keeping
their own copies, so "valid by construction" rests on one definition. Slot ``i`` is op ``i``'s turn; a
range ``(lo, hi)`` is the half-open slot range ``lo..hi-1``.

Recompute and versions: an in-place update makes a new *version* of a tensor. Re-running a span's
producer regenerates the version the producer wrote, from the versions of its inputs at the re-run. That is
only the value the span's reader expects when (1) the tensor was not updated in place between its
production and the re-run and (2) no input of the producer was updated in place between the producer's run
and the re-run (the op the re-run serves counts as "between": with zero-duration ops the two share one
instant). :func:`recompute_ok` enforces both, for every policy; the scheduler refuses any other recompute.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import numpy as np

from core.graph import Graph
from core.liveness import SPAN_KINDS, Liveness, Span

__all__ = [
    "span_kind_codes", "freed_slots", "freed_slot_ranges", "covers", "covering_span", "idle_s", "is_dirty", "lower_window", "mutation_ops",
    "mutated_between", "recompute_ok", "recompute_blocker", "slot_bytes_of", "spare_outputs",
]


def span_kind_codes(spans: Sequence[Span]) -> np.ndarray:
    """Each span's kind as its index in :data:`core.liveness.SPAN_KINDS` (int64; the codes of ``core.kernels``'s
    ``SP_*`` constants), for array code."""
    code = {k: i for i, k in enumerate(SPAN_KINDS)}
    return np.fromiter((code[sp.kind] for sp in spans), dtype=np.int64, count=len(spans))


def freed_slot_ranges(kind: np.ndarray, start: np.ndarray, end: np.ndarray, n_ops: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`freed_slots` of many spans at once (kind codes of :func:`span_kind_codes`, start and end ops):
    per span the number of ranges (0-2) and their bounds as ``(len, 2)`` arrays, in the same order, unused
    places (0, 0)."""
    inner, initial, wrap, unused = (kind == k for k in range(len(SPAN_KINDS)))
    lo0 = np.where(inner, start + 1, 0)
    hi0 = np.minimum(np.where(unused, n_ops, end), n_ops)
    lo1 = start + 1
    hi1 = np.full(len(kind), n_ops, dtype=np.int64)
    ok0 = (inner | initial | wrap | unused) & (hi0 > lo0)
    ok1 = wrap & (hi1 > lo1)
    count = ok0.astype(np.int64) + ok1
    lo = np.zeros((len(kind), 2), dtype=np.int64)
    hi = np.zeros((len(kind), 2), dtype=np.int64)
    lo[:, 0] = np.where(ok0, lo0, np.where(ok1, lo1, 0))
    hi[:, 0] = np.where(ok0, hi0, np.where(ok1, hi1, 0))
    both = ok0 & ok1
    lo[:, 1] = np.where(both, lo1, 0)
    hi[:, 1] = np.where(both, hi1, 0)
    return count, lo, hi


def freed_slots(span: Span, n_ops: int) -> list[tuple[int, int]]:
    """Slot ranges of the compute tier a span frees when it is not kept, at minimum extents.

    ``inner`` frees the ops strictly inside it, ``initial`` the ops before the first use, ``wrap`` the ops
    after the last use and before the first (two ranges), ``unused`` every op. These are exactly the slots
    :mod:`core.schedule` counts the compute-tier copy absent before it grows any extent.
    """
    if span.kind == "inner":
        out = [(span.start_op + 1, span.end_op)]
    elif span.kind == "initial":
        out = [(0, span.end_op)]
    elif span.kind == "wrap":
        out = [(0, span.end_op), (span.start_op + 1, n_ops)]
    else:
        out = [(0, n_ops)]
    return [(lo, min(hi, n_ops)) for lo, hi in out if min(hi, n_ops) > lo]


def covers(span: Span, op: int, n_ops: int) -> bool:
    """Whether dropping ``span`` frees its bytes while op ``op`` runs."""
    return any(lo <= op < hi for lo, hi in freed_slots(span, n_ops))


def covering_span(live: Liveness, tensor: str, op: int) -> int | None:
    """The id of ``tensor``'s idle span that covers op ``op`` (None when the op uses it or it is not live)."""
    for sid in live.spans_of[tensor]:
        if covers(live.spans[sid], op, live.n_ops):
            return sid
    return None


def idle_s(span: Span, slot_starts: np.ndarray) -> float:
    """Modelled compute time inside the span (what its transfers can hide under).

    ``slot_starts`` has one entry per op plus the step end (:func:`core.schedule.estimate_slot_starts`).
    """
    n = len(slot_starts) - 1
    return float(sum(slot_starts[hi] - slot_starts[lo] for lo, hi in freed_slots(span, n)))


def is_dirty(graph: Graph, live: Liveness, span: Span) -> bool:
    """Whether offloading the span needs a copy-out: no fresh copy below is assumed otherwise.

    Tensors that exist at step start (``initial``, ``unused`` spans) start below; a persistent tensor
    nothing updates keeps a valid copy below for the whole step; anything else must be written back.
    """
    if span.kind in ("initial", "unused"):
        return False
    if graph.tensor_by_id[span.tensor].persistent:
        return bool(live.mutations.get(span.tensor))  # compute-tier updates (host ops refresh their own)
    return True


def lower_window(graph: Graph, span: Span, n_ops: int) -> tuple[int, int]:
    """Slots a lower tier holds the span's copy (the whole step for persistent tensors and wrap spans)."""
    if span.kind in ("wrap", "unused") or graph.tensor_by_id[span.tensor].persistent:
        return 0, n_ops
    return max(span.start_op + 1, 0), min(span.end_op + 1, n_ops)


def slot_bytes_of(live: Liveness, assignment: Mapping[int, tuple[str, str]], graph: Graph | None = None) -> np.ndarray:
    """Compute-tier bytes per op slot when every non-kept span frees :func:`freed_slots` (minimum extents).

    With ``graph``, a recompute's spare outputs (:func:`spare_outputs`: the other outputs a re-run of a
    multi-output producer regenerates) are counted in the slot of the op it serves, as the scheduler holds
    them. The scheduler's count starts from exactly this; it only adds prefetch and write-back extents and
    the inputs of recomputes, so this is a lower bound of its compute-tier ``slot_bytes``.
    """
    occ = np.asarray(live.keep_bytes, dtype=np.int64).copy()
    for sid, (action, _) in assignment.items():
        span = live.spans[sid]
        for lo, hi in freed_slots(span, live.n_ops):
            occ[lo:hi] -= span.bytes
        if graph is not None and action == "recompute" and 0 <= span.end_op < live.n_ops:
            occ[span.end_op] += sum(graph.tensor_by_id[y].bytes for y in spare_outputs(graph, span))
    return occ


# ---------------------------------------------------------------------------------------------- versions


_MUTATIONS_KEY = "_tierplan_mutation_ops"


def mutation_ops(graph: Graph) -> Mapping[str, tuple[int, ...]]:
    """Tensor -> sorted indices of every op that updates it in place (host ops included).

    Cached on the graph object the way :func:`functools.cached_property` caches (graphs are immutable;
    hashing a large frozen graph on every call would cost more than the lookup saves).
    """
    cached = graph.__dict__.get(_MUTATIONS_KEY)
    if cached is None:
        out: dict[str, list[int]] = {}
        for i, op in enumerate(graph.ops):
            for tid in op.mutates:
                out.setdefault(tid, []).append(i)
        cached = {k: tuple(v) for k, v in out.items()}
        graph.__dict__[_MUTATIONS_KEY] = cached
    return cached


def mutated_between(graph: Graph, tensor: str, after: int, before: int) -> int | None:
    """The first op strictly between ``after`` and ``before`` that updates ``tensor`` in place, if any."""
    ops: Sequence[int] = mutation_ops(graph).get(tensor, ())
    k = bisect.bisect_right(ops, after)
    if k < len(ops) and ops[k] < before:
        return ops[k]
    return None


def recompute_blocker(graph: Graph, live: Liveness, span_id: int, *, multi_output: bool = False) -> str | None:
    """Why span ``span_id`` may not be recomputed (None when it may).

    The producer ``q`` re-runs just before the span's end ``b``. Allowed only for an ``inner`` span of a
    non-persistent tensor whose producer is recomputable, has one output and updates nothing in place, when
    neither the tensor nor any of ``q``'s inputs is updated in place by an op ``q < j <= b``: otherwise the
    re-run would regenerate a different version (a stale value, or one computed from updated inputs). An
    update by op ``b`` itself would come after the re-run, but with zero-duration ops both happen at one
    instant and the order is not on the timeline, so it is excluded too (it costs a rare recompute).

    ``multi_output``: also allow a producer with several outputs when every other output is *dead* at the
    re-run (non-persistent, its last compute-tier use before ``b``, read by no host op): the re-run then
    regenerates it too, as a spare copy the scheduler frees when op ``b`` ends (it never meets a live copy,
    so there is no double allocation). A norm's or an MLP's saved tensors qualify once their sibling output
    has been consumed earlier in the backward pass (:func:`spare_outputs`).
    """
    span = live.spans[span_id]
    if span.kind != "inner":
        return f"a {span.kind} span has no producer run inside the step before it"
    q = graph.producer.get(span.tensor)
    if q is None:
        return "the tensor has no producer"
    op = graph.ops[q]
    if not op.recomputable:
        return f"op '{op.id}' is not recomputable"
    if op.mutates:
        return f"op '{op.id}' updates a tensor in place"
    if len(op.outputs) != 1:
        if not multi_output:
            return f"op '{op.id}' has more than one output"
        for y in op.outputs:
            if y == span.tensor:
                continue
            if graph.tensor_by_id[y].persistent or any(y in graph.ops[i].inputs for i in live.host_ops):
                return f"output '{y}' of op '{op.id}' is persistent or read on a host tier"
            uses = live.uses[y]
            if uses and uses[-1] >= span.end_op:
                return f"output '{y}' of op '{op.id}' is still live at the re-run"
    if graph.tensor_by_id[span.tensor].persistent:
        return "persistent tensors are never recomputed"
    b = span.end_op + 1  # through op b itself (see above)
    j = mutated_between(graph, span.tensor, q, b)
    if j is not None:
        return f"'{span.tensor}' is updated in place by op '{graph.ops[j].id}' by the time of the re-run"
    for x in op.inputs:
        j = mutated_between(graph, x, q, b)
        if j is not None:
            return f"input '{x}' of op '{op.id}' is updated in place by op '{graph.ops[j].id}' by the time of the re-run"
    return None


def recompute_ok(graph: Graph, live: Liveness, span_id: int, *, multi_output: bool = False) -> bool:
    """Whether span ``span_id`` may be dropped and regenerated by re-running its producer (see
    :func:`recompute_blocker` for the rule)."""
    return recompute_blocker(graph, live, span_id, multi_output=multi_output) is None


def spare_outputs(graph: Graph, span: Span) -> tuple[str, ...]:
    """The outputs a re-run of ``span``'s producer regenerates besides ``span``'s own tensor (each freed
    again when the span's end op ends; see :func:`recompute_blocker`, ``multi_output``)."""
    op = graph.ops[graph.producer[span.tensor]]
    return tuple(y for y in op.outputs if y != span.tensor)
