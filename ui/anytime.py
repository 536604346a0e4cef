"""The dashboard's refining processes: what a plan is made from (:class:`PlanSpec`) and the process body
that streams its anytime updates back (:func:`refine_main`).

Kept apart from :mod:`ui.state` so a refining process imports the planner and this small module, not
Streamlit. :mod:`ui.state` starts and reads the processes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from core.graph import Graph
from core.hardware import hardware_from_dict

if TYPE_CHECKING:
    from core.planner import PlanUpdate

__all__ = ["PlanSpec", "REFINE_NICENESS", "progress_fields", "FORKSERVER_PRELOAD", "refine_main", "mp_context", "start_forkserver"]


@dataclass(frozen=True)
class PlanSpec:
    """What a plan is made from, in a form a refining process can be sent."""

    graph: Graph
    hw_json: str
    policy: str
    params_json: str

    def updates(self) -> Iterator[PlanUpdate]:
        """The anytime plans (:func:`core.planner.plan_anytime`): first plan, then one per refinement stage."""
        from core.planner import plan_anytime

        hw = hardware_from_dict(json.loads(self.hw_json), source="hardware settings")
        return plan_anytime(self.graph, hw, policy=self.policy, params=json.loads(self.params_json))


#: Niceness of a refining process: the server's own first plans and reruns come first on a busy machine.
REFINE_NICENESS = 10


def _die_with_parent() -> None:
    """Linux: be killed when the process that started us (the forkserver, which exits with the server)
    goes, even while paused by SIGSTOP; no refining process outlives a killed server."""
    import ctypes
    import signal

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent went before the line above ran
        os._exit(0)


def _identity(plan: Any) -> tuple[float, float | None, float | None]:
    """What the server shows of a plan that a later stage may change: its step time and its bound."""
    return float(plan.metrics["step_time_s"]), plan.gap_to_bound, plan.lower_bound_s


def progress_fields(update: PlanUpdate) -> dict[str, Any]:
    """Every field of ``update`` but its plan (a ("progress", …) message; the server adds the plan it has)."""
    return {f.name: getattr(update, f.name) for f in fields(update) if f.name != "plan"}


def refine_main(conn: Any, spec: PlanSpec) -> None:
    """A refining process: ("ready", None) once it is set up, then per stage of ``spec``'s anytime planning
    ("update", PlanUpdate) when the plan changed (faster, or with its bound) and for the last stage (its
    plan carries the whole planning record), ("progress", fields) otherwise, then ("done", None).

    The first stage's plan is the one the server made itself, and most later stages keep the plan: sending
    only the changed plans spares the server unpickling a megabyte per stage (10-50 ms each on the largest
    samples, on the server's GIL while the user edits)."""
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(REFINE_NICENESS)
    conn.send(("ready", None))  # only now may the parent pause us: we die with it from here on
    try:
        sent: tuple[float, float | None, float | None] | None = None
        for update in spec.updates():
            ident = _identity(update.plan)
            if update.final or (sent is not None and ident != sent):  # the final one: its planning record
                conn.send(("update", update))
            else:
                conn.send(("progress", progress_fields(update)))
            sent = ident
        conn.send(("done", None))
    except (BrokenPipeError, EOFError):  # the server stopped listening (it exits, or dropped this input)
        return
    except Exception as exc:  # reported to the parent, which keeps the plan it has and logs this
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


_MP_CONTEXT: Any = None
#: Imported by the forkserver before it forks any refining process: the planner, and this module (whose
#: import there warms the compiled kernels, see :func:`_warm_in_forkserver`), so a refining process starts
#: with both loaded instead of paying ~0.5-7 s for numba in every process.
FORKSERVER_PRELOAD = ("core.planner", "core.bound", "core.order", "core.search", "ui.anytime")


#: The command line of a forkserver (``python -c "from multiprocessing.forkserver import main; main(…)"``).
_FORKSERVER_MAIN = "from multiprocessing.forkserver import main"


def _warm_in_forkserver() -> None:
    """In the forkserver (single-threaded, importing this module as a preload): load the compiled kernels
    once, so every refining process forked from it runs them compiled from its first stage."""
    if not any(_FORKSERVER_MAIN in arg for arg in getattr(sys, "orig_argv", ())):
        return
    with contextlib.suppress(Exception):  # a missing numba or a failed compile: the Python path stays
        from core.planner import warm_up

        warm_up()


def _without_script_main(get_preparation_data: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    """``multiprocessing.spawn.get_preparation_data`` minus the main script when Streamlit runs one.

    Streamlit makes the page script the ``__main__`` module (``app.py``), so every process started from the
    server re-ran the whole app as ``__mp_main__`` before its target: 0.7 s (at normal priority, before
    :func:`refine_main` nices it) during which ``Process.start`` blocked. A refining process needs nothing
    from the script (its target lives in this module)."""

    @functools.wraps(get_preparation_data)
    def wrapper(name: str) -> dict[str, Any]:
        data = get_preparation_data(name)
        if _script_main(sys.modules.get("__main__")):
            data.pop("init_main_from_path", None)
        return data

    wrapper.tierplan_without_main = True  # type: ignore[attr-defined]
    return wrapper


def _script_main(main: Any) -> bool:
    """Whether ``main`` is a ``__main__`` module Streamlit made to execute its page script in (no spec and
    no loader, unlike a ``python file.py`` main, which has a loader): re-running that in a child runs the
    app outside its server."""
    return (main is not None and getattr(main, "__spec__", None) is None and getattr(main, "__loader__", None) is None
            and getattr(main, "__file__", None) is not None)


def mp_context() -> Any:
    """``forkserver`` (never fork the threaded server), with the planner and the compiled kernels preloaded
    so a refining process starts without importing or compiling them, and without re-running the
    Streamlit script (:func:`_without_script_main`)."""
    global _MP_CONTEXT
    if _MP_CONTEXT is None:
        import multiprocessing
        from multiprocessing import spawn

        if not getattr(spawn.get_preparation_data, "tierplan_without_main", False):
            spawn.get_preparation_data = _without_script_main(spawn.get_preparation_data)  # type: ignore[assignment]
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))
        _MP_CONTEXT = ctx
    return _MP_CONTEXT


def start_forkserver() -> None:
    """Start the forkserver now (it imports :data:`FORKSERVER_PRELOAD` and warms the kernels), so the first
    refinement does not wait for it; for the dashboard's background warm-up."""
    ctx = mp_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


_warm_in_forkserver()
