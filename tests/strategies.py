"""Hypothesis strategies for random graphs and hierarchies (shared by the planner and policy tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from core.graph import Graph, graph_from_dict
from core.hardware import Hardware, hardware_from_dict

MiB = 2**20
SIZES = [0, 1, 4 * MiB, 64 * MiB, 256 * MiB, 1024 * MiB]


@st.composite
def graphs(draw: Any, max_ops: int = 24, optimizer: bool | None = None) -> Graph:
    """Random valid graphs: weights (some updated in place), inputs, a KV-cache-like tensor, activations."""
    tensors: list[dict[str, Any]] = []
    ops: list[dict[str, Any]] = []
    available: list[str] = []
    for k in range(draw(st.integers(0, 4))):
        tensors.append({"id": f"w{k}", "bytes": draw(st.sampled_from(SIZES)), "kind": "weight"})
        available.append(f"w{k}")
    for k in range(draw(st.integers(0, 2))):
        tensors.append({"id": f"in{k}", "bytes": draw(st.sampled_from(SIZES)), "kind": "input"})
        available.append(f"in{k}")
    kv = draw(st.booleans())
    if kv:
        tensors.append({"id": "kv", "bytes": draw(st.sampled_from(SIZES)), "kind": "kv_cache"})
    n_ops = draw(st.integers(1, max_ops))
    act = 0
    for i in range(n_ops):
        inputs = sorted(set(draw(st.lists(st.sampled_from(available), max_size=3)))) if available else []
        mutates: list[str] = []
        if kv and draw(st.integers(0, 4)) == 0:
            inputs.append("kv")
            mutates.append("kv")
        outputs = []
        for _ in range(draw(st.integers(0 if inputs else 1, 2))):
            tid = f"a{act}"
            act += 1
            tensors.append({"id": tid, "bytes": draw(st.sampled_from(SIZES)), "kind": "activation"})
            outputs.append(tid)
        op: dict[str, Any] = {"id": f"op{i}", "inputs": inputs, "outputs": outputs}
        if mutates:
            op["mutates"] = mutates
        if draw(st.booleans()):
            op["time_s"] = draw(st.sampled_from([0.0, 1e-5, 1e-4, 1e-3, 1e-2]))
        else:
            op["flops"] = draw(st.sampled_from([0.0, 1e9, 1e11, 1e12]))
            op["bytes_accessed"] = draw(st.sampled_from([0, MiB, 100 * MiB]))
        ops.append(op)
        available.extend(outputs)
    weights = [t["id"] for t in tensors if t["kind"] == "weight"]
    if not weights and optimizer:
        tensors.append({"id": "w_opt", "bytes": draw(st.sampled_from(SIZES)), "kind": "weight"})
        weights = ["w_opt"]
    if optimizer:  # optimizer state that only the update reads (it may live on the host)
        tensors.append({"id": "state", "bytes": draw(st.sampled_from(SIZES)), "kind": "optimizer_state"})
    if weights and (optimizer if optimizer is not None else draw(st.booleans())):  # an in-place update at the end
        upd = sorted(set(draw(st.lists(st.sampled_from(weights), min_size=1, max_size=len(weights)))))
        grads = [a for a in available if a.startswith("a")][-2:]
        state = ["state"] if optimizer else []
        ops.append({"id": "update", "inputs": upd + grads + state, "outputs": [], "mutates": upd + state,
                    "time_s": 1e-3, "host_ok": True})
    return graph_from_dict({"format": "tierplan-graph/1", "name": "random", "tensors": tensors, "ops": ops})


@st.composite
def hierarchies(draw: Any, graph: Graph, host_compute: bool | None = None) -> Hardware:
    """2–4 tiers; the compute tier sized anywhere from 'just the largest op' to 'everything fits'."""
    from core.liveness import analyze

    live = analyze(graph)
    need = int(live.required_bytes.max()) if live.n_ops else 0
    peak = max(live.no_offload_peak_bytes, need, 1)
    hbm = draw(st.integers(need, int(peak * 1.1) + 1))
    n_lower = draw(st.integers(1, 3))
    tiers = [{"name": "HBM", "capacity_bytes": hbm}]
    names = ["DDR", "SSD", "POOL"][:n_lower]
    total = graph.persistent_bytes + sum(t.bytes for t in graph.tensors)
    for name in names:
        tiers.append({"name": name, "capacity_bytes": draw(st.integers(0, total + 1))})
    bw = st.sampled_from([1e9, 16e9, 64e9, 900e9])
    lat = st.sampled_from([0.0, 2e-6, 1e-4])
    links = []
    for name in names:
        via = "DDR" if name == "SSD" and draw(st.booleans()) else "HBM"
        for src, dst in ((via, name), (name, via)):
            links.append({"src": src, "dst": dst, "bandwidth_Bps": draw(bw), "latency_s": draw(lat)})
    raw = {
        "format": "tierplan-hardware/1", "name": "random",
        "compute": {"peak_flops": 1e14, "efficiency": 0.5, "memory_bandwidth_Bps": 1e12},
        "compute_tier": "HBM", "tiers": tiers, "links": links,
    }
    if host_compute if host_compute is not None else draw(st.booleans()):
        raw["tiers"][1]["compute"] = {"peak_flops": 1e12, "memory_bandwidth_Bps": 1e11}
    return hardware_from_dict(raw)
