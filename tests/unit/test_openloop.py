"""Open-loop probes: the scheduler against a send that blocks, and the pure summaries."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from loadtest.measurements import bystander, dns, openloop
from loadtest.stats import percentile
from loadtest.verdict import slo
from loadtest.wait import until


def test_percentile_is_nearest_rank_over_unsorted_samples():
    xs = list(range(100, 0, -1))  # 1..100, unsorted
    assert (percentile(xs, 0.5), percentile(xs, 0.99), percentile(xs, 1)) == (50, 99, 100)
    assert percentile(xs, 0) == 1 and percentile([2.0, 1.0], 0.5) == 1.0
    assert percentile(list(range(1, 101)), 0.07) == 7  # not 8 (0.07 * 100 > 7 in floats)
    assert percentile([], 0.99) is None
    with pytest.raises(ValueError, match="within 0..1"):
        percentile(xs, 99)


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self.lines.append((time.time(), rec))

    def slots(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for _, r in self.lines if "k" in r]


def test_slots_keep_their_schedule_while_sends_block_and_the_overflow_is_unsent():
    gate = threading.Event()  # every send from slot 3 on blocks until the gate opens

    def send(k: int) -> dict[str, Any]:
        if k >= 3:
            gate.wait(30)
        return {"cause": None}

    rec = Recorder()
    loop = openloop.OpenLoop(50, send, rec, workers=2, timeout_s=30, name="t")
    loop.start()
    try:
        unsent = lambda: [r for r in rec.slots() if r["cause"] == openloop.UNSENT]  # noqa: E731
        until(
            lambda: len(unsent()) >= 10,
            "10 slots due while both workers block",
            timeout=30,
            interval=0.01,
        )
        n_unsent_blocked = len(unsent())
    finally:
        opened = time.time()
        gate.set()
    until(
        lambda: (
            sum(1 for r in rec.slots() if r["sched"] > opened + 0.1 and r["cause"] is None) >= 3
        ),
        "slots answered after the stall",
        timeout=30,
        interval=0.01,
    )
    loop.stop()
    lines = list(rec.lines)
    start = lines[0][1]
    assert start["event"] == "start" and start["workers"] == 2
    stop = lines[-1][1]
    assert stop["event"] == "stop"
    slots = sorted((r for _, r in lines if "k" in r), key=lambda r: r["k"])
    # every scheduled slot recorded exactly once, at its place on the grid
    assert [r["k"] for r in slots] == list(range(stop["scheduled"]))
    assert all(r["sched"] == pytest.approx(start["t0"] + r["k"] / 50, abs=1e-6) for r in slots)
    # a monotonic moment lands on the schedule (what a fault timed in another process uses)
    s = openloop.read_slots([start, *slots], 1.0)
    assert s.sched_of(start["t0_mono"] + 0.5) == pytest.approx(start["t0"] + 0.5, abs=1e-6)
    # the stall did not stop the schedule: slots due meanwhile were recorded on their time
    # as unsent failures, never sent late in a burst nor skipped
    assert n_unsent_blocked >= 10
    blocked = [r for r in slots if r["k"] >= 3 and r["cause"] is None and r["sched"] < opened - 0.1]
    assert len(blocked) == 2  # the two workers' slots, held until the gate opened
    for r in blocked:  # timed from their scheduled time, the whole stall included
        assert r["ms"] >= (opened - r["sched"]) * 1000 - 1
    first_unsent = min(r["k"] for r in slots if r["cause"] == openloop.UNSENT)
    assert first_unsent > max(r["k"] for r in blocked)
    assert len(rec.lines) == len(lines)  # nothing written after stop


def test_a_send_still_blocked_at_stop_is_a_timeout_and_writes_nothing_later():
    gate = threading.Event()
    rec = Recorder()
    loop = openloop.OpenLoop(
        20, lambda k: (gate.wait(30), {"cause": None})[1], rec, workers=1, timeout_s=0.2, name="t"
    )
    loop.start()
    until(lambda: rec.slots(), "a slot unsent behind the blocked one", timeout=30, interval=0.01)
    loop.stop()
    n = len(rec.lines)
    gate.set()  # the worker's send returns now, after stop: it must not write any more
    for t in threading.enumerate():
        if t.name == "t-0":
            t.join(10)
    assert len(rec.lines) == n
    s = openloop.summarize_slots(openloop.read_slots([r for _, r in rec.lines], 1))
    assert s["failed_by_cause"][openloop.TIMEOUT] == 1 and s["ok"] == 0
    assert s["scheduled"] == s["failed"] == s["failed_by_cause"].get(openloop.UNSENT, 0) + 1
    assert s["p50_ms"] >= 200  # unsent and timed out slots count at the timeout at least


def _stream(
    outcomes: Sequence[tuple[str | None, float | None]],
    timeout_s: float = 2.0,
    scheduled: int | None = None,
    **extra: Any,
) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = [
        {"event": "start", "t0": 1000.0, "rate_hz": 10, "timeout_s": timeout_s, "workers": 4}
    ]
    for k, (cause, ms) in enumerate(outcomes):
        if cause != "missing":
            recs.append({"k": k, "sched": 1000 + k / 10, "ms": ms, "cause": cause, **extra})
    recs.append({"event": "stop", "scheduled": scheduled or len(outcomes)})
    return list(reversed(recs))  # completion order is not k order


def test_summary_counts_every_slot_and_its_quantiles_include_failures():
    outcomes = (
        [(None, 10.0)] * 94
        + [("unsent", None)] * 2
        + [("timeout", 1900.0)]
        + [("http 429", 5.0), ("transport", 3.0), ("missing", None)]
    )
    s = openloop.summarize_slots(openloop.read_slots(_stream(outcomes), 99))
    assert (s["scheduled"], s["sent"], s["answered"], s["ok"], s["failed"]) == (100, 97, 95, 94, 6)
    assert s["failed_by_cause"] == {
        "unsent": 2,
        "timeout": 1,
        "http 429": 1,
        "transport": 1,
        "unrecorded": 1,
    }
    assert s["scheduled"] == s["ok"] + s["failed"]
    # a timeout at its timeout at least (2 s), unsent and unrecorded slots at the timeout
    assert (s["p50_ms"], s["p99_ms"], s["max_ms"]) == (10.0, 2000.0, 2000.0)
    assert s["open_loop"] and s["timeout_s"] == 2.0


def test_others_slos_fail_on_a_stall_the_old_summary_passed():
    stall = [(None, 20.0)] * 100 + [(None, 9000.0)] + [("unsent", None)] * 30
    b = bystander.summarize(_stream(stall, timeout_s=10, status=200))
    r = {x.name: x for x in slo.evaluate({"measurements": {"bystander": b}}, slo.SLOSpec())}
    assert b["p99_ms"] == 10_000 and b["failed_by_cause"] == {"unsent": 30}
    assert r["others-latency"].status == "fail" and "30 failed" in r["others-latency"].measured
    assert r["others-errors"].status == "fail" and "unsent 30" in r["others-errors"].measured
    assert r["others-throttling"].status == "pass"
    healthy = bystander.summarize(_stream([(None, 20.0)] * 2000 + [("http 500", 9.0)]))
    r = {x.name: x for x in slo.evaluate({"measurements": {"bystander": healthy}}, slo.SLOSpec())}
    assert r["others-errors"].status == "pass" and r["others-latency"].status == "pass"


def test_break_glass_latency_includes_its_failed_writes():
    writes = [(None, 30.0)] * 95 + [("timeout", 10_000.0)] * 5
    b = bystander.summarize(_stream(writes, timeout_s=10), bystander.BREAK_GLASS)
    r = {x.name: x for x in slo.evaluate({"measurements": {"break_glass": b}}, slo.SLOSpec())}
    assert b["p99_ms"] == 10_000 and r["break-glass"].status == "fail"
    assert "5 failed of 100; timeout 5" in r["break-glass"].measured


def test_dns_latency_counts_timeouts_and_unsent_lookups_at_the_timeout():
    lookups = [(None, 3.0)] * 97 + [("timeout", 4000.0), ("unsent", None), ("rcode SERVFAIL", 1.0)]
    d = dns.summarize(_stream(lookups, timeout_s=4, name="a.", rcode="NOERROR"))
    assert d["p99_ms"] == 4000 and d["failed"] == 3 and d["error_rate"] == 0.03
    assert d["by_name"] == {"a.": {"scheduled": 100, "failed": 3}}
    assert sum(b["qps"] * 5 for b in d["timeseries"]) == 100
    r = {x.name: x for x in slo.evaluate({"measurements": {"dns": d}}, slo.SLOSpec())}
    assert r["dns-latency-p99"].status == "fail" and r["dns-errors"].status == "fail"
    assert r["dns-latency-p50"].status == "pass"


def test_closed_loop_records_of_before_are_read_one_slot_each():
    old = [{"t": 1000.0 + i, "ms": 5.0, "status": 200 if i else 0} for i in range(10)]
    b = bystander.summarize(old)
    assert not b["open_loop"] and b["scheduled"] == 10
    assert b["failed_by_cause"] == {"transport": 1}


def test_loadtest_summarize_rebuilds_the_probes_from_their_raw_streams(tmp_path, recorded):
    import json

    from loadtest.cli.main import main
    from loadtest.run.record import read_summary

    raw = tmp_path / "raw"
    raw.mkdir()
    streams = {
        "apiserver": recorded("apiserver-telemetry-v2.jsonl.gz"),
        "bystander": _stream([(None, 20.0)] * 40 + [("unsent", None)] * 10, 10, status=200),
        "break_glass": _stream([(None, 30.0)] * 50, 10, status=200),
        "dns": _stream(
            [(None, 2.0)] * 45 + [("timeout", 4000.0)] * 5, 4, name="a.", rcode="NOERROR"
        ),
    }
    for name, recs in streams.items():
        (raw / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["summarize", str(tmp_path)]) == 0
    m = read_summary(tmp_path)["measurements"]
    assert (m["bystander"]["scheduled"], m["bystander"]["failed_by_cause"]) == (50, {"unsent": 10})
    assert m["break_glass"]["failed"] == 0 and m["break_glass"]["open_loop"]
    assert m["dns"]["failed"] == 5 and m["dns"]["p99_ms"] == 4000
