"""The kind provider: real multi-node clusters, one Docker container per node.

Clusters are found the way kind finds them, by the `io.x-k8s.kind.cluster` label on the node
containers; there is no state file of ours to go stale. Where no registry can be reached the
node image is the one `make node-image` builds (loadtest/kind-node:<kubernetes version>); if
that image is absent, kind's own default image is used, as on a machine that can pull.
The harness marks the clusters it creates with a Kubernetes node label, so a kind cluster the
user made by hand is reported as not created by the harness (no load goes to it by default).
A memory budget for the API server is a limit on its static pod, set by kubeadm's own patch
mechanism at creation, so it holds from the server's first page and kubelet restarts it after
an OOM kill, as on a production control plane.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import yaml

from loadtest import processes, toolchain
from loadtest.clusters import cgroups, kubeconfig
from loadtest.clusters.base import Cluster, check_name, http_client
from loadtest.clusters.fake_nodes import ensure_beside, stop_beside
from loadtest.errors import ClusterError, CommandError, ConfigError, LoadtestError
from loadtest.proc import run
from loadtest.wait import until

Log = Callable[[str], None]

HOST = "127.0.0.1"
CONFIG_DIR = toolchain.REPO_ROOT / "clusters" / "kind"
CLUSTER_LABEL = "io.x-k8s.kind.cluster"  # kind's own label on every node container
NETWORK = "kind"  # the docker network kind creates and never removes
CREATED_BY = ("loadtest.dev/created-by", "loadtest")  # our mark, a Kubernetes node label
LOCAL_IMAGE_REPO = "loadtest/kind-node"
# The DaemonSet of the node image's default CNI; it stands in for kindnet (see
# clusters/node-image/files/default-cni.yaml). kindest/node images run kindnet instead.
CNI_AGENTS = ({"app": "loadtest-cni"}, {"app": "kindnet"})
ROLE_LABEL = "io.x-k8s.kind.role"  # kind's label: control-plane, worker, external-load-balancer
PATCHES_IN_NODE = "/kind/loadtest-patches"  # kubeadm's patch directory, mounted from the host
DNS_REPLACE_S = 30.0  # the longest CoreDNS's rollout restart is waited for (as local)


def _quiet(_: str) -> None:
    pass


def state_root() -> Path:
    """Where kubeconfigs of kind clusters are written (not a registry of clusters)."""
    return toolchain.cache_dir() / "kind"


def local_image() -> str:
    """The tag `make node-image` gives the image it builds for the pinned Kubernetes."""
    return f"{LOCAL_IMAGE_REPO}:{toolchain.versions()['kubernetes']}"


class KindProvider:
    """Creates and removes kind clusters; see the module docstring."""

    name = "kind"

    def __init__(
        self,
        log: Log = _quiet,
        config: str | Path | None = None,
        image: str | None = None,
        apiserver_port: int | None = None,
        apiserver_args: Mapping[str, str] | None = None,
        feature_gates: str = "",
        timeout: float = 600,
        apiserver_memory: int | None = None,
    ) -> None:
        """`config`: a kind config path or a name in clusters/kind/ ("default", "ha");
        default $LOADTEST_KIND_CONFIG or "default". `image`: the node image; default
        $LOADTEST_KIND_IMAGE, else the local build if present, else kind's own default.
        `apiserver_memory`: bytes each API server may use (its static pod's limit)."""
        self.log = log
        self.apiserver_memory = apiserver_memory
        self.config = _config_path(config or os.environ.get("LOADTEST_KIND_CONFIG") or "default")
        self.image = image or os.environ.get("LOADTEST_KIND_IMAGE") or None
        self.apiserver_port = apiserver_port
        self.apiserver_args = dict(apiserver_args or {})
        self.feature_gates = feature_gates
        self.timeout = timeout

    # --- the provider protocol -------------------------------------------------------------

    def create(self, cluster_name: str) -> Cluster:
        check_name(cluster_name, 32)
        kind, kubectl = toolchain.binary("kind"), toolchain.binary("kubectl")
        _require_docker()
        if cluster_name in self.list():
            raise ClusterError(
                f"kind cluster {cluster_name!r} already exists (remove it with: "
                f"loadtest cluster down --provider kind --name {cluster_name})"
            )
        image = self._node_image()
        d = state_root() / cluster_name
        t0 = time.monotonic()
        try:
            # 1. our kind config: the chosen file, loopback API server, per-run flags, our mark
            d.mkdir(parents=True, exist_ok=True)
            patches = self._write_patches(d / "patches")
            conf = d / "kind-config.yaml"
            conf.write_text(yaml.safe_dump(self._kind_config(patches), sort_keys=False))
            # 2. kind creates the node containers, runs kubeadm, installs the CNI
            shown = image or "kind's default"
            self.log(
                f"creating kind cluster {cluster_name!r} from {self.config.name} with image {shown}"
            )
            cmd: list[str | Path] = [
                kind,
                "create",
                "cluster",
                "--name",
                cluster_name,
                "--config",
                conf,
                "--kubeconfig",
                d / "kubeconfig",
            ]
            if image:
                cmd += ["--image", image]
            run(cmd, "kind create cluster", timeout=self.timeout)
            self.log(f"nodes up ({time.monotonic() - t0:.0f}s); waiting for Ready")
            # 3. every node Ready (the CNI agent has written its conflist)
            self._wait_nodes_ready(kubectl, d / "kubeconfig")
            # 4. CoreDNS and the CNI agent Running and ready on their nodes
            self._wait_system_pods(kubectl, d / "kubeconfig")
            cluster = self._handle(cluster_name, d / "kubeconfig", created_by_harness=True)
            self.log(f"kind cluster {cluster_name!r} ready in {time.monotonic() - t0:.0f}s")
            return cluster
        except BaseException:
            # Nothing half-made stays behind (Ctrl-C included).
            self.delete(cluster_name)
            raise

    def get(self, cluster_name: str) -> Cluster | None:
        if cluster_name not in self.list():
            return None
        d = state_root() / cluster_name
        d.mkdir(parents=True, exist_ok=True)
        kcfg = d / "kubeconfig"
        try:
            # kind knows the endpoint and credentials; our copy is refreshed from it each time.
            kcfg.unlink(missing_ok=True)
            run(
                [
                    toolchain.binary("kind"),
                    "export",
                    "kubeconfig",
                    "--name",
                    cluster_name,
                    "--kubeconfig",
                    kcfg,
                ],
                "kind export kubeconfig",
                timeout=60,
            )
            # Our mark on the nodes tells a harness-made cluster from one made by hand.
            mark = run(
                [
                    toolchain.binary("kubectl"),
                    "--kubeconfig",
                    kcfg,
                    "get",
                    "nodes",
                    "-l",
                    "=".join(CREATED_BY),
                    "-o",
                    "name",
                ],
                "kubectl get nodes",
                timeout=30,
            )
        except CommandError as e:
            # A stopped or broken cluster: not usable, but `delete` still removes it.
            self.log(f"kind cluster {cluster_name!r} exists but cannot be read: {e}")
            return None
        return self._handle(cluster_name, kcfg, created_by_harness="node/" in mark)

    def restart_dns(self, cluster_name: str) -> None:
        """Replace CoreDNS as the local provider does: a rollout restart through the API
        (new pods beside the old, which stop once the new are ready: a healthy cluster
        loses no query), and where that does not finish within DNS_REPLACE_S, or the API
        server does not take it, the old containers are restarted through their nodes'
        runtime, as an OOM kill or an eviction would not wait. kubelet starts them again
        without the API server; each must LIST Services and EndpointSlices anew, and
        under saturation it cannot: after 5 s it answers SERVFAIL, which is what is
        measured."""
        cluster = self._known(cluster_name)
        nodes = _kubelet_nodes(cluster_name)
        old = {n: _crictl_ids(n, "coredns") for n in nodes}
        try:
            _rollout_restart(cluster)
            until(
                partial(_rolled_out, cluster),
                "CoreDNS rolled out",
                timeout=DNS_REPLACE_S,
                interval=1,
            )
            return
        except LoadtestError as e:
            self.log(f"CoreDNS not replaced through the API ({e}): restarting it in its nodes")
        for node, ids in old.items():
            for cid in set(ids) & set(_crictl_ids(node, "coredns")):  # still running
                self.log(f"restarting CoreDNS container {cid[:12]} on {node}")
                _crictl(node, "stop", "--timeout", "2", cid)

    def apiserver_memory_usage(
        self, cluster_name: str, reset: bool = False
    ) -> dict[str, int | None] | None:
        """Since the last reset: the API servers' restarts and OOM kills as kubelet counts
        them (the kernel's count lives in the container's group, gone with it; on cgroup
        v1 the pod's group does not sum it) and the largest peak charge of their pod groups,
        read on the host (the node containers share its kernel; kubelet's groups nest in
        theirs). None when no API server of the cluster has a memory limit; counts are None
        when the API server did not answer."""
        groups = _apiserver_groups(cluster_name)
        if not groups:
            return None
        peaks = [p for p in (cgroups.peak(g) for g in groups) if p is not None]
        now = _apiserver_restarts(self._known(cluster_name))
        base = state_root() / cluster_name / "apiserver-restarts.json"
        if reset:
            for g in groups:
                cgroups.reset_peak(g)
            if now is not None:
                base.write_text(json.dumps(now[0]))
        kills = since = None
        if now is not None and base.exists():
            since = now[0] - json.loads(base.read_text())
            # kubelet keeps the reason of each container's last termination only
            kills = since if "OOMKilled" in now[1] else 0
        return {
            "apiserver_oom_kills": kills,
            "apiserver_restarts": since,
            "apiserver_memory_peak_bytes": max(peaks, default=None),
        }

    def ensure_fake_nodes(self, cluster: Cluster) -> int:
        """kind has no KWOK controller: one runs on the host, beside the cluster."""
        return ensure_beside(cluster, state_root() / cluster.name)

    def dns_netns_pid(self, cluster: Cluster) -> int:
        """kube-dns' Service address is reachable only inside the node containers."""
        return container_pid(cluster.dns_via_container or _probe_node(cluster.name))

    def load_image(self, cluster_name: str, image: str) -> None:
        """`kind load docker-image`: into every node's containerd, no registry."""
        run(
            [toolchain.binary("kind"), "load", "docker-image", image, "--name", cluster_name],
            f"kind load docker-image {image}",
            timeout=300,
        )

    def list(self) -> list[str]:
        return sorted(
            set(
                _docker_lines(
                    [
                        "ps",
                        "-a",
                        "--filter",
                        f"label={CLUSTER_LABEL}",
                        "--format",
                        f'{{{{.Label "{CLUSTER_LABEL}"}}}}',
                    ]
                )
            )
        )

    def delete(self, cluster_name: str) -> None:
        if shutil.which("docker") is None:
            return
        if cluster_name in self.list():
            self.log(f"deleting kind cluster {cluster_name!r}")
            run(
                [toolchain.binary("kind"), "delete", "cluster", "--name", cluster_name],
                "kind delete cluster",
                timeout=300,
            )
        stop_beside(state_root() / cluster_name)  # the KWOK controller for fake nodes
        shutil.rmtree(state_root() / cluster_name, ignore_errors=True)
        # kind leaves its docker network behind; remove it once no kind cluster remains.
        if not self.list() and NETWORK in _docker_lines(["network", "ls", "--format", "{{.Name}}"]):
            try:
                run(["docker", "network", "rm", NETWORK], "docker network rm kind", timeout=60)
            except CommandError as e:
                self.log(f"warning: {e}")

    # --- steps -----------------------------------------------------------------------------

    def _node_image(self) -> str | None:
        if self.image:
            return self.image
        local = local_image()
        try:
            run(["docker", "image", "inspect", local], "docker image inspect", timeout=30)
        except CommandError:
            self.log(
                f"no local node image {local} (make node-image builds it); "
                "kind will use its default image, which needs a registry"
            )
            return None
        return local

    def _write_patches(self, d: Path) -> Path | None:
        """kubeadm patches for the API server's static pod (its memory limit), or None."""
        if not self.apiserver_memory:
            return None
        d.mkdir(parents=True, exist_ok=True)
        limits = {"memory": str(self.apiserver_memory)}
        patch = {
            "spec": {"containers": [{"name": "kube-apiserver", "resources": {"limits": limits}}]}
        }
        (d / "kube-apiserver+strategic.yaml").write_text(yaml.safe_dump(patch))
        return d

    def _kind_config(self, patches: Path | None = None) -> dict[str, Any]:
        try:
            conf = yaml.safe_load(self.config.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"kind config {self.config}: {e}") from e
        if not isinstance(conf, dict) or conf.get("kind") != "Cluster":
            raise ConfigError(f"kind config {self.config}: not a kind Cluster config")
        net = conf.setdefault("networking", {})
        net["apiServerAddress"] = HOST  # load and probes stay on this machine
        if self.apiserver_port:
            net["apiServerPort"] = self.apiserver_port
        args = dict(self.apiserver_args)
        if self.feature_gates:
            args["feature-gates"] = self.feature_gates
        if args:
            patch = {
                "kind": "ClusterConfiguration",
                "apiServer": {"extraArgs": {k: str(v) for k, v in args.items()}},
            }
            conf.setdefault("kubeadmConfigPatches", []).append(yaml.safe_dump(patch))
        nodes = conf.setdefault("nodes", [{"role": "control-plane"}])
        for node in nodes:
            node.setdefault("labels", {})[CREATED_BY[0]] = CREATED_BY[1]
            if patches and node.get("role") == "control-plane":
                node.setdefault("extraMounts", []).append(
                    {"hostPath": str(patches), "containerPath": PATCHES_IN_NODE, "readOnly": True}
                )
                # the first control plane inits, the others join: both read the patches
                node.setdefault("kubeadmConfigPatches", []).extend(
                    yaml.safe_dump({"kind": k, "patches": {"directory": PATCHES_IN_NODE}})
                    for k in ("InitConfiguration", "JoinConfiguration")
                )
        return conf

    def _wait_nodes_ready(self, kubectl: Path, kcfg: Path) -> None:
        want = len(self._kind_config()["nodes"])

        def ready() -> bool:
            nodes = _kubectl_json(kubectl, kcfg, "get", "nodes")["items"]
            ok = [
                n
                for n in nodes
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n["status"].get("conditions", [])
                )
            ]
            return len(nodes) == want and len(ok) == want

        until(ready, f"all {want} nodes Ready", timeout=self.timeout, interval=2)

    def _wait_system_pods(self, kubectl: Path, kcfg: Path) -> None:
        def running(selector: dict[str, str]) -> bool:
            sel = ",".join(f"{k}={v}" for k, v in selector.items())
            pods = _kubectl_json(kubectl, kcfg, "-n", "kube-system", "get", "pods", "-l", sel)[
                "items"
            ]
            return bool(pods) and all(_pod_ready(p) for p in pods)

        until(
            lambda: running({"k8s-app": "kube-dns"}),
            "CoreDNS pods Running and ready",
            timeout=self.timeout,
            interval=2,
        )
        until(
            lambda: any(running(s) for s in CNI_AGENTS),
            "CNI agent pods (loadtest-cni or kindnet) Running",
            timeout=self.timeout,
            interval=2,
        )

    def _known(self, name: str) -> Cluster:
        """A handle from the kubeconfig kept when it was made or last read, without asking
        the API server (`get` does; this works while it is down)."""
        kcfg = state_root() / name / "kubeconfig"
        if not kcfg.exists() and self.get(name) is None:
            raise ClusterError(f"no kind cluster named {name!r}")
        return self._handle(name, kcfg, created_by_harness=False)

    def _handle(self, name: str, kcfg: Path, created_by_harness: bool) -> Cluster:
        creds = kubeconfig.read(kcfg, data_dir=kcfg.parent)
        return Cluster.from_credentials(
            creds,
            name=name,
            provider=self.name,
            kubeconfig=kcfg,
            created_by_harness=created_by_harness,
            # Cluster DNS (kind's default service subnet: kube-dns at 10.96.0.10) is reachable
            # only inside the cluster: probes run in a worker node's network namespace.
            dns=("10.96.0.10", 53),
            dns_via_container=_probe_node(name),
        )


