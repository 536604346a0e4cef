"""Real-browser scenarios: the dashboard as a user sees it (Streamlit server + Chromium via Playwright)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.browser import visible_row_marks

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ROOT = Path(__file__).resolve().parents[2]


def _metric(app, label: str) -> str:
    tile = app.page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return tile.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _plot_points(app, index: int) -> int:
    """Number of plotted x values in the index-th visible Plotly chart (what the chart really draws).

    Waits until that chart is mounted and drawn: a plan that lands in the background (the refinement) remounts
    the charts, and a chart caught between unmount and redraw is not the page's state."""
    handle = app.page.wait_for_function(
        """(i) => {
            const plots = [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent !== null);
            const p = plots[i];
            if (!p || !p._fullData) return null;
            return {n: p._fullData.reduce((n, t) => n + (t.x && t.x.length ? t.x.length : 0), 0)};
        }""",
        arg=index,
    )
    return int(handle.json_value()["n"])


def _legend(app) -> str:
    return app.page.evaluate(
        """() => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent !== null)
                 .map(p => p.data.map(t => t.name).join('|')).join('||')"""
    )


def test_smoke_landing_page_shows_a_plan(app):
    app.open()
    app.page.locator('[data-testid="stMetric"]').first.wait_for()
    assert app.page.locator('[data-testid="stMetric"]').count() >= 7
    assert _metric(app, "Step time").endswith("s")
    app.page.locator(".js-plotly-plot").first.wait_for()
    assert _plot_points(app, 0) > 100  # the schedule of the Llama-2-7B training step
    app.assert_no_exception()
    shot = app.screenshot("plan", full=False)
    app.screenshot("plan-full")
    if os.environ.get("TIERPLAN_UPDATE_SCREENSHOTS") == "1":  # `make screenshots`, on purpose only
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "img" / "dashboard.png")


def test_changing_hbm_capacity_updates_kpis_and_charts(app):
    app.open("?model=tiny")
    app.wait_refined()  # the refined plan lands and redraws the page: read and edit after it
    step, moved = _metric(app, "Step time"), _metric(app, "Bytes moved")
    app.page.locator(".js-plotly-plot").first.wait_for()  # the chart draws after the KPIs
    points = _plot_points(app, 0)
    assert points > 0
    box = app.page.get_by_label("HBM capacity (GiB) — compute tier")
    box.fill("13")
    box.press("Enter")
    app.wait_idle()
    assert (_metric(app, "Step time"), _metric(app, "Bytes moved")) != (step, moved)
    app.page.locator(".js-plotly-plot").first.wait_for()
    after = points
    for _ in range(50):  # the new figure replaces the old one a moment after the KPIs change
        after = _plot_points(app, 0)
        if after != points:
            break
        app.page.wait_for_timeout(100)
    assert after != points  # fewer transfers on the schedule
    app.page.get_by_role("tab", name="Memory").click()
    app.wait_idle()
    app.page.locator(".js-plotly-plot").first.wait_for()
    assert "HBM capacity 13 GiB" in _legend(app)
    assert "HBM.capacity%3D13GiB" in app.page.url or "HBM.capacity=13GiB" in app.page.url
    app.assert_no_exception()
    app.screenshot("plan-memory-13gib")


def test_switch_pages(app):
    app.open("?model=tiny")
    for name, title in (("Compare", "Compare"), ("What-if", "What-if"), ("Model", "Model"), ("Learn", "Learn")):
        app.page.get_by_role("link", name=name).first.click()
        app.page.get_by_role("heading", name=title).first.wait_for()
        app.wait_idle()
        if name == "What-if":
            app.page.get_by_role("button", name="Run the sweep").click()
            app.wait_idle()
            app.page.locator(".js-plotly-plot").first.wait_for()
        app.page.locator(".js-plotly-plot").first.wait_for()
        app.assert_no_exception()
        app.screenshot(name.lower().replace("-", ""))
    app.page.get_by_role("link", name="Plan").first.click()
    app.page.locator('[data-testid="stMetric"]').first.wait_for()
    app.wait_idle()
    assert _metric(app, "Step time")


