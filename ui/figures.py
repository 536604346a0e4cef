"""Plotly figure builders shared by the dashboard pages and the HTML report.

Pure functions from plain data (stream timelines, occupancy curves, sweep points, a graph) to
``plotly.graph_objects.Figure``; no Streamlit here, so they are unit-tested and reused by the report.
Conventions: time on a numeric axis in one human unit chosen per figure (never ``px.timeline``, which forces
dates and rounds to milliseconds), memory in binary units, one colour per tensor kind and per op category
everywhere, and a fixed ``uirevision`` so a user's zoom survives Streamlit reruns.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import networkx as nx
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.units import format_bandwidth, format_bytes, format_time
from ui.palette import CATEGORY_COLORS, KIND_COLORS, POLICY_COLORS, color_for, policy_color

__all__ = [
    "KIND_COLORS",
    "CATEGORY_COLORS",
    "BAR_LIMIT",
    "color_for",
    "policy_color",
    "time_scale",
    "byte_scale",
    "peak_indices",
    "op_knots",
    "schedule_figure",
    "memory_figure",
    "residency_figure",
    "compare_bars_figure",
    "compare_memory_figure",
    "sweep_figure",
    "heatmap_figure",
    "bytes_by_kind_figure",
    "graph_structure_figure",
    "collapse_graph",
    "dark",
    "DARK_TEMPLATE",
]

_POLICY_PALETTE = tuple(POLICY_COLORS.values())
HIGHLIGHT_COLOR = "#D62728"
CAPACITY_COLOR = "#C0392B"
BEFORE_COLOR = "#7F7F7F"
#: Above this many events the schedule switches from ``go.Bar`` to WebGL line segments.
BAR_LIMIT = 3000
_FONT = {"family": "Inter, Segoe UI, Helvetica, Arial, sans-serif", "size": 13}
_GRID = "#E6E9EE"
#: A small template of our own: assigning plotly's full "plotly_white" costs ~50 ms per figure, which is
#: most of a rerun's budget; this one is a handful of attributes.
_TEMPLATE = go.layout.Template(layout={
    "paper_bgcolor": "white", "plot_bgcolor": "white", "colorway": list(_POLICY_PALETTE),
    "xaxis": {"gridcolor": _GRID, "linecolor": "#B8C0CC", "zerolinecolor": _GRID, "ticks": "outside",
              "tickcolor": "#B8C0CC", "automargin": True, "title": {"standoff": 8}},
    "yaxis": {"gridcolor": _GRID, "linecolor": "#B8C0CC", "zerolinecolor": _GRID, "automargin": True,
              "title": {"standoff": 8}},
    "hoverlabel": {"font": {"family": _FONT["family"]}},
})


_DARK_GRID = "#343B46"
#: The dark counterpart of the template (dark mode follows the browser's theme; see ui/view.py).
DARK_TEMPLATE = go.layout.Template(layout={
    "paper_bgcolor": "#14171C", "plot_bgcolor": "#14171C", "colorway": list(_POLICY_PALETTE),
    "font": {"color": "#E4E7EB"},
    "xaxis": {"gridcolor": _DARK_GRID, "linecolor": "#5B6573", "zerolinecolor": _DARK_GRID, "ticks": "outside",
              "tickcolor": "#5B6573", "automargin": True, "title": {"standoff": 8}},
    "yaxis": {"gridcolor": _DARK_GRID, "linecolor": "#5B6573", "zerolinecolor": _DARK_GRID, "automargin": True,
              "title": {"standoff": 8}},
    "hoverlabel": {"font": {"family": _FONT["family"]}},
})


def dark(fig: go.Figure) -> go.Figure:
    """The same figure on a dark background (template, and the few colours set outside it)."""
    fig.update_layout(template=DARK_TEMPLATE, paper_bgcolor="#14171C", plot_bgcolor="#14171C",
                      font={"color": "#E4E7EB"})
    fig.update_xaxes(gridcolor=_DARK_GRID, linecolor="#5B6573")
    fig.update_yaxes(gridcolor=_DARK_GRID, linecolor="#5B6573")
    return fig


class StreamLike(Protocol):
    name: str
    kind: str
    starts_s: Any
    ends_s: Any
    labels: Sequence[str]
    categories: Sequence[str]


class CurveLike(Protocol):
    times_s: Any
    bytes_by_kind: Mapping[str, Any]


def _pretty(name: str) -> str:
    return name.replace("_", " ")


def time_scale(max_s: float) -> tuple[float, str]:
    """Factor and unit so that ``max_s`` reads as a number between 1 and 1000 (s, ms, µs, ns)."""
    for factor, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "µs")):
        if max_s * factor >= 1:
            return factor, unit
    return 1e9, "ns"


def byte_scale(max_bytes: float) -> tuple[float, str]:
    """Divisor and binary unit for an axis whose largest value is ``max_bytes``."""
    for divisor, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if max_bytes >= divisor:
            return float(divisor), unit
    return 1.0, "B"


def _base_layout(fig: go.Figure, *, title: str | None, height: int, uirevision: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"} if title else None,
        height=height,
        margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 10},
        font=_FONT,
        template=_TEMPLATE,
        uirevision=uirevision,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
        hoverlabel={"namelength": -1},
    )
    return fig


# ---------------------------------------------------------------------------------------------- schedule


def schedule_figure(
    streams: Sequence[StreamLike],
    *,
    highlight: Sequence[tuple[str, float, float]] = (),
    bar_limit: int = BAR_LIMIT,
    time_unit: tuple[float, str] | None = None,
    title: str | None = None,
    uirevision: str = "schedule",
) -> go.Figure:
    """A Gantt chart: one row per stream (compute on top, then each link), events coloured by category.

    Traces are per (stream, category), never per event: up to ``bar_limit`` events they are ``go.Bar`` with
    ``base`` on a numeric time axis; beyond, ``go.Scattergl`` line segments (x = start, end, gap), which
    stay responsive at 10⁵ events. ``highlight`` lists (stream name, start s, end s) to outline, e.g. the
    transfers of a tensor selected in the decisions table.

    Rows sit at y = n-1 … 0 on an ordinary (not reversed) axis: Streamlit's plotly.js draws every WebGL
    trace of a reversed axis on the last row only, which left big schedules blank in the page. The y axis
    is fixed (zoom is along time only). Two legends: op categories of the compute rows, and the tensor
    kinds that move on the links, each with its own colours.
    """
    fig = go.Figure()
    total = sum(len(s.starts_s) for s in streams)
    t_max = max((float(np.max(s.ends_s)) for s in streams if len(s.ends_s)), default=0.0)
    factor, unit = time_unit or time_scale(t_max)
    use_bars = total <= bar_limit
    n_rows = len(streams)
    y_of = {s.name: n_rows - 1 - k for k, s in enumerate(streams)}
    height = max(240, 130 + 46 * n_rows)
    line_px = max(6, min(28, int((height - 130) / max(1, n_rows) * 0.62)))
    legend_done: set[tuple[str, str]] = set()
    for stream in streams:
        row = y_of[stream.name]
        starts = np.asarray(stream.starts_s, dtype=float) * factor
        ends = np.asarray(stream.ends_s, dtype=float) * factor
        if not len(starts):
            continue
        cats = np.asarray(stream.categories, dtype=object)
        labels = np.asarray(stream.labels, dtype=object)
        group = "ops" if stream.kind == "compute" else "tensors"
        for cat in dict.fromkeys(cats.tolist()):
            mask = cats == cat
            color = CATEGORY_COLORS.get(str(cat), CATEGORY_COLORS["other"]) if group == "ops" else color_for(str(cat))
            show = (group, cat) not in legend_done
            legend_done.add((group, cat))
            common: dict[str, Any] = {"name": _pretty(str(cat)), "legendgroup": f"{group}:{cat}", "showlegend": show,
                                      "legend": "legend" if group == "ops" else "legend2"}
            if use_bars:
                dur = ends[mask] - starts[mask]
                fig.add_trace(go.Bar(
                    x=dur, base=starts[mask], y=np.full(int(mask.sum()), row, dtype=np.int32), orientation="h",
                    width=0.72, marker={"color": color, "line": {"width": 0}},
                    customdata=np.column_stack([labels[mask], starts[mask], dur]),
                    hovertemplate=(
                        f"<b>%{{customdata[0]}}</b><br>{stream.name}<br>start %{{customdata[1]:.4g}} {unit}"
                        f"<br>duration %{{customdata[2]:.4g}} {unit}<extra>{_pretty(str(cat))}</extra>"
                    ),
                    **common,
                ))
            else:
                n = int(mask.sum())
                xs = np.full(3 * n, np.nan)
                xs[0::3], xs[1::3] = starts[mask], ends[mask]
                ys = np.full(3 * n, np.nan)
                ys[0::3] = ys[1::3] = row
                text = np.empty(3 * n, dtype=object)
                text[0::3] = text[1::3] = labels[mask]
                fig.add_trace(go.Scattergl(
                    x=xs, y=ys, mode="lines", line={"color": color, "width": line_px}, connectgaps=False,
                    text=text, hovertemplate=f"<b>%{{text}}</b><br>%{{x:.4g}} {unit}<extra>{stream.name}</extra>",
                    **common,
                ))
    if highlight:
        rows = [(y_of[name], s * factor, e * factor) for name, s, e in highlight if name in y_of]
        if rows:
            fig.add_trace(go.Bar(
                x=[e - s for _, s, e in rows], base=[s for _, s, _ in rows], y=[r for r, _, _ in rows],
                orientation="h", width=0.95, name="selected", legendgroup="selected", legend="legend2",
                marker={"color": "rgba(214,39,40,0.25)", "line": {"color": HIGHLIGHT_COLOR, "width": 2.5}},
                hovertemplate=f"selected tensor<br>%{{base:.4g}} {unit} + %{{x:.4g}} {unit}<extra></extra>",
            ))
    fig.update_layout(barmode="overlay", bargap=0.1)
    fig.update_yaxes(
        tickvals=[y_of[s.name] for s in streams], ticktext=[s.name for s in streams],
        range=[-0.5, n_rows - 0.5], autorange=False, fixedrange=True, showgrid=False, zeroline=False,
    )
    fig.update_xaxes(title_text=f"time ({unit})", rangemode="tozero", showgrid=True)
    _base_layout(fig, title=title, height=height, uirevision=uirevision)
    legend_font = {"size": 12}
    fig.update_layout(
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0, "font": legend_font,
                "title": {"text": "ops:"}, "groupclick": "togglegroup"},
        legend2={"orientation": "h", "yanchor": "top", "y": -0.28 if n_rows < 4 else -0.18, "xanchor": "left", "x": 0,
                 "font": legend_font, "title": {"text": "tensors moved:"}, "groupclick": "togglegroup"},
    )
    return fig


# ---------------------------------------------------------------------------------------------- memory


def peak_indices(total: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ~``max_points`` samples keeping the maximum of each bucket (and both ends).

    Used on the *total* of a stacked step curve so that every kind is sampled at the same instants: the
    stack stays consistent and no peak disappears when 10⁵ steps are drawn with 2·10³ points.
    """
    n = len(total)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points - 2)
    edges = np.linspace(1, n - 1, buckets + 1).astype(int)
    picks = [0]
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            picks.append(lo + int(np.argmax(total[lo:hi])))
    picks.append(n - 1)
    return np.unique(np.asarray(picks))


