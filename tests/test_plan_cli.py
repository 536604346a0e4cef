"""``python -m core plan`` reports the lower bound, the gap and the refined order; --no-reorder turns it off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main
from core.graph import save_graph
from core.hardware import save_hardware
from tests.builders import hierarchy, toy_training


def test_summary_and_switch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph, hw = tmp_path / "g.json", tmp_path / "hw.json"
    save_graph(toy_training(4), graph)
    save_hardware(hierarchy("9 GiB", "20 GB/s", ssd=False), hw)
    out = tmp_path / "p.json"
    assert main(["plan", str(graph), "--hardware", str(hw), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    raw = json.loads(out.read_text())
    assert "lower bound" in text and "% above it" in text
    assert "order         refined: 3 optimizer updates moved" in text
    assert raw["order"] and raw["lower_bound_s"] <= raw["metrics"]["step_time_s"]
    assert raw["gap_to_bound"] == pytest.approx(raw["metrics"]["step_time_s"] / raw["lower_bound_s"] - 1)
    assert main(["plan", str(graph), "--hardware", str(hw), "--no-reorder", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "order " not in text and "order" not in json.loads(out.read_text())
    assert main(["validate", str(graph), str(out)]) == 0
