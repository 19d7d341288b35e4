"""A production-shaped object inventory: deterministic, labelled, idempotent, removable.

Names are a pure function of the spec, so a rerun (or a run after a crash) lists what is
there by label and creates only what is missing. Fake nodes are KWOK nodes, tainted so real
pods never land on them; seeded pods are bound to them by `nodeName` and tolerate the taint,
and KWOK marks them Running.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx

from loadtest.clusters.base import (
    Cluster,
    async_http_client,
    http_client,
    unreachable,
    wait_ready,
)
from loadtest.config import InventorySpec
from loadtest.errors import ClusterError
from loadtest.inventory import padding

LABEL = "loadtest.io/inventory"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_TAINT = {"key": KWOK_ANNOTATION, "value": "fake", "effect": "NoSchedule"}
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# Creates are the API server's work, so make each cheap for it (bench-client: -15% apiserver
# CPU per pod create, +36% rate): no strict decode (our manifests are generated, the default
# "Warn" field validation is wasted), and the created object sent back as protobuf, which
# costs less to encode and we never read (errors stay readable, see _error_text).
CREATE_PARAMS = {"fieldValidation": "Ignore"}
CREATE_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/vnd.kubernetes.protobuf, application/json",
}

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"loadtest: {msg}", file=sys.stderr, flush=True)


# --- object shapes (pure) --------------------------------------------------------------------


def _pad(obj: dict[str, Any], target: int) -> dict[str, Any]:
    """Grow an object to about `target` JSON bytes with an annotation, as real objects carry
    last-applied configurations and tool annotations: text with a real object's entropy
    (`loadtest.inventory.padding`), its own for each object, the same on every run."""
    size = len(json.dumps(obj, separators=(",", ":")))
    missing = target - size - len('"loadtest.io/padding":"",')
    if missing > 0:
        kind, md = obj["kind"].lower(), obj["metadata"]
        key = f"{kind}/{md.get('namespace', '')}/{md['name']}"
        md.setdefault("annotations", {})["loadtest.io/padding"] = padding.filler(
            key, missing, padding.FRESH[kind]
        )
    return obj


def _digest(text: str) -> str:
    """A sha256 digest as real ones look (no runs of zeros), fixed for `text`."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def namespace_name(spec: InventorySpec, j: int) -> str:
    return f"lt-{spec.name}-{j:04d}"


def node_name(spec: InventorySpec, i: int) -> str:
    return f"kwok-{spec.name}-{i:06d}"


def namespace_manifest(spec: InventorySpec, j: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace_name(spec, j), "labels": {LABEL: spec.name}},
    }


def node_manifest(spec: InventorySpec, i: int) -> dict[str, Any]:
    name = node_name(spec, i)
    ident = uuid.uuid5(uuid.NAMESPACE_DNS, name)
    zone = f"zone-{'abc'[i % 3]}"
    # A production node carries many image entries in its status: most of its size.
    images = [
        {
            "names": [
                f"registry.example/team-{k % 40}/service-{k}@{_digest(str(k))}",
                f"registry.example/team-{k % 40}/service-{k}:v1.{k % 17}.{k % 7}",
            ],
            "sizeBytes": 50_000_000 + k * 1_000_003,
        }
        for k in range(40)
    ]
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                LABEL: spec.name,
                "type": "kwok",
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "node.kubernetes.io/instance-type": "m6i.4xlarge",
                "topology.kubernetes.io/region": "region-1",
                "topology.kubernetes.io/zone": zone,
                "node-role.kubernetes.io/worker": "",
                "nodepool": f"pool-{i % 8}",
            },
            "annotations": {
                KWOK_ANNOTATION: "fake",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"taints": [KWOK_TAINT], "providerID": f"kwok://{name}"},
        "status": {
            "capacity": {
                "cpu": "16",
                "memory": "64Gi",
                "pods": "110",
                "ephemeral-storage": "200Gi",
            },
            "allocatable": {
                "cpu": "15800m",
                "memory": "62Gi",
                "pods": "110",
                "ephemeral-storage": "180Gi",
            },
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "containerRuntimeVersion": "containerd://2.1.4",
                "kernelVersion": "6.1.0",
                "osImage": "Debian GNU/Linux 12",
                # Not digit-only: KWOK re-reads status through YAML templates.
                "machineID": ident.hex,
                "systemUUID": str(ident),
                "bootID": str(ident),
            },
            "images": images,
        },
    }
    return _pad(node, spec.node_bytes)


