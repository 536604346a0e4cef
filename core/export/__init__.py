"""Exports of a plan for other tools: a Chrome/Perfetto trace, and CSV tables of decisions and events."""

from __future__ import annotations

from core.export.csv import decisions_csv, events_csv
from core.export.trace import plan_to_trace

__all__ = ["decisions_csv", "events_csv", "plan_to_trace"]
