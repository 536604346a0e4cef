"""The scheduler on hand-made decisions: clean drops, write-backs, SSD via DDR, recompute, capacity."""

from __future__ import annotations

import pytest

from core.errors import InfeasibleError
from core.graph import graph_from_dict
from core.hardware import hardware_from_dict
from core.liveness import analyze
from core.plan import ComputeEvent, FreeEvent, TransferEvent
from core.schedule import build_plan
from core.spans import recompute_ok
from core.validate import validate_plan

GiB = 2**30


def graph(mutate_weight: bool = False):
    """w is read at op0 and op3; a is made at op0 and read at op1 and op3; c is a cheap function of a, read
    at op3 again; op2 is long, so copies have time to hide behind it."""
    ops = [
        {"id": "op0", "inputs": ["x", "w"], "outputs": ["a"], "time_s": 0.01},
        {"id": "op1", "inputs": ["a"], "outputs": ["c"], "time_s": 0.001},
        {"id": "op2", "inputs": [], "outputs": ["d"], "time_s": 0.05},
        {"id": "op3", "inputs": ["a", "w", "d", "c"], "outputs": [], "time_s": 0.01},
    ]
    if mutate_weight:
        ops[3]["mutates"] = ["w"]
    return graph_from_dict({"format": "tierplan-graph/1", "name": "s", "tensors": [
        {"id": "x", "bytes": GiB, "kind": "input"}, {"id": "w", "bytes": GiB, "kind": "weight"},
        {"id": "a", "bytes": GiB, "kind": "activation"}, {"id": "c", "bytes": GiB, "kind": "activation"},
        {"id": "d", "bytes": GiB, "kind": "activation"}], "ops": ops})


def hardware(hbm: str = "16 GiB", ddr: str = "64 GiB"):
    return hardware_from_dict({"format": "tierplan-hardware/1", "compute": {"peak_flops": 1e14},
                               "tiers": [{"name": "HBM", "capacity_bytes": hbm}, {"name": "DDR", "capacity_bytes": ddr},
                                         {"name": "SSD", "capacity_bytes": "1 TiB"}],
                               "links": [{"src": "HBM", "dst": "DDR", "bandwidth_Bps": "100 GiB/s"},
                                         {"src": "DDR", "dst": "HBM", "bandwidth_Bps": "100 GiB/s"},
                                         {"src": "DDR", "dst": "SSD", "bandwidth_Bps": "10 GiB/s"},
                                         {"src": "SSD", "dst": "DDR", "bandwidth_Bps": "10 GiB/s"}]})


def span_id(live, tensor: str, kind: str = "inner") -> int:
    return next(s.id for s in live.spans if s.tensor == tensor and s.kind == kind)


def plan_for(g, hw, assignment, **kw):
    live = analyze(g)
    plan = build_plan(g, hw, live, {span_id(live, *k): v for k, v in assignment.items()}, policy="hand", **kw)
    report = validate_plan(g, plan)
    assert report.ok, report.errors[:3]
    return plan


def transfers(plan, tensor: str) -> list[tuple[str, str]]:
    return [(e.src, e.dst) for e in plan.events if isinstance(e, TransferEvent) and e.tensor == tensor]


def test_unmodified_weight_is_dropped_not_written_back() -> None:
    plan = plan_for(graph(), hardware(), {("w",): ("offload", "DDR")})
    assert plan.initial["w"] == ("HBM", "DDR")  # a home copy below makes the drop free
    assert transfers(plan, "w") == [("DDR", "HBM")]


def test_updated_weight_is_written_back_before_its_copy_is_freed() -> None:
    plan = plan_for(graph(mutate_weight=True), hardware(), {("w", "wrap"): ("offload", "DDR")})
    assert plan.initial["w"] == ("DDR",)
    moves = transfers(plan, "w")
    assert moves == [("DDR", "HBM"), ("HBM", "DDR")]  # fetched for op0, written back after the update
    back = next(e for e in plan.events if isinstance(e, TransferEvent) and e.tensor == "w" and e.dst == "DDR")
    freed = next(e for e in plan.events if isinstance(e, FreeEvent) and e.tensor == "w" and e.tier == "HBM")
    assert freed.time >= back.end


def test_activation_goes_to_ssd_through_ddr() -> None:
    plan = plan_for(graph(), hardware(), {("a",): ("offload", "SSD")})
    assert transfers(plan, "a") == [("HBM", "DDR"), ("DDR", "SSD"), ("SSD", "DDR"), ("DDR", "HBM")]
    ddr_frees = [e for e in plan.events if isinstance(e, FreeEvent) and e.tensor == "a" and e.tier == "DDR"]
    assert len(ddr_frees) == 2  # both staging copies released


def test_recompute_reruns_the_producer_before_the_use() -> None:
    g = graph()
    live = analyze(g)
    sid = span_id(live, "c")
    assert recompute_ok(g, live, sid)
    plan = plan_for(g, hardware(), {("c",): ("recompute", "HBM")})
    reruns = [e for e in plan.events if isinstance(e, ComputeEvent) and e.recompute]
    assert [e.op for e in reruns] == ["op1"]
    use = next(e for e in plan.events if isinstance(e, ComputeEvent) and e.op == "op3")
    assert reruns[0].end <= use.start
    assert plan.metrics["recompute_time_s"] == pytest.approx(0.001)


def test_keeping_everything_over_capacity_names_the_op() -> None:
    g = graph()
    with pytest.raises(InfeasibleError, match=r"HBM over capacity while op 'op\d'"):
        build_plan(g, hardware("3.5 GiB"), analyze(g), {}, policy="hand")


