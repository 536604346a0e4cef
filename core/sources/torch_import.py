"""PyTorch modules as Tierplan graphs, traced with fake tensors (needs the optional ``torch`` extra).

The module runs once under ``FakeTensorMode`` (no memory is allocated, so a 7B model traces on a laptop)
with a ``TorchDispatchMode`` that records every aten op of the forward and — for a training step — of the
backward autograd really runs: inputs and outputs by storage (views alias, in-place ops become
``mutates``), FLOPs from ``FlopCounterMode``'s formulas, and which storages autograd keeps for the backward
(``saved_tensors_hooks``; they are simply read again by the backward ops). Parameters and buffers are
persistent weights; parameter gradients have kind ``gradient``; an optional Adam step adds one in-place op
per parameter with its state (fp32 m + v, plus an fp32 master copy for 16-bit parameters: Tierplan's
16 B/param convention), ``host_ok`` like every optimizer op.

Entry points:

* :func:`trace_entry_point` — a Python file defining ``build()`` that returns ``(module, example_inputs)``
  or ``(module, example_inputs, loss_fn)``. **This runs the file's code**: it is offered only through the
  explicit command ``python -m core import-torch FILE.py``, never for uploads.
* :func:`trace_exported_program` — a ``torch.export`` ``.pt2`` file. ``torch.export.load`` unpickles parts
  of the archive (``torch.load(..., weights_only=False)`` for pickled weights, ``pickle.loads`` for opaque
  constants), which can run arbitrary code, so it too is for local files through the CLI only; the app
  refuses ``.pt2`` uploads (:func:`core.sources.detect_format`) and asks for the graph JSON instead.

torch is imported lazily: without it every entry point raises an ``InputError`` that says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.graph import Graph, Op, Tensor

__all__ = ["torch_available", "trace_module", "trace_entry_point", "trace_exported_program", "INSTALL_HINT"]

INSTALL_HINT = ("the PyTorch importer needs torch: `pip install 'tierplan[torch]'` (or `make fidelity`, which makes "
                "a venv with the CPU build)")

_MATMUL = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_scaled_mm")
_CATEGORY = (
    (("convolution", "conv"), "conv"),
    (("scaled_dot_product", "flash_attention", "efficient_attention"), "attention"),
    (_MATMUL, "matmul"),
    (("layer_norm", "batch_norm", "group_norm", "rms_norm"), "norm"),
    (("nll_loss", "log_softmax", "cross_entropy", "_softmax"), "loss"),
    (("embedding",), "embedding"),
    (("max_pool", "avg_pool"), "pool"),
)


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _torch(source: str | None = None) -> Any:
    try:
        import torch
    except ImportError:
        raise InputError(INSTALL_HINT, source=source) from None
    return torch


def _category(name: str) -> str:
    base = name.split(".")[1] if name.startswith("aten.") else name
    for keys, cat in _CATEGORY:
        if any(base == k or base.startswith(k) or k in base for k in keys):
            return cat
    return "elementwise"


class _Recorder:
    """Builds tensors and ops from the aten calls it sees (a TorchDispatchMode created lazily)."""

    def __init__(self, torch: Any, params: dict[int, str], grads_of: dict[int, str]) -> None:
        self.torch = torch
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.by_storage: dict[int, str] = {}
        self.keep: list[Any] = []  # storages stay referenced so no address is reused while tracing
        self.params = params
        self.phase = "forward"
        self.scope = ["model"]
        self.saved: set[str] = set()
        self.counter = 0
        self.layer_of: dict[str, str] = {}

    def key(self, t: Any) -> int:
        storage = t.untyped_storage()
        self.keep.append(storage)
        return int(storage._cdata)

    def tensor_for(self, t: Any, kind: str) -> str:
        k = self.key(t)
        if k not in self.by_storage:
            tid = self.params.get(k) or f"t{len(self.by_storage)}"
            real_kind = "weight" if k in self.params else kind
            nbytes = int(t.untyped_storage().nbytes())
            self.by_storage[k] = tid
            self.tensors[tid] = Tensor(tid, nbytes, real_kind, real_kind == "weight")
        return self.by_storage[k]

    def record(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        torch = self.torch
        from torch.utils._pytree import tree_flatten

        ins = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        in_ids: list[str] = []
        for t in ins:
            tid = self.tensor_for(t, "input")
            if tid not in in_ids:
                in_ids.append(tid)
        new_out: list[str] = []
        mutated: list[str] = []
        for t in outs:
            k = self.key(t)
            if k in self.by_storage:
                tid = self.by_storage[k]
                if tid in in_ids and func._schema.is_mutable and tid not in mutated:
                    mutated.append(tid)
                continue
            tid = self.tensor_for(t, "activation")
            new_out.append(tid)
        if not new_out and not mutated:
            return  # a view, or a pure read (e.g. aten.size): no allocation, no op
        name = str(func.overloadpacket)
        flops = self._flops(func, args, kwargs, out)
        self.counter += 1
        oid = f"{'fwd' if self.phase == 'forward' else 'bwd'}.{self.counter}.{name.removeprefix('aten.')}"
        layer = self.scope[-1] if self.phase == "forward" else next(
            (self.layer_of[t] for t in in_ids if t in self.layer_of), None)
        for t in new_out:
            if layer is not None:
                self.layer_of.setdefault(t, layer)
        touched = sum(self.tensors[t].bytes for t in (*in_ids, *new_out))
        self.ops.append(Op(oid, tuple(in_ids), tuple(new_out), tuple(mutated), None, float(flops), float(touched),
                           not mutated, _category(name), layer, self.phase))

    def _flops(self, func: Any, args: Any, kwargs: Any, out: Any) -> float:
        from torch.utils.flop_counter import flop_registry

        formula = flop_registry.get(func.overloadpacket)
        if formula is None:
            return 0.0
        try:
            return float(formula(*args, **kwargs, out_val=out))
        except Exception:  # a formula that cannot read these arguments counts nothing
            return 0.0

    def mode(self) -> Any:
        from torch.utils._python_dispatch import TorchDispatchMode

        recorder = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                recorder.record(func, args, kwargs or {}, out)
                return out

        return Mode()


def _default_loss(out: Any) -> Any:
    torch = _torch()
    loss = getattr(out, "loss", None)
    if loss is not None:
        return loss
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if isinstance(out, torch.Tensor):
        return out if out.dim() == 0 else out.float().sum()
    raise InputError("cannot find a loss in the module's output: return (module, inputs, loss_fn) from build()",
                     field="build")


def trace_module(build: Callable[[], Sequence[Any]], *, train: bool = True, optimizer: str | None = "adam",
                 name: str = "torch module", source: str = "<torch>") -> Graph:
    """Run ``build()`` under FakeTensorMode and record one training step (forward, backward, optional Adam)
    or one forward pass (``train=False``, under ``no_grad``)."""
    torch = _torch()
    from torch._subclasses.fake_tensor import FakeTensorMode

    if optimizer not in (None, "adam"):
        raise InputError(f"unknown optimizer {optimizer!r}; expected 'adam' or none", field="optimizer")
    with FakeTensorMode(allow_non_fake_inputs=True):
        built = build()
        module, inputs, loss_fn = _unpack(built, source)
        with contextlib.suppress(NotImplementedError):  # an exported module keeps its export-time mode
            module.train(train)
        params = dict(module.named_parameters())
        recorder = _Recorder(torch, {}, {})
        recorder.params = {recorder.key(p): f"param.{n}" for n, p in params.items()}
        recorder.params.update({recorder.key(b): f"buffer.{n}" for n, b in module.named_buffers()
                                if recorder.key(b) not in recorder.params})
        for p in params.values():
            recorder.tensor_for(p, "weight")
        for b in module.buffers():
            recorder.tensor_for(b, "weight")
        for t in inputs:
            if isinstance(t, torch.Tensor):
                recorder.tensor_for(t, "input")
        hooks = _scope_hooks(module, recorder)

        def pack(t: Any) -> Any:
            recorder.saved.add(recorder.tensor_for(t, "activation"))
            return t

        try:
            with recorder.mode():
                if train:
                    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                        out = module(*inputs)
                        loss = loss_fn(out) if loss_fn else _default_loss(out)
                    recorder.phase = "backward"
                    recorder.scope = ["model"]
                    loss.backward()
                else:
                    with torch.no_grad():
                        module(*inputs)
        finally:
            for h in hooks:
                h.remove()
        grads = {}
        if train:
            for n, p in params.items():
                if p.grad is not None:
                    grads[n] = recorder.tensor_for(p.grad, "gradient")
    return _finish(recorder, params, grads, train=train, optimizer=optimizer, name=name, source=source)


def _unpack(built: Any, source: str) -> tuple[Any, tuple[Any, ...], Callable[[Any], Any] | None]:
    torch = _torch()
    if not isinstance(built, (tuple, list)) or len(built) not in (2, 3):
        raise InputError("build() must return (module, example_inputs) or (module, example_inputs, loss_fn)",
                         source=source, field="build")
    module, inputs = built[0], built[1]
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"build()[0] must be a torch.nn.Module, got {type(module).__name__}", source=source,
                         field="build")
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    loss_fn = built[2] if len(built) == 3 else None
    return module, tuple(inputs), loss_fn


def _scope_hooks(module: Any, recorder: _Recorder) -> list[Any]:
    """Forward ops are attributed to the top-level child module (or its numbered children: layers.3)."""
    hooks = []
    for name, child in module.named_modules():
        if not name:
            continue
        parts = name.split(".")
        if len(parts) > 3:
            continue
        hooks.append(child.register_forward_pre_hook(_enter(recorder.scope, name)))
        hooks.append(child.register_forward_hook(_leave(recorder.scope)))
    return hooks


def _enter(scope: list[str], name: str) -> Callable[..., None]:
    def hook(*_: Any) -> None:
        scope.append(name)
    return hook


def _leave(scope: list[str]) -> Callable[..., None]:
    def hook(*_: Any) -> None:
        scope.pop()
    return hook


def _finish(rec: _Recorder, params: dict[str, Any], grads: dict[str, str], *, train: bool, optimizer: str | None,
            name: str, source: str) -> Graph:
    tensors = dict(rec.tensors)
    for gid in grads.values():
        g = tensors[gid]
        tensors[gid] = Tensor(gid, g.bytes, "gradient", False)
    ops = list(rec.ops)
    produced = {t for op in ops for t in op.outputs}
    # A storage that existed before the trace but is neither a parameter nor a buffer (labels captured by
    # the loss function, a mask made in build()) is an input of the step.
    for tid, t in list(tensors.items()):
        if tid not in produced and t.kind == "activation":
            tensors[tid] = Tensor(tid, t.bytes, "input", False)
    params_total = sum(p.numel() for p in params.values())
    if train and optimizer == "adam":
        for n, p in params.items():
            if n not in grads:
                continue
            w = f"param.{n}"
            elem = p.element_size()
            state_bytes = p.numel() * (8 if elem >= 4 else 12)
            sid = f"{w}.adam"
            tensors[sid] = Tensor(sid, state_bytes, "optimizer_state", True)
            nbytes = tensors[w].bytes
            ops.append(Op(f"adam.{n}", (w, grads[n], sid), (), (w, sid), None, 12.0 * p.numel(),
                          float(2 * (nbytes + state_bytes) + tensors[grads[n]].bytes), False, "optimizer", None,
                          "optimizer", True))
    used = {t for op in ops for t in (*op.inputs, *op.outputs)}
    ordered = [t for t in tensors.values() if t.id in used or t.persistent]
    saved_bytes = sum(tensors[t].bytes for t in rec.saved if t in tensors and tensors[t].kind != "weight")
    flops_fwd = sum(op.flops for op in ops if op.phase == "forward")
    flops_bwd = sum(op.flops for op in ops if op.phase == "backward")
    meta = {
        "source": source, "model_type": "torch", "params_total": params_total, "params_active": params_total,
        "workload": {"kind": "train" if train else "inference", "optimizer": optimizer if train else None},
        "torch": {"version": _torch().__version__, "saved_for_backward_bytes": saved_bytes,
                  "saved_for_backward_tensors": len(rec.saved), "flops_forward": flops_fwd,
                  "flops_backward": flops_bwd, "aten_ops": len(rec.ops)},
        "warnings": [],
    }
    if not math.isfinite(flops_fwd + flops_bwd):
        raise InputError("FLOP count overflowed", source=source)
    return Graph(name, tuple(ordered), tuple(ops), meta)


def trace_entry_point(path: str | Path, *, train: bool = True, optimizer: str | None = "adam") -> Graph:
    """Import ``path`` (a Python file defining ``build()``) and trace it. Runs the file's code: CLI only."""
    _torch(str(path))
    path = Path(path)
    if not path.is_file():
        raise InputError("cannot read file: no such file", source=str(path))
    spec = importlib.util.spec_from_file_location(f"_tierplan_entry_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InputError("not a Python file", source=str(path))
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        raise InputError(f"running the file failed: {type(exc).__name__}: {exc}", source=str(path)) from None
    finally:
        sys.path.remove(str(path.parent))
    build = getattr(mod, "build", None)
    if not callable(build):
        raise InputError("defines no build() function returning (module, example_inputs)", source=str(path),
                         field="build")
    return _trace_file(build, path, train=train, optimizer=optimizer)


def _trace_file(build: Any, path: Path, *, train: bool, optimizer: str | None) -> Graph:
    """:func:`trace_module` for a file's ``build``; a failure inside the user's model is one line naming it."""
    try:
        return trace_module(build, train=train, optimizer=optimizer, name=path.stem, source=str(path))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"tracing failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}",
                         source=str(path)) from None


