"""Every sentence of the Learn walkthrough that says what the planner does, checked against the plans its
widgets produce (all settings of each section's sliders), re-planned here with ``make_plan`` directly."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from core.metrics import no_offload_peak_bytes
from core.plan import ComputeEvent, TransferEvent
from core.planner import make_plan
from core.units import format_bytes, format_time
from tests.apptest import navigation_pages
from ui import lessons

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30


def _plan(graph, hbm_gib, bw_gbps=None, recompute=True, host=True):
    from core.errors import TierplanError

    try:
        return make_plan(graph, lessons.hardware_for(hbm_gib, bw_gbps), policy="tierplan",
                         params={"recompute": int(recompute), "host_compute": int(host)})
    except TierplanError:
        return None


def _moved(plan):
    return sum(plan.metrics["transfer_bytes"].values())


@pytest.fixture(scope="module")
def learn_text():
    """The Learn page as rendered (AppTest), all markdown joined."""
    from streamlit.testing.v1 import AppTest

    with navigation_pages():
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.query_params["model"] = "tiny"
        at.run()
        at.switch_page("pages/learn.py").run()
        assert not at.exception, [e.value for e in at.exception]
        labels = " ".join(str(w.label) for w in [*at.select_slider, *at.toggle])
        text = "\n".join(m.value for m in at.markdown) + "\n" + "\n".join(c.value for c in at.caption) + "\n" + labels
        return " ".join(text.split())  # line breaks inside a markdown paragraph are spaces


class TestSection1:
    def test_box_and_model_numbers(self, learn_text):
        graph, hw = lessons.teaching()
        assert f"**{format_bytes(hw.capacity('HBM'))} of HBM**" in learn_text
        bw = hw.link_by_pair[("HBM", "DDR")].bandwidth_Bps
        assert f"1 GiB takes {format_time(GiB / bw)}" in learn_text
        assert len({t.bytes for t in graph.tensors if t.kind in ("weight", "activation", "gradient")}) == 1

    def test_layer_count(self, learn_text):
        graph, _ = lessons.teaching()
        layers = sum(1 for t in graph.tensors if t.kind == "weight")  # one weight per layer
        assert f"a {layers}-layer network" in learn_text

    def test_link_speeds_in_the_sidebars_unit(self, learn_text):
        assert "GiB/s" not in learn_text  # the sidebar edits links in GB/s
        assert "GB/s" in learn_text


class TestSection2:
    def test_plan_never_crosses_capacity_and_minimum_is_right(self, learn_text):
        graph, _ = lessons.teaching()
        plans = {g: _plan(graph, g) for g in lessons.WHY_HBM_GIB}
        for g, p in plans.items():
            if p is not None:
                assert p.metrics["peak_bytes"]["HBM"] <= g * GiB
        smallest = min(g for g, p in plans.items() if p is not None)
        assert all(plans[g] is None for g in lessons.WHY_HBM_GIB if g < smallest)
        assert f"at least {format_bytes(int(smallest * GiB))} to plan" in learn_text

    def test_more_room_never_moves_more_and_nothing_moves_from_the_peak(self, learn_text):
        graph, _ = lessons.teaching()
        moved = [(g, _moved(p)) for g in lessons.WHY_HBM_GIB if (p := _plan(graph, g)) is not None]
        monotone = all(b <= a for (_, a), (_, b) in itertools.pairwise(moved))
        claimed = "with more room, no more bytes move than with less" in learn_text
        assert claimed == monotone, moved
        if not monotone:  # the weaker claim, with its numbers
            assert moved[-1][1] < moved[0][1]
            assert (f"{format_bytes(moved[0][1])} at {format_bytes(int(moved[0][0] * GiB))}, "
                    f"{format_bytes(moved[-1][1])} at {format_bytes(int(moved[-1][0] * GiB))}") in learn_text
        first_zero = min(g for g, m in moved if m == 0)
        assert all(m > 0 for g, m in moved if g < first_zero)
        assert f"from {format_bytes(int(first_zero * GiB))} on nothing needs to move" in learn_text
        assert f"**{format_bytes(no_offload_peak_bytes(graph))}** at the peak" in learn_text

    def test_host_runs_the_optimizer_and_only_because_it_is_faster(self, learn_text):
        graph, _ = lessons.teaching()
        p = _plan(graph, lessons.WHY_DEFAULT_GIB)
        host = [e.op for e in p.events if isinstance(e, ComputeEvent) and e.tier != "HBM"]
        without = _plan(graph, lessons.WHY_DEFAULT_GIB, host=False)
        if host:
            assert f"runs {len(host)} optimizer updates there" in learn_text
            assert all(graph.ops[graph.op_index[o]].category == "optimizer" for o in host) if hasattr(graph, "op_index") \
                else all(o.startswith("adam") for o in host)
            assert without is None or without.metrics["step_time_s"] >= p.metrics["step_time_s"]
            assert f"the step takes {format_time(p.metrics['step_time_s'])}" in learn_text
            if without is not None:
                assert f"without the host the step would take {format_time(without.metrics['step_time_s'])}" in learn_text
            # "that idle time counts as stall": HBM idles while the host computes, and stall covers it
            busy_host = sum(e.end - e.start for e in p.events if isinstance(e, ComputeEvent) and e.tier != "HBM")
            assert p.metrics["stall_time_s"] > 0 and busy_host > 0
        else:
            assert "optimizer updates there" not in learn_text


class TestSection3:
    def _plans(self):
        graph, _ = lessons.teaching()
        return {bw: _plan(graph, lessons.PREFETCH_HBM_GIB, bw, recompute=False) for bw in lessons.PREFETCH_BW_GBPS}

    def test_slow_link_stalls_fast_link_does_not(self, learn_text):
        plans = self._plans()
        slow = lessons.PREFETCH_BW_GBPS[0]
        assert f"at {slow:g} GB/s compute waits {format_time(plans[slow].metrics['stall_time_s'])}" in learn_text
        assert plans[slow].metrics["stall_time_s"] > 0.01
        m = re.search(r"from \*\*(\d+) GB/s\*\* up compute never waits", learn_text)
        assert m, "the section must say from which speed compute never waits"
        start = float(m.group(1))
        assert all(p.metrics["stall_time_s"] <= lessons.STALL_EPS_S for bw, p in plans.items() if bw >= start)
        below = [bw for bw in lessons.PREFETCH_BW_GBPS if bw < start]
        assert below and plans[below[-1]].metrics["stall_time_s"] > lessons.STALL_EPS_S

    def test_same_bytes_and_copies_hidden_behind_compute(self, learn_text):
        plans = self._plans()
        same = len({_moved(p) for p in plans.values()}) == 1
        assert ("although the same bytes move" in learn_text) == same
        m = re.search(r"from (\d+) GB/s up every copy runs while HBM computes", learn_text)
        assert m
        for bw, p in plans.items():
            if bw < float(m.group(1)):
                continue
            busy = [(e.start, e.end) for e in p.events if isinstance(e, ComputeEvent) and e.tier == "HBM"]
            copies = [e for e in p.events if isinstance(e, TransferEvent)]
            assert copies
            for c in copies:  # each copy lies inside compute busy time: the chart shows it hidden
                covered = sum(max(0.0, min(c.end, b) - max(c.start, a)) for a, b in busy)
                assert covered == pytest.approx(c.end - c.start, rel=1e-9)


class TestSection4:
    def test_recompute_claims(self, learn_text):
        graph = lessons.recompute_graph()
        at = []
        for g in lessons.RECOMPUTE_HBM_GIB:
            on = _plan(graph, g, recompute=True)
            off = _plan(graph, g, recompute=False)
            if on is None:
                continue
            again = [e.op for e in on.events if isinstance(e, ComputeEvent) and e.recompute]
            if again:
                at.append(g)
                # it pays off: never slower than moving instead
                assert off is None or on.metrics["step_time_s"] <= off.metrics["step_time_s"]
            if off is not None:
                assert not [e for e in off.events if isinstance(e, ComputeEvent) and e.recompute]
        assert at, "the recompute example must really recompute on some slider setting"
        g0 = lessons.RECOMPUTE_DEFAULT_GIB if lessons.RECOMPUTE_DEFAULT_GIB in at else at[0]
        on, off = _plan(graph, g0), _plan(graph, g0, recompute=False)
        again = dict.fromkeys(e.op for e in on.events if isinstance(e, ComputeEvent) and e.recompute)
        assert f"At **{format_bytes(int(g0 * GiB))}** the planner re-runs {', '.join(f'`{o}`' for o in again)}" in learn_text
        assert f"step takes {format_time(on.metrics['step_time_s'])}, moving {format_bytes(_moved(on))}" in learn_text
        assert f"moves {format_bytes(_moved(off))} instead and the step takes {format_time(off.metrics['step_time_s'])}" \
            in learn_text
        assert f"re-runs an op at {', '.join(format_bytes(int(g * GiB)) for g in at)} of this slider" in learn_text
        # "with more room it simply keeps the tensor"
        for g in lessons.RECOMPUTE_HBM_GIB:
            if g > max(at):
                p = _plan(graph, g)
                assert p is not None and _moved(p) == 0 and not any(
                    isinstance(e, ComputeEvent) and e.recompute for e in p.events)
