"""CPU seconds and RSS per process, read from /proc, for the components of a local cluster.

Benchmarks take a snapshot before and after a phase and subtract: the deltas say where the
time went (harness, kube-apiserver, etcd, KWOK, controller manager). A local cluster's
processes are found by its state directory in their command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Executable basename -> component name; anything else in the cluster dir is "other".
COMPONENTS = {
    "etcd": "etcd",
    "kube-apiserver": "kube-apiserver",
    "kube-controller-manager": "kube-controller-manager",
    "kube-scheduler": "kube-scheduler",
    "kwok-controller": "kwok-controller",
    "kwok": "kwok-controller",
    "coredns": "coredns",
}
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class ProcSample:
    pid: int
    component: str
    cpu_seconds: float  # user + system, since the process started
    rss_bytes: int


def parse_stat(text: str) -> tuple[float, int]:
    """(user+system CPU seconds, RSS bytes) from the text of /proc/PID/stat.

    The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    """
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime, stime are fields 14, 15; rss (pages) is field 24.
    utime, stime, rss_pages = int(rest[11]), int(rest[12]), int(rest[21])
    return (utime + stime) / CLK_TCK, rss_pages * PAGE


def component_of(argv: list[str]) -> str:
    return COMPONENTS.get(Path(argv[0]).name, "other") if argv else "other"


def sample(pid: int, component: str = "") -> ProcSample | None:
    try:
        cpu, rss = parse_stat(Path(f"/proc/{pid}/stat").read_text())
        if not component:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            component = component_of([a.decode(errors="replace") for a in argv if a])
    except (OSError, ValueError, IndexError):
        return None  # gone between listing and reading
    return ProcSample(pid, component, cpu, rss)


def cluster_pids(state_dir: Path) -> dict[int, str]:
    """PIDs whose command line mentions the cluster's state dir, with their component."""
    needle = str(state_dir).encode()
    out: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in raw:
            argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
            out[int(d.name)] = component_of(argv)
    return out


def snapshot(pids: dict[int, str]) -> dict[str, ProcSample]:
    """Per component (summed if a component has several processes)."""
    out: dict[str, ProcSample] = {}
    for pid, comp in pids.items():
        s = sample(pid, comp)
        if s is None:
            continue
        prev = out.get(comp)
        out[comp] = s if prev is None else ProcSample(
            pid, comp, prev.cpu_seconds + s.cpu_seconds, prev.rss_bytes + s.rss_bytes)
    return out


def cpu_delta(before: dict[str, ProcSample],
              after: dict[str, ProcSample]) -> dict[str, float]:
    """CPU seconds spent per component between two snapshots."""
    return {c: round(a.cpu_seconds - (before[c].cpu_seconds if c in before else 0.0), 3)
            for c, a in after.items()}


def self_cpu_seconds() -> float:
    """This process's user+system CPU seconds (all threads)."""
    t = os.times()
    return t.user + t.system


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
