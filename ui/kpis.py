"""Headline numbers of a plan in human units, shared by the Plan page, the Compare page and the HTML report.

Input is the metrics mapping of :func:`core.metrics.compute_metrics` (``plan.metrics``); nothing is
recomputed here, only chosen, labelled and formatted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.units import format_bandwidth, format_bytes, format_time

__all__ = ["Kpi", "plan_kpis", "link_rows", "compare_row", "format_count", "signed_pct", "ab_rows"]


@dataclass(frozen=True)
class Kpi:
    """One tile: ``value`` is the headline, ``delta`` the comparison underneath (``None``: none)."""

    key: str
    label: str
    value: str
    delta: str | None = None
    delta_color: str = "off"
    help: str = ""


def _pct(x: float) -> str:
    value = round(x * 100, 1) + 0.0  # + 0.0 turns -0.0 into 0.0: never print "−0.0 %"
    return f"{value:.1f} %"


def signed_pct(x: float) -> str:
    """A change in percent with its sign, "+12.5 %" / "−3.0 %", and "0.0 %" (no sign) when it rounds to 0."""
    value = round(x * 100, 1) + 0.0
    if value == 0:
        return "0.0 %"
    return f"{'+' if value > 0 else '−'}{abs(value):.1f} %"


def format_count(n: float) -> str:
    """A count for people: 25.6 M, 6.74 B, 1.2 k (3 significant digits)."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.3g}"


def plan_kpis(metrics: Mapping[str, Any], compute_tier: str, *, gap_to_bound: float | None = None,
              lower_bound_s: float | None = None, bound_pending: bool = False) -> list[Kpi]:
    """Step time (vs compute only), peak memory of the compute tier (vs capacity and no offload), overlap,
    stall, bytes moved and recompute time; plus "within x % of the best possible" when the plan carries a
    gap to a lower bound (``Plan.gap_to_bound``), or a "being computed" tile while the planner's bound stage
    is still to come (``bound_pending``), so the tiles do not jump when it arrives."""
    step = float(metrics.get("step_time_s", 0.0))
    compute_only = float(metrics.get("compute_only_time_s", 0.0))
    slowdown = float(metrics.get("slowdown", 0.0))
    peak = int(metrics.get("peak_bytes", {}).get(compute_tier, 0))
    capacity = int(metrics.get("capacity_bytes", {}).get(compute_tier, 0))
    no_offload = int(metrics.get("no_offload_peak_bytes", 0))
    moved = sum(int(v) for v in metrics.get("transfer_bytes", {}).values())
    n_links = sum(1 for v in metrics.get("transfer_bytes", {}).values() if v)
    overlap = float(metrics.get("overlap_ratio", 0.0))
    stall = float(metrics.get("stall_time_s", 0.0))
    recompute = float(metrics.get("recompute_time_s", 0.0))
    fill = f"{peak / capacity * 100:.0f} % of {format_bytes(capacity)}" if capacity else None
    return [
        Kpi("step_time", "Step time", format_time(step),
            f"{signed_pct(slowdown)} vs {format_time(compute_only)}",
            "inverse" if slowdown > 0.001 else "off",
            f"Modelled time of one step with this plan, against {format_time(compute_only)} of compute only (every "
            "op back to back, never waiting for data)."),
        Kpi("peak", f"Peak {compute_tier}", format_bytes(peak), fill, "off",
            f"Highest occupancy of {compute_tier} during the step. Without offload the peak would be "
            f"{format_bytes(no_offload)}."),
        Kpi("no_offload", "Without offload", format_bytes(no_offload),
            f"{format_bytes(max(0, no_offload - peak))} saved" if no_offload >= peak else None, "normal",
            f"Peak {compute_tier} occupancy if every tensor stayed in {compute_tier} for the whole step."),
        Kpi("overlap", "Transfers hidden", _pct(overlap) if moved else "—", None if moved else "nothing moves", "off",
            "Share of transfer time that runs while compute is busy (100 % = every copy hidden behind compute); "
            "— when the plan moves nothing."),
        Kpi("stall", "Stall", format_time(stall), _pct(stall / step) + " of the step" if step else None,
            "inverse" if stall > 0 else "off", "Time compute waits for a transfer to finish."),
        Kpi("moved", "Bytes moved", format_bytes(moved), f"over {n_links} link{'s' if n_links != 1 else ''}", "off",
            "Total bytes copied between tiers in one step, all links together."),
        Kpi("recompute", "Recompute", format_time(recompute),
            _pct(recompute / step) + " of the step" if step and recompute else None, "off",
            "Time spent re-running ops to regenerate dropped activations instead of storing them."),
        *([Kpi("gap", "Best possible", f"within {_pct(max(0.0, float(gap_to_bound)))}",
               f"bound {format_time(float(lower_bound_s))}" if lower_bound_s is not None else None, "off",
               "How far this step time can be from the best any plan could do: a lower bound on the step time "
               "for these inputs (no plan beats it), and the step's distance above it.")]
          if gap_to_bound is not None else []),
        *([Kpi("gap", "Best possible", "…", "bound being computed", "off",
               "The planner is still refining this plan in the background; the lower bound on the step time "
               "(no plan beats it) comes with one of its stages.")]
          if gap_to_bound is None and bound_pending else []),
    ]


