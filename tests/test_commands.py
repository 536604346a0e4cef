"""CLI planning commands: plan, validate, trace, sweep — exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_validate_trace_roundtrip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = tmp_path / "plan.json"
    code, out, _ = run(capsys, "plan", "tiny", "--hardware", "teaching", "-o", str(plan_path))
    assert code == 0
    assert "step time" in out and "peak HBM" in out
    plan = json.loads(plan_path.read_text())
    assert plan["format"] == "tierplan-plan/1" and plan["events"]
    code, out, _ = run(capsys, "validate", "tiny", str(plan_path))
    assert code == 0 and out.startswith("valid:")
    trace_path = tmp_path / "trace.json"
    code, _, _ = run(capsys, "trace", str(plan_path), "--graph", "tiny", "-o", str(trace_path))
    assert code == 0
    assert json.loads(trace_path.read_text())["traceEvents"]


def test_tampered_plan_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = tmp_path / "plan.json"
    assert run(capsys, "plan", "tiny", "--hardware", "teaching", "-o", str(plan_path))[0] == 0
    plan = json.loads(plan_path.read_text())
    plan["hardware"]["tiers"][0]["capacity_bytes"] = 2**30  # shrink HBM after the fact
    plan_path.write_text(json.dumps(plan))
    code, _, err = run(capsys, "validate", "tiny", str(plan_path))
    assert code == 2 and "invalid" in err and "capacity" in err


def test_set_override_and_infeasible_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "tiny", "--hardware", "teaching", "--set", "HBM.capacity=2GiB")
    assert code == 3 and "needs" in err and "Traceback" not in err


@pytest.mark.parametrize(("argv", "needle"), [
    (["plan", "tiny", "--hardware", "no-such-preset"], "no-such-preset"),
    (["plan", "tiny", "--hardware", "teaching", "--set", "HBM.capacity"], "KEY=VALUE"),
    (["plan", "tiny", "--hardware", "teaching", "--set", "XYZ.capacity=1GiB"], "no tier 'XYZ'"),
    (["plan", "tiny", "--hardware", "teaching", "--policy", "magic"], "unknown policy"),
    (["plan", "tiny", "--hardware", "teaching", "--param", "prefetch_slack=abc"], "prefetch_slack"),
])
def test_bad_input_is_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_sweep_reports_smallest_capacity(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sweep", "tiny", "--hardware", "teaching")
    assert code == 0 and "smallest HBM" in out and "GiB" in out
