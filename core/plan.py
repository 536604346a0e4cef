"""The plan: timed events on streams plus the decisions behind them — the ``tierplan-plan/1`` contract.

A plan is one step of a repeating loop. Semantics (checked by :mod:`core.validate`, documented in
docs/formats.md): a copy occupies its tier from the start of the event that creates it until its ``free``;
an op's inputs are in its tier by its start and stay until its end; frees at time t release before
allocations at t; copies on one directed link never overlap; every persistent tensor ends the step with a
fresh copy in each tier where it started.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

from core.errors import InputError
from core.gc_pause import paused_gc
from core.graph import load_json

__all__ = [
    "PLAN_FORMAT",
    "ComputeEvent",
    "TransferEvent",
    "FreeEvent",
    "Event",
    "Decision",
    "Plan",
    "plan_to_dict",
    "plan_from_dict",
    "load_plan",
    "save_plan",
]

PLAN_FORMAT = "tierplan-plan/1"


class ComputeEvent(NamedTuple):
    """An op run (``recompute=True`` for a re-run that regenerates dropped outputs) on ``tier``'s compute."""

    op: str
    start: float
    end: float
    tier: str
    recompute: bool = False


class TransferEvent(NamedTuple):
    """A copy of ``tensor`` over the directed link ``src -> dst``; the destination copy exists from ``start``."""

    tensor: str
    src: str
    dst: str
    start: float
    end: float


class FreeEvent(NamedTuple):
    """The copy of ``tensor`` in ``tier`` is released at ``time``."""

    tensor: str
    tier: str
    time: float


Event = ComputeEvent | TransferEvent | FreeEvent

#: Actions a decision can take on an idle span.
ACTIONS = ("keep", "offload", "recompute")


