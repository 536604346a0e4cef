"""Run the points of a sweep one after another, in a local process pool, or on a Dask cluster.

One interface, :func:`map_points`: ``fn(shared, point)`` for every point, yielding ``(index, result)`` as
results complete (not in point order), so a caller can stream them into a chart or a progress bar. The
``shared`` object (graph, hardware, liveness …) is sent to each worker once rather than with every point:

- ``serial``: in this process, in point order. The reference the other two must reproduce exactly.
- ``process``: a ``concurrent.futures`` pool of local processes (``forkserver``, so a threaded caller such
  as the Streamlit server is never forked). The pool is kept for the life of the process so a dashboard's
  second sweep does not pay the start-up again; ``shared`` is pickled once per call into a file (in
  ``/dev/shm`` where there is one) and each worker reads it once (cached by a token): a task carries only
  the token, the path and its points, never the graph.
- ``dask``: Dask distributed. With no ``scheduler`` an embedded ``LocalCluster`` of ``workers`` single-threaded
  processes is started (and kept, like the pool); with ``scheduler="tcp://host:8786"`` the points run on
  that cluster. ``shared`` is scattered to every worker once.

Points travel in **chunks** (``chunks``; default :data:`CHUNKS_PER_WORKER` per worker), so a sweep of many
cheap points is not dominated by per-task overhead. A chunk takes every n-th point (points 0, n, 2n … go
together), so chunks of a sweep whose cost grows along the points cost about the same, and the workers
finish together. Results still stream: a chunk's results arrive when it completes.

``fn`` must be a module-level function (workers import it by name). An exception in ``fn`` stops the
iteration with :class:`PointError` naming the point and the original error; an unreachable scheduler or a
worker that dies raises :class:`ExecutorError`. Pending points are cancelled when the caller stops iterating.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import pickle
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from core.errors import TierplanError

__all__ = ["EXECUTORS", "ExecutorError", "PointError", "map_points", "resolve_executor", "default_workers",
           "shutdown"]

P = TypeVar("P")
R = TypeVar("R")
S = TypeVar("S")

#: Choices a user can give (``auto``: serial for a few points or one core, else the process pool).
EXECUTORS: tuple[str, ...] = ("auto", "serial", "process", "dask")
#: ``auto`` runs sweeps of at most this many points serially: a pool's start-up would cost more than it saves.
SERIAL_UP_TO = 3
#: How long to wait for a Dask scheduler given by address before saying it is unreachable.
CONNECT_TIMEOUT_S = 10.0
#: Default chunks per worker: enough that a slow chunk does not leave the other workers idle at the end,
#: few enough that the per-task cost (a pool round trip, a Dask task) stays small next to planning.
CHUNKS_PER_WORKER = 4


class ExecutorError(TierplanError):
    """The executor itself failed: bad choice, unreachable scheduler, a worker process that died."""


class PointError(ExecutorError):
    """``fn`` raised on one point; ``index`` is the point's position, ``message`` the original error."""

    def __init__(self, index: int, point: Any, message: str) -> None:
        self.index, self.point, self.message = index, point, message
        super().__init__(f"sweep point {index} ({point!r}) failed: {message}")


def default_workers() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_executor(executor: str, n_points: int, workers: int | None = None) -> str:
    """The concrete executor for ``executor`` (``auto`` picks serial or process by size and cores)."""
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor != "auto":
        return executor
    cores = workers or default_workers()
    return "serial" if n_points <= SERIAL_UP_TO or cores < 2 else "process"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def map_points(fn: Callable[[S, P], R], points: Sequence[P], *, shared: Any = None, executor: str = "auto",
               scheduler: str | None = None, workers: int | None = None,
               chunks: int | None = None) -> Iterator[tuple[int, R]]:
    """``(index, fn(shared, points[index]))`` for every point, as each completes.

    ``workers``: processes for ``process`` and the embedded Dask cluster (default: the cores available);
    ``scheduler``: address of a running Dask scheduler (implies ``executor="dask"`` when ``auto``);
    ``chunks``: how many tasks the points are split into (default :data:`CHUNKS_PER_WORKER` per worker,
    at most one per point).
    """
    points = list(points)
    if workers is not None and workers < 1:
        raise ExecutorError(f"workers must be >= 1, got {workers}")
    if chunks is not None and chunks < 1:
        raise ExecutorError(f"chunks must be >= 1, got {chunks}")
    kind = "dask" if scheduler and executor == "auto" else resolve_executor(executor, len(points), workers)
    if scheduler and kind != "dask":
        raise ExecutorError(f"a scheduler address only applies to the dask executor, not {kind!r}")
    if not points:
        return iter(())
    if kind == "serial":
        return _serial(fn, points, shared)
    if kind == "process":
        n_workers = min(workers or default_workers(), len(points))
        return _process(fn, points, shared, n_workers, _chunked(len(points), chunks, n_workers))
    n_workers = workers or default_workers()
    return _dask(fn, points, shared, scheduler, n_workers, _chunked(len(points), chunks, n_workers))


