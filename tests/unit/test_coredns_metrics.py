"""CoreDNS's own metrics: merged over instances, resets and missing instances counted."""

from loadtest.measurements import coredns


def _scrape(t, target, requests, nx, servfail, hits, misses, fast, slow, start=1.0, ready=True):
    s = [
        ["coredns_dns_requests_total", [["server", "dns://:53"], ["type", "A"]], requests],
        ["coredns_dns_responses_total", [["rcode", "NXDOMAIN"]], nx],
        ["coredns_dns_responses_total", [["rcode", "NOERROR"]], requests - nx - servfail],
        ["coredns_dns_responses_total", [["rcode", "SERVFAIL"]], servfail],
        ["coredns_cache_hits_total", [["type", "success"]], hits],
        ["coredns_cache_misses_total", [], misses],
        ["coredns_kubernetes_rest_client_requests_total", [["code", "200"]], 5],
        ["process_start_time_seconds", [], start],
        ["process_resident_memory_bytes", [], 30 * 2**20],
        ["process_cpu_seconds_total", [], t / 100],
    ]
    for le, n in (("0.001", fast), ("0.1", fast + slow), ("+Inf", fast + slow)):
        s.append(
            [
                "coredns_dns_request_duration_seconds_bucket",
                [["le", le], ["server", "dns://:53"]],
                n,
            ]
        )
    return {"t": t, "target": target, "scrape_ms": 3.0, "samples": s, "ready": ready}


def test_merged_over_instances():
    recs = [
        _scrape(0, "a", 0, 0, 0, 0, 0, 0, 0),
        _scrape(0, "b", 10, 0, 0, 0, 0, 10, 0),
        {"t": 5, "error": "no CoreDNS pod running"},
        _scrape(10, "a", 100, 20, 10, 30, 70, 90, 10),
        _scrape(10, "b", 110, 0, 0, 0, 100, 110, 0, ready=False),
    ]
    s = coredns.summarize(recs)
    assert s["requests"] == 200
    assert s["responses_by_rcode"] == {"NOERROR": 170, "NXDOMAIN": 20, "SERVFAIL": 10}
    assert s["servfail_ratio"] == 10 / 200
    assert s["cache"] == {"hits": 30, "misses": 170, "hit_ratio": 30 / 200}
    # 190 of 200 under 1 ms: p50 in the first bucket, p99 in the second
    assert s["request_p50_ms"] <= 1 and 1 < s["request_p99_ms"] <= 100
    assert s["no_instance_scrapes"] == 1 and s["failed_scrapes"] == 1
    assert s["not_ready_scrapes"] == 1
    assert [i["instance"] for i in s["instances"]] == ["a", "b"]
    assert s["timeseries"][0]["servfail_rps"] == 1.0


def test_a_restarted_instance_counts_from_zero():
    recs = [
        _scrape(0, "a", 50, 0, 0, 0, 0, 50, 0, start=1.0),
        _scrape(10, "a", 8, 0, 8, 0, 0, 8, 0, start=9.0),
    ]
    s = coredns.summarize(recs)
    assert s["requests"] == 8 and s["responses_by_rcode"]["SERVFAIL"] == 8
    assert s["instances"][0]["restarts"] == 1


def test_nothing_scraped_is_an_error():
    s = coredns.summarize([{"t": 1, "error": "listing CoreDNS pods: ConnectError"}])
    assert "error" in s and s["failed_scrapes"] == 1
