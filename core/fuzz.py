"""Fuzzing the planners against the independent validator (``python -m core fuzz``).

Each case is a random step graph and hierarchy drawn from one integer seed with numpy's generator, on
purpose not the hypothesis strategies the tests tune (tests/strategies.py): random DAGs of 8-400 ops with
forward-like chains over weights, activations saved for a backward that reads them far later, in-place
updates of activations, a KV-cache-like tensor appended in place, optimizer updates of weights and state
that may run on a host, zero-time ops; 2-4 tiers (DDR, SSD, a pooled tier) with links of 1-500 GB/s, SSD
often reached through DDR, host CPUs on some; a compute-tier budget of 20-100 % of the no-offload peak.

Every policy plans every case and :func:`core.validate.validate_plan` replays the plan. A failure is an
invalid plan, a crash (an exception that is not a clear infeasibility), an infeasibility whose reason the
graph and hardware contradict (an op's footprint that fits, persistent bytes that fit), or the default
policy giving up where another policy found a valid plan. Each failure prints the case seed and leaves the graph, hardware
and plan (when there is one) as JSON in the output directory, so ``python -m core plan`` / ``validate``
reproduce it.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from core import errors
from core.errors import InfeasibleError, PlanInvalidError
from core.graph import Graph, graph_from_dict, graph_to_dict
from core.hardware import Hardware, hardware_from_dict, hardware_to_dict
from core.plan import ComputeEvent, Plan, TransferEvent, plan_to_dict

__all__ = ["DEFAULT_POLICY", "FuzzFailure", "FuzzSummary", "PolicyStats", "random_case", "random_graph",
           "random_hardware", "run_fuzz", "format_summary"]

DEFAULT_POLICY = "tierplan"
#: What a planner raises when its own replay rejects its plan (core.errors.PlanBugError where it exists).
_SELF_CHECK: tuple[type[Exception], ...] = tuple({PlanInvalidError, getattr(errors, "PlanBugError", PlanInvalidError)})
MiB = 2**20
#: Outcomes of one plan attempt, in table order.
OUTCOMES = ("valid", "infeasible", "invalid", "crash")
#: What a valid plan does, in table order.
FEATURES = ("moved", "multi-hop", "host", "recompute")

Planner = Callable[[Graph, Hardware], Plan]


# ------------------------------------------------------------------------------------------ generators


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def random_graph(rng: np.random.Generator, n_ops: int | None = None, name: str = "fuzz") -> Graph:
    """A random training- or inference-like step of about ``n_ops`` ops (8-400 when not given)."""
    target = n_ops if n_ops is not None else round(_log_uniform(rng, 8, 400))
    tensors: list[dict[str, Any]] = []
    ops: list[dict[str, Any]] = []
    size = {}

    def tensor(tid: str, kind: str, nbytes: int) -> str:
        tensors.append({"id": tid, "bytes": nbytes, "kind": kind})
        size[tid] = nbytes
        return tid

    def nbytes(lo: float = 64 * 1024, hi: float = 256 * MiB) -> int:
        return 0 if rng.random() < 0.03 else int(_log_uniform(rng, lo, hi))

    def timing(op: dict[str, Any], cheap: bool = False) -> dict[str, Any]:
        r = rng.random()
        if r < 0.06:
            op["time_s"] = 0.0
        elif cheap or r < 0.5:
            op["time_s"] = _log_uniform(rng, 1e-6, 1e-4 if cheap else 2e-2)
        else:
            op["flops"] = _log_uniform(rng, 1e8, 1e13)
            op["bytes_accessed"] = int(_log_uniform(rng, MiB, 1e9))
        return op

    training = rng.random() < 0.75
    n_weights = max(1, int(target * rng.uniform(0.08, 0.25)))
    weights = [tensor(f"w{k}", "weight", nbytes()) for k in range(n_weights)]
    inputs = [tensor(f"in{k}", "input", nbytes()) for k in range(int(rng.integers(1, 3)))]
    kv = tensor("kv", "kv_cache", nbytes()) if rng.random() < 0.3 else None
    n_fwd = max(1, int(target * (0.5 if training else 0.9)))
    acts: list[str] = []
    saved: list[tuple[str, str]] = []  # (activation, weight) pairs a backward op reads later
    current = inputs[0]
    for i in range(n_fwd):
        kind = rng.choice(["layer", "layer", "layer", "inplace", "branch", "expand", "reuse", "kv"])
        op: dict[str, Any] = {"id": f"f{i}", "inputs": [], "outputs": [], "phase": "forward"}
        if kind == "inplace" and acts:
            target_t = acts[int(rng.integers(max(0, len(acts) - 5), len(acts)))]
            op.update(inputs=[target_t], mutates=[target_t], category="elementwise")
        elif kind == "kv" and kv is not None:
            op.update(inputs=sorted({kv, current}), mutates=[kv], category="attention")
        elif kind == "expand":
            small = min(inputs + acts[-3:], key=lambda t: size[t])
            out = tensor(f"a{len(acts)}", "activation", nbytes(16 * MiB, 512 * MiB))
            acts.append(out)
            op.update(inputs=[small], outputs=[out])
            timing(op, cheap=True)
        elif kind == "branch" and len(acts) > 1:
            picks = rng.choice(len(acts), size=min(len(acts), int(rng.integers(1, 4))), replace=False)
            op["inputs"] = sorted({acts[int(k)] for k in picks})
            for _ in range(int(rng.integers(0, 3))):
                out = tensor(f"a{len(acts)}", "activation", nbytes())
                acts.append(out)
                op["outputs"].append(out)
        else:  # a layer over a weight; "reuse" picks a weight from far back (tied embeddings, shared blocks)
            w = weights[int(rng.integers(0, max(1, len(weights) // 4)))] if kind == "reuse" else \
                weights[i % len(weights)]
            out = tensor(f"a{len(acts)}", "activation", nbytes())
            acts.append(out)
            op.update(inputs=sorted({current, w}), outputs=[out], category="matmul")
            saved.append((current, w))
            current = out
        if "time_s" not in op and "flops" not in op:
            timing(op)
        if not op["inputs"] and not op["outputs"]:
            op["inputs"] = [current]
        ops.append(op)
    grads: dict[str, str] = {}
    if training:
        grad = tensor("loss", "activation", 4096)
        ops.append(timing({"id": "loss", "inputs": [current], "outputs": [grad], "category": "loss"}))
        for k, (act, w) in enumerate(reversed(saved)):
            if len(ops) >= target - len(grads) and grads:
                break
            outs = [tensor(f"d{k}", "activation", max(size.get(act, 0), 1))]
            if w not in grads:
                grads[w] = tensor(f"g_{w}", "gradient", size[w])
                outs.append(grads[w])
            ops.append(timing({"id": f"b{k}", "inputs": sorted({grad, act, w}), "outputs": outs,
                               "phase": "backward"}))
            grad = outs[0]
        for k, (w, g) in enumerate(grads.items()):
            state = tensor(f"s_{w}", "optimizer_state", 2 * size[w] if rng.random() < 0.7 else size[w])
            upd: dict[str, Any] = {"id": f"adam{k}", "inputs": [w, state, g], "outputs": [], "mutates": [w, state],
                                   "host_ok": True, "category": "optimizer", "phase": "optimizer"}
            if rng.random() < 0.5:
                upd["time_s"] = _log_uniform(rng, 1e-6, 1e-3)  # a profiled time, measured on the accelerator
            else:
                upd["flops"] = 12.0 * size[w]
                upd["bytes_accessed"] = 4 * size[w]
            ops.append(upd)
    for k in range(max(0, 8 - len(ops))):  # at least 8 ops: a few readers of the last activation
        ops.append(timing({"id": f"tail{k}", "inputs": [current], "outputs": []}))
    return graph_from_dict({"format": "tierplan-graph/1", "name": name, "tensors": tensors, "ops": ops})


def random_hardware(rng: np.random.Generator, graph: Graph, name: str = "fuzz") -> Hardware:
    """2-4 tiers, links of 1-500 GB/s, host CPUs on some, the compute tier at 20-100 % of the peak."""
    from core.liveness import analyze

    peak = max(analyze(graph).no_offload_peak_bytes, 1)
    total = max(sum(t.bytes for t in graph.tensors), 1)
    shapes = [("DDR",), ("POOL",), ("DDR", "SSD"), ("DDR", "POOL"), ("POOL", "SSD"), ("DDR", "SSD", "POOL")]
    lower = shapes[int(rng.integers(0, len(shapes)))]
    tiers: list[dict[str, Any]] = [{"name": "HBM", "capacity_bytes": int(peak * rng.uniform(0.2, 1.0))}]
    links: list[dict[str, Any]] = []

    def link(src: str, dst: str, lo: float, hi: float) -> None:
        bw = _log_uniform(rng, lo, hi)
        lat = float(rng.choice([0.0, 1e-6, 5e-6, 2e-5]))
        for a, b in ((src, dst), (dst, src)):
            links.append({"src": a, "dst": b, "bandwidth_Bps": float(np.clip(bw * rng.uniform(0.8, 1.2), lo, hi)),
                          "latency_s": lat})

    ssd_via = "DDR" if "DDR" in lower and rng.random() < 0.8 else ("POOL" if "POOL" in lower else "HBM")
    for tier in lower:
        if tier == "SSD":
            tiers.append({"name": "SSD", "capacity_bytes": 8 * total})
            link(ssd_via, "SSD", 1e9, 8e9)
        else:
            tight = tier == ssd_via and rng.random() < 0.6  # the first hop may not hold all it would take
            cap = total * (rng.uniform(0.2, 1.0) if tight else rng.uniform(1.0, 4.0))
            tiers.append({"name": tier, "capacity_bytes": int(cap)})
            link("HBM", tier, 1e9, 5e11)
    if "DDR" in lower and "POOL" in lower and rng.random() < 0.5:
        link("DDR", "POOL", 1e9, 1e11)
    hosts = [t for t in tiers[1:] if t["name"] != "SSD"]
    if hosts and rng.random() < 0.6:
        host = hosts[int(rng.integers(0, len(hosts)))]
        host["compute"] = {"peak_flops": _log_uniform(rng, 1e12, 2e13), "efficiency": 0.6,
                           "memory_bandwidth_Bps": _log_uniform(rng, 5e10, 5e11), "memory_efficiency": 0.8}
    raw = {
        "format": "tierplan-hardware/1", "name": name,
        "compute": {"peak_flops": _log_uniform(rng, 1e14, 1e15), "efficiency": float(rng.uniform(0.4, 0.7)),
                    "memory_bandwidth_Bps": _log_uniform(rng, 1e12, 3.5e12), "memory_efficiency": 0.8},
        "compute_tier": "HBM", "tiers": tiers, "links": links,
    }
    return hardware_from_dict(raw)


def random_case(seed: int) -> tuple[Graph, Hardware]:
    """The graph and hierarchy of one case seed (the number a failure prints)."""
    rng = np.random.default_rng(seed)
    graph = random_graph(rng, name=f"fuzz-{seed}")
    return graph, random_hardware(rng, graph, name=f"fuzz-{seed}")


# -------------------------------------------------------------------------------------------- running


@dataclass
class PolicyStats:
    """Counts for one policy: attempts by outcome and, among valid plans, what they do."""

    plans: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    features: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0))
    incomplete: int = 0
    seconds: float = 0.0
    #: infeasible results by the reason they give (``InfeasibleError.reason`` where the planner sets one)
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FuzzFailure:
    seed: int
    policy: str
    kind: str  # "invalid", "crash", "incomplete" or "wrong-reason"
    message: str
    directory: str


@dataclass
class FuzzSummary:
    cases: int = 0
    seconds: float = 0.0
    per_policy: dict[str, PolicyStats] = field(default_factory=dict)
    failures: list[FuzzFailure] = field(default_factory=list)

    @property
    def plans(self) -> int:
        return sum(s.plans for s in self.per_policy.values())

    def count(self, outcome: str) -> int:
        return sum(s.outcomes[outcome] for s in self.per_policy.values())

    @property
    def ok(self) -> bool:
        """No invalid plan, no crash, no false reason (incompleteness is reported, not fatal)."""
        return self.count("invalid") == 0 and self.count("crash") == 0 and \
            not any(f.kind == "wrong-reason" for f in self.failures)


def _wrong_reason(graph: Graph, hw: Hardware, exc: InfeasibleError) -> str:
    """Re-check the reasons that graph and hardware alone decide; '' when the claim holds or is a policy's."""
    reason = getattr(exc, "reason", None)
    if reason == "op_footprint":
        op = getattr(exc, "op", None)
        if op not in graph.op_index:
            return f"names unknown op {op!r}"
        o = graph.ops[graph.op_index[op]]
        own = sum(graph.tensor_by_id[x].bytes for x in dict.fromkeys((*o.inputs, *o.outputs)))
        if own <= hw.capacity(hw.compute_tier):
            return f"op '{op}' needs {own} bytes, which fit in {hw.compute_tier}"
    elif reason == "persistent_total":
        total = sum(t.capacity_bytes for t in hw.tiers)
        if graph.persistent_bytes <= total:
            return f"the persistent tensors ({graph.persistent_bytes} bytes) fit in all tiers ({total} bytes)"
    return ""


