"""Streamlit AppTest for every page: widgets change computed KPIs, uploads good and bad, no exceptions.

Most tests open the app on the tiny teaching sample (``?model=tiny``) so each rerun plans in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.units import parse_time

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 120


pytestmark = pytest.mark.usefixtures("navigation_pages")  # run app.py, not a page alone


def _app(**query: str | list[str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    return at


def _settled(at: AppTest) -> AppTest:
    """Let the background refinement of every plan asked for finish, then rerun: the page shows final plans."""
    from ui import state

    state.plan_store().settle()
    return at.run()


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _qp(at: AppTest, key: str) -> list[str]:
    value = at.query_params[key]
    return value if isinstance(value, list) else [value]


def _charts(at: AppTest) -> list:
    return list(at.get("plotly_chart"))


def _open_decisions(at: AppTest) -> AppTest:
    """Open the Plan page's Decisions expander (its table is built only while it is open)."""
    at.session_state["dec:open"] = True
    return at.run()


def _open_tab(at: AppTest, name: str) -> AppTest:
    """Open a Plan page tab (only the open tab runs)."""
    from ui.view import PLAN_TAB_KEY, plan_tab

    at.session_state[PLAN_TAB_KEY] = plan_tab(name)
    return at.run()


class TestPlanPage:
    def test_landing_shows_a_full_plan_without_upload(self):
        at = _settled(_app())
        _clean(at)
        assert not at.error, [e.value for e in at.error]
        assert at.title[0].value == "Plan"
        labels = [m.label for m in at.metric]
        for expected in ("Step time", "Peak HBM", "Without offload", "Transfers hidden", "Stall", "Bytes moved",
                         "Recompute"):
            assert expected in labels
        assert len(_charts(at)) >= 1 and at.dataframe  # schedule + decisions table
        _open_tab(at, "Memory")
        assert len(_charts(at)) >= 1  # memory
        _open_tab(at, "Export")
        names = [b.label for b in at.get("download_button")]
        assert "Plan (JSON)" in names and "HTML report" in names
        # Llama-2-7B training: the refined order runs optimizer updates inside the backward; the page says so
        moved = [e for e in at.expander if e.label.startswith("Execution order:")]
        assert moved, [e.label for e in at.expander]
        assert int(moved[0].label.split()[2]) > 0

    def test_changing_hbm_capacity_changes_kpis(self):
        at = _app(model="tiny")
        before = (_metric(at, "Step time"), _metric(at, "Bytes moved"))
        at.number_input(key="in:cap:HBM").set_value(13.0).run()
        _clean(at)
        after = (_metric(at, "Step time"), _metric(at, "Bytes moved"))
        assert after != before
        assert _qp(at, "set") == ["HBM.capacity=13GiB"]

    def test_host_compute_switch_changes_the_plan(self):
        at = _settled(_app(model="tiny"))  # the refined plan: nothing lands between the two reads
        with_host = _metric(at, "Step time")
        at.toggle(key="in:p:tierplan:host_compute").set_value(False).run()
        _clean(at)
        # The portfolio with host compute includes every plan without it, so switching it off can never
        # make the step faster. (On the teaching preset the 1 TFLOP/s host runs the fixed-time Adam ~100x
        # slower than the device since issue #9's host scaling, so the fastest plan keeps it on the device.)
        assert parse_time(_metric(at, "Step time").replace(" ", "")) >= parse_time(with_host.replace(" ", ""))
        assert any("host_compute" in item for item in _qp(at, "p")), at.query_params

    def test_slower_link_increases_stall(self):
        at = _app(model="tiny")
        stall = _metric(at, "Stall")
        at.number_input(key="in:bw:DDR->HBM").set_value(20.0).run()
        _clean(at)
        assert _metric(at, "Stall") != stall

    def test_infeasible_hardware_shows_message_and_keeps_last_plan(self):
        at = _settled(_app(model="tiny"))  # the refined plan: nothing lands between the two reads
        step = _metric(at, "Step time")
        at.number_input(key="in:cap:HBM").set_value(2.0).run()
        _clean(at)
        messages = " ".join(e.value for e in at.error)
        assert "No plan for these settings" in messages and "HBM" in messages
        assert _metric(at, "Step time") == step  # last good plan still shown

    def test_zero_bandwidth_is_a_clear_input_error(self):
        at = _app(model="tiny")
        at.number_input(key="in:bw:HBM->DDR").set_value(0.0).run()
        _clean(at)
        assert any("bandwidth" in e.value for e in at.error)
        assert _metric(at, "Step time")

    def test_policy_parameter_and_policy_switch(self):
        at = _app(model="tiny")
        moved = _metric(at, "Bytes moved")
        at.selectbox(key="in:policy").set_value("none").run()
        _clean(at)
        # "none" keeps everything in HBM: on 8 GiB that is infeasible, and says so
        assert any("No plan" in e.value for e in at.error) or _metric(at, "Bytes moved") != moved

    def test_remove_and_add_a_tier(self):
        at = _app()
        assert any(n.key == "in:cap:SSD" for n in at.number_input)
        at.button(key="rm:SSD").click().run()
        _clean(at)
        assert not any(n.key == "in:cap:SSD" for n in at.number_input)
        at.text_input(key="add:name").set_value("POOL")
        at.text_input(key="add:cap").set_value("512 GiB")
        at.text_input(key="add:bw").set_value("150 GB/s")
        at.button(key=next(b.key for b in at.button if b.label == "Add tier")).click().run()
        _clean(at)
        assert any(n.key == "in:cap:POOL" for n in at.number_input)
        assert any(n.key == "in:bw:HBM->POOL" for n in at.number_input)
        assert _qp(at, "rm") == ["SSD"] and _qp(at, "add")[0].startswith("POOL,")

    def test_bad_added_tier_is_reported(self):
        at = _app(model="tiny")
        at.text_input(key="add:cap").set_value("lots")
        at.button(key=next(b.key for b in at.button if b.label == "Add tier")).click().run()
        _clean(at)
        assert any("Cannot add the tier" in e.value for e in at.error)

    def test_decisions_filter_and_highlight(self):
        at = _open_decisions(_app(model="tiny"))
        at.multiselect(key="dec:action").set_value(["offload"]).run()
        _clean(at)
        moved = at.multiselect(key="sched:highlight").options
        assert moved
        at.multiselect(key="sched:highlight").set_value([moved[0]]).run()
        _clean(at)
        schedule = json.loads(_charts(at)[0].proto.spec)
        assert any(trace.get("name") == "selected" for trace in schedule["data"])

    def test_url_restores_the_setting(self):
        at = _app(model="tiny", set=["HBM.capacity=12GiB", "DDR->HBM.bandwidth=50GB/s"], policy="tierplan")
        _clean(at)
        assert at.number_input(key="in:cap:HBM").value == pytest.approx(12.0)
        assert at.number_input(key="in:bw:DDR->HBM").value == pytest.approx(50.0)
        assert at.selectbox(key="in:sample").value == "tiny"

    def test_url_with_added_tier(self):
        at = _app(model="llama2-7b-train", add=["POOL,1TiB,HBM,200GB/s,2us"], rm=["SSD"])
        _clean(at)
        assert at.number_input(key="in:cap:POOL").value == pytest.approx(1.0)
        assert at.number_input(key="in:bw:POOL->HBM").value == pytest.approx(200.0)
        assert not any(n.key == "in:cap:SSD" for n in at.number_input)
        assert _qp(at, "add") == ["POOL,1TiB,HBM,200GB/s,2us"]


