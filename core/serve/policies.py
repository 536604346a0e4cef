"""Eviction policies for a cache of KV prefix blocks, one tier at a time.

Every policy has the same face: :meth:`BlockPolicy.access` touches a request's blocks **from last to
first** (so a prefix's leading blocks end up more recent than its tail, as in the reference ``lru``),
inserts the missing ones, then evicts until at most ``capacity`` blocks remain and returns the victims (the
simulator moves them down the hierarchy). ``capacity=None`` never evicts. The hit of a request is decided
*before* ``access`` by :func:`prefix_hit` — the longest run of leading blocks present — which is the same
for every policy, so policies differ only in what they keep.

Policies
--------
``lru``       the reference, exactly as in issue 12 (and Mooncake's capacity figure)
``lfu``       fewest touches first, ties least recently touched
``s3fifo``    S3-FIFO (Yang et al., SOSP'23): small FIFO 10 %, main FIFO, ghost queue, 2-bit frequency
``arc``       ARC (Megiddo & Modha, FAST'03), as vLLM's CPU offload connector offers
``cost``      LMCache-style cost-aware: value = recompute cost a hit on the block saves (itself and the rest
              of its prompt, attention growing with position) × 2^(−age / half-life); lowest goes first
``belady``    offline: evict the block whose next use is farthest ahead (needs the trace; a ceiling)
``tierplan``  Tierplan's default: ``lru`` with partial last blocks aged adaptively — :class:`TierplanPolicy`
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import InputError

if TYPE_CHECKING:
    from core.serve.trace import Trace

__all__ = [
    "POLICIES",
    "POLICY_HELP",
    "BlockPolicy",
    "FutureIndex",
    "prefix_hit",
    "make_policy",
]


def prefix_hit(blocks: Sequence[int], cache: Any) -> int:
    """Length of the longest run of leading ``blocks`` that ``cache`` holds (``in`` works on it)."""
    n = 0
    for b in blocks:
        if b not in cache:
            break
        n += 1
    return n


class BlockPolicy:
    """Base: a set of block ids under a capacity. Subclasses implement ``_touch``, ``_victim``, ``_drop``."""

    name = "base"

    #: A dict (or set) holding exactly the cached blocks, for fast ``in`` in the simulators' hot loops.
    index: Any

    def __init__(self, capacity: int | None) -> None:
        if capacity is not None and capacity < 0:
            raise InputError(f"must be >= 0, got {capacity}", field="capacity_blocks")
        self.capacity = capacity
        self.tick = 0

    def __contains__(self, block: int) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def access(self, blocks: Sequence[int], req: int, first_pos: int = -1, *, hit: int = -1,
               partial_tail: bool = False, prompt: bool = True) -> list[int]:
        """Touch ``blocks`` last to first (inserting the new ones), then evict down to capacity.

        ``req`` is the request index (offline policies look ahead from it); ``first_pos`` the flat position
        of ``blocks[0]`` in the trace when these are a request's own prompt blocks (``-1`` otherwise);
        ``hit`` the request's prefix hit when the caller knows it and ``partial_tail`` whether its last
        block is partly filled (policies that learn from misses use them). ``prompt=False`` marks blocks that
        are not one prompt in order (victims moving down from the tier above, generated blocks): position
        in the list then means nothing.
        """
        n = len(blocks)
        for k in range(n - 1, -1, -1):
            self.tick += 1
            if prompt:
                self._touch(blocks[k], k, n, req)
            else:
                self._touch(blocks[k], 0, 1, req)
        out: list[int] = []
        cap = self.capacity
        if cap is not None:
            while len(self) > cap:
                out.append(self._victim(req))
        return out

    def evict_to(self, capacity: int) -> list[int]:
        """Evict until at most ``capacity`` blocks remain (the tier shrank); returns the victims."""
        out: list[int] = []
        while len(self) > capacity:
            out.append(self._victim(-1))
        return out

    def remove(self, block: int) -> None:
        """Take ``block`` out (it moved to another tier); no-op when absent."""
        if block in self:
            self._drop(block)

    def _touch(self, block: int, pos: int, length: int, req: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def _victim(self, req: int) -> int:  # pragma: no cover
        raise NotImplementedError

    def _drop(self, block: int) -> None:  # pragma: no cover
        raise NotImplementedError


class LRUPolicy(BlockPolicy):
    """The reference: least recently touched goes first."""

    name = "lru"

    def __init__(self, capacity: int | None) -> None:
        super().__init__(capacity)
        self.od: OrderedDict[int, None] = OrderedDict()
        self.index = self.od

    def __contains__(self, block: int) -> bool:
        return block in self.od

    def __len__(self) -> int:
        return len(self.od)

    def access(self, blocks: Sequence[int], req: int, first_pos: int = -1, *, hit: int = -1,
               partial_tail: bool = False, prompt: bool = True) -> list[int]:
        od = self.od
        move = od.move_to_end
        for k in range(len(blocks) - 1, -1, -1):
            b = blocks[k]
            if b in od:
                move(b)
            else:
                od[b] = None
        out: list[int] = []
        cap = self.capacity
        if cap is not None:
            pop = od.popitem
            while len(od) > cap:
                out.append(pop(last=False)[0])
        return out

    def _victim(self, req: int) -> int:
        return self.od.popitem(last=False)[0]

    def _drop(self, block: int) -> None:
        del self.od[block]


class _HeapPolicy(BlockPolicy):
    """Evict the smallest key; keys are recomputed on touch, stale heap entries skipped."""

    def __init__(self, capacity: int | None) -> None:
        super().__init__(capacity)
        #: block -> tick of its live heap entry (entries with another tick are stale)
        self.key: dict[int, int] = {}
        self.heap: list[tuple[float, int, int]] = []
        self.index = self.key

    def __contains__(self, block: int) -> bool:
        return block in self.key

    def __len__(self) -> int:
        return len(self.key)

    def _set(self, block: int, primary: float) -> None:
        self.key[block] = self.tick
        heapq.heappush(self.heap, (primary, self.tick, block))
        if len(self.heap) > 4 * len(self.key) + 1024:
            self._compact()

    def _compact(self) -> None:
        key = self.key
        self.heap = [e for e in self.heap if key.get(e[2]) == e[1]]
        heapq.heapify(self.heap)

    def _victim(self, req: int) -> int:
        heap, key = self.heap, self.key
        pop = heapq.heappop
        while True:
            _, t, b = pop(heap)
            if key.get(b) == t:
                del key[b]
                return b

    def _drop(self, block: int) -> None:
        del self.key[block]


class LFUPolicy(BlockPolicy):
    """Fewest touches first, ties by least recently touched: O(1) with one LRU-ordered bucket per count."""

    name = "lfu"

    def __init__(self, capacity: int | None) -> None:
        super().__init__(capacity)
        self.freq: dict[int, int] = {}
        self.buckets: dict[int, OrderedDict[int, None]] = {}
        self.min_freq = 1
        self.index = self.freq

    def __contains__(self, block: int) -> bool:
        return block in self.freq

    def __len__(self) -> int:
        return len(self.freq)

    def _touch(self, block: int, pos: int, length: int, req: int) -> None:
        freq, buckets = self.freq, self.buckets
        f = freq.get(block)
        if f is None:
            freq[block] = 1
            buckets.setdefault(1, OrderedDict())[block] = None
            self.min_freq = 1
            return
        bucket = buckets[f]
        del bucket[block]
        if not bucket:
            del buckets[f]
            if self.min_freq == f:
                self.min_freq = f + 1
        freq[block] = f + 1
        buckets.setdefault(f + 1, OrderedDict())[block] = None

    def _victim(self, req: int) -> int:
        buckets = self.buckets
        f = self.min_freq
        while f not in buckets:
            f += 1
        bucket = buckets[f]
        b, _ = bucket.popitem(last=False)
        if not bucket:
            del buckets[f]
        self.min_freq = f
        del self.freq[b]
        return b

    def _drop(self, block: int) -> None:
        f = self.freq.pop(block)
        bucket = self.buckets[f]
        del bucket[block]
        if not bucket:
            del self.buckets[f]


class CostAwarePolicy(_HeapPolicy):
    """LMCache-style cost-aware: value = recompute cost a hit on the block saves × 2^(−age/half-life).

    Hits are prefixes, so keeping block ``k`` of an ``n``-block prompt saves recomputing it *and* the
    blocks after it that hit with it: ``(n − k)·(1 + attention_ratio·(k + n − 1)/2)`` block-prefills (the
    attention term grows with the context). All blocks have the same bytes, so this is cost per byte. Because
    the decay is the same factor for every block, ``log2(cost) + touch_time / half_life`` orders blocks as
    the decayed value does at any later instant, so the key is fixed at touch time. The half-life defaults
    to a quarter of the capacity in touches (measured on the shipped trace: 0.1–4 × capacity tried).
    """

    name = "cost"

    def __init__(self, capacity: int | None, *, attention_ratio: float = 0.01,
                 half_life_blocks: float | None = None) -> None:
        super().__init__(capacity)
        self.ratio = attention_ratio
        default = 0.25 * capacity if capacity else 2000.0
        self.half_life = max(half_life_blocks if half_life_blocks is not None else default, 1.0)

    def _touch(self, block: int, pos: int, length: int, req: int) -> None:
        saved = (length - pos) * (1.0 + self.ratio * (pos + length - 1) / 2)
        self._set(block, math.log2(saved) + self.tick / self.half_life)


class S3FIFOPolicy(BlockPolicy):
    """S3-FIFO: new blocks enter a small FIFO (10 %); those touched again there move to the main FIFO;
    the main FIFO reinserts blocks with frequency left; ghosts of small-FIFO victims enter main directly."""

    name = "s3fifo"

    def __init__(self, capacity: int | None, *, small_fraction: float = 0.1) -> None:
        super().__init__(capacity)
        self.small: OrderedDict[int, None] = OrderedDict()
        self.main: OrderedDict[int, None] = OrderedDict()
        self.ghost: OrderedDict[int, None] = OrderedDict()
        self.freq: dict[int, int] = {}
        self.index = self.freq
        self.small_cap = max(1, int((capacity or 0) * small_fraction))

    def __contains__(self, block: int) -> bool:
        return block in self.freq

    def __len__(self) -> int:
        return len(self.freq)

    def _touch(self, block: int, pos: int, length: int, req: int) -> None:
        f = self.freq.get(block)
        if f is not None:
            self.freq[block] = min(f + 1, 3)
            return
        self.freq[block] = 0
        if block in self.ghost:
            del self.ghost[block]
            self.main[block] = None
        else:
            self.small[block] = None

    def _victim(self, req: int) -> int:
        while True:
            if self.small and (len(self.small) >= self.small_cap or not self.main):
                b, _ = self.small.popitem(last=False)
                if self.freq[b] > 1:
                    self.freq[b] = 0
                    self.main[b] = None
                    continue
                del self.freq[b]
                self.ghost[b] = None
                if len(self.ghost) > max(1, (self.capacity or 0) - self.small_cap):
                    self.ghost.popitem(last=False)
                return b
            b, _ = self.main.popitem(last=False)
            f = self.freq[b]
            if f > 0:
                self.freq[b] = f - 1
                self.main[b] = None
                continue
            del self.freq[b]
            return b

    def _drop(self, block: int) -> None:
        del self.freq[block]
        self.small.pop(block, None)
        self.main.pop(block, None)


class ARCPolicy(BlockPolicy):
    """Adaptive Replacement Cache: recency list T1 and frequency list T2 with ghost lists B1/B2 steering
    the target size ``p`` of T1. Evicts during the touches (ARC's own replacement rule)."""

    name = "arc"

    def __init__(self, capacity: int | None) -> None:
        super().__init__(capacity)
        self.t1: OrderedDict[int, None] = OrderedDict()
        self.t2: OrderedDict[int, None] = OrderedDict()
        self.b1: OrderedDict[int, None] = OrderedDict()
        self.b2: OrderedDict[int, None] = OrderedDict()
        self.p = 0.0
        self._out: list[int] = []
        self.index: dict[int, None] = {}

    def __contains__(self, block: int) -> bool:
        return block in self.index

    def __len__(self) -> int:
        return len(self.t1) + len(self.t2)

    def access(self, blocks: Sequence[int], req: int, first_pos: int = -1, *, hit: int = -1,
               partial_tail: bool = False, prompt: bool = True) -> list[int]:
        self._out = []
        if self.capacity is None:
            for k in range(len(blocks) - 1, -1, -1):
                b = blocks[k]
                if b in self.t1:
                    del self.t1[b]
                    self.t2[b] = None
                elif b in self.t2:
                    self.t2.move_to_end(b)
                else:
                    self.t1[b] = None
                    self.index[b] = None
            return []
        for k in range(len(blocks) - 1, -1, -1):
            self._touch(blocks[k], k, len(blocks), req)
        while len(self) > self.capacity:  # capacity 0
            self._out.append(self._victim(req))
        index, t1, t2 = self.index, self.t1, self.t2
        for v in self._out:
            if v not in t1 and v not in t2:
                index.pop(v, None)
        for b in blocks:
            if b in t1 or b in t2:
                index[b] = None
        return self._out

    def _replace(self, in_b2: bool) -> None:
        t1 = self.t1
        if t1 and ((in_b2 and len(t1) == self.p) or len(t1) > self.p):
            b, _ = t1.popitem(last=False)
            self.b1[b] = None
        elif self.t2:
            b, _ = self.t2.popitem(last=False)
            self.b2[b] = None
        else:
            b, _ = t1.popitem(last=False)
            self.b1[b] = None
        self._out.append(b)

    def _touch(self, b: int, pos: int, length: int, req: int) -> None:
        c = self.capacity
        assert c is not None
        t1, t2, b1, b2 = self.t1, self.t2, self.b1, self.b2
        if b in t1:
            del t1[b]
            t2[b] = None
            return
        if b in t2:
            t2.move_to_end(b)
            return
        if c == 0:
            return
        if b in b1:
            self.p = min(c, self.p + max(len(b2) / len(b1), 1.0))
            self._replace(False)
            del b1[b]
            t2[b] = None
            return
        if b in b2:
            self.p = max(0.0, self.p - max(len(b1) / len(b2), 1.0))
            self._replace(True)
            del b2[b]
            t2[b] = None
            return
        l1 = len(t1) + len(b1)
        if l1 >= c:
            if len(t1) < c and b1:
                b1.popitem(last=False)
                self._replace(False)
            else:
                v, _ = t1.popitem(last=False)
                self._out.append(v)
        else:
            total = l1 + len(t2) + len(b2)
            if total >= c:
                if total >= 2 * c:
                    (b2 if b2 else b1).popitem(last=False)
                if len(self) >= c:
                    self._replace(False)
        t1[b] = None

    def _victim(self, req: int) -> int:
        if self.t1:
            b, _ = self.t1.popitem(last=False)
        else:
            b, _ = self.t2.popitem(last=False)
        self.index.pop(b, None)
        return b

    def _drop(self, block: int) -> None:
        self.t1.pop(block, None)
        self.t2.pop(block, None)
        self.index.pop(block, None)


class FutureIndex:
    """When each block is next used, from the whole trace (what only an offline policy may know).

    ``next_req[j]`` is the index of the next request after the one at flat position ``j`` whose prompt
    holds the same block (``n_requests`` when none). The simulators call :meth:`advance` once per request,
    in order, so :meth:`next_use` answers for any block at the current instant.
    """

    def __init__(self, trace: Trace) -> None:
        ids = trace.block_ids
        n = trace.n_requests
        req_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(trace.block_offsets))
        order = np.lexsort((np.arange(ids.shape[0]), ids))
        sorted_ids = ids[order]
        same_next = np.zeros(ids.shape[0], bool)
        same_next[:-1] = sorted_ids[1:] == sorted_ids[:-1]
        nxt = np.full(ids.shape[0], n, np.int64)
        nxt_pos = order[1:][same_next[:-1]]
        nxt[order[:-1][same_next[:-1]]] = req_of[nxt_pos]
        self.next_req = nxt
        self.n = n
        first = np.ones(ids.shape[0], bool)
        first[1:] = sorted_ids[1:] != sorted_ids[:-1]
        self.first_req: dict[int, int] = dict(zip(sorted_ids[first].tolist(), req_of[order[first]].tolist()))
        self.last_pos: dict[int, int] = {}
        self.offsets = trace.block_offsets
        self.ids = ids
        self.next_list = nxt.tolist()
        self.current = -1

    def advance(self, req: int) -> None:
        """Record that request ``req``'s blocks were just seen."""
        if req <= self.current:
            return
        self.current = req
        start, end = int(self.offsets[req]), int(self.offsets[req + 1])
        lp = self.last_pos
        for j, b in zip(range(start, end), self.ids[start:end].tolist()):
            lp[b] = j

    def next_use(self, block: int, req: int) -> int:
        """Index of the next request after ``req`` that reads ``block`` (``n`` when never)."""
        j = self.last_pos.get(block)
        if j is not None:
            return self.next_list[j]
        first = self.first_req.get(block, self.n)
        return first if first > req else self.n


