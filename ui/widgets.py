"""The sidebar shared by the Plan, Compare, What-if and Model pages: model, hardware (every tier and link
editable live, tiers added or removed) and policy — plus reading and writing the setting as URL query
parameters so a view can be shared.

Widget values live in ``st.session_state`` under ``in:`` keys (see :func:`ui.state.keep_widget_state`); a
widget is never given both a default and a session value, so Streamlit never warns.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import streamlit as st

from core.errors import InputError, TierplanError
from core.graph import Graph
from core.hardware import Hardware, hardware_from_dict, hardware_to_dict, load_hardware
from core.units import format_bandwidth, format_bytes, parse_bandwidth, parse_bytes, parse_time
from ui.state import Inputs, hardware_json, set_current_inputs

__all__ = ["sidebar_inputs", "capacity_unit", "apply_query_params", "write_query_params", "edited_hardware_dict",
           "edit_summary", "hardware_label"]

_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
_SOURCE_SAMPLE, _SOURCE_UPLOAD = "Sample model", "Upload a model"
_HW_PRESET, _HW_UPLOAD = "Preset", "Upload"
#: The landing view: a real training step on a real accelerator, planned in about a second.
DEFAULT_SAMPLE = "llama2-7b-train"


# ---------------------------------------------------------------------------------------------- helpers


def capacity_unit(capacity_bytes: int) -> tuple[str, int]:
    """The binary unit a tier's capacity is edited in (the largest one it is at least 1 of)."""
    for name, size in _UNITS:
        if capacity_bytes >= size:
            return name, size
    return "KiB", 2**10


def _step(value: float) -> float:
    if value <= 0:
        return 1.0
    return max(0.01, 10 ** math.floor(math.log10(value)) / 10)


def _init(key: str, value: Any) -> None:
    if key not in st.session_state:
        st.session_state[key] = value


def _samples() -> tuple[Any, ...]:
    from core.sources.samples import list_samples

    return list_samples()


def _presets() -> tuple[Any, ...]:
    from core.sources.presets import list_presets

    return list_presets()


@st.cache_data(max_entries=16, show_spinner=False)
def _preset_dict(key: str) -> dict[str, Any]:
    from core.sources.presets import load_preset

    return hardware_to_dict(load_preset(key))


@st.cache_resource(max_entries=16, show_spinner=False)
def _sample_graph(key: str) -> Graph:
    from core.sources.samples import load_sample

    return load_sample(key)


@st.cache_data(max_entries=8, show_spinner="Reading the model…")
def _load_upload(digest: str, filename: str, options_json: str, _data: bytes) -> tuple[Graph | None, str | None]:
    from core.sources import Workload, load_model_bytes

    options = json.loads(options_json)
    try:
        workload = Workload(**options["workload"]) if options.get("workload") else None
        graph = load_model_bytes(_data, filename, workload=workload, onnx_batch=options.get("onnx_batch"),
                                 onnx_train=bool(options.get("onnx_train", False)))
        return graph, None
    except TierplanError as exc:
        return None, str(exc)


def _detect(data: bytes, filename: str) -> tuple[str | None, str | None]:
    from core.sources import detect_format

    try:
        return detect_format(data, filename), None
    except TierplanError as exc:
        return None, str(exc)


def _remember_upload(widget_key: str, store_key: str) -> None:
    """on_change of a file uploader: keep the bytes in our own state (uploader state is dropped when its
    page is not drawn); a cleared uploader keeps the last file."""
    uploaded = st.session_state.get(widget_key)
    if uploaded is not None:
        data = uploaded.getvalue()
        st.session_state[store_key] = (uploaded.name, data, hashlib.sha256(data).hexdigest()[:20])


# ---------------------------------------------------------------------------------------------- model


def _on_sample_change() -> None:
    key = st.session_state.get("in:sample")
    for info in _samples():
        if info.key == key and info.hardware:
            st.session_state["in:hw_source"] = _HW_PRESET
            st.session_state["in:preset"] = info.hardware


