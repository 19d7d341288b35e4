import os
from pathlib import Path

from loadtest.measurements import host


def test_component_of_maps_binaries() -> None:
    assert host.component_of(["/x/bin/kube-apiserver", "--a"]) == "kube-apiserver"
    assert host.component_of(["/x/bin/kwok-controller"]) == "kwok-controller"
    assert host.component_of(["/root/.cache/loadtest/bin/coredns", "-conf", "f"]) == "coredns"
    assert host.component_of(["/usr/bin/python3"]) == "other"
    assert host.component_of([]) == "other"


def test_snapshot_and_delta_of_this_process(tmp_path: Path) -> None:
    s = host.sample(os.getpid())
    assert s is not None and s.rss_bytes > 0 and s.cpu_seconds >= 0
    before = host.snapshot({os.getpid(): "harness"})
    sum(i * i for i in range(200_000))
    after = host.snapshot({os.getpid(): "harness"})
    assert host.cpu_delta(before, after)["harness"] >= 0
    assert host.cluster_pids(tmp_path / "no-such-cluster") == {}
