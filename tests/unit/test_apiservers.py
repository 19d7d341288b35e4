"""Several API servers measured one by one and merged; the harness's failures apart from the
servers'. Fake servers behind httpx's MockTransport (pure logic: discovery, the raw stream,
the merge, the split of failures), their /metrics text written here."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from loadtest.clusters.base import Cluster
from loadtest.measurements import apiserver, metrics
from loadtest.measurements.apiserver import ApiServerSummary, HarnessAccess
from loadtest.results import read_jsonl
from loadtest.verdict import slo
from loadtest.wait import until

CLUSTER = Cluster(
    name="t",
    provider="kind",
    kubeconfig=Path("/dev/null"),
    context="",
    server="https://127.0.0.1:6443",
)
A, B = "https://172.18.0.2:6443", "https://172.18.0.3:6443"


def metrics_text(n: int, requests: int, slow: bool, cpu: float, rss: float) -> str:
    """Cumulative values after the server's n-th scrape: `requests` more each time, all in
    the 0.1 s bucket (fast) or all in the 1 s one (slow)."""
    total = requests * n
    fast = 0 if slow else total
    return f"""# TYPE apiserver_request_total counter
apiserver_request_total{{code="200",resource="pods",scope="cluster",verb="LIST"}} {total}
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{{resource="pods",scope="cluster",verb="LIST",le="0.1"}} {fast}
apiserver_request_duration_seconds_bucket{{resource="pods",scope="cluster",verb="LIST",le="1"}} {total}
apiserver_request_duration_seconds_bucket{{resource="pods",scope="cluster",verb="LIST",le="+Inf"}} {total}
apiserver_request_duration_seconds_sum{{resource="pods",scope="cluster",verb="LIST"}} 1
apiserver_request_duration_seconds_count{{resource="pods",scope="cluster",verb="LIST"}} {total}
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total {cpu * n}
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes {rss}
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1000
"""  # noqa: E501


def slices(*urls: str) -> dict:
    return {
        "items": [
            {
                "addressType": "IPv4",
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": [u.split("//")[1].split(":")[0]], "conditions": {"ready": True}}
                    for u in urls
                ],
            }
        ]
    }


class Fakes:
    """The cluster's URL answers EndpointSlices; each server answers /metrics in turn."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.sliced = True  # False: the EndpointSlices are empty (not mirrored yet)
        self.scrapes: dict[str, int] = {}
        # per server: scrape number -> a special answer (a status code, or a text)
        self.special: dict[str, dict[int, int | str]] = {}
        self.shape = {A: (10, False, 0.5, 100e6), B: (30, True, 1.5, 300e6)}

    def __call__(self, req: httpx.Request) -> httpx.Response:
        base = f"https://{req.url.host}:{req.url.port}"
        if base == CLUSTER.server:
            if req.url.path == apiserver.SLICES:
                return httpx.Response(
                    200, json=slices(*self.endpoints) if self.sliced else {"items": []}
                )
            if req.url.path == apiserver.ENDPOINTS:
                return httpx.Response(
                    200,
                    json={
                        "subsets": [
                            {
                                "addresses": [
                                    {"ip": u.split("//")[1].split(":")[0]} for u in self.endpoints
                                ],
                                "ports": [{"name": "https", "port": 6443}],
                            }
                        ]
                    },
                )
            return httpx.Response(404, json={"items": []})
        if req.url.path == "/livez":
            return httpx.Response(200, text="ok")
        n = self.scrapes[base] = self.scrapes.get(base, 0) + 1
        special = self.special.get(base, {}).get(n)
        if isinstance(special, int):
            return httpx.Response(special, text="down")
        if isinstance(special, str):
            return httpx.Response(200, text=special)
        return httpx.Response(200, text=metrics_text(n, *self.shape[base]))


def measure(
    tmp_path: Path,
    fakes: Fakes,
    rounds: int,
    rediscover_s: float = 3600,
    between: Callable[[int], None] = lambda _: None,
) -> dict:
    m = apiserver.ApiserverMetrics(
        CLUSTER,
        tmp_path / "apiserver.jsonl",
        interval=1,
        rediscover_s=rediscover_s,
        transport=httpx.MockTransport(fakes),
    )
    m.discover_servers()
    for k in range(rounds):
        between(k)
        m.scrape_round(wait_all=True)
    m._pool.shutdown(wait=True)  # a rediscovery still in flight lands before the summary
    m.writer.close()
    return apiserver.summarize(read_jsonl(tmp_path / "apiserver.jsonl"))


