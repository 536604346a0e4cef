"""Compiled kernels for the scheduler's sequential loops, with a pure-Python fallback of the same source.

The slot-by-slot simulation and the extent granting of :mod:`core.schedule` are inherently sequential (each
transfer waits for the one before it on its link, each slot for the frees the capacity count assumed), so
numpy cannot vectorise them. Each kernel here is written once, in the subset of Python that numba compiles:
flat arrays and integer codes in, flat arrays out, no objects. The same function runs

- compiled by numba (``@njit(cache=True)``, compiled on first use and cached on disk next to this file), or
- as plain Python over lists (``ndarray.tolist()``: element access on lists is several times faster than on
  arrays in CPython), when numba is not importable, when ``TIERPLAN_NO_NUMBA=1``, or for small problems.

Same source, IEEE double arithmetic in both (numba's default: no fastmath), so the two give identical plans
(tests/test_kernels.py checks it). numba is imported lazily, on the first call that wants it: importing it
costs ~0.5 s (1.5 s on a cold disk cache) and compiling a kernel from scratch a few seconds, which a
426-op sample plan must not pay; below :data:`NUMBA_MIN_OPS` ops the Python path is the faster one.
"""

from __future__ import annotations

import contextlib
import heapq
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["NUMBA_MIN_OPS", "numba_enabled", "use_compiled", "warming", "simulate", "grant_tails", "grant_heads", "fenwick_add",
           "fenwick_total", "kernel"]

#: Problems smaller than this (ops) run the Python path while numba is not loaded yet: its import plus loading
#: the cached kernels (~0.5 s CPU) costs about what the compiled kernels save on a 10⁴-op first plan
#: (measured: 1.78 s Python, 1.82 s compiled including the load). Once loaded, every size runs compiled.
NUMBA_MIN_OPS = 10_000

#: a kernel's array argument: a numpy array when compiled, the same values as a list on the Python path
Arr = Any

_COMPILED: dict[str, Any] = {}
_AVAILABLE: bool | None = None
#: numba is loaded in this process (a kernel ran compiled, or :func:`core.planner.warm_up` finished): every size runs compiled
_WARM = False
#: set in a thread that is loading the kernels on purpose (:func:`warming`): that thread runs compiled, the
#: others keep the Python path until every kernel is loaded (a half-warm process would stall a landing plan
#: on a compile)
_LOCAL = threading.local()


def numba_enabled() -> bool:
    """Whether numba may be used at all (installed and not switched off with ``TIERPLAN_NO_NUMBA=1``); looks
    for the package without importing it (the import costs ~0.3 s, paid only when a kernel compiles)."""
    global _AVAILABLE
    if os.environ.get("TIERPLAN_NO_NUMBA", "") not in ("", "0"):
        return False
    if _AVAILABLE is None:
        _AVAILABLE = importlib.util.find_spec("numba") is not None
    return _AVAILABLE


def use_compiled(n_ops: int) -> bool:
    """Whether a problem of ``n_ops`` ops runs the compiled kernels: when numba is already loaded (a big
    problem or :func:`warm_up` paid for it), or when it is big enough to pay for loading it
    (``TIERPLAN_NUMBA_MIN_OPS`` overrides :data:`NUMBA_MIN_OPS`, e.g. 0 to compile everything)."""
    if (_WARM or getattr(_LOCAL, "warming", False)) and "TIERPLAN_NUMBA_MIN_OPS" not in os.environ:
        return numba_enabled()
    return n_ops >= int(os.environ.get("TIERPLAN_NUMBA_MIN_OPS", NUMBA_MIN_OPS)) and numba_enabled()


@contextlib.contextmanager
def warming() -> Iterator[None]:
    """In this thread, run every kernel compiled (loading or compiling it) without switching the process to
    the compiled path; on a clean exit the process switches (every kernel the block ran is loaded by then)."""
    global _WARM
    outer = not getattr(_LOCAL, "warming", False)
    _LOCAL.warming = True
    try:
        yield
    finally:
        if outer:
            _LOCAL.warming = False
    if outer:
        _WARM = True


def _run(fn: Callable[..., Any], compiled: bool, args: tuple[Any, ...], arrays: tuple[int, ...] = ()) -> Any:
    """Call kernel ``fn`` compiled or as Python over lists (but the arguments at positions ``arrays``, which
    it slices with numpy); arrays it wrote are copied back in Python mode."""
    if compiled:
        return kernel(fn)(*args)
    lists = [a.tolist() if isinstance(a, np.ndarray) and k not in arrays else a for k, a in enumerate(args)]
    out = fn(*lists)
    for a, lst in zip(args, lists):
        if isinstance(a, np.ndarray) and a is not lst and a.flags.writeable:
            a[:] = lst
    return out


# ---------------------------------------------------------------------------------------------- events
#: event codes of the simulation's output columns
EV_COMPUTE, EV_TRANSFER, EV_FREE = 0, 1, 2


def simulate(compiled: bool, *args: Any) -> tuple[int, float]:
    """:func:`_simulate` (see :meth:`core.schedule._Builder.simulate` for the arguments)."""
    out: tuple[int, float] = _run(_simulate, compiled, args)
    return out


