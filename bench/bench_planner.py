"""Planner benchmark: time per phase on synthetic graphs, sweep speed-up on 1 vs 2 workers, plan quality.

Run: ``python bench/bench_planner.py [--sizes 1000 10000 100000 1000000] [--sweep] [--profile 100000]``.
Prints Markdown tables (the README quotes them). Timings are wall-clock seconds on this machine, best of
``--repeat`` runs for rows under 10k ops, one run above.

- **Speed** (per size, each in a fresh process so its peak RSS is its own): load (graph JSON → Graph),
  analyse (liveness), first plan (``make_plan``'s fast path: one ranking order, no baseline candidates,
  no reordering, bound-guided rounding or local search),
  refined plan (``make_plan`` as the CLI runs it: the portfolio), schedule (one build of the first plan's
  schedule, on its own; both plans include one or more), validate (independent replay), metrics
  (core.metrics.compute_metrics on the refined plan), write (plan JSON),
  ops/s to the first and to the refined plan (analyse + plan), peak RSS. A size whose plan would take more
  than ``--max-row-s`` (estimated from the previous rows' growth) gets only its load and analyse columns,
  with the estimate printed as the reason.
- **Sweep** (``--sweep``): the same 64-point capacity sweep on a local process pool and on an embedded Dask
  cluster with 1 and with 2 workers, interleaved in one run and repeated; the ratio is measured, not assumed.
- **Profile** (``--profile N``): pyinstrument over ``make_plan`` on an N-op graph; prints the top lines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from core.errors import InfeasibleError
from core.graph import Graph, graph_from_dict, graph_to_dict, load_graph
from core.hardware import Hardware, hardware_from_dict, with_capacity
from core.liveness import analyze
from core.plan import plan_to_dict
from core.planner import make_plan
from core.units import format_bytes
from core.validate import validate_plan

MiB = 2**20
#: the clock phases are timed with: wall (perf_counter) or this process's CPU time (``--clock cpu``, the
#: fairer comparison of two versions of the code on a machine that other jobs share)
CLOCK = time.perf_counter


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
        t0 = CLOCK()
        out = fn()
        best = min(best, CLOCK() - t0)
    return best, out


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


#: the fast path: one ranking order, no baseline candidates, no reordering, bound-guided rounding or
#: local search (each plan is still validated); whichever of these the planner knows
FIRST_PARAMS = {"portfolio": 0, "baselines": 0}
FIRST_KWARGS = {"reorder": False, "bound": False, "search_s": 0.0, "time_budget_s": 0.0}


def _first_kwargs() -> dict:
    import inspect

    known = inspect.signature(make_plan).parameters
    return {k: v for k, v in FIRST_KWARGS.items() if k in known}


def _first_params() -> dict:
    """FIRST_PARAMS restricted to what the policy knows (older or newer planners name them differently)."""
    from core.policies import get_policy

    known = {p.key for p in get_policy("tierplan").params}
    return {k: v for k, v in FIRST_PARAMS.items() if k in known}


def _schedule_s(graph: Graph, hw: Hardware, live, params: dict) -> float | None:
    """One build of the schedule of the first plan's decisions (the decisions are made untimed)."""
    try:
        from core.policies import get_policy, resolve_params
        from core.schedule import build_schedule

        info = get_policy("tierplan")
        resolved = resolve_params(info, params)
        placement = info.decide(graph, hw, live, resolved)
        t0 = CLOCK()
        build_schedule(graph, hw, placement.liveness or live, placement.assignment, resolved, placement.op_tiers,
                       placement.prefetch_from)
        return CLOCK() - t0
    except (ImportError, TypeError, AttributeError):  # the scheduler's interface moved
        return None


def measure_size(n: int, repeat: int, plan: bool) -> dict:
    """One row of the speed table, measured in this process (run it in a fresh one for an honest RSS)."""
    row: dict = {"n": n}
    t0 = CLOCK()
    g = synthetic_training(n)
    row["generate_s"] = CLOCK() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.json"
        path.write_text(json.dumps(graph_to_dict(g), separators=(",", ":")))
        row["load_s"], g = best_of(lambda: load_graph(path), repeat)
        row["ops"] = len(g.ops)
        row["analyse_s"], live = best_of(lambda: analyze(g), repeat)
        row["budget"] = f"50 % of {format_bytes(live.no_offload_peak_bytes)}"
        if plan:
            hw = hierarchy(int(live.no_offload_peak_bytes * 0.5))
            fast = _first_params()
            kw = _first_kwargs()
            row["first_s"], first = best_of(lambda: make_plan(g, hw, liveness=live, params=fast, **kw), repeat)
            row["refined_s"], refined = best_of(lambda: make_plan(g, hw, liveness=live), repeat)
            row["schedule_s"] = _schedule_s(g, hw, live, fast)
            from core.metrics import compute_metrics

            row["metrics_s"], _ = best_of(lambda: compute_metrics(g, hw, refined.events, refined.initial), repeat)
            row["validate_s"], report = best_of(lambda: validate_plan(g, refined), 1)
            assert report.ok, report.errors[:3]
            out = Path(tmp) / "plan.json"
            row["write_s"], _ = best_of(lambda: out.write_text(json.dumps(plan_to_dict(refined), separators=(",", ":"))),
                                        repeat)
            row["events"] = len(refined.events)
            row["first_quality"] = first.metrics["step_time_s"] / first.metrics["compute_only_time_s"]
            row["refined_quality"] = refined.metrics["step_time_s"] / refined.metrics["compute_only_time_s"]
    row["peak_rss_bytes"] = _peak_rss_bytes()
    return row


