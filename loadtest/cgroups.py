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


def _group(name: str) -> tuple[Path, str, str]:
    """(cgroup directory, limit file, OOM-events file) for this machine's hierarchy."""
    if (ROOT / "cgroup.controllers").exists():  # v2, unified
        return ROOT / f"loadtest-{name}", "memory.max", "memory.events"
    return ROOT / "memory" / f"loadtest-{name}", "memory.limit_in_bytes", "memory.oom_control"


def cap(name: str, pids: list[int], limit: int) -> Path:
    """Put `pids` in a cgroup of their own limited to `limit` bytes of memory (no swap)."""
    d, limit_file, _ = _group(name)
    try:
        d.mkdir(exist_ok=True)
        (d / limit_file).write_text(str(limit))
        swap = d / ("memory.swap.max" if limit_file == "memory.max"
                    else "memory.memsw.limit_in_bytes")
        if swap.exists():
            swap.write_text("0" if limit_file == "memory.max" else str(limit))
        for pid in pids:
            (d / "cgroup.procs").write_text(str(pid))
    except OSError as e:
        raise ClusterError(f"cannot limit memory through {d}: {e.strerror} (needs root and the "
                           "cgroup memory controller)") from e
    return d


def oom_kills(name: str) -> int | None:
    """How many processes the kernel's OOM killer took in the group (None: no group)."""
    d, _, events = _group(name)
    try:
        text = (d / events).read_text()
    except OSError:
        return None
    m = re.search(r"^oom_kill (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


def remove(name: str) -> None:
    d, _, _ = _group(name)
    with contextlib.suppress(OSError):
        d.rmdir()  # only once empty; the caller has stopped the processes