def pod_placement(spec: InventorySpec, p: int) -> tuple[int, int]:
    """(node index, namespace index) of pod number p: nodes filled in turn, namespaces spread."""
    return p // spec.pods_per_node, p % spec.namespaces


def pod_app(spec: InventorySpec, p: int) -> str:
    """The app label of pod p: pods of a namespace spread over its services."""
    return f"app-{(p // spec.namespaces) % max(spec.services_per_namespace, 1)}"


def pod_name(spec: InventorySpec, p: int) -> str:
    return f"{pod_app(spec, p)}-{p:07d}"


def pod_manifest(spec: InventorySpec, p: int) -> dict[str, Any]:
    node_i, ns_j = pod_placement(spec, p)
    app = pod_app(spec, p)
    env: list[dict[str, Any]] = [
        {"name": f"SETTING_{k}", "value": f"value-{k}-{p % 13}"} for k in range(12)
    ]
    env.append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})

    def container(name: str, port: int) -> dict[str, Any]:
        return {
            "name": name,
            "image": f"registry.example/team/{app}-{name}:v1.4.2",
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "env": env,
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
            "readinessProbe": {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 10},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 20},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
        }

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(spec, p),
            "namespace": namespace_name(spec, ns_j),
            "labels": {
                LABEL: spec.name,
                "app": app,
                "team": f"team-{p % 40}",
                "version": "v1.4.2",
                "pod-template-hash": f"{p % 997:08x}",
            },
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "8080",
                "checksum/config": _digest(f"config-{p}"),
            },
        },
        "spec": {
            "nodeName": node_name(spec, node_i),
            "tolerations": [{"key": KWOK_ANNOTATION, "operator": "Exists", "effect": "NoSchedule"}],
            "automountServiceAccountToken": False,
            "containers": [container("main", 8080), container("sidecar", 9090)],
            "volumes": [{"name": "config", "configMap": {"name": "config-0"}}],
        },
    }
    return _pad(pod, spec.pod_bytes)


