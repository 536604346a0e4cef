"""Which ops may run on a lower tier's own compute (CPU Adam), shared by Tierplan and ZeRO-Offload."""

from __future__ import annotations

from core.graph import Graph
from core.hardware import Hardware
from core.spans import mutation_ops

__all__ = ["host_candidates"]


def host_candidates(graph: Graph, hw: Hardware) -> tuple[str, frozenset[int]] | None:
    """Ops that may run on a lower tier's own compute (CPU Adam), as ZeRO-Offload does, and that tier.

    An op qualifies when it is ``host_ok``, writes no new tensor, and each input is either persistent state
    only host ops read (optimizer state: it then lives in that tier), a persistent tensor the op updates as
    its last use and that no other op updates (the weight: refreshed in the compute tier afterwards), or a tensor produced in the compute
    tier that this op reads last (the gradient: copied out once). The tier is the fastest-reached one with
    compute and direct links both ways.
    """
    tiers = [t for t in hw.offload_tiers if hw.tier_by_name[t].compute is not None
             and (hw.compute_tier, t) in hw.link_by_pair and (t, hw.compute_tier) in hw.link_by_pair]
    if not tiers:
        return None
    users: dict[str, list[int]] = {}
    for i, op in enumerate(graph.ops):
        for x in (*op.inputs, *op.outputs):
            users.setdefault(x, []).append(i)
    ops = {i for i, op in enumerate(graph.ops) if op.host_ok and not op.outputs and op.mutates}
    changed = True
    while changed:
        changed = False
        for i in sorted(ops):
            op = graph.ops[i]
            ok = True
            for x in op.inputs:
                t = graph.tensor_by_id[x]
                mine = users[x]
                if t.persistent and all(u in ops for u in mine):
                    continue
                # the weight: updated here only (an update in the compute tier before would leave the
                # host's copy stale when this op reads it)
                if t.persistent and x in op.mutates and mine[-1] == i and sum(u in ops for u in mine) == 1 \
                        and mutation_ops(graph).get(x, ()) == (i,):
                    continue
                if not t.persistent and x in graph.producer and graph.producer[x] not in ops and mine[-1] == i \
                        and x not in op.mutates and sum(u in ops for u in mine) == 1:
                    continue
                ok = False
                break
            if not ok:
                ops.discard(i)
                changed = True
    return (tiers[0], frozenset(ops)) if ops else None
