"""Streamlit AppTest support shared by the page tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["navigation_pages"]


@contextmanager
def navigation_pages() -> Iterator[None]:
    """Keep app.py's ``st.navigation`` in charge while AppTest runs.

    AppTest resets Streamlit's "pages/ directory" flag before every run, and with a ``pages/`` folder
    present it then runs the page file alone (the legacy multipage mode) instead of ``app.py``. The real
    server clears the flag for good once ``st.navigation`` runs; do the same here.
    """
    import streamlit.runtime.pages_manager as pm

    original = pm.PagesManager.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        pm.PagesManager.uses_pages_directory = False

    pm.PagesManager.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        pm.PagesManager.__init__ = original  # type: ignore[method-assign]
