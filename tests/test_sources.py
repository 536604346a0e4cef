"""Format detection and the one entry point for uploaded bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InputError
from core.graph import graph_to_dict
from core.sources import Workload, detect_format, load_model_bytes
from core.sources.samples import tiny_graph

ROOT = Path(__file__).resolve().parents[1]
LLAMA = (ROOT / "sample_models" / "configs" / "llama-2-7b.json").read_bytes()
TINY = json.dumps(graph_to_dict(tiny_graph())).encode()
RESNET = (Path(__import__("onnx").__file__).parent / "backend/test/data/light/light_resnet50.onnx").read_bytes()
PRESET = (ROOT / "presets" / "h100-sxm.json").read_bytes()


class TestWorkload:
    def test_defaults(self) -> None:
        w = Workload("decode")
        assert (w.batch, w.seq, w.checkpointing) == (1, 2048, False)
        assert w.to_dict() == {"kind": "decode", "batch": 1, "seq": 2048, "checkpointing": False}

    @pytest.mark.parametrize("kwargs", [{"kind": "inference"}, {"kind": "train", "batch": 0},
                                        {"kind": "train", "seq": -1}, {"kind": "train", "batch": True},
                                        {"kind": "train", "seq": 2.5}])
    def test_invalid(self, kwargs: dict) -> None:
        with pytest.raises(InputError):
            Workload(**kwargs)


class TestDetect:
    def test_each_format(self) -> None:
        assert detect_format(TINY, "g.json") == "tierplan-graph"
        assert detect_format(LLAMA, "config.json") == "hf-config"
        assert detect_format(RESNET, "model.onnx") == "onnx"
        # the content decides, not the name
        assert detect_format(RESNET, "weird.json") == "onnx"
        assert detect_format(b"\xef\xbb\xbf" + LLAMA, "bom.json") == "hf-config"

    @pytest.mark.parametrize(("data", "match"), [
        (b"", "empty"), (b"{not json", "malformed JSON"), (b"[1, 2]", "JSON object"),
        (b'{"foo": 1}', "neither a Tierplan graph"), (PRESET, "tierplan-hardware/1"),
        (b"PK\x03\x04 zip file", "ONNX"), (RESNET[:500], "ONNX"),
    ])
    def test_rejects(self, data: bytes, match: str) -> None:
        with pytest.raises(InputError, match=match) as err:
            detect_format(data, "upload.bin")
        assert err.value.message.startswith("upload.bin")


class TestLoad:
    def test_native(self) -> None:
        g = load_model_bytes(TINY, "tiny.json")
        assert len(g.ops) == 10

    def test_hf_default_and_given_workload(self) -> None:
        g = load_model_bytes(LLAMA, "llama.json")
        assert g.meta["workload"]["kind"] == "train" and g.name == "llama"
        d = load_model_bytes(LLAMA, "config.json", workload=Workload("decode", 2, 128))
        assert d.meta["workload"] == {"kind": "decode", "batch": 2, "seq": 128, "checkpointing": False}

    def test_onnx_with_options(self) -> None:
        g = load_model_bytes(RESNET, "r.onnx", onnx_batch=2, onnx_train=True)
        assert g.meta["workload"] == {"kind": "train", "batch": 2}

    def test_bad_native_graph_names_file_and_field(self) -> None:
        raw = graph_to_dict(tiny_graph())
        raw["ops"][1]["inputs"] = ["nope"]
        with pytest.raises(InputError, match=r"bad\.json: ops\[1\]\.inputs\[0\]: .*unknown tensor 'nope'"):
            load_model_bytes(json.dumps(raw).encode(), "bad.json")

    def test_bad_hf_config_names_field(self) -> None:
        with pytest.raises(InputError, match=r"c\.json: vocab_size: missing"):
            load_model_bytes(b'{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, '
                             b'"num_attention_heads": 2, "intermediate_size": 8}', "c.json")
