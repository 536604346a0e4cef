"""Execution-order refinement: run the ops in another legal order, as HyperOffload's global refinement does.

The graph lists its ops in one valid order. Others are just as correct when they respect

* **data dependencies**: an op runs after the producer of every tensor it reads;
* **versions**: an op that ``mutates`` a tensor starts a new version of it. Every reader sees the version
  the graph's order implies (a reader listed before an update runs before it, one listed after runs after
  it), and the updates of one tensor keep their relative order.

These rules are a partial order (:func:`dependencies`); any topological order of it computes the same
values. :func:`check_order` is the planner's own test of an order (the validator has an independent one).

:func:`refine_order` picks one that helps offloading. Its first target is PyTorch's "optimizer step in
backward": an optimizer update (an op that updates tensors in place and writes nothing new) runs as soon as
its last input is ready, i.e. right after the backward op that completes its gradient, instead of in an
optimizer phase after the whole backward pass. Its optimizer-state traffic then overlaps the rest of the
backward compute rather than streaming with no compute to hide behind. Its second target spreads those
updates over the backward pass: an update is held back (never past the position the graph gives it) while
the compute since the previous update is too short to cover its state copies, so the copies of consecutive
updates do not pile up on the links. Every move is recorded (:class:`OrderMove`) with its reason for the UI.

The result is a plain reordered :class:`~core.graph.Graph`, so liveness, every policy and the scheduler
work on it unchanged; the planner tries it as an extra candidate and keeps it only when its exact schedule
is faster (``make_plan(..., reorder=True)``).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from core.graph import Graph
from core.hardware import Hardware, op_time_s

__all__ = ["OrderMove", "RefinedOrder", "dependencies", "check_order", "reorder_graph", "refine_order",
           "is_update"]


@dataclass(frozen=True)
class OrderMove:
    """Op ``op`` runs at position ``to_index`` instead of ``from_index`` (its position in the graph)."""

    op: str
    from_index: int
    to_index: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"op": self.op, "from_index": self.from_index, "to_index": self.to_index, "reason": self.reason}


@dataclass(frozen=True)
class RefinedOrder:
    """A legal execution order (op ids), the graph with its ops in that order, and what moved."""

    order: tuple[str, ...]
    graph: Graph
    moves: tuple[OrderMove, ...]

    @property
    def changed(self) -> bool:
        return bool(self.moves)


def is_update(graph: Graph, i: int) -> bool:
    """An optimizer-style op: updates tensors in place and produces nothing new."""
    op = graph.ops[i]
    return bool(op.mutates) and not op.outputs


def dependencies(graph: Graph) -> list[set[int]]:
    """For each op (graph index), the ops that must run before it (see the module docstring).

    Per tensor: its producer precedes every use; each update follows the previous update and every reader
    of the version before it; each reader follows the update that made the version it reads.
    """
    n = len(graph.ops)
    preds: list[set[int]] = [set() for _ in range(n)]
    producer = graph.producer
    last_update: dict[str, int] = {}
    readers_since: dict[str, list[int]] = {}
    for i, op in enumerate(graph.ops):
        mutated = set(op.mutates)
        for tid in op.inputs:
            q = producer.get(tid)
            if q is not None:
                preds[i].add(q)
            u = last_update.get(tid)
            if u is not None:
                preds[i].add(u)
            if tid in mutated:
                preds[i].update(readers_since.get(tid, ()))
        for tid in op.inputs:
            if tid in mutated:
                last_update[tid] = i
                readers_since[tid] = []
            else:
                readers_since.setdefault(tid, []).append(i)
        preds[i].discard(i)
    return preds


def check_order(graph: Graph, order: Sequence[str]) -> list[str]:
    """Why ``order`` (op ids) is not a legal execution order of ``graph``; empty when it is.

    >>> from core.graph import graph_from_dict
    >>> g = graph_from_dict({"format": "tierplan-graph/1", "tensors": [{"id": "x", "bytes": 1, "kind": "input"},
    ...     {"id": "y", "bytes": 1, "kind": "activation"}], "ops": [{"id": "a", "inputs": ["x"], "outputs": ["y"],
    ...     "time_s": 1}, {"id": "b", "inputs": ["y"], "outputs": [], "time_s": 1}]})
    >>> check_order(g, ["a", "b"])
    []
    >>> check_order(g, ["b", "a"])
    ["op 'b' runs at position 0, before op 'a' at 1, but it reads 'y', which 'a' produces"]
    """
    problems: list[str] = []
    index = graph.op_index
    pos: dict[str, int] = {}
    for k, oid in enumerate(order):
        if oid not in index:
            problems.append(f"order[{k}]: unknown op '{oid}'")
        elif oid in pos:
            problems.append(f"order[{k}]: op '{oid}' appears twice")
        else:
            pos[oid] = k
    missing = [op.id for op in graph.ops if op.id not in pos]
    if missing:
        problems.append(f"order leaves out {len(missing)} op(s): " + ", ".join(f"'{m}'" for m in missing[:5]))
    if problems:
        return problems
    ops = graph.ops
    for i, before in enumerate(dependencies(graph)):
        for q in sorted(before):
            if pos[ops[q].id] > pos[ops[i].id]:
                problems.append(f"op '{ops[i].id}' runs at position {pos[ops[i].id]}, before op '{ops[q].id}' at "
                                f"{pos[ops[q].id]}, but {_why(graph, q, i)}")
                if len(problems) >= 20:
                    return problems
    return problems


def _why(graph: Graph, q: int, i: int) -> str:
    """Why op ``q`` must precede op ``i`` (for messages)."""
    a, b = graph.ops[q], graph.ops[i]
    for tid in b.inputs:
        if tid in a.outputs:
            return f"it reads '{tid}', which '{a.id}' produces"
    for tid in b.inputs:
        if tid in a.mutates and tid in b.mutates:
            return f"both update '{tid}' and the graph updates it in '{a.id}' first"
        if tid in a.mutates:
            return f"it reads '{tid}' as updated by '{a.id}'"
        if tid in b.mutates:
            return f"it updates '{tid}', which '{a.id}' must read before the update"
    return "the graph's order requires it"


def reorder_graph(graph: Graph, order: Sequence[str]) -> Graph:
    """``graph`` with its ops in ``order`` (which must be legal: raises ValueError naming the first problem)."""
    problems = check_order(graph, order)
    if problems:
        raise ValueError(problems[0])
    index = graph.op_index
    return Graph(graph.name, graph.tensors, tuple(graph.ops[index[o]] for o in order), graph.meta)


def refine_order(graph: Graph, hardware: Hardware | None = None, *, updates_early: bool = True,
                 spread: bool = True, only: frozenset[int] | None = None) -> RefinedOrder:
    """A legal order that runs each optimizer update as soon as its inputs are ready (see module docstring).

    With ``spread`` (and ``hardware``, to time ops and copies), an update waits while the compute since the
    previous update is shorter than the copies of its persistent inputs from the nearest lower tier, but never past the position the graph gives it. Ops that are not updates keep their relative order.
    """
    n = len(graph.ops)
    preds = dependencies(graph)
    hoist = [updates_early and is_update(graph, i) and (only is None or i in only) for i in range(n)]
    if not any(hoist):
        return RefinedOrder(tuple(op.id for op in graph.ops), graph, ())
    succs: list[list[int]] = [[] for _ in range(n)]
    for i, before in enumerate(preds):
        for q in before:
            succs[q].append(i)
    missing = [len(p) for p in preds]
    dur = [op_time_s(op, hardware.compute) for op in graph.ops] if hardware is not None else [0.0] * n
    cover = [0.0] * n
    if spread and hardware is not None and hardware.offload_tiers:
        route = hardware.route(hardware.offload_tiers[0], hardware.compute_tier)
        bw = min((link.bandwidth_Bps for link in route), default=float("inf"))
        for i in range(n):
            if hoist[i]:
                moved = sum(graph.tensor_by_id[t].bytes for t in graph.ops[i].inputs
                            if graph.tensor_by_id[t].persistent)
                cover[i] = moved / bw
    ready_normal: list[int] = [i for i in range(n) if not missing[i] and not hoist[i]]
    ready_updates: list[int] = [i for i in range(n) if not missing[i] and hoist[i]]
    heapq.heapify(ready_normal)
    heapq.heapify(ready_updates)
    out: list[int] = []
    since_update_s = float("inf")

    def place(i: int) -> None:
        out.append(i)
        for j in succs[i]:
            missing[j] -= 1
            if not missing[j]:
                heapq.heappush(ready_updates if hoist[j] else ready_normal, j)

    while ready_normal or ready_updates:
        if ready_updates:
            u = ready_updates[0]
            due = not ready_normal or ready_normal[0] > u  # never later than the graph puts it
            if due or since_update_s >= cover[u]:
                heapq.heappop(ready_updates)
                place(u)
                since_update_s = 0.0
                continue
        i = heapq.heappop(ready_normal)
        place(i)
        since_update_s += dur[i]
    assert len(out) == n, "the dependencies of a valid graph have no cycle"
    order = tuple(graph.ops[i].id for i in out)
    moves = []
    at = {i: k for k, i in enumerate(out)}
    # an update moved when fewer other ops run before it than in the graph (its index may coincide)
    others_before_graph = [0] * n
    count = 0
    for i in range(n):
        others_before_graph[i] = count
        count += not hoist[i]
    count = 0
    for k, i in enumerate(out):
        moved = hoist[i] and count != others_before_graph[i]
        count += not hoist[i]
        if moved:
            op = graph.ops[i]
            last = max(preds[i], default=-1)
            after = f"right after '{graph.ops[last].id}', which completes its last input" if last >= 0 and \
                at[last] == k - 1 else "as soon as its inputs are ready and the compute since the " \
                "previous update covers its state copies"
            moves.append(OrderMove(op.id, i, k, f"optimizer update moved from position {i} to {k}: runs {after}, "
                                   "so its state traffic overlaps backward compute"))
    if not moves:
        return RefinedOrder(order, graph, ())
    return RefinedOrder(order, Graph(graph.name, graph.tensors, tuple(graph.ops[i] for i in out), graph.meta),
                        tuple(moves))
