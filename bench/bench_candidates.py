"""What the planner's self-check, baseline candidates and the scheduler's second pass cost and give.

Run: ``python bench/bench_candidates.py [--ops 1000]``. Prints a Markdown table: CPU seconds of
``make_plan`` (process time, so other load on the machine does not count) and the step time, with the
baselines as portfolio candidates on or off and the scheduler's refining second pass on or off, on
Llama-2-7B training (HBM 52.5 GiB, 55 GB/s links: link-bound) and on a synthetic training graph at 50 %.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_planner import hierarchy, synthetic_training

import core.schedule as schedule
from core.hardware import apply_setting
from core.liveness import analyze
from core.planner import make_plan
from core.sources.presets import load_preset
from core.sources.samples import load_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ops", type=int, default=1000, help="ops of the synthetic graph")
    args = ap.parse_args()
    llama, h100 = load_sample("llama2-7b-train"), load_preset("h100-sxm")
    for key, value in (("HBM.capacity", "52.5GiB"), ("HBM->DDR.bandwidth", "55GB/s"), ("DDR->HBM.bandwidth", "55GB/s")):
        h100 = apply_setting(h100, key, value)
    synth = synthetic_training(args.ops)
    s_live = analyze(synth)
    cases = [("llama2-7b-train, HBM 52.5 GiB, 55 GB/s", llama, h100, analyze(llama)),
             (f"synthetic {args.ops} ops, HBM 50 %", synth, hierarchy(int(s_live.no_offload_peak_bytes * 0.5)), s_live)]
    default = schedule._REFINE_STALL
    print("| case | second pass | baselines | make_plan CPU (s) | step (s) |")
    print("|---|---|---|---:|---:|")
    for name, graph, hw, live in cases:
        for refine in (False, True):
            schedule._REFINE_STALL = default if refine else float("inf")
            for baselines in (0, 1):
                started = time.process_time()
                plan = make_plan(graph, hw, liveness=live, params={"baselines": baselines})
                cpu = time.process_time() - started
                print(f"| {name} | {'on' if refine else 'off'} | {'on' if baselines else 'off'} | {cpu:.2f} | "
                      f"{plan.metrics['step_time_s']:.4f} |")
    schedule._REFINE_STALL = default


if __name__ == "__main__":
    main()