def _simulate(n: int, C: int, n_tiers: int, track_reads: bool, durations: Arr, op_tier: Arr, host_dur: Arr,
              in_ptr: Arr, in_t: Arr, out_ptr: Arr, out_t: Arr, mut_ptr: Arr, mut_t: Arr, rc_ptr: Arr, rc_q: Arr,
              fe_ptr: Arr, fe_t: Arr, fe_tier: Arr, hf_ptr: Arr, hf_t: Arr, rf_ptr: Arr, rf_t: Arr, rt_ptr: Arr,
              rt_link: Arr, l_src: Arr, l_dst: Arr, l_lat: Arr, l_bw: Arr, t_bytes: Arr, iss_ptr: Arr, iss_m: Arr,
              m_t: Arr, m_nbytes: Arr, m_head: Arr, m_rptr: Arr, m_rlink: Arr, m_stage: Arr, m_tail: Arr, m_src: Arr,
              m_free_source: Arr, m_stale: Arr, c_free: Arr, ready: Arr, gone: Arr, last_read: Arr, link_free: Arr,
              enforce: Arr, host_free: Arr, slot_begin_s: Arr, ev_kind: Arr, ev_x: Arr, ev_a: Arr, ev_b: Arr,
              ev_t0: Arr, ev_t1: Arr) -> tuple[int, float]:
    """The slot-by-slot simulation: events into the ``ev_*`` columns; returns (event count, step end).

    Flat layouts: per-(tensor, tier) state at ``tensor * n_tiers + tier``; ``*_ptr`` are CSR offsets (per op,
    per move, per (src, dst) route ``src * n_tiers + dst``). ``ready`` holds NaN where no copy exists,
    ``last_read`` -inf where no compute-tier op read the tensor yet. Event columns: compute (x op, a tier,
    b 1 for a re-run), transfer (x tensor, a src, b dst), free (x tensor, a tier, time in ``ev_t0``).
    """
    k = 0
    step_end = 0.0
    compute_free = 0.0
    end_prev = 0.0
    slot_begin = 0.0
    for i in range(n + 1):
        # batch 0: copy-outs issued for slot i start as soon as op i-1 is done (the slot then waits for the
        # frees the capacity count assumed); batch 1: copy-ins issued for slot i start when it begins
        for batch in range(2):
            if batch == 0:
                if i == 0:
                    continue
                base = end_prev
            else:
                if i == 0:
                    base = 0.0  # everything issued before the first op
                else:
                    slot_begin = compute_free
                    if i < n and enforce[i] > slot_begin:
                        slot_begin = enforce[i]
                    slot_begin_s[i] = slot_begin
                    base = slot_begin
            for j in range(iss_ptr[i], iss_ptr[i + 1]):
                m = iss_m[j]
                if batch == 0 and m_head[m]:
                    continue
                if batch == 1 and i > 0 and not m_head[m]:
                    continue
                tid = m_t[m]
                r0 = m_rptr[m]
                r1 = m_rptr[m + 1]
                t = base
                v = ready[tid * n_tiers + l_src[m_rlink[r0]]]
                if v > t:
                    t = v
                if m_head[m]:
                    v = gone[tid * n_tiers + C]
                    if v > t:
                        t = v
                for r in range(r0, r1):
                    lk = m_rlink[r]
                    start = t
                    if link_free[lk] > start:
                        start = link_free[lk]
                    if r == r1 - 1 and m_stale[m]:
                        ev_kind[k] = 2
                        ev_x[k] = tid
                        ev_a[k] = l_dst[lk]
                        ev_t0[k] = start
                        k += 1
                    end = start + (l_lat[lk] + m_nbytes[m] / l_bw[lk])
                    link_free[lk] = end
                    ev_kind[k] = 1
                    ev_x[k] = tid
                    ev_a[k] = l_src[lk]
                    ev_b[k] = l_dst[lk]
                    ev_t0[k] = start
                    ev_t1[k] = end
                    k += 1
                    if end > step_end:
                        step_end = end
                    ready[tid * n_tiers + l_dst[lk]] = end
                    if r == r0:
                        if m_tail[m] >= 0 or m_free_source[m]:
                            ev_kind[k] = 2
                            ev_x[k] = tid
                            ev_a[k] = l_src[lk]
                            ev_t0[k] = end
                            k += 1
                            gone[tid * n_tiers + l_src[lk]] = end
                            if m_tail[m] >= 0:
                                s = c_free[m_tail[m]]
                                if s < n and end > enforce[s]:
                                    enforce[s] = end
                            if m_free_source[m] and m_src[m] >= 0:
                                s = c_free[m_src[m]]
                                if s < n and end > enforce[s]:
                                    enforce[s] = end
                    else:
                        ev_kind[k] = 2
                        ev_x[k] = tid
                        ev_a[k] = l_src[lk]
                        ev_t0[k] = end
                        k += 1
                        gone[tid * n_tiers + l_src[lk]] = end
                        s = c_free[m_stage[r]]
                        if s < n and end > enforce[s]:
                            enforce[s] = end
                    t = end
            if batch == 1 and i == 0 and n > 0:
                slot_begin = compute_free
                if enforce[0] > slot_begin:
                    slot_begin = enforce[0]
                slot_begin_s[0] = slot_begin
        if i == n:
            break
        # re-runs of dropped producers just before op i, in op order
        for j in range(rc_ptr[i], rc_ptr[i + 1]):
            q = rc_q[j]
            start = slot_begin
            if compute_free > start:
                start = compute_free
            for e in range(in_ptr[q], in_ptr[q + 1]):
                v = ready[in_t[e] * n_tiers + C]
                if v > start:
                    start = v
            end = start + durations[q]
            ev_kind[k] = 0
            ev_x[k] = q
            ev_a[k] = C
            ev_b[k] = 1
            ev_t0[k] = start
            ev_t1[k] = end
            k += 1
            if end > step_end:
                step_end = end
            for e in range(out_ptr[q], out_ptr[q + 1]):
                ready[out_t[e] * n_tiers + C] = end
            if track_reads:  # a re-run reads its inputs again: a host update must wait for it
                for e in range(in_ptr[q], in_ptr[q + 1]):
                    last_read[in_t[e]] = end
                for e in range(out_ptr[q], out_ptr[q + 1]):
                    last_read[out_t[e]] = end
            compute_free = end
        H = op_tier[i]
        if H >= 0:
            # on the host tier's own stream, after every earlier op that touched its inputs; the compute
            # stream goes on meanwhile
            start = host_free[H]
            for e in range(in_ptr[i], in_ptr[i + 1]):
                v = ready[in_t[e] * n_tiers + H]
                if v > start:
                    start = v
            for e in range(in_ptr[i], in_ptr[i + 1]):
                v = last_read[in_t[e]]
                if v > start:
                    start = v
            for e in range(mut_ptr[i], mut_ptr[i + 1]):
                if last_read[mut_t[e]] >= start:
                    # a read that ends exactly now may have taken no time at all; one ulp later the update is
                    # unambiguously after it on the timeline (two streams share no event order)
                    start = float(np.nextafter(start, np.inf))
                    break
            hend = start + host_dur[i]
            ev_kind[k] = 0
            ev_x[k] = i
            ev_a[k] = H
            ev_b[k] = 0
            ev_t0[k] = start
            ev_t1[k] = hend
            k += 1
            if hend > step_end:
                step_end = hend
            host_free[H] = hend
            for e in range(mut_ptr[i], mut_ptr[i + 1]):
                ready[mut_t[e] * n_tiers + H] = hend
            for e in range(hf_ptr[i], hf_ptr[i + 1]):
                x = hf_t[e]
                ev_kind[k] = 2
                ev_x[k] = x
                ev_a[k] = H
                ev_t0[k] = hend
                k += 1
                gone[x * n_tiers + H] = hend
            # weights the update made stale in the compute tier come back (the stale copy goes as the fresh
            # one arrives)
            route = H * n_tiers + C
            for e in range(rf_ptr[i], rf_ptr[i + 1]):
                x = rf_t[e]
                t = hend
                r0 = rt_ptr[route]
                r1 = rt_ptr[route + 1]
                for r in range(r0, r1):
                    lk = rt_link[r]
                    begin = t
                    if link_free[lk] > begin:
                        begin = link_free[lk]
                    if r == r1 - 1:
                        ev_kind[k] = 2
                        ev_x[k] = x
                        ev_a[k] = C
                        ev_t0[k] = begin
                        k += 1
                    t = begin + (l_lat[lk] + t_bytes[x] / l_bw[lk])
                    link_free[lk] = t
                    ev_kind[k] = 1
                    ev_x[k] = x
                    ev_a[k] = l_src[lk]
                    ev_b[k] = l_dst[lk]
                    ev_t0[k] = begin
                    ev_t1[k] = t
                    k += 1
                    if t > step_end:
                        step_end = t
                    if r > r0:
                        ev_kind[k] = 2
                        ev_x[k] = x
                        ev_a[k] = l_src[lk]
                        ev_t0[k] = t
                        k += 1
                    ready[x * n_tiers + l_dst[lk]] = t
            end = compute_free
        else:
            start = slot_begin
            if compute_free > start:
                start = compute_free
            for e in range(in_ptr[i], in_ptr[i + 1]):
                v = ready[in_t[e] * n_tiers + C]
                if v > start:
                    start = v
            end = start + durations[i]
            ev_kind[k] = 0
            ev_x[k] = i
            ev_a[k] = C
            ev_b[k] = 0
            ev_t0[k] = start
            ev_t1[k] = end
            k += 1
            if end > step_end:
                step_end = end
            for e in range(out_ptr[i], out_ptr[i + 1]):
                ready[out_t[e] * n_tiers + C] = end
            if track_reads:
                for e in range(in_ptr[i], in_ptr[i + 1]):
                    last_read[in_t[e]] = end
                for e in range(out_ptr[i], out_ptr[i + 1]):
                    last_read[out_t[e]] = end
            compute_free = end
        for e in range(fe_ptr[i], fe_ptr[i + 1]):
            ev_kind[k] = 2
            ev_x[k] = fe_t[e]
            ev_a[k] = fe_tier[e]
            ev_t0[k] = end
            k += 1
            if end > step_end:
                step_end = end
            gone[fe_t[e] * n_tiers + fe_tier[e]] = end
        end_prev = end
    return k, step_end


