"""The machine's CPU view: busy cores from the kernel's counters, over a window."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loadtest.measurements import machine
from loadtest.results import read_jsonl


def test_busy_cores_over_a_window_and_the_summary() -> None:
    rows = [
        {"t": 100.0 + i, "busy_s": 1000.0 + 1.5 * i, "total_s": 2000.0 + 2 * i} for i in range(11)
    ]
    assert machine.busy_cores(rows) == pytest.approx(1.5)
    assert machine.busy_cores(rows, 103, 106) == pytest.approx(1.5)
    assert machine.busy_cores(rows, 200, 300) is None  # no sample inside
    s = machine.summarize(rows)
    assert s["samples"] == 11 and s["busy_cores_max"] == pytest.approx(1.5)


def test_a_real_sampler_writes_as_it_goes(tmp_path: Path) -> None:
    raw = tmp_path / "machine.jsonl"
    m = machine.MachineCpu(raw, 0.05)
    m.start()
    deadline = time.monotonic() + 5
    while len(read_jsonl(raw)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(read_jsonl(raw)) >= 3  # on disk before gather: a crash keeps them
    s = m.gather()
    assert s["samples"] >= 4 and s["cpus"] >= 1
    assert s["busy_cores_mean"] is not None and 0 <= s["busy_cores_mean"] <= s["cpus"] + 0.5


def test_an_idle_pair_of_samples_is_zero_busy_not_negative() -> None:
    rows = [{"t": 1.0, "busy_s": 10.0}, {"t": 2.0, "busy_s": 10.0 - 3.5e-11}]
    assert machine.busy_cores(rows) == 0.0
