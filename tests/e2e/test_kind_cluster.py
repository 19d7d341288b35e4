"""A real 3-node kind cluster from the locally built node image, end to end.

Nodes Ready, CoreDNS and the CNI agent Running, and cluster DNS answering from inside a pod
(with the pod's own resolv.conf: ndots:5, search domains, nameserver = the kube-dns Service)
for the kubernetes Service and for a Service this test creates. The last test deletes the
cluster and checks that no container or network of the harness is left.
"""

import json
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtest import toolchain
from loadtest.clusters import Cluster, get_provider
from loadtest.clusters import kind as kind_m
from loadtest.clusters.kind import CLUSTER_LABEL, NETWORK, state_root
from loadtest.proc import run
from loadtest.wait import until

pytestmark = pytest.mark.e2e

PROBE_IMAGE = "localhost/loadtest/busybox:e2e"
DNS_SERVICE_IP = "10.96.0.10"  # kubeadm's default: the 10th address of 10.96.0.0/16


def kubectl(cluster: Cluster, *args: str, input: str | None = None, timeout: float = 60) -> str:
    return run(
        [toolchain.binary("kubectl"), "--kubeconfig", cluster.kubeconfig, *args],
        f"kubectl {' '.join(args[:3])}",
        input=input,
        timeout=timeout,
    )


def kubectl_json(cluster: Cluster, *args: str) -> dict:
    return json.loads(kubectl(cluster, *args, "-o", "json"))


def ready(obj: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in obj.get("status", {}).get("conditions", [])
    )