def test_endpoint_urls_of_the_kubernetes_service() -> None:
    assert apiserver.endpoint_urls(slices(A, B)) == [A, B]
    v6 = {
        "items": [
            {
                "addressType": "IPv6",
                "ports": [{"port": 443}],
                "endpoints": [{"addresses": ["fd00::2"]}],
            },
            {
                "addressType": "FQDN",
                "ports": [{"port": 443}],
                "endpoints": [{"addresses": ["api.example"]}],
            },
        ]
    }
    assert apiserver.endpoint_urls(v6) == ["https://[fd00::2]:443"]
    legacy = {
        "subsets": [
            {
                "addresses": [{"ip": "172.18.0.2"}],
                "notReadyAddresses": [{"ip": "172.18.0.3"}],
                "ports": [{"name": "https", "port": 6443}],
            }
        ]
    }
    assert apiserver.endpoints_urls(legacy) == [A, B]


def test_two_servers_are_scraped_apart_and_merged(tmp_path: Path) -> None:
    s = measure(tmp_path, Fakes([A, B]), rounds=3)
    raw = read_jsonl(tmp_path / "apiserver.jsonl")
    assert {r["server"] for r in raw if "changed" in r} == {A, B}
    assert s["servers_measured"] == 2 and s["discovery"]["source"] == "endpointslices"
    # counters: each server's own delta (2 intervals), summed
    per = s["servers"]
    assert (per[A]["requests"], per[B]["requests"]) == (20, 60)
    assert s["requests"]["total"] == 80 == per[A]["requests"] + per[B]["requests"]
    # histograms: buckets summed, so the quantile is the merged population's (20 fast, 60
    # slow), not either server's alone
    (lat,) = [r for r in s["latency"] if r["metric"] == "apiserver_request_duration_seconds"]
    assert lat["count"] == 80
    assert lat["p99"] == pytest.approx(0.1 + 0.9 * (0.99 * 80 - 20) / 60)
    # CPU and memory per server; the merged CPU is their sum, memory the largest server's
    assert (per[A]["cpu_seconds"], per[B]["cpu_seconds"]) == (
        pytest.approx(1.0),
        pytest.approx(3.0),
    )
    assert s["process"]["cpu_seconds"] == pytest.approx(4.0)
    assert (per[A]["rss_max_mib"], per[B]["rss_max_mib"]) == (100e6 / 2**20, 300e6 / 2**20)
    assert s["process"]["rss_max_mib"] == 300e6 / 2**20
    assert per[A]["restarts"] == per[B]["restarts"] == 0
    assert [set(p["cpu_cores_by_server"]) for p in s["timeseries"]] == [{A, B}] * 2


def test_merge_histograms_sums_buckets_and_counts() -> None:
    Buckets = dict[tuple[str, ...], list[tuple[float, float]]]
    a: Buckets = {("LIST",): [(0.1, 5.0), (1.0, 9.0), (math.inf, 10.0)]}
    b: Buckets = {
        ("LIST",): [(0.1, 1.0), (1.0, 1.0), (math.inf, 30.0)],
        ("GET",): [(math.inf, 2.0)],
    }
    merged = metrics.merge_histograms([a, b])
    assert merged[("LIST",)] == [(0.1, 6.0), (1.0, 10.0), (math.inf, 40.0)]
    assert merged[("GET",)] == [(math.inf, 2.0)]
    assert metrics.merge_counts([{("200",): 1.0}, {("200",): 2.0, ("429",): 3.0}]) == {
        ("200",): 3.0,
        ("429",): 3.0,
    }


def test_without_slices_the_endpoints_object_is_read(tmp_path: Path) -> None:
    fakes = Fakes([A, B])
    fakes.sliced = False
    s = measure(tmp_path, fakes, rounds=2)
    assert s["discovery"]["source"] == "endpoints" and s["servers_measured"] == 2


