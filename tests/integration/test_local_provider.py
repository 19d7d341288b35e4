"""Against a real local control plane: etcd, kube-apiserver, controllers, KWOK, CoreDNS."""

import socket
import threading
import time
import uuid

import dns.rcode
import pytest
from kubernetes import client

from loadtest import processes
from loadtest.clusters import Cluster, get_provider, http_client
from loadtest.clusters.capabilities import BudgetsApiserverMemory, RestartsDNS
from loadtest.clusters.local import dns_query, state_root
from loadtest.errors import ClusterError
from loadtest.measurements import dns as dns_m
from loadtest.wait import until

pytestmark = pytest.mark.integration


def _processes_mentioning(needle: str) -> list[str]:
    return [" ".join(argv) for argv in processes.mentioning(needle).values()]


def test_apiserver_is_ready_and_bound_to_loopback(loadtest_cluster: Cluster):
    assert loadtest_cluster.server.startswith("https://127.0.0.1:")
    with http_client(loadtest_cluster) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.text == "ok"
        version = c.get("/version").json()
    assert version["gitVersion"].startswith("v1.33.")


def test_service_resolves_through_coredns_and_missing_name_is_nxdomain(loadtest_cluster, k8s):
    core = client.CoreV1Api(k8s)
    ns = f"it-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    svc = core.create_namespaced_service(
        ns,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                ports=[client.V1ServicePort(port=80)], selector={"app": "web"}
            ),
        ),
    )
    client.DiscoveryV1Api(k8s).create_namespaced_endpoint_slice(
        ns,
        client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(
                name="web-1", labels={"kubernetes.io/service-name": "web"}
            ),
            address_type="IPv4",
            endpoints=[client.V1Endpoint(addresses=["10.0.0.5"])],
            ports=[client.DiscoveryV1EndpointPort(port=80)],
        ),
    )
    cluster_ip = svc.spec.cluster_ip
    assert cluster_ip

    def answer():
        msg = dns_query(loadtest_cluster.dns, f"web.{ns}.svc.cluster.local.")
        return [rr.address for rrset in msg.answer for rr in rrset]

    assert until(answer, "the new Service to resolve", timeout=30) == [cluster_ip]
    missing = dns_query(loadtest_cluster.dns, f"nope.{ns}.svc.cluster.local.")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    core.delete_namespace(ns)


def test_kwok_fake_node_becomes_ready(loadtest_cluster, k8s):
    core = client.CoreV1Api(k8s)
    name = f"kwok-it-{uuid.uuid4().hex[:6]}"
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(
                name=name, annotations={"kwok.x-k8s.io/node": "fake"}, labels={"type": "kwok"}
            )
        )
    )

    def ready():
        n = core.read_node(name)
        return any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])

    assert until(ready, f"KWOK to mark node {name} Ready", timeout=30)
    core.delete_node(name)


def test_apiserver_metrics_are_scraped(loadtest_cluster):
    with http_client(loadtest_cluster) as c:
        text = c.get(loadtest_cluster.metrics["apiserver"]).text
    assert "apiserver_request_total{" in text
    import httpx

    coredns = httpx.get(loadtest_cluster.metrics["coredns"], timeout=5).text
    assert "coredns_dns_requests_total" in coredns


def test_second_cluster_with_same_name_is_refused(loadtest_cluster):
    with pytest.raises(ClusterError, match="already exists"):
        get_provider("local").create(loadtest_cluster.name)


def test_port_in_use_is_refused_and_leaves_nothing():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ClusterError, match=f"port {port} .* in use"):
            get_provider("local", apiserver_port=port).create("it-port")
    assert not (state_root() / "it-port").exists()


def test_up_then_down_leaves_no_process_and_no_files():
    provider = get_provider("local")
    cluster = provider.create("it-down")
    d = state_root() / "it-down"
    assert _processes_mentioning(str(d)), "expected the control plane to run from its state dir"
    port = int(cluster.server.rsplit(":", 1)[1])
    provider.delete("it-down")
    assert _processes_mentioning(str(d)) == []
    assert not d.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    provider.delete("it-down")  # twice is safe


