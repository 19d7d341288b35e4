"""Agents against a real kube-apiserver: lists, watches, 410 relists, cut watches, 429s,
impersonation. gevent runs without monkey-patching: geventhttpclient uses gevent sockets."""

import json
import ssl
import time
import uuid
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import gevent
import gevent.server
import gevent.socket
import httpx
import pytest

from loadtest.agents import wire
from loadtest.agents.agent import Agent, AgentStats, Endpoint, Gone
from loadtest.agents.identity import NAMESPACE, Identities, ensure_rbac
from loadtest.agents.profile import AgentProfile, Poll, Watch
from loadtest.agents.runner import AgentRun, run_agents
from loadtest.clusters import Cluster, get_provider, http_client
from loadtest.config import InventorySpec
from loadtest.inventory.seed import LABEL, Seeder, namespace_name, node_name

pytestmark = pytest.mark.integration

SPEC = InventorySpec(
    name="agents-it",
    nodes=3,
    pods_per_node=2,
    namespaces=1,
    services_per_namespace=1,
    configmaps_per_namespace=1,
)


class Recorder:
    def __init__(self):
        self.requests = []

    def __call__(self, *, request_type, name, response_time, response_length, exception, context):
        self.requests.append((time.monotonic(), request_type, name, exception))

    def named(self, name):
        return [r for r in self.requests if r[2] == name]


@pytest.fixture(scope="module")
def seeded(loadtest_cluster: Cluster):
    seeder = Seeder(loadtest_cluster, SPEC, progress=False, log=lambda _: None)
    seeder.seed()
    seeder.wait_ready(timeout=120)
    yield loadtest_cluster
    seeder.delete()


def _profile(identity="impersonate", **watch) -> AgentProfile:
    return AgentProfile(
        name="it", identity=identity, watches=[Watch(resource="pods", scope="node", **watch)]
    )


def _agent(cluster, profile, rec, stats, index=0, endpoint=None) -> Agent:
    ensure_rbac(cluster, profile)
    ep = endpoint or Identities(cluster, profile).endpoint(index)
    return Agent(profile, node_name(SPEC, 0), ep, rec, stats)