class TestUploads:
    def test_good_native_graph(self):
        at = _app()
        at.radio(key="in:source").set_value("Upload a model").run()
        at.file_uploader(key="upl:model").upload("tiny.json", (ROOT / "sample_models" / "tiny.json").read_bytes(),
                                                 "application/json").run()
        _clean(at)
        assert not at.error, [e.value for e in at.error]
        assert any("uploaded tiny.json" in m.value for m in at.markdown)

    def test_bad_file_shows_clear_message_and_app_keeps_working(self):
        at = _settled(_app(model="tiny"))  # the refined plan: nothing lands between the two reads
        step = _metric(at, "Step time")
        at.radio(key="in:source").set_value("Upload a model").run()
        at.file_uploader(key="upl:model").upload("broken.json", b'{"format": "tierplan-graph/1", "ops": [', "application/json").run()
        _clean(at)
        messages = " ".join(e.value for e in at.error)
        assert "broken.json" in messages
        assert _metric(at, "Step time") == step

    def test_hf_config_with_workload_controls(self):
        at = _app()
        at.radio(key="in:source").set_value("Upload a model").run()
        config = (ROOT / "sample_models" / "configs" / "llama-2-7b.json").read_bytes()
        at.file_uploader(key="upl:model").upload("config.json", config, "application/json").run()
        _clean(at)
        assert at.selectbox(key="in:wl_kind").value == "train"
        at.selectbox(key="in:wl_kind").set_value("decode").run()
        at.number_input(key="in:wl_seq").set_value(1024).run()
        _clean(at)
        assert not at.error, [e.value for e in at.error]
        assert any("uploaded config.json" in m.value for m in at.markdown)

    def test_bad_hardware_upload(self):
        at = _app(model="tiny")
        at.radio(key="in:hw_source").set_value("Upload").run()
        at.file_uploader(key="upl:hw").upload("hw.json", b'{"format": "tierplan-hardware/1", "tiers": []}',
                                              "application/json").run()
        _clean(at)
        assert any("uploaded hardware" in e.value and "hw.json: compute" in e.value for e in at.error)
        assert _metric(at, "Step time")


