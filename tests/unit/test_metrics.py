import math

import pytest

from loadtest.measurements import metrics

TEXT = """# HELP apiserver_request_total Counter
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",verb="LIST",resource="pods"} 10
apiserver_request_total{code="429",verb="LIST",resource="pods"} 2
# HELP lat Histogram
# TYPE lat histogram
lat_bucket{verb="LIST",le="0.1"} 5
lat_bucket{verb="LIST",le="1"} 9
lat_bucket{verb="LIST",le="+Inf"} 10
lat_sum{verb="LIST"} 3
lat_count{verb="LIST"} 10
"""


def test_parse_keeps_counter_families_by_either_name():
    names = {n for n, _, _ in metrics.parse(TEXT, ["apiserver_request_total"])}
    assert names == {"apiserver_request_total"}
    assert {n for n, _, _ in metrics.parse(TEXT, ["lat"])} >= {"lat_bucket", "lat_count"}


def test_counter_delta_groups_and_survives_resets():
    before = metrics.index(metrics.parse(TEXT))
    after = dict(before)
    key = next(k for k in after if k[0] == "apiserver_request_total" and ("code", "200") in k[1])
    after[key] = 25
    assert metrics.counter_delta(before, after, "apiserver_request_total", ("code",)) == {
        ("200",): 15.0,
        ("429",): 0.0,
    }
    after[key] = 4  # went down: the server restarted, the new value is all new
    assert metrics.counter_delta(before, after, "apiserver_request_total", ("code",))[("200",)] == 4


def test_histogram_quantile_interpolates_like_promql():
    b = [(0.1, 5.0), (1.0, 9.0), (math.inf, 10.0)]
    assert metrics.quantile(0.5, b) == pytest.approx(0.1)
    assert metrics.quantile(0.25, b) == pytest.approx(0.05)
    assert metrics.quantile(0.7, b) == pytest.approx(0.1 + 0.9 * (7 - 5) / 4)
    assert metrics.quantile(0.99, b) == 1.0  # in +Inf: the highest finite bound
    assert metrics.quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None


def test_histogram_delta_is_per_window():
    before = metrics.index(metrics.parse(TEXT))
    after = metrics.index(
        metrics.parse(
            TEXT.replace('le="1"} 9', 'le="1"} 19').replace('le="+Inf"} 10', 'le="+Inf"} 20')
        )
    )
    d = metrics.histogram_delta(before, after, "lat", ("verb",))
    assert d[("LIST",)] == [(0.1, 0.0), (1.0, 10.0), (math.inf, 10.0)]
    q = metrics.quantile(0.99, d[("LIST",)])
    assert q is not None and 0.1 < q <= 1.0
