"""Learn page: a guided walkthrough of memory tiers, offload, prefetch and recompute on the tiny teaching
graph, with the same live charts as the Plan page driven by a few sliders."""

from __future__ import annotations

import itertools
import json

import streamlit as st

from core.hardware import hardware_to_dict
from core.units import format_bandwidth, format_bytes, format_time
from ui import figures, kpis, lessons, state, view


def _inputs(example: str, hbm_gib: float, link_gbps: float | None, recompute: bool) -> state.Inputs:
    """The same setting :func:`ui.lessons.plan_at` plans, as dashboard inputs (so the charts are cached)."""
    graph = lessons.teaching()[0] if example == "tiny" else lessons.recompute_graph()
    hw = lessons.hardware_for(hbm_gib, link_gbps)
    params = {"host_compute": 1, "recompute": int(recompute)}
    key = "sample:tiny" if example == "tiny" else "learn:recompute"
    return state.Inputs(graph, key, graph.name, hw, state.hardware_json(hardware_to_dict(hw)), "tierplan",
                        json.dumps(params, sort_keys=True), hw.name)


def _show(inputs: state.Inputs, *, memory: bool, schedule: bool, section: str) -> object | None:
    outcome = state.plan_for(inputs, status=False)
    if outcome.plan is None:
        st.error(f"No plan fits: {outcome.error}", icon=":material/block:")
        st.caption("Give HBM a little more room: an op's own inputs and outputs must all be in HBM while it runs.")
        return None
    plan = outcome.plan
    m = plan.metrics
    tiles = {k.key: k for k in kpis.plan_kpis(m, "HBM")}
    view.kpi_tiles([tiles["step_time"], tiles["peak"], tiles["moved"], tiles["stall"], tiles["recompute"]], per_row=5)
    d = state.derived(inputs, plan)
    unit = figures.time_scale(float(m["step_time_s"]))
    if memory:
        before = state.before_curves(inputs)
        view.chart(figures.memory_figure(d.curves["HBM"], tier="HBM", capacity_bytes=inputs.hardware.capacity("HBM"),
                                         before=before.get("HBM"), time_unit=unit, uirevision=f"learn-{section}-mem",
                                         align=(d.knots, state.before_knots(inputs))),
                   key=f"learn:{section}:memory", title=f"HBM occupancy — {inputs.hardware.capacity('HBM') / 2**30:g} GiB")
    if schedule:
        view.chart(figures.schedule_figure(d.streams, time_unit=unit, uirevision=f"learn-{section}-sched"),
                   key=f"learn:{section}:schedule", title="Schedule — teaching example")
    return plan


def _gib(v: float) -> str:
    return format_bytes(int(v * lessons.GiB))


@st.fragment
@state.safe("Live example")
def _why() -> None:
    hbm = st.select_slider("HBM capacity", lessons.WHY_HBM_GIB, lessons.WHY_DEFAULT_GIB, format_func=_gib,
                           key="learn:why:hbm")
    plan = _show(_inputs("tiny", hbm, None, True), memory=True, schedule=True, section="why")
    if plan is not None:
        host = lessons.host_ops(plan)
        moved = format_bytes(lessons.moved_bytes(plan))
        st.caption(f"At {_gib(hbm)}: {moved} move" + (f"; the host runs {', '.join(f'`{o}`' for o in host)}"
                                                      if host else "; the host runs nothing") + ".")


@st.fragment
@state.safe("Live example")
def _prefetch() -> None:
    bw = st.select_slider("HBM ⇄ DDR link (GB/s, as in the sidebar)", lessons.PREFETCH_BW_GBPS,
                          lessons.PREFETCH_DEFAULT_GBPS, format_func=lambda v: f"{v:g} GB/s", key="learn:prefetch:bw")
    plan = _show(_inputs("tiny", lessons.PREFETCH_HBM_GIB, bw, False), memory=False, schedule=True, section="prefetch")
    if plan is not None:
        hidden = lessons.hidden_transfers(plan)
        st.caption(f"At {bw:g} GB/s: compute waits {format_time(float(plan.metrics['stall_time_s']))}; "
                   f"{hidden} cop{'y runs' if hidden == 1 else 'ies run'} entirely while HBM computes.")


