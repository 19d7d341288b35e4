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
    # Measured with closed-loop probes: p99 207 ms -> 21 ms. With open-loop probes (failed
    # slots at their timeout) both runs' p99 sit at the 10 s timeout on this 4 + 2 seat
    # server: the other tenant still stalls for tens of seconds with the agents confined.
    # What the mitigation gives back is answers: 0 of 250 reads succeeded without it, 105 of
    # 226 with it (2026-12-01). The stated margin: at least 20 points more reads succeed.
    assert without["others_ok_share"] is not None and with_["others_ok_share"] is not None
    assert with_["others_ok_share"] >= without["others_ok_share"] + 0.2, views
    assert with_["others_429"] <= without["others_429"], views
