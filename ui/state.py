"""Shared dashboard state: the resolved inputs, cached plans and derived data, last good inputs, URL sharing.

Pages call :func:`current_inputs` and :func:`plan_outcome`; planning itself is ``core.planner.make_plan``
behind a process-wide store (``st.cache_resource``) keyed by a digest of the inputs (graph key + hardware
JSON + policy + params). Plans are immutable and shared, never copied per hit (``st.cache_data`` pickled
and unpickled the whole plan on every rerun), so a rerun with unchanged inputs costs a dictionary lookup
and moving a slider back to a previous value is instant. A plan that is not in the store is made on a
worker thread while the page shows a status line with the elapsed time against the last planning time
of the same model; two sessions asking for the same plan wait for one computation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
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
    "plan_key",
    "plan_store",
    "PlanStore",
    "derived",
    "decisions",
    "before_curves",
    "before_knots",
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
    #: The hardware's name as shown, with what was edited ("H100 (edited: HBM 48 GiB, + POOL)").
    hw_label: str = ""

    @property
    def hardware_label(self) -> str:
        return self.hw_label or self.hardware.name

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


def _make(graph: Graph, hw_json: str, policy: str, params_json: str) -> PlanOutcome:
    from core.planner import make_plan

    try:
        hw = hardware_from_dict(json.loads(hw_json), source="hardware settings")
        return PlanOutcome(make_plan(graph, hw, policy=policy, params=json.loads(params_json)))
    except (TierplanError, PlanBugError) as exc:  # PlanBugError: the planner's self-check, shown, never plotted
        return PlanOutcome(None, str(exc))


class PlanStore:
    """Bounded LRU of plan outcomes shared by every session, with in-flight planning deduplicated.

    Values are immutable (frozen ``Plan`` or an error message), so handing the same object to every
    session is safe. ``seconds`` remembers how long the last plan of each graph took (the status line's
    estimate)."""

    def __init__(self, max_entries: int = 64) -> None:
        self._lock = threading.Lock()
        self._done: OrderedDict[str, PlanOutcome] = OrderedDict()
        self._running: dict[str, Future[PlanOutcome]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tierplan-plan")
        self.max_entries = max_entries
        self.seconds: dict[str, float] = {}

    def get(self, key: str) -> PlanOutcome | None:
        with self._lock:
            hit = self._done.get(key)
            if hit is not None:
                self._done.move_to_end(key)
            return hit

    def submit(self, key: str, graph_key: str, fn: Callable[[], PlanOutcome]) -> Future[PlanOutcome]:
        with self._lock:
            if key in self._done:
                fut: Future[PlanOutcome] = Future()
                fut.set_result(self._done[key])
                return fut
            running = self._running.get(key)
            if running is not None:
                return running

            def work() -> PlanOutcome:
                t0 = time.perf_counter()
                try:
                    out = fn()
                except Exception as exc:  # a bug in a policy: keep it out of the store, show a friendly line
                    log.exception("planning failed", exc_info=exc)
                    with self._lock:
                        self._running.pop(key, None)
                    raise
                with self._lock:
                    self.seconds[graph_key] = time.perf_counter() - t0
                    self._done[key] = out
                    self._done.move_to_end(key)
                    while len(self._done) > self.max_entries:
                        self._done.popitem(last=False)
                    self._running.pop(key, None)
                return out

            fut = self._pool.submit(work)
            self._running[key] = fut
            return fut

    def __len__(self) -> int:
        return len(self._done)


@st.cache_resource(show_spinner=False)
def plan_store() -> PlanStore:
    """The one store of the server process (``st.cache_resource``: shared, never copied)."""
    return PlanStore()


def plan_key(graph_key: str, hw_json: str, policy: str, params_json: str) -> str:
    """Digest of everything a plan depends on."""
    text = "\n".join((graph_key, hw_json, policy, params_json))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def plan_for(inputs: Inputs, *, policy: str | None = None, params_json: str | None = None,
             status: bool = True, label: str | None = None) -> PlanOutcome:
    """The plan for ``inputs`` (optionally with another policy, for the Compare page), from the shared store
    or made now; while it is being made the page shows a status line with the elapsed time (``status``)."""
    policy = policy or inputs.policy
    params_json = params_json if params_json is not None else inputs.params_json
    store = plan_store()
    key = plan_key(inputs.graph_key, inputs.hw_json, policy, params_json)
    hit = store.get(key)
    if hit is not None:
        return hit
    graph = inputs.graph
    fut = store.submit(key, inputs.graph_key, lambda: _make(graph, inputs.hw_json, policy, params_json))
    if not status:
        return fut.result()
    return _wait_with_status(fut, store.seconds.get(inputs.graph_key),
                             label or f"Planning {inputs.model_label} ({len(graph.ops):,} ops) with {policy}")


def _wait_with_status(fut: Future[PlanOutcome], estimate_s: float | None, label: str) -> PlanOutcome:
    """Wait for ``fut``; after a short moment show what is being planned, the elapsed time and, when this
    model was planned before, a progress bar against that time (an estimate, said so)."""
    t0 = time.perf_counter()
    try:
        return fut.result(timeout=0.25)
    except TimeoutError:
        pass
    slot = st.empty()
    try:
        while True:
            elapsed = time.perf_counter() - t0
            with slot.container():
                if estimate_s:
                    st.progress(min(0.97, elapsed / max(estimate_s, 1e-3)),
                                text=f":material/hourglass_top: {label}… {elapsed:.1f} s "
                                     f"(the last plan of this model took {estimate_s:.1f} s)")
                else:
                    st.progress(0.0, text=f":material/hourglass_top: {label}… {elapsed:.1f} s")
            try:
                return fut.result(timeout=0.3)
            except TimeoutError:
                continue
    finally:
        slot.empty()


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
    #: Knots of the op-aligned axis for this plan (sorted op start times, then the step's end).
    knots: Any = None


@st.cache_resource(max_entries=24, show_spinner=False)
def _derived_cached(digest: str, _graph: Graph, _plan: Plan) -> Derived:
    from core.metrics import occupancy_curves, stream_timelines
    from core.plan import ComputeEvent
    from ui.figures import op_knots

    starts = [e.start for e in _plan.events if isinstance(e, ComputeEvent) and not e.recompute]
    knots = op_knots(starts, float(_plan.metrics.get("step_time_s", max(starts, default=0.0))))
    return Derived(list(stream_timelines(_graph, _plan)), dict(occupancy_curves(_graph, _plan)), knots)


def _plan_digest(inputs: Inputs, plan: Plan) -> str:
    key = f"{inputs.graph_key}|{inputs.hw_json}|{plan.policy}|{json.dumps(dict(plan.policy_params), sort_keys=True)}"
    return hashlib.sha256(key.encode()).hexdigest()


def derived(inputs: Inputs, plan: Plan) -> Derived:
    return _derived_cached(_plan_digest(inputs, plan), inputs.graph, plan)


@st.cache_resource(max_entries=24, show_spinner=False)
def _decisions_cached(digest: str, _graph: Graph, _plan: Plan) -> Any:
    from ui.tables import decisions_table

    return decisions_table(_plan, _graph)


def decisions(inputs: Inputs, plan: Plan) -> Any:
    """The decisions table of a plan, built once per plan and shared (read-only: pages filter copies)."""
    return _decisions_cached(_plan_digest(inputs, plan), inputs.graph, plan)


@st.cache_resource(max_entries=16, show_spinner=False)
def _before_cached(graph_key: str, hw_json: str, _graph: Graph, _hw: Hardware) -> dict[str, Any]:
    from core.metrics import no_offload_curves

    return dict(no_offload_curves(_graph, _hw))


def before_curves(inputs: Inputs) -> dict[str, Any]:
    """Occupancy if everything stayed in the compute tier (the "before offload" picture)."""
    return _before_cached(inputs.graph_key, inputs.hw_json, inputs.graph, inputs.hardware)


@st.cache_resource(max_entries=16, show_spinner=False)
def _before_knots_cached(graph_key: str, hw_json: str, _graph: Graph, _hw: Hardware) -> Any:
    import numpy as np

    from core.hardware import op_time_s
    from ui.figures import op_knots

    times = np.array([op_time_s(op, _hw.compute) for op in _graph.ops], dtype=float)
    starts = np.concatenate(([0.0], np.cumsum(times)))
    return op_knots(starts[:-1], float(starts[-1]))


def before_knots(inputs: Inputs) -> Any:
    """Knots of the op-aligned axis for the no-offload run (ops back to back in list order)."""
    return _before_knots_cached(inputs.graph_key, inputs.hw_json, inputs.graph, inputs.hardware)


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
