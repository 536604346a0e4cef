"""Where one tensor lives over the step, and why: residency intervals per tier, its copies and its uses,
read from a plan's events (no re-planning). Streamlit-free; drawn by :func:`ui.figures.residency_figure`."""

from __future__ import annotations

from dataclasses import dataclass

from core.graph import Graph
from core.plan import ComputeEvent, FreeEvent, Plan, TransferEvent

__all__ = ["Interval", "Residency", "residency", "moved_tensors"]


@dataclass(frozen=True)
class Interval:
    """``tensor`` has a copy in ``tier`` from ``start_s`` to ``end_s``; ``how`` it got there: ``at step start``,
    ``made by OP``, ``re-made by OP`` (recompute) or ``copied from TIER``."""

    tier: str
    start_s: float
    end_s: float
    how: str


@dataclass(frozen=True)
class Residency:
    tensor: str
    intervals: tuple[Interval, ...]
    #: (src, dst, start s, end s) of every copy.
    copies: tuple[tuple[str, str, float, float], ...]
    #: (op id, tier, start s) of every op that reads or updates the tensor.
    uses: tuple[tuple[str, str, float], ...]
    step_s: float


def residency(graph: Graph, plan: Plan, tensor: str) -> Residency:
    """Replay ``plan``'s events for one tensor: a copy appears in a tier when it is made there (an op's
    output, a recompute) or when a copy into it starts, and ends at its free event or the step's end."""
    ops = {op.id: op for op in graph.ops}
    step = float(plan.metrics.get("step_time_s", 0.0)) or max(
        (getattr(e, "end", getattr(e, "time", 0.0)) for e in plan.events), default=0.0)
    open_: dict[str, tuple[float, str]] = {tier: (0.0, "at step start") for tier in plan.initial.get(tensor, ())}
    intervals: list[Interval] = []
    copies: list[tuple[str, str, float, float]] = []
    uses: list[tuple[str, str, float]] = []

    def start(tier: str, t: float, how: str) -> None:
        if tier not in open_:
            open_[tier] = (t, how)

    def key(e: object) -> float:
        return float(getattr(e, "start", getattr(e, "time", 0.0)))

    for e in sorted(plan.events, key=key):
        if isinstance(e, ComputeEvent):
            op = ops.get(e.op)
            if op is None:
                continue
            if tensor in op.outputs:
                start(e.tier, e.start, f"{'re-made' if e.recompute else 'made'} by {e.op}")
            if not e.recompute and (tensor in op.inputs or tensor in op.mutates):
                uses.append((e.op, e.tier, e.start))
        elif isinstance(e, TransferEvent) and e.tensor == tensor:
            copies.append((e.src, e.dst, e.start, e.end))
            start(e.dst, e.start, f"copied from {e.src}")
        elif isinstance(e, FreeEvent) and e.tensor == tensor and e.tier in open_:
            since, how = open_.pop(e.tier)
            intervals.append(Interval(e.tier, since, e.time, how))
    for tier, (since, how) in open_.items():
        intervals.append(Interval(tier, since, step, how))
    intervals.sort(key=lambda iv: (iv.start_s, iv.tier))
    return Residency(tensor, tuple(intervals), tuple(copies), tuple(uses), step)


def moved_tensors(plan: Plan) -> list[str]:
    """Tensors the plan copies or recomputes, in order of first appearance (the interesting ones to pick)."""
    seen: dict[str, None] = {}
    for d in plan.decisions:
        if d.action != "keep":
            seen.setdefault(d.tensor, None)
    return list(seen)
