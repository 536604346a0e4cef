"""Human units: parsing and printing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.units import (
    format_bandwidth,
    format_bytes,
    format_flops,
    format_time,
    parse_bandwidth,
    parse_bytes,
    parse_flops,
    parse_time,
)


class TestParse:
    @pytest.mark.parametrize(("text", "value"), [
        ("64 GiB", 64 * 2**30), ("1.5 TB", 1.5e12), ("1024", 1024), (2048, 2048), ("3 kb", 3000), ("1e3 MiB", 1000 * 2**20),
        (" 7B ", 7), ("2 bytes", 2), (1.0, 1),
    ])
    def test_bytes(self, text: str | int, value: int) -> None:
        assert parse_bytes(text) == value

    @pytest.mark.parametrize(("text", "value"), [
        ("900 GB/s", 900e9), ("64 GiB/s", 64 * 2**30), ("5e9", 5e9), (5e9, 5e9), ("100 MB/s", 1e8),
    ])
    def test_bandwidth(self, text: str | float, value: float) -> None:
        assert parse_bandwidth(text) == pytest.approx(value)

    @pytest.mark.parametrize(("text", "value"), [
        ("2 us", 2e-6), ("1.5 ms", 1.5e-3), ("3", 3.0), ("10 ns", 1e-8), ("2 µs", 2e-6), (0.5, 0.5), ("1 min", 60),
    ])
    def test_time(self, text: str | float, value: float) -> None:
        assert parse_time(text) == pytest.approx(value)

    @pytest.mark.parametrize(("text", "value"), [
        ("989 TFLOPS", 989e12), ("1.2 PFLOP/s", 1.2e15), ("65 tflops", 65e12), (1e9, 1e9), ("7 GFLOP", 7e9),
    ])
    def test_flops(self, text: str | float, value: float) -> None:
        assert parse_flops(text) == pytest.approx(value)

    @pytest.mark.parametrize("parser", [parse_bytes, parse_bandwidth, parse_time, parse_flops])
    @pytest.mark.parametrize("bad", ["", "abc", "-1 GB", "1 XB", "nan", "inf", True, -3, float("nan"), float("inf"),
                                     "1 2 GB", "GB", "12 Gbps"])
    def test_rejects(self, parser: object, bad: object) -> None:
        with pytest.raises(ValueError):
            parser(bad)  # type: ignore[operator]


class TestFormat:
    def test_examples(self) -> None:
        assert format_bytes(2**31) == "2 GiB"
        assert format_bytes(0) == "0 B"
        assert format_bandwidth(64e9) == "64 GB/s"
        assert format_time(2e-6) == "2 µs"
        assert format_time(0) == "0 s"
        assert format_flops(989e12) == "989 TFLOP/s"

    @settings(max_examples=200, deadline=None)
    @given(st.integers(0, 2**55))
    def test_bytes_roundtrip(self, n: int) -> None:
        assert parse_bytes(format_bytes(n, digits=12)) == pytest.approx(n, rel=1e-9, abs=1)

    @settings(max_examples=200, deadline=None)
    @given(st.floats(1e-9, 1e5))
    def test_time_roundtrip(self, t: float) -> None:
        assert parse_time(format_time(t, digits=12)) == pytest.approx(t, rel=1e-9)

    @settings(max_examples=200, deadline=None)
    @given(st.floats(1, 1e18))
    def test_bandwidth_and_flops_roundtrip(self, x: float) -> None:
        assert parse_bandwidth(format_bandwidth(x, digits=12)) == pytest.approx(x, rel=1e-9)
        assert parse_flops(format_flops(x, digits=12)) == pytest.approx(x, rel=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=12), st.integers(), st.floats(allow_nan=True), st.booleans(), st.none()))
def test_fuzz_parsers_raise_only_value_error(value: object) -> None:
    for parser in (parse_bytes, parse_bandwidth, parse_time, parse_flops):
        try:
            result = parser(value)  # type: ignore[arg-type]
        except ValueError:
            continue
        assert math.isfinite(result) and result >= 0