def _features(plan: Plan, compute_tier: str) -> list[str]:
    moves = [e for e in plan.events if isinstance(e, TransferEvent)]
    runs = [e for e in plan.events if isinstance(e, ComputeEvent)]
    found = []
    if moves:
        found.append("moved")
    if any(e.src != compute_tier and e.dst != compute_tier for e in moves):
        found.append("multi-hop")
    if any(e.tier and e.tier != compute_tier for e in runs):
        found.append("host")
    if any(e.recompute for e in runs):
        found.append("recompute")
    return found


def _write_case(out: Path, seed: int, graph: Graph, hw: Hardware, plans: Mapping[str, Plan]) -> Path:
    where = out / f"seed-{seed}"
    where.mkdir(parents=True, exist_ok=True)
    (where / "graph.json").write_text(json.dumps(graph_to_dict(graph)) + "\n", encoding="utf-8")
    (where / "hardware.json").write_text(json.dumps(hardware_to_dict(hw)) + "\n", encoding="utf-8")
    for policy, plan in plans.items():
        (where / f"plan-{policy}.json").write_text(json.dumps(plan_to_dict(plan)) + "\n", encoding="utf-8")
    return where


def _default_planners(policies: Sequence[str]) -> dict[str, Planner]:
    from core.planner import make_plan

    def planner(policy: str) -> Planner:
        return lambda graph, hw: make_plan(graph, hw, policy=policy)

    return {p: planner(p) for p in policies}