def trace_exported_program(path: str | Path, *, train: bool = True, optimizer: str | None = "adam") -> Graph:
    """Trace a ``torch.export`` program file. ``torch.export.load`` unpickles: only for trusted local files."""
    torch = _torch(str(path))
    path = Path(path)
    try:
        ep = torch.export.load(str(path))
    except FileNotFoundError:
        raise InputError("cannot read file: no such file", source=str(path)) from None
    except Exception as exc:
        raise InputError(f"not a torch.export program: {type(exc).__name__}: {str(exc)[:200]}", source=str(path)) from None
    args, kwargs = ep.example_inputs or ((), {})
    if kwargs:
        raise InputError("exported programs with keyword inputs are not supported", source=str(path))
    module = ep.module()

    def build() -> tuple[Any, tuple[Any, ...]]:
        from torch._subclasses.fake_tensor import FakeTensorMode

        mode = torch._guards.detect_fake_mode() or FakeTensorMode()
        fake_module = _fake_copy(module, mode)
        return fake_module, tuple(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)

    return _trace_file(build, path, train=train, optimizer=optimizer)


def _fake_copy(module: Any, mode: Any) -> Any:
    """The module with every parameter and buffer replaced by a fake tensor of the same shape and dtype."""
    torch = _torch()
    for sub in module.modules():
        for n, p in list(sub._parameters.items()):
            if p is not None:
                sub._parameters[n] = torch.nn.Parameter(mode.from_tensor(p.detach()), requires_grad=p.requires_grad)
        for n, b in list(sub._buffers.items()):
            if b is not None:
                sub._buffers[n] = mode.from_tensor(b)
    return module

