"""What is in a graph: parameters, bytes by kind, op and tensor counts, the peak with nothing offloaded.

Used by ``python -m core info`` and the dashboard's model summary; numbers come from the graph (and its
``meta`` for parameter counts, which only a generator or importer can know).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from core.graph import TENSOR_KINDS, Graph
from core.metrics import no_offload_peak_bytes
from core.units import format_bytes

__all__ = ["GraphSummary", "graph_summary", "format_summary"]


@dataclass(frozen=True)
class GraphSummary:
    """Headline figures of a graph; ``params_*`` are None when the graph does not record them."""

    name: str
    params_total: int | None
    params_active: int | None
    bytes_by_kind: dict[str, int]
    op_count: int
    tensor_count: int
    no_offload_peak_bytes: int
    largest_tensors: tuple[tuple[str, str, int], ...]
    ops_by_category: dict[str, int]
    ops_by_phase: dict[str, int]
    workload: dict[str, Any] | None
    warnings: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_kind.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params_total": self.params_total,
            "params_active": self.params_active,
            "bytes_by_kind": dict(self.bytes_by_kind),
            "total_bytes": self.total_bytes,
            "op_count": self.op_count,
            "tensor_count": self.tensor_count,
            "no_offload_peak_bytes": self.no_offload_peak_bytes,
            "largest_tensors": [{"id": i, "kind": k, "bytes": b} for i, k, b in self.largest_tensors],
            "ops_by_category": dict(self.ops_by_category),
            "ops_by_phase": dict(self.ops_by_phase),
            "workload": self.workload,
            "warnings": list(self.warnings),
        }


def _param(meta: Any, key: str) -> int | None:
    value = meta.get(key) if hasattr(meta, "get") else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def graph_summary(graph: Graph) -> GraphSummary:
    """Summarise ``graph`` (linear in its size)."""
    by_kind = {k: v for k, v in sorted(graph.total_bytes_by_kind.items(), key=lambda kv: TENSOR_KINDS.index(kv[0]))}
    largest = sorted(graph.tensors, key=lambda t: (-t.bytes, t.id))[:10]
    meta = graph.meta or {}
    workload = meta.get("workload") if isinstance(meta.get("workload"), dict) else None
    raw_warnings = meta.get("warnings")
    warnings: list[Any] = raw_warnings if isinstance(raw_warnings, list) else []
    return GraphSummary(
        name=graph.name,
        params_total=_param(meta, "params_total"),
        params_active=_param(meta, "params_active"),
        bytes_by_kind=by_kind,
        op_count=len(graph.ops),
        tensor_count=len(graph.tensors),
        no_offload_peak_bytes=int(no_offload_peak_bytes(graph)),
        largest_tensors=tuple((t.id, t.kind, t.bytes) for t in largest),
        ops_by_category=dict(Counter(op.category for op in graph.ops).most_common()),
        ops_by_phase=dict(Counter(op.phase or "-" for op in graph.ops).most_common()),
        workload=workload,
        warnings=tuple(str(w) for w in warnings),
    )


def _params(n: int | None) -> str:
    if n is None:
        return "unknown"
    for factor, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= factor:
            return f"{n / factor:.3g} {unit} ({n:,})"
    return f"{n:,}"


def format_summary(summary: GraphSummary) -> str:
    """A few aligned lines for a terminal."""
    lines = [f"graph           {summary.name}"]
    if summary.workload:
        lines.append("workload        " + ", ".join(f"{k}={v}" for k, v in summary.workload.items()))
    lines += [
        f"params (total)  {_params(summary.params_total)}",
        f"params (active) {_params(summary.params_active)}",
        f"ops             {summary.op_count:,}  (" + ", ".join(f"{k} {v}" for k, v in summary.ops_by_phase.items()) + ")",
        f"tensors         {summary.tensor_count:,}",
        "bytes by kind   " + ", ".join(f"{k} {format_bytes(v)}" for k, v in summary.bytes_by_kind.items()),
        f"total bytes     {format_bytes(summary.total_bytes)}",
        f"no-offload peak {format_bytes(summary.no_offload_peak_bytes)}",
        "largest tensors " + ", ".join(f"{i} ({format_bytes(b)})" for i, _, b in summary.largest_tensors[:3]),
    ]
    lines += [f"warning         {w}" for w in summary.warnings]
    return "\n".join(lines)
