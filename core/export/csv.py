"""CSV tables of a plan: one row per decision (with every cost term as a column), one row per event."""

from __future__ import annotations

import csv
import io
from typing import Any

from core.graph import Graph
from core.plan import ComputeEvent, FreeEvent, Plan, TransferEvent

__all__ = ["DECISION_COLUMNS", "EVENT_COLUMNS", "decisions_csv", "events_csv"]

DECISION_COLUMNS = ("tensor", "kind", "bytes", "start_op", "end_op", "start_op_index", "end_op_index", "action",
                    "tier", "score")
EVENT_COLUMNS = ("index", "type", "op", "tensor", "tier", "src", "dst", "start_s", "end_s", "duration_s")


def _write(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _op_name(graph: Graph | None, index: int) -> str:
    if index < 0:
        return "step start"
    if graph is not None:
        return graph.ops[index].id if index < len(graph.ops) else "step end"
    return f"op #{index}"


def decisions_csv(plan: Plan, graph: Graph | None = None) -> str:
    """One row per decision: tensor, kind, bytes, span (op names, then op indices), action, tier, score,
    each cost term, reason.

    ``kind`` and ``bytes`` come from ``graph`` when given, else from the decision's ``kind``/``bytes`` terms
    (left empty when neither says); ``start_op``/``end_op`` are op ids from ``graph`` ("step start" for a
    tensor that exists when the step begins). Term columns are the union of all decisions' terms, sorted
    by name; a term named like a fixed column gets a ``term_`` prefix.
    """
    tensors = graph.tensor_by_id if graph is not None else {}
    terms = sorted({name for d in plan.decisions for name in d.terms})
    term_cols = [f"term_{n}" if n in DECISION_COLUMNS or n == "reason" else n for n in terms]
    rows = []
    for d in plan.decisions:
        t = tensors.get(d.tensor)
        kind = t.kind if t is not None else d.terms.get("kind", "")
        size = t.bytes if t is not None else d.terms.get("bytes", "")
        rows.append([d.tensor, kind, size, _op_name(graph, d.start_op), _op_name(graph, d.end_op), d.start_op,
                     d.end_op, d.action, d.tier, d.score,
                     *(d.terms.get(n, "") for n in terms), d.reason])
    return _write([*DECISION_COLUMNS, *term_cols, "reason"], rows)


def events_csv(plan: Plan) -> str:
    """One row per event in plan order; times in seconds (``end_s`` of a free is its time)."""
    rows: list[list[Any]] = []
    for k, e in enumerate(plan.events):
        if isinstance(e, ComputeEvent):
            kind = "recompute" if e.recompute else "compute"
            rows.append([k, kind, e.op, "", e.tier, "", "", e.start, e.end, e.end - e.start])
        elif isinstance(e, TransferEvent):
            rows.append([k, "transfer", "", e.tensor, "", e.src, e.dst, e.start, e.end, e.end - e.start])
        elif isinstance(e, FreeEvent):
            rows.append([k, "free", "", e.tensor, e.tier, "", "", e.time, e.time, 0.0])
    return _write(list(EVENT_COLUMNS), rows)