def all_policies() -> list[str]:
    from core.policies import list_policies

    return [p.key for p in list_policies() if p.key != "optimal"]


def run_fuzz(*, seconds: float, seed: int, out: str | Path, policies: Sequence[str] | None = None,
             planners: Mapping[str, Planner] | None = None, max_cases: int | None = None,
             log: TextIO | None = None) -> FuzzSummary:
    """Plan and validate random cases until ``seconds`` have passed (or ``max_cases`` cases).

    ``planners`` replaces the registered policies (policy name -> function), e.g. to check that a broken
    planner is caught. Case seeds come from ``seed``, so a run is reproducible case by case.
    """
    from core.validate import validate_plan

    chosen = dict(planners) if planners is not None else _default_planners(policies or all_policies())
    out = Path(out)
    summary = FuzzSummary(per_policy={p: PolicyStats() for p in chosen})
    master = np.random.default_rng(seed)
    began = time.perf_counter()
    while time.perf_counter() - began < seconds and (max_cases is None or summary.cases < max_cases):
        case_seed = int(master.integers(0, 2**31 - 1))
        graph, hw = random_case(case_seed)
        summary.cases += 1
        plans: dict[str, Plan] = {}
        problems: dict[str, tuple[str, str]] = {}
        infeasible: list[str] = []
        for policy, plan_fn in chosen.items():
            stats = summary.per_policy[policy]
            stats.plans += 1
            t0 = time.perf_counter()
            try:
                plan = plan_fn(graph, hw)
            except InfeasibleError as exc:
                stats.outcomes["infeasible"] += 1
                infeasible.append(policy)
                reason = str(getattr(exc, "reason", "") or "unclassified")
                stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
                wrong = _wrong_reason(graph, hw, exc)
                if wrong:
                    problems[policy] = ("wrong-reason", f"{wrong}: {exc}")
                continue
            except _SELF_CHECK as exc:  # the planner caught its own invalid plan: still a bug
                stats.outcomes["invalid"] += 1
                problems[policy] = ("invalid", str(exc))
                continue
            except Exception as exc:  # a crash is what the fuzzer looks for
                stats.outcomes["crash"] += 1
                tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
                problems[policy] = ("crash", tb)
                continue
            finally:
                stats.seconds += time.perf_counter() - t0
            try:
                report = validate_plan(graph, plan)
            except Exception as exc:  # the validator must not crash either
                stats.outcomes["crash"] += 1
                problems[policy] = ("crash", f"validator: {type(exc).__name__}: {exc}")
                plans[policy] = plan
                continue
            if report.ok:
                stats.outcomes["valid"] += 1
                for feature in _features(plan, hw.compute_tier):
                    stats.features[feature] += 1
            else:
                stats.outcomes["invalid"] += 1
                problems[policy] = ("invalid", f"{report.error_count} problem(s); first: {report.errors[0]}")
                plans[policy] = plan
        valid = [p for p in chosen if p not in infeasible and p not in problems]
        if DEFAULT_POLICY in infeasible and valid:
            summary.per_policy[DEFAULT_POLICY].incomplete += 1
            problems[DEFAULT_POLICY] = ("incomplete", f"infeasible, but {', '.join(valid)} found a valid plan")
        if problems:
            where = _write_case(out, case_seed, graph, hw, plans)
            for policy, (kind, message) in problems.items():
                summary.failures.append(FuzzFailure(case_seed, policy, kind, message, str(where)))
                if log is not None:
                    print(f"FAIL seed={case_seed} policy={policy} {kind}: {message} ({where})", file=log, flush=True)
    summary.seconds = time.perf_counter() - began
    return summary


