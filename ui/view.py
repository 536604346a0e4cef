"""Small Streamlit drawing helpers so every page looks the same: headers, KPI tiles, tables, charts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ui.kpis import Kpi
from ui.tables import Table

__all__ = ["PLOTLY_CONFIG", "style", "header", "kpi_tiles", "table", "chart", "cached_chart", "plan_error", "refining_status",
           "planning_note"]

PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "scrollZoom": True,
                                 "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


_CSS = """
<style>
  .block-container {padding-top: 2.2rem; max-width: 1500px;}
  [data-testid="stMetricValue"] {font-size: 1.75rem;}
  h1 {padding-bottom: 0.2rem;}
</style>
"""


def is_dark() -> bool:
    """Whether the browser shows the dark theme (the system preference, or the user's choice in the menu)."""
    try:
        return str(getattr(st.context.theme, "type", "") or "") == "dark"
    except Exception:  # older Streamlit or no browser (AppTest): light
        return False


def style() -> None:
    """A little CSS: less empty space above the title, slightly smaller KPI values."""
    st.html(_CSS)


def mark_app_run() -> None:
    """Called by app.py: this script run went through the app's navigation (see :func:`require_app`)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None:
        ctx.tierplan_app = True  # type: ignore[attr-defined]


def require_app() -> None:
    """A page opened by its own URL (``/learn``) on a fresh server runs alone in Streamlit's legacy
    ``pages/`` mode — no sidebar, no inputs — until some session has called ``st.navigation``. Switch the
    server to navigation mode (what it does itself after the first ``st.navigation``) and rerun, so the
    app runs and shows this page."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or getattr(ctx, "tierplan_app", False):
        return
    try:
        import streamlit.runtime.pages_manager as pm

        if pm.PagesManager.uses_pages_directory:
            pm.PagesManager.uses_pages_directory = False
            st.rerun()
    except (ImportError, AttributeError):  # another Streamlit: leave it be
        return


def header(title: str, intro: str) -> None:
    require_app()
    st.title(title, anchor=False)
    st.markdown(f"<div style='opacity:0.72;margin-top:-0.6rem;margin-bottom:0.6rem'>{intro}</div>",
                unsafe_allow_html=True)


def kpi_tiles(kpis: Sequence[Kpi], *, per_row: int = 7) -> None:
    for start in range(0, len(kpis), per_row):
        cols = st.columns(per_row)
        for col, k in zip(cols, kpis[start:start + per_row]):
            col.metric(k.label, k.value, k.delta, delta_color=k.delta_color, help=k.help or None, border=True,
                       delta_arrow="off" if k.delta_color == "off" else "auto")


#: The Plan page's tabs (labels) and the session key of the open one (only the open tab runs).
PLAN_TABS = (":material/view_timeline: Schedule & decisions", ":material/stacked_line_chart: Memory",
             ":material/timeline: Tensor timeline", ":material/download: Export")
PLAN_TAB_KEY = "plan:tab"


def plan_tab(name: str) -> str:
    """The full label of the Plan page tab whose label ends with ``name`` ("Memory" …)."""
    return next(t for t in PLAN_TABS if t.endswith(name))


#: Free-text columns that get the room they need (a cut-off note or reason is useless).
_WIDE_TEXT = ("note", "reason", "span")


def table(t: Table, *, key: str | None = None, height: int | str = "auto", **kwargs: Any) -> Any:
    formatted = [col for col in t.formats if col in t.frame.columns]
    wide = {col: st.column_config.TextColumn(col, width="large", help=t.help.get(col)) for col in _WIDE_TEXT
            if col in t.frame.columns}
    wide |= {col: st.column_config.TextColumn(col, help=text) for col, text in t.help.items()
             if col in t.frame.columns and col not in t.formats and col not in wide}
    if len(t.frame) <= 200 and formatted and t.frame[formatted].isna().to_numpy().any():
        # small tables with gaps (an infeasible policy): show "—" instead of the grid's "None"
        shown = t.frame.copy()
        for col in formatted:
            shown[col] = ["—" if pd.isna(v) else t.formats[col] % v for v in t.frame[col]]
        return st.dataframe(shown, hide_index=True, key=key, height=height, column_config=wide, **kwargs)
    config = {col: st.column_config.NumberColumn(col, format=fmt, help=t.help.get(col)) for col, fmt in t.formats.items()
              if col in t.frame.columns} | wide
    return st.dataframe(t.frame, hide_index=True, column_config=config, key=key, height=height, **kwargs)


#: Session key of the chosen download format of the charts' camera button ("png" or "svg").
FORMAT_KEY = "in:fig_format"


def chart_config(title: str, fmt: str = "png") -> dict[str, Any]:
    """Plotly config: the camera button saves ``fmt`` (PNG at 2× or SVG) named after the chart's title."""
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in title).strip("-").lower() or "chart"
    return {**PLOTLY_CONFIG, "toImageButtonOptions": {"format": fmt if fmt in ("png", "svg") else "png",
                                                       "filename": slug[:80], "scale": 2}}


