"""ONNX models as Tierplan graphs: sizes from shapes, FLOPs by op type, optional synthesised training step.

The file is read with ``load_external_data=False`` (weights need not be present: only shapes matter).
Shapes come from initializer dims, typed graph inputs, ``value_info`` and ONNX shape inference, computed at
the model's own batch size (symbolic dims set to 1, or to ``dims[name]``); a ``batch`` override then scales
every non-constant tensor and every op's FLOPs linearly, which holds for the batch dimension of CNNs and
transformers alike.

Constant sub-graphs (initializers, ``Constant``, ``ConstantOfShape`` of a constant shape, an ``Unsqueeze``
of a weight…) are folded: their float results are the model's weights, integer ones (shapes, axes) are
metadata and dropped. View ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) alias their input
instead of allocating a copy. Ops whose cost is unknown are kept with a warning and zero FLOPs, so their
time is the bytes they touch over memory bandwidth.

For ``--train`` each op's backward reads what PyTorch's autograd saves for that op kind (ReLU its output,
BatchNorm its input, Add nothing, Conv its input and weight, MaxPool int64 indices; docs/sources.md), and
only constants in a parameter slot are trainable.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.graph import MAX_TENSOR_BYTES, Graph, Op, Tensor
from core.sources.training import FwdOp, OptimizerGroup, synthesize_training

__all__ = ["import_onnx", "parse_onnx_model", "DTYPE_BYTES"]

#: ONNX TensorProto.DataType -> bytes per element (sub-byte types rounded up).
DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 8: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16,
               16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1}
FLOAT_TYPES = frozenset({1, 10, 11, 16})
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Relu", "LeakyRelu",
    "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu", "FastGelu",
    "BiasGelu", "Softplus", "Softsign", "Mish", "Sin", "Cos", "Clip", "Max", "Min", "Sum", "Mean", "Where",
    "Cast", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "Floor",
    "Ceil", "Round", "Sign", "IsNaN", "IsInf", "ThresholdedRelu", "QuickGelu", "BiasAdd", "Mod",
})
NORMS = frozenset({
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "RMSNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "LpNormalization", "MeanVarianceNormalization",
})
DATA_MOVEMENT = frozenset({
    "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Expand", "Tile", "Pad",
    "Shape", "Size", "ConstantOfShape", "Range", "ScatterND", "ScatterElements", "DepthToSpace", "SpaceToDepth",
    "Resize", "Upsample", "NonZero", "TopK", "ArgMax", "ArgMin", "OneHot", "Trilu", "CumSum",
})
REDUCE = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceL1",
                    "ReduceSumSquare", "ReduceLogSumExp", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
ATTENTION = frozenset({"Attention", "MultiHeadAttention", "GroupQueryAttention", "ScaledDotProductAttention"})
LOSSES = frozenset({"SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"})
#: What PyTorch's autograd keeps for each op kind's backward (docs/sources.md, "Activation accounting").
#: Ops whose backward needs only their output:
SAVES_OUTPUT = frozenset({"Relu", "Sigmoid", "Tanh", "Exp", "Softmax", "LogSoftmax", "Sqrt", "Reciprocal", "Elu",
                          "Selu", "Celu", "HardSigmoid", "LeakyRelu"})
#: Ops whose backward needs nothing but the incoming gradient (shapes only):
SAVES_NOTHING = frozenset({"Add", "Sub", "Sum", "Neg", "Concat", "Transpose", "Slice", "Split", "Pad", "Expand",
                           "Tile", "Cast", "Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Gather",
                           "ReduceSum", "ReduceMean", "Mean", "DepthToSpace", "SpaceToDepth"})
#: Ops whose backward needs the data input and the scale (BatchNorm: input, weight and per-channel stats):
SAVES_INPUT_AND_SCALE = frozenset({"BatchNormalization", "LayerNormalization", "InstanceNormalization",
                                   "GroupNormalization", "RMSNormalization", "SimplifiedLayerNormalization"})


@dataclass
class _Info:
    dims: tuple[int, ...] | None
    dtype: int

    @property
    def numel(self) -> int | None:
        if self.dims is None:
            return None
        return math.prod(self.dims)

    @property
    def nbytes(self) -> int | None:
        n = self.numel
        return None if n is None else n * DTYPE_BYTES.get(self.dtype, 4)


def parse_onnx_model(data: bytes | str | Path, source: str) -> Any:
    """The ``ModelProto`` (external weights not loaded); InputError for anything that is not an ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        if isinstance(data, bytes):
            model = onnx.load(io.BytesIO(data), load_external_data=False)
        else:
            model = onnx.load(str(data), load_external_data=False)
    except FileNotFoundError:
        raise InputError("cannot read file: no such file", source=source) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", source=source) from None
    except (DecodeError, ValueError, RuntimeError, TypeError, UnicodeDecodeError, RecursionError):
        raise InputError("not a valid ONNX model (the protobuf cannot be decoded: truncated or not ONNX)",
                         source=source) from None
    if not model.HasField("graph") or not len(model.graph.node):
        raise InputError("not a usable ONNX model: no graph nodes (empty, truncated or not an ONNX file)",
                         source=source)
    _check_names(model.graph, source)
    return model