def _wait(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        gevent.sleep(0.1)
    return False


def test_agent_lists_then_sees_events_for_new_pods(seeded):
    rec, stats = Recorder(), AgentStats()
    agent = _agent(seeded, _profile(), rec, stats)
    agent.start()
    try:
        assert _wait(lambda: rec.named("WATCH pods [node]")), "watch never established"
        with http_client(seeded) as c:
            ns = "lt-agents-it-0000"
            pod = {
                "metadata": {"name": f"extra-{uuid.uuid4().hex[:6]}", "namespace": ns},
                "spec": {
                    "nodeName": node_name(SPEC, 0),
                    "containers": [{"name": "c", "image": "x"}],
                    "tolerations": [{"operator": "Exists"}],
                },
            }
            assert c.post(f"/api/v1/namespaces/{ns}/pods", json=pod).status_code == 201
        assert _wait(lambda: stats.events["pods [node] ADDED"] >= 1)
    finally:
        agent.stop()
    lists = rec.named("LIST pods [node]")
    assert len(lists) == 1 and lists[0][3] is None
    assert stats.bytes["LIST pods [node]"] > 2 * 1000  # the node's two seeded pods
    assert stats.agents_synced == 1


def test_expired_resource_version_makes_the_informer_relist(seeded):
    rec, stats = Recorder(), AgentStats()
    agent = _agent(seeded, _profile(), rec, stats)
    with pytest.raises(Gone):
        agent.watch(agent.profile.watches[0], "1")
    # and the informer loop turns that into a counted relist with a consistent LIST
    agent.greenlets.append(gevent.spawn(agent._informer, agent.profile.watches[0], "1"))
    try:
        assert _wait(lambda: stats.relists_410 >= 1 and len(rec.named("LIST pods [node]")) >= 1)
    finally:
        agent.stop()


def test_cut_watch_reconnects_with_backoff(seeded):
    """A TCP proxy on loopback cuts the watch; the agent reconnects from its last version."""
    host, port = seeded.server.removeprefix("https://").rsplit(":", 1)
    conns = []

    def pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def handle(client, _addr):
        upstream = gevent.socket.create_connection((host, int(port)))
        conns.append((client, upstream))
        gevent.spawn(pipe, upstream, client)
        pipe(client, upstream)

    proxy = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    proxy.start()
    rec, stats = Recorder(), AgentStats()
    profile = _profile()
    ep = Identities(seeded, profile).endpoint(0)
    ep = Endpoint(f"https://127.0.0.1:{proxy.server_port}", ep.ssl_context, ep.headers)
    agent = _agent(seeded, profile, rec, stats, endpoint=ep)
    agent.start()
    try:
        assert _wait(lambda: rec.named("WATCH pods [node]"))
        for client, upstream in list(conns):  # cut every connection mid-stream
            client.close()
            upstream.close()
        assert _wait(lambda: len(rec.named("WATCH pods [node]")) >= 2, timeout=30)
    finally:
        agent.stop()
        proxy.stop()
    assert len(rec.named("LIST pods [node]")) == 1, "a cut watch resumes; it does not relist"
    assert stats.reconnects + stats.errors >= 1


def test_429_is_retried_after_retry_after():
    """A cluster of its own whose API server admits one read at a time (max-in-flight
    filter, APF off) answers overlapping LISTs with real 429s and Retry-After: 1."""
    provider = get_provider(
        "local",
        apiserver_args={"enable-priority-and-fairness": "false", "max-requests-inflight": "1"},
    )
    cluster = provider.create("it-429")
    try:
        profile = AgentProfile(
            name="it",
            identity="impersonate",
            polls=[Poll(resource="pods", scope="cluster", interval_seconds=0.05, jitter=0)],
        )
        ensure_rbac(cluster, profile)
        ids = Identities(cluster, profile)
        recs = [Recorder() for _ in range(30)]
        stats = AgentStats()
        agents = [Agent(profile, "n", ids.endpoint(i), r, stats) for i, r in enumerate(recs)]
        for a in agents:
            a.start()

        def retried() -> bool:
            return any(_gap_after_429(r) is not None for r in recs)

        try:
            assert _wait(retried, timeout=60), f"no retry after a 429 ({stats.as_dict()})"
        finally:
            for a in agents:
                a.stop()
        gaps = [g for r in recs if (g := _gap_after_429(r)) is not None]
        assert stats.throttled_429 >= 1
        assert min(gaps) >= 0.95, f"retried sooner than Retry-After: {gaps}"
    finally:
        provider.delete("it-429")


def _gap_after_429(rec: Recorder) -> float | None:
    """Seconds between an agent's first 429 and its next request, if it made one."""
    for i, (t, _, _, exc) in enumerate(rec.requests[:-1]):
        if exc is not None and "429" in str(exc):
            return rec.requests[i + 1][0] - t
    return None


def test_impersonation_is_what_the_apiserver_sees(seeded):
    profile = _profile("impersonate")
    ensure_rbac(seeded, profile)
    ep = Identities(seeded, profile).endpoint(7)
    agent = Agent(profile, node_name(SPEC, 0), ep, Recorder(), AgentStats())
    try:
        resp = agent.http.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body=b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}',
            headers={"Content-Type": "application/json"},
        )
        user = json.loads(resp.read())["status"]["userInfo"]
        resp.release()
    finally:
        agent.stop()
    assert user["username"] == f"system:serviceaccount:{NAMESPACE}:agent-7"
    assert f"system:serviceaccounts:{NAMESPACE}" in user["groups"]


