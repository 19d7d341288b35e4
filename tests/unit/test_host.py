import os
import time
from pathlib import Path

from loadtest.measurements import host

# A real /proc/PID/stat line, with a command name holding a space and a parenthesis.
STAT = ("4242 (kube (apiserver) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
        "250 150 0 0 20 0 12 0 1000 123456789 3000 18446744073709551615 "
        "1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")


def test_parse_stat_cpu_and_rss() -> None:
    cpu, rss = host.parse_stat(STAT)
    assert cpu == (250 + 150) / host.CLK_TCK
    assert rss == 3000 * host.PAGE


def test_component_of_maps_binaries() -> None:
    assert host.component_of(["/x/bin/kube-apiserver", "--a"]) == "kube-apiserver"
    assert host.component_of(["/x/bin/kwok-controller"]) == "kwok-controller"
    assert host.component_of(["/root/.cache/loadtest/bin/coredns", "-conf", "f"]) == "coredns"
    assert host.component_of(["/usr/bin/python3"]) == "other"
    assert host.component_of([]) == "other"


def _burn(cpu_seconds: float) -> None:
    """Spend this much of the process's own CPU time (not wall time: load does not matter)."""
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        sum(i * i for i in range(10_000))


def test_snapshot_and_delta_of_this_process(tmp_path: Path) -> None:
    s = host.sample(os.getpid())
    own = host.self_cpu_seconds()
    # /proc/PID/stat and os.times() count the same ticks (10 ms each)
    assert s is not None and s.rss_bytes > 0 and abs(s.cpu_seconds - own) <= 0.05
    before = host.snapshot({os.getpid(): "harness"})
    _burn(0.3)
    after = host.snapshot({os.getpid(): "harness"})
    assert 0.25 <= host.cpu_delta(before, after)["harness"] <= 0.5
    assert host.cluster_pids(tmp_path / "no-such-cluster") == {}
