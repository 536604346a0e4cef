"""Hardware presets: load, carry a source on every figure, have the published numbers."""

from __future__ import annotations

import json

import pytest

from core.errors import InputError
from core.hardware import hardware_from_dict, hardware_to_dict
from core.sources.presets import list_presets, load_preset, preset_path

KEYS = [p.key for p in list_presets()]
GiB = 2**30


def test_expected_presets() -> None:
    assert {"ascend-910b", "ascend-910c-supernode", "h100-sxm", "gh200", "a100-40gb-pcie", "t4-flexgen",
            "teaching"} <= set(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_every_figure_has_a_source(key: str) -> None:
    raw = json.loads(preset_path(key).read_text())
    assert raw["format"] == "tierplan-hardware/1"
    assert raw["compute"]["source"]
    for tier in raw["tiers"]:
        assert tier["source"], tier["name"]
        if "compute" in tier:
            assert tier["compute"]["source"]
    for link in raw["links"]:
        assert link["source"]


@pytest.mark.parametrize("key", KEYS)
def test_links_both_directions_and_roundtrip(key: str) -> None:
    hw = load_preset(key)
    pairs = {(link.src, link.dst) for link in hw.links}
    assert all((dst, src) in pairs for src, dst in pairs)
    assert hw.compute_tier == "HBM"
    assert hardware_from_dict(hardware_to_dict(hw)) == hw
    host = [t for t in hw.tiers if t.compute is not None]
    assert host, "a host tier with compute (CPU Adam)"
    assert all(t.compute.memory_bandwidth_Bps > 0 for t in host)


def test_published_figures() -> None:
    h100 = load_preset("h100-sxm")
    assert h100.capacity("HBM") == 80 * GiB and h100.compute.peak_flops == 989e12
    assert h100.link_by_pair[("DDR", "HBM")].bandwidth_Bps == 64e9
    gh = load_preset("gh200")
    assert gh.capacity("DDR") == 480 * GiB and gh.link_by_pair[("DDR", "HBM")].bandwidth_Bps == 450e9
    t4 = load_preset("t4-flexgen")
    assert (t4.capacity("HBM"), t4.capacity("DDR"), t4.capacity("SSD")) == (16e9, 208e9, 1.5e12)  # decimal GB, as the T4 datasheet and FlexGen say
    assert t4.link_by_pair[("SSD", "DDR")].bandwidth_Bps == 2e9
    assert load_preset("ascend-910b").capacity("HBM") == 64 * GiB
    sn = load_preset("ascend-910c-supernode")
    assert "Pool" in sn.tier_by_name and sn.offload_tiers[0] == "Pool"
    assert load_preset("a100-40gb-pcie").link_by_pair[("HBM", "DDR")].bandwidth_Bps == 32e9


def test_unknown_preset() -> None:
    with pytest.raises(InputError, match="unknown hardware preset 'dgx9'"):
        load_preset("dgx9")
    with pytest.raises(InputError):
        preset_path("../pyproject")
