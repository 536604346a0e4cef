"""The planner end to end: every plan it emits is replayed by the independent validator."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InfeasibleError, InputError
from core.graph import graph_from_dict
from core.hardware import with_capacity
from core.liveness import analyze
from core.planner import make_plan
from tests.builders import GiB, assert_valid, hierarchy, toy_training
from tests.infeasible import check_infeasible
from tests.strategies import graphs, hierarchies


class TestExamples:
    def test_fits_means_no_transfers(self) -> None:
        g = toy_training()
        plan = make_plan(g, hierarchy("64 GiB"))
        assert_valid(g, plan)
        assert plan.metrics["transfer_bytes"] == {} or sum(plan.metrics["transfer_bytes"].values()) == 0
        assert plan.metrics["stall_time_s"] == pytest.approx(0.0, abs=1e-12)

    def test_shrinking_hbm_moves_bytes_and_respects_capacity(self) -> None:
        g = toy_training()
        peak = analyze(g).no_offload_peak_bytes
        plan = make_plan(g, hierarchy(str(int(peak * 0.6))))
        assert_valid(g, plan)
        assert plan.metrics["peak_bytes"]["HBM"] <= int(peak * 0.6)
        assert sum(plan.metrics["transfer_bytes"].values()) > 0
        assert any(d.action != "keep" for d in plan.decisions)

    def test_every_decision_is_explained(self) -> None:
        g = toy_training()
        plan = make_plan(g, hierarchy("10 GiB"))
        moved = [d for d in plan.decisions if d.action == "offload"]
        assert moved
        for d in moved:
            assert d.reason and d.tier in ("DDR", "SSD")
            assert {"bytes_freed", "idle_s", "transfer_s", "exposed_s", "access_count"} <= set(d.terms)

    def test_slow_link_costs_time(self) -> None:
        g = toy_training()
        fast = make_plan(g, hierarchy("10 GiB", "400 GB/s"))
        slow = make_plan(g, hierarchy("10 GiB", "4 GB/s"))
        assert_valid(g, fast)
        assert_valid(g, slow)
        assert slow.metrics["step_time_s"] > fast.metrics["step_time_s"]

    def test_op_that_cannot_fit_is_named(self) -> None:
        g = toy_training()
        with pytest.raises(InfeasibleError, match=r"op 'bwd\d' needs .* of inputs and outputs"):
            make_plan(g, hierarchy("3 GiB"))

    def test_none_policy_reports_peak(self) -> None:
        g = toy_training()
        with pytest.raises(InfeasibleError, match="without offloading"):
            make_plan(g, hierarchy("10 GiB"), policy="none")

    def test_unknown_policy_and_bad_param(self) -> None:
        g = toy_training()
        with pytest.raises(InputError, match="unknown policy"):
            make_plan(g, hierarchy(), policy="magic")
        with pytest.raises(InputError, match="prefetch_slack"):
            make_plan(g, hierarchy(), params={"prefetch_slack": 99})

    def test_deterministic(self) -> None:
        g = toy_training()
        a = make_plan(g, hierarchy("9 GiB"))
        b = make_plan(g, hierarchy("9 GiB"))
        assert a.events == b.events and a.initial == b.initial

    def test_more_capacity_never_slower_on_toy(self) -> None:
        g = toy_training()
        hw = hierarchy("8 GiB")
        times = [make_plan(g, with_capacity(hw, "HBM", c * GiB)).metrics["step_time_s"] for c in (8, 10, 12, 16, 24)]
        assert all(later <= earlier * (1 + 1e-9) for earlier, later in itertools.pairwise(times))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
@pytest.mark.parametrize("policy", ["tierplan", "none"])
def test_random_graphs_give_valid_plans_or_clear_infeasibility(policy: str, data: st.DataObject) -> None:
    graph = data.draw(graphs())
    hw = data.draw(hierarchies(graph))
    try:
        plan = make_plan(graph, hw, policy=policy)
    except InfeasibleError as exc:
        check_infeasible(graph, hw, exc, policy)  # the reason must hold, not just be worded
        return
    assert_valid(graph, plan)
    assert plan.metrics["peak_bytes"][hw.compute_tier] <= hw.capacity(hw.compute_tier)


class TestHostCompute:
    def test_teaching_sample_runs_adam_on_the_host(self) -> None:
        from core.plan import ComputeEvent
        from core.sources.presets import load_preset
        from core.sources.samples import load_sample

        g, hw = load_sample("tiny"), load_preset("teaching")
        with_host = make_plan(g, hw)
        without = make_plan(g, hw, params={"host_compute": 0})
        assert_valid(g, with_host)
        assert_valid(g, without)
        on_ddr = [e.op for e in with_host.events if isinstance(e, ComputeEvent) and e.tier == "DDR"]
        assert on_ddr and all(g.ops[g.op_index[op]].host_ok for op in on_ddr)
        assert with_host.metrics["host_compute_time_s"] > 0
        assert with_host.metrics["step_time_s"] < without.metrics["step_time_s"]
        assert with_host.initial["adam1"] == ("DDR",)  # optimizer state lives with the CPUs

    def test_no_host_compute_without_host_processors(self) -> None:
        from core.plan import ComputeEvent

        g = toy_training()
        plan = make_plan(g, hierarchy("10 GiB"))
        assert all(e.tier == "HBM" for e in plan.events if isinstance(e, ComputeEvent))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_random_training_like_graphs_with_host_cpus(data: st.DataObject) -> None:
    """Graphs that end in an in-place update, on hierarchies whose DDR has processors of its own."""
    graph = data.draw(graphs(optimizer=True))
    hw = data.draw(hierarchies(graph, host_compute=True))
    try:
        plan = make_plan(graph, hw)
    except InfeasibleError as exc:
        check_infeasible(graph, hw, exc)
        return
    assert_valid(graph, plan)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_forced_host_placement_is_valid(data: st.DataObject) -> None:
    """Whenever ops qualify for host compute, scheduling them there (win or lose) gives a valid plan."""
    from core.planner import _Tierplan, host_candidates
    from core.policies import get_policy, resolve_params
    from core.schedule import build_plan

    graph = data.draw(graphs(optimizer=True))
    hw = data.draw(hierarchies(graph, host_compute=True))
    host = host_candidates(graph, hw)
    if host is None:
        return
    tier, ops = host
    live = analyze(graph, host_ops=ops)
    op_tiers = dict.fromkeys(ops, tier)
    try:
        placement = _Tierplan(graph, hw, live, resolve_params(get_policy("tierplan"), {}), "cost", op_tiers).run()
        plan = build_plan(graph, hw, live, placement.assignment, policy="tierplan", op_tiers=op_tiers)
    except InfeasibleError:
        return
    assert_valid(graph, plan)
    assert any(e.tier == tier for e in plan.events if hasattr(e, "op"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_slot_count_bounds_the_replayed_peak(data: st.DataObject) -> None:
    """The scheduler's per-op count is what it checks capacity against; the replay must never exceed it."""
    from core.planner import decide_tierplan
    from core.policies import get_policy, resolve_params
    from core.schedule import build_schedule

    graph = data.draw(graphs())
    hw = data.draw(hierarchies(graph))
    live = analyze(graph)
    try:
        placement = decide_tierplan(graph, hw, live, resolve_params(get_policy("tierplan"), {}))
        sched = build_schedule(graph, hw, placement.liveness or live, placement.assignment, None, placement.op_tiers)
    except InfeasibleError:
        return
    plan = make_plan(graph, hw)
    for tier in hw.tiers:
        counted = int(sched.slot_bytes[tier.name].max()) if len(sched.slot_bytes[tier.name]) else 0
        assert counted <= tier.capacity_bytes
        if graph.ops:
            assert plan.metrics["peak_bytes"][tier.name] <= counted, tier.name


