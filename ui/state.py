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

import atexit
import contextlib
import functools
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import streamlit as st

from core.errors import PlanBugError, TierplanError
from core.graph import Graph
from core.hardware import Hardware
from core.plan import Plan
from ui.anytime import PlanSpec, mp_context, refine_main, start_forkserver

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
    "plan_digest",
    "decisions",
    "warm_up",
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


#: A refinement keeps running while some page asked for its plan this recently (the Plan page asks every
#: half second while it shows the refinement's progress); otherwise it is paused (SIGSTOP) and resumed when
#: asked again, so the plans of capacities typed a moment ago do not take the CPU from the one typed now.
WANTED_FOR_S = 1.5
#: Paused refinements kept resumable; older ones are stopped for good (asked again, they start over).
MAX_PARKED = 6


class _Starting:
    """``_Job.proc`` while its refining process is being started (see :meth:`PlanStore._start_refining`)."""

    pid = None

    @staticmethod
    def is_alive() -> bool:
        return False


class _Job:
    """One input's planning: the latest outcome, and the refining process while there is one (guarded by
    the store's lock)."""

    def __init__(self, key: str, graph_key: str, spec: PlanSpec) -> None:
        self.key, self.graph_key, self.spec = key, graph_key, spec
        self.outcome: PlanOutcome | None = None
        self.running = False
        self.proc: Any = None
        self.paused = False
        self.touched = time.monotonic()
        self.changed = threading.Condition()


