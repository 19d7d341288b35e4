"""The user's control plane (`--target FILE`): what differs from the machine the model was
fitted on, turned into a capacity and a scaling of the unit costs, every assumption named.

    version: 1
    name: prod-eu-1
    apiserver: {replicas: 3, cores: 8, memory: 32Gi}
    etcd: {separate: true}
    kubernetes: {version: v1.30.4, feature_gates: {ConsistentListFromCache: false}}
    inventory: {nodes: 5000, pods_per_node: 30, pod_bytes: 5000, node_bytes: 12000}
    agents_per_node: 1
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from loadtest import config
from loadtest.clusters import cgroups
from loadtest.config import Strict
from loadtest.errors import LoadtestError
from loadtest.gate.capacity import Capacity, Scaling
from loadtest.run.record import RecordLike, coerce

# DESIGN.md, measured here: 200 consistent LISTs of 2,000 pods, watch cache 16.3 s, etcd 24.4 s
# at the same concurrency (and etcd's own CPU 0.2 s -> 3.9 s).
ETCD_LIST_FACTOR = 24.4 / 16.3
# With etcd on the same machines its share of the cores (a guess, named in the report).
ETCD_SHARE = 0.15


class ApiserverSpec(Strict):
    replicas: int = Field(default=1, ge=1, le=100)
    cores: float = Field(gt=0, le=1024)
    memory: str | None = None  # e.g. 32Gi; None: no budget modelled
    # APF seats of the level the agents land in (default: as measured on the fit's server)
    agent_level_seats: float | None = Field(default=None, gt=0)

    @field_validator("memory")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                cgroups.parse_bytes(v)
            except LoadtestError as e:  # gathered with the file's other errors
                raise ValueError(str(e)) from None
        return v


class EtcdSpec(Strict):
    separate: bool = True


class KubernetesSpec(Strict):
    version: str = Field(default="v1.33.13", pattern=r"^v?\d+\.\d+(\.\d+)?$")
    feature_gates: dict[str, bool] = {}

    def minor(self) -> int:
        return int(self.version.lstrip("v").split(".")[1])

    def consistent_list_from_cache(self) -> bool:
        """Beta and on by default from 1.31."""
        return self.feature_gates.get("ConsistentListFromCache", self.minor() >= 31)


class TargetInventory(Strict):
    nodes: int = Field(default=5000, ge=1, description="the largest size to forecast for")
    pods_per_node: int = Field(default=30, ge=0)
    pod_bytes: int = Field(default=5000, ge=200)
    node_bytes: int = Field(default=12000, ge=500)


class TargetSpec(Strict):
    version: int = Field(default=1, ge=1, le=1)
    name: str = "target"
    apiserver: ApiserverSpec
    etcd: EtcdSpec = EtcdSpec()
    kubernetes: KubernetesSpec = KubernetesSpec()
    inventory: TargetInventory = TargetInventory()
    agents_per_node: float = Field(default=1.0, gt=0)


def load_target(path: Path) -> TargetSpec:
    return config.load(TargetSpec, path)


def translate(
    t: TargetSpec, fit: dict[str, Any], pods_share: float
) -> tuple[Capacity, Scaling, list[str]]:
    """Capacity and scaling of the target against the fit's runs; the assumptions made.

    fit: the fitted runs' shape: pods_per_node, pod_bytes, node_bytes, consistent_cache
    (bool), cores (what the fit's API server had). pods_share: the share of LIST bytes that
    were pods in the fit (the rest nodes)."""
    notes = [
        f"per-core speed of {t.name} equals this machine's (unit costs are CPU-seconds "
        "measured here)"
    ]
    cores = t.apiserver.cores
    if not t.etcd.separate:
        cores *= 1 - ETCD_SHARE
        notes.append(
            f"etcd shares the API servers' machines: {ETCD_SHARE:.0%} of their cores "
            "left to it (not measured)"
        )
    else:
        notes.append("etcd on machines of its own: the API servers keep all their cores")
    if t.apiserver.replicas > 1:
        notes.append(
            f"{t.apiserver.replicas} API servers behind a load balancer share the "
            "agents' LISTs and watches evenly; each keeps its own idle cost"
        )
    mem = cgroups.parse_bytes(t.apiserver.memory) if t.apiserver.memory else None
    notes.append(
        f"{t.apiserver.memory} of memory per API server: OOM beyond it"
        if mem
        else "no memory budget given: memory is not a breaking point here"
    )
    ppn = t.inventory.pods_per_node / max(1, fit.get("pods_per_node") or 1)
    pod_b = t.inventory.pod_bytes / max(1, fit.get("pod_bytes") or 1)
    node_b = t.inventory.node_bytes / max(1, fit.get("node_bytes") or 1)
    list_bytes = pods_share * ppn * pod_b + (1 - pods_share) * node_b
    notes.append(
        f"bytes per LIST scale with objects x size: pods x{ppn * pod_b:.3g} "
        f"({pods_share:.0%} of the fit's LIST bytes), nodes x{node_b:.3g}: "
        f"x{list_bytes:.3g} overall; CPU per byte listed as measured"
    )
    notes.append(
        f"watch events scale with pods per node (x{ppn:.3g}): the node-local watches "
        "see their node's pods"
    )
    list_cost = 1.0
    here, there = fit.get("consistent_cache", True), t.kubernetes.consistent_list_from_cache()
    if here and not there:
        list_cost = ETCD_LIST_FACTOR
        notes.append(
            f"Kubernetes {t.kubernetes.version} serves consistent LISTs from etcd "
            f"(ConsistentListFromCache off): x{ETCD_LIST_FACTOR:.2f} API server time "
            "per LIST (measured here at 2,000 pods), for every LIST alike"
        )
    elif there and not here:
        list_cost = 1 / ETCD_LIST_FACTOR
        notes.append(
            "the target serves consistent LISTs from the watch cache, the fit from "
            f"etcd: x{1 / ETCD_LIST_FACTOR:.2f} per LIST"
        )
    else:
        notes.append(
            "consistent LISTs served "
            + ("from the watch cache" if there else "from etcd")
            + " on both"
        )
    gates = {k: v for k, v in t.kubernetes.feature_gates.items() if k != "ConsistentListFromCache"}
    if gates:
        notes.append(f"feature gates {gates} are not modelled (no unit cost measured with them)")
    notes.append(
        f"latency on an idle server and APF seats per agent as measured here; "
        f"{t.agents_per_node:g} agent(s) per node"
    )
    cap = Capacity(
        cores=cores,
        replicas=t.apiserver.replicas,
        level_seats=t.apiserver.agent_level_seats,
        memory_bytes=mem,
    )
    return (
        cap,
        Scaling(
            agents_per_node=t.agents_per_node,
            list_bytes=list_bytes,
            watch_events=ppn,
            list_cost=list_cost,
        ),
        notes,
    )


def local_target(cores: float, replicas: int = 1, memory: str | None = None) -> TargetSpec:
    """This machine as a target (what `--cores` means): for checks of the carry-over."""
    return TargetSpec(apiserver=ApiserverSpec(cores=cores, replicas=replicas, memory=memory))


def consistent_cache(summary: RecordLike) -> bool:
    """Did the run's API server serve consistent LISTs from its watch cache?"""
    cluster = coerce(summary).cluster
    gates = cluster.get("feature_gates") or ""
    m = re.search(r"ConsistentListFromCache=(true|false)", str(gates))
    version = cluster.get("version") or "v1.33"
    minor = int(re.findall(r"\d+", version)[1]) if len(re.findall(r"\d+", version)) > 1 else 33
    return (m.group(1) == "true") if m else minor >= 31