def test_bad_upload_shows_a_clear_message(app, tmp_path):
    app.open("?model=tiny")
    app.wait_refined()  # the refined plan lands and redraws the page: read and edit after it
    step = _metric(app, "Step time")
    sidebar = app.page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Upload a model").click()
    app.wait_idle()
    bad = tmp_path / "weights.json"
    bad.write_text('{"format": "tierplan-graph/1", "tensors": [}')
    sidebar.locator('input[type="file"]').first.set_input_files(str(bad))
    app.wait_idle()
    alert = app.page.locator('[data-testid="stAlert"]').filter(has_text="weights.json")
    alert.first.wait_for()
    assert "malformed JSON" in alert.first.inner_text()
    assert _metric(app, "Step time") == step  # still planning with the last good model
    app.assert_no_exception()
    app.screenshot("bad-upload")


def test_download_trace(app, tmp_path):
    app.open("?model=tiny")
    app.page.get_by_role("tab", name="Export").click()
    with app.page.expect_download() as info:
        app.page.get_by_role("button", name="Perfetto trace").click()
    path = tmp_path / "trace.json"
    info.value.save_as(str(path))
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    assert any(e.get("ph") == "X" for e in events)
    assert info.value.suggested_filename.endswith(".trace.json")
    app.assert_no_exception()


def test_big_schedule_draws_every_stream_row(app):
    """Above figures.BAR_LIMIT events the Gantt uses WebGL segments; every row must show marks in the page
    (it used to be blank but for the last row), also after zooming in."""
    app.page.set_default_timeout(180_000)  # DeepSeek-V3 plans for several seconds, more on a loaded machine
    app.open("?model=deepseek-v3-decode")
    app.page.locator(".js-plotly-plot").first.wait_for()
    app.wait_refined(timeout_ms=180_000)  # the refined plan redraws the charts: sample them after it
    app.page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullData !== undefined")
    types = app.page.evaluate(
        """() => [...new Set([...document.querySelectorAll('.js-plotly-plot')][0]._fullData.map(t => t.type))]"""
    )
    assert "scattergl" in types, "the sample must be above figures.BAR_LIMIT events (pick a bigger one)"
    app.page.wait_for_timeout(1500)
    marks = visible_row_marks(app.page, 0)
    assert len(marks) >= 3
    assert all(share > 0.02 for share in marks.values()), marks
    shots = app.screenshot("schedule-deepseek-v3", full=False).parent
    app.page.locator(".js-plotly-plot").first.screenshot(path=str(shots / "schedule-deepseek-v3-chart.png"))
    # zoom to the middle third of the step: the rows still draw
    box = app.page.locator(".js-plotly-plot").first.locator(".nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    app.page.mouse.move(box["x"] + box["width"] * 0.05, y)
    app.page.mouse.down()
    app.page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=8)
    app.page.mouse.up()
    app.page.wait_for_timeout(1500)
    zoomed = visible_row_marks(app.page, 0)
    assert sum(v > 0.02 for v in zoomed.values()) >= 2, zoomed
    app.assert_no_exception()


def test_add_a_tier_after_another_edit(app):
    """The popover's defaults survive an earlier edit (they came up empty: "give the new tier a name")."""
    app.open("?model=tiny")
    app.wait_refined()  # the refined plan lands and redraws the page: read and edit after it
    box = app.page.get_by_label("HBM capacity (GiB) — compute tier")
    box.fill("13")
    box.press("Enter")
    app.wait_idle()
    app.page.get_by_text("Add a tier").click()
    app.page.wait_for_timeout(600)
    assert app.page.get_by_label("Name", exact=True).input_value() == "POOL"
    assert app.page.get_by_label("Capacity", exact=True).input_value() == "1 TiB"
    app.page.get_by_role("button", name="Add tier").click()
    app.wait_idle()
    assert not app.page.locator('[data-testid="stAlert"]').filter(has_text="Cannot add").count()
    assert app.page.locator('input[aria-label^="POOL capacity"]').count() == 1
    assert "add=POOL" in app.page.url
    app.assert_no_exception()


def test_planning_shows_a_status_line(app):
    """A plan that takes seconds shows its first plan at once and says that it is refining it: the stage,
    the elapsed time and the best step so far; then that line gives way to the stages that ran."""
    app.page.goto(f"{app.url}/?model=deepseek-v3-decode&set=HBM.capacity%3D77GiB")
    status = app.page.get_by_text("Refining in the background")
    status.first.wait_for(timeout=60_000)
    text = status.first.inner_text()
    assert " stages done (" in text and " s · best step so far " in text
    app.page.locator('[data-testid="stMetric"]').first.wait_for()
    app.wait_refined(timeout_ms=120_000)
    assert app.page.get_by_text("Refining in the background").count() == 0
    app.assert_no_exception()


def _step_s(app) -> float:
    from core.units import parse_time

    return parse_time(_metric(app, "Step time"))