# ---------------------------------------------------------------------------------------------- max tree
# Bytes per slot with "add to a slot range" and "first / last slot in a range above a threshold", each in
# O(log² n) instead of a scan of the range: extents run to thousands of slots on 10⁵-op graphs, so the
# grants below were quadratic in practice. Bottom-up segment tree without push-down (t[p] is the max of
# p's subtree plus the adds pending at p, d[p]); the grants use it on the compiled path only, the Python
# path scans (small graphs, short extents) and the identity test compares the two.
_NEG = -(2**62)


def _tree(values: Arr, size: int) -> tuple[Arr, Arr]:
    t = np.full(2 * size, _NEG, dtype=np.int64)
    d = np.zeros(2 * size, dtype=np.int64)
    for i in range(len(values)):
        t[size + i] = values[i]
    for p in range(size - 1, 0, -1):
        t[p] = max(t[2 * p], t[2 * p + 1])
    return t, d


def _tree_add(t: Arr, d: Arr, size: int, lo: int, hi: int, x: int) -> None:
    """Add ``x`` to slots ``lo..hi-1``."""
    if hi <= lo:
        return
    l0 = lo + size
    r0 = hi + size - 1
    left = lo + size
    right = hi + size
    while left < right:
        if left & 1:
            t[left] += x
            if left < size:
                d[left] += x
            left += 1
        if right & 1:
            right -= 1
            t[right] += x
            if right < size:
                d[right] += x
        left >>= 1
        right >>= 1
    for p0 in (l0, r0):
        p = p0 >> 1
        while p > 0:
            t[p] = max(t[2 * p], t[2 * p + 1]) + d[p]
            p >>= 1


def _pending(d: Arr, p: int) -> int:
    """Adds pending above node ``p`` (at its strict ancestors)."""
    s = 0
    p >>= 1
    while p > 0:
        s += d[p]
        p >>= 1
    return s


def _tree_find(t: Arr, d: Arr, size: int, lo: int, hi: int, thr: int, last: bool) -> int:
    """The first (``last``: the last) slot in ``lo..hi-1`` whose value exceeds ``thr``; -1 if none."""
    if hi <= lo:
        return -1
    nodes = np.zeros(128, dtype=np.int64)
    right_nodes = np.zeros(64, dtype=np.int64)
    k = 0
    kr = 0
    left = lo + size
    right = hi + size
    while left < right:
        if left & 1:
            nodes[k] = left
            k += 1
            left += 1
        if right & 1:
            right -= 1
            right_nodes[kr] = right
            kr += 1
        left >>= 1
        right >>= 1
    for j in range(kr):  # the right side's nodes were met right to left
        nodes[k] = right_nodes[kr - 1 - j]
        k += 1
    for jj in range(k):
        p = nodes[k - 1 - jj] if last else nodes[jj]
        above = _pending(d, p)
        if t[p] + above <= thr:
            continue
        while p < size:
            above += d[p]
            first, second = (2 * p + 1, 2 * p) if last else (2 * p, 2 * p + 1)
            p = first if t[first] + above > thr else second
        return p - size
    return -1


def _tree_values(t: Arr, d: Arr, size: int, out: Arr) -> None:
    """Every slot's value into ``out`` (pushing the pending adds down)."""
    for p in range(1, size):
        if d[p] != 0:
            for c in (2 * p, 2 * p + 1):
                t[c] += d[p]
                if c < size:
                    d[c] += d[p]
            d[p] = 0
    for i in range(len(out)):
        out[i] = t[size + i]


# ---------------------------------------------------------------------------------------------- extents


def grant_tails(compiled: bool, *args: Any) -> None:
    """:func:`_grant_tails` (see :meth:`core.schedule._Builder._grant_tails`)."""
    _run(_grant_tails, compiled, (compiled, *args), arrays=(4,))  # hbm