def _model_section(problems: list[str]) -> tuple[str, Graph, str]:
    """(graph key, graph, label) of the chosen model; the last good one when an upload fails."""
    samples = _samples()
    by_key = {s.key: s for s in samples}
    _init("in:source", _SOURCE_SAMPLE)
    _init("in:sample", DEFAULT_SAMPLE if DEFAULT_SAMPLE in by_key else samples[0].key)
    if st.session_state["in:sample"] not in by_key:
        st.session_state["in:sample"] = samples[0].key
    if by_key[st.session_state["in:sample"]].hardware:
        _init("in:preset", by_key[st.session_state["in:sample"]].hardware)
    source = st.radio("Model", (_SOURCE_SAMPLE, _SOURCE_UPLOAD), key="in:source", horizontal=True,
                      label_visibility="collapsed")
    if source == _SOURCE_SAMPLE:
        key = st.selectbox("Sample model", list(by_key), key="in:sample", format_func=lambda k: by_key[k].title,
                           on_change=_on_sample_change)
        st.caption(by_key[key].description)
        result = (f"sample:{key}", _sample_graph(key), by_key[key].title)
        st.session_state["model:last_good"] = result
        return result
    st.file_uploader("Model file", type=["json", "onnx"], key="upl:model", on_change=_remember_upload,
                     args=("upl:model", "upload:model"),
                     help="A Tierplan graph (tierplan-graph/1 JSON), an ONNX model, or a Hugging Face config.json.")
    stored = st.session_state.get("upload:model")
    fallback = st.session_state.get("model:last_good")
    if fallback is None:
        key = samples[0].key
        fallback = (f"sample:{key}", _sample_graph(key), samples[0].title)
    if stored is None:
        st.info("Upload a model file, or switch back to a sample. Showing the last model meanwhile.")
        return fallback
    name, data, digest = stored
    fmt, err = _detect(data, name)
    if err:
        problems.append(f"Could not read the uploaded model — {err}")
        return fallback
    options: dict[str, Any] = {}
    if fmt == "hf-config":
        from core.sources import WORKLOAD_KINDS

        _init("in:wl_kind", "train")
        _init("in:wl_batch", 1)
        _init("in:wl_seq", 2048)
        _init("in:wl_ckpt", False)
        c1, c2 = st.columns(2)
        c1.selectbox("Workload", WORKLOAD_KINDS, key="in:wl_kind")
        c2.number_input("Batch", min_value=1, max_value=4096, step=1, key="in:wl_batch")
        st.number_input("Sequence length (tokens)", min_value=1, max_value=1_048_576, step=256, key="in:wl_seq")
        st.checkbox("Activation checkpointing", key="in:wl_ckpt")
        options["workload"] = {"kind": st.session_state["in:wl_kind"], "batch": int(st.session_state["in:wl_batch"]),
                               "seq": int(st.session_state["in:wl_seq"]), "checkpointing": bool(st.session_state["in:wl_ckpt"])}
    elif fmt == "onnx":
        _init("in:onnx_batch", 1)
        _init("in:onnx_train", False)
        st.number_input("Batch (for dynamic dimensions)", min_value=1, max_value=4096, step=1, key="in:onnx_batch")
        st.checkbox("Training step (add backward and optimizer)", key="in:onnx_train")
        options = {"onnx_batch": int(st.session_state["in:onnx_batch"]), "onnx_train": bool(st.session_state["in:onnx_train"])}
    options_json = json.dumps(options, sort_keys=True)
    graph, err = _load_upload(digest, name, options_json, data)
    if graph is None:
        problems.append(f"Could not use the uploaded model — {err}")
        return fallback
    for warning in graph.meta.get("warnings", []) or []:
        st.caption(f"⚠️ {warning}")
    result = (f"upload:{digest}:{options_json}", graph, f"{graph.name} (uploaded {name})")
    st.session_state["model:last_good"] = result
    return result


