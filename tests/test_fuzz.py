"""The fuzz command: its generator covers the issue's space, its counts add up, and it catches a broken planner."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.fuzz import FEATURES, OUTCOMES, format_summary, random_case, run_fuzz
from core.graph import Graph, graph_to_dict, load_graph
from core.hardware import Hardware
from core.liveness import analyze
from core.plan import Plan, TransferEvent, load_plan
from core.planner import make_plan
from core.validate import validate_plan


def test_cases_are_reproducible_from_their_seed() -> None:
    a, hw_a = random_case(12345)
    b, hw_b = random_case(12345)
    assert graph_to_dict(a) == graph_to_dict(b) and hw_a == hw_b
    assert graph_to_dict(random_case(12346)[0]) != graph_to_dict(a)


def test_generator_covers_the_issue_space() -> None:
    ops, tiers, budgets, bandwidths = [], [], [], []
    pooled = host = inplace_act = optimizer = multi_hop = zero_time = 0
    for seed in range(40):
        g, hw = random_case(seed)
        ops.append(len(g.ops))
        tiers.append(len(hw.tiers))
        budgets.append(hw.capacity(hw.compute_tier) / analyze(g).no_offload_peak_bytes)
        bandwidths += [link.bandwidth_Bps for link in hw.links]
        pooled += "POOL" in hw.tier_by_name
        host += any(t.compute is not None for t in hw.tiers)
        multi_hop += any(hw.compute_tier not in (link.src, link.dst) for link in hw.links)
        inplace_act += any(not g.tensor_by_id[x].persistent for op in g.ops for x in op.mutates)
        optimizer += any(op.host_ok and op.mutates for op in g.ops)
        zero_time += any(op.time_s == 0 for op in g.ops)
    assert min(ops) >= 8 and max(ops) <= 420 and max(ops) > 100
    assert set(tiers) <= {2, 3, 4} and len(set(tiers)) == 3
    assert min(budgets) >= 0.2 and max(budgets) <= 1.0
    assert min(bandwidths) >= 1e9 and max(bandwidths) <= 5e11
    for count in (pooled, host, inplace_act, optimizer, multi_hop, zero_time):
        assert count >= 5


def test_summary_counts_add_up(tmp_path: Path) -> None:
    summary = run_fuzz(seconds=120, seed=7, out=tmp_path, policies=["tierplan", "mindspore-gsm", "none"], max_cases=6)
    assert summary.cases == 6
    for stats in summary.per_policy.values():
        assert stats.plans == summary.cases == sum(stats.outcomes[o] for o in OUTCOMES)
        for f in FEATURES:
            assert stats.features[f] <= stats.outcomes["valid"]
        assert stats.features["multi-hop"] <= stats.features["moved"]
    assert summary.plans == 3 * summary.cases
    assert summary.per_policy["none"].features["moved"] == 0
    table = format_summary(summary)
    assert table.splitlines()[0].startswith(f"6 cases, {summary.plans} plans")
    assert all(p in table for p in ("tierplan", "mindspore-gsm", "none", "all"))
    # every failure left its case on disk
    for failure in summary.failures:
        assert (Path(failure.directory) / "graph.json").exists()


def _drop_a_copy(plan: Plan) -> Plan:
    """A broken planner: the last copy-in of the plan is silently left out."""
    copies = [k for k, e in enumerate(plan.events) if isinstance(e, TransferEvent)]
    if not copies:
        return plan
    k = copies[-1]
    return replace(plan, events=plan.events[:k] + plan.events[k + 1:])


def test_a_broken_planner_is_reported_with_its_seed_and_files(tmp_path: Path) -> None:
    log = io.StringIO()
    summary = run_fuzz(seconds=120, seed=11, out=tmp_path, max_cases=8, log=log, planners={
        "drops-a-copy": lambda g, hw: _drop_a_copy(make_plan(g, hw, policy="mindspore-gsm"))})
    stats = summary.per_policy["drops-a-copy"]
    assert stats.outcomes["invalid"] >= 1 and not summary.ok
    bad = [f for f in summary.failures if f.kind == "invalid"]
    assert len(bad) == stats.outcomes["invalid"]
    for failure in bad:
        assert f"FAIL seed={failure.seed} policy=drops-a-copy invalid" in log.getvalue()
        where = Path(failure.directory)
        assert where.name == f"seed-{failure.seed}"
        graph = load_graph(where / "graph.json")
        plan = load_plan(where / "plan-drops-a-copy.json")
        assert not validate_plan(graph, plan).ok  # the written files reproduce the failure
        # and the seed regenerates the same case
        assert graph_to_dict(random_case(failure.seed)[0]) == graph_to_dict(graph)


def test_a_crashing_planner_is_a_crash(tmp_path: Path) -> None:
    def crash(g: object, hw: object) -> Plan:
        raise ZeroDivisionError("boom")

    summary = run_fuzz(seconds=60, seed=1, out=tmp_path, max_cases=2, planners={"crashes": crash})
    assert summary.per_policy["crashes"].outcomes["crash"] == 2 and not summary.ok
    assert all("ZeroDivisionError: boom" in f.message for f in summary.failures)


def test_cli_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fuzz", "--seconds", "60", "--max-cases", "2", "--seed", "3", "--policy", "mindspore-gsm",
                 "--policy", "capuchin", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert any(line.startswith("all ") for line in out.splitlines())
    assert "2 cases, 4 plans" in out and "capuchin" in out
    assert code == (1 if ("invalid:" in out or "crash:" in out) else 0)
    assert main(["fuzz", "--seconds", "1", "--policy", "magic", "--out", str(tmp_path)]) == 2
    assert "unknown policy 'magic'" in capsys.readouterr().err


def test_written_case_plans_again_from_the_cli(tmp_path: Path) -> None:
    """The failure files are inputs `python -m core plan` accepts (graph and hardware formats)."""
    summary = run_fuzz(seconds=60, seed=11, out=tmp_path, max_cases=3, planners={
        "drops-a-copy": lambda g, hw: _drop_a_copy(make_plan(g, hw, policy="mindspore-gsm"))})
    assert summary.failures
    where = Path(summary.failures[0].directory)
    assert json.loads((where / "hardware.json").read_text())["format"] == "tierplan-hardware/1"
    code = main(["plan", str(where / "graph.json"), "--hardware", str(where / "hardware.json"),
                 "--policy", "mindspore-gsm", "-o", str(tmp_path / "again.json")])
    assert code == 0
    assert np.isfinite(load_plan(tmp_path / "again.json").metrics["step_time_s"])


def test_a_false_infeasibility_reason_is_reported(tmp_path: Path) -> None:
    """A planner that gives up claiming an op's own footprint is too big, when it is not."""
    from core.errors import InfeasibleError

    def liar(g: Graph, hw: Hardware) -> Plan:
        exc = InfeasibleError(f"op '{g.ops[0].id}' needs more than {hw.compute_tier} holds")
        exc.reason = "op_footprint"  # type: ignore[attr-defined]
        exc.op = g.ops[0].id  # type: ignore[attr-defined]
        raise exc

    summary = run_fuzz(seconds=60, seed=3, out=tmp_path, max_cases=4, planners={"liar": liar})
    stats = summary.per_policy["liar"]
    assert stats.outcomes["infeasible"] == 4 and stats.reasons == {"op_footprint": 4}
    wrong = [f for f in summary.failures if f.kind == "wrong-reason"]
    fits = 0
    for seed in {f.seed for f in wrong}:
        g, hw = random_case(seed)
        op = g.ops[0]
        own = sum(g.tensor_by_id[x].bytes for x in dict.fromkeys((*op.inputs, *op.outputs)))
        assert own <= hw.capacity(hw.compute_tier)
        fits += 1
    assert fits >= 1 and not summary.ok
    assert "liar infeasible because: op_footprint 4" in format_summary(summary)
