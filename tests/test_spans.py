"""Span geometry (core.spans) against the scheduler's own slot count: one definition, checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InfeasibleError
from core.graph import Graph, load_graph
from core.hardware import Hardware, load_hardware
from core.liveness import Span, analyze
from core.policies import get_policy, resolve_params
from core.schedule import _Builder
from core.spans import covering_span, covers, freed_slots, slot_bytes_of
from tests.builders import toy_training
from tests.strategies import graphs, hierarchies


class TestFreedSlots:
    def test_each_kind(self) -> None:
        assert freed_slots(Span(0, "a", 2, 6, "inner", 8), 10) == [(3, 6)]
        assert freed_slots(Span(0, "a", -1, 4, "initial", 8), 10) == [(0, 4)]
        assert freed_slots(Span(0, "w", 7, 2, "wrap", 8), 10) == [(0, 2), (8, 10)]
        assert freed_slots(Span(0, "w", -1, 10, "unused", 8), 10) == [(0, 10)]
        assert freed_slots(Span(0, "a", 2, 3, "inner", 8), 10) == []  # consecutive uses free nothing

    def test_covering_span_is_the_one_that_frees_the_op(self) -> None:
        g = toy_training()
        live = analyze(g)
        for t in g.tensors:
            for op in range(live.n_ops):
                sid = covering_span(live, t.id, op)
                if sid is None:
                    continue
                assert covers(live.spans[sid], op, live.n_ops)
                assert op not in live.uses[t.id]


def _check_counts(graph: Graph, hw: Hardware) -> int:
    """Assert the property for one input; returns how many spans the plan moved or recomputed."""
    live = analyze(graph)
    info = get_policy("tierplan")
    params = resolve_params(info, {"host_compute": 0})
    try:
        placement = info.decide(graph, hw, live, params)
    except InfeasibleError:
        return 0
    p_live = placement.liveness or live
    b = _Builder(graph, hw, p_live, placement.assignment, params, placement.op_tiers)
    for t in graph.tensors:
        b.tensor(t.id)
    expected = slot_bytes_of(p_live, placement.assignment, graph)  # (with the spare outputs of re-runs)
    assert np.array_equal(b.occupancy()[hw.compute_tier], expected)
    try:
        grown = b.grant_extents()[hw.compute_tier]
    except InfeasibleError:
        return len(placement.assignment)
    assert (grown >= expected).all()
    return len(placement.assignment)


@pytest.mark.parametrize("seed", ["1412640682", "69645449", "1489181873", "2045018076"])
def test_counts_on_the_repro_cases(seed: str) -> None:
    repro = Path(__file__).parent / "data" / "repro"
    graph = load_graph(repro / f"graph-{seed}.json")
    hw = load_hardware((repro / f"hardware-{seed}.json").read_bytes())
    assert _check_counts(graph, hw) >= 5  # these plans move many spans: the check is not vacuous


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_scheduler_counts_exactly_the_freed_slots(data: st.DataObject) -> None:
    """Before extents grow, the scheduler's compute-tier count per slot is exactly the no-offload occupancy
    minus each moved or recomputed span's :func:`freed_slots`; after they grow it is never below that."""
    graph = data.draw(graphs())
    _check_counts(graph, data.draw(hierarchies(graph)))


class TestFreedSlotRanges:
    """The array form of freed_slots gives the same ranges, in the same order, for every span."""

    @pytest.mark.parametrize("seed", range(0, 40, 4))
    def test_matches_freed_slots(self, seed: int) -> None:
        from core.fuzz import random_case
        from core.liveness import analyze
        from core.spans import freed_slot_ranges, freed_slots, span_kind_codes

        graph, _ = random_case(seed)
        live = analyze(graph)
        spans = live.spans
        count, lo, hi = freed_slot_ranges(span_kind_codes(spans), np.array([s.start_op for s in spans], dtype=np.int64),
                                          np.array([s.end_op for s in spans], dtype=np.int64), live.n_ops)
        for k, span in enumerate(spans):
            got = [(int(lo[k, j]), int(hi[k, j])) for j in range(int(count[k]))]
            assert got == freed_slots(span, live.n_ops)
