import os
from pathlib import Path

import pytest

from loadtest.measurements import host


def test_component_of_maps_binaries() -> None:
    assert host.component_of(["/x/bin/kube-apiserver", "--a"]) == "kube-apiserver"
    assert host.component_of(["/x/bin/kwok-controller"]) == "kwok-controller"
    assert host.component_of(["/root/.cache/loadtest/bin/coredns", "-conf", "f"]) == "coredns"
    assert host.component_of(["/usr/bin/python3"]) == "other"
    assert host.component_of([]) == "other"


def test_snapshot_and_delta_of_this_process(tmp_path: Path) -> None:
    s = host.sample(os.getpid())
    assert s is not None and s.rss_bytes > 0
    before = host.snapshot({os.getpid(): "harness"})
    own = host.self_cpu_seconds()
    while host.self_cpu_seconds() - own < 0.2:  # burn 0.2 s of CPU (bounded: it is ours)
        sum(i * i for i in range(10_000))
    spent = host.self_cpu_seconds() - own
    after = host.snapshot({os.getpid(): "harness"})
    # /proc/PID/stat and os.times() count the same ticks (1/CLK_TCK s each)
    assert host.cpu_delta(before, after)["harness"] == pytest.approx(spent, abs=0.05)
    assert host.cluster_pids(tmp_path / "no-such-cluster") == {}
