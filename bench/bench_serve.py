"""Serving benchmarks: sequence-only hit rate and time per policy, and the timed simulation.

    python bench/bench_serve.py            # the shipped Mooncake trace
    python bench/bench_serve.py --quick    # fewer capacities

Prints markdown tables (hit rate per policy at several cache sizes, seconds per run; timed simulation per
policy with TTFT and the time it takes). Wall time and CPU time are both shown: on a machine shared with
other jobs the wall time includes waiting for a core, the CPU time does not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.serve.capacity import run_capacity
from core.serve.check import check_log
from core.serve.model import load_serve_model
from core.serve.policies import POLICIES
from core.serve.simulate import ServeConfig, simulate
from core.serve.trace import SyntheticSpec, load_trace, sample_trace_path, synthetic_trace
from core.sources.presets import load_preset
from core.units import format_bytes


def capacity_table(trace, capacities: list[int]) -> None:
    print(f"\n### Sequence-only prefix hit rate, {trace.name} ({trace.n_requests:,} requests, "
          f"{trace.n_blocks:,} blocks)\n")
    print("| policy | " + " | ".join(f"{c:,} blocks" for c in capacities) + " | unlimited | wall s per run (max) "
          "| CPU s per run (max) |")
    print("|---|" + "---:|" * (len(capacities) + 3))
    ceiling = run_capacity(trace, "lru", None)
    for policy in POLICIES:
        cells, worst, worst_cpu = [], 0.0, 0.0
        for c in capacities:
            cpu = time.process_time()
            r = run_capacity(trace, policy, c)
            worst_cpu = max(worst_cpu, time.process_time() - cpu)
            cells.append(f"{100 * r.prefix_hit_rate:.2f} %")
            worst = max(worst, r.elapsed_s)
        print(f"| {policy} | " + " | ".join(cells) + f" | {100 * ceiling.prefix_hit_rate:.2f} % | {worst:.3f} "
              f"| {worst_cpu:.3f} |")


def timed_table(trace, model_name: str, preset: str) -> None:
    model, hw = load_serve_model(model_name), load_preset(preset)
    print(f"\n### Timed simulation, {trace.name} · {model_name} on {preset} (defaults: 4 prefill + 4 decode "
          "instances, whole DDR and SSD as cache)\n")
    print("| policy | hit rate | HBM | DDR | SSD | TTFT p50 | TTFT p99 | compute saved | HBM->DDR | DDR->SSD "
          "| simulate wall (s) | simulate CPU (s) | check (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [("no cache", ServeConfig(policy="lru", hbm_cache=False, cache_tiers=())),
            ("HBM only (tierplan)", ServeConfig(cache_tiers=()))]
    rows += [(p, ServeConfig(policy=p)) for p in POLICIES]
    rows += [("tierplan, admit after 2 uses", ServeConfig(admit_after=2)),
             ("tierplan, load every hit", ServeConfig(selective_load=False)),
             ("tierplan, sequential load", ServeConfig(overlap="sequential"))]
    for label, cfg in rows:
        t, cpu = time.perf_counter(), time.process_time()
        r = simulate(trace, model, hw, cfg)
        sim_s, sim_cpu = time.perf_counter() - t, time.process_time() - cpu
        t = time.perf_counter()
        ok = check_log(r.log).ok
        chk_s = time.perf_counter() - t
        s = r.summary()
        tiers = s["hit_rate_by_tier"]
        print(f"| {label} | {100 * s['prefix_hit_rate']:.2f} % | " + " | ".join(
            f"{100 * tiers.get(t, 0.0):.2f} %" for t in ("HBM", "DDR", "SSD")) +
            f" | {1e3 * s['ttft_s']['p50']:.0f} ms | {s['ttft_s']['p99']:.2f} s | {100 * s['prefill_compute_saved']:.1f} % "
            f"| {format_bytes(s['link_bytes'].get('HBM->DDR', 0))} | {format_bytes(s['link_bytes'].get('DDR->SSD', 0))} "
            f"| {sim_s:.2f} | {sim_cpu:.2f} | {chk_s:.2f}{'' if ok else ' FAILED'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t = time.perf_counter()
    trace = load_trace(sample_trace_path())
    print(f"load {trace.name}: {time.perf_counter() - t:.3f} s")
    caps = [1_000, 10_000, 30_000] if args.quick else [200, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 40_000]
    capacity_table(trace, caps)
    capacity_table(synthetic_trace(SyntheticSpec(requests=3000, seed=1)), [200, 500, 1_000, 2_000, 5_000])
    capacity_table(synthetic_trace(SyntheticSpec(requests=2000, seed=7, arrivals="bursty", system_prompts=16,
                                                 turns_mean=5)), [100, 300, 1_000, 3_000, 6_000])
    timed_table(trace, "llama-2-7b", "h100-sxm")


if __name__ == "__main__":
    main()