def format_summary(summary: FuzzSummary) -> str:
    """The summary table: per policy, outcomes and what the valid plans did."""
    head = ["policy", "plans", *OUTCOMES, "incomplete", *FEATURES, "plan s"]
    rows = []
    for policy, s in summary.per_policy.items():
        valid = max(s.outcomes["valid"], 1)
        rows.append([policy, str(s.plans), *(str(s.outcomes[o]) for o in OUTCOMES), str(s.incomplete),
                     *(f"{100 * s.features[f] / valid:.0f} %" for f in FEATURES), f"{s.seconds:.1f}"])
    total_valid = max(summary.count("valid"), 1)
    features = {f: sum(s.features[f] for s in summary.per_policy.values()) for f in FEATURES}
    rows.append(["all", str(summary.plans), *(str(summary.count(o)) for o in OUTCOMES),
                 str(sum(s.incomplete for s in summary.per_policy.values())),
                 *(f"{100 * features[f] / total_valid:.0f} %" for f in FEATURES),
                 f"{sum(s.seconds for s in summary.per_policy.values()):.1f}"])
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head))]
    lines = [f"{summary.cases} cases, {summary.plans} plans in {summary.seconds:.1f} s "
             f"(moved / multi-hop / host / recompute: share of valid plans)"]
    for r in [head, *rows]:
        lines.append("  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))))
    for policy, s in summary.per_policy.items():
        if s.reasons:
            lines.append(f"{policy} infeasible because: " +
                         ", ".join(f"{k} {v}" for k, v in sorted(s.reasons.items(), key=lambda kv: -kv[1])))
    if summary.failures:
        lines.append(f"{len(summary.failures)} failure(s); seeds: " +
                     ", ".join(sorted({str(f.seed) for f in summary.failures})))
    return "\n".join(lines)
