"""The pods' DNS probe, harness side: offline Corefile, manifests, the summary of streamed
records (restarts, lost slots, queries per lookup), and the resumable pod-log stream."""

import json
from pathlib import Path

import httpx
import pytest

from loadtest.clusters import podlogs
from loadtest.clusters.base import Cluster
from loadtest.measurements import dns_pods

# kubeadm v1.33's Corefile as it renders for cluster.local (cmd/kubeadm/app/phases/addons/dns)
KUBEADM_COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""


def test_offline_corefile_drops_forward_and_answers_what_searches_end_in():
    out = dns_pods.offline_corefile(KUBEADM_COREFILE)
    assert out is not None
    assert "forward" not in out and "max_concurrent" not in out
    assert (
        '    template ANY ANY {\n       match "^[^.]+\\.$" "(^|\\.)invalid\\.$"\n'
        "       rcode NXDOMAIN\n       fallthrough\n    }\n    kubernetes cluster.local"
    ) in out
    # everything else kept, in order
    for line in (
        "kubernetes cluster.local in-addr.arpa ip6.arpa {",
        "cache 30 {",
        "loop",
        "prometheus :9153",
        "ttl 30",
    ):
        assert line in out
    assert out.count("{") == out.count("}")
    assert dns_pods.offline_corefile(out) is None  # once is enough


def test_offline_corefile_refuses_a_corefile_without_kubernetes():
    with pytest.raises(Exception, match="no kubernetes plugin"):
        dns_pods.offline_corefile(".:53 {\n    forward . 8.8.8.8\n}\n")


def test_probe_names_cover_the_kinds_apps_use():
    names = dns_pods.probe_names(("lt-default-0000", "app-0"))
    assert [k for k, _, _ in names] == ["kubernetes", "service", "short", "external", "fqdn"]
    assert ("service", "app-0.lt-default-0000", True) in names
    assert ("external", dns_pods.EXTERNAL, False) in names
    assert dns_pods.EXTERNAL.endswith(".invalid")  # RFC 6761: never a real name
    assert names[-1][1].endswith(".")  # fully qualified: one query
    assert "service" not in [k for k, _, _ in dns_pods.probe_names(None)]


