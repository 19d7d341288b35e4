"""Remote Locust workers against a real kube-apiserver: a master and `loadtest worker`s on
loopback and across a network namespace; the API server's own audit log is the judge."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from loadtest.agents.identity import NAMESPACE
from loadtest.agents.runner import AgentRun, LocalWorkers, run_agents
from loadtest.clusters import Cluster, get_provider
from loadtest.config import InventorySpec
from loadtest.inventory.seed import LABEL, Seeder, node_name
from tests.integration.test_agents import AUDIT_POLICY, _audited

pytestmark = pytest.mark.integration

AGENTS = 30
SPEC = InventorySpec(name="workers-it", nodes=AGENTS, pods_per_node=0, namespaces=1)
CLUSTER = "i17-workers-it"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class KillingWorkers(LocalWorkers):
    """SIGKILLs its last worker `kill_after` seconds after the master said all connected."""

    def __init__(self, n: int, log_dir: Path, kill_after: float) -> None:
        super().__init__(n, log_dir)
        self.kill_after = kill_after
        self.timer: threading.Timer | None = None

    def on_log(self, line: str) -> None:
        if self.timer is None and "connected after" in line:
            self.timer = threading.Timer(
                self.kill_after, self.procs[-1].send_signal, (signal.SIGKILL,)
            )
            self.timer.start()

    def stop(self) -> None:
        if self.timer:
            self.timer.cancel()
        super().stop()


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A local cluster of this module's own with the API server's audit log on, 30 nodes."""
    d = tmp_path_factory.mktemp("audit")
    policy, audit = d / "audit-policy.yaml", d / "audit.log"
    policy.write_text(AUDIT_POLICY)
    provider = get_provider(
        "local", apiserver_args={"audit-policy-file": str(policy), "audit-log-path": str(audit)}
    )
    if provider.get(CLUSTER) is not None:
        provider.delete(CLUSTER)  # a leftover of a crashed run
    cluster = provider.create(CLUSTER)
    try:
        seeder = Seeder(cluster, SPEC, progress=False, log=lambda _: None)
        seeder.seed()
        seeder.wait_ready(timeout=300)  # a busy shared machine
        yield cluster, audit
    finally:
        provider.delete(CLUSTER)


def _run(
    cluster: Cluster,
    out: Path,
    pool: LocalWorkers,
    bind: str,
    duration: float = 20,
    workers: int | None = None,
) -> dict:
    run = AgentRun(
        "kubelet-like",
        agents=AGENTS,
        duration_s=duration,
        spawn_rate=30,
        workers=workers or pool.n,
        master_bind=bind,
        workers_wait_s=60,
        node_selector=f"{LABEL}={SPEC.name}",
    )
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if isinstance(pool, KillingWorkers):
            pool.on_log(line)

    merged = run_agents(cluster, run, out, log, pool)
    merged["_log"] = lines
    return merged


def _agent_pairs(audit: Path, since: int) -> set[tuple[str, str]]:
    tail = audit.parent / f"audit.{since}.log"
    with audit.open("rb") as f:
        f.seek(since)
        tail.write_bytes(f.read())
    return {
        (sel.removeprefix("spec.nodeName="), user)
        for sel, user in _audited(tail, "kubelet-like/")
        if sel.startswith("spec.nodeName=")
    }


def _secrets_absent(out: Path, cluster: Cluster) -> None:
    """No credential the master sent its workers is in any file of the run."""
    secrets = (
        [Path(cluster.client_key).read_text().strip().splitlines()[1]] if cluster.client_key else []
    )
    for f in out.rglob("*"):
        if f.is_file():
            text = f.read_text(errors="replace")
            for s in secrets:
                assert s not in text, f"a credential reached {f}"


def _check_distinct(audit: Path, since: int) -> None:
    pairs = _agent_pairs(audit, since)
    assert {n for n, _ in pairs} == {node_name(SPEC, i) for i in range(AGENTS)}, sorted(pairs)
    assert pairs == {
        (node_name(SPEC, k), f"system:serviceaccount:{NAMESPACE}:agent-{k}") for k in range(AGENTS)
    }, sorted(pairs)


def test_master_and_two_workers_on_loopback_are_30_distinct_agents(audited, tmp_path):
    cluster, audit = audited
    since = audit.stat().st_size
    pool = LocalWorkers(2, tmp_path / "workers")
    merged = _run(cluster, tmp_path / "run", pool, f"127.0.0.1:{free_port()}")
    _check_distinct(audit, since)
    assert merged["agents_started"] == AGENTS and merged["agents_synced"] == AGENTS, merged
    w = merged["workers"]
    assert w["seen"] == 2 and w["lost"] == [] and len(w["by_worker"]) == 2, w
    # both workers ran agents, and the counters sum to the master's total
    started = [x["agents_started"] for x in w["by_worker"].values()]
    assert all(started) and sum(started) == AGENTS, w
    assert any("2 worker(s) connected" in x for x in merged["_log"]), merged["_log"]
    # Locust's request stats (merged by its master) count what the agents' counters count
    with (tmp_path / "run" / "locust_stats.csv").open() as f:
        locust = {
            r["Name"]: int(r["Request Count"])
            for r in csv.DictReader(f)
            if r["Name"] != "Aggregated"
        }
    assert locust == merged["requests"], (locust, merged["requests"])
    _secrets_absent(tmp_path, cluster)