def test_restart_dns_replaces_coredns_without_losing_a_query(loadtest_cluster: Cluster):
    d = state_root() / loadtest_cluster.name
    before = int((d / "coredns.pid").read_text())
    server = loadtest_cluster.dns
    assert server is not None
    answers: list[str] = []
    stop = threading.Event()

    def probe() -> None:  # bounded: ends with the restart, at most 60 s
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            # a lookup as the DNS probe (and a pod's resolver) makes it
            r = dns_m.query(server, "kubernetes.default.svc.cluster.local.", 2.0)
            answers.append(r["rcode"] if r["answers"] else f"{r['rcode']} (empty)")
            time.sleep(0.02)

    t = threading.Thread(target=probe)
    t.start()
    time.sleep(0.5)
    provider = get_provider("local")
    assert isinstance(provider, RestartsDNS)
    provider.restart_dns(loadtest_cluster.name)
    time.sleep(0.5)
    stop.set()
    t.join()
    after = int((d / "coredns.pid").read_text())
    assert after != before and not processes.argv(before)
    # the new instance served before the old one left (a rollout with surge)
    assert len(answers) > 20 and set(answers) == {"NOERROR"}, [
        (i, a) for i, a in enumerate(answers) if a != "NOERROR"
    ]
    assert until(
        lambda: dns_query(server, "kubernetes.default.svc.cluster.local.").answer,
        "the restarted CoreDNS to answer",
        timeout=30,
    )


def test_coredns_reads_the_api_as_its_own_serviceaccount(loadtest_cluster: Cluster):
    with http_client(loadtest_cluster) as c:
        text = c.get(loadtest_cluster.metrics["apiserver"]).text
    # APF classifies CoreDNS's watches under its ServiceAccount, not the exempt admin
    assert 'flow_schema="kube-system-service-accounts"' in text


def test_mitigation_objects_pass_server_validation_and_classify_agents(loadtest_cluster):
    from loadtest.agents.identity import NAMESPACE
    from loadtest.gate import mitigation

    objs = mitigation.objects(mitigation.Plan())
    assert mitigation.apply(loadtest_cluster, objs, dry_run=True) == [
        "PriorityLevelConfiguration/loadtest-agents",
        "FlowSchema/loadtest-agents",
    ]
    mitigation.apply(loadtest_cluster, objs)
    try:
        with http_client(loadtest_cluster) as c:
            uid = c.get(f"{mitigation.FC}/prioritylevelconfigurations/loadtest-agents").json()[
                "metadata"
            ]["uid"]

            def classified():
                r = c.get(
                    "/api/v1/namespaces/default/pods",
                    headers={
                        "Impersonate-User": f"system:serviceaccount:{NAMESPACE}:agent-1",
                        "Impersonate-Group": f"system:serviceaccounts:{NAMESPACE}",
                    },
                )
                return r.headers.get("X-Kubernetes-PF-PriorityLevel-UID") == uid

            assert until(classified, "an agent's request to land in the new level", 30)
    finally:
        mitigation.remove(loadtest_cluster)


def test_apiserver_memory_budget_is_a_cgroup_of_its_own():
    import os

    from loadtest.clusters import cgroups

    if os.geteuid() != 0:
        pytest.skip("a cgroup memory limit needs root")
    provider = get_provider("local", apiserver_memory=2**30)
    provider.create("it-mem")
    group, limit_file = cgroups._group("it-mem")[:2]
    try:
        assert int((group / limit_file).read_text()) == 2**30
        pids = (group / "cgroup.procs").read_text().split()
        assert pids and all("kube-apiserver" in " ".join(processes.argv(int(p))) for p in pids)
        assert isinstance(provider, BudgetsApiserverMemory)
        usage = provider.apiserver_memory_usage("it-mem")
        assert usage is not None
        assert usage["apiserver_oom_kills"] == 0
        # the group holds the running API server and its memory (v1 moves the charge along)
        peak = usage["apiserver_memory_peak_bytes"]
        assert peak is not None and 50 * 2**20 < peak <= 2**30
    finally:
        provider.delete("it-mem")
    assert not group.exists()
