"""The replay validator: one valid plan per flavour, one rejected plan per rule, random plans and mutations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.graph import Graph, graph_from_dict
from core.plan import ComputeEvent, FreeEvent, Plan, TransferEvent, plan_from_dict, plan_to_dict
from core.validate import validate_plan

# Sizes and speeds chosen so that every modelled time is exact in binary floating point:
# 256 bytes over a 1024 B/s link take 0.25 s.
BW = 1024.0
KB = 256


def hardware(hbm: int = 10_000, *, ddr: int = 100_000, ssd: bool = False) -> dict[str, Any]:
    tiers: list[dict[str, Any]] = [
        {"name": "HBM", "capacity_bytes": hbm},
        {"name": "DDR", "capacity_bytes": ddr, "compute": {"peak_flops": 1000.0, "efficiency": 1.0}},
    ]
    links = [
        {"src": "HBM", "dst": "DDR", "bandwidth_Bps": BW, "latency_s": 0},
        {"src": "DDR", "dst": "HBM", "bandwidth_Bps": BW, "latency_s": 0},
    ]
    if ssd:
        tiers.append({"name": "SSD", "capacity_bytes": 10**9})
        links += [
            {"src": "DDR", "dst": "SSD", "bandwidth_Bps": BW, "latency_s": 0},
            {"src": "SSD", "dst": "DDR", "bandwidth_Bps": BW, "latency_s": 0},
        ]
    return {
        "format": "tierplan-hardware/1", "name": "test",
        "compute": {"peak_flops": 1e6, "efficiency": 1.0}, "compute_tier": "HBM", "tiers": tiers, "links": links,
    }


def graph(tensors: list[tuple[str, str]], ops: list[dict[str, Any]], *, size: int = KB) -> Graph:
    return graph_from_dict({
        "format": "tierplan-graph/1", "name": "t",
        "tensors": [{"id": tid, "bytes": size, "kind": kind} for tid, kind in tensors],
        "ops": [op if "flops" in op else {"time_s": 1.0, **op} for op in ops],
    })


def plan(events: list[Any], initial: dict[str, Any], hw: dict[str, Any] | None = None) -> Plan:
    init = {t: (v,) if isinstance(v, str) else tuple(v) for t, v in initial.items()}
    return Plan("t", "hand", hw or hardware(), init, tuple(events))


def C(op: str, start: float, end: float, tier: str = "HBM") -> ComputeEvent:
    return ComputeEvent(op, start, end, tier)


def R(op: str, start: float, end: float, tier: str = "HBM") -> ComputeEvent:
    return ComputeEvent(op, start, end, tier, True)


def X(tensor: str, src: str, dst: str, start: float, end: float | None = None) -> TransferEvent:
    return TransferEvent(tensor, src, dst, start, start + KB / BW if end is None else end)


def F(tensor: str, tier: str, time: float) -> FreeEvent:
    return FreeEvent(tensor, tier, time)


def check(g: Graph, p: Plan) -> list[str]:
    report = validate_plan(g, p, check_metrics=False)
    assert report.ok == (not report.errors)
    return list(report.errors)


def assert_rejected(g: Graph, p: Plan, *fragments: str) -> None:
    errors = check(g, p)
    assert errors, "plan should have been rejected"
    joined = "\n".join(errors)
    for fragment in fragments:
        assert fragment in joined, f"{fragment!r} not in:\n{joined}"


# ------------------------------------------------------------------------------------------ fixtures

# Forward-like chain: f(w, x) -> y; g(w, y) -> z.
CHAIN = graph(
    [("w", "weight"), ("x", "input"), ("y", "activation"), ("z", "activation")],
    [{"id": "f", "inputs": ["w", "x"], "outputs": ["y"]}, {"id": "g", "inputs": ["w", "y"], "outputs": ["z"]}],
)
CHAIN_KEEP = [C("f", 0, 1), F("x", "HBM", 1), C("g", 1, 2), F("y", "HBM", 2), F("z", "HBM", 2)]

# y is produced early and used late: offload it in between.
LONG = graph(
    [("x", "input"), ("y", "activation"), ("u", "activation"), ("v", "activation")],
    [
        {"id": "f", "inputs": ["x"], "outputs": ["y"]},
        {"id": "g", "inputs": ["x"], "outputs": ["u"]},
        {"id": "h", "inputs": ["y", "u"], "outputs": ["v"]},
    ],
)
LONG_OFFLOAD = [
    C("f", 0, 1), X("y", "HBM", "DDR", 1), F("y", "HBM", 1.25), C("g", 1, 2), F("x", "HBM", 2),
    X("y", "DDR", "HBM", 1.5), F("y", "DDR", 1.75), C("h", 2, 3), F("y", "HBM", 3), F("u", "HBM", 3), F("v", "HBM", 3),
]

# An optimizer step updating a persistent state in place.
ADAM = graph(
    [("s", "optimizer_state"), ("gr", "gradient"), ("x", "input")],
    [
        {"id": "bwd", "inputs": ["x"], "outputs": ["gr"]},
        {"id": "adam", "inputs": ["s", "gr"], "outputs": [], "mutates": ["s"], "host_ok": True,
         "flops": 1000.0, "bytes_accessed": 0},
    ],
)
# adam takes 1000 flops / 1e6 flop/s = 1 ms on HBM, 1 s on the DDR host.
ADAM_WRITE_BACK = [
    X("s", "DDR", "HBM", 0), C("bwd", 0, 1), F("x", "HBM", 1), C("adam", 1, 1.001), F("gr", "HBM", 1.001),
    F("s", "DDR", 1.001), X("s", "HBM", "DDR", 1.001, 1.251), F("s", "HBM", 1.251),
]
ADAM_HOST = [
    C("bwd", 0, 1), F("x", "HBM", 1), X("gr", "HBM", "DDR", 1), F("gr", "HBM", 1.25),
    C("adam", 1.25, 2.25, "DDR"), F("gr", "DDR", 2.25),
]

# A weight read by two ops, living in DDR: prefetch, use, drop the clean HBM copy.
W2 = graph(
    [("w", "weight"), ("x", "input"), ("y", "activation"), ("z", "activation")],
    [{"id": "f", "inputs": ["w", "x"], "outputs": ["y"]}, {"id": "g", "inputs": ["y"], "outputs": ["z"]}],
)
W2_DROP = [X("w", "DDR", "HBM", 0), C("f", 0.25, 1.25), F("w", "HBM", 1.25), F("x", "HBM", 1.25),
           C("g", 1.25, 2.25), F("y", "HBM", 2.25), F("z", "HBM", 2.25)]
W2_SSD = [X("w", "SSD", "DDR", 0), X("w", "DDR", "HBM", 0.25), F("w", "DDR", 0.5), C("f", 0.5, 1.5),
          F("w", "HBM", 1.5), F("x", "HBM", 1.5), C("g", 1.5, 2.5), F("y", "HBM", 2.5), F("z", "HBM", 2.5)]

# Recompute y instead of keeping it across g.
RECOMP = graph(
    [("x", "input"), ("y", "activation"), ("z", "activation"), ("o", "activation")],
    [
        {"id": "f", "inputs": ["x"], "outputs": ["y"]},
        {"id": "g", "inputs": ["y"], "outputs": ["z"]},
        {"id": "h", "inputs": ["y", "z"], "outputs": ["o"]},
    ],
)
RECOMP_PLAN = [C("f", 0, 1), C("g", 1, 2), F("y", "HBM", 2), R("f", 2, 3), F("x", "HBM", 3), C("h", 3, 4),
               F("y", "HBM", 4), F("z", "HBM", 4), F("o", "HBM", 4)]


class TestValidPlans:
    def test_keep(self) -> None:
        assert check(CHAIN, plan(CHAIN_KEEP, {"w": "HBM", "x": "HBM"})) == []

    def test_offload_with_prefetch(self) -> None:
        assert check(LONG, plan(LONG_OFFLOAD, {"x": "HBM"})) == []

    def test_write_back_of_mutated_persistent_tensor(self) -> None:
        assert check(ADAM, plan(ADAM_WRITE_BACK, {"s": "DDR", "x": "HBM"})) == []

    def test_clean_drop(self) -> None:
        assert check(W2, plan(W2_DROP, {"w": "DDR", "x": "HBM"})) == []

    def test_recompute(self) -> None:
        assert check(RECOMP, plan(RECOMP_PLAN, {"x": "HBM"})) == []

    def test_host_compute(self) -> None:
        assert check(ADAM, plan(ADAM_HOST, {"s": "DDR", "x": "HBM"})) == []

    def test_ssd_via_ddr(self) -> None:
        assert check(W2, plan(W2_SSD, {"w": "SSD", "x": "HBM"}, hardware(ssd=True))) == []

    def test_persistent_tensor_in_two_tiers(self) -> None:
        events = [C("f", 0, 1), F("x", "HBM", 1), C("g", 1, 2), F("y", "HBM", 2), F("z", "HBM", 2)]
        assert check(CHAIN, plan(events, {"w": ["HBM", "DDR"], "x": "HBM"})) == []

    def test_plan_file_round_trip(self) -> None:
        p = plan(LONG_OFFLOAD, {"x": "HBM"})
        assert check(LONG, plan_from_dict(plan_to_dict(p))) == []

    def test_zero_time_op_freed_at_once(self) -> None:
        g = graph([("x", "input"), ("y", "activation")], [{"id": "f", "inputs": ["x"], "outputs": ["y"], "time_s": 0}])
        assert check(g, plan([C("f", 0, 0), F("y", "HBM", 0), F("x", "HBM", 0)], {"x": "HBM"})) == []

    def test_touching_transfers_on_one_link(self) -> None:
        g = graph([("a", "weight"), ("b", "weight"), ("y", "activation")],
                  [{"id": "f", "inputs": ["a", "b"], "outputs": ["y"]}])
        events = [X("a", "DDR", "HBM", 0), X("b", "DDR", "HBM", 0.25), C("f", 0.5, 1.5),
                  F("a", "HBM", 1.5), F("b", "HBM", 1.5), F("y", "HBM", 1.5)]
        assert check(g, plan(events, {"a": "DDR", "b": "DDR"})) == []


class TestRejectedPlans:
    def test_op_computed_twice(self) -> None:
        events = [*CHAIN_KEEP[:2], C("f", 1, 2), *CHAIN_KEEP[2:]]
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}), "op 'f' is computed more than once")

    def test_op_never_computed(self) -> None:
        events = [C("f", 0, 1), F("x", "HBM", 1), F("y", "HBM", 2)]
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}), "op 'g' is never computed")

    def test_unknown_op(self) -> None:
        assert_rejected(CHAIN, plan([*CHAIN_KEEP, C("nope", 2, 3)], {"w": "HBM", "x": "HBM"}), "unknown op 'nope'")

    def test_recompute_of_mutating_op(self) -> None:
        events = [*ADAM_WRITE_BACK[:4], R("adam", 1.001, 1.002), *ADAM_WRITE_BACK[4:]]
        assert_rejected(ADAM, plan(events, {"s": "DDR", "x": "HBM"}), "recomputes op 'adam', which is not recomputable")

    def test_compute_overlap(self) -> None:
        events = [C("f", 0, 1), F("x", "HBM", 1), C("g", 0.5, 1.5), F("y", "HBM", 2), F("z", "HBM", 2)]
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}), "overlaps", "compute stream of HBM")

    def test_host_compute_needs_host_ok(self) -> None:
        events = [C("f", 0, 1, "DDR"), F("x", "DDR", 1), C("g", 1, 2), F("y", "HBM", 2), F("z", "HBM", 2)]
        assert_rejected(CHAIN, plan(events, {"w": "DDR", "x": "DDR"}), "only ops with host_ok may run off")

    def test_tier_without_compute(self) -> None:
        events = [*ADAM_HOST[:4], C("adam", 1.25, 2.25, "SSD"), F("gr", "DDR", 2.25)]
        assert_rejected(ADAM, plan(events, {"s": "DDR", "x": "HBM"}, hardware(ssd=True)),
                        "runs on tier 'SSD', which has no compute")

    def test_op_too_short(self) -> None:
        events = [C("f", 0, 0.5), F("x", "HBM", 0.5), C("g", 1, 2), F("y", "HBM", 2), F("z", "HBM", 2)]
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}), "lasts 500 ms but op 'f' needs 1 s")

    def test_host_op_too_short_for_host_roofline(self) -> None:
        events = [*ADAM_HOST[:4], C("adam", 1.25, 1.5, "DDR"), F("gr", "DDR", 2.25)]
        assert_rejected(ADAM, plan(events, {"s": "DDR", "x": "HBM"}), "op 'adam' needs 1 s on DDR's compute")

    def test_transfer_too_short(self) -> None:
        events = [X("w", "DDR", "HBM", 0, 0.1), *W2_DROP[1:]]
        assert_rejected(W2, plan(events, {"w": "DDR", "x": "HBM"}), "takes 250 ms")

    def test_missing_input(self) -> None:
        events = W2_DROP[1:]  # no prefetch of w
        assert_rejected(W2, plan(events, {"w": "DDR", "x": "HBM"}), "reads 'w', but HBM holds no copy of it")

    def test_input_not_ready(self) -> None:
        events = [X("w", "DDR", "HBM", 0.1), *W2_DROP[1:]]
        assert_rejected(W2, plan(events, {"w": "DDR", "x": "HBM"}), "the copy in HBM is only ready at t=350 ms")

    def test_input_freed_during_op(self) -> None:
        events = [X("w", "DDR", "HBM", 0), C("f", 0.25, 1.25), F("w", "HBM", 1.0), *W2_DROP[3:]]
        assert_rejected(W2, plan(events, {"w": "DDR", "x": "HBM"}), "freed at t=1 s, before the op ends")

    def test_use_after_free(self) -> None:
        events = [C("f", 0, 1), F("x", "HBM", 1), F("y", "HBM", 1), C("g", 1, 2), F("z", "HBM", 2)]
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}), "reads 'y', but HBM holds no copy")

    def test_initial_missing(self) -> None:
        assert_rejected(CHAIN, plan(CHAIN_KEEP, {"w": "HBM"}), "tensor 'x' has no producer", "plan.initial")

    def test_produced_tensor_in_initial(self) -> None:
        assert_rejected(CHAIN, plan(CHAIN_KEEP, {"w": "HBM", "x": "HBM", "y": "HBM"}),
                        "produced by op 'f' and cannot exist at step start")

    def test_double_allocation(self) -> None:
        events = [*CHAIN_KEEP, X("w", "DDR", "HBM", 0)]
        assert_rejected(CHAIN, plan(events, {"w": ["HBM", "DDR"], "x": "HBM"}), "double allocation")

    def test_free_of_missing_copy(self) -> None:
        events = [*CHAIN_KEEP, F("y", "DDR", 2)]
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}), "frees a copy that does not exist")

    def test_double_free(self) -> None:
        events = [*CHAIN_KEEP, F("z", "HBM", 2)]
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}), "frees a copy that does not exist")

    def test_recompute_while_copy_exists(self) -> None:
        events = [C("f", 0, 1), C("g", 1, 2), R("f", 2, 3), F("x", "HBM", 3), C("h", 3, 4),
                  F("y", "HBM", 4), F("z", "HBM", 4), F("o", "HBM", 4)]
        assert_rejected(RECOMP, plan(events, {"x": "HBM"}), "recomputes a copy of 'y' in HBM while HBM already holds one")

    def test_missing_link(self) -> None:
        events = [X("w", "SSD", "HBM", 0), *W2_SSD[3:]]
        assert_rejected(W2, plan(events, {"w": "SSD", "x": "HBM"}, hardware(ssd=True)),
                        "uses link SSD->HBM, which does not exist")

    def test_link_overlap(self) -> None:
        g = graph([("a", "weight"), ("b", "weight"), ("y", "activation")],
                  [{"id": "f", "inputs": ["a", "b"], "outputs": ["y"]}])
        events = [X("a", "DDR", "HBM", 0), X("b", "DDR", "HBM", 0.125), C("f", 0.5, 1.5),
                  F("a", "HBM", 1.5), F("b", "HBM", 1.5), F("y", "HBM", 1.5)]
        assert_rejected(g, plan(events, {"a": "DDR", "b": "DDR"}), "overlaps", "on link DDR->HBM")

    def test_capacity(self) -> None:
        # w, x, y live together during f: 768 bytes in a 700-byte HBM.
        assert_rejected(CHAIN, plan(CHAIN_KEEP, {"w": "HBM", "x": "HBM"}, hardware(hbm=700)),
                        "tier HBM exceeds its capacity of 700 bytes", "68 bytes over")

    def test_capacity_frees_before_allocations(self) -> None:
        # x is freed at t=1 exactly when g allocates z: 768 bytes fit although 1024 would not.
        assert check(CHAIN, plan(CHAIN_KEEP, {"w": "HBM", "x": "HBM"}, hardware(hbm=768))) == []

    def test_stale_read_after_update_elsewhere(self) -> None:
        # s is updated on the DDR host; then an op reads the HBM copy made before the update.
        g = graph(
            [("s", "optimizer_state"), ("gr", "gradient"), ("x", "input"), ("o", "activation")],
            [
                {"id": "bwd", "inputs": ["x"], "outputs": ["gr"]},
                {"id": "adam", "inputs": ["s", "gr"], "outputs": [], "mutates": ["s"], "host_ok": True, "time_s": 1},
                {"id": "use", "inputs": ["s"], "outputs": ["o"]},
            ],
        )
        events = [
            X("s", "DDR", "HBM", 0), C("bwd", 0, 1), F("x", "HBM", 1), X("gr", "HBM", "DDR", 1), F("gr", "HBM", 1.25),
            C("adam", 1.25, 2.25, "DDR"), F("gr", "DDR", 2.25), C("use", 2.25, 3.25), F("s", "HBM", 3.25),
            F("o", "HBM", 3.25),
        ]
        assert_rejected(g, plan(events, {"s": "DDR", "x": "HBM"}),
                        "use' on HBM", "reads a stale copy of 's' in HBM", "updated in place by events[5]")

    def test_no_write_back(self) -> None:
        events = [X("s", "DDR", "HBM", 0), C("bwd", 0, 1), F("x", "HBM", 1), C("adam", 1, 1.001),
                  F("gr", "HBM", 1.001), F("s", "HBM", 1.001)]
        assert_rejected(ADAM, plan(events, {"s": "DDR", "x": "HBM"}),
                        "persistent tensor 's' ends the step with a stale copy in DDR", "written back")

    def test_write_back_from_stale_copy(self) -> None:
        # The write-back copies the HBM copy but the update happened on the host: HBM holds the old value.
        g = ADAM
        events = [
            X("s", "DDR", "HBM", 0), C("bwd", 0, 1), F("x", "HBM", 1), X("gr", "HBM", "DDR", 1), F("gr", "HBM", 1.25),
            C("adam", 1.25, 2.25, "DDR"), F("gr", "DDR", 2.25), F("s", "DDR", 2.25),
            X("s", "HBM", "DDR", 2.25), F("s", "HBM", 2.5),
        ]
        assert_rejected(g, plan(events, {"s": "DDR", "x": "HBM"}), "copies a stale value")

    def test_transfer_reads_while_updated(self) -> None:
        events = [X("s", "DDR", "HBM", 0), C("bwd", 0, 1), F("x", "HBM", 1), F("s", "DDR", 0.25),
                  C("adam", 1, 1.001), F("gr", "HBM", 1.001), X("s", "HBM", "DDR", 1.0005, 1.2505), F("s", "HBM", 1.2505)]
        assert_rejected(ADAM, plan(events, {"s": "DDR", "x": "HBM"}), "copies 's' while", "updates it in place")

    def test_non_persistent_left_at_end(self) -> None:
        events = CHAIN_KEEP[:-1]  # z never freed
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}),
                        "tensor 'z' still has a copy in HBM at the step end")

    def test_persistent_lost(self) -> None:
        events = [*W2_DROP, F("w", "DDR", 2.25)]
        assert_rejected(W2, plan(events, {"w": "DDR", "x": "HBM"}),
                        "persistent tensor 'w' ends the step without a copy in DDR")

    def test_extra_persistent_copy_left(self) -> None:
        events = [e for e in W2_DROP if e != F("w", "HBM", 1.25)]
        assert_rejected(W2, plan(events, {"w": "DDR", "x": "HBM"}), "persistent tensor 'w' still has a copy in HBM")

    def test_negative_time(self) -> None:
        events = [X("w", "DDR", "HBM", -0.5), *W2_DROP[1:]]
        assert_rejected(W2, plan(events, {"w": "DDR", "x": "HBM"}), "before the step starts at t=0")

    def test_end_before_start(self) -> None:
        events = [*CHAIN_KEEP, X("w", "HBM", "DDR", 1, 0.5)]
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}), "ends before it starts")

    def test_bad_hardware_section(self) -> None:
        hw = hardware()
        del hw["compute"]
        assert_rejected(CHAIN, plan(CHAIN_KEEP, {"w": "HBM", "x": "HBM"}, hw), "no 'compute' section")

    def test_metrics_mismatch(self) -> None:
        p = plan(CHAIN_KEEP, {"w": "HBM", "x": "HBM"})
        good = validate_plan(CHAIN, p, check_metrics=False).metrics
        wrong = {**good, "step_time_s": 3.0, "peak_bytes": {**good["peak_bytes"], "HBM": 1}}
        from dataclasses import replace

        report = validate_plan(CHAIN, replace(p, metrics=wrong))
        assert not report.ok
        assert any("plan.metrics.step_time_s is 3.0 but the replay gives 2.0" in e for e in report.errors)
        assert any("plan.metrics.peak_bytes['HBM'] is 1 but the replay gives 768" in e for e in report.errors)
        assert validate_plan(CHAIN, replace(p, metrics=dict(good))).ok

    def test_max_errors(self) -> None:
        events = [C("f", 0, 1)] * 20 + CHAIN_KEEP
        report = validate_plan(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}), check_metrics=False, max_errors=3)
        assert len(report.errors) == 3 and report.error_count > 3 and not report.ok


class TestReplayedMetrics:
    def test_offload_metrics(self) -> None:
        m = validate_plan(LONG, plan(LONG_OFFLOAD, {"x": "HBM"}), check_metrics=False).metrics
        assert m["step_time_s"] == 3.0
        assert m["compute_time_s"] == 3.0
        assert m["stall_time_s"] == 0.0
        assert m["transfer_bytes"] == {"HBM->DDR": KB, "DDR->HBM": KB}
        assert m["overlap_ratio"] == 1.0
        # y and x alive during g, plus u: 3 × 256; y's two HBM copies never coexist.
        assert m["peak_bytes"]["HBM"] == 3 * KB
        assert m["peak_bytes"]["DDR"] == KB

    def test_stall_and_overlap(self) -> None:
        m = validate_plan(W2, plan(W2_DROP, {"w": "DDR", "x": "HBM"}), check_metrics=False).metrics
        assert m["step_time_s"] == 2.25
        assert m["stall_time_s"] == 0.25
        assert m["overlap_ratio"] == 0.0

    def test_recompute_time(self) -> None:
        m = validate_plan(RECOMP, plan(RECOMP_PLAN, {"x": "HBM"}), check_metrics=False).metrics
        assert m["recompute_time_s"] == 1.0 and m["compute_time_s"] == 3.0 and m["stall_time_s"] == 0.0


# ------------------------------------------------------------------------------------- property-based


@st.composite
def sequential_case(draw: st.DrawFn) -> tuple[Graph, Plan]:
    """A random graph and its all-in-HBM sequential plan; frees of dead tensors delayed at random."""
    n_ops = draw(st.integers(1, 12))
    n_start = draw(st.integers(1, 4))
    tensors: list[dict[str, Any]] = []
    for k in range(n_start):
        kind = draw(st.sampled_from(["weight", "input", "optimizer_state"]))
        tensors.append({"id": f"s{k}", "bytes": draw(st.integers(0, 1000)), "kind": kind})
    ops: list[dict[str, Any]] = []
    available = [t["id"] for t in tensors]
    for i in range(n_ops):
        inputs = draw(st.lists(st.sampled_from(available), min_size=1, max_size=3, unique=True))
        n_out = draw(st.integers(0, 2))
        outputs = [f"a{i}_{j}" for j in range(n_out)]
        for out in outputs:
            tensors.append({"id": out, "bytes": draw(st.integers(0, 1000)), "kind": "activation"})
        persistent_inputs = [t for t in inputs if t.startswith("s") and tensors[int(t[1:])]["kind"] != "input"]
        mutates = draw(st.lists(st.sampled_from(persistent_inputs), max_size=1)) if persistent_inputs else []
        ops.append({"id": f"op{i}", "inputs": inputs, "outputs": outputs, "mutates": mutates,
                    "time_s": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))})
        available += outputs
    g = graph_from_dict({"format": "tierplan-graph/1", "name": "rand", "tensors": tensors, "ops": ops})
    t = 0.0
    start_end: list[tuple[float, float]] = []
    events: list[Any] = []
    for op in g.ops:
        end = t + op.time_s  # type: ignore[operator]
        events.append(ComputeEvent(op.id, t, end, "HBM"))
        start_end.append((t, end))
        t = end
    last_use: dict[str, int] = {}
    for i, op in enumerate(g.ops):
        for x in (*op.inputs, *op.outputs):
            last_use[x] = i
    for tensor in g.tensors:
        if tensor.persistent:
            continue
        use = last_use.get(tensor.id, -1)
        delay = draw(st.integers(0, 2))
        at = min(use + delay, len(g.ops) - 1)
        events.append(FreeEvent(tensor.id, "HBM", start_end[at][1] if at >= 0 else 0.0))
    events = draw(st.permutations(events))
    initial = {t.id: ("HBM",) for t in g.tensors if t.id not in g.producer}
    hw = hardware(hbm=10**6)
    return g, Plan("rand", "sequential", hw, initial, tuple(events))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequential_case())
def test_random_sequential_plans_are_valid(case: tuple[Graph, Plan]) -> None:
    from dataclasses import replace

    from core.metrics import compute_metrics, plan_hardware

    g, p = case
    report = validate_plan(g, p, check_metrics=False)
    assert report.ok, report.errors
    # metrics.py and the replay agree (validate_plan compares them when the plan carries metrics).
    metrics = compute_metrics(g, plan_hardware(p), p.events, p.initial)
    checked = validate_plan(g, replace(p, metrics=metrics))
    assert checked.ok, checked.errors


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequential_case(), st.data())
def test_random_mutations_are_rejected(case: tuple[Graph, Plan], data: st.DataObject) -> None:
    from dataclasses import replace

    g, p = case
    events = list(p.events)
    peak = validate_plan(g, p, check_metrics=False).metrics["peak_bytes"]["HBM"]
    choices = ["drop_free"] if any(isinstance(e, FreeEvent) for e in events) else []
    computes = [k for k, e in enumerate(events) if isinstance(e, ComputeEvent)]
    if peak > 0:
        choices.append("shrink")
    longs = [k for k in computes if events[k].end > events[k].start]
    if len(longs) > 1:
        choices.append("shift")
    choices.append("before_start")
    choices.append("duplicate")
    how = data.draw(st.sampled_from(choices))
    if how == "drop_free":
        frees = [k for k, e in enumerate(events) if isinstance(e, FreeEvent)]
        del events[data.draw(st.sampled_from(frees))]
        mutated = replace(p, events=tuple(events))
    elif how == "shrink":
        hw = hardware(hbm=peak - 1)
        mutated = replace(p, hardware=hw)
    elif how == "shift":
        # Move an op onto the start of another op that takes time: the compute stream overlaps.
        k, j = data.draw(st.permutations(longs))[:2]
        e = events[k]
        shift = events[j].start - e.start
        events[k] = e._replace(start=e.start + shift, end=e.end + shift)
        mutated = replace(p, events=tuple(events))
    elif how == "before_start":
        k = data.draw(st.integers(0, len(events) - 1))
        e = events[k]
        events[k] = e._replace(time=-1.0) if isinstance(e, FreeEvent) else e._replace(start=e.start - e.end - 1.0)
        mutated = replace(p, events=tuple(events))
    else:
        events.append(events[data.draw(st.sampled_from(computes))])
        mutated = replace(p, events=tuple(events))
    report = validate_plan(g, mutated, check_metrics=False)
    assert not report.ok, (how, mutated.events)


def test_report_lists_each_broken_rule_once_per_item() -> None:
    events = [C("f", 0, 1), C("g", 1, 2)]  # no frees at all
    errors = check(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}))
    assert sorted(errors) == sorted(set(errors))
    assert any("tensor 'x' still has a copy" in e for e in errors)
    assert any("tensor 'y' still has a copy" in e for e in errors)
    assert any("tensor 'z' still has a copy" in e for e in errors)


@pytest.mark.parametrize("n", [200, 2000])
def test_chain_of_prefetched_weights(n: int) -> None:
    """A long plan of the benchmark's shape: each op's weight prefetched one op ahead and dropped after use."""
    tensors = [{"id": "x", "bytes": 1000, "kind": "input"}]
    ops = []
    for i in range(n):
        tensors += [{"id": f"w{i}", "bytes": 1024, "kind": "weight"}, {"id": f"a{i}", "bytes": 1000, "kind": "activation"}]
        ops.append({"id": f"op{i}", "inputs": [f"w{i}", "x" if i == 0 else f"a{i - 1}"], "outputs": [f"a{i}"],
                    "time_s": 1.0})
    g = graph_from_dict({"format": "tierplan-graph/1", "name": "chain", "tensors": tensors, "ops": ops})
    events: list[Any] = []
    for i in range(n):
        events += [X(f"w{i}", "DDR", "HBM", i, i + 1.0), C(f"op{i}", i + 1.0, i + 2.0),
                   F(f"w{i}", "HBM", i + 2.0), F("x" if i == 0 else f"a{i - 1}", "HBM", i + 2.0)]
    events.append(F(f"a{n - 1}", "HBM", n + 1.0))
    initial = {"x": "HBM", **{f"w{i}": "DDR" for i in range(n)}}
    p = plan(events, initial, hardware(hbm=2 * 1024 + 2 * 1000, ddr=n * 1024))
    report = validate_plan(g, p, check_metrics=False)
    assert report.ok, report.errors
    assert report.metrics["peak_bytes"]["HBM"] == 2 * 1024 + 2 * 1000
    assert report.metrics["stall_time_s"] == 1.0
    # One byte less in HBM and the plan no longer fits.
    tight = plan(events, initial, hardware(hbm=2 * 1024 + 2 * 1000 - 1, ddr=n * 1024))
    assert any("exceeds its capacity" in e for e in check(g, tight))


def test_zero_length_op_reads_the_copy_freed_as_it_ends() -> None:
    """An op with start == end at t reads the copy that existed just before t; a copy-in of the same tensor
    may allocate at t (frees at t come first), and the op does not read that one."""
    from core.graph import graph_from_dict
    from core.hardware import hardware_from_dict, hardware_to_dict
    from core.plan import ComputeEvent, FreeEvent, Plan, TransferEvent
    from core.validate import validate_plan

    g = graph_from_dict({"format": "tierplan-graph/1", "name": "z", "tensors": [
        {"id": "w", "bytes": 100, "kind": "weight"}], "ops": [
        {"id": "use0", "inputs": ["w"], "outputs": [], "time_s": 0.0},
        {"id": "use1", "inputs": ["w"], "outputs": [], "time_s": 0.0}]})
    hw = hardware_from_dict({"format": "tierplan-hardware/1", "compute": {"peak_flops": 1e12},
                             "tiers": [{"name": "HBM", "capacity_bytes": 100}, {"name": "DDR", "capacity_bytes": 100}],
                             "links": [{"src": "HBM", "dst": "DDR", "bandwidth_Bps": 100},
                                       {"src": "DDR", "dst": "HBM", "bandwidth_Bps": 100}]})
    events = (
        ComputeEvent("use0", 0.0, 0.0, "HBM"),
        FreeEvent("w", "HBM", 0.0),
        TransferEvent("w", "DDR", "HBM", 0.0, 1.0),
        ComputeEvent("use1", 1.0, 1.0, "HBM"),
        FreeEvent("w", "HBM", 1.0),
        TransferEvent("w", "DDR", "HBM", 1.0, 2.0),
    )
    plan = Plan("z", "hand", hardware_to_dict(hw), {"w": ("HBM", "DDR")}, events)
    report = validate_plan(g, plan, check_metrics=False)
    assert report.ok, report.errors
    late = Plan("z", "hand", hardware_to_dict(hw), {"w": ("HBM", "DDR")},
                (ComputeEvent("use0", 0.0, 0.0, "HBM"), FreeEvent("w", "HBM", 0.0),
                 TransferEvent("w", "DDR", "HBM", 0.0, 1.0), ComputeEvent("use1", 0.5, 0.5, "HBM")))
    assert not validate_plan(g, late, check_metrics=False).ok  # reads the copy-in before it arrives


# ------------------------------------------------------------------------- versions read by recomputes

# f(w, x) -> y; g(y) -> z; upd(w, z) updates w in place; h(y, z) -> o. y is dropped after g and re-made.
RV = graph(
    [("w", "weight"), ("x", "input"), ("y", "activation"), ("z", "activation"), ("o", "activation")],
    [
        {"id": "f", "inputs": ["w", "x"], "outputs": ["y"]},
        {"id": "g", "inputs": ["y"], "outputs": ["z"]},
        {"id": "upd", "inputs": ["w", "z"], "outputs": [], "mutates": ["w"]},
        {"id": "h", "inputs": ["y", "z"], "outputs": ["o"]},
    ],
)
RV_TAIL = [C("h", 4, 5), F("y", "HBM", 5), F("z", "HBM", 5), F("o", "HBM", 5)]
# y is produced, updated in place by m, dropped, and must not be re-made by re-running f.
RU = graph(
    [("x", "input"), ("y", "activation"), ("u", "activation"), ("o", "activation")],
    [
        {"id": "f", "inputs": ["x"], "outputs": ["y"]},
        {"id": "m", "inputs": ["y"], "outputs": [], "mutates": ["y"]},
        {"id": "g", "inputs": ["x"], "outputs": ["u"]},
        {"id": "h", "inputs": ["y", "u"], "outputs": ["o"]},
    ],
)


class TestRecomputeVersions:
    def test_recompute_before_the_update_of_its_input_is_valid(self) -> None:
        events = [C("f", 0, 1), C("g", 1, 2), F("y", "HBM", 2), R("f", 2, 3), F("x", "HBM", 3), C("upd", 3, 4),
                  *RV_TAIL]
        assert check(RV, plan(events, {"w": "HBM", "x": "HBM"})) == []

    def test_recompute_after_the_update_of_its_input_is_rejected(self) -> None:
        # The re-run of f reads the updated w: y would differ from the value g saw (repro case 2045018076).
        events = [C("f", 0, 1), C("g", 1, 2), F("y", "HBM", 2), C("upd", 2, 3), R("f", 3, 4), F("x", "HBM", 4),
                  *RV_TAIL]
        assert_rejected(RV, plan(events, {"w": "HBM", "x": "HBM"}),
                        "recompute 'f' on HBM", "re-runs op 'f' on 'w' after events[3]", "first run read version 0",
                        "regenerates a different value")

    def test_recompute_of_an_updated_tensor_is_rejected(self) -> None:
        # y was updated in place by m; re-running f yields the old y (repro case 1489181873).
        events = [C("f", 0, 1), C("m", 1, 2), F("y", "HBM", 2), C("g", 2, 3), R("f", 3, 4), F("x", "HBM", 4),
                  C("h", 4, 5), F("y", "HBM", 5), F("u", "HBM", 5), F("o", "HBM", 5)]
        assert_rejected(RU, plan(events, {"x": "HBM"}),
                        "regenerates 'y', which events[1] (compute 'm'", "the update is lost",
                        "reads a stale copy of 'y'")

    def test_recompute_before_the_update_of_its_output_is_valid(self) -> None:
        g = graph(
            [("x", "input"), ("y", "activation"), ("u", "activation")],
            [{"id": "f", "inputs": ["x"], "outputs": ["y"]}, {"id": "g", "inputs": ["x"], "outputs": ["u"]},
             {"id": "m", "inputs": ["y", "u"], "outputs": [], "mutates": ["y"]}],
        )
        events = [C("f", 0, 1), F("y", "HBM", 1), C("g", 1, 2), R("f", 2, 3), F("x", "HBM", 3), C("m", 3, 4),
                  F("y", "HBM", 4), F("u", "HBM", 4)]
        assert check(g, plan(events, {"x": "HBM"})) == []


    def test_zero_time_recompute_and_update_at_one_instant_are_ordered_by_the_graph(self) -> None:
        # f and m take no time: re-running f at t=1 and updating y at t=1 is the graph's order, not a stale y.
        g = graph(
            [("x", "input"), ("y", "activation"), ("u", "activation"), ("o", "activation")],
            [{"id": "f", "inputs": ["x"], "outputs": ["y"], "time_s": 0.0}, {"id": "g", "inputs": ["x"], "outputs": ["u"]},
             {"id": "m", "inputs": ["y", "u"], "outputs": [], "mutates": ["y"], "time_s": 0.0},
             {"id": "h", "inputs": ["y"], "outputs": ["o"]}],
        )
        events = [C("f", 0, 0), F("y", "HBM", 0), C("g", 0, 1), R("f", 1, 1), F("x", "HBM", 1), C("m", 1, 1),
                  F("u", "HBM", 1), C("h", 1, 2), F("y", "HBM", 2), F("o", "HBM", 2)]
        assert check(g, plan(events, {"x": "HBM"})) == []
        # the same with an update that takes time and ends as the re-run starts: y was updated first
        late = graph(
            [("x", "input"), ("y", "activation"), ("u", "activation"), ("o", "activation")],
            [{"id": "f", "inputs": ["x"], "outputs": ["y"], "time_s": 0.0}, {"id": "g", "inputs": ["x"], "outputs": ["u"]},
             {"id": "m", "inputs": ["y", "u"], "outputs": [], "mutates": ["y"]},
             {"id": "h", "inputs": ["y"], "outputs": ["o"]}],
        )
        events = [C("f", 0, 0), C("g", 0, 1), C("m", 1, 2), F("y", "HBM", 2), F("u", "HBM", 2), R("f", 2, 2),
                  F("x", "HBM", 2), C("h", 2, 3), F("y", "HBM", 3), F("o", "HBM", 3)]
        assert_rejected(late, plan(events, {"x": "HBM"}), "regenerates 'y'", "reads a stale copy of 'y'")


@pytest.mark.parametrize("case, fragment", [
    ("1412640682", "allocates a copy of 'w8' in DDR while DDR already holds one"),
    ("69645449", "transfer 'w6' DDR->HBM"),
    ("1489181873", "regenerates 'a0'"),
    ("2045018076", "re-runs op 'op137' on 'w11' after"),
])
def test_repro_plans_are_rejected(case: str, fragment: str) -> None:
    """Plans the planner used to write for the repro cases (tests/data/repro/README.md)."""
    import gzip
    from pathlib import Path

    from core.graph import load_graph
    from core.plan import load_plan

    here = Path(__file__).parent / "data" / "repro"
    g = load_graph(here / f"graph-{case}.json")
    p = load_plan(gzip.decompress((here / f"bad-plan-{case}.json.gz").read_bytes()))
    report = validate_plan(g, p)
    assert not report.ok
    assert any(fragment in e for e in report.errors), report.errors


# --------------------------------------------------------------------------------- host durations


class TestHostDurations:
    def test_fixed_time_is_scaled_by_the_roofline_ratio(self) -> None:
        from core.graph import Op
        from core.hardware import Compute
        from core.validate import host_time_scale, modelled_time_s

        device = Compute(1e14, 0.5, 1e12, 0.8)
        host = Compute(1e12, 0.6, 1e11, 0.8)
        op = Op("adam", (), (), time_s=1e-3)
        assert modelled_time_s(op, device, device) == 1e-3
        # flops 5e13 / 6e11 = 83.3; memory 8e11 / 8e10 = 10 -> the larger one
        assert host_time_scale(device, host) == pytest.approx(5e13 / 6e11)
        assert modelled_time_s(op, host, device) == pytest.approx(1e-3 * 5e13 / 6e11)
        # a host with fast flops but slow memory is limited by memory
        slow_mem = Compute(1e14, 0.5, 1e10, 0.8)
        assert host_time_scale(device, slow_mem) == pytest.approx(100.0)
        # without a memory roofline on either side only flops count
        assert host_time_scale(Compute(1e14, 0.5), Compute(1e12, 0.5, 1e9)) == pytest.approx(100.0)
        # the factor never falls below the ratio of an op's own rooflines (a memory-bound update: 10x)
        adam = Op("adam", (), (), time_s=1e-3, flops=1e6, bytes_accessed=1e9)
        own = max(1e6 / 6e11, 1e9 / 8e10) / max(1e6 / 5e13, 1e9 / 8e11)
        assert own == pytest.approx(10.0) and modelled_time_s(adam, host, device) >= 1e-3 * own
        # without time_s, the compute's own roofline, whatever the device
        work = Op("mm", (), (), flops=1e12, bytes_accessed=1e9)
        assert modelled_time_s(work, host, device) == pytest.approx(max(1e12 / 6e11, 1e9 / 8e10))

    def test_fixed_time_op_on_the_host_must_last_the_scaled_time(self) -> None:
        # HBM's compute does 1e6 FLOP/s, DDR's 1e3: a 1 s op takes 1000 s on DDR.
        g = graph([("s", "optimizer_state"), ("gr", "gradient"), ("x", "input")], [
            {"id": "bwd", "inputs": ["x"], "outputs": ["gr"]},
            {"id": "adam", "inputs": ["s", "gr"], "outputs": [], "mutates": ["s"], "host_ok": True, "time_s": 1.0}])
        fast = [C("bwd", 0, 1), F("x", "HBM", 1), X("gr", "HBM", "DDR", 1), F("gr", "HBM", 1.25),
                C("adam", 1.25, 2.25, "DDR"), F("gr", "DDR", 2.25)]
        assert_rejected(g, plan(fast, {"s": "DDR", "x": "HBM"}), "lasts 1 s but op 'adam' needs", "on DDR's compute")
        slow = [*fast[:4], C("adam", 1.25, 1001.25, "DDR"), F("gr", "DDR", 1001.25)]
        assert check(g, plan(slow, {"s": "DDR", "x": "HBM"})) == []


# ---------------------------------------------------------------------------------- execution order

# f and g are independent; h reads both.
INDEP = LONG
INDEP_SWAPPED = [C("g", 0, 1), C("f", 1, 2), F("x", "HBM", 2), C("h", 2, 3), F("y", "HBM", 3), F("u", "HBM", 3),
                 F("v", "HBM", 3)]
# r1 reads w, upd updates it (1 ms on HBM, 1 s on the DDR host), r2 reads the new w.
UPD = graph(
    [("w", "weight"), ("a", "activation"), ("b", "activation")],
    [
        {"id": "r1", "inputs": ["w"], "outputs": ["a"]},
        {"id": "upd", "inputs": ["w"], "outputs": [], "mutates": ["w"], "host_ok": True, "flops": 1000.0},
        {"id": "r2", "inputs": ["w"], "outputs": ["b"]},
    ],
)
UPD_EVENTS = [C("r1", 0, 1), C("upd", 1, 1.001), C("r2", 1.001, 2.001), F("a", "HBM", 2.001), F("b", "HBM", 2.001)]


def ordered(events: list[Any], initial: dict[str, Any], order: tuple[str, ...] | None,
            hw: dict[str, Any] | None = None) -> Plan:
    from dataclasses import replace

    return replace(plan(events, initial, hw), order=order)


class TestOrder:
    def test_legal_reordering_is_accepted(self) -> None:
        assert check(INDEP, ordered(INDEP_SWAPPED, {"x": "HBM"}, ("g", "f", "h"))) == []

    def test_order_round_trips_through_the_plan_file(self) -> None:
        p = ordered(INDEP_SWAPPED, {"x": "HBM"}, ("g", "f", "h"))
        back = plan_from_dict(plan_to_dict(p))
        assert back.order == ("g", "f", "h")
        assert check(INDEP, back) == []
        assert "order" not in plan_to_dict(plan(CHAIN_KEEP, {"w": "HBM", "x": "HBM"}))

    def test_events_must_follow_the_graph_order_without_an_order(self) -> None:
        assert_rejected(INDEP, plan(INDEP_SWAPPED, {"x": "HBM"}),
                        "(compute 'g' on HBM", "on the compute stream of HBM", "the graph order puts op 'f' first")

    def test_events_must_follow_the_given_order(self) -> None:
        events = [C("f", 0, 1), C("g", 1, 2), F("x", "HBM", 2), C("h", 2, 3), F("y", "HBM", 3), F("u", "HBM", 3),
                  F("v", "HBM", 3)]
        assert check(INDEP, plan(events, {"x": "HBM"})) == []
        assert_rejected(INDEP, ordered(events, {"x": "HBM"}, ("g", "f", "h")), "plan.order puts op 'g' first")

    def test_reader_before_its_producer(self) -> None:
        assert_rejected(INDEP, ordered(INDEP_SWAPPED, {"x": "HBM"}, ("h", "g", "f")),
                        "plan.order puts op 'h' (at 0) before op 'f' (at 2), which produces its input 'y'")

    def test_reader_moved_after_an_update(self) -> None:
        assert_rejected(UPD, ordered(UPD_EVENTS, {"w": "HBM"}, ("upd", "r1", "r2")),
                        "plan.order moves op 'upd', which updates 'w' in place, before op 'r1'",
                        "would read version 1 of 'w' instead of version 0")

    def test_reader_moved_before_an_update(self) -> None:
        assert_rejected(UPD, ordered(UPD_EVENTS, {"w": "HBM"}, ("r1", "r2", "upd")),
                        "moves op 'upd', which updates 'w' in place, after op 'r2'",
                        "would read version 0 of 'w' instead of version 1")

    def test_updates_keep_their_relative_order(self) -> None:
        g = graph([("w", "weight")], [
            {"id": "u1", "inputs": ["w"], "outputs": [], "mutates": ["w"]},
            {"id": "u2", "inputs": ["w"], "outputs": [], "mutates": ["w"]}])
        events = [C("u2", 0, 1), C("u1", 1, 2)]
        assert check(g, plan([C("u1", 0, 1), C("u2", 1, 2)], {"w": "HBM"})) == []
        assert_rejected(g, ordered(events, {"w": "HBM"}, ("u2", "u1")), "after update 'u2'")

    def test_unknown_duplicate_and_missing_ops(self) -> None:
        assert_rejected(INDEP, ordered(INDEP_SWAPPED, {"x": "HBM"}, ("g", "f", "h", "nope")),
                        "plan.order[3] names unknown op 'nope'")
        assert_rejected(INDEP, ordered(INDEP_SWAPPED, {"x": "HBM"}, ("g", "f", "g")),
                        "plan.order lists op 'g' twice (at 0 and 2)", "plan.order does not list op 'h'")

    def test_reads_see_the_version_the_order_implies_across_streams(self) -> None:
        # upd runs on the DDR host first and the new w is brought up: r1 reads version 1, the graph says 0.
        events = [C("upd", 0, 1, "DDR"), X("w", "DDR", "HBM", 1), C("r1", 1.25, 2.25), C("r2", 2.25, 3.25),
                  F("w", "HBM", 3.25), F("a", "HBM", 3.25), F("b", "HBM", 3.25)]
        assert_rejected(UPD, plan(events, {"w": "DDR"}),
                        "(compute 'r1' on HBM", "reads 'w' after events[0]", "in the graph order op 'r1' reads version 0")

    def test_update_on_the_host_in_order_is_valid(self) -> None:
        events = [X("w", "DDR", "HBM", 0), C("r1", 0.25, 1.25), F("w", "HBM", 1.25), C("upd", 1.25, 2.25, "DDR"),
                  X("w", "DDR", "HBM", 2.25), C("r2", 2.5, 3.5), F("w", "HBM", 3.5), F("a", "HBM", 3.5),
                  F("b", "HBM", 3.5)]
        assert check(UPD, plan(events, {"w": "DDR"})) == []

    def test_recompute_reads_the_version_of_the_original_position(self) -> None:
        # With the legal order (f, g, upd, h) the re-run of f must come before upd, as in the graph order.
        events = [C("f", 0, 1), C("g", 1, 2), F("y", "HBM", 2), C("upd", 2, 3), R("f", 3, 4), F("x", "HBM", 4),
                  *RV_TAIL]
        assert_rejected(RV, ordered(events, {"w": "HBM", "x": "HBM"}, ("f", "g", "upd", "h")),
                        "re-runs op 'f' on 'w' after")


# ------------------------------------------------------------------------------------ transfers


class TestTransferRules:
    def test_copy_back_into_a_tier_that_still_holds_the_initial_copy(self) -> None:
        # Repro 1412640682: the weight starts in DDR, is prefetched, then copied HBM->DDR over its initial copy.
        events = [X("w", "DDR", "HBM", 0), C("f", 0.25, 1.25), X("w", "HBM", "DDR", 1.25), F("w", "HBM", 1.5),
                  F("x", "HBM", 1.25), C("g", 1.5, 2.5), F("y", "HBM", 2.5), F("z", "HBM", 2.5)]
        assert_rejected(W2, plan(events, {"w": "DDR", "x": "HBM"}),
                        "allocates a copy of 'w' in DDR while DDR already holds one", "double allocation")

    def test_copy_with_no_source(self) -> None:
        events = [X("w", "DDR", "HBM", 0), *W2_DROP[1:]]
        assert_rejected(W2, plan(events, {"w": "SSD", "x": "HBM"}, hardware(ssd=True)),
                        "has no source: DDR holds no copy of 'w'")

    def test_second_hop_before_the_first_arrives(self) -> None:
        events = [X("w", "SSD", "DDR", 0), X("w", "DDR", "HBM", 0.125), F("w", "DDR", 0.5), C("f", 0.5, 1.5),
                  F("w", "HBM", 1.5), F("x", "HBM", 1.5), C("g", 1.5, 2.5), F("y", "HBM", 2.5), F("z", "HBM", 2.5)]
        assert_rejected(W2, plan(events, {"w": "SSD", "x": "HBM"}, hardware(ssd=True)),
                        "transfer 'w' DDR->HBM", "the copy in DDR is only ready at t=250 ms")

    def test_intermediate_copy_freed_during_the_second_hop(self) -> None:
        events = [*W2_SSD[:2], F("w", "DDR", 0.375), *W2_SSD[3:]]
        assert_rejected(W2, plan(events, {"w": "SSD", "x": "HBM"}, hardware(ssd=True)),
                        "its copy in DDR is freed at t=375 ms, before the transfer ends")

    def test_write_back_races_an_offload_on_one_link(self) -> None:
        # s is written back HBM->DDR while y is offloaded over the same link.
        g = graph([("s", "optimizer_state"), ("x", "input"), ("y", "activation")], [
            {"id": "f", "inputs": ["x"], "outputs": ["y"]},
            {"id": "adam", "inputs": ["s"], "outputs": [], "mutates": ["s"], "flops": 1000.0},
            {"id": "h", "inputs": ["y"], "outputs": []}])
        events = [X("s", "DDR", "HBM", 0), C("f", 0, 1), F("x", "HBM", 1), X("y", "HBM", "DDR", 1),
                  F("y", "HBM", 1.25), C("adam", 1, 1.001), F("s", "DDR", 1.001), X("s", "HBM", "DDR", 1.125, 1.375),
                  F("s", "HBM", 1.375), X("y", "DDR", "HBM", 1.375), F("y", "DDR", 1.625), C("h", 1.625, 2.625),
                  F("y", "HBM", 2.625)]
        assert_rejected(g, plan(events, {"s": "DDR", "x": "HBM"}), "overlaps", "on link HBM->DDR")
        fixed = [*events[:7], X("s", "HBM", "DDR", 1.25, 1.5), F("s", "HBM", 1.5), X("y", "DDR", "HBM", 1.5),
                 F("y", "DDR", 1.75), C("h", 1.75, 2.75), F("y", "HBM", 2.75)]
        assert check(g, plan(fixed, {"s": "DDR", "x": "HBM"})) == []

    def test_stale_copy_moved_down_and_read_back(self) -> None:
        # s is copied to DDR, updated in HBM, dropped there, and the stale DDR copy comes back up.
        g = graph([("s", "optimizer_state"), ("x", "input"), ("o", "activation")], [
            {"id": "adam", "inputs": ["s"], "outputs": [], "mutates": ["s"], "flops": 1000.0},
            {"id": "f", "inputs": ["x"], "outputs": []},
            {"id": "use", "inputs": ["s"], "outputs": ["o"]}])
        events = [X("s", "HBM", "DDR", 0), C("adam", 0.25, 0.251), F("s", "HBM", 0.251), C("f", 0.251, 1.251),
                  F("x", "HBM", 1.251), X("s", "DDR", "HBM", 1.251), F("s", "DDR", 1.501), C("use", 1.501, 2.501),
                  F("o", "HBM", 2.501)]
        assert_rejected(g, plan(events, {"s": "HBM", "x": "HBM"}), "copies a stale value", "is stale at its start")

    def test_offload_overflows_the_lower_tier(self) -> None:
        assert_rejected(LONG, plan(LONG_OFFLOAD, {"x": "HBM"}, hardware(ddr=100)), "tier DDR exceeds its capacity")

    def test_persistent_tensor_only_in_a_lower_tier_at_the_end(self) -> None:
        # w starts in HBM, is moved to DDR and never brought back: the next step would find it in the wrong tier.
        events = [*CHAIN_KEEP[:-1], X("w", "HBM", "DDR", 2), F("w", "HBM", 2.25), F("w", "DDR", 2.25),
                  F("z", "HBM", 2)]
        events = [e for e in events if not (isinstance(e, FreeEvent) and e == F("w", "DDR", 2.25))]
        assert_rejected(CHAIN, plan(events, {"w": "HBM", "x": "HBM"}),
                        "persistent tensor 'w' ends the step without a copy in HBM",
                        "persistent tensor 'w' still has a copy in DDR")


# ------------------------------------------------------------------- mutations of real planned plans


def _planned_cases() -> list[tuple[Graph, Plan]]:
    """Plans the planner makes on the toy training graph: offloads, write-backs, SSD via DDR, recompute."""
    from core.liveness import analyze
    from core.planner import make_plan
    from tests.builders import hierarchy, toy_training

    cases = []
    for layers, frac, ddr, link, policy in [
        (4, 0.6, "100 GiB", "200 GB/s", "tierplan"), (4, 0.45, "100 GiB", "10 GB/s", "tierplan"),
        (6, 0.5, "20 GiB", "100 GB/s", "tierplan"), (6, 0.3, "16 GiB", "100 GB/s", "mindspore-gsm"),
        (4, 0.5, "100 GiB", "20 GB/s", "capuchin"),
    ]:
        g = toy_training(layers)
        hbm = int(analyze(g).no_offload_peak_bytes * frac)
        cases.append((g, make_plan(g, hierarchy(hbm, link, ddr=ddr), policy=policy)))
    return cases


_PLANNED: list[tuple[Graph, Plan]] = []


def planned_cases() -> list[tuple[Graph, Plan]]:
    if not _PLANNED:
        _PLANNED.extend(_planned_cases())
    return _PLANNED


def test_planned_cases_are_valid_and_move_data() -> None:
    links: set[str] = set()
    for g, p in planned_cases():
        report = validate_plan(g, p)
        assert report.ok, report.errors[:3]
        links |= {f"{e.src}->{e.dst}" for e in p.events if isinstance(e, TransferEvent)}
    assert {"HBM->DDR", "DDR->HBM", "DDR->SSD", "SSD->DDR"} <= links  # write-backs, prefetches, multi-hop


MUTATIONS = ["drop_transfer", "shorten_transfer", "overlap_on_link", "free_source_early", "drop_free_before_copy",
             "delay_past_reader", "drop_write_back"]


def _mutations(g: Graph, p: Plan, how: str) -> list[Plan]:
    """Every perturbation of one kind of the plan's transfer events; each one must break a rule."""
    from dataclasses import replace

    events = p.events
    hw = {link["src"] + "->" + link["dst"]: link for link in p.hardware["links"]}
    size = {t.id: t.bytes for t in g.tensors}

    def takes(e: TransferEvent) -> float:
        link = hw[f"{e.src}->{e.dst}"]
        return float(link.get("latency_s", 0.0)) + size[e.tensor] / float(link["bandwidth_Bps"])

    def frees_of(tensor: str, tier: str) -> list[int]:
        return [j for j, f in enumerate(events) if isinstance(f, FreeEvent) and f.tensor == tensor and f.tier == tier]

    def edit(changes: dict[int, Any]) -> Plan:
        """Replace (or, for None, delete) events by index."""
        out = [changes.get(k, e) for k, e in enumerate(events)]
        return replace(p, events=tuple(e for k, e in enumerate(out) if not (k in changes and changes[k] is None)))

    moves = [k for k, e in enumerate(events) if isinstance(e, TransferEvent) and takes(e) > 1e-9]
    out: list[Plan] = []
    for k in moves:
        e = events[k]
        if how == "drop_transfer":
            out.append(edit({k: None}))
        elif how == "shorten_transfer":
            out.append(edit({k: e._replace(end=e.start + takes(e) / 2)}))
        elif how == "overlap_on_link":
            same = [b for b in moves if b != k and (events[b].src, events[b].dst) == (e.src, e.dst)]
            for b in same[:3]:
                shift = events[b].start - e.start
                out.append(edit({k: e._replace(start=e.start + shift, end=e.end + shift)}))
        elif how == "free_source_early":
            later = [j for j in frees_of(e.tensor, e.src) if events[j].time >= e.end]
            if later:
                j = min(later, key=lambda j: events[j].time)
                out.append(edit({j: events[j]._replace(time=(e.start + e.end) / 2)}))
        elif how == "drop_free_before_copy":  # keep the tier's previous copy: a double allocation
            earlier = [j for j in frees_of(e.tensor, e.dst) if events[j].time <= e.start]
            if earlier:
                out.append(edit({max(earlier, key=lambda j: events[j].time): None}))
        elif how == "delay_past_reader":  # start the copy-in when the first op that needs it starts
            readers = [j for j, c in enumerate(events) if isinstance(c, ComputeEvent) and c.tier == e.dst
                       and c.start >= e.end and e.tensor in g.ops[g.op_index[c.op]].inputs]
            if readers:
                at = events[min(readers, key=lambda j: events[j].start)].start
                out.append(edit({k: e._replace(start=at, end=at + (e.end - e.start))}))
        elif how == "drop_write_back":  # the update never reaches the home tier
            home = p.initial.get(e.tensor, ())
            updates = [c.end for c in events if isinstance(c, ComputeEvent) and e.tensor in g.ops[g.op_index[c.op]].mutates]
            if e.dst in home and updates and e.start >= max(updates):
                stale = [j for j in frees_of(e.tensor, e.dst) if events[j].time <= e.start]
                changes: dict[int, Any] = {k: None}
                if stale:
                    changes[max(stale, key=lambda j: events[j].time)] = None
                out.append(edit(changes))
    return out