class TestOtherPages:
    def test_compare_lists_every_policy(self):
        from core.policies import list_policies

        at = _app(model="tiny")
        at.switch_page("pages/compare.py").run()
        _clean(at)
        assert at.title[0].value == "Compare"
        table = at.dataframe[0].value
        assert len(table) == len(list_policies())
        infeasible = table[table["feasible"] == "no"]
        assert len(at.warning) == len(infeasible)
        assert len(_charts(at)) >= 1

    def test_whatif_sweep(self):
        at = _app(model="tiny")
        at.switch_page("pages/whatif.py").run()
        _clean(at)
        at.slider(key="wi:points").set_value(3).run()
        at.button(key="wi:run").click().run()
        _clean(at)
        assert at.success or at.warning
        assert _charts(at)

    def test_whatif_heatmap(self):
        at = _app(model="tiny")
        at.switch_page("pages/whatif.py").run()
        at.slider(key="wi:hcap").set_value(2).run()
        at.slider(key="wi:hbw").set_value(2).run()
        at.button(key="wi:heat").click().run()
        _clean(at)
        assert _charts(at)

    def test_model_page(self):
        at = _app()
        at.switch_page("pages/model.py").run()
        _clean(at)
        assert _metric(at, "Ops") == "426" or int(_metric(at, "Ops").replace(",", "")) > 0
        collapsed = at.toggle(key="model:collapse").value
        at.toggle(key="model:collapse").set_value(not collapsed).run()
        _clean(at)
        assert len(at.dataframe) >= 3

    def test_learn_sliders_change_kpis(self):
        at = _app()
        at.switch_page("pages/learn.py").run()
        _clean(at)
        assert not at.error, [e.value for e in at.error]
        before = [m.value for m in at.metric[:5]]
        at.select_slider(key="learn:why:hbm").set_value(14.0).run()
        _clean(at)
        assert [m.value for m in at.metric[:5]] != before


class TestPlanStore:
    @staticmethod
    def _tiny():
        from core import load_sample
        from core.hardware import hardware_to_dict
        from core.sources.presets import load_preset
        from ui.anytime import PlanSpec
        from ui.state import hardware_json

        return PlanSpec(load_sample("tiny"), hardware_json(hardware_to_dict(load_preset("teaching"))), "tierplan", "{}")

    def test_plans_are_shared_not_copied_and_made_once(self):
        from ui.state import PlanStore

        store = PlanStore(max_entries=2)
        first = store.request("k", "g", self._tiny())
        second = store.request("k", "g", self._tiny())  # in flight: the same computation
        assert first is second
        final = store.wait(first, final=True, timeout=120)
        assert final is not None and final.final and final.plan is not None and final.note is None
        assert store.get("k") is final  # the same object on every hit, no copy
        assert "g" in store.seconds
        for key in ("a", "b"):
            store.wait(store.request(key, "g", self._tiny()), final=True, timeout=120)
        assert store.get("k") is None and len(store) == 2  # least recently used dropped

    def test_refinement_pauses_unwatched_and_resumes_when_asked(self, monkeypatch: pytest.MonkeyPatch):
        """Nobody asks for the plan: after its first plan the refining process is paused; asking again
        resumes it, up to the plan make_plan gives."""
        import time

        from core import load_preset, load_sample
        from core.planner import make_plan
        from ui import state

        monkeypatch.setattr(state, "WANTED_FOR_S", 0.0)
        store = state.PlanStore()
        job = store.request("k", "g", self._tiny())
        first = store.wait(job, final=False, timeout=120)
        assert first is not None and first.update is not None and first.update.stage == "first"
        deadline = time.monotonic() + 60
        while not job.paused and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.paused and store.idle() and not job.outcome.final
        monkeypatch.setattr(state, "WANTED_FOR_S", 60.0)
        final = store.wait(job, final=True, timeout=120)  # waiting for the final plan asks for it
        expected = make_plan(load_sample("tiny"), load_preset("teaching"))
        assert final is not None and final.final and final.version >= 1 and final.note is None
        assert final.plan.metrics["step_time_s"] == pytest.approx(expected.metrics["step_time_s"])
        assert final.plan.metrics["step_time_s"] < first.plan.metrics["step_time_s"]
        assert final.plan.gap_to_bound is not None

    def test_app_reruns_return_the_same_plan_object(self):
        at = _settled(_app(model="tiny"))
        first = at.session_state["inputs"]
        from ui import state

        hit1 = state.plan_store().get(state.plan_key(first.graph_key, first.hw_json, first.policy, first.params_json))
        at.run()
        hit2 = state.plan_store().get(state.plan_key(first.graph_key, first.hw_json, first.policy, first.params_json))
        assert hit1 is not None and hit1 is hit2


