"""Bundled samples: present, fast, realistic in size, interesting on their preset, regenerable."""

from __future__ import annotations

import pytest

from core.errors import InputError
from core.liveness import analyze
from core.sources.presets import list_presets, load_preset
from core.sources.samples import build_sample, list_samples, load_sample, regenerate, sample_path, tiny_graph

KEYS = [s.key for s in list_samples()]


def test_expected_samples() -> None:
    assert set(KEYS) == {"tiny", "resnet50-train", "llama2-7b-train", "llama2-7b-decode", "llama3-70b-train",
                         "mixtral-8x7b-prefill", "deepseek-v3-decode"}
    presets = {p.key for p in list_presets()}
    for s in list_samples():
        assert s.hardware in presets and s.workload in ("train", "prefill", "decode")
        assert s.title and s.description


@pytest.mark.parametrize("key", KEYS)
def test_file_committed_and_cached(key: str) -> None:
    """Load time is measured by bench/, not asserted here."""
    assert sample_path(key).is_file()
    load_sample.cache_clear()
    g = load_sample(key)
    assert load_sample(key) is g  # cached
    assert 0 < len(g.ops) <= 2000
    assert sample_path(key).stat().st_size < 1_500_000


@pytest.mark.parametrize("key", KEYS)
def test_interesting_on_its_preset(key: str) -> None:
    """The default hardware cannot hold the no-offload peak, or only barely (within 15 %)."""
    info = next(s for s in list_samples() if s.key == key)
    hw = load_preset(info.hardware)
    peak = analyze(load_sample(key)).no_offload_peak_bytes
    assert peak > 0.85 * hw.capacity(hw.compute_tier)
    total_capacity = sum(t.capacity_bytes for t in hw.tiers)
    assert sum(t.bytes for t in load_sample(key).tensors) < total_capacity


def test_files_match_generators() -> None:
    assert regenerate(check=True) == []


def test_tiny_round_numbers() -> None:
    g = tiny_graph()
    assert len(g.ops) == 10
    assert {t.bytes % 2**30 for t in g.tensors} == {0}
    assert {op.time_s for op in g.ops} == {0.010, 0.020}
    assert [op.phase for op in g.ops].count("optimizer") == 3
    assert all(op.host_ok and op.mutates for op in g.ops if op.phase == "optimizer")
    assert analyze(g).no_offload_peak_bytes == 15 * 2**30


def test_rebuild_equals_file() -> None:
    built = build_sample("llama2-7b-decode")
    loaded = load_sample("llama2-7b-decode")
    assert built.tensors == loaded.tensors and built.ops == loaded.ops


def test_unknown_sample() -> None:
    with pytest.raises(InputError, match=r"unknown sample 'gpt5'.*tiny"):
        load_sample("gpt5")
