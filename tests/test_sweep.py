"""What-if sweeps: monotone sanity, bisection boundary, heatmap shape."""

from __future__ import annotations

import math

import numpy as np

from core.errors import InfeasibleError
from core.hardware import with_capacity
from core.liveness import analyze
from core.planner import make_plan
from core.sweep import heatmap, min_capacity_for_slowdown, sweep_capacity
from tests.builders import hierarchy, toy_training
from tests.infeasible import check_infeasible_message

GiB = 2**30


def test_sweep_capacity_points_and_progress() -> None:
    g = toy_training()
    seen: list[float] = []
    pts = sweep_capacity(g, hierarchy(), capacities_bytes=[4 * GiB, 10 * GiB, 24 * GiB],
                         progress=lambda f, _msg: seen.append(f))
    assert seen[-1] == 1.0 and len(seen) == 3
    assert not pts[0].feasible
    # the reason holds: some op's own inputs and outputs exceed 4 GiB
    assert check_infeasible_message(g, with_capacity(hierarchy(), "HBM", 4 * GiB), pts[0].message) == "op-footprint"
    assert pts[2].feasible and pts[2].slowdown == 0.0
    assert pts[1].step_time_s >= pts[2].step_time_s


def test_min_capacity_is_a_boundary() -> None:
    g = toy_training()
    hw = hierarchy(link="400 GB/s")
    cap = min_capacity_for_slowdown(g, hw, max_slowdown=0.05)
    assert cap is not None and cap <= analyze(g).no_offload_peak_bytes
    at = make_plan(g, with_capacity(hw, "HBM", cap)).metrics
    assert at["slowdown"] <= 0.05
    below = int(cap * 0.9)
    try:
        worse = make_plan(g, with_capacity(hw, "HBM", below)).metrics["slowdown"]
    except InfeasibleError:
        worse = math.inf
    assert worse > 0.05


def test_heatmap_grid() -> None:
    g = toy_training()
    hm = heatmap(g, hierarchy(), capacities_bytes=[8 * GiB, 24 * GiB], bandwidths_Bps=[10e9, 400e9])
    assert hm.step_time_s.shape == (2, 2)
    assert hm.slowdown[1, 0] == 0.0 and hm.slowdown[1, 1] == 0.0  # everything fits at 24 GiB
    assert hm.step_time_s[0, 0] > hm.step_time_s[0, 1]  # a slower link costs time when offloading


# ------------------------------------------------------------------------------- executors: same results

import json  # noqa: E402
from dataclasses import replace  # noqa: E402

import pytest  # noqa: E402

from core.cli import main as cli_main  # noqa: E402
from core.executor import PointError  # noqa: E402
from core.plan import plan_to_dict  # noqa: E402
from core.sweep import SweepPoint, grid_sweep, sweep_bandwidth  # noqa: E402
from tests.builders import assert_valid  # noqa: E402

CAPS = [4 * GiB, 9 * GiB, 12 * GiB, 24 * GiB]


def _same(a: SweepPoint, b: SweepPoint) -> bool:
    """Field by field (NaN equals NaN), plans compared as their JSON."""
    plain = repr(replace(a, plan=None)) == repr(replace(b, plan=None))
    plans = (a.plan is None) == (b.plan is None) and (
        a.plan is None or json.dumps(plan_to_dict(a.plan)) == json.dumps(plan_to_dict(b.plan)))
    return plain and plans


def _check_all(graph, points: list[SweepPoint]) -> None:
    for p in points:
        assert p.feasible == (p.plan is not None)
        if p.plan is not None:
            assert_valid(graph, p.plan)


@pytest.fixture(scope="module")
def serial_capacity():
    g = toy_training()
    return g, sweep_capacity(g, hierarchy(), capacities_bytes=CAPS, executor="serial", keep_plans=True)


def test_process_pool_capacity_sweep_is_identical_to_serial(serial_capacity) -> None:
    g, serial = serial_capacity
    _check_all(g, serial)
    assert [p.feasible for p in serial] == [False, True, True, True]
    seen: list[str] = []
    pooled = sweep_capacity(g, hierarchy(), capacities_bytes=CAPS, executor="process", workers=2, keep_plans=True,
                            progress=lambda _f, text: seen.append(text))
    assert all(_same(a, b) for a, b in zip(serial, pooled, strict=True))
    assert sorted(seen) == ["HBM = 12 GiB", "HBM = 24 GiB", "HBM = 4 GiB", "HBM = 9 GiB"]  # human units
    _check_all(g, pooled)


@pytest.mark.dask
def test_dask_capacity_and_bandwidth_sweeps_are_identical_to_serial(serial_capacity, dask_address: str) -> None:
    g, serial = serial_capacity
    remote = sweep_capacity(g, hierarchy(), capacities_bytes=CAPS, executor="dask", scheduler=dask_address,
                            keep_plans=True)
    assert all(_same(a, b) for a, b in zip(serial, remote, strict=True))
    _check_all(g, remote)
    hw = hierarchy("9 GiB")
    bws = [20e9, 400e9]
    local = sweep_bandwidth(g, hw, bandwidths_Bps=bws, executor="serial", keep_plans=True)
    far = sweep_bandwidth(g, hw, bandwidths_Bps=bws, executor="dask", scheduler=dask_address, keep_plans=True)
    assert all(_same(a, b) for a, b in zip(local, far, strict=True))
    assert local[0].step_time_s > local[1].step_time_s  # a slower link costs time when offloading
    _check_all(g, far)


