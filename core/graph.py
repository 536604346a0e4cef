"""The computation graph: tensors, ops in execution order, and the native ``tierplan-graph/1`` format.

Loading validates everything the planner relies on and names the offending item, so that no later stage
has to defend itself against malformed graphs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain, repeat
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.gc_pause import paused_gc
from core.units import parse_bytes, parse_time

__all__ = [
    "GRAPH_FORMAT",
    "TENSOR_KINDS",
    "PERSISTENT_KINDS",
    "MAX_TENSOR_BYTES",
    "Tensor",
    "Op",
    "Graph",
    "load_graph",
    "graph_from_dict",
    "graph_to_dict",
    "save_graph",
]

GRAPH_FORMAT = "tierplan-graph/1"
TENSOR_KINDS = ("weight", "activation", "gradient", "optimizer_state", "kv_cache", "input", "workspace")
PERSISTENT_KINDS = frozenset({"weight", "optimizer_state", "kv_cache"})
#: Anything above 1 PiB for a single tensor is a unit mistake, not a model.
MAX_TENSOR_BYTES = 2**50
#: Ops slower than a day are a unit mistake.
MAX_OP_TIME_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Tensor:
    """A value with a size. Persistent tensors (weights, optimizer state, KV cache) outlive the step."""

    id: str
    bytes: int
    kind: str
    persistent: bool


@dataclass(frozen=True, slots=True)
class Op:
    """One kernel (or fused group) in execution order.

    Time is ``time_s`` when given, else the roofline of ``flops`` and ``bytes_accessed`` on the chosen
    hardware. ``mutates`` lists inputs updated in place (optimizer steps, KV appends). ``category`` (matmul,
    attention, norm, elementwise, optimizer, …) colours the UI; ``layer`` groups ops for collapsed views;
    ``phase`` is forward / backward / optimizer / prefill / decode; ``host_ok`` marks ops that may run on a
    tier's own compute (CPU Adam, as in ZeRO-Offload).
    """

    id: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    mutates: tuple[str, ...] = ()
    time_s: float | None = None
    flops: float = 0.0
    bytes_accessed: float = 0.0
    recomputable: bool = True
    category: str = "other"
    layer: str | None = None
    phase: str | None = None
    host_ok: bool = False


@dataclass(frozen=True)
class Graph:
    """Tensors plus ops; the op order is the baseline execution order (a valid topological order)."""

    name: str
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @cached_property
    def tensor_by_id(self) -> dict[str, Tensor]:
        return {t.id: t for t in self.tensors}

    @cached_property
    def op_index(self) -> dict[str, int]:
        return {op.id: i for i, op in enumerate(self.ops)}

    @cached_property
    def producer(self) -> dict[str, int]:
        """Tensor id -> index of the op that produces it (absent for tensors that exist at step start)."""
        return {t: i for i, op in enumerate(self.ops) for t in op.outputs}

    @cached_property
    def total_bytes_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.kind] = out.get(t.kind, 0) + t.bytes
        return out

    @cached_property
    def persistent_bytes(self) -> int:
        return sum(t.bytes for t in self.tensors if t.persistent)


# ---------------------------------------------------------------------------------------------- loading


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise InputError(f"missing required field '{key}'", field=where or None)
    return mapping[key]


def _as_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"expected a non-empty string, got {value!r}", field=where)
    return value


def _as_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"expected true or false, got {value!r}", field=where)
    return value


def _as_id_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InputError(f"expected a list of tensor ids, got {type(value).__name__}", field=where)
    return tuple(_as_str(v, f"{where}[{k}]") for k, v in enumerate(value))


def _as_number(value: Any, where: str, *, parser: Any = None, limit: float | None = None) -> float:
    if parser is not None and isinstance(value, str):
        try:
            return float(parser(value))
        except ValueError as exc:
            raise InputError(str(exc), field=where) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a number, got {value!r}", field=where)
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InputError(f"must be a finite number >= 0, got {value!r}", field=where)
    if limit is not None and number > limit:
        raise InputError(f"{value!r} is implausibly large (limit {limit:g}); check the units", field=where)
    return number


def _tensor_from_dict(raw: Any, where: str) -> Tensor:
    if not isinstance(raw, dict):
        raise InputError(f"expected an object, got {type(raw).__name__}", field=where)
    tid = _as_str(_require(raw, "id", where), f"{where}.id")
    size_raw = _require(raw, "bytes", where)
    if isinstance(size_raw, float) and not size_raw.is_integer():
        raise InputError(f"bytes must be a whole number, got {size_raw!r}", field=f"{where}.bytes")
    size = int(_as_number(size_raw, f"{where}.bytes", parser=parse_bytes))
    if size > MAX_TENSOR_BYTES:
        raise InputError(
            f"tensor '{tid}' has {size:.3g} bytes, more than 1 PiB; check the units", field=f"{where}.bytes"
        )
    kind = _require(raw, "kind", where)
    if kind not in TENSOR_KINDS:
        raise InputError(f"unknown kind {kind!r}; expected one of {', '.join(TENSOR_KINDS)}", field=f"{where}.kind")
    persistent = raw.get("persistent", kind in PERSISTENT_KINDS)
    return Tensor(tid, size, kind, _as_bool(persistent, f"{where}.persistent"))


def _op_from_dict(raw: Any, where: str) -> Op:
    if not isinstance(raw, dict):
        raise InputError(f"expected an object, got {type(raw).__name__}", field=where)
    oid = _as_str(_require(raw, "id", where), f"{where}.id")
    inputs = _as_id_list(raw.get("inputs", []), f"{where}.inputs")
    outputs = _as_id_list(raw.get("outputs", []), f"{where}.outputs")
    mutates = _as_id_list(raw.get("mutates", []), f"{where}.mutates")
    time_s = raw.get("time_s")
    if time_s is not None:
        time_s = _as_number(time_s, f"{where}.time_s", parser=parse_time, limit=MAX_OP_TIME_S)
    flops = _as_number(raw.get("flops", 0), f"{where}.flops", limit=1e24)
    bytes_accessed = _as_number(raw.get("bytes_accessed", 0), f"{where}.bytes_accessed", parser=parse_bytes, limit=1e20)
    if time_s is None and "flops" not in raw and "bytes_accessed" not in raw:
        raise InputError(f"op '{oid}' needs 'time_s' or 'flops' and 'bytes_accessed'", field=where)
    recomputable = _as_bool(raw.get("recomputable", not mutates), f"{where}.recomputable")
    category = raw.get("category", "other")
    layer = raw.get("layer")
    phase = raw.get("phase")
    for key, value in (("category", category), ("layer", layer), ("phase", phase)):
        if value is not None and not isinstance(value, str):
            raise InputError(f"expected a string, got {value!r}", field=f"{where}.{key}")
    return Op(
        oid, inputs, outputs, mutates, time_s, flops, bytes_accessed, recomputable,
        category, layer, phase, _as_bool(raw.get("host_ok", False), f"{where}.host_ok"),
    )


def _check_structure(tensors: tuple[Tensor, ...], ops: tuple[Op, ...]) -> None:
    """Ids unique and known; each tensor produced at most once, never read before it is produced."""
    known: dict[str, Tensor] = {}
    for k, t in enumerate(tensors):
        if t.id in known:
            raise InputError(f"duplicate tensor id '{t.id}'", field=f"tensors[{k}].id")
        known[t.id] = t
    produced_by: dict[str, str] = {}
    op_ids: set[str] = set()
    all_outputs = {t: op.id for op in ops for t in op.outputs}
    for k, op in enumerate(ops):
        where = f"ops[{k}]"
        if op.id in op_ids:
            raise InputError(f"duplicate op id '{op.id}'", field=f"{where}.id")
        op_ids.add(op.id)
        for j, tid in enumerate(op.inputs):
            if tid not in known:
                raise InputError(f"op '{op.id}' reads unknown tensor '{tid}'", field=f"{where}.inputs[{j}]")
            if tid in all_outputs and tid not in produced_by:
                raise InputError(
                    f"op '{op.id}' reads '{tid}' before op '{all_outputs[tid]}' produces it "
                    "(ops must be listed in a valid execution order; a cycle cannot be)",
                    field=f"{where}.inputs[{j}]",
                )
        for j, tid in enumerate(op.mutates):
            if tid not in op.inputs:
                raise InputError(
                    f"op '{op.id}' mutates '{tid}', which is not among its inputs", field=f"{where}.mutates[{j}]"
                )
        for j, tid in enumerate(op.outputs):
            if tid not in known:
                raise InputError(f"op '{op.id}' writes unknown tensor '{tid}'", field=f"{where}.outputs[{j}]")
            if tid in produced_by:
                raise InputError(
                    f"tensor '{tid}' is produced by both '{produced_by[tid]}' and '{op.id}'",
                    field=f"{where}.outputs[{j}]",
                )
            if tid in op.inputs:
                raise InputError(
                    f"op '{op.id}' both reads and writes '{tid}' (use 'mutates' for in-place updates)",
                    field=f"{where}.outputs[{j}]",
                )
            if known[tid].persistent:
                raise InputError(
                    f"tensor '{tid}' is persistent but produced by op '{op.id}'; persistent tensors exist at "
                    "step start and are updated in place with 'mutates'",
                    field=f"{where}.outputs[{j}]",
                )
            produced_by[tid] = op.id


# Fast paths. A 10⁵-op graph has ~10⁶ fields; checking each with its own error context (``where`` strings,
# one call per field) cost more than the rest of the load. Well-formed input takes these bulk checks; anything
# they do not accept goes through the field-by-field functions above, which raise the precise error.
_NUMBER = (int, float)


def _ids(value: Any) -> tuple[str, ...] | None:
    """A list of non-empty strings as a tuple; None when it is anything else."""
    if type(value) is not list:
        return None
    if value and (set(map(type, value)) != {str} or "" in value):
        return None
    return tuple(value)


def _plain(value: Any, limit: float) -> bool:
    """A finite number in ``0..limit`` that :func:`_as_number` would take as it is (no unit string)."""
    return type(value) in _NUMBER and 0 <= value <= limit and (type(value) is int or math.isfinite(value))


def _tensor_fast(raw: Any) -> Tensor | None:
    if type(raw) is not dict:
        return None
    tid, size, kind = raw.get("id"), raw.get("bytes"), raw.get("kind")
    if type(tid) is not str or not tid or type(size) is not int or not 0 <= size <= MAX_TENSOR_BYTES:
        return None
    if kind not in TENSOR_KINDS:
        return None
    persistent = raw.get("persistent", kind in PERSISTENT_KINDS)
    if type(persistent) is not bool:
        return None
    return Tensor(tid, size, kind, persistent)


def _op_fast(raw: Any) -> Op | None:
    if type(raw) is not dict:
        return None
    oid = raw.get("id")
    inputs, outputs, mutates = _ids(raw.get("inputs", [])), _ids(raw.get("outputs", [])), _ids(raw.get("mutates", []))
    if type(oid) is not str or not oid or inputs is None or outputs is None or mutates is None:
        return None
    time_s = raw.get("time_s")
    flops = raw.get("flops", 0)
    bytes_accessed = raw.get("bytes_accessed", 0)
    if time_s is not None and not _plain(time_s, MAX_OP_TIME_S):
        return None
    if not _plain(flops, 1e24) or not _plain(bytes_accessed, 1e20):
        return None
    if time_s is None and "flops" not in raw and "bytes_accessed" not in raw:
        return None
    recomputable = raw.get("recomputable", not mutates)
    host_ok = raw.get("host_ok", False)
    category, layer, phase = raw.get("category", "other"), raw.get("layer"), raw.get("phase")
    if type(recomputable) is not bool or type(host_ok) is not bool:
        return None
    for value in (category, layer, phase):
        if value is not None and type(value) is not str:
            return None
    return Op(oid, inputs, outputs, mutates, None if time_s is None else float(time_s), float(flops),
              float(bytes_accessed), recomputable, category, layer, phase, host_ok)


def _structure_ok(tensors: tuple[Tensor, ...], ops: tuple[Op, ...]) -> bool:
    """:func:`_check_structure`'s rules in bulk (sets and index arrays); False when any may be broken."""
    import numpy as np

    index = {t.id: k for k, t in enumerate(tensors)}
    if len(index) != len(tensors) or len({op.id for op in ops}) != len(ops):
        return False
    ins = [op.inputs for op in ops]
    outs = [op.outputs for op in ops]
    in_t = np.fromiter(map(index.get, chain.from_iterable(ins), repeat(-1)), dtype=np.int64)
    out_t = np.fromiter(map(index.get, chain.from_iterable(outs), repeat(-1)), dtype=np.int64)
    if (in_t < 0).any() or (out_t < 0).any() or len(np.unique(out_t)) != len(out_t):
        return False
    in_op = np.repeat(np.arange(len(ops)), np.fromiter(map(len, ins), dtype=np.int64, count=len(ops)))
    out_op = np.repeat(np.arange(len(ops)), np.fromiter(map(len, outs), dtype=np.int64, count=len(ops)))
    producer = np.full(len(tensors), -1, dtype=np.int64)
    producer[out_t] = out_op
    made = producer[in_t]
    if ((made >= 0) & (made >= in_op)).any():  # read before (or by) its producer
        return False
    persistent = np.fromiter((t.persistent for t in tensors), dtype=bool, count=len(tensors))
    if persistent[out_t].any():
        return False
    return all(not op.mutates or set(op.mutates) <= set(op.inputs) for op in ops)


