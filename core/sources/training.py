"""Backward pass and optimizer step synthesised from a forward pass (shared by the HF and ONNX sources).

The forward ops are described by :class:`FwdOp`: which activation inputs need a gradient, which trainable
weights they read and which tensors their backward reads (``saved``). Walking them in reverse gives one
backward op per forward op that reaches the loss; a tensor read by several forward ops (a residual) receives
one partial gradient per reader, and the backward of its producer reads all of them (the sum is implicit,
so no extra ops). Weight gradients are ``gradient`` tensors; activation gradients are transient
``activation`` tensors, so ``bytes_by_kind["gradient"]`` is exactly the weight-gradient footprint.

Activation checkpointing: forward ops tagged with a ``segment`` are re-run just before that segment's
backward (``<op>.recompute`` ops producing ``<tensor>.rc`` copies), and the backward reads those copies,
so the forward activations of the segment die inside the forward pass.

The optimizer is Adam in mixed precision: one ``optimizer_state`` tensor per weight holding the fp32 master
copy, m and v (12 bytes per parameter, with 2-byte weights and 2-byte gradients: DeepSpeed's 16 bytes per
parameter), updated in place by ``host_ok`` ops so a policy may run them on host CPUs (ZeRO-Offload).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.graph import Op, Tensor

__all__ = ["FwdOp", "OptimizerGroup", "synthesize_training", "ADAM_FLOPS_PER_PARAM"]

#: Adam's update is about a dozen arithmetic operations per parameter (moments, bias correction, step).
ADAM_FLOPS_PER_PARAM = 12.0


@dataclass(frozen=True)
class FwdOp:
    """A forward op plus what its backward needs."""

    op: Op
    grad_inputs: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()
    saved: tuple[str, ...] = ()
    bwd_flops: float = 0.0
    segment: str | None = None
    #: Transient bytes the backward allocates besides its gradients (e.g. the fp32 gradient of the loss's
    #: log-softmax while the saved log-softmax is still alive): a ``workspace`` output of the backward op.
    bwd_workspace_bytes: int = 0


@dataclass(frozen=True)
class OptimizerGroup:
    """Weights updated by one optimizer op (a layer's worth, typically)."""

    id: str
    layer: str | None
    weights: tuple[str, ...]
    state_bytes_per_weight_byte: float = 6.0
    weight_dtype_bytes: int = 2


def _dedupe(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))


def synthesize_training(
    tensors: dict[str, Tensor],
    forward: Sequence[FwdOp],
    groups: Sequence[OptimizerGroup],
    *,
    loss: str,
) -> list[Op]:
    """Backward, recompute and optimizer ops for ``forward``; new tensors are added to ``tensors``.

    ``state_bytes_per_weight_byte`` of a group is the optimizer-state size relative to the weight size
    (6 for bf16 weights with fp32 master + m + v; 2 for fp32 weights with fp32 m + v).
    """
    producer_segment: dict[str, str | None] = {}
    for f in forward:
        for out in f.op.outputs:
            producer_segment[out] = f.segment
    partials: dict[str, list[str]] = {}
    ops: list[Op] = []
    recomputed: set[str] = set()
    rc_name: dict[str, str] = {}

    def add(tensor: Tensor) -> str:
        tensors[tensor.id] = tensor
        return tensor.id

    def recompute_segment(segment: str) -> None:
        for f in forward:
            if f.segment != segment:
                continue
            inputs = tuple(rc_name.get(t, t) for t in f.op.inputs if t not in f.op.mutates)
            outputs = []
            for out in f.op.outputs:
                rc = f"{out}.rc"
                src = tensors[out]
                add(Tensor(rc, src.bytes, "activation", False))
                rc_name[out] = rc
                outputs.append(rc)
            ops.append(Op(
                f"{f.op.id}.recompute", _dedupe(inputs), tuple(outputs), (), None, f.op.flops,
                f.op.bytes_accessed, True, f.op.category, f.op.layer, "backward",
            ))
        recomputed.add(segment)

    for f in reversed(forward):
        out_grads = [g for out in f.op.outputs for g in partials.get(out, ())]
        if not out_grads and loss not in f.op.outputs:
            continue
        if not f.grad_inputs and not f.weights:
            continue
        if f.segment is not None and f.segment not in recomputed:
            recompute_segment(f.segment)
        outputs: list[str] = []
        for name in f.grad_inputs:
            grad = add(Tensor(f"{name}.grad@{f.op.id}", tensors[name].bytes, "activation", False))
            partials.setdefault(name, []).append(grad)
            outputs.append(grad)
        for name in f.weights:
            grad = add(Tensor(f"{name}.grad@{f.op.id}", tensors[name].bytes, "gradient", False))
            partials.setdefault(name, []).append(grad)
            outputs.append(grad)
        if f.bwd_workspace_bytes > 0:
            outputs.append(add(Tensor(f"{f.op.id}.bwd.workspace", int(f.bwd_workspace_bytes), "workspace", False)))
        saved = [rc_name.get(t, t) if f.segment is not None else t for t in f.saved]
        inputs = _dedupe([*out_grads, *saved])
        touched = sum(tensors[t].bytes for t in inputs) + sum(tensors[t].bytes for t in outputs)
        ops.append(Op(
            f"{f.op.id}.bwd", inputs, tuple(outputs), (), None, f.bwd_flops, float(touched), True,
            f.op.category, f.op.layer, "backward",
        ))
    _rename_single_partials(tensors, ops, partials)

    for group in groups:
        weights = [w for w in group.weights if partials.get(w)]
        if not weights:
            continue
        states = []
        for w in weights:
            size = round(tensors[w].bytes * group.state_bytes_per_weight_byte)
            states.append(add(Tensor(f"{w}.adam", size, "optimizer_state", True)))
        grads = [g for w in weights for g in partials[w]]
        inputs = _dedupe([*weights, *grads, *states])
        params = sum(tensors[w].bytes for w in weights) / group.weight_dtype_bytes
        touched = 2 * sum(tensors[t].bytes for t in (*weights, *states)) + sum(tensors[g].bytes for g in grads)
        ops.append(Op(
            group.id, inputs, (), _dedupe([*weights, *states]), None, ADAM_FLOPS_PER_PARAM * params,
            float(touched), False, "optimizer", group.layer, "optimizer", True,
        ))
    return ops


def _rename_single_partials(tensors: dict[str, Tensor], ops: list[Op], partials: dict[str, list[str]]) -> None:
    """``x.grad@op`` becomes ``x.grad`` when ``x`` has a single reader: the common case reads better."""
    renames: dict[str, str] = {}
    for name, grads in partials.items():
        if len(grads) == 1 and f"{name}.grad" not in tensors:
            renames[grads[0]] = f"{name}.grad"
    if not renames:
        return
    for old, new in renames.items():
        t = tensors.pop(old)
        tensors[new] = Tensor(new, t.bytes, t.kind, t.persistent)
    for name, grads in partials.items():
        partials[name] = [renames.get(g, g) for g in grads]
    for k, op in enumerate(ops):
        ops[k] = Op(
            op.id, tuple(renames.get(t, t) for t in op.inputs), tuple(renames.get(t, t) for t in op.outputs),
            op.mutates, op.time_s, op.flops, op.bytes_accessed, op.recomputable, op.category, op.layer,
            op.phase, op.host_ok,
        )