def _curve_total(curve: CurveLike) -> np.ndarray:
    arrays = [np.asarray(v, dtype=float) for v in curve.bytes_by_kind.values()]
    if not arrays:
        return np.zeros(len(curve.times_s))
    return np.sum(arrays, axis=0)


def op_knots(starts_s: Sequence[float], end_s: float) -> np.ndarray:
    """Knots of the op-aligned axis: the sorted start times of the ops of one step, then its end.

    ``np.interp(t, knots, arange(len(knots)))`` turns a time into "ops started so far" (fractional inside
    an op), so a plan and the no-offload run, which take different times for the same ops, line up op by
    op on one axis."""
    knots = np.sort(np.asarray(starts_s, dtype=float))
    return np.concatenate((knots, [max(float(end_s), float(knots[-1]) if len(knots) else 0.0)]))


def alignment(graph: Any, hardware: Any, plan: Any) -> tuple[np.ndarray, np.ndarray]:
    """Knots of the op-aligned axis for ``plan`` and for the no-offload run of ``graph`` on ``hardware``
    (ops back to back in list order on the compute tier), for :func:`memory_figure`'s ``align``."""
    from core.hardware import op_time_s
    from core.plan import ComputeEvent

    starts = [e.start for e in plan.events if isinstance(e, ComputeEvent) and not e.recompute]
    ours = op_knots(starts, float(plan.metrics.get("step_time_s", max(starts, default=0.0))))
    times = np.array([op_time_s(op, hardware.compute) for op in graph.ops], dtype=float)
    cum = np.concatenate(([0.0], np.cumsum(times)))
    return ours, op_knots(cum[:-1], float(cum[-1]))


