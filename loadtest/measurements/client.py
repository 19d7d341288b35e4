"""The agents' own view: Locust's per-request stats and the agents' watch counters."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from loadtest.measurements.base import MeasurementSummary, Num, Row


class ClientRow(Row):
    """One Locust request name's counts and latency."""

    name: str = ""
    requests: int = 0
    failures: int = 0
    p50_ms: Num | None = None
    p99_ms: Num | None = None
    avg_bytes: Num | None = None


class AgentCounters(Row):
    """The agents' own counters, merged over the agents (agents.merged.json)."""

    agents_to_sync: int = 0
    agents_synced: int = 0
    throttled_429: int = 0
    bytes: dict[str, Num] = {}
    requests: dict[str, Num] = {}


class ClientSummary(MeasurementSummary):
    """What `summarize` returns."""

    requests: int = 0
    failures: int = 0
    by_name: list[ClientRow] = []
    agents: AgentCounters = Field(default_factory=AgentCounters)


def summarize(agent_dir: Path) -> dict[str, Any]:
    """From Locust's CSV and the merged agent counters in `agent_dir` (pure file reading)."""
    stats = agent_dir / "locust_stats.csv"
    if not stats.exists():
        return {"error": f"no Locust stats in {agent_dir}"}
    rows = []
    with stats.open() as f:
        for r in csv.DictReader(f):
            if r["Name"] == "Aggregated":
                continue
            rows.append(
                {
                    "type": r["Type"],
                    "name": r["Name"],
                    "requests": int(r["Request Count"]),
                    "failures": int(r["Failure Count"]),
                    "p50_ms": _num(r.get("50%")),
                    "p99_ms": _num(r.get("99%")),
                    "max_ms": _num(r.get("Max Response Time")),
                    "avg_bytes": _num(r.get("Average Content Size")),
                }
            )
    merged = agent_dir / "agents.merged.json"
    return {
        "requests": sum(r["requests"] for r in rows),
        "failures": sum(r["failures"] for r in rows),
        "by_name": rows,
        "agents": json.loads(merged.read_text()) if merged.exists() else {},
    }


def timeseries(agent_dir: Path) -> list[dict[str, Any]]:
    """Locust's full history: users and request/failure rates over time, for plots."""
    hist = agent_dir / "locust_stats_history.csv"
    if not hist.exists():
        return []
    out = []
    with hist.open() as f:
        for r in csv.DictReader(f):
            if r["Name"] != "Aggregated":
                continue
            out.append(
                {
                    "timestamp": int(r["Timestamp"]),
                    "users": int(r["User Count"]),
                    "rps": _num(r["Requests/s"]),
                    "fails_s": _num(r["Failures/s"]),
                    "p99_ms": _num(r.get("99%")),
                }
            )
    return out


def _num(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "", "N/A") else None
    except ValueError:
        return None
