"""Tables the pages show (decisions, ops, tensors, policy comparison) as pandas frames.

Numbers stay numeric (so a table sorts correctly) in one readable unit per column, named in the header
("size (MiB)", "idle (ms)"); ``formats`` gives a printf format per numeric column for display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.graph import Graph
from core.hardware import Compute, op_time_s
from core.plan import Plan, TransferEvent

__all__ = ["Table", "span_label", "decisions_table", "ops_table", "tensors_table", "compare_table", "transfers_of",
           "order_moves_table"]

_MIB = 2**20


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    formats: Mapping[str, str] = field(default_factory=dict)
    #: Column header -> what it means (shown as the column's tooltip).
    help: Mapping[str, str] = field(default_factory=dict)


_BYTE_UNITS = ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))


def _byte_unit(sizes: Sequence[float]) -> tuple[float, str]:
    """One binary unit for a column of sizes, chosen from their median so typical rows read 1–1000
    (a 16 KiB tensor is "16 KiB", not "0.01563 MiB")."""
    vals = sorted(v for v in sizes if v and v == v)
    if not vals:
        return 1.0, "B"
    median = vals[len(vals) // 2]
    for div, unit in _BYTE_UNITS:
        if median >= div:
            return float(div), unit
    return 1.0, "B"


#: What the cost-model term columns mean (tooltips of the decisions table).
TERM_HELP = {
    "ranking order": "Which of the portfolio's ranking orders produced this plan: the planner ranks idle spans "
                     "by cost, by reach (next use furthest away), by weight (bytes) and by idle time, plans "
                     "with each, and keeps the fastest. The same for every row.",
    "idle": "How long the tensor waits, unused, between the two uses of this span.",
    "transfer": "Time to copy the tensor out and back over the links to the chosen tier.",
    "exposed": "Part of the copy time that compute would wait for (not hidden behind other work).",
    "recompute": "Time to re-run the op that makes the tensor, when it is regenerated instead of stored.",
    "bytes freed": "Compute-tier bytes this decision frees while the tensor is idle.",
    "access count": "How many ops read the tensor during the step.",
    "chosen at op": "The op index at which the planner decided this span (its sweep position).",
    "score": "The number the policy ranked spans by (higher: moved first).",
}


def _op_name(graph: Graph, index: int) -> str:
    if 0 <= index < len(graph.ops):
        return graph.ops[index].id
    return "step start" if index < 0 else "step end"


def _span(graph: Graph, start_op: int, end_op: int) -> str:
    a = _op_name(graph, start_op)
    b = _op_name(graph, end_op)
    if start_op >= 0 and end_op < start_op:
        return f"{a} → next step: {b}"
    return f"{a} → {b}"


def span_label(graph: Graph, start_op: int, end_op: int) -> str:
    """An idle span in op names: "fwd1 → bwd1", "step start → fwd1", "bwd1 → next step: fwd1"."""
    return _span(graph, start_op, end_op)


def _term_column(key: str, byte_unit: tuple[float, str] = (_MIB, "MiB")) -> tuple[str, float, str]:
    """Header, scale and format of a cost-model term column, from the unit in its name."""
    base = key.replace("_", " ")
    if key.endswith("_s"):
        return f"{base[:-2]} (ms)", 1e3, "%.4g ms"
    if "bytes" in key:
        div, unit = byte_unit
        return f"{base} ({unit})", 1 / div, f"%.4g {unit}"
    return base, 1.0, "%.4g"


def _order_names() -> tuple[str, ...]:
    try:
        from core.policies.tierplan import ORDERS
    except ImportError:  # pragma: no cover - an older planner without a portfolio
        return ()
    return tuple(ORDERS)


def decisions_table(plan: Plan, graph: Graph) -> Table:
    """One row per decision: tensor, kind, size, span, action, tier, the cost-model terms, score, reason."""
    tensors = graph.tensor_by_id
    term_keys = [k for k in dict.fromkeys(k for d in plan.decisions for k in d.terms) if k != "order"]
    has_order = any("order" in d.terms for d in plan.decisions)
    names = _order_names()
    div, unit = _byte_unit([tensors[d.tensor].bytes for d in plan.decisions if d.tensor in tensors])
    size_col = f"size ({unit})"
    columns = {k: _term_column(k, (div, unit)) for k in term_keys}
    rows = []
    for d in plan.decisions:
        t = tensors.get(d.tensor)
        row: dict[str, Any] = {
            "tensor": d.tensor,
            "kind": t.kind if t else "?",
            size_col: (t.bytes / div) if t else float("nan"),
            "span": _span(graph, d.start_op, d.end_op),
            "action": d.action,
            "tier": d.tier,
        }
        for key, (header, scale, _) in columns.items():
            value = d.terms.get(key)
            row[header] = float(value) * scale if isinstance(value, (int, float)) else float("nan")
        if has_order:
            k = d.terms.get("order")
            row["ranking order"] = (names[int(k)] if isinstance(k, (int, float)) and 0 <= int(k) < len(names)
                                    else ("" if k is None else f"#{int(k)}"))
        row["score"] = float(d.score)
        row["reason"] = d.reason
        rows.append(row)
    order = ["tensor", "kind", size_col, "span", "action", "tier", *(c[0] for c in columns.values()),
             *(["ranking order"] if has_order else []), "score", "reason"]
    frame = pd.DataFrame(rows, columns=order)
    formats = {size_col: f"%.4g {unit}", "score": "%.4g", **{h: f for h, _, f in columns.values()}}
    helps = {h: text for h in order for key, text in TERM_HELP.items() if h.split(" (")[0] == key}
    return Table(frame, formats, helps)


def transfers_of(plan: Plan, tensors: Sequence[str]) -> list[tuple[str, float, float]]:
    """(link name, start s, end s) of every copy of the given tensors — what the schedule highlights."""
    wanted = set(tensors)
    return [(f"{e.src}->{e.dst}", e.start, e.end) for e in plan.events
            if isinstance(e, TransferEvent) and e.tensor in wanted]


def ops_table(graph: Graph, compute: Compute) -> Table:
    """Every op with its category, layer, phase, modelled time on ``compute`` and output size."""
    tensors = graph.tensor_by_id
    rows = [
        {
            "#": i,
            "op": op.id,
            "category": op.category,
            "layer": op.layer or "",
            "phase": op.phase or "",
            "time (ms)": op_time_s(op, compute) * 1e3,
            "GFLOP": op.flops / 1e9,
            "inputs": len(op.inputs),
            "outputs (MiB)": sum(tensors[t].bytes for t in op.outputs) / _MIB,
            "recomputable": op.recomputable,
        }
        for i, op in enumerate(graph.ops)
    ]
    return Table(pd.DataFrame(rows), {"time (ms)": "%.4g ms", "GFLOP": "%.4g", "outputs (MiB)": "%.4g MiB"})


def tensors_table(graph: Graph) -> Table:
    """Every tensor with kind, size, persistence, producer and number of reads."""
    reads: dict[str, int] = {}
    for op in graph.ops:
        for t in op.inputs:
            reads[t] = reads.get(t, 0) + 1
    producer = graph.producer
    rows = [
        {
            "tensor": t.id,
            "kind": t.kind,
            "size (MiB)": t.bytes / _MIB,
            "persistent": t.persistent,
            "produced by": graph.ops[producer[t.id]].id if t.id in producer else "(exists at step start)",
            "reads": reads.get(t.id, 0),
        }
        for t in graph.tensors
    ]
    return Table(pd.DataFrame(rows), {"size (MiB)": "%.4g MiB"})


def order_moves_table(plan: Plan) -> Table:
    """What the execution-order refinement moved and why (``Plan.order_moves``), first move first.

    Positions count from 1 as a reader counts ops; "moved by" is how many ops earlier (negative) or later
    the op runs than in the graph's order."""
    rows = [
        {
            "op": str(m["op"]),
            "graph position": int(m["from_index"]) + 1,
            "runs at": int(m["to_index"]) + 1,
            "moved by (ops)": int(m["to_index"]) - int(m["from_index"]),
            "why": str(m.get("reason", "")),
        }
        for m in plan.order_moves
    ]
    frame = pd.DataFrame(rows, columns=["op", "graph position", "runs at", "moved by (ops)", "why"])
    return Table(frame)