def _to_ops(times: np.ndarray, knots: np.ndarray) -> np.ndarray:
    if len(knots) < 2:
        return times
    return np.interp(times, knots, np.arange(len(knots), dtype=float))


def memory_figure(
    curve: CurveLike,
    *,
    tier: str,
    capacity_bytes: int | None = None,
    before: CurveLike | None = None,
    align: tuple[np.ndarray, np.ndarray | None] | None = None,
    max_points: int = 2000,
    time_unit: tuple[float, str] | None = None,
    title: str | None = None,
    uirevision: str = "memory",
) -> go.Figure:
    """Occupancy of one tier over the step, stacked by tensor kind, with its capacity and the no-offload
    ("before") total for comparison. Step lines (``hv``); downsampled keeping per-bucket peaks.

    ``align`` = (knots of the plan, knots of the no-offload run) from :func:`op_knots` puts both curves on
    one op-aligned x axis (the no-offload run takes compute-only time, the plan longer, so on a time axis
    they did not line up). The y axis always reaches above both peaks, which are marked; when the no-offload
    peak dwarfs the plan (a 1.2 TiB model on 96 GiB of HBM) it gets its own panel above, on the same x."""
    times = np.asarray(curve.times_s, dtype=float)
    total = _curve_total(curve)
    before_times = np.asarray(before.times_s, dtype=float) if before is not None else np.zeros(0)
    before_total = _curve_total(before) if before is not None else np.zeros(0)
    t_max = max(float(times.max(initial=0.0)), float(before_times.max(initial=0.0)))
    factor, unit = time_unit or time_scale(t_max)
    peak_after = float(total.max(initial=0.0))
    peak_before = float(before_total.max(initial=0.0))
    top = max(peak_after, float(capacity_bytes or 0))
    split = before is not None and peak_before > 3.0 * max(top, 1.0)
    peak = max(top, 0.0 if split else peak_before)
    divisor, bunit = byte_scale(peak)
    by_ops = align is not None and (before is None or align[1] is not None)
    idx = peak_indices(total, max_points)
    x = _to_ops(times[idx], align[0]) if by_ops else times[idx] * factor
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.3, 0.7], vertical_spacing=0.08) if split \
        else go.Figure()
    main = {"row": 2, "col": 1} if split else {}
    hover_t = (f"op %{{x:.1f}} · %{{customdata:.4g}} {unit}" if by_ops else f"%{{x:.4g}} {unit}")
    custom = times[idx] * factor if by_ops else None
    order = [k for k in KIND_COLORS if k in curve.bytes_by_kind] + [k for k in curve.bytes_by_kind if k not in KIND_COLORS]
    for kind in order:
        values = np.asarray(curve.bytes_by_kind[kind], dtype=float)
        if not values.any():
            continue
        fig.add_trace(go.Scatter(
            x=x, y=values[idx] / divisor, name=_pretty(kind), mode="lines", stackgroup="after",
            line={"shape": "hv", "width": 0.5, "color": color_for(kind)}, legendgroup=kind, customdata=custom,
            hovertemplate=f"{_pretty(kind)}: %{{y:.4g}} {bunit}<br>{hover_t}<extra></extra>",
        ), **main)
    x_end = float(x.max(initial=0.0))
    if peak_after > 0:
        k = int(np.argmax(total[idx]))
        fig.add_trace(go.Scatter(
            x=[x[k]], y=[total[idx][k] / divisor], mode="markers+text", name=f"peak {format_bytes(peak_after)}",
            marker={"color": "#222", "size": 8, "symbol": "diamond"}, text=[f"peak {format_bytes(peak_after)}"],
            textposition="top center", showlegend=False, hoverinfo="skip", cliponaxis=False,
        ), **main)
    if before is not None and len(before_total):
        bdiv = byte_scale(peak_before)[0] if split else divisor
        bunit_b = byte_scale(peak_before)[1] if split else bunit
        bidx = peak_indices(before_total, max_points)
        bx = _to_ops(before_times[bidx], align[1]) if by_ops and align[1] is not None else before_times[bidx] * factor
        x_end = max(x_end, float(bx.max(initial=0.0)))
        brow = {"row": 1, "col": 1} if split else {}
        fig.add_trace(go.Scatter(
            x=bx, y=before_total[bidx] / bdiv, name=f"before offload (all in {tier})",
            mode="lines", line={"shape": "hv", "dash": "dot", "color": BEFORE_COLOR, "width": 2},
            customdata=before_times[bidx] * factor if by_ops else None,
            hovertemplate=f"before offload: %{{y:.4g}} {bunit_b}<br>{hover_t}<extra></extra>",
        ), **brow)
        kb = int(np.argmax(before_total[bidx]))
        fig.add_trace(go.Scatter(
            x=[bx[kb]], y=[before_total[bidx][kb] / bdiv], mode="markers+text", name="no-offload peak",
            marker={"color": BEFORE_COLOR, "size": 8, "symbol": "diamond"}, showlegend=False, hoverinfo="skip",
            text=[f"no-offload peak {format_bytes(peak_before)}"], textposition="top center", cliponaxis=False,
        ), **brow)
        if split:
            fig.update_yaxes(title_text=f"before ({bunit_b})", rangemode="tozero", row=1, col=1,
                             range=[0, peak_before / bdiv * 1.25])
    if capacity_bytes:
        x_end = max(x_end, t_max * factor if not by_ops else x_end)
        fig.add_trace(go.Scatter(
            x=[0, x_end], y=[capacity_bytes / divisor] * 2, mode="lines", name=f"{tier} capacity {format_bytes(capacity_bytes)}",
            line={"color": CAPACITY_COLOR, "dash": "dash", "width": 2}, hoverinfo="skip",
        ), **main)
    aligned = "; both curves aligned op by op" if before is not None else ""
    xtitle = (f"ops run (of {len(align[0]) - 1:,}{aligned})" if by_ops and align is not None else f"time ({unit})")
    fig.update_xaxes(title_text=xtitle, rangemode="tozero", **main)
    fig.update_yaxes(title_text=f"{tier} ({bunit})", rangemode="tozero", range=[0, peak / divisor * 1.18 if peak else 1],
                     **main)
    return _base_layout(fig, title=title, height=420 if split else 360, uirevision=uirevision)


