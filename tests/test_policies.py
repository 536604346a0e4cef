"""Baseline policies: each rule's own behaviour, and every plan they emit replayed by the validator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InfeasibleError
from core.graph import Graph, graph_from_dict
from core.hardware import Hardware, with_capacity
from core.liveness import analyze
from core.plan import Plan
from core.planner import make_plan
from core.policies import get_policy, list_policies, resolve_params
from core.policies.book import SpanBook
from core.policies.hyperoffload import span_distance
from core.policies.mindspore_gsm import gsm_weight
from core.policies.vdnn import vdnn_candidates
from core.validate import validate_plan
from tests import builders
from tests.builders import assert_valid
from tests.infeasible import check_infeasible
from tests.strategies import graphs, hierarchies

GiB = 2**30
BASELINES = ("mindspore-gsm", "hyperoffload-distance", "vdnn", "zero-offload", "capuchin")


def training(layers: int = 4, *, act: int = 2) -> Graph:
    """Forward (matmul layers), loss, backward reading stashed activations, per-layer Adam; phases tagged."""
    tensors: list[dict[str, Any]] = [{"id": "x", "bytes": GiB, "kind": "input"},
                                     {"id": "loss", "bytes": 1024, "kind": "activation"}]
    ops: list[dict[str, Any]] = []
    prev = "x"
    for k in range(layers):
        tensors += [
            {"id": f"w{k}", "bytes": GiB, "kind": "weight"},
            {"id": f"a{k}", "bytes": act * GiB, "kind": "activation"},
            {"id": f"h{k}", "bytes": GiB, "kind": "activation"},
            {"id": f"o{k}", "bytes": 2 * GiB, "kind": "optimizer_state"},
            {"id": f"g{k}", "bytes": GiB, "kind": "gradient"},
            {"id": f"d{k}", "bytes": GiB, "kind": "activation"},
        ]
        ops.append({"id": f"mm{k}", "inputs": [prev, f"w{k}"], "outputs": [f"h{k}"], "time_s": 0.01,
                    "category": "matmul", "phase": "forward"})
        ops.append({"id": f"act{k}", "inputs": [f"h{k}"], "outputs": [f"a{k}"], "time_s": 0.002,
                    "category": "elementwise", "phase": "forward"})
        prev = f"a{k}"
    ops.append({"id": "loss", "inputs": [prev], "outputs": ["loss"], "time_s": 0.001, "category": "loss",
                "phase": "forward"})
    grad = "loss"
    for k in reversed(range(layers)):
        saved = f"a{k - 1}" if k else "x"
        ops.append({"id": f"bwd{k}", "inputs": [grad, saved, f"h{k}", f"w{k}"], "outputs": [f"g{k}", f"d{k}"],
                    "time_s": 0.02, "category": "matmul", "phase": "backward"})
        grad = f"d{k}"
    for k in range(layers):
        ops.append({"id": f"adam{k}", "inputs": [f"g{k}", f"w{k}", f"o{k}"], "mutates": [f"w{k}", f"o{k}"],
                    "time_s": 0.002, "category": "optimizer", "phase": "optimizer", "host_ok": True})
    return graph_from_dict({"format": "tierplan-graph/1", "name": "train", "tensors": tensors, "ops": ops})


def decode(layers: int = 6) -> Graph:
    """Inference: each layer reads a weight and appends to its KV cache; no backward, no optimizer."""
    tensors: list[dict[str, Any]] = [{"id": "tok", "bytes": 2**20, "kind": "input"}]
    ops: list[dict[str, Any]] = []
    prev = "tok"
    for k in range(layers):
        tensors += [{"id": f"w{k}", "bytes": 2 * GiB, "kind": "weight"},
                    {"id": f"kv{k}", "bytes": GiB, "kind": "kv_cache"},
                    {"id": f"y{k}", "bytes": 2**20, "kind": "activation"}]
        ops.append({"id": f"layer{k}", "inputs": [prev, f"w{k}", f"kv{k}"], "outputs": [f"y{k}"],
                    "mutates": [f"kv{k}"], "time_s": 0.005, "category": "attention", "phase": "decode"})
        prev = f"y{k}"
    return graph_from_dict({"format": "tierplan-graph/1", "name": "decode", "tensors": tensors, "ops": ops})


def hierarchy(hbm: float, *, link: str = "100 GB/s", ddr: str = "256 GiB", ssd: bool = True) -> Hardware:
    return builders.hierarchy(int(hbm), link, ddr=ddr, ssd=ssd, ssd_capacity="4 TiB")



def plan_or_infeasible(graph: Graph, hw: Hardware, policy: str, params: dict[str, Any] | None = None) -> Plan | None:
    try:
        plan = make_plan(graph, hw, policy=policy, params=params)
    except InfeasibleError as exc:
        if exc.reason == "policy" and exc.op is not None:
            assert exc.op in graph.op_index and exc.tier == hw.compute_tier
            assert exc.have_bytes is not None and exc.have_bytes <= hw.capacity(hw.compute_tier)
        check_infeasible(graph, hw, exc, policy, params)  # the reason must hold, not just be worded
        return None
    assert_valid(graph, plan)
    return plan


def peak(graph: Graph) -> int:
    return analyze(graph).no_offload_peak_bytes


class TestRegistry:
    def test_all_baselines_registered_with_source_and_params(self) -> None:
        keys = [p.key for p in list_policies()]
        for key in BASELINES:
            assert key in keys
            info = get_policy(key)
            assert info.source and info.description and info.params
            for spec in info.params:
                assert spec.min <= spec.default <= spec.max, spec
            assert set(resolve_params(info, None)) == {p.key for p in info.params}

    def test_span_book_starts_at_required_plus_covering_spans(self) -> None:
        g = training()
        live = analyze(g)
        book = SpanBook(g, hierarchy(64 * GiB), live, policy="test")
        covered = np.array(live.required_bytes, dtype=np.int64)
        for span in live.spans:
            for lo, hi in book.freed(span):
                covered[lo:hi] += span.bytes
        assert np.array_equal(covered, book.hbm)


class TestEveryPolicyOnHandMadeGraphs:
    @pytest.mark.parametrize("policy", BASELINES)
    @pytest.mark.parametrize("fraction", [1.0, 0.8, 0.6, 0.45, 0.3])
    def test_training_valid_or_infeasible(self, policy: str, fraction: float) -> None:
        g = training()
        plan_or_infeasible(g, hierarchy(peak(g) * fraction), policy)

    @pytest.mark.parametrize("policy", BASELINES)
    @pytest.mark.parametrize("fraction", [1.0, 0.7, 0.4])
    def test_decode_valid_or_infeasible(self, policy: str, fraction: float) -> None:
        g = decode()
        plan_or_infeasible(g, hierarchy(peak(g) * fraction, ssd=False), policy)

    @pytest.mark.parametrize("policy", ["mindspore-gsm", "hyperoffload-distance", "capuchin"])
    def test_general_policies_fit_where_memory_is_short(self, policy: str) -> None:
        g = training()
        params = {"select_distance": 2} if policy == "hyperoffload-distance" else None
        plan = plan_or_infeasible(g, hierarchy(peak(g) * 0.6), policy, params)
        assert plan is not None
        assert sum(plan.metrics["transfer_bytes"].values()) > 0

    @pytest.mark.parametrize("policy", BASELINES)
    def test_infeasible_message_names_the_policy(self, policy: str) -> None:
        g = training()
        need = int(analyze(g).required_bytes.max())
        hw = hierarchy(need, ddr="6 GiB", ssd=False)  # every op fits alone, the model state barely below
        with pytest.raises(InfeasibleError, match=policy):
            make_plan(g, hw, policy=policy, params={"select_distance": 1} if "distance" in policy else None)

    @pytest.mark.parametrize("policy", BASELINES)
    def test_decisions_explained(self, policy: str) -> None:
        g = training()
        params = {"offload_params": 1} if policy == "zero-offload" else None
        plan = plan_or_infeasible(g, hierarchy(peak(g) * 0.9), policy, params)
        assert plan is not None
        assert len(plan.decisions) == len(analyze(g).spans)
        for d in plan.decisions:
            assert d.reason and "bytes_freed" in d.terms and "idle_s" in d.terms


class TestGSM:
    def test_lightest_spans_kept_first(self) -> None:
        """Replay the rule: every kept span fitted, every offloaded one did not, in (weight, id) order."""
        g = training()
        hw = hierarchy(peak(g) * 0.55)
        live = analyze(g)
        plan = make_plan(g, hw, policy="mindspore-gsm")
        assert_valid(g, plan)
        moved = {(d.tensor, d.start_op, d.end_op) for d in plan.decisions if d.action != "keep"}
        assert moved
        mem = np.array(live.required_bytes, dtype=np.int64)
        book = SpanBook(g, hw, live, policy="check")
        cap = hw.capacity("HBM")
        for span in sorted(live.spans, key=lambda s: (gsm_weight(live, s), s.id)):
            fits = all(mem[lo:hi].max(initial=0) + span.bytes <= cap for lo, hi in book.freed(span))
            assert fits == ((span.tensor, span.start_op, span.end_op) not in moved), span
            if fits:
                for lo, hi in book.freed(span):
                    mem[lo:hi] += span.bytes

    def test_lighter_of_two_competing_spans_stays(self) -> None:
        # two 1 GiB tensors idle over the same op: the short-lived one (lighter) stays in HBM
        g = graph_from_dict({"format": "tierplan-graph/1", "name": "two", "tensors": [
            {"id": "long", "bytes": GiB, "kind": "activation"}, {"id": "short", "bytes": GiB, "kind": "activation"},
            {"id": "y", "bytes": GiB, "kind": "activation"}, {"id": "z", "bytes": 1, "kind": "activation"}],
            "ops": [{"id": "p_long", "inputs": [], "outputs": ["long"], "time_s": 0.01},
                    {"id": "p_short", "inputs": [], "outputs": ["short"], "time_s": 0.01},
                    {"id": "mid", "inputs": [], "outputs": ["y"], "time_s": 0.01},
                    {"id": "use_short", "inputs": ["short", "y"], "outputs": [], "time_s": 0.01},
                    {"id": "use_long", "inputs": ["long"], "outputs": ["z"], "time_s": 0.01}]})
        plan = make_plan(g, hierarchy(2.5 * GiB, ssd=False), policy="mindspore-gsm")
        assert_valid(g, plan)
        actions = {d.tensor: d.action for d in plan.decisions}
        assert actions == {"long": "offload", "short": "keep"}

    def test_ssd_when_ddr_full(self) -> None:
        g = training()
        plan = make_plan(g, hierarchy(peak(g) * 0.5, ddr="10 GiB"), policy="mindspore-gsm")
        assert_valid(g, plan)
        tiers = {d.tier for d in plan.decisions if d.action == "offload"}
        assert tiers == {"DDR", "SSD"}

    def test_hbm_ratio_lowers_the_budget(self) -> None:
        g = training()
        hw = hierarchy(peak(g))
        full = make_plan(g, hw, policy="mindspore-gsm")
        half = make_plan(g, hw, policy="mindspore-gsm", params={"hbm_ratio": 0.6})
        assert_valid(g, half)
        assert sum(full.metrics["transfer_bytes"].values()) == 0 < sum(half.metrics["transfer_bytes"].values())
        budget = 0.6 * hw.capacity("HBM")  # the rule's own count (the scheduler may grow prefetches beyond it)
        book = SpanBook(g, hw, analyze(g), policy="check")
        for d in half.decisions:
            if d.action == "offload":
                span = next(s for s in analyze(g).spans if (s.tensor, s.start_op, s.end_op) == (d.tensor, d.start_op, d.end_op))
                book.offload(span.id, d.tier)
        assert book.hbm.max() <= budget


class TestDistance:
    @pytest.mark.parametrize("distance", [1, 3, 6, 12])
    def test_never_offloads_short_spans(self, distance: int) -> None:
        g = training()
        live = analyze(g)
        plan = plan_or_infeasible(g, hierarchy(peak(g) * 0.7), "hyperoffload-distance", {"select_distance": distance})
        if plan is None:
            return
        spans = {(s.tensor, s.start_op, s.end_op): s for s in live.spans}
        moved = [spans[(d.tensor, d.start_op, d.end_op)] for d in plan.decisions if d.action == "offload"]
        assert moved
        assert all(span_distance(live, s.id) >= distance for s in moved)

    def test_select_num_takes_the_longest(self) -> None:
        g = training()
        live = analyze(g)
        hw = hierarchy(peak(g) * 0.9)
        plan = make_plan(g, hw, policy="hyperoffload-distance", params={"select_distance": 2, "select_num": 3})
        assert_valid(g, plan)
        moved = [d for d in plan.decisions if d.action == "offload"]
        assert len(moved) == 3
        cands = sorted((span_distance(live, s.id) for s in live.spans if s.bytes and span_distance(live, s.id) >= 2),
                       reverse=True)
        assert sorted((d.terms["distance_ops"] for d in moved), reverse=True) == cands[:3]

    def test_nothing_moves_when_it_fits(self) -> None:
        g = training()
        plan = make_plan(g, hierarchy(peak(g)), policy="hyperoffload-distance")
        assert not any(d.action != "keep" for d in plan.decisions)
        forced = make_plan(g, hierarchy(peak(g)), policy="hyperoffload-distance", params={"only_when_needed": 0})
        assert_valid(g, forced)
        assert any(d.action == "offload" for d in forced.decisions)

    def test_too_large_a_distance_is_infeasible(self) -> None:
        g = training()
        with pytest.raises(InfeasibleError, match="select_distance"):
            make_plan(g, hierarchy(peak(g) * 0.5), policy="hyperoffload-distance", params={"select_distance": 1000})


class TestVDNN:
    @pytest.mark.parametrize("mode", [0, 1])
    def test_offloads_only_forward_activations(self, mode: int) -> None:
        g = training()
        plan = plan_or_infeasible(g, hierarchy(peak(g) * (0.8 if mode == 0 else 0.9)), "vdnn", {"mode": mode})
        assert plan is not None
        moved = [d for d in plan.decisions if d.action != "keep"]
        assert moved
        layer_inputs = {t for op in g.ops if op.phase == "forward" and op.category == "matmul" for t in op.inputs}
        for d in moved:
            assert d.action == "offload"
            assert g.tensor_by_id[d.tensor].kind in ("activation", "input")
            assert g.ops[d.start_op].phase == "forward" and g.ops[d.end_op].phase == "backward"
            if mode == 1:
                assert d.tensor in layer_inputs
        assert "h0" not in {d.tensor for d in moved} or mode == 0  # h_k feed an elementwise op, not a matmul

    def test_all_mode_is_a_superset(self) -> None:
        g = training()
        live = analyze(g)
        conv = {s.id for s in vdnn_candidates(g, live, conv_only=True)}
        every = {s.id for s in vdnn_candidates(g, live, conv_only=False)}
        assert conv and conv < every

    def test_inference_has_nothing_to_offload(self) -> None:
        g = decode()
        with pytest.raises(InfeasibleError, match="vdnn"):
            make_plan(g, hierarchy(peak(g) * 0.7, ssd=False), policy="vdnn")


class TestZeroOffload:
    def test_optimizer_state_in_ddr_at_step_start(self) -> None:
        g = training()
        plan = plan_or_infeasible(g, hierarchy(peak(g)), "zero-offload")
        assert plan is not None
        for t in g.tensors:
            if t.kind == "optimizer_state":
                assert plan.initial[t.id] == ("DDR",)
            elif t.kind == "weight":
                assert plan.initial[t.id] == ("HBM",)
        down = {d.tensor for d in plan.decisions if d.action == "offload"}
        idle_grads = {s.tensor for s in analyze(g).spans if s.kind == "inner" and g.tensor_by_id[s.tensor].kind == "gradient"}
        assert idle_grads and idle_grads <= down
        moved = plan.metrics["transfer_bytes"]
        assert moved.get("HBM->DDR", 0) > 0 and moved.get("DDR->HBM", 0) > 0

    def test_gradients_can_stay(self) -> None:
        g = training()
        plan = make_plan(g, hierarchy(peak(g)), policy="zero-offload", params={"offload_gradients": 0})
        assert_valid(g, plan)
        assert not any(g.tensor_by_id[d.tensor].kind == "gradient" and d.action != "keep" for d in plan.decisions)

    def test_params_offload_for_inference(self) -> None:
        g = decode()
        hw = hierarchy(peak(g) * 0.6, ssd=False)
        with pytest.raises(InfeasibleError, match="offload_params"):
            make_plan(g, hw, policy="zero-offload")
        plan = make_plan(g, hw, policy="zero-offload", params={"offload_params": 1})
        assert_valid(g, plan)
        assert all(plan.initial[t.id] == ("DDR",) for t in g.tensors if t.kind == "weight")


class TestCapuchin:
    def test_fast_link_swaps_only(self) -> None:
        g = training()
        plan = plan_or_infeasible(g, hierarchy(peak(g) * 0.7, link="900 GB/s"), "capuchin")
        assert plan is not None
        actions = {d.action for d in plan.decisions}
        assert "offload" in actions and "recompute" not in actions
        assert all(d.terms["free_time_s"] >= 0 for d in plan.decisions if d.action == "offload")

    def test_slow_link_recomputes_cheap_producers(self) -> None:
        g = training()
        plan = plan_or_infeasible(g, hierarchy(peak(g) * 0.8, link="1 GB/s", ssd=False), "capuchin")
        assert plan is not None
        rec = [d for d in plan.decisions if d.action == "recompute"]
        assert rec
        assert plan.metrics["recompute_time_s"] > 0
        no_rec = plan_or_infeasible(g, hierarchy(peak(g) * 0.8, link="1 GB/s", ssd=False), "capuchin",
                                    {"recompute": 0})
        assert no_rec is None or all(d.action != "recompute" for d in no_rec.decisions)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
@pytest.mark.parametrize("policy", BASELINES)
def test_random_graphs_give_valid_plans_or_clear_infeasibility(policy: str, data: st.DataObject) -> None:
    graph = data.draw(graphs(max_ops=16))
    hw = data.draw(hierarchies(graph))
    params = {"select_distance": data.draw(st.integers(1, 6))} if policy == "hyperoffload-distance" else None
    plan_or_infeasible(graph, hw, policy, params)


def test_random_capacity_sweep_on_training_graph() -> None:
    g = training(3)
    hw = hierarchy(peak(g))
    for cap in np.linspace(0.3, 1.0, 8) * peak(g):
        for policy in BASELINES:
            plan_or_infeasible(g, with_capacity(hw, "HBM", int(cap)), policy)


@pytest.mark.parametrize("distance", [1, 3])
def test_hyperoffload_issues_copy_ins_prefetch_distance_ops_ahead(distance: int) -> None:
    """Each copy-in of an offloaded span is issued ``prefetch_distance`` ops before its use, not earlier."""
    from core.plan import ComputeEvent, TransferEvent
    from tests.builders import hierarchy, toy_training

    g = toy_training()
    plan = make_plan(g, hierarchy("12 GiB", ssd=False), policy="hyperoffload-distance",
                     params={"select_distance": 2, "prefetch_distance": distance, "only_when_needed": 0})
    assert validate_plan(g, plan).ok
    start_of = {e.op: e.start for e in plan.events if isinstance(e, ComputeEvent) and not e.recompute}
    end_of = {e.op: e.end for e in plan.events if isinstance(e, ComputeEvent) and not e.recompute}
    moved = {(d.tensor, d.end_op) for d in plan.decisions if d.action == "offload"}
    copy_ins = [e for e in plan.events if isinstance(e, TransferEvent) and e.dst == "HBM"]
    assert copy_ins
    for e in copy_ins:
        needs = sorted(end for t, end in moved if t == e.tensor and start_of[g.ops[end].id] >= e.end - 1e-12)
        assert needs, e
        issue_op = max(0, needs[0] - distance)  # issued when the op before ``issue_op`` is done
        earliest = end_of[g.ops[issue_op - 1].id] if issue_op else 0.0
        assert e.start >= earliest - 1e-12