class TestRecompute:
    def test_cheap_big_activation_is_recomputed_not_moved(self) -> None:
        """A 1 ms op makes a 4 GiB tensor from a small input read again later: re-running it beats a
        0.8 s round trip over a slow link."""
        g = graph_from_dict({"format": "tierplan-graph/1", "name": "rc", "tensors": [
            {"id": "x", "bytes": 64 * 2**20, "kind": "input"}, {"id": "big", "bytes": 4 * GiB, "kind": "activation"},
            {"id": "h", "bytes": 4 * GiB, "kind": "activation"}, {"id": "y", "bytes": 64 * 2**20, "kind": "activation"}],
            "ops": [
                {"id": "expand", "inputs": ["x"], "outputs": ["big"], "time_s": 0.001},
                {"id": "work", "inputs": [], "outputs": ["h"], "time_s": 0.05},
                {"id": "more", "inputs": ["h"], "outputs": [], "time_s": 0.05},
                {"id": "use", "inputs": ["big", "x"], "outputs": ["y"], "time_s": 0.01}]})
        hw = hierarchy("6 GiB", "10 GB/s", ssd=False)
        plan = make_plan(g, hw)
        assert_valid(g, plan)
        assert plan.metrics["recompute_time_s"] > 0
        assert any(d.tensor == "big" and d.action == "recompute" for d in plan.decisions)
        without = make_plan(g, hw, params={"recompute": 0})
        assert_valid(g, without)
        assert plan.metrics["step_time_s"] < without.metrics["step_time_s"]
