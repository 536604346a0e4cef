"""The PyTorch importer: committed fixtures checked everywhere, live tracing where torch is installed.

``tests/data/torch/*.json`` are graphs ``python -m core import-torch`` produced from
``bench/torch_entries/{resnet18,small_llama}.py`` (``make fidelity`` regenerates them). Without torch these
tests load them, validate their structure and compare their bytes and FLOPs with PyTorch's own
measurements (tests/data/fidelity/pytorch_measured.json). The live tests need torch (an optional extra:
``pip install 'tierplan[torch]'``) and are skipped with that reason elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.errors import InputError
from core.graph import load_graph
from core.metrics import no_offload_peak_bytes
from core.sources import detect_format, load_model_bytes
from core.sources.torch_import import torch_available

DATA = Path(__file__).resolve().parent / "data"
MEASURED = json.loads((DATA / "fidelity" / "pytorch_measured.json").read_text())
FIXTURES = {"resnet18": MEASURED["resnet18"]["train"], "small_llama": MEASURED["small_llama"]["train"]}
needs_torch = pytest.mark.skipif(not torch_available(), reason="torch is not installed (optional extra "
                                 "`pip install 'tierplan[torch]'`; `make fidelity` runs these tests)")


@pytest.mark.parametrize("name", sorted(FIXTURES))
class TestFixtures:
    def test_loads_and_is_a_training_step(self, name: str) -> None:
        g = load_graph(DATA / "torch" / f"{name}-train.json")  # full structural validation
        phases = {op.phase for op in g.ops}
        assert phases == {"forward", "backward", "optimizer"}
        order = [op.phase for op in g.ops]
        assert max(i for i, p in enumerate(order) if p == "forward") < order.index("backward")
        assert all(op.host_ok and op.mutates and not op.outputs for op in g.ops if op.phase == "optimizer")
        by = g.total_bytes_by_kind
        # gradients are exactly one per parameter, the size of the parameter
        assert by["gradient"] == FIXTURES[name]["params"] * (2 if name == "small_llama" else 4)
        assert g.meta["params_total"] == FIXTURES[name]["params"]

    def test_peak_matches_pytorch(self, name: str) -> None:
        g = load_graph(DATA / "torch" / f"{name}-train.json")
        measured = FIXTURES[name]["peak_bytes_memtracker"]
        assert no_offload_peak_bytes(g) == pytest.approx(measured, rel=0.01)

    def test_saved_bytes_and_flops_match_pytorch(self, name: str) -> None:
        g = load_graph(DATA / "torch" / f"{name}-train.json")
        meta = g.meta["torch"]
        assert meta["saved_for_backward_bytes"] == pytest.approx(FIXTURES[name]["saved_bytes_total"], rel=0.01)
        assert meta["flops_forward"] == pytest.approx(FIXTURES[name]["flops"]["forward"], rel=1e-6)
        assert meta["flops_backward"] == pytest.approx(FIXTURES[name]["flops"]["backward"], rel=1e-6)


def test_traced_llama_agrees_with_the_hf_config_graph() -> None:
    from core.sources import Workload
    from core.sources.hf_config import graph_from_hf_config

    small = MEASURED["small_llama"]
    traced = load_graph(DATA / "torch" / "small_llama-train.json")
    generated = graph_from_hf_config(small["config"], Workload("train", small["batch"], small["seq"]))
    assert no_offload_peak_bytes(generated) == pytest.approx(no_offload_peak_bytes(traced), rel=0.01)
    assert generated.total_bytes_by_kind["optimizer_state"] == traced.total_bytes_by_kind["optimizer_state"]


def test_pt2_uploads_are_refused_with_the_reason() -> None:
    data = b"PK\x03\x04" + b"\x00" * 64
    for fn in (lambda: detect_format(data, "model.pt2"), lambda: load_model_bytes(data, "model.pt2")):
        with pytest.raises(InputError, match="unpickles") as exc:
            fn()
        assert "model.pt2" in str(exc.value) and "import-torch" in str(exc.value)


@pytest.mark.skipif(torch_available(), reason="checks the message shown where torch is missing")
def test_without_torch_the_cli_says_how_to_install(tmp_path: Path) -> None:
    entry = tmp_path / "entry.py"
    entry.write_text("def build():\n    raise SystemExit('must not run')\n")
    proc = subprocess.run([sys.executable, "-m", "core", "import-torch", str(entry), "-o", str(tmp_path / "g.json")],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert "tierplan[torch]" in proc.stderr and str(entry) in proc.stderr and "Traceback" not in proc.stderr


ENTRY = textwrap.dedent("""
    import torch

    def build():
        model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
        x = torch.randn(32, 64)
        y = torch.randint(0, 10, (32,))
        return model, (x,), lambda out: torch.nn.functional.cross_entropy(out, y)