def link_rows(metrics: Mapping[str, Any], links: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Per link: bytes moved, busy time, share of the step it is busy and its effective bandwidth.
    ``links`` maps link name to its nominal bandwidth (to show next to the effective one)."""
    step = float(metrics.get("step_time_s", 0.0)) or 1.0
    moved = metrics.get("transfer_bytes", {})
    busy = metrics.get("transfer_time_s", {})
    names = list(dict.fromkeys([*(links or {}).keys(), *moved.keys()]))
    rows = []
    for name in names:
        nbytes = int(moved.get(name, 0))
        time_s = float(busy.get(name, 0.0))
        row: dict[str, Any] = {
            "link": name,
            "bytes moved": format_bytes(nbytes),
            "busy": format_time(time_s),
            "busy share": f"{time_s / step * 100:.0f} %",
        }
        if links is not None and name in links:
            row["bandwidth"] = format_bandwidth(links[name])
        rows.append(row)
    return rows


def compare_row(title: str, metrics: Mapping[str, Any] | None, compute_tier: str, message: str = "") -> dict[str, Any]:
    """One line of the Compare table (raw numbers for sorting plus the feasibility message)."""
    if metrics is None:
        return {"policy": title, "feasible": False, "step_time_s": None, "slowdown": None, "peak_bytes": None,
                "stall_time_s": None, "moved_bytes": None, "recompute_time_s": None, "overlap_ratio": None,
                "compute_only_time_s": None, "message": message}
    return {
        "policy": title,
        "feasible": True,
        "step_time_s": float(metrics.get("step_time_s", 0.0)),
        "slowdown": float(metrics.get("slowdown", 0.0)),
        "peak_bytes": int(metrics.get("peak_bytes", {}).get(compute_tier, 0)),
        "stall_time_s": float(metrics.get("stall_time_s", 0.0)),
        "moved_bytes": sum(int(v) for v in metrics.get("transfer_bytes", {}).values()),
        "recompute_time_s": float(metrics.get("recompute_time_s", 0.0)),
        "overlap_ratio": float(metrics.get("overlap_ratio", 0.0)),
        "compute_only_time_s": float(metrics.get("compute_only_time_s", 0.0)),
        "message": message,
    }


def ab_rows(a: Mapping[str, Any], b: Mapping[str, Any], compute_tier: str) -> list[dict[str, str]]:
    """Setting A against setting B, one row per headline number: A, B, and B − A (with the relative change)."""
    def moved(m: Mapping[str, Any]) -> int:
        return sum(int(v) for v in m.get("transfer_bytes", {}).values())

    specs: list[tuple[str, float, float, Any]] = [
        ("Step time", float(a.get("step_time_s", 0.0)), float(b.get("step_time_s", 0.0)), format_time),
        (f"Peak {compute_tier}", float(a.get("peak_bytes", {}).get(compute_tier, 0)),
         float(b.get("peak_bytes", {}).get(compute_tier, 0)), lambda v: format_bytes(int(v))),
        ("Stall", float(a.get("stall_time_s", 0.0)), float(b.get("stall_time_s", 0.0)), format_time),
        ("Bytes moved", float(moved(a)), float(moved(b)), lambda v: format_bytes(int(v))),
        ("Recompute", float(a.get("recompute_time_s", 0.0)), float(b.get("recompute_time_s", 0.0)), format_time),
        ("Slowdown vs compute only", float(a.get("slowdown", 0.0)), float(b.get("slowdown", 0.0)), _pct),
    ]
    rows = []
    for label, va, vb, fmt in specs:
        diff = vb - va
        if label.startswith("Slowdown"):
            delta = signed_pct(diff).replace(" %", " points") if round(diff * 100, 1) else "no change"
        elif va == vb:
            delta = "no change"
        else:
            sign = "+" if diff > 0 else "−"
            rel = f" ({signed_pct(diff / va)})" if va else ""
            delta = f"{sign}{fmt(abs(diff))}{rel}"
        rows.append({"": label, "A": fmt(va), "B": fmt(vb), "B − A": delta})
    return rows
