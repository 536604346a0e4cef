"""Tierplan's predictions against PyTorch's measurements (tests/data/fidelity/pytorch_measured.json).

The JSON is written by ``bench/fidelity.py --measure`` (``make fidelity``) with torch; these tests need no
torch: they rebuild the graphs from the same configs and ONNX files and compare. Targets of issue 13:
small Llama train peak within 10 %, Llama-2-7B within 5 %, ONNX ResNet-18/50 training within 15 %, OPT
parameter counts within 1 %.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.sources.fidelity import Comparison, predictions

MEASURED = Path(__file__).resolve().parent / "data" / "fidelity" / "pytorch_measured.json"


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return predictions(json.loads(MEASURED.read_text()))


def test_measured_file_records_its_provenance() -> None:
    raw = json.loads(MEASURED.read_text())
    assert raw["format"] == "tierplan-fidelity/1"
    assert raw["torch_version"].startswith("2.")
    # Two independent counters agree on the real-tensor peaks (MemTracker vs profiler allocator events).
    t = raw["small_llama"]["train"]
    assert t["peak_bytes_profiler"] == pytest.approx(t["peak_bytes_memtracker"], rel=0.01)
    for depth in (18, 50):
        r = raw[f"resnet{depth}"]["train"]
        assert r["peak_bytes_profiler"] == pytest.approx(r["peak_bytes_memtracker"], rel=0.01)


@pytest.mark.parametrize(("key", "target"), [
    ("small_llama.train.peak", 0.10),
    ("small_llama.train.saved_per_layer", 0.05),
    ("small_llama.train.saved_head", 0.05),
    ("llama2_7b.train.peak", 0.05),
    ("llama2_7b.train_checkpointing.peak", 0.05),
    ("resnet18.train.peak", 0.15),
    ("resnet50.train.peak", 0.15),
    ("resnet18.train.saved", 0.15),
    ("resnet50.train.saved", 0.15),
])
def test_memory_targets(comparison: Comparison, key: str, target: float) -> None:
    err = comparison.error(key)
    assert abs(err) <= target, f"{key}: Tierplan {comparison.predicted[key]:.4g} vs PyTorch " \
                               f"{comparison.measured[key]:.4g} ({err:+.1%}, target ±{target:.0%})"


def test_accounting_is_tighter_than_the_targets(comparison: Comparison) -> None:
    # The rules of docs/sources.md reproduce the measured training peaks to within 1 % (not just 10-15 %):
    # a regression in any per-op rule shows here first.
    for key in ("small_llama.train.peak", "llama2_7b.train.peak", "resnet18.train.peak", "resnet50.train.peak"):
        assert abs(comparison.error(key)) < 0.01, key


def test_inference_peaks_within_ten_percent(comparison: Comparison) -> None:
    # HF's DynamicCache concatenates (a transient copy of one layer's K/V) and kernels keep small scratch
    # buffers Tierplan does not model: the honest bound for the small model's prefill / decode.
    for key in ("small_llama.prefill.peak", "small_llama.decode.peak"):
        assert abs(comparison.error(key)) <= 0.10, (key, comparison.error(key))


def test_matmul_flops(comparison: Comparison) -> None:
    for key in ("small_llama.flops.forward", "small_llama.flops.backward"):
        assert abs(comparison.error(key)) < 0.005, (key, comparison.error(key))


@pytest.mark.parametrize("model", ["llama-2-7b", "llama-3-70b", "mixtral-8x7b", "opt-30b", "opt-175b"])
def test_param_counts_match_hf(comparison: Comparison, model: str) -> None:
    assert abs(comparison.error(f"params.{model}")) < 0.01


def test_resnet_params_exact(comparison: Comparison) -> None:
    assert comparison.predicted["resnet18.params"] == comparison.measured["resnet18.params"] == 11_689_512
    assert comparison.predicted["resnet50.params"] == comparison.measured["resnet50.params"] == 25_557_032


def test_offloaded_decode_writes_back_only_the_new_tokens_kv() -> None:
    # Issue 13: the whole per-layer cache was marked mutated, so a plan that kept it in DDR wrote 28 GiB back
    # per step (Llama-2-7B, batch 32, 4096 context, A100 40 GB). Now only the new token's K/V can go down.
    from core.planner import make_plan
    from core.sources.presets import load_preset
    from core.sources.samples import load_sample
    from core.validate import validate_plan

    graph = load_sample("llama2-7b-decode")
    plan = make_plan(graph, load_preset("a100-40gb-pcie"))
    assert not validate_plan(graph, plan).errors
    from core.plan import TransferEvent

    kv = {t.id for t in graph.tensors if t.kind == "kv_cache"}
    down = sum(graph.tensor_by_id[e.tensor].bytes for e in plan.events
               if isinstance(e, TransferEvent) and e.src == "HBM" and e.tensor in kv)
    assert 0 < down <= 32 * graph.meta["kv_bytes_per_token"]  # the new tokens' K/V only (other tensors may move)
    assert plan.metrics["transfer_bytes"]["DDR->HBM"] > 10 * 2**30  # the cache is offloaded and read back
