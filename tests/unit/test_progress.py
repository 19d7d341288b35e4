"""Live progress: read from the files a run writes as it goes (recorded ones here)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from loadtest.measurements import progress

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def test_locust_history_gives_users_and_current_p99_by_name(tmp_path: Path) -> None:
    hist = tmp_path / "h.csv"
    shutil.copy(FIX / "runs/telemetry-v2/agents/locust_stats_history.csv", hist)
    with hist.open("a") as f:
        f.write("1795733999,50,LIST,LIST pods [clu")  # torn: being written
    users, rows = progress.locust_now(hist)
    assert users == 50 and "LIST pods [cluster]" in rows
    text = progress.line(
        users,
        rows,
        {"agents_synced": 49, "throttled_429": 3, "agents_started": 50},
        {"cores": 1.234, "rss": 512 * 2**20, "http_429": 7},
        42,
    )
    assert text.startswith("load 42s: 50 agents running, 49 synced")
    assert "429s 7 (API server), 3 (agents)" in text and "1.23 cores" in text
    assert "512 MiB" in text and "LIST pods [cluster]" in text and "WATCH" not in text


def test_apiserver_tail_reads_only_complete_new_lines(tmp_path: Path) -> None:
    raw = tmp_path / "apiserver.jsonl"
    with gzip.open(FIX / "apiserver-telemetry-v2.jsonl.gz", "rt") as f:
        lines = f.read().splitlines()
    tail = progress.ApiserverTail(raw)
    raw.write_text("\n".join(lines[:3]) + "\n" + lines[3][:50])
    first = tail.update()
    assert first["rss"] and first["cores"] is not None and first["cores"] >= 0
    with raw.open("w") as f:  # the torn line completed, more appended
        f.write("\n".join(lines[:12]) + "\n")
    later = tail.update()
    assert later["cores"] is not None and tail.offset == raw.stat().st_size


def test_a_restarted_api_server_reads_as_cpu_used_not_negative(tmp_path: Path) -> None:
    """Its CPU counter starts over: what it used since then counts (measured on kind: the
    line read -25.63 cores after an OOM kill)."""
    raw = tmp_path / "apiserver.jsonl"
    rows = [(0.0, 30.0), (5.0, 32.5), (10.0, 0.5)]  # (t, process_cpu_seconds_total)
    raw.write_text(
        "".join(
            json.dumps({"t": t, "samples": [["process_cpu_seconds_total", [], cpu]]}) + "\n"
            for t, cpu in rows
        )
    )
    assert progress.ApiserverTail(raw).update()["cores"] == 0.5 / 5


def test_agents_counters_summed_over_processes(tmp_path: Path) -> None:
    for i, synced in enumerate((3, 4)):
        (tmp_path / f"agents.{i}.json").write_text(
            json.dumps({"agents_started": 5, "agents_synced": synced, "throttled_429": 1})
        )
    (tmp_path / "agents.merged.json").write_text(json.dumps({"agents_synced": 100}))
    (tmp_path / "agents.9.json").write_text("{torn")
    assert progress.agents_now(tmp_path) == {
        "agents_started": 10,
        "agents_synced": 7,
        "throttled_429": 2,
    }
