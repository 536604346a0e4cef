"""Metrics with hand-computed numbers, curves, timelines, and agreement with the validator's replay."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.graph import Graph, graph_from_dict
from core.hardware import hardware_from_dict
from core.metrics import (
    compute_metrics,
    compute_only_time_s,
    downsample_step,
    no_offload_curves,
    no_offload_peak_bytes,
    occupancy_curves,
    plan_hardware,
    stream_timelines,
)
from core.plan import ComputeEvent, FreeEvent, Plan, TransferEvent
from core.validate import METRIC_KEYS, validate_plan

BW = 1024.0
KB = 256


def hw_dict(hbm: int = 10_000) -> dict[str, Any]:
    return {
        "format": "tierplan-hardware/1", "name": "test", "compute": {"peak_flops": 1e6, "efficiency": 1.0},
        "compute_tier": "HBM",
        "tiers": [{"name": "HBM", "capacity_bytes": hbm},
                  {"name": "DDR", "capacity_bytes": 100_000, "compute": {"peak_flops": 1000.0, "efficiency": 1.0}}],
        "links": [{"src": "HBM", "dst": "DDR", "bandwidth_Bps": BW}, {"src": "DDR", "dst": "HBM", "bandwidth_Bps": BW}],
    }


def make_graph(tensors: list[tuple[str, str, int]], ops: list[dict[str, Any]]) -> Graph:
    return graph_from_dict({
        "format": "tierplan-graph/1", "name": "t",
        "tensors": [{"id": t, "kind": k, "bytes": b} for t, k, b in tensors],
        "ops": [op if "flops" in op else {"time_s": 1.0, **op} for op in ops],
    })


def make_plan(events: list[Any], initial: dict[str, str]) -> Plan:
    return Plan("t", "hand", hw_dict(), {t: (k,) for t, k in initial.items()}, tuple(events))


def X(tensor: str, src: str, dst: str, start: float) -> TransferEvent:
    return TransferEvent(tensor, src, dst, start, start + KB / BW)


W2 = make_graph(
    [("w", "weight", KB), ("x", "input", KB), ("y", "activation", KB), ("z", "activation", 2 * KB)],
    [{"id": "f", "inputs": ["w", "x"], "outputs": ["y"]}, {"id": "g", "inputs": ["y"], "outputs": ["z"]}],
)
W2_DROP = [
    X("w", "DDR", "HBM", 0), ComputeEvent("f", 0.25, 1.25, "HBM"), FreeEvent("w", "HBM", 1.25),
    FreeEvent("x", "HBM", 1.25), ComputeEvent("g", 1.25, 2.25, "HBM"), FreeEvent("y", "HBM", 2.25),
    FreeEvent("z", "HBM", 2.25),
]

ADAM = make_graph(
    [("s", "optimizer_state", KB), ("gr", "gradient", KB), ("x", "input", KB)],
    [
        {"id": "bwd", "inputs": ["x"], "outputs": ["gr"]},
        {"id": "tail", "inputs": ["x"], "outputs": [], "time_s": 0.125},
        {"id": "adam", "inputs": ["s", "gr"], "outputs": [], "mutates": ["s"], "host_ok": True,
         "flops": 1000.0, "bytes_accessed": 0},
    ],
)
ADAM_HOST = [
    ComputeEvent("bwd", 0, 1, "HBM"), ComputeEvent("tail", 1, 1.125, "HBM"), FreeEvent("x", "HBM", 1.125),
    X("gr", "HBM", "DDR", 1), FreeEvent("gr", "HBM", 1.25), ComputeEvent("adam", 1.25, 2.25, "DDR"),
    FreeEvent("gr", "DDR", 2.25),
]


class TestComputeMetrics:
    def test_prefetch_then_drop(self) -> None:
        p = make_plan(W2_DROP, {"w": "DDR", "x": "HBM"})
        m = compute_metrics(W2, plan_hardware(p), p.events, p.initial)
        assert m["step_time_s"] == 2.25
        assert m["compute_time_s"] == 2.0
        assert m["compute_only_time_s"] == 2.0
        assert m["slowdown"] == pytest.approx(0.125)
        assert m["stall_time_s"] == 0.25  # waiting for w
        assert m["overlap_ratio"] == 0.0  # nothing to hide it under
        assert m["recompute_time_s"] == 0.0 and m["host_compute_time_s"] == 0.0
        # HBM: w, x, y during f (768); at 1.25 w and x go first, then z (512) arrives next to y: 768.
        assert m["peak_bytes"] == {"HBM": 3 * KB, "DDR": KB}
        assert m["transfer_bytes"] == {"DDR->HBM": KB}
        assert m["transfer_time_s"] == {"DDR->HBM": 0.25}
        assert m["no_offload_peak_bytes"] == 4 * KB  # w stays during g
        assert m["capacity_bytes"] == {"HBM": 10_000, "DDR": 100_000}

    def test_host_compute_and_overlap(self) -> None:
        p = make_plan(ADAM_HOST, {"s": "DDR", "x": "HBM"})
        m = compute_metrics(ADAM, plan_hardware(p), p.events, p.initial)
        assert m["compute_time_s"] == 1.125
        assert m["host_compute_time_s"] == 1.0
        assert m["compute_only_time_s"] == pytest.approx(1.126)  # adam: 1000 flops at 1 MFLOP/s on HBM
        assert m["step_time_s"] == 2.25
        assert m["stall_time_s"] == 1.125  # the compute tier idles while the host runs adam
        assert m["overlap_ratio"] == 0.5  # gr moves over [1, 1.25]; HBM computes until 1.125: half hidden
        assert m["peak_bytes"]["DDR"] == 2 * KB

    def test_recompute(self) -> None:
        g = make_graph(
            [("x", "input", 1), ("y", "activation", 10), ("z", "activation", 100), ("o", "activation", 1000)],
            [{"id": "f", "inputs": ["x"], "outputs": ["y"]}, {"id": "g", "inputs": ["y"], "outputs": ["z"]},
             {"id": "h", "inputs": ["y", "z"], "outputs": ["o"]}],
        )
        events = [ComputeEvent("f", 0, 1, "HBM"), ComputeEvent("g", 1, 2, "HBM"), FreeEvent("y", "HBM", 2),
                  ComputeEvent("f", 2, 3, "HBM", True), FreeEvent("x", "HBM", 3), ComputeEvent("h", 3, 4, "HBM"),
                  FreeEvent("y", "HBM", 4), FreeEvent("z", "HBM", 4), FreeEvent("o", "HBM", 4)]
        p = make_plan(events, {"x": "HBM"})
        m = compute_metrics(g, plan_hardware(p), p.events, p.initial)
        assert m["recompute_time_s"] == 1.0 and m["compute_time_s"] == 3.0
        assert m["stall_time_s"] == 0.0
        assert m["slowdown"] == pytest.approx(1 / 3)
        # During h: y, z, o (1110); before, during g: x, y, z (111).
        assert m["peak_bytes"]["HBM"] == 1110
        assert m["overlap_ratio"] == 1.0  # nothing moves

    def test_agrees_with_validator(self) -> None:
        for g, events, initial in ((W2, W2_DROP, {"w": "DDR", "x": "HBM"}), (ADAM, ADAM_HOST, {"s": "DDR", "x": "HBM"})):
            p = make_plan(events, initial)
            mine = compute_metrics(g, plan_hardware(p), p.events, p.initial)
            report = validate_plan(g, Plan(p.graph, p.policy, p.hardware, p.initial, p.events, metrics=mine))
            assert report.ok, report.errors


class TestNoOffload:
    def test_peak(self) -> None:
        assert no_offload_peak_bytes(W2) == 4 * KB

    def test_unused_input_and_persistent(self) -> None:
        g = make_graph(
            [("w", "weight", 1000), ("unused", "input", 5000), ("x", "input", 10), ("y", "activation", 20)],
            [{"id": "f", "inputs": ["x"], "outputs": ["y"]}],
        )
        assert no_offload_peak_bytes(g) == 1030

    def test_no_ops(self) -> None:
        g = make_graph([("w", "weight", 7)], [])
        assert no_offload_peak_bytes(g) == 7

    def test_compute_only_time(self) -> None:
        hw = hardware_from_dict(hw_dict())
        assert compute_only_time_s(ADAM, hw) == pytest.approx(1.126)

    def test_curves(self) -> None:
        hw = hardware_from_dict(hw_dict())
        curves = no_offload_curves(W2, hw)
        hbm = curves["HBM"]
        assert list(hbm.times_s) == [0.0, 1.0, 2.0]
        assert list(hbm.bytes_by_kind["weight"]) == [KB, KB, KB]
        assert list(hbm.bytes_by_kind["input"]) == [KB, 0, 0]
        assert list(hbm.bytes_by_kind["activation"]) == [KB, 3 * KB, 0]
        assert int(hbm.total_bytes.max()) == no_offload_peak_bytes(W2)
        assert int(curves["DDR"].total_bytes.max()) == 0


class TestCurves:
    def test_occupancy_after_offload(self) -> None:
        p = make_plan(W2_DROP, {"w": "DDR", "x": "HBM"})
        curves = occupancy_curves(W2, p)
        hbm = curves["HBM"]
        assert list(hbm.times_s) == [0.0, 0.25, 1.25, 2.25]
        assert list(hbm.bytes_by_kind["weight"]) == [KB, KB, 0, 0]
        assert list(hbm.bytes_by_kind["activation"]) == [0, KB, 3 * KB, 0]
        assert list(curves["DDR"].bytes_by_kind["weight"]) == [KB, KB]
        assert int(hbm.total_bytes.max()) == compute_metrics(W2, plan_hardware(p), p.events, p.initial)["peak_bytes"]["HBM"]

    def test_downsample_keeps_peaks(self) -> None:
        rng = np.random.default_rng(1)
        times = np.arange(10_000, dtype=float)
        values = rng.integers(0, 100, size=10_000)
        values[4321] = 10_000
        t, v = downsample_step(times, values, 100)
        assert len(t) <= 100 and len(t) == len(v)
        assert v.max() == 10_000
        assert t[0] == 0 and t[-1] == times[-1]
        assert np.all(np.diff(t) > 0)

    def test_downsample_stacked(self) -> None:
        times = np.arange(1000, dtype=float)
        values = np.zeros((2, 1000), dtype=np.int64)
        values[0, 500] = 7
        values[1, 500] = 5
        t, v = downsample_step(times, values, 10)
        assert v.shape == (2, len(t))
        assert v.sum(axis=0).max() == 12 and (7, 5) in set(zip(v[0], v[1]))

    def test_downsample_small_is_identity(self) -> None:
        t, v = downsample_step(np.array([0.0, 1.0]), np.array([3, 4]), 10)
        assert list(t) == [0.0, 1.0] and list(v) == [3, 4]

    def test_stream_timelines(self) -> None:
        p = make_plan(ADAM_HOST, {"s": "DDR", "x": "HBM"})
        streams = stream_timelines(ADAM, p)
        assert [(s.name, s.kind) for s in streams] == [("HBM compute", "compute"), ("DDR compute", "compute"),
                                                        ("HBM->DDR", "link")]
        assert streams[0].labels == ["bwd", "tail"] and list(streams[1].starts_s) == [1.25]
        assert streams[2].labels == ["gr"] and streams[2].categories == ["gradient"]
        assert list(streams[2].ends_s) == [1.25]


@st.composite
def random_plan(draw: st.DrawFn) -> tuple[Graph, Plan]:
    """A random chain with random offloads of activations between producer and consumer."""
    n = draw(st.integers(1, 10))
    tensors: list[tuple[str, str, int]] = [("x", "input", draw(st.integers(0, 512)))]
    ops = []
    for i in range(n):
        tensors.append((f"a{i}", "activation", draw(st.integers(0, 512))))
        src = "x" if i == 0 else f"a{i - 1}"
        ops.append({"id": f"op{i}", "inputs": [src], "outputs": [f"a{i}"], "time_s": draw(st.sampled_from([0.5, 1.0]))})
    g = make_graph(tensors, ops)
    events: list[Any] = []
    t = 0.0
    for i, op in enumerate(g.ops):
        src = op.inputs[0]
        if i > 0 and draw(st.booleans()):
            # Offload the input after production and bring it back: costs 2 transfers before this op.
            size = g.tensor_by_id[src].bytes
            d = size / BW
            events += [TransferEvent(src, "HBM", "DDR", t, t + d), FreeEvent(src, "HBM", t + d),
                       TransferEvent(src, "DDR", "HBM", t + d, t + 2 * d), FreeEvent(src, "DDR", t + 2 * d)]
            t += 2 * d
        events.append(ComputeEvent(op.id, t, t + op.time_s, "HBM"))  # type: ignore[operator]
        t += op.time_s  # type: ignore[operator]
        events.append(FreeEvent(src, "HBM", t))
    events.append(FreeEvent(g.ops[-1].outputs[0], "HBM", t))
    return g, make_plan(events, {"x": "HBM"})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_plan())
def test_metrics_agree_with_replay(case: tuple[Graph, Plan]) -> None:
    g, p = case
    mine = compute_metrics(g, plan_hardware(p), p.events, p.initial)
    report = validate_plan(g, Plan(p.graph, p.policy, p.hardware, p.initial, p.events, metrics=mine))
    assert report.ok, report.errors
    for key in METRIC_KEYS:
        assert key in mine
    curves = occupancy_curves(g, p)
    assert int(curves["HBM"].total_bytes.max(initial=0)) == mine["peak_bytes"]["HBM"]


# ------------------------------------------------------------------ arrays vs the loops they replaced

from core.errors import InfeasibleError  # noqa: E402
from core.metrics import Stream, _sequential_lifetimes  # noqa: E402
from core.planner import make_plan as plan_graph  # noqa: E402
from tests.strategies import graphs, hierarchies  # noqa: E402

_I64 = np.int64


def _reference_lifetimes(graph: Graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the all-in-one-tier sequential schedule: per tensor the first and last op index it is alive
    during (-1 for "from the step start"; ``len(ops)`` for "to the step end"), and whether it is alive at all."""
    n = len(graph.ops)
    first = np.full(len(graph.tensors), -1, dtype=_I64)
    last = np.full(len(graph.tensors), -1, dtype=_I64)
    index = {t.id: k for k, t in enumerate(graph.tensors)}
    for i, op in enumerate(graph.ops):
        for x in op.outputs:
            first[index[x]] = i
            last[index[x]] = i
        for x in op.inputs:
            last[index[x]] = i
    persistent = np.array([t.persistent for t in graph.tensors], dtype=bool)
    last[persistent] = n
    alive = last >= np.maximum(first, 0)
    return first, last, alive