def residency_figure(res: Any, *, tiers: Sequence[str], kind: str = "activation",
                     time_unit: tuple[float, str] | None = None, uirevision: str = "residency") -> go.Figure:
    """One tensor over the step (a :class:`ui.residency.Residency`): a bar per tier while it has a copy
    there (hover: how it got there), the copies between tiers as outlined bars, and a mark at each op that
    reads or updates it. Rows top to bottom in ``tiers`` order, on a plain axis like the schedule."""
    factor, unit = time_unit or time_scale(float(res.step_s))
    n = len(tiers)
    y_of = {t: n - 1 - k for k, t in enumerate(tiers)}
    fig = go.Figure()
    ivs = [iv for iv in res.intervals if iv.tier in y_of]
    if ivs:
        fig.add_trace(go.Bar(
            x=[(iv.end_s - iv.start_s) * factor for iv in ivs], base=[iv.start_s * factor for iv in ivs],
            y=[y_of[iv.tier] for iv in ivs], orientation="h", width=0.55, name="lives here",
            marker={"color": color_for(kind), "line": {"width": 0}},
            customdata=[[iv.tier, iv.how, iv.start_s * factor, iv.end_s * factor] for iv in ivs],
            hovertemplate=(f"in %{{customdata[0]}} from %{{customdata[2]:.4g}} to %{{customdata[3]:.4g}} {unit}"
                           "<br>%{customdata[1]}<extra></extra>"),
        ))
    copies = [c for c in res.copies if c[1] in y_of]
    if copies:
        fig.add_trace(go.Bar(
            x=[(e - s) * factor for _, _, s, e in copies], base=[s * factor for _, _, s, _ in copies],
            y=[y_of[d] for _, d, _, _ in copies], orientation="h", width=0.85, name="copy arriving",
            marker={"color": "rgba(0,0,0,0)", "line": {"color": HIGHLIGHT_COLOR, "width": 2}},
            customdata=[[s_, d, s * factor, e * factor] for s_, d, s, e in copies],
            hovertemplate=(f"copy %{{customdata[0]}} → %{{customdata[1]}}<br>%{{customdata[2]:.4g}}–"
                           f"%{{customdata[3]:.4g}} {unit}<extra></extra>"),
        ))
    uses = [u for u in res.uses if u[1] in y_of]
    if uses:
        fig.add_trace(go.Scatter(
            x=[t * factor for _, _, t in uses], y=[y_of[tier] + 0.42 for _, tier, _ in uses], mode="markers",
            name="read or updated by an op", marker={"symbol": "triangle-down", "size": 11, "color": "#222"},
            text=[op for op, _, _ in uses], hovertemplate=f"%{{text}} uses it at %{{x:.4g}} {unit}<extra></extra>",
        ))
    fig.update_layout(barmode="overlay")
    fig.update_yaxes(tickvals=[y_of[t] for t in tiers], ticktext=list(tiers), range=[-0.6, n - 0.4],
                     autorange=False, fixedrange=True, showgrid=False, zeroline=False)
    fig.update_xaxes(title_text=f"time ({unit})", range=[0, float(res.step_s) * factor * 1.01 or 1])
    return _base_layout(fig, title=None, height=max(200, 110 + 50 * n), uirevision=uirevision)


