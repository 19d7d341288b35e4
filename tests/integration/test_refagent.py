"""Our agents and the client-go reference agent agree on what they ask the API server."""

import json
import subprocess

import gevent
import pytest

from loadtest import metrics, toolchain
from loadtest.agents.agent import Agent, AgentStats
from loadtest.agents.identity import Identities, ensure_rbac
from loadtest.agents.profile import PROFILES_DIR, load_profile
from loadtest.clusters import Cluster, http_client
from loadtest.config import InventorySpec
from loadtest.inventory import Seeder, node_name

pytestmark = pytest.mark.integration

SPEC = InventorySpec(name="ref-it", nodes=4, pods_per_node=3, namespaces=2)
AGENTS = 4


def _lists(cluster: Cluster) -> dict[tuple[str, ...], float]:
    with http_client(cluster) as c:
        samples = metrics.index(metrics.parse(c.get("/metrics").text,
                                              ["apiserver_request_total"]))
    return samples


@pytest.fixture(scope="module")
def seeded(loadtest_cluster):
    seeder = Seeder(loadtest_cluster, SPEC, progress=False, log=lambda _: None)
    seeder.seed()
    seeder.wait_ready(timeout=120)
    yield loadtest_cluster
    seeder.delete()


def test_reference_agent_and_ours_make_the_same_requests(seeded, tmp_path):
    profile = load_profile("kubelet-like")  # node-local informers on pods and own node
    ensure_rbac(seeded, profile)
    nodes = [node_name(SPEC, i) for i in range(AGENTS)]

    before = _lists(seeded)
    stats = AgentStats()
    ids = Identities(seeded, profile)
    ours = [Agent(profile, nodes[i], ids.endpoint(i), lambda **_: None, stats)
            for i in range(AGENTS)]
    for a in ours:
        a.start()
    gevent.sleep(8)
    for a in ours:
        a.stop()
    mid = _lists(seeded)

    (tmp_path / "nodes").write_text("\n".join(nodes) + "\n")
    subprocess.run([str(toolchain.binary("refagent")), "--kubeconfig", str(seeded.kubeconfig),
                    "--profile", str(PROFILES_DIR / "kubelet-like.yaml"),
                    "--agents", str(AGENTS), "--nodes-file", str(tmp_path / "nodes"),
                    "--impersonate", "system:serviceaccount:loadtest-agents:agent-%d",
                    "--duration", "8s", "--stats", str(tmp_path / "ref.json")],
                   check=True, capture_output=True, timeout=120)
    after = _lists(seeded)
    ref = json.loads((tmp_path / "ref.json").read_text())

    def lists(a, b):
        d = metrics.counter_delta(a, b, "apiserver_request_total", ("verb", "resource"))
        return {r: int(d.get(("LIST", r), 0)) for r in ("pods", "nodes")}

    ours_lists, ref_lists = lists(before, mid), lists(mid, after)
    # one initial LIST per informer per agent, for both implementations
    assert ours_lists == {"pods": AGENTS, "nodes": AGENTS}, ours_lists
    assert ref_lists == ours_lists, (ref_lists, ref)
    assert stats.requests["WATCH pods [node]"] == AGENTS
    assert stats.requests["WATCH nodes [node]"] == AGENTS
