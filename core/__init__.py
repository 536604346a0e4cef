"""Tierplan's planning core: pure Python, no UI. The app and the CLI use what is exported here.

>>> from core import load_sample, load_preset, make_plan, validate_plan
>>> graph, hw = load_sample("tiny"), load_preset("teaching")
>>> plan = make_plan(graph, hw)
>>> validate_plan(graph, plan).ok
True

Anytime: a fast first plan, then one update per refinement stage (the last is ``make_plan``'s plan):

>>> [u.stage for u in plan_anytime(graph, hw)]
['first', 'portfolio', 'reorder', 'baselines', 'bound', 'search']
"""

from __future__ import annotations

from core.errors import InfeasibleError, InputError, PlanBugError, TierplanError
from core.graph import Graph, load_graph
from core.hardware import Hardware, apply_setting, load_hardware, with_capacity
from core.plan import Plan, load_plan, plan_to_dict
from core.planner import PlanUpdate, make_plan, plan_anytime
from core.policies.registry import list_policies
from core.sources import Workload, load_model_bytes
from core.validate import validate_plan

_LAZY = {
    "list_presets": "core.sources.presets", "load_preset": "core.sources.presets",
    "list_samples": "core.sources.samples", "load_sample": "core.sources.samples",
}


def __getattr__(name: str) -> object:
    """Samples and presets load on first use, so ``python -m core.sources.samples`` runs its module fresh."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'core' has no attribute {name!r}")


__all__ = [
    "Graph", "Hardware", "Plan", "Workload",
    "TierplanError", "InputError", "InfeasibleError", "PlanBugError",
    "load_graph", "load_hardware", "load_plan", "load_model_bytes", "load_sample", "load_preset",
    "list_samples", "list_presets", "list_policies",
    "apply_setting", "with_capacity", "make_plan", "plan_anytime", "PlanUpdate", "validate_plan", "plan_to_dict",
]