# ---------------------------------------------------------------------------------------------- hardware


def _reset_hw_edits() -> None:
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith(("in:cap:", "in:bw:", "in:lat:")):
            del st.session_state[key]
    st.session_state["hw:added"] = []
    st.session_state["hw:removed"] = []


def _base_hardware(problems: list[str]) -> tuple[str, dict[str, Any]]:
    presets = _presets()
    by_key = {p.key: p for p in presets}
    _init("in:hw_source", _HW_PRESET)
    _init("in:preset", presets[0].key)
    if st.session_state["in:preset"] not in by_key:
        st.session_state["in:preset"] = presets[0].key
    source = st.radio("Hardware", (_HW_PRESET, _HW_UPLOAD), key="in:hw_source", horizontal=True,
                      label_visibility="collapsed")
    base_id, base = None, None
    if source == _HW_UPLOAD:
        st.file_uploader("Hardware file (tierplan-hardware/1 JSON)", type=["json"], key="upl:hw",
                         on_change=_remember_upload, args=("upl:hw", "upload:hw"))
        stored = st.session_state.get("upload:hw")
        if stored is not None:
            name, data, digest = stored
            try:
                base = hardware_to_dict(load_hardware(data, source=name))
                base_id = f"upload:{digest}"
            except TierplanError as exc:
                problems.append(f"Could not use the uploaded hardware — {exc}")
        else:
            st.info("Upload a hardware file, or pick a preset. Showing the last hardware meanwhile.")
        if base is None:
            last = st.session_state.get("hw:base")
            if last is not None:
                return st.session_state["hw:base_id"], last
            source = _HW_PRESET
    if base is None:
        key = st.selectbox("Hardware preset", list(by_key), key="in:preset", format_func=lambda k: by_key[k].title)
        st.caption(by_key[key].description)
        base_id, base = f"preset:{key}", _preset_dict(key)
    if st.session_state.get("hw:base_id") != base_id:
        _reset_hw_edits()
        st.session_state["hw:base_id"] = base_id
        st.session_state["hw:base"] = base
    return base_id, base


def _candidate(base: Mapping[str, Any]) -> dict[str, Any]:
    """Base hardware minus removed tiers plus added ones (with their links), before the live edits."""
    raw = copy.deepcopy(dict(base))
    removed = set(st.session_state.get("hw:removed", []))
    raw["tiers"] = [t for t in raw["tiers"] if t["name"] not in removed]
    raw["links"] = [lk for lk in raw["links"] if lk["src"] not in removed and lk["dst"] not in removed]
    for extra in st.session_state.get("hw:added", []):
        raw["tiers"].append({"name": extra["name"], "capacity_bytes": extra["capacity_bytes"]})
        for src, dst in ((extra["via"], extra["name"]), (extra["name"], extra["via"])):
            raw["links"].append({"src": src, "dst": dst, "bandwidth_Bps": extra["bandwidth_Bps"],
                                 "latency_s": extra["latency_s"]})
    return raw


