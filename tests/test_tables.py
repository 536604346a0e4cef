"""Decision, op, tensor and comparison tables on a real plan of the tiny sample."""

from __future__ import annotations

import math

import pytest

from core.hardware import with_capacity
from core.plan import TransferEvent
from core.planner import make_plan
from core.sources.presets import load_preset
from core.sources.samples import load_sample
from ui import tables
from ui.kpis import compare_row


@pytest.fixture(scope="module")
def setup():
    graph, hw = load_sample("tiny"), load_preset("teaching")
    return graph, hw, make_plan(graph, hw)


def test_decisions_table(setup):
    graph, _, plan = setup
    t = tables.decisions_table(plan, graph)
    f = t.frame
    assert len(f) == len(plan.decisions)
    assert list(f.columns[:6]) == ["tensor", "kind", "size (GiB)", "span", "action", "tier"]
    row = f[f["tensor"] == "w1"].iloc[0]
    assert row["kind"] == "weight" and row["size (GiB)"] == pytest.approx(1.0)
    assert "idle (ms)" in f.columns and t.formats["idle (ms)"].endswith("ms")
    first = plan.decisions[0]
    assert f.iloc[0]["span"].endswith(graph.ops[first.end_op].id)
    assert set(f["action"]) <= {"keep", "offload", "recompute"}


def test_transfers_of(setup):
    _, _, plan = setup
    moved = next(e for e in plan.events if isinstance(e, TransferEvent))
    spans = tables.transfers_of(plan, [moved.tensor])
    assert (f"{moved.src}->{moved.dst}", moved.start, moved.end) in spans
    assert tables.transfers_of(plan, []) == []


def test_ops_and_tensors_tables(setup):
    graph, hw, _ = setup
    ops = tables.ops_table(graph, hw.compute).frame
    assert len(ops) == len(graph.ops) and ops.iloc[0]["time (ms)"] == pytest.approx(10.0)
    tens = tables.tensors_table(graph).frame
    a1 = tens[tens["tensor"] == "a1"].iloc[0]
    assert a1["produced by"] == "fwd1" and a1["reads"] == 2


def test_compare_table_blank_for_infeasible(setup):
    graph, hw, plan = setup
    rows = [compare_row("Tierplan", plan.metrics, "HBM"), compare_row("None", None, "HBM", "too small")]
    f = tables.compare_table(rows).frame
    assert f.iloc[0]["feasible"] == "yes" and f.iloc[1]["feasible"] == "no"
    assert math.isnan(f.iloc[1]["step time (ms)"]) and f.iloc[1]["note"] == "too small"
    bigger = make_plan(graph, with_capacity(hw, "HBM", 16 * 2**30))
    assert bigger.metrics["step_time_s"] <= plan.metrics["step_time_s"]


def test_sizes_in_a_readable_unit_and_order_explained(setup):
    graph, _, plan = setup
    t = tables.decisions_table(plan, graph)
    assert "size (GiB)" in t.frame.columns  # 1 GiB tensors: not "1024 MiB"
    assert tables._byte_unit([16 * 2**10] * 5) == (2**10, "KiB")  # not 0.01563 MiB
    if any("order" in d.terms for d in plan.decisions):
        assert "order" not in t.frame.columns and "ranking order" in t.frame.columns
        from core.policies.tierplan import ORDERS

        assert set(t.frame["ranking order"]) <= set(ORDERS)
        assert "portfolio" in t.help["ranking order"]


def test_order_moves_table_counts_positions_from_one() -> None:
    from core.plan import Plan

    plan = Plan(graph="g", policy="tierplan", hardware={}, initial={}, events=(),
                order_moves=({"op": "adam1", "from_index": 9, "to_index": 6, "reason": "gradient complete"},))
    frame = tables.order_moves_table(plan).frame
    assert frame.to_dict("records") == [{"op": "adam1", "graph position": 10, "runs at": 7, "moved by (ops)": -3,
                                         "why": "gradient complete"}]
    empty = Plan(graph="g", policy="tierplan", hardware={}, initial={}, events=())
    assert list(tables.order_moves_table(empty).frame.columns) == list(frame.columns)
    assert tables.order_moves_table(empty).frame.empty

