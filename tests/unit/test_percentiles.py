"""Raw-sample percentiles everywhere are stats.percentile's nearest rank."""

from loadtest.agents.agent import AgentStats
from loadtest.measurements import apiserver


def test_agents_first_event_quantiles_are_nearest_rank():
    stats = AgentStats(first_event_ms=[float(x) for x in range(100, 0, -1)])
    s = stats.as_dict()["watch_first_event_ms"]
    # the 99th of 100 samples, not the maximum; the 50th, not the 51st
    assert s == {"count": 100, "p50": 50.0, "p99": 99.0, "max": 100.0}
    assert AgentStats().as_dict()["watch_first_event_ms"] == {"count": 0}


def test_harness_access_scrape_median_is_nearest_rank():
    records = [{"t": float(i), "scrape_ms": ms} for i, ms in enumerate((40.0, 10.0, 30.0, 6000.0))]
    a = apiserver._access(records)
    assert a["scrape_ms_p50"] == 30.0 and a["scrape_ms_max"] == 6000.0 and a["degraded"]
    assert apiserver._access([])["scrape_ms_p50"] is None
