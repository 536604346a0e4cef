"""Model page: what the graph holds — parameters, bytes by kind, the largest tensors, every op and tensor,
and its structure."""

from __future__ import annotations

import streamlit as st

from core.info import graph_summary
from core.units import format_bytes
from ui import figures, kpis, state, tables, view


@st.cache_data(max_entries=8, show_spinner=False)
def _summary(graph_key: str, _graph):
    return graph_summary(_graph)


@st.fragment
@state.safe("Graph structure")
def _structure(inputs: state.Inputs) -> None:
    graph = inputs.graph
    large = len(graph.ops) > 300
    collapse = st.toggle("Collapse to layers", value=large, key="model:collapse",
                         help="Group ops by layer and phase (forward / backward / optimizer): one node per group.")
    fig, collapsed = figures.graph_structure_figure(graph, collapse=collapse)
    view.chart(fig, key="model:graph", title=f"Structure — {inputs.model_label}")
    st.caption(("One node per layer × phase, sized by its number of ops" if collapsed else "One node per op")
               + "; left to right in dependency order, colours by op category. Hover for details.")


@state.safe("Model")
def main() -> None:
    inputs = state.current_inputs()
    view.header("Model", "What the step computes and what takes the memory, before any planning.")
    if inputs is None:
        st.info("Pick a model in the sidebar.")
        return
    graph = inputs.graph
    s = _summary(inputs.graph_key, graph)
    st.markdown(f"**{inputs.model_label}**")
    c = st.columns(5)
    c[0].metric("Parameters", kpis.format_count(s.params_total) if s.params_total else "—", border=True,
                help="Total parameters of the model (k = thousand, M = million, B = billion)")
    active = (f"{kpis.format_count(s.params_active)} active" if s.params_active and s.params_active != s.params_total
              else None)
    c[1].metric("Active per token", kpis.format_count(s.params_active or s.params_total) if s.params_total else "—",
                active, delta_color="off", delta_arrow="off", border=True)
    c[2].metric("Ops", f"{s.op_count:,}", border=True)
    c[3].metric("Tensors", f"{s.tensor_count:,}", border=True)
    c[4].metric("Peak without offload", format_bytes(s.no_offload_peak_bytes) if s.no_offload_peak_bytes is not None
                else "—", border=True,
                help="Everything kept in the compute tier for the whole step")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("##### Bytes by tensor kind")
        view.chart(figures.bytes_by_kind_figure(s.bytes_by_kind), key="model:kinds",
                   title=f"Bytes by tensor kind — {inputs.model_label}")
    with right:
        st.markdown("##### Largest tensors")
        st.dataframe([{"tensor": t, "kind": k, "size": format_bytes(b)} for t, k, b in s.largest_tensors],
                     hide_index=True)
        st.markdown("##### Ops by category")
        st.dataframe([{"category": cat, "ops": n} for cat, n in sorted(s.ops_by_category.items(), key=lambda kv: -kv[1])],
                     hide_index=True)
    warnings = graph.meta.get("warnings") or []
    for w in warnings:
        st.warning(w, icon=":material/warning:")
    st.markdown("##### Structure")
    _structure(inputs)
    tab_ops, tab_tensors = st.tabs(["Ops", "Tensors"])
    with tab_ops:
        view.table(tables.ops_table(graph, inputs.hardware.compute), key="model:ops", height=420)
    with tab_tensors:
        view.table(tables.tensors_table(graph), key="model:tensors", height=420)


main()
