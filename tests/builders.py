"""Small graphs and hierarchies shared by the planner, scheduler, sweep and policy tests."""

from __future__ import annotations

from core.graph import Graph, graph_from_dict
from core.hardware import Hardware, hardware_from_dict
from core.plan import Plan
from core.validate import validate_plan

GiB = 2**30


def toy_training(layers: int = 4) -> Graph:
    """Forward, backward reading saved activations, an in-place optimizer step; 1 GiB tensors, ms ops."""
    tensors = [{"id": "x", "bytes": GiB, "kind": "input"}, {"id": "loss", "bytes": 1024, "kind": "activation"}]
    ops = []
    prev = "x"
    for layer in range(layers):
        tensors += [
            {"id": f"w{layer}", "bytes": GiB, "kind": "weight"},
            {"id": f"a{layer}", "bytes": 2 * GiB, "kind": "activation"},
            {"id": f"o{layer}", "bytes": GiB, "kind": "optimizer_state"},
            {"id": f"g{layer}", "bytes": GiB, "kind": "gradient"},
            {"id": f"d{layer}", "bytes": GiB, "kind": "activation"},
        ]
        ops.append({"id": f"fwd{layer}", "inputs": [prev, f"w{layer}"], "outputs": [f"a{layer}"], "time_s": 0.01})
        prev = f"a{layer}"
    ops.append({"id": "loss", "inputs": [prev], "outputs": ["loss"], "time_s": 0.001})
    grad = "loss"
    for layer in reversed(range(layers)):
        saved = f"a{layer - 1}" if layer else "x"
        ops.append({"id": f"bwd{layer}", "inputs": [grad, saved, f"w{layer}"], "outputs": [f"g{layer}", f"d{layer}"],
                    "time_s": 0.02})
        grad = f"d{layer}"
    for layer in range(layers):
        ops.append({"id": f"adam{layer}", "inputs": [f"g{layer}", f"w{layer}", f"o{layer}"],
                    "mutates": [f"w{layer}", f"o{layer}"], "time_s": 0.002})
    return graph_from_dict({"format": "tierplan-graph/1", "name": "toy", "tensors": tensors, "ops": ops})


def hierarchy(hbm: str | int = "12 GiB", link: str = "200 GB/s", *, ddr: str = "100 GiB", ssd: bool = True,
              ssd_capacity: str = "1 TiB") -> Hardware:
    """HBM and DDR linked both ways at ``link``, and optionally an SSD behind DDR at 5 GB/s."""
    tiers = [{"name": "HBM", "capacity_bytes": hbm}, {"name": "DDR", "capacity_bytes": ddr}]
    links = [{"src": "HBM", "dst": "DDR", "bandwidth_Bps": link}, {"src": "DDR", "dst": "HBM", "bandwidth_Bps": link}]
    if ssd:
        tiers.append({"name": "SSD", "capacity_bytes": ssd_capacity})
        links += [{"src": "DDR", "dst": "SSD", "bandwidth_Bps": "5 GB/s"},
                  {"src": "SSD", "dst": "DDR", "bandwidth_Bps": "5 GB/s"}]
    return hardware_from_dict({"format": "tierplan-hardware/1", "name": "toy-hw", "compute": {"peak_flops": 1e14},
                               "compute_tier": "HBM", "tiers": tiers, "links": links})


def assert_valid(graph: Graph, plan: Plan) -> None:
    """The independent replay accepts the plan and the compute tier never exceeds its capacity."""
    report = validate_plan(graph, plan)
    assert report.ok, report.errors[:5]
    hw = plan.hardware
    cap = next(t["capacity_bytes"] for t in hw["tiers"] if t["name"] == hw["compute_tier"])
    assert plan.metrics["peak_bytes"][hw["compute_tier"]] <= cap
