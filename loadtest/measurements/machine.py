"""The machine's CPU while a run goes: what the API server competes with on a shared host.

The capacity model needs the cores the API server really gets. Under a CPU quota on this
machine that is the quota only while etcd, KWOK, the harness and its agents leave that much,
and what they take grows with the load (a 1-core quota broke at about the size a 0.5-core
one did: the machine, not the quota, was full). Sampled every interval from the kernel's
counters (psutil), written as it goes to raw/machine.jsonl.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loadtest import processes
from loadtest.measurements.base import MeasurementSummary, Num, Ticker
from loadtest.results import JsonlWriter, read_jsonl


class MachineSummary(MeasurementSummary):
    """What `summarize` returns."""

    cpus: int | None = None
    samples: int = 0
    busy_cores_mean: Num | None = None
    busy_cores_max: Num | None = None


class MachineCpu:
    name = "machine"

    def __init__(self, raw: Path, interval_s: float) -> None:
        self.raw = raw
        self.writer = JsonlWriter(raw)
        self._ticker = Ticker(interval_s, self._sample, "machine-cpu")

    def _sample(self) -> None:
        busy, total = processes.machine_cpu_seconds()
        self.writer.write({"t": time.time(), "busy_s": busy, "total_s": total})

    def start(self) -> None:
        self._ticker.start()

    def gather(self) -> dict[str, Any]:
        self._ticker.stop()
        self._sample()
        return summarize(read_jsonl(self.raw))


def busy_cores(
    rows: Iterable[dict[str, Any]], t0: float = 0, t1: float = float("inf")
) -> float | None:
    """Mean busy cores of the machine between the first and last sample inside [t0, t1]."""
    inside = [r for r in rows if "busy_s" in r and t0 <= r["t"] <= t1]
    if len(inside) < 2 or inside[-1]["t"] <= inside[0]["t"]:
        return None
    busy = inside[-1]["busy_s"] - inside[0]["busy_s"]
    return max(0.0, busy) / (inside[-1]["t"] - inside[0]["t"])  # counters only grow


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [r for r in rows if "busy_s" in r]
    pairs = (busy_cores([a, b]) for a, b in zip(rows, rows[1:], strict=False))
    steps = [c for c in pairs if c is not None]
    return {
        "cpus": os.cpu_count() or 1,
        "samples": len(rows),
        "busy_cores_mean": busy_cores(rows),
        "busy_cores_max": max(steps) if steps else None,
    }
