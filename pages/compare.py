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


A_COLOR, B_COLOR = "#1F77B4", "#E6550D"


def _variant(inputs: state.Inputs) -> state.Inputs | None:
    """Setting B: the sidebar's setting with its own compute-tier capacity, one link's bandwidth and policy."""
    from core.hardware import hardware_to_dict, with_capacity
    from core.policies import list_policies
    from core.sweep import with_link_bandwidth

    hw = inputs.hardware
    tier = hw.compute_tier
    cap_gib = hw.capacity(tier) / 2**30
    links = [lk.name for lk in hw.links]
    c1, c2, c3, c4 = st.columns(4)
    if "ab:cap" not in st.session_state:
        st.session_state["ab:cap"] = round(cap_gib * 0.75, 2)
    b_cap = c1.number_input(f"B: {tier} capacity (GiB)", min_value=0.01, step=max(0.01, round(cap_gib / 20, 2)),
                            key="ab:cap", help=f"A has {format_bytes(hw.capacity(tier))}")
    link = c2.selectbox("B: link to change", links, key="ab:link") if links else None
    current_bw = next((lk.bandwidth_Bps for lk in hw.links if lk.name == link), 0.0)
    if st.session_state.get("ab:link_was") != link:
        st.session_state["ab:bw"] = round(current_bw / 1e9, 3)
        st.session_state["ab:link_was"] = link
    b_bw = c3.number_input("B: its bandwidth (GB/s)", min_value=0.001, key="ab:bw", disabled=link is None,
                           help=f"A: {current_bw / 1e9:g} GB/s")
    policies = {p.key: p.title for p in list_policies()}
    if st.session_state.get("ab:policy") not in policies:
        st.session_state["ab:policy"] = inputs.policy
    b_policy = c4.selectbox("B: policy", list(policies), key="ab:policy", format_func=policies.get)
    hw_b = with_capacity(hw, tier, int(b_cap * 2**30))
    if link is not None:
        hw_b = with_link_bandwidth(hw_b, link, b_bw * 1e9)
    params = inputs.params_json if b_policy == inputs.policy else json.dumps({})
    return state.Inputs(inputs.graph, inputs.graph_key, inputs.model_label, hw_b,
                        state.hardware_json(hardware_to_dict(hw_b)), b_policy, params, f"{hw.name} (B)")


@state.safe("A/B")
def _ab(inputs: state.Inputs) -> None:
    st.caption("**A** is the setting in the sidebar; **B** the same with the changes below. Every number is a full "
               "plan of each setting.")
    b = _variant(inputs)
    if b is None:
        return
    out_a = state.plan_for(inputs)
    out_b = state.plan_for(b, label=f"Planning setting B ({b.policy})")
    if out_a.plan is None or out_b.plan is None:
        for name, out in (("A", out_a), ("B", out_b)):
            if out.plan is None:
                st.error(f"No plan for setting {name}: {out.error}", icon=":material/block:")
        return
    tier = inputs.hardware.compute_tier
    st.dataframe(kpis.ab_rows(out_a.plan.metrics, out_b.plan.metrics, tier), hide_index=True)
    curves = {"A": state.derived(inputs, out_a.plan).curves.get(tier), "B": state.derived(b, out_b.plan).curves.get(tier)}
    if all(c is not None for c in curves.values()):
        fig = figures.compare_memory_figure(curves, tier=tier, colors={"A": A_COLOR, "B": B_COLOR},
                                            capacities={"A": inputs.hardware.capacity(tier), "B": b.hardware.capacity(tier)})
        view.chart(fig, key="ab:memory", title=f"{tier} occupancy, A vs B — {inputs.model_label}")


@state.safe("Compare")
def main() -> None:
    view.header("Compare", "The same model on the same hardware under every policy — or two settings side by side: "
                "how fast, how full, how much traffic. The same scheduler times them all.")
    inputs = state.current_inputs()
    if inputs is None:
        st.info("Pick a model and hardware in the sidebar.")
        return
    tab_pol, tab_ab = st.tabs([":material/compare_arrows: Every policy", ":material/difference: A/B: two settings"])
    with tab_pol:
        _policies(inputs)
    with tab_ab:
        _ab(inputs)


def _policies(inputs: state.Inputs) -> None:
    hw = inputs.hardware
    st.markdown(f"**{inputs.model_label}** on **{inputs.hardware_label}** · {hw.compute_tier} capacity "
                f"{format_bytes(hw.capacity(hw.compute_tier))}")
    policies = list_policies()
    bar = st.progress(0.0, text="Planning with every policy…")
    rows, curves, failures = [], {}, []
    for k, info in enumerate(policies):
        bar.progress(k / len(policies), text=f"Planning with {info.title} ({k + 1}/{len(policies)})…")
        outcome = state.plan_for(inputs, policy=info.key, params_json=_params_for(inputs, info.key), status=False)
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
