"""Capuchin-style baseline: swap when the transfer can be hidden, otherwise recompute the cheapest.

Source: X. Peng, X. Shi, H. Dai, H. Jin, W. Ma, Q. Xiong, F. Yang, X. Qian, "Capuchin: Tensor-based GPU
Memory Management for Deep Learning", ASPLOS 2020.

Capuchin profiles tensor accesses, then (its hybrid policy):

1. For each candidate tensor it computes the **free time** ``FT = idle time − swap-out time − swap-in
   time``: how much of the idle gap is left once both copies are done. Candidates whose swap can be fully
   hidden (``FT ≥ 0``) are swapped first, **largest FT first**, until the memory saving needed is reached.
2. If memory is still short, for the remaining candidates it compares the swap overhead (the part of the
   transfers that cannot be hidden, ``−FT``) with the recomputation overhead and takes, greedily, the one
   with the highest memory saving per second of overhead (Capuchin's MSPS), until the requirement is met.

Mapped onto spans (the estimate uses the modelled op times with no stalls and each link free — like
Capuchin's per-tensor estimate, it does not count transfers competing for a link):

* phase 1 walks the spans with ``FT ≥ margin × transfer time`` by decreasing FT and swaps a span when it
  covers an op still over capacity; copies go to the first lower tier with room;
* phase 2 sweeps the ops in order; while one is over capacity it frees the span covering it with the best
  bytes per second of overhead, comparing swap (``max(0, −FT)``) with recompute (the producer's time).
  Recompute is single-op (the producer re-runs right before the next use; its inputs must still be in the
  compute tier, so the spans holding them are pinned as kept) — Capuchin can also recompute from an
  earlier checkpoint along a chain, which this model does not.

If no span can relieve an op, the policy raises :class:`InfeasibleError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core.errors import InfeasibleError
from core.graph import Graph
from core.hardware import Hardware
from core.liveness import Liveness, Span
from core.policies.base import ParamSpec, Placement, PolicyInfo
from core.policies.book import SpanBook
from core.units import format_bytes, format_time

__all__ = ["CAPUCHIN", "decide_capuchin", "free_time_s"]


def free_time_s(book: SpanBook, span: Span, tier: str) -> float:
    """Capuchin's free time: idle seconds left after the swap-out and swap-in of ``span`` via ``tier``."""
    wb, pf = book.transfer_s(span, tier)
    return book.idle_s(span) - wb - pf


def decide_capuchin(graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any]) -> Placement:
    """Hidden swaps by decreasing free time, then swap-or-recompute by memory saved per second of overhead."""
    book = SpanBook(graph, hw, live, policy="capuchin")
    margin = float(params["ft_margin"])
    allow_recompute = bool(int(params["recompute"]))
    reasons: dict[int, str] = {}
    terms: dict[int, dict[str, float]] = {}
    if not book.n or not len(book.over()):
        return book.placement()
    cands = [s for s in live.spans if s.bytes > 0 and book.freed(s)]
    first_tier = book.tiers[0] if book.tiers else None

    # phase 1: swaps that hide completely, largest free time first
    hidden: list[tuple[float, int]] = []
    if first_tier is not None:
        for s in cands:
            ft = free_time_s(book, s, first_tier)
            terms[s.id] = {"free_time_s": ft}
            wb, pf = book.transfer_s(s, first_tier)
            if ft >= margin * (wb + pf):
                hidden.append((ft, s.id))
    hidden.sort(key=lambda x: (-x[0], x[1]))
    for ft, sid in hidden:
        if not len(book.over()):
            break
        span = live.spans[sid]
        if not any(np.any(book.hbm[lo:hi] > book.cap) for lo, hi in book.freed(span)):
            continue
        tier = book.tier_for(span)
        if tier is None:
            continue
        book.offload(sid, tier)
        reasons[sid] = f"swapped to {tier}: the copies hide in its idle time ({format_time(ft)} to spare)"

    # phase 2: sweep the ops still over capacity; best memory saved per second of overhead
    starts: list[list[int]] = [[] for _ in range(book.n)]
    for s in cands:
        for lo, _ in book.freed(s):
            starts[lo].append(s.id)
    active: set[int] = set()
    for op in range(book.n):
        active.update(starts[op])
        while book.hbm[op] > book.cap:
            best: tuple[float, int, str, str, float] | None = None
            for sid in sorted(active):
                span = live.spans[sid]
                if sid in book.assignment or sid in book.pinned or not book.covers(span, op):
                    continue
                tier = book.tier_for(span)
                if tier is not None:
                    cost = max(0.0, -free_time_s(book, span, tier))
                    score = span.bytes / max(cost, 1e-12)
                    if best is None or score > best[0]:
                        best = (score, sid, "offload", tier, cost)
                if allow_recompute and book.recompute_inputs(sid) is not None:
                    cost = float(book.dur[graph.producer[span.tensor]])
                    score = span.bytes / max(cost, 1e-12)
                    if best is None or score > best[0]:
                        best = (score, sid, "recompute", book.C, cost)
            if best is None:
                need = int(book.hbm[op])
                raise InfeasibleError(
                    f"policy 'capuchin': {book.C} needs {format_bytes(need)} while op '{graph.ops[op].id}' runs but "
                    f"holds {format_bytes(book.cap)}, and no idle tensor left there can be swapped (no lower tier has "
                    f"room) or recomputed",
                    op=graph.ops[op].id, tier=book.C, need_bytes=need, have_bytes=book.cap,
                )
            score, sid, action, tier, cost = best
            span = live.spans[sid]
            terms.setdefault(sid, {})["overhead_s"] = cost
            terms[sid]["msps_Bps"] = score
            if action == "recompute":
                book.recompute(sid)
                reasons[sid] = (f"recomputed before its next use: {format_time(cost)} of compute to free "
                                f"{format_bytes(span.bytes)} (cheaper than an unhidden swap)")
            else:
                book.offload(sid, tier)
                reasons[sid] = (f"swapped to {tier} although {format_time(cost)} of it cannot hide: best memory "
                                f"saved per second of overhead at op '{graph.ops[op].id}'")
    scores = {sid: t.get("msps_Bps", t.get("free_time_s", 0.0)) for sid, t in terms.items()}
    return book.placement(scores, terms, reasons)


CAPUCHIN = PolicyInfo(
    key="capuchin",
    title="Capuchin (swap if hidden, else recompute)",
    description="Swaps the tensors whose copies hide in their idle time (largest free time first); where "
    "memory is still short, swaps or recomputes by memory saved per second of overhead.",
    source="Peng et al., Capuchin: Tensor-based GPU Memory Management for Deep Learning, ASPLOS 2020.",
    params=(
        ParamSpec("ft_margin", "Free-time margin", 0.0, 0.0, 2.0,
                  "A swap counts as hidden when its free time is at least this fraction of its transfer time."),
        ParamSpec("recompute", "Allow recompute", 1, 0, 1, "Consider recomputation in the second phase.",
                  integer=True),
    ),
    decide=decide_capuchin,
)
