"""Execution-order refinement: the legality check (legal and illegal orders) and the refinement itself."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.graph import Graph, graph_from_dict
from core.order import check_order, dependencies, refine_order, reorder_graph
from tests.builders import hierarchy, toy_training
from tests.strategies import graphs


def _graph(ops: list[dict[str, Any]], tensors: list[dict[str, Any]]) -> Graph:
    return graph_from_dict({"format": "tierplan-graph/1", "name": "t", "tensors": tensors, "ops": ops})


#: w is read by r0, updated by u1, read by r1, updated by u2, read by r2.
VERSIONS = _graph(
    [{"id": "r0", "inputs": ["w"], "outputs": ["a"], "time_s": 1},
     {"id": "u1", "inputs": ["w"], "outputs": [], "mutates": ["w"], "time_s": 1},
     {"id": "r1", "inputs": ["w", "a"], "outputs": ["b"], "time_s": 1},
     {"id": "u2", "inputs": ["w"], "outputs": [], "mutates": ["w"], "time_s": 1},
     {"id": "r2", "inputs": ["w"], "outputs": ["c"], "time_s": 1}],
    [{"id": "w", "bytes": 8, "kind": "weight"}, {"id": "a", "bytes": 8, "kind": "activation"},
     {"id": "b", "bytes": 8, "kind": "activation"}, {"id": "c", "bytes": 8, "kind": "activation"}],
)


def _semantics(graph: Graph, order: list[str]) -> tuple[dict[str, frozenset[tuple[str, int]]], dict[str, int]] | None:
    """Oracle independent of core.order: replay ``order`` and record which version of each tensor every op
    reads, and the final versions (None when an op reads a tensor that does not exist yet)."""
    index = graph.op_index
    exists = {t.id for t in graph.tensors if t.id not in graph.producer}
    version = dict.fromkeys((t.id for t in graph.tensors), 0)
    reads: dict[str, frozenset[tuple[str, int]]] = {}
    for oid in order:
        op = graph.ops[index[oid]]
        if any(x not in exists for x in op.inputs):
            return None
        reads[oid] = frozenset((x, version[x]) for x in op.inputs)
        for x in op.mutates:
            version[x] += 1
        exists.update(op.outputs)
    return reads, version


class TestCheckOrder:
    def test_graph_order_is_legal(self) -> None:
        assert check_order(VERSIONS, [op.id for op in VERSIONS.ops]) == []

    def test_independent_reader_may_move(self) -> None:
        g = toy_training(2)
        ids = [op.id for op in g.ops]
        ids.remove("adam0")
        ids.insert(ids.index("bwd0") + 1, "adam0")
        assert check_order(g, ids) == []

    @pytest.mark.parametrize(("order", "needle"), [
        (["u1", "r0", "r1", "u2", "r2"], "must read before the update"),  # old version read after the update
        (["r0", "r1", "u1", "u2", "r2"], "as updated by 'u1'"),  # new version read before its update
        (["r0", "u1", "r1", "r2", "u2"], "as updated by 'u2'"),
        (["r1", "r0", "u1", "u2", "r2"], "which 'r0' produces"),
    ])
    def test_illegal(self, order: list[str], needle: str) -> None:
        problems = check_order(VERSIONS, order)
        assert problems and any(needle in p for p in problems), problems

    def test_updates_keep_their_order(self) -> None:
        g = _graph([{"id": "u1", "inputs": ["kv"], "outputs": [], "mutates": ["kv"], "time_s": 1},
                    {"id": "u2", "inputs": ["kv"], "outputs": [], "mutates": ["kv"], "time_s": 1}],
                   [{"id": "kv", "bytes": 8, "kind": "kv_cache"}])
        assert check_order(g, ["u1", "u2"]) == []
        assert any("both update 'kv'" in p for p in check_order(g, ["u2", "u1"]))

    @pytest.mark.parametrize(("order", "needle"), [
        (["r0", "u1", "r1", "u2"], "leaves out 1 op"),
        (["r0", "u1", "r1", "u2", "r2", "r2"], "appears twice"),
        (["r0", "u1", "r1", "u2", "zz"], "unknown op 'zz'"),
    ])
    def test_not_a_permutation(self, order: list[str], needle: str) -> None:
        assert any(needle in p for p in check_order(VERSIONS, order))

    def test_reorder_graph_rejects_illegal(self) -> None:
        with pytest.raises(ValueError, match="before op"):
            reorder_graph(VERSIONS, ["u1", "r0", "r1", "u2", "r2"])

    @settings(max_examples=60, deadline=None)
    @given(graphs(max_ops=10), st.randoms(use_true_random=False))
    def test_agrees_with_replay(self, g: Graph, rnd: Any) -> None:
        """An order is legal exactly when every op reads the versions the graph's order gives it."""
        ids = [op.id for op in g.ops]
        rnd.shuffle(ids)
        expected = _semantics(g, [op.id for op in g.ops])
        legal = _semantics(g, ids) == expected
        assert (check_order(g, ids) == []) == legal


