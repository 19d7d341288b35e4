"""Remote Locust workers (pure, no locust import): what the master hands a worker, how a
worker turns it back into a Cluster, and the master's ledger of workers and their agents.

A worker has no local files: the master sends it the cluster's address, the CA, the
credentials the profile's identity mode needs (only the shared ServiceAccount's token for
`shared-serviceaccount`; the harness's client credentials for impersonation and per-agent
tokens), the profile and the node list. The worker keeps them in memory and in a private
temporary directory (0700, files 0600) that it removes at exit; none of it is logged or
written to results. The transport is Locust's own (ZeroMQ, not encrypted): bind the master
to a trusted network (loopback, a namespace, the cluster's own docker network).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loadtest.agents.profile import AgentProfile
from loadtest.clusters.base import Cluster

Counters = dict[str, Any]
Merge = Callable[[Counters, Counters], None]


def _read(path: str | None) -> str | None:
    return Path(path).read_text() if path else None


def worker_payload(
    cluster: Cluster,
    profile: AgentProfile,
    nodes: list[str],
    decode: bool,
    shared_token: str | None = None,
) -> dict[str, Any]:
    """What the master sends each worker once, when it says hello."""
    creds: dict[str, str | None] = {"ca": _read(cluster.ca_file)}
    if profile.identity == "shared-serviceaccount":
        creds["shared_token"] = shared_token  # the agents' own identity, nothing more
    else:
        creds.update(
            cert=_read(cluster.client_cert), key=_read(cluster.client_key), token=cluster.token
        )
    return {
        "cluster": {
            "name": cluster.name,
            "provider": cluster.provider,
            "context": cluster.context,
            "server": cluster.server,
            "insecure": cluster.insecure,
            "created_by_harness": cluster.created_by_harness,
        },
        "creds": creds,
        "profile": profile.model_dump(mode="json"),
        "nodes": nodes,
        "decode": decode,
    }


@dataclass
class WorkerSetup:
    cluster: Cluster
    profile: AgentProfile
    nodes: list[str]
    decode: bool
    shared_token: str | None
    tmp: tempfile.TemporaryDirectory[str] = field(repr=False)

    def close(self) -> None:
        self.tmp.cleanup()


def _private(d: Path, name: str, text: str | None) -> str | None:
    if text is None:
        return None
    p = d / name
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return str(p)


def materialize(payload: dict[str, Any], api_server: str = "") -> WorkerSetup:
    """The worker's side: a Cluster whose credentials live in a private temporary directory.
    `api_server` overrides the master's address of the API server (a pod dials the
    `kubernetes` Service, a worker elsewhere whatever route it has)."""
    tmp = tempfile.TemporaryDirectory(prefix="loadtest-worker-")  # mode 0700
    d, c, creds = Path(tmp.name), payload["cluster"], payload["creds"]
    cluster = Cluster(
        name=c["name"],
        provider=c["provider"],
        kubeconfig=d / "none",
        context=c["context"],
        server=api_server or c["server"],
        ca_file=_private(d, "ca.crt", creds.get("ca")),
        client_cert=_private(d, "client.crt", creds.get("cert")),
        client_key=_private(d, "client.key", creds.get("key")),
        token=creds.get("token"),
        insecure=bool(c.get("insecure")),
        created_by_harness=c["created_by_harness"],
    )
    return WorkerSetup(
        cluster,
        AgentProfile.model_validate(payload["profile"]),
        list(payload["nodes"]),
        bool(payload["decode"]),
        creds.get("shared_token"),
        tmp,
    )


class Messenger(Protocol):
    """The part of a Locust runner that custom messages need."""

    def register_message(self, msg_type: str, listener: Callable[..., None]) -> None: ...

    def send_message(
        self, msg_type: str, data: Any = None, client_id: str | None = None
    ) -> None: ...


class Greeter:
    """Master: answers each worker's hello with the setup. Registered before the master
    talks to the API server (RBAC, nodes, token), since workers may connect meanwhile;
    those wait here until the setup exists."""

    def __init__(self, runner: Messenger, hello: str, setup: str) -> None:
        self.runner, self.setup = runner, setup
        self.payload: dict[str, Any] | None = None
        self.waiting: list[str] = []
        runner.register_message(hello, self._hello)

    def _hello(self, msg: Any, **_: Any) -> None:
        if self.payload is None:
            self.waiting.append(msg.node_id)
        else:
            self.runner.send_message(self.setup, self.payload, client_id=msg.node_id)

    def ready(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        for node_id in self.waiting:
            self.runner.send_message(self.setup, payload, client_id=node_id)
        self.waiting.clear()


class Ledger:
    """The master's account of its workers: who holds which agent index, each worker's
    latest counters (cumulative, sent with Locust's stats reports), and who went missing."""

    def __init__(self, merge: Merge) -> None:
        self._merge = merge
        self.owner: dict[int, str] = {}
        self.snapshots: dict[str, Counters] = {}
        self.seen: set[str] = set()
        self.lost: list[dict[str, Any]] = []

    def granted(self, index: int, worker: str) -> None:
        self.seen.add(worker)
        self.owner[index] = worker

    def returned(self, index: int) -> None:
        self.owner.pop(index, None)

    def report(self, worker: str, counters: Counters | None) -> None:
        self.seen.add(worker)
        if counters is not None:
            self.snapshots[worker] = counters

    def held(self, worker: str) -> list[int]:
        return sorted(k for k, w in self.owner.items() if w == worker)

    def missing(self, worker: str, at_s: float) -> list[int] | None:
        """A worker stopped answering: its agents are lost (and their indexes free again,
        so a replacement user is the same agent k). Returns those indexes, or None when
        that worker was already counted lost."""
        if any(x["worker"] == worker for x in self.lost):
            return None
        held = self.held(worker)
        for k in held:
            del self.owner[k]
        self.lost.append(
            {"worker": worker, "at_s": round(at_s, 1), "agents": len(held), "indexes": held}
        )
        return held

    def summary(self, expected: int) -> Counters:
        """The agents' counters summed over workers (a lost worker's last report counts),
        with a `workers` section for the run's summary."""
        total: Counters = {}
        for w in sorted(self.snapshots):
            self._merge(total, self.snapshots[w])
        total["workers"] = {
            "expected": expected,
            "seen": len(self.seen),
            "lost": self.lost,
            "agents_lost": sum(x["agents"] for x in self.lost),
            "by_worker": {
                w: {
                    "agents_started": s.get("agents_started", 0),
                    "agents_synced": s.get("agents_synced", 0),
                    "requests": sum(s.get("requests", {}).values()),
                }
                for w, s in sorted(self.snapshots.items())
            },
        }
        return total
