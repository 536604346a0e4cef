"""Placement policies behind one interface: ``decide(graph, hw, live, params) -> Placement``.

Each policy only decides (per idle span: keep, offload to a tier, recompute); :mod:`core.schedule` turns
every policy's decisions into timed, capacity-checked events the same way, so policies are compared on
their decisions alone. :mod:`core.policies.base` is the interface, :mod:`core.policies.registry` lists
the implementations explicitly; this package re-exports both (the registry on first use, so importing an
implementation never imports the registry).
"""

from __future__ import annotations

from typing import Any

from core.policies.base import Decide, ParamSpec, Placement, PolicyInfo, resolve_params

__all__ = ["ParamSpec", "PolicyInfo", "Placement", "Decide", "resolve_params", "list_policies", "get_policy"]


def __getattr__(name: str) -> Any:
    if name in ("list_policies", "get_policy", "POLICIES", "BASELINES"):
        from core.policies import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'core.policies' has no attribute {name!r}")