class _Node(NamedTuple):
    id: str
    name: str
    role: str  # kind's: control-plane, worker, external-load-balancer (HA)


def _node_containers(cluster_name: str) -> list[_Node]:
    """The cluster's running node containers, by name."""
    rows = _docker_lines(
        [
            "ps",
            "--no-trunc",
            "--filter",
            f"label={CLUSTER_LABEL}={cluster_name}",
            "--format",
            f'{{{{.ID}}}} {{{{.Names}}}} {{{{.Label "{ROLE_LABEL}"}}}}',
        ]
    )
    nodes = []
    for r in rows:
        cid, name, role = (r.split(" ", 2) + [""])[:3]  # no role label: the line ends at name
        nodes.append(_Node(cid, name, role))
    return sorted(nodes, key=lambda n: n.name)


def _probe_node(name: str) -> str:
    """A worker's container (a control-plane one if there is none), for in-cluster probes."""
    nodes = _node_containers(name)
    workers = [n.name for n in nodes if n.role == "worker"]
    return (workers or [n.name for n in nodes] or [f"{name}-control-plane"])[0]


def container_pid(container: str) -> int:
    """The host pid of a container's init, for nsenter into its namespaces."""
    out = run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container],
        f"docker inspect {container}",
        timeout=30,
    )
    return int(out.strip())


