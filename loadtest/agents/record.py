"""Record a real agent: run its command as N DaemonSet pods would, then learn its profile.

A fresh local control plane with an audit policy (every request at Metadata level), a small
inventory with churn (pod updates, so watches see events), and N processes of COMMAND, one
per fake node, each with what a DaemonSet pod gets: `NODE_NAME` (the downward API's
spec.nodeName), `POD_NAME`, `POD_NAMESPACE`, and credentials of a ServiceAccount, here a
kubeconfig in `KUBECONFIG` with a TokenRequest token (one token per pod, as each pod's projected
token is its own; one ServiceAccount for all, or one per agent). After a bounded time the
processes are stopped and the profile is learned from the API server's own audit log,
keeping the requests of the agents' ServiceAccounts.

Tokens are written only to a private directory (0700, files 0600) that is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from loadtest import config, toolchain
from loadtest.agents.identity import NAMESPACE, SHARED_SA, ensure_rbac_rules, request_token
from loadtest.agents.learn import Learned, learn, read_audit_log
from loadtest.agents.profile import AgentProfile
from loadtest.clusters.base import Cluster, http_client
from loadtest.clusters.local import LocalProvider, state_root
from loadtest.config import InventorySpec
from loadtest.errors import ClusterError, CommandError, ConfigError
from loadtest.inventory.seed import Seeder, namespace_name, node_name, pod_name, pod_placement

Log = Callable[[str], None]
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}
# The recording cluster is throwaway: the agents may read anything, as an unknown agent might.
READ_ALL = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]
AGENT_USERS = f"^system:serviceaccount:{NAMESPACE}:"
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Recording:
    name: str  # the learned profile's name
    nodes: int
    command: list[str]
    duration_s: float = 60.0
    cluster: str = ""  # default rec-<name>
    identity: Literal["shared-serviceaccount", "serviceaccount-per-agent"] = "shared-serviceaccount"
    user_agent: str = "."  # pattern; the agents' ServiceAccounts select their requests anyway
    content_type: Literal["json", "protobuf"] = "json"
    pods_per_node: int = 3
    churn_per_second: float = 2.0  # pod updates per second during the recording
    keep_cluster: bool = False  # after a successful recording

    @property
    def cluster_name(self) -> str:
        return self.cluster or f"rec-{self.name}"[:42]

    def check(self) -> None:
        if not self.command:
            raise ConfigError("record: give the agent's command after --")
        if not 1 <= self.nodes <= 200:
            raise ConfigError("record: --nodes between 1 and 200 (one process per node)")
        if not 0 < self.duration_s <= 3600:
            raise ConfigError("record: --duration between 0 and 3600 seconds")
        # a bad profile name fails now, not after the recording
        config.parse(
            AgentProfile,
            {"name": self.name, "polls": [{"resource": "pods", "interval_seconds": 1}]},
            "record --name",
        )


def workdir(cluster: str) -> Path:
    return state_root().parent / "record" / cluster


def resolve(command: list[str]) -> list[str]:
    """COMMAND as given, or a toolchain binary by name (e.g. `refagent`) when not on PATH."""
    exe = command[0]
    if os.sep not in exe and shutil.which(exe) is None:
        try:
            return [str(toolchain.binary(exe)), *command[1:]]
        except Exception:  # noqa: BLE001 - not ours either: let Popen say it is missing
            pass
    return command


def agent_kubeconfig(cluster: Cluster, token: str) -> str:
    user = {"token": token}
    cl: dict[str, object] = {"server": cluster.server}
    if cluster.ca_file:
        cl["certificate-authority"] = cluster.ca_file
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "agent",
            "clusters": [{"name": cluster.name, "cluster": cl}],
            "users": [{"name": "agent", "user": user}],
            "contexts": [
                {
                    "name": "agent",
                    "context": {"cluster": cluster.name, "user": "agent", "namespace": NAMESPACE},
                }
            ],
        }
    )


class Churn(threading.Thread):
    """Updates inventory pods round robin (an annotation) until stopped: watch events."""

    def __init__(self, cluster: Cluster, spec: InventorySpec, per_second: float) -> None:
        super().__init__(daemon=True)
        self.cluster, self.spec, self.per_second = cluster, spec, per_second
        self.stopped = threading.Event()
        self.updates = 0
        self.failures = 0

    def run(self) -> None:
        if self.per_second <= 0 or not self.spec.pods:
            return
        with http_client(self.cluster) as c:
            p = 0
            while not self.stopped.wait(1 / self.per_second):
                _, ns = pod_placement(self.spec, p)
                r = c.patch(
                    f"/api/v1/namespaces/{namespace_name(self.spec, ns)}/pods/"
                    f"{pod_name(self.spec, p)}",
                    json={"metadata": {"annotations": {"loadtest.io/churn": str(p)}}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                self.updates += r.status_code == 200
                self.failures += r.status_code != 200
                p = (p + 1) % self.spec.pods

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=15)


def record(rec: Recording, log: Log) -> tuple[Learned, Path]:
    """Run the recording; returns the learned profile and the audit log it came from."""
    rec.check()
    command = resolve(rec.command)
    d = workdir(rec.cluster_name)
    provider = LocalProvider(
        log=log,
        apiserver_args={
            "audit-policy-file": str(d / "audit-policy.yaml"),
            "audit-log-path": str(d / "audit.log"),
        },
    )
    if provider.get(rec.cluster_name) is not None:
        raise ClusterError(
            f"local cluster {rec.cluster_name!r} exists: a recording needs a "
            f"fresh one (remove it with: loadtest cluster down --name "
            f"{rec.cluster_name})"
        )
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
    secrets = d / "secrets"
    cluster = provider.create(rec.cluster_name)
    ok = False
    try:
        spec = InventorySpec(
            name="rec",
            nodes=rec.nodes,
            pods_per_node=rec.pods_per_node,
            namespaces=2,
            services_per_namespace=2,
            configmaps_per_namespace=1,
        )
        seeder = Seeder(cluster, spec, log=log, progress=False)
        seeder.seed()
        log(f"inventory: {seeder.wait_ready(timeout=120)}")
        ensure_rbac_rules(cluster, READ_ALL)
        secrets.mkdir(mode=0o700)
        envs = []
        for i in range(rec.nodes):
            sa = SHARED_SA if rec.identity == "shared-serviceaccount" else f"agent-{i}"
            kc = secrets / f"agent-{i}.kubeconfig"
            kc.touch(mode=0o600)
            kc.write_text(agent_kubeconfig(cluster, request_token(cluster, sa)))
            envs.append(
                {
                    **os.environ,
                    "KUBECONFIG": str(kc),
                    "NODE_NAME": node_name(spec, i),
                    "POD_NAME": f"{rec.name}-agent-{i}"[:63],
                    "POD_NAMESPACE": NAMESPACE,
                }
            )
        churn = Churn(cluster, spec, rec.churn_per_second)
        churn.start()
        try:
            failed = _run_agents(command, envs, d, rec.duration_s, log)
        finally:
            churn.stop()
        log(f"churn: {churn.updates} pod updates ({churn.failures} failed)")
        if failed is not None:
            i, code = failed
            out = (d / f"agent-{i}.log").read_text(errors="replace")
            raise CommandError(f"agent {i} ({node_name(spec, i)})", command, code, out)
        time.sleep(2)  # watches closed by the stop reach the log (ResponseComplete)
        ok = True
    finally:
        shutil.rmtree(secrets, ignore_errors=True)
        if not (ok and rec.keep_cluster):  # a failed recording leaves nothing running
            provider.delete(rec.cluster_name)
    audit = d / "audit.log"
    learned = learn(
        read_audit_log(audit),
        rec.user_agent,
        rec.name,
        source=str(audit),
        user_pattern=AGENT_USERS,
        content_type=rec.content_type,
    )
    learned.notes.insert(
        0,
        f"recorded by `loadtest record`: {rec.nodes} agents, "
        f"{rec.duration_s:g} s, identity {rec.identity}, command: "
        f"{' '.join(rec.command)}",
    )
    return learned, audit


def _run_agents(
    command: list[str], envs: list[dict[str, str]], d: Path, duration_s: float, log: Log
) -> tuple[int, int] | None:
    """Start one process per env, stop them after duration_s (TERM, then KILL after a grace).
    Returns (index, exit code) of the first that failed before the end, or None."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, env in enumerate(envs):
            with open(d / f"agent-{i}.log", "wb") as out:
                procs.append(
                    subprocess.Popen(
                        command,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
        log(f"{len(procs)} agents running: {' '.join(command)} ({duration_s:g} s)")
        deadline = time.monotonic() + duration_s
        failed: tuple[int, int] | None = None
        while time.monotonic() < deadline and failed is None:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            failed = next(
                ((i, p.returncode) for i, p in enumerate(procs) if p.poll() not in (None, 0)), None
            )
        return failed
    except FileNotFoundError as e:
        raise ConfigError(f"record: cannot run {command[0]!r}: {e.strerror}") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        end = time.monotonic() + STOP_GRACE_S
        for p in procs:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
