"""The dashboard's refining processes: what a plan is made from (:class:`PlanSpec`) and the process body
that streams its anytime updates back (:func:`refine_main`).

Kept apart from :mod:`ui.state` so a refining process imports the planner and this small module, not
Streamlit. :mod:`ui.state` starts and reads the processes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.graph import Graph
from core.hardware import hardware_from_dict

if TYPE_CHECKING:
    from core.planner import PlanUpdate

__all__ = ["PlanSpec", "REFINE_NICENESS", "refine_main", "mp_context"]


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


def refine_main(conn: Any, spec: PlanSpec) -> None:
    """A refining process: send every update of ``spec``'s anytime planning, then ("done", None)."""
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(REFINE_NICENESS)
    try:
        for update in spec.updates():
            conn.send(("update", update))
        conn.send(("done", None))
    except Exception as exc:  # reported to the parent, which keeps the plan it has and logs this
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


_MP_CONTEXT: Any = None


def mp_context() -> Any:
    """``forkserver`` (never fork the threaded server), with the planner preloaded so a refining process
    starts without importing it."""
    global _MP_CONTEXT
    if _MP_CONTEXT is None:
        import multiprocessing

        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["core.planner", "core.bound", "core.order", "core.search", "ui.anytime"])
        _MP_CONTEXT = ctx
    return _MP_CONTEXT
