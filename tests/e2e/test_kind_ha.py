"""Several API servers, each measured on its own: kind's HA config (three control planes
behind kind's haproxy). Through the load balancer, scrapes land on the next server in turn
and mix three processes' counters; scraped one by one, each server keeps its own series and
the merged request count is the sum of the three.

Makes its own HA cluster (about 1.5 GB, a few minutes), named after --loadtest-cluster with
"-ha" appended, and removes it afterwards unless --loadtest-keep-cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.clusters import Cluster, http_client
from loadtest.clusters.kind import KindProvider
from loadtest.measurements.apiserver import ApiserverMetrics
from loadtest.results import read_jsonl

pytestmark = pytest.mark.e2e

REQUESTS = 90  # GETs through the load balancer, spread over the three servers


@pytest.fixture(scope="module")
def ha_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    name = request.config.getoption("--loadtest-cluster")[:29] + "-ha"
    keep = request.config.getoption("--loadtest-keep-cluster")
    provider = KindProvider(config="ha", log=print)
    cluster = provider.get(name) if keep else None
    if cluster is None:
        provider.delete(name)  # a leftover of a crashed session: start clean
        cluster = provider.create(name)
    try:
        yield cluster
    finally:
        if not keep:
            provider.delete(name)


@pytest.fixture(scope="module")
def measured(ha_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    raw = tmp_path_factory.mktemp("ha") / "apiserver.jsonl"
    m = ApiserverMetrics(ha_cluster, raw, interval=2)
    m.start()
    try:
        with http_client(ha_cluster) as c:
            for _ in range(REQUESTS):
                # a new connection each time: haproxy balances connections, not requests
                assert (
                    c.get("/api/v1/namespaces/default", headers={"Connection": "close"}).status_code
                    == 200
                )
        m.wait_idle(window_s=4, max_s=20)
    finally:
        summary = m.gather()
    return summary, raw


def test_three_api_servers_are_scraped_each_on_its_own(measured: tuple[dict, Path]) -> None:
    s, raw = measured
    assert s["discovery"]["source"] == "endpointslices", s["discovery"]
    assert s["servers_measured"] == 3, s["harness_access"]
    assert s["harness_access"]["failed"] == 0 and s["harness_errors"]["count"] == 0
    # each server's scrapes come from one process: no cycling through the load balancer
    starts: dict[str, set[float]] = {}
    for r in read_jsonl(raw):
        for n, _, v in r.get("changed", []):
            if n == "process_start_time_seconds":
                starts.setdefault(r["server"], set()).add(v)
    assert len(starts) == 3 and all(len(v) == 1 for v in starts.values()), starts
    assert len({next(iter(v)) for v in starts.values()}) == 3  # three processes
    assert all(row["restarts"] == 0 for row in s["servers"].values())
    # the kubelet's view of each server's static pod, matched by its IP
    assert all(
        row["pod"]["restarts"] == 0 and row["oom_kills"] == 0 for row in s["servers"].values()
    ), s["servers"]


def test_merged_request_count_is_the_sum_of_the_three(measured: tuple[dict, Path]) -> None:
    s, _ = measured
    per = {sid: row["requests"] for sid, row in s["servers"].items()}
    print(f"requests per API server: {per}; merged {s['requests']['total']:.0f}")
    assert len(per) == 3 and all(n > 0 for n in per.values()), per
    assert s["requests"]["total"] == sum(per.values())
    assert s["requests"]["total"] >= REQUESTS  # ours, plus the control plane's own
    # CPU and memory are each server's own
    assert all(row["cpu_seconds"] > 0 and row["rss_max_mib"] > 50 for row in s["servers"].values())
    assert s["process"]["cpu_seconds"] == pytest.approx(
        sum(row["cpu_seconds"] for row in s["servers"].values())
    )
    assert s["idle"].get("cpu_cores") is not None, s["idle"]
