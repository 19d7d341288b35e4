"""Locust workers as pods in the cluster under test (`--workers-in-cluster N`).

The Deployment of clusters/locust/workers.yaml, filled in: N `loadtest worker` pods that dial
the master in the harness. On kind, the image is built here offline (clusters/locust/build.sh)
and `kind load`ed, and the master listens on the host's address on kind's docker network,
which the pods reach through their node. Elsewhere, `--worker-image` names an image the nodes
can pull and `--master-bind` an address the pods can reach.
"""

from __future__ import annotations

import json
import socket
import string
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import yaml

from loadtest import toolchain
from loadtest.agents.runner import AgentRun
from loadtest.clusters.base import Cluster, apply_object, http_client
from loadtest.clusters.kind import NETWORK
from loadtest.errors import ClusterError, ConfigError
from loadtest.proc import run

Log = Callable[[str], None]

MANIFEST = toolchain.REPO_ROOT / "clusters" / "locust" / "workers.yaml"
BUILD = toolchain.REPO_ROOT / "clusters" / "locust" / "build.sh"
NAMESPACE, DEPLOYMENT = "loadtest-workers", "locust-workers"


def manifests(replicas: int, image: str, pull: str, master: str) -> list[dict[str, Any]]:
    text = string.Template(MANIFEST.read_text()).substitute(
        REPLICAS=replicas, IMAGE=image, PULL=pull, MASTER=master
    )
    return [d for d in yaml.safe_load_all(text) if d]


def kind_gateway() -> str:
    """The host's IPv4 address on kind's docker network: where pods reach the harness."""
    out = run(
        ["docker", "network", "inspect", NETWORK, "-f", "{{json .IPAM.Config}}"],
        "docker network inspect kind",
        timeout=30,
    )
    for cfg in json.loads(out):
        gw = cfg.get("Gateway", "")
        if gw and ":" not in gw:
            return str(gw)
    raise ClusterError(f"docker network {NETWORK!r} has no IPv4 gateway")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def build_image(log: Log) -> str:
    log("building the worker image (clusters/locust/build.sh; cached when up to date)")
    out = run(["bash", str(BUILD)], "clusters/locust/build.sh", timeout=1800)
    # the reference is the one line without spaces on stdout (progress goes to stderr)
    refs = [x for x in out.splitlines() if x.strip() and " " not in x.strip()]
    if not refs:
        raise ClusterError(f"clusters/locust/build.sh printed no image reference:\n{out[-800:]}")
    return refs[-1].strip()


class PodWorkers:
    """The WorkerPool of pods: applied once the master listens, deleted at the end."""

    def __init__(self, cluster: Cluster, replicas: int, image: str, pull: str, log: Log) -> None:
        self.cluster, self.replicas, self.image, self.pull = cluster, replicas, image, pull
        self.log = log

    def start(self, master: str) -> None:
        objs = manifests(self.replicas, self.image, self.pull, master)
        paths = {
            "Namespace": "/api/v1/namespaces",
            "ServiceAccount": f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
            "Deployment": f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
        }
        with http_client(self.cluster) as c:
            for obj in objs:  # server-side apply: a rerun takes the new master and image
                apply_object(c, paths[obj["kind"]], obj)
        self.log(f"{self.replicas} worker pod(s) of {self.image} dialling {master}")

    def stop(self) -> None:
        with http_client(self.cluster) as c:
            r = c.delete(
                f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}",
                params={"propagationPolicy": "Foreground"},
            )
            if r.status_code not in (200, 202, 404):
                self.log(f"warning: could not delete the worker pods: HTTP {r.status_code}")
                return
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                pods = c.get(
                    f"/api/v1/namespaces/{NAMESPACE}/pods",
                    params={"labelSelector": "app=locust-worker"},
                ).json()
                if not pods.get("items"):
                    return
                time.sleep(1)
            self.log("warning: worker pods still terminating after 60s")


def in_cluster_workers(
    cluster: Cluster, agent_run: AgentRun, replicas: int, image: str | None, log: Log
) -> tuple[AgentRun, PodWorkers]:
    """The run with its master bound where the pods reach it, and the pods to start."""
    if replicas < 1:
        raise ConfigError("--workers-in-cluster needs at least one worker")
    if image:
        pull = "IfNotPresent"
    elif cluster.provider == "kind":
        image, pull = build_image(log), "Never"
        run(
            [toolchain.binary("kind"), "load", "docker-image", image, "--name", cluster.name],
            "kind load docker-image",
            timeout=600,
        )
        log(f"loaded {image} into kind cluster {cluster.name!r}")
    else:
        raise ConfigError(
            f"--workers-in-cluster on a {cluster.provider} cluster needs "
            "--worker-image REF, an image its nodes can pull (build one with "
            "clusters/locust/build.sh and push it)"
        )
    bind = agent_run.master_bind
    if not bind:
        if cluster.provider != "kind":
            raise ConfigError(
                "--workers-in-cluster needs --master-bind HOST:PORT, an address "
                "of this machine the pods can reach"
            )
        host = kind_gateway()
        bind = f"{host}:{free_port(host)}"
    return replace(agent_run, workers=replicas, master_bind=bind), PodWorkers(
        cluster, replicas, image, pull, log
    )