def service_manifest(spec: InventorySpec, j: int, k: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"app-{k}",
            "namespace": namespace_name(spec, j),
            "labels": {LABEL: spec.name},
        },
        "spec": {
            "selector": {"app": f"app-{k}"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def configmap_manifest(spec: InventorySpec, j: int, k: int) -> dict[str, Any]:
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"config-{k}",
            "namespace": namespace_name(spec, j),
            "labels": {LABEL: spec.name},
        },
        "data": {"app.yaml": ""},
    }
    size = len(json.dumps(cm))
    cm["data"]["app.yaml"] = "k: v\n" * max(0, (spec.configmap_bytes - size) // 5)
    return cm


# --- the plan: every object the spec asks for, in creation order ---------------------------


@dataclass(frozen=True)
class Kind:
    """One resource type the seeder creates: where it lives in the API, how to make it."""

    name: str
    namespaced: bool
    group_path: str = "/api/v1"

    def collection(self, namespace: str | None) -> str:
        if self.namespaced:
            return f"{self.group_path}/namespaces/{namespace}/{self.name}"
        return f"{self.group_path}/{self.name}"


NAMESPACES = Kind("namespaces", namespaced=False)
NODES = Kind("nodes", namespaced=False)
SERVICES = Kind("services", namespaced=True)
CONFIGMAPS = Kind("configmaps", namespaced=True)
PODS = Kind("pods", namespaced=True)
SERVICEACCOUNTS = Kind("serviceaccounts", namespaced=True)


def default_serviceaccount_manifest(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": namespace},
    }


def plan(spec: InventorySpec) -> Iterator[tuple[Kind, Callable[[], dict[str, Any]], str, str]]:
    """(kind, manifest factory, namespace or '', name) in dependency order.

    Factories are lazy so a resumed run does not build objects that already exist.
    """
    for j in range(spec.namespaces):
        yield NAMESPACES, partial(namespace_manifest, spec, j), "", namespace_name(spec, j)
    for j in range(spec.namespaces):
        ns = namespace_name(spec, j)
        # The ServiceAccount admission plugin refuses pods until `default` exists; the
        # controller manager makes it, but seeding must not race it (or need it at all).
        yield SERVICEACCOUNTS, partial(default_serviceaccount_manifest, ns), ns, "default"
    for i in range(spec.nodes):
        yield NODES, partial(node_manifest, spec, i), "", node_name(spec, i)
    for j in range(spec.namespaces):
        ns = namespace_name(spec, j)
        for k in range(spec.configmaps_per_namespace):
            yield CONFIGMAPS, partial(configmap_manifest, spec, j, k), ns, f"config-{k}"
        for k in range(spec.services_per_namespace):
            yield SERVICES, partial(service_manifest, spec, j, k), ns, f"app-{k}"
    for p in range(spec.pods):
        _, ns_j = pod_placement(spec, p)
        yield PODS, partial(pod_manifest, spec, p), namespace_name(spec, ns_j), pod_name(spec, p)


def expected_counts(spec: InventorySpec) -> dict[str, int]:
    return {
        "namespaces": spec.namespaces,
        "nodes": spec.nodes,
        "pods": spec.pods,
        "services": spec.namespaces * spec.services_per_namespace,
        "configmaps": spec.namespaces * spec.configmaps_per_namespace,
    }


# --- talking to the API server ---------------------------------------------------------------


@dataclass
class SeedResult:
    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)  # for benchmarks

    @property
    def total_created(self) -> int:
        return sum(self.created.values())