def _reference_streams(graph: Graph, plan: Plan) -> list[Stream]:
    """Busy intervals per stream: the compute of each tier that runs something (compute tier first), then
    each directed link that carries something, in hardware order."""
    hardware = plan_hardware(plan)
    tensors = graph.tensor_by_id
    ops = graph.op_index
    compute: dict[str, list[ComputeEvent]] = {hardware.compute_tier: []}
    links: dict[str, list[TransferEvent]] = {}
    for e in plan.events:
        if type(e) is ComputeEvent:
            compute.setdefault(e.tier or hardware.compute_tier, []).append(e)
        elif type(e) is TransferEvent:
            links.setdefault(f"{e.src}->{e.dst}", []).append(e)
    out: list[Stream] = []
    for tier in [t.name for t in hardware.tiers]:
        if tier not in compute:
            continue
        evs = sorted(compute[tier], key=lambda e: (e.start, e.end))
        out.append(Stream(
            f"{tier} compute", "compute",
            np.array([e.start for e in evs], dtype=float), np.array([e.end for e in evs], dtype=float),
            [f"{e.op} (recompute)" if e.recompute else e.op for e in evs],
            ["recompute" if e.recompute else graph.ops[ops[e.op]].category for e in evs],
        ))
    for link in hardware.links:
        evs = sorted(links.get(link.name, []), key=lambda e: (e.start, e.end))
        if not evs:
            continue
        out.append(Stream(
            link.name, "link",
            np.array([e.start for e in evs], dtype=float), np.array([e.end for e in evs], dtype=float),
            [e.tensor for e in evs], [tensors[e.tensor].kind for e in evs],
        ))
    return out


