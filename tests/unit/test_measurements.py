"""Summaries of recorded streams from a real telemetry-v2 run (50 agents, local provider)."""

from loadtest.measurements import apiserver, client, dns
from tests.unit.conftest import FIXTURES as FIX
from tests.unit.conftest import load_recorded

_records = load_recorded


def test_apiserver_summary_of_a_recorded_run():
    s = apiserver.summarize(_records("apiserver-telemetry-v2.jsonl.gz"))
    req = s["requests"]
    assert req["total"] == sum(req["by_code"].values()) > 0
    assert req["errors_5xx"] == req["by_code"].get("500", 0) == 2
    lists = {
        (r["verb"], r["resource"], r["scope"]): r
        for r in s["latency"]
        if r["metric"] == "apiserver_request_sli_duration_seconds"
    }
    pods = lists[("LIST", "pods", "cluster")]
    # cluster-wide LISTs of ~3,500 pods by 50 agents: the saturation the profile causes
    assert pods["p50"] <= pods["p99"] <= pods["p99_worst_window"] <= 60
    assert pods["p99"] > 5
    assert s["process"]["cpu_seconds"] > 0 and s["process"]["rss_max_mib"] > 100
    assert len(s["timeseries"]) == s["scrapes"] - 1
    assert s["harness_access"]["failed"] == 0


def test_apiserver_summary_needs_two_scrapes():
    recs = _records("apiserver-telemetry-v2.jsonl.gz")[:1]
    assert "fewer than two" in apiserver.summarize(recs)["error"]


def test_stream_keeps_only_changes_and_expands_back():
    recs = _records("apiserver-telemetry-v2.jsonl.gz")
    full = apiserver.expand(recs)
    assert len(recs[1]["changed"]) < len(full[1]["samples"])  # the delta encoding pays
    assert len(full[-1]["samples"]) >= len(full[0]["samples"])


def test_dns_summary_of_a_recorded_run():
    # recorded by the closed-loop probe of before: read one slot per lookup
    s = dns.summarize(_records("dns-telemetry-v2.jsonl.gz"))
    assert s["scheduled"] > 100 and s["failed"] == 0 and not s["open_loop"]
    assert s["rcodes"]["NXDOMAIN"] > 0  # the name that must not exist
    assert s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert [p["seconds"] is not None for p in s["propagation"]] == [True]


def test_dns_counts_timeouts_and_wrong_answers_as_errors():
    recs = [
        {
            "t": 1.0,
            "name": "a.",
            "rcode": "TIMEOUT",
            "answers": [],
            "ms": 2000,
            "expect": "A",
            "error": True,
        },
        {
            "t": 2.0,
            "name": "a.",
            "rcode": "NOERROR",
            "answers": ["10.96.0.1"],
            "ms": 1,
            "expect": "A",
            "error": False,
        },
        {
            "t": 3.0,
            "name": "a.",
            "rcode": "NXDOMAIN",
            "answers": [],
            "ms": 1,
            "expect": "A",
            "error": True,
        },
    ]
    s = dns.summarize(recs)
    assert s["error_rate"] == 2 / 3
    assert s["failed_by_cause"] == {"timeout": 1, "rcode NXDOMAIN": 1}
    assert s["p99_ms"] == 4000  # the timeout (two attempts of 2 s) counts in the quantiles


def test_client_summary_reads_locust_csv(tmp_path):
    (tmp_path / "locust_stats.csv").write_text((FIX / "locust_stats.csv").read_text())
    s = client.summarize(tmp_path)
    assert s["requests"] == sum(r["requests"] for r in s["by_name"]) > 0
    assert {r["name"] for r in s["by_name"]} >= {"LIST pods [cluster]", "WATCH pods [node]"}


def test_response_bytes_name_what_the_api_server_sent_most(recorded):
    s = apiserver.summarize(recorded("apiserver-telemetry-v2.jsonl.gz"))
    top = s["response_bytes"][0]
    # telemetry-v2's cluster-wide pod LISTs dominate what the server sent
    assert (top["verb"], top["resource"], top["scope"]) == ("LIST", "pods", "cluster")
    assert top["bytes"] > 1e6 and top["mean_bytes"] == top["bytes"] / top["responses"]
    assert [r["bytes"] for r in s["response_bytes"]] == sorted(
        (r["bytes"] for r in s["response_bytes"]), reverse=True
    )