class Seeder:
    """Creates (or removes) an inventory through the API server, many requests in flight."""

    def __init__(
        self,
        cluster: Cluster,
        spec: InventorySpec,
        concurrency: int = 48,
        log: Log = _stderr,
        progress: bool = True,
    ) -> None:
        self.cluster = cluster
        self.spec = spec
        self.concurrency = concurrency
        self.log = log
        self.progress = progress

    def seed(self) -> SeedResult:
        self._ready()
        return asyncio.run(self._seed())

    def delete(self) -> dict[str, int]:
        self._ready()
        return asyncio.run(self._delete())

    def counts(self) -> dict[str, int]:
        """Objects of this inventory now in the cluster, by resource."""
        self._ready()
        return asyncio.run(self._counts())

    # -- internals --

    def _ready(self) -> None:
        try:
            with http_client(self.cluster, timeout=10) as c:
                wait_ready(c, self.cluster)
        except OSError as e:  # TLS material that cannot be read
            raise unreachable(self.cluster, e) from None

    def _client(self) -> httpx.AsyncClient:
        return async_http_client(
            self.cluster, timeout=60, http2=True, limits=httpx.Limits(max_connections=8)
        )

    async def _existing(
        self, c: httpx.AsyncClient, kind: Kind, field_selector: str = ""
    ) -> set[tuple[str, str]]:
        """(namespace, name) of this inventory's objects of `kind`, metadata only."""
        out: set[tuple[str, str]] = set()
        selector = f"{LABEL}={self.spec.name}" if kind is not SERVICEACCOUNTS else ""
        path = f"{kind.group_path}/{kind.name}"
        cont = ""
        while True:
            params = {"limit": "5000", "labelSelector": selector, "fieldSelector": field_selector}
            if cont:
                params["continue"] = cont
            r = await c.get(path, params=params, headers={"Accept": METADATA_ONLY})
            _raise_for(r, f"LIST {kind.name}")
            body = r.json()
            for item in body.get("items") or []:
                md = item["metadata"]
                out.add((md.get("namespace", ""), md["name"]))
            cont = body.get("metadata", {}).get("continue", "")
            if not cont:
                return out

    async def _seed(self) -> SeedResult:
        result = SeedResult()
        t0 = time.monotonic()
        async with self._client() as c:
            existing: dict[str, set[tuple[str, str]]] = {}
            for kind in (NAMESPACES, SERVICEACCOUNTS, NODES, CONFIGMAPS, SERVICES, PODS):
                existing[kind.name] = await self._existing(c, kind)
            todo = [
                (k, f, ns, n) for k, f, ns, n in plan(self.spec) if (ns, n) not in existing[k.name]
            ]
            for kind in (NAMESPACES, NODES, CONFIGMAPS, SERVICES, PODS):
                planned = expected_counts(self.spec)[kind.name]
                result.existing[kind.name] = planned - sum(1 for k, *_ in todo if k is kind)
            self.log(
                f"seeding {self.spec.name!r}: {len(todo)} objects to create "
                f"({sum(result.existing.values())} already there)"
            )
            bar = _bar(len(todo), "seed", self.progress)
            # Phases in dependency order; within a phase, `concurrency` requests in flight.
            for phase in (NAMESPACES, SERVICEACCOUNTS, NODES, CONFIGMAPS, SERVICES, PODS):
                items = [(k, f, ns) for k, f, ns, _ in todo if k is phase]
                tp = time.monotonic()
                created = await _pool(
                    items, self.concurrency, lambda it: self._create(c, it[0], it[1], it[2]), bar
                )
                result.created[phase.name] = created
                result.phase_seconds[phase.name] = round(time.monotonic() - tp, 3)
            bar.close()
        result.seconds = time.monotonic() - t0
        return result

    async def _create(
        self, c: httpx.AsyncClient, kind: Kind, factory: Callable[[], dict[str, Any]], ns: str
    ) -> bool:
        body = json.dumps(factory(), separators=(",", ":")).encode()
        for attempt in range(8):
            r = await c.post(
                kind.collection(ns), content=body, params=CREATE_PARAMS, headers=CREATE_HEADERS
            )
            if r.status_code in (200, 201):
                return True
            if r.status_code == 409:  # AlreadyExists: a rerun, or a race with a controller
                return False
            if r.status_code in (429, 500, 503, 504) or (
                r.status_code == 403 and "serviceaccount" in _error_text(r).lower()
            ):
                retry_after = float(r.headers.get("Retry-After", 0) or 0.2 * 2**attempt)
                await asyncio.sleep(min(retry_after, 5))
                continue
            _raise_for(r, f"CREATE {kind.name}")
        _raise_for(r, f"CREATE {kind.name} (gave up after retries)")
        return False

    async def _delete(self) -> dict[str, int]:
        before: dict[str, int] = {}
        async with self._client() as c:
            sel = {"labelSelector": f"{LABEL}={self.spec.name}"}
            namespaces = sorted(name for _, name in await self._existing(c, NAMESPACES))
            for kind in (PODS, SERVICES, CONFIGMAPS, NODES, NAMESPACES):
                before[kind.name] = len(await self._existing(c, kind))
            self.log(f"deleting inventory {self.spec.name!r}: {before}")
            # Pods first with no grace: KWOK nodes have no kubelet to confirm a graceful stop.
            for ns in namespaces:
                for kind in (PODS, SERVICES, CONFIGMAPS):
                    r = await c.delete(
                        kind.collection(ns), params={**sel, "gracePeriodSeconds": "0"}
                    )
                    _raise_for(r, f"DELETE {kind.name} in {ns}", ok=(200, 404))
            r = await c.delete(NODES.collection(None), params=sel)
            _raise_for(r, "DELETE nodes", ok=(200, 404))
            for ns in namespaces:
                r = await c.delete(f"/api/v1/namespaces/{ns}")
                _raise_for(r, f"DELETE namespace {ns}", ok=(200, 202, 404, 409))
            # Done means gone: a seed right after must not meet Terminating namespaces.
            deadline = time.monotonic() + 300
            while left := {
                k.name: n for k in (NAMESPACES, NODES) if (n := len(await self._existing(c, k)))
            }:
                if time.monotonic() > deadline:
                    raise ClusterError(f"timed out after 300s waiting for deletion: {left} left")
                await asyncio.sleep(0.5)
        return before

    def wait_ready(self, timeout: float = 300) -> dict[str, int]:
        """Wait until every seeded node is Ready and every seeded pod Running."""
        return asyncio.run(self._wait_ready(timeout))

    async def _wait_ready(self, timeout: float) -> dict[str, int]:
        want_nodes, want_pods = self.spec.nodes, self.spec.pods
        deadline = time.monotonic() + timeout
        pause = 1.0
        async with self._client() as c:
            while True:
                ready = await self._count_ready_nodes(c)
                running = len(await self._existing(c, PODS, "status.phase=Running"))
                if ready >= want_nodes and running >= want_pods:
                    return {"nodes_ready": ready, "pods_running": running}
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"timed out after {timeout:.0f}s waiting for KWOK: {ready}/{want_nodes} "
                        f"nodes Ready, {running}/{want_pods} pods Running"
                    )
                # Each check lists every seeded pod: back off so waiting does not load the
                # API server that KWOK is busy writing to.
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, 5.0)

    async def _count_ready_nodes(self, c: httpx.AsyncClient) -> int:
        ready, cont = 0, ""
        while True:
            params = {"limit": "500", "labelSelector": f"{LABEL}={self.spec.name}"}
            if cont:
                params["continue"] = cont
            r = await c.get("/api/v1/nodes", params=params)
            _raise_for(r, "LIST nodes")
            body = r.json()
            for n in body.get("items") or []:
                conds = n.get("status", {}).get("conditions") or []
                ready += any(x["type"] == "Ready" and x["status"] == "True" for x in conds)
            cont = body.get("metadata", {}).get("continue", "")
            if not cont:
                return ready

    async def _counts(self) -> dict[str, int]:
        async with self._client() as c:
            return {
                k.name: len(await self._existing(c, k))
                for k in (NAMESPACES, NODES, PODS, SERVICES, CONFIGMAPS)
            }