@pytest.mark.parametrize("how", MUTATIONS)
def test_mutated_transfers_of_planned_plans_are_rejected(how: str) -> None:
    """Every perturbation of every transfer of every planned case (write-backs, prefetches, SSD hops)."""
    count = 0
    for g, p in planned_cases():
        for mutated in _mutations(g, p, how):
            report = validate_plan(g, mutated, check_metrics=False)
            assert not report.ok, (how, g.name, p.policy)
            count += 1
    assert count >= 5, f"{how}: only {count} targets in the planned cases"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                 HealthCheck.filter_too_much])
@given(st.data())
def test_mutated_transfers_of_random_planned_plans_are_rejected(data: st.DataObject) -> None:
    """The same perturbations on plans the planner makes for the hard-case generators (tests/strategies.py)."""
    from core.errors import InfeasibleError
    from core.planner import make_plan
    from tests.strategies import graphs, hierarchies

    g = data.draw(graphs(max_ops=16), label="graph")
    hw = data.draw(hierarchies(g), label="hardware")
    try:
        p = make_plan(g, hw)
    except InfeasibleError:
        return
    assert validate_plan(g, p).ok
    how = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    mutated = _mutations(g, p, how)
    if not mutated:
        return
    pick = mutated[data.draw(st.integers(0, len(mutated) - 1), label="which")]
    assert not validate_plan(g, pick, check_metrics=False).ok, how