def _window_thumbs(app) -> list[int]:
    thumbs = app.page.locator('[data-testid="stSlider"]').filter(has_text="Time window").locator(
        '[data-testid="stSliderThumbValue"]')
    return [int(float(thumbs.nth(k).inner_text())) for k in (0, 1)]


def _set_window(app, lo: int, hi: int) -> None:
    """Set the schedule's time window with the keyboard, one handle at a time, each confirmed by a positive
    signal (its thumb shows the value and the rerun it asked for has finished). A plan that lands meanwhile
    redraws the slider, which can drop presses not yet sent to the server: those handles are pressed again
    (at most three rounds)."""
    for _ in range(3):
        for k, target in ((0, lo), (1, hi)):
            current = _window_thumbs(app)[k]
            if current == target:
                continue
            handle = app.page.locator('[data-testid="stSlider"]').filter(has_text="Time window").get_by_role(
                "slider").nth(k)
            handle.focus()
            key = "ArrowRight" if target > current else "ArrowLeft"
            for _ in range(abs(target - current)):
                handle.press(key)
            app.wait_idle()
        if _window_thumbs(app) == [lo, hi]:
            return
    assert _window_thumbs(app) == [lo, hi]


def test_refined_plan_replaces_the_first_and_the_window_stays(app):
    """The first plan shows with a refining bar; the refined plan replaces it (a faster step, the bound's
    tile filled in) while the time window the user set stays and applies to the new plan."""
    app.page.goto(f"{app.url}/?model=llama3-70b-train")
    app.page.get_by_text("Refining in the background").first.wait_for(timeout=60_000)
    first_step = _step_s(app)
    assert _metric(app, "Best possible") == "…" or _metric(app, "Best possible").startswith("within")
    _set_window(app, 10, 70)
    app.wait_refined(timeout_ms=180_000)
    thumbs = app.page.locator('[data-testid="stSlider"]').filter(has_text="Time window").locator(
        '[data-testid="stSliderThumbValue"]')
    lo, hi = (float(thumbs.nth(k).inner_text()) / 100 for k in (0, 1))
    assert (lo, hi) == (0.10, 0.70)  # the window the user set, kept through the update
    refined_step = _step_s(app)
    assert refined_step < first_step  # the refined plan replaced the first one
    assert _metric(app, "Best possible").startswith("within")
    x_range = app.page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')][0]._fullLayout.xaxis.range")
    from ui.figures import time_scale

    unit = time_scale(refined_step)[0]
    assert x_range == pytest.approx([lo * refined_step * unit, hi * refined_step * unit], rel=0.02)
    app.assert_no_exception()


def test_delete_tier_button_is_not_clipped(app):
    """The delete button beside a tier's capacity sits wholly inside the sidebar's expander (it was cut)."""
    app.open("?model=llama2-7b-train")
    app.page.locator('[data-testid="stMetric"]').first.wait_for()
    app.wait_idle()
    sidebar = app.page.locator('[data-testid="stSidebar"]')
    frame = sidebar.locator('[data-testid="stExpander"]').first.bounding_box()
    buttons = [b for b in sidebar.locator("button").filter(has_text="delete").all() if b.is_visible()]
    assert len(buttons) >= 2  # DDR and SSD
    for button in buttons:
        box = button.bounding_box()
        assert box["width"] >= 16 and box["x"] >= frame["x"]
        assert box["x"] + box["width"] <= frame["x"] + frame["width"] - 8, (box, frame)
        icon = button.evaluate("""b => { const i = [...b.querySelectorAll('*')].filter(e => e.innerText === 'delete').pop();
                                          const r = i.getBoundingClientRect(); return [r.x, r.width]; }""")
        left, right = icon[0] - box["x"], box["x"] + box["width"] - (icon[0] + icon[1])
        # the whole icon shows, centred (it was pushed half out of a too-narrow button)
        assert left >= -0.5 and right >= -0.5 and abs(left - right) <= 3, (box, icon)


