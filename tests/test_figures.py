"""Figure builders on hand-made streams, curves and graphs (no planner needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import pytest

from core.graph import Graph, Op, Tensor
from core.metrics import Curve, Stream
from ui import figures


def _streams(n_ops: int, n_transfers: int) -> list[Stream]:
    starts = np.arange(n_ops) * 1e-4
    compute = Stream("compute", "compute", starts, starts + 0.9e-4, [f"op{k}" for k in range(n_ops)],
                         ["matmul" if k % 2 else "attention" for k in range(n_ops)])
    tstarts = np.arange(n_transfers) * 2e-4
    link = Stream("HBM->DDR", "link", tstarts, tstarts + 1.5e-4, [f"t{k}" for k in range(n_transfers)],
                      ["activation"] * n_transfers)
    return [compute, link]


class TestScales:
    def test_time_scale_picks_readable_unit(self):
        assert figures.time_scale(2.5) == (1.0, "s")
        assert figures.time_scale(0.02) == (1e3, "ms")
        assert figures.time_scale(3e-6) == (1e6, "µs")
        assert figures.time_scale(5e-10)[1] == "ns"

    def test_byte_scale(self):
        assert figures.byte_scale(80 * 2**30) == (2**30, "GiB")
        assert figures.byte_scale(3 * 2**40)[1] == "TiB"
        assert figures.byte_scale(10)[1] == "B"

    def test_colours_consistent_and_distinct(self):
        assert figures.color_for("weight") == figures.KIND_COLORS["weight"]
        assert figures.color_for("matmul") == figures.CATEGORY_COLORS["matmul"]
        assert figures.color_for("no-such-thing") == figures.CATEGORY_COLORS["other"]
        assert len(set(figures.KIND_COLORS.values())) == len(figures.KIND_COLORS)


class TestSchedule:
    def test_small_schedule_uses_bars_one_trace_per_stream_and_category(self):
        fig = figures.schedule_figure(_streams(20, 5))
        kinds = {type(t) for t in fig.data}
        assert kinds == {go.Bar}
        # compute: 2 categories, link: 1 category -> 3 traces, not 25
        assert len(fig.data) == 3
        bars = next(t for t in fig.data if t.name == "attention")
        assert len(bars.x) == 10
        assert fig.layout.xaxis.title.text == "time (ms)"
        assert np.allclose(bars.base[:2], [0.0, 0.2])  # ms, numeric axis
        assert fig.layout.uirevision == "schedule"
        assert list(fig.layout.yaxis.ticktext) == ["compute", "HBM->DDR"]

    def test_large_schedule_uses_webgl_segments(self):
        fig = figures.schedule_figure(_streams(60_000, 20_000))
        assert all(isinstance(t, go.Scattergl) for t in fig.data)
        assert len(fig.data) == 3
        seg = next(t for t in fig.data if t.name == "activation")
        assert len(seg.x) == 3 * 20_000
        assert np.isnan(seg.x[2]) and seg.x[1] > seg.x[0]

    def test_highlight_adds_outlined_bars_on_the_right_row(self):
        fig = figures.schedule_figure(_streams(4, 2), highlight=[("HBM->DDR", 0.0, 1.5e-4), ("missing", 0, 1)])
        sel = [t for t in fig.data if t.name == "selected"]
        row = dict(zip(fig.layout.yaxis.ticktext, fig.layout.yaxis.tickvals))["HBM->DDR"]
        assert len(sel) == 1 and list(sel[0].y) == [row]
        assert fig.layout.xaxis.title.text == "time (µs)"
        assert sel[0].x[0] == pytest.approx(150.0)

    def test_legend_shows_each_category_once(self):
        streams = [*_streams(4, 2), Stream("DDR->HBM", "link", np.array([0.0]), np.array([0.0001]), ["t"], ["activation"])]
        fig = figures.schedule_figure(streams)
        shown = [t.name for t in fig.data if t.showlegend is not False]
        assert sorted(shown) == ["activation", "attention", "matmul"]

    @pytest.mark.parametrize("n_ops", [20, 60_000])
    def test_rows_on_a_plain_axis_compute_on_top(self, n_ops):
        """Streamlit's plotly.js draws every WebGL trace of a reversed axis on the last row (big schedules
        were blank in the page): the axis is never reversed, compute has the highest y."""
        fig = figures.schedule_figure(_streams(n_ops, 5))
        assert fig.layout.yaxis.autorange in (None, False)
        lo, hi = fig.layout.yaxis.range
        assert lo < hi
        rows = dict(zip(fig.layout.yaxis.ticktext, fig.layout.yaxis.tickvals))
        assert rows["compute"] > rows["HBM->DDR"]
        for trace in fig.data:
            ys = {float(y) for y in np.asarray(trace.y, dtype=float) if not np.isnan(y)}
            assert ys <= set(rows.values()) and lo < min(ys) and max(ys) < hi

    def test_legend_separates_op_categories_from_tensor_kinds(self):
        streams = _streams(4, 2)
        fig = figures.schedule_figure(streams)
        ops = {t.name for t in fig.data if t.legend in (None, "legend")}
        kinds = {t.name for t in fig.data if t.legend == "legend2"}
        assert ops == {"attention", "matmul"} and kinds == {"activation"}
        assert fig.layout.legend.title.text and fig.layout.legend2.title.text
        colours = [t.marker.color for t in fig.data]
        assert len(set(colours)) == len(colours)

    def test_palette_kinds_and_categories_clearly_distinct(self):
        from ui import palette

        colours = [*palette.KIND_COLORS.values(), *palette.CATEGORY_COLORS.values()]
        assert len(set(colours)) == len(colours)
        assert palette.min_distance(colours) > 40

    def test_policy_colour_fixed_by_key_or_title(self):
        from core.policies import list_policies
        from ui import palette

        policies = list_policies()
        by_key = [palette.policy_color(p.key) for p in policies]
        assert len(set(by_key)) == len(by_key)
        assert [palette.policy_color(p.title) for p in policies] == by_key


class TestMemory:
    def test_peak_indices_keep_the_peak(self):
        total = np.zeros(100_000)
        total[54_321] = 5.0
        idx = figures.peak_indices(total, 500)
        assert len(idx) <= 502
        assert 54_321 in idx and 0 in idx and 99_999 in idx

    def test_peak_indices_small_input_untouched(self):
        assert list(figures.peak_indices(np.arange(5.0), 10)) == [0, 1, 2, 3, 4]

    def test_memory_figure_stacks_kinds_with_capacity_and_before(self):
        t = np.array([0.0, 1e-3, 2e-3, 3e-3])
        after = Curve(t, {"weight": np.array([2, 2, 2, 2]) * 2**30, "activation": np.array([0, 3, 1, 0]) * 2**30,
                              "gradient": np.zeros(4)})
        before = Curve(t, {"weight": np.array([2, 2, 2, 2]) * 2**30, "activation": np.array([0, 6, 9, 0]) * 2**30})
        fig = figures.memory_figure(after, tier="HBM", capacity_bytes=8 * 2**30, before=before)
        names = [tr.name for tr in fig.data]
        assert names[:2] == ["weight", "activation"]  # zero kinds dropped, stable kind order
        assert "gradient" not in names
        assert all(tr.line.shape == "hv" for tr in fig.data if tr.stackgroup or str(tr.name).startswith("before"))
        assert fig.data[0].stackgroup == fig.data[1].stackgroup == "after"
        cap = next(tr for tr in fig.data if tr.name.startswith("HBM capacity"))
        assert list(cap.y) == [8.0, 8.0]
        bef = next(tr for tr in fig.data if tr.name.startswith("before"))
        assert max(bef.y) == pytest.approx(11.0)  # GiB, total of the before curve
        assert fig.layout.yaxis.title.text == "HBM (GiB)"

    def test_before_and_after_share_an_op_aligned_axis_and_both_peaks_show(self):
        """The no-offload run takes compute-only time (3 ms here), the plan 6 ms: on the op axis both end at
        op 3, and the y axis reaches above the higher peak (it stopped at 100 GiB under a 105 GiB peak)."""
        after = Curve(np.array([0.0, 2e-3, 4e-3, 6e-3]), {"weight": np.array([2, 5, 3, 0]) * 2**30})
        before = Curve(np.array([0.0, 1e-3, 2e-3, 3e-3]), {"weight": np.array([2, 9, 10.5, 0]) * 2**30})
        align = (figures.op_knots([0.0, 2e-3, 4e-3], 6e-3), figures.op_knots([0.0, 1e-3, 2e-3], 3e-3))
        fig = figures.memory_figure(after, tier="HBM", capacity_bytes=6 * 2**30, before=before, align=align)
        stack = next(tr for tr in fig.data if tr.name == "weight")
        bef = next(tr for tr in fig.data if str(tr.name).startswith("before"))
        assert list(stack.x) == [0.0, 1.0, 2.0, 3.0] and list(bef.x) == [0.0, 1.0, 2.0, 3.0]
        assert fig.layout.xaxis.title.text.startswith("ops run")
        assert fig.layout.yaxis.range[1] > 10.5
        texts = " ".join(str(t) for tr in fig.data for t in (tr.text or ()))
        assert "peak 5 GiB" in texts and "no-offload peak 10.5 GiB" in texts

    def test_dwarfing_no_offload_peak_gets_its_own_panel(self):
        t = np.array([0.0, 1.0, 2.0])
        after = Curve(t, {"weight": np.array([50, 90, 10]) * 2**30})
        before = Curve(t, {"weight": np.array([200, 1200, 0]) * 2**30})
        fig = figures.memory_figure(after, tier="HBM", capacity_bytes=96 * 2**30, before=before)
        bef = next(tr for tr in fig.data if str(tr.name).startswith("before"))
        stack = next(tr for tr in fig.data if tr.name == "weight")
        assert bef.yaxis != stack.yaxis  # two panels, same x
        main_axis = fig.layout["yaxis" + stack.yaxis[1:]]
        assert 90 < main_axis.range[1] < 200  # 96 GiB of HBM is not a sliver of a 1.2 TiB axis

    def test_memory_figure_downsamples_consistently(self):
        n = 50_000
        t = np.linspace(0, 1, n)
        a = np.zeros(n)
        a[12_345] = 7 * 2**30
        w = np.full(n, 2**30)
        fig = figures.memory_figure(Curve(t, {"weight": w, "activation": a}), tier="HBM", max_points=1000)
        act = next(tr for tr in fig.data if tr.name == "activation")
        wt = next(tr for tr in fig.data if tr.name == "weight")
        assert len(act.x) <= 1002 and len(act.x) == len(wt.x)
        assert max(act.y) == pytest.approx(7.0)


class TestCompareAndSweep:
    def test_compare_bars_marks_infeasible(self):
        rows = [
            {"policy": "Tierplan", "feasible": True, "step_time_s": 0.012, "compute_only_time_s": 0.01, "peak_bytes": 6 * 2**30},
            {"policy": "vDNN", "feasible": False, "step_time_s": None, "compute_only_time_s": 0.01, "peak_bytes": None},
        ]
        fig = figures.compare_bars_figure(rows, capacity_bytes=8 * 2**30)
        assert list(fig.data[0].text) == ["12 ms", "infeasible"]
        assert fig.data[1].y[0] == pytest.approx(6.0)

    def test_compare_memory_one_line_per_policy(self):
        t = np.array([0.0, 1.0])
        curves = {"A": Curve(t, {"weight": np.array([1, 2]) * 2**30}), "B": Curve(t, {"weight": np.array([3, 1]) * 2**30})}
        fig = figures.compare_memory_figure(curves, tier="HBM", capacity_bytes=4 * 2**30)
        assert [tr.name for tr in fig.data] == ["A", "B"]
        assert max(fig.data[1].y) == pytest.approx(3.0)

    def test_sweep_figure_separates_infeasible(self):
        pts = [SimpleNamespace(capacity_bytes=c * 2**30, step_time_s=s, slowdown=d, feasible=f, message=m)
               for c, s, d, f, m in [(4, 0, 0, False, "too small"), (8, 0.02, 1.0, True, ""), (16, 0.01, 0.0, True, "")]]
        fig = figures.sweep_figure(pts, compute_only_time_s=0.01, max_slowdown=0.05, min_capacity_bytes=16 * 2**30)
        assert list(fig.data[0].x) == [8.0, 16.0]
        assert list(fig.data[0].y) == [20.0, 10.0]
        assert fig.data[1].name == "infeasible" and list(fig.data[1].text) == ["too small"]

    def test_heatmap_marks_missing_cells(self):
        z = [[0.1, 0.0], [float("nan"), 0.5]]  # [capacity][bandwidth]
        fig = figures.heatmap_figure([8 * 2**30, 16 * 2**30], [32e9, 64e9], z)
        hm = fig.data[0]
        assert hm.text[0][1] == "✕" and hm.text[1][1] == "50.0"
        assert list(hm.y) == ["32 GB/s", "64 GB/s"]


def _chain_graph(layers: int) -> Graph:
    tensors = [Tensor("x", 1024, "input", False)]
    ops = []
    prev = "x"
    for k in range(layers):
        w = f"w{k}"
        tensors.append(Tensor(w, 4096, "weight", True))
        for part, cat in (("attn", "attention"), ("mlp", "mlp")):
            out = f"a{k}.{part}"
            tensors.append(Tensor(out, 2048, "activation", False))
            ops.append(Op(f"l{k}.{part}", (prev, w), (out,), time_s=1e-4, category=cat, layer=f"layers.{k}", phase="forward"))
            prev = out
    return Graph("chain", tuple(tensors), tuple(ops))


class TestGraphStructure:
    def test_op_level_for_small_graphs(self):
        g = _chain_graph(3)
        fig, collapsed = figures.graph_structure_figure(g)
        assert not collapsed
        nodes = sum(len(t.x) for t in fig.data[1:])
        assert nodes == 6

    def test_collapses_to_layers_when_large(self):
        g = _chain_graph(200)
        fig, collapsed = figures.graph_structure_figure(g, max_ops=100)
        assert collapsed
        assert sum(len(t.x) for t in fig.data[1:]) == 200
        dg = figures.collapse_graph(g, collapse=True)
        assert dg.nodes["layers.0 · forward"]["ops"] == 2
        assert dg.has_edge("layers.0 · forward", "layers.1 · forward")

    def test_bytes_by_kind_figure(self):
        fig = figures.bytes_by_kind_figure({"weight": 2**31, "activation": 2**30, "gradient": 0})
        assert list(fig.data[0].y) == ["activation", "weight"]
        assert list(fig.data[0].text) == ["1 GiB", "2 GiB"]


def test_heatmap_never_prints_negative_zero():
    fig = figures.heatmap_figure([2**30, 2**31], [1e9], [[-1e-5], [0.5]])
    assert "-0.0" not in list(np.asarray(fig.data[0].text).ravel())
    assert list(np.asarray(fig.data[0].text).ravel()) == ["0.0", "50.0"]


def test_collapsed_layers_coloured_by_the_work_they_do():
    g = Graph("g", (Tensor("x", 8, "input", False), Tensor("a", 8, "activation", False),
                   Tensor("b", 8, "activation", False), Tensor("c", 8, "activation", False)),
              (Op("n1", ("x",), ("a",), flops=1e3, category="norm", layer="L0"),
               Op("n2", ("a",), ("b",), flops=1e3, category="norm", layer="L0"),
               Op("mm", ("b",), ("c",), flops=1e12, category="matmul", layer="L0")))
    collapsed = figures.collapse_graph(g, collapse=True)
    assert collapsed.nodes["L0"]["category"] == "matmul"


def test_residency_of_one_tensor_from_the_events():
    from core.plan import ComputeEvent, Decision, FreeEvent, Plan, TransferEvent
    from ui import residency

    g = Graph("g", (Tensor("w", 8, "weight", True), Tensor("y", 8, "activation", False)),
              (Op("f", ("w",), ("y",), time_s=1.0), Op("g", ("y", "w"), (), time_s=1.0)))
    events = (ComputeEvent("f", 0.0, 1.0, "HBM"), TransferEvent("w", "HBM", "DDR", 1.0, 1.5), FreeEvent("w", "HBM", 1.5),
              TransferEvent("w", "DDR", "HBM", 2.0, 2.5), ComputeEvent("g", 3.0, 4.0, "HBM"), FreeEvent("y", "HBM", 4.0))
    plan = Plan("g", "hand", {}, {"w": ("HBM",)}, events, (Decision("w", 0, 1, "offload", "DDR", reason="idle"),),
                {"step_time_s": 4.0})
    res = residency.residency(g, plan, "w")
    assert [(iv.tier, iv.start_s, iv.end_s, iv.how) for iv in res.intervals] == [
        ("HBM", 0.0, 1.5, "at step start"), ("DDR", 1.0, 4.0, "copied from HBM"), ("HBM", 2.0, 4.0, "copied from DDR")]
    assert res.uses == (("f", "HBM", 0.0), ("g", "HBM", 3.0)) and len(res.copies) == 2
    assert residency.moved_tensors(plan) == ["w"]
    y = residency.residency(g, plan, "y")
    assert [(iv.tier, iv.start_s, iv.end_s, iv.how) for iv in y.intervals] == [("HBM", 0.0, 4.0, "made by f")]
    fig = figures.residency_figure(res, tiers=["HBM", "DDR"], kind="weight")
    lives = next(t for t in fig.data if t.name == "lives here")
    rows = dict(zip(fig.layout.yaxis.ticktext, fig.layout.yaxis.tickvals))
    assert list(lives.y) == [rows["HBM"], rows["DDR"], rows["HBM"]] and rows["HBM"] > rows["DDR"]


def test_compare_one_colour_per_policy_and_labels_clear_of_reference_lines():
    """The bars and the occupancy curves give a policy the same colour even when another policy in between
    is infeasible (colours went by position); bar labels sit inside the bars and the "capacity" and
    "compute only" labels at the right above their lines, so "80 GiB" no longer lands on "capacity"."""
    rows = [
        {"policy": "Tierplan (cost model)", "feasible": True, "step_time_s": 0.012, "compute_only_time_s": 0.01,
         "peak_bytes": 8 * 2**30},
        {"policy": "No offload", "feasible": False, "step_time_s": None, "compute_only_time_s": 0.01, "peak_bytes": None},
        {"policy": "vDNN (offload forward activations)", "feasible": True, "step_time_s": 0.02,
         "compute_only_time_s": 0.01, "peak_bytes": 7 * 2**30},
    ]
    bars = figures.compare_bars_figure(rows, capacity_bytes=8 * 2**30)
    t = np.array([0.0, 1.0])
    curves = {r["policy"]: Curve(t, {"weight": np.array([1, 2]) * 2**30}) for r in rows if r["feasible"]}
    mem = figures.compare_memory_figure(curves, tier="HBM", capacity_bytes=8 * 2**30)
    bar_colour = dict(zip(bars.data[0].x, bars.data[0].marker.color))
    for trace in mem.data:
        assert trace.line.color == bar_colour[trace.name]
    assert bar_colour["Tierplan (cost model)"] == figures.POLICY_COLORS["tierplan"]
    assert all(tr.textposition == "inside" for tr in bars.data)
    assert {a.text: a.xanchor for a in bars.layout.annotations if a.text in ("capacity", "compute only")} == {
        "capacity": "right", "compute only": "right"}