def _grant_tails(use_tree: bool, n: int, cap: int, est: Arr, hbm: Arr, order: Arr, issue: Arr, nbytes: Arr, max_slot: Arr,
                 first_link: Arr, l_lat: Arr, l_bw: Arr, link_free: Arr, tail_copy: Arr, c_free: Arr) -> None:
    """Grow each write-back's compute-tier extent toward the slot its copy-out is expected to end, in issue
    order, while ``hbm`` (bytes per slot) stays within ``cap``."""
    size = 1
    while use_tree and size < n:
        size *= 2
    t, d = _tree(hbm if use_tree else hbm[:0], size)
    for j in range(len(order)):
        m = order[j]
        lk = first_link[m]
        s0 = issue[m]
        if s0 > n:
            s0 = n
        start = est[s0]
        if link_free[lk] > start:
            start = link_free[lk]
        link_free[lk] = start + (l_lat[lk] + nbytes[m] / l_bw[lk])
        # first slot whose start is at or after the copy-out's end (searchsorted left over est[:n])
        x = link_free[lk] - 1e-15
        lo_b = 0
        hi_b = n
        while lo_b < hi_b:
            mid = (lo_b + hi_b) // 2
            if est[mid] < x:
                lo_b = mid + 1
            else:
                hi_b = mid
        want = lo_b + 1
        if max_slot[m] < want:
            want = max_slot[m]
        if n < want:
            want = n
        lo = issue[m]
        if want > lo:
            if use_tree:
                hi = _tree_find(t, d, size, lo, want, cap - nbytes[m], False)
                if hi < 0:
                    hi = want
                _tree_add(t, d, size, lo, hi, nbytes[m])
            else:  # numpy over the extent (``hbm`` stays an array on the Python path)
                bad_at = np.flatnonzero(hbm[lo:want] + nbytes[m] > cap)
                hi = lo + (bad_at[0] if len(bad_at) else want - lo)
                if hi > lo:
                    hbm[lo:hi] += nbytes[m]
            if hi > lo:
                c_free[tail_copy[m]] = hi
    if use_tree:
        _tree_values(t, d, size, hbm)


def grant_heads(compiled: bool, *args: Any) -> None:
    """:func:`_grant_heads` (see :meth:`core.schedule._Builder._grant_heads`)."""
    _run(_grant_heads, compiled, (compiled, *args), arrays=(5,))  # occ


def _grant_heads(use_tree: bool, n: int, C: int, cap_flat: Arr, est: Arr, occ: Arr, order: Arr, deadline: Arr, min_slot: Arr,
                 prefetch: Arr, nbytes: Arr, slack: float, m_rptr: Arr, m_rlink: Arr, m_stage: Arr, l_dst: Arr,
                 l_lat: Arr, l_bw: Arr, link_start: Arr, issue: Arr, head_copy: Arr, c_alloc: Arr, c_tier: Arr) -> None:
    """Place each copy-in's compute-tier extent: as late as possible on each link (latest deadline first),
    then capacity to the earliest need first. ``occ`` is bytes per (tier, slot) at ``tier * n + slot``;
    ``prefetch`` a policy's issue slot per move (-1: none); ``link_start`` starts at +inf."""
    size = 1
    while use_tree and size < len(occ):
        size *= 2
    t, dd = _tree(occ if use_tree else occ[:0], size)
    wanted = np.zeros(len(order), dtype=np.int64)
    for jj in range(len(order)):
        j = len(order) - 1 - jj
        m = order[j]
        end = est[deadline[m]]
        total = 0.0
        for rr in range(m_rptr[m + 1] - m_rptr[m]):
            r = m_rptr[m + 1] - 1 - rr
            lk = m_rlink[r]
            dur = l_lat[lk] + nbytes[m] / l_bw[lk]
            if link_start[lk] < end:
                end = link_start[lk]
            end = end - dur
            link_start[lk] = end
            total += dur
        # last slot whose start is at or before that (searchsorted right over est[:n], minus one)
        x = end - slack * total + 1e-15
        lo_b = 0
        hi_b = n
        while lo_b < hi_b:
            mid = (lo_b + hi_b) // 2
            if est[mid] <= x:
                lo_b = mid + 1
            else:
                hi_b = mid
        w = lo_b - 1
        if w < 0:
            w = 0
        wanted[j] = w
    for j in range(len(order)):
        m = order[j]
        d = deadline[m]
        lo = prefetch[m] if prefetch[m] >= 0 else wanted[j]
        if min_slot[m] > lo:
            lo = min_slot[m]
        r0 = m_rptr[m]
        r1 = m_rptr[m + 1]
        if lo < d and use_tree:
            bad = _tree_find(t, dd, size, C * n + lo, C * n + d, cap_flat[C] - nbytes[m], True)
            if bad >= 0:
                bad -= C * n
            for r in range(r0, r1 - 1):
                tier = l_dst[m_rlink[r]]
                b = _tree_find(t, dd, size, tier * n + lo, tier * n + d, cap_flat[tier] - nbytes[m], True)
                if b >= 0 and b - tier * n > bad:
                    bad = b - tier * n
            if bad >= 0:
                lo = bad + 1
            if lo < d:
                _tree_add(t, dd, size, C * n + lo, C * n + d, nbytes[m])
                for r in range(r0, r1 - 1):
                    tier = l_dst[m_rlink[r]]
                    _tree_add(t, dd, size, tier * n + lo, tier * n + d, nbytes[m])
        elif lo < d:
            # the last slot in lo..d-1 where this copy (or a staging copy of it) would not fit (numpy over
            # the extent: ``occ`` stays an array on the Python path)
            need = occ[C * n + lo:C * n + d] + nbytes[m] > cap_flat[C]
            for r in range(r0, r1 - 1):
                tier = l_dst[m_rlink[r]]
                need |= occ[tier * n + lo:tier * n + d] + nbytes[m] > cap_flat[tier]
            bad_at = np.flatnonzero(need)
            if len(bad_at):
                lo += bad_at[-1] + 1
            if lo < d:
                occ[C * n + lo:C * n + d] += nbytes[m]
                for r in range(r0, r1 - 1):
                    tier = l_dst[m_rlink[r]]
                    occ[tier * n + lo:tier * n + d] += nbytes[m]
        issue[m] = lo
        c_alloc[head_copy[m]] = lo
        for r in range(r0 + 1, r1):
            c_alloc[m_stage[r]] = lo if lo < d else d
    if use_tree:
        _tree_values(t, dd, size, occ)


# ---------------------------------------------------------------------------------------------- link load
# Tierplan's committed transfer seconds per op slot on one link: a Fenwick tree with range add / range sum.
# The sweep calls these once per candidate it scores, so on the compiled path they are called directly
# (:func:`kernel`), without :func:`_run`'s conversions.


def fenwick_add(b1: Arr, b2: Arr, n: int, lo: int, hi: int, per_slot: float) -> None:
    """Add ``per_slot`` to every slot ``lo..hi-1``."""
    if hi <= lo:
        return
    i = lo + 1
    while i <= n + 1:
        b1[i] += per_slot
        i += i & -i
    i = hi + 1
    while i <= n + 1:
        b1[i] += -per_slot
        i += i & -i
    v = per_slot * lo
    i = lo + 1
    while i <= n + 1:
        b2[i] += v
        i += i & -i
    v = -per_slot * hi
    i = hi + 1
    while i <= n + 1:
        b2[i] += v
        i += i & -i


