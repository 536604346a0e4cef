"""The JSON Schemas in docs/schemas: well-formed, and they accept every example the project ships
(presets, sample graphs, the examples in docs/formats.md, plans the planner writes) and reject malformed ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.graph import graph_from_dict
from core.hardware import hardware_from_dict
from core.plan import plan_from_dict, plan_to_dict
from core.validate import validate_plan

try:  # installed with streamlit (through altair); without it only the schema checks are skipped
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None
needs_jsonschema = pytest.mark.skipif(jsonschema is None, reason="jsonschema is not installed")

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
NAMES = ("graph", "hardware", "plan")


def schema(name: str) -> Any:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


def validator(name: str) -> Any:
    return jsonschema.Draft202012Validator(schema(name))


def doc_examples() -> dict[str, Any]:
    """The JSON blocks of docs/formats.md announced by ``<!-- example: NAME ... -->``."""
    text = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: (\w+)[^>]*-->\s*```json\n(.*?)```", text, flags=re.S)
    return {name: json.loads(body) for name, body in found}


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_well_formed(name: str) -> None:
    raw = schema(name)
    assert raw["title"] == f"tierplan-{name}/1"
    assert raw["properties"]["format"] == {"const": f"tierplan-{name}/1"}
    if jsonschema is not None:
        jsonschema.Draft202012Validator.check_schema(raw)


def test_formats_doc_links_every_schema() -> None:
    text = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
    for name in NAMES:
        assert f"schemas/{name}.schema.json" in text


class TestDocExamples:
    def test_all_three_present(self) -> None:
        assert set(doc_examples()) == set(NAMES)

    @needs_jsonschema
    @pytest.mark.parametrize("name", NAMES)
    def test_match_schema(self, name: str) -> None:
        validator(name).validate(doc_examples()[name])

    def test_load_and_validate(self) -> None:
        ex = doc_examples()
        graph = graph_from_dict(ex["graph"], source="docs/formats.md")
        hardware_from_dict(ex["hardware"], source="docs/formats.md")
        plan = plan_from_dict(ex["plan"], source="docs/formats.md")
        report = validate_plan(graph, plan)  # physics and the documented metrics
        assert report.ok, report.errors


@needs_jsonschema
@pytest.mark.parametrize("path", sorted((ROOT / "presets").glob("*.json")), ids=lambda p: p.name)
def test_presets_match_hardware_schema(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    validator("hardware").validate(raw)
    hardware_from_dict(raw, source=str(path))


@needs_jsonschema
@pytest.mark.parametrize("path", sorted((ROOT / "sample_models").glob("*.json")), ids=lambda p: p.name)
def test_sample_graphs_match_graph_schema(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    validator("graph").validate(raw)


@needs_jsonschema
def test_planner_output_matches_plan_schema() -> None:
    planner = pytest.importorskip("core.planner")
    from core.sources.presets import load_preset
    from core.sources.samples import list_samples, load_sample

    info = next(s for s in list_samples() if s.key == "tiny")
    graph, hw = load_sample(info.key), load_preset(info.hardware)
    plan = planner.make_plan(graph, hw)
    raw = json.loads(json.dumps(plan_to_dict(plan)))
    validator("plan").validate(raw)
    assert validate_plan(graph, plan_from_dict(raw)).ok


@needs_jsonschema
class TestRejects:
    def test_bad_tensor_kind(self) -> None:
        raw = doc_examples()["graph"]
        raw["tensors"][0]["kind"] = "parameter"
        assert not validator("graph").is_valid(raw)

    def test_op_without_time(self) -> None:
        raw = doc_examples()["graph"]
        del raw["ops"][1]["time_s"]
        assert not validator("graph").is_valid(raw)

    def test_bad_unit_string(self) -> None:
        raw = doc_examples()["hardware"]
        raw["tiers"][0]["capacity_bytes"] = "lots"
        assert not validator("hardware").is_valid(raw)

    def test_unknown_event_type(self) -> None:
        raw = doc_examples()["plan"]
        raw["events"].append({"type": "teleport", "tensor": "w", "start": 0, "end": 1})
        assert not validator("plan").is_valid(raw)

    def test_negative_time(self) -> None:
        raw = doc_examples()["plan"]
        raw["events"][0]["start"] = -1.0
        assert not validator("plan").is_valid(raw)

    def test_unknown_action(self) -> None:
        raw = doc_examples()["plan"]
        raw["decisions"][0]["action"] = "teleport"
        assert not validator("plan").is_valid(raw)