def _config_path(config: str | Path) -> Path:
    p = Path(config)
    if not p.suffix and not p.exists():
        p = CONFIG_DIR / f"{config}.yaml"
    if not p.exists():
        known = ", ".join(sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"kind config {config!r} not found (a path, or one of: {known})")
    return p


def _require_docker() -> None:
    if shutil.which("docker") is None:
        raise ClusterError("docker is not installed: run `make docker`")
    try:
        run(["docker", "info", "--format", "{{.ServerVersion}}"], "docker info", timeout=30)
    except CommandError as e:
        raise ClusterError("the Docker engine does not answer: run `make docker`") from e


def _apiserver_groups(cluster_name: str) -> list[Path]:
    """The memory groups of the cluster's API server pods that have a limit. Found from
    the running servers once (kubelet's path depends on its cgroup driver) and kept:
    a pod's group stays while the server in it is dead between restarts."""
    cache = state_root() / cluster_name / "apiserver-groups.json"
    if cache.exists():
        known = [Path(p) for p in json.loads(cache.read_text())]
        if known and all(p.is_dir() for p in known):
            return known
    ids = [n.id for n in _node_containers(cluster_name) if n.role == "control-plane"]
    found: list[Path] = []
    for pid, argv in processes.mentioning("kube-apiserver").items():
        group = cgroups.memory_group_of(pid)
        if not argv or Path(argv[0]).name != "kube-apiserver" or group is None:
            continue
        if any(i in str(group) for i in ids) and cgroups.memory_limit(group.parent):
            found.append(group.parent)  # the pod's group, above the container's
    found = sorted(set(found))
    if found and cache.parent.is_dir():
        cache.write_text(json.dumps([str(p) for p in found]))
    return found


