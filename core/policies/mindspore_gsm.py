"""MindSpore ``auto_offload`` (GSM span-weight) baseline.

Source: MindSpore's graph swap manager, ``mindspore/ccsrc/runtime/device/gsm/swap_strategy_builder.cc``
(``SwapStrategyBuilder``: ``BuildSpans``, ``RecordSpan``, ``EnoughSpaceForSpan``, ``ClassifySpanLevel``).

The rule, as in that file:

1. Every op starts with the bytes of its own inputs and outputs (``mem_used_level0_``).
2. A span is the gap between two consecutive uses ``i < j`` of a tensor (weights also get the wrap-around
   span from their last use to their first use in the next step); its weight is ``(j - i - 1) * size``.
3. Spans are taken lightest first. A span is kept in HBM if adding its size to every op strictly inside it
   stays within the HBM budget at each of them; otherwise it goes to DDR if DDR has room over the span, else
   to disk (here: the next lower tier, fastest route first). Copy-out after use ``i``, copy-in for use ``j``.

Differences from MindSpore, stated: every span goes through the same queue (MindSpore can first route
weight or checkpoint spans to the CPU with ``offload_param``/``offload_checkpoint``); persistent tensors no
op reads get an ``unused`` span of weight ``n_ops * size``; lower-tier room is counted over the slots the
shared scheduler keeps the lower copy (a bit longer than the span) so the plan it builds fits; disk is not
unbounded, so when no tier has room the policy fails with :class:`InfeasibleError` instead of writing past
capacity. Transfer timing is done by :mod:`core.schedule`, like for every policy.

The occupancy bookkeeping is :class:`core.policies.book.SpanBook`, shared by every baseline.
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
from core.units import format_bytes

__all__ = ["MINDSPORE_GSM", "decide_gsm", "gsm_weight"]


# ---------------------------------------------------------------------------------------------- GSM


def gsm_weight(live: Liveness, span: Span) -> int:
    """MindSpore's span weight ``(j - i - 1) * size``: ops strictly inside the span times its bytes."""
    length = live.n_ops if span.kind == "unused" else live.span_length_ops(span)
    return max(length, 0) * span.bytes


def decide_gsm(graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any]) -> Placement:
    """Keep the lightest spans while every op inside them stays within the budget; offload the rest."""
    book = SpanBook(graph, hw, live, policy="mindspore-gsm")
    budget = int(book.cap * float(params["hbm_ratio"]))
    mem = np.asarray(live.required_bytes, dtype=np.int64).copy()  # each op's own inputs and outputs
    if book.n and int(mem.max()) > budget:
        i = int(mem.argmax())
        raise InfeasibleError(
            f"policy 'mindspore-gsm': op '{graph.ops[i].id}' alone needs {format_bytes(int(mem[i]))} in {book.C} but "
            f"the budget is {format_bytes(budget)} (hbm_ratio {float(params['hbm_ratio']):g} of {format_bytes(book.cap)})"
        )
    scores: dict[int, float] = {}
    order = sorted(live.spans, key=lambda s: (gsm_weight(live, s), s.id))
    for rank, span in enumerate(order):
        weight = gsm_weight(live, span)
        scores[span.id] = float(weight)
        ranges = book.freed(span)
        if all(int(mem[lo:hi].max(initial=0)) + span.bytes <= budget for lo, hi in ranges):
            for lo, hi in ranges:
                mem[lo:hi] += span.bytes
            continue
        tier = book.tier_for(span)
        if tier is None:
            raise book.no_room(span, f" (span weight {weight:,}, rank {rank + 1} of {len(order)} lightest first)")
        book.offload(span.id, tier)
    book.raise_if_over("the span-weight rule left more resident than the budget")  # cannot happen: same count
    terms = {sid: {"span_weight": w} for sid, w in scores.items()}
    reasons = {}
    for span in live.spans:
        action, tier = book.assignment.get(span.id, ("keep", book.C))
        w = format_bytes(int(scores[span.id]))
        reasons[span.id] = (f"kept: weight {w}·ops fit the budget at every op inside the span" if action == "keep" else
                            f"to {tier}: keeping it (weight {w}·ops) would exceed the budget inside the span")
    return book.placement(scores, terms, reasons)


MINDSPORE_GSM = PolicyInfo(
    key="mindspore-gsm",
    title="MindSpore auto_offload (GSM span weight)",
    description="Spans between consecutive uses weighted (j-i-1)×size; lightest kept in HBM first while every op "
    "inside stays within the budget; the rest go to DDR, then SSD when DDR is full.",
    source="MindSpore graph swap manager: mindspore/ccsrc/runtime/device/gsm/swap_strategy_builder.cc "
    "(SwapStrategyBuilder::BuildSpans, EnoughSpaceForSpan, ClassifySpanLevel).",
    params=(
        ParamSpec("hbm_ratio", "HBM ratio", 1.0, 0.05, 1.0,
                  "Share of the compute tier the strategy may fill (MindSpore's offload_context hbm_ratio)."),
    ),
    decide=decide_gsm,
)