async def _pool(items: list[Any], concurrency: int, fn: Callable[[Any], Any], bar: Any) -> int:
    """Run fn over items with at most `concurrency` in flight; count truthy results."""
    done = 0

    async def worker(it: AsyncIterator[Any] | Iterator[Any]) -> None:
        nonlocal done
        for item in it:  # type: ignore[union-attr]
            if await fn(item):
                done += 1
            bar.update(1)

    shared = iter(items)
    await asyncio.gather(*(worker(shared) for _ in range(max(1, concurrency))))
    return done


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="obj",
        disable=not enabled or total == 0,
        file=sys.stderr,
        smoothing=0.1,
        mininterval=1.0,
    )


def _error_text(r: httpx.Response) -> str:
    """The message of an error response, JSON or protobuf (a Status whose strings are plain
    bytes between binary framing: keep the readable runs)."""
    if "protobuf" in r.headers.get("content-type", ""):
        return " ".join(m.decode() for m in re.findall(rb"[ -~]{6,}", r.content))
    try:
        return str(r.json().get("message", r.text))
    except ValueError:
        return r.text


def _raise_for(r: httpx.Response, what: str, ok: tuple[int, ...] = (200,)) -> None:
    if r.status_code not in ok:
        raise ClusterError(f"{what}: HTTP {r.status_code}: {_error_text(r)[:300]}")