class TestBackgroundRefinement:
    """The first plan shows at once, then the refined one replaces it; the user's view survives."""

    def test_first_plan_then_the_refined_one_with_the_view_kept(self, monkeypatch: pytest.MonkeyPatch):
        from core import load_preset, load_sample
        from core.planner import make_plan
        from core.units import format_time
        from ui import state

        monkeypatch.setattr(state, "WANTED_FOR_S", 0.0)  # the refinement parks after the first plan: see it
        graph, hw = load_sample("llama2-7b-train"), load_preset("h100-sxm")
        at = _app(model="llama2-7b-train", set="HBM.capacity=77GiB")
        _clean(at)
        inputs = at.session_state["inputs"]
        first = make_plan(inputs.graph, inputs.hardware, time_budget_s=0)
        assert _metric(at, "Step time") == format_time(first.metrics["step_time_s"])
        assert _metric(at, "Best possible") == "…"  # the bound comes with a later stage
        bars = [p.proto.text for p in at.get("progress")]
        assert any("Refining in the background: 1 of 6 stages done (first)" in t for t in bars), bars
        assert not [e for e in at.expander if e.label.startswith("Execution order:")]  # graph order first
        # the user's view: a time window and a highlighted tensor
        at.slider(key="sched:window").set_value((10, 40)).run()
        moved = at.multiselect(key="sched:highlight").options
        at.multiselect(key="sched:highlight").set_value([moved[0]]).run()
        monkeypatch.setattr(state, "WANTED_FOR_S", 60.0)
        _settled(at)
        _clean(at)
        shown = state.latest_outcome(inputs)
        assert shown is not None and shown.final and shown.version >= 1
        step = shown.plan.metrics["step_time_s"]
        assert _metric(at, "Step time") == format_time(step) and step < first.metrics["step_time_s"]
        # make_plan's answer (its local search is time-bounded, so a loaded machine may differ a little)
        assert step == pytest.approx(make_plan(inputs.graph, inputs.hardware).metrics["step_time_s"], rel=0.02)
        assert _metric(at, "Best possible").startswith("within ")
        assert not at.get("progress") and any(c.value.startswith(":material/check_circle: Refined: stages first, "
                                                                 "portfolio") for c in at.caption)
        assert [e for e in at.expander if e.label.startswith("Execution order:")]  # the refined order won
        assert at.slider(key="sched:window").value == (10, 40)
        still = set(at.multiselect(key="sched:highlight").options)
        assert at.multiselect(key="sched:highlight").value == ([moved[0]] if moved[0] in still else [])
        assert graph.name and hw.name  # (the sample and preset the page opened)


def _spec(chart) -> dict:
    return json.loads(chart.proto.spec)


