"""What-if page (Streamlit AppTest): points stream into the chart with progress in human units, and every
executor gives the same curve; executor errors are one readable message."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 120


pytestmark = pytest.mark.usefixtures("navigation_pages")  # run app.py, not a page alone


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Every chart the page draws (key, number of feasible points) and every progress text, in order."""
    from streamlit.delta_generator import DeltaGenerator

    import ui.view

    seen: dict[str, list[Any]] = {"charts": [], "progress": []}
    chart, progress = ui.view.chart, DeltaGenerator.progress

    def spy_chart(fig: Any, *, key: str) -> None:
        seen["charts"].append((key, len(fig.data[0].x) if fig.data else 0))
        chart(fig, key=key)

    def spy_progress(self: Any, value: Any, text: str | None = None) -> Any:
        seen["progress"].append(text)
        return progress(self, value, text=text)

    monkeypatch.setattr(ui.view, "chart", spy_chart)
    monkeypatch.setattr(DeltaGenerator, "progress", spy_progress)
    return seen


def _whatif(executor: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["model"] = "tiny"
    at.run()
    at.switch_page("pages/whatif.py").run()
    at.selectbox(key="wi:executor").set_value(executor).run()
    if executor != "serial":
        at.number_input(key="wi:workers").set_value(2).run()
    at.slider(key="wi:points").set_value(4).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _curve(at: AppTest) -> dict[str, Any]:
    """The final capacity chart's data (layout aside)."""
    charts = [c for c in at.get("plotly_chart") if "wi:curve" in str(c.proto.id)]
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)["data"]


def test_points_stream_into_the_chart_with_human_progress(recorded: dict[str, list[Any]]) -> None:
    at = _whatif("serial")
    recorded["charts"].clear()
    recorded["progress"].clear()
    at.button(key="wi:run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    live = [(k, n) for k, n in recorded["charts"] if k.startswith("wi:curve:live:")]
    assert [k for k, _ in live] == [f"wi:curve:live:{i}" for i in range(1, 5)]  # one redraw per arriving point
    feasible = [n for _, n in live]
    assert feasible == sorted(feasible) and feasible[-1] >= 1  # the curve grows as plans arrive
    assert recorded["charts"][-1][0] == "wi:curve"
    texts = [t for t in recorded["progress"] if t and " plans · " in t]
    assert len(texts) == 4
    assert all(re.fullmatch(r"\d of 4 plans · HBM = \d+(\.\d+)? (GiB|MiB)", t) for t in texts), texts
    assert any(re.fullmatch(r"HBM between \d+(\.\d+)? GiB and \d+(\.\d+)? GiB \(\d+ plans\)", t or "")
               for t in recorded["progress"]), recorded["progress"]  # the min-HBM search, in GiB too
    assert at.success and "Smallest HBM with slowdown" in at.success[0].value


def test_process_pool_draws_the_same_curve_as_serial() -> None:
    serial = _whatif("serial")
    serial.button(key="wi:run").click().run()
    pooled = _whatif("process")
    pooled.button(key="wi:run").click().run()
    assert not pooled.exception, [e.value for e in pooled.exception]
    assert _curve(pooled) == _curve(serial)
    assert pooled.success[0].value == serial.success[0].value


def test_heatmap_streams_on_the_pool(recorded: dict[str, list[Any]]) -> None:
    at = _whatif("process")
    at.slider(key="wi:hcap").set_value(2).run()
    at.slider(key="wi:hbw").set_value(2).run()
    recorded["charts"].clear()
    recorded["progress"].clear()
    at.button(key="wi:heat").click().run()
    assert not at.exception, [e.value for e in at.exception]
    keys = [k for k, _ in recorded["charts"] if k.startswith("wi:heatmap")]
    assert keys == [f"wi:heatmap:live:{i}" for i in range(1, 5)] + ["wi:heatmap"]
    texts = [t for t in recorded["progress"] if t and " plans · " in t]
    assert len(texts) == 4 and all(re.fullmatch(r"\d of 4 plans · HBM = [\d.]+ (GiB|MiB), HBM->DDR = [\d.]+ GB/s", t)
                                   for t in texts), texts
    assert sum("wi:heatmap" in str(c.proto.id) for c in at.get("plotly_chart")) == 1  # the final one replaced the live ones


def test_unreachable_dask_scheduler_is_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.executor.CONNECT_TIMEOUT_S", 1.0)
    at = _whatif("dask")
    at.text_input(key="wi:scheduler").input("tcp://127.0.0.1:9").run()
    at.button(key="wi:run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any(e.startswith("Capacity sweep: cannot reach the Dask scheduler at tcp://127.0.0.1:9") for e in errors), errors


@pytest.mark.dask
def test_dask_cluster_draws_the_same_curve_as_serial() -> None:
    distributed = pytest.importorskip("distributed")
    import logging

    from core.executor import shutdown

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.CRITICAL)
    try:
        serial = _whatif("serial")
        serial.button(key="wi:run").click().run()
        remote = _whatif("dask")
        remote.text_input(key="wi:scheduler").input(cluster.scheduler_address).run()
        remote.button(key="wi:run").click().run()
        assert not remote.exception, [e.value for e in remote.exception]
        assert not remote.error, [e.value for e in remote.error]
        assert _curve(remote) == _curve(serial)
        assert remote.success[0].value == serial.success[0].value
    finally:
        shutdown()
        cluster.close()