class BeladyPolicy(_HeapPolicy):
    """Offline ceiling: evict the block whose next use is farthest ahead (never-again blocks first).

    Within one request the touches run last to first, so among blocks with the same next use the tail
    goes before the head (a tail without its head can never hit)."""

    name = "belady"

    def __init__(self, capacity: int | None, *, future: FutureIndex) -> None:
        super().__init__(capacity)
        self.future = future

    def access(self, blocks: Sequence[int], req: int, first_pos: int = -1, *, hit: int = -1,
               partial_tail: bool = False, prompt: bool = True) -> list[int]:
        self.future.advance(req)
        return super().access(blocks, req, first_pos, prompt=prompt)

    def _touch(self, block: int, pos: int, length: int, req: int) -> None:
        self._set(block, -float(self.future.next_use(block, req)))


class TierplanPolicy(_HeapPolicy):
    """Tierplan's default: the reference LRU order, made prefix-aware only under measured pressure.

    Two corrections to a block's last-touch time, both zero until the cache shows pressure, so without
    pressure this is exactly ``lru`` (which is why it never fell below ``lru`` at any capacity in the sweeps
    of ``tests/test_serve_capacity.py``):

    - a prompt's partial last block (``input_length % 512 != 0``) enters as if touched ``shift`` touches ago.
      On the shipped trace such a block is read again 5 % of the time against 66 % for other blocks (the next
      turn fills it with new tokens, so its hash changes);
    - every other block is credited ``w·log2(blocks from it to the prompt's end)`` touches: a hit on a
      prompt's head saves recomputing the whole prompt, a hit on its tail only the tail (LMCache's
      recompute-cost score, in the log domain where age decay is a shift).

    ``shift`` adapts as ARC does, from ghost lists of recent victims, on the one block of a request that
    matters, its first miss: a recently evicted ordinary block means pressure (``shift += grow·N``), a
    recently evicted partial tail means tails leave too early (``shift −= shrink·N``); ``w`` ramps with
    ``shift`` up to ``value·N``.
    """

    name = "tierplan"

    def __init__(self, capacity: int | None, *, grow: float = 0.05, shrink: float = 0.2,
                 max_shift: float = 2.0, value: float = 0.25) -> None:
        super().__init__(capacity)
        cap = capacity or 0
        self.shift = 0.0
        self.grow, self.shrink, self.max_shift = grow * cap, shrink * cap, max_shift * cap
        self.value_weight = value * cap
        self.ramp = value * cap
        self.tails: set[int] = set()
        self.ghost_tail: OrderedDict[int, None] = OrderedDict()
        self.ghost_main: OrderedDict[int, None] = OrderedDict()

    def access(self, blocks: Sequence[int], req: int, first_pos: int = -1, *, hit: int = -1,
               partial_tail: bool = False, prompt: bool = True) -> list[int]:
        cap = self.capacity
        if cap is None:
            for b in blocks:
                self.key[b] = 0
            return []
        n = len(blocks)
        if hit < 0 and prompt:
            hit = prefix_hit(blocks, self)
        if prompt and hit < n:
            miss = blocks[hit]
            if miss in self.ghost_tail:
                self.shift = max(0.0, self.shift - self.shrink)
                del self.ghost_tail[miss]
            elif miss in self.ghost_main:
                self.shift = min(self.max_shift, self.shift + self.grow)
                del self.ghost_main[miss]
        key, heap, tails = self.key, self.heap, self.tails
        push = heapq.heappush
        weight = self.value_weight * min(1.0, self.shift / self.ramp) if self.ramp > 0 and prompt else 0.0
        log2 = math.log2
        tick = self.tick
        for k in range(n - 1, -1, -1):
            tick += 1
            b = blocks[k]
            if partial_tail and k == n - 1 and b not in key:
                primary = tick - self.shift
                tails.add(b)
            else:
                primary = tick + weight * log2(n - k) if weight else tick
                if tails:
                    tails.discard(b)
            key[b] = tick
            push(heap, (primary, tick, b))
        self.tick = tick
        out = self.evict_to(cap) if len(key) > cap else []
        if len(self.heap) > 4 * len(key) + 1024:
            self._compact()
        return out

    def evict_to(self, capacity: int) -> list[int]:
        """Evict down to ``capacity``, remembering each victim in its ghost list."""
        out: list[int] = []
        tails, key, heap = self.tails, self.key, self.heap
        gt, gm = self.ghost_tail, self.ghost_main
        bound = max(1, self.capacity or 0)
        pop = heapq.heappop
        while len(key) > capacity:
            _, t, b = pop(heap)
            if key.get(b) != t:
                continue
            del key[b]
            out.append(b)
            if b in tails:
                tails.discard(b)
                ghost = gt
            else:
                ghost = gm
            ghost[b] = None
            if len(ghost) > bound:
                ghost.popitem(last=False)
        return out

    def _drop(self, block: int) -> None:
        super()._drop(block)
        self.tails.discard(block)


