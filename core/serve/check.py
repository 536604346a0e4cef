"""Independent replay of a serving simulation's log: the physical rules, checked from the log alone.

Knows nothing of the policies or the simulator's data structures; reads :class:`core.serve.simulate.ServeLog`
(plain tuples) and replays it in order:

- every block a request loads was **stored before** in the tier it loads from, is **still held** there (not
  evicted since) and its data was **ready** (its copy had arrived) by the load's start;
- a block is never stored twice in one tier without an eviction between, nor evicted when absent;
- **no tier is ever over its capacity** (capacities change as the HBM left for the cache shrinks and grows);
- on every link, **transfers never overlap** and each lasts exactly ``latency + bytes / bandwidth``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

__all__ = ["CheckReport", "check_log"]

_EPS = 1e-9


@dataclass(frozen=True)
class CheckReport:
    """``problems`` is empty when the log obeys every rule; each entry is one readable sentence."""

    problems: tuple[str, ...]
    ops_checked: int
    transfers_checked: int

    @property
    def ok(self) -> bool:
        return not self.problems


def check_log(log: Any, *, max_problems: int = 20) -> CheckReport:
    """Replay ``log`` (a ServeLog) and report every broken rule (up to ``max_problems``)."""
    problems: list[str] = []

    def fail(text: str) -> bool:
        problems.append(text)
        return len(problems) >= max_problems

    held: dict[str, dict[int, float]] = {t: {} for t in log.tiers}
    cap: dict[str, int] = dict(log.capacity_blocks)
    for n, op in enumerate(log.ops):
        kind = op[0]
        if kind == "store":
            _, ready, tier, block = op
            if block in held[tier]:
                if fail(f"op {n}: block {block} stored in {tier} while already there"):
                    break
                continue
            held[tier][block] = ready
            if len(held[tier]) > cap[tier] and fail(
                    f"op {n}: {tier} holds {len(held[tier])} blocks, over its capacity of {cap[tier]}"):
                break
        elif kind == "evict":
            _, _, tier, block = op
            if held[tier].pop(block, None) is None and fail(f"op {n}: block {block} evicted from {tier} where it is not"):
                break
        elif kind == "load":
            _, t, tier, blocks, req = op
            for block in blocks:
                ready = held[tier].get(block)
                if ready is None:
                    if fail(f"op {n}: request {req} loads block {block} from {tier}, which does not hold it"):
                        break
                elif ready > t + _EPS and fail(f"op {n}: request {req} loads block {block} from {tier} at {t:.6f} s "
                                               f"before its copy arrived at {ready:.6f} s"):
                    break
            if len(problems) >= max_problems:
                break
        elif kind == "cap":
            _, _, tier, blocks = op
            cap[tier] = blocks
            if len(held[tier]) > blocks and fail(
                    f"op {n}: {tier} shrinks to {blocks} blocks while holding {len(held[tier])}"):
                break
        else:
            if fail(f"op {n}: unknown log entry {kind!r}"):
                break
    by_link: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for link, start, end, nbytes in log.transfers:
        by_link[link].append((start, end, nbytes))
    for link, items in by_link.items():
        bw, lat = log.link_bandwidth_Bps[link], log.link_latency_s[link]
        items.sort()
        prev_end = -1.0
        for start, end, nbytes in items:
            if start < prev_end - _EPS * max(1.0, abs(prev_end)) and fail(
                    f"link {link}: a transfer starts at {start:.6f} s before the previous one ends at {prev_end:.6f} s"):
                break
            want = lat + nbytes / bw
            if abs((end - start) - want) > 1e-9 * max(1.0, want) + 1e-12 and fail(
                    f"link {link}: {nbytes} bytes took {end - start:.6g} s, expected {want:.6g} s"):
                break
            prev_end = max(prev_end, end)
    return CheckReport(tuple(problems), len(log.ops), len(log.transfers))