def test_daemonset_runs_on_real_workers_with_the_local_image():
    objs = dict(
        (o["kind"], o)
        for _, o in dns_pods.manifests(
            "localhost/loadtest/dnsprobe:abc", dns_pods.probe_names(None), 10, 600
        )
    )
    assert set(objs) == {"Namespace", "Service", "DaemonSet"}
    spec = objs["DaemonSet"]["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "Never" and c["image"].endswith(":abc")
    assert "--rate=10" in c["args"] and "--duration=600s" in c["args"]
    assert f"--missing=external={dns_pods.EXTERNAL}" in c["args"]
    assert f"--name=short={dns_pods.TARGET}" in c["args"]
    assert "dnsPolicy" not in spec  # ClusterFirst: the kubelet's resolv.conf
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    exprs = terms["nodeSelectorTerms"][0]["matchExpressions"]
    assert {"key": "type", "operator": "NotIn", "values": ["kwok"]} in exprs
    assert spec["terminationGracePeriodSeconds"] > 25  # the probe drains for 25 s


RESOLV = {
    "nameservers": ["10.96.0.10"],
    "ndots": 5,
    "timeout_s": 5,
    "attempts": 2,
    "search": ["loadtest-dnsprobe.svc.cluster.local", "svc.cluster.local", "cluster.local"],
}


def _lookup(i, k, sched, kind="short", ok=True, queries=1, **kw):
    rec = {
        "i": i,
        "k": k,
        "sched": sched,
        "name": kind,
        "kind": kind,
        "expect": "A",
        "rcode": "NOERROR" if ok else "TIMEOUT",
        "answers": ["10.96.1.1"] if ok else [],
        "lag_ms": 0.1,
        "ms": 2.0 if ok else 20000.0,
        "queries": queries,
        "attempts": 1,
        "cause": None if ok else "timeout",
        "pod": "dnsprobe-a",
        "node": "w1",
    }
    return {**rec, **kw}


def _start(i, t0):
    return {
        "event": "start",
        "i": i,
        "t0": t0,
        "rate_hz": 10,
        "timeout_s": 10,
        "workers": 256,
        "resolv": RESOLV,
        "pod": "dnsprobe-a",
        "node": "w1",
    }


def test_summary_counts_restarts_lost_slots_and_queries_per_lookup():
    a, b = "aaaa", "bbbb"
    recs = [_start(a, 100.0)]
    recs += [_lookup(a, k, 100 + k / 10) for k in range(10)]
    # slots 10..12 were in flight when the container died (the tick saw 13 scheduled)
    recs.append(
        {
            "event": "tick",
            "i": a,
            "t": 101.3,
            "scheduled": 13,
            "inflight": 3,
            "pod": "dnsprobe-a",
            "node": "w1",
        }
    )
    recs.append(_start(b, 104.3))
    recs += [
        _lookup(
            b,
            k,
            104.3 + k / 10,
            kind="external",
            queries=4,
            ok=k != 3,
            expect="NXDOMAIN",
            rcode="NXDOMAIN" if k != 3 else "TIMEOUT",
        )
        for k in range(5)
    ]
    recs.append(
        {
            "event": "stop",
            "i": b,
            "t": 105,
            "scheduled": 5,
            "inflight": 0,
            "pod": "dnsprobe-a",
            "node": "w1",
        }
    )
    recs.append({"event": "stream", "pod": "dnsprobe-a", "streams": 2, "errors": ["x"]})
    node = {
        "error_rate": 0.0,
        "propagation": [{"name": "lt-p", "seconds": 3.0}],
        "where": "node-namespace",
    }
    s = dns_pods.summarize(recs, node)
    assert s["where"] == "pods"
    # 18 slots scheduled: 1 timeout, 3 unrecorded (lost with the container): all failures
    assert s["error_rate"] == pytest.approx(4 / 18)
    assert s["slots"] == {
        "scheduled": 18,
        "sent": 15,
        "answered": 14,
        "failed": 4,
        "failed_by_cause": {"timeout": 1, "unrecorded": 3},
    }
    assert s["p99_ms"] >= 10000  # failures count in the quantiles
    assert s["resolver"]["ndots"] == 5 and s["resolver"]["search"] == RESOLV["search"]
    assert s["resolver"]["same_in_every_pod"]
    q = s["queries_per_lookup"]
    assert q["short"]["mean"] == 1 and q["external"]["mean"] == 4
    assert q["external"]["failed"] == 1 and q["external"]["mean_when_ok"] == 4
    assert q["short"]["p99_ms"] == 2.0 and q["external"]["p50_ms"] == 2.0  # per kind
    (pod,) = s["pods"]
    assert pod["processes"] == 2 and pod["restarts"] == 1
    assert pod["scheduled"] == 18 and pod["lost"] == 3
    assert pod["gaps_s"] == [pytest.approx(3.0)]  # last sign of life: the tick at 101.3
    assert pod["stopped"] and pod["in_flight_at_stop"] == 0 and pod["log_streams"] == 2
    assert s["node_namespace"]["error_rate"] == 0 and s["propagation"] == node["propagation"]
    assert s["node_namespace"]["where"] == "node-namespace"


def test_summary_of_unsent_slots_and_no_records():
    recs = [
        _start("a", 1.0),
        _lookup("a", 0, 1.0),
        _lookup("a", 1, 1.1, ok=False, rcode=None, cause="unsent", lag_ms=None, ms=None, queries=0),
    ]
    s = dns_pods.summarize(recs)
    assert s["slots"]["failed_by_cause"] == {"unsent": 1} and s["slots"]["sent"] == 1
    assert s["error_rate"] == 0.5 and s["p99_ms"] == 10000  # at the lookup's timeout
    assert q_lookups(s) == 1  # unsent slots sent no query
    assert "error" in dns_pods.summarize([]) and dns_pods.summarize([])["where"] == "pods"


def q_lookups(s):
    return sum(v["lookups"] for v in s["queries_per_lookup"].values())


def test_where_says_how_the_node_side_probe_differs():
    local = Cluster(
        name="x",
        provider="local",
        kubeconfig=Path("k"),
        context="c",
        server="s",
        dns=("127.0.0.1", 5353),
    )
    assert dns_pods.with_where({"count": 1}, local)["where"] == "host"
    assert "no pods" in dns_pods.with_where({}, local)["where_detail"]
    assert dns_pods.with_where({"where": "pods"}, local)["where"] == "pods"


# --- pod logs ---------------------------------------------------------------------------------


def test_log_lines_and_since_time():
    assert podlogs.split_line('2026-12-01T19:51:09.123456789Z {"a": 1}') == (
        "2026-12-01T19:51:09.123456789Z",
        '{"a": 1}',
    )
    assert podlogs.split_line("") is None and podlogs.split_line("no timestamp") is None
    assert podlogs.since_param("2026-12-01T19:51:09.123456789Z") == "2026-12-01T19:51:09Z"


def test_follower_resumes_from_the_last_line_and_reads_a_restarted_containers_tail(monkeypatch):
    """Stream 1 breaks after two lines; the container restarted meanwhile: the previous
    container's log since then comes first, then the new one from sinceTime; a 404 ends it."""
    calls = []
    state = {"pod_gets": 0}

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append((req.url.path, dict(req.url.params)))
        path, p = req.url.path, req.url.params
        if path.endswith("/log"):
            if p.get("previous") == "true":
                return httpx.Response(
                    200, text="2026-12-01T10:00:01.5Z two\n2026-12-01T10:00:02.1Z three\n"
                )
            if "sinceTime" not in p:
                return httpx.Response(
                    200, text="2026-12-01T10:00:01.0Z one\n2026-12-01T10:00:01.5Z two\n"
                )
            return httpx.Response(200, text="2026-12-01T10:00:05.0Z four\n")
        state["pod_gets"] += 1
        if state["pod_gets"] > 2:
            return httpx.Response(404, json={})
        rc = 0 if state["pod_gets"] == 1 else 1
        return httpx.Response(200, json={"status": {"containerStatuses": [{"restartCount": rc}]}})

    transport = httpx.MockTransport(handler)
    monkeypatch.setattr(
        podlogs,
        "http_client",
        lambda cluster, timeout=10: httpx.Client(base_url="https://k8s", transport=transport),
    )
    seen = []
    cluster = Cluster(name="x", provider="kind", kubeconfig=Path("k"), context="c", server="s")
    f = podlogs.PodLogFollower(
        cluster, "ns", "pod-1", lambda ts, text: seen.append(text), retry_s=0.01
    )
    f.start()
    assert f.join(5)
    # "two" comes twice (sinceTime has one-second resolution): the caller drops repeats
    assert seen == ["one", "two", "two", "three", "four"]
    assert f.gone and f.streams == 3
    logs = [p for path, p in calls if path.endswith("/log")]
    assert logs[1] == {
        "previous": "true",
        "timestamps": "true",
        "sinceTime": "2026-12-01T10:00:01Z",
    }
    assert logs[2]["sinceTime"] == "2026-12-01T10:00:02Z" and logs[2]["follow"] == "true"


def test_pod_probe_drops_repeated_lines(tmp_path):
    cluster = Cluster(name="x", provider="kind", kubeconfig=Path("k"), context="c", server="s")
    p = dns_pods.PodDnsProbe(
        cluster, tmp_path / "dns_pods.jsonl", [], 10, 60, load_image=lambda image: None
    )
    p.writer = dns_pods.JsonlWriter(p.raw)
    p._nodes["pod-1"] = "w1"
    line = json.dumps(_lookup("a", 0, 1.0))
    for text in (
        line,
        line,
        "not json",
        json.dumps({"event": "tick", "i": "a", "t": 2, "scheduled": 1}),
    ):
        p._line("pod-1", text)
    p.writer.close()
    recs = [json.loads(x) for x in p.raw.read_text().splitlines()]
    assert [r.get("event", "lookup") for r in recs] == ["lookup", "tick"]
    assert recs[0]["node"] == "w1" and p._latest["pod-1"] == 2