def _crictl(node: str, *args: str) -> str:
    return run(["docker", "exec", node, "crictl", *args], f"crictl {args[0]} on {node}", timeout=60)


def _kubelet_nodes(cluster_name: str) -> list[str]:
    """The node containers that run a kubelet (not HA's load balancer)."""
    return [n.name for n in _node_containers(cluster_name) if n.role != "external-load-balancer"]


COREDNS = "/apis/apps/v1/namespaces/kube-system/deployments/coredns"


def _rollout_restart(cluster: Cluster) -> None:
    """`kubectl rollout restart deployment/coredns -n kube-system`, through the API."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    annotation = {"kubectl.kubernetes.io/restartedAt": now}
    patch = {"spec": {"template": {"metadata": {"annotations": annotation}}}}
    try:
        with http_client(cluster, timeout=5) as c:
            r = c.patch(
                COREDNS,
                json=patch,
                headers={"Content-Type": "application/strategic-merge-patch+json"},
            )
    except httpx.HTTPError as e:
        raise ClusterError(f"restarting CoreDNS: {type(e).__name__}: {e}") from e
    if r.status_code != 200:
        raise ClusterError(f"restarting CoreDNS: HTTP {r.status_code}: {r.text[:200]}")


def _rolled_out(cluster: Cluster) -> bool:
    """The Deployment's pods are all of the new template and ready (kubectl rollout status)."""
    with http_client(cluster, timeout=5) as c:
        d = c.get(COREDNS).raise_for_status().json()
    want, st = d["spec"].get("replicas", 1), d.get("status", {})
    return bool(
        st.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and st.get("updatedReplicas", 0) == want
        and st.get("replicas", 0) == want
        and st.get("availableReplicas", 0) == want
    )