def test_a_parse_error_is_the_harness_s_not_an_outage(tmp_path: Path) -> None:
    fakes = Fakes([A, B])
    fakes.special[B] = {2: 'apiserver_request_total{code="200" 5\n'}  # torn text
    s = measure(tmp_path, fakes, rounds=3)
    assert s["harness_errors"]["count"] == 1
    assert "parsing /metrics" in s["harness_errors"]["errors"][0]
    assert s["harness_access"]["failed"] == 0
    assert s["harness_access"]["by_server"][B] == {
        "scrapes": 3,
        "failed": 0,
        "late": 0,
        "outages": [],
        "errors": [],
    }
    avail = slo._api_availability(HarnessAccess.model_validate(s["harness_access"]))
    assert avail.status == "pass", avail.message
    assert s["requests"]["total"] == 80  # B's delta spans the unreadable scrape


def test_a_server_that_stops_answering_is_that_server_s_outage(tmp_path: Path) -> None:
    fakes = Fakes([A, B])
    fakes.special[B] = {2: 503, 3: 503}
    s = measure(tmp_path, fakes, rounds=5)
    by = s["harness_access"]["by_server"]
    assert (by[A]["failed"], by[B]["failed"], len(by[B]["outages"])) == (0, 2, 1)
    assert s["harness_errors"]["count"] == 0
    avail = slo._api_availability(HarnessAccess.model_validate(s["harness_access"]))
    assert avail.status == "fail"
    assert avail.violations == [f"{B}: 2 of 5 scrapes failed in 1 outage(s)"]
    # the merged counters lose nothing: B's delta from scrape 1 to 5 spans the gap
    assert s["requests"]["total"] == 4 * 10 + 4 * 30


def test_a_server_found_by_rediscovery_is_added(tmp_path: Path) -> None:
    fakes = Fakes([A])

    def join(k: int) -> None:
        if k == 2:
            fakes.endpoints = [A, B]

    s = measure(tmp_path, fakes, rounds=6, rediscover_s=1, between=join)
    assert s["servers_measured"] == 2 and s["discovery"]["changes"] == 1
    per = s["servers"]
    assert s["requests"]["total"] == per[A]["requests"] + per[B]["requests"]
    assert per[B]["requests"] > 0  # counted from its first scrape, not from its start


def test_unreachable_endpoints_fall_back_to_the_cluster_url(tmp_path: Path) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host != "127.0.0.1":
            raise httpx.ConnectError("no route to host", request=req)
        if req.url.path == apiserver.SLICES:
            return httpx.Response(200, json=slices(A))
        return httpx.Response(200, text=metrics_text(1, 10, False, 0.5, 1e8))

    m = apiserver.ApiserverMetrics(
        CLUSTER, tmp_path / "a.jsonl", interval=1, transport=httpx.MockTransport(handler)
    )
    m.discover_servers()
    m.scrape_round(wait_all=True)
    m.writer.close()
    s = apiserver.summarize(read_jsonl(tmp_path / "a.jsonl"))
    assert s["discovery"]["source"] == "cluster-url"
    assert s["discovery"]["note"] == (
        f"the endpoints list 1 API server(s) ({A}), none "
        f"reachable from here: scraping the cluster's URL "
        f"{CLUSTER.server}"
    )
    assert list(s["harness_access"]["by_server"]) == [CLUSTER.server]


def test_a_bug_in_a_summary_section_is_a_harness_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise KeyError("le")

    monkeypatch.setattr(apiserver, "_latency", broken)
    s = measure(tmp_path, Fakes([A, B]), rounds=3)
    assert "latency" not in s and s["requests"]["total"] == 80
    assert s["harness_errors"] == {"count": 1, "errors": ["summarizing latency: KeyError: 'le'"]}
    assert s["harness_access"]["failed"] == 0
    # the SLO that needed it says it could not be judged: not a pass, not the server's fault
    lat = slo._api_latency(ApiServerSummary.model_validate(s), slo.ApiSLO())
    assert {r.status for r in lat} == {"error"}


# --- the idle baseline --------------------------------------------------------------------


