"""Plan page (landing): KPIs, the schedule per stream, memory per tier, the decisions and the exports."""

from __future__ import annotations

import functools
import importlib.util
import json

import plotly.graph_objects as go
import streamlit as st

from core.plan import plan_to_dict
from core.units import format_bytes
from ui import figures, kpis, report, state, tables, view


def _carry_selection(table_key: str, moved: list[str]) -> None:
    """When the plan under the table changes (a refined plan arrived, or new inputs), the table's row
    selection would point at other rows: keep the tensors it selected as highlighted ones instead, and drop
    highlights of tensors that no longer move (the picker only offers those)."""
    highlight = list(st.session_state.get("sched:highlight", []) or [])
    if st.session_state.get("dec:table:shown") not in (None, table_key):
        highlight += [t for t in st.session_state.get("dec:selected", []) if t not in highlight]
        st.session_state["dec:selected"] = []
    allowed = set(moved)
    st.session_state["sched:highlight"] = [t for t in highlight if t in allowed]
    st.session_state["dec:table:shown"] = table_key


#: Session key of the Decisions expander's state: the table is built and sent only while it is open.
DECISIONS_OPEN_KEY = "dec:open"


@st.fragment
@state.safe("Schedule")
def _schedule_and_decisions(inputs: state.Inputs, plan, version: int = 0) -> None:
    """The Gantt and the decisions table in one fragment: selecting a tensor reruns only this part.

    The table is built (once per plan) and drawn only while its expander is open: with thousands of rows it
    was the costliest part of an input change, in the server and in the browser."""
    d = state.derived(inputs, plan)
    moved = d.moved
    table_key = f"dec:table:{inputs.digest}:{version}"
    unit = figures.time_scale(float(plan.metrics.get("step_time_s", 0.0)))
    chart_slot = st.container()
    n_spans = len(plan.decisions)
    expander = st.expander(f"Decisions: {n_spans:,} idle spans, what the policy did with each and why",
                           key=DECISIONS_OPEN_KEY, on_change="rerun", icon=":material/table:")
    selected: set[str] = set()
    if expander.open:
        _carry_selection(table_key, moved)
        with expander:
            selected = _decisions(inputs, plan, table_key)
    else:
        st.session_state["dec:selected"] = []
        _carry_selection(table_key, moved)
    with chart_slot:
        picked = st.multiselect("Highlight the transfers of", moved, key="sched:highlight",
                                placeholder="pick tensors that move (or open the decisions and select rows)")
        selected |= set(picked)
        lo, hi = st.session_state.get("sched:window", (0, 100))
        title = f"Schedule — {inputs.model_label} on {inputs.hardware_label}"

        def build() -> go.Figure:
            fig = figures.schedule_figure(d.streams, highlight=tables.transfers_of(plan, sorted(selected)),
                                          time_unit=unit)
            if (lo, hi) != (0, 100):
                step = float(plan.metrics.get("step_time_s", 0.0)) * unit[0]
                fig.update_xaxes(range=[step * lo / 100, step * hi / 100], autorange=False)
            return fig

        view.cached_chart(f"schedule|{state.plan_digest(inputs, plan)}|{sorted(selected)}|{lo},{hi}", build,
                          key="schedule", title=title)
        st.slider("Time window (% of the step)", 0, 100, step=1, key="sched:window",
                  help="Zoom that stays: kept when the inputs change or rows are selected (a new plan or a "
                       "highlight redraws the chart, which resets a zoom made by dragging on it).")
        n = sum(len(s.starts_s) for s in d.streams)
        mode = "bars" if n <= figures.BAR_LIMIT else "WebGL segments"
        st.caption(f"{n:,} events on {len(d.streams)} streams ({mode}). Drag on the chart to zoom for a look, "
                   "double-click to reset; the time window above keeps a zoom across changes.")


def _decisions(inputs: state.Inputs, plan, table_key: str) -> set[str]:
    """The decisions table with its filters; returns the tensors of the selected rows."""
    table = state.decisions(inputs, plan)
    frame = table.frame
    st.caption("Every idle span of every tensor: what the policy did with it and the cost-model terms behind the "
               "choice. Select rows (or pick tensors above the chart) to outline their transfers on the schedule.")
    c1, c2, c3 = st.columns([2, 2, 2])
    query = c1.text_input("Find tensor", key="dec:query", placeholder="e.g. layers.3")
    options = sorted(frame["action"].unique())
    moving = [a for a in options if a != "keep"]
    actions = c2.multiselect("Action", options, default=moving, key="dec:action",
                             help="Opens on what the plan changes (offload, recompute); add 'keep' to see every span.")
    kinds = c3.multiselect("Kind", sorted(frame["kind"].unique()), key="dec:kind")
    shown = frame
    if query:
        shown = shown[shown["tensor"].str.contains(query, case=False, regex=False)]
    if actions:
        shown = shown[shown["action"].isin(actions)]
    if kinds:
        shown = shown[shown["kind"].isin(kinds)]
    event = view.table(tables.Table(shown.reset_index(drop=True), table.formats), key=table_key, height=360,
                       on_select="rerun", selection_mode="multi-row")
    st.caption(f"{len(shown):,} of {len(frame):,} decisions shown.")
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    selected = set(shown.reset_index(drop=True).iloc[rows]["tensor"]) if rows else set()
    st.session_state["dec:selected"] = sorted(selected)
    return selected


