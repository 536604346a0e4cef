"""Tierplan's predictions for the settings PyTorch was measured in (``bench/fidelity.py --measure``).

The measurements live in ``tests/data/fidelity/pytorch_measured.json`` (peaks from MemTracker, saved-for-
backward bytes from autograd hooks, FLOPs from FlopCounterMode, parameter counts of the HF classes on the
meta device). :func:`predictions` rebuilds the same graphs from the same configs and ONNX files and pairs
every measured quantity with Tierplan's figure, so the bench table and ``tests/test_fidelity.py`` show the
same numbers. Needs no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.graph import Graph
from core.metrics import no_offload_peak_bytes
from core.sources import Workload
from core.sources.hf_config import count_params, graph_from_hf_config
from core.sources.onnx_import import import_onnx

__all__ = ["Comparison", "predictions", "saved_for_backward_bytes", "ROOT"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Comparison:
    """Measured and predicted figures by key; ``labels`` keeps the table's order, label and unit kind."""

    measured: dict[str, float] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)
    labels: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, key: str, label: str, kind: str, measured: float, predicted: float) -> None:
        self.measured[key] = float(measured)
        self.predicted[key] = float(predicted)
        self.labels.append((key, label, kind))

    def rows(self) -> Iterator[tuple[str, str, str]]:
        return iter(self.labels)

    def error(self, key: str) -> float:
        """Relative error of the prediction (``+0.1`` = Tierplan 10 % above the measurement)."""
        return (self.predicted[key] - self.measured[key]) / self.measured[key]


def saved_for_backward_bytes(graph: Graph, layer: str | None = None) -> int:
    """Bytes of forward-pass activations and inputs that a backward op reads (what autograd keeps),
    optionally only those produced in ``layer`` (inputs count towards the layer of their first reader)."""
    forward_made: dict[str, str | None] = {}
    for op in graph.ops:
        if op.phase != "forward":
            continue
        for t in op.outputs:
            forward_made[t] = op.layer
        for t in op.inputs:
            if graph.tensor_by_id[t].kind == "input" and t not in forward_made:
                forward_made[t] = op.layer
    read_back = {t for op in graph.ops if op.phase == "backward" for t in op.inputs}
    return sum(graph.tensor_by_id[t].bytes for t, where in forward_made.items()
               if t in read_back and (layer is None or where == layer))


def _matmul_flops(graph: Graph, phase: str) -> float:
    return sum(op.flops for op in graph.ops if op.phase == phase and op.category in ("matmul", "mlp"))


def _config(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        return json.loads((ROOT / value).read_text())
    return value


def predictions(measured: Mapping[str, Any]) -> Comparison:
    """Every comparable figure of the measured JSON beside Tierplan's prediction for it."""
    c = Comparison()
    small = measured["small_llama"]
    cfg = _config(small["config"])
    b, s = small["batch"], small["seq"]
    train = graph_from_hf_config(cfg, Workload("train", b, s))
    t = small["train"]
    c.add("small_llama.train.peak", f"peak, small Llama train step (b{b} s{s}, bf16 + fp32 Adam)", "bytes",
          t["peak_bytes_memtracker"], no_offload_peak_bytes(train))
    c.add("small_llama.train.saved_per_layer", "· saved activations per layer (layer 1)", "bytes",
          t["saved_bytes_per_layer"][1], saved_for_backward_bytes(train, "layers.1"))
    c.add("small_llama.train.saved_head", "· saved final norm, logits and loss", "bytes",
          t["saved_bytes_head_and_loss"], saved_for_backward_bytes(train, "head"))
    c.add("small_llama.train.saved_total", "· saved activations, whole step", "bytes",
          t["saved_bytes_total"], saved_for_backward_bytes(train))
    mm = t["flops"]
    c.add("small_llama.flops.forward", "matmul FLOPs forward, small Llama", "flops",
          sum(v for k, v in mm["forward_by_op"].items() if "mm" in k), _matmul_flops(train, "forward"))
    c.add("small_llama.flops.backward", "matmul FLOPs backward, small Llama", "flops",
          sum(v for k, v in mm["backward_by_op"].items() if "mm" in k), _matmul_flops(train, "backward"))
    prefill = graph_from_hf_config(cfg, Workload("prefill", b, s))
    decode = graph_from_hf_config(cfg, Workload("decode", b, s))
    c.add("small_llama.prefill.peak", f"peak, small Llama prefill (b{b} s{s})", "bytes",
          small["prefill_peak_bytes_memtracker"], no_offload_peak_bytes(prefill))
    c.add("small_llama.decode.peak", f"peak, small Llama decode step (b{b}, {s} context)", "bytes",
          small["decode_peak_bytes_memtracker"], no_offload_peak_bytes(decode))

    big = measured["llama2_7b"]
    cfg7 = _config(big["config"])
    b7, s7 = big["batch"], big["seq"]
    c.add("llama2_7b.train.peak", f"peak, Llama-2-7B train b{b7} s{s7} (FakeTensor)", "bytes",
          big["train"]["peak_bytes_memtracker"], no_offload_peak_bytes(graph_from_hf_config(cfg7, Workload("train", b7, s7))))
    c.add("llama2_7b.train_checkpointing.peak", "peak, Llama-2-7B train, activation checkpointing", "bytes",
          big["train_checkpointing"]["peak_bytes_memtracker"],
          no_offload_peak_bytes(graph_from_hf_config(cfg7, Workload("train", b7, s7, checkpointing=True))))

    for depth in (18, 50):
        r = measured[f"resnet{depth}"]
        g = import_onnx(ROOT / r["onnx"], batch=r["batch"], train=True)
        c.add(f"resnet{depth}.train.peak", f"peak, ResNet-{depth} train b{r['batch']} fp32 + Adam, ONNX --train",
              "bytes", r["train"]["peak_bytes_memtracker"], no_offload_peak_bytes(g))
        c.add(f"resnet{depth}.train.saved", f"· saved activations, ResNet-{depth}", "bytes",
              r["train"]["saved_bytes_total"], saved_for_backward_bytes(g))
        c.add(f"resnet{depth}.params", f"parameters, ResNet-{depth} (ONNX)", "count", r["train"]["params"],
              g.meta["params_total"])

    for key, value in measured.get("hf_param_counts", {}).items():
        path = ROOT / "sample_models" / "configs" / f"{key}.json"
        if path.exists():
            c.add(f"params.{key}", f"parameters, {key} (HF class on the meta device)", "count", value,
                  count_params(json.loads(path.read_text())).total)
    return c