def _finish(fig: go.Figure, title: str | None, dark_theme: bool) -> str | None:
    """Write ``title`` into ``fig`` (unless it has its own) and apply the dark theme; returns the title."""
    own = fig.layout.title.text if fig.layout.title and fig.layout.title.text else None
    if title and not own:
        fig.update_layout(title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 14}, "yref": "container",
                                 "y": 1.0, "yanchor": "top", "pad": {"t": 6}},
                          margin={"t": int(fig.layout.margin.t or 0) + 36})
    if dark_theme:
        from ui.figures import dark

        dark(fig)
    return title or own


def chart(fig: go.Figure, *, key: str, title: str | None = None) -> None:
    """Draw a figure. ``title`` (or the figure's own) is written into the figure so a downloaded PNG/SVG
    says what it shows; the camera button's format follows the sidebar's choice."""
    name = _finish(fig, title, is_dark())
    fmt = str(st.session_state.get(FORMAT_KEY, "png"))
    st.plotly_chart(fig, key=key, config=chart_config(name or key, fmt), theme=None)


@st.cache_resource(max_entries=48, show_spinner=False)
def _finished_figure(digest: str, _build: Callable[[], go.Figure], title: str | None, dark_theme: bool
                     ) -> tuple[go.Figure, str | None]:
    fig = _build()
    return fig, _finish(fig, title, dark_theme)


def cached_chart(digest: str, build: Callable[[], go.Figure], *, key: str, title: str | None = None) -> None:
    """:func:`chart` of the figure ``build()`` makes, built once per ``digest`` (which must name everything
    the figure shows: the plan's digest, a highlight, a window …) and theme, and shared by every rerun and
    session (``st.cache_resource``: never copied; the figure is not changed after it is finished)."""
    dark_theme = is_dark()
    fig, name = _finished_figure(digest, build, title, dark_theme)
    fmt = str(st.session_state.get(FORMAT_KEY, "png"))
    st.plotly_chart(fig, key=key, config=chart_config(name or key, fmt), theme=None)


def refining_status(outcome: Any) -> None:
    """Progress of the background refinement: stage k of n, time so far, the best step and its gap."""
    from core.units import format_time

    u = outcome.update if outcome is not None else None
    if u is None:
        return
    gap = f" · within {u.gap_to_bound * 100:.1f} % of the bound" if u.gap_to_bound is not None else ""
    st.progress(min(1.0, u.stages_done / max(u.stages_total, 1)),
                text=f":material/autorenew: Refining in the background: {u.stages_done} of {u.stages_total} stages "
                     f"done ({u.stage}) · {u.elapsed_s:.1f} s · best step so far {format_time(u.step_time_s)}{gap}")


def planning_note(plan: Any, note: str | None = None) -> None:
    """One caption: which planning stages ran and which one found the plan shown (``Plan.planning``)."""
    info = getattr(plan, "planning", None) or {}
    if note:
        st.warning(note, icon=":material/warning:")
    if not info:
        return
    ran = ", ".join(info.get("stages_run", ()))
    found = info.get("found_by")
    st.caption(f":material/check_circle: Refined: stages {ran} ran" + (f"; the plan shown was found by the "
               f"*{found}* stage" if found else "") + ".")


def plan_error(error: str | None, shown_other: bool) -> None:
    """The message when the current settings give no plan (and whether older settings are shown)."""
    if not error:
        return
    st.error(f"**No plan for these settings.** {error}", icon=":material/block:")
    if shown_other:
        st.info("Showing the plan for the last settings that worked. Change the settings in the sidebar to try "
                "again.", icon=":material/history:")
