"""Hypothesis strategies for random graphs and hierarchies (shared by the planner and policy tests).

They are tuned to reach the hard cases, not just valid inputs (issue #9: the old ones left 60-67 % of draws
infeasible and only 3-5 % moved anything). Graphs mix forward-like chains over weights, saved activations
read far later, cheap ops that expand a small input into a big output (recompute bait), in-place updates of
activations and of persistent tensors (a KV-cache-like tensor, weights, optimizer state), optimizer updates
that may run on a host and zero-time ops. Hierarchies have 2-4 tiers (DDR, SSD, a pooled tier), SSD mostly
reached through DDR (multi-hop), host processors on a lower tier, and a compute-tier budget drawn between
the largest single-op footprint and the no-offload peak. tests/test_strategies.py measures the mix.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

from core.graph import Graph, graph_from_dict
from core.hardware import Hardware, hardware_from_dict

MiB = 2**20
SIZES = [16 * MiB, 64 * MiB, 4 * MiB, 256 * MiB, 1, 0]
BIG = [64 * MiB, 256 * MiB, 16 * MiB]
TIMES = [0.0, 1e-5, 1e-4, 1e-3, 1e-2]
FLAVOURS = ["chain", "chain", "expand", "far", "inplace", "random", "kv"]


@st.composite
def graphs(draw: Any, max_ops: int = 24, optimizer: bool | None = None) -> Graph:
    """Random valid graphs; ``optimizer`` forces (True) or forbids (False) optimizer-style updates at the end."""
    tensors: list[dict[str, Any]] = []
    ops: list[dict[str, Any]] = []
    size = st.sampled_from(SIZES)
    weights = [f"w{k}" for k in range(draw(st.sampled_from([1, 2, 3, 4, 6, 8, 0])))]
    for w in weights:
        tensors.append({"id": w, "bytes": draw(size), "kind": "weight"})
    inputs = [f"in{k}" for k in range(draw(st.integers(0, 2)))]
    for x in inputs:
        tensors.append({"id": x, "bytes": draw(size), "kind": "input"})
    kv = draw(st.booleans())
    if kv:
        tensors.append({"id": "kv", "bytes": draw(size), "kind": "kv_cache"})
    acts: list[str] = []  # activations in production order
    weight_reads: dict[str, int] = {}
    n_ops = draw(st.integers(min(6, max_ops), max_ops))

    def new_act(big: bool = False) -> str:
        tid = f"a{len(acts)}"
        acts.append(tid)
        tensors.append({"id": tid, "bytes": draw(st.sampled_from(BIG if big else SIZES)), "kind": "activation"})
        return tid

    def timing(op: dict[str, Any], tiny: bool = False) -> dict[str, Any]:
        if tiny or draw(st.booleans()):
            op["time_s"] = draw(st.sampled_from([0.0, 1e-5] if tiny else TIMES))
        else:
            op["flops"] = draw(st.sampled_from([0.0, 1e9, 1e11, 1e12]))
            op["bytes_accessed"] = draw(st.sampled_from([0, MiB, 100 * MiB]))
        return op

    for i in range(n_ops):
        available = weights + inputs + acts
        flavour = draw(st.sampled_from(FLAVOURS))
        op: dict[str, Any] = {"id": f"op{i}", "inputs": [], "outputs": []}
        if flavour == "chain" and available:
            prev = acts[-1] if acts else draw(st.sampled_from(available))
            reads = {prev}
            if weights:
                reads.add(draw(st.sampled_from(weights)))
            op["inputs"] = sorted(reads)
            op["outputs"] = [new_act()]
        elif flavour == "expand" and available:
            src = min(available, key=lambda t: next(x["bytes"] for x in tensors if x["id"] == t))
            op["inputs"] = [src]
            op["outputs"] = [new_act(big=True)]
            timing(op, tiny=True)
        elif flavour == "far" and (acts or weights):
            # read something made (or read) long ago: a saved activation, a weight used far apart
            early = acts[: max(1, len(acts) // 3)] + [w for w in weights if weight_reads.get(w, n_ops) < i - 2]
            pool = early or acts or weights
            op["inputs"] = sorted(set(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2))))
            op["outputs"] = [new_act()] if draw(st.booleans()) else []
        elif flavour == "inplace" and acts:
            target = draw(st.sampled_from(acts))
            op["inputs"] = [target]
            op["mutates"] = [target]
        elif flavour == "kv" and kv:
            op["inputs"] = sorted({"kv", *draw(st.lists(st.sampled_from(available), max_size=1))} if available
                                  else {"kv"})
            op["mutates"] = ["kv"]
        else:
            op["inputs"] = sorted(set(draw(st.lists(st.sampled_from(available), max_size=3)))) if available else []
            op["outputs"] = [new_act() for _ in range(draw(st.integers(0 if op["inputs"] else 1, 2)))]
        if "time_s" not in op and "flops" not in op:
            timing(op)
        for x in op["inputs"]:
            if x in weights:
                weight_reads.setdefault(x, i)
        ops.append(op)
    if optimizer is None:
        optimizer = bool(weights) and draw(st.integers(0, 4)) > 0
    if optimizer:
        if not weights:
            weights = ["w_opt"]
            tensors.append({"id": "w_opt", "bytes": draw(size), "kind": "weight"})
        updated = weights if draw(st.integers(0, 3)) else sorted(set(draw(st.lists(st.sampled_from(weights),
                                                                                   min_size=1))))
        grads = []
        for k, w in enumerate(updated):  # backward-like ops make one gradient per weight, read only by its update
            grad = f"g{k}"
            tensors.append({"id": grad, "bytes": draw(size), "kind": "gradient"})
            reads = sorted({w, *draw(st.lists(st.sampled_from(acts), max_size=1))}) if acts else [w]
            ops.append(timing({"id": f"bwd{k}", "inputs": reads, "outputs": [grad], "phase": "backward"}))
            grads.append(grad)
        for k, w in enumerate(updated):
            state = f"state{k}"
            tensors.append({"id": state, "bytes": draw(st.sampled_from(BIG)), "kind": "optimizer_state"})
            upd: dict[str, Any] = {"id": f"opt{k}", "inputs": [w, state, grads[k]], "outputs": [],
                                   "mutates": [w, state], "host_ok": True, "category": "optimizer",
                                   "phase": "optimizer"}
            if draw(st.booleans()):
                upd["time_s"] = draw(st.sampled_from([0.0, 1e-5, 1e-4, 1e-3]))
            else:
                upd["flops"] = draw(st.sampled_from([1e6, 1e9]))
                upd["bytes_accessed"] = draw(st.sampled_from([MiB, 64 * MiB]))
            ops.append(upd)
    return graph_from_dict({"format": "tierplan-graph/1", "name": "random", "tensors": tensors, "ops": ops})


#: The lower tiers of a hierarchy (the compute tier HBM comes first); SSD is reached through the tier
#: before it when ``via`` says so.
LOWER = [("DDR",), ("POOL",), ("DDR", "SSD"), ("DDR", "SSD"), ("DDR", "POOL"), ("POOL", "SSD"),
         ("DDR", "SSD", "POOL"), ("DDR", "SSD"), ("POOL", "SSD")]


@st.composite
def hierarchies(draw: Any, graph: Graph, host_compute: bool | None = None) -> Hardware:
    """2-4 tiers; the compute tier's budget between the largest op's footprint and the no-offload peak."""
    from core.liveness import analyze

    live = analyze(graph)
    need = int(live.required_bytes.max()) if live.n_ops else 0
    peak = max(live.no_offload_peak_bytes, need, 1)
    # uniform fractions: hypothesis' own numbers favour the ends of a range (0, the maximum), which would make
    # most budgets "just the largest op" or "everything fits"
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    lower = draw(st.sampled_from(LOWER))
    # most inference graphs stream their weights: a budget near the largest op and a DDR too small for the
    # weights, so they start on the SSD and come up through DDR (a multi-hop route) every step
    inference = not any(op.host_ok for op in graph.ops)
    streaming = inference and graph.persistent_bytes > 0 and rng.random() < 0.75
    if streaming:
        hbm = need + int((peak - need) * 0.15 * rng.random())
        lower = ("DDR", "SSD")
    elif rng.random() < 0.08:  # a few draws have room for everything
        hbm = peak + int(peak * 0.1 * rng.random())
    else:
        hbm = need + int((peak - need) * 0.97 * rng.random())
    total = max(sum(t.bytes for t in graph.tensors), 1)
    tiers: list[dict[str, Any]] = [{"name": "HBM", "capacity_bytes": hbm}]
    links: list[dict[str, Any]] = []
    fast = st.sampled_from([1e9, 4e9, 16e9, 64e9, 200e9, 500e9, 2e9, 8e9])
    slow = st.sampled_from([2e9, 8e9, 25e9])
    lat = st.sampled_from([0.0, 1e-6, 2e-6, 1e-4])
    # SSD mostly sits behind the first lower tier (DDR or the pool): a multi-hop route
    ssd_via = "HBM"
    if "SSD" in lower and lower[0] != "SSD" and (streaming or draw(st.integers(0, 5))):
        ssd_via = lower[0]
    persistent = graph.persistent_bytes
    for name in lower:
        if name == "SSD":
            capacity, via, bw = 4 * total, ssd_via, slow
        elif name == ssd_via:
            # a first hop that is often too small for all it would take: the rest goes on to the SSD
            excess = max(peak - hbm, 0) + 1  # what must leave the compute tier at the worst op
            largest = max((t.bytes for t in graph.tensors), default=0)
            # weights that fit neither here nor in the compute tier start on the SSD and come up in two hops
            if streaming:
                capacity = max(persistent // 4, 2 * largest)
            else:
                capacity = draw(st.sampled_from([persistent // 2 + excess // 2, persistent + excess, 2 * total]))
            via, bw = "HBM", fast
        else:
            capacity, via, bw = draw(st.sampled_from([2 * total, total, total // 2])), "HBM", fast
        tiers.append({"name": name, "capacity_bytes": capacity})
        for src, dst in ((via, name), (name, via)):
            links.append({"src": src, "dst": dst, "bandwidth_Bps": draw(bw), "latency_s": draw(lat)})
    raw = {
        "format": "tierplan-hardware/1", "name": "random",
        "compute": {"peak_flops": 1e14, "efficiency": 0.5, "memory_bandwidth_Bps": 1e12},
        "compute_tier": "HBM", "tiers": tiers, "links": links,
    }
    if host_compute if host_compute is not None else (not streaming and draw(st.integers(0, 4)) > 0):
        host = draw(st.sampled_from([t for t in tiers[1:] if t["name"] != "SSD"]))
        host["compute"] = {"peak_flops": draw(st.sampled_from([2e12, 1e13])),
                           "memory_bandwidth_Bps": draw(st.sampled_from([2e11, 5e11]))}
    return hardware_from_dict(raw)
