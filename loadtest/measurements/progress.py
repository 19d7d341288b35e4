"""Live progress while agents run: one line every few seconds, from files already written.

Locust's full CSV history (a row per request name every second or so; its percentiles are
"current": the last ~10 s), the agents' counter file (rewritten every few seconds) and the
API server's raw scrape stream are tailed; nothing imports locust, nothing asks the API
server anything more.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

from loadtest.measurements import metrics
from loadtest.measurements.base import Ticker


def locust_now(history: Path) -> tuple[int, dict[str, dict[str, str]]]:
    """(user count, latest row per request name) from Locust's CSV history; a torn last
    line (the file is being written) is skipped."""
    try:
        text = history.read_text()
    except OSError:
        return 0, {}
    latest: dict[str, dict[str, str]] = {}
    users = 0
    header, *lines = text.splitlines() or [""]
    for row in csv.DictReader(io.StringIO("\n".join([header, *lines[-400:]]))):
        if row.get("Total Average Content Size") is None:
            continue  # torn
        latest[row["Name"]] = row
        if row["Name"] == "Aggregated":
            users = int(row["User Count"] or 0)
    return users, latest


def agents_now(out_dir: Path) -> dict[str, int]:
    """Agents started and synced, summed over the per-process counter files."""
    total = {"agents_started": 0, "agents_synced": 0, "throttled_429": 0}
    for f in out_dir.glob("agents*.json"):
        if f.name == "agents.merged.json":
            continue
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        for k in total:
            total[k] += int(d.get(k) or 0)
    return total


class ApiserverTail:
    """The few series the progress line needs, kept up to date from the raw stream."""

    def __init__(self, raw: Path) -> None:
        self.raw = raw
        self.offset = 0
        self.state: dict[str, float] = {}
        self.prev: tuple[float, float] | None = None  # (t, cpu seconds) one scrape back
        self.last: tuple[float, float] | None = None

    def update(self) -> dict[str, float | None]:
        try:
            with self.raw.open() as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            chunk = ""
        complete = chunk[: chunk.rfind("\n") + 1]
        self.offset += len(complete.encode())
        for line in complete.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            rows = rec.get("changed") or rec.get("samples") or []
            for name, labels, v in rows:
                key = _key(name, dict(labels))
                if key:
                    self.state[key] = v
            if "t" in rec and "error" not in rec:
                self.prev, self.last = self.last, (rec["t"], self.state.get("cpu", 0.0))
        cores = None
        if self.prev and self.last and self.last[0] > self.prev[0]:
            used = metrics.increase(self.prev[1], self.last[1])  # a restart starts it over
            cores = used / (self.last[0] - self.prev[0])
        return {
            "cores": cores,
            "rss": self.state.get("rss"),
            "http_429": sum(v for k, v in self.state.items() if k.startswith("code=429")),
        }


def _key(name: str, labels: dict[str, str]) -> str | None:
    if name == "process_cpu_seconds_total":
        return "cpu"
    if name == "process_resident_memory_bytes":
        return "rss"
    if name == "apiserver_request_total" and labels.get("code") == "429":
        return "code=429 " + " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return None


def line(
    users: int,
    rows: dict[str, dict[str, str]],
    agents: dict[str, int],
    api: dict[str, float | None],
    elapsed: float,
) -> str:
    """One progress line (pure)."""
    agg = rows.get("Aggregated", {})
    p99 = [
        f"{n} {_ms(r.get('99%'))}"
        for n, r in sorted(rows.items())
        if n != "Aggregated"
        and not n.startswith("WATCH")
        and r.get("99%") not in (None, "", "N/A", "0")
    ]  # 0: none in Locust's current window
    parts = [
        f"load {elapsed:.0f}s: {users} agents running, {agents['agents_synced']} synced",
        f"{float(agg.get('Requests/s') or 0):.1f} req/s",
        f"{agg.get('Total Failure Count') or 0} failed",
        f"429s {api['http_429']:.0f} (API server), {agents['throttled_429']} (agents)",
    ]
    cores, rss = api.get("cores"), api.get("rss")
    if cores is not None:
        parts.append(f"API server {cores:.2f} cores")
    if rss:
        parts.append(f"{rss / 2**20:.0f} MiB")
    if p99:
        parts.append("p99 now: " + ", ".join(p99))
    return "; ".join(parts)


def _ms(text: str | None) -> str:
    v = float(text or 0)
    return f"{v / 1000:.2g}s" if v >= 1000 else f"{v:.0f}ms"


class Progress:
    """Prints `line` every `interval` seconds while started."""

    def __init__(
        self, agents_dir: Path, raw: Path, log: Callable[[str], None], interval: float = 5.0
    ) -> None:
        self.agents_dir = agents_dir
        self.api = ApiserverTail(raw)
        self.log = log
        self.t0 = time.monotonic()
        self._ticker = Ticker(interval, self._tick, "progress")
        self._first = True

    def start(self) -> Progress:
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop(timeout=5)

    def _tick(self) -> None:
        if self._first:  # nothing to say at t=0
            self._first = False
            return
        try:
            users, rows = locust_now(self.agents_dir / "locust_stats_history.csv")
            self.log(
                line(
                    users,
                    rows,
                    agents_now(self.agents_dir),
                    self.api.update(),
                    time.monotonic() - self.t0,
                )
            )
        except Exception as e:  # noqa: BLE001 - progress must never break a run
            self.log(f"progress: {type(e).__name__}: {e}")