@st.fragment
@state.safe("Live example")
def _recompute() -> None:
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    hbm = c1.select_slider("HBM capacity", lessons.RECOMPUTE_HBM_GIB, lessons.RECOMPUTE_DEFAULT_GIB, format_func=_gib,
                           key="learn:recompute:hbm")
    rc = c2.toggle("Allow recompute", True, key="learn:recompute:rc")
    plan = _show(_inputs("recompute", hbm, None, rc), memory=False, schedule=True, section="recompute")
    if plan is not None:
        again = lessons.recomputed_ops(plan)
        st.caption(f"At {_gib(hbm)}: " + (f"re-runs {', '.join(f'`{o}`' for o in again)}" if again else "re-runs nothing")
                   + f", moves {format_bytes(lessons.moved_bytes(plan))}, step "
                   f"{format_time(float(plan.metrics['step_time_s']))}.")


def _ms(s: float) -> str:
    return format_time(s)


def _link_text(hw) -> tuple[str, str]:
    """The teaching link's speed as the sidebar shows it, and how long 1 GiB takes over it."""
    bw = hw.link_by_pair[(hw.compute_tier, "DDR")].bandwidth_Bps
    return format_bandwidth(bw), format_time(lessons.GiB / bw)


@state.safe("Learn")
def main() -> None:
    view.header("Learn", "Why a model's tensors move between memories, and how a planner hides the cost. "
                "Ten minutes, on a model small enough to follow op by op.")
    graph, hw = lessons.teaching()
    why = lessons.why_facts()
    pre = lessons.prefetch_facts()
    rc = lessons.recompute_facts()
    speed, one_gib = _link_text(hw)
    sizes = sorted({format_bytes(t.bytes) for t in graph.tensors if t.kind in ("weight", "activation", "gradient")})
    adam = sorted({format_bytes(t.bytes) for t in graph.tensors if t.kind == "optimizer_state"})
    fwd = sorted({format_time(op.time_s) for op in graph.ops if op.phase == "forward" and op.time_s})
    n_layers = len({op.layer for op in graph.ops if op.layer and op.phase == "forward" and op.category != "loss"})
    st.markdown(f"""
### 1 · Three kinds of memory
An accelerator computes only on data in its own **HBM** (high-bandwidth memory): very fast (terabytes per second)
but small and expensive — tens of GiB. Next to it sits the host's **DDR**: several times larger and much
cheaper, but reached over a link (PCIe, NVLink-C2C, a supernode fabric) that is 10–50× slower than HBM. Below
that, an **SSD** holds terabytes at a few GB/s. Pooled *supernode* memory sits in between: another machine's
memory, reachable over a fast fabric.

Our teaching box has **{format_bytes(hw.capacity("HBM"))} of HBM** and **{format_bytes(hw.capacity("DDR"))} of DDR**
joined by a {speed} link (1 GiB takes {one_gib}). The teaching model is a {n_layers}-layer network: each weight,
activation and gradient is {" / ".join(sizes)}, each Adam state {" / ".join(adam)}, and each forward op takes
{" / ".join(fwd)}.
""")
    fits = [g for g, v in why.by_hbm.items() if v is not None]
    host_line = ""
    if why.default_host_ops:
        without = (f"without the host the step would take {_ms(why.default_step_without_host_s)}"
                   if why.default_step_without_host_s is not None else "without the host it would not fit at all")
        host_line = (f"\n\nThe **DDR compute** row of the schedule is the host's CPUs: at {_gib(lessons.WHY_DEFAULT_GIB)} "
                     f"the planner runs {len(why.default_host_ops)} optimizer updates there "
                     f"({', '.join(f'`{o}`' for o in why.default_host_ops)}), as ZeRO-Offload does, instead of bringing the "
                     f"optimizer state into HBM and back: the step takes {_ms(why.default_step_s)}, {without}. While the "
                     "host computes, HBM's compute has nothing to do: that idle time counts as **stall** too.")
    nothing = (f"from {_gib(why.smallest_nothing_moves_gib)} on nothing needs to move"
               if why.smallest_nothing_moves_gib is not None else "something always moves on this slider")
    moved = [(g, v[1]) for g, v in why.by_hbm.items() if v is not None]
    if all(b <= a for (_, a), (_, b) in itertools.pairwise(moved)):
        trend = "with more room, no more bytes move than with less"
    else:
        trend = (f"with more room fewer bytes move overall — {format_bytes(moved[0][1])} at {_gib(moved[0][0])}, "
                 f"{format_bytes(moved[-1][1])} at {_gib(moved[-1][0])} — though not at every step of the slider "
                 "(the planner's choices are not smooth in the capacity)")
    st.markdown(f"""
### 2 · Why tensors move
A training step runs forward through the layers, then backward, then updates the weights. Activations made in
the forward pass wait, idle, until the backward pass needs them; optimizer state is idle until the very end.
Kept in HBM all step, this model would need **{format_bytes(why.no_offload_peak_bytes)}** at the peak — the dotted
line below — more than the {format_bytes(why.default_capacity_bytes)} there is. So the planner moves idle tensors out
to DDR and brings them back before they are needed. The coloured area is what stays in HBM with the plan; it never
crosses the dashed capacity line. **Move the HBM slider** (it needs at least {_gib(min(fits))} to plan at all):
{trend}, and {nothing}.{host_line}
""")
    _why()
    fast = (f"from **{pre.no_stall_from_gbps:g} GB/s** up compute never waits"
            if pre.no_stall_from_gbps is not None else "even the fastest setting leaves some stall")
    same = " although the same bytes move" if pre.same_bytes_everywhere else ""
    hidden = (f", and from {pre.all_hidden_from_gbps:g} GB/s up every copy runs while HBM computes"
              if pre.all_hidden_from_gbps is not None else "")
    st.markdown(f"""
### 3 · How a prefetch hides a transfer
Copies run on the link's own stream, *at the same time* as compute. The planner starts bringing a tensor back
(a **prefetch**) early enough that it arrives just before the op that reads it — then the transfer costs
nothing: it is hidden behind compute. Here HBM has {_gib(lessons.PREFETCH_HBM_GIB)} and recompute is off, so every
tensor that leaves HBM has to come back over the link (section 4 shows the alternative); the chart has one row for
compute and one per link direction. **Slow the link down**: transfers grow longer than the compute they hide
behind, compute has to wait, and *stall* appears — at {lessons.PREFETCH_BW_GBPS[0]:g} GB/s compute waits
{_ms(pre.slowest_stall_s)}. Speed it up and the stall goes: {fast}{same}{hidden}.
""")
    _prefetch()
    at = rc.recompute_at_gib
    if at:
        g0 = lessons.RECOMPUTE_DEFAULT_GIB if lessons.RECOMPUTE_DEFAULT_GIB in at else at[0]
        ops, step_on, moved_on, step_off, moved_off = rc.by_hbm[g0]  # type: ignore[misc]
        off = (f"with recompute switched off the planner moves {format_bytes(moved_off)} instead and the step takes "
               f"{_ms(step_off)}" if step_off is not None else "with recompute switched off nothing fits")
        claim = (f"At **{_gib(g0)}** the planner re-runs {', '.join(f'`{o}`' for o in dict.fromkeys(ops))} and the "
                 f"step takes {_ms(step_on)}, moving {format_bytes(moved_on)}; {off}. It re-runs an op at "
                 f"{', '.join(_gib(g) for g in at)} of this slider; with more room it simply keeps the tensor.")
    else:
        claim = "On this example no slider setting makes re-running an op pay off; the planner always moves or keeps."
    rg = lessons.recompute_graph()
    big = max((t for t in rg.tensors if t.kind == "activation"), key=lambda t: t.bytes)
    maker = rg.ops[rg.producer[big.id]]
    st.markdown(f"""
### 4 · What recompute trades
Instead of storing an activation and copying it back, the planner may throw it away and **re-run the op
that made it** when it is needed again (the *recompute* bars on the compute row). That costs compute time but
no link time, and frees the memory while the tensor is idle — *but* the op's own inputs must be in HBM when it
re-runs. This example is a two-layer network behind a cheap `{maker.id}` op ({_ms(maker.time_s)}) that turns a
{format_bytes(sum(t.bytes for t in rg.tensors if t.id in maker.inputs))} input into the
{format_bytes(big.bytes)} activation `{big.id}`, read again by the last backward op. {claim}
""")
    _recompute()
    st.markdown(f"""
### 5 · Now try a real model
The **Plan** page does the same for real models — Llama, Mixtral, DeepSeek, ResNet — on real hardware
presets, with thousands of ops and every decision explained. The **What-if** page finds the smallest HBM that
keeps the step within a few percent of compute-only time ({format_time(_compute_only())} for this teaching model).
""")


@st.cache_data(show_spinner=False)
def _compute_only() -> float:
    from core.metrics import compute_only_time_s

    graph, hw = lessons.teaching()
    return compute_only_time_s(graph, hw)


main()

from ui.serve_learn import prefix_caching_section  # noqa: E402  (serve's section, appended at the end)

prefix_caching_section()
