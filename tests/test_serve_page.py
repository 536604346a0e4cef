"""Streamlit AppTest of the Serve page: it draws on the shipped trace, knobs change the numbers, bad uploads
get one clear message, nothing raises."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 180


pytestmark = pytest.mark.usefixtures("navigation_pages")  # run app.py, not a page alone


def _serve(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["model"] = "tiny"
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    at.switch_page("pages/serve.py").run()
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _synthetic(at: AppTest, requests: int = 300) -> AppTest:
    at.radio(key="sv:trace").set_value("Synthetic generator").run()
    at.number_input(key="sv:syn:n").set_value(requests).run()
    return at


class TestServePage:
    def test_shipped_trace_summary_and_simulation(self):
        at = _serve()
        _clean(at)
        assert _metric(at, "Requests") == "3,993"
        assert _metric(at, "Reuse ceiling") == "63.96 %"
        assert _metric(at, "Prefix hit rate").endswith("%")
        keys = {c.proto.id for c in at.get("plotly_chart")}
        assert len(list(at.get("plotly_chart"))) >= 6, keys

    def test_knobs_change_the_numbers(self):
        at = _synthetic(_serve())
        _clean(at)
        before = _metric(at, "Prefix hit rate")
        at.toggle(key="sv:hbmcache").set_value(False).run()
        for tier_key in [k for k in ("sv:cap:DDR", "sv:cap:SSD")]:
            at.number_input(key=tier_key).set_value(0.0).run()
        _clean(at)
        assert _metric(at, "Prefix hit rate") == "0.00 %" != before
        at.toggle(key="sv:hbmcache").set_value(True).run()
        at.selectbox(key="sv:policy").set_value("belady").run()
        _clean(at)
        big = _metric(at, "Prefix hit rate")
        assert big != "0.00 %"
        at.number_input(key="sv:cap:HBM").set_value(16.0).run()  # weights 12.6 GiB: a small cache is left
        _clean(at)
        assert float(_metric(at, "Prefix hit rate").rstrip(" %")) < float(big.rstrip(" %"))
        at.number_input(key="sv:cap:HBM").set_value(8.0).run()
        assert any("do not fit in HBM" in e.value for e in at.error)

    def test_policies_and_sizing_buttons(self):
        at = _synthetic(_serve(), 200)
        at.button(key="sv:pol:run").click().run()
        _clean(at)
        frames = [d.value for d in at.dataframe]
        table = next(f for f in frames if "policy" in f.columns)
        assert list(table["policy"]) == ["lru", "lfu", "s3fifo", "arc", "cost", "tierplan", "belady"]
        assert table.set_index("policy").loc["belady", "hit rate (%)"] >= table.set_index("policy").loc["lru", "hit rate (%)"]
        at.button(key="sv:sz:run").click().run()
        _clean(at)
        assert len(list(at.get("plotly_chart"))) >= 9

    def test_bad_upload_names_line_and_field(self):
        at = _serve()
        at.radio(key="sv:trace").set_value("Upload a trace").run()
        at.file_uploader(key="sv:upload").upload(
            "bad.jsonl", b'{"timestamp": 0, "input_length": 1000, "output_length": 2, "hash_ids": [1]}\n',
            "application/json").run()
        _clean(at)
        assert any("bad.jsonl: line 1: hash_ids: has 1 block ids but input_length 1000 needs" in e.value for e in at.error)

    def test_good_upload(self):
        at = _serve()
        at.radio(key="sv:trace").set_value("Upload a trace").run()
        lines = b"\n".join(b'{"timestamp": %d, "input_length": 1024, "output_length": 4, "hash_ids": [1, 2]}' % (i * 500)
                           for i in range(6))
        at.file_uploader(key="sv:upload").upload("ok.jsonl", lines, "application/json").run()
        _clean(at)
        assert _metric(at, "Requests") == "6"
        assert _metric(at, "Reuse ceiling") == f"{100 * 10 / 12:.2f} %"
