"""`loadtest record` of the client-go reference agent learns the profile it ran, and a replay
of the learned profile costs the API server what the original did (its own metrics)."""

import os
import subprocess

import gevent
import pytest
import yaml

from loadtest import toolchain
from loadtest.agents.agent import Agent, AgentStats
from loadtest.agents.identity import SHARED_SA, Identities, ensure_rbac, request_token
from loadtest.agents.profile import AgentProfile, load_profile
from loadtest.agents.record import Recording, record
from loadtest.clusters import get_provider, http_client
from loadtest.config import InventorySpec
from loadtest.inventory.seed import node_name
from loadtest.measurements import metrics

pytestmark = pytest.mark.integration

NODES = 5
REPLAY_AGENTS = 50
REPLAY_S = 30
# Informers with and without bookmarks, consistent and cached lists, limits, node scope
# for pods and nodes, two poll intervals: what learning must get back.
ORIGINAL = {
    "version": 1,
    "name": "rec-original",
    "user_agent": "rec-original/1.0",
    "identity": "shared-serviceaccount",
    "watches": [
        {
            "resource": "pods",
            "scope": "node",
            "list_resource_version": "0",
            "page_size": 500,
            "timeout_seconds": 120,
            "timeout_jitter": 0.5,
        },
        {
            "resource": "services",
            "list_resource_version": "",
            "page_size": 100,
            "bookmarks": False,
            "timeout_seconds": 120,
            "timeout_jitter": 0.5,
        },
    ],
    "polls": [
        {
            "resource": "pods",
            "interval_seconds": 4,
            "jitter": 0.2,
            "list_resource_version": "",
            "page_size": 0,
        },
        {
            "resource": "nodes",
            "scope": "node",
            "interval_seconds": 3,
            "jitter": 0.1,
            "list_resource_version": "0",
            "page_size": 0,
        },
    ],
}


@pytest.fixture(scope="module")
def recorded(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("record")
    orig = d / "original.yaml"
    orig.write_text(yaml.safe_dump(ORIGINAL))
    name = f"{request.config.getoption('--loadtest-cluster')}-rec"
    rec = Recording(
        name="rec-learned",
        nodes=NODES,
        duration_s=40,
        cluster=name,
        keep_cluster=True,
        command=[
            "refagent",
            "--profile",
            str(orig),
            "--duration",
            "120s",
            "--poll-start",
            "random",
        ],
    )
    provider = get_provider("local")
    if provider.get(name) is not None:
        provider.delete(name)  # a leftover of a crashed session
    learned, audit = record(rec, log=lambda _: None)
    try:
        yield load_profile(orig), learned, provider.get(name), d
    finally:
        provider.delete(name)


def _targets(p: AgentProfile, kind: str) -> dict:
    keys: tuple[str, ...] = (
        "group",
        "resource",
        "scope",
        "namespace",
        "label_selector",
        "field_selector",
        "list_resource_version",
        "page_size",
        "content_type",
    )
    keys += ("bookmarks", "watch_list") if kind == "watches" else ()
    return {(t.resource, t.scope): {k: getattr(t, k) for k in keys} for t in getattr(p, kind)}


def test_record_learns_the_reference_agents_profile(recorded):
    original, learned, _, _ = recorded
    got = learned.profile
    assert learned.agents == NODES, learned.to_yaml()
    assert _targets(got, "watches") == _targets(original, "watches"), learned.to_yaml()
    assert _targets(got, "polls") == _targets(original, "polls"), learned.to_yaml()
    for want in original.polls:
        poll = next(p for p in got.polls if (p.resource, p.scope) == (want.resource, want.scope))
        assert poll.interval_seconds == pytest.approx(want.interval_seconds, rel=0.1)
    assert got.identity == "shared-serviceaccount"
    assert got.user_agent == "rec-original/1.0"
    # nothing of the agent's traffic vanished: what is not modelled is counted
    assert learned.used > 0 and "# Requests it cannot model" in learned.to_yaml()


def _scrape(cluster) -> dict:
    with http_client(cluster) as c:
        return metrics.index(
            metrics.parse(
                c.get("/metrics").text, ["apiserver_request_total", "apiserver_response_sizes"]
            )
        )


def _window(a, b) -> tuple[dict, dict]:
    reqs = metrics.counter_delta(a, b, "apiserver_request_total", ("verb",))
    sizes = metrics.counter_delta(a, b, "apiserver_response_sizes_sum", ("verb",))
    return (
        {v: reqs.get((v,), 0) for v in ("LIST", "WATCH")},
        {v: sizes.get((v,), 0) for v in ("LIST",)},
    )


def test_replaying_the_learned_profile_costs_what_the_original_did(recorded):
    original, learned, cluster, d = recorded
    profile = learned.profile
    spec = InventorySpec(name="rec", nodes=NODES)
    nodes = [node_name(spec, i % NODES) for i in range(REPLAY_AGENTS)]
    ensure_rbac(cluster, original)

    # 50 client-go reference agents with the original profile, one shared ServiceAccount
    (d / "nodes").write_text("\n".join(nodes[:NODES]) + "\n")
    token = d / "token"
    token.touch(mode=0o600)
    token.write_text(request_token(cluster, SHARED_SA))
    before = _scrape(cluster)
    try:
        subprocess.run(
            [
                str(toolchain.binary("refagent")),
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--profile",
                str(d / "original.yaml"),
                "--agents",
                str(REPLAY_AGENTS),
                "--nodes-file",
                str(d / "nodes"),
                "--token-file",
                str(token),
                "--poll-start",
                "random",
                "--duration",
                f"{REPLAY_S}s",
            ],
            check=True,
            capture_output=True,
            timeout=REPLAY_S + 60,
        )
    finally:
        os.unlink(token)
    mid = _scrape(cluster)

    # 50 harness agents with the learned profile
    stats = AgentStats()
    ids = Identities(cluster, profile)
    ours = [
        Agent(profile, nodes[i], ids.endpoint(i), lambda **_: None, stats)
        for i in range(REPLAY_AGENTS)
    ]
    for a in ours:
        a.start()
    gevent.sleep(REPLAY_S)
    for a in ours:
        a.stop()
    after = _scrape(cluster)

    ref_reqs, ref_bytes = _window(before, mid)
    our_reqs, our_bytes = _window(mid, after)
    print("reference", ref_reqs, ref_bytes, "learned replay", our_reqs, our_bytes)
    for verb in ("LIST", "WATCH"):
        assert our_reqs[verb] == pytest.approx(ref_reqs[verb], rel=0.1), (ref_reqs, our_reqs)
    assert our_bytes["LIST"] == pytest.approx(ref_bytes["LIST"], rel=0.1), (ref_bytes, our_bytes)
    assert stats.errors == 0
