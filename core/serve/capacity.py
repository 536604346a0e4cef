"""Sequence-only capacity analysis: how many prompt blocks a cache of N blocks serves, per policy.

No model, no hardware, no time — only the order of requests (as Mooncake's capacity figure). For each
request in trace order: its hit is the longest run of leading blocks the cache holds at arrival
(:func:`core.serve.policies.prefix_hit`), then the policy touches its blocks and evicts down to N.
``capacity_blocks=None`` is an unlimited cache, whose hit rate is the trace's reuse ceiling.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.serve.policies import POLICIES, FutureIndex, make_policy
from core.serve.trace import Trace

__all__ = ["CapacityResult", "run_capacity", "sizing_curve", "prefix_hits_unlimited"]


@dataclass(frozen=True, eq=False)
class CapacityResult:
    """Hits of one policy at one capacity; ``hits[i]`` is request ``i``'s leading blocks served."""

    policy: str
    capacity_blocks: int | None
    requests: int
    blocks_total: int
    blocks_hit: int
    blocks_distinct: int
    hits: np.ndarray
    elapsed_s: float

    @property
    def prefix_hit_rate(self) -> float:
        return self.blocks_hit / self.blocks_total if self.blocks_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "capacity_blocks": self.capacity_blocks,
            "requests": self.requests,
            "blocks_total": self.blocks_total,
            "blocks_hit": self.blocks_hit,
            "blocks_distinct": self.blocks_distinct,
            "prefix_hit_rate": self.prefix_hit_rate,
            "elapsed_s": self.elapsed_s,
        }


def prefix_hits_unlimited(trace: Trace) -> np.ndarray:
    """Per-request hits of an unlimited cache, vectorised: block ``k`` of a request hits when it was seen
    before and so was every block before it (a running minimum of "seen before" along the prompt)."""
    ids = trace.block_ids
    if ids.shape[0] == 0:
        return np.zeros(trace.n_requests, np.int64)
    _, first = np.unique(ids, return_index=True)
    seen = np.ones(ids.shape[0], bool)
    seen[first] = False
    # a request repeating its own block id: the second copy is not "seen before the request"
    req_of = np.repeat(np.arange(trace.n_requests), np.diff(trace.block_offsets))
    first_req = np.empty(ids.shape[0], np.int64)
    order = np.argsort(ids, kind="stable")
    sid = ids[order]
    starts = np.r_[0, np.flatnonzero(sid[1:] != sid[:-1]) + 1]
    counts = np.diff(np.r_[starts, sid.shape[0]])
    first_req[order] = np.repeat(req_of[order[starts]], counts)
    seen &= first_req < req_of
    hits = np.zeros(trace.n_requests, np.int64)
    off = trace.block_offsets
    for i in range(trace.n_requests):  # the running minimum per request; argmin of a bool slice is fast
        s = seen[off[i]:off[i + 1]]
        if s.shape[0]:
            miss = np.flatnonzero(~s)
            hits[i] = miss[0] if miss.shape[0] else s.shape[0]
    return hits


def run_capacity(trace: Trace, policy: str = "lru", capacity_blocks: int | None = None, *,
                 future: FutureIndex | None = None, **params: Any) -> CapacityResult:
    """Replay ``trace`` through one policy with a cache of ``capacity_blocks`` (None = unlimited)."""
    t0 = time.perf_counter()
    n = trace.n_requests
    hits = np.zeros(n, np.int64)
    if capacity_blocks is None:
        hits = prefix_hits_unlimited(trace)
    else:
        cache = make_policy(policy, capacity_blocks, trace=trace, future=future, **params)
        off = trace.block_offsets.tolist()
        ids = trace.block_ids.tolist()
        partial = (trace.input_tokens % trace.block_tokens != 0).tolist()
        access = cache.access
        index = cache.index
        for i in range(n):
            blocks = ids[off[i]:off[i + 1]]
            h = 0
            for b in blocks:
                if b not in index:
                    break
                h += 1
            hits[i] = h
            access(blocks, i, off[i], hit=h, partial_tail=partial[i])
    elapsed = time.perf_counter() - t0
    return CapacityResult(policy, capacity_blocks, n, trace.n_blocks, int(hits.sum()),
                          int(np.unique(trace.block_ids).shape[0]), hits, elapsed)


def sizing_curve(trace: Trace, capacities: Sequence[int], policies: Sequence[str] = POLICIES) -> dict[str, list[float]]:
    """Hit rate per policy at each capacity."""
    out: dict[str, list[float]] = {}
    for p in policies:
        out[p] = [run_capacity(trace, p, int(c)).prefix_hit_rate for c in capacities]
    return out