def _check_names(graph: Any, source: str) -> None:
    """Protobuf hands back ``bytes`` for string fields that are not UTF-8: refuse such a (corrupt) file."""
    names: list[Any] = [graph.name]
    for node in graph.node:
        names += [node.name, node.op_type, node.domain, *node.input, *node.output]
    for group in (graph.initializer, graph.input, graph.output, graph.value_info):
        names += [item.name for item in group]
    for value in names:
        if not isinstance(value, str):
            raise InputError(f"corrupt ONNX model: name {value!r} is not valid UTF-8", source=source)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            try:
                return onnx.helper.get_attribute_value(a)
            except Exception:  # a malformed attribute is treated as absent
                return default
    return default


def _type_info(value_info: Any) -> _Info | None:
    t = value_info.type
    if not t.HasField("tensor_type"):
        return None
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return _Info(None, tt.elem_type)
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            return _Info(None, tt.elem_type)
    return _Info(tuple(dims), tt.elem_type)


def _fix_symbolic_inputs(model: Any, inits: set[str], dims: Mapping[str, int], warnings: list[str]) -> int:
    """Give graph inputs concrete dims; returns the native batch (first dim of the first data input)."""
    native_batch = 0
    for inp in model.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        shape = inp.type.tensor_type.shape
        for k, d in enumerate(shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            name = d.dim_param or f"{inp.name}[{k}]"
            value = dims.get(name, 1)
            if k != 0 and name not in dims:
                warnings.append(f"symbolic dim '{name}' of input '{inp.name}' set to 1 (pass dims={{'{name}': N}})")
            d.dim_value = value
        if native_batch == 0 and len(shape.dim) > 0:
            native_batch = int(shape.dim[0].dim_value)
    return native_batch or 1


def _flops(op_type: str, node: Any, ins: list[_Info | None], outs: list[_Info | None]) -> float | None:
    """FLOPs at the native batch, or None when the op type (or a needed shape) is unknown."""
    out = outs[0] if outs else None
    out_n = out.numel if out else None
    if op_type in ("Conv", "ConvInteger", "QLinearConv") and out_n is not None and len(ins) > 1 and ins[1] and ins[1].dims:
        return 2.0 * out_n * math.prod(ins[1].dims[1:])
    if op_type == "ConvTranspose" and len(ins) > 1 and ins[0] and ins[0].numel and ins[1] and ins[1].dims:
        return 2.0 * ins[0].numel * math.prod(ins[1].dims[1:])
    if op_type in ("Gemm", "MatMul", "MatMulInteger", "FusedMatMul") and out_n is not None and ins and ins[0] and ins[0].dims:
        a = ins[0].dims
        k = a[0] if op_type == "Gemm" and _attr(node, "transA", 0) else a[-1]
        return 2.0 * out_n * k
    if op_type in ATTENTION and ins and ins[0] and ins[0].numel:
        q = ins[0]
        kv_len = q.dims[-2] if q.dims and len(q.dims) == 4 else (q.dims[1] if q.dims and len(q.dims) >= 2 else 1)
        if len(ins) > 1 and ins[1] and ins[1].dims and op_type != "Attention":
            kd = ins[1].dims
            kv_len = kd[-2] if len(kd) == 4 else (kd[1] if len(kd) >= 2 else kv_len)
        return 4.0 * (q.numel or 0) * kv_len
    if op_type in NORMS and out_n is not None:
        return 5.0 * out_n
    if op_type == "LRN" and out_n is not None:
        return float(out_n) * (2 * int(_attr(node, "size", 5) or 5) + 3)
    if op_type in ("Softmax", "LogSoftmax") and out_n is not None:
        return 5.0 * out_n
    if op_type in LOSSES and ins and ins[0] and ins[0].numel:
        return 5.0 * ins[0].numel
    if op_type in ("MaxPool", "AveragePool", "LpPool") and out_n is not None:
        kernel = _attr(node, "kernel_shape", []) or []
        return float(out_n) * max(1, math.prod(int(k) for k in kernel))
    if op_type in REDUCE and ins and ins[0] and ins[0].numel is not None:
        return float(ins[0].numel)
    if op_type in ELEMENTWISE and out_n is not None:
        return float(out_n) * max(1, len(ins) - 1)
    if op_type in DATA_MOVEMENT:
        return 0.0
    return None


def _category(op_type: str) -> str:
    if op_type.startswith("Conv") or op_type == "QLinearConv":
        return "conv"
    if op_type in ("Gemm", "MatMul", "MatMulInteger", "FusedMatMul"):
        return "matmul"
    if op_type in ATTENTION:
        return "attention"
    if op_type in NORMS or op_type == "LRN":
        return "norm"
    if op_type in ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
        return "pool"
    if op_type in LOSSES:
        return "loss"
    if op_type in ELEMENTWISE or op_type in ("Softmax", "LogSoftmax"):
        return "elementwise"
    return "other"


def import_onnx(path_or_bytes: str | Path | bytes, *, batch: int | None = None, train: bool = False,
                source: str | None = None, dims: Mapping[str, int] | None = None) -> Graph:
    """A graph from an ONNX model (a path or the file's bytes); warnings go to ``graph.meta["warnings"]``."""
    if source is None:
        source = "<upload>" if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 2**20):
        raise InputError(f"batch must be a whole number in [1, 2^20], got {batch!r}", source=source, field="batch")
    model = parse_onnx_model(path_or_bytes, source)
    try:
        return _import(model, batch=batch, train=train, source=source, dims=dict(dims or {}))
    except InputError as exc:
        raise exc if exc.source else exc.with_source(source) from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as exc:
        raise InputError(f"malformed ONNX model ({type(exc).__name__}: {exc})", source=source) from None


