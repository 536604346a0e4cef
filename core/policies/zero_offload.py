"""ZeRO-Offload-style baseline: optimizer state (with the fp32 master weights) lives in host memory.

Source: J. Ren, S. Rajbhandari, R. Y. Aminabadi, O. Ruwase, S. Yang, M. Zhang, D. Li, Y. He, "ZeRO-Offload:
Democratizing Billion-Scale Model Training", USENIX ATC 2021 (arXiv 2101.06840); DeepSpeed
``zero_optimization.offload_optimizer``. Parameter offload (``offload_params``) follows ZeRO-Infinity
(Rajbhandari et al., SC 2021, arXiv 2104.07857).

ZeRO-Offload keeps the fp16/bf16 parameters and the forward/backward compute on the accelerator; the
optimizer state (fp32 master weights, Adam m and v: 12 bytes per parameter) lives in CPU memory; gradients
are copied down as soon as backward produces them; the CPU runs Adam; updated weights come back.

Mapped onto spans:

* every ``optimizer_state`` tensor's wrap-around span (and ``unused`` span) goes to the first lower tier
  with room (host memory first): the tensor starts and ends each step there;
* ``offload_gradients`` (default on): the idle span of each ``gradient`` tensor between the backward op that
  produces it and the optimizer op that reads it goes down too;
* ``offload_params`` (default off, ZeRO-Infinity): weights' wrap-around spans go down as well (fetched
  before their first use, dropped after the last — written back when the optimizer updated them).

CPU Adam (``cpu_adam``, default on): when the host tier has processors of its own (a ``compute`` entry in
the hardware file) the optimizer updates run there, as in ZeRO-Offload: the state never leaves host memory,
each gradient is copied down once, and each updated weight comes back. Without host processors (or with
``cpu_adam=0``) the update runs on the accelerator and each optimizer state is fetched before its update and
written back after it — more bytes than real ZeRO-Offload, said so in the decisions.

The rule is static (DeepSpeed applies it whenever it is enabled), so it moves state even when everything
would fit. If the compute tier is still over capacity, the rule has failed: :class:`InfeasibleError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.graph import Graph
from core.hardware import Hardware
from core.liveness import Liveness, analyze
from core.policies.base import ParamSpec, Placement, PolicyInfo
from core.policies.book import SpanBook
from core.policies.host import host_candidates

__all__ = ["ZERO_OFFLOAD", "decide_zero_offload", "zero_candidates"]


def zero_candidates(graph: Graph, live: Liveness, *, gradients: bool, params: bool) -> list[tuple[int, str]]:
    """(span id, why) for every span the rule offloads, optimizer state first."""
    out: list[tuple[int, str]] = []
    kinds: dict[str, tuple[str, ...]] = {"optimizer_state": ("wrap", "unused")}
    if params:
        kinds["weight"] = ("wrap", "unused")
    if gradients:
        kinds["gradient"] = ("inner",)
    for kind in ("optimizer_state", "gradient", "weight"):
        if kind not in kinds:
            continue
        for span in live.spans:
            if span.bytes and graph.tensor_by_id[span.tensor].kind == kind and span.kind in kinds[kind]:
                out.append((span.id, kind))
    return out


def decide_zero_offload(graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any]) -> Placement:
    """Optimizer state (and optionally gradients, weights) in the first lower tier with room; the updates on
    the host CPUs when it has them."""
    host = host_candidates(graph, hw) if int(params.get("cpu_adam", 1)) else None
    op_tiers: dict[int, str] = {}
    if host is not None:
        op_tiers = dict.fromkeys(host[1], host[0])
        live = analyze(graph, host_ops=host[1])
    book = SpanBook(graph, hw, live, policy="zero-offload")
    reasons: dict[int, str] = {}
    why = {"optimizer_state": "optimizer state (fp32 master, m, v) lives in host memory between updates",
           "gradient": "gradient goes down as soon as backward produces it",
           "weight": "parameter offload (ZeRO-Infinity): fetched for each use"}
    for sid, kind in zero_candidates(graph, live, gradients=bool(int(params["offload_gradients"])),
                                     params=bool(int(params["offload_params"]))):
        span = live.spans[sid]
        tier = book.tier_for(span)
        if tier is None:
            raise book.no_room(span, f" ({why[kind]})")
        book.offload(sid, tier)
        reasons[sid] = f"to {tier}: {why[kind]}"
    book.raise_if_over("ZeRO-Offload keeps weights and activations in the compute tier"
                       + ("" if int(params["offload_params"]) else " (try offload_params=1)"))
    placement = book.placement(reasons=reasons)
    return Placement(placement.assignment, placement.decisions, op_tiers, live if op_tiers else None)


ZERO_OFFLOAD = PolicyInfo(
    key="zero-offload",
    title="ZeRO-Offload (optimizer state in host memory)",
    description="Optimizer state and fp32 master weights live in DDR; gradients go down after backward; "
    "weights and activations stay in HBM (optionally weights too, as ZeRO-Infinity).",
    source="Ren et al., ZeRO-Offload: Democratizing Billion-Scale Model Training, USENIX ATC 2021 "
    "(arXiv 2101.06840); DeepSpeed offload_optimizer; ZeRO-Infinity (arXiv 2104.07857) for offload_params.",
    params=(
        ParamSpec("offload_gradients", "Offload gradients", 1, 0, 1,
                  "Move each weight gradient down between backward and the optimizer step.", integer=True),
        ParamSpec("cpu_adam", "CPU Adam", 1, 0, 1,
                  "Run the optimizer updates on the host CPUs when the host tier has compute.", integer=True),
        ParamSpec("offload_params", "Offload parameters (ZeRO-Infinity)", 0, 0, 1,
                  "Weights also live below and are fetched for each use.", integer=True),
    ),
    decide=decide_zero_offload,
)
