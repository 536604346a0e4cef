"""Placement policies behind one interface: ``decide(graph, hw, live, params) -> Placement``.

Each policy only decides (per idle span: keep, offload to a tier, recompute); :mod:`core.schedule` turns
every policy's decisions into timed, capacity-checked events the same way, so policies are compared on
their decisions alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import InputError
from core.graph import Graph
from core.hardware import Hardware
from core.liveness import Liveness
from core.plan import Decision
from core.schedule import Assignment, Schedule

__all__ = ["ParamSpec", "PolicyInfo", "Placement", "register", "list_policies", "get_policy", "resolve_params"]


@dataclass(frozen=True)
class ParamSpec:
    """One tunable of a policy, with the bounds the app's widgets use."""

    key: str
    label: str
    default: float
    min: float
    max: float
    help: str = ""
    integer: bool = False


@dataclass(frozen=True)
class Placement:
    """What a policy decided: span id -> (action, tier), the explained decisions, and the ops it runs on a
    lower tier's own compute (``op_tiers``: op index -> tier). Span ids refer to ``liveness`` when given
    (a liveness built with those host ops), else to the one the policy was called with."""

    assignment: Assignment
    decisions: tuple[Decision, ...] = ()
    op_tiers: Mapping[int, str] = field(default_factory=dict)
    liveness: Liveness | None = None
    #: the schedule of exactly these decisions, when the policy already built it (saves building it twice)
    schedule: Schedule | None = None
    #: span id -> op index at which its copy-in is issued (a prefetch distance); default: the scheduler's
    prefetch_from: Mapping[int, int] = field(default_factory=dict)


Decide = Callable[[Graph, Hardware, Liveness, Mapping[str, Any]], Placement]


@dataclass(frozen=True)
class PolicyInfo:
    key: str
    title: str
    description: str
    source: str
    params: tuple[ParamSpec, ...]
    decide: Decide


_REGISTRY: dict[str, PolicyInfo] = {}


def register(info: PolicyInfo) -> PolicyInfo:
    _REGISTRY[info.key] = info
    return info


def _load_builtin() -> None:
    # Imported for their registration side effect; order = order shown in the app.
    from core import planner  # noqa: F401
    from core.policies import none  # noqa: F401
    __import__("core.policies.mindspore_gsm")  # registration; app order
    __import__("core.policies.hyperoffload")  # registration; app order
    __import__("core.policies.vdnn")  # registration; app order
    __import__("core.policies.zero_offload")  # registration; app order
    __import__("core.policies.capuchin")  # registration; app order


def list_policies() -> tuple[PolicyInfo, ...]:
    _load_builtin()
    return tuple(_REGISTRY.values())


def get_policy(key: str) -> PolicyInfo:
    _load_builtin()
    try:
        return _REGISTRY[key]
    except KeyError:
        raise InputError(f"unknown policy {key!r}; choose one of {', '.join(_REGISTRY)}", field="policy") from None


def resolve_params(info: PolicyInfo, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with ``params``; unknown keys and out-of-range values are input errors."""
    out: dict[str, Any] = {p.key: p.default for p in info.params}
    specs = {p.key: p for p in info.params}
    for key, value in (params or {}).items():
        if key not in specs:
            raise InputError(f"policy '{info.key}' has no parameter {key!r} (has: {', '.join(specs) or 'none'})", field="params")
        spec = specs[key]
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"expected a number, got {value!r}", field=f"params.{key}") from None
        if not spec.min <= number <= spec.max:
            raise InputError(f"must be between {spec.min:g} and {spec.max:g}, got {number:g}", field=f"params.{key}")
        out[key] = int(number) if spec.integer else number
    return out