""")


@needs_torch
class TestLive:
    def test_entry_point_mlp(self, tmp_path: Path) -> None:
        from core.sources.torch_import import trace_entry_point

        entry = tmp_path / "mlp.py"
        entry.write_text(ENTRY)
        g = trace_entry_point(entry)
        params = 64 * 256 + 256 + 256 * 10 + 10
        assert g.meta["params_total"] == params
        assert g.total_bytes_by_kind["weight"] == 4 * params
        assert g.total_bytes_by_kind["gradient"] == 4 * params
        assert g.total_bytes_by_kind["optimizer_state"] == 8 * params  # fp32 m + v
        # ReLU saves its output (32 × 256 fp32), the second Linear reads it too: it outlives the forward
        relu = next(op for op in g.ops if op.phase == "forward" and "relu" in op.id)
        assert any(relu.outputs[0] in op.inputs for op in g.ops if op.phase == "backward")
        assert g.meta["torch"]["flops_forward"] == 2 * 32 * (64 * 256 + 256 * 10)

    def test_inference_has_no_backward(self, tmp_path: Path) -> None:
        from core.sources.torch_import import trace_entry_point

        entry = tmp_path / "mlp.py"
        entry.write_text(ENTRY)
        g = trace_entry_point(entry, train=False)
        assert {op.phase for op in g.ops} == {"forward"}

    def test_exported_program(self, tmp_path: Path) -> None:
        import torch

        from core.sources.torch_import import trace_exported_program

        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        ep = torch.export.export(model, (torch.randn(8, 16),))
        torch.export.save(ep, tmp_path / "m.pt2")
        g = trace_exported_program(tmp_path / "m.pt2")
        assert g.meta["params_total"] == 16 * 32 + 32 + 32 * 4 + 4
        assert "backward" in {op.phase for op in g.ops}

    def test_bad_entry_points(self, tmp_path: Path) -> None:
        from core.sources.torch_import import trace_entry_point

        none = tmp_path / "none.py"
        none.write_text("x = 1\n")
        with pytest.raises(InputError, match="build"):
            trace_entry_point(none)
        broken = tmp_path / "broken.py"
        broken.write_text("def build():\n    return 42\n")
        with pytest.raises(InputError, match="must return"):
            trace_entry_point(broken)
        crash = tmp_path / "crash.py"
        crash.write_text("raise RuntimeError('boom')\n")
        with pytest.raises(InputError, match="boom"):
            trace_entry_point(crash)

    def test_fixture_is_what_the_importer_produces(self) -> None:
        from core.graph import graph_to_dict
        from core.sources.torch_import import trace_entry_point

        root = Path(__file__).resolve().parents[1]
        g = trace_entry_point(root / "bench" / "torch_entries" / "resnet18.py")
        fixture = load_graph(DATA / "torch" / "resnet18-train.json")
        assert [t.bytes for t in g.tensors] == [t.bytes for t in fixture.tensors]
        assert graph_to_dict(g)["ops"] == graph_to_dict(fixture)["ops"]


@needs_torch
def test_cli_import_torch(tmp_path: Path) -> None:
    entry = tmp_path / "mlp.py"
    entry.write_text(ENTRY)
    out = tmp_path / "g.json"
    proc = subprocess.run([sys.executable, "-m", "core", "import-torch", str(entry), "--no-optimizer", "-o", str(out)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    g = load_graph(out)
    assert "optimizer" not in {op.phase for op in g.ops} and "backward" in {op.phase for op in g.ops}
