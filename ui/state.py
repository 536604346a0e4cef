"""Shared dashboard state: the resolved inputs, cached plans and derived data, last good inputs, URL sharing.

Pages call :func:`current_inputs` and :func:`plan_outcome`; planning itself is
``core.planner.plan_anytime`` behind a process-wide store (``st.cache_resource``) keyed by a digest of the
inputs (graph key + hardware JSON + policy + params). Plans are immutable and shared, never copied per hit
(``st.cache_data`` pickled and unpickled the whole plan on every rerun), so a rerun with unchanged inputs
costs a dictionary lookup and moving a slider back to a previous value is instant.

A new input gets its **first plan** on a worker thread (a fraction of a second on the samples) and the
Plan page draws it at once; the refinement stages then run on another thread and each better plan
replaces the shown one (the page polls, :data:`WANTED_FOR_S`). Refinements nobody looks at park, so the
input typed now is never slowed by the ones typed before. Two sessions asking for the same plan share one
computation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import streamlit as st

from core.errors import PlanBugError, TierplanError
from core.graph import Graph
from core.hardware import Hardware, hardware_from_dict
from core.plan import Plan

if TYPE_CHECKING:  # the planner loads on the first plan, not with the app
    from core.planner import PlanUpdate

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
    """A plan, or the clear reason there is none (infeasible hardware, bad parameter).

    While the planner is still refining in the background ``final`` is False and ``update`` says which stage
    it is at (:class:`core.planner.PlanUpdate`); ``version`` counts the plans shown for these inputs (0 the
    first), so a page can tell that a better one arrived.
    """

    plan: Plan | None
    error: str | None = None
    update: PlanUpdate | None = None
    final: bool = True
    version: int = 0
    #: the refinement stopped on an unexpected error (logged); the plan is the best one found before it
    note: str | None = None


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


def _updates(graph: Graph, hw_json: str, policy: str, params_json: str) -> Iterator[PlanUpdate]:
    """The anytime plans of these inputs (:func:`core.planner.plan_anytime`): first plan, then refinements."""
    from core.planner import plan_anytime

    hw = hardware_from_dict(json.loads(hw_json), source="hardware settings")
    return plan_anytime(graph, hw, policy=policy, params=json.loads(params_json))


#: A refinement keeps running while some page asked for its plan this recently (the Plan page asks every
#: half second while it shows the refinement's progress); otherwise it parks and resumes when asked again,
#: so the plans of capacities typed a moment ago do not take the CPU from the one typed now.
WANTED_FOR_S = 1.5
#: Parked refinements kept resumable (each holds its candidates); older ones restart from scratch.
MAX_PARKED = 6


class _Job:
    """One input's planning: the latest outcome and the generator that refines it (guarded by the store's
    lock; the generator itself only ever runs on one thread at a time)."""

    def __init__(self, key: str, graph_key: str, make: Callable[[], Iterator[PlanUpdate]]) -> None:
        self.key, self.graph_key, self.make = key, graph_key, make
        self.updates: Iterator[PlanUpdate] | None = None
        self.outcome: PlanOutcome | None = None
        self.running = False
        self.touched = time.monotonic()
        self.changed = threading.Condition()


class PlanStore:
    """Plan outcomes shared by every session: the first plan of each input as soon as it exists, refined in
    the background (:func:`core.planner.plan_anytime`), with in-flight planning deduplicated.

    Values are immutable (frozen ``Plan``, ``PlanOutcome``), so handing the same object to every session is
    safe. First plans run on their own threads, refinements on one more, so a new input's first plan never
    queues behind another input's refinement. ``seconds`` remembers how long the last first plan of each
    graph took (the status line's estimate). At most ``max_entries`` inputs are kept (least recently used
    dropped)."""

    def __init__(self, max_entries: int = 64) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._first = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tierplan-first")
        self._refine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierplan-refine")
        self.max_entries = max_entries
        self.seconds: dict[str, float] = {}

    def get(self, key: str) -> PlanOutcome | None:
        """The latest outcome of ``key`` (None before its first plan); asking keeps its refinement going."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return None
            self._jobs.move_to_end(key)
            self._touch(job)
            return job.outcome

    def request(self, key: str, graph_key: str, make: Callable[[], Iterator[PlanUpdate]]) -> _Job:
        """The job of ``key``, started (``make`` gives its updates) or resumed if parked."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = _Job(key, graph_key, make)
                job.running = True
                self._first.submit(self._run_first, job)
                self._evict()
            else:
                self._jobs.move_to_end(key)
                self._touch(job)
            return job

    def wait(self, job: _Job, *, final: bool, timeout: float | None) -> PlanOutcome | None:
        """``job``'s outcome once it has one (``final``: once refinement is done), or None after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with job.changed:
            while True:
                out = job.outcome
                if out is not None and (out.final or not final):
                    return out
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                if final:
                    with self._lock:
                        self._touch(job)
                job.changed.wait(left if left is None or left < 0.5 else 0.5)

    def idle(self) -> bool:
        """Whether no planning is running."""
        with self._lock:
            return not any(job.running for job in self._jobs.values())

    def settle(self, timeout: float = 300.0) -> None:
        """Wait until every job's refinement has finished (resuming parked ones): the final plans of
        everything asked for so far (tests and benchmarks read those)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                jobs = [j for j in self._jobs.values() if j.outcome is None or not j.outcome.final]
            if not jobs:
                return
            for job in jobs:
                self.wait(job, final=True, timeout=max(0.0, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError("plans still refining after the timeout")

    def __len__(self) -> int:
        return len(self._jobs)

    # ------------------------------------------------------------------------------ worker side
    def _touch(self, job: _Job) -> None:
        """(lock held) Mark ``job`` wanted; resume its refinement if it was parked."""
        job.touched = time.monotonic()
        out = job.outcome
        if not job.running and out is not None and not out.final:
            job.running = True
            self._refine.submit(self._run_refine, job)

    def _evict(self) -> None:
        """(lock held) Drop the least recently used idle jobs beyond ``max_entries``, and the generators of
        parked jobs beyond :data:`MAX_PARKED` (those restart from scratch if asked again)."""
        idle = [k for k, j in self._jobs.items() if not j.running]
        for key in idle[:max(0, len(self._jobs) - self.max_entries)]:
            del self._jobs[key]
        parked = [j for j in self._jobs.values() if not j.running and j.updates is not None]
        for job in parked[:max(0, len(parked) - MAX_PARKED)]:
            job.updates = None

    def _publish(self, job: _Job, outcome: PlanOutcome) -> None:
        with job.changed:
            job.outcome = outcome
            job.changed.notify_all()

    def _run_first(self, job: _Job) -> None:
        """Make ``job``'s first plan, then hand its refinement to the refining thread."""
        t0 = time.perf_counter()
        try:
            job.updates = job.make()
            update = next(job.updates)
        except (TierplanError, PlanBugError) as exc:  # PlanBugError: the planner's self-check, shown, never plotted
            self._finish(job, PlanOutcome(None, str(exc)))
            return
        except Exception as exc:  # a bug: keep it out of the plots, say so in one line
            log.exception("planning failed", exc_info=exc)
            self._finish(job, PlanOutcome(None, friendly_error(exc)))
            return
        with self._lock:
            self.seconds[job.graph_key] = time.perf_counter() - t0
        self._publish(job, PlanOutcome(update.plan, update=update, final=update.final, version=0))
        if update.final:
            self._finish(job, job.outcome)
            return
        self._refine.submit(self._run_refine, job)

    def _run_refine(self, job: _Job) -> None:
        """Run ``job``'s stages while some page wants them; park it otherwise."""
        restarted = False
        while True:
            with self._lock:
                if time.monotonic() - job.touched > WANTED_FOR_S:
                    job.running = False  # parked: resumed by the next request
                    self._evict()
                    return
            out = job.outcome
            assert out is not None and out.plan is not None
            try:
                if job.updates is None:  # its generator was dropped while parked: start again
                    job.updates, restarted = job.make(), True
                update = next(job.updates)
            except StopIteration:
                self._finish(job, replace(out, final=True))
                return
            except Exception as exc:  # a bug in a refinement stage: keep the plan found so far
                log.exception("refining the plan failed", exc_info=exc)
                self._finish(job, replace(out, final=True, note="The background refinement stopped on an "
                                                                "unexpected error (logged); this is the best "
                                                                "plan found before it."))
                return
            plan = update.plan
            if restarted and plan.metrics["step_time_s"] >= out.plan.metrics["step_time_s"]:
                plan = out.plan  # a restart passes through worse plans first: keep showing the better one
            better = plan is not out.plan
            self._publish(job, PlanOutcome(plan, update=update, final=update.final, version=out.version + better))
            if update.final:
                self._finish(job, job.outcome)
                return

    def _finish(self, job: _Job, outcome: PlanOutcome | None) -> None:
        assert outcome is not None
        with self._lock:
            job.running = False
            job.updates = None
        self._publish(job, outcome)


