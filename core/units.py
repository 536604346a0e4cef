"""Parsing and printing of human units: "64 GiB", "900 GB/s", "2 us".

Files may use either plain numbers (bytes, bytes per second, seconds) or strings with units; everything
inside Tierplan is in base units (``int`` bytes, ``float`` seconds and bytes per second).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = [
    "parse_bytes",
    "parse_bandwidth",
    "parse_time",
    "parse_flops",
    "format_bytes",
    "format_bandwidth",
    "format_time",
    "format_flops",
]

_BYTE_UNITS: dict[str, float] = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
    "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
}
_TIME_UNITS: dict[str, float] = {
    "s": 1, "sec": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60, "h": 3600,
}
_FLOP_UNITS: dict[str, float] = {
    "": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15, "e": 1e18,
}
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-zµ/]*)\s*$")


def _split(value: str, what: str) -> tuple[float, str]:
    match = _PATTERN.match(value)
    if not match:
        raise ValueError(f"cannot read {value!r} as {what}")
    return float(match.group(1)), match.group(2).lower()


def _finite_non_negative(number: float, value: object, what: str) -> float:
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return number


def parse_bytes(value: str | int | float) -> int:
    """Bytes from ``1024``, ``"64 GiB"`` or ``"1.5 TB"`` (decimal SI, binary IEC)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, (int, float)):
        return int(_finite_non_negative(float(value), value, "a size"))
    number, unit = _split(str(value), "a size such as '64 GiB'")
    if unit not in _BYTE_UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {value!r} (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    return round(_finite_non_negative(number * _BYTE_UNITS[unit], value, "a size"))


def parse_bandwidth(value: str | int | float) -> float:
    """Bytes per second from ``900e9``, ``"900 GB/s"`` or ``"64 GiB/s"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a bandwidth, got {value!r}")
    if isinstance(value, (int, float)):
        return _finite_non_negative(float(value), value, "a bandwidth")
    number, unit = _split(str(value), "a bandwidth such as '64 GB/s'")
    if unit.endswith("/s"):
        unit = unit[:-2]
    elif unit.endswith("ps"):
        unit = unit[:-2] + "b" if unit[:-2] else "b"
    if unit not in _BYTE_UNITS:
        raise ValueError(f"unknown bandwidth unit in {value!r} (use e.g. GB/s, GiB/s, MB/s)")
    return _finite_non_negative(number * _BYTE_UNITS[unit], value, "a bandwidth")


def parse_time(value: str | int | float) -> float:
    """Seconds from ``2e-6``, ``"2 us"``, ``"1.5 ms"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a time, got {value!r}")
    if isinstance(value, (int, float)):
        return _finite_non_negative(float(value), value, "a time")
    number, unit = _split(str(value), "a time such as '2 us'")
    unit = unit or "s"
    if unit not in _TIME_UNITS:
        raise ValueError(f"unknown time unit {unit!r} in {value!r} (use s, ms, us, ns)")
    return _finite_non_negative(number * _TIME_UNITS[unit], value, "a time")


def parse_flops(value: str | int | float) -> float:
    """FLOP/s (or FLOPs) from ``989e12``, ``"989 TFLOPS"`` or ``"1.2 PFLOP/s"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a FLOP rate, got {value!r}")
    if isinstance(value, (int, float)):
        return _finite_non_negative(float(value), value, "a FLOP rate")
    number, unit = _split(str(value), "a FLOP rate such as '989 TFLOPS'")
    unit = unit.removesuffix("/s").removesuffix("flops").removesuffix("flop")
    if unit not in _FLOP_UNITS:
        raise ValueError(f"unknown FLOP unit in {value!r} (use e.g. TFLOPS, PFLOPS)")
    return _finite_non_negative(number * _FLOP_UNITS[unit], value, "a FLOP rate")


def _scaled(value: float, steps: Sequence[tuple[float, str]], digits: int) -> str:
    for factor, unit in steps:
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {unit}"
    factor, unit = steps[-1]
    return f"{value / factor:.{digits}g} {unit}"


def format_bytes(value: float, digits: int = 3) -> str:
    """``format_bytes(2**31) == '2 GiB'`` — binary units, as memory capacities are quoted."""
    steps = [(2**50, "PiB"), (2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")]
    return _scaled(float(value), steps, digits)


def format_bandwidth(value: float, digits: int = 3) -> str:
    """``format_bandwidth(64e9) == '64 GB/s'`` — decimal units, as link speeds are quoted."""
    steps = [(1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s"), (1e3, "KB/s"), (1, "B/s")]
    return _scaled(float(value), steps, digits)


def format_time(value: float, digits: int = 3) -> str:
    """``format_time(2e-6) == '2 µs'``."""
    if value == 0:
        return "0 s"
    steps = [(1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")]
    return _scaled(float(value), steps, digits)


def format_flops(value: float, digits: int = 3) -> str:
    """``format_flops(989e12) == '989 TFLOP/s'``."""
    steps = [(1e18, "EFLOP/s"), (1e15, "PFLOP/s"), (1e12, "TFLOP/s"), (1e9, "GFLOP/s"), (1e6, "MFLOP/s"), (1, "FLOP/s")]
    return _scaled(float(value), steps, digits)
