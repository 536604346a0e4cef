"""Timed, tiered simulation of a prefix KV cache serving a trace on a model and hardware.

The picture (UCM / Mooncake / LMCache, simplified to what changes the answer):

- **Prefill** runs on ``prefill_instances`` instances of ``tensor_parallel`` devices of the hardware
  preset each (ideal tensor parallelism: HBM, FLOPs and HBM bandwidth add up, collectives not costed),
  FIFO from one queue. Each instance holds the model's weights; what their HBM has left after the weights and the KV of the prompts being
  prefilled right now is one **HBM prefix cache** (pooled across the instances — an idealisation of
  cache-aware routing). The lower tiers (DDR, pool, SSD: every non-compute tier of the preset, capacities
  editable) hold more cached blocks; each tier has its own eviction policy instance.
- At a request's start its **hit** is the longest run of leading prompt blocks some tier holds (ready by
  then). Hit blocks in a lower tier load over the links of the hardware's route to HBM (store-and-forward
  hops, one transfer at a time per link); the uncached tokens' prefill computes meanwhile. ``overlap="layer"``
  (layer N+1's KV loads while layer N computes): ``time = max(compute, load) + min(compute, load) / layers``;
  ``"sequential"``: ``load + compute``. Prefill cost is the roofline of ``prefill_flops(new, cached)``.
  With ``selective_load`` only the hit prefix that gives the shortest prefill is loaded (loading a block
  from an SSD behind a busy link can take longer than recomputing it); the rest is recomputed.
- **Decode** runs on ``decode_instances`` other devices (disaggregated, as Mooncake) by continuous batching:
  every step each running request gains one token; the step takes the roofline of the batch's FLOPs and of
  the weights + all contexts' KV read from HBM. TTFT = prefill end − arrival; TPOT = decode time / (out − 1).
- **Placement**: a request's blocks enter the HBM cache (the policy touches them last to first); victims
  move down the hierarchy. ``inclusive``: a loaded block keeps its lower copy (and ``write_through`` writes
  every new block down at once, so an HBM victim that still has a lower copy is dropped without a copy);
  exclusive: a block lives in one tier. A victim is written down only after ``admit_after`` uses (vLLM's
  reuse-count admission); the lowest tier's victims are dropped. Blocks that a request's *generated*
  tokens complete (known for synthetic traces) are written to the first lower tier when it finishes.

Everything the cache does is logged (:class:`ServeLog`) so :mod:`core.serve.check` can replay it
independently: stores, evictions, loads with their source tier, capacity changes, and link transfers.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from core.errors import InfeasibleError, InputError
from core.hardware import Hardware
from core.serve.model import ServeModel
from core.serve.policies import POLICIES, BlockPolicy, FutureIndex, make_policy
from core.serve.trace import Trace

__all__ = ["ServeConfig", "ServeLog", "ServeResult", "simulate", "instance_hardware", "percentiles"]

#: Policies whose order on non-prompt accesses is plain LRU (see :class:`core.serve.policies.TierplanPolicy`).
NON_PROMPT_LRU = frozenset({"tierplan", "cost"})
#: Log op codes (first element of each :attr:`ServeLog.ops` tuple).
STORE, EVICT, LOAD, CAP = "store", "evict", "load", "cap"


@dataclass(frozen=True)
class ServeConfig:
    """Knobs of the timed simulation. ``tier_capacity_bytes`` overrides the cache share of a lower tier
    (default: the whole tier); a tier missing from ``cache_tiers`` (None = all) is not used as a cache."""

    policy: str = "tierplan"
    hbm_cache: bool = True
    cache_tiers: tuple[str, ...] | None = None
    tier_capacity_bytes: tuple[tuple[str, int], ...] = ()
    prefill_instances: int = 4
    decode_instances: int = 4
    overlap: Literal["layer", "sequential"] = "layer"
    inclusive: bool = False
    write_through: bool = False
    admit_after: int = 1
    cache_generated: bool = True
    max_decode_batch: int = 256
    selective_load: bool = True
    tensor_parallel: int = 1

    def checked(self) -> ServeConfig:
        if self.policy not in POLICIES:
            raise InputError(f"unknown policy {self.policy!r}; expected one of {', '.join(POLICIES)}", field="policy")
        for name in ("prefill_instances", "decode_instances", "admit_after", "max_decode_batch", "tensor_parallel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"must be a whole number >= 1, got {value!r}", field=name)
        if self.overlap not in ("layer", "sequential"):
            raise InputError(f"expected 'layer' or 'sequential', got {self.overlap!r}", field="overlap")
        if self.write_through and not self.inclusive:
            raise InputError("write-through keeps a copy below every cached block, which is inclusive caching; "
                             "set inclusive as well", field="write_through")
        for tier, cap in self.tier_capacity_bytes:
            if cap < 0:
                raise InputError(f"must be >= 0, got {cap}", field=f"{tier}.capacity")
        return self


@dataclass
class ServeLog:
    """What the cache did, in the order it happened. ``ops`` entries:
    ``("store", t_ready, tier, block)``, ``("evict", t, tier, block)``, ``("load", t, tier, blocks, req)``,
    ``("cap", t, tier, capacity_blocks)``; ``transfers``: ``(link, start_s, end_s, nbytes)``."""

    tiers: tuple[str, ...]
    capacity_blocks: dict[str, int]
    block_bytes: int
    link_bandwidth_Bps: dict[str, float]
    link_latency_s: dict[str, float]
    ops: list[tuple[Any, ...]] = field(default_factory=list)
    transfers: list[tuple[str, float, float, int]] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class ServeResult:
    """Per-request arrays, per-tier and per-link totals, time series, the log."""

    trace_name: str
    model_name: str
    hardware_name: str
    config: ServeConfig
    arrival_s: np.ndarray
    start_s: np.ndarray
    prefill_end_s: np.ndarray
    finish_s: np.ndarray
    hit_blocks: np.ndarray
    available_blocks: np.ndarray
    hit_by_tier: dict[str, np.ndarray]
    blocks: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    prefill_flops: np.ndarray
    prefill_flops_no_cache: np.ndarray
    link_bytes: dict[str, int]
    occupancy: dict[str, np.ndarray]
    occupancy_t_s: np.ndarray
    queue_t_s: np.ndarray
    queue_len: np.ndarray
    capacity_blocks: dict[str, int]
    block_bytes: int
    log: ServeLog
    elapsed_s: float

    @property
    def ttft_s(self) -> np.ndarray:
        return self.prefill_end_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Time per output token after the first (NaN for requests that generate one token or none)."""
        steps = self.output_tokens - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(steps > 0, (self.finish_s - self.prefill_end_s) / np.maximum(steps, 1), np.nan)

    def summary(self) -> dict[str, Any]:
        total = int(self.blocks.sum())
        hit = int(self.hit_blocks.sum())
        makespan = float(self.finish_s.max() - self.arrival_s.min()) if self.blocks.shape[0] else 0.0
        no_cache = float(self.prefill_flops_no_cache.sum())
        tpot = self.tpot_s
        return {
            "trace": self.trace_name,
            "model": self.model_name,
            "hardware": self.hardware_name,
            "policy": self.config.policy,
            "requests": int(self.blocks.shape[0]),
            "blocks_total": total,
            "blocks_hit": hit,
            "prefix_hit_rate": hit / total if total else 0.0,
            "blocks_cached_at_arrival": int(self.available_blocks.sum()),
            "hit_rate_by_tier": {t: (int(v.sum()) / total if total else 0.0) for t, v in self.hit_by_tier.items()},
            "capacity_blocks": dict(self.capacity_blocks),
            "block_bytes": self.block_bytes,
            "ttft_s": percentiles(self.ttft_s),
            "tpot_s": percentiles(tpot[~np.isnan(tpot)]),
            "throughput_tokens_per_s": float(self.output_tokens.sum()) / makespan if makespan > 0 else 0.0,
            "throughput_requests_per_s": self.blocks.shape[0] / makespan if makespan > 0 else 0.0,
            "makespan_s": makespan,
            "prefill_compute_saved": 1.0 - float(self.prefill_flops.sum()) / no_cache if no_cache else 0.0,
            "link_bytes": dict(self.link_bytes),
            "queue_max": int(self.queue_len.max()) if self.queue_len.shape[0] else 0,
            "elapsed_s": self.elapsed_s,
        }

    def per_request_rows(self) -> dict[str, np.ndarray]:
        """Columns for a per-request CSV."""
        cols: dict[str, np.ndarray] = {
            "request": np.arange(self.blocks.shape[0]),
            "arrival_s": self.arrival_s,
            "start_s": self.start_s,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "finish_s": self.finish_s,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "blocks": self.blocks,
            "hit_blocks": self.hit_blocks,
            "cached_blocks": self.available_blocks,
        }
        for tier, v in self.hit_by_tier.items():
            cols[f"hit_{tier}"] = v
        return cols


