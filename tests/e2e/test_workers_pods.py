"""Locust workers as pods in a kind cluster of this test's own: 2 worker pods run 200 agents
(the image built here offline and `kind load`ed, the master in the harness on kind's docker
network). The API server's own audit log (kind's flags through a kubeadm patch) shows 200
distinct agents, each sent from a pod's address, and the merged counters are the workers' sum.
"""

from __future__ import annotations

import csv
import ipaddress
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from loadtest.agents.identity import NAMESPACE
from loadtest.agents.pods import in_cluster_workers, kind_gateway
from loadtest.agents.runner import AgentRun, run_agents
from loadtest.clusters import get_provider, http_client
from loadtest.clusters.fake_nodes import ensure_beside
from loadtest.clusters.kind import state_root
from loadtest.config import InventorySpec
from loadtest.inventory.seed import LABEL, Seeder, node_name
from tests.integration.test_agents import AUDIT_POLICY

pytestmark = pytest.mark.e2e

NAME = "i17-workers-pods"
AGENTS = 200
SPEC = InventorySpec(name="pods-e2e", nodes=AGENTS, pods_per_node=0, namespaces=1)
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")


def kind_config(audit_dir: Path) -> dict:
    """1 control plane (its API server auditing into audit_dir) and 1 worker node."""
    patch = {
        "kind": "ClusterConfiguration",
        "apiServer": {
            "extraArgs": {
                "audit-policy-file": "/lt-audit/audit-policy.yaml",
                "audit-log-path": "/lt-audit/audit.log",
            },
            "extraVolumes": [
                {
                    "name": "lt-audit",
                    "hostPath": "/lt-audit",
                    "mountPath": "/lt-audit",
                    "readOnly": False,
                    "pathType": "Directory",
                }
            ],
        },
    }
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "networking": {"podSubnet": str(POD_CIDR), "serviceSubnet": "10.96.0.0/16"},
        "nodes": [
            {
                "role": "control-plane",
                "extraMounts": [{"hostPath": str(audit_dir), "containerPath": "/lt-audit"}],
                "kubeadmConfigPatches": [yaml.safe_dump(patch)],
            },
            {"role": "worker"},
        ],
    }


@pytest.fixture(scope="module")
def pods_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("workers-pods")
    audit_dir = d / "audit"
    audit_dir.mkdir()
    (audit_dir / "audit-policy.yaml").write_text(AUDIT_POLICY)
    (d / "kind.yaml").write_text(yaml.safe_dump(kind_config(audit_dir)))
    lines: list[str] = []
    provider = get_provider("kind", log=lines.append, config=d / "kind.yaml")
    provider.delete(NAME)  # a leftover of a crashed run
    try:
        cluster = provider.create(NAME)
        ensure_beside(cluster, state_root() / NAME)
        seeder = Seeder(cluster, SPEC, progress=False, log=lambda _: None)
        seeder.seed()
        seeder.wait_ready(timeout=300)
        run, pool = in_cluster_workers(
            cluster,
            AgentRun(
                "kubelet-like",
                agents=AGENTS,
                duration_s=40,
                spawn_rate=50,
                node_selector=f"{LABEL}={SPEC.name}",
                workers_wait_s=240,
            ),
            2,
            None,
            lines.append,
        )
        merged = run_agents(cluster, run, d / "run", lines.append, pool)
        with http_client(cluster) as c:  # the kind nodes' own addresses, for the audit check
            nodes = c.get("/api/v1/nodes", params={"labelSelector": "!type"}).json()["items"]
        node_ips = {
            a["address"]
            for n in nodes
            for a in n["status"]["addresses"]
            if a["type"] == "InternalIP"
        }
        harness = kind_gateway()
    finally:
        provider.delete(NAME)
    return merged, audit_dir / "audit.log", d / "run", lines, (node_ips, harness)


def test_two_worker_pods_are_200_distinct_agents_sent_from_pods(pods_run):
    merged, audit, _, lines, (node_ips, harness) = pods_run
    pairs, sources = set(), set()
    for line in audit.read_text().splitlines():
        ev = json.loads(line)
        if not ev.get("userAgent", "").startswith("kubelet-like/"):
            continue
        for sel in parse_qs(urlsplit(ev["requestURI"]).query).get("fieldSelector", []):
            if sel.startswith("spec.nodeName="):
                pairs.add(
                    (
                        sel.removeprefix("spec.nodeName="),
                        ev.get("impersonatedUser", {}).get("username", ""),
                    )
                )
                sources.update(ev.get("sourceIPs", [])[:1])
    assert pairs == {
        (node_name(SPEC, k), f"system:serviceaccount:{NAMESPACE}:agent-{k}") for k in range(AGENTS)
    }, (len(pairs), lines)
    # the load came from the pods (a pod address, or their node's when the CNI masquerades
    # it on the way to the Service's endpoint), not from the harness (the kind network's
    # gateway, as the API server sees this machine through the published port)
    assert sources and harness not in sources, (sources, harness)
    assert all(ipaddress.ip_address(s) in POD_CIDR or s in node_ips for s in sources), (
        sources,
        node_ips,
    )
    assert merged["agents_started"] == AGENTS and merged["agents_synced"] == AGENTS, merged


def test_merged_stats_are_the_sum_of_the_workers(pods_run):
    merged, _, run_dir, _, _ = pods_run
    w = merged["workers"]
    assert w["seen"] == 2 and w["lost"] == [], w
    by = list(w["by_worker"].values())
    assert len(by) == 2 and all(x["agents_started"] for x in by), w
    assert sum(x["agents_started"] for x in by) == merged["agents_started"]
    assert sum(x["requests"] for x in by) == sum(merged["requests"].values()), w
    # Locust's own request stats, merged by its master, count the same requests
    with (run_dir / "locust_stats.csv").open() as f:
        locust = {
            r["Name"]: int(r["Request Count"])
            for r in csv.DictReader(f)
            if r["Name"] != "Aggregated"
        }
    assert locust == merged["requests"], (locust, merged["requests"])