POLICIES: tuple[str, ...] = ("lru", "lfu", "s3fifo", "arc", "cost", "tierplan", "belady")
POLICY_HELP: dict[str, str] = {
    "lru": "reference: least recently touched first (blocks touched last to first per request)",
    "lfu": "fewest touches first, ties least recently touched",
    "s3fifo": "S3-FIFO: small probationary FIFO, main FIFO, ghost queue",
    "arc": "ARC: adaptive split between recency and frequency",
    "cost": "LMCache-style cost-aware: recompute cost saved per byte, with age decay",
    "tierplan": "Tierplan default: lru, with partial last blocks aged adaptively under pressure",
    "belady": "offline ceiling: evict the block used farthest in the future",
}


def make_policy(name: str, capacity: int | None, *, trace: Trace | None = None,
                future: FutureIndex | None = None, **params: Any) -> BlockPolicy:
    """A fresh policy instance; ``belady`` needs the trace (or a shared :class:`FutureIndex`)."""
    if name == "lru":
        return LRUPolicy(capacity)
    if name == "lfu":
        return LFUPolicy(capacity)
    if name == "s3fifo":
        return S3FIFOPolicy(capacity, **params)
    if name == "arc":
        return ARCPolicy(capacity)
    if name == "cost":
        return CostAwarePolicy(capacity, **params)
    if name == "tierplan":
        return TierplanPolicy(capacity, **params)
    if name == "belady":
        if future is None:
            if trace is None:
                raise InputError("belady needs the whole trace (it is an offline policy)", field="policy")
            future = FutureIndex(trace)
        return BeladyPolicy(capacity, future=future)
    raise InputError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}", field="policy")