def percentiles(values: np.ndarray) -> dict[str, float]:
    if values.shape[0] == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0}
    p = np.percentile(values, [50, 90, 99])
    return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]), "mean": float(values.mean())}


class _Tier:
    """One cache tier: its policy (which blocks), when each block's data is readable, capacity."""

    def __init__(self, name: str, policy: BlockPolicy) -> None:
        self.name = name
        self.policy = policy
        self.ready: dict[int, float] = {}


class _Sim:
    def __init__(self, trace: Trace, model: ServeModel, hw: Hardware, cfg: ServeConfig) -> None:
        self.trace, self.model, self.hw, self.cfg = trace, model, hw, cfg
        self.block_bytes = model.block_bytes(trace.block_tokens)
        hbm = hw.compute_tier
        self.hbm = hbm
        hbm_bytes = hw.capacity(hbm)
        if model.weight_bytes >= hbm_bytes:
            raise InfeasibleError(f"the weights of {model.name} ({model.weight_bytes / 2**30:.1f} GiB) do not fit in "
                                  f"{hbm} ({hbm_bytes / 2**30:.1f} GiB) of {hw.name}; use more devices per instance "
                                  "(tensor_parallel)")
        self.hbm_free_bytes = cfg.prefill_instances * (hbm_bytes - model.weight_bytes)
        overrides = dict(cfg.tier_capacity_bytes)
        for name in overrides:
            if name not in hw.tier_by_name:
                raise InputError(f"no tier '{name}' in hardware '{hw.name}'", field=f"{name}.capacity")
        lower = [t for t in hw.offload_tiers if cfg.cache_tiers is None or t in cfg.cache_tiers]
        future = FutureIndex(trace) if cfg.policy == "belady" else None
        self.future = future
        self.tiers: list[_Tier] = []
        self.capacity: dict[str, int] = {}
        if cfg.hbm_cache:
            cap = self.hbm_free_bytes // self.block_bytes
            self.tiers.append(_Tier(hbm, make_policy(cfg.policy, int(cap), trace=trace, future=future)))
            self.capacity[hbm] = int(cap)
        # Tiers below the first only ever see blocks that are not one prompt in order (victims from above, generated
        # blocks): there ``tierplan`` and ``cost`` order by touch time alone, i.e. exactly ``lru``, which is
        # 2-3x cheaper (tests/test_serve_simulate.py checks the equivalence on the policies).
        lower_policy = "lru" if cfg.policy in NON_PROMPT_LRU else cfg.policy
        for name in lower:
            cap = int(overrides.get(name, hw.capacity(name)) // self.block_bytes)
            if cap <= 0:
                continue
            policy = cfg.policy if not self.tiers else lower_policy  # the first tier sees the prompts
            self.tiers.append(_Tier(name, make_policy(policy, cap, trace=trace, future=future)))
            self.capacity[name] = cap
        self.by_name = {t.name: t for t in self.tiers}
        self.link_free: dict[str, float] = {link.name: 0.0 for link in hw.links}
        self.link_bytes: dict[str, int] = {link.name: 0 for link in hw.links}
        self.log = ServeLog(tuple(t.name for t in self.tiers), dict(self.capacity), self.block_bytes,
                            {link.name: link.bandwidth_Bps for link in hw.links},
                            {link.name: link.latency_s for link in hw.links})
        for t in self.tiers:
            self.log.ops.append((CAP, 0.0, t.name, self.capacity[t.name]))
        self.uses: dict[int, int] = {}

    # ------------------------------------------------------------------------------------------ links

    def _transfer(self, src: str, dst: str, nbytes: int, not_before: float) -> float:
        """Copy ``nbytes`` along the route (hop after hop, each link one copy at a time); returns the end."""
        t = not_before
        for link in self.hw.route(src, dst):
            start = max(t, self.link_free[link.name])
            end = start + link.transfer_time_s(nbytes)
            self.link_free[link.name] = end
            self.link_bytes[link.name] += nbytes
            self.log.transfers.append((link.name, start, end, nbytes))
            t = end
        return t

    # ------------------------------------------------------------------------------------------ tiers

    def _store(self, tier: _Tier, blocks: list[int], ready: float, req: int, *, hit: int = -1,
               partial_tail: bool = False, prompt: bool = False) -> None:
        """Insert/touch ``blocks`` in ``tier`` (data readable at ``ready``); victims move down."""
        held = tier.policy.index
        new = [b for b in dict.fromkeys(blocks) if b not in held]
        # a policy may evict a block and take it back within one access (ARC): only the final state counts
        victims = [v for v in dict.fromkeys(tier.policy.access(blocks, req, hit=hit, partial_tail=partial_tail,
                                                               prompt=prompt)) if v not in held]
        ops = self.log.ops
        for v in victims:
            if v in tier.ready:
                ops.append((EVICT, ready, tier.name, v))
        for b in new:
            if b in held:
                tier.ready[b] = ready
                ops.append((STORE, ready, tier.name, b))
        victim_ready = []
        for v in victims:
            r = tier.ready.pop(v, None)
            victim_ready.append((v, ready if r is None else max(r, ready)))
        if victims:
            self._demote(tier, victim_ready, req)

    def _demote(self, tier: _Tier, victims: list[tuple[int, float]], req: int) -> None:
        """Write victims of ``tier`` to the next tier (one batched copy), unless already there or not admitted."""
        idx = self.tiers.index(tier)
        if idx + 1 >= len(self.tiers):
            return
        below = self.tiers[idx + 1]
        held = below.policy.index
        moving = [(b, r) for b, r in victims if self.uses.get(b, 0) >= self.cfg.admit_after and b not in held]
        if not moving:
            return
        not_before = max(r for _, r in moving)
        end = self._transfer(tier.name, below.name, len(moving) * self.block_bytes, not_before)
        self._store(below, [b for b, _ in moving], end, req)

    def _set_hbm_capacity(self, cap: int, t: float, req: int) -> None:
        top = self.tiers[0] if self.cfg.hbm_cache else None
        if top is None or cap == self.capacity[self.hbm]:
            return
        cap = max(0, cap)
        if cap < self.capacity[self.hbm]:
            victims = top.policy.evict_to(cap)
            for v in victims:
                self.log.ops.append((EVICT, t, top.name, v))
            vr = []
            for v in victims:
                r = top.ready.pop(v, t)
                vr.append((v, max(r, t)))
            if vr:
                self._demote(top, vr, req)
        top.policy.capacity = cap
        self.capacity[self.hbm] = cap
        self.log.ops.append((CAP, t, top.name, cap))

    # ------------------------------------------------------------------------------------------ requests

    def _hit(self, blocks: list[int], t: float) -> tuple[int, list[str]]:
        """Leading blocks some tier holds, ready by ``t``, and the fastest tier holding each."""
        src: list[str] = []
        for b in blocks:
            where = None
            for tier in self.tiers:
                if b in tier.policy.index:
                    r = tier.ready.get(b)
                    if r is not None and r <= t:
                        where = tier.name
                        break
            if where is None:
                break
            src.append(where)
        return len(src), src

    def _load_end(self, counts: dict[str, int], t: float) -> float:
        """When loads of ``counts[tier]`` blocks from each tier would end if issued at ``t`` (no commit)."""
        free = dict(self.link_free)
        end_all = t
        for tier in self.tiers:
            k = counts.get(tier.name, 0)
            if not k or tier.name == self.hbm:
                continue
            nbytes = k * self.block_bytes
            at = t
            for link in self.hw.route(tier.name, self.hbm):
                at = max(at, free[link.name]) + link.transfer_time_s(nbytes)
                free[link.name] = at
            end_all = max(end_all, at)
        return end_all

    def _best_hit(self, src: list[str], n_in: int, t: float, coeffs: tuple[float, float, float], layers: int) -> int:
        """How many of the hit blocks to load: the prefix length with the shortest prefill, when loading a
        block from a slow tier (SSD behind a busy link) would take longer than recomputing it."""
        compute = self.hw.compute
        a, b, c0 = coeffs
        rate = compute.peak_flops * compute.efficiency
        bt = self.trace.block_tokens
        seq = self.cfg.overlap == "sequential"
        mem = compute.memory_bandwidth_Bps * compute.memory_efficiency

        def total(h: int) -> float:
            cached = min(h * bt, n_in)
            new = max(n_in - cached, 1 if n_in else 0)
            cached = n_in - new
            comp = (a * new + c0 + b * (new * cached + new * (new + 1) / 2)) / rate
            if mem > 0:
                comp = max(comp, (self.model.weight_bytes + n_in * self.model.kv_bytes_per_token) / mem)
            counts: dict[str, int] = {}
            for s in src[:h]:
                counts[s] = counts.get(s, 0) + 1
            load = self._load_end(counts, t) - t
            return comp + load if seq else max(comp, load) + min(comp, load) / layers

        h = len(src)
        if all(s == self.hbm for s in src):
            return h
        candidates = {0, h}
        lo, hi = 0, h  # the last length whose load does not exceed its compute
        while lo < hi:
            mid = (lo + hi + 1) // 2
            cached = min(mid * bt, n_in)
            new = max(n_in - cached, 1)
            comp = (a * new + c0 + b * (new * (n_in - new) + new * (new + 1) / 2)) / rate
            counts: dict[str, int] = {}
            for s in src[:mid]:
                counts[s] = counts.get(s, 0) + 1
            if self._load_end(counts, t) - t <= comp:
                lo = mid
            else:
                hi = mid - 1
        candidates.update({lo, min(h, lo + 1)})
        for k in range(1, h):
            if src[k] != src[k - 1]:
                candidates.add(k)
        return min(sorted(candidates), key=lambda k: (total(k), -k))

    def run(self) -> ServeResult:
        t0 = time.perf_counter()
        tr, model, hw, cfg = self.trace, self.model, self.hw, self.cfg
        n = tr.n_requests
        bt = tr.block_tokens
        compute = hw.compute
        layers = model.spec.layers
        kvb = model.kv_bytes_per_token
        ids = tr.block_ids.tolist()
        off = tr.block_offsets.tolist()
        arrival = tr.arrival_s.tolist()
        n_in = tr.input_tokens.tolist()
        n_out = tr.output_tokens.tolist()
        partial = (tr.input_tokens % bt != 0).tolist()
        start = np.zeros(n)
        pend = np.zeros(n)
        finish = np.zeros(n)
        hits = np.zeros(n, np.int64)
        avail = np.zeros(n, np.int64)
        coeffs = model.prefill_coefficients()
        by_tier = {t.name: np.zeros(n, np.int64) for t in self.tiers}
        flops = np.zeros(n)
        flops0 = np.zeros(n)
        occ_t = np.zeros(n)
        occ = {t.name: np.zeros(n, np.int64) for t in self.tiers}
        queue = np.zeros(n, np.int64)
        instances = [0.0] * cfg.prefill_instances
        inflight: list[tuple[float, int, int]] = []  # (end, req, active bytes)
        active_bytes = 0
        decode = _Decode(self, model, hw, cfg, finish)
        arrivals = tr.arrival_s
        for i in range(n):
            need = n_in[i] * kvb
            if need > self.hbm_free_bytes:
                raise InfeasibleError(f"request {i} needs {need / 2**30:.1f} GiB of KV for its {n_in[i]:,}-token prompt "
                                      f"but the prefill instances have {self.hbm_free_bytes / 2**30:.1f} GiB after weights")
            t = max(arrival[i], min(instances))
            # free instances and memory of prefills that ended by t, then wait for memory if needed
            while inflight and (inflight[0][0] <= t or active_bytes + need > self.hbm_free_bytes):
                end, _, nbytes = heapq.heappop(inflight)
                t = max(t, end)
                active_bytes -= nbytes
            k = min(range(len(instances)), key=instances.__getitem__)
            decode.advance(t)
            active_bytes += need
            if self.cfg.hbm_cache:
                self._set_hbm_capacity((self.hbm_free_bytes - active_bytes) // self.block_bytes, t, i)
            blocks = ids[off[i]:off[i + 1]]
            for b in blocks:
                self.uses[b] = self.uses.get(b, 0) + 1
            if self.future is not None:
                self.future.advance(i)
            h, src = self._hit(blocks, t)
            avail[i] = h
            if cfg.selective_load and h:
                h = self._best_hit(src, n_in[i], t, coeffs, layers)
                src = src[:h]
            cached = min(h * bt, n_in[i])
            new = max(n_in[i] - cached, 1 if n_in[i] else 0)
            cached = n_in[i] - new
            # loads, fastest source tier first
            load_end = t
            by_src: dict[str, list[int]] = {}
            for b, s in zip(blocks, src):
                by_src.setdefault(s, []).append(b)
            for tier in self.tiers:
                got = by_src.get(tier.name)
                if not got:
                    continue
                by_tier[tier.name][i] = len(got)
                self.log.ops.append((LOAD, t, tier.name, tuple(got), i))
                if tier.name == self.hbm:
                    continue
                end = self._transfer(tier.name, self.hbm, len(got) * self.block_bytes, t)
                load_end = max(load_end, end)
                if cfg.inclusive:
                    self._store(tier, got, t, i)
                else:
                    for b in got:
                        tier.policy.remove(b)
                        tier.ready.pop(b, None)
                        self.log.ops.append((EVICT, t, tier.name, b))
            c = model.prefill_time_s(compute, new, cached)
            ld = load_end - t
            dur = c + ld if cfg.overlap == "sequential" else max(c, ld) + min(c, ld) / layers
            e = t + dur
            instances[k] = e
            start[i], pend[i], hits[i] = t, e, h
            flops[i] = model.prefill_flops(new, cached)
            flops0[i] = model.prefill_flops(n_in[i], 0)
            heapq.heappush(inflight, (e, i, need))
            if self.tiers:
                top = self.tiers[0]
                if top.name == self.hbm:
                    self._store(top, blocks, e, i, hit=h, partial_tail=partial[i], prompt=True)
                    if cfg.write_through and len(self.tiers) > 1:
                        below = self.tiers[1]
                        fresh = [b for b in blocks if b not in below.policy.index]
                        if fresh:
                            end = self._transfer(self.hbm, below.name, len(fresh) * self.block_bytes, e)
                            self._store(below, fresh, end, i)
                else:
                    end = self._transfer(self.hbm, top.name, len(blocks) * self.block_bytes, e)
                    self._store(top, blocks, end, i, hit=h, partial_tail=partial[i], prompt=True)
            decode.join(i, e, n_in[i], n_out[i])
            occ_t[i] = t
            for tier in self.tiers:
                occ[tier.name][i] = len(tier.policy)
            queue[i] = int(np.searchsorted(arrivals, t, side="right")) - i - 1
        decode.advance(math.inf)
        return ServeResult(
            tr.name, model.name, hw.name, cfg, tr.arrival_s.copy(), start, pend, finish, hits, avail, by_tier,
            np.diff(tr.block_offsets), tr.input_tokens.copy(), tr.output_tokens.copy(), flops, flops0,
            {k: v for k, v in self.link_bytes.items()}, occ, occ_t, occ_t.copy(), queue,
            {t.name: cap for t, cap in ((t, self.log.capacity_blocks[t.name]) for t in self.tiers)},
            self.block_bytes, self.log, time.perf_counter() - t0,
        )

    def cache_generated(self, i: int, t: float) -> None:
        if not self.cfg.cache_generated or not self.tiers:
            return
        gen = self.trace.generated_blocks(i).tolist()
        if not gen:
            return
        lower = [tier for tier in self.tiers if tier.name != self.hbm]
        target = lower[0] if lower else self.tiers[0]
        fresh = [b for b in gen if b not in target.policy.index]
        if not fresh:
            return
        for b in fresh:
            self.uses[b] = self.uses.get(b, 0) + 1
        end = t if target.name == self.hbm else self._transfer(self.hbm, target.name, len(fresh) * self.block_bytes, t)
        self._store(target, fresh, end, i)


class _Decode:
    """Continuous batching on the decode instances, advanced lazily up to the prefill clock."""

    def __init__(self, sim: _Sim, model: ServeModel, hw: Hardware, cfg: ServeConfig, finish: np.ndarray) -> None:
        self.sim, self.model, self.compute = sim, model, hw.compute
        self.instances = cfg.decode_instances
        self.max_batch = cfg.max_decode_batch * cfg.decode_instances
        self.kv_capacity_tokens = cfg.decode_instances * (hw.capacity(hw.compute_tier) - model.weight_bytes) // max(
            1, model.kv_bytes_per_token)
        self.finish = finish
        self.pending: list[tuple[float, int, int, int]] = []  # (ready, req, ctx, remaining)
        self.waiting: deque[tuple[int, int, int]] = deque()
        self.active: list[tuple[int, int]] = []  # (finish step, req)
        self.ctx: dict[int, int] = {}
        self.reserved: dict[int, int] = {}
        self.reserved_total = 0
        self.ctx_sum = 0
        self.step = 0
        self.clock = 0.0
        c = hw.compute
        self._rate = c.peak_flops * c.efficiency
        self._mem = c.memory_bandwidth_Bps * c.memory_efficiency
        self._base = model.decode_step_flops(1, 0)
        self._per_ctx = model.decode_step_flops(1, 1) - self._base

    def _step_s(self, batch: int, ctx: int) -> float:
        """``model.decode_step_s`` without the call overhead (135k steps on the shipped trace)."""
        m = self.model
        t_flops = (batch * self._base + self._per_ctx * ctx) / self._rate
        if self._mem <= 0:
            return t_flops
        weights = m.weight_bytes if m.spec.moe is None else m.decode_weight_bytes(batch)
        return max(t_flops, (weights + ctx * m.kv_bytes_per_token) / self._mem)

    def join(self, i: int, ready: float, n_in: int, n_out: int) -> None:
        if n_out <= 1:
            self.finish[i] = ready
            self.sim.cache_generated(i, ready)
            return
        heapq.heappush(self.pending, (ready, i, n_in, n_out - 1))

    def _admit(self) -> None:
        while self.pending and self.pending[0][0] <= self.clock:
            _, i, ctx, rem = heapq.heappop(self.pending)
            self.waiting.append((i, ctx, rem))
        while self.waiting and len(self.active) < self.max_batch:
            i, ctx, rem = self.waiting[0]
            need = ctx + rem
            if self.active and self.reserved_total + need > self.kv_capacity_tokens:
                break
            self.waiting.popleft()
            self.reserved[i] = need
            self.reserved_total += need
            self.ctx[i] = ctx - self.step  # its context at step s is ctx[i] + s
            self.ctx_sum += ctx
            heapq.heappush(self.active, (self.step + rem, i))

    def advance(self, until: float) -> None:
        while True:
            self._admit()
            if not self.active:
                if self.waiting:  # pragma: no cover - a lone request is always admitted
                    raise AssertionError("decode stalled")
                if not self.pending or self.pending[0][0] > until:
                    return
                self.clock = max(self.clock, self.pending[0][0])
                continue
            if self.clock >= until:
                return
            b = len(self.active)
            per = -(-b // self.instances)
            dt = self._step_s(per, self.ctx_sum * per // b)
            self.clock += dt
            self.step += 1
            self.ctx_sum += b
            while self.active and self.active[0][0] <= self.step:
                _, i = heapq.heappop(self.active)
                self.finish[i] = self.clock
                self.ctx_sum -= self.ctx.pop(i) + self.step
                self.reserved_total -= self.reserved.pop(i)
                self.sim.cache_generated(i, self.clock)


def instance_hardware(hardware: Hardware, tensor_parallel: int) -> Hardware:
    """One instance of ``tensor_parallel`` devices: HBM, FLOPs and HBM bandwidth add up (ideal tensor
    parallelism, collectives not costed); the links to the lower tiers stay one device's."""
    if tensor_parallel == 1:
        return hardware
    c = hardware.compute
    compute = replace(c, peak_flops=c.peak_flops * tensor_parallel,
                      memory_bandwidth_Bps=c.memory_bandwidth_Bps * tensor_parallel)
    tiers = tuple(replace(t, capacity_bytes=t.capacity_bytes * tensor_parallel) if t.name == hardware.compute_tier else t
                  for t in hardware.tiers)
    return replace(hardware, compute=compute, tiers=tiers, name=f"{hardware.name} ×{tensor_parallel} (TP)")


def simulate(trace: Trace, model: ServeModel, hardware: Hardware, config: ServeConfig = ServeConfig()) -> ServeResult:
    """Run the timed tiered simulation; see the module docstring for what is modelled."""
    config = config.checked()
    return _Sim(trace, model, instance_hardware(hardware, config.tensor_parallel), config).run()

