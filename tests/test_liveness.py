"""Liveness: uses, spans (inner, initial, wrap-around, unused) and the no-offload occupancy."""

from __future__ import annotations

import numpy as np

from core.graph import graph_from_dict
from core.liveness import analyze

MiB = 2**20


def _graph():
    return graph_from_dict({"format": "tierplan-graph/1", "name": "g", "tensors": [
        {"id": "w", "bytes": 4 * MiB, "kind": "weight"},
        {"id": "x", "bytes": 1 * MiB, "kind": "input"},
        {"id": "a", "bytes": 2 * MiB, "kind": "activation"},
        {"id": "b", "bytes": 8 * MiB, "kind": "activation"},
        {"id": "unused_w", "bytes": 16 * MiB, "kind": "weight"},
        {"id": "kv", "bytes": 32 * MiB, "kind": "kv_cache"},
    ], "ops": [
        {"id": "f0", "inputs": ["x", "w"], "outputs": ["a"], "time_s": 1e-3},
        {"id": "f1", "inputs": ["a"], "outputs": ["b"], "time_s": 1e-3},
        {"id": "f2", "inputs": ["b", "kv"], "outputs": [], "mutates": ["kv"], "time_s": 1e-3},
        {"id": "f3", "inputs": ["a", "w"], "outputs": [], "time_s": 1e-3},
    ]})


class TestSpans:
    def test_uses_and_mutations(self) -> None:
        live = analyze(_graph())
        assert live.uses["w"] == (0, 3) and live.uses["a"] == (0, 1, 3) and live.uses["unused_w"] == ()
        assert live.mutations["kv"] == frozenset({2})

    def test_span_kinds(self) -> None:
        live = analyze(_graph())
        by = {(s.tensor, s.kind): (s.start_op, s.end_op) for s in live.spans}
        assert by[("w", "inner")] == (0, 3)
        assert by[("w", "wrap")] == (3, 0)  # last use -> first use of the next step
        assert by[("x", "initial")] == (-1, 0)
        assert by[("a", "inner")] == (1, 3)  # (0, 1) is adjacent: no idle op between, no span
        assert ("a", "wrap") not in by  # activations do not outlive the step
        assert by[("unused_w", "unused")] == (-1, 4)
        assert by[("kv", "wrap")] == (2, 2)  # one use per step: idle for the whole rest of the loop

    def test_wrap_length_counts_both_sides_of_the_boundary(self) -> None:
        live = analyze(_graph())
        wrap = next(s for s in live.spans if s.tensor == "w" and s.kind == "wrap")
        assert live.span_length_ops(wrap) == 0  # used at the first and the last op: nothing in between
        kv = next(s for s in live.spans if s.tensor == "kv")
        assert live.span_length_ops(kv) == 3


class TestOccupancy:
    def test_required_bytes_are_inputs_plus_outputs(self) -> None:
        live = analyze(_graph())
        assert list(live.required_bytes) == [7 * MiB, 10 * MiB, 40 * MiB, 6 * MiB]

    def test_keep_bytes_by_hand(self) -> None:
        live = analyze(_graph())
        persistent = (4 + 16 + 32) * MiB
        # op0: x, a; op1: a, b (x freed after op0); op2: a, b; op3: a
        expected = np.array([persistent + 1 * MiB + 2 * MiB, persistent + 2 * MiB + 8 * MiB,
                             persistent + 2 * MiB + 8 * MiB, persistent + 2 * MiB])
        assert np.array_equal(live.keep_bytes, expected)
        assert live.no_offload_peak_bytes == int(expected.max())

    def test_host_ops_are_not_compute_tier_uses(self) -> None:
        live = analyze(_graph(), host_ops=frozenset({2}))
        assert live.uses["kv"] == () and "kv" not in live.mutations
        assert live.required_bytes[2] == 0
        assert any(s.tensor == "kv" and s.kind == "unused" for s in live.spans)


def test_extra_uses_split_spans_and_count_as_required() -> None:
    """A recompute before op 3 reads x there: x's span breaks at 3 and op 3 needs its bytes."""
    live = analyze(_graph(), extra_uses={"x": (3,)})
    assert live.uses["x"] == (0, 3)
    assert any(s.tensor == "x" and s.kind == "inner" and (s.start_op, s.end_op) == (0, 3) for s in live.spans)
    assert live.required_bytes[3] == 6 * MiB + 1 * MiB
    assert live.extra_uses == {"x": (3,)}


# ------------------------------------------------------------------ arrays vs the loop they replaced

import bisect  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from itertools import pairwise  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from core.graph import Graph  # noqa: E402
from core.liveness import Liveness, Span  # noqa: E402
from tests.strategies import graphs  # noqa: E402


def _reference_analyze(graph: Graph, host_ops: frozenset[int] = frozenset(),
            extra_uses: Mapping[str, tuple[int, ...]] | None = None) -> Liveness:
    """The loop-based analysis this module replaced, kept verbatim as the oracle."""
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


def _assert_same(new: Liveness, old: Liveness) -> None:
    assert list(new.uses.items()) == list(old.uses.items())  # same values, same order
    assert list(new.mutations.items()) == list(old.mutations.items())
    assert new.spans == old.spans
    assert list(new.spans_of.items()) == list(old.spans_of.items())
    for name in ("required_bytes", "keep_bytes"):
        a, b = getattr(new, name), getattr(old, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert new.host_ops == old.host_ops and new.extra_uses == old.extra_uses
    assert new.no_offload_peak_bytes == old.no_offload_peak_bytes


@st.composite
def _cases(draw):
    g = draw(graphs(max_ops=16))
    n = len(g.ops)
    host = frozenset(draw(st.lists(st.integers(0, n - 1), max_size=3))) if draw(st.booleans()) else frozenset()
    extra: dict[str, tuple[int, ...]] = {}
    for tid in draw(st.lists(st.sampled_from([t.id for t in g.tensors]), max_size=3, unique=True)):
        extra[tid] = tuple(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3)))
    return g, host, extra


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_arrays_match_the_loop_on_random_graphs(case) -> None:
    g, host, extra = case
    _assert_same(analyze(g, host, extra or None), _reference_analyze(g, host, extra or None))


def test_arrays_match_the_loop_on_a_training_graph_with_repeated_reads() -> None:
    from tests.builders import toy_training

    g = toy_training(6)
    _assert_same(analyze(g), _reference_analyze(g))
    _assert_same(analyze(g, frozenset({len(g.ops) - 1}), {"x": (3, 5, 5)}),
                 _reference_analyze(g, frozenset({len(g.ops) - 1}), {"x": (3, 5, 5)}))
    dup = graph_from_dict({"format": "tierplan-graph/1", "name": "dup", "tensors": [
        {"id": "w", "bytes": 4, "kind": "weight"}, {"id": "y", "bytes": 8, "kind": "activation"}],
        "ops": [{"id": "f", "inputs": ["w", "w"], "outputs": ["y"], "time_s": 1.0},
                {"id": "g", "inputs": ["y"], "outputs": [], "time_s": 1.0}]})
    _assert_same(analyze(dup), _reference_analyze(dup))
    assert list(analyze(dup).required_bytes) == [12, 8]


def test_empty_graph() -> None:
    g = graph_from_dict({"format": "tierplan-graph/1", "name": "e", "tensors": [
        {"id": "w", "bytes": 4, "kind": "weight"}], "ops": []})
    _assert_same(analyze(g), _reference_analyze(g))