def test_idle_window_is_the_steady_tail() -> None:
    # after seeding the controllers still work: CPU decays, then holds
    cores = [1.2, 0.9, 0.5, 0.3, 0.12, 0.1, 0.11, 0.1]
    rates = [(k, k + 1, c) for k, c in enumerate(cores)]
    w = apiserver.idle_window(rates, 3)
    assert w is not None and w.settled and (w.first, w.last) == (5, 8)
    early = apiserver.idle_window(rates[:5], 3)
    assert early is not None and not early.settled  # still falling: not idle yet
    # a slow scrape skipped rounds: the interval is longer, the window still ends on rounds
    slow = apiserver.idle_window([(0, 1, 0.1), (1, 4, 0.1), (4, 5, 0.1)], 3)
    assert slow is not None and slow.settled and (slow.first, slow.last) == (0, 5)
    short = apiserver.idle_window(rates[-2:], 3)
    assert short is not None and not short.settled  # fewer intervals than the window
    assert apiserver.idle_window([], 3) is None


def test_wait_idle_marks_a_window_after_the_busy_start(tmp_path: Path) -> None:
    """After seeding the fake server's work decays (0.6, 0.5, ... CPU-s per scrape over its
    first 6 scrapes), then stays at 0.002: the idle window may only hold the quiet scrapes,
    whatever the machine's timing."""
    fakes = Fakes([A])
    busy = 6
    per_scrape = [0.0, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]

    def cpu_at(n: int) -> float:
        return sum(per_scrape[: min(n, busy) + 1]) + 0.002 * max(0, n - busy)

    def handler(req: httpx.Request) -> httpx.Response:
        r = fakes(req)
        if req.url.path == "/metrics":
            n = fakes.scrapes[A]
            r = httpx.Response(
                200,
                text=metrics_text(n, 10, False, 0, 1e8).replace(
                    "process_cpu_seconds_total 0", f"process_cpu_seconds_total {cpu_at(n)}"
                ),
            )
        return r

    m = apiserver.ApiserverMetrics(
        CLUSTER, tmp_path / "a.jsonl", interval=0.1, transport=httpx.MockTransport(handler)
    )
    m.start()
    mark = m.wait_idle(window_s=0.3, max_s=20)
    s = m.gather()
    assert mark["settled"], mark
    assert mark["rounds"][0] >= busy - 1  # round k is the server's scrape k + 1
    assert s["idle"]["cpu_cores"] < 0.5 * min(r["cpu_cores"] for r in s["timeseries"][: busy - 1])
    assert set(s["idle"]["cpu_cores_by_server"]) == {A}


@pytest.mark.parametrize("ends", [503, None])
def test_a_hung_server_fails_every_round_it_hangs(tmp_path: Path, ends: int | None) -> None:
    """B's second scrape hangs through two more rounds, then fails (a stopped server) or
    answers (a slow one): the missed rounds share that outcome."""
    import threading

    release = threading.Event()
    fakes = Fakes([A, B])
    if ends:
        fakes.special[B] = {2: ends}

    def handler(req: httpx.Request) -> httpx.Response:
        if (
            req.url.host == "172.18.0.3"
            and req.url.path == "/metrics"
            and fakes.scrapes.get(B) == 1
        ):
            release.wait(10)
        return fakes(req)

    m = apiserver.ApiserverMetrics(
        CLUSTER, tmp_path / "a.jsonl", interval=1, transport=httpx.MockTransport(handler)
    )
    m.discover_servers()
    m.scrape_round(wait_all=True)
    for i in range(3):
        m.scrape_round()  # B's scrape of the first of these hangs through the next two

        def a_scraped(i: int = i) -> bool:
            return fakes.scrapes[A] == i + 2 and m._servers[A].busy_since is None

        until(a_scraped, "A's scrape of this round", timeout=10, interval=0.01)
    release.set()
    m._pool.shutdown(wait=True)
    m.writer.close()
    s = apiserver.summarize(read_jsonl(tmp_path / "a.jsonl"))
    by = s["harness_access"]["by_server"]
    assert (by[A]["scrapes"], by[B]["scrapes"]) == (4, 4)
    if ends:
        assert (by[A]["failed"], by[B]["failed"], by[B]["late"]) == (0, 3, 0)
        assert len(by[B]["outages"]) == 1
        assert by[B]["errors"][0].startswith("HTTPStatusError: Server error '503")
    else:
        assert (by[A]["failed"], by[B]["failed"], by[B]["late"]) == (0, 0, 2)
