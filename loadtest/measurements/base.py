"""The measurement protocol, and a periodic sampler for scrapes (not for latency probes:
those are open-loop, see openloop.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class Measurement(Protocol):
    """Started before the load, gathered after it; gather stops it and summarizes."""

    name: str

    def start(self) -> None: ...

    def gather(self) -> dict[str, Any]: ...


class Ticker:
    """Calls `tick` every `interval` seconds on a daemon thread until stopped; the work of a
    tick that overruns delays the next one instead of piling up. Closed-loop: right for
    sampling state (a metrics scrape), wrong for timing requests (a stall would hide)."""

    def __init__(self, interval: float, tick: Callable[[], None], name: str) -> None:
        self.interval = interval
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.tick()
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
