"""Executors: serial, process pool and Dask yield the same (index, result) pairs; errors name the point."""

from __future__ import annotations

import re

import pytest

from core.executor import ExecutorError, PointError, map_points, resolve_executor


def _scaled(factor: int, point: int) -> int:
    if point < 0:
        raise ValueError(f"negative point {point}")
    return factor * point * point


POINTS = [3, 1, 4, 1, 5, 9, 2, 6]
EXPECTED = [(k, 7 * p * p) for k, p in enumerate(POINTS)]


class TestResolve:
    def test_auto_is_serial_for_few_points_and_the_pool_beyond(self) -> None:
        assert resolve_executor("auto", 3, workers=4) == "serial"
        assert resolve_executor("auto", 4, workers=4) == "process"
        assert resolve_executor("auto", 100, workers=1) == "serial"
        assert resolve_executor("dask", 1) == "dask"

    def test_unknown_executor_is_a_clear_error(self) -> None:
        with pytest.raises(ExecutorError, match=r"unknown executor 'threads'.*serial, process, dask"):
            map_points(_scaled, POINTS, shared=7, executor="threads")

    def test_scheduler_only_with_dask(self) -> None:
        with pytest.raises(ExecutorError, match="only applies to the dask executor"):
            map_points(_scaled, POINTS, shared=7, executor="process", scheduler="tcp://127.0.0.1:1")

    def test_workers_must_be_positive(self) -> None:
        with pytest.raises(ExecutorError, match="workers must be >= 1"):
            map_points(_scaled, POINTS, shared=7, executor="process", workers=0)


class TestSerialAndProcess:
    def test_serial_is_in_order(self) -> None:
        assert list(map_points(_scaled, POINTS, shared=7, executor="serial")) == EXPECTED

    def test_process_pool_gives_the_same_pairs(self) -> None:
        got = list(map_points(_scaled, POINTS, shared=7, executor="process", workers=2))
        assert sorted(got) == EXPECTED and len(got) == len(POINTS)

    def test_pool_is_reused_with_new_shared_inputs(self) -> None:
        first = sorted(map_points(_scaled, POINTS, shared=7, executor="process", workers=2))
        second = sorted(map_points(_scaled, POINTS, shared=2, executor="process", workers=2))
        assert first == EXPECTED and second == [(k, 2 * p * p) for k, p in enumerate(POINTS)]

    def test_empty(self) -> None:
        assert list(map_points(_scaled, [], shared=7, executor="process")) == []

    @pytest.mark.parametrize("executor", ["serial", "process"])
    def test_worker_error_names_the_point(self, executor: str) -> None:
        with pytest.raises(PointError, match=r"sweep point 2 \(-5\) failed: ValueError: negative point -5") as info:
            list(map_points(_scaled, [1, 2, -5, 3], shared=7, executor=executor, workers=2))
        assert info.value.index == 2 and info.value.point == -5


@pytest.mark.dask
class TestDask:
    def test_same_pairs_as_serial(self, dask_address: str) -> None:
        got = list(map_points(_scaled, POINTS, shared=7, executor="dask", scheduler=dask_address))
        assert sorted(got) == EXPECTED and len(got) == len(POINTS)

    def test_scheduler_implies_dask(self, dask_address: str) -> None:
        assert sorted(map_points(_scaled, POINTS[:2], shared=1, scheduler=dask_address)) == [(0, 9), (1, 1)]

    def test_worker_error_names_the_point(self, dask_address: str) -> None:
        with pytest.raises(PointError, match=r"sweep point 1 \(-2\) failed: ValueError: negative point -2"):
            list(map_points(_scaled, [1, -2], shared=7, executor="dask", scheduler=dask_address))

    def test_unreachable_scheduler(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("core.executor.CONNECT_TIMEOUT_S", 1.0)
        with pytest.raises(ExecutorError, match=re.escape("cannot reach the Dask scheduler at tcp://127.0.0.1:9")):
            list(map_points(_scaled, [1], shared=7, executor="dask", scheduler="tcp://127.0.0.1:9"))


class TestChunks:
    def test_chunks_interleave_the_points(self) -> None:
        from core.executor import _chunked

        assert _chunked(7, 3, 2) == [[0, 3, 6], [1, 4], [2, 5]]
        assert _chunked(2, None, 4) == [[0], [1]]  # never more chunks than points
        assert _chunked(64, None, 2) == [list(range(j, 64, 8)) for j in range(8)]  # 4 per worker

    @pytest.mark.parametrize("chunks", [1, 3, 8])
    def test_every_chunking_gives_the_same_pairs(self, chunks: int) -> None:
        got = list(map_points(_scaled, POINTS, shared=7, executor="process", workers=2, chunks=chunks))
        assert sorted(got) == EXPECTED and len(got) == len(POINTS)

    def test_error_in_a_chunk_names_its_point(self) -> None:
        with pytest.raises(PointError, match=r"sweep point 4 \(-1\) failed") as info:
            list(map_points(_scaled, [1, 2, 3, 4, -1, 5], shared=7, executor="process", workers=2, chunks=2))
        assert info.value.index == 4

    def test_chunks_must_be_positive(self) -> None:
        with pytest.raises(ExecutorError, match="chunks must be >= 1"):
            map_points(_scaled, POINTS, shared=7, executor="process", chunks=0)

    def test_the_shared_file_is_removed_after_the_sweep(self) -> None:
        import glob

        before = set(glob.glob("/dev/shm/tierplan-sweep-*")) | set(glob.glob("/tmp/tierplan-sweep-*"))
        list(map_points(_scaled, POINTS, shared=7, executor="process", workers=2))
        after = set(glob.glob("/dev/shm/tierplan-sweep-*")) | set(glob.glob("/tmp/tierplan-sweep-*"))
        assert after <= before
