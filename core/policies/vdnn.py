"""vDNN-style baseline: offload forward activations during the forward pass, prefetch them for backward.

Source: M. Rhu, N. Gimelshein, J. Clemons, A. Zulfiqar, S. W. Keckler, "vDNN: Virtualized Deep Neural
Networks for Scalable, Memory-Efficient Neural Network Design", MICRO 2016 (arXiv 1602.08124).

vDNN releases each layer's input feature maps (X) from GPU memory once the forward pass has used them,
copying them to host memory while the layer computes, and prefetches them back during the backward pass,
one layer ahead, because the backward of that layer needs them. ``vDNN_all`` does this for every layer,
``vDNN_conv`` only for convolution layers; ``vDNN_dyn`` first checks whether the network fits without
offloading at all.

Mapped onto spans:

* candidates are the idle spans of activations (and inputs) that begin at a **forward** op and end at a
  **backward** op — the feature maps stashed for backward (op ``phase`` tags come from the graph sources);
* ``mode`` 1 (default, ``vDNN_conv``): only tensors that are inputs of a forward ``conv`` or ``matmul`` op
  (matmul is the transformer analogue of conv); ``mode`` 0 (``vDNN_all``): every such activation;
* ``dynamic`` 1 (default): like the first step of ``vDNN_dyn``, nothing moves when everything fits;
* every candidate goes to the first lower tier with room (host memory first).

Graphs without forward/backward phases (inference) have no candidates. If the compute tier is still over
capacity afterwards the rule has failed at this capacity: :class:`InfeasibleError`.

Prefetch timing ("one layer ahead") is chosen by the shared scheduler from link estimates — usually earlier
than one layer when the link is slow, as late as possible otherwise; the policy interface has no per-span
prefetch hint. vDNN's choice of memory-optimal convolution algorithms is outside this model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.graph import Graph
from core.hardware import Hardware
from core.liveness import Liveness, Span
from core.policies.base import ParamSpec, Placement, PolicyInfo
from core.policies.book import SpanBook

__all__ = ["VDNN", "decide_vdnn", "vdnn_candidates", "LAYER_CATEGORIES"]

#: Forward op categories whose input feature maps vDNN_conv offloads.
LAYER_CATEGORIES = frozenset({"conv", "matmul"})


def vdnn_candidates(graph: Graph, live: Liveness, *, conv_only: bool) -> list[Span]:
    """Spans of activations stashed from a forward op until a backward op (``conv_only``: layer inputs only)."""
    layer_inputs: set[str] = set()
    for op in graph.ops:
        if op.phase == "forward" and op.category in LAYER_CATEGORIES:
            layer_inputs.update(op.inputs)
    out = []
    for span in live.spans:
        if span.kind != "inner" or span.bytes == 0:
            continue
        if graph.tensor_by_id[span.tensor].kind not in ("activation", "input"):
            continue
        if graph.ops[span.start_op].phase != "forward" or graph.ops[span.end_op].phase != "backward":
            continue
        if conv_only and span.tensor not in layer_inputs:
            continue
        out.append(span)
    return out


def decide_vdnn(graph: Graph, hw: Hardware, live: Liveness, params: Mapping[str, Any]) -> Placement:
    """Offload every forward-to-backward activation span (layer inputs only in ``vDNN_conv`` mode)."""
    book = SpanBook(graph, hw, live, policy="vdnn")
    conv_only = bool(int(params["mode"]))
    reasons: dict[int, str] = {}
    fits = not book.n or int(live.keep_bytes.max()) <= book.cap
    if not (fits and int(params["dynamic"])):
        for span in vdnn_candidates(graph, live, conv_only=conv_only):
            tier = book.tier_for(span)
            if tier is None:
                raise book.no_room(span, " (a forward activation stashed for backward)")
            book.offload(span.id, tier)
            reasons[span.id] = (f"to {tier}: {'layer input' if conv_only else 'activation'} stashed from forward op "
                                f"'{graph.ops[span.start_op].id}' for backward op '{graph.ops[span.end_op].id}'")
        book.raise_if_over("offloading the forward activations stashed for backward "
                           f"({'conv/matmul inputs only, try mode 0' if conv_only else 'all of them'}) is not enough; "
                           "weights, gradients and optimizer state stay in the compute tier under vDNN")
    return book.placement(reasons=reasons)


VDNN = PolicyInfo(
    key="vdnn",
    title="vDNN (offload forward activations)",
    description="Offloads the feature maps stashed in forward for backward (conv/matmul inputs, or all), "
    "prefetched back for the backward pass; weights and optimizer state stay in HBM.",
    source="Rhu et al., vDNN: Virtualized Deep Neural Networks for Scalable, Memory-Efficient Neural Network "
    "Design, MICRO 2016 (arXiv 1602.08124).",
    params=(
        ParamSpec("mode", "Layers (0 = all, 1 = conv/matmul)", 1, 0, 1,
                  "vDNN_all offloads every stashed activation; vDNN_conv only inputs of conv/matmul layers.",
                  integer=True),
        ParamSpec("dynamic", "Only when memory is short", 1, 0, 1,
                  "Like vDNN_dyn's first step: offload nothing when everything fits.", integer=True),
    ),
    decide=decide_vdnn,
)
