"""Fixtures shared by several test modules."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.apptest import navigation_pages as _navigation_pages


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """A real 2-worker Dask cluster (separate processes); executors connect to it by address."""
    distributed = pytest.importorskip("distributed")
    from core.executor import shutdown

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.CRITICAL)
    try:
        yield cluster.scheduler_address
    finally:
        shutdown()
        cluster.close()


@pytest.fixture
def navigation_pages() -> Iterator[None]:
    """AppTest runs app.py with its st.navigation (see tests.apptest.navigation_pages)."""
    with _navigation_pages():
        yield
