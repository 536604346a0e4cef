"""Planner benchmark: planning + simulation time on synthetic graphs, and plan quality on the samples.

Run: ``python bench/bench_planner.py [--sizes 1000 10000 100000] [--quick]``. Prints Markdown tables (the
README quotes them). Timings are wall-clock seconds on this machine, best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import InfeasibleError
from core.graph import Graph, graph_from_dict
from core.hardware import Hardware, hardware_from_dict, with_capacity
from core.liveness import analyze
from core.planner import make_plan
from core.units import format_bytes
from core.validate import validate_plan

MiB = 2**20


def synthetic_training(n_ops: int) -> Graph:
    """A training-shaped chain: per layer 4 forward ops, 4 backward ops, one optimizer update.

    Forward activations are saved for the backward; each layer has a weight and an optimizer state.
    """
    layers = max(1, n_ops // 9)
    tensors: list[dict] = [{"id": "x", "bytes": 64 * MiB, "kind": "input"}]
    ops: list[dict] = []
    prev = "x"
    for layer in range(layers):
        tensors += [{"id": f"w{layer}", "bytes": 48 * MiB, "kind": "weight"},
                    {"id": f"s{layer}", "bytes": 96 * MiB, "kind": "optimizer_state"},
                    {"id": f"g{layer}", "bytes": 48 * MiB, "kind": "gradient"}]
        for k in range(4):
            out = f"a{layer}.{k}"
            tensors.append({"id": out, "bytes": (32 + 16 * k) * MiB, "kind": "activation"})
            ins = [prev, f"w{layer}"] if k == 0 else [prev]
            ops.append({"id": f"f{layer}.{k}", "inputs": ins, "outputs": [out], "time_s": 2e-4 * (1 + k % 2),
                        "category": "matmul" if k == 0 else "elementwise", "layer": f"layers.{layer}",
                        "phase": "forward"})
            prev = out
    grad = prev
    for layer in reversed(range(layers)):
        for k in reversed(range(4)):
            saved = f"a{layer}.{k - 1}" if k else (f"a{layer - 1}.3" if layer else "x")
            out = f"d{layer}.{k}"
            tensors.append({"id": out, "bytes": (32 + 16 * k) * MiB, "kind": "activation"})
            ins = [grad, saved] + ([f"w{layer}"] if k == 0 else [])
            outs = [out] + ([f"g{layer}"] if k == 0 else [])
            ops.append({"id": f"b{layer}.{k}", "inputs": ins, "outputs": outs, "time_s": 4e-4,
                        "category": "matmul", "layer": f"layers.{layer}", "phase": "backward"})
            grad = out
    for layer in range(layers):
        ops.append({"id": f"adam{layer}", "inputs": [f"g{layer}", f"w{layer}", f"s{layer}"],
                    "mutates": [f"w{layer}", f"s{layer}"], "time_s": 1e-4, "category": "optimizer",
                    "phase": "optimizer", "host_ok": True})
    return graph_from_dict({"format": "tierplan-graph/1", "name": f"synthetic-{len(ops)}", "tensors": tensors, "ops": ops})


def hierarchy(hbm_bytes: int) -> Hardware:
    return hardware_from_dict({
        "format": "tierplan-hardware/1", "name": "bench", "compute": {"peak_flops": "400 TFLOPS"},
        "compute_tier": "HBM",
        "tiers": [{"name": "HBM", "capacity_bytes": hbm_bytes}, {"name": "DDR", "capacity_bytes": "64 TiB"},
                  {"name": "SSD", "capacity_bytes": "1 PiB"}],
        "links": [{"src": "HBM", "dst": "DDR", "bandwidth_Bps": "64 GB/s", "latency_s": "5 us"},
                  {"src": "DDR", "dst": "HBM", "bandwidth_Bps": "64 GB/s", "latency_s": "5 us"},
                  {"src": "DDR", "dst": "SSD", "bandwidth_Bps": "7 GB/s", "latency_s": "50 us"},
                  {"src": "SSD", "dst": "DDR", "bandwidth_Bps": "7 GB/s", "latency_s": "50 us"}],
    })


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def speed_table(sizes: list[int], repeat: int) -> None:
    print("| ops | events | analyse (s) | plan, one order (s) | plan, portfolio = default (s) | validate (s) "
          "| HBM budget | step / compute |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    for n in sizes:
        g = synthetic_training(n)
        t_live, live = best_of(lambda g=g: analyze(g), repeat)
        hw = hierarchy(int(live.no_offload_peak_bytes * 0.5))
        t_one, _ = best_of(lambda g=g, hw=hw, live=live: make_plan(g, hw, liveness=live, params={"portfolio": 0}), repeat)
        t_plan, plan = best_of(lambda g=g, hw=hw, live=live: make_plan(g, hw, liveness=live), repeat)
        t_val, report = best_of(lambda g=g, plan=plan: validate_plan(g, plan), 1)
        assert report.ok, report.errors[:3]
        m = plan.metrics
        print(f"| {len(g.ops):,} | {len(plan.events):,} | {t_live:.3f} | {t_one:.3f} | {t_plan:.3f} | {t_val:.3f} | "
              f"50 % of {format_bytes(live.no_offload_peak_bytes)} | {m['step_time_s'] / m['compute_only_time_s']:.3f} |")


def quality_table(fractions: list[float], policies: list[str]) -> None:
    from core.sources.presets import load_preset
    from core.sources.samples import list_samples, load_sample

    head = " | ".join(f"{int(f * 100)} %" for f in fractions)
    print(f"| sample | hardware | policy | {head} |")
    print("|---|---|---|" + "---:|" * len(fractions))
    for info in list_samples():
        g = load_sample(info.key)
        hw = load_preset(info.hardware)
        live = analyze(g)
        peak = live.no_offload_peak_bytes
        for policy in policies:
            cells = []
            for f in fractions:
                try:
                    plan = make_plan(g, with_capacity(hw, hw.compute_tier, int(peak * f)), policy=policy, liveness=live)
                    m = plan.metrics
                    cells.append(f"{m['step_time_s'] / m['compute_only_time_s']:.3f}")
                except InfeasibleError:
                    cells.append("infeasible")
            print(f"| {info.key} | {info.hardware} | {policy} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fractions", type=float, nargs="*", default=[1.0, 0.8, 0.6, 0.5, 0.4, 0.3])
    ap.add_argument("--policies", nargs="*", default=["tierplan"])
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    print("## Planning speed (synthetic training graphs, HBM at 50 % of the no-offload peak)\n")
    speed_table(args.sizes, args.repeat)
    if not args.skip_quality:
        print("\n## Plan quality: step time / compute-only time at HBM = x % of the no-offload peak\n")
        quality_table(args.fractions, args.policies)


if __name__ == "__main__":
    main()