# ---------------------------------------------------------------------------------------------- compare


def compare_bars_figure(rows: Sequence[Mapping[str, Any]], *, capacity_bytes: int | None = None) -> go.Figure:
    """Step time and peak compute-tier memory per policy. ``rows`` hold ``policy`` (title), ``feasible``,
    ``step_time_s``, ``compute_only_time_s`` and ``peak_bytes``; infeasible policies get a note, not a bar."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Step time", "Peak memory in the compute tier"), horizontal_spacing=0.12)
    names = [str(r["policy"]) for r in rows]
    times = [float(r["step_time_s"]) if r.get("feasible") else 0.0 for r in rows]
    peaks = [float(r["peak_bytes"]) if r.get("feasible") else 0.0 for r in rows]
    tf, tunit = time_scale(max(times, default=0.0))
    divisor, bunit = byte_scale(max([*peaks, float(capacity_bytes or 0)], default=0.0))
    colors = [policy_color(name) for name in names]
    text_t = [format_time(t) if r.get("feasible") else "infeasible" for t, r in zip(times, rows)]
    text_p = [format_bytes(p) if r.get("feasible") else "infeasible" for p, r in zip(peaks, rows)]
    # Labels inside the bars (at their top) and the reference lines' labels at the right, above the line:
    # an "80 GiB" label outside a bar used to sit on top of the "capacity" annotation.
    bar = {"textposition": "inside", "insidetextanchor": "end", "textangle": 0, "cliponaxis": False,
           "showlegend": False}
    fig.add_trace(go.Bar(x=names, y=[t * tf for t in times], marker_color=colors, text=text_t,
                         hovertemplate=f"%{{x}}: %{{y:.4g}} {tunit}<extra></extra>", **bar), 1, 1)
    fig.add_trace(go.Bar(x=names, y=[p / divisor for p in peaks], marker_color=colors, text=text_p,
                         hovertemplate=f"%{{x}}: %{{y:.4g}} {bunit}<extra></extra>", **bar), 1, 2)
    compute_only = [float(r["compute_only_time_s"]) for r in rows if r.get("compute_only_time_s")]
    if compute_only:
        fig.add_hline(y=compute_only[0] * tf, line_dash="dot", line_color=BEFORE_COLOR, row=1, col=1,
                      annotation_text="compute only", annotation_position="top right")
    if capacity_bytes:
        fig.add_hline(y=capacity_bytes / divisor, line_dash="dash", line_color=CAPACITY_COLOR, row=1, col=2,
                      annotation_text="capacity", annotation_position="top right")
    fig.update_yaxes(title_text=f"time ({tunit})", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text=bunit, row=1, col=2, rangemode="tozero")
    fig.update_yaxes(range=[0, max(times, default=1) * tf * 1.2 or 1], row=1, col=1)
    fig.update_yaxes(range=[0, max([*peaks, float(capacity_bytes or 0)], default=1) / divisor * 1.2 or 1], row=1, col=2)
    return _base_layout(fig, title=None, height=380, uirevision="compare-bars")


def compare_memory_figure(
    curves: Mapping[str, CurveLike], *, tier: str, capacity_bytes: int | None = None, max_points: int = 1500,
    colors: Mapping[str, str] | None = None, capacities: Mapping[str, int] | None = None,
) -> go.Figure:
    """Total occupancy of the compute tier for each policy (or each setting of an A/B comparison, with
    ``colors`` and each setting's own capacity in ``capacities``), overlaid (step lines)."""
    fig = go.Figure()
    totals = {name: (np.asarray(c.times_s, dtype=float), _curve_total(c)) for name, c in curves.items()}
    t_max = max((float(t.max(initial=0.0)) for t, _ in totals.values()), default=0.0)
    peak = max([float(v.max(initial=0.0)) for _, v in totals.values()] + [float(capacity_bytes or 0)])
    factor, unit = time_scale(t_max)
    divisor, bunit = byte_scale(peak)
    for name, (times, total) in totals.items():
        idx = peak_indices(total, max_points)
        fig.add_trace(go.Scatter(
            x=times[idx] * factor, y=total[idx] / divisor, name=name, mode="lines",
            line={"shape": "hv", "color": (colors or {}).get(name) or policy_color(name), "width": 2},
            hovertemplate=f"{name}: %{{y:.4g}} {bunit} at %{{x:.4g}} {unit}<extra></extra>",
        ))
    if capacity_bytes and not capacities:
        fig.add_hline(y=capacity_bytes / divisor, line_dash="dash", line_color=CAPACITY_COLOR,
                      annotation_text=f"{tier} capacity", annotation_position="top left")
    for name, cap in (capacities or {}).items():
        fig.add_hline(y=cap / divisor, line_dash="dash", line_color=(colors or {}).get(name) or CAPACITY_COLOR,
                      annotation_text=f"{name}: {tier} capacity {format_bytes(cap)}", annotation_position="top left")
    top = max([peak, *[float(c) for c in (capacities or {}).values()]]) / divisor
    fig.update_xaxes(title_text=f"time ({unit})", rangemode="tozero")
    fig.update_yaxes(title_text=f"{tier} ({bunit})", range=[0, top * 1.15 or 1])
    return _base_layout(fig, title=None, height=360, uirevision="compare-memory")


# ---------------------------------------------------------------------------------------------- what-if


def sweep_figure(
    points: Sequence[Any],
    *,
    compute_only_time_s: float | None = None,
    max_slowdown: float | None = None,
    min_capacity_bytes: int | None = None,
    current_capacity_bytes: int | None = None,
    tier: str = "HBM",
) -> go.Figure:
    """Step time against the compute tier's capacity (points: ``capacity_bytes``, ``step_time_s``,
    ``feasible``, ``message``); infeasible capacities are marked on the axis with their message."""
    fig = go.Figure()
    caps = np.asarray([p.capacity_bytes for p in points], dtype=float)
    divisor, bunit = byte_scale(float(caps.max(initial=0.0)))
    ok = [p for p in points if p.feasible]
    bad = [p for p in points if not p.feasible]
    times = [p.step_time_s for p in ok]
    factor, unit = time_scale(max(times, default=compute_only_time_s or 0.0))
    fig.add_trace(go.Scatter(
        x=[p.capacity_bytes / divisor for p in ok], y=[p.step_time_s * factor for p in ok], mode="lines+markers",
        name="step time", line={"color": POLICY_COLORS["tierplan"], "width": 2.5},
        customdata=[f"{p.slowdown * 100:.1f} %" for p in ok],
        hovertemplate=f"%{{x:.4g}} {bunit}: %{{y:.4g}} {unit} (slowdown %{{customdata}})<extra></extra>",
    ))
    if bad:
        fig.add_trace(go.Scatter(
            x=[p.capacity_bytes / divisor for p in bad], y=[0.0] * len(bad), mode="markers", name="infeasible",
            marker={"symbol": "x", "size": 10, "color": CAPACITY_COLOR}, text=[p.message for p in bad],
            hovertemplate=f"%{{x:.4g}} {bunit}: infeasible<br>%{{text}}<extra></extra>",
        ))
    if compute_only_time_s:
        fig.add_hline(y=compute_only_time_s * factor, line_dash="dot", line_color=BEFORE_COLOR,
                      annotation_text="compute only", annotation_position="bottom right")
        if max_slowdown is not None:
            fig.add_hline(y=compute_only_time_s * (1 + max_slowdown) * factor, line_dash="dash", line_color="#2CA02C",
                          annotation_text=f"+{max_slowdown * 100:g} % budget", annotation_position="top right")
    if min_capacity_bytes:
        fig.add_vline(x=min_capacity_bytes / divisor, line_dash="dash", line_color="#2CA02C",
                      annotation_text=f"smallest {tier}: {format_bytes(min_capacity_bytes)}", annotation_position="top left")
    if current_capacity_bytes:
        fig.add_vline(x=current_capacity_bytes / divisor, line_dash="dot", line_color=BEFORE_COLOR,
                      annotation_text="current", annotation_position="bottom left")
    fig.update_xaxes(title_text=f"{tier} capacity ({bunit})")
    fig.update_yaxes(title_text=f"step time ({unit})", rangemode="tozero")
    return _base_layout(fig, title=None, height=380, uirevision="sweep")


def heatmap_figure(
    capacities_bytes: Sequence[float],
    bandwidths_Bps: Sequence[float],
    slowdown: Any,
    *,
    tier: str = "HBM",
    link: str = "host link",
) -> go.Figure:
    """Slowdown (%) over capacity (x) × link bandwidth (y); ``slowdown[i][j]`` for capacity i and bandwidth j
    (as :class:`core.sweep.Heatmap`), ``nan`` where no plan exists (drawn blank and marked ✕)."""
    z = np.round(np.asarray(slowdown, dtype=float).T * 100.0, 1) + 0.0  # + 0.0: no "-0.0" cells
    divisor, bunit = byte_scale(float(max(capacities_bytes, default=0)))
    xs = [f"{c / divisor:.3g}" for c in capacities_bytes]
    ys = [format_bandwidth(b) for b in bandwidths_Bps]
    text = np.where(np.isnan(z), "✕", np.char.mod("%.1f", np.nan_to_num(z)))
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, text=text, texttemplate="%{text}", colorscale="YlOrRd", zmin=0,
        colorbar={"title": {"text": "slowdown %"}}, hoverongaps=True,
        hovertemplate=f"{tier} %{{x}} {bunit}, {link} %{{y}}: %{{z:.1f}} %<extra></extra>",
    ))
    fig.update_xaxes(title_text=f"{tier} capacity ({bunit})", type="category")
    fig.update_yaxes(title_text=f"{link} bandwidth", type="category")
    return _base_layout(fig, title=None, height=420, uirevision="heatmap")