@st.fragment(run_every=0.5)
def _refining(inputs: state.Inputs, version: int) -> None:
    """While the planner refines in the background: its progress and the gap to the bound, checked twice a
    second; a better plan reruns the page (the zoom, the time window and the highlighted tensors stay)."""
    latest = state.latest_outcome(inputs)
    if latest is None or latest.version != version or latest.final:
        st.rerun()  # a better plan (or the end of refinement): redraw the KPIs and charts with it
    view.refining_status(latest)


@st.fragment
@state.safe("Memory curves")
def _memory(inputs: state.Inputs, plan) -> None:
    d = state.derived(inputs, plan)
    digest = state.plan_digest(inputs, plan)
    before = state.before_curves(inputs)
    unit = figures.time_scale(float(plan.metrics.get("step_time_s", 0.0)))
    hw = inputs.hardware
    c1, c2 = st.columns([3, 2])
    show_before = c1.toggle("Show the no-offload total (everything in the compute tier)", value=True, key="mem:before")
    by_ops = c2.segmented_control("x axis", ["ops (aligned)", "time"], default="ops (aligned)", key="mem:axis",
                                  help="Ops: the plan and the no-offload run line up op by op (the plan takes "
                                       "longer than compute only, so on a time axis they drift apart).",
                                  ) != "time"
    for tier in hw.tiers:
        curve = d.curves.get(tier.name)
        if curve is None:
            continue
        empty = not any(len(v) and float(max(v)) > 0 for v in curve.bytes_by_kind.values())
        if empty and tier.name != hw.compute_tier:
            st.caption(f"{tier.name}: unused by this plan ({format_bytes(tier.capacity_bytes)} capacity left free).")
            continue
        with_before = show_before and tier.name == hw.compute_tier
        build = functools.partial(
            figures.memory_figure, curve, tier=tier.name, capacity_bytes=tier.capacity_bytes, time_unit=unit,
            before=before.get(tier.name) if with_before else None,
            align=(d.knots, state.before_knots(inputs) if with_before else None) if by_ops else None,
            title=f"{tier.name}", uirevision=f"memory-{tier.name}",
        )
        view.cached_chart(f"memory|{digest}|{tier.name}|{with_before}|{by_ops}", build, key=f"memory-{tier.name}")


@st.fragment
@state.safe("Tensor timeline")
def _tensor_timeline(inputs: state.Inputs, plan) -> None:
    """Pick a tensor: where it lives over the step (a row per tier), its copies, its uses, and the decisions
    behind them."""
    from ui import residency

    graph = inputs.graph
    moved = residency.moved_tensors(plan)
    others = [t.id for t in graph.tensors if t.id not in set(moved)]
    choices = moved + others
    if not choices:
        st.info("This graph has no tensors.")
        return
    by_id = graph.tensor_by_id
    tensor = st.selectbox("Tensor", choices, key="res:tensor",
                          format_func=lambda t: f"{t} · {by_id[t].kind.replace('_', ' ')} · {format_bytes(by_id[t].bytes)}"
                          + (" · moves" if t in set(moved) else ""),
                          help="Tensors the plan moves or recomputes come first.")
    res = residency.residency(graph, plan, tensor)
    unit = figures.time_scale(float(plan.metrics.get("step_time_s", 0.0)))
    fig = figures.residency_figure(res, tiers=[t.name for t in inputs.hardware.tiers], kind=by_id[tensor].kind,
                                   time_unit=unit)
    view.chart(fig, key="residency", title=f"Where {tensor} lives — {inputs.model_label}")
    rows = [{"span": tables.span_label(graph, d.start_op, d.end_op), "action": d.action, "tier": d.tier,
             "why": d.reason} for d in plan.decisions if d.tensor == tensor]
    st.markdown("**Why** (the planner's decision for each idle span of this tensor)")
    st.dataframe(rows, hide_index=True, column_config={"why": st.column_config.TextColumn("why", width="large")})


