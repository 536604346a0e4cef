"""Digests of the plans Tierplan makes on the samples and on fuzz cases, to show a speed refactor changed none.

Run: ``python bench/plan_digest.py --out before.json`` on the old code, ``--out after.json`` on the new one,
then ``python bench/plan_digest.py --compare before.json after.json``. Each entry is one plan: its step time,
a hash of its decisions (assignment) and a hash of its events (every field, floats at full precision), so two
digests agree only if the plans are identical. ``--no-numba`` sets ``TIERPLAN_NO_NUMBA=1`` before importing
the planner, to compare the compiled kernels against the pure-Python fallback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _digest(plan: Any) -> dict[str, Any]:
    events = hashlib.sha256(repr(tuple(plan.events)).encode()).hexdigest()[:16]
    decisions = hashlib.sha256(repr(sorted((d.tensor, d.start_op, d.end_op, d.action, d.tier, d.score)
                                           for d in plan.decisions)).encode()).hexdigest()[:16]
    return {"step_time_s": repr(plan.metrics["step_time_s"]), "decisions": decisions, "events": events,
            "n_events": len(plan.events)}


def collect(fuzz_seeds: int, full: bool) -> dict[str, Any]:
    """Plans of every sample (first plan at 50 % of its no-offload peak on its preset; the default plan too
    with ``full``) and of ``fuzz_seeds`` fuzz cases under every policy."""
    from core.errors import InfeasibleError
    from core.fuzz import all_policies, random_case
    from core.hardware import with_capacity
    from core.liveness import analyze
    from core.planner import make_plan
    from core.sources.presets import load_preset
    from core.sources.samples import list_samples, load_sample

    first_kw = {"reorder": False, "bound": False, "search_s": 0.0}
    first_params = {"portfolio": 0, "baselines": 0}
    out: dict[str, Any] = {}

    def record(key: str, graph: Any, hw: Any, **kw: Any) -> None:
        try:
            out[key] = _digest(make_plan(graph, hw, **kw))
        except InfeasibleError as exc:
            out[key] = {"infeasible": str(exc)}
        print(key, out[key], file=sys.stderr, flush=True)

    for info in list_samples():
        g = load_sample(info.key)
        hw = load_preset(info.hardware)
        live = analyze(g)
        room = with_capacity(hw, hw.compute_tier, int(live.no_offload_peak_bytes * 0.5))
        record(f"{info.key}/first", g, room, liveness=live, params=first_params, **first_kw)
        if full:
            record(f"{info.key}/default", g, room, liveness=live, search_s=0.0)
    for seed in range(fuzz_seeds):
        g, hw = random_case(seed)
        for policy in all_policies():
            kw = first_kw if policy == "tierplan" else {"reorder": False, "bound": False, "search_s": 0.0}
            record(f"fuzz-{seed}/{policy}", g, hw, policy=policy, **kw)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--fuzz-seeds", type=int, default=40)
    ap.add_argument("--full", action="store_true", help="also the default (portfolio) plan of every sample")
    ap.add_argument("--no-numba", action="store_true")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = ap.parse_args()
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        for k in diff:
            print(f"{k}: {a.get(k)} != {b.get(k)}")
        print(f"{len(set(a) & set(b))} plans compared, {len(diff)} differ")
        return 1 if diff else 0
    if args.no_numba:
        os.environ["TIERPLAN_NO_NUMBA"] = "1"
    digests = collect(args.fuzz_seeds, args.full)
    text = json.dumps(digests, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