# ---------------------------------------------------------------------------------------------- model


def bytes_by_kind_figure(bytes_by_kind: Mapping[str, int]) -> go.Figure:
    """Horizontal bars of total bytes per tensor kind (the model page's "what takes the memory")."""
    items = sorted(((k, v) for k, v in bytes_by_kind.items() if v), key=lambda kv: kv[1])
    divisor, bunit = byte_scale(max((v for _, v in items), default=0))
    fig = go.Figure(go.Bar(
        x=[v / divisor for _, v in items], y=[_pretty(k) for k, _ in items], orientation="h",
        marker_color=[color_for(k) for k, _ in items], text=[format_bytes(v) for _, v in items],
        textposition="auto", hovertemplate=f"%{{y}}: %{{x:.4g}} {bunit}<extra></extra>",
    ))
    fig.update_xaxes(title_text=bunit)
    return _base_layout(fig, title=None, height=max(200, 60 + 34 * len(items)), uirevision="kinds")


def _group_key(op: Any) -> str:
    phase = f" · {op.phase}" if op.phase else ""
    return f"{op.layer or op.category}{phase}"


def collapse_graph(graph: Any, *, collapse: bool) -> nx.DiGraph:
    """The data-flow graph between ops (or, collapsed, between layer × phase groups).

    Nodes carry ``ops`` (count), ``first`` (first op index), ``category`` (the one doing most of the work:
    FLOPs, else modelled time, else the op count) and
    ``bytes`` (bytes of the outputs); an edge means a tensor flows from one to the other.
    """
    g = nx.DiGraph()
    node_of: list[str] = []
    counts: dict[str, dict[str, float]] = {}
    tensor_bytes = {t.id: t.bytes for t in graph.tensors}
    for i, op in enumerate(graph.ops):
        key = _group_key(op) if collapse else op.id
        node_of.append(key)
        if key not in g:
            g.add_node(key, ops=0, first=i, bytes=0, label=key if collapse else f"{op.id} ({op.category})")
        g.nodes[key]["ops"] += 1
        g.nodes[key]["bytes"] += sum(tensor_bytes.get(t, 0) for t in op.outputs)
        counts.setdefault(key, {})
        # weight by work (FLOPs, else time, else 1): a layer is "attention" or "mlp", not its two cheap norms
        work = float(getattr(op, "flops", 0) or 0) or float(getattr(op, "time_s", 0) or 0) * 1e12 or 1.0
        counts[key][op.category] = counts[key].get(op.category, 0) + work
    for key, cats in counts.items():
        g.nodes[key]["category"] = max(cats, key=lambda c: cats[c])
    producer = graph.producer
    for i, op in enumerate(graph.ops):
        for t in op.inputs:
            j = producer.get(t)
            if j is not None and node_of[j] != node_of[i]:
                g.add_edge(node_of[j], node_of[i])
    return g