def fenwick_total(b1: Arr, b2: Arr, lo: int, hi: int) -> float:
    """Sum of the per-slot load over slots ``lo..hi-1`` (both prefix sums in one pass each)."""
    if hi <= lo:
        return 0.0
    s1 = 0.0
    s2 = 0.0
    i = hi
    while i > 0:
        s1 += b1[i]
        s2 += b2[i]
        i &= i - 1
    high = s1 * hi - s2
    s1 = 0.0
    s2 = 0.0
    i = lo
    while i > 0:
        s1 += b1[i]
        s2 += b2[i]
        i &= i - 1
    return high - (s1 * lo - s2)


def kernel(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled (numba's dispatcher), for callers that pass arrays and call it in a loop."""
    global _WARM
    if not getattr(_LOCAL, "warming", False):
        _WARM = True
    jit = _COMPILED.get(fn.__name__)
    if jit is None:
        import numba
        from numba.extending import register_jitable

        if not _COMPILED:  # the helpers the kernels call, compiled into them
            for helper in (_tree, _tree_add, _pending, _tree_find, _tree_values):
                register_jitable(helper)
        jit = _COMPILED[fn.__name__] = numba.njit(cache=True, nogil=True)(fn)
    return jit


# ---------------------------------------------------------------------------------------------- Tierplan's sweep
# The greedy capacity sweep of :mod:`core.policies.tierplan` (its ``_Tierplan.run``), over flat per-span
# arrays: walk the ops, push the idle spans that start freeing memory there onto a heap, and while an op is
# over capacity pop (lazily re-scored, see :func:`_sweep_window`) and apply the best one. Everything is
# sequential (each choice changes the link load and the lower tiers' occupancy the next score reads), so it
# is one kernel rather than numpy. The heap is :mod:`heapq` over tuples in both modes (numba supports it on
# lists), so ties break exactly as they did in the Python sweep.

#: span kinds (:class:`core.liveness.Span` ``kind``)
SP_INNER, SP_INITIAL, SP_WRAP, SP_UNUSED = 0, 1, 2, 3
#: heap entry kinds, numbered in the order of their former names ("forced" < "offload" < "recompute"), so
#: heap ties break as they did
ENTRY_FORCED, ENTRY_OFFLOAD, ENTRY_RECOMPUTE = 0, 1, 2
#: a span's action (0: kept)
ACT_KEEP, ACT_OFFLOAD, ACT_RECOMPUTE = 0, 1, 2
#: how many live candidates are re-scored per pick (bounds the lazy-greedy re-evaluation)
SWEEP_LOOKAHEAD = 8
_SWEEP_HELPERS_READY = False


def _sweep_key(order: int, cost: float, nbytes: int, kind: int, start: int, end_op: int, hi: int, s: int, n: int,
               T: Arr, weight: float, idle: float) -> tuple[float, float]:
    """Heap key of a candidate freeing memory from op ``s`` to ``hi`` (smaller first). ``order``: 0 cost per
    byte-second freed, 1 farthest relief (Belady), 2 heaviest span, 3 longest idle (each of the last three
    puts hidden moves before exposed ones)."""
    end = T[hi] if hi <= n else T[n]
    if kind == SP_WRAP and s < end_op:
        end = end + (T[n] - T[start + 1])
    benefit = nbytes * max(end - T[s], 1e-12)
    exposed = 1.0 if cost > 0 else 0.0
    if order == 2:
        return exposed, weight
    if order == 1:
        return exposed, -end
    if order == 3:
        return exposed, -idle
    return cost / benefit, -benefit


def _sweep_fits(t: int, sid: int, nbytes: int, n: int, lower_peak: Arr, lower_cap: Arr, lower_occ: Arr, lw_lo: Arr,
                lw_hi: Arr) -> bool:
    """Whether lower tier ``t`` holds the span's copy over its window (``lower_occ`` is a numpy array in both
    modes: one row of ``n + 1`` slots per tier)."""
    if lower_peak[t] + nbytes <= lower_cap[t]:
        return True  # fits even at the busiest slot: no need to look at the window
    lo = lw_lo[sid]
    hi = lw_hi[sid]
    top = 0
    if hi > lo:
        m = lower_occ[t * (n + 1) + lo:t * (n + 1) + hi].max()
        if m > top:
            top = m
    return top + nbytes <= lower_cap[t]


def _sweep_congestion(lo: int, hi: int, T: Arr, fw1: Arr, fw2: Arr, out_link: int, in_link: int, wb: float,
                      pf: float) -> float:
    """Extra exposure when the links are already busy over slots ``lo..hi-1`` (bandwidth loss)."""
    if hi <= lo:
        return 0.0
    window = max(T[hi] - T[lo], 1e-12)
    extra = 0.0
    if wb > 0:
        used = fenwick_total(fw1[out_link], fw2[out_link], lo, hi)
        extra += max(0.0, used + wb - window) - max(0.0, used - window)
    if pf > 0:
        used = fenwick_total(fw1[in_link], fw2[in_link], lo, hi)
        extra += max(0.0, used + pf - window) - max(0.0, used - window)
    return extra


def _sweep_cost(sid: int, kind: int, n: int, n_sp: int, n_tiers: int, T: Arr, sp_bytes: Arr, sp_kind: Arr,
                sp_only: Arr, rc_dur: Arr, lw_lo: Arr, lw_hi: Arr, lk_lo: Arr, lk_hi: Arr, rg_exp: Arr, rg_wb: Arr,
                rg_pf: Arr, lower_peak: Arr, lower_cap: Arr, lower_occ: Arr, fw1: Arr, fw2: Arr, hop_out: Arr,
                hop_in: Arr) -> tuple[float, int]:
    """Exposed seconds of the best way to free the span and the lower tier it uses (-1: the compute tier,
    for a recompute; inf when no tier has room): the least exposure, and for spans of tensors no op reads
    the coldest tier among equals (tiers are fastest first)."""
    if kind == ENTRY_RECOMPUTE:
        return rc_dur[sid], -1
    found = False
    best = 0.0
    best_t = -1
    t0 = 0
    t1 = n_tiers
    if sp_only[sid] >= 0:
        t0 = sp_only[sid]
        t1 = t0 + 1
    roomy = sp_kind[sid] == SP_UNUSED
    for t in range(t0, t1):
        if not _sweep_fits(t, sid, sp_bytes[sid], n, lower_peak, lower_cap, lower_occ, lw_lo, lw_hi):
            continue
        k = t * n_sp + sid
        wb = rg_wb[k]
        pf = rg_pf[k]
        exposed = wb + pf if kind == ENTRY_FORCED else rg_exp[k]
        exposed += _sweep_congestion(lk_lo[sid], lk_hi[sid], T, fw1, fw2, hop_out[t], hop_in[t], wb, pf)
        if not found or exposed < best - 1e-12 or (exposed <= best + 1e-12 and roomy):
            best = exposed
            best_t = t
            found = True
        if best <= 0.0 and not roomy:
            break  # nothing beats a fully hidden move on the fastest tier with room
    if not found:
        return np.inf, -1
    return best, best_t


def _sweep_pin(sid: int, act: Arr, pinned: Arr, pin_bad: Arr, pin_ptr: Arr, pin_sid: Arr) -> bool:
    """Pin the spans a recompute of ``sid`` needs kept (its producer's inputs at the span end); False when
    it cannot (one is statically unsuitable, ``pin_bad``, or already chosen to move)."""
    if pin_bad[sid]:
        return False
    for j in range(pin_ptr[sid], pin_ptr[sid + 1]):
        if act[pin_sid[j]] != ACT_KEEP:
            return False
    for j in range(pin_ptr[sid], pin_ptr[sid + 1]):
        pinned[pin_sid[j]] = True
    return True


def _sweep_window(heap: Any, s: int, order: int, n: int, n_sp: int, n_tiers: int, T: Arr, sp_bytes: Arr,
                  sp_kind: Arr, sp_start: Arr, sp_end: Arr, sp_weight: Arr, sp_idle: Arr, sp_only: Arr, rc_dur: Arr,
                  lw_lo: Arr, lw_hi: Arr, lk_lo: Arr, lk_hi: Arr, rg_exp: Arr, rg_wb: Arr, rg_pf: Arr,
                  lower_peak: Arr, lower_cap: Arr, lower_occ: Arr, fw1: Arr, fw2: Arr, hop_out: Arr, hop_in: Arr,
                  act: Arr, pinned: Arr, pin_bad: Arr, pin_ptr: Arr, pin_sid: Arr) -> tuple[int, int, int]:
    """One lazy-greedy window at op ``s``: up to :data:`SWEEP_LOOKAHEAD` live entries re-scored with the
    current congestion, the best taken (the rest go back with their fresh keys). Returns (span, entry kind,
    tier), span -1 when none of them could be taken."""
    seen = [(0.0, 0.0, 0, 0, 0, 0, 0)]
    seen.pop()
    twins = [(0.0, 0.0, 0, 0, 0, 0)]  # a second entry of a span already seen (another region): kept
    twins.pop()
    while len(heap) > 0 and len(seen) < SWEEP_LOOKAHEAD:
        entry = heapq.heappop(heap)
        sid = entry[2]
        lo = entry[3]
        hi = entry[4]
        kind = entry[5]
        if act[sid] != ACT_KEEP or pinned[sid] or not lo <= s < hi:
            continue
        twin = False
        for item in seen:
            if item[2] == sid:
                twin = True
                break
        if twin:
            twins.append(entry)
            continue
        cost, tier = _sweep_cost(sid, kind, n, n_sp, n_tiers, T, sp_bytes, sp_kind, sp_only, rc_dur, lw_lo, lw_hi,
                                 lk_lo, lk_hi, rg_exp, rg_wb, rg_pf, lower_peak, lower_cap, lower_occ, fw1, fw2,
                                 hop_out, hop_in)
        if cost == np.inf:
            continue
        k0, k1 = _sweep_key(order, cost, sp_bytes[sid], sp_kind[sid], sp_start[sid], sp_end[sid], hi, s, n, T,
                            sp_weight[sid], sp_idle[sid])
        seen.append((k0, k1, sid, lo, hi, kind, tier))
        if len(heap) == 0:
            break
        # stored keys are lower bounds (links only fill up, relief only shrinks): once the best re-scored
        # key is no worse than the best stored one, nothing left in the heap can beat it
        m0 = seen[0][0]
        m1 = seen[0][1]
        for item in seen:
            if item[0] < m0 or (item[0] == m0 and item[1] < m1):
                m0 = item[0]
                m1 = item[1]
        h0 = heap[0][0]
        h1 = heap[0][1]
        if m0 < h0 or (m0 == h0 and m1 <= h1):
            break
    for entry in twins:
        heapq.heappush(heap, entry)
    for i in range(1, len(seen)):  # stable insertion sort by key
        item = seen[i]
        j = i - 1
        while j >= 0 and (seen[j][0] > item[0] or (seen[j][0] == item[0] and seen[j][1] > item[1])):
            seen[j + 1] = seen[j]
            j -= 1
        seen[j + 1] = item
    for k in range(len(seen)):
        item = seen[k]
        if item[5] == ENTRY_RECOMPUTE and not _sweep_pin(item[2], act, pinned, pin_bad, pin_ptr, pin_sid):
            continue
        for m in range(k + 1, len(seen)):
            other = seen[m]
            heapq.heappush(heap, (other[0], other[1], other[2], other[3], other[4], other[5]))
        return item[2], item[5], item[6]
    return -1, 0, 0


def _sweep_apply(sid: int, s: int, kind: int, t: int, n: int, n_sp: int, sp_bytes: Arr, sp_kind: Arr,
                 sp_start: Arr, sp_end: Arr, fs_n: Arr, fs_lo: Arr, fs_hi: Arr, rg_n: Arr, rg_lo: Arr, rg_hi: Arr,
                 rg_wb: Arr, rg_pf: Arr, lw_lo: Arr, lw_hi: Arr, lk_lo: Arr, lk_hi: Arr, lower_peak: Arr,
                 lower_occ: Arr, fw1: Arr, fw2: Arr, hop_out: Arr, hop_in: Arr, act: Arr, act_tier: Arr, delta: Arr,
                 ap_first: Arr, ap_lo: Any, ap_hi: Any, ap_next: Any, hd_start: Any, hd_need: Any, hd_bytes: Any,
                 hd_sid: Any, t_wb: Arr, t_pf: Arr, t_at: Arr) -> int:
    """Record the choice, update future occupancy (``delta``), the lower tier and the link load; returns the
    bytes freed at ``s``. Region slots: ``rg_*``/``fs_*`` hold two ranges per span (``2 * sid + k``)."""
    nbytes = sp_bytes[sid]
    lo0 = 0
    hi0 = 0
    lo1 = 0
    hi1 = 0
    count = 0
    wb = 0.0
    pf = 0.0
    if kind == ENTRY_RECOMPUTE:
        act[sid] = ACT_RECOMPUTE
        act_tier[sid] = -1
        lo0 = sp_start[sid] + 1
        hi0 = sp_end[sid]
        count = 1
    else:
        act[sid] = ACT_OFFLOAD
        act_tier[sid] = t
        k = t * n_sp + sid
        count = rg_n[k]
        lo0 = rg_lo[2 * k]
        hi0 = rg_hi[2 * k]
        lo1 = rg_lo[2 * k + 1]
        hi1 = rg_hi[2 * k + 1]
        wb = rg_wb[k]
        pf = rg_pf[k]
        covered = (count >= 1 and lo0 <= s < hi0) or (count >= 2 and lo1 <= s < hi1)
        if kind == ENTRY_FORCED or not covered:  # this tier cannot hide it here: accept the stall
            count = fs_n[sid]
            lo0 = fs_lo[2 * sid]
            hi0 = fs_hi[2 * sid]
            lo1 = fs_lo[2 * sid + 1]
            hi1 = fs_hi[2 * sid + 1]
        a = lw_lo[sid]
        b = lw_hi[sid]
        if b > a:
            base = t * (n + 1)
            lower_occ[base + a:base + b] += nbytes
            m = lower_occ[base + a:base + b].max()
            if m > lower_peak[t]:
                lower_peak[t] = m
        a = lk_lo[sid]
        b = lk_hi[sid]
        if wb > 0 and b > a:
            fenwick_add(fw1[hop_out[t]], fw2[hop_out[t]], n, a, b, wb / (b - a))
        if pf > 0 and b > a:
            fenwick_add(fw1[hop_in[t]], fw2[hop_in[t]], n, a, b, pf / (b - a))
    freed_now = 0
    for r in range(count):
        lo = lo0 if r == 0 else lo1
        hi = hi0 if r == 0 else hi1
        ap_lo.append(lo)
        ap_hi.append(min(hi, n))
        ap_next.append(ap_first[sid])
        ap_first[sid] = len(ap_lo) - 1
        lo = max(lo, s)
        hi = min(hi, n)
        if hi <= lo:
            continue
        if lo == s:  # applies from now on through the caller's running sum
            freed_now += nbytes
        else:
            delta[lo] -= nbytes
        delta[hi] += nbytes
    if kind == ENTRY_OFFLOAD and sp_kind[sid] != SP_UNUSED and count > 0:
        b = sp_end[sid]
        head_end = hi0 if (sp_kind[sid] == SP_WRAP or count == 1) else hi1
        if s < head_end < b:
            hd_start.append(head_end)
            hd_need.append(b)
            hd_bytes.append(nbytes)
            hd_sid.append(sid)
    t_wb[sid] = wb
    t_pf[sid] = pf
    t_at[sid] = float(s)
    return freed_now


def _sweep_squeeze(s: int, n: int, picks: Arr, n_picks: int, sp_bytes: Arr, sp_kind: Arr, fs_n: Arr, fs_lo: Arr,
                   fs_hi: Arr, act: Arr, delta: Arr, ap_first: Arr, ap_lo: Any, ap_hi: Any, ap_next: Any,
                   hd_start: Any, hd_need: Any, hd_bytes: Any, hd_sid: Any) -> int:
    """Last resort at op ``s``: start a chosen copy-in later than hiding would like (the schedule then stalls
    for it), the one needed farthest ahead first; then count a chosen offload whose copy-out could not hide
    as gone from ``s`` on (the scheduler frees it at its minimum extent and makes the op wait), the largest
    first. Returns bytes freed at ``s`` (0: nothing left to squeeze)."""
    best = -1
    for h in range(len(hd_start)):
        if hd_start[h] <= s < hd_need[h] and (best < 0 or hd_need[h] > hd_need[best]):
            best = h
    if best >= 0:
        old = hd_start[best]
        hd_start[best] = s + 1
        j = ap_first[hd_sid[best]]
        while j >= 0:
            if ap_hi[j] == old:
                ap_hi[j] = s + 1
            j = ap_next[j]
        delta[s + 1] += hd_bytes[best]
        return hd_bytes[best]
    best_sid = -1
    best_bytes = 0
    best_end = 0
    for q in range(n_picks):
        sid = picks[q]
        if act[sid] != ACT_OFFLOAD or (sp_kind[sid] != SP_INNER and sp_kind[sid] != SP_WRAP):
            continue
        covered = False
        j = ap_first[sid]
        while j >= 0:
            if ap_lo[j] <= s < ap_hi[j]:
                covered = True
                break
            j = ap_next[j]
        if covered:
            continue
        for r in range(fs_n[sid]):
            lo = fs_lo[2 * sid + r]
            hi = fs_hi[2 * sid + r]
            if lo <= s < hi:
                end = hi
                j = ap_first[sid]
                while j >= 0:
                    if ap_hi[j] > ap_lo[j] and ap_lo[j] > s and ap_lo[j] < end:
                        end = ap_lo[j]
                    j = ap_next[j]
                if best_sid < 0 or sp_bytes[sid] > best_bytes:
                    best_sid = sid
                    best_bytes = sp_bytes[sid]
                    best_end = end
    if best_sid < 0:
        return 0
    ap_lo.append(s)
    ap_hi.append(best_end)
    ap_next.append(ap_first[best_sid])
    ap_first[best_sid] = len(ap_lo) - 1
    delta[best_end] += best_bytes
    return best_bytes


def tierplan_sweep(compiled: bool, *args: Any) -> tuple[int, int, int, int]:
    """:func:`_tierplan_sweep` (see :meth:`core.policies.tierplan._Tierplan.run` for the arguments)."""
    if compiled:
        _sweep_helpers()
    out: tuple[int, int, int, int] = _run(_tierplan_sweep, compiled, args, arrays=_SWEEP_ARRAYS)
    return out


def _tierplan_sweep(order: int, n: int, n_sp: int, n_tiers: int, cap: int, keep: Arr, T: Arr, sp_bytes: Arr,
                    sp_kind: Arr, sp_start: Arr, sp_end: Arr, sp_weight: Arr, sp_idle: Arr, sp_only: Arr,
                    rc_dur: Arr, fs_n: Arr, fs_lo: Arr, fs_hi: Arr, lw_lo: Arr, lw_hi: Arr, lk_lo: Arr, lk_hi: Arr,
                    rg_n: Arr, rg_lo: Arr, rg_hi: Arr, rg_exp: Arr, rg_wb: Arr, rg_pf: Arr, static_cost: Arr,
                    e_ptr: Arr, e_sid: Arr, e_lo: Arr, e_hi: Arr, e_kind: Arr, pin_bad: Arr, pin_ptr: Arr,
                    pin_sid: Arr, lower_cap: Arr, lower_peak: Arr, hop_out: Arr, hop_in: Arr, fw1: Arr, fw2: Arr,
                    delta: Arr, ap_first: Arr, act: Arr, act_tier: Arr, pinned: Arr, picks: Arr, t_wb: Arr,
                    t_pf: Arr, t_at: Arr, lower_occ: Arr, occ: Arr) -> tuple[int, int, int, int]:
    """The sweep, then the reverse delete. Returns (0, picks, 0, 0), or (1, picks, op, bytes) when op ``op``
    cannot be brought under ``cap`` (``bytes`` must stay resident there).

    Per span (index = span id): ``sp_*``; ``fs_*`` its freed slots and ``rg_*`` the slots it frees while its
    copies hide on tier ``t`` (at ``t * n_sp + sid``), each as a count and two compacted ranges
    (``2 * index + k``); ``static_cost`` the entry's exposure on the fastest tier with empty links (a lower
    bound of the re-scored one). Heap entries ``e_*`` in CSR by the op they start freeing at (``e_ptr``).
    ``act``/``act_tier``/``pinned`` come in with the precommitted spans and go out with the choices; ``picks``
    lists the chosen spans in the order chosen, ``t_*`` their copy-out, copy-in seconds and op. ``lower_occ``
    (a row of ``n + 1`` per lower tier) and ``occ`` (``keep``'s values) stay numpy arrays on the Python path.
    """
    heap = [(0.0, 0.0, 0, 0, 0, 0)]
    heap.pop()
    ap_lo = [0]
    ap_lo.pop()
    ap_hi = [0]
    ap_hi.pop()
    ap_next = [0]
    ap_next.pop()
    hd_start = [0]
    hd_start.pop()
    hd_need = [0]
    hd_need.pop()
    hd_bytes = [0]
    hd_bytes.pop()
    hd_sid = [0]
    hd_sid.pop()
    n_picks = 0
    running = 0
    for s in range(n):
        for e in range(e_ptr[s], e_ptr[s + 1]):
            sid = e_sid[e]
            if act[sid] == ACT_KEEP:  # cheap static key; re-scored with congestion when popped
                k0, k1 = _sweep_key(order, static_cost[e], sp_bytes[sid], sp_kind[sid], sp_start[sid], sp_end[sid],
                                    e_hi[e], s, n, T, sp_weight[sid], sp_idle[sid])
                heapq.heappush(heap, (k0, k1, sid, e_lo[e], e_hi[e], e_kind[e]))
        running += delta[s]
        cur = keep[s] + running
        while cur > cap:
            sid, kind, tier = -1, 0, 0
            while len(heap) > 0 and sid < 0:
                sid, kind, tier = _sweep_window(heap, s, order, n, n_sp, n_tiers, T, sp_bytes, sp_kind, sp_start,
                                                sp_end, sp_weight, sp_idle, sp_only, rc_dur, lw_lo, lw_hi, lk_lo,
                                                lk_hi, rg_exp, rg_wb, rg_pf, lower_peak, lower_cap, lower_occ, fw1,
                                                fw2, hop_out, hop_in, act, pinned, pin_bad, pin_ptr, pin_sid)
            if sid < 0:
                squeezed = _sweep_squeeze(s, n, picks, n_picks, sp_bytes, sp_kind, fs_n, fs_lo, fs_hi, act, delta,
                                          ap_first, ap_lo, ap_hi, ap_next, hd_start, hd_need, hd_bytes, hd_sid)
                if squeezed == 0:
                    return 1, n_picks, s, cur
                running -= squeezed
                cur -= squeezed
                continue
            freed = _sweep_apply(sid, s, kind, tier, n, n_sp, sp_bytes, sp_kind, sp_start, sp_end, fs_n, fs_lo, fs_hi,
                                 rg_n, rg_lo, rg_hi, rg_wb, rg_pf, lw_lo, lw_hi, lk_lo, lk_hi, lower_peak, lower_occ,
                                 fw1, fw2, hop_out, hop_in, act, act_tier, delta, ap_first, ap_lo, ap_hi, ap_next,
                                 hd_start, hd_need, hd_bytes, hd_sid, t_wb, t_pf, t_at)
            picks[n_picks] = sid
            n_picks += 1
            running -= freed
            cur -= freed
    # reverse delete: the sweep relieves each op greedily, so later choices can make earlier ones unnecessary;
    # undo the most expensive choices (copy time per byte) whose bytes fit back everywhere they were freed
    for q in range(n_picks):
        sid = picks[q]
        j = ap_first[sid]
        while j >= 0:
            if ap_hi[j] > ap_lo[j]:
                occ[ap_lo[j]:ap_hi[j]] -= sp_bytes[sid]
            j = ap_next[j]
    expense = np.zeros(n_picks)
    for q in range(n_picks):
        sid = picks[q]
        expense[q] = -((t_wb[sid] + t_pf[sid]) / max(sp_bytes[sid], 1))
    for q in np.argsort(expense, kind="mergesort"):  # stable: the first chosen first among equals
        sid = picks[q]
        if act[sid] != ACT_OFFLOAD:
            continue
        fits = True
        j = ap_first[sid]
        while j >= 0:
            if ap_hi[j] > ap_lo[j] and occ[ap_lo[j]:ap_hi[j]].max() + sp_bytes[sid] > cap:
                fits = False
                break
            j = ap_next[j]
        if fits:
            j = ap_first[sid]
            while j >= 0:
                if ap_hi[j] > ap_lo[j]:
                    occ[ap_lo[j]:ap_hi[j]] += sp_bytes[sid]
                j = ap_next[j]
            act[sid] = ACT_KEEP
            act_tier[sid] = -1
    return 0, n_picks, 0, 0


#: argument positions of :func:`_tierplan_sweep` that stay numpy arrays on the Python path (sliced)
_SWEEP_ARRAYS = tuple(k for k, name in enumerate(_tierplan_sweep.__code__.co_varnames[:_tierplan_sweep.__code__.co_argcount])
                      if name in ("lower_occ", "occ"))


def _sweep_helpers() -> None:
    """Make the sweep's helpers callable from the compiled kernel (once, before it compiles)."""
    global _SWEEP_HELPERS_READY
    if _SWEEP_HELPERS_READY:
        return
    from numba.extending import register_jitable

    for helper in (fenwick_add, fenwick_total, _sweep_key, _sweep_fits, _sweep_congestion, _sweep_cost, _sweep_pin,
                   _sweep_window, _sweep_apply, _sweep_squeeze):
        register_jitable(helper)
    _SWEEP_HELPERS_READY = True
