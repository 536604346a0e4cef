"""A plan as a Chrome trace (JSON) that opens in ui.perfetto.dev or chrome://tracing.

One process per plan; one thread (track) per stream — the compute of each tier that runs ops, and each
directed link — with an ``"X"`` slice per event (``ts``/``dur`` in microseconds); one counter track per
tier with its occupancy stacked by tensor kind (``"C"`` events, downsampled so that huge plans stay
loadable while peaks survive); ``"M"`` metadata names the process and the tracks and fixes their order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.graph import Graph
from core.metrics import downsample_step, occupancy_curves, stream_timelines
from core.plan import Plan

__all__ = ["MAX_COUNTER_POINTS", "plan_to_trace"]

#: Counter samples kept per tier (per-bucket maxima beyond that).
MAX_COUNTER_POINTS = 20_000
_PID = 1
_US = 1e6


def plan_to_trace(graph: Graph, plan: Plan, *, max_counter_points: int = MAX_COUNTER_POINTS) -> dict[str, Any]:
    """The Chrome trace-event JSON object of ``plan`` (``json.dump`` it to a ``.json`` file)."""
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": _PID, "name": "process_name", "args": {"name": f"Tierplan: {plan.graph} ({plan.policy})"}},
    ]
    sizes = {t.id: t.bytes for t in graph.tensors}
    for tid, stream in enumerate(stream_timelines(graph, plan), start=1):
        events.append({"ph": "M", "pid": _PID, "tid": tid, "name": "thread_name", "args": {"name": stream.name}})
        events.append({"ph": "M", "pid": _PID, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}})
        starts = (stream.starts_s * _US).tolist()
        durs = ((stream.ends_s - stream.starts_s) * _US).tolist()
        for label, category, ts, dur in zip(stream.labels, stream.categories, starts, durs):
            args: dict[str, Any] = {"stream": stream.name}
            if stream.kind == "link":
                args["bytes"] = sizes.get(label, 0)
            events.append({"ph": "X", "pid": _PID, "tid": tid, "name": label, "cat": category, "ts": ts, "dur": dur,
                           "args": args})
    for tier, curve in occupancy_curves(graph, plan).items():
        kinds = list(curve.bytes_by_kind)
        if not kinds:
            continue
        stacked = np.vstack([curve.bytes_by_kind[k] for k in kinds])
        times, values = downsample_step(curve.times_s, stacked, max_counter_points)
        name = f"{tier} occupancy (bytes)"
        for k, ts in enumerate((times * _US).tolist()):
            events.append({"ph": "C", "pid": _PID, "name": name, "ts": ts,
                           "args": {kind: int(values[j, k]) for j, kind in enumerate(kinds)}})
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"graph": plan.graph, "policy": plan.policy, "format": "tierplan-plan/1"},
    }