def _layered_positions(g: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Left-to-right by topological generation (of the condensation when grouping made a cycle)."""
    cond = nx.condensation(g)
    gen_of_comp: dict[int, int] = {}
    for level, comps in enumerate(nx.topological_generations(cond)):
        for c in comps:
            gen_of_comp[c] = level
    mapping = cond.graph["mapping"]
    h = nx.DiGraph()
    for node, data in g.nodes(data=True):
        h.add_node(node, layer=gen_of_comp[mapping[node]], first=data["first"])
    ordered = sorted(h.nodes, key=lambda n: (h.nodes[n]["layer"], h.nodes[n]["first"]))
    h2 = nx.DiGraph()
    h2.add_nodes_from((n, h.nodes[n]) for n in ordered)
    pos = nx.multipartite_layout(h2, subset_key="layer", align="vertical")
    return {n: (float(p[0]), float(p[1])) for n, p in pos.items()}


def graph_structure_figure(graph: Any, *, collapse: bool | None = None, max_ops: int = 300) -> tuple[go.Figure, bool]:
    """The graph drawn with a networkx layered layout; collapses to layer × phase groups when the graph has
    more than ``max_ops`` ops (or when asked). Returns the figure and whether it is collapsed."""
    collapsed = len(graph.ops) > max_ops if collapse is None else collapse
    g = collapse_graph(graph, collapse=collapsed)
    pos = _layered_positions(g) if len(g) else {}
    ex: list[float | None] = []
    ey: list[float | None] = []
    for a, b in g.edges:
        ex += [pos[a][0], pos[b][0], None]
        ey += [pos[a][1], pos[b][1], None]
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=ex, y=ey, mode="lines", line={"color": "#C8CDD3", "width": 1}, hoverinfo="skip",
                               showlegend=False))
    by_cat: dict[str, list[str]] = {}
    for node, data in g.nodes(data=True):
        by_cat.setdefault(data["category"], []).append(node)
    max_ops_in_node = max((d["ops"] for _, d in g.nodes(data=True)), default=1)
    for cat, nodes in by_cat.items():
        sizes = [8 + 22 * (g.nodes[n]["ops"] / max_ops_in_node) ** 0.5 if collapsed else 9 for n in nodes]
        fig.add_trace(go.Scattergl(
            x=[pos[n][0] for n in nodes], y=[pos[n][1] for n in nodes], mode="markers", name=_pretty(cat),
            marker={"color": color_for(cat), "size": sizes, "line": {"width": 0.5, "color": "#333"}},
            text=[f"{g.nodes[n]['label']}<br>{g.nodes[n]['ops']} op(s), outputs {format_bytes(g.nodes[n]['bytes'])}"
                  for n in nodes],
            hovertemplate="%{text}<extra></extra>",
        ))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base_layout(fig, title=None, height=460, uirevision="graph"), collapsed
