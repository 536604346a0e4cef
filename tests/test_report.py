"""The self-contained HTML report, built from a real plan of the tiny teaching sample."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from core.planner import make_plan
from core.sources.presets import load_preset
from core.sources.samples import load_sample
from ui.report import build_report


@pytest.fixture(scope="module")
def report() -> str:
    graph, hw = load_sample("tiny"), load_preset("teaching")
    plan = make_plan(graph, hw)
    return build_report(graph, hw, plan, model_label="Tiny <teaching> graph")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts_with_src: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts_with_src.append(a["src"] or "")
        if tag == "link" and a.get("href"):
            self.links.append(a["href"] or "")


def test_self_contained(report: str):
    tags = _Tags()
    tags.feed(report)
    assert tags.scripts_with_src == [] and tags.links == []  # nothing fetched from the network
    assert report.count("Plotly.newPlot") >= 2  # schedule + HBM memory
    assert len(re.findall(r"plotly\.js v\d", report)) == 1  # plotly.js inlined exactly once
    assert report.startswith("<!DOCTYPE html>") and report.rstrip().endswith("</html>")


def test_contents(report: str):
    for text in ("Step time", "Peak HBM", "Bytes moved per link", "HBM-&gt;DDR", "Schedule", "Memory in HBM",
                 "Decisions", "Teaching box"):
        assert text in report
    assert "Tiny &lt;teaching&gt; graph" in report  # labels are escaped
    assert "<teaching>" not in report


def test_memory_curves_aligned_op_by_op(report: str):
    """The no-offload curve runs on compute-only time: the report lines it up with the plan by ops."""
    assert "ops run (of 10; both curves aligned op by op)" in report
