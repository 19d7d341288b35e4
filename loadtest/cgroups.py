"""A memory limit on processes, through the kernel's cgroup memory controller (v2 or v1).

A real control plane runs in a fixed amount of memory; this machine has far more than the
inventories seeded here would need. Capping the API server is how the harness gives it a
control plane's budget, so that a LIST storm ends as it does in production: the kernel's
OOM killer, not an endless swap-free machine. Needs root (or a delegated cgroup).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import NamedTuple

from loadtest.errors import ClusterError

ROOT = Path("/sys/fs/cgroup")
UNITS = {"": 1, "k": 2**10, "ki": 2**10, "m": 2**20, "mi": 2**20, "g": 2**30, "gi": 2**30}


def parse_bytes(text: str) -> int:
    """'2Gi', '1500M', '1073741824' -> bytes; a one-line error otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?)?\s*", text)
    if not m:
        raise ClusterError(f"memory limit {text!r}: expected a size such as 2Gi or 1500Mi")
    n = int(float(m.group(1)) * UNITS[(m.group(2) or "").lower()])
    if n < 64 * 2**20:
        raise ClusterError(f"memory limit {text!r} is below 64Mi: no API server starts in it")
    return n


class _Group(NamedTuple):
    dir: Path
    limit: str  # file names inside dir
    events: str  # holds "oom_kill N"
    peak: str


def _group(name: str) -> _Group:
    """The group's directory and files in this machine's hierarchy."""
    if (ROOT / "cgroup.controllers").exists():  # v2, unified
        return _Group(ROOT / f"loadtest-{name}", "memory.max", "memory.events", "memory.peak")
    return _Group(ROOT / "memory" / f"loadtest-{name}", "memory.limit_in_bytes",
                  "memory.oom_control", "memory.max_usage_in_bytes")


def cap(name: str, limit: int) -> Path:
    """A cgroup of its own limited to `limit` bytes of memory (no swap); its directory."""
    g = _group(name)
    d, limit_file = g.dir, g.limit
    try:
        d.mkdir(exist_ok=True)
        (d / limit_file).write_text(str(limit))
        swap = d / ("memory.swap.max" if limit_file == "memory.max"
                    else "memory.memsw.limit_in_bytes")
        if swap.exists():
            swap.write_text("0" if limit_file == "memory.max" else str(limit))
    except OSError as e:
        raise ClusterError(f"cannot limit memory through {d}: {e.strerror} (needs root and the "
                           "cgroup memory controller)") from e
    return d


def launcher(name: str, binary: Path, script: Path) -> Path:
    """Write `script`: it enters the group, then execs `binary` with its arguments, so the
    process is charged from its first page. Moving it in later would leave what it already
    holds charged outside (v2, and v1 kernels that dropped move_charge_at_immigrate): the
    budget would be larger than stated."""
    procs = _group(name).dir / "cgroup.procs"
    script.write_text(f'#!/bin/sh\necho $$ > "{procs}" || exit 1\nexec "{binary}" "$@"\n')
    script.chmod(0o755)
    return script


def oom_kills(name: str) -> int | None:
    """How many processes the kernel's OOM killer took in the group (None: no group)."""
    g = _group(name)
    try:
        text = (g.dir / g.events).read_text()
    except OSError:
        return None
    m = re.search(r"^oom_kill (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


def reset_peak(name: str) -> None:
    """Start the group's peak usage over from now, so a run's peak is its own (v1 can; v2's
    memory.peak is the group's lifetime peak on kernels before 6.12)."""
    g = _group(name)
    with contextlib.suppress(OSError):
        (g.dir / g.peak).write_text("0")


def peak(name: str) -> int | None:
    """The most memory the group held (bytes) since creation or the last reset_peak; None
    when the group or the counter is missing. Charged pages, i.e. what the limit applies to
    (a process's RSS can read higher: file pages charged to the group that read them first).
    """
    g = _group(name)
    try:
        return int((g.dir / g.peak).read_text())
    except (OSError, ValueError):
        return None


def remove(name: str) -> None:
    with contextlib.suppress(OSError):
        _group(name).dir.rmdir()  # only once empty; the caller has stopped the processes
