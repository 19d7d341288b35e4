"""Our agents and the client-go reference agent agree on what they ask the API server."""

import json
import subprocess
import time

import gevent
import pytest

from loadtest import toolchain
from loadtest.agents.agent import Agent, AgentStats
from loadtest.agents.identity import Identities, ensure_rbac
from loadtest.agents.profile import PROFILES_DIR, load_profile
from loadtest.clusters import Cluster, http_client
from loadtest.config import InventorySpec
from loadtest.inventory.seed import Seeder, node_name
from loadtest.measurements import metrics

pytestmark = pytest.mark.integration

SPEC = InventorySpec(name="ref-it", nodes=4, pods_per_node=3, namespaces=2)
AGENTS = 4
RESOURCES = ("pods", "nodes")


def _lists(cluster: Cluster) -> dict[tuple[str, metrics.Labels], float]:
    with http_client(cluster) as c:
        samples = metrics.index(metrics.parse(c.get("/metrics").text, ["apiserver_request_total"]))
    return samples


@pytest.fixture(scope="module")
def seeded(loadtest_cluster):
    seeder = Seeder(loadtest_cluster, SPEC, progress=False, log=lambda _: None)
    seeder.seed()
    seeder.wait_ready(timeout=120)
    yield loadtest_cluster
    seeder.delete()


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        gevent.sleep(0.1)
    return False


def test_reference_agent_and_ours_make_the_same_requests(seeded, tmp_path):
    """Each side's LISTs as the API server counted them equal the LISTs that side reports
    (so neither miscounts), and with no relist or error that is one LIST per informer per
    agent for both. Ours run until every agent has synced and watches (a condition, not a
    sleep); the reference agent runs for its --duration and says what it did."""
    profile = load_profile("kubelet-like")  # node-local informers on pods and own node
    ensure_rbac(seeded, profile)
    nodes = [node_name(SPEC, i) for i in range(AGENTS)]

    before = _lists(seeded)
    stats = AgentStats()
    ids = Identities(seeded, profile)
    ours = [
        Agent(profile, nodes[i], ids.endpoint(i), lambda **_: None, stats) for i in range(AGENTS)
    ]
    for a in ours:
        a.start()
    try:
        assert _wait(
            lambda: (
                stats.agents_synced == AGENTS
                and all(stats.requests[f"WATCH {r} [node]"] >= AGENTS for r in ("pods", "nodes"))
            ),
            timeout=60,
        ), f"our agents did not all sync and watch: {stats.as_dict()}"
    finally:
        for a in ours:
            a.stop()
    mid = _lists(seeded)

    (tmp_path / "nodes").write_text("\n".join(nodes) + "\n")
    subprocess.run(
        [
            str(toolchain.binary("refagent")),
            "--kubeconfig",
            str(seeded.kubeconfig),
            "--profile",
            str(PROFILES_DIR / "kubelet-like.yaml"),
            "--agents",
            str(AGENTS),
            "--nodes-file",
            str(tmp_path / "nodes"),
            "--impersonate",
            "system:serviceaccount:loadtest-agents:agent-%d",
            "--duration",
            "8s",
            "--stats",
            str(tmp_path / "ref.json"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    after = _lists(seeded)
    ref = json.loads((tmp_path / "ref.json").read_text())

    def served(a, b):
        d = metrics.counter_delta(a, b, "apiserver_request_total", ("verb", "resource"))
        return {r: int(d.get(("LIST", r), 0)) for r in RESOURCES}

    ours_reported = {r: stats.requests[f"LIST {r} [node]"] for r in RESOURCES}
    ref_reported = {r: int(ref["requests_by_verb_resource"].get(f"LIST {r}", 0)) for r in RESOURCES}
    ref_reported["nodes"] += int(ref.get("setup_requests", 0))  # its own node listing, if any
    assert served(before, mid) == ours_reported, (served(before, mid), stats.as_dict())
    assert served(mid, after) == ref_reported, (served(mid, after), ref)
    # every informer of every agent listed: at least once, exactly once when nothing relisted
    for side, reported, clean in (
        ("ours", ours_reported, stats.relists_410 == stats.errors == 0),
        (
            "reference",
            ref_reported,
            ref["relists"] == ref["relists_410"] == ref["errors"] == 0
            and ref["agents_started"] == AGENTS,
        ),
    ):
        if clean:
            assert reported == {r: AGENTS for r in RESOURCES}, (side, reported)
        else:
            assert all(n >= AGENTS for n in reported.values()), (side, reported)
    assert stats.requests["WATCH pods [node]"] >= AGENTS
    assert stats.requests["WATCH nodes [node]"] >= AGENTS
