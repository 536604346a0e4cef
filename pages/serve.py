"""Serve page: a prefix KV cache across requests on HBM, DDR, SSD (UCM's half), replayed on a trace.

Thin: read widgets, call ``core.serve``, draw ``ui.serve_figures``. Results are cached with
``st.cache_resource`` keyed by a digest of the trace and the settings, so moving a knob back is instant.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.errors import TierplanError
from core.hardware import Hardware, apply_setting, hardware_to_dict, with_capacity
from core.serve.capacity import run_capacity
from core.serve.model import load_serve_model, model_choices
from core.serve.policies import POLICIES, POLICY_HELP
from core.serve.simulate import ServeConfig, ServeResult, simulate
from core.serve.trace import SyntheticSpec, Trace, load_trace, sample_trace_path, summarize, synthetic_trace
from core.units import format_bytes, format_time
from ui import serve_figures as sf
from ui import state, view
from ui.kpis import Kpi

GiB = 2**30
SHIPPED, SYNTHETIC, UPLOAD = "Mooncake synthetic trace (shipped)", "Synthetic generator", "Upload a trace"


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------- cached core


@st.cache_resource(max_entries=6, show_spinner=False)
def _shipped_trace() -> Trace:
    return load_trace(sample_trace_path(), source="mooncake-synthetic.jsonl")


@st.cache_resource(max_entries=6, show_spinner=False)
def _synthetic(spec_json: str) -> Trace:
    return synthetic_trace(SyntheticSpec(**json.loads(spec_json)))


@st.cache_resource(max_entries=4, show_spinner=False)
def _uploaded(digest: str, name: str, _data: bytes) -> Trace:
    return load_trace(_data, source=name)


@st.cache_resource(max_entries=8, show_spinner=False)
def _trace_facts(trace_digest: str, _trace: Trace) -> tuple[Any, np.ndarray]:
    summary = summarize(_trace)
    _, readers = np.unique(_trace.block_ids, return_counts=True)
    return summary, readers


@st.cache_resource(max_entries=48, show_spinner=False)
def _simulate(trace_digest: str, model_name: str, hw_json: str, cfg_json: str, _trace: Trace) -> ServeResult | str:
    from core.hardware import hardware_from_dict

    try:
        hw = hardware_from_dict(json.loads(hw_json), source="hardware settings")
        cfg = _config_from_json(cfg_json)
        return simulate(_trace, load_serve_model(model_name), hw, cfg)
    except TierplanError as exc:
        return str(exc)


@st.cache_resource(max_entries=8, show_spinner=False)
def _capacity_curve(trace_digest: str, capacities: tuple[int, ...], _trace: Trace) -> dict[str, list[float]]:
    return {p: [run_capacity(_trace, p, c).prefix_hit_rate for c in capacities] for p in POLICIES}


@st.cache_resource(max_entries=16, show_spinner=False)
def _timeline_figures(trace_digest: str, model_name: str, hw_json: str, cfg_json: str,
                      _result: ServeResult) -> dict[str, Any]:
    """Occupancy, link traffic and queue figures, built once per simulation."""
    r = _result
    return {
        "occupancy": sf.occupancy_figure(r.occupancy_t_s, r.occupancy, r.capacity_blocks, r.block_bytes),
        "links": sf.link_traffic_figure(r.log.transfers, float(r.finish_s.max())),
        "queue": sf.queue_figure(r.queue_t_s, r.queue_len),
    }


def _config_from_json(text: str) -> ServeConfig:
    raw = json.loads(text)
    raw["cache_tiers"] = None if raw["cache_tiers"] is None else tuple(raw["cache_tiers"])
    raw["tier_capacity_bytes"] = tuple((t, int(c)) for t, c in raw["tier_capacity_bytes"])
    return ServeConfig(**raw)


def _config_json(cfg: ServeConfig) -> str:
    return json.dumps(asdict(cfg), sort_keys=True)


# ---------------------------------------------------------------------------------------------- inputs


def _trace_input() -> Trace | None:
    source = st.radio("Trace", [SHIPPED, SYNTHETIC, UPLOAD], key="sv:trace", horizontal=True)
    if source == SHIPPED:
        st.caption("Mooncake's published synthetic trace (FAST'25, Apache-2.0): 3,993 requests with 512-token "
                   "prefix block hashes.")
        return _shipped_trace()
    if source == SYNTHETIC:
        with st.expander("Generator settings", expanded=True):
            c = st.columns(4)
            spec = SyntheticSpec(
                requests=int(c[0].number_input("Requests", 10, 50_000, 1000, step=100, key="sv:syn:n")),
                seed=int(c[1].number_input("Seed", 0, 10**6, 0, key="sv:syn:seed")),
                arrivals=c[2].selectbox("Arrivals", ["poisson", "bursty"], key="sv:syn:arr"),
                rate_per_s=float(c[3].number_input("Conversations / s", 0.01, 1000.0, 2.0, key="sv:syn:rate")),
                system_prompts=int(c[0].number_input("Shared system prompts", 0, 1000, 4, key="sv:syn:sys")),
                system_prompt_tokens=int(c[1].number_input("System prompt tokens", 0, 100_000, 3000, step=256,
                                                           key="sv:syn:systok")),
                turns_mean=float(c[2].number_input("Turns per conversation", 1.0, 50.0, 3.0, key="sv:syn:turns")),
                user_tokens_mean=float(c[3].number_input("Mean message tokens", 1.0, 100_000.0, 800.0, key="sv:syn:user")),
            )
        return _synthetic(json.dumps(asdict(spec)))
    up = st.file_uploader("Mooncake JSONL or CSV (TIMESTAMP, ContextTokens, GeneratedTokens)", type=["jsonl", "json", "csv"],
                          key="sv:upload")
    if up is None:
        st.info("Upload a trace to replay it.", icon=":material/upload:")
        return None
    data = up.getvalue()
    try:
        return _uploaded(hashlib.sha256(data).hexdigest(), up.name, data)
    except TierplanError as exc:
        st.error(f"**The uploaded trace cannot be read.** {exc}", icon=":material/error:")
        return None


SIDEBAR = "the sidebar's hardware"


@st.cache_resource(show_spinner=False)
def _preset(key: str) -> Hardware:
    from core.sources.presets import load_preset

    return load_preset(key)


def _hardware(model_name: str) -> Hardware:
    """The sidebar's hardware (with its edits) when the model's weights fit in it, else a preset."""
    from core.sources.presets import list_presets

    inputs = state.current_inputs()
    keys = [p.key for p in list_presets()]
    options = ([SIDEBAR] if inputs is not None else []) + keys
    weights = load_serve_model(model_name).weight_bytes
    fits = inputs is not None and inputs.hardware.capacity(inputs.hardware.compute_tier) > weights
    default = SIDEBAR if fits else ("h100-sxm" if "h100-sxm" in keys else keys[0])
    choice = st.selectbox("Hardware", options, index=options.index(default), key="sv:hw",
                          format_func=lambda k: f"{k} ({inputs.hardware.name})" if k == SIDEBAR and inputs else k,
                          help="A preset, or the sidebar's hardware with its edits")
    return inputs.hardware if choice == SIDEBAR and inputs is not None else _preset(choice)


def _default_model() -> str:
    inputs = state.current_inputs()
    source = str(inputs.graph.meta.get("source", "")) if inputs is not None else ""
    for name in model_choices():
        if name in source:
            return name
    return "llama-2-7b"


def _knobs() -> tuple[str, Hardware, ServeConfig]:
    names = list(model_choices())
    default = _default_model()
    c0, c1, c2, c3, c4 = st.columns([2, 2, 3, 1, 1])
    model_name = c1.selectbox("Model (HF config)", names, index=names.index(default) if default in names else 0,
                              key="sv:model")
    with c0:
        hw = _hardware(model_name)
    policy = c2.selectbox("Eviction policy", POLICIES, index=POLICIES.index("tierplan"), key="sv:policy",
                          format_func=lambda p: f"{p} — {POLICY_HELP[p]}")
    prefill = int(c3.number_input("Prefill instances", 1, 256, 4, key="sv:prefill"))
    decode = int(c4.number_input("Decode instances", 1, 256, 4, key="sv:decode"))
    weights = load_serve_model(model_name).weight_bytes
    need_tp = 1
    while weights >= need_tp * hw.capacity(hw.compute_tier) * 0.9 and need_tp < 64:
        need_tp *= 2
    tp = int(c4.number_input("Devices per instance (TP)", 1, 64, need_tp, key=f"sv:tp:{model_name}",
                             help="Ideal tensor parallelism: weights, HBM and FLOPs add up; collectives not costed"))
    lower = [t for t in hw.offload_tiers]
    caps: list[tuple[str, int]] = []
    used: list[str] = []
    cols = st.columns(len(lower) + 2)
    hbm_cache = cols[0].toggle(f"Prefix cache in {hw.compute_tier}", value=True, key="sv:hbmcache",
                               help="What HBM has left after the weights and the prompts being prefilled")
    top = hw.compute_tier
    hbm_gib = cols[1].number_input(f"{top} per device (GiB)", 1.0, 100_000.0, float(hw.capacity(top)) / GiB,
                                   key=f"sv:cap:{top}", help="Holds the weights, the active prompts' KV and the cache")
    if abs(hbm_gib * GiB - hw.capacity(top)) >= 1:
        hw = with_capacity(hw, top, int(hbm_gib * GiB))
    for col, tier in zip(cols[2:], lower):
        cap_gib = col.number_input(f"{tier} cache (GiB)", 0.0, float(hw.capacity(tier)) / GiB,
                                   float(hw.capacity(tier)) / GiB, key=f"sv:cap:{tier}",
                                   help=f"Share of {tier} ({format_bytes(hw.capacity(tier))}) used for cached blocks; 0 = off")
        caps.append((tier, int(cap_gib * GiB)))
        if cap_gib > 0:
            used.append(tier)
    with st.expander("Links and placement", expanded=False):
        lc = st.columns(4)
        for k, link in enumerate(hw.links):
            gbps = lc[k % 4].number_input(f"{link.name} (GB/s)", 0.001, 10_000.0, link.bandwidth_Bps / 1e9,
                                          key=f"sv:bw:{link.name}")
            if abs(gbps * 1e9 - link.bandwidth_Bps) > 1e-3 * link.bandwidth_Bps:
                hw = apply_setting(hw, f"{link.name}.bandwidth", f"{gbps}GB/s")
        pc = st.columns(4)
        overlap = pc[0].radio("Load/compute", ["layer", "sequential"], key="sv:overlap",
                              format_func=lambda o: "layer-wise overlap" if o == "layer" else "load, then compute")
        inclusive = pc[1].toggle("Inclusive (loaded blocks keep their lower copy)", value=False, key="sv:incl")
        write_through = pc[1].toggle("Write-through (write new blocks down at once)", value=False, key="sv:wt",
                                     disabled=not inclusive)
        admit = int(pc[2].number_input("Write down after k uses", 1, 100, 1, key="sv:admit",
                                       help="vLLM-style reuse-count admission to the lower tiers"))
        selective = pc[3].toggle("Load only what beats recompute", value=True, key="sv:selective",
                                 help="Recompute hit blocks whose load (e.g. from SSD behind a busy link) would take longer")
    cfg = ServeConfig(policy=policy, hbm_cache=hbm_cache, cache_tiers=tuple(used), tier_capacity_bytes=tuple(caps),
                      prefill_instances=prefill, decode_instances=decode, overlap=overlap, inclusive=inclusive,
                      write_through=write_through and inclusive, admit_after=admit, selective_load=selective,
                      tensor_parallel=tp)
    return model_name, hw, cfg


# ---------------------------------------------------------------------------------------------- sections


def _trace_summary(trace: Trace, digest: str) -> None:
    summary, readers = _trace_facts(digest, trace)
    view.kpi_tiles([
        Kpi("requests", "Requests", f"{summary.requests:,}", help=f"over {format_time(summary.duration_s)}"),
        Kpi("prompt_blocks", "Prompt blocks", f"{summary.blocks_total:,}", help="512-token blocks of all prompts"),
        Kpi("distinct_blocks", "Distinct blocks", f"{summary.blocks_distinct:,}"),
        Kpi("reuse_ceiling", "Reuse ceiling", f"{100 * summary.reuse_ceiling:.2f} %",
            help="Prefix hit rate of an unlimited cache: a block hits when it and every block before it were seen"),
        Kpi("mean_prompt", "Mean prompt (tokens)", f"{summary.input_tokens_mean:,.0f}"),
        Kpi("mean_output", "Mean output (tokens)", f"{summary.output_tokens_mean:,.0f}"),
    ], per_row=6)
    if summary.note:
        st.warning(summary.note, icon=":material/info:")
    c1, c2 = st.columns(2)
    with c1:
        view.chart(sf.arrivals_figure(trace.arrival_s, trace.input_tokens), key="sv:fig:arrivals")
    with c2:
        view.chart(sf.sharing_figure(readers), key="sv:fig:sharing")


def _kpis(result: ServeResult) -> dict[str, Any]:
    s = result.summary()
    tiers = ", ".join(f"{t} {100 * v:.1f} %" for t, v in s["hit_rate_by_tier"].items())
    view.kpi_tiles([
        Kpi("prefix_hit_rate", "Prefix hit rate", f"{100 * s['prefix_hit_rate']:.2f} %", help=f"blocks served from the cache: {tiers}"),
        Kpi("ttft_p50", "TTFT p50", format_time(s["ttft_s"]["p50"]), help=f"p90 {format_time(s['ttft_s']['p90'])}"),
        Kpi("ttft_p99", "TTFT p99", format_time(s["ttft_s"]["p99"])),
        Kpi("tpot_p50", "TPOT p50", format_time(s["tpot_s"]["p50"]), help=f"p99 {format_time(s['tpot_s']['p99'])}"),
        Kpi("throughput", "Throughput", f"{s['throughput_tokens_per_s']:,.0f} tok/s", help="generated tokens per second"),
        Kpi("prefill_compute_saved", "Prefill compute saved", f"{100 * s['prefill_compute_saved']:.1f} %"),
    ], per_row=6)
    return s


@st.fragment
@state.safe("Sizing curve")
def _sizing(trace: Trace, digest: str, model_name: str, hw: Hardware, cfg: ServeConfig) -> None:
    model = load_serve_model(model_name)
    block = model.block_bytes(trace.block_tokens)
    distinct = int(np.unique(trace.block_ids).shape[0])
    fractions = (0.01, 0.03, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
    capacities = tuple(max(1, int(f * distinct)) for f in fractions)
    st.caption("Left: sequence-only hit rate of one cache of N blocks per policy (no timing; Mooncake's capacity "
               f"figure), in GiB of {model_name} KV ({format_bytes(block)} per block). Right: timed TTFT against the "
               "first lower tier's capacity, for the policies you pick. Both run on demand.")
    lower = [t for t, _ in cfg.tier_capacity_bytes]
    c1, c2 = st.columns([3, 1])
    picked = c1.multiselect("Policies for the timed curve", POLICIES, default=["lru", "tierplan", "belady"], key="sv:sz:pol")
    tier = c2.selectbox("Tier to size", lower or ["—"], key="sv:sz:tier")
    key = _digest(digest, model_name, hardware_to_dict(hw), _config_json(cfg), picked, tier)
    if st.button("Compute the sizing curves", key="sv:sz:run", icon=":material/play_arrow:", type="primary"):
        bar = st.progress(0.0, text="Sequence-only sweep…")
        seq = _capacity_curve(digest, capacities, trace)
        timed: dict[str, list[float]] = {p: [] for p in picked}
        hits: dict[str, list[float]] = {p: [] for p in picked}
        tier_caps = [int(f * hw.capacity(tier)) for f in (0.0, 0.1, 0.25, 0.5, 1.0)] if tier in hw.tier_by_name else []
        steps = max(1, len(picked) * len(tier_caps))
        n = 0
        for p in picked:
            for cap in tier_caps:
                caps = tuple((t, cap if t == tier else c) for t, c in cfg.tier_capacity_bytes)
                c = ServeConfig(**{**asdict(cfg), "policy": p, "tier_capacity_bytes": caps,
                                   "cache_tiers": tuple(t for t, v in caps if v > 0)})
                r = _simulate(digest, model_name, json.dumps(hardware_to_dict(hw), sort_keys=True), _config_json(c), trace)
                n += 1
                bar.progress(n / steps, text=f"Timed: {p} at {format_bytes(cap)} of {tier}")
                if isinstance(r, str):
                    raise TierplanError(r)
                s = r.summary()
                timed[p].append(s["ttft_s"]["p50"])
                hits[p].append(s["prefix_hit_rate"])
        bar.empty()
        st.session_state["sv:sizing"] = (key, capacities, seq, tier_caps, timed, hits, block)
    stored = st.session_state.get("sv:sizing")
    if not stored or stored[0] != key:
        return
    _, capacities, seq, tier_caps, timed, hits, block = stored
    ceiling = run_capacity(trace, "lru", None).prefix_hit_rate
    a, b = st.columns(2)
    with a:
        view.chart(sf.sizing_figure([c * block / GiB for c in capacities], seq, x_title="cache capacity (GiB)",
                                    y_title="prefix hit rate (%)", title="Hit rate vs cache size (sequence-only)",
                                    ceiling=ceiling), key="sv:fig:sizing-seq")
    with b:
        if tier_caps:
            view.chart(sf.sizing_figure([c / GiB for c in tier_caps], hits, x_title=f"{tier} cache capacity (GiB)",
                                        y_title="prefix hit rate (%)", title=f"Hit rate vs {tier} (timed)",
                                        ceiling=ceiling), key="sv:fig:sizing-hit")
    if tier_caps:
        view.chart(sf.sizing_figure([c / GiB for c in tier_caps], timed, x_title=f"{tier} cache capacity (GiB)",
                                    y_title="TTFT p50 (s)", title=f"TTFT p50 vs {tier} (timed)", percent=False),
                   key="sv:fig:sizing-ttft")


@st.fragment
@state.safe("Policies")
def _policies(trace: Trace, digest: str, model_name: str, hw: Hardware, cfg: ServeConfig) -> None:
    st.caption("Every policy on the same trace, model, hardware and placement settings (timed simulation).")
    key = _digest(digest, model_name, hardware_to_dict(hw), _config_json(cfg))
    if st.button("Run every policy", key="sv:pol:run", icon=":material/play_arrow:", type="primary"):
        bar = st.progress(0.0)
        rows = []
        for k, p in enumerate(POLICIES):
            bar.progress(k / len(POLICIES), text=f"Simulating {p}…")
            r = _simulate(digest, model_name, json.dumps(hardware_to_dict(hw), sort_keys=True),
                          _config_json(ServeConfig(**{**asdict(cfg), "policy": p})), trace)
            if isinstance(r, str):
                raise TierplanError(r)
            rows.append(r.summary())
        bar.empty()
        st.session_state["sv:policies"] = (key, rows)
    stored = st.session_state.get("sv:policies")
    if not stored or stored[0] != key:
        return
    rows = stored[1]
    view.chart(sf.policies_figure(rows), key="sv:fig:policies")
    st.dataframe(pd.DataFrame([{
        "policy": r["policy"], "hit rate (%)": 100 * r["prefix_hit_rate"],
        **{f"{t} (%)": 100 * v for t, v in r["hit_rate_by_tier"].items()},
        "TTFT p50 (ms)": 1e3 * r["ttft_s"]["p50"], "TTFT p99 (s)": r["ttft_s"]["p99"],
        "compute saved (%)": 100 * r["prefill_compute_saved"],
    } for r in rows]), hide_index=True)


def _summary_json(summary: dict[str, Any], cfg: ServeConfig) -> str:
    return json.dumps({**summary, "config": asdict(cfg)}, indent=1, default=list)


def _csv(result: ServeResult) -> str:
    buf = io.StringIO()
    pd.DataFrame(result.per_request_rows()).to_csv(buf, index=False)
    return buf.getvalue()


def _exports(result: ServeResult, summary: dict[str, Any]) -> None:
    """Download buttons; each file is built only when its button is clicked."""
    slug = f"{result.trace_name}-{result.model_name}-{result.config.policy}".replace(" ", "_").replace("/", "_")
    c1, c2 = st.columns(2)
    c1.download_button("Summary (JSON)", functools.partial(_summary_json, summary, result.config),
                       file_name=f"{slug}.serve.json", mime="application/json", icon=":material/data_object:",
                       key="sv:dl:json", on_click="ignore", width="stretch")
    c2.download_button("Per-request results (CSV)", functools.partial(_csv, result), file_name=f"{slug}.requests.csv",
                       mime="text/csv", icon=":material/table:", key="sv:dl:csv", on_click="ignore", width="stretch")


def main() -> None:
    view.header("Serve", "A prefix KV cache across requests — HBM, host DDR, SSD — replayed on a request trace: "
                "what hits, from which tier, and what it does to time to first token.")
    trace = state.guarded(_trace_input, what="Trace")
    if trace is None:
        return
    digest = trace.digest()
    got = state.guarded(_knobs, what="Settings")
    if got is None:
        return
    model_name, hw, cfg = got
    st.caption(f"**{model_name}** on **{hw.name}** · {format_bytes(load_serve_model(model_name).block_bytes(trace.block_tokens))} "
               f"of KV per {trace.block_tokens}-token block.")
    with st.expander("Trace summary", expanded=True):
        state.guarded(lambda: _trace_summary(trace, digest), what="Trace summary")
    hw_json = json.dumps(hardware_to_dict(hw), sort_keys=True)
    with st.spinner("Simulating…"):
        result = _simulate(digest, model_name, hw_json, _config_json(cfg), trace)
    if isinstance(result, str):
        st.error(f"**No simulation for these settings.** {result}", icon=":material/block:")
        return
    summary = _kpis(result)
    tabs = st.tabs([":material/speed: TTFT", ":material/stacked_line_chart: Tiers & links",
                    ":material/straighten: Sizing curve", ":material/compare_arrows: Policies",
                    ":material/download: Export"])
    with tabs[0]:
        hbm_only = ServeConfig(**{**asdict(cfg), "cache_tiers": (), "tier_capacity_bytes": ()})
        # without any cache only the instances matter: normalised so policy changes reuse the cached run
        none = ServeConfig(policy="lru", hbm_cache=False, cache_tiers=(), prefill_instances=cfg.prefill_instances,
                           decode_instances=cfg.decode_instances)
        series = {f"{cfg.policy}, {' + '.join(result.capacity_blocks)}": result.ttft_s}
        for label, c in ((f"{cfg.policy}, {hw.compute_tier} only", hbm_only), ("no prefix cache", none)):
            r = _simulate(digest, model_name, hw_json, _config_json(c), trace)
            if not isinstance(r, str):
                series[label] = r.ttft_s
        view.chart(sf.ttft_cdf_figure(series), key="sv:fig:ttft")
        st.caption(" · ".join(f"{label}: p50 {format_time(float(np.percentile(v, 50)))}, "
                              f"p99 {format_time(float(np.percentile(v, 99)))}" for label, v in series.items()))
    with tabs[1]:
        for name, fig in _timeline_figures(digest, model_name, hw_json, _config_json(cfg), result).items():
            view.chart(fig, key=f"sv:fig:{name}")
        st.dataframe(pd.DataFrame([{"link": k, "bytes moved": format_bytes(v)} for k, v in summary["link_bytes"].items()]),
                     hide_index=True)
    with tabs[2]:
        _sizing(trace, digest, model_name, hw, cfg)
    with tabs[3]:
        _policies(trace, digest, model_name, hw, cfg)
    with tabs[4]:
        _exports(result, summary)


main()
