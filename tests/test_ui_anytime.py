"""The dashboard's refining processes (ui/anytime.py): they start without re-running the Streamlit script."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from ui import anytime


def _script_module(path: Path) -> types.ModuleType:
    """A ``__main__`` like the one Streamlit executes the page script in (no spec, no loader)."""
    module = types.ModuleType("__main__")
    module.__file__ = str(path)
    return module


def test_a_streamlit_script_main_is_told_apart_from_a_real_one(tmp_path: Path) -> None:
    assert anytime._script_main(_script_module(tmp_path / "app.py"))
    assert not anytime._script_main(anytime)  # an imported module has a spec
    assert not anytime._script_main(None)


def test_a_refining_process_does_not_run_the_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit's ``__main__`` is the page script; a child re-ran it as ``__mp_main__`` before its target
    (0.7 s each). The script here leaves a mark when it runs: no child may leave it."""
    from multiprocessing import spawn

    mark = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    ctx = anytime.mp_context()
    monkeypatch.setitem(sys.modules, "__main__", _script_module(script))
    assert "init_main_from_path" not in spawn.get_preparation_data("probe")
    proc = ctx.Process(target=anytime.os.getpid, daemon=True)
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0
    assert not mark.exists()


def test_a_real_main_is_still_sent_to_children(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only Streamlit's hand-made main is dropped: a ``python file.py`` main (it has a loader) is kept."""
    from importlib.machinery import SourceFileLoader
    from multiprocessing import spawn

    anytime.mp_context()
    module = _script_module(tmp_path / "tool.py")
    module.__loader__ = SourceFileLoader("__main__", str(tmp_path / "tool.py"))
    monkeypatch.setitem(sys.modules, "__main__", module)
    assert spawn.get_preparation_data("probe").get("init_main_from_path") == str(tmp_path / "tool.py")
