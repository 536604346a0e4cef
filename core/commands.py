"""Every ``python -m core`` subcommand: its ``register_*`` function (parser) and ``run_*`` function, plus
the helpers they share (reading inputs, writing outputs, loading graph and hardware arguments).

:mod:`core.cli` imports this module and never the other way round: it builds the parser from
:data:`COMMANDS` and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.graph import Graph, graph_to_dict
from core.hardware import Hardware, apply_setting, hardware_from_dict
from core.units import format_bandwidth, format_bytes, format_time

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_INPUT", "EXIT_INFEASIBLE", "EXIT_BUG", "read_input", "write_output",
           "load_graph_arg", "load_hardware_arg", "register_generate", "register_import_onnx", "register_info",
           "register_plan", "register_validate", "register_trace", "register_sweep"]

#: 0 ok, 2 bad input (or an invalid plan file for ``validate``), 3 infeasible, 4 internal error (a plan
#: the planner built failed its own replay: a bug, no plan file is written)
EXIT_OK, EXIT_INPUT, EXIT_INFEASIBLE, EXIT_BUG = 0, 2, 3, 4


# ---------------------------------------------------------------------------------------------- helpers


def read_input(path: str) -> bytes:
    """The bytes of ``path`` (``-`` for stdin), or InputError naming the file."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise InputError("is a directory, not a file", source=path) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", source=path) from None


