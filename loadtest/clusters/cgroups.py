"""Memory and CPU limits on processes, through the kernel's cgroup controllers (v2 or v1).

A real control plane runs in a fixed amount of memory; this machine has far more than the
inventories seeded here would need. Capping the API server is how the harness gives it a
control plane's budget, so that a LIST storm ends as it does in production: the kernel's
OOM killer, not an endless swap-free machine. A CPU quota (v2 cpu.max, v1 CFS quota) gives
it a control plane's cores, so a capacity measured here can be set against another one.
Needs root (or a delegated cgroup).
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


def _v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()  # unified hierarchy


def _group(name: str | Path) -> _Group:
    """The memory group's directory and files in this machine's hierarchy: ours by name, or
    any group by its directory (one another manager made, e.g. a kubelet's pod group)."""
    if _v2():
        d = name if isinstance(name, Path) else ROOT / f"loadtest-{name}"
        return _Group(d, "memory.max", "memory.events", "memory.peak")
    d = name if isinstance(name, Path) else ROOT / "memory" / f"loadtest-{name}"
    return _Group(d, "memory.limit_in_bytes", "memory.oom_control", "memory.max_usage_in_bytes")


def memory_group_of(pid: int) -> Path | None:
    """The memory group directory a process is in (None: gone, or no memory controller)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    v2 = _v2()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if v2 and controllers == "":
            return ROOT / path.lstrip("/")
        if "memory" in controllers.split(","):
            return ROOT / "memory" / path.lstrip("/")
    return None


def memory_limit(name: str | Path) -> int | None:
    """The group's memory limit in bytes (None: no group, or unlimited)."""
    g = _group(name)
    try:
        text = (g.dir / g.limit).read_text().strip()
    except OSError:
        return None
    # v2 says "max"; v1 says a page-rounded LONG_MAX
    return None if text == "max" or int(text) >= 2**62 else int(text)


def cap(name: str, limit: int) -> Path:
    """A cgroup of its own limited to `limit` bytes of memory (no swap); its directory."""
    g = _group(name)
    d, limit_file = g.dir, g.limit
    try:
        d.mkdir(exist_ok=True)
        (d / limit_file).write_text(str(limit))
        swap = d / (
            "memory.swap.max" if limit_file == "memory.max" else "memory.memsw.limit_in_bytes"
        )
        if swap.exists():
            swap.write_text("0" if limit_file == "memory.max" else str(limit))
    except OSError as e:
        raise ClusterError(
            f"cannot limit memory through {d}: {e.strerror} (needs root and the "
            "cgroup memory controller)"
        ) from e
    return d


PERIOD_US = 100_000


def parse_cores(text: str) -> float:
    """'0.5', '1.5' -> cores; a one-line error otherwise."""
    try:
        cores = float(text)
    except ValueError:
        raise ClusterError(f"CPU limit {text!r}: expected cores such as 0.5 or 1.5") from None
    if not 0.05 <= cores <= 1024:
        raise ClusterError(f"CPU limit {text!r}: between 0.05 and 1024 cores")
    return cores


def _cpu_dir(name: str) -> Path:
    if _v2():
        return _group(name).dir  # v2: one group holds both controllers
    return ROOT / "cpu" / f"loadtest-{name}"


def cap_cpu(name: str, cores: float) -> Path:
    """The group's processes together get at most `cores` of CPU time (CFS bandwidth)."""
    d = _cpu_dir(name)
    quota = max(1000, round(cores * PERIOD_US))
    try:
        if _v2():
            with contextlib.suppress(OSError):  # enabled already, or not ours to enable
                (ROOT / "cgroup.subtree_control").write_text("+cpu")
            d.mkdir(exist_ok=True)
            (d / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            d.mkdir(exist_ok=True)
            (d / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (d / "cpu.cfs_quota_us").write_text(str(quota))
    except OSError as e:
        raise ClusterError(
            f"cannot limit CPU through {d}: {e.strerror} (needs root and the cgroup cpu controller)"
        ) from e
    return d


def cpu_quota(name: str) -> float | None:
    """The cores the group may use (None: no group, or no limit)."""
    d = _cpu_dir(name)
    try:
        if _v2():
            quota, period = (d / "cpu.max").read_text().split()
        else:
            quota = (d / "cpu.cfs_quota_us").read_text().strip()
            period = (d / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return None
    return None if quota in ("max", "-1") else int(quota) / int(period)


def _dirs(name: str) -> list[Path]:
    """Every group of this name that exists (v1 has one per controller)."""
    return list(dict.fromkeys(d for d in (_group(name).dir, _cpu_dir(name)) if d.is_dir()))


def launcher(name: str, binary: Path, script: Path) -> Path:
    """Write `script`: it enters the groups, then execs `binary` with its arguments, so the
    process is charged from its first page. Moving it in later would leave what it already
    holds charged outside (v2, and v1 kernels that dropped move_charge_at_immigrate): the
    budget would be larger than stated."""
    enter = "".join(
        f'echo $$ > "{d / "cgroup.procs"}" || exit 1\n' for d in _dirs(name) or [_group(name).dir]
    )
    script.write_text(f'#!/bin/sh\n{enter}exec "{binary}" "$@"\n')
    script.chmod(0o755)
    return script


def oom_kills(name: str | Path) -> int | None:
    """How many processes the kernel's OOM killer took in the group (None: no group)."""
    g = _group(name)
    try:
        text = (g.dir / g.events).read_text()
    except OSError:
        return None
    m = re.search(r"^oom_kill (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


def reset_peak(name: str | Path) -> None:
    """Start the group's peak usage over from now, so a run's peak is its own (v1 can; v2's
    memory.peak is the group's lifetime peak on kernels before 6.12)."""
    g = _group(name)
    with contextlib.suppress(OSError):
        (g.dir / g.peak).write_text("0")


def peak(name: str | Path) -> int | None:
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
    for d in _dirs(name):
        with contextlib.suppress(OSError):
            d.rmdir()  # only once empty; the caller has stopped the processes
