"""Learn page: a guided walkthrough of memory tiers, offload, prefetch and recompute on the tiny teaching
graph, with the same live charts as the Plan page driven by a few sliders."""

from __future__ import annotations

import json

import streamlit as st

from core.hardware import hardware_to_dict, with_capacity
from core.sources.presets import load_preset
from core.sources.samples import load_sample
from core.sweep import with_link_bandwidth
from core.units import format_bytes, format_time
from ui import figures, kpis, state, view

SAMPLE, PRESET = "tiny", "teaching"


@st.cache_resource(show_spinner=False)
def _teaching():
    return load_sample(SAMPLE), load_preset(PRESET)


def _inputs(hbm_gib: float, link_gibps: float, recompute: bool) -> state.Inputs:
    graph, hw = _teaching()
    hw = with_capacity(hw, hw.compute_tier, int(hbm_gib * 2**30))
    hw = with_link_bandwidth(hw, f"{hw.compute_tier}->DDR", link_gibps * 2**30)
    params = {"recompute": 1 if recompute else 0}
    return state.Inputs(graph, f"sample:{SAMPLE}", "tiny teaching graph", hw,
                        state.hardware_json(hardware_to_dict(hw)), "tierplan", json.dumps(params, sort_keys=True))


@st.fragment
@state.safe("Live example")
def _live(section: str, *, show_memory: bool, show_schedule: bool, defaults: tuple[float, float, bool]) -> None:
    """One live example: sliders, the KPIs that matter, and the charts. Each section is its own fragment,
    so moving a slider reruns only that section."""
    hbm0, bw0, rc0 = defaults
    c1, c2, c3 = st.columns([2, 2, 1])
    hbm = c1.slider("HBM capacity (GiB)", 5.0, 16.0, hbm0, 1.0, key=f"learn:{section}:hbm")
    bw = c2.slider("HBM ⇄ DDR link (GiB/s)", 10.0, 400.0, bw0, 10.0, key=f"learn:{section}:bw",
                   help="At 100 GiB/s one 1 GiB tensor takes 10 ms: as long as one forward op")
    rc = c3.toggle("Allow recompute", rc0, key=f"learn:{section}:rc")
    inputs = _inputs(hbm, bw, rc)
    outcome = state.plan_for(inputs)
    if outcome.plan is None:
        st.error(f"No plan fits: {outcome.error}", icon=":material/block:")
        st.caption("Give HBM a little more room: an op's own inputs and outputs must all be in HBM while it runs.")
        return
    plan = outcome.plan
    m = plan.metrics
    tiles = {k.key: k for k in kpis.plan_kpis(m, "HBM")}
    view.kpi_tiles([tiles["step_time"], tiles["peak"], tiles["moved"], tiles["stall"], tiles["recompute"]], per_row=5)
    d = state.derived(inputs, plan)
    unit = figures.time_scale(float(m["step_time_s"]))
    if show_memory:
        before = state.before_curves(inputs)
        view.chart(figures.memory_figure(d.curves["HBM"], tier="HBM", capacity_bytes=inputs.hardware.capacity("HBM"),
                                         before=before.get("HBM"), time_unit=unit, uirevision=f"learn-{section}-mem",
                                         align=(d.knots, state.before_knots(inputs))),
                   key=f"learn:{section}:memory")
    if show_schedule:
        view.chart(figures.schedule_figure(d.streams, time_unit=unit, uirevision=f"learn-{section}-sched"),
                   key=f"learn:{section}:schedule")


