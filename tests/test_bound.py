"""The LP lower bound: never above the step time of any valid plan, tight where the answer is known."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.bound import guided_assignment, host_ops_of, lower_bound, plan_lower_bound
from core.errors import InfeasibleError, PlanBugError
from core.graph import Graph
from core.hardware import Hardware, with_capacity
from core.liveness import analyze
from core.metrics import compute_only_time_s
from core.order import refine_order, reorder_graph
from core.planner import make_plan
from core.policies import list_policies
from core.schedule import build_plan
from core.validate import validate_plan
from tests.builders import hierarchy, toy_training
from tests.strategies import graphs, hierarchies

GiB = 2**30


def _check_all_policies(g: Graph, hw: Hardware, max_blocks: int) -> int:
    """Every policy's valid plan has a step time at or above the bound for its own host placement."""
    checked = 0
    for info in list_policies():
        try:
            plan = make_plan(g, hw, policy=info.key)
        except (InfeasibleError, PlanBugError):
            continue  # a policy's own bug is the fuzzers' job (tests/test_fuzz.py); this test is about the bound
        in_order = reorder_graph(g, plan.order) if plan.order is not None else g  # the bound is per order
        placement = host_ops_of(plan.events, in_order, hw.compute_tier)
        own = lower_bound(in_order, hw, op_tiers=placement, max_blocks=max_blocks)
        step = float(plan.metrics["step_time_s"])
        assert plan.lower_bound_s is not None and plan.lower_bound_s <= step * (1 + 1e-9) + 1e-12
        assert own.status == "optimal", (info.key, own.status)  # a plan exists, so the relaxation has one
        assert own.lower_bound_s <= step * (1 + 1e-9) + 1e-12, (info.key, own.lower_bound_s, step)
        assert plan_lower_bound(in_order, hw, ({}, placement), max_blocks=max_blocks).lower_bound_s <= \
            own.lower_bound_s
        checked += 1
    return checked


class TestNeverAbovePlans:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data(), st.sampled_from([1, 3, 1000]))
    def test_random_graphs_every_policy(self, data: st.DataObject, max_blocks: int) -> None:
        g = data.draw(graphs(max_ops=14))
        hw = data.draw(hierarchies(g))
        _check_all_policies(g, hw, max_blocks)

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def test_random_training_graphs_reordered(self, data: st.DataObject) -> None:
        g = data.draw(graphs(max_ops=14, optimizer=True))
        hw = data.draw(hierarchies(g))
        _check_all_policies(refine_order(g).graph, hw, 1000)

    @pytest.mark.parametrize("hbm", ["6 GiB", "8 GiB", "12 GiB", "20 GiB"])
    @pytest.mark.parametrize("link", ["20 GB/s", "200 GB/s"])
    def test_toy_training(self, hbm: str, link: str) -> None:
        g = toy_training(4)
        hw = hierarchy(hbm, link)
        assert _check_all_policies(g, hw, 1000) >= 1
        assert _check_all_policies(refine_order(g).graph, hw, 1000) >= 1