def _import(model: Any, *, batch: int | None, train: bool, source: str, dims: dict[str, int]) -> Graph:
    import onnx

    warnings: list[str] = []
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    native_batch = _fix_symbolic_inputs(model, inits, dims, warnings)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # shape inference is best effort: declared shapes still work
        warnings.append(f"ONNX shape inference failed ({type(exc).__name__}); using declared shapes only")
        inferred = model
    info: dict[str, _Info] = {}
    for init in graph.initializer:
        info[init.name] = _Info(tuple(int(d) for d in init.dims), init.data_type)
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        ti = _type_info(vi)
        if ti is not None and (vi.name not in info or info[vi.name].dims is None):
            info[vi.name] = ti

    nodes = _topological(list(graph.node), {i.name for i in graph.input} | inits)
    const: set[str] = set(inits)
    folded: set[str] = set()
    graph_inputs = [i.name for i in graph.input if i.name not in inits]
    alias: dict[str, str] = {}
    real: list[Any] = []
    read_names = {i for node in nodes for i in node.input if i} | {o.name for o in graph.output}
    for node in nodes:
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" or (ins and all(i in const for i in ins) and node.op_type not in LOSSES):
            const.update(o for o in node.output if o)
            folded.update(o for o in node.output if o)
            continue
        if node.op_type in VIEW_OPS and ins and ins[0] not in const and sum(1 for o in node.output if o) >= 1:
            extra_used = any(o in read_names for o in node.output[1:] if o)
            if not extra_used:
                alias[node.output[0]] = alias.get(ins[0], ins[0])
                continue
        real.append(node)
    if not real:
        raise InputError("the ONNX graph has no computation left after folding constants")

    consumers: dict[str, int] = {}
    for node in real:
        for i in node.input:
            if i:
                consumers[alias.get(i, i)] = consumers.get(alias.get(i, i), 0) + 1
    scale = (batch / native_batch) if batch else 1.0
    tensors: dict[str, Tensor] = {}
    unknown_sizes: list[str] = []

    def size_of(name: str, fallback: int) -> int:
        ti = info.get(name)
        nbytes = ti.nbytes if ti else None
        if nbytes is None:
            unknown_sizes.append(name)
            nbytes = fallback
        return nbytes

    def add_tensor(name: str, nbytes: float, kind: str) -> None:
        size = round(nbytes)
        if size > MAX_TENSOR_BYTES:
            raise InputError(f"tensor '{name}' would hold {size:.3g} bytes (more than 1 PiB); check its shape")
        tensors[name] = Tensor(name, size, kind, kind == "weight")

    def is_float(name: str) -> bool:
        ti = info.get(name)
        return ti is None or ti.dtype in FLOAT_TYPES

    for name in graph_inputs:
        if consumers.get(name):
            add_tensor(name, size_of(name, 0) * scale, "input")
    # Trainable: constants in a parameter slot (conv / matmul weights and biases, norm scales, embedding
    # tables; in an elementwise op only a rank <= 1 initializer such as a bias). Other constants (rotary
    # tables, causal masks, BatchNorm running statistics) are stored but get no gradient and no Adam state.
    trainable_ids: set[str] = set()
    has_bn = has_conv = False
    for node in real:
        for idx, raw in enumerate(node.input):
            name = alias.get(raw, raw)
            if raw and name in const and _parameter_slot(node.op_type, idx, name in inits, info.get(name)):
                trainable_ids.add(name)
        has_bn = has_bn or node.op_type == "BatchNormalization"
        has_conv = has_conv or node.op_type == "Conv"
    for node in real:
        if node.op_type == "BatchNormalization":
            trainable_ids.difference_update(alias.get(i, i) for i in node.input[3:5])
    non_trainable: set[str] = {c for c in const if c not in trainable_ids}
    if train and has_conv and not has_bn:
        warnings.append("this CNN has no BatchNormalization: an eval-mode export folds BatchNorm into the convs, "
                        "so the training step misses BatchNorm's saved inputs and parameters; export with "
                        "torch.onnx.export(..., training=torch.onnx.TrainingMode.TRAINING) for training")

    ops: list[Op] = []
    fwd: list[FwdOp] = []
    requires_grad: set[str] = set()
    unknown_ops: dict[str, int] = {}
    op_ids: set[str] = set()
    for k, node in enumerate(real):
        inputs: list[str] = []
        in_infos: list[_Info | None] = []
        for raw in node.input:
            if not raw:
                continue
            name = alias.get(raw, raw)
            in_infos.append(info.get(name) or info.get(raw))
            if name in const:
                if not is_float(name):
                    continue
                if name not in tensors:
                    add_tensor(name, size_of(name, 0), "weight")
            elif name not in tensors:
                raise InputError(f"node '{node.name or node.op_type}' reads '{raw}', which no node produces and "
                                 "is not a graph input or initializer", field=f"graph.node[{k}]")
            if name not in inputs:
                inputs.append(name)
        outputs: list[str] = []
        out_infos: list[_Info | None] = []
        biggest_in = max((tensors[i].bytes for i in inputs), default=0)
        for o in node.output:
            if not o:
                continue
            if o in tensors:
                raise InputError(f"tensor '{o}' is produced twice (by node '{node.name or node.op_type}')",
                                 field=f"graph.node[{k}]")
            native = size_of(o, int(biggest_in / scale) if scale else biggest_in)
            add_tensor(o, native * scale, "activation")
            outputs.append(o)
            out_infos.append(info.get(o))
        extra_saved: list[str] = []
        if train and node.op_type == "MaxPool" and outputs:
            # PyTorch's max_pool2d_with_indices keeps int64 indices the size of the output for its backward.
            indices = f"{outputs[0]}.indices"
            out_dtype = info[outputs[0]].dtype if outputs[0] in info else 1
            add_tensor(indices, tensors[outputs[0]].bytes / DTYPE_BYTES.get(out_dtype, 4) * 8, "activation")
            outputs.append(indices)
            extra_saved.append(indices)
        flops = _flops(node.op_type, node, in_infos, out_infos)
        if flops is None:
            unknown_ops[node.op_type] = unknown_ops.get(node.op_type, 0) + 1
            flops = 0.0
        oid = node.name or f"{node.op_type}_{k}"
        while oid in op_ids:
            oid = f"{oid}_{k}"
        op_ids.add(oid)
        touched = sum(tensors[t].bytes for t in (*inputs, *outputs))
        op = Op(oid, tuple(inputs), tuple(outputs), (), None, flops * scale, float(touched), True,
                _category(node.op_type), None, "forward")
        ops.append(op)
        weights = tuple(t for t in inputs if t in const and t not in non_trainable)
        grad_inputs = tuple(t for t in inputs if t in requires_grad)
        if weights or grad_inputs:
            requires_grad.update(o for o in outputs if is_float(o))
        saved = (*_saved_for_backward(node.op_type, inputs, outputs[:1], is_float), *extra_saved)
        # The backward computes a weight gradient (≈ the forward's FLOPs) and, only when an input needs one,
        # an input gradient (≈ the forward again): the first conv's input gradient is never computed.
        factor = (1.0 if weights else 0.0) + (1.0 if grad_inputs else 0.0)
        fwd.append(FwdOp(op, grad_inputs, weights, saved, factor * op.flops))

    for op_type, count in sorted(unknown_ops.items()):
        warnings.append(f"{count} op(s) of type '{op_type}' have no FLOP model: time estimated from bytes accessed")
    if unknown_sizes:
        warnings.append(f"{len(unknown_sizes)} tensor(s) without a known shape (e.g. '{unknown_sizes[0]}') sized "
                        "as the largest input of their producer")
    trainable = [t for t in tensors.values() if t.kind == "weight" and t.id not in non_trainable]
    params = sum(t.bytes // DTYPE_BYTES.get(info[t.id].dtype if t.id in info else 1, 4) for t in trainable)
    all_ops = ops
    if train:
        all_ops = [*ops, *_training_ops(tensors, fwd, requires_grad, ops, graph, alias, info, scale, native_batch,
                                        non_trainable, const)]
    meta = {
        "source": source,
        "model_type": "onnx",
        "params_total": params,
        "params_active": params,
        "workload": {"kind": "train" if train else "inference", "batch": batch or native_batch},
        "onnx": {"producer": model.producer_name, "opset": [int(o.version) for o in model.opset_import],
                 "nodes": len(graph.node), "folded_constants": len(nodes) - len(real) - len(alias),
                 "views_aliased": len(alias)},
        "warnings": warnings,
    }
    name = graph.name or Path(source).stem
    return Graph(name, tuple(tensors.values()), tuple(all_ops), meta)


def _parameter_slot(op_type: str, index: int, initializer: bool, info: _Info | None) -> bool:
    """Whether a constant in input ``index`` of an ``op_type`` node is a trainable parameter."""
    if op_type in ("Conv", "ConvTranspose", "Gemm"):
        return index in (1, 2)
    if op_type in ("MatMul", "FusedMatMul"):
        return True
    if op_type in NORMS:
        return index in (1, 2)
    if op_type in ("PRelu", "Gather"):
        return index == (1 if op_type == "PRelu" else 0)
    if op_type in ELEMENTWISE:
        return initializer and info is not None and info.dims is not None and len(info.dims) <= 1
    return False


def _saved_for_backward(op_type: str, inputs: list[str], outputs: list[str], is_float: Any) -> tuple[str, ...]:
    """The tensors PyTorch's autograd saves for this op kind: ReLU (and other output-only ops) its output,
    BatchNorm / LayerNorm their data input and scale, Add / Concat / views nothing, Conv / Gemm / MatMul /
    Mul and everything else their float inputs."""
    if op_type in SAVES_OUTPUT:
        return tuple(outputs)
    if op_type in SAVES_NOTHING:
        return ()
    if op_type in SAVES_INPUT_AND_SCALE:
        return tuple(inputs[:2])
    if op_type in ("MaxPool", "GlobalAveragePool", "AveragePool", "GlobalMaxPool"):
        return tuple(inputs[:1])
    return tuple(t for t in inputs if is_float(t))


def _training_ops(tensors: dict[str, Tensor], fwd: list[FwdOp], requires_grad: set[str], ops: list[Op],
                  graph: Any, alias: dict[str, str], info: dict[str, _Info], scale: float, native_batch: int,
                  non_trainable: set[str], const: set[str]) -> list[Op]:
    """A loss (unless the model has one), the backward pass and one Adam update per op with weights."""
    loss_ops = [op for op in ops if op.category == "loss"]
    new_ops: list[Op] = []
    if loss_ops:
        loss = loss_ops[-1].outputs[0]
    else:
        preds = [alias.get(o.name, o.name) for o in graph.output]
        preds = [p for p in preds if p in requires_grad] or [t for t in ops[-1].outputs if t in requires_grad]
        if not preds:
            raise InputError("training needs trainable weights on the path to the outputs; this model has none",
                             field="train")
        labels = "labels"
        tensors[labels] = Tensor(labels, int(8 * native_batch * scale), "input", False)
        loss = "loss.out"
        tensors[loss] = Tensor(loss, 4, "activation", False)
        pred_elems = sum(tensors[p].bytes for p in preds) / 4
        loss_op = Op("loss", (*preds, labels), (loss,), (), None, 5.0 * pred_elems,
                     float(sum(tensors[p].bytes for p in preds) + tensors[labels].bytes + 4), True, "loss", None,
                     "forward")
        new_ops.append(loss_op)
        fwd.append(FwdOp(loss_op, tuple(preds), (), (*preds, labels), 5.0 * pred_elems))
    groups = []
    for f in fwd:
        weights = f.weights
        if not weights:
            continue
        dtype = info[weights[0]].dtype if weights[0] in info else 1
        wbytes = DTYPE_BYTES.get(dtype, 4)
        state = 2.0 if wbytes == 4 else 12.0 / wbytes
        groups.append(OptimizerGroup(f"{f.op.id}.adam", f.op.layer, weights, state, wbytes))
    return [*new_ops, *synthesize_training(tensors, fwd, groups, loss=loss)]


def _topological(nodes: list[Any], available: set[str]) -> list[Any]:
    """Nodes in a valid order (ONNX requires one; tolerate files that do not comply), or InputError on a cycle."""
    produced = set(available)
    ordered = True
    for node in nodes:
        if any(i and i not in produced for i in node.input):
            ordered = False
            break
        produced.update(node.output)
    if ordered:
        return nodes
    producer = {o: k for k, node in enumerate(nodes) for o in node.output if o}
    done: set[int] = set()
    out: list[Any] = []
    pending = list(range(len(nodes)))
    while pending:
        progress = False
        rest = []
        for k in pending:
            deps = {producer[i] for i in nodes[k].input if i and i in producer and i not in available}
            if deps <= done:
                out.append(nodes[k])
                done.add(k)
                progress = True
            else:
                rest.append(k)
        if not progress:
            bad = nodes[rest[0]]
            raise InputError(f"the graph has a cycle through node '{bad.name or bad.op_type}'", field="graph.node")
        pending = rest
    return out
