"""What-if page: how step time depends on the compute tier's capacity and the host link's bandwidth.

Points are planned by :mod:`core.sweep` on the executor chosen in "Where the plans run" and stream into
the chart as they complete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from core.executor import default_workers
from core.sweep import (
    SweepPoint,
    empty_heatmap,
    fill_heatmap,
    iter_heatmap,
    iter_sweep_capacity,
    min_capacity_for_slowdown,
)
from core.units import format_bandwidth, format_bytes
from ui import figures, state, view

_EXECUTORS = {"auto": "Automatic (processes beyond 3 points)", "serial": "This process, one by one",
              "process": "Local process pool", "dask": "Dask distributed"}
#: Each point's planning: every refinement stage (the Plan page's plan), or the fast first plan only.
_QUALITY = {"refined": ("Refined (every stage, as on the Plan page)", None),
            "first": ("First plan only (several times faster)", 0.0)}


def _progress(bar: Any) -> Callable[[float, str], None]:
    """A core progress callback drawing on ``bar``."""
    return lambda frac, text: bar.progress(min(1.0, max(0.0, frac)), text=text)


def _key(inputs: state.Inputs, *parts: Any) -> str:
    return hashlib.sha256(json.dumps([inputs.digest, *parts], default=str).encode()).hexdigest()[:16]


def _where() -> dict[str, Any]:
    """The executor settings (an expander shared by both sweeps)."""
    with st.expander("Where the plans run", icon=":material/dns:"):
        quality = st.segmented_control("Each point's plan", list(_QUALITY), default="refined", key="wi:quality",
                                       format_func=lambda k: _QUALITY[k][0],
                                       help="The first plan skips the planner's refinement stages (portfolio, "
                                       "refined order, baselines, LP bound, local search): faster sweeps, plans "
                                       "that may be slower than the Plan page's.") or "refined"
        c1, c2, c3 = st.columns([2, 2, 1])
        executor = c1.selectbox("Executor", list(_EXECUTORS), format_func=_EXECUTORS.__getitem__, key="wi:executor",
                                help="Each point is an independent plan; they run in parallel on a process pool "
                                "or a Dask cluster, and give the same results as one by one.")
        scheduler = c2.text_input("Dask scheduler", "", key="wi:scheduler", placeholder="tcp://host:8786",
                                  help="Empty: an embedded local Dask cluster. Only used by the Dask executor.",
                                  disabled=executor != "dask")
        workers = c3.number_input("Workers", 1, 256, min(default_workers(), 8), key="wi:workers",
                                  help="Processes for the pool or the embedded Dask cluster")
    return {"executor": executor, "scheduler": (scheduler.strip() or None) if executor == "dask" else None,
            "workers": int(workers), "time_budget_s": _QUALITY[quality][1]}


def _stream_sweep(inputs: state.Inputs, capacities: list[int], where: dict[str, Any], slot: Any, bar: Any,
                  draw: Callable[[list[SweepPoint]], Any]) -> list[SweepPoint]:
    """Plan every capacity, redrawing the chart in ``slot`` as each point arrives."""
    tier = inputs.hardware.compute_tier
    got: dict[int, SweepPoint] = {}
    # one task per point: each plan costs far more than a task, and the chart gets every point as it lands
    for k, point in iter_sweep_capacity(inputs.graph, inputs.hardware, policy=inputs.policy, capacities_bytes=capacities,
                                        params=inputs.params, chunks=len(capacities), **where):
        got[k] = point
        bar.progress(len(got) / len(capacities),
                     text=f"{len(got)} of {len(capacities)} plans · {tier} = {format_bytes(point.capacity_bytes)}")
        with slot.container():
            view.chart(draw([got[i] for i in sorted(got)]), key=f"wi:curve:live:{len(got)}")
    return [got[i] for i in range(len(capacities))]


@st.fragment
@state.safe("Capacity sweep")
def _capacity_sweep(inputs: state.Inputs, plan_metrics: dict[str, Any], where: dict[str, Any]) -> None:
    hw = inputs.hardware
    tier = hw.compute_tier
    peak = int(plan_metrics.get("no_offload_peak_bytes") or hw.capacity(tier))
    unit, size = ("GiB", 2**30) if peak >= 2**30 else ("MiB", 2**20)
    top = max(1.0, round(peak * 1.1 / size, 1))
    c1, c2, c3 = st.columns(3)
    lo, hi = c1.slider(f"{tier} capacity range ({unit})", 0.0, float(top), (round(top * 0.25, 1), float(top)),
                       key="wi:range", step=max(0.1, round(top / 100, 1)))
    points = c2.slider("Points", 3, 64, 8, key="wi:points")
    budget = c3.number_input("Slowdown budget (%)", 0.0, 500.0, 5.0, step=1.0, key="wi:budget",
                             help="The smallest capacity that keeps the step within this much of compute-only time")
    capacities = [int(c * size) for c in np.linspace(max(lo, 0.01), hi, points)]
    key = _key(inputs, "sweep", capacities, budget, where.get("time_budget_s"))
    note, slot = st.empty(), st.empty()

    def draw(result: list[SweepPoint], smallest: int | None = None) -> Any:
        return figures.sweep_figure(result, compute_only_time_s=plan_metrics.get("compute_only_time_s"),
                                    max_slowdown=budget / 100, min_capacity_bytes=smallest,
                                    current_capacity_bytes=hw.capacity(tier), tier=tier)

    if st.button("Run the sweep", type="primary", key="wi:run", icon=":material/play_arrow:"):
        bar = st.progress(0.0, text=f"Planning {points} capacities of {tier}…")
        result = _stream_sweep(inputs, capacities, where, slot, bar, draw)
        bar.progress(0.0, text=f"Searching the smallest {tier} within {budget:g} %…")
        smallest = min_capacity_for_slowdown(inputs.graph, hw, policy=inputs.policy, max_slowdown=budget / 100,
                                             params=inputs.params, progress=_progress(bar), **where)
        bar.empty()
        st.session_state["wi:sweep"] = (key, result, smallest, budget)
    stored = st.session_state.get("wi:sweep")
    if not stored or stored[0] != key:
        st.caption(f"Plans the step at {points} capacities of {tier} between {lo:g} and {hi:g} {unit}, then finds the "
                   f"smallest {tier} whose slowdown stays within {budget:g} %. Press *Run the sweep*.")
        return
    _, result, smallest, budget = stored
    feasible = [p for p in result if p.feasible]
    with note.container():
        if smallest is not None:
            st.success(f"Smallest {tier} with slowdown ≤ {budget:g} %: **{format_bytes(smallest)}** "
                       f"(now {format_bytes(hw.capacity(tier))}).", icon=":material/check_circle:")
        else:
            st.warning(f"No {tier} capacity up to the no-offload peak keeps the slowdown within {budget:g} % with "
                       "this policy and these links.", icon=":material/warning:")
    with slot.container():
        view.chart(draw(result, smallest), key="wi:curve")
    st.caption(f"{len(feasible)} of {len(result)} capacities have a plan; ✕ marks the ones that do not (hover for why).")


@st.fragment
@state.safe("Heatmap")
def _heatmap(inputs: state.Inputs, plan_metrics: dict[str, Any], where: dict[str, Any]) -> None:
    hw = inputs.hardware
    tier = hw.compute_tier
    out_links = [lk for lk in hw.links if lk.src == tier]
    if not out_links:
        st.info(f"No link leaves {tier}, so there is no bandwidth to vary.")
        return
    names = [lk.name for lk in out_links]
    link_name = st.selectbox("Link (set in both directions)", names, key="wi:link")
    link = next(lk for lk in out_links if lk.name == link_name)
    peak = int(plan_metrics.get("no_offload_peak_bytes") or hw.capacity(tier))
    c1, c2 = st.columns(2)
    n_cap = c1.slider("Capacity steps", 2, 8, 5, key="wi:hcap")
    n_bw = c2.slider("Bandwidth steps", 2, 6, 4, key="wi:hbw")
    capacities = [int(c) for c in np.linspace(peak * 0.3, peak * 1.05, n_cap)]
    bandwidths = [float(b) for b in link.bandwidth_Bps * np.geomspace(0.25, 4.0, n_bw)]
    key = _key(inputs, "heat", link_name, capacities, bandwidths, where.get("time_budget_s"))
    slot = st.empty()

    def draw(result: Any) -> Any:
        return figures.heatmap_figure(result.capacities_bytes, result.bandwidths_Bps, result.slowdown, tier=tier,
                                      link=result.link)

    if st.button("Compute the heatmap", key="wi:heat", icon=":material/grid_on:"):
        total = n_cap * n_bw
        bar = st.progress(0.0, text=f"Planning {total} points…")
        result = empty_heatmap(capacities, bandwidths, link_name)
        for done, ((i, j), point) in enumerate(
                iter_heatmap(inputs.graph, hw, policy=inputs.policy, capacities_bytes=capacities,
                             bandwidths_Bps=bandwidths, link=link_name, params=inputs.params, chunks=total, **where),
                start=1):
            fill_heatmap(result, i, j, point)
            bar.progress(done / total, text=f"{done} of {total} plans · {tier} = {format_bytes(capacities[i])}, "
                         f"{link_name} = {format_bandwidth(bandwidths[j])}")
            with slot.container():
                view.chart(draw(result), key=f"wi:heatmap:live:{done}")
        bar.empty()
        st.session_state["wi:heatmap"] = (key, result)
    stored = st.session_state.get("wi:heatmap")
    if not stored or stored[0] != key:
        st.caption(f"{n_cap * n_bw} plans: {tier} from 30 % to 105 % of the no-offload peak × {link_name} from ¼ to 4× "
                   "its bandwidth. Press *Compute the heatmap*.")
        return
    with slot.container():
        view.chart(draw(stored[1]), key="wi:heatmap")
    st.caption("Slowdown in % over compute-only time; ✕: no plan at that point.")


@state.safe("What-if")
def main() -> None:
    view.header("What-if", "Would less HBM do? Would a faster host link pay off? Each point below is a full plan.")
    inputs = state.current_inputs()
    if inputs is None:
        st.info("Pick a model and hardware in the sidebar.")
        return
    outcome = state.plan_for(inputs)
    metrics = dict(outcome.plan.metrics) if outcome.plan is not None else {}
    st.markdown(f"**{inputs.model_label}** on **{inputs.hardware.name}** · policy **{inputs.policy}**")
    where = _where()
    st.markdown("##### Step time against capacity")
    _capacity_sweep(inputs, metrics, where)
    st.markdown("##### Capacity × link bandwidth")
    _heatmap(inputs, metrics, where)


main()