def compare_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """The policies side by side, from :func:`ui.kpis.compare_row` rows."""
    out = []
    nan = float("nan")
    for r in rows:
        ok = bool(r.get("feasible"))
        out.append({
            "policy": r["policy"],
            "feasible": "yes" if ok else "no",
            "step time (ms)": r["step_time_s"] * 1e3 if ok else nan,
            "slowdown (%)": round(r["slowdown"] * 100, 1) + 0.0 if ok else nan,  # + 0.0: never "-0.0 %"
            "peak (GiB)": r["peak_bytes"] / 2**30 if ok else nan,
            "stall (ms)": r["stall_time_s"] * 1e3 if ok else nan,
            "moved (GiB)": r["moved_bytes"] / 2**30 if ok else nan,
            "recompute (ms)": r["recompute_time_s"] * 1e3 if ok else nan,
            "hidden (%)": r["overlap_ratio"] * 100 if ok else nan,
            "note": r.get("message", "") or "",
        })
    formats = {
        "step time (ms)": "%.4g ms", "slowdown (%)": "%.1f %%", "peak (GiB)": "%.4g GiB", "stall (ms)": "%.4g ms",
        "moved (GiB)": "%.4g GiB", "recompute (ms)": "%.4g ms", "hidden (%)": "%.0f %%",
    }
    return Table(pd.DataFrame(out), formats)
