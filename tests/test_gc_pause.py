"""core.gc_pause: the collector is off inside the block and back as it was after it."""

from __future__ import annotations

import gc

import pytest

from core.gc_pause import paused_gc


class TestPausedGc:
    def test_off_inside_on_after(self) -> None:
        assert gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert gc.isenabled()

    def test_nested_blocks_restore_only_at_the_outer_end(self) -> None:
        with paused_gc():
            with paused_gc():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()

    def test_restored_after_an_exception(self) -> None:
        with pytest.raises(ValueError), paused_gc():
            raise ValueError("boom")
        assert gc.isenabled()

    def test_a_disabled_collector_stays_disabled(self) -> None:
        gc.disable()
        try:
            with paused_gc():
                pass
            assert not gc.isenabled()
        finally:
            gc.enable()