def test_full_lower_tier_is_infeasible() -> None:
    g = graph()
    with pytest.raises(InfeasibleError, match="DDR over capacity"):
        build_plan(g, hardware(ddr="0.5 GiB"), analyze(g), {span_id(analyze(g), "a"): ("offload", "DDR")},
                   policy="hand")


def test_prefetch_hint_sets_the_issue_op() -> None:
    g = graph()
    live = analyze(g)
    sid = span_id(live, "a")
    early = plan_for(g, hardware(), {("a",): ("offload", "DDR")}, prefetch_from={sid: 1})
    late = plan_for(g, hardware(), {("a",): ("offload", "DDR")}, prefetch_from={sid: 3})

    def copy_in(plan):
        return next(e for e in plan.events if isinstance(e, TransferEvent) and e.tensor == "a" and e.dst == "HBM")

    assert copy_in(early).start < copy_in(late).start
    op3 = next(e for e in late.events if isinstance(e, ComputeEvent) and e.op == "op3")
    assert op3.start >= copy_in(late).end  # the late copy-in stalls op3 but never races it


def test_second_pass_streams_the_next_copy_in_during_the_copy_out() -> None:
    """Eight optimizer states live in DDR; each is fetched, updated in a 1 ms op and written back over
    10 GiB/s links (0.1 s a copy), with HBM room for two. Slot starts that assume no waiting make every
    copy-in wait for the previous write-back (0.2 s a state); the refining passes, granted against the
    simulated slot starts, overlap them (0.1 s a state). Both plans replay cleanly."""
    from core.schedule import build_schedule, schedule_end_s

    k = 8
    g = graph_from_dict({"format": "tierplan-graph/1", "name": "adam", "tensors": [
        {"id": f"s{i}", "bytes": GiB, "kind": "optimizer_state"} for i in range(k)], "ops": [
        {"id": f"adam{i}", "inputs": [f"s{i}"], "outputs": [], "mutates": [f"s{i}"], "time_s": 0.001}
        for i in range(k)]})
    hw = hardware_from_dict({"format": "tierplan-hardware/1", "compute": {"peak_flops": 1e14}, "tiers": [
        {"name": "HBM", "capacity_bytes": "2 GiB"}, {"name": "DDR", "capacity_bytes": "64 GiB"}], "links": [
        {"src": "HBM", "dst": "DDR", "bandwidth_Bps": "10 GiB/s"},
        {"src": "DDR", "dst": "HBM", "bandwidth_Bps": "10 GiB/s"}]})
    live = analyze(g)
    assignment = {span_id(live, f"s{i}", "wrap"): ("offload", "DDR") for i in range(k)}
    first = build_schedule(g, hw, live, assignment, refine=False)
    second = build_schedule(g, hw, live, assignment)
    for sched in (first, second):
        plan = build_plan(g, hw, live, assignment, policy="hand", schedule=sched)
        report = validate_plan(g, plan)
        assert report.ok, report.errors[:3]
    copy_s = GiB / (10 * 2**30)
    assert schedule_end_s(first) > 1.8 * k * copy_s  # in, update, out, in, ...: serial
    # pipelined: the copy-ins back to back on their link, then the last write-back (and 1 ms updates)
    assert schedule_end_s(second) == pytest.approx((k + 1) * copy_s + 0.001 * 7, rel=0.01)


def test_recompute_whose_producer_input_is_dead_is_refused() -> None:
    """Re-running op0 before op5 would read in0, freed after op0. With every op taking zero time all events
    fall on t = 0 and the validator's equal-time rule cannot see the order, so the scheduler refuses it
    (hypothesis found a 0 s "plan" of this shape against the exact reference's 134 ms)."""
    mib = 2**20
    tensors = [{"id": "in0", "bytes": 16 * mib, "kind": "input"}, {"id": "a0", "bytes": 64 * mib, "kind": "activation"}]
    ops = [{"id": "op0", "inputs": ["in0"], "outputs": ["a0"], "time_s": 0.0}]
    prev = "a0"
    for k in range(1, 5):
        tensors.append({"id": f"a{k}", "bytes": 16 * mib, "kind": "activation"})
        ops.append({"id": f"op{k}", "inputs": [prev], "outputs": [f"a{k}"], "time_s": 0.0})
        prev = f"a{k}"
    ops.append({"id": "op5", "inputs": ["a0"], "outputs": [], "time_s": 0.0})
    g = graph_from_dict({"format": "tierplan-graph/1", "name": "dead-input", "tensors": tensors, "ops": ops})
    hw = hardware_from_dict({
        "format": "tierplan-hardware/1", "name": "x", "compute_tier": "HBM",
        "compute": {"peak_flops": 1e14, "efficiency": 0.5, "memory_bandwidth_Bps": 1e12},
        "tiers": [{"name": "HBM", "capacity_bytes": 96 * mib}, {"name": "DDR", "capacity_bytes": 288 * mib}],
        "links": [{"src": "HBM", "dst": "DDR", "bandwidth_Bps": 1e9}, {"src": "DDR", "dst": "HBM", "bandwidth_Bps": 1e9}]})
    live = analyze(g)
    a0 = next(s.id for s in live.spans if s.tensor == "a0" and s.kind == "inner")
    with pytest.raises(InfeasibleError, match="input 'in0' is dead"):
        build_plan(g, hw, live, {a0: ("recompute", "HBM")}, policy="brute")
    plan = build_plan(g, hw, live, {a0: ("offload", "DDR")}, policy="brute")  # moving it instead is a plan
    assert validate_plan(g, plan).ok and plan.metrics["step_time_s"] > 0.1