def test_shared_serviceaccount_token_reads_only_what_rbac_allows(seeded):
    profile = _profile("shared-serviceaccount")
    ensure_rbac(seeded, profile)
    ep = Identities(seeded, profile).endpoint(0)
    token = ep.headers["Authorization"]
    with httpx.Client(
        base_url=seeded.server,
        headers={"Authorization": token},
        verify=ssl.create_default_context(cafile=seeded.ca_file),
    ) as c:
        assert c.get("/api/v1/pods", params={"limit": "1"}).status_code == 200
        assert c.get("/api/v1/secrets", params={"limit": "1"}).status_code == 403


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [list, watch]
  - level: None
"""


def test_agents_in_two_processes_are_distinct_nodes_and_identities(tmp_path):
    """20 agents over `--processes 2`: the API server's own audit log sees 20 nodes' field
    selectors and 20 impersonated agents, each agent k on node k (not 10 nodes twice)."""
    agents = 20
    policy, audit = tmp_path / "audit-policy.yaml", tmp_path / "audit.log"
    policy.write_text(AUDIT_POLICY)
    provider = get_provider(
        "local", apiserver_args={"audit-policy-file": str(policy), "audit-log-path": str(audit)}
    )
    name = "i13-agents-procs"
    if provider.get(name) is not None:
        provider.delete(name)  # a leftover of a crashed run
    cluster = provider.create(name)
    try:
        spec = InventorySpec(name="procs-it", nodes=agents, pods_per_node=0, namespaces=1)
        seeder = Seeder(cluster, spec, progress=False, log=lambda _: None)
        seeder.seed()
        seeder.wait_ready(timeout=120)
        merged = run_agents(
            cluster,
            AgentRun(
                "kubelet-like",
                agents=agents,
                duration_s=20,
                spawn_rate=20,
                processes=2,
                node_selector=f"{LABEL}={spec.name}",
            ),
            tmp_path / "run",
            log=lambda _: None,
        )
        seen = _audited(audit, "kubelet-like/")
    finally:
        provider.delete(name)
    nodes = {node_name(spec, i) for i in range(agents)}
    pod_selectors = {
        sel.removeprefix("spec.nodeName=") for sel, _ in seen if sel.startswith("spec.nodeName=")
    }
    assert pod_selectors == nodes, sorted(pod_selectors)
    # agent k is node k (in sorted order) and identity agent-k, whichever process ran it
    pairs = {
        (sel.removeprefix("spec.nodeName="), user)
        for sel, user in seen
        if sel.startswith("spec.nodeName=")
    }
    assert pairs == {
        (node_name(spec, k), f"system:serviceaccount:{NAMESPACE}:agent-{k}") for k in range(agents)
    }, sorted(pairs)
    assert merged["agents_started"] == agents and merged["agents_synced"] == agents, merged


def _audited(log, user_agent_prefix: str) -> set[tuple[str, str]]:
    """(fieldSelector, impersonated user) of every LIST/WATCH the audit log recorded."""
    seen = set()
    for line in log.read_text().splitlines():
        ev = json.loads(line)
        if not ev.get("userAgent", "").startswith(user_agent_prefix):
            continue
        q = parse_qs(urlsplit(ev["requestURI"]).query)
        user = ev.get("impersonatedUser", {}).get("username", "")
        for sel in q.get("fieldSelector", []):
            seen.add((sel, user))
    return seen


PROTO_NODE = "i13-no-such-node"  # pods bound to a node nobody runs: no one else touches them


def _proto_pods(cluster, n: int, pad: int = 0) -> list[dict]:
    """n pods on PROTO_NODE (JSON, through the harness's client); their created objects."""
    ns = namespace_name(SPEC, 0)
    out = []
    with http_client(cluster) as c:
        for _ in range(n):
            pod = {
                "metadata": {
                    "name": f"proto-{uuid.uuid4().hex[:8]}",
                    "namespace": ns,
                    "annotations": {"pad": "x" * pad} if pad else {},
                },
                "spec": {"nodeName": PROTO_NODE, "containers": [{"name": "c", "image": "x"}]},
            }
            r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod)
            assert r.status_code == 201, r.text
            out.append(r.json())
    return out


