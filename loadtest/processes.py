"""The machine's processes as the harness looks at them (psutil): found by command line,
their CPU and memory, whether any thread still runs, and the machine's memory."""

from __future__ import annotations

import psutil

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)
_DEAD = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def mentioning(needle: str) -> dict[int, list[str]]:
    """pid -> argv of every process whose command line contains `needle`."""
    out: dict[int, list[str]] = {}
    for p in psutil.process_iter(["cmdline"]):
        argv = p.info["cmdline"] or []  # None when gone or not ours to read
        if needle in " ".join(argv):
            out[p.pid] = argv
    return out


def argv(pid: int) -> list[str]:
    """The command line of `pid`, empty when it is gone (or exiting)."""
    try:
        return psutil.Process(pid).cmdline()
    except _GONE:
        return []


def cpu_rss(pid: int) -> tuple[float, int] | None:
    """(user+system CPU seconds since it started, RSS bytes), None when it is gone."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            t, m = p.cpu_times(), p.memory_info()
    except _GONE:
        return None
    return t.user + t.system, m.rss


def running(pid: int) -> bool:
    """True until every thread has exited: a Go process's leader turns zombie while its other
    threads may still hold the listening sockets, so each thread's state is checked."""
    try:
        threads = psutil.Process(pid).threads()
    except _GONE:
        return False
    for t in threads:
        try:
            if psutil.Process(t.id).status() not in _DEAD:
                return True
        except _GONE:
            continue
    return False


def memory_total_bytes() -> int:
    return int(psutil.virtual_memory().total)


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over its cores;
    idle and I/O wait are not busy."""
    t = psutil.cpu_times()._asdict()
    idle = t.pop("idle") + t.pop("iowait", 0.0)
    # guest time is already inside user/nice (Linux); busy summed from its own fields,
    # since total - idle cancels to -3.5e-11 between two samples of an idle machine
    busy = sum(v for k, v in t.items() if k not in ("guest", "guest_nice"))
    return busy, busy + idle