class TestRefine:
    def test_updates_right_after_their_gradient(self) -> None:
        g = toy_training(4)
        r = refine_order(g)
        assert check_order(g, r.order) == []
        for layer in range(4):
            assert r.order.index(f"adam{layer}") == r.order.index(f"bwd{layer}") + 1
        others = [o for o in r.order if not o.startswith("adam")]
        assert others == [op.id for op in g.ops if not op.id.startswith("adam")]
        assert {m.op for m in r.moves} == {"adam1", "adam2", "adam3"}  # adam0 already follows bwd0
        assert all("bwd" in m.reason for m in r.moves)
        assert [op.id for op in r.graph.ops] == list(r.order)

    def test_nothing_to_move(self) -> None:
        r = refine_order(VERSIONS.__class__(VERSIONS.name, VERSIONS.tensors, VERSIONS.ops[:1]))
        assert not r.changed and r.order == ("r0",)

    def test_switch_off(self) -> None:
        g = toy_training(3)
        r = refine_order(g, updates_early=False)
        assert not r.changed and r.graph is g

    def test_spread_holds_updates_back(self) -> None:
        """On slow links an update waits for enough compute to cover its state, never past the graph's spot."""
        g = toy_training(4)
        slow = refine_order(g, hierarchy(link="1 GB/s"), spread=True)
        fast = refine_order(g, hierarchy(link="10 TB/s"), spread=True)
        assert check_order(g, slow.order) == [] and check_order(g, fast.order) == []
        assert fast.order == refine_order(g).order
        assert slow.order.index("adam2") > fast.order.index("adam2")

    @settings(max_examples=60, deadline=None)
    @given(graphs(max_ops=16), st.booleans())
    def test_always_legal(self, g: Graph, spread: bool) -> None:
        r = refine_order(g, hierarchy(), spread=spread)
        assert check_order(g, r.order) == []
        assert _semantics(g, list(r.order)) == _semantics(g, [op.id for op in g.ops])

    def test_dependencies_of_toy(self) -> None:
        g = toy_training(2)
        idx = g.op_index
        before = {g.ops[q].id for q in dependencies(g)[idx["adam1"]]}
        assert {"bwd1", "fwd1"} <= before  # gradient producer and the readers of the old weight


class TestMakePlan:
    """make_plan tries the refined order for Tierplan, records it, and stays valid against the graph."""

    def test_reordered_plan_recorded_and_valid(self) -> None:
        from core.planner import make_plan
        from core.validate import validate_plan

        g = toy_training(4)
        hw = hierarchy("9 GiB", "20 GB/s", ssd=False)
        plain = make_plan(g, hw, reorder=False)
        plan = make_plan(g, hw)
        assert plain.order is None and plain.order_moves == ()
        assert plan.metrics["step_time_s"] <= plain.metrics["step_time_s"]
        # here the updates' state copies hide under backward compute (measured: 0.92 s -> 0.65 s)
        assert plan.order is not None
        assert check_order(g, plan.order) == []
        assert plan.order_moves and all(m["op"].startswith("adam") for m in plan.order_moves)
        assert plan.metrics["step_time_s"] < 0.8 * plain.metrics["step_time_s"]
        assert validate_plan(g, plan).ok

    def test_baselines_keep_graph_order(self) -> None:
        from core.planner import make_plan

        g = toy_training(4)
        assert make_plan(g, hierarchy("9 GiB", "20 GB/s"), policy="mindspore-gsm").order is None