def edited_hardware_dict(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with capacities (``in:cap:TIER`` in the tier's unit), bandwidths (``in:bw:LINK`` GB/s) and
    latencies (``in:lat:LINK`` µs) from ``values``. A value equal to the base value as shown (rounded to
    the widget's precision) leaves the exact base figure alone, so untouched widgets change nothing. Pure,
    so it is unit-tested without Streamlit."""
    raw = copy.deepcopy(dict(base))

    def edited(key: str, exact: float, scale: float) -> float:
        if key not in values:
            return exact
        shown = round(exact / scale, 3)
        value = float(values[key])
        return exact if math.isclose(value, shown, rel_tol=1e-12, abs_tol=1e-12) else value * scale

    for tier in raw["tiers"]:
        _, size = capacity_unit(int(tier["capacity_bytes"]))
        tier["capacity_bytes"] = round(edited(f"in:cap:{tier['name']}", float(tier["capacity_bytes"]), size))
    for link in raw["links"]:
        name = f"{link['src']}->{link['dst']}"
        link["bandwidth_Bps"] = edited(f"in:bw:{name}", float(link["bandwidth_Bps"]), 1e9)
        link["latency_s"] = edited(f"in:lat:{name}", float(link.get("latency_s", 0.0)), 1e-6)
    return raw


def edit_summary(base: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """What differs from the preset, in a few words: "HBM 48 GiB, + POOL, − SSD, HBM->DDR 32 GB/s".
    Empty when nothing was edited. Pure (unit-tested)."""
    parts: list[str] = []
    base_tiers = {t["name"]: int(t["capacity_bytes"]) for t in base.get("tiers", [])}
    cur_tiers = {t["name"]: int(t["capacity_bytes"]) for t in current.get("tiers", [])}
    for name, cap in cur_tiers.items():
        if name in base_tiers and base_tiers[name] != cap:
            parts.append(f"{name} {format_bytes(cap)}")
    parts += [f"+ {name}" for name in cur_tiers if name not in base_tiers]
    parts += [f"− {name}" for name in base_tiers if name not in cur_tiers]
    base_links = {f"{lk['src']}->{lk['dst']}": lk for lk in base.get("links", [])}
    for lk in current.get("links", []):
        name = f"{lk['src']}->{lk['dst']}"
        old = base_links.get(name)
        if old is None:
            continue
        if not math.isclose(float(old["bandwidth_Bps"]), float(lk["bandwidth_Bps"]), rel_tol=1e-9):
            parts.append(f"{name} {format_bandwidth(lk['bandwidth_Bps'])}")
        if not math.isclose(float(old.get("latency_s", 0.0)), float(lk.get("latency_s", 0.0)), rel_tol=1e-9,
                            abs_tol=1e-15):
            parts.append(f"{name} {float(lk.get('latency_s', 0.0)) * 1e6:.3g} µs")
    return ", ".join(parts)


def hardware_label(name: str, base: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """The hardware's name for headers and the report, saying it was edited when it was."""
    summary = edit_summary(base, current)
    return f"{name} (edited: {summary})" if summary else name


def _copy(src: str, dst: str) -> None:
    """on_change of a slider: the number field beside it takes its value (the field is what is planned)."""
    st.session_state[dst] = float(st.session_state[src])


def _slider(num_key: str, base: float, label: str) -> None:
    """A slider under a number field, for dragging: 0 … 2× the preset's value (or the current value)."""
    current = float(st.session_state[num_key])
    top = max(2.0 * base, current, 1.0)
    step = _step(top) if top >= 1 else 0.01
    top = math.ceil(top / step) * step
    sl_key = f"sl:{num_key}"
    st.session_state[sl_key] = min(max(0.0, round(current / step) * step), top)
    st.slider(label, 0.0, float(top), step=float(step), key=sl_key, on_change=_copy, args=(sl_key, num_key),
              label_visibility="collapsed", format="%.4g")


def _set_fraction_of_peak(key: str, peak_bytes: int, size: int) -> None:
    fraction = float(st.session_state.get("in:peak_pct", 50.0)) / 100.0
    st.session_state[key] = round(peak_bytes * fraction / size, 3)


def _tier_editor(raw: Mapping[str, Any], peak_bytes: int | None = None) -> None:
    compute_tier = raw.get("compute_tier", raw["tiers"][0]["name"])
    for tier in raw["tiers"]:
        name = tier["name"]
        unit, size = capacity_unit(int(tier["capacity_bytes"]))
        key = f"in:cap:{name}"
        _init(key, round(int(tier["capacity_bytes"]) / size, 3))
        label = f"{name} capacity ({unit})" + (" — compute tier" if name == compute_tier else "")
        cols = st.columns([6, 1], vertical_alignment="bottom", gap="small")
        cols[0].number_input(label, min_value=0.0, step=_step(float(st.session_state[key])), format="%.2f", key=key)
        if name != compute_tier:
            cols[1].button("", icon=":material/delete:", key=f"rm:{name}", help=f"Remove {name} and its links",
                           on_click=_remove_tier, args=(name,), type="tertiary")
        _slider(key, int(tier["capacity_bytes"]) / size, f"drag {name} capacity")
        if name == compute_tier and peak_bytes:
            _init("in:peak_pct", 50.0)
            c1, c2 = st.columns([2, 3], vertical_alignment="bottom")
            c1.number_input("% of no-offload peak", min_value=1.0, max_value=200.0, step=5.0, format="%g",
                            key="in:peak_pct", help=f"The model needs {format_bytes(peak_bytes)} in {name} if nothing "
                                                     "moves; set the capacity to this share of it.")
            c2.button(f"Set {name} to {float(st.session_state['in:peak_pct']):g} %", key="set:peak_pct",
                      on_click=_set_fraction_of_peak, args=(key, peak_bytes, size), width="stretch",
                      help=f"{name} = {float(st.session_state['in:peak_pct']):g} % × {format_bytes(peak_bytes)}")
    st.markdown("**Links** (bandwidth GB/s · latency µs)")
    for link in raw["links"]:
        name = f"{link['src']}->{link['dst']}"
        _init(f"in:bw:{name}", round(float(link["bandwidth_Bps"]) / 1e9, 3))
        _init(f"in:lat:{name}", round(float(link.get("latency_s", 0.0)) * 1e6, 3))
        c1, c2 = st.columns(2)
        c1.number_input(f"{name} GB/s", min_value=0.0, step=_step(float(st.session_state[f"in:bw:{name}"])),
                        format="%.2f", key=f"in:bw:{name}")
        c2.number_input(f"{name} µs", min_value=0.0, step=0.5, format="%.2f", key=f"in:lat:{name}")
        _slider(f"in:bw:{name}", float(link["bandwidth_Bps"]) / 1e9, f"drag {name} bandwidth")


def _remove_tier(name: str) -> None:
    added = st.session_state.get("hw:added", [])
    if any(a["name"] == name for a in added):
        st.session_state["hw:added"] = [a for a in added if a["name"] != name]
    else:
        st.session_state["hw:removed"] = [*st.session_state.get("hw:removed", []), name]
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and (key == f"in:cap:{name}" or (key.startswith(("in:bw:", "in:lat:")) and name in key.split(":", 2)[2].split("->"))):
            del st.session_state[key]


def _add_tier(existing: list[str]) -> None:
    name = str(st.session_state.get("add:name", "")).strip()
    try:
        if not name:
            raise InputError("give the new tier a name", field="name")
        if name in existing:
            raise InputError(f"a tier named '{name}' already exists", field="name")
        capacity = parse_bytes(str(st.session_state.get("add:cap", "")))
        bandwidth = parse_bandwidth(str(st.session_state.get("add:bw", "")))
        latency = parse_time(str(st.session_state.get("add:lat", "0 us")))
        if bandwidth <= 0:
            raise InputError("bandwidth must be > 0", field="bandwidth")
    except (InputError, ValueError) as exc:
        st.session_state["add:error"] = f"Cannot add the tier: {exc}"
        return
    st.session_state.pop("add:error", None)
    st.session_state["hw:added"] = [*st.session_state.get("hw:added", []), {
        "name": name, "capacity_bytes": capacity, "via": st.session_state.get("add:via", existing[0]),
        "bandwidth_Bps": bandwidth, "latency_s": latency,
    }]


#: What the "Add a tier" form proposes: a pooled supernode memory reached over the fabric.
ADD_TIER_DEFAULTS = {"name": "POOL", "cap": "1 TiB", "bw": "200 GB/s", "lat": "2 us"}


def _add_tier_form(existing: list[str]) -> None:
    """The fields take their defaults from ``value=``, not from session state set beforehand: a closed
    popover's widgets are not reported back by the browser, so state set that way was lost at the next
    rerun (after any other edit the form came up empty and *Add tier* said "give the new tier a name")."""
    with st.popover("Add a tier", icon=":material/add:", width="stretch"):
        st.caption("E.g. a pooled supernode memory reachable from HBM over the fabric.")
        st.text_input("Name", value=ADD_TIER_DEFAULTS["name"], key="add:name")
        st.text_input("Capacity", value=ADD_TIER_DEFAULTS["cap"], key="add:cap", help="With a unit: 512 GiB, 2 TiB")
        st.selectbox("Connected to", existing, key="add:via")
        st.text_input("Bandwidth (each direction)", value=ADD_TIER_DEFAULTS["bw"], key="add:bw", help="E.g. 200 GB/s")
        st.text_input("Latency", value=ADD_TIER_DEFAULTS["lat"], key="add:lat", help="E.g. 2 us")
        st.button("Add tier", on_click=_add_tier, args=(existing,), type="primary")
    if st.session_state.get("add:error"):
        st.error(st.session_state["add:error"])


def _hardware_section(problems: list[str], graph: Graph | None = None) -> tuple[Hardware, dict[str, Any]] | None:
    _, base = _base_hardware(problems)
    raw = _candidate(base)
    peak = None
    if graph is not None:
        from core.metrics import no_offload_peak_bytes

        peak = int(no_offload_peak_bytes(graph))
    with st.expander("Tiers and links", expanded=True):
        _tier_editor(raw, peak)
        _add_tier_form([t["name"] for t in raw["tiers"]])
    values = {k: v for k, v in st.session_state.items() if isinstance(k, str) and k.startswith(("in:cap:", "in:bw:", "in:lat:"))}
    edited = edited_hardware_dict(raw, values)
    try:
        hw = hardware_from_dict(edited, source="hardware settings")
    except InputError as exc:
        problems.append(f"These hardware settings are not usable — {exc}")
        return None
    return hw, hardware_to_dict(hw)


# ---------------------------------------------------------------------------------------------- policy


def _policy_section() -> tuple[str, dict[str, Any]]:
    from core.policies import list_policies

    policies = {p.key: p for p in list_policies()}
    _init("in:policy", "tierplan" if "tierplan" in policies else next(iter(policies)))
    if st.session_state["in:policy"] not in policies:
        st.session_state["in:policy"] = next(iter(policies))
    key = st.selectbox("Policy", list(policies), key="in:policy", format_func=lambda k: policies[k].title)
    info = policies[key]
    st.caption(info.description)
    params: dict[str, Any] = {}
    for spec in info.params:
        wkey = f"in:p:{key}:{spec.key}"
        if spec.integer and spec.min == 0 and spec.max == 1:  # an on/off switch
            _init(wkey, bool(spec.default))
            st.session_state[wkey] = bool(st.session_state[wkey])
            params[spec.key] = int(st.toggle(spec.label, key=wkey, help=spec.help or None))
        elif spec.integer:
            _init(wkey, int(spec.default))
            st.session_state[wkey] = int(st.session_state[wkey])
            params[spec.key] = int(st.number_input(spec.label, min_value=int(spec.min), max_value=int(spec.max), step=1,
                                                   key=wkey, help=spec.help or None))
        else:
            _init(wkey, float(spec.default))
            st.session_state[wkey] = float(st.session_state[wkey])
            params[spec.key] = float(st.number_input(spec.label, min_value=float(spec.min), max_value=float(spec.max),
                                                     step=_step(float(spec.max - spec.min)) / 10 or 0.01, format="%.3g",
                                                     key=wkey, help=spec.help or None))
    return key, params


# ---------------------------------------------------------------------------------------------- URL


def apply_query_params() -> None:
    """Once per session: turn ``?model=…&hw=…&policy=…&set=HBM.capacity=24GiB&p=key=value`` into widget
    state. Unknown or malformed entries are ignored (a shared link must never break the app)."""
    if st.session_state.get("qp:applied"):
        return
    st.session_state["qp:applied"] = True
    qp = st.query_params
    samples = {s.key: s for s in _samples()}
    model = qp.get("model")
    if model in samples:
        st.session_state["in:source"] = _SOURCE_SAMPLE
        st.session_state["in:sample"] = model
        if samples[model].hardware:
            st.session_state["in:preset"] = samples[model].hardware
    presets = {p.key for p in _presets()}
    if qp.get("hw") in presets:
        st.session_state["in:hw_source"] = _HW_PRESET
        st.session_state["in:preset"] = qp.get("hw")
    policy = qp.get("policy")
    if policy:
        st.session_state["in:policy"] = policy
    pending: dict[str, Any] = {}
    for item in qp.get_all("set"):
        target, _, value = item.partition("=")
        obj, _, attr = target.rpartition(".")
        try:
            if attr == "capacity":
                pending[f"cap:{obj}"] = parse_bytes(value)
            elif attr == "bandwidth":
                pending[f"bw:{obj}"] = parse_bandwidth(value) / 1e9
            elif attr == "latency":
                pending[f"lat:{obj}"] = parse_time(value) * 1e6
        except ValueError:
            continue
    added = []
    for item in qp.get_all("add"):
        parts = item.split(",")
        if len(parts) == 5:
            try:
                added.append({"name": parts[0], "capacity_bytes": parse_bytes(parts[1]), "via": parts[2],
                              "bandwidth_Bps": parse_bandwidth(parts[3]), "latency_s": parse_time(parts[4])})
            except ValueError:
                continue
    st.session_state["qp:pending"] = {"set": pending, "added": added, "removed": qp.get_all("rm"),
                                      "params": {k: v for k, _, v in (p.partition("=") for p in qp.get_all("p"))}}


def _apply_pending_hw(raw_base: Mapping[str, Any]) -> None:
    """Apply URL hardware edits once the base hardware is known (capacities need the tier's unit)."""
    pending = st.session_state.pop("qp:pending", None)
    if not pending:
        return
    st.session_state["hw:removed"] = [r for r in pending["removed"] if r != raw_base.get("compute_tier")]
    st.session_state["hw:added"] = pending["added"]
    raw = _candidate(raw_base)
    caps = {t["name"]: int(t["capacity_bytes"]) for t in raw["tiers"]}
    for key, value in pending["set"].items():
        kind, _, obj = key.partition(":")
        if kind == "cap" and obj in caps:
            _, size = capacity_unit(caps[obj])
            st.session_state[f"in:cap:{obj}"] = round(value / size, 3)
        elif kind in ("bw", "lat"):
            st.session_state[f"in:{kind}:{obj}"] = round(float(value), 3)
    policy = st.session_state.get("in:policy")
    for key, value in pending["params"].items():
        try:
            st.session_state[f"in:p:{policy}:{key}"] = float(value)
        except ValueError:
            continue


def write_query_params(inputs: Inputs, base: Mapping[str, Any]) -> None:
    """Reflect the current setting in the URL (only what differs from the chosen sample/preset)."""
    out: dict[str, Any] = {}
    if inputs.graph_key.startswith("sample:"):
        out["model"] = inputs.graph_key.removeprefix("sample:")
    if str(st.session_state.get("hw:base_id", "")).startswith("preset:"):
        out["hw"] = st.session_state["hw:base_id"].removeprefix("preset:")
    out["policy"] = inputs.policy
    current = hardware_to_dict(inputs.hardware)
    base_caps = {t["name"]: int(t["capacity_bytes"]) for t in _candidate(base)["tiers"]}
    base_links = {f"{lk['src']}->{lk['dst']}": lk for lk in _candidate(base)["links"]}
    sets = []
    for tier in current["tiers"]:
        if base_caps.get(tier["name"]) != int(tier["capacity_bytes"]):
            sets.append(f"{tier['name']}.capacity={format_bytes(tier['capacity_bytes'], 6).replace(' ', '')}")
    for link in current["links"]:
        name = f"{link['src']}->{link['dst']}"
        old = base_links.get(name)
        if old is None:
            continue
        if not math.isclose(float(old["bandwidth_Bps"]), float(link["bandwidth_Bps"]), rel_tol=1e-9):
            sets.append(f"{name}.bandwidth={format_bandwidth(link['bandwidth_Bps'], 6).replace(' ', '')}")
        if not math.isclose(float(old.get("latency_s", 0.0)), float(link["latency_s"]), rel_tol=1e-9, abs_tol=1e-15):
            sets.append(f"{name}.latency={link['latency_s'] * 1e6:.6g}us")
    if sets:
        out["set"] = sets
    added = st.session_state.get("hw:added", [])
    if added:
        out["add"] = [f"{a['name']},{format_bytes(a['capacity_bytes'], 6).replace(' ', '')},{a['via']},"
                      f"{format_bandwidth(a['bandwidth_Bps'], 6).replace(' ', '')},{a['latency_s'] * 1e6:.6g}us"
                      for a in added]
    removed = st.session_state.get("hw:removed", [])
    if removed:
        out["rm"] = list(removed)
    params = inputs.params
    if params:
        out["p"] = [f"{k}={v}" for k, v in sorted(params.items())]
    if {k: st.query_params.get_all(k) for k in st.query_params} != {k: v if isinstance(v, list) else [str(v)] for k, v in out.items()}:
        st.query_params.from_dict(out)


# ---------------------------------------------------------------------------------------------- all


def sidebar_inputs() -> tuple[Inputs | None, list[str]]:
    """Draw the sidebar; returns the resolved inputs (last good ones when the current are unusable) and
    the problems to show in the page."""
    problems: list[str] = []
    apply_query_params()
    with st.sidebar:
        st.subheader("Model", divider="gray")
        graph_key, graph, label = _model_section(problems)
        st.subheader("Hardware", divider="gray")
        _, base = _base_hardware_peek()
        if base is not None:
            _apply_pending_hw(base)
        hw_result = _hardware_section(problems, graph)
        st.subheader("Policy", divider="gray")
        policy, params = _policy_section()
    if hw_result is None:
        last = st.session_state.get("inputs")
        return last, problems
    hw, hw_dict = hw_result
    try:
        hw_label = hardware_label(hw.name, st.session_state.get("hw:base") or hw_dict, hw_dict)
    except (KeyError, TypeError, ValueError):
        hw_label = hw.name
    inputs = Inputs(graph, graph_key, label, hw, hardware_json(hw_dict), policy, json.dumps(params, sort_keys=True),
                    hw_label)
    set_current_inputs(inputs)
    with contextlib.suppress(KeyError, StopIteration, ValueError):
        write_query_params(inputs, st.session_state["hw:base"])
    return inputs, problems


def _base_hardware_peek() -> tuple[str | None, Mapping[str, Any] | None]:
    """The base hardware the URL edits apply to, before the hardware widgets are drawn."""
    if "qp:pending" not in st.session_state:
        return None, None
    key = st.session_state.get("in:preset")
    presets = {p.key for p in _presets()}
    if key not in presets:
        return None, None
    base_id = f"preset:{key}"
    base = _preset_dict(key)
    if st.session_state.get("hw:base_id") != base_id:
        _reset_hw_edits()
        st.session_state["hw:base_id"] = base_id
        st.session_state["hw:base"] = base
    return base_id, base