class TestValues:
    def test_everything_fits_is_compute_time(self) -> None:
        g = toy_training(3)
        hw = hierarchy("1 TiB")
        b = lower_bound(g, hw)
        assert b.status == "optimal"
        assert b.lower_bound_s == pytest.approx(compute_only_time_s(g, hw), rel=1e-5)

    def test_tight_memory_costs_transfer_time(self) -> None:
        """Less HBM forces more bytes through the links: the bound rises above compute and with less HBM."""
        g = toy_training(4)
        roomy, tight = lower_bound(g, hierarchy("20 GiB", "20 GB/s")), lower_bound(g, hierarchy("8 GiB", "20 GB/s"))
        compute = compute_only_time_s(g, hierarchy())
        assert tight.lower_bound_s > roomy.lower_bound_s >= compute * (1 - 1e-5)
        assert tight.lower_bound_s > compute * 1.05

    def test_hand_computed(self) -> None:
        """One 10 GiB weight read by one 1 ms op, HBM holds 2 GiB + the op's 1 KiB: the weight cannot stay,
        so at least 10 GiB - room must come in over the 10 GiB/s link: the bound is that copy time."""
        from core.graph import graph_from_dict

        g = graph_from_dict({"format": "tierplan-graph/1", "name": "h", "tensors": [
            {"id": "w", "bytes": 10 * GiB, "kind": "weight"}, {"id": "a", "bytes": 1024, "kind": "activation"},
            {"id": "b", "bytes": 1024, "kind": "activation"}],
            "ops": [{"id": "use", "inputs": ["w"], "outputs": ["a"], "time_s": 1e-3},
                    {"id": "big", "inputs": ["a"], "outputs": ["b"], "time_s": 1e-3}]})
        hw = hierarchy(10 * GiB + 2048, "10 GiB/s", ssd=False)
        hw = with_capacity(hw, "HBM", 2 * GiB)  # op 'use' alone needs 10 GiB: no plan, claim only compute
        assert lower_bound(g, hw).status == "infeasible"
        assert lower_bound(g, hw).lower_bound_s == pytest.approx(2e-3)
        hw = with_capacity(hw, "HBM", 10 * GiB + 4096)
        b = lower_bound(g, hw)
        assert b.lower_bound_s == pytest.approx(2e-3, rel=1e-4)  # fits during 'big': no copy needed

    def test_coarser_blocks_are_weaker(self) -> None:
        g = toy_training(6)
        hw = hierarchy("10 GiB", "30 GB/s")
        fine = lower_bound(g, hw, max_blocks=1000).lower_bound_s
        coarse = lower_bound(g, hw, max_blocks=2).lower_bound_s
        assert coarse <= fine * (1 + 1e-6)

    def test_host_placement(self) -> None:
        g = toy_training(4)
        hw = hierarchy("8 GiB", "50 GB/s")
        live = analyze(g)
        b = lower_bound(g, hw, liveness=live)
        assert b.liveness is live


class TestGuidance:
    def test_rounded_decisions_schedule(self) -> None:
        g = toy_training(4)
        hw = hierarchy("9 GiB", "50 GB/s")
        b = lower_bound(g, hw, max_blocks=1000)
        options = guided_assignment(g, hw, b)
        assert options
        steps = []
        for a in options:
            try:
                plan = build_plan(g, hw, b.liveness, a, policy="lp-guided")
            except InfeasibleError:
                continue
            assert validate_plan(g, plan).ok
            steps.append(plan.metrics["step_time_s"])
        assert steps and min(steps) >= b.lower_bound_s


class TestOnEveryPlan:
    def test_make_plan_attaches_bound(self) -> None:
        g = toy_training(4)
        hw = hierarchy("9 GiB", "20 GB/s")
        for info in list_policies():
            try:
                plan = make_plan(g, hw, policy=info.key)
            except InfeasibleError:
                continue
            assert plan.lower_bound_s is not None and plan.gap_to_bound is not None
            step = plan.metrics["step_time_s"]
            assert plan.lower_bound_s <= step
            assert plan.gap_to_bound == pytest.approx(step / plan.lower_bound_s - 1)
        assert make_plan(g, hw, bound=False).lower_bound_s is None


def test_guided_plan_is_valid_and_explained() -> None:
    from core.bound import guided_plan

    g = toy_training(4)
    hw = hierarchy("10 GiB", "50 GB/s")
    b = lower_bound(g, hw, max_blocks=1000)
    plan = guided_plan(g, hw, b, policy="tierplan")
    assert plan is not None
    assert validate_plan(g, plan).ok
    assert plan.metrics["step_time_s"] >= b.lower_bound_s
    assert plan.decisions and all("LP bound" in d.reason for d in plan.decisions)