def test_a_worker_killed_mid_run_is_reported_and_the_run_goes_on(audited, tmp_path):
    cluster, _ = audited
    pool = KillingWorkers(2, tmp_path / "workers", kill_after=6)
    merged = _run(cluster, tmp_path / "run", pool, f"127.0.0.1:{free_port()}", duration=25)
    w = merged["workers"]
    assert len(w["lost"]) == 1, w
    lost = w["lost"][0]
    held = w["by_worker"][lost["worker"]]["agents_started"]
    assert lost["agents"] == held > 0 and w["agents_lost"] == held, w
    assert any("lost after" in x and "the run goes on" in x for x in merged["_log"])
    # the master carried on to its time limit and wrote Locust's report
    stats = (tmp_path / "run" / "locust_stats.csv").read_text()
    assert "WATCH pods [node]" in stats
    assert merged["agents_started"] == AGENTS, merged


def test_workers_started_before_the_master_get_their_setup(audited, tmp_path):
    """Workers that connect while the master still prepares (RBAC, nodes) are answered once
    the setup exists: none sits idle with a dropped HELLO."""
    cluster, audit = audited
    since, bind = audit.stat().st_size, f"127.0.0.1:{free_port()}"
    early = LocalWorkers(2, tmp_path / "workers")
    early.start(bind)  # before the master exists
    try:
        merged = _run(
            cluster, tmp_path / "run", LocalWorkers(0, tmp_path / "none"), bind, workers=2
        )
    finally:
        early.stop()
    _check_distinct(audit, since)
    started = [x["agents_started"] for x in merged["workers"]["by_worker"].values()]
    assert len(started) == 2 and all(started), merged["workers"]


# ---- across a network: a worker in a namespace of its own --------------------------------

NETNS = "lt17-worker"
HOST_IP, NS_IP = "10.250.17.1", "10.250.17.2"  # a /30 of this test's own


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 (ip netns, veth)")
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "link", "del", "lt17-host"], capture_output=True)
    _ip("netns", "add", NETNS)
    try:
        _ip("link", "add", "lt17-host", "type", "veth", "peer", "name", "lt17-ns")
        _ip("link", "set", "lt17-ns", "netns", NETNS)
        _ip("addr", "add", f"{HOST_IP}/30", "dev", "lt17-host")
        _ip("link", "set", "lt17-host", "up")
        for a in (
            ["addr", "add", f"{NS_IP}/30", "dev", "lt17-ns"],
            ["link", "set", "lt17-ns", "up"],
            ["link", "set", "lo", "up"],
        ):
            _ip("netns", "exec", NETNS, "ip", *a)
        yield ["ip", "netns", "exec", NETNS]
    finally:
        subprocess.run(["ip", "link", "del", "lt17-host"], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def _forward(listen: tuple[str, int], to: tuple[str, int], prefix: list[str]):
    """A TCP forward (socat-like, in Python) run as its own process, maybe in a namespace."""
    code = FORWARD.format(lh=listen[0], lp=listen[1], th=to[0], tp=to[1])
    return subprocess.Popen([*prefix, sys.executable, "-c", code])


FORWARD = """
import socket, threading
def pipe(a, b):
    try:
        while d := a.recv(65536):
            b.sendall(d)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass
srv = socket.create_server(({lh!r}, {lp}))
while True:
    c, _ = srv.accept()
    try:
        u = socket.create_connection(({th!r}, {tp}), timeout=10)
    except OSError:
        c.close(); continue
    u.settimeout(None)
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
"""


def test_a_worker_in_another_network_namespace(audited, netns, tmp_path):
    """The master binds the veth address; the worker in its namespace reaches it there, and
    reaches the API server (on the root namespace's loopback) through two forwards: one on
    the veth address, and one on the namespace's own loopback so the server's certificate
    (issued for 127.0.0.1) still verifies."""
    cluster, audit = audited
    api_host, api_port = cluster.server.removeprefix("https://").rsplit(":", 1)
    fwd_port = free_port(HOST_IP)
    forwards = [
        _forward((HOST_IP, fwd_port), (api_host, int(api_port)), []),
        _forward(("127.0.0.1", int(api_port)), (HOST_IP, fwd_port), netns),
    ]
    try:
        since = audit.stat().st_size
        pool = LocalWorkers(1, tmp_path / "workers", prefix=netns)
        merged = _run(cluster, tmp_path / "run", pool, f"{HOST_IP}:{free_port(HOST_IP)}")
    finally:
        for f in forwards:
            f.kill()
            f.wait()
    _check_distinct(audit, since)
    assert merged["agents_synced"] == AGENTS and merged["workers"]["seen"] == 1, merged
    # the worker really was elsewhere: the master never saw it on loopback
    assert json.loads((tmp_path / "run" / "agents.json").read_text())["workers"]["lost"] == []
