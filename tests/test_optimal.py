"""The MILP reference: its bound never exceeds the step time of any valid plan (checked by brute force)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InfeasibleError
from core.graph import Graph, graph_from_dict
from core.hardware import Hardware, hardware_from_dict
from core.liveness import analyze
from core.optimal import MAX_OPS, optimal_reference
from core.planner import make_plan
from core.schedule import build_plan
from core.spans import recompute_ok
from core.validate import validate_plan
from tests.infeasible import check_infeasible
from tests.strategies import graphs, hierarchies

GiB = 2**30


def chain(n_layers: int = 2) -> Graph:
    """Forward/backward chain small enough to enumerate every decision: 2 layers -> 7 ops, 7 spans."""
    tensors: list[dict[str, Any]] = [{"id": "x", "bytes": GiB, "kind": "input"}]
    ops: list[dict[str, Any]] = []
    prev = "x"
    for k in range(n_layers):
        tensors += [{"id": f"w{k}", "bytes": GiB, "kind": "weight"},
                    {"id": f"a{k}", "bytes": 2 * GiB, "kind": "activation"},
                    {"id": f"d{k}", "bytes": GiB, "kind": "activation"}]
        ops.append({"id": f"f{k}", "inputs": [prev, f"w{k}"], "outputs": [f"a{k}"], "time_s": 0.01})
        prev = f"a{k}"
    ops.append({"id": "head", "inputs": [prev], "outputs": ["d_top"], "time_s": 0.005})
    tensors.append({"id": "d_top", "bytes": GiB, "kind": "activation"})
    grad = "d_top"
    for k in reversed(range(n_layers)):
        saved = f"a{k - 1}" if k else "x"
        ops.append({"id": f"b{k}", "inputs": [grad, saved, f"w{k}"], "outputs": [f"d{k}"], "time_s": 0.02})
        grad = f"d{k}"
    ops.append({"id": "upd", "inputs": [grad, "w0"], "outputs": [], "mutates": ["w0"], "time_s": 0.003})
    return graph_from_dict({"format": "tierplan-graph/1", "name": "chain", "tensors": tensors, "ops": ops})


def hw(hbm: float, *, link: str = "50 GB/s", ssd: bool = False, latency: str = "0 s") -> Hardware:
    tiers: list[dict[str, Any]] = [{"name": "HBM", "capacity_bytes": int(hbm)}, {"name": "DDR", "capacity_bytes": "64 GiB"}]
    links = [{"src": "HBM", "dst": "DDR", "bandwidth_Bps": link, "latency_s": latency},
             {"src": "DDR", "dst": "HBM", "bandwidth_Bps": link, "latency_s": latency}]
    if ssd:
        tiers.append({"name": "SSD", "capacity_bytes": "1 TiB"})
        links += [{"src": "DDR", "dst": "SSD", "bandwidth_Bps": "10 GB/s"},
                  {"src": "SSD", "dst": "DDR", "bandwidth_Bps": "10 GB/s"}]
    return hardware_from_dict({"format": "tierplan-hardware/1", "name": "hw", "compute": {"peak_flops": 1e14},
                               "compute_tier": "HBM", "tiers": tiers, "links": links})


def brute_force(graph: Graph, hardware: Hardware, *, max_assignments: int = 5000) -> list[float]:
    """Step time of every valid plan over all keep/offload/recompute assignments (validator-checked)."""
    live = analyze(graph)
    C = hardware.compute_tier
    choices = []
    spans = [s for s in live.spans if s.bytes > 0]
    for s in spans:
        opts: list[tuple[str, str] | None] = [None] + [("offload", t) for t in hardware.offload_tiers]
        if recompute_ok(graph, live, s.id):
            opts.append(("recompute", C))
        choices.append(opts)
    total = math.prod(len(c) for c in choices)
    assert total <= max_assignments, f"{total} assignments: graph too large for brute force"
    times = []
    for combo in itertools.product(*choices):
        assignment = {s.id: c for s, c in zip(spans, combo) if c is not None}
        try:
            plan = build_plan(graph, hardware, live, assignment, policy="brute")
        except InfeasibleError:
            continue
        if validate_plan(graph, plan).ok:
            times.append(float(plan.metrics["step_time_s"]))
    return times


def assert_bound(graph: Graph, hardware: Hardware) -> None:
    res = optimal_reference(graph, hardware, time_limit_s=20.0)
    times = brute_force(graph, hardware)
    if res.status == "infeasible":
        assert not times, "the relaxed model found no decisions, yet a valid plan exists"
        return
    assert res.status == "optimal", res.message
    if times:
        assert res.step_time_s <= min(times) * (1 + 1e-6) + 1e-12, (res.step_time_s, min(times), res.message)
    if res.plan_step_time_s is not None:
        assert res.step_time_s <= res.plan_step_time_s * (1 + 1e-6) + 1e-12
    if not res.is_lower_bound:
        assert times and res.step_time_s == pytest.approx(min(times), rel=1e-6)


class TestAgainstBruteForce:
    @pytest.mark.parametrize("fraction", [1.0, 0.8, 0.65, 0.5])
    def test_chain(self, fraction: float) -> None:
        g = chain()
        assert_bound(g, hw(analyze(g).no_offload_peak_bytes * fraction))

    @pytest.mark.parametrize("link", ["5 GB/s", "500 GB/s"])
    def test_chain_link_speed(self, link: str) -> None:
        g = chain()
        assert_bound(g, hw(analyze(g).no_offload_peak_bytes * 0.7, link=link, latency="20 us"))

    def test_chain_with_ssd(self) -> None:
        g = chain(1)
        assert_bound(g, hw(analyze(g).no_offload_peak_bytes * 0.7, ssd=True))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                 HealthCheck.filter_too_much])
@given(st.data())
def test_random_tiny_graphs(data: st.DataObject) -> None:
    graph = data.draw(graphs(max_ops=6))
    spans = [s for s in analyze(graph).spans if s.bytes > 0]
    if len(spans) > 6:
        return
    hardware = data.draw(hierarchies(graph))
    if len(hardware.tiers) > 3:
        return
    assert_bound(graph, hardware)


class TestPolicyGap:
    @pytest.mark.parametrize("policy", ["tierplan", "mindspore-gsm", "capuchin", "hyperoffload-distance"])
    def test_every_policy_at_or_above_the_bound(self, policy: str) -> None:
        g = chain(3)
        h = hw(analyze(g).no_offload_peak_bytes * 0.6)
        res = optimal_reference(g, h)
        assert res.status == "optimal"
        try:
            params = {"select_distance": 1} if "distance" in policy else None
            plan = make_plan(g, h, policy=policy, params=params)
        except InfeasibleError as exc:
            assert policy != "tierplan", "the MILP found a plan, so the default policy must too"
            check_infeasible(g, h, exc, policy, params)
            return
        assert validate_plan(g, plan).ok
        assert plan.metrics["step_time_s"] >= res.step_time_s * (1 - 1e-6)

    def test_decisions_schedule_into_a_valid_plan(self) -> None:
        g = chain(3)
        h = hw(analyze(g).no_offload_peak_bytes * 0.6)
        res = optimal_reference(g, h)
        assert res.decisions and res.plan_step_time_s is not None
        plan = build_plan(g, h, analyze(g), res.decisions, policy="optimal")
        assert validate_plan(g, plan).ok
        assert plan.metrics["step_time_s"] == pytest.approx(res.plan_step_time_s)


class TestLimits:
    def test_fits_means_compute_time(self) -> None:
        g = chain()
        res = optimal_reference(g, hw(analyze(g).no_offload_peak_bytes))
        assert res.step_time_s == pytest.approx(sum(op.time_s for op in g.ops))
        assert not res.is_lower_bound and res.status == "optimal"

    def test_op_too_large(self) -> None:
        g = chain()
        res = optimal_reference(g, hw(GiB))
        assert res.status == "infeasible" and "alone needs" in res.message

    def test_too_large_graph_refused(self) -> None:
        g = chain(MAX_OPS // 2)
        res = optimal_reference(g, hw(analyze(g).no_offload_peak_bytes * 0.5))
        assert res.status == "too_large"

    def test_time_limit_reports_giving_up(self) -> None:
        g = chain(12)
        res = optimal_reference(g, hw(analyze(g).no_offload_peak_bytes * 0.4, link="20 GB/s"), time_limit_s=0.2)
        assert res.solve_time_s < 5.0
        assert res.status in ("optimal", "time_limit")
        if res.status == "time_limit":
            assert "gave up" in res.message and res.is_lower_bound
        assert res.step_time_s >= sum(op.time_s for op in g.ops) * (1 - 1e-9)
