"""Serve page figures: pure builders, checked on the data they draw."""

from __future__ import annotations

import numpy as np
import pytest

from ui import serve_figures as sf


def test_arrivals_rates():
    t = np.array([0.0, 0.5, 1.0, 9.9, 10.0])
    fig = sf.arrivals_figure(t, np.array([100, 100, 100, 100, 100]), bins=10)
    bars, line = fig.data
    width = 1.0
    assert bars.y.sum() * width == pytest.approx(5)
    assert line.y.sum() * width == pytest.approx(0.5)  # 500 tokens = 0.5 k-tokens
    assert sf.arrivals_figure(np.zeros(0), np.zeros(0)).data == ()


def test_sharing_histogram_counts_every_block():
    readers = np.array([1, 1, 1, 2, 3, 7, 40])
    fig = sf.sharing_figure(readers)
    assert sum(fig.data[0].y) == readers.shape[0]
    assert fig.data[0].x[0] == "1" and fig.data[0].y[0] == 3


def test_sizing_lines_and_ceiling():
    fig = sf.sizing_figure([1, 2, 3], {"lru": [0.1, 0.2, 0.3], "belady": [0.3, 0.4, 0.5]}, x_title="x",
                           y_title="y", title="t", ceiling=0.6)
    assert [d.name for d in fig.data] == ["lru", "belady"]
    assert list(fig.data[1].y) == pytest.approx([30, 40, 50])
    assert fig.data[1].line.dash == "dash" and fig.data[0].line.color == sf.POLICY_COLORS["lru"]
    assert fig.layout.shapes[0].y0 == pytest.approx(60)


def test_ttft_cdf_ends_at_100_percent():
    fig = sf.ttft_cdf_figure({"a": np.array([0.3, 0.1, 0.2]), "b": np.array([0.5])})
    assert list(fig.data[0].x) == pytest.approx([100, 200, 300])  # milliseconds
    assert fig.data[0].y[-1] == pytest.approx(100)


def test_occupancy_percent_of_capacity():
    fig = sf.occupancy_figure(np.array([0.0, 1.0]), {"HBM": np.array([5, 10])}, {"HBM": 20}, 2**20)
    assert list(fig.data[0].y) == pytest.approx([25, 50])


def test_link_traffic_conserves_bytes():
    transfers = [("DDR->HBM", 0.0, 2.0, 4 * 2**30), ("HBM->DDR", 5.0, 6.0, 2**30)]
    fig = sf.link_traffic_figure(transfers, 10.0, bins=10)
    by = {d.name: d for d in fig.data}
    assert sum(by["DDR->HBM"].y) * 1.0 == pytest.approx(4.0)  # GiB/s × 1 s bins
    assert sum(by["HBM->DDR"].y) == pytest.approx(1.0)


def test_policies_bars_stack_by_tier():
    rows = [{"policy": "lru", "hit_rate_by_tier": {"HBM": 0.1, "DDR": 0.05}, "ttft_s": {"p50": 0.2}},
            {"policy": "belady", "hit_rate_by_tier": {"HBM": 0.2, "DDR": 0.1}, "ttft_s": {"p50": 0.1}}]
    fig = sf.policies_figure(rows)
    assert [d.name for d in fig.data] == ["hits in HBM", "hits in DDR", "TTFT p50 (ms)"]
    assert list(fig.data[2].y) == pytest.approx([200, 100])
