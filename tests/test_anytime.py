"""Anytime planning (core.planner.plan_anytime): a fast first plan, stages that only improve it, a time budget
that leaves stages out and says so, and ``core plan --time-budget``."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core import load_preset, load_sample
from core.errors import InfeasibleError, InputError
from core.hardware import with_capacity
from core.plan import plan_from_dict, plan_to_dict
from core.planner import STAGES, make_plan, plan_anytime
from tests.builders import assert_valid, hierarchy, toy_training

ROOT = Path(__file__).resolve().parents[1]


class TestStages:
    def test_every_stage_reports_and_the_last_is_make_plan(self) -> None:
        g, hw = load_sample("tiny"), load_preset("teaching")
        updates = list(plan_anytime(g, hw))
        assert [u.stage for u in updates] == list(STAGES)
        assert [u.stages_done for u in updates] == list(range(1, len(STAGES) + 1))
        assert updates[-1].final and not any(u.final for u in updates[:-1])
        assert updates[-1].step_time_s == pytest.approx(make_plan(g, hw).metrics["step_time_s"])
        for u in updates:
            assert_valid(g, u.plan)  # every plan handed out was replayed

    @pytest.mark.parametrize("hbm", ["7 GiB", "9 GiB", "12 GiB", "16 GiB"])
    def test_the_plan_never_gets_worse(self, hbm: str) -> None:
        g, hw = toy_training(), hierarchy(hbm)
        try:
            steps = [u.step_time_s for u in plan_anytime(g, hw)]
        except InfeasibleError:
            pytest.skip("no plan at this capacity")
        assert all(b <= a for a, b in itertools.pairwise(steps))

    def test_refinement_improves_llama2_training(self) -> None:
        """The landing sample: the refined order and portfolio beat the first plan by a wide margin."""
        g, hw = load_sample("llama2-7b-train"), load_preset("h100-sxm")
        updates = list(plan_anytime(g, hw))
        first, last = updates[0], updates[-1]
        assert first.stage == "first" and first.gap_to_bound is None and first.plan.order is None
        assert last.step_time_s < 0.9 * first.step_time_s
        assert last.plan.order is not None and last.gap_to_bound is not None  # the refined order won; bound known
        assert any(u.improved for u in updates)

    def test_other_policies_plan_then_bound(self) -> None:
        g, hw = toy_training(), hierarchy("9 GiB")
        updates = list(plan_anytime(g, hw, policy="mindspore-gsm"))
        assert [u.stage for u in updates] == ["first", "bound"]
        assert updates[0].plan.lower_bound_s is None and updates[1].plan.lower_bound_s is not None
        assert updates[-1].plan.planning["bound"] == "computed"

    def test_bound_off_says_so(self) -> None:
        plan = make_plan(load_sample("tiny"), load_preset("teaching"), bound=False)
        assert plan.lower_bound_s is None and plan.planning["bound"] == "off"


class TestFirstPlan:
    def test_first_plan_imports_no_scipy_and_is_replayed(self) -> None:
        """The first plan is the fast path: no LP, so scipy is never imported on it (a fresh interpreter)."""
        code = ("import sys\nfrom core import load_sample, load_preset, validate_plan\nfrom core.planner import "
                "plan_anytime\ng, hw = load_sample('llama2-7b-train'), load_preset('h100-sxm')\n"
                "u = next(plan_anytime(g, hw))\nassert u.stage == 'first', u.stage\n"
                "assert 'scipy' not in sys.modules, 'scipy imported'\nassert validate_plan(g, u.plan).ok\n"
                "print(u.plan.planning['stages_run'])")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "('first',)"

    def test_budget_zero_is_the_first_plan_and_says_what_was_left_out(self) -> None:
        g, hw = load_sample("llama2-7b-train"), load_preset("h100-sxm")
        plan = make_plan(g, hw, time_budget_s=0)
        assert_valid(g, plan)
        info = plan.planning
        assert info["stages_run"] == ("first",) and info["found_by"] == "first" and info["time_budget_s"] == 0
        assert set(info["stages_skipped"]) == set(STAGES) - {"first"}
        assert plan.lower_bound_s is None and plan.gap_to_bound is None
        assert info["bound"] == "not computed: the time budget ran out before the bound stage"
        assert plan.metrics["step_time_s"] >= make_plan(g, hw).metrics["step_time_s"]

    def test_planning_record_survives_the_json_round_trip(self) -> None:
        plan = make_plan(load_sample("tiny"), load_preset("teaching"))
        raw = json.loads(json.dumps(plan_to_dict(plan)))
        assert raw["planning"]["stages_run"] == list(STAGES) and "lower_bound_s" in raw and "gap_to_bound" in raw
        assert plan_from_dict(raw).planning == plan.planning

    def test_a_first_plan_that_fails_does_not_stop_the_stages(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """When one ranking order finds nothing, the stages go on past the budget until one finds a plan."""
        from dataclasses import replace as dc_replace

        from core.policies import registry

        original = registry.POLICIES["tierplan"]

        def only_with_portfolio(graph, hw, live, params):  # type: ignore[no-untyped-def]
            if not int(params["portfolio"]):
                raise InfeasibleError("one ranking order is not enough (test)")
            return original.decide(graph, hw, live, params)

        monkeypatch.setitem(registry.POLICIES, "tierplan", dc_replace(original, decide=only_with_portfolio))
        g, hw = toy_training(), hierarchy("9 GiB")
        updates = list(plan_anytime(g, hw, time_budget_s=0, params={"baselines": 0}))
        assert updates[0].stage == "portfolio" and updates[0].plan.planning["found_by"] == "portfolio"
        assert_valid(g, updates[-1].plan)

    def test_bad_budget_is_an_input_error(self) -> None:
        with pytest.raises(InputError, match="seconds >= 0"):
            plan_anytime(toy_training(), hierarchy(), time_budget_s=-1)

    def test_infeasible_before_any_stage(self) -> None:
        with pytest.raises(InfeasibleError) as info:
            plan_anytime(toy_training(), with_capacity(hierarchy(), "HBM", 1))
        assert info.value.reason == "op_footprint"


class TestCli:
    def test_time_budget_zero_summary(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        from core.cli import main

        out = tmp_path / "plan.json"
        assert main(["plan", "llama2-7b-train", "--hardware", "h100-sxm", "--time-budget", "0", "-o", str(out)]) == 0
        text = capsys.readouterr().out
        assert "stages first (time budget 0 s)" in text
        assert "skipped       portfolio, reorder, baselines, bound, search" in text
        assert "lower bound   not computed" in text
        raw = json.loads(out.read_text())
        assert raw["planning"]["stages_run"] == ["first"] and "lower_bound_s" not in raw

    def test_default_runs_every_stage_and_keeps_the_bound(self, capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
        from core.cli import main

        out = tmp_path / "plan.json"
        assert main(["plan", "tiny", "--hardware", "teaching", "-o", str(out)]) == 0
        text = capsys.readouterr().out
        assert "stages first, portfolio, reorder, baselines, bound, search" in text and "skipped" not in text
        raw = json.loads(out.read_text())
        assert raw["planning"]["bound"] == "computed" and raw["gap_to_bound"] >= -1e-9

    @pytest.mark.parametrize("value", ["-1", "soon", "inf"])
    def test_bad_budget_is_one_line(self, value: str, capsys: pytest.CaptureFixture[str]) -> None:
        from core.cli import main

        with pytest.raises(SystemExit) as info:
            main(["plan", "tiny", "--hardware", "teaching", "--time-budget", value])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "--time-budget" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