@st.fragment
@state.safe("Exports")
def _exports(inputs: state.Inputs, plan) -> None:
    """Download buttons; each file is built only when its button is clicked."""
    slug = f"{inputs.graph.name}-{plan.policy}".replace(" ", "_").replace("/", "_")
    buttons: list[tuple[str, object, str, str, str, str]] = [
        ("Plan (JSON)", functools.partial(lambda p: json.dumps(plan_to_dict(p)), plan), f"{slug}.plan.json",
         "application/json", ":material/data_object:", "The tierplan-plan/1 file: replay it with the validator"),
    ]
    if importlib.util.find_spec("core.export.trace") is not None:
        from core.export.trace import plan_to_trace

        buttons.append(("Perfetto trace", functools.partial(lambda g, p: json.dumps(plan_to_trace(g, p)), inputs.graph, plan),
                        f"{slug}.trace.json", "application/json", ":material/timeline:",
                        "Open in ui.perfetto.dev or chrome://tracing"))
    if importlib.util.find_spec("core.export.csv") is not None:
        from core.export.csv import decisions_csv

        buttons.append(("Decisions (CSV)", functools.partial(decisions_csv, plan, inputs.graph), f"{slug}.decisions.csv", "text/csv",
                        ":material/table:", "Every decision with its cost-model terms, for a spreadsheet"))
    buttons.append(("HTML report", functools.partial(report.build_report, inputs.graph, inputs.hardware, plan,
                                                     model_label=inputs.model_label,
                                                     hardware_label=inputs.hardware_label),
                    f"{slug}.report.html", "text/html", ":material/description:",
                    "One self-contained file with the KPIs and charts, for sharing"))
    for col, (label, data, name, mime, icon, help_text) in zip(st.columns(len(buttons)), buttons):
        col.download_button(label, data, file_name=name, mime=mime, icon=icon, on_click="ignore", width="stretch",
                            key=f"dl:{name.rsplit('.', 2)[-2]}", help=help_text)
    st.caption("The address bar holds this whole setting (model, hardware edits, policy and its parameters): "
               "copy the URL to share this view. Uploaded files are not part of the link.")


def main() -> None:
    if "sched:window" not in st.session_state:
        st.session_state["sched:window"] = (0, 100)
    inputs = state.current_inputs()
    view.header("Plan", "Where each tensor lives during one step, when it moves, and what that costs.")
    if inputs is None:
        st.info("Pick a model and hardware in the sidebar.")
        return
    shown, outcome, error = state.plan_outcome(inputs, final=False)
    view.plan_error(error, shown is not inputs and outcome.plan is not None)
    plan = outcome.plan
    if plan is None:
        return
    hw = shown.hardware
    st.markdown(f"**{shown.model_label}** on **{shown.hardware_label}** · policy **{plan.policy}**")
    pending = not outcome.final and "bound" in plan.planning.get("stages_pending", ())
    view.kpi_tiles(kpis.plan_kpis(plan.metrics, hw.compute_tier, gap_to_bound=plan.gap_to_bound,
                                  lower_bound_s=plan.lower_bound_s, bound_pending=pending), per_row=4)
    # every section below keeps its place whether or not it has content, so the charts are not remounted
    # when the refined plan replaces the first one (a remount would lose a zoom made on the chart)
    with st.container():
        if outcome.final:
            view.planning_note(plan, outcome.note)
        else:
            _refining(shown, outcome.version)
    links = {link.name: link.bandwidth_Bps for link in hw.links}
    with st.expander("Bytes moved per link", expanded=False):
        st.dataframe(kpis.link_rows(plan.metrics, links), hide_index=True)
    order_slot = st.container()
    if plan.order_moves:
        with order_slot, st.expander(f"Execution order: {len(plan.order_moves)} ops moved from the graph's order", expanded=False):
            st.caption("The planner may run an op elsewhere when every data dependency and in-place update allows "
                       "it (the validator checks the plan's order); it kept this order because the step is faster. "
                       "`--no-reorder` on the command line, or the policy's settings, keep the graph's order.")
            view.table(tables.order_moves_table(plan), key="plan:order_moves", height=260)
    # Only the open tab runs (on_change="rerun"): a rerun builds and the browser draws one tab's charts.
    tab_sched, tab_mem, tab_res, tab_export = st.tabs(list(view.PLAN_TABS), key=view.PLAN_TAB_KEY,
                                                      on_change="rerun")
    if tab_sched.open is not False:
        with tab_sched:
            _schedule_and_decisions(shown, plan, outcome.version)
    if tab_mem.open:
        with tab_mem:
            st.caption("Occupancy of each tier over the step, stacked by tensor kind; the dashed line is the "
                       "capacity, the dotted one what the compute tier would hold if nothing moved.")
            _memory(shown, plan)
    if tab_res.open:
        with tab_res:
            _tensor_timeline(shown, plan)
    if tab_export.open:
        with tab_export:
            _exports(shown, plan)


main()