def _same_streams(new: list[Stream], old: list[Stream]) -> None:
    assert [(s.name, s.kind) for s in new] == [(s.name, s.kind) for s in old]
    for a, b in zip(new, old):
        assert np.array_equal(a.starts_s, b.starts_s) and np.array_equal(a.ends_s, b.ends_s), a.name
        assert a.labels == b.labels and a.categories == b.categories, a.name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_lifetimes_and_streams_match_the_loops_on_random_plans(data) -> None:
    g = data.draw(graphs(max_ops=14))
    for new, old in zip(_sequential_lifetimes(g), _reference_lifetimes(g)):
        assert new.dtype == old.dtype and np.array_equal(new, old)
    hw = data.draw(hierarchies(g))
    try:
        plan = plan_graph(g, hw)
    except InfeasibleError:
        return
    _same_streams(stream_timelines(g, plan), _reference_streams(g, plan))


def test_streams_keep_hardware_order_and_plan_order_on_ties() -> None:
    """Compute tier listed second, host compute on the first tier, equal start times on a link."""
    g = graph_from_dict({"format": "tierplan-graph/1", "name": "g", "tensors": [
        {"id": "w", "bytes": 4, "kind": "weight"}, {"id": "v", "bytes": 4, "kind": "weight"},
        {"id": "y", "bytes": 8, "kind": "activation"}],
        "ops": [{"id": "f", "inputs": ["w"], "outputs": ["y"], "time_s": 1.0, "category": "matmul"},
                {"id": "u", "inputs": ["v", "y"], "outputs": [], "mutates": ["v"], "time_s": 1.0}]})
    raw = hw_dict()
    raw["tiers"] = raw["tiers"][::-1]
    hw = hardware_from_dict(raw)
    events = (TransferEvent("v", "HBM", "DDR", 0.0, 1.0), ComputeEvent("f", 0.0, 1.0, "HBM"),
              TransferEvent("w", "HBM", "DDR", 0.0, 1.0), ComputeEvent("f", 1.0, 2.0, "", True),
              ComputeEvent("u", 0.5, 1.5, "DDR"), TransferEvent("y", "DDR", "HBM", 3.0, 4.0),
              FreeEvent("y", "HBM", 4.0))
    from core.hardware import hardware_to_dict

    plan = Plan(graph="g", policy="hand", hardware=hardware_to_dict(hw), initial={"w": ("HBM",), "v": ("HBM",)},
                events=events, decisions=(), metrics={})
    new = stream_timelines(g, plan)
    _same_streams(new, _reference_streams(g, plan))
    assert [s.name for s in new] == ["DDR compute", "HBM compute", "HBM->DDR", "DDR->HBM"]
    assert new[1].labels == ["f", "f (recompute)"] and new[1].categories == ["matmul", "recompute"]
    assert new[2].labels == ["v", "w"]  # same start and end: plan order
