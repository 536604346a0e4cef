"""The "none" policy: everything stays in the compute tier — the no-offload reference."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import InfeasibleError
from core.graph import Graph
from core.hardware import Hardware
from core.liveness import Liveness
from core.policies.base import Placement, PolicyInfo
from core.units import format_bytes

__all__ = ["NONE", "decide_none"]


def decide_none(graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any]) -> Placement:
    """Keep every span; infeasible (with the peak and where it happens) when that does not fit."""
    cap = hw.capacity(hw.compute_tier)
    if live.n_ops and live.keep_bytes.max() > cap:
        worst = int(live.keep_bytes.argmax())
        raise InfeasibleError(
            f"without offloading, {hw.compute_tier} peaks at {format_bytes(int(live.keep_bytes[worst]))} while op "
            f"'{graph.ops[worst].id}' runs, but holds {format_bytes(cap)}",
            op=graph.ops[worst].id, tier=hw.compute_tier, need_bytes=int(live.keep_bytes[worst]), have_bytes=cap,
        )
    if not live.n_ops and graph.persistent_bytes > cap:
        raise InfeasibleError(
            f"the persistent tensors need {format_bytes(graph.persistent_bytes)} but {hw.compute_tier} holds {format_bytes(cap)}",
            tier=hw.compute_tier, need_bytes=graph.persistent_bytes, have_bytes=cap,
        )
    return Placement({})


NONE = PolicyInfo(
    key="none",
    title="No offload",
    description="Every tensor stays in the compute tier for the whole step. Shows the no-offload peak; "
    "infeasible when it does not fit.",
    source="Reference point (what a framework does by default).",
    params=(),
    decide=decide_none,
)