class PlanStore:
    """Plan outcomes shared by every session: the first plan of each input as soon as it exists, refined in
    the background (:func:`core.planner.plan_anytime`), with in-flight planning deduplicated.

    Values are immutable (frozen ``Plan``, ``PlanOutcome``), so handing the same object to every session is
    safe. First plans are made on threads of the server; the refinement runs in a niced process of its own
    (one per input being refined) that streams its updates back, so it neither holds the server's GIL nor
    takes the CPU from a first plan or a rerun. ``seconds`` remembers how long the last first plan of each
    graph took (the status line's estimate). At most ``max_entries`` inputs are kept (least recently used
    dropped)."""

    def __init__(self, max_entries: int = 64) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._first = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tierplan-first")
        self.max_entries = max_entries
        self.seconds: dict[str, float] = {}
        import multiprocessing.util  # noqa: F401  (its exit handler, which kills daemonic children, must run
        atexit.register(self.close)  # after ours: registered later, ours runs first and its readers end quietly

    def close(self) -> None:
        """Kill every refining process (also at exit: a paused one would never see a SIGTERM)."""
        with self._lock:
            for job in self._jobs.values():
                self._stop(job)

    def get(self, key: str) -> PlanOutcome | None:
        """The latest outcome of ``key`` (None before its first plan); asking keeps its refinement going."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return None
            self._jobs.move_to_end(key)
            self._touch(job)
            return job.outcome

    def request(self, key: str, graph_key: str, spec: PlanSpec) -> _Job:
        """The job of ``key``: started if new, its refinement resumed if paused."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = _Job(key, graph_key, spec)
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
                job.changed.wait(0.5 if left is None else min(left, 0.5))

    def idle(self) -> bool:
        """Whether no planning is running (paused refinements do not count)."""
        with self._lock:
            return not any(job.running and not job.paused for job in self._jobs.values())

    def settle(self, timeout: float = 300.0) -> None:
        """Wait until every job's refinement has finished (resuming paused ones): the final plans of
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
        """(lock held) Mark ``job`` wanted: resume its refining process, or start one if it had to stop."""
        job.touched = time.monotonic()
        out = job.outcome
        if out is None or out.final or (job.running and not job.paused):
            return
        if job.paused and job.proc is not None:
            self._signal(job, "SIGCONT")
            job.paused = False
        elif not job.running:
            self._start_refining(job)

    @staticmethod
    def _signal(job: _Job, name: str) -> None:
        import os
        import signal

        # gone already, or no such signal here: the reader sees the end
        with contextlib.suppress(OSError, AttributeError, TypeError):
            os.kill(job.proc.pid, getattr(signal, name))

    def _evict(self) -> None:
        """(lock held) Drop the least recently used idle jobs beyond ``max_entries``, and stop the refining
        processes of paused jobs beyond :data:`MAX_PARKED` (asked again, they start over)."""
        idle = [k for k, j in self._jobs.items() if not j.running or j.paused]
        for key in idle[:max(0, len(self._jobs) - self.max_entries)]:
            self._stop(self._jobs.pop(key))
        paused = [j for j in self._jobs.values() if j.paused]
        for job in paused[:max(0, len(paused) - MAX_PARKED)]:
            self._stop(job)

    def _stop(self, job: _Job) -> None:
        """(lock held) End ``job``'s refining process, if any (its reader thread then ends too)."""
        proc, job.proc = job.proc, None
        job.running = job.paused = False
        if proc is not None and proc.is_alive():
            proc.kill()

    def _publish(self, job: _Job, outcome: PlanOutcome) -> None:
        with job.changed:
            job.outcome = outcome
            job.changed.notify_all()

    def _run_first(self, job: _Job) -> None:
        """Make ``job``'s first plan here, then hand the refinement to a process of its own."""
        t0 = time.perf_counter()
        try:
            updates = job.spec.updates()
            update = next(updates)
            updates.close()  # type: ignore[attr-defined]  # (a generator: the refinement runs elsewhere)
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
        with self._lock:
            self._start_refining(job)

    def _start_refining(self, job: _Job) -> None:
        """(lock held) Claim ``job`` for a refining process and start it on a thread of its own: starting a
        process waits for the forkserver (its first start imports the planner and loads the compiled
        kernels, seconds), which must not hold the lock every page's plan lookup takes."""
        token = _Starting()
        job.proc, job.running, job.paused = token, True, False
        threading.Thread(target=self._refine, args=(job, token), daemon=True,
                         name=f"tierplan-refine-{job.key[:8]}").start()

    def _refine(self, job: _Job, token: _Starting) -> None:
        """Start ``job``'s refining process (unless it was stopped meanwhile) and read its updates."""
        ctx = mp_context()
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=refine_main, args=(child, job.spec), daemon=True,
                           name=f"tierplan-refine-{job.key[:8]}")
        try:
            proc.start()
        except Exception as exc:  # no process to refine in: the first plan stays, said so
            log.exception("cannot start a refining process", exc_info=exc)
            parent.close()
            child.close()
            first = job.outcome
            assert first is not None
            with self._lock:
                if job.proc is not token:
                    return
            self._finish(job, replace(first, final=True, note=(
                "The background refinement could not start (logged); this is the first plan.")))
            return
        child.close()
        with self._lock:
            if job.proc is not token:  # stopped (evicted, or the server exits) while it started
                proc.kill()
                parent.close()
                return
            job.proc = proc
        self._read(job, proc, parent)

    def _read(self, job: _Job, proc: Any, conn: Any) -> None:
        """Publish ``proc``'s updates that improve on the plan shown; pause it while nobody asks (once it
        said it is ready: paused earlier, it could outlive a killed server)."""
        ready = False
        try:
            while True:
                with self._lock:
                    if job.proc is not proc:  # stopped (evicted, or paused too long): nothing more to read
                        return
                    if ready and not job.paused and time.monotonic() - job.touched > WANTED_FOR_S:
                        self._signal(job, "SIGSTOP")
                        job.paused = True
                        self._evict()
                if not conn.poll(0.25):
                    continue
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    with self._lock:
                        if job.proc is not proc:  # killed on purpose (evicted, or the server exits): no error
                            return
                    kind, payload = "error", "the refining process ended unexpectedly (out of memory?)"
                if kind == "ready":
                    ready = True
                    continue
                out = job.outcome
                assert out is not None and out.plan is not None
                if kind == "update":
                    self._merge(job, out, payload)
                    continue
                if kind == "progress":  # a stage that kept the plan: the plan shown stays, with its progress
                    from core.planner import PlanUpdate

                    self._publish(job, replace(out, update=PlanUpdate(plan=out.plan, **payload)))
                    continue
                if kind == "error":
                    log.error("refining the plan failed: %s", payload)
                    self._finish(job, replace(out, final=True, note="The background refinement stopped on an "
                                                                    "unexpected error (logged); this is the best "
                                                                    "plan found before it."))
                else:
                    self._finish(job, replace(out, final=True))
                return
        finally:
            conn.close()

    def _merge(self, job: _Job, out: PlanOutcome, update: PlanUpdate) -> None:
        """Show ``update``'s plan when it is faster than the one shown or brings the bound it lacked (the
        process starts from scratch: its first plans are not better than the one already shown)."""
        assert out.plan is not None
        plan = update.plan
        step, shown = float(plan.metrics["step_time_s"]), float(out.plan.metrics["step_time_s"])
        better = step < shown * (1 - 1e-9) or (step <= shown * (1 + 1e-9) and plan.gap_to_bound is not None
                                                 and out.plan.gap_to_bound is None)
        self._publish(job, PlanOutcome(plan if better else out.plan, update=update, final=False,
                                       version=out.version + better))

    def _finish(self, job: _Job, outcome: PlanOutcome | None) -> None:
        assert outcome is not None
        with self._lock:
            job.running = job.paused = False
            job.proc = None
        self._publish(job, outcome)