@dataclass(frozen=True)
class Decision:
    """What happens to ``tensor`` between two uses, and why.

    ``start_op``/``end_op`` are the op indices of the use before and after the idle span (``start_op`` is -1
    for a tensor that exists at step start; for the wrap-around span of a persistent tensor ``end_op`` is
    smaller than ``start_op``: the span runs through the step boundary). ``terms`` are the named cost-model
    terms (``bytes_freed``, ``idle_s``, ``transfer_s``, ``recompute_s``, ``access_count`` …) and ``score``
    the number the policy ranked by; ``reason`` is one sentence for the UI.
    """

    tensor: str
    start_op: int
    end_op: int
    action: str
    tier: str
    score: float = 0.0
    terms: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """Everything needed to replay and explain one step."""

    graph: str
    policy: str
    hardware: Mapping[str, Any]
    initial: Mapping[str, tuple[str, ...]]
    events: tuple[Event, ...]
    decisions: tuple[Decision, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    #: op ids in the execution order the plan used; None = the graph's order. Decision op indices
    #: (``start_op``/``end_op``) are positions in this order.
    order: tuple[str, ...] | None = None
    #: proven lower bound on the step time of any plan in ``order`` (core.bound); None = not computed
    lower_bound_s: float | None = None
    #: ``step_time_s / lower_bound_s - 1``: how far this plan is from the best possible (0 = optimal)
    gap_to_bound: float | None = None
    #: what the order refinement moved and why, for the UI: ``{"op", "from_index", "to_index", "reason"}``
    order_moves: tuple[Mapping[str, Any], ...] = ()
    #: how the plan was made (core.planner.plan_anytime): ``stages_run``, ``stages_skipped`` (time budget),
    #: ``found_by`` (the stage that found it), ``time_budget_s``, ``bound`` (computed, off, or why not);
    #: empty for plans from elsewhere
    planning: Mapping[str, Any] = field(default_factory=dict)


def _event_to_dict(e: Event) -> dict[str, Any]:
    if isinstance(e, ComputeEvent):
        return {"type": "recompute" if e.recompute else "compute", "op": e.op, "start": e.start, "end": e.end, "tier": e.tier}
    if isinstance(e, TransferEvent):
        return {"type": "transfer", "tensor": e.tensor, "src": e.src, "dst": e.dst, "start": e.start, "end": e.end}
    return {"type": "free", "tensor": e.tensor, "tier": e.tier, "time": e.time}


def _events_to_dicts(events: Iterable[Event]) -> list[dict[str, Any]]:
    """:func:`_event_to_dict` of every event, unpacking the tuples by their exact type (3·10⁵ events at 10⁵
    ops: the ``isinstance`` chain and attribute reads were half the cost); other types take the general path."""
    out: list[dict[str, Any]] = []
    add = out.append
    for e in events:
        cls = type(e)
        if cls is TransferEvent:
            tensor, src, dst, start, end = cast(TransferEvent, e)
            add({"type": "transfer", "tensor": tensor, "src": src, "dst": dst, "start": start, "end": end})
        elif cls is FreeEvent:
            tensor, tier, time = cast(FreeEvent, e)
            add({"type": "free", "tensor": tensor, "tier": tier, "time": time})
        elif cls is ComputeEvent:
            op, start, end, tier, recompute = cast(ComputeEvent, e)
            add({"type": "recompute" if recompute else "compute", "op": op, "start": start, "end": end, "tier": tier})
        else:
            add(_event_to_dict(e))
    return out


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The JSON form; ``order``, ``order_moves``, ``lower_bound_s``, ``gap_to_bound`` and ``planning`` only when set."""
    with paused_gc():  # one dict per event and decision: ~4·10⁵ at 10⁵ ops (core.gc_pause)
        return _plan_to_dict(plan)


def _plan_to_dict(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "graph": plan.graph,
        "policy": plan.policy,
        "policy_params": dict(plan.policy_params),
        "hardware": dict(plan.hardware),
        "initial": {t: list(tiers) for t, tiers in plan.initial.items()},
        "events": _events_to_dicts(plan.events),
        "decisions": [
            {
                "tensor": d.tensor, "start_op": d.start_op, "end_op": d.end_op, "action": d.action,
                "tier": d.tier, "score": d.score, "terms": dict(d.terms), "reason": d.reason,
            }
            for d in plan.decisions
        ],
        "metrics": dict(plan.metrics),
    }
    if plan.order is not None:
        out["order"] = list(plan.order)
    if plan.order_moves:
        out["order_moves"] = [dict(m) for m in plan.order_moves]
    if plan.lower_bound_s is not None:
        out["lower_bound_s"] = plan.lower_bound_s
    if plan.gap_to_bound is not None:
        out["gap_to_bound"] = plan.gap_to_bound
    if plan.planning:
        out["planning"] = {k: list(v) if isinstance(v, tuple) else v for k, v in plan.planning.items()}
    return out


def _num(raw: Mapping[str, Any], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a number, got {value!r}", field=f"{where}.{key}")
    return float(value)


def _str(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {value!r}", field=f"{where}.{key}")
    return value


def _order(raw: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The optional ``order``: a list of distinct op ids (whether it is legal is the validator's job)."""
    value = raw.get("order")
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError(f"expected a list of op ids, got {type(value).__name__}", field="order")
    seen: set[str] = set()
    for k, op in enumerate(value):
        if not isinstance(op, str) or not op:
            raise InputError(f"expected an op id, got {op!r}", field=f"order[{k}]")
        if op in seen:
            raise InputError(f"op '{op}' appears twice", field=f"order[{k}]")
        seen.add(op)
    return tuple(value)


def _order_moves(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    value = raw.get("order_moves", [])
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise InputError("expected a list of objects", field="order_moves")
    return tuple(dict(m) for m in value)


def _optional_num(raw: Mapping[str, Any], key: str) -> float | None:
    """An optional top-level number (``lower_bound_s``, ``gap_to_bound``)."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a number, got {value!r}", field=key)
    return float(value)


def _planning(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The optional ``planning`` record (lists back to tuples, so a round trip compares equal)."""
    value = raw.get("planning", {})
    if not isinstance(value, dict):
        raise InputError("expected an object", field="planning")
    return {str(k): tuple(v) if isinstance(v, list) else v for k, v in value.items()}


def _event_from_dict(raw: Any, where: str) -> Event:
    if not isinstance(raw, dict):
        raise InputError("expected an object", field=where)
    kind = raw.get("type")
    if kind in ("compute", "recompute"):
        tier = raw.get("tier")
        return ComputeEvent(
            _str(raw, "op", where), _num(raw, "start", where), _num(raw, "end", where),
            tier if isinstance(tier, str) else "", kind == "recompute",
        )
    if kind == "transfer":
        return TransferEvent(
            _str(raw, "tensor", where), _str(raw, "src", where), _str(raw, "dst", where),
            _num(raw, "start", where), _num(raw, "end", where),
        )
    if kind == "free":
        return FreeEvent(_str(raw, "tensor", where), _str(raw, "tier", where), _num(raw, "time", where))
    raise InputError(f"unknown event type {kind!r} (compute, recompute, transfer, free)", field=f"{where}.type")


def plan_from_dict(raw: Any, *, source: str | None = None) -> Plan:
    """Parse a plan file; structural problems raise :class:`InputError`, physics is the validator's job."""
    try:
        if not isinstance(raw, dict):
            raise InputError("expected a JSON object at the top level")
        if raw.get("format") != PLAN_FORMAT:
            raise InputError(f"expected format '{PLAN_FORMAT}', got {raw.get('format')!r}", field="format")
        hardware = raw.get("hardware")
        if not isinstance(hardware, dict):
            raise InputError("expected an object", field="hardware")
        initial_raw = raw.get("initial", {})
        if not isinstance(initial_raw, dict):
            raise InputError("expected an object", field="initial")
        initial: dict[str, tuple[str, ...]] = {}
        for t, tiers in initial_raw.items():
            tiers = [tiers] if isinstance(tiers, str) else tiers
            if not isinstance(tiers, list) or not all(isinstance(x, str) for x in tiers):
                raise InputError("expected a tier name or a list of tier names", field=f"initial.{t}")
            initial[t] = tuple(tiers)
        events_raw = raw.get("events")
        if not isinstance(events_raw, list):
            raise InputError("expected a list", field="events")
        events = tuple(_event_from_dict(e, f"events[{k}]") for k, e in enumerate(events_raw))
        compute_tier = hardware.get("compute_tier", "")
        events = tuple(e._replace(tier=compute_tier) if isinstance(e, ComputeEvent) and not e.tier else e for e in events)
        decisions = []
        for k, d in enumerate(raw.get("decisions", []) or []):
            where = f"decisions[{k}]"
            if not isinstance(d, dict):
                raise InputError("expected an object", field=where)
            decisions.append(Decision(
                _str(d, "tensor", where), int(_num(d, "start_op", where)), int(_num(d, "end_op", where)),
                _str(d, "action", where), _str(d, "tier", where), float(d.get("score", 0.0)),
                dict(d.get("terms", {})), str(d.get("reason", "")),
            ))
        metrics = raw.get("metrics", {})
        params = raw.get("policy_params", {})
        return Plan(
            graph=str(raw.get("graph", "")), policy=str(raw.get("policy", "")), hardware=hardware,
            initial=initial, events=events, decisions=tuple(decisions),
            metrics=metrics if isinstance(metrics, dict) else {},
            policy_params=params if isinstance(params, dict) else {},
            order=_order(raw), order_moves=_order_moves(raw),
            lower_bound_s=_optional_num(raw, "lower_bound_s"), gap_to_bound=_optional_num(raw, "gap_to_bound"),
            planning=_planning(raw),
        )
    except InputError as exc:
        raise (exc.with_source(source) if source else exc) from None


def load_plan(path_or_bytes: str | Path | bytes, *, source: str | None = None) -> Plan:
    raw, source = load_json(path_or_bytes, source)
    return plan_from_dict(raw, source=source)


def save_plan(plan: Plan, path: str | Path) -> None:
    Path(path).write_text(json.dumps(plan_to_dict(plan), separators=(",", ":")) + "\n", encoding="utf-8")
