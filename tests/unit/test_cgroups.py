"""Memory limits through cgroups: sizes, and the OOM count from either hierarchy's files."""

import os
from pathlib import Path

import pytest

from loadtest.clusters import cgroups
from loadtest.errors import ClusterError


def test_sizes_parse_and_bad_ones_are_one_line_errors():
    assert cgroups.parse_bytes("2Gi") == 2 * 2**30
    assert cgroups.parse_bytes("1536Mi") == 1536 * 2**20
    assert cgroups.parse_bytes("1.5G") == int(1.5 * 2**30)
    for bad, msg in (("lots", "expected a size"), ("10Mi", "below 64Mi"), ("2Ti", "expected")):
        with pytest.raises(ClusterError, match=msg):
            cgroups.parse_bytes(bad)


@pytest.mark.parametrize("v2", [True, False])
def test_oom_kills_read_from_v1_and_v2_files(tmp_path: Path, monkeypatch, v2: bool):
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    if v2:
        (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
        d, events = tmp_path / "loadtest-c1", "memory.events"
        text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n"
    else:
        d, events = tmp_path / "memory" / "loadtest-c1", "memory.oom_control"
        text = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    assert cgroups.oom_kills("c1") is None  # no group: no limit was set
    d.mkdir(parents=True)
    (d / events).write_text(text)
    assert cgroups.oom_kills("c1") == 2


@pytest.mark.parametrize("v2", [True, False])
def test_peak_reads_and_resets_the_hierarchys_counter(tmp_path: Path, monkeypatch, v2: bool):
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    if v2:
        (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    d, name = (
        (tmp_path / "loadtest-c1", "memory.peak")
        if v2
        else (tmp_path / "memory" / "loadtest-c1", "memory.max_usage_in_bytes")
    )
    assert cgroups.peak("c1") is None
    d.mkdir(parents=True)
    (d / name).write_text("2147483648\n")
    assert cgroups.peak("c1") == 2**31
    cgroups.reset_peak("c1")  # the kernel starts the count over from what is held now
    assert (d / name).read_text() == "0"


@pytest.mark.parametrize("v2", [True, False])
def test_a_group_made_elsewhere_is_read_by_its_directory(tmp_path: Path, monkeypatch, v2: bool):
    """A kubelet's pod group, found from a process's /proc/PID/cgroup line."""
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    if v2:
        (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    pod = (tmp_path if v2 else tmp_path / "memory") / "docker" / "abc" / "kubepods" / "pod1"
    pod.mkdir(parents=True)
    limit, events = (
        ("memory.max", "memory.events")
        if v2
        else (
            "memory.limit_in_bytes",
            "memory.oom_control",
        )
    )
    (pod / limit).write_text("max\n" if v2 else "9223372036854771712\n")
    assert cgroups.memory_limit(pod) is None  # unlimited
    (pod / limit).write_text("2147483648\n")
    assert cgroups.memory_limit(pod) == 2**31
    (pod / events).write_text("oom_kill 3\n")
    assert cgroups.oom_kills(pod) == 3
    assert cgroups.memory_group_of(2**22 + 12345) is None  # no such process
    me = cgroups.memory_group_of(os.getpid())
    assert me is None or me.is_relative_to(tmp_path)


def test_launcher_enters_the_group_before_the_binary_runs(tmp_path: Path, monkeypatch):
    import subprocess

    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    group = tmp_path / "memory" / "loadtest-c1"
    group.mkdir(parents=True)
    binary = tmp_path / "server"
    binary.write_text(f'#!/bin/sh\necho "$$ $*" > "{tmp_path / "ran"}"\n')
    binary.chmod(0o755)
    script = cgroups.launcher("c1", binary, tmp_path / "launch")
    subprocess.run([script, "--flag", "a b"], check=True)
    pid, args = (tmp_path / "ran").read_text().split(" ", 1)
    # the same process (exec, not a child) is the one written into the group
    assert (group / "cgroup.procs").read_text().strip() == pid
    assert args.strip() == "--flag a b"
    (group / "cgroup.procs").unlink()
    group.rmdir()  # no group: the launcher refuses to start the server outside its budget
    assert subprocess.run([script], stderr=subprocess.DEVNULL).returncode != 0


def test_cores_parse_and_bad_ones_are_one_line_errors():
    assert cgroups.parse_cores("0.5") == 0.5
    for bad, msg in (("half", "expected cores"), ("0", "between"), ("-1", "between")):
        with pytest.raises(ClusterError, match=msg):
            cgroups.parse_cores(bad)


@pytest.mark.parametrize("v2", [True, False])
def test_cpu_quota_written_in_the_hierarchys_files(tmp_path: Path, monkeypatch, v2: bool):
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    if v2:
        (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    else:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "memory").mkdir()
    assert cgroups.cpu_quota("c1") is None
    d = cgroups.cap_cpu("c1", 0.5)
    if v2:
        assert (d / "cpu.max").read_text() == "50000 100000"
    else:
        assert (d / "cpu.cfs_quota_us").read_text() == "50000"
        assert (d / "cpu.cfs_period_us").read_text() == "100000"
    assert cgroups.cpu_quota("c1") == 0.5
    cgroups.cap("c1", 2**30)  # and a memory budget beside it
    text = cgroups.launcher("c1", tmp_path / "server", tmp_path / "launch").read_text()
    # v1: the server enters both groups (one per controller) before it runs; v2: one
    assert text.count("cgroup.procs") == (1 if v2 else 2)
