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
