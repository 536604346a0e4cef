"""Plotly figures of the Serve page: pure functions from arrays and dicts to figures (no Streamlit).

Same conventions as :mod:`ui.figures`: its template and fonts, one colour per policy everywhere (``lru``
grey as the reference, ``belady`` dashed as the ceiling), step lines for occupancy, numeric time axes.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ui.figures import _base_layout, byte_scale, time_scale

__all__ = [
    "POLICY_COLORS",
    "TIER_COLORS",
    "arrivals_figure",
    "sharing_figure",
    "sizing_figure",
    "ttft_cdf_figure",
    "occupancy_figure",
    "link_traffic_figure",
    "queue_figure",
    "policies_figure",
]

POLICY_COLORS: dict[str, str] = {
    "lru": "#7F7F7F", "lfu": "#8C564B", "s3fifo": "#9467BD", "arc": "#FF7F0E", "cost": "#17BECF",
    "tierplan": "#1F77B4", "belady": "#2CA02C",
}
TIER_COLORS: dict[str, str] = {"HBM": "#4C78A8", "DDR": "#F58518", "Pool": "#B279A2", "SSD": "#54A24B"}
_OTHER = ("#E45756", "#72B7B2", "#9D755D", "#BAB0AC")


def _tier_color(name: str, k: int) -> str:
    return TIER_COLORS.get(name, _OTHER[k % len(_OTHER)])


def _layout(fig: go.Figure, *, title: str, height: int, uirevision: str) -> go.Figure:
    """The shared layout, with the legend under the plot so it never covers the title."""
    _base_layout(fig, title=title, height=height + 40, uirevision=uirevision)
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0},
                      margin={"b": 10, "t": 50})
    return fig


def _bins(t_max: float, n: int = 60) -> np.ndarray:
    return np.linspace(0.0, max(t_max, 1e-9), n + 1)


def arrivals_figure(arrival_s: np.ndarray, input_tokens: np.ndarray, *, bins: int = 60) -> go.Figure:
    """Requests per second and prompt tokens per second over the trace (bars and a line)."""
    fig = go.Figure()
    if arrival_s.shape[0] == 0:
        return _layout(fig, title="Arrivals", height=280, uirevision="serve-arrivals")
    edges = _bins(float(arrival_s.max()), bins)
    width = edges[1] - edges[0]
    count, _ = np.histogram(arrival_s, edges)
    tokens, _ = np.histogram(arrival_s, edges, weights=input_tokens)
    mid = (edges[:-1] + edges[1:]) / 2
    fig.add_trace(go.Bar(x=mid, y=count / width, name="requests / s", marker={"color": "#4C78A8"},
                         hovertemplate="t %{x:.0f} s<br>%{y:.2f} requests/s<extra></extra>"))
    fig.add_trace(go.Scatter(x=mid, y=tokens / width / 1e3, name="prompt k-tokens / s", yaxis="y2",
                             line={"color": "#F58518", "width": 2},
                             hovertemplate="t %{x:.0f} s<br>%{y:.1f} k prompt tokens/s<extra></extra>"))
    fig.update_layout(xaxis_title="time since the first request (s)", yaxis_title="requests / s",
                      yaxis2={"title": "k prompt tokens / s", "overlaying": "y", "side": "right", "showgrid": False},
                      bargap=0.05)
    return _layout(fig, title="Arrivals", height=300, uirevision="serve-arrivals")


def sharing_figure(readers_per_block: np.ndarray, hit_by_position: np.ndarray | None = None) -> go.Figure:
    """How many requests read each distinct block: the prefix-sharing structure of the trace."""
    fig = go.Figure()
    if readers_per_block.shape[0]:
        top = int(readers_per_block.max())
        edges = np.unique(np.r_[1, 2, 3, 5, 10, 20, 50, 100, 1000, 10**6, top + 1])
        edges = edges[edges <= top + 1]
        counts, _ = np.histogram(readers_per_block, edges)
        labels = [f"{lo}" if hi - lo == 1 else f"{lo}–{hi - 1}" for lo, hi in itertools.pairwise(edges)]
        fig.add_trace(go.Bar(x=labels, y=counts, marker={"color": "#54A24B"}, name="distinct blocks",
                             hovertemplate="read by %{x} requests: %{y:,} blocks<extra></extra>"))
    fig.update_layout(xaxis_title="requests that read the block", yaxis_title="distinct blocks", yaxis_type="log",
                      xaxis_type="category", showlegend=False)
    return _layout(fig, title="Prefix sharing: readers per block", height=300, uirevision="serve-sharing")


def sizing_figure(capacities: Sequence[float], values: Mapping[str, Sequence[float]], *, x_title: str,
                  y_title: str, title: str, ceiling: float | None = None, percent: bool = True,
                  marker_x: float | None = None) -> go.Figure:
    """One line per policy against a capacity axis; ``belady`` dashed; an optional ceiling line."""
    fig = go.Figure()
    scale = 100.0 if percent else 1.0
    for k, (policy, ys) in enumerate(values.items()):
        color = POLICY_COLORS.get(policy, _OTHER[k % len(_OTHER)])
        dash = "dash" if policy == "belady" else "solid"
        fig.add_trace(go.Scatter(x=list(capacities), y=[scale * y for y in ys], name=policy, mode="lines+markers",
                                 line={"color": color, "dash": dash, "width": 3 if policy == "tierplan" else 2},
                                 hovertemplate=f"{policy}<br>%{{x:,.4g}}<br>%{{y:.3g}}<extra></extra>"))
    if ceiling is not None:
        fig.add_hline(y=scale * ceiling, line={"color": "#C0392B", "dash": "dot"},
                      annotation_text="reuse ceiling (unlimited cache)", annotation_position="bottom right")
    if marker_x is not None:
        fig.add_vline(x=marker_x, line={"color": "#52606D", "dash": "dot"}, annotation_text="current")
    fig.update_layout(xaxis_title=x_title, yaxis_title=y_title)
    return _layout(fig, title=title, height=340, uirevision=f"serve-sizing-{title}")


def ttft_cdf_figure(series: Mapping[str, np.ndarray]) -> go.Figure:
    """Cumulative distribution of TTFT, one line per setting (log time axis)."""
    fig = go.Figure()
    t_max = max((float(np.max(v)) for v in series.values() if v.shape[0]), default=1.0)
    factor, unit = time_scale(t_max)
    for k, (label, values) in enumerate(series.items()):
        if values.shape[0] == 0:
            continue
        x = np.sort(values) * factor
        y = np.arange(1, x.shape[0] + 1) / x.shape[0] * 100
        if x.shape[0] > 2000:  # keep the figure light: 2,000 evenly spaced quantiles
            idx = np.linspace(0, x.shape[0] - 1, 2000).astype(int)
            x, y = x[idx], y[idx]
        palette = ("#1F77B4", "#F58518", "#7F7F7F", *_OTHER)
        fig.add_trace(go.Scatter(x=x, y=y, name=label, mode="lines", line={"width": 2, "color": palette[k % len(palette)]},
                                 hovertemplate=f"{label}<br>%{{y:.1f}} % of requests within %{{x:.4g}} {unit}<extra></extra>"))
    fig.update_layout(xaxis_title=f"time to first token ({unit})", yaxis_title="requests (%)", xaxis_type="log")
    return _layout(fig, title="TTFT distribution", height=320, uirevision="serve-ttft")


def occupancy_figure(t_s: np.ndarray, blocks: Mapping[str, np.ndarray], capacity_blocks: Mapping[str, int],
                     block_bytes: int) -> go.Figure:
    """Bytes each tier's cache holds over time, as a fraction of its capacity (step lines)."""
    fig = go.Figure()
    for k, (tier, b) in enumerate(blocks.items()):
        cap = max(1, int(capacity_blocks.get(tier, 1)))
        color = _tier_color(tier, k)
        fig.add_trace(go.Scatter(x=t_s, y=100 * b / cap, name=tier, mode="lines", line={"color": color, "shape": "hv"},
                                 customdata=b * block_bytes / 2**30,
                                 hovertemplate=f"{tier}<br>t %{{x:.1f}} s<br>%{{y:.1f}} % = %{{customdata:.1f}} GiB"
                                               "<extra></extra>"))
    fig.update_layout(xaxis_title="time (s)", yaxis_title="cache occupancy (% of the tier's cache)",
                      yaxis_range=[0, 105])
    return _layout(fig, title="Tier occupancy", height=300, uirevision="serve-occupancy")


