"""The native graph format: load, save, structural validation, fuzzing of the loader."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InputError
from core.graph import Graph, graph_from_dict, graph_to_dict, load_graph, save_graph
from core.sources.samples import tiny_graph

GiB = 2**30


def tiny_dict() -> dict[str, Any]:
    return graph_to_dict(tiny_graph())


def error_of(raw: Any) -> str:
    with pytest.raises(InputError) as err:
        graph_from_dict(raw, source="g.json")
    return err.value.message


class TestLoad:
    def test_roundtrip_file(self, tmp_path: Path) -> None:
        g = tiny_graph()
        save_graph(g, tmp_path / "g.json")
        again = load_graph(tmp_path / "g.json")
        assert again == g and again.meta == g.meta
        assert load_graph((tmp_path / "g.json").read_bytes()) == g

    def test_human_units_and_defaults(self) -> None:
        g = graph_from_dict({"format": "tierplan-graph/1", "tensors": [
            {"id": "w", "bytes": "1 GiB", "kind": "weight"}, {"id": "a", "bytes": 10, "kind": "activation"}],
            "ops": [{"id": "op", "inputs": ["w"], "outputs": ["a"], "time_s": "2 ms"}]})
        assert g.tensor_by_id["w"].bytes == GiB and g.tensor_by_id["w"].persistent
        assert g.ops[0].time_s == pytest.approx(2e-3)
        assert g.producer == {"a": 0} and g.persistent_bytes == GiB

    def test_derived_views(self) -> None:
        g = tiny_graph()
        assert g.op_index["bwd3"] == 4
        assert g.total_bytes_by_kind["optimizer_state"] == 6 * GiB


class TestErrors:
    def test_malformed_json(self) -> None:
        with pytest.raises(InputError, match=r"g\.json: malformed JSON at line 1"):
            load_graph(b"{oops", source="g.json")

    def test_truncated_json_message_is_a_whole_sentence(self) -> None:
        # json says "Unterminated string starting at" and leaves the position to the caller
        with pytest.raises(InputError) as info:
            load_graph(b'{"format": "tierplan-graph/1", "name": "cut', source="g.json")
        assert str(info.value) == "g.json: malformed JSON: Unterminated string starting at line 1, column 40"

    def test_binary(self) -> None:
        with pytest.raises(InputError, match="not a UTF-8"):
            load_graph(b"\x80\x81\xff", source="g.json")

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="cannot read file"):
            load_graph(tmp_path / "nope.json")

    @pytest.mark.parametrize(("edit", "needle"), [
        (lambda r: r.update(format="tierplan-graph/2"), "format: expected format"),
        (lambda r: r.pop("tensors"), "missing required field 'tensors'"),
        (lambda r: r.update(ops={}), "ops: expected a list"),
        (lambda r: r["tensors"][0].update(kind="weights"), "tensors[0].kind: unknown kind 'weights'"),
        (lambda r: r["tensors"][0].update(bytes=-1), "tensors[0].bytes: must be a finite number >= 0"),
        (lambda r: r["tensors"][0].update(bytes=1.5), "tensors[0].bytes: bytes must be a whole number"),
        (lambda r: r["tensors"][0].update(bytes=10**30), "tensors[0].bytes: tensor 'x' has 1e+30 bytes"),
        (lambda r: r["tensors"][0].update(bytes="lots"), "tensors[0].bytes: cannot read 'lots'"),
        (lambda r: r["tensors"][1].update(id="x"), "tensors[1].id: duplicate tensor id 'x'"),
        (lambda r: r["ops"][0]["inputs"].append("ghost"), "ops[0].inputs[2]: op 'fwd1' reads unknown tensor 'ghost'"),
        (lambda r: r["ops"][0].update(id="fwd2"), "ops[1].id: duplicate op id 'fwd2'"),
        (lambda r: r["ops"].insert(0, r["ops"].pop(1)), "ops[0].inputs[0]: op 'fwd2' reads 'a1' before op 'fwd1'"),
        (lambda r: r["ops"][0].update(mutates=["a1"]), "ops[0].mutates[0]: op 'fwd1' mutates 'a1', which is not"),
        (lambda r: r["ops"][0]["outputs"].append("w2"), "tensor 'w2' is persistent but produced"),
        (lambda r: r["ops"][0].update(time_s=10**6), "ops[0].time_s: 1000000 is implausibly large"),
        (lambda r: r["ops"][0].update(time_s=None), "needs 'time_s' or 'flops'"),
        (lambda r: r["ops"][0].update(category=3), "ops[0].category: expected a string"),
        (lambda r: r["ops"][0].update(host_ok="yes"), "ops[0].host_ok: expected true or false"),
        (lambda r: r["ops"][0].update(outputs=["a1", "x"]), "op 'fwd1' reads 'x' before op 'fwd1' produces it"),
        (lambda r: r.update(meta=[]), "meta: expected an object"),
    ])
    def test_named(self, edit: Any, needle: str) -> None:
        raw = tiny_dict()
        edit(raw)
        message = error_of(raw)
        assert message.startswith("g.json")
        assert needle in message

    def test_cycle(self) -> None:
        raw = {"format": "tierplan-graph/1", "tensors": [{"id": "a", "bytes": 1, "kind": "activation"},
                                                          {"id": "b", "bytes": 1, "kind": "activation"}],
               "ops": [{"id": "p", "inputs": ["b"], "outputs": ["a"], "time_s": 1},
                       {"id": "q", "inputs": ["a"], "outputs": ["b"], "time_s": 1}]}
        assert "a cycle cannot be" in error_of(raw)

    def test_top_level_not_object(self) -> None:
        assert "expected a JSON object" in error_of([1, 2])


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**62), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=6), st.sampled_from(["1 GiB", "2 ms", "weight", "x", "a1", "w1", "kv_cache"]),
                    st.lists(st.sampled_from(["x", "w1", "a1", "a2", "dw1", "nope"]), max_size=3), st.just({}))
_TENSOR_KEYS = ["id", "bytes", "kind", "persistent"]
_OP_KEYS = ["id", "inputs", "outputs", "mutates", "time_s", "flops", "bytes_accessed", "recomputable", "category",
            "layer", "phase", "host_ok"]


@st.composite
def mutated_graphs(draw: Any) -> Any:
    raw = tiny_dict()
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["tensor", "op", "drop", "swap", "dup"]))
        tensors, ops = raw["tensors"], raw["ops"]
        if action == "tensor" and tensors:
            tensors[draw(st.integers(0, len(tensors) - 1))][draw(st.sampled_from(_TENSOR_KEYS))] = draw(_VALUES)
        elif action == "op" and ops:
            ops[draw(st.integers(0, len(ops) - 1))][draw(st.sampled_from(_OP_KEYS))] = draw(_VALUES)
        elif action == "drop":
            target = raw[draw(st.sampled_from(["tensors", "ops"]))]
            if target:
                target.pop(draw(st.integers(0, len(target) - 1)))
        elif action == "swap" and len(ops) > 1:
            i, j = draw(st.integers(0, len(ops) - 1)), draw(st.integers(0, len(ops) - 1))
            ops[i], ops[j] = ops[j], ops[i]
        elif action == "dup" and ops:
            ops.append(copy.deepcopy(ops[0]))
    if draw(st.integers(0, 4)) == 0:
        raw[draw(st.sampled_from(["format", "name", "tensors", "ops", "meta"]))] = draw(_VALUES)
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_graphs())
def test_fuzz_mutated_graphs(raw: Any) -> None:
    """Every mutated tiny graph is a Graph or a clean one-line InputError."""
    text = json.dumps(raw).encode()
    try:
        g = load_graph(text, source="fuzz.json")
    except InputError as exc:
        assert exc.message.startswith("fuzz.json") and "\n" not in exc.message
        return
    assert isinstance(g, Graph)
    assert graph_from_dict(graph_to_dict(g)) == g


def _load_field_by_field(raw: Any) -> Graph | str:
    """The loader with its bulk fast paths switched off: every field checked on its own."""
    import core.graph as graph_module

    saved = graph_module._tensor_fast, graph_module._op_fast, graph_module._structure_ok
    graph_module._tensor_fast = graph_module._op_fast = lambda _raw: None  # type: ignore[assignment]
    graph_module._structure_ok = lambda _tensors, _ops: False  # type: ignore[assignment]
    try:
        return graph_from_dict(raw, source="fuzz.json")
    except InputError as exc:
        return exc.message
    finally:
        graph_module._tensor_fast, graph_module._op_fast, graph_module._structure_ok = saved


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_graphs())
def test_fast_paths_agree_with_field_by_field_checks(raw: Any) -> None:
    """The bulk checks accept exactly what the field-by-field ones accept, build the same graph, and leave
    the wording of every error to them."""
    try:
        fast: Graph | str = graph_from_dict(copy.deepcopy(raw), source="fuzz.json")
    except InputError as exc:
        fast = exc.message
    assert fast == _load_field_by_field(copy.deepcopy(raw))