def warm_up() -> None:
    """Load the compiled kernels in this process (:func:`core.planner.warm_up`: ~0.5 s with numba's on-disk
    cache, ~7 s cold) and start the forkserver the refining processes come from (it loads them too). Runs on
    a daemon thread: until it is done, first plans run the Python path, after it compiled (the largest
    sample's first plan: 0.15 s CPU instead of 0.35)."""
    from core.planner import warm_up as load_kernels

    t0 = time.perf_counter()
    try:
        compiled = load_kernels()
    except Exception as exc:  # numba broken: the Python path serves every plan, as it does without numba
        log.warning("compiled kernels unavailable, planning on the Python path: %s", exc)
        compiled = False
    try:
        start_forkserver()
    except Exception as exc:  # the first refinement then starts it (or reports that it cannot)
        log.warning("could not start the forkserver early: %s", exc)
    log.info("warm-up done in %.1f s (compiled kernels: %s)", time.perf_counter() - t0, compiled)


@st.cache_resource(show_spinner=False)
def plan_store() -> PlanStore:
    """The one store of the server process (``st.cache_resource``: shared, never copied); creating it starts
    the process's warm-up (:func:`warm_up`) on a background thread."""
    threading.Thread(target=warm_up, daemon=True, name="tierplan-warm-up").start()
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
    job = store.request(key, inputs.graph_key, PlanSpec(graph, inputs.hw_json, policy, params_json))
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
    #: The tensors the plan moves between tiers (sorted): the schedule's highlight picker offers these.
    moved: list[str] = field(default_factory=list)


@st.cache_resource(max_entries=24, show_spinner=False)
def _derived_cached(digest: str, _graph: Graph, _plan: Plan) -> Derived:
    from core.metrics import occupancy_curves, stream_timelines
    from core.plan import ComputeEvent, TransferEvent
    from ui.figures import op_knots

    starts = [e.start for e in _plan.events if isinstance(e, ComputeEvent) and not e.recompute]
    knots = op_knots(starts, float(_plan.metrics.get("step_time_s", max(starts, default=0.0))))
    moved = sorted({e.tensor for e in _plan.events if isinstance(e, TransferEvent)})
    return Derived(list(stream_timelines(_graph, _plan)), dict(occupancy_curves(_graph, _plan)), knots, moved)


def plan_digest(inputs: Inputs, plan: Plan) -> str:
    """Inputs plus the plan's identity: the first plan and the refined one of the same inputs differ (the key
    of everything derived from a plan: curves, tables, figures)."""
    ident = f"{id(plan)}|{plan.metrics.get('step_time_s')}|{len(plan.events)}|{plan.order is not None}"
    key = f"{inputs.graph_key}|{inputs.hw_json}|{plan.policy}|{json.dumps(dict(plan.policy_params), sort_keys=True)}|{ident}"
    return hashlib.sha256(key.encode()).hexdigest()


def derived(inputs: Inputs, plan: Plan) -> Derived:
    return _derived_cached(plan_digest(inputs, plan), inputs.graph, plan)


@st.cache_resource(max_entries=24, show_spinner=False)
def _decisions_cached(digest: str, _graph: Graph, _plan: Plan) -> Any:
    from ui.tables import decisions_table

    return decisions_table(_plan, _graph)


def decisions(inputs: Inputs, plan: Plan) -> Any:
    """The decisions table of a plan, built once per plan and shared (read-only: pages filter copies)."""
    return _decisions_cached(plan_digest(inputs, plan), inputs.graph, plan)


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