class TestMemoryTab:
    def test_before_curve_is_op_aligned_and_inside_the_axis(self):
        """Llama-2-7B training: the no-offload peak (105 GiB) is above the 80 GiB HBM; the axis used to stop
        at 100 GiB and the dotted curve ran on a 380 ms axis beside an 833 ms plan."""
        at = _open_tab(_app(), "Memory")
        _clean(at)
        inputs = at.session_state["inputs"]
        from core.metrics import no_offload_peak_bytes

        peak_gib = no_offload_peak_bytes(inputs.graph) / 2**30
        specs = [_spec(c) for c in _charts(at)]
        hbm = next(s for s in specs if (s["layout"].get("title") or {}).get("text") == "HBM")
        traces = hbm["data"]
        before = next(t for t in traces if str(t.get("name", "")).startswith("before offload"))
        stack = [t for t in traces if t.get("stackgroup")]

        def values(arr):
            if isinstance(arr, dict):  # plotly's base64 typed array
                import base64

                import numpy as np

                return np.frombuffer(base64.b64decode(arr["bdata"]), dtype=np.dtype(arr["dtype"])).tolist()
            return list(arr)

        assert hbm["layout"]["yaxis"]["range"][1] > peak_gib
        n_ops = len(inputs.graph.ops)
        assert max(values(before["x"])) == pytest.approx(n_ops, abs=1.0)
        assert max(values(stack[0]["x"])) == pytest.approx(n_ops, abs=1.0)
        assert hbm["layout"]["xaxis"]["title"]["text"].startswith("ops run")

    def test_unused_tier_message_keeps_its_number(self):
        at = _open_tab(_app(), "Memory")
        captions = [c.value for c in at.caption if "unused by this plan" in c.value]
        assert captions and all(any(ch.isdigit() for ch in c.split("(")[1]) for c in captions), captions


class TestHeader:
    def test_header_says_what_was_edited(self):
        at = _app()
        assert any("NVIDIA H100" in m.value and "edited" not in m.value for m in at.markdown if " on **" in m.value)
        at.number_input(key="in:cap:HBM").set_value(48.0).run()
        at.button(key=next(b.key for b in at.button if b.label == "Add tier")).click().run()
        _clean(at)
        header = next(m.value for m in at.markdown if " on **" in m.value)
        assert "(edited: HBM 48 GiB, + POOL)" in header


class TestSmallFixes:
    def test_decisions_table_opens_on_what_the_plan_changes(self):
        at = _app(model="tiny")
        _clean(at)
        assert not [d for d in at.dataframe if "action" in getattr(d.value, "columns", [])]  # closed: not built
        _open_decisions(at)
        assert "keep" not in at.multiselect(key="dec:action").value
        assert set(at.multiselect(key="dec:action").value) == {"offload", "recompute"} & set(
            at.multiselect(key="dec:action").options)
        frame = next(d.value for d in at.dataframe if "action" in getattr(d.value, "columns", []))
        assert len(frame) and "keep" not in set(frame["action"])
        assert "size (GiB)" in frame.columns

    def test_model_page_counts_parameters_in_human_units(self):
        at = _app(model="resnet50-train")
        at.switch_page("pages/model.py").run()
        _clean(at)
        value = _metric(at, "Parameters")
        assert value.endswith(" M") and not value.startswith("0.0"), value

    def test_transfers_hidden_is_a_dash_when_nothing_moves(self):
        at = _app(model="tiny", set=["HBM.capacity=32GiB"])
        _clean(at)
        assert _metric(at, "Bytes moved") == "0 B"
        assert _metric(at, "Transfers hidden") == "—"


class TestCharts:
    def test_download_named_after_the_title_in_the_chosen_format(self):
        at = _app(model="tiny")
        schedule = _charts(at)[0]
        config = json.loads(schedule.proto.config)
        assert config["toImageButtonOptions"]["format"] == "png"
        assert config["toImageButtonOptions"]["filename"].startswith("schedule")
        assert _spec(schedule)["layout"]["title"]["text"].startswith("Schedule — ")
        at.session_state["in:fig_format"] = "svg"
        at.run()
        assert json.loads(_charts(at)[0].proto.config)["toImageButtonOptions"]["format"] == "svg"


