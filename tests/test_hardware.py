"""The hardware format: tiers, links, routes, roofline, overrides, and fuzzing of the loader."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InputError
from core.graph import Op
from core.hardware import (
    Compute,
    Hardware,
    apply_setting,
    hardware_from_dict,
    hardware_to_dict,
    load_hardware,
    op_time_s,
    save_hardware,
    with_capacity,
)

GiB = 2**30


def three_tier() -> dict[str, Any]:
    return {
        "format": "tierplan-hardware/1", "name": "box",
        "compute": {"peak_flops": "100 TFLOPS", "efficiency": 0.5, "memory_bandwidth_Bps": "1 TB/s"},
        "tiers": [{"name": "HBM", "capacity_bytes": "16 GiB"},
                  {"name": "DDR", "capacity_bytes": "256 GiB", "compute": {"peak_flops": "1 TFLOPS"}},
                  {"name": "SSD", "capacity_bytes": "2 TB"}],
        "links": [{"src": "HBM", "dst": "DDR", "bandwidth_Bps": "32 GB/s", "latency_s": "10 us"},
                  {"src": "DDR", "dst": "HBM", "bandwidth_Bps": "32 GB/s"},
                  {"src": "DDR", "dst": "SSD", "bandwidth_Bps": "2 GB/s"},
                  {"src": "SSD", "dst": "DDR", "bandwidth_Bps": "4 GB/s"}],
    }


def error_of(raw: Any) -> str:
    with pytest.raises(InputError) as err:
        hardware_from_dict(raw, source="hw.json")
    return err.value.message


class TestLoad:
    def test_units_and_defaults(self) -> None:
        hw = hardware_from_dict(three_tier())
        assert hw.compute_tier == "HBM" and hw.capacity("HBM") == 16 * GiB
        assert hw.compute.peak_flops == 100e12 and hw.compute.memory_efficiency == 0.8
        assert hw.tier_by_name["DDR"].compute is not None
        assert hw.link_by_pair[("HBM", "DDR")].latency_s == pytest.approx(1e-5)

    def test_routes(self) -> None:
        hw = hardware_from_dict(three_tier())
        assert [link.name for link in hw.route("SSD", "HBM")] == ["SSD->DDR", "DDR->HBM"]
        assert hw.route_time_s("SSD", "HBM", 4 * 10**9) == pytest.approx(1.0 + 0.125)
        assert hw.offload_tiers == ("DDR", "SSD")

    def test_roundtrip(self, tmp_path: Path) -> None:
        hw = hardware_from_dict(three_tier())
        save_hardware(hw, tmp_path / "hw.json")
        assert load_hardware(tmp_path / "hw.json") == hw
        assert hardware_from_dict(hardware_to_dict(hw)) == hw

    def test_roofline(self) -> None:
        c = Compute(peak_flops=100e12, efficiency=0.5, memory_bandwidth_Bps=1e12, memory_efficiency=0.5)
        assert op_time_s(Op("a", (), (), flops=100e12), c) == pytest.approx(2.0)
        assert op_time_s(Op("b", (), (), bytes_accessed=1e12), c) == pytest.approx(2.0)
        assert op_time_s(Op("c", (), (), time_s=0.25, flops=1e20), c) == 0.25

    def test_fixed_time_is_scaled_on_a_slower_compute(self) -> None:
        """A measured time_s holds on the device; on host CPUs it is scaled by the larger of the flops and
        bandwidth ratios, whatever work figures the op gives (never below its own roofline ratio)."""
        device = Compute(peak_flops=100e12, efficiency=0.5, memory_bandwidth_Bps=2e12, memory_efficiency=0.5)
        host = Compute(peak_flops=1e12, efficiency=0.5, memory_bandwidth_Bps=100e9, memory_efficiency=0.5)
        bare = Op("adam", (), (), time_s=0.001)
        assert op_time_s(bare, device) == 0.001
        assert op_time_s(bare, device, device) == 0.001
        assert op_time_s(bare, host, device) == pytest.approx(0.001 * 100)  # flops ratio 100 > bandwidth 20
        memory_bound = Op("adam", (), (), time_s=0.001, flops=1e9, bytes_accessed=1e10)
        # its own rooflines: device max(0.02 ms, 10 ms), host max(2 ms, 200 ms): x20 <= x100
        assert op_time_s(memory_bound, host, device) == pytest.approx(0.001 * 100)
        no_bw = Compute(peak_flops=10e12, efficiency=0.5)
        assert op_time_s(bare, no_bw, device) == pytest.approx(0.001 * 10)  # bandwidth unknown: flops only

    def test_apply_setting(self) -> None:
        hw = hardware_from_dict(three_tier())
        assert apply_setting(hw, "HBM.capacity", "24GiB").capacity("HBM") == 24 * GiB
        assert apply_setting(hw, "HBM->DDR.bandwidth", "64GB/s").link_by_pair[("HBM", "DDR")].bandwidth_Bps == 64e9
        assert apply_setting(hw, "compute.efficiency", 0.7).compute.efficiency == 0.7
        with pytest.raises(InputError, match="no tier 'L3'"):
            apply_setting(hw, "L3.capacity", "1GiB")
        with pytest.raises(InputError, match="--set"):
            apply_setting(hw, "HBM.capacity", "-5 GB")

    def test_with_capacity(self) -> None:
        hw = with_capacity(hardware_from_dict(three_tier()), "DDR", 5)
        assert isinstance(hw, Hardware) and hw.capacity("DDR") == 5


class TestErrors:
    @pytest.mark.parametrize(("edit", "needle"), [
        (lambda r: r.update(format="x"), "format: expected format 'tierplan-hardware/1'"),
        (lambda r: r.pop("compute"), "compute: expected an object"),
        (lambda r: r["compute"].pop("peak_flops"), "compute: missing required field 'peak_flops'"),
        (lambda r: r["compute"].update(peak_flops=0), "compute.peak_flops: must be > 0"),
        (lambda r: r["compute"].update(efficiency=1.5), "compute.efficiency: must be a number in (0, 1]"),
        (lambda r: r.update(tiers=[]), "tiers: expected a non-empty list"),
        (lambda r: r["tiers"][1].update(name="HBM"), "tiers[1].name: duplicate tier name 'HBM'"),
        (lambda r: r["tiers"][0].update(capacity_bytes="lots"), "tiers[0].capacity_bytes: cannot read 'lots'"),
        (lambda r: r["tiers"][0].update(capacity_bytes=1e30), "capacity 1e+30 bytes is implausible"),
        (lambda r: r.update(compute_tier="L2"), "compute_tier: compute tier 'L2' is not one of the tiers"),
        (lambda r: r["links"][0].update(dst="NVM"), "links[0].dst: unknown tier 'NVM'"),
        (lambda r: r["links"][0].update(dst="HBM"), "links[0] (HBM->HBM): a link must join two different tiers"),
        (lambda r: r["links"].append(dict(r["links"][0])), "links[4] (HBM->DDR): duplicate link HBM->DDR"),
        (lambda r: r["links"][0].update(bandwidth_Bps=0), "links[0] (HBM->DDR).bandwidth_Bps: must be > 0"),
        (lambda r: r["links"].pop(3), "tiers[2]: tier 'SSD' has no path of links to the compute tier"),
        (lambda r: r["links"].pop(2), "tier 'SSD' has no path of links from the compute tier"),
    ])
    def test_named(self, edit: Any, needle: str) -> None:
        raw = three_tier()
        edit(raw)
        message = error_of(raw)
        assert message.startswith("hw.json") and needle in message

    def test_malformed_json(self) -> None:
        with pytest.raises(InputError, match=r"hw\.json: malformed JSON"):
            load_hardware(b'{"format": ', source="hw.json")


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=6), st.sampled_from(["1 GiB", "10 GB/s", "5 us", "1 TFLOPS", "HBM", "DDR", "SSD"]),
                    st.lists(st.integers(), max_size=2), st.just({}), st.just({"peak_flops": "1 TFLOPS"}))


@st.composite
def mutated_hardware(draw: Any) -> Any:
    raw = three_tier()
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["top", "compute", "tier", "link", "drop_link", "drop_tier"]))
        if where == "top":
            raw[draw(st.sampled_from(["format", "name", "compute_tier", "description", "meta"]))] = draw(_VALUES)
        elif where == "compute":
            raw["compute"][draw(st.sampled_from(["peak_flops", "efficiency", "memory_bandwidth_Bps",
                                                  "memory_efficiency", "source"]))] = draw(_VALUES)
        elif where == "tier":
            t = raw["tiers"][draw(st.integers(0, len(raw["tiers"]) - 1))]
            t[draw(st.sampled_from(["name", "capacity_bytes", "compute", "source"]))] = draw(_VALUES)
        elif where == "link" and raw["links"]:
            link = raw["links"][draw(st.integers(0, len(raw["links"]) - 1))]
            link[draw(st.sampled_from(["src", "dst", "bandwidth_Bps", "latency_s", "source"]))] = draw(_VALUES)
        elif where == "drop_link" and raw["links"]:
            raw["links"].pop(draw(st.integers(0, len(raw["links"]) - 1)))
        elif where == "drop_tier" and len(raw["tiers"]) > 1:
            raw["tiers"].pop(draw(st.integers(0, len(raw["tiers"]) - 1)))
    if draw(st.integers(0, 5)) == 0:
        raw[draw(st.sampled_from(["tiers", "links", "compute"]))] = copy.deepcopy(draw(_VALUES))
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_hardware())
def test_fuzz_mutated_hardware(raw: Any) -> None:
    """Every mutated hardware file is Hardware or a clean one-line InputError."""
    try:
        hw = load_hardware(json.dumps(raw).encode(), source="fuzz.json")
    except InputError as exc:
        assert exc.message.startswith("fuzz.json") and "\n" not in exc.message
        return
    assert hardware_from_dict(hardware_to_dict(hw)) == hw
    for tier in hw.offload_tiers:
        assert hw.route_time_s(tier, hw.compute_tier, GiB) > 0
