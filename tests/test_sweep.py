"""What-if sweeps: monotone sanity, bisection boundary, heatmap shape."""

from __future__ import annotations

import math

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
