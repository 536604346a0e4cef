"""Where graphs come from: native JSON, ONNX files, Hugging Face configs (+ a workload), bundled samples.

``load_model_bytes`` is the one entry point for an uploaded file: it recognises the format from the bytes
(not only the file name) and hands over to the right loader; anything else is a clean
:class:`core.errors.InputError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InputError
from core.graph import GRAPH_FORMAT, Graph, graph_from_dict, parse_json

__all__ = ["WORKLOAD_KINDS", "Workload", "detect_format", "load_model_bytes"]

WORKLOAD_KINDS = ("train", "prefill", "decode")
_HF_KEYS = ("hidden_size", "model_type", "architectures", "text_config", "num_hidden_layers")


@dataclass(frozen=True)
class Workload:
    """What one step does: a training step, a prefill of ``batch`` prompts of ``seq`` tokens, or one decode
    step of ``batch`` sequences with ``seq`` tokens of context."""

    kind: str
    batch: int = 1
    seq: int = 2048
    checkpointing: bool = False
    #: Prefill and decode: split the batch into this many micro-batches run one after the other per layer
    #: (FlexGen's GPU batches within a block), each with its own KV cache.
    micro_batches: int = 1

    def __post_init__(self) -> None:
        if self.kind not in WORKLOAD_KINDS:
            raise InputError(f"unknown workload {self.kind!r}; expected one of {', '.join(WORKLOAD_KINDS)}",
                             field="workload")
        for key in ("batch", "seq", "micro_batches"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"must be a whole number >= 1, got {value!r}", field=key)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "batch": self.batch, "seq": self.seq,
                                  "checkpointing": self.checkpointing}
        if self.micro_batches != 1:
            out["micro_batches"] = self.micro_batches
        return out


def _looks_like_json(data: bytes) -> bool:
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[")


def _json_kind(raw: object, filename: str) -> str:
    if not isinstance(raw, dict):
        raise InputError(f"expected a JSON object at the top level, got {type(raw).__name__}", source=filename)
    fmt = raw.get("format")
    if fmt == GRAPH_FORMAT:
        return "tierplan-graph"
    if isinstance(fmt, str) and fmt.startswith("tierplan-"):
        raise InputError(f"this is a '{fmt}' file, not a model; expected '{GRAPH_FORMAT}', an ONNX model or a "
                         "Hugging Face config.json", source=filename, field="format")
    if any(key in raw for key in _HF_KEYS):
        return "hf-config"
    raise InputError(f"JSON file is neither a Tierplan graph (format '{GRAPH_FORMAT}') nor a Hugging Face "
                     "config.json (no 'hidden_size' or 'model_type')", source=filename)


#: A zip archive: what torch.export.save writes (.pt2), also torch.save's format.
_ZIP_MAGIC = b"PK\x03\x04"
PT2_REFUSED = ("a zip archive is not a model file Tierplan reads (expected a Tierplan graph JSON, an ONNX model or "
               "an HF config.json). PyTorch archives (torch.export .pt2, torch.save) are not accepted as uploads: "
               "loading them unpickles objects (torch.export.load uses torch.load(weights_only=False) and "
               "pickle.loads), which can run arbitrary code; convert one on your machine with "
               "`python -m core import-torch FILE` and upload the graph JSON")


def detect_format(data: bytes, filename: str) -> str:
    """``"tierplan-graph"``, ``"onnx"`` or ``"hf-config"`` from the content; InputError for anything else."""
    if not data:
        raise InputError("the file is empty", source=filename)
    if data[:4] == _ZIP_MAGIC:
        raise InputError(PT2_REFUSED, source=filename)
    if _looks_like_json(data):
        return _json_kind(parse_json(data, filename), filename)
    from core.sources.onnx_import import parse_onnx_model

    parse_onnx_model(data, filename)
    return "onnx"


def load_model_bytes(data: bytes, filename: str, *, workload: Workload | None = None,
                     onnx_batch: int | None = None, onnx_train: bool = False) -> Graph:
    """A graph from uploaded bytes of any supported format (an HF config uses ``workload``, default a
    training step of one 2048-token sequence)."""
    if not data:
        raise InputError("the file is empty", source=filename)
    if data[:4] == _ZIP_MAGIC:
        raise InputError(PT2_REFUSED, source=filename)
    if _looks_like_json(data):
        raw = parse_json(data, filename)
        kind = _json_kind(raw, filename)
        if kind == "tierplan-graph":
            return graph_from_dict(raw, source=filename)
        from core.sources.hf_config import graph_from_hf_config

        name = filename.rsplit("/", 1)[-1].removesuffix(".json")
        return graph_from_hf_config(raw, workload or Workload("train"), name=None if name == "config" else name,
                                    source=filename)
    from core.sources.onnx_import import import_onnx

    return import_onnx(data, batch=onnx_batch, train=onnx_train, source=filename)