def graph_from_dict(raw: Any, *, source: str | None = None) -> Graph:
    """Build and validate a :class:`Graph` from parsed JSON; errors name ``source`` and the field."""
    with paused_gc():  # 10⁶ ops are ~10⁷ acyclic objects (core.gc_pause)
        return _graph_from_dict(raw, source)


def _graph_from_dict(raw: Any, source: str | None) -> Graph:
    try:
        if not isinstance(raw, dict):
            raise InputError(f"expected a JSON object at the top level, got {type(raw).__name__}")
        fmt = raw.get("format")
        if fmt != GRAPH_FORMAT:
            raise InputError(f"expected format '{GRAPH_FORMAT}', got {fmt!r}", field="format")
        name = _as_str(raw.get("name", source or "graph"), "name")
        tensors_raw = _require(raw, "tensors", "")
        ops_raw = _require(raw, "ops", "")
        if not isinstance(tensors_raw, list):
            raise InputError("expected a list", field="tensors")
        if not isinstance(ops_raw, list):
            raise InputError("expected a list", field="ops")
        fast_t = list(map(_tensor_fast, tensors_raw))
        tensors = tuple(t if t is not None else _tensor_from_dict(tensors_raw[k], f"tensors[{k}]")
                        for k, t in enumerate(fast_t))
        fast_o = list(map(_op_fast, ops_raw))
        ops = tuple(o if o is not None else _op_from_dict(ops_raw[k], f"ops[{k}]") for k, o in enumerate(fast_o))
        if not _structure_ok(tensors, ops):
            _check_structure(tensors, ops)
        meta = raw.get("meta", {})
        if not isinstance(meta, dict):
            raise InputError("expected an object", field="meta")
    except InputError as exc:
        raise (exc.with_source(source) if source else exc) from None
    return Graph(name, tensors, ops, meta)


