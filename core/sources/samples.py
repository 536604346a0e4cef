"""Bundled sample graphs for the dashboard picker, each regenerable from its source with one command.

The files in ``sample_models/`` are compact ``tierplan-graph/1`` JSON that users can download; they are
built by the functions below from the Hugging Face configs in ``sample_models/configs/``, the ResNet-50
ONNX model shipped inside the ``onnx`` package, and (the tiny teaching graph) code. Regenerate them all::

    python -m core.sources.samples --regenerate

``--check`` instead verifies that the committed files equal what the generators produce now.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from core.errors import InputError
from core.graph import Graph, Op, Tensor, graph_to_dict, load_graph
from core.sources import Workload

__all__ = ["SAMPLES_DIR", "CONFIGS_DIR", "SampleInfo", "list_samples", "load_sample", "build_sample",
           "tiny_graph", "regenerate", "main"]

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "sample_models"
CONFIGS_DIR = SAMPLES_DIR / "configs"
GiB = 2**30


@dataclass(frozen=True)
class SampleInfo:
    """A sample: ``hardware`` is the preset on which it is interesting (it does not fit, or barely)."""

    key: str
    title: str
    description: str
    hardware: str
    workload: str


_SAMPLES = (
    SampleInfo("tiny", "Tiny teaching graph (3 layers)",
               "Ten ops with round numbers: 1 GiB weights and activations, 10 ms forward ops, 20 ms backward ops, "
               "2 GiB of Adam state per layer. 15 GiB at the peak against 8 GiB of HBM: something must move.",
               "teaching", "train"),
    SampleInfo("resnet50-train", "ResNet-50 training, batch 192 (ONNX)",
               "The ResNet-50 shipped in the onnx package, imported with a synthesised backward pass and Adam "
               "(fp32 weights), saving what PyTorch saves. Activations dominate: about 17 GB at the peak against "
               "a 16 GB T4.",
               "t4-flexgen", "train"),
    SampleInfo("llama2-7b-train", "Llama-2-7B training step, batch 1 × 4096",
               "Bf16 weights and gradients, fp32 Adam state (16 bytes per parameter, 108 GB) plus activations: "
               "more than an 80 GB H100 holds, the ZeRO-Offload situation.",
               "h100-sxm", "train"),
    SampleInfo("llama2-7b-decode", "Llama-2-7B decode, batch 32, 4096 context",
               "One decode step of 32 sequences: 13.5 GB of weights plus a 68.7 GB KV cache on a 40 GB A100.",
               "a100-40gb-pcie", "decode"),
    SampleInfo("llama3-70b-train", "Llama-3-70B training step, batch 1 × 4096, checkpointing",
               "1.13 TB of model state (16 bytes per parameter) with per-layer activation checkpointing: lives in "
               "the supernode's pooled memory, streamed to a 128 GB Ascend 910C.",
               "ascend-910c-supernode", "train"),
    SampleInfo("mixtral-8x7b-prefill", "Mixtral-8x7B prefill, batch 4 × 4096",
               "46.7 B parameters (93 GB in bf16), all eight experts of every layer touched by 16k prompt tokens; "
               "a GH200 holds 96 GB of HBM and reaches its LPDDR5X over NVLink-C2C.",
               "gh200", "prefill"),
    SampleInfo("deepseek-v3-decode", "DeepSeek-V3 decode, batch 16, 4096 context (MoE + MLA)",
               "671 B parameters (1.34 TB in bf16). A decode step of 16 sequences reads about 102 of each layer's "
               "256 experts; the graph holds 3 steps (the steady state), each reading its own third, so every "
               "expert moves once per window. The compressed MLA cache is 70 KB per token. Served from pooled "
               "memory.",
               "ascend-910c-supernode", "decode"),
)


def list_samples() -> tuple[SampleInfo, ...]:
    return _SAMPLES


def _info(key: str) -> SampleInfo:
    for s in _SAMPLES:
        if s.key == key:
            return s
    raise InputError(f"unknown sample {key!r}; known samples: {', '.join(s.key for s in _SAMPLES)}", field="sample")


# ------------------------------------------------------------------------------------------------ builders


def tiny_graph() -> Graph:
    """Three layers, forward, loss, backward and Adam: every number a round one (GiB, 10 ms)."""
    tensors = [Tensor("x", GiB, "input", False)]
    ops: list[Op] = []
    for i in (1, 2, 3):
        tensors += [Tensor(f"w{i}", GiB, "weight", True), Tensor(f"adam{i}", 2 * GiB, "optimizer_state", True),
                    Tensor(f"a{i}", GiB, "activation", False), Tensor(f"dw{i}", GiB, "gradient", False)]
    tensors += [Tensor("a3.grad", GiB, "activation", False), Tensor("a2.grad", GiB, "activation", False),
                Tensor("a1.grad", GiB, "activation", False)]
    prev = "x"
    for i in (1, 2, 3):
        ops.append(Op(f"fwd{i}", (prev, f"w{i}"), (f"a{i}",), time_s=0.010, category="matmul",
                      layer=f"layer{i}", phase="forward"))
        prev = f"a{i}"
    ops.append(Op("loss", ("a3",), ("a3.grad",), time_s=0.010, category="loss", layer="head", phase="forward"))
    for i in (3, 2, 1):
        saved = "x" if i == 1 else f"a{i - 1}"
        outs = (f"dw{i}",) if i == 1 else (f"a{i - 1}.grad", f"dw{i}")
        ops.append(Op(f"bwd{i}", (f"a{i}.grad", saved, f"w{i}"), outs, time_s=0.020, category="matmul",
                      layer=f"layer{i}", phase="backward"))
    for i in (1, 2, 3):
        ops.append(Op(f"adam{i}", (f"w{i}", f"dw{i}", f"adam{i}"), (), (f"w{i}", f"adam{i}"), time_s=0.010,
                      recomputable=False, category="optimizer", layer=f"layer{i}", phase="optimizer", host_ok=True))
    meta = {"source": "core.sources.samples.tiny_graph", "model_type": "tiny",
            "params_total": 3 * GiB // 2, "params_active": 3 * GiB // 2,
            "workload": {"kind": "train", "batch": 1, "seq": 1}, "warnings": []}
    return Graph("tiny teaching graph", tuple(tensors), tuple(ops), meta)


def _hf(config: str, workload: Workload, name: str) -> Callable[[], Graph]:
    def build() -> Graph:
        from core.sources.hf_config import graph_from_hf_config

        path = CONFIGS_DIR / config
        raw = json.loads(path.read_text(encoding="utf-8"))
        return graph_from_hf_config(raw, workload, name=name, source=f"sample_models/configs/{config}")

    return build


def _resnet50_train() -> Graph:
    import onnx

    from core.sources.onnx_import import import_onnx

    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
    graph = import_onnx(path, batch=192, train=True, source="onnx/backend/test/data/light/light_resnet50.onnx")
    return Graph("ResNet-50 train b192", graph.tensors, graph.ops, graph.meta)


_BUILDERS: dict[str, Callable[[], Graph]] = {
    "tiny": tiny_graph,
    "resnet50-train": _resnet50_train,
    "llama2-7b-train": _hf("llama-2-7b.json", Workload("train", 1, 4096), "Llama-2-7B train b1 s4096"),
    "llama2-7b-decode": _hf("llama-2-7b.json", Workload("decode", 32, 4096), "Llama-2-7B decode b32 ctx4096"),
    "llama3-70b-train": _hf("llama-3-70b.json", Workload("train", 1, 4096, checkpointing=True),
                            "Llama-3-70B train b1 s4096 ckpt"),
    "mixtral-8x7b-prefill": _hf("mixtral-8x7b.json", Workload("prefill", 4, 4096), "Mixtral-8x7B prefill b4 s4096"),
    "deepseek-v3-decode": _hf("deepseek-v3.json", Workload("decode", 16, 4096), "DeepSeek-V3 decode b16 ctx4096"),
}


def build_sample(key: str) -> Graph:
    """Build sample ``key`` from its source (what ``--regenerate`` writes)."""
    _info(key)
    return _BUILDERS[key]()


def _sample_text(graph: Graph) -> str:
    return json.dumps(graph_to_dict(graph), separators=(",", ":")) + "\n"


def sample_path(key: str) -> Path:
    return SAMPLES_DIR / f"{_info(key).key}.json"


@cache
def load_sample(key: str) -> Graph:
    """Sample ``key`` from its file (cached; built in memory if the file is missing)."""
    path = sample_path(key)
    if path.is_file():
        return load_graph(path, source=f"sample_models/{path.name}")
    return build_sample(key)


def regenerate(keys: Sequence[str] | None = None, *, check: bool = False) -> list[str]:
    """Write (or with ``check``, compare) the sample files; returns the keys whose file changed / differs."""
    changed = []
    for key in keys or [s.key for s in _SAMPLES]:
        text = _sample_text(build_sample(key))
        path = sample_path(key)
        old = path.read_text(encoding="utf-8") if path.is_file() else None
        if old != text:
            changed.append(key)
            if not check:
                path.write_text(text, encoding="utf-8")
    load_sample.cache_clear()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.sources.samples", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--regenerate", action="store_true", help="rewrite sample_models/*.json from their sources")
    group.add_argument("--check", action="store_true", help="exit 1 if a committed file differs from its source")
    group.add_argument("--list", action="store_true", help="list the samples")
    parser.add_argument("keys", nargs="*", help="only these samples")
    args = parser.parse_args(argv)
    if args.list:
        for s in _SAMPLES:
            print(f"{s.key:24} {s.workload:8} {s.hardware:24} {s.title}")
        return 0
    changed = regenerate(args.keys, check=args.check)
    verb = "differ" if args.check else "rewritten"
    print(f"{len(changed)} sample file(s) {verb}: {', '.join(changed) or 'none'}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
