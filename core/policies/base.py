"""The policy interface: a policy's parameters, what it decides, and its description.

Implementations (``core.policies.<name>``) import this module and never the registry, so the registry
(:mod:`core.policies.registry`) can import every implementation explicitly without an import cycle.
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

__all__ = ["ParamSpec", "PolicyInfo", "Placement", "Decide", "resolve_params"]


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
    #: runner-up candidates of a portfolio, best first (the caller falls back to them if the best is rejected)
    alternatives: tuple[Placement, ...] = ()
    #: builds ``decisions`` on demand (runner-ups are only explained when they are used)
    explain_later: Callable[[], tuple[Decision, ...]] | None = None
    #: the policy already tried the scheduler's refining passes on these decisions (``schedule`` is the faster
    #: of the two), so the planner need not build them again
    refined: bool = False


Decide = Callable[[Graph, Hardware, Liveness, Mapping[str, Any]], Placement]


@dataclass(frozen=True)
class PolicyInfo:
    key: str
    title: str
    description: str
    source: str
    params: tuple[ParamSpec, ...]
    decide: Decide


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
