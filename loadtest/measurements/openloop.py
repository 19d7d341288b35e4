"""Open-loop probing: slot k is sent at t0 + k/rate whatever the answers (as wrk2 does).

A closed loop (send, await the answer, send the next) hides a stall: a 10 s hang becomes one
slow sample and a burst of fast catch-up ones (Gil Tene's coordinated omission). Here:
- every slot is due at t0 + k/rate; a pool of `workers` threads sends them, and a slot due
  while every worker is busy is recorded at once as failed, cause "unsent": never skipped,
  never queued behind the stall;
- latency runs from the slot's scheduled time to its answer (HdrHistogram's corrected
  mode), however late it was sent;
- a timeout is a failure and counts at least at the timeout in the quantiles; so do unsent
  slots and slots whose record is missing (the probe was killed): "unrecorded".

The raw stream, one JSON object a line: {"event": "start", "t0", "t0_mono", "rate_hz",
"timeout_s", "workers", ...}; per slot {"k", "sched" (wall-clock scheduled time), "lag_ms"
(scheduled to sent), "ms" (scheduled to done), "cause" (null: success), ...the probe's own
fields}; {"event": "stop", "scheduled"}. Slot records arrive in completion order, not k order.
The schedule runs on the monotonic clock; "sched" is t0 + k/rate, so a wall-clock step during
a run does not move it. "t0_mono" (the machine's monotonic clock at t0) places an event timed
on that clock by another process on the schedule: `Slots.sched_of`.
"""

from __future__ import annotations

import argparse
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.measurements.base import MeasurementSummary, Num
from loadtest.stats import percentile

# Failure causes besides the probe's own "http <status>" and "rcode <rcode>" (answered).
TIMEOUT, TRANSPORT, UNSENT = "timeout", "transport", "unsent"
UNRECORDED, PROBE_ERROR = "unrecorded", "probe-error"
NOT_ANSWERED = frozenset({TIMEOUT, TRANSPORT, UNSENT, UNRECORDED, PROBE_ERROR})

Record = dict[str, Any]


def pool_size(rate_hz: float, timeout_s: float) -> int:
    """Workers enough that no slot is left unsent while requests are still within their
    timeout (Little's law: rate x timeout in flight, plus the slot being sent). Sized for the
    SLO threshold instead, a 1.4 s stall under a 1 s SLO left slots unsent and recorded them
    at the 10 s timeout (CI, stop 14): the pool, not the server, made those failures."""
    return math.ceil(rate_hz * timeout_s) + 1


def add_probe_args(
    ap: argparse.ArgumentParser, rate_hz: float, timeout_s: float, timeout_help: str = ""
) -> None:
    """The arguments every open-loop probe process takes: its schedule, its bound, its file."""
    ap.add_argument("--rate", type=float, default=rate_hz, help="slots per second")
    ap.add_argument("--timeout", type=float, default=timeout_s, help=timeout_help or None)
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="requests in flight at most (0: enough for answers within the timeout)",
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-s", type=float, default=6 * 3600, help="stop after this long")


class OpenLoop:
    """Sends slot k at t0 + k/rate through `send(k)` on a bounded pool until stopped, and
    writes one record per slot (see the module docstring). `send` returns the probe's fields
    with "cause" (None: success) and must give up by itself after about `timeout_s`;
    `describe(k)` adds fields known before sending (so unsent slots carry them too)."""

    def __init__(
        self,
        rate_hz: float,
        send: Callable[[int], Record],
        write: Callable[[Record], None],
        *,
        workers: int,
        timeout_s: float,
        describe: Callable[[int], Record] | None = None,
        info: Record | None = None,
        name: str = "probe",
    ) -> None:
        if rate_hz <= 0 or workers < 1 or timeout_s <= 0:
            raise ValueError(
                f"{name}: rate, workers and timeout must be positive "
                f"(got {rate_hz}, {workers}, {timeout_s})"
            )
        self.period = 1.0 / rate_hz
        self.rate_hz, self.workers, self.timeout_s = rate_hz, workers, timeout_s
        self.send, self.write = send, write
        self.describe = describe or (lambda k: {})
        self.info = info or {}
        self._free = threading.Semaphore(workers)
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight: set[int] = set()
        self._stop = threading.Event()
        self._scheduled = 0
        self._t0 = self._t0_wall = 0.0
        self._dispatcher = threading.Thread(
            target=self._dispatch, name=f"{name}-schedule", daemon=True
        )
        self._pool = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        self._t0, self._t0_wall = time.monotonic(), time.time()
        self.write(
            {
                "event": "start",
                "t0": self._t0_wall,
                "t0_mono": self._t0,
                "rate_hz": self.rate_hz,
                "timeout_s": self.timeout_s,
                "workers": self.workers,
                **self.info,
            }
        )
        for t in self._pool:
            t.start()
        self._dispatcher.start()

    def stop(self) -> None:
        """Schedule no more; wait up to the timeout (+1 s) for the slots in flight, then record
        any still unanswered as timeouts. Nothing is written after this returns."""
        if self._dispatcher.ident is None:
            return  # never started
        self._stop.set()
        self._dispatcher.join()
        with self._idle:
            self._idle.wait_for(lambda: not self._inflight, self.timeout_s + 1)
            left, now = sorted(self._inflight), time.monotonic()
            self._inflight.clear()
            for k in left:
                self.write(
                    {
                        **self._slot(k),
                        "lag_ms": None,
                        "ms": (now - self._due(k)) * 1000,
                        "cause": TIMEOUT,
                        "detail": "no answer by the end of the run",
                    }
                )
            self.write({"event": "stop", "scheduled": self._scheduled})
        for _ in self._pool:
            self._queue.put(None)  # a worker stuck in `send` is a daemon: left behind

    def _due(self, k: int) -> float:
        return self._t0 + k * self.period

    def _slot(self, k: int) -> Record:
        return {"k": k, "sched": self._t0_wall + k * self.period, **self.describe(k)}

    def _dispatch(self) -> None:
        k = 0
        while not self._stop.wait(max(0.0, self._due(k) - time.monotonic())):
            if self._free.acquire(blocking=False):
                with self._lock:
                    self._inflight.add(k)
                self._queue.put(k)
            else:
                self.write({**self._slot(k), "lag_ms": None, "ms": None, "cause": UNSENT})
            k += 1
            self._scheduled = k

    def _work(self) -> None:
        while (k := self._queue.get()) is not None:
            sent = time.monotonic()
            try:
                rec = self.send(k)
            except Exception as e:  # noqa: BLE001 - a probe bug: its slot counts, apart from the server's
                rec = {"cause": PROBE_ERROR, "detail": f"{type(e).__name__}: {e}"}
            done, due = time.monotonic(), self._due(k)
            with self._idle:
                if k in self._inflight:  # else `stop` has recorded it already
                    self._inflight.discard(k)
                    self.write(
                        {
                            **self._slot(k),
                            "cause": None,
                            **rec,
                            "lag_ms": (sent - due) * 1000,
                            "ms": (done - due) * 1000,
                        }
                    )
                    self._idle.notify_all()
            self._free.release()


