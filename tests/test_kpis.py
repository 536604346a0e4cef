"""KPI tiles and per-link rows from a metrics mapping (numbers chosen so every value is checkable)."""

from __future__ import annotations

from ui.kpis import compare_row, link_rows, plan_kpis

METRICS = {
    "step_time_s": 0.25, "compute_only_time_s": 0.2, "slowdown": 0.25, "stall_time_s": 0.05,
    "recompute_time_s": 0.01, "overlap_ratio": 0.8, "no_offload_peak_bytes": 12 * 2**30,
    "peak_bytes": {"HBM": 6 * 2**30, "DDR": 2**30}, "capacity_bytes": {"HBM": 8 * 2**30, "DDR": 64 * 2**30},
    "transfer_bytes": {"HBM->DDR": 3 * 2**30, "DDR->HBM": 2**30}, "transfer_time_s": {"HBM->DDR": 0.1, "DDR->HBM": 0.05},
}


def test_plan_kpis_values():
    k = {x.key: x for x in plan_kpis(METRICS, "HBM")}
    assert k["step_time"].value == "250 ms"
    assert k["step_time"].delta == "+25.0 % vs 200 ms"
    assert "200 ms of compute only" in k["step_time"].help
    assert k["step_time"].delta_color == "inverse"
    assert k["peak"].label == "Peak HBM" and k["peak"].value == "6 GiB" and k["peak"].delta == "75 % of 8 GiB"
    assert k["no_offload"].delta == "6 GiB saved"
    assert k["overlap"].value == "80.0 %"
    assert k["stall"].delta == "20.0 % of the step"
    assert k["moved"].value == "4 GiB" and k["moved"].delta == "over 2 links"
    assert k["recompute"].value == "10 ms"


def test_no_slowdown_is_neutral():
    k = {x.key: x for x in plan_kpis({**METRICS, "slowdown": 0.0, "stall_time_s": 0.0}, "HBM")}
    assert k["step_time"].delta_color == "off" and k["stall"].delta_color == "off"


def test_link_rows_include_idle_links():
    rows = link_rows(METRICS, {"HBM->DDR": 64e9, "DDR->HBM": 64e9, "DDR->SSD": 7e9})
    by = {r["link"]: r for r in rows}
    assert by["HBM->DDR"]["bytes moved"] == "3 GiB" and by["HBM->DDR"]["busy share"] == "40 %"
    assert by["DDR->SSD"]["bytes moved"] == "0 B" and by["DDR->SSD"]["bandwidth"] == "7 GB/s"


def test_compare_row_feasible_and_not():
    ok = compare_row("Tierplan", METRICS, "HBM")
    assert ok["feasible"] and ok["moved_bytes"] == 4 * 2**30 and ok["peak_bytes"] == 6 * 2**30
    bad = compare_row("None", None, "HBM", "does not fit")
    assert not bad["feasible"] and bad["message"] == "does not fit" and bad["step_time_s"] is None


def test_no_negative_zero_and_counts_in_human_units():
    from ui.kpis import format_count, signed_pct

    k = {x.key: x for x in plan_kpis({**METRICS, "slowdown": -0.0001}, "HBM")}
    assert k["step_time"].delta.startswith("0.0 %")
    assert signed_pct(-0.00004) == "0.0 %" and signed_pct(0.125) == "+12.5 %" and signed_pct(-0.03) == "−3.0 %"
    assert format_count(25_557_032) == "25.6 M" and format_count(6.74e9) == "6.74 B" and format_count(512) == "512"


def test_transfers_hidden_is_a_dash_when_nothing_moves():
    k = {x.key: x for x in plan_kpis({**METRICS, "transfer_bytes": {}, "overlap_ratio": 1.0}, "HBM")}
    assert k["overlap"].value == "—"


def test_gap_to_bound_tile_only_when_the_plan_has_one():
    assert "gap" not in {k.key for k in plan_kpis(METRICS, "HBM")}
    k = {x.key: x for x in plan_kpis(METRICS, "HBM", gap_to_bound=0.042, lower_bound_s=0.24)}
    assert k["gap"].value == "within 4.2 %" and k["gap"].delta == "bound 240 ms"


def test_ab_rows_deltas():
    from ui.kpis import ab_rows

    b = {**METRICS, "step_time_s": 0.3, "stall_time_s": 0.05}
    rows = {r[""]: r for r in ab_rows(METRICS, b, "HBM")}
    assert rows["Step time"]["A"] == "250 ms" and rows["Step time"]["B"] == "300 ms"
    assert rows["Step time"]["B − A"] == "+50 ms (+20.0 %)"
    assert rows["Stall"]["B − A"] == "no change"