@st.cache_resource(show_spinner=False)
def plan_store() -> PlanStore:
    """The one store of the server process (``st.cache_resource``: shared, never copied)."""
    return PlanStore()


def plan_key(graph_key: str, hw_json: str, policy: str, params_json: str) -> str:
    """Digest of everything a plan depends on."""
    text = "\n".join((graph_key, hw_json, policy, params_json))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def plan_for(inputs: Inputs, *, policy: str | None = None, params_json: str | None = None,
             status: bool = True, label: str | None = None, final: bool = True) -> PlanOutcome:
    """The plan for ``inputs`` (optionally with another policy, for the Compare page) from the shared store.

    ``final`` False (the Plan page): the best plan so far as soon as the first one exists, while refinement
    goes on in the background; True: the refined plan. While waiting the page shows a status line with the
    elapsed time (``status``)."""
    policy = policy or inputs.policy
    params_json = params_json if params_json is not None else inputs.params_json
    store = plan_store()
    key = plan_key(inputs.graph_key, inputs.hw_json, policy, params_json)
    graph = inputs.graph
    job = store.request(key, inputs.graph_key, lambda: _updates(graph, inputs.hw_json, policy, params_json))
    if not status:
        out = store.wait(job, final=final, timeout=None)
        assert out is not None
        return out
    return _wait_with_status(store, job, final, store.seconds.get(inputs.graph_key),
                             label or f"Planning {inputs.model_label} ({len(graph.ops):,} ops) with {policy}")


