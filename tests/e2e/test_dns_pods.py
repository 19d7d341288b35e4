"""DNS as pods see it, on a real kind cluster: the dnsprobe DaemonSet on every real worker,
resolving through the kube-dns Service with the kubelet's resolv.conf, its lookups streamed
to the harness through the API server as they are made.

In order, on one probe run: the pods run on every worker; lookups cost what glibc's search
list makes them cost (an external-looking name walks the whole list); a deleted Service
turns NXDOMAIN within CoreDNS's TTL; a probe container killed outright loses at most its
lookups in flight and the summary says so; CoreDNS scaled to zero makes the lookups fail and
the DNS SLOs fail.
"""

import time
from collections import Counter
from typing import Any

import pytest

from loadtest import toolchain
from loadtest.clusters import Cluster
from loadtest.clusters.base import http_client
from loadtest.clusters.kind import KindProvider, _rolled_out
from loadtest.measurements import dns_pods
from loadtest.measurements.dns import CACHE_TTL_S
from loadtest.proc import run
from loadtest.results import read_jsonl
from loadtest.verdict import slo
from loadtest.wait import until

pytestmark = pytest.mark.e2e

OTHER_NS, OTHER_SVC = "e2e-dns-other", "other-svc"
COREDNS = "/apis/apps/v1/namespaces/kube-system/deployments/coredns"
GATHERED: list[dict[str, Any]] = []  # the probe's summary, once a test gathered it


def lookups(p: dns_pods.PodDnsProbe, since: float = 0.0, kind: str | None = None) -> list[dict]:
    return [
        r
        for r in read_jsonl(p.raw)
        if "k" in r and r["sched"] >= since and (kind is None or r["kind"] == kind)
    ]


@pytest.fixture(scope="module")
def probe(loadtest_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory):
    toolchain.build(["dnsprobe"])
    c = loadtest_cluster
    with http_client(c) as h:  # a Service in another namespace, for SERVICE.NAMESPACE
        h.post("/api/v1/namespaces", json={"metadata": {"name": OTHER_NS}})
        h.post(
            f"/api/v1/namespaces/{OTHER_NS}/services",
            json={"metadata": {"name": OTHER_SVC}, "spec": {"ports": [{"port": 80}]}},
        )
    raw = tmp_path_factory.mktemp("dns-pods") / "dns_pods.jsonl"
    p = dns_pods.PodDnsProbe(
        c,
        raw,
        dns_pods.probe_names((OTHER_NS, OTHER_SVC)),
        rate_hz=10,
        max_s=1800,
        log=print,
        load_image=lambda image: KindProvider().load_image(c.name, image),
    )
    p.start()
    yield p
    if not GATHERED:  # the last test gathers it
        p.gather()
    with http_client(c) as h:
        h.delete(f"/api/v1/namespaces/{OTHER_NS}")
    # The cluster is shared with the next modules: CoreDNS back at full strength (the last
    # test scaled it to zero; it waited for one answer, not for every replica).
    until(lambda: _rolled_out(c), "CoreDNS back at its replicas", timeout=180, interval=1)


def test_probe_pods_run_on_every_real_worker(probe):
    with http_client(probe.cluster) as h:
        workers = dns_pods.real_workers(h)
        pods = [p for p in dns_pods.probe_pods(h) if p["status"]["phase"] == "Running"]
    assert workers and sorted(p["spec"]["nodeName"] for p in pods) == workers
    # and their results arrive while they run, from every one of them
    until(
        lambda: {r["pod"] for r in lookups(probe)} == {p["metadata"]["name"] for p in pods},
        "lookups from every probe pod",
        timeout=30,
    )


def test_lookups_cost_what_the_search_list_makes_them_cost(probe):
    kinds = ("kubernetes", "service", "short", "external", "fqdn")
    until(
        lambda: all(len(lookups(probe, kind=k)) >= 10 for k in kinds),
        "10 lookups of every kind",
        timeout=60,
    )
    (start, *_) = [r for r in read_jsonl(probe.raw) if r.get("event") == "start"]
    search = start["resolv"]["search"]
    assert start["resolv"]["ndots"] == 5 and start["resolv"]["nameservers"] == ["10.96.0.10"]
    assert search[:3] == [
        f"{dns_pods.NAMESPACE}.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
    ]
    for kind, queries, rcode in (
        ("short", 1, "NOERROR"),
        ("kubernetes", 2, "NOERROR"),
        ("service", 2, "NOERROR"),
        ("fqdn", 1, "NOERROR"),
        # the whole search list, then as-is
        ("external", len(search) + 1, "NXDOMAIN"),
    ):
        rs = lookups(probe, kind=kind)
        assert Counter(r["queries"] for r in rs) == {queries: len(rs)}, (kind, rs[:3])
        assert {r["rcode"] for r in rs} == {rcode} and not any(r["cause"] for r in rs), kind
    assert len(search) + 1 > 1