def load_graph(path_or_bytes: str | Path | bytes, *, source: str | None = None) -> Graph:
    """Load a ``tierplan-graph/1`` JSON file (a path, or raw bytes from an upload)."""
    with paused_gc():  # the parsed JSON is as many objects as the graph (core.gc_pause)
        raw, source = load_json(path_or_bytes, source)
        return graph_from_dict(raw, source=source)


def load_json(path_or_bytes: str | Path | bytes, source: str | None = None) -> tuple[Any, str]:
    """Parsed JSON of a path or of uploaded bytes, and the name errors should use for it."""
    if isinstance(path_or_bytes, bytes):
        data, source = path_or_bytes, source or "<upload>"
    else:
        path = Path(path_or_bytes)
        source = source or str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read file: {exc.strerror}", source=source) from None
    return parse_json(data, source), source


def parse_json(data: bytes | str, source: str) -> Any:
    """``json.loads`` with a one-line message that names the file, line and column."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.removeprefix("\ufeff")
        return json.loads(text)
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file (is it a binary file such as ONNX?)", source=source) from None
    except json.JSONDecodeError as exc:
        # some of json's messages end in "at" and expect the position after them ("Unterminated string starting at")
        where = f"line {exc.lineno}, column {exc.colno}"
        text = f"malformed JSON: {exc.msg} {where}" if exc.msg.endswith(" at") else f"malformed JSON at {where}: {exc.msg}"
        raise InputError(text, source=source) from None
    except RecursionError:
        raise InputError("JSON nested too deeply", source=source) from None


def _op_to_dict(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {"id": op.id, "inputs": list(op.inputs), "outputs": list(op.outputs)}
    if op.mutates:
        out["mutates"] = list(op.mutates)
    if op.time_s is not None:
        out["time_s"] = op.time_s
    if op.flops or op.time_s is None:
        out["flops"] = op.flops
    if op.bytes_accessed or op.time_s is None:
        out["bytes_accessed"] = op.bytes_accessed
    if op.recomputable != (not op.mutates):
        out["recomputable"] = op.recomputable
    if op.category != "other":
        out["category"] = op.category
    for key in ("layer", "phase"):
        if getattr(op, key) is not None:
            out[key] = getattr(op, key)
    if op.host_ok:
        out["host_ok"] = True
    return out


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    """The native JSON form; fields at their defaults are left out to keep files small."""
    tensors = []
    for t in graph.tensors:
        item: dict[str, Any] = {"id": t.id, "bytes": t.bytes, "kind": t.kind}
        if t.persistent != (t.kind in PERSISTENT_KINDS):
            item["persistent"] = t.persistent
        tensors.append(item)
    out: dict[str, Any] = {"format": GRAPH_FORMAT, "name": graph.name}
    if graph.meta:
        out["meta"] = dict(graph.meta)
    out["tensors"] = tensors
    out["ops"] = [_op_to_dict(op) for op in graph.ops]
    return out


def save_graph(graph: Graph, path: str | Path, *, compact: bool = True) -> None:
    """Write the native JSON (compact by default: sample graphs live in the repository)."""
    text = json.dumps(graph_to_dict(graph), separators=(",", ":") if compact else None, indent=None if compact else 1)
    Path(path).write_text(text + "\n", encoding="utf-8")


def iter_uses(graph: Graph) -> Iterable[tuple[int, str]]:
    """(op index, tensor id) for every read, write or in-place update, in execution order."""
    for i, op in enumerate(graph.ops):
        for t in op.inputs:
            yield i, t
        for t in op.outputs:
            yield i, t
