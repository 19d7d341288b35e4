"""The APF mitigation, end to end on the local provider: with the agents confined, another
tenant's reads get faster. A small API server (4 + 2 in-flight seats) makes APF seats, not
CPU, the scarce resource, as on a busy production API server."""

import pytest

from loadtest.clusters import get_provider
from loadtest.config import InventorySpec
from loadtest.gate import mitigation
from loadtest.run.job import MainJob, RunConfig
from loadtest.run.record import read_summary

pytestmark = pytest.mark.integration

HAMMER = """version: 1
name: hammer
description: every agent LISTs all pods cluster-wide with a consistent read every 2 s
user_agent: hammer/1
identity: impersonate
polls:
  - resource: pods
    scope: cluster
    interval_seconds: 2
    jitter: 0.2
    list_resource_version: ""
    page_size: 0
"""


def test_mitigation_lowers_other_tenants_latency(tmp_path):
    profile = tmp_path / "hammer.yaml"
    profile.write_text(HAMMER)
    provider = get_provider(
        "local",
        apiserver_args={"max-requests-inflight": "4", "max-mutating-requests-inflight": "2"},
    )
    cluster = provider.create("it-mitigate")
    cfg = RunConfig(
        profile=str(profile),
        agents=60,
        duration_s=30,
        spawn_rate=60,
        inventory=InventorySpec(name="mitigate-it", nodes=20, pods_per_node=10, namespaces=2),
        dns_min_probe_s=0,
        propagation_check=False,
    )
    views = {}
    try:
        for variant in ("without", "with"):
            if variant == "with":
                mitigation.apply(cluster, mitigation.objects(mitigation.Plan()))
            run = MainJob(
                provider, "it-mitigate", cfg, tmp_path / variant, log=lambda _: None
            ).execute()
            views[variant] = mitigation.others_view(read_summary(run))
    finally:
        provider.delete("it-mitigate")
    without, with_ = views["without"], views["with"]
    # What the mitigation gives back is the other tenant's answers. Measured: with etcd's
    # data on this disk 0 of 250 of its reads succeeded without the objects, 105 of 226 with
    # them; with etcd in memory (stop 15) 89 % without, 100 % with. The claim: without the
    # objects the agents hurt it (reads failed, or its p99 over the 5 s SLO), and with them
    # at least a third of what it lost comes back, with a tail no longer.
    key = {v: (views[v]["others_ok_share"], views[v]["others_p99_s"]) for v in views}
    assert without["others_ok_share"] is not None and with_["others_ok_share"] is not None
    lost = 1 - without["others_ok_share"]
    assert lost > 0.01 or (without["others_p99_s"] or 0) > 5, ("nothing to give back", key)
    assert with_["others_ok_share"] >= without["others_ok_share"] + lost / 3, key
    assert (with_["others_p99_s"] or 0) <= (without["others_p99_s"] or 0), key
    assert with_["others_429"] <= without["others_429"], views
