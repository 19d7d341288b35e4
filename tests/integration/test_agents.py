"""Agents against a real kube-apiserver: lists, watches, 410 relists, cut watches, 429s,
impersonation. gevent runs without monkey-patching: geventhttpclient uses gevent sockets."""

import json
import ssl
import time
import uuid

import gevent
import gevent.server
import gevent.socket
import httpx
import pytest

from loadtest.agents.agent import Agent, AgentStats, Endpoint, Gone
from loadtest.agents.identity import NAMESPACE, Identities, ensure_rbac
from loadtest.agents.profile import AgentProfile, Poll, Watch
from loadtest.clusters import Cluster, get_provider, http_client
from loadtest.config import InventorySpec
from loadtest.inventory import Seeder, node_name

pytestmark = pytest.mark.integration

SPEC = InventorySpec(name="agents-it", nodes=3, pods_per_node=2, namespaces=1,
                     services_per_namespace=1, configmaps_per_namespace=1)


class Recorder:
    def __init__(self):
        self.requests = []

    def __call__(self, *, request_type, name, response_time, response_length, exception,
                 context):
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
    return AgentProfile(name="it", identity=identity,
                        watches=[Watch(resource="pods", scope="node", **watch)])


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
            pod = {"metadata": {"name": f"extra-{uuid.uuid4().hex[:6]}", "namespace": ns},
                   "spec": {"nodeName": node_name(SPEC, 0), "containers": [
                       {"name": "c", "image": "x"}],
                       "tolerations": [{"operator": "Exists"}]}}
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
    provider = get_provider("local", apiserver_args={"enable-priority-and-fairness": "false",
                                                     "max-requests-inflight": "1"})
    cluster = provider.create("it-429")
    try:
        profile = AgentProfile(name="it", identity="impersonate", polls=[
            Poll(resource="pods", scope="cluster", interval_seconds=0.05, jitter=0)])
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
        resp = agent.http.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                               body=b'{"apiVersion":"authentication.k8s.io/v1",'
                                    b'"kind":"SelfSubjectReview"}',
                               headers={"Content-Type": "application/json"})
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
    with httpx.Client(base_url=seeded.server, headers={"Authorization": token},
                      verify=ssl.create_default_context(cafile=seeded.ca_file)) as c:
        assert c.get("/api/v1/pods", params={"limit": "1"}).status_code == 200
        assert c.get("/api/v1/secrets", params={"limit": "1"}).status_code == 403
