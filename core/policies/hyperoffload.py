"""HyperOffload distance-based baseline (MindSpore 2.8).

Source: HyperOffload (MindSpore 2.8, arXiv 2602.00748) and its distance strategy in MindSpore,
``mindspore/ccsrc/utils/hyper_offload/hyper_offload_strategy.h`` (``DistanceBaseHyperOffloadStrategy``
selects offload candidates from the distance between a tensor's uses in the execution order;
``OffloadInfoFilterByNumber`` caps how many are kept). Parameters ``select_distance``, ``select_num`` and
``prefetch_distance`` as named in the issue.

The rule:

1. Candidates are the idle spans whose distance — ops strictly between the two uses (wrap-around spans
   count the ops on both sides of the step boundary) — is at least ``select_distance``.
2. Longest distance first (ties: larger tensor first, then span order); at most ``select_num`` of them
   (0 = no limit). The implementation of the filter was not available to us, so "longest first" is our
   choice: it keeps the candidates that give the most time to hide their transfers.
3. Each selected span goes to the first lower tier with room (fastest route first).
4. ``only_when_needed`` (default on): when everything fits in the compute tier, nothing moves — the
   strategy is only switched on when memory is short, as one would deploy it.

If the compute tier is still over capacity afterwards, the rule has failed at this capacity and the policy
raises :class:`InfeasibleError` naming the op (lower ``select_distance`` or raise ``select_num``).

``prefetch_distance``: each copy-in is issued that many ops before the use (``Placement.prefetch_from``),
as MindSpore does, instead of the shared scheduler's link-timing estimate; if memory is short at that op the
scheduler issues it later, when the capacity allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.graph import Graph
from core.hardware import Hardware
from core.liveness import Liveness
from core.policies.base import ParamSpec, Placement, PolicyInfo
from core.policies.book import SpanBook

__all__ = ["HYPEROFFLOAD_DISTANCE", "decide_distance", "span_distance"]


def span_distance(live: Liveness, sid: int) -> int:
    """Ops strictly between the two uses around span ``sid`` (the whole step for an unused tensor)."""
    span = live.spans[sid]
    return live.n_ops if span.kind == "unused" else live.span_length_ops(span)


def decide_distance(graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any]) -> Placement:
    """Offload up to ``select_num`` spans at least ``select_distance`` ops long, longest first."""
    book = SpanBook(graph, hw, live, policy="hyperoffload-distance")
    min_dist = int(params["select_distance"])
    limit = int(params["select_num"])
    prefetch = float(params["prefetch_distance"])
    reasons: dict[int, str] = {}
    prefetch_from: dict[int, int] = {}
    fits = not book.n or int(live.keep_bytes.max()) <= book.cap
    if not (fits and int(params["only_when_needed"])):
        cands = [s for s in live.spans if s.bytes > 0 and span_distance(live, s.id) >= min_dist]
        cands.sort(key=lambda s: (-span_distance(live, s.id), -s.bytes, s.id))
        if limit > 0:
            for s in cands[limit:]:
                reasons[s.id] = f"kept: distance {span_distance(live, s.id)} ≥ {min_dist} but beyond select_num={limit}"
            cands = cands[:limit]
        for span in cands:
            tier = book.tier_for(span)
            if tier is None:
                reasons[span.id] = "kept: selected, but no lower tier has room for it"
                continue
            book.offload(span.id, tier)
            reasons[span.id] = (f"to {tier}: distance {span_distance(live, span.id)} ops ≥ select_distance {min_dist}; "
                                f"copied back {prefetch:g} ops before its use")
            if span.kind != "unused":
                prefetch_from[span.id] = max(0, span.end_op - int(prefetch))
        book.raise_if_over(f"offloading the spans at least select_distance={min_dist} ops long"
                           f"{f' (at most select_num={limit})' if limit else ''} is not enough; lower select_distance"
                           + (" or raise select_num" if limit else ""))
    scores = {s.id: float(span_distance(live, s.id)) for s in live.spans}
    terms = {s.id: {"distance_ops": scores[s.id], "prefetch_distance_ops": prefetch} for s in live.spans}
    for s in live.spans:
        if s.id not in reasons:
            d = span_distance(live, s.id)
            reasons[s.id] = (f"kept: distance {d} ops < select_distance {min_dist}" if d < min_dist else
                             "kept: everything fits, the strategy is off")
    placement = book.placement(scores, terms, reasons)
    return Placement(placement.assignment, placement.decisions, prefetch_from=prefetch_from)


HYPEROFFLOAD_DISTANCE = PolicyInfo(
    key="hyperoffload-distance",
    title="HyperOffload distance-based",
    description="Offloads idle spans at least select_distance ops long (longest first, at most select_num), "
    "to DDR then lower tiers; copy-in before the next use.",
    source="HyperOffload, MindSpore 2.8 (arXiv 2602.00748); MindSpore "
    "mindspore/ccsrc/utils/hyper_offload/hyper_offload_strategy.h (DistanceBaseHyperOffloadStrategy, "
    "OffloadInfoFilterByNumber).",
    params=(
        ParamSpec("select_distance", "Select distance (ops)", 10, 1, 100_000,
                  "Offload spans with at least this many ops between the two uses.", integer=True),
        ParamSpec("select_num", "Select number", 0, 0, 1_000_000,
                  "At most this many spans are offloaded, longest first (0 = no limit).", integer=True),
        ParamSpec("prefetch_distance", "Prefetch distance (ops)", 1, 0, 1000,
                  "Copy-ins are issued this many ops before the use, as MindSpore does (later if memory is "
                  "short then).", integer=True),
        ParamSpec("only_when_needed", "Only when memory is short", 1, 0, 1,
                  "Offload nothing when everything fits in the compute tier.", integer=True),
    ),
    decide=decide_distance,
)