@state.safe("Learn")
def main() -> None:
    view.header("Learn", "Why a model's tensors move between memories, and how a planner hides the cost. "
                "Ten minutes, on a model small enough to follow op by op.")
    _graph, hw = _teaching()
    peak = int(_teaching_peak())
    st.markdown(f"""
### 1 · Three kinds of memory
An accelerator computes only on data in its own **HBM** (high-bandwidth memory): very fast (terabytes per second)
but small and expensive — tens of GiB. Next to it sits the host's **DDR**: several times larger and much
cheaper, but reached over a link (PCIe, NVLink-C2C, a supernode fabric) that is 10–50× slower than HBM. Below
that, an **SSD** holds terabytes at a few GB/s. Pooled *supernode* memory sits in between: another machine's
memory, reachable over a fast fabric.

Our teaching box has **{format_bytes(hw.capacity("HBM"))} of HBM** and **{format_bytes(hw.capacity("DDR"))} of DDR**
joined by a link that moves 1 GiB in 10 ms. The teaching model is a 3-layer network: each weight, activation and
gradient is 1 GiB, each Adam state 2 GiB, and each forward op takes 10 ms.
""")
    st.markdown(f"""
### 2 · Why tensors move
A training step runs forward through the layers, then backward, then updates the weights. Activations made in
the forward pass wait, idle, until the backward pass needs them; optimizer state is idle until the very end.
Kept in HBM all step, this model would need **{format_bytes(peak)}** at the peak — the dotted line below —
more than the {format_bytes(hw.capacity("HBM"))} there is. So the planner moves idle tensors out to DDR and brings
them back before they are needed. The coloured area is what stays in HBM with the plan; it never crosses the
dashed capacity line. **Move the HBM slider**: with more room, fewer tensors move; at
{format_bytes(peak)} nothing needs to.
""")
    _live("why", show_memory=True, show_schedule=False, defaults=(8.0, 100.0, True))
    st.markdown("""
### 3 · How a prefetch hides a transfer
Copies run on the link's own stream, *at the same time* as compute. The planner starts bringing a tensor back
(a **prefetch**) early enough that it arrives just before the op that reads it — then the transfer costs
nothing: it is hidden behind compute. The chart below has one row for compute and one per link direction.
**Slow the link down**: transfers grow longer than the compute they hide behind, compute has to wait, and
*stall* time appears. Speed it up and the stall disappears even though the same bytes move.

The **DDR compute** row is the host's CPUs: the teaching box has some, so the planner may run the Adam
updates there (as ZeRO-Offload does) instead of bringing 2 GiB of optimizer state into HBM and back — the
state stays in DDR, the gradient goes down, the updated weight comes up. It keeps that only when the
schedule is faster.
""")
    _live("prefetch", show_memory=False, show_schedule=True, defaults=(10.0, 100.0, False))
    st.markdown("""
### 4 · What recompute trades
Instead of storing an activation and copying it back, the planner may throw it away and **re-run the op
that made it** when it is needed again (red bars on the compute row). That costs compute time but no link
time, and frees the memory while the tensor is idle — *but* the op's own inputs must be in HBM when it re-runs.
Here every activation comes from a 10 ms matmul whose inputs (the layer's input and weight) would then have
to be back in HBM too, so at 8 GiB the planner moves tensors instead and the **Recompute** tile stays at
0 s. **Raise HBM to 10 GiB** with this slow link: now it re-runs `fwd1` to rebuild `a1` — the step takes just
as long, because the re-run fills time that was stall anyway. Recompute pays off when the re-run is short next
to the copies it saves: on the ResNet-50 sample (a T4 behind PCIe) the planner recomputes the first
convolution's output instead of moving it.
""")
    _live("recompute", show_memory=False, show_schedule=True, defaults=(8.0, 30.0, True))
    st.markdown(f"""
### 5 · Now try a real model
The **Plan** page does the same for real models — Llama, Mixtral, DeepSeek, ResNet — on real hardware
presets, with thousands of ops and every decision explained. The **What-if** page finds the smallest HBM that
keeps the step within a few percent of compute-only time ({format_time(_compute_only())} for this teaching model).
""")


@st.cache_data(show_spinner=False)
def _compute_only() -> float:
    from core.metrics import compute_only_time_s

    graph, hw = _teaching()
    return compute_only_time_s(graph, hw)


@st.cache_data(show_spinner=False)
def _teaching_peak() -> int:
    from core.metrics import no_offload_peak_bytes

    return no_offload_peak_bytes(_teaching()[0])


main()
