"""The scheduler's kernels: compiled (numba) and pure Python give identical plans; the max tree is exact."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import kernels
from core.errors import InfeasibleError
from core.fuzz import random_case
from core.graph import Graph
from core.hardware import Hardware, with_capacity
from core.liveness import analyze
from core.plan import Plan
from core.planner import make_plan
from core.sources.presets import load_preset
from core.sources.samples import list_samples, load_sample
from tests.strategies import graphs, hierarchies

#: the kernels compile once per machine (numba's disk cache); one worker compiles them for the whole module
pytestmark = pytest.mark.xdist_group("kernels")


class TestMaxTree:
    """The segment tree the compiled grants use against a plain array, on random adds and searches."""

    @pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 100, 257])
    def test_matches_a_scan(self, n: int) -> None:
        rnd = random.Random(n)
        values = [rnd.randrange(0, 50) for _ in range(n)]
        size = 1
        while size < n:
            size *= 2
        t, d = kernels._tree(values, size)
        for _ in range(300):
            lo = rnd.randrange(0, n + 1)
            hi = rnd.randrange(lo, n + 1)
            if rnd.random() < 0.5:
                x = rnd.randrange(0, 20)
                kernels._tree_add(t, d, size, lo, hi, x)
                for s in range(lo, hi):
                    values[s] += x
            else:
                thr = rnd.randrange(0, 80)
                above = [s for s in range(lo, hi) if values[s] > thr]
                assert kernels._tree_find(t, d, size, lo, hi, thr, False) == (above[0] if above else -1)
                assert kernels._tree_find(t, d, size, lo, hi, thr, True) == (above[-1] if above else -1)
        out = np.zeros(n, dtype=np.int64)
        kernels._tree_values(t, d, size, out)
        assert out.tolist() == values


def _plan(graph: Graph, hw: Hardware, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> Plan | str:
    """The fast-path plan with the compiled kernels (every size) or the Python ones."""
    if compiled:
        monkeypatch.delenv("TIERPLAN_NO_NUMBA", raising=False)
        monkeypatch.setenv("TIERPLAN_NUMBA_MIN_OPS", "0")
    else:
        monkeypatch.setenv("TIERPLAN_NO_NUMBA", "1")
    try:
        return make_plan(graph, hw, params={"portfolio": 0, "baselines": 2}, reorder=False, bound=False, search_s=0.0)
    except InfeasibleError as exc:
        return str(exc)


def _same(graph: Graph, hw: Hardware, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _plan(graph, hw, False, monkeypatch)
    b = _plan(graph, hw, True, monkeypatch)
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    assert a.events == b.events  # every time bit for bit
    assert a.initial == b.initial
    assert [(d.tensor, d.start_op, d.end_op, d.action, d.tier) for d in a.decisions] == \
           [(d.tensor, d.start_op, d.end_op, d.action, d.tier) for d in b.decisions]
    assert a.metrics["step_time_s"] == b.metrics["step_time_s"]


needs_numba = pytest.mark.skipif(not kernels.numba_enabled(), reason="numba is not importable")


@needs_numba
class TestCompiledEqualsPython:
    @pytest.mark.parametrize("key", [s.key for s in list_samples()])
    def test_samples(self, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
        graph = load_sample(key)
        info = next(s for s in list_samples() if s.key == key)
        hw = load_preset(info.hardware)
        peak = analyze(graph).no_offload_peak_bytes
        _same(graph, with_capacity(hw, hw.compute_tier, int(peak * 0.5)), monkeypatch)

    @pytest.mark.parametrize("seed", range(0, 60, 3))
    def test_fuzz_cases(self, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
        graph, hw = random_case(seed)
        _same(graph, hw, monkeypatch)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                      HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_strategies(self, data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        graph = data.draw(graphs())
        hw = data.draw(hierarchies(graph))
        _same(graph, hw, monkeypatch)


def test_switch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """TIERPLAN_NO_NUMBA=1 keeps every size on the Python path; small problems stay there until numba is
    loaded, and after that every size runs compiled."""
    monkeypatch.setenv("TIERPLAN_NO_NUMBA", "1")
    assert not kernels.use_compiled(10**7)
    monkeypatch.delenv("TIERPLAN_NO_NUMBA")
    monkeypatch.delenv("TIERPLAN_NUMBA_MIN_OPS", raising=False)
    monkeypatch.setattr(kernels, "_WARM", False)
    assert not kernels.use_compiled(kernels.NUMBA_MIN_OPS - 1)
    if kernels.numba_enabled():
        assert kernels.use_compiled(kernels.NUMBA_MIN_OPS)


@needs_numba
def test_warm_up_makes_every_size_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.planner import warm_up

    monkeypatch.delenv("TIERPLAN_NUMBA_MIN_OPS", raising=False)
    monkeypatch.delenv("TIERPLAN_NO_NUMBA", raising=False)
    monkeypatch.setattr(kernels, "_WARM", False)
    assert warm_up()
    assert kernels.use_compiled(1)


@needs_numba
def test_a_warm_up_in_progress_leaves_other_threads_on_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.delenv("TIERPLAN_NUMBA_MIN_OPS", raising=False)
    monkeypatch.delenv("TIERPLAN_NO_NUMBA", raising=False)
    monkeypatch.setattr(kernels, "_WARM", False)
    seen: list[bool] = []
    with kernels.warming():
        assert kernels.use_compiled(1)  # the warming thread runs compiled
        kernels.kernel(kernels.fenwick_total)  # loading a kernel does not switch the process yet
        other = threading.Thread(target=lambda: seen.append(kernels.use_compiled(1)))
        other.start()
        other.join()
        with kernels.warming():  # nested: the inner exit does not end the outer block
            pass
        assert kernels.use_compiled(1) and not kernels._WARM
    assert seen == [False]
    assert kernels._WARM and kernels.use_compiled(1)


# ---------------------------------------------------------------------------------------------- Tierplan's sweep


def _sweep_decisions(graph: Graph, hw: Hardware, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every decision (terms and reasons included) of the first plan, the sweep compiled or in Python."""
    plan = _plan(graph, hw, compiled, monkeypatch)
    return plan if isinstance(plan, str) else plan.decisions


@needs_numba
class TestSweepCompiledEqualsPython:
    """core.kernels.tierplan_sweep: both paths give the same decisions, with the same terms and reasons."""

    @pytest.mark.parametrize("seed", range(1, 60, 6))
    def test_fuzz_cases(self, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
        graph, hw = random_case(seed)
        assert _sweep_decisions(graph, hw, False, monkeypatch) == _sweep_decisions(graph, hw, True, monkeypatch)

    @pytest.mark.parametrize("fraction", [0.3, 0.5])
    def test_tight_sample(self, fraction: float, monkeypatch: pytest.MonkeyPatch) -> None:
        info = list_samples()[0]
        graph = load_sample(info.key)
        hw = load_preset(info.hardware)
        room = with_capacity(hw, hw.compute_tier, int(analyze(graph).no_offload_peak_bytes * fraction))
        assert _sweep_decisions(graph, room, False, monkeypatch) == _sweep_decisions(graph, room, True, monkeypatch)
