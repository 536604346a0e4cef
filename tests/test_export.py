"""Perfetto trace and CSV exports."""

from __future__ import annotations

import csv
import io
import itertools
import json
from typing import Any

from core.export import decisions_csv, events_csv, plan_to_trace
from core.graph import graph_from_dict
from core.plan import ComputeEvent, Decision, FreeEvent, Plan, TransferEvent
from core.validate import validate_plan

GRAPH = graph_from_dict({
    "format": "tierplan-graph/1", "name": "g",
    "tensors": [{"id": "w", "bytes": 256, "kind": "weight"}, {"id": "x", "bytes": 256, "kind": "input"},
                {"id": "y", "bytes": 512, "kind": "activation"}],
    "ops": [{"id": "f", "inputs": ["w", "x"], "outputs": ["y"], "time_s": 1e-3, "category": "matmul"},
            {"id": "g", "inputs": ["y"], "outputs": [], "time_s": 2e-3}],
})
HW = {
    "format": "tierplan-hardware/1", "name": "hw", "compute": {"peak_flops": 1e12}, "compute_tier": "HBM",
    "tiers": [{"name": "HBM", "capacity_bytes": 4096}, {"name": "DDR", "capacity_bytes": 4096}],
    "links": [{"src": "DDR", "dst": "HBM", "bandwidth_Bps": 256e3}, {"src": "HBM", "dst": "DDR", "bandwidth_Bps": 256e3}],
}
EVENTS = (
    TransferEvent("w", "DDR", "HBM", 0.0, 1e-3), ComputeEvent("f", 1e-3, 2e-3, "HBM"),
    ComputeEvent("g", 2e-3, 4e-3, "HBM"), FreeEvent("y", "HBM", 4e-3), ComputeEvent("f", 4e-3, 5e-3, "HBM", True),
    FreeEvent("w", "HBM", 5e-3), FreeEvent("x", "HBM", 5e-3), FreeEvent("y", "HBM", 5e-3),
)
DECISIONS = (
    Decision("w", -1, 0, "offload", "DDR", 1.5, {"bytes_freed": 256.0, "transfer_s": 1e-3}, "idle between steps"),
    Decision("y", 0, 1, "keep", "HBM", 0.0, {"idle_s": 0.0, "bytes": 3.0}, "used at once"),
)
PLAN = Plan("g", "hand", HW, {"w": ("DDR",), "x": ("HBM",)}, EVENTS, DECISIONS)


def by_phase(trace: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == phase]


def test_the_example_plan_is_valid() -> None:
    report = validate_plan(GRAPH, PLAN, check_metrics=False)
    assert report.ok, report.errors


class TestTrace:
    def test_is_json_with_trace_events(self) -> None:
        trace = plan_to_trace(GRAPH, PLAN)
        assert set(trace) >= {"traceEvents"}
        assert json.loads(json.dumps(trace)) == trace

    def test_one_track_per_stream(self) -> None:
        trace = plan_to_trace(GRAPH, PLAN)
        names = {e["tid"]: e["args"]["name"] for e in by_phase(trace, "M") if e["name"] == "thread_name"}
        assert sorted(names.values()) == ["DDR->HBM", "HBM compute"]
        assert len(set(names)) == len(names)
        process = [e for e in by_phase(trace, "M") if e["name"] == "process_name"]
        assert process and "hand" in process[0]["args"]["name"]
        slices = by_phase(trace, "X")
        assert {e["tid"] for e in slices} == set(names)
        for tid, name in names.items():
            mine = sorted((e["ts"], e["ts"] + e["dur"]) for e in slices if e["tid"] == tid)
            assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(mine)), name

    def test_times_in_microseconds(self) -> None:
        slices = {(e["name"], e["ts"]): e for e in by_phase(plan_to_trace(GRAPH, PLAN), "X")}
        f = slices[("f", 1000.0)]
        assert abs(f["dur"] - 1000.0) < 1e-9 and f["cat"] == "matmul"
        g = slices[("g", 2000.0)]
        assert abs(g["dur"] - 2000.0) < 1e-9
        assert slices[("f (recompute)", 4000.0)]["cat"] == "recompute"
        w = slices[("w", 0.0)]
        assert w["args"]["bytes"] == 256 and w["cat"] == "weight"

    def test_counters_per_tier(self) -> None:
        counters = by_phase(plan_to_trace(GRAPH, PLAN), "C")
        hbm = sorted((e for e in counters if e["name"].startswith("HBM")), key=lambda e: e["ts"])
        assert [e["ts"] for e in hbm] == [0.0, 1000.0, 4000.0, 5000.0]
        assert hbm[0]["args"] == {"weight": 256, "input": 256, "activation": 0}
        assert hbm[1]["args"] == {"weight": 256, "input": 256, "activation": 512}
        assert hbm[2]["args"] == {"weight": 256, "input": 256, "activation": 512}  # y freed, then recomputed
        assert hbm[3]["args"] == {"weight": 0, "input": 0, "activation": 0}
        assert any(e["name"].startswith("DDR") for e in counters)

    def test_counters_downsampled(self) -> None:
        n = 500
        tensors = [{"id": f"a{i}", "bytes": 8 + i % 7, "kind": "activation"} for i in range(n)]
        ops = [{"id": f"o{i}", "inputs": [], "outputs": [f"a{i}"], "time_s": 1.0} for i in range(n)]
        g = graph_from_dict({"format": "tierplan-graph/1", "name": "big", "tensors": tensors, "ops": ops})
        events = []
        for i in range(n):
            events += [ComputeEvent(f"o{i}", float(i), i + 1.0, "HBM"), FreeEvent(f"a{i}", "HBM", i + 1.0)]
        trace = plan_to_trace(g, Plan("big", "x", HW, {}, tuple(events)), max_counter_points=50)
        hbm = [e for e in by_phase(trace, "C") if e["name"].startswith("HBM")]
        assert len(hbm) <= 50
        assert max(e["args"]["activation"] for e in hbm) == 14


class TestCsv:
    def test_decisions(self) -> None:
        rows = list(csv.reader(io.StringIO(decisions_csv(PLAN, GRAPH))))
        assert rows[0] == ["tensor", "kind", "bytes", "start_op", "end_op", "start_op_index", "end_op_index",
                           "action", "tier", "score", "term_bytes", "bytes_freed", "idle_s", "transfer_s", "reason"]
        assert rows[1] == ["w", "weight", "256", "step start", "f", "-1", "0", "offload", "DDR", "1.5", "", "256.0",
                           "", "0.001", "idle between steps"]
        assert rows[2][:5] == ["y", "activation", "512", "f", "g"] and rows[2][10] == "3.0"

    def test_decisions_without_graph(self) -> None:
        rows = list(csv.reader(io.StringIO(decisions_csv(PLAN))))
        assert rows[1][1:5] == ["", "", "step start", "op #0"] and rows[2][1:3] == ["", "3.0"]

    def test_events(self) -> None:
        rows = list(csv.DictReader(io.StringIO(events_csv(PLAN))))
        assert len(rows) == len(EVENTS)
        assert rows[0]["type"] == "transfer" and rows[0]["src"] == "DDR" and float(rows[0]["duration_s"]) == 1e-3
        assert rows[4]["type"] == "recompute" and rows[4]["op"] == "f"
        assert rows[3]["type"] == "free" and rows[3]["tier"] == "HBM" and float(rows[3]["start_s"]) == 4e-3