def link_traffic_figure(transfers: Sequence[tuple[str, float, float, int]], t_max: float, *, bins: int = 60) -> go.Figure:
    """Bytes per second on each link over time (each transfer spread evenly over its duration)."""
    fig = go.Figure()
    edges = _bins(t_max, bins)
    width = edges[1] - edges[0]
    by_link: dict[str, list[tuple[float, float, int]]] = {}
    for link, s, e, n in transfers:
        by_link.setdefault(link, []).append((s, e, n))
    peak = 1.0
    rates: dict[str, np.ndarray] = {}
    for link, items in by_link.items():
        arr = np.asarray(items, dtype=float)
        s, e, n = arr[:, 0], np.maximum(arr[:, 1], arr[:, 0] + 1e-12), arr[:, 2]
        rate = n / (e - s)
        # overlap of [s, e) with each bin, vectorised over bins
        lo = np.maximum(s[:, None], edges[None, :-1])
        hi = np.minimum(e[:, None], edges[None, 1:])
        per_bin = (np.clip(hi - lo, 0, None) * rate[:, None]).sum(axis=0) / width
        rates[link] = per_bin
        peak = max(peak, float(per_bin.max()))
    div, unit = byte_scale(peak)
    mid = (edges[:-1] + edges[1:]) / 2
    for k, (link, per_bin) in enumerate(sorted(rates.items())):
        fig.add_trace(go.Scatter(x=mid, y=per_bin / div, name=link, mode="lines",
                                 line={"color": _tier_color(link.split("->")[1], k), "dash": "dot" if link.startswith("HBM") else "solid"},
                                 hovertemplate=f"{link}<br>t %{{x:.0f}} s<br>%{{y:.3g}} {unit}/s<extra></extra>"))
    fig.update_layout(xaxis_title="time (s)", yaxis_title=f"{unit}/s")
    return _layout(fig, title="Link traffic (solid: loads toward HBM, dotted: spills)", height=300,
                        uirevision="serve-links")