def test_download_decisions_csv_has_kinds_sizes_and_op_names(app, tmp_path):
    import csv

    app.open("?model=tiny")
    app.page.get_by_role("tab", name="Export").click()
    with app.page.expect_download() as info:
        app.page.get_by_role("button", name="Decisions (CSV)").click()
    path = tmp_path / "decisions.csv"
    info.value.save_as(str(path))
    rows = list(csv.DictReader(path.open()))
    assert rows
    assert all(r["kind"] and r["bytes"].isdigit() for r in rows)  # they were empty in every row
    ops = {"step start", "step end", "fwd1", "fwd2", "fwd3", "loss", "bwd3", "bwd2", "bwd1", "adam1", "adam2", "adam3"}
    assert all(r["start_op"] in ops and r["end_op"] in ops for r in rows)  # names, not indices
    app.assert_no_exception()


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_theme_follows_the_system_preference(browser, app_url, scheme):
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, color_scheme=scheme)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        from tests.e2e.conftest import AppDriver

        app = AppDriver(page, app_url)
        app.open("?model=tiny")
        page.locator('[data-testid="stMetric"]').first.wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        app.wait_idle()
        page.wait_for_timeout(800)
        bg = page.evaluate("() => getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor")
        paper = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')][0]._fullLayout.paper_bgcolor")

        def lum(css: str) -> float:
            import re

            if css == "white":
                return 255.0
            r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3]) if css.startswith("rgb") else (
                int(css[1:3], 16), int(css[3:5], 16), int(css[5:7], 16))
            return 0.2126 * r + 0.7152 * g + 0.0722 * b

        if scheme == "dark":
            assert lum(bg) < 80 and lum(paper) < 80, (bg, paper)
        else:
            assert lum(bg) > 200 and lum(paper) > 200, (bg, paper)
        app.screenshot(f"plan-{scheme}", full=False)
    finally:
        context.close()


def test_zoom_survives_an_input_change(app):
    """The time window below the schedule keeps a zoom when a new plan is drawn (Streamlit remounts a chart
    whose figure changed, so a zoom made by dragging does not survive; the window does)."""
    app.open("?model=tiny")
    app.wait_refined()  # the refined plan lands and redraws the page: read and edit after it
    app.page.locator(".js-plotly-plot").first.wait_for()
    app.wait_idle()
    handles = app.page.locator('[data-testid="stSlider"]').filter(has_text="Time window").get_by_role("slider")
    handles.nth(0).focus()
    for _ in range(20):
        handles.nth(0).press("ArrowRight")
    app.wait_idle()
    handles = app.page.locator('[data-testid="stSlider"]').filter(has_text="Time window").get_by_role("slider")
    handles.nth(1).focus()
    for _ in range(40):
        handles.nth(1).press("ArrowLeft")
    app.wait_idle()
    thumbs = app.page.locator('[data-testid="stSlider"]').filter(has_text="Time window").locator(
        '[data-testid="stSliderThumbValue"]')
    lo, hi = (float(thumbs.nth(k).inner_text()) / 100 for k in (0, 1))
    assert 0 < lo < hi < 1

    def x_range():
        return app.page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')][0]._fullLayout.xaxis.range")

    def step_ms():
        tile = app.page.locator('[data-testid="stMetric"]').filter(has_text="Step time").first
        return float(tile.locator('[data-testid="stMetricValue"]').inner_text().split()[0])

    def window_applies() -> bool:
        """The chart shows the window over the plan in the Step tile (read together: a plan may land between)."""
        for _ in range(300):
            rng, step = x_range(), step_ms()
            if rng == pytest.approx([lo * step, hi * step], rel=0.02):
                return True
            app.page.wait_for_timeout(100)  # a plan landed between the two reads: the page redraws
        return False

    assert window_applies()
    before = step_ms()
    field = app.page.get_by_label("HBM capacity (GiB) — compute tier")
    field.fill("13")
    field.press("Enter")
    app.wait_idle()
    # the new capacity's plan is drawn: its Step tile differs (the old plan's 'Refined' caption stays until
    # the new refined plan lands, so it is no signal of the new plan)
    app.page.wait_for_function(
        """(old) => {
            const tile = [...document.querySelectorAll('[data-testid="stMetric"]')]
                .find(t => t.innerText.includes('Step time'));
            const v = tile && tile.querySelector('[data-testid="stMetricValue"]');
            return v && parseFloat(v.innerText) !== old;
        }""",
        arg=before,
    )
    assert window_applies()  # the new plan, same window
    app.assert_no_exception()


def test_deep_link_on_a_fresh_server_opens_the_app(browser, fresh_app_url):
    """/learn as the very first visit ran pages/learn.py alone (Streamlit's legacy pages/ mode: a file list
    in the sidebar, no top navigation, no inputs)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        page.goto(f"{fresh_app_url}/learn")
        page.get_by_role("heading", name="Learn").first.wait_for()
        page.get_by_role("link", name="Plan").first.wait_for()  # the app's top navigation
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0
        assert page.get_by_text("Display").count() >= 1  # the app's own sidebar
    finally:
        context.close()