@pytest.mark.dask
def test_dask_min_capacity_matches_serial_bisection(dask_address: str) -> None:
    g, hw = toy_training(), hierarchy(link="400 GB/s")
    serial = min_capacity_for_slowdown(g, hw, max_slowdown=0.05, executor="serial")
    assert serial is not None
    assert min_capacity_for_slowdown(g, hw, max_slowdown=0.05, executor="dask", scheduler=dask_address,
                                     probes=2) == serial


def test_parallel_brackets_find_the_same_grid_point_as_bisection() -> None:
    g, hw = toy_training(), hierarchy(link="400 GB/s")
    serial = min_capacity_for_slowdown(g, hw, max_slowdown=0.05, executor="serial")
    assert min_capacity_for_slowdown(g, hw, max_slowdown=0.05, executor="process", workers=2, probes=3) == serial
    plan = make_plan(g, with_capacity(hw, "HBM", serial))
    assert_valid(g, plan)
    assert plan.metrics["slowdown"] <= 0.05


def test_min_capacity_none_when_even_the_peak_is_too_slow() -> None:
    assert min_capacity_for_slowdown(toy_training(), hierarchy(), max_slowdown=-0.5, executor="serial") is None


def test_grid_sweep_cells_in_nesting_order_and_identical_on_the_pool() -> None:
    graphs = {"two": toy_training(2), "four": toy_training(4)}
    hws = {"slow": hierarchy(link="20 GB/s"), "fast": hierarchy(link="400 GB/s")}
    kw = {"budgets": [0.6, 1.0], "policies": ["tierplan", "mindspore-gsm"], "keep_plans": True}
    serial = grid_sweep(graphs, hws, executor="serial", **kw)
    pooled = grid_sweep(graphs, hws, executor="process", workers=2, **kw)
    assert [(c.model, c.hardware, c.budget, c.policy) for c in serial][:3] == [
        ("two", "slow", 0.6, "tierplan"), ("two", "slow", 0.6, "mindspore-gsm"), ("two", "slow", 1.0, "tierplan")]
    assert len(serial) == 16
    for a, b in zip(serial, pooled, strict=True):
        assert (a.model, a.hardware, a.budget, a.policy) == (b.model, b.hardware, b.budget, b.policy)
        assert _same(a.point, b.point)
    for c in pooled:
        assert c.point.feasible, c
        assert_valid(graphs[c.model], c.point.plan)
        if c.budget == 1.0:
            assert c.point.slowdown == pytest.approx(0.0, abs=1e-9)


def test_worker_error_is_a_clear_message() -> None:
    with pytest.raises(PointError, match="unknown policy 'nope'"):
        sweep_capacity(toy_training(), hierarchy(), capacities_bytes=CAPS, policy="nope", executor="process",
                       workers=2)


class TestCli:
    def test_capacity_sweep_on_the_pool(self, capsys: pytest.CaptureFixture[str]) -> None:
        code = cli_main(["sweep", "tiny", "--hardware", "teaching", "--capacities", "4GiB,8GiB,15GiB,16GiB",
                         "--executor", "process", "--workers", "2"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "HBM 4 GiB" in out and "infeasible: op 'bwd3' needs 5 GiB" in out
        assert "slowdown    0.0 %" in out  # 15 GiB is the no-offload peak
        assert err.count("%  HBM = ") == 4 and "100 %" in err  # one progress line per point (no terminal)

    def test_unknown_policy_is_exit_2_before_any_worker(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli_main(["sweep", "tiny", "--hardware", "teaching", "--policy", "nope"]) == 2
        assert "unknown policy 'nope'" in capsys.readouterr().err

    def test_unreachable_scheduler_is_one_line(self, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("core.executor.CONNECT_TIMEOUT_S", 1.0)
        code = cli_main(["sweep", "tiny", "--hardware", "teaching", "--executor", "dask", "--scheduler",
                         "tcp://127.0.0.1:9"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9:")
        assert "Traceback" not in err

    def test_bad_capacity_list(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli_main(["sweep", "tiny", "--hardware", "teaching", "--capacities", "4 parsecs"]) == 2
        assert "--capacities" in capsys.readouterr().err


@pytest.mark.dask
def test_first_plan_sweep_on_two_dask_workers_is_identical_to_serial(serial_capacity, dask_address: str) -> None:
    """``time_budget_s=0``: every point is the fast first plan (the same on every executor), never faster
    than the refined point of the default sweep."""
    g, refined = serial_capacity
    caps = [int(c) for c in np.linspace(9 * GiB, 24 * GiB, 12)]
    serial = sweep_capacity(g, hierarchy(), capacities_bytes=caps, executor="serial", keep_plans=True,
                            time_budget_s=0)
    remote = sweep_capacity(g, hierarchy(), capacities_bytes=caps, executor="dask", scheduler=dask_address,
                            keep_plans=True, time_budget_s=0)
    assert all(_same(a, b) for a, b in zip(serial, remote, strict=True))
    _check_all(g, remote)
    assert all(p.plan is not None and p.plan.planning["stages_run"] == ("first",) for p in remote)
    for first, full in zip(sweep_capacity(g, hierarchy(), capacities_bytes=CAPS, executor="serial", time_budget_s=0),
                           refined, strict=True):
        assert first.feasible == full.feasible
        if full.feasible:
            assert full.step_time_s <= first.step_time_s * (1 + 1e-9)