def _delete_pods(cluster, pods: list[dict]) -> None:
    with http_client(cluster) as c:
        for p in pods:
            md = p["metadata"]
            c.delete(
                f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}",
                params={"gracePeriodSeconds": "0"},
            )


def test_protobuf_lists_page_and_watches_read_the_versions(seeded):
    """A protobuf agent is served protobuf, follows continue tokens page by page, reads the
    list's resourceVersion and, from the watch frames, the created pod's own version."""
    pods = _proto_pods(seeded, 3)
    try:

        def agent(content_type, page_size=1, **kw):
            prof = AgentProfile(
                name="it",
                identity="impersonate",
                watches=[
                    Watch(
                        resource="pods",
                        scope="node",
                        content_type=content_type,
                        page_size=page_size,
                        list_resource_version="",
                        bookmarks=False,
                        timeout_seconds=4,
                        timeout_jitter=0,
                    )
                ],
            )
            rec, stats = Recorder(), AgentStats()
            ensure_rbac(seeded, prof)
            return Agent(
                prof, PROTO_NODE, Identities(seeded, prof).endpoint(0), rec, stats, **kw
            ), rec

        proto, prec = agent("protobuf")
        plain, jrec = agent("json")
        w = proto.profile.watches[0]
        try:
            newest = max(int(p["metadata"]["resourceVersion"]) for p in pods)
            list_rv = proto.list(w, "")
            json_rv = plain.list(plain.profile.watches[0], "")
            # the list's version: at least the newest pod's, at most a later JSON list's
            assert newest <= int(list_rv) <= int(json_rv), (newest, list_rv, json_rv)
            # one page per pod (limit=1): the continue tokens were read from ListMeta
            pages = [r for r in prec.named("LIST pods [node]") if r[3] is None]
            assert len(pages) == len(jrec.named("LIST pods [node]")) == 3, prec.requests
            # the watch from the list's version sees the pod created after it, at its version
            g = gevent.spawn(proto.watch, w, list_rv)
            assert _wait(lambda: prec.named("WATCH pods [node]"))
            [added] = _proto_pods(seeded, 1)
            pods.append(added)
            last = g.get(timeout=30)
            assert last == added["metadata"]["resourceVersion"]
            assert proto.stats.events == Counter({"pods [node] ADDED": 1})
            # and an expired version is a 410 in a protobuf frame (or status), relisted
            with pytest.raises(Gone):
                proto.watch(w, "1")
            served = proto.stats.content_types
            assert set(served) == {wire.CONTENT_TYPE}, served
            assert set(plain.stats.content_types) == {"application/json"}
        finally:
            proto.stop()
            plain.stop()
    finally:
        _delete_pods(seeded, pods)


def test_protobuf_list_served_gzipped_is_read(seeded):
    """A list over the API server's gzip threshold (128 KiB) comes gzipped; its head still
    gives the version, and --decode reads every item."""
    pods = _proto_pods(seeded, 4, pad=60_000)
    try:
        prof = AgentProfile(
            name="it",
            identity="impersonate",
            polls=[
                Poll(
                    resource="pods",
                    scope="node",
                    content_type="protobuf",
                    page_size=0,
                    list_resource_version="",
                    interval_seconds=60,
                )
            ],
        )
        ensure_rbac(seeded, prof)
        for decode in (False, True):
            stats = AgentStats()
            a = Agent(
                prof,
                PROTO_NODE,
                Identities(seeded, prof).endpoint(0),
                Recorder(),
                stats,
                decode=decode,
            )
            try:
                rv = a.list(prof.polls[0], "")
            finally:
                a.stop()
            assert int(rv) >= max(int(p["metadata"]["resourceVersion"]) for p in pods)
            assert set(stats.content_types) == {wire.CONTENT_TYPE}
            # 240 KB of padding travelled as a few KB: the server compressed it
            assert stats.bytes["LIST pods [node]"] < 4 * 60_000 / 10, stats.bytes
    finally:
        _delete_pods(seeded, pods)
