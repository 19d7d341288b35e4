"""Versioned run results, written as the run goes so a crash keeps what was measured.

A results folder holds raw/*.jsonl (one JSON object per line, flushed per line), Locust's
CSV/HTML, and summary.json (versioned, with an environment fingerprint). The summary can be
rebuilt from the raw streams at any time.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from loadtest import processes, toolchain
from loadtest.errors import ConfigError

# The fields of `environment()` that must match for two runs (or figures) to be comparable;
# the commit, its dirtiness and the load are reported beside them, not required to match.
COMPARABLE = ("host", "cpus", "memory_gib", "platform", "python")


def environment() -> dict[str, Any]:
    """Where a run or benchmark happened, so results from different machines are never
    compared blindly and a figure can be traced to what produced it."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, cwd=toolchain.REPO_ROOT, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gib": round(processes.memory_total_bytes() / 2**30, 1),
        "platform": platform.platform(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "tools": toolchain.versions(),
    }


class JsonlWriter:
    """Append-only JSON lines, flushed per record; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f: TextIO = path.open("a")
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()

    def close(self) -> None:
        with self._lock:
            self._f.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a stream; a torn last line (a crash mid-write) is skipped, not fatal."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def run_label(profile: str) -> str:
    """What a run's folder is named after: the profile, a file by its name (a path as the
    label made nested folders: `<time>-/tmp/x/hammer.yaml/`)."""
    return Path(profile).stem if "/" in profile or profile.endswith((".yaml", ".yml")) else profile


def new_run_dir(root: Path, label: str = "") -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    label = run_label(label)
    d = root / (f"{stamp}-{label}" if label else stamp)
    (d / "raw").mkdir(parents=True, exist_ok=True)
    return d


def latest_run(root: Path, profile: str) -> Path:
    """The newest run of `profile` under `root` (run folders start with a UTC timestamp)."""
    runs = sorted(d for d in root.glob(f"*-{run_label(profile)}") if (d / "summary.json").exists())
    if not runs:
        raise ConfigError(
            f"no run of profile {profile!r} in {root}/: run `make loadtest "
            f"PROFILE={profile}` (or give --from RESULTS)"
        )
    return runs[-1]
