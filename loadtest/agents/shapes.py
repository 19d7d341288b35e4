"""Load shapes as data (pure): parsed here, driven by Locust in locust_user."""

from __future__ import annotations

from loadtest.errors import ConfigError


def parse_steps(text: str) -> list[tuple[int, float]]:
    """'100:60,200:60' -> [(100, 60.0), (200, 60.0)]; bad text is a one-line error."""
    steps = []
    for part in filter(None, (x.strip() for x in text.split(","))):
        users, sep, secs = part.partition(":")
        try:
            steps.append((int(users), float(secs)))
        except ValueError:
            raise ConfigError(f"bad --steps entry {part!r}: expected AGENTS:SECONDS") from None
        if not sep or steps[-1][0] < 0 or steps[-1][1] <= 0:
            raise ConfigError(f"bad --steps entry {part!r}: expected AGENTS:SECONDS, both positive")
    return steps


def rollout_users(total: int, rate: float, elapsed: float) -> int:
    """A DaemonSet rollout: agents join at `rate` per second until all `total` have joined."""
    if rate <= 0:
        raise ConfigError(f"rollout ramp rate must be positive, not {rate:g}")
    return min(total, int(rate * max(elapsed, 0.0)))


def rollout_tick(
    total: int, rate: float, elapsed: float, run_time: float
) -> tuple[int, float] | None:
    """Locust's shape tick for a rollout: (users now, spawn rate), or None once the run is over.
    The spawn rate is the ramp rate, so Locust reaches each second's target within it."""
    if run_time and elapsed > run_time:
        return None
    return rollout_users(total, rate, elapsed), rate