@pytest.fixture(scope="module")
def probe_image(loadtest_cluster: Cluster) -> str:
    """A busybox image made here (Debian's busybox-static, docker import), in every node."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail(
            "/bin/busybox is missing: apt-get install busybox-static (make node-image installs it)"
        )
    old = run(["docker", "images", "-q", "--no-trunc", PROBE_IMAGE], "docker images").strip()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        (root / "etc").mkdir()
        (root / "tmp").mkdir(mode=0o1777)
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in ("sh", "sleep", "nslookup", "wget", "httpd", "cat", "echo"):
            (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        run(
            ["sh", "-c", f"tar -C {root} -c . | docker import -c 'ENV PATH=/bin' - {PROBE_IMAGE}"],
            "docker import of the probe image",
        )
    new = run(["docker", "images", "-q", "--no-trunc", PROBE_IMAGE], "docker images").strip()
    if old and old != new:  # re-importing under the same tag leaves the old one dangling
        run(["docker", "rmi", old], "docker rmi of the previous probe image")
    run(
        [
            toolchain.binary("kind"),
            "load",
            "docker-image",
            PROBE_IMAGE,
            "--name",
            loadtest_cluster.name,
        ],
        "kind load docker-image",
        timeout=180,
    )
    return PROBE_IMAGE


def test_three_nodes_all_ready(loadtest_cluster: Cluster):
    assert loadtest_cluster.provider == "kind" and loadtest_cluster.created_by_harness
    assert loadtest_cluster.server.startswith("https://127.0.0.1:")
    nodes = kubectl_json(loadtest_cluster, "get", "nodes")["items"]
    roles = sorted(
        "control-plane"
        if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"]
        else "worker"
        for n in nodes
    )
    assert roles == ["control-plane", "worker", "worker"]
    assert all(ready(n) for n in nodes), [n["metadata"]["name"] for n in nodes if not ready(n)]
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {
        toolchain.versions()["kubernetes"]
    }


def test_coredns_and_cni_agent_running(loadtest_cluster: Cluster):
    nodes = {n["metadata"]["name"] for n in kubectl_json(loadtest_cluster, "get", "nodes")["items"]}
    dns = kubectl_json(
        loadtest_cluster, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns"
    )["items"]
    assert dns and all(p["status"]["phase"] == "Running" and ready(p) for p in dns)
    # loadtest-cni stands in for kindnet (no registry serves kindnetd here): one per node.
    cni = kubectl_json(
        loadtest_cluster, "-n", "kube-system", "get", "pods", "-l", "app=loadtest-cni"
    )["items"]
    assert {p["spec"]["nodeName"] for p in cni} == nodes
    assert all(p["status"]["phase"] == "Running" and ready(p) for p in cni)


def test_cluster_dns_from_inside_a_pod(loadtest_cluster: Cluster, probe_image: str):
    c = loadtest_cluster
    ns = f"e2e-{uuid.uuid4().hex[:6]}"
    workers = sorted(
        n["metadata"]["name"]
        for n in kubectl_json(c, "get", "nodes")["items"]
        if "node-role.kubernetes.io/control-plane" not in n["metadata"]["labels"]
    )
    kubectl(c, "create", "namespace", ns)
    try:
        until(
            lambda: "default" in kubectl(c, "-n", ns, "get", "serviceaccounts", "-o", "name"),
            "the namespace's default ServiceAccount",
            timeout=60,
        )
        # A test Service backed by an httpd pod on one worker; the probe runs on the other.
        kubectl(c, "-n", ns, "apply", "-f", "-", input=_manifests(probe_image, workers))
        until(
            lambda: all(
                ready(kubectl_json(c, "-n", ns, "get", "pod", p)) for p in ("web", "probe")
            ),
            "probe and web pods Ready",
            timeout=120,
            interval=1,
        )
        svc_ip = kubectl_json(c, "-n", ns, "get", "service", "web")["spec"]["clusterIP"]

        def lookup(name: str) -> dict[str, list[str]]:
            """Answers by name, as busybox nslookup prints them: it tries the search domains
            too and exits 1 if any candidate is NXDOMAIN, so its exit code says little."""
            out = kubectl(
                c, "-n", ns, "exec", "probe", "--", "sh", "-c", f"nslookup {name} 2>&1; true"
            )
            assert re.search(rf"^Server:\s*{re.escape(DNS_SERVICE_IP)}$", out, re.M), out
            answers: dict[str, list[str]] = {}
            for fqdn, ip in re.findall(r"^Name:\s*(\S+)\nAddress:\s*([0-9.]+)$", out, re.M):
                answers.setdefault(fqdn, []).append(ip)
            return answers

        kube = "kubernetes.default.svc.cluster.local"
        assert lookup(kube) == {kube: ["10.96.0.1"]}
        web = f"web.{ns}.svc.cluster.local"
        assert until(
            lambda: lookup(web) == {web: [svc_ip]},
            "the test Service's name to resolve",
            timeout=60,
            interval=2,
        )
        # The short name, through the pod's search domains (ndots:5), as apps ask for it.
        assert lookup("web") == {web: [svc_ip]}
        # And the Service leads somewhere: pod -> ClusterIP -> pod on the other worker.
        # (busybox-static's wget crashes in static glibc here; nc with the ClusterIP works.)
        out = kubectl(
            c,
            "-n",
            ns,
            "exec",
            "probe",
            "--",
            "sh",
            "-c",
            f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 {svc_ip} 8080",
        )
        assert "200 OK" in out and out.rstrip().endswith("hello from web"), out
    finally:
        kubectl(c, "delete", "namespace", ns, "--wait=false")


def _coredns_containers(cluster: Cluster) -> set[str]:
    nodes = kind_m._kubelet_nodes(cluster.name)
    return {c for n in nodes for c in kind_m._crictl_ids(n, "coredns")}


def _containers_when(cluster: Cluster, ok: Callable[[set[str]], bool], what: str) -> set[str]:
    def now() -> set[str] | None:
        cs = _coredns_containers(cluster)
        return cs if cs and ok(cs) else None

    return until(now, what, timeout=60)


def test_coredns_restarts_through_the_api_or_else_through_the_runtime(
    loadtest_cluster: Cluster,
):
    """A rollout restart when the API server answers; when it is stopped (SIGSTOP), the
    running CoreDNS containers are restarted by their nodes' kubelets all the same."""
    said: list[str] = []
    provider = kind_m.KindProvider(log=said.append)
    c = loadtest_cluster
    until(lambda: kind_m._rolled_out(c), "CoreDNS steady before the test", timeout=60)
    before = _coredns_containers(c)
    provider.restart_dns(c.name)  # the API answers: a rollout
    deploy = kubectl_json(c, "-n", "kube-system", "get", "deployment", "coredns")
    assert "kubectl.kubernetes.io/restartedAt" in deploy["spec"]["template"]["metadata"].get(
        "annotations", {}
    )
    assert not said, said  # rolled out through the API, within DNS_REPLACE_S, nothing else
    assert kind_m._rolled_out(c)
    # new pods' containers; the old ones stop after their lame-duck seconds
    rolled = _containers_when(c, lambda cs: not cs & before, "the old CoreDNS pods gone")
    control_plane = f"{c.name}-control-plane"
    run(["docker", "exec", control_plane, "pkill", "-STOP", "-x", "kube-apiserver"], "stop")
    try:
        provider.restart_dns(c.name)
    finally:
        run(["docker", "exec", control_plane, "pkill", "-CONT", "-x", "kube-apiserver"], "cont")
    again = _containers_when(c, lambda cs: len(cs) == len(rolled), "CoreDNS running again")
    assert not again & rolled  # restarted in place, without the API server
    until(lambda: kind_m._rolled_out(c), "CoreDNS ready again", timeout=60)


def test_delete_leaves_no_containers_or_networks(
    loadtest_cluster: Cluster, request: pytest.FixtureRequest
):
    if request.config.getoption("--loadtest-keep-cluster"):
        pytest.skip("--loadtest-keep-cluster: the cluster stays")
    provider = get_provider("kind")
    provider.delete(loadtest_cluster.name)
    provider.delete(loadtest_cluster.name)  # twice is safe
    left = run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label={CLUSTER_LABEL}={loadtest_cluster.name}",
            "--format",
            "{{.Names}}",
        ],
        "docker ps",
    )
    assert left.strip() == ""
    assert not (state_root() / loadtest_cluster.name).exists()
    if not provider.list():  # the kind network goes with the last kind cluster
        networks = run(["docker", "network", "ls", "--format", "{{.Name}}"], "docker network ls")
        assert NETWORK not in networks.split()
    assert provider.get(loadtest_cluster.name) is None


def _manifests(image: str, workers: list[str]) -> str:
    web_node, probe_node = workers[0], workers[-1]
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeName: {web_node}
  containers:
  - name: httpd
    image: {image}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo 'hello from web' > /tmp/index.html && httpd -f -p 8080 -h /tmp"]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 8080, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: probe}}
spec:
  nodeName: {probe_node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: probe
    image: {image}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"""
