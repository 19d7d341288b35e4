"""The measurement protocol, and a periodic sampler for scrapes (not for latency probes:
those are open-loop, see openloop.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    model_serializer,
    model_validator,
)

# A recorded number: int | float so that a count written as 3 is read back as 3, not 3.0.
Num = int | float


class _KeyOrder(tuple[str, ...]):
    """How a model's keys were ordered when read: it decides how they are written, not
    what the model holds, so two models differing only in it are equal (as dicts are)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, tuple)

    __hash__ = tuple.__hash__


class InOrder(BaseModel):
    """A model written back with its keys in the order they were read (typed fields would
    otherwise come first), so a record read and rewritten is the same file."""

    _order: tuple[str, ...] = _KeyOrder()

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        row = handler(data)
        if isinstance(data, dict) and isinstance(row, InOrder):
            row._order = _KeyOrder(data)
        return row

    @model_serializer(mode="wrap")
    def _in_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        d = handler(self)
        return {**{k: d[k] for k in self._order if k in d}, **d}


class Row(InOrder):
    """A part of a recorded summary: the fields its readers use are typed, anything else
    the module wrote is kept as it is (so the JSON stays the module's own)."""

    model_config = ConfigDict(extra="allow")


class MeasurementSummary(Row):
    """One measurement's summary in the run record; `error` says why it has nothing else."""

    error: str | None = None


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
