"""Measurements: each has a start/gather lifecycle and a pure `summarize` over its raw stream,
so a summary can be rebuilt from raw/*.jsonl after a crash."""

from loadtest.measurements.base import Measurement

__all__ = ["Measurement"]
