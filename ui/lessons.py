"""The Learn page's examples and the facts its sentences state, computed from real plans.

Every sentence of the walkthrough that says what the planner does is built from these facts (never typed
in), and ``tests/test_lessons.py`` checks each one against the plans the page's widgets can produce: the
widgets of a section span exactly the settings its facts were computed over. Streamlit-free.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from core.graph import Graph, graph_from_dict
from core.hardware import Hardware, with_capacity
from core.plan import ComputeEvent, Plan, TransferEvent
from core.planner import make_plan
from core.sweep import with_link_bandwidth

__all__ = [
    "GiB", "WHY_HBM_GIB", "WHY_DEFAULT_GIB", "PREFETCH_HBM_GIB", "PREFETCH_BW_GBPS", "PREFETCH_DEFAULT_GBPS",
    "RECOMPUTE_HBM_GIB", "RECOMPUTE_DEFAULT_GIB", "teaching", "recompute_graph", "hardware_for", "plan_at",
    "WhyFacts", "PrefetchFacts", "RecomputeFacts", "why_facts", "prefetch_facts", "recompute_facts",
    "host_ops", "recomputed_ops", "moved_bytes", "hidden_transfers",
]

GiB = 2**30
#: Section 2 ("why tensors move"): the HBM slider's values (GiB); the link stays the teaching box's own.
WHY_HBM_GIB = tuple(float(v) for v in range(5, 17))
WHY_DEFAULT_GIB = 8.0
#: Section 3 ("how a prefetch hides a transfer"): HBM fixed, the link slider's values (GB/s, as the sidebar).
PREFETCH_HBM_GIB = 14.0
PREFETCH_BW_GBPS = tuple(float(v) for v in range(10, 401, 10))
PREFETCH_DEFAULT_GBPS = 40.0
#: Section 4 ("what recompute trades"): its own small graph, HBM slider (GiB) and a recompute switch.
RECOMPUTE_HBM_GIB = (5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0)
RECOMPUTE_DEFAULT_GIB = 6.0


@functools.cache
def teaching() -> tuple[Graph, Hardware]:
    """The tiny teaching graph and the teaching box."""
    from core.sources.presets import load_preset
    from core.sources.samples import load_sample

    return load_sample("tiny"), load_preset("teaching")


@functools.cache
def recompute_graph() -> Graph:
    """Two layers behind a cheap 1 ms ``expand`` that turns a 256 MiB input into a 2 GiB activation ``e``,
    read again by the last backward op: keeping the input and re-running ``expand`` costs 1 ms, moving
    ``e`` out and back costs two 2 GiB copies."""
    t = [("x", GiB // 4, "input"), ("w1", GiB, "weight"), ("w2", GiB, "weight"), ("e", 2 * GiB, "activation"),
         ("a1", GiB, "activation"), ("a2", GiB, "activation"), ("g2", GiB, "activation"), ("g1", GiB, "activation"),
         ("gx", GiB // 4, "activation")]
    ops = [("expand", ["x"], ["e"], 0.001, "elementwise", "forward"),
           ("fwd1", ["e", "w1"], ["a1"], 0.01, "matmul", "forward"),
           ("fwd2", ["a1", "w2"], ["a2"], 0.01, "matmul", "forward"),
           ("loss", ["a2"], ["g2"], 0.01, "loss", "forward"),
           ("bwd2", ["g2", "a1", "w2"], ["g1"], 0.02, "matmul", "backward"),
           ("bwd1", ["g1", "e", "w1"], ["gx"], 0.02, "matmul", "backward")]
    return graph_from_dict({
        "format": "tierplan-graph/1", "name": "recompute teaching graph",
        "tensors": [{"id": i, "bytes": b, "kind": k} for i, b, k in t],
        "ops": [{"id": i, "inputs": a, "outputs": o, "time_s": s, "category": c, "phase": p} for i, a, o, s, c, p in ops],
    })


def hardware_for(hbm_gib: float, link_gbps: float | None = None) -> Hardware:
    """The teaching box with ``hbm_gib`` of HBM and, when given, both HBM⇄DDR directions at ``link_gbps``."""
    _, hw = teaching()
    hw = with_capacity(hw, hw.compute_tier, int(hbm_gib * GiB))
    if link_gbps is not None:
        for name in (f"{hw.compute_tier}->DDR", f"DDR->{hw.compute_tier}"):
            hw = with_link_bandwidth(hw, name, link_gbps * 1e9)
    return hw


@functools.lru_cache(maxsize=256)
def plan_at(example: str, hbm_gib: float, link_gbps: float | None = None, recompute: bool = True,
            host_compute: bool = True) -> Plan | None:
    """The plan one widget setting gives (``None`` when nothing fits)."""
    from core.errors import TierplanError

    graph = teaching()[0] if example == "tiny" else recompute_graph()
    try:
        return make_plan(graph, hardware_for(hbm_gib, link_gbps), policy="tierplan",
                         params={"recompute": int(recompute), "host_compute": int(host_compute)})
    except TierplanError:
        return None


def host_ops(plan: Plan, compute_tier: str = "HBM") -> list[str]:
    return [e.op for e in plan.events if isinstance(e, ComputeEvent) and e.tier != compute_tier]


def recomputed_ops(plan: Plan) -> list[str]:
    return [e.op for e in plan.events if isinstance(e, ComputeEvent) and e.recompute]


def moved_bytes(plan: Plan) -> int:
    return sum(int(v) for v in plan.metrics.get("transfer_bytes", {}).values())


def hidden_transfers(plan: Plan, compute_tier: str = "HBM") -> int:
    """Copies that run entirely while the compute tier is busy (what "hidden behind compute" shows)."""
    busy = sorted((e.start, e.end) for e in plan.events if isinstance(e, ComputeEvent) and e.tier == compute_tier)
    count = 0
    for e in plan.events:
        if isinstance(e, TransferEvent) and e.end > e.start:
            covered = sum(max(0.0, min(e.end, b) - max(e.start, a)) for a, b in busy)
            count += covered >= (e.end - e.start) * (1 - 1e-9)
    return count


@dataclass(frozen=True)
class WhyFacts:
    no_offload_peak_bytes: int
    default_capacity_bytes: int
    #: HBM slider value (GiB) -> (peak HBM bytes of the plan, bytes moved); None where nothing fits.
    by_hbm: dict[float, tuple[int, int] | None]
    smallest_nothing_moves_gib: float | None
    #: At the default: ops the host runs, step time with and without host compute (None: does not fit).
    default_host_ops: tuple[str, ...]
    default_step_s: float
    default_step_without_host_s: float | None


@functools.cache
def why_facts() -> WhyFacts:
    from core.metrics import no_offload_peak_bytes

    graph, _ = teaching()
    by_hbm: dict[float, tuple[int, int] | None] = {}
    for gib in WHY_HBM_GIB:
        p = plan_at("tiny", gib)
        by_hbm[gib] = None if p is None else (int(p.metrics["peak_bytes"]["HBM"]), moved_bytes(p))
    none_moving = [g for g, v in by_hbm.items() if v is not None and v[1] == 0]
    default = plan_at("tiny", WHY_DEFAULT_GIB)
    assert default is not None, "the Learn page's default setting must have a plan"
    no_host = plan_at("tiny", WHY_DEFAULT_GIB, host_compute=False)
    return WhyFacts(no_offload_peak_bytes(graph), int(WHY_DEFAULT_GIB * GiB), by_hbm,
                    min(none_moving) if none_moving else None, tuple(host_ops(default)),
                    float(default.metrics["step_time_s"]),
                    float(no_host.metrics["step_time_s"]) if no_host is not None else None)


@dataclass(frozen=True)
class PrefetchFacts:
    #: link slider value (GB/s) -> (stall s, bytes moved, copies hidden behind compute, copies, step s).
    by_bw: dict[float, tuple[float, int, int, int, float]]
    slowest_stall_s: float
    #: The smallest link speed from which on no setting of the slider stalls (None: it always stalls).
    no_stall_from_gbps: float | None
    #: The smallest link speed from which on every copy runs while HBM computes (None: never).
    all_hidden_from_gbps: float | None
    same_bytes_everywhere: bool


#: Below this a stall is reported as none (the scheduler's times are sums of float seconds).
STALL_EPS_S = 1e-6


@functools.cache
def prefetch_facts() -> PrefetchFacts:
    by_bw: dict[float, tuple[float, int, int, int, float]] = {}
    for bw in PREFETCH_BW_GBPS:
        p = plan_at("tiny", PREFETCH_HBM_GIB, bw, recompute=False)
        assert p is not None, "every link speed of section 3 must have a plan"
        copies = sum(1 for e in p.events if isinstance(e, TransferEvent))
        by_bw[bw] = (float(p.metrics["stall_time_s"]), moved_bytes(p), hidden_transfers(p), copies,
                     float(p.metrics["step_time_s"]))

    def from_on(ok: object) -> float | None:
        start = None
        for bw in reversed(PREFETCH_BW_GBPS):
            if not ok(by_bw[bw]):  # type: ignore[operator]
                break
            start = bw
        return start

    return PrefetchFacts(by_bw, by_bw[PREFETCH_BW_GBPS[0]][0], from_on(lambda v: v[0] <= STALL_EPS_S),
                         from_on(lambda v: v[3] > 0 and v[2] == v[3]), len({v[1] for v in by_bw.values()}) == 1)


@dataclass(frozen=True)
class RecomputeFacts:
    #: HBM slider value (GiB) -> ((recompute on) ops re-run, step s, bytes moved; (off) step s, bytes moved).
    by_hbm: dict[float, tuple[tuple[str, ...], float, int, float | None, int | None] | None]
    #: Slider values at which the planner re-runs an op.
    recompute_at_gib: tuple[float, ...]


@functools.cache
def recompute_facts() -> RecomputeFacts:
    by_hbm: dict[float, tuple[tuple[str, ...], float, int, float | None, int | None] | None] = {}
    for gib in RECOMPUTE_HBM_GIB:
        on = plan_at("recompute", gib, recompute=True)
        off = plan_at("recompute", gib, recompute=False)
        if on is None:
            by_hbm[gib] = None
            continue
        by_hbm[gib] = (tuple(recomputed_ops(on)), float(on.metrics["step_time_s"]), moved_bytes(on),
                       float(off.metrics["step_time_s"]) if off else None, moved_bytes(off) if off else None)
    at = tuple(g for g, v in by_hbm.items() if v is not None and v[0])
    return RecomputeFacts(by_hbm, at)