class TestSliders:
    def test_dragging_a_slider_sets_the_field_and_replans(self):
        at = _app(model="tiny")
        assert not [s for s in at.slider if s.key and s.key.startswith("sl:")]  # off by default (latency)
        at.toggle(key="in:sliders").set_value(True).run()
        before = _metric(at, "Bytes moved")
        at.slider(key="sl:in:cap:HBM").set_value(13.0).run()
        _clean(at)
        assert at.number_input(key="in:cap:HBM").value == 13.0
        assert _metric(at, "Bytes moved") != before
        at.number_input(key="in:cap:HBM").set_value(10.0).run()
        assert at.slider(key="sl:in:cap:HBM").value == 10.0  # the slider follows the field

    def test_sliders_show_their_fields_values(self):
        at = _app(model="deepseek-v3-decode", policy="none")  # 128 GiB HBM: a slider once showed 130
        at.toggle(key="in:sliders").set_value(True).run()
        fields = {n.key: n.value for n in at.number_input if n.key and n.key.startswith(("in:cap:", "in:bw:"))}
        sliders = {s.key.removeprefix("sl:"): s.value for s in at.slider if s.key and s.key.startswith("sl:")}
        assert sliders and all(sliders[k] == pytest.approx(v, abs=1e-9) for k, v in fields.items() if k in sliders)

    def test_one_click_share_of_the_no_offload_peak(self):
        from core.metrics import no_offload_peak_bytes

        at = _app()
        peak = no_offload_peak_bytes(at.session_state["inputs"].graph)
        at.number_input(key="in:peak_pct").set_value(60.0).run()
        at.button(key="set:peak_pct").click().run()
        _clean(at)
        assert at.number_input(key="in:cap:HBM").value == pytest.approx(round(peak * 0.6 / 2**30, 3))
        tile = next(m for m in at.metric if m.label == "Peak HBM")
        from core.units import format_bytes

        assert tile.delta.endswith(f"of {format_bytes(at.session_state['inputs'].hardware.capacity('HBM'))}")
        assert at.session_state["inputs"].hardware.capacity("HBM") == pytest.approx(0.6 * peak, rel=1e-3)


class TestTensorTimeline:
    def test_pick_a_tensor_and_see_where_it_lives_and_why(self):
        at = _open_tab(_app(model="tiny"), "Tensor timeline")
        _clean(at)
        from ui import state

        box = at.selectbox(key="res:tensor")
        inputs = at.session_state["inputs"]
        plan = state.plan_store().get(state.plan_key(inputs.graph_key, inputs.hw_json, inputs.policy, inputs.params_json))
        moving = {d.tensor for d in plan.plan.decisions if d.action != "keep"}
        assert box.value in moving  # opens on a tensor that moves
        spec = next(_spec(c) for c in _charts(at) if "Where" in str(_spec(c)["layout"].get("title", {}).get("text", "")))
        names = {t.get("name") for t in spec["data"]}
        assert {"lives here", "copy arriving", "read or updated by an op"} <= names
        why = [d.value for d in at.dataframe if "why" in getattr(d.value, "columns", [])]
        assert why and len(why[0]) == sum(1 for d in plan.plan.decisions if d.tensor == box.value)


class TestAB:
    def test_two_settings_side_by_side_with_deltas_and_both_curves(self):
        from core.hardware import with_capacity
        from core.planner import make_plan
        from core.units import format_time

        at = _app(model="tiny")
        at.switch_page("pages/compare.py").run()
        _clean(at)
        at.number_input(key="ab:cap").set_value(12.0).run()
        _clean(at)
        inputs = at.session_state["inputs"]
        a = make_plan(inputs.graph, inputs.hardware, policy=inputs.policy, params=inputs.params)
        b = make_plan(inputs.graph, with_capacity(inputs.hardware, "HBM", 12 * 2**30), policy=inputs.policy,
                      params=inputs.params)
        table = next(d.value for d in at.dataframe if "B − A" in getattr(d.value, "columns", []))
        step = table[table[""] == "Step time"].iloc[0]
        assert step["A"] == format_time(a.metrics["step_time_s"]) and step["B"] == format_time(b.metrics["step_time_s"])
        assert (step["B − A"] == "no change") == (a.metrics["step_time_s"] == b.metrics["step_time_s"])
        spec = next(_spec(c) for c in _charts(at) if "A vs B" in str(_spec(c)["layout"].get("title", {}).get("text", "")))
        assert [t["name"] for t in spec["data"]] == ["A", "B"]


def test_compare_note_column_gets_the_room_it_needs():
    at = _app(model="tiny")
    at.switch_page("pages/compare.py").run()
    _clean(at)
    table = next(d for d in at.dataframe if "note" in getattr(d.value, "columns", []))
    assert json.loads(table.proto.columns)["note"]["width"] == "large"