def test_deleted_service_turns_nxdomain_within_the_ttl(probe):
    svc = f"/api/v1/namespaces/{dns_pods.NAMESPACE}/services/{dns_pods.TARGET}"
    with http_client(probe.cluster) as h:
        assert h.delete(svc).status_code == 200
    t0 = time.time()

    def nxdomain_since() -> float | None:
        rs = lookups(probe, since=t0, kind="short")
        nx = [r["sched"] for r in rs if r.get("rcode") == "NXDOMAIN"]
        return min(nx) if nx else None

    t1 = until(
        nxdomain_since,
        "the deleted Service's name to answer NXDOMAIN",
        timeout=CACHE_TTL_S + 30,
        interval=1,
    )
    print(f"deleted Service: NXDOMAIN after {t1 - t0:.1f}s")
    assert t1 - t0 <= CACHE_TTL_S + 5
    time.sleep(3)  # bounded: a few more lookups, which must all say NXDOMAIN now
    later = lookups(probe, since=t1 + 1, kind="short")
    assert later and {r["rcode"] for r in later} == {"NXDOMAIN"}
    assert all(r["queries"] == 4 for r in later)  # a missing short name walks the list too
    with http_client(probe.cluster) as h:  # back, for the rest of the run
        h.post(
            f"/api/v1/namespaces/{dns_pods.NAMESPACE}/services",
            json={"metadata": {"name": dns_pods.TARGET}, "spec": {"ports": [{"port": 80}]}},
        )
    until(
        lambda: any(r.get("rcode") == "NOERROR" for r in lookups(probe, time.time() - 2, "short")),
        "the re-created Service to resolve",
        timeout=CACHE_TTL_S + 30,
        interval=1,
    )


def test_a_killed_probe_container_loses_at_most_its_lookups_in_flight(probe):
    with http_client(probe.cluster) as h:
        pod = sorted(dns_pods.probe_pods(h), key=lambda p: p["metadata"]["name"])[0]
    name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("//")[1]
    before = {r["i"] for r in lookups(probe) if r["pod"] == name}
    run(
        ["docker", "exec", node, "crictl", "stop", "--timeout", "0", cid],
        "crictl stop of the probe container (SIGKILL)",
        timeout=60,
    )
    until(
        lambda: {r["i"] for r in lookups(probe) if r["pod"] == name} - before,
        "lookups from the restarted probe container",
        timeout=90,
        interval=1,
    )


def test_coredns_scaled_to_zero_fails_lookups_and_the_dns_slos(probe):
    c = probe.cluster
    headers = {"Content-Type": "application/merge-patch+json"}
    with http_client(c) as h:
        replicas = h.get(COREDNS).json()["spec"]["replicas"]
        h.patch(f"{COREDNS}/scale", json={"spec": {"replicas": 0}}, headers=headers)
        t0 = time.time()
        try:
            until(
                lambda: (
                    not h.get(
                        "/api/v1/namespaces/kube-system/pods",
                        params={"labelSelector": "k8s-app=kube-dns"},
                    ).json()["items"]
                ),
                "CoreDNS pods gone",
                timeout=120,
                interval=1,
            )
            t_gone = time.time()
            until(
                lambda: len(lookups(probe, since=t_gone + 1)) >= 100,
                "100 lookups with no CoreDNS",
                timeout=60,
                interval=1,
            )
        finally:
            h.patch(f"{COREDNS}/scale", json={"spec": {"replicas": replicas}}, headers=headers)
    down = lookups(probe, since=t_gone + 1)
    assert all(r["cause"] for r in down), Counter(r.get("rcode") for r in down)
    print(
        f"CoreDNS at zero: {Counter(r['cause'] for r in down)} "
        f"(scaled down at +0, pods gone at +{t_gone - t0:.0f}s)"
    )
    until(
        lambda: any(not r["cause"] for r in lookups(probe, since=time.time() - 2)),
        "lookups to succeed once CoreDNS is back",
        timeout=180,
        interval=1,
    )

    s = probe.gather()
    GATHERED.append(s)
    print(
        {k: s[k] for k in ("error_rate", "p50_ms", "p99_ms", "slots", "queries_per_lookup", "pods")}
    )
    results = {r.name: r for r in slo.evaluate({"measurements": {"dns": s}}, slo.load_slos(None))}
    assert results["dns-errors"].status == "fail", results["dns-errors"]
    assert s["where"] == "pods" and s["resolver"]["ndots"] == 5
    assert s["queries_per_lookup"]["external"]["mean_when_ok"] > 1
    # the killed container: one restart, a gap, and no more lost than were in flight
    killed = [p for p in s["pods"] if p["restarts"]]
    assert len(killed) == 1 and killed[0]["processes"] == 2, s["pods"]
    assert 0 < killed[0]["gaps_s"][0] < 60 and killed[0]["lost"] <= 10, killed[0]
    assert all(p["stopped"] for p in s["pods"])  # every pod drained and said so at the end
