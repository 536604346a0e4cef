"""Ready-made hardware: ``presets/*.json`` in the ``tierplan-hardware/1`` format, every figure with a source.

The files are the data; this module only finds and loads them, so a user can download a preset, edit it
and upload it again. See docs/presets.md for each preset's figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from core.errors import InputError
from core.hardware import Hardware, load_hardware

__all__ = ["PRESETS_DIR", "PresetInfo", "list_presets", "load_preset", "preset_path"]

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
#: Display order: the teaching box, then datacentre Ascend (the HyperOffload setting), then NVIDIA, then the small FlexGen box.
_ORDER = ("teaching", "ascend-910b", "ascend-910c-supernode", "h100-sxm", "gh200", "a100-40gb-pcie", "t4-flexgen")


@dataclass(frozen=True)
class PresetInfo:
    key: str
    title: str
    description: str


def preset_path(key: str) -> Path:
    """The file of preset ``key`` (InputError naming the known keys if there is none)."""
    path = PRESETS_DIR / f"{key}.json"
    if not isinstance(key, str) or "/" in key or "\\" in key or not path.is_file():
        known = ", ".join(p.stem for p in sorted(PRESETS_DIR.glob("*.json")))
        raise InputError(f"unknown hardware preset {key!r}; known presets: {known}", field="preset")
    return path


@cache
def load_preset(key: str) -> Hardware:
    """The preset as :class:`Hardware` (cached: Hardware is immutable)."""
    return load_hardware(preset_path(key), source=f"presets/{key}.json")


def list_presets() -> tuple[PresetInfo, ...]:
    """Every preset file, in display order (known ones first, then any other file alphabetically)."""
    keys = [p.stem for p in PRESETS_DIR.glob("*.json")]
    keys.sort(key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))
    out = []
    for key in keys:
        hw = load_preset(key)
        out.append(PresetInfo(key, hw.name, hw.description))
    return tuple(out)
