"""``python -m core serve TRACE``: sequence-only capacity analysis, or the timed tiered simulation.

Sequence-only (no ``--model``): ``--capacity-blocks N`` (omit for an unlimited cache, the trace's reuse
ceiling) and ``--policy``; prints requests, blocks_total, blocks_hit, prefix_hit_rate. Timed (``--model``):
the model's config (file, shipped name or sample key) on ``--hardware`` (preset key or file) with the tier
capacities, instances and placement knobs below. TRACE is a Mooncake JSONL or Azure CSV file, ``sample``
for the shipped Mooncake trace, or ``synthetic[:REQUESTS[:SEED]]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from core.commands import whole_number
from core.errors import InputError
from core.serve.policies import POLICIES

__all__ = ["register", "run", "trace_arg"]


def trace_arg(text: str):  # -> Trace
    """A trace from a path, ``sample`` or ``synthetic[:N[:SEED]]``."""
    from core.serve.trace import SyntheticSpec, load_trace, sample_trace_path, synthetic_trace

    if text == "sample":
        return load_trace(sample_trace_path(), source="sample_models/traces/mooncake-synthetic.jsonl")
    if text.startswith("synthetic"):
        parts = text.split(":")
        try:
            n = int(parts[1]) if len(parts) > 1 else 1000
            seed = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            raise InputError(f"expected synthetic[:REQUESTS[:SEED]], got {text!r}", field="TRACE") from None
        return synthetic_trace(SyntheticSpec(requests=n, seed=seed))
    if not Path(text).exists():
        raise InputError("no such file (or use 'sample' or 'synthetic[:N[:SEED]]')", source=text)
    return load_trace(text)


def _bytes(text: str) -> int:
    from core.units import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="prefix KV cache across requests: capacity analysis or timed simulation",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace", metavar="TRACE", help="Mooncake JSONL / CSV file, 'sample' or 'synthetic[:N[:SEED]]'")
    p.add_argument("--policy", choices=POLICIES, default=None, help="eviction policy (default lru sequence-only, "
                   "tierplan timed)")
    p.add_argument("--capacity-blocks", type=whole_number(0), default=None, metavar="N",
                   help="sequence-only cache size in 512-token blocks (default unlimited)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    g = p.add_argument_group("timed simulation")
    g.add_argument("--model", metavar="CONFIG", help="HF config.json, a shipped config (llama-2-7b, …) or a sample key")
    g.add_argument("--hardware", default="h100-sxm", metavar="PRESET", help="hardware preset key or file")
    g.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="hardware override, e.g. DDR->HBM.bandwidth=32GB/s (repeatable)")
    for tier in ("ddr", "ssd", "pool"):
        g.add_argument(f"--{tier}-capacity", type=_bytes, default=None, metavar="BYTES",
                       help=f"cache share of the {tier.upper()} tier, e.g. 64GiB (default: the whole tier)")
    g.add_argument("--no-hbm-cache", action="store_true", help="keep no prefix cache in HBM")
    g.add_argument("--tiers", default=None, help="comma-separated lower tiers used as cache (default all; '' = none)")
    g.add_argument("--prefill-instances", type=whole_number(1), default=4)
    g.add_argument("--decode-instances", type=whole_number(1), default=4)
    g.add_argument("--tensor-parallel", type=whole_number(1), default=1, metavar="N",
                   help="devices per instance (weights, HBM and FLOPs add up; collectives not costed)")
    g.add_argument("--overlap", choices=("layer", "sequential"), default="layer")
    g.add_argument("--inclusive", action="store_true", help="a loaded block keeps its lower copy")
    g.add_argument("--write-through", action="store_true", help="write every new block down at once (needs --inclusive)")
    g.add_argument("--admit-after", type=whole_number(1), default=1, metavar="K", help="write a block down only after K uses")
    g.add_argument("--load-all", action="store_true", help="load every hit block even when recomputing is faster")
    g.add_argument("--check", action="store_true", help="replay the simulation log with the independent checker")
    p.set_defaults(run=run)


def _tier_name(hw: Any, flag: str) -> str:
    for t in hw.tiers:
        if t.name.lower() == flag:
            return str(t.name)
    raise InputError(f"hardware '{hw.name}' has no {flag.upper()} tier (tiers: {', '.join(t.name for t in hw.tiers)})",
                     field=f"--{flag}-capacity")


def run(args: argparse.Namespace) -> int:
    from core.serve.capacity import run_capacity

    trace = trace_arg(args.trace)
    if args.model is None:
        timed_only = [f for f in ("ddr_capacity", "ssd_capacity", "pool_capacity") if getattr(args, f) is not None]
        if timed_only:
            raise InputError("needs --model (tier capacities apply to the timed simulation)", field="--" + timed_only[0].replace("_", "-"))
        policy = args.policy or "lru"
        result = run_capacity(trace, policy, args.capacity_blocks)
        out = result.to_dict()
        out["trace"] = trace.name
        if not trace.has_reuse:
            out["note"] = "this trace has no prefix information (CSV): every block is its own, nothing can hit"
        if args.json:
            print(json.dumps(out))
        else:
            cap = "unlimited" if args.capacity_blocks is None else f"{args.capacity_blocks:,} blocks"
            print(f"{trace.name}: {out['requests']:,} requests, {out['blocks_total']:,} blocks "
                  f"({out['blocks_distinct']:,} distinct); {policy} with {cap}: {out['blocks_hit']:,} hit = "
                  f"{100 * out['prefix_hit_rate']:.2f} %")
            if "note" in out:
                print(f"note: {out['note']}")
        return 0
    return _run_timed(args, trace)


def _run_timed(args: argparse.Namespace, trace: Any) -> int:
    from core.commands import load_hardware_arg
    from core.serve.check import check_log
    from core.serve.model import load_serve_model
    from core.serve.simulate import ServeConfig, simulate

    if args.capacity_blocks is not None:
        raise InputError("applies to the sequence-only analysis; with --model give tier capacities instead",
                         field="--capacity-blocks")
    model = load_serve_model(args.model)
    hw = load_hardware_arg(args.hardware, args.set)
    caps = []
    for flag in ("ddr", "ssd", "pool"):
        value = getattr(args, f"{flag}_capacity")
        if value is not None:
            caps.append((_tier_name(hw, flag), value))
    tiers = None if args.tiers is None else tuple(t for t in args.tiers.split(",") if t)
    for t in tiers or ():
        if t not in hw.tier_by_name or t == hw.compute_tier:
            raise InputError(f"'{t}' is not a lower tier of '{hw.name}'", field="--tiers")
    cfg = ServeConfig(policy=args.policy or "tierplan", hbm_cache=not args.no_hbm_cache, cache_tiers=tiers,
                      tier_capacity_bytes=tuple(caps), prefill_instances=args.prefill_instances,
                      decode_instances=args.decode_instances, overlap=args.overlap, inclusive=args.inclusive,
                      write_through=args.write_through, admit_after=args.admit_after,
                      selective_load=not args.load_all, tensor_parallel=args.tensor_parallel)
    result = simulate(trace, model, hw, cfg)
    summary = result.summary()
    if args.check:
        report = check_log(result.log)
        summary["check"] = {"ok": report.ok, "problems": list(report.problems)}
    if args.json:
        print(json.dumps(summary))
    else:
        from core.units import format_bytes, format_time

        print(f"{trace.name} · {model.name} on {hw.name} · policy {cfg.policy}")
        print(f"  prefix hit rate {100 * summary['prefix_hit_rate']:.2f} % ("
              + ", ".join(f"{t} {100 * v:.2f} %" for t, v in summary["hit_rate_by_tier"].items()) + ")")
        for key in ("ttft_s", "tpot_s"):
            p = summary[key]
            print(f"  {key[:-2].upper():4s} p50 {format_time(p['p50'])}  p90 {format_time(p['p90'])}  p99 {format_time(p['p99'])}")
        print(f"  throughput {summary['throughput_tokens_per_s']:.1f} tokens/s; prefill compute saved "
              f"{100 * summary['prefill_compute_saved']:.1f} %")
        print("  link bytes: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in summary["link_bytes"].items() if v))
        if args.check:
            print("  replay check: " + ("ok" if summary["check"]["ok"] else "; ".join(summary["check"]["problems"])))
    return 0 if not args.check or summary["check"]["ok"] else 1