def latest_outcome(inputs: Inputs) -> PlanOutcome | None:
    """The newest outcome of ``inputs`` without waiting (the Plan page's refinement poll)."""
    return plan_store().get(plan_key(inputs.graph_key, inputs.hw_json, inputs.policy, inputs.params_json))


def _wait_with_status(store: PlanStore, job: _Job, final: bool, estimate_s: float | None, label: str) -> PlanOutcome:
    """Wait for ``job``; after a short moment show what is being planned, the elapsed time and the stage (or,
    for a first plan of a model planned before, a progress bar against that time: an estimate, said so)."""
    t0 = time.perf_counter()
    out = store.wait(job, final=final, timeout=0.25)
    if out is not None:
        return out
    slot = st.empty()
    try:
        while True:
            elapsed = time.perf_counter() - t0
            with slot.container():
                partial = job.outcome
                if partial is not None and partial.update is not None:
                    u = partial.update
                    st.progress(min(1.0, u.stages_done / u.stages_total),
                                text=f":material/hourglass_top: {label}… {elapsed:.1f} s: refining, stage "
                                     f"{u.stages_done} of {u.stages_total} ({u.stage}) done")
                elif estimate_s:
                    st.progress(min(0.97, elapsed / max(estimate_s, 1e-3)),
                                text=f":material/hourglass_top: {label}… {elapsed:.1f} s "
                                     f"(the last first plan of this model took {estimate_s:.1f} s)")
                else:
                    st.progress(0.0, text=f":material/hourglass_top: {label}… {elapsed:.1f} s")
            out = store.wait(job, final=final, timeout=0.3)
            if out is not None:
                return out
    finally:
        slot.empty()


def plan_outcome(inputs: Inputs, *, final: bool = True) -> tuple[Inputs, PlanOutcome, str | None]:
    """The plan for ``inputs``; when there is none, the last inputs that gave one (and the error to show).

    Returns (inputs actually shown, outcome, error message or None).
    """
    outcome = plan_for(inputs, final=final)
    if outcome.plan is not None:
        st.session_state["last_good_inputs"] = inputs
        return inputs, outcome, None
    last: Inputs | None = st.session_state.get("last_good_inputs")
    if last is not None and last.digest != inputs.digest:
        previous = plan_for(last, final=final)
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
    """Inputs plus the plan's identity: the first plan and the refined one of the same inputs differ."""
    ident = f"{id(plan)}|{plan.metrics.get('step_time_s')}|{len(plan.events)}|{plan.order is not None}"
    key = f"{inputs.graph_key}|{inputs.hw_json}|{plan.policy}|{json.dumps(dict(plan.policy_params), sort_keys=True)}|{ident}"
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