@dataclass
class Slots:
    """Every scheduled slot of a raw stream, k = 0..scheduled-1, missing ones filled in."""

    slots: list[Record]
    timeout_ms: float
    start: Record

    def value_ms(self, r: Record) -> float:
        """What a slot counts as in the quantiles: its latency from schedule; the timeout at
        least for a timeout; the timeout for a slot never sent or never recorded."""
        if r.get("ms") is None or r["cause"] in (UNSENT, UNRECORDED):
            return self.timeout_ms
        return max(r["ms"], self.timeout_ms) if r["cause"] == TIMEOUT else r["ms"]

    def failed(self) -> list[Record]:
        return [r for r in self.slots if r["cause"] is not None]

    def sched_of(self, t_mono: float) -> float:
        """A moment on this machine's monotonic clock as a scheduled time of this stream. A
        fault timed with time.time() is off by any wall-clock step since the probe started (a
        VM paused, its clock set)."""
        return float(self.start["t0"]) + t_mono - float(self.start["t0_mono"])


def read_slots(records: Iterable[Record], timeout_s: float) -> Slots:
    """The slots of a raw stream (pure). `timeout_s` applies when the stream has no start
    record (one recorded before scheduled times, converted by the probe's module)."""
    records = list(records)
    start = next((r for r in records if r.get("event") == "start"), {})
    by_k: dict[int, Record] = {}
    for r in records:
        if "k" in r:
            by_k.setdefault(r["k"], r)
    scheduled = max(
        [r["scheduled"] for r in records if r.get("event") == "stop"] + [max(by_k, default=-1) + 1]
    )
    period = 1.0 / start["rate_hz"] if start else 0.0
    slots = [
        by_k.get(k)
        or {
            "k": k,
            "sched": start.get("t0", 0.0) + k * period,
            "lag_ms": None,
            "ms": None,
            "cause": UNRECORDED,
        }
        for k in range(scheduled)
    ]
    return Slots(slots, 1000 * start.get("timeout_s", timeout_s), start)


class OpenLoopSummary(MeasurementSummary):
    """An open-loop probe's summary as recorded (what `summarize_slots` returns; DNS, the
    bystander and break-glass add their own fields)."""

    open_loop: bool | None = None
    scheduled: int = 0
    sent: int = 0
    answered: int = 0
    ok: int = 0
    failed: int = 0
    failed_by_cause: dict[str, int] = {}
    p50_ms: Num | None = None
    p99_ms: Num | None = None
    max_ms: Num | None = None
    timeout_s: Num | None = None
    workers: int | None = None


def summarize_slots(s: Slots) -> Record:
    """Counts by outcome and quantiles over all scheduled slots, failures included (pure).
    scheduled = ok + failed = sent + unsent + unrecorded; answered = ok + http/rcode
    failures."""
    causes = tally(r["cause"] for r in s.failed())
    values = [s.value_ms(r) for r in s.slots]
    n = len(s.slots)
    return {
        "open_loop": bool(s.start),  # False: recorded by the closed-loop probe of before
        "scheduled": n,
        "sent": n - causes.get(UNSENT, 0) - causes.get(UNRECORDED, 0),
        "answered": sum(1 for r in s.slots if r["cause"] not in NOT_ANSWERED),
        "ok": n - len(s.failed()),
        "failed": len(s.failed()),
        "failed_by_cause": causes,
        "p50_ms": percentile(values, 0.5),
        "p99_ms": percentile(values, 0.99),
        "max_ms": max(values, default=None),
        "timeout_s": s.timeout_ms / 1000,
        "workers": s.start.get("workers"),
    }


def tally(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out