def _row_in_subprocess(n: int, repeat: int, plan: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(n), "--repeat", str(repeat),
           "--clock", "cpu" if CLOCK is time.process_time else "wall"]
    if not plan:
        cmd.append("--no-plan")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"row {n} failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def speed_table(sizes: list[int], repeat: int, max_row_s: float) -> None:
    print("| ops | events | load (s) | analyse (s) | first plan (s) | refined plan (s) | schedule (s) | validate (s) "
          "| metrics (s) | write (s) | ops/s to first plan | ops/s to refined | peak RSS | HBM budget | step / compute: first, refined |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    done: list[dict] = []
    for n in sizes:
        plan_s = [r["analyse_s"] + r["first_s"] + r["refined_s"] for r in done]
        estimate = None
        if plan_s:
            growth = 1.2  # measured per-op cost growth per x10 ops (README: x10 ops -> x12-13 time)
            if len(plan_s) >= 2:
                growth = max(1.0, (plan_s[-1] / plan_s[-2]) / (done[-1]["ops"] / done[-2]["ops"]))
            estimate = plan_s[-1] * (n / done[-1]["ops"]) * growth
        if estimate is not None and estimate > max_row_s:
            r = _row_in_subprocess(n, 1, plan=False)
            print(f"| {r['ops']:,} | | {r['load_s']:.3f} | {r['analyse_s']:.3f} | skipped | skipped | | | | | | | "
                  f"{format_bytes(r['peak_rss_bytes'])} (load + analyse) | {r['budget']} | |", flush=True)
            print(f"\n(plan columns of the {r['ops']:,}-op row skipped: first + refined plan estimated at "
                  f"{estimate:,.0f} s from the {done[-1]['ops']:,}-op row, over the --max-row-s {max_row_s:g} s limit)\n",
                  flush=True)
            continue
        r = _row_in_subprocess(n, repeat if n < 10_000 else 1, plan=True)
        done.append(r)
        sched = _fmt(r["schedule_s"])
        print(f"| {r['ops']:,} | {r['events']:,} | {r['load_s']:.3f} | {r['analyse_s']:.3f} | {r['first_s']:.3f} | "
              f"{r['refined_s']:.3f} | {sched} | {r['validate_s']:.3f} | {r['metrics_s']:.3f} | {r['write_s']:.3f} | "
              f"{r['ops'] / (r['analyse_s'] + r['first_s']):,.0f} | {r['ops'] / (r['analyse_s'] + r['refined_s']):,.0f} | "
              f"{format_bytes(r['peak_rss_bytes'])} | {r['budget']} | {r['first_quality']:.3f}, "
              f"{r['refined_quality']:.3f} |", flush=True)


# ---------------------------------------------------------------------------------------------- sweeps


def sweep_table(points: int, ops: int, repeats: int, time_budget_s: float | None = None) -> None:
    """The same capacity sweep on 1 and 2 workers of each executor, interleaved, ``repeats`` times
    (``time_budget_s``: each point's planning budget; 0 = first plans, pure CPU work)."""
    from core.executor import map_points, shutdown
    from core.sweep import _case, sweep_capacity

    g = synthetic_training(ops)
    live = analyze(g)
    peak = live.no_offload_peak_bytes
    hw = hierarchy(peak)
    caps = [int(peak * f) for f in np.linspace(0.3, 1.0, points)]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    reference = sweep_capacity(g, hw, capacities_bytes=caps, liveness=live, executor="serial",
                               time_budget_s=time_budget_s)
    serial_s = time.perf_counter() - t0
    key = [repr(p) for p in reference]
    configs = [("process", 1), ("process", 2), ("dask", 1), ("dask", 2)]
    startup: dict[tuple[str, int], float] = {}
    for executor, workers in configs:  # start the workers (and import the planner there) before timing
        t0 = time.perf_counter()
        list(map_points(_warm, list(range(2 * workers)), shared=None, executor=executor, workers=workers))
        startup[(executor, workers)] = time.perf_counter() - t0
    times: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    cpu: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    case = _case(g, hw, "tierplan", None, live, time_budget_s=time_budget_s)
    same = True
    for _ in range(repeats):
        for executor, workers in configs:
            t0 = time.perf_counter()
            got = dict(map_points(_timed_point, caps, shared=case, executor=executor, workers=workers))
            times[(executor, workers)].append(time.perf_counter() - t0)
            cpu[(executor, workers)].append(sum(c for _, c in got.values()))
            same &= [repr(got[k][0]) for k in range(len(caps))] == key
    load1 = os.getloadavg()
    shutdown()
    mode = ("every refinement stage per point (its 2 x 0.5 s local search is wall-clock bounded)"
            if time_budget_s is None else f"time budget {time_budget_s:g} s per point"
            + (" (the first plan only: pure CPU work)" if time_budget_s == 0 else ""))
    print(f"{points}-point capacity sweep of a {len(g.ops):,}-op synthetic training graph (30-100 % of "
          f"{format_bytes(peak)}), default policy, {mode}; {os.cpu_count()} cores, load average {load0[0]:.1f} before and "
          f"{load1[0]:.1f} after; serial in-process: {serial_s:.2f} s; results identical to serial on every run: "
          f"{'yes' if same else 'NO'}\n")
    print("| executor | workers | start-up (s) | " + " | ".join(f"run {k + 1} (s)" for k in range(repeats))
          + " | speed-up over 1 worker, per run | worker CPU / wall, per run (cores actually used) |")
    print("|---|---:|---:|" + "---:|" * repeats + "---|---|")
    for executor, workers in configs:
        runs = times[(executor, workers)]
        base = times[(executor, 1)]
        ratio = ", ".join(f"{b / t:.2f}x" for b, t in zip(base, runs)) if workers > 1 else "1.00x"
        used = ", ".join(f"{c / t:.2f}" for c, t in zip(cpu[(executor, workers)], runs))
        print(f"| {executor} | {workers} | {startup[(executor, workers)]:.2f} | "
              + " | ".join(f"{t:.2f}" for t in runs) + f" | {ratio} | {used} |")


def _timed_point(case, capacity: int):
    """A sweep point plus the CPU seconds its worker spent on it (to tell a busy machine from overhead)."""
    from core.sweep import _capacity_point

    t0 = time.process_time()
    point = _capacity_point(case, capacity)
    return point, time.process_time() - t0


def _warm(_shared: None, point: int) -> int:
    import core.planner  # noqa: F401  (workers import the planner once, outside the timed runs)

    return point


# -------------------------------------------------------------------------------------------- profile


def profile_planner(n: int, lines: int) -> None:
    from pyinstrument import Profiler

    g = synthetic_training(n)
    live = analyze(g)
    hw = hierarchy(int(live.no_offload_peak_bytes * 0.5))
    profiler = Profiler(interval=0.005)
    profiler.start()
    make_plan(g, hw, liveness=live)
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False)
    body = [ln for ln in text.splitlines() if ln.strip()]
    start = next((k for k, ln in enumerate(body) if "make_plan" in ln), 0)
    header = next((" ".join(ln[ln.index("Duration:"):].split()) for ln in body if "Duration:" in ln), "")
    print(f"pyinstrument, make_plan on {len(g.ops):,} ops (top {lines} lines; {header} s):\n")
    print("```")
    print("\n".join(body[start:start + lines]))
    print("```")


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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (rows under 10k ops)")
    ap.add_argument("--max-row-s", type=float, default=600.0, help="skip a row's plan columns beyond this estimate")
    ap.add_argument("--fractions", type=float, nargs="*", default=[1.0, 0.8, 0.6, 0.5, 0.4, 0.3])
    ap.add_argument("--policies", nargs="*", default=["tierplan"])
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="also run the sweep speed-up table")
    ap.add_argument("--sweep-points", type=int, default=64)
    ap.add_argument("--sweep-ops", type=int, default=500, help="ops of the swept graph")
    ap.add_argument("--sweep-repeats", type=int, default=2)
    ap.add_argument("--sweep-time-budget", type=float, default=None, metavar="S",
                    help="planning budget per sweep point (0: first plans only; default: every stage)")
    ap.add_argument("--profile", type=int, metavar="N", help="profile make_plan on an N-op graph and stop")
    ap.add_argument("--profile-lines", type=int, default=15)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time phases by wall clock (default) or by this process's CPU time")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-plan", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.one:
        print(json.dumps(measure_size(args.one, args.repeat, plan=not args.no_plan)))
        return
    if args.profile:
        profile_planner(args.profile, args.profile_lines)
        return
    if not args.skip_speed:
        print("## Planning speed (synthetic training graphs, HBM at 50 % of the no-offload peak; "
              f"{'CPU' if args.clock == 'cpu' else 'wall-clock'} seconds, load average {os.getloadavg()[0]:.1f})\n",
              flush=True)
        speed_table(args.sizes, args.repeat, args.max_row_s)
    if args.sweep:
        print("\n## Sweep speed-up: 1 vs 2 workers\n", flush=True)
        sweep_table(args.sweep_points, args.sweep_ops, args.sweep_repeats, args.sweep_time_budget)
    if not args.skip_quality:
        print("\n## Plan quality: step time / compute-only time at HBM = x % of the no-offload peak\n")
        quality_table(args.fractions, args.policies)


if __name__ == "__main__":
    main()
