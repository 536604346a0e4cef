"""A self-contained HTML report of one plan, for people who will not open the dashboard.

One file: the KPIs, the bytes moved per link, the schedule, the memory curve of every used tier and a
summary of the decisions. plotly.js is inlined once (no network needed to open it); everything else is
plain HTML and CSS. Streamlit-free, so the CLI or a test can build it too.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections import Counter

import plotly.io as pio

from core.graph import Graph
from core.hardware import Hardware
from core.plan import Plan
from core.units import format_bandwidth, format_bytes
from ui import figures, kpis

__all__ = ["build_report"]

_CSS = """
body{font-family:Inter,Segoe UI,Helvetica,Arial,sans-serif;color:#1F2933;margin:0;background:#F7F8FA}
main{max-width:1200px;margin:0 auto;padding:28px 32px 60px}
h1{margin:0 0 4px;font-size:28px} h2{margin:36px 0 8px;font-size:20px;border-bottom:1px solid #E4E7EB;padding-bottom:6px}
.sub{color:#52606D;margin-bottom:20px}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.kpi{background:#fff;border:1px solid #E4E7EB;border-radius:10px;padding:12px 14px}
.kpi .label{color:#52606D;font-size:13px} .kpi .value{font-size:24px;font-weight:600;margin:4px 0}
.kpi .delta{color:#52606D;font-size:13px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:14px}
th,td{border:1px solid #E4E7EB;padding:6px 10px;text-align:left} th{background:#F3F5F8}
.chart{background:#fff;border:1px solid #E4E7EB;border-radius:10px;padding:6px;margin-top:10px}
footer{color:#7B8794;font-size:12px;margin-top:40px}
"""


def _table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_report(graph: Graph, hardware: Hardware, plan: Plan, *, model_label: str | None = None,
                 hardware_label: str | None = None) -> str:
    """The report as one HTML string (about 5 MB: plotly.js is inlined so it opens offline)."""
    from core.metrics import no_offload_curves, occupancy_curves, stream_timelines

    label = model_label or graph.name
    metrics = plan.metrics
    unit = figures.time_scale(float(metrics.get("step_time_s", 0.0)))
    parts: list[str] = []
    tiles = "".join(
        f"<div class='kpi'><div class='label'>{html.escape(k.label)}</div><div class='value'>{html.escape(k.value)}</div>"
        f"<div class='delta'>{html.escape(k.delta or '')}</div></div>"
        for k in kpis.plan_kpis(metrics, hardware.compute_tier)
    )
    parts.append(f"<h2>Key numbers</h2><div class='kpis'>{tiles}</div>")
    links = {link.name: link.bandwidth_Bps for link in hardware.links}
    parts.append("<h2>Bytes moved per link</h2>" + _table(kpis.link_rows(metrics, links)))
    hw_rows: list[dict[str, object]] = [{"tier": t.name, "capacity": format_bytes(t.capacity_bytes),
                                         "role": "compute tier" if t.name == hardware.compute_tier else "offload tier"}
                                        for t in hardware.tiers]
    parts.append("<h2>Hardware</h2>" + _table(hw_rows) + "<p></p>" + _table(
        [{"link": lk.name, "bandwidth": format_bandwidth(lk.bandwidth_Bps), "latency": f"{lk.latency_s * 1e6:.3g} µs"}
         for lk in hardware.links]))
    figs = []
    streams = stream_timelines(graph, plan)
    figs.append(("Schedule", "One row per stream: compute, then each link. Colours: op category, or the kind "
                 "of tensor a transfer moves.", figures.schedule_figure(streams, time_unit=unit)))
    curves = occupancy_curves(graph, plan)
    before = no_offload_curves(graph, hardware)
    align = figures.alignment(graph, hardware, plan)
    for tier in hardware.tiers:
        curve = curves.get(tier.name)
        if curve is None or not any(len(v) and float(max(v)) > 0 for v in curve.bytes_by_kind.values()):
            continue
        figs.append((f"Memory in {tier.name}", "Stacked by tensor kind over the ops of the step (the no-offload run lined up op by op); dashed: capacity; dotted: without offload.",
                     figures.memory_figure(curve, tier=tier.name, capacity_bytes=tier.capacity_bytes, time_unit=unit,
                                           before=before.get(tier.name) if tier.name == hardware.compute_tier else None,
                                           align=(align[0], align[1] if tier.name == hardware.compute_tier else None))))
    for k, (title, note, fig) in enumerate(figs):
        div = pio.to_html(fig, full_html=False, include_plotlyjs=(k == 0), config={"displaylogo": False},
                          default_width="100%")
        parts.append(f"<h2>{html.escape(title)}</h2><p class='sub'>{html.escape(note)}</p><div class='chart'>{div}</div>")
    actions = Counter((d.action, d.tier) for d in plan.decisions)
    parts.append("<h2>Decisions</h2>" + _table([{"action": a, "tier": t, "spans": n} for (a, t), n in sorted(actions.items())]))
    sizes = graph.tensor_by_id
    moved = sorted((d for d in plan.decisions if d.action != "keep"),
                   key=lambda d: -(sizes[d.tensor].bytes if d.tensor in sizes else 0))[:15]
    parts.append("<p class='sub'>Largest tensors that move or are recomputed:</p>" + _table([
        {"tensor": d.tensor, "size": format_bytes(sizes[d.tensor].bytes) if d.tensor in sizes else "?",
         "action": d.action, "tier": d.tier, "why": d.reason} for d in moved]))
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Tierplan report — {label}"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><main>"
        f"<h1>{html.escape(title)}</h1><div class='sub'>on <b>{html.escape(hardware_label or hardware.name)}</b> with policy "
        f"<b>{html.escape(plan.policy)}</b> · {len(graph.ops):,} ops, {len(graph.tensors):,} tensors</div>"
        + "".join(parts)
        + f"<footer>Generated by Tierplan on {stamp}. Modelled times (roofline + link bandwidth), not measured."
        "</footer></main></body></html>"
    )