def queue_figure(t_s: np.ndarray, queue_len: np.ndarray) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t_s, y=queue_len, mode="lines", line={"shape": "hv", "color": "#E45756"},
                             name="waiting", hovertemplate="t %{x:.1f} s<br>%{y} waiting<extra></extra>"))
    fig.update_layout(xaxis_title="time (s)", yaxis_title="requests waiting for prefill", showlegend=False)
    return _layout(fig, title="Prefill queue", height=260, uirevision="serve-queue")


def policies_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Hit rate (bars, by tier) and TTFT p50 (markers) of each policy on the same inputs."""
    fig = go.Figure()
    names = [str(r["policy"]) for r in rows]
    tiers: list[str] = []
    for r in rows:
        for t in r.get("hit_rate_by_tier", {}):
            if t not in tiers:
                tiers.append(t)
    for k, tier in enumerate(tiers):
        fig.add_trace(go.Bar(x=names, y=[100 * r["hit_rate_by_tier"].get(tier, 0.0) for r in rows], name=f"hits in {tier}",
                             marker={"color": _tier_color(tier, k)},
                             hovertemplate=f"%{{x}}: %{{y:.2f}} % of blocks from {tier}<extra></extra>"))
    fig.add_trace(go.Scatter(x=names, y=[1e3 * r["ttft_s"]["p50"] for r in rows], name="TTFT p50 (ms)", yaxis="y2",
                             mode="markers", marker={"size": 12, "color": "#222", "symbol": "diamond"},
                             hovertemplate="%{x}: TTFT p50 %{y:.0f} ms<extra></extra>"))
    fig.update_layout(barmode="stack", yaxis_title="prefix hit rate (%)",
                      yaxis2={"title": "TTFT p50 (ms)", "overlaying": "y", "side": "right", "showgrid": False,
                              "rangemode": "tozero"})
    return _layout(fig, title="Policies side by side", height=340, uirevision="serve-policies")
