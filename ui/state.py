"""Shared dashboard state: the resolved inputs, cached plans and derived data, last good inputs, URL sharing.

Pages call :func:`current_inputs` and :func:`plan_outcome`; planning itself is ``core.planner.make_plan``
behind ``st.cache_data`` keyed by a digest of the inputs (graph key + hardware JSON + policy + params), so a
rerun with unchanged inputs costs a cache lookup, and moving a slider back to a previous value is instant.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import streamlit as st

from core.errors import PlanBugError, TierplanError
from core.graph import Graph
from core.hardware import Hardware, hardware_from_dict
from core.plan import Plan

__all__ = [
    "WIDGET_PREFIX",
    "Inputs",
    "PlanOutcome",
    "keep_widget_state",
    "current_inputs",
    "set_current_inputs",
    "plan_outcome",
    "plan_for",
    "derived",
    "before_curves",
    "guarded",
    "safe",
    "friendly_error",
]

log = logging.getLogger("tierplan.app")

#: Widget keys with this prefix keep their value when a page that does not draw them is shown.
WIDGET_PREFIX = "in:"
T = TypeVar("T")


@dataclass(frozen=True)
class Inputs:
    """Everything a plan depends on. ``graph_key`` identifies the graph (sample key, or upload digest +
    loader options) because the graph object itself is not hashed by the cache."""

    graph: Graph
    graph_key: str
    model_label: str
    hardware: Hardware
    hw_json: str
    policy: str
    params_json: str

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @property
    def digest(self) -> str:
        text = "\n".join((self.graph_key, self.hw_json, self.policy, self.params_json))
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class PlanOutcome:
    """A plan, or the clear reason there is none (infeasible hardware, bad parameter)."""

    plan: Plan | None
    error: str | None = None


def hardware_json(hw_dict: Mapping[str, Any]) -> str:
    return json.dumps(hw_dict, sort_keys=True, separators=(",", ":"))


def keep_widget_state() -> None:
    """Re-assign prefixed widget values so Streamlit does not drop them while their page is not drawn
    (the documented way to keep widget state across pages)."""
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith(WIDGET_PREFIX):
            st.session_state[key] = st.session_state[key]


def set_current_inputs(inputs: Inputs) -> None:
    st.session_state["inputs"] = inputs


def current_inputs() -> Inputs | None:
    return st.session_state.get("inputs")


@st.cache_data(max_entries=48, show_spinner=False)
def _plan_cached(graph_key: str, hw_json: str, policy: str, params_json: str, _graph: Graph) -> PlanOutcome:
    from core.planner import make_plan

    try:
        hw = hardware_from_dict(json.loads(hw_json), source="hardware settings")
        return PlanOutcome(make_plan(_graph, hw, policy=policy, params=json.loads(params_json)))
    except (TierplanError, PlanBugError) as exc:  # PlanBugError: the planner's self-check, shown, never plotted
        return PlanOutcome(None, str(exc))


def plan_for(inputs: Inputs, *, policy: str | None = None, params_json: str | None = None) -> PlanOutcome:
    """The (cached) plan for ``inputs``, optionally with another policy (Compare page)."""
    return _plan_cached(inputs.graph_key, inputs.hw_json, policy or inputs.policy,
                        params_json if params_json is not None else inputs.params_json, inputs.graph)


def plan_outcome(inputs: Inputs) -> tuple[Inputs, PlanOutcome, str | None]:
    """The plan for ``inputs``; when there is none, the last inputs that gave one (and the error to show).

    Returns (inputs actually shown, outcome, error message or None).
    """
    outcome = plan_for(inputs)
    if outcome.plan is not None:
        st.session_state["last_good_inputs"] = inputs
        return inputs, outcome, None
    last: Inputs | None = st.session_state.get("last_good_inputs")
    if last is not None and last.digest != inputs.digest:
        previous = plan_for(last)
        if previous.plan is not None:
            return last, previous, outcome.error
    return inputs, outcome, outcome.error


@dataclass(frozen=True)
class Derived:
    """What the charts draw, computed once per plan."""

    streams: list[Any]
    curves: dict[str, Any]


@st.cache_data(max_entries=24, show_spinner=False)
def _derived_cached(digest: str, _graph: Graph, _plan: Plan) -> Derived:
    from core.metrics import occupancy_curves, stream_timelines

    return Derived(list(stream_timelines(_graph, _plan)), dict(occupancy_curves(_graph, _plan)))


def derived(inputs: Inputs, plan: Plan) -> Derived:
    key = f"{inputs.graph_key}|{inputs.hw_json}|{plan.policy}|{json.dumps(dict(plan.policy_params), sort_keys=True)}"
    return _derived_cached(hashlib.sha256(key.encode()).hexdigest(), inputs.graph, plan)


@st.cache_data(max_entries=16, show_spinner=False)
def _before_cached(graph_key: str, hw_json: str, _graph: Graph, _hw: Hardware) -> dict[str, Any]:
    from core.metrics import no_offload_curves

    return dict(no_offload_curves(_graph, _hw))


def before_curves(inputs: Inputs) -> dict[str, Any]:
    """Occupancy if everything stayed in the compute tier (the "before offload" picture)."""
    return _before_cached(inputs.graph_key, inputs.hw_json, inputs.graph, inputs.hardware)


def friendly_error(exc: BaseException) -> str:
    """The message shown for an exception: the domain message for ours, a generic line for a bug."""
    if isinstance(exc, TierplanError):
        return str(exc)
    log.exception("unexpected error in the dashboard", exc_info=exc)
    return ("Something went wrong while drawing this part of the page. The error has been logged; "
            "try other inputs or reload the page.")


def guarded(fn: Callable[[], T], *, what: str = "") -> T | None:
    """Run a page section; errors become an ``st.error`` instead of a traceback, and the rest of the page
    keeps working."""
    try:
        return fn()
    except TierplanError as exc:
        st.error(f"{what}: {exc}" if what else str(exc), icon=":material/error:")
    except Exception as exc:  # the page boundary: never show a traceback to users
        st.error(friendly_error(exc), icon=":material/error:")
    return None


def safe(what: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator form of :func:`guarded` for page sections (and fragments, whose reruns skip the page's
    own guard)."""

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> None:
            guarded(lambda: fn(*args, **kwargs), what=what)

        return inner

    return wrap
