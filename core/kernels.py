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
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["NUMBA_MIN_OPS", "numba_enabled", "use_compiled", "warming", "warm_up", "simulate", "grant_tails", "grant_heads", "fenwick_add",
           "fenwick_total", "kernel"]

#: Problems smaller than this (ops) run the Python path while numba is not loaded yet: its import plus loading
#: the cached kernels (~0.5 s CPU) costs about what the compiled kernels save on a 10⁴-op first plan
#: (measured: 1.78 s Python, 1.82 s compiled including the load). Once loaded, every size runs compiled.
NUMBA_MIN_OPS = 10_000

#: a kernel's array argument: a numpy array when compiled, the same values as a list on the Python path
Arr = Any

_COMPILED: dict[str, Any] = {}
_AVAILABLE: bool | None = None
#: numba is loaded in this process (a kernel ran compiled, or :func:`warm_up` finished): every size runs compiled
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


def warm_up() -> bool:
    """Load the link-load kernels (see :func:`core.schedule.warm_up`, which loads every kernel and is the one
    to call, e.g. from a background thread of a long-lived process such as the dashboard). Returns whether
    the compiled kernels are in use."""
    if not numba_enabled():
        return False
    with warming():
        b = np.zeros(4)
        kernel(fenwick_add)(b, b.copy(), 2, 0, 1, 1.0)
        kernel(fenwick_total)(b, b.copy(), 0, 1)
    return True


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