def write_output(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (``-`` for stdout), or InputError naming the file."""
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write file: {exc.strerror or exc}", source=path) from None


def _graph_json(graph: Graph) -> str:
    return json.dumps(graph_to_dict(graph), separators=(",", ":")) + "\n"


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for whole numbers >= ``minimum`` with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive = whole_number(1)


def _add_workload_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--workload", choices=("train", "prefill", "decode"), required=required, default=None if required else "train",
                   help="training step, inference prefill, or one decode step")
    p.add_argument("--batch", type=_positive, default=None, help="sequences per step (default 1; ONNX: the model's)")
    p.add_argument("--seq", type=_positive, default=2048, help="tokens per sequence; for decode the context length")
    p.add_argument("--checkpointing", action="store_true", help="training: recompute each layer in the backward")
    p.add_argument("--micro-batches", type=_positive, default=1, metavar="N",
                   help="prefill/decode: run the batch as N micro-batches per layer (FlexGen's GPU batches)")


def load_graph_arg(path: str, args: argparse.Namespace | None = None) -> Graph:
    """A graph from a file of any supported format, or the key of a bundled sample.

    HF configs use ``--workload/--batch/--seq/--checkpointing`` when ``args`` has them; ONNX uses
    ``--batch`` and ``--train``.
    """
    from core.sources import Workload, load_model_bytes

    if not Path(path).exists() and path != "-":
        from core.sources.samples import list_samples, load_sample

        if path in {s.key for s in list_samples()}:
            return load_sample(path)
    data = read_input(path)
    workload = None
    if args is not None and getattr(args, "workload", None):
        workload = Workload(args.workload, args.batch or 1, args.seq, bool(getattr(args, "checkpointing", False)),
                            getattr(args, "micro_batches", 1))
    batch = getattr(args, "batch", None) if args is not None else None
    return load_model_bytes(data, path, workload=workload, onnx_batch=batch,
                            onnx_train=bool(getattr(args, "train", False)))


def register_generate(sub: Any) -> None:
    p = sub.add_parser("generate", help="graph of a Hugging Face config.json for a workload",
                       description="Build the graph of one train / prefill / decode step from an HF config.json.")
    p.add_argument("--hf-config", required=True, metavar="CONFIG.json", help="the model's config.json")
    _add_workload_args(p, required=True)
    p.add_argument("--name", help="graph name (default from the config)")
    p.add_argument("-o", "--output", required=True, metavar="GRAPH.json", help="where to write the graph ('-' = stdout)")
    p.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from core.graph import parse_json
    from core.sources import Workload
    from core.sources.hf_config import graph_from_hf_config

    raw = parse_json(read_input(args.hf_config), args.hf_config)
    workload = Workload(args.workload, args.batch or 1, args.seq, args.checkpointing, args.micro_batches)
    graph = graph_from_hf_config(raw, workload, name=args.name, source=args.hf_config)
    _write_graph(graph, args.output)
    return EXIT_OK


def register_import_onnx(sub: Any) -> None:
    p = sub.add_parser("import-onnx", help="graph of an ONNX model",
                       description="Import an ONNX model (weights need not be present); optionally as a training step.")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--batch", type=_positive, default=None, help="override the batch size")
    p.add_argument("--train", action="store_true", help="add a loss, the backward pass and an Adam update")
    p.add_argument("-o", "--output", required=True, metavar="GRAPH.json", help="where to write the graph ('-' = stdout)")
    p.set_defaults(run=run_import_onnx)


def run_import_onnx(args: argparse.Namespace) -> int:
    from core.sources.onnx_import import import_onnx

    graph = import_onnx(read_input(args.model), batch=args.batch, train=args.train, source=args.model)
    _write_graph(graph, args.output)
    if args.output != "-":
        for warning in graph.meta.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def register_import_torch(sub: Any) -> None:
    p = sub.add_parser(
        "import-torch", help="graph of a PyTorch module (needs torch), traced with fake tensors",
        description="Trace a torch.nn.Module with fake tensors: every aten op of the forward and of the backward "
                    "autograd runs, saved-for-backward tensors, FLOPs from FlopCounterMode. ENTRY is a Python file "
                    "whose build() returns (module, example_inputs[, loss_fn]) -- its code is run, so use only "
                    "files you trust -- or a torch.export .pt2 file (torch.export.load unpickles: trusted files only).")
    p.add_argument("entry", metavar="ENTRY.py|PROGRAM.pt2")
    p.add_argument("--inference", action="store_true", help="one forward pass under no_grad instead of a training step")
    p.add_argument("--no-optimizer", action="store_true", help="training step without the Adam update")
    p.add_argument("-o", "--output", required=True, metavar="GRAPH.json", help="where to write the graph ('-' = stdout)")
    p.set_defaults(run=run_import_torch)


def run_import_torch(args: argparse.Namespace) -> int:
    from core.sources.torch_import import trace_entry_point, trace_exported_program

    trace = trace_exported_program if args.entry.endswith(".pt2") else trace_entry_point
    graph = trace(args.entry, train=not args.inference, optimizer=None if args.no_optimizer else "adam")
    _write_graph(graph, args.output)
    return EXIT_OK


def register_info(sub: Any) -> None:
    p = sub.add_parser("info", help="parameters, bytes by kind, op count and no-offload peak of a graph",
                       description="Summarise a graph file (native, ONNX or HF config) or a bundled sample key.")
    p.add_argument("graph", metavar="GRAPH", help="a graph / ONNX / config.json file, or a sample key such as 'tiny'")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_workload_args(p, required=False)
    p.add_argument("--train", action="store_true", help="ONNX input: summarise the training step")
    p.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    from core.info import format_summary, graph_summary

    summary = graph_summary(load_graph_arg(args.graph, args))
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1))
    else:
        print(format_summary(summary))
    return EXIT_OK


def _write_graph(graph: Graph, output: str) -> None:
    """Write ``graph`` as native JSON to ``output`` ('-' = stdout) and, for a file, say what was written."""
    write_output(output, _graph_json(graph))
    if output != "-":
        _report(graph, output)


def _report(graph: Graph, path: str) -> None:
    from core.units import format_bytes

    total = sum(t.bytes for t in graph.tensors)
    print(f"wrote {path}: {len(graph.ops)} ops, {len(graph.tensors)} tensors, {format_bytes(total)}", file=sys.stderr)



def load_hardware_arg(path: str, settings: list[str] | None = None) -> Hardware:
    """A hardware file or preset key, with ``--set KEY=VALUE`` overrides applied in order."""
    from core.graph import parse_json
    from core.sources.presets import list_presets, load_preset

    if not Path(path).exists() and path in {p.key for p in list_presets()}:
        hw = load_preset(path)
    else:
        hw = hardware_from_dict(parse_json(read_input(path), path), source=path)
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"expected KEY=VALUE such as HBM.capacity=24GiB, got {item!r}", field="--set")
        hw = apply_setting(hw, key.strip(), value.strip())
    return hw


def _params(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"expected NAME=VALUE, got {item!r}", field="--param")
        out[key.strip()] = value.strip()
    return out


def register_plan(sub: Any) -> None:
    p = sub.add_parser("plan", help="plan tensor placement for a graph on a hierarchy",
                       description="Plan one step; prints a one-screen summary and writes the plan JSON. The plan "
                       "is replayed by the validator first: exit 3 when no plan fits (with the reason), 4 when the "
                       "replay rejects the planner's own plan (a bug; nothing is written).")
    p.add_argument("graph", metavar="GRAPH", help="graph / ONNX / config.json file, or a sample key")
    p.add_argument("--hardware", required=True, metavar="HW", help="hardware JSON file or preset key")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override, e.g. HBM.capacity=24GiB, HBM->DDR.bandwidth=32GB/s (repeatable)")
    p.add_argument("--policy", default="tierplan", help="tierplan (default), none, mindspore-gsm, ...")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="policy parameter (repeatable)")
    p.add_argument("-o", "--output", metavar="PLAN.json", help="where to write the plan")
    p.add_argument("--no-reorder", action="store_true",
                   help="keep the graph's execution order (by default Tierplan also tries running each optimizer "
                   "update as soon as its gradient is ready, and keeps that order when it is faster)")
    p.add_argument("--time-budget", type=_seconds, metavar="S", default=None,
                   help="seconds to refine the plan: a fast first plan, then the refinement stages (portfolio, "
                   "refined order, baselines, LP bound, local search) that fit; 0 = the first plan only "
                   "(default: every stage)")
    p.set_defaults(run=run_plan)


def _seconds(text: str) -> float:
    """An argparse ``type`` for a duration in seconds >= 0 (a plain number or a unit such as ``500ms``)."""
    from core.units import parse_time

    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_time(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds such as 0.5 or 500ms, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def run_plan(args: argparse.Namespace) -> int:
    from core.plan import plan_to_dict
    from core.planner import make_plan

    graph = load_graph_arg(args.graph, args)
    hw = load_hardware_arg(args.hardware, args.set)
    started = time.perf_counter()
    plan = make_plan(graph, hw, policy=args.policy, params=_params(args.param),
                     reorder=not getattr(args, "no_reorder", False), time_budget_s=getattr(args, "time_budget", None))
    planned_s = time.perf_counter() - started
    if args.output:
        write_output(args.output, json.dumps(plan_to_dict(plan), separators=(",", ":")) + "\n")
    m = plan.metrics
    C = hw.compute_tier
    moved = [d for d in plan.decisions if d.action == "offload"]
    recomputed = [d for d in plan.decisions if d.action == "recompute"]
    lines = [
        f"{graph.name} on {hw.name} — policy {plan.policy}",
        f"  step time     {format_time(m['step_time_s'])} (compute only {format_time(m['compute_only_time_s'])}, "
        f"slowdown {m['slowdown'] * 100:.1f} %)",
        f"  stall         {format_time(m['stall_time_s'])}   recompute {format_time(m['recompute_time_s'])}   "
        f"overlap {m['overlap_ratio'] * 100:.0f} %",
        f"  peak {C:<8} {format_bytes(m['peak_bytes'][C])} of {format_bytes(hw.capacity(C))} "
        f"(no offload: {format_bytes(m['no_offload_peak_bytes'])})",
    ]
    for tier, peak in m["peak_bytes"].items():
        if tier != C:
            lines.append(f"  peak {tier:<8} {format_bytes(peak)} of {format_bytes(hw.capacity(tier))}")
    for link, nbytes in m["transfer_bytes"].items():
        lines.append(f"  moved {link:<12} {format_bytes(nbytes)} in {format_time(m['transfer_time_s'][link])}")
    lines.append(f"  decisions     {len(moved)} spans offloaded, {len(recomputed)} recomputed, "
                 f"{len(plan.decisions) - len(moved) - len(recomputed)} kept")
    lines += _quality_lines(plan)
    lines += _planning_lines(plan, planned_s)
    if args.output and args.output != "-":
        lines.append(f"  wrote {args.output} ({len(plan.events)} events)")
    print("\n".join(lines), file=sys.stderr if args.output == "-" else sys.stdout)
    return EXIT_OK


def _quality_lines(plan: Any) -> list[str]:
    """The proven lower bound, the gap to it and the execution order (issue 10)."""
    out = []
    if plan.lower_bound_s is not None and plan.gap_to_bound is not None:
        out.append(f"  lower bound   {format_time(plan.lower_bound_s)} (LP relaxation, this op order): "
                   f"this plan is {plan.gap_to_bound * 100:.1f} % above it")
    if plan.order is not None:
        out.append(f"  order         refined: {len(plan.order_moves)} optimizer updates moved into backward "
                   "(--no-reorder keeps the graph's order)")
    return out


def _planning_lines(plan: Any, planned_s: float) -> list[str]:
    """Which refinement stages ran in how long, which the time budget left out, and where the bound stands."""
    info = plan.planning
    if not info:
        return []
    budget = info.get("time_budget_s")
    line = (f"  planning      {planned_s:.2f} s, stages {', '.join(info.get('stages_run', ())) or 'none'}"
            + (f" (time budget {budget:g} s)" if budget is not None else ""))
    out = [line]
    skipped = info.get("stages_skipped", ())
    if skipped:
        out.append(f"  skipped       {', '.join(skipped)} (time budget spent; a larger --time-budget runs them)")
    if info.get("found_by"):
        out.append(f"  best plan     found by the {info['found_by']} stage")
    bound = str(info.get("bound", ""))
    if bound.startswith("not computed"):
        out.append(f"  lower bound   {bound}")
    return out


def register_validate(sub: Any) -> None:
    p = sub.add_parser("validate", help="replay a plan against its graph and check every rule",
                       description="Replay PLAN against GRAPH: capacities, presence, links, freshness, metrics.")
    p.add_argument("graph", metavar="GRAPH")
    p.add_argument("plan", metavar="PLAN.json")
    p.set_defaults(run=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from core.graph import parse_json
    from core.plan import plan_from_dict
    from core.validate import validate_plan

    graph = load_graph_arg(args.graph, args)
    plan = plan_from_dict(parse_json(read_input(args.plan), args.plan), source=args.plan)
    report = validate_plan(graph, plan)
    if report.ok:
        print(f"valid: {args.plan} replays cleanly against {graph.name} "
              f"(step {format_time(report.metrics.get('step_time_s', 0.0))}, {len(plan.events)} events)")
        return EXIT_OK
    print(f"invalid: {args.plan}: {len(report.errors)} problem(s)", file=sys.stderr)
    for err in report.errors:
        print(f"  - {err}", file=sys.stderr)
    return EXIT_INPUT


def register_trace(sub: Any) -> None:
    p = sub.add_parser("trace", help="Chrome / Perfetto trace of a plan",
                       description="Write a trace JSON that opens in ui.perfetto.dev or chrome://tracing.")
    p.add_argument("plan", metavar="PLAN.json")
    p.add_argument("--graph", required=True, metavar="GRAPH",
                   help="the plan's graph (file or sample key): tensor sizes for the memory counters, op categories")
    p.add_argument("-o", "--output", required=True, metavar="TRACE.json")
    p.set_defaults(run=run_trace)


def run_trace(args: argparse.Namespace) -> int:
    from core.export.trace import plan_to_trace
    from core.graph import parse_json
    from core.plan import plan_from_dict

    plan = plan_from_dict(parse_json(read_input(args.plan), args.plan), source=args.plan)
    graph = load_graph_arg(args.graph, args)
    trace = plan_to_trace(graph, plan)
    write_output(args.output, json.dumps(trace, separators=(",", ":")) + "\n")
    if args.output != "-":
        print(f"wrote {args.output}: {len(trace['traceEvents'])} trace events; open it in https://ui.perfetto.dev")
    return EXIT_OK


def register_sweep(sub: Any) -> None:
    p = sub.add_parser("sweep", help="what-if sweeps: smallest compute tier for a slowdown bound, capacity / "
                       "bandwidth sweeps, grids of models x hardware x budgets x policies",
                       description="Without --capacities/--bandwidths/--budgets: bisect the compute-tier capacity "
                       "for a slowdown bound, per policy. Points run in parallel (--executor).")
    p.add_argument("graph", metavar="GRAPH", nargs="+", help="graph file(s) or sample key(s)")
    p.add_argument("--hardware", required=True, action="append", metavar="HW", help="hardware file or preset (repeatable)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--policy", action="append", help="policy (repeatable; default tierplan)")
    p.add_argument("--max-slowdown", type=float, default=0.02, help="fraction, default 0.02 (2 %%)")
    p.add_argument("--capacities", metavar="LIST", help="capacity sweep of the compute tier, e.g. 16GiB,24GiB,32GiB")
    p.add_argument("--bandwidths", metavar="LIST", help="bandwidth sweep of the first link out of the compute tier, "
                   "e.g. 16GB/s,64GB/s")
    p.add_argument("--budgets", metavar="LIST", help="grid sweep: compute tier at these fractions of each model's "
                   "no-offload peak, e.g. 0.3,0.5,0.8")
    p.add_argument("--executor", choices=("auto", "serial", "process", "dask"), default="auto",
                   help="where points run: auto (default: a local process pool beyond 3 points), serial, process, "
                   "dask (an embedded LocalCluster, or --scheduler)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler of a running cluster, e.g. tcp://host:8786")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (default: the cores available)")
    p.add_argument("--time-budget", type=_seconds, metavar="S", default=None,
                   help="planning seconds per point: 0 = the fast first plan only (several times cheaper, same "
                   "on every executor); default: every refinement stage")
    p.set_defaults(run=run_sweep)


class _ProgressBar:
    """Plain-text progress on stderr: one redrawn line on a terminal, one line per update otherwise."""

    def __init__(self, what: str) -> None:
        self.what, self.tty = what, sys.stderr.isatty()

    def __call__(self, fraction: float, text: str) -> None:
        filled = round(max(0.0, min(1.0, fraction)) * 24)
        line = f"{self.what} [{'#' * filled}{'.' * (24 - filled)}] {fraction * 100:3.0f} %  {text}"
        if self.tty:
            sys.stderr.write("\r" + line[:160].ljust(160) + ("\n" if fraction >= 1.0 else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _list(text: str | None, parse: Any, flag: str) -> list[Any]:
    try:
        return [parse(item.strip()) for item in (text or "").split(",") if item.strip()]
    except ValueError as exc:
        raise InputError(str(exc), field=flag) from None


def run_sweep(args: argparse.Namespace) -> int:
    from core.executor import ExecutorError
    from core.liveness import analyze
    from core.policies import get_policy
    from core.units import parse_bandwidth, parse_bytes

    policies = args.policy or ["tierplan"]
    for policy in policies:
        get_policy(policy)  # an unknown name is an input error here, not a failure in every worker
    if args.workers is not None and args.workers < 1:
        raise InputError(f"must be >= 1, got {args.workers}", field="--workers")
    run = {"executor": args.executor, "scheduler": args.scheduler, "workers": args.workers,
           "time_budget_s": getattr(args, "time_budget", None)}
    graphs = {path: load_graph_arg(path, args) for path in args.graph}
    hws = {path: load_hardware_arg(path, args.set) for path in args.hardware}
    try:
        if args.budgets:
            return _run_grid(graphs, hws, _list(args.budgets, float, "--budgets"), policies, run)
        capacities = _list(args.capacities, parse_bytes, "--capacities")
        bandwidths = _list(args.bandwidths, parse_bandwidth, "--bandwidths")
        for graph in graphs.values():
            live = analyze(graph)
            for hw in hws.values():
                link = next((lk for lk in hw.links if lk.src == hw.compute_tier), None)
                print(f"{graph.name} on {hw.name}: no-offload peak {format_bytes(live.no_offload_peak_bytes)}"
                      + (f", {link.name} {format_bandwidth(link.bandwidth_Bps)}" if link else ""))
                for policy in policies:
                    _run_one(graph, hw, live, policy, capacities, bandwidths, args.max_slowdown, run)
    except ExecutorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    return EXIT_OK


def _run_one(graph: Any, hw: Hardware, live: Any, policy: str, capacities: list[int], bandwidths: list[float],
             max_slowdown: float, run: dict[str, Any]) -> None:
    from core.sweep import min_capacity_for_slowdown, sweep_bandwidth, sweep_capacity

    C = hw.compute_tier
    if capacities or bandwidths:
        points = []
        if capacities:
            points += sweep_capacity(graph, hw, policy=policy, capacities_bytes=capacities, liveness=live,
                                     progress=_ProgressBar(policy), **run)
        if bandwidths:
            points += sweep_bandwidth(graph, hw, policy=policy, bandwidths_Bps=bandwidths, liveness=live,
                                      progress=_ProgressBar(policy), **run)
        print(f"  {policy}")
        for p, is_bw in zip(points, [False] * len(capacities) + [True] * len(bandwidths)):
            where = (f"{C} {format_bytes(p.capacity_bytes)}" if not is_bw
                     else f"link {format_bandwidth(p.bandwidth_Bps)}")
            shown = (f"step {format_time(p.step_time_s)}  slowdown {p.slowdown * 100:6.1f} %  "
                     f"peak {format_bytes(p.peak_bytes)}") if p.feasible else f"infeasible: {p.message}"
            print(f"    {where:<22} {shown}")
        return
    cap = min_capacity_for_slowdown(graph, hw, policy=policy, max_slowdown=max_slowdown, liveness=live,
                                    progress=_ProgressBar(policy), **run)
    shown = "not reachable" if cap is None else f"{format_bytes(cap)} ({cap / live.no_offload_peak_bytes * 100:.0f} % of peak)"
    print(f"  {policy:<24} smallest {C} for slowdown <= {max_slowdown * 100:g} %: {shown}")


def _run_grid(graphs: dict[str, Any], hws: dict[str, Hardware], budgets: list[float], policies: list[str],
              run: dict[str, Any]) -> int:
    from core.sweep import grid_sweep

    cells = grid_sweep(graphs, hws, budgets=budgets, policies=policies, progress=_ProgressBar("grid"), **run)
    print("| model | hardware | budget | policy | step time | slowdown | peak |")
    print("|---|---|---:|---|---:|---:|---:|")
    for c in cells:
        p = c.point
        shown = (f"{format_time(p.step_time_s)} | {p.slowdown * 100:.1f} % | {format_bytes(p.peak_bytes)}"
                 if p.feasible else "infeasible | | ")
        print(f"| {graphs[c.model].name} | {hws[c.hardware].name} | {c.budget * 100:g} % | {c.policy} | {shown} |")
    return EXIT_OK


#: Register functions, one per subcommand, in the order ``--help`` lists them.
COMMANDS: list[Callable[[Any], None]] = [
    register_generate, register_import_onnx, register_import_torch, register_info, register_plan, register_validate, register_trace,
    register_sweep,
]
