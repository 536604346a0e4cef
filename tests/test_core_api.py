"""The public surface: everything in ``core.__all__`` exists, and the doctest flow works."""

from __future__ import annotations

import doctest

import core


def test_all_names_exist() -> None:
    missing = [name for name in core.__all__ if not hasattr(core, name)]
    assert missing == []


def test_core_never_imports_streamlit() -> None:
    import pathlib

    offenders = [p.name for p in pathlib.Path(core.__file__).parent.rglob("*.py") if "import streamlit" in p.read_text()]
    assert offenders == []


def test_module_doctest() -> None:
    result = doctest.testmod(core)
    assert result.attempted >= 3 and result.failed == 0
