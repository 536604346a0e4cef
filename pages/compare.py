"""Compare page: every policy on the same model and hardware — table, bars and overlaid memory curves."""

from __future__ import annotations

import json

import streamlit as st

from core.policies import list_policies
from core.units import format_bytes
from ui import figures, kpis, state, tables, view


def _params_for(inputs: state.Inputs, key: str) -> str:
    """The current policy keeps the sidebar's parameters; the others run with their defaults."""
    return inputs.params_json if key == inputs.policy else json.dumps({})


@state.safe("Compare")
def main() -> None:
    view.header("Compare", "The same model on the same hardware under every policy: how fast, how full, how much "
                "traffic. Each policy decides differently; the same scheduler times them all.")
    inputs = state.current_inputs()
    if inputs is None:
        st.info("Pick a model and hardware in the sidebar.")
        return
    hw = inputs.hardware
    st.markdown(f"**{inputs.model_label}** on **{inputs.hardware_label}** · {hw.compute_tier} capacity "
                f"{format_bytes(hw.capacity(hw.compute_tier))}")
    policies = list_policies()
    bar = st.progress(0.0, text="Planning with every policy…")
    rows, curves, failures = [], {}, []
    for k, info in enumerate(policies):
        bar.progress(k / len(policies), text=f"Planning with {info.title} ({k + 1}/{len(policies)})…")
        outcome = state.plan_for(inputs, policy=info.key, params_json=_params_for(inputs, info.key))
        if outcome.plan is None:
            rows.append(kpis.compare_row(info.title, None, hw.compute_tier, outcome.error or "no plan"))
            failures.append((info.title, outcome.error or "no plan"))
            continue
        rows.append(kpis.compare_row(info.title, outcome.plan.metrics, hw.compute_tier))
        curve = state.derived(inputs, outcome.plan).curves.get(hw.compute_tier)
        if curve is not None:
            curves[info.title] = curve
    bar.empty()
    view.table(tables.compare_table(rows), key="cmp:table")
    for title, message in failures:
        st.warning(f"**{title}** found no plan: {message}", icon=":material/block:")
    view.chart(figures.compare_bars_figure(rows, capacity_bytes=hw.capacity(hw.compute_tier)), key="cmp:bars",
               title=f"Policies compared — {inputs.model_label} on {inputs.hardware_label}")
    st.markdown(f"##### {hw.compute_tier} occupancy over the step")
    st.caption("Total bytes in the compute tier for each policy; a lower line leaves more headroom, a shorter "
               "one finishes the step sooner.")
    if curves:
        view.chart(figures.compare_memory_figure(curves, tier=hw.compute_tier,
                                                 capacity_bytes=hw.capacity(hw.compute_tier)), key="cmp:memory",
                   title=f"{hw.compute_tier} occupancy per policy — {inputs.model_label}")
    with st.expander("About the policies"):
        for info in policies:
            st.markdown(f"**{info.title}** — {info.description} *({info.source})*")


main()
