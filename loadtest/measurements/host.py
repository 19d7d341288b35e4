"""CPU seconds and RSS per process, for the components of a local cluster.

Benchmarks take a snapshot before and after a phase and subtract: the deltas say where the
time went (harness, kube-apiserver, etcd, KWOK, controller manager). A local cluster's
processes are found by its state directory in their command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from loadtest import processes

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


@dataclass(frozen=True)
class ProcSample:
    pid: int
    component: str
    cpu_seconds: float  # user + system, since the process started
    rss_bytes: int


def component_of(argv: list[str]) -> str:
    return COMPONENTS.get(Path(argv[0]).name, "other") if argv else "other"


def sample(pid: int, component: str = "") -> ProcSample | None:
    """None when the process is gone."""
    got = processes.cpu_rss(pid)
    if got is None:
        return None
    return ProcSample(pid, component or component_of(processes.argv(pid)), *got)


def cluster_pids(state_dir: Path) -> dict[int, str]:
    """PIDs whose command line mentions the cluster's state dir, with their component."""
    return {pid: component_of(argv) for pid, argv in processes.mentioning(str(state_dir)).items()}


def snapshot(pids: dict[int, str]) -> dict[str, ProcSample]:
    """Per component (summed if a component has several processes)."""
    out: dict[str, ProcSample] = {}
    for pid, comp in pids.items():
        s = sample(pid, comp)
        if s is None:
            continue
        prev = out.get(comp)
        out[comp] = (
            s
            if prev is None
            else ProcSample(
                pid, comp, prev.cpu_seconds + s.cpu_seconds, prev.rss_bytes + s.rss_bytes
            )
        )
    return out


def cpu_delta(before: dict[str, ProcSample], after: dict[str, ProcSample]) -> dict[str, float]:
    """CPU seconds spent per component between two snapshots."""
    return {
        c: round(a.cpu_seconds - (before[c].cpu_seconds if c in before else 0.0), 3)
        for c, a in after.items()
    }


def self_cpu_seconds() -> float:
    """This process's user+system CPU seconds (all threads)."""
    t = os.times()
    return t.user + t.system


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