def _apiserver_restarts(cluster: Cluster) -> tuple[int, list[str]] | None:
    """kubelet's restart count of the API server containers and their last terminations'
    reasons (None: the API server does not answer)."""
    try:
        with http_client(cluster, timeout=10) as c:
            r = c.get(
                "/api/v1/namespaces/kube-system/pods",
                params={"labelSelector": "component=kube-apiserver"},
            )
            r.raise_for_status()
    except httpx.HTTPError:
        return None
    statuses = [
        cs for p in r.json()["items"] for cs in p.get("status", {}).get("containerStatuses", [])
    ]
    reasons = [
        cs["lastState"]["terminated"].get("reason", "")
        for cs in statuses
        if "terminated" in cs.get("lastState", {})
    ]
    return sum(cs.get("restartCount", 0) for cs in statuses), reasons


def _crictl_ids(node: str, name: str) -> list[str]:
    """The running containers named `name` in a node."""
    out = _crictl(node, "ps", "--name", name, "--state", "running", "-q")
    return [line.strip() for line in out.splitlines() if line.strip()]


def _docker_lines(args: list[str]) -> list[str]:
    if shutil.which("docker") is None:
        return []
    out = run(["docker", *args], f"docker {args[0]}", timeout=60)
    return [line.strip() for line in out.splitlines() if line.strip()]


def _kubectl_json(kubectl: Path, kcfg: Path, *args: str) -> dict[str, Any]:
    out = run(
        [kubectl, "--kubeconfig", kcfg, *args, "-o", "json"], f"kubectl {args[-1]}", timeout=30
    )
    doc: dict[str, Any] = json.loads(out)
    return doc


def _pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    return status.get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )
