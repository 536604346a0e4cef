"""The one palette of the dashboard and the HTML report: a colour per tensor kind, per op category and per
policy, so the same thing has the same colour in every chart and on every page.

Tensor kinds (what moves on a link) are saturated; op categories (the compute rows) are lighter or darker,
and every colour of the two sets differs clearly from every other (a test checks the distance), because a
schedule shows both at once. Policies get a fixed colour by key (or title), never by their position in a
chart's list, so a policy that is infeasible in one chart does not shift the others' colours.
"""

from __future__ import annotations

import hashlib
import itertools

__all__ = ["KIND_COLORS", "CATEGORY_COLORS", "POLICY_COLORS", "color_for", "policy_color", "min_distance"]

#: One colour per tensor kind (memory curves, transfers on link streams, tables).
KIND_COLORS: dict[str, str] = {
    "weight": "#1F77B4",
    "activation": "#FF7F0E",
    "gradient": "#8C564B",
    "optimizer_state": "#9467BD",
    "kv_cache": "#2CA02C",
    "input": "#E377C2",
    "workspace": "#17BECF",
}
#: One colour per op category (compute streams), distinct from every tensor kind.
CATEGORY_COLORS: dict[str, str] = {
    "embedding": "#D4A373",
    "norm": "#AEC7E8",
    "attention": "#3D5A80",
    "matmul": "#BCBD22",
    "mlp": "#98DF8A",
    "moe": "#F0E442",
    "conv": "#5F9E6E",
    "pool": "#F7B6D2",
    "elementwise": "#C7C7C7",
    "loss": "#FF9896",
    "optimizer": "#525252",
    "other": "#E8E2D0",
    "recompute": "#D62728",
    "transfer": "#7B4173",
}
#: One colour per policy key (the Compare page, A/B charts, sweeps).
POLICY_COLORS: dict[str, str] = {
    "tierplan": "#1F77B4",
    "none": "#7F7F7F",
    "mindspore-gsm": "#FF7F0E",
    "hyperoffload-distance": "#2CA02C",
    "vdnn": "#D62728",
    "zero-offload": "#9467BD",
    "capuchin": "#8C564B",
}
_SPARE = ("#E377C2", "#BCBD22", "#17BECF", "#393B79", "#637939", "#843C39")


def color_for(category: str) -> str:
    """The colour of a tensor kind or an op category (kinds win: transfers are coloured by what moves)."""
    return KIND_COLORS.get(category) or CATEGORY_COLORS.get(category) or CATEGORY_COLORS["other"]


def _title_to_key() -> dict[str, str]:
    try:
        from core.policies import list_policies
    except ImportError:  # pragma: no cover - core is always there in the app
        return {}
    return {p.title: p.key for p in list_policies()}


def policy_color(policy: str) -> str:
    """The colour of a policy given by key or title; an unknown name gets a stable spare colour."""
    if policy in POLICY_COLORS:
        return POLICY_COLORS[policy]
    key = _title_to_key().get(policy)
    if key in POLICY_COLORS:
        return POLICY_COLORS[key]
    digest = int(hashlib.sha256(policy.encode()).hexdigest()[:8], 16)
    return _SPARE[digest % len(_SPARE)]


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def min_distance(colors: list[str]) -> float:
    """The smallest RGB distance between two of ``colors`` (how close the closest pair is)."""
    return min((sum((a - b) ** 2 for a, b in zip(_rgb(x), _rgb(y))) ** 0.5
                for x, y in itertools.combinations(colors, 2)), default=float("inf"))
