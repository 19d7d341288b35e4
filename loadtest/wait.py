"""Polling against a deadline: never a bare sleep, and a timeout says what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from loadtest.errors import LoadtestError

T = TypeVar("T")


class WaitTimeout(LoadtestError):
    """A condition did not hold before its deadline."""


def until(check: Callable[[], T | None], what: str, timeout: float, interval: float = 0.25) -> T:
    """Call `check` until it returns a truthy value; exceptions count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last: str = "condition false"
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - any failure is 'not yet'; the last one is shown
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what} ({last})")
        time.sleep(interval)
