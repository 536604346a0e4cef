"""Pure helpers behind the sidebar: edit units and applying widget values to a hardware dict."""

from __future__ import annotations

import pytest

from core.hardware import hardware_from_dict, hardware_to_dict
from core.sources.presets import load_preset
from ui import widgets
from ui.widgets import capacity_unit, edited_hardware_dict


def test_capacity_unit():
    assert capacity_unit(80 * 2**30) == ("GiB", 2**30)
    assert capacity_unit(3 * 2**40) == ("TiB", 2**40)
    assert capacity_unit(512 * 2**20) == ("MiB", 2**20)


def test_untouched_widgets_keep_exact_figures():
    base = hardware_to_dict(load_preset("teaching"))
    link = base["links"][0]
    name = f"{link['src']}->{link['dst']}"
    shown = {"in:cap:HBM": 8.0, f"in:bw:{name}": round(link["bandwidth_Bps"] / 1e9, 3), f"in:lat:{name}": 0.0}
    assert edited_hardware_dict(base, shown) == base


def test_edits_apply_in_widget_units():
    base = hardware_to_dict(load_preset("teaching"))
    out = edited_hardware_dict(base, {"in:cap:HBM": 12.5, "in:bw:DDR->HBM": 32.0, "in:lat:DDR->HBM": 5.0})
    hw = hardware_from_dict(out)
    assert hw.capacity("HBM") == int(12.5 * 2**30)
    link = hw.link_by_pair[("DDR", "HBM")]
    assert link.bandwidth_Bps == pytest.approx(32e9) and link.latency_s == pytest.approx(5e-6)
    assert base["tiers"][0]["capacity_bytes"] == 8 * 2**30  # the base is not modified


def test_edit_summary_names_what_changed():
    base = {"name": "box", "compute_tier": "HBM",
            "tiers": [{"name": "HBM", "capacity_bytes": 80 * 2**30}, {"name": "SSD", "capacity_bytes": 2**42}],
            "links": [{"src": "HBM", "dst": "SSD", "bandwidth_Bps": 5e9, "latency_s": 1e-5}]}
    assert widgets.edit_summary(base, base) == ""
    assert widgets.hardware_label("box", base, base) == "box"
    current = {"tiers": [{"name": "HBM", "capacity_bytes": 48 * 2**30}, {"name": "POOL", "capacity_bytes": 2**40}],
               "links": []}
    assert widgets.edit_summary(base, current) == "HBM 48 GiB, + POOL, − SSD"
    slower = {**base, "links": [{"src": "HBM", "dst": "SSD", "bandwidth_Bps": 2.5e9, "latency_s": 1e-5}]}
    assert widgets.hardware_label("box", base, slower) == "box (edited: HBM->SSD 2.5 GB/s)"