def _chunked(n: int, chunks: int | None, workers: int) -> list[list[int]]:
    """Point indices per chunk: chunk ``j`` holds ``j, j + c, j + 2c …`` (``c`` chunks), so every chunk
    samples the whole sweep."""
    c = max(1, min(n, chunks if chunks is not None else workers * CHUNKS_PER_WORKER))
    return [list(range(j, n, c)) for j in range(c)]


class _ChunkError(Exception):
    """A point of a chunk raised: its index and the original error, described (picklable)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(index, message)
        self.index, self.message = index, message


def _run_chunk(fn: Callable[[Any, Any], Any], shared: Any, chunk: Sequence[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """``fn`` on every ``(index, point)`` of a chunk, in a worker; the first failure stops the chunk."""
    out = []
    for k, point in chunk:
        try:
            out.append((k, fn(shared, point)))
        except Exception as exc:
            raise _ChunkError(k, _describe(exc)) from exc
    return out


# --------------------------------------------------------------------------------------------- serial


def _serial(fn: Callable[[S, P], R], points: list[P], shared: S) -> Iterator[tuple[int, R]]:
    for k, point in enumerate(points):
        try:
            value = fn(shared, point)
        except Exception as exc:
            raise PointError(k, point, _describe(exc)) from exc
        yield k, value


# -------------------------------------------------------------------------------------------- process

_LOCK = threading.Lock()
_POOLS: dict[int, ProcessPoolExecutor] = {}
_WORKER_SHARED: dict[str, Any] = {}  # in a worker: token -> unpickled shared object (the latest few)


def _pool(workers: int) -> ProcessPoolExecutor:
    with _LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))
            _POOLS[workers] = pool
        return pool


def _drop_pool(workers: int) -> None:
    with _LOCK:
        pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _shared_in_worker(token: str, path: str) -> Any:
    """Worker side of the pool: the shared object of ``token``, read from ``path`` the first time."""
    if token not in _WORKER_SHARED:
        if len(_WORKER_SHARED) >= 4:  # keep the latest few sweeps' inputs, not every one ever sent
            _WORKER_SHARED.pop(next(iter(_WORKER_SHARED)))
        with open(path, "rb") as f:
            _WORKER_SHARED[token] = pickle.load(f)  # our own parent's file, never user input
    return _WORKER_SHARED[token]


def _run_in_worker(fn: Callable[[Any, Any], Any], token: str, path: str, chunk: list[tuple[int, Any]]
                   ) -> list[tuple[int, Any]]:
    """Worker side of the pool: one chunk of points."""
    return _run_chunk(fn, _shared_in_worker(token, path), chunk)


def _shared_file(shared: Any) -> str:
    """Pickle ``shared`` once into a private file (memory-backed ``/dev/shm`` when present)."""
    import tempfile

    where = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    fd, path = tempfile.mkstemp(prefix="tierplan-sweep-", suffix=".pickle", dir=where)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(shared, f, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        os.unlink(path)
        raise ExecutorError(f"cannot send the sweep's inputs to worker processes: {_describe(exc)}") from exc
    return path


def _process(fn: Callable[[S, P], R], points: list[P], shared: S, workers: int, chunks: list[list[int]]
             ) -> Iterator[tuple[int, R]]:
    path = _shared_file(shared)
    token = uuid.uuid4().hex
    try:
        for attempt in (0, 1):
            pool = _pool(workers)
            try:
                futures = {pool.submit(_run_in_worker, fn, token, path, [(k, points[k]) for k in chunk]): j
                           for j, chunk in enumerate(chunks)}
                break
            except (BrokenProcessPool, RuntimeError):  # a pool left broken (or shut down) by an earlier sweep
                _drop_pool(workers)
                if attempt:
                    raise ExecutorError("cannot start the local process pool") from None
        yield from _drain(futures, chunks, points, lambda: _drop_pool(workers))
    finally:
        with contextlib.suppress(OSError):  # workers that read it keep their copy; a cancelled sweep needs none
            os.unlink(path)


def _drain(futures: dict[Future[Any], int], chunks: list[list[int]], points: list[Any],
           on_broken: Callable[[], None]) -> Iterator[tuple[int, Any]]:
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=futures.__getitem__):
                chunk = chunks[futures[fut]]
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    on_broken()
                    raise ExecutorError(f"a worker process died while planning sweep points {_names(chunk, points)}; "
                                        "out of memory?") from exc
                if isinstance(exc, _ChunkError):
                    raise PointError(exc.index, points[exc.index], exc.message) from exc
                if exc is not None:
                    raise ExecutorError(f"sweep points {_names(chunk, points)} failed: {_describe(exc)}") from exc
                yield from fut.result()
    finally:
        for fut in pending:
            fut.cancel()


def _names(chunk: list[int], points: list[Any], most: int = 3) -> str:
    shown = ", ".join(f"{k} ({points[k]!r})" for k in chunk[:most])
    return shown + (f" and {len(chunk) - most} more" if len(chunk) > most else "")


# ----------------------------------------------------------------------------------------------- dask

_CLIENTS: dict[tuple[str, int], Any] = {}


def _client(scheduler: str | None, workers: int) -> Any:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask is in requirements.txt
        raise ExecutorError("the dask executor needs `dask[distributed]` (pip install 'dask[distributed]')") from exc
    key = (scheduler or "local", 0 if scheduler else workers)
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is not None and client.status == "running":
            return client
        try:
            if scheduler:
                client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
            else:
                import logging

                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.CRITICAL)
                client = Client(cluster, set_as_default=False)
        except OSError as exc:
            where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
            raise ExecutorError(f"cannot reach {where}: {_describe(exc)}") from exc
        _CLIENTS[key] = client
        return client


def _dask(fn: Callable[[S, P], R], points: list[P], shared: S, scheduler: str | None, workers: int,
          chunks: list[list[int]]) -> Iterator[tuple[int, R]]:
    from distributed import as_completed

    client = _client(scheduler, workers)
    try:
        remote = client.scatter(shared, broadcast=True, hash=False)
    except Exception as exc:
        raise ExecutorError(f"cannot send the sweep's inputs to the Dask workers: {_describe(exc)}") from exc
    run = uuid.uuid4().hex
    futures = [client.submit(_run_chunk, fn, remote, [(k, points[k]) for k in chunk], pure=False,
                             key=f"points-{j}-{run}") for j, chunk in enumerate(chunks)]
    index = {f.key: j for j, f in enumerate(futures)}
    done_keys: set[str] = set()
    try:
        for fut in as_completed(futures, loop=client.loop):
            chunk = chunks[index[fut.key]]
            done_keys.add(fut.key)
            if fut.status == "error":
                error = fut.exception()
                if isinstance(error, _ChunkError):
                    raise PointError(error.index, points[error.index], error.message) from error
                raise ExecutorError(f"sweep points {_names(chunk, points)} failed: {_describe(error)}") from error
            if fut.status == "cancelled":
                raise ExecutorError(f"the Dask cluster lost sweep points {_names(chunk, points)}")
            yield from fut.result()
    finally:
        left = [f for f in futures if f.key not in done_keys]
        if left:
            client.cancel(left)
        remote.release()


# ------------------------------------------------------------------------------------------- shutdown


@atexit.register
def shutdown() -> None:
    """Stop the kept process pools and embedded Dask clusters (also run at interpreter exit)."""
    with _LOCK:
        pools, clients = list(_POOLS.values()), list(_CLIENTS.values())
        _POOLS.clear()
        _CLIENTS.clear()
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)
    if clients:
        import logging

        logging.getLogger("distributed").setLevel(logging.ERROR)  # not one INFO line per closing worker
    for client in clients:
        cluster = client.cluster
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # best effort at exit
            pass
