"""The scaling fit on synthetic data with a known answer."""

from __future__ import annotations

import math

import pytest

from loadtest.gate import fit, scaling

A, B = 0.001, 2e-5  # per-agent cores = A + B*N
P0, P2 = 0.5, 1e-4  # LIST p99 s = P0 + P2*N^2


def _point(n: int, agents_per_node: float = 1.0, noise: float = 0.0) -> scaling.Point:
    agents = round(n * agents_per_node)
    per_agent = (A + B * n) * (1 + noise)
    return scaling.Point(
        nodes=n,
        agents=agents,
        cpu_cores=agents * per_agent,
        cpu_per_agent=per_agent,
        bytes_per_agent_s=100 + 50.0 * n,
        list_p99_s=P0 + P2 * n * n,
        verdict="pass",
    )


def test_fit_line_recovers_slope_and_intercept() -> None:
    line = fit.fit_line([1, 2, 3, 4], [3, 5, 7, 9])
    assert (line.intercept, line.slope, line.r2) == (
        pytest.approx(1),
        pytest.approx(2),
        pytest.approx(1),
    )
    with pytest.raises(ValueError):
        fit.fit_line([5, 5], [1, 2])


def test_sweep_predicts_known_break_points() -> None:
    sw = scaling.analyse(
        "synthetic", [_point(n) for n in (20, 50, 100, 200)], cores=2.0, slo_list_p99_s=30.0
    )
    assert sw.cpu_fit and sw.cpu_fit.intercept == pytest.approx(A)
    assert sw.cpu_fit.slope == pytest.approx(B)
    # N*(A + B*N) = 2  =>  N = (-A + sqrt(A^2 + 8B)) / 2B
    expected = (-A + math.sqrt(A * A + 8 * B)) / (2 * B)
    assert sw.saturation_nodes == pytest.approx(expected)
    assert sw.saturation_nodes == pytest.approx(292.2, abs=0.1)
    assert sw.slo_break_nodes == pytest.approx(math.sqrt((30 - P0) / P2))
    # the fit of 20..100 predicts 200 exactly on noiseless data
    assert len(sw.checks) == 3 and all(abs(c.error) < 1e-9 for c in sw.checks)
    assert any("saturates 2 cores at N ~ 292" in line for line in sw.lines())


def test_agents_per_node_scales_the_total() -> None:
    sw = scaling.analyse("synthetic", [_point(n, 2.0) for n in (20, 50)], cores=2.0)
    assert sw.agents_per_node == 2.0
    expected = (-2 * A + math.sqrt(4 * A * A + 16 * B)) / (4 * B)
    assert sw.saturation_nodes == pytest.approx(expected)
    assert any("2 valid size(s)" in n for n in sw.notes)


def test_check_shows_a_wrong_model() -> None:
    # The largest point costs 30 % more than the law of the others predicts.
    pts = [_point(20), _point(50), _point(100), _point(200, noise=0.3)]
    check = next(
        c
        for c in scaling.analyse("x", pts, cores=2).checks
        if c.what.startswith("API server cores")
    )
    assert check.error == pytest.approx((1 - 1.3) / 1.3)  # predicted 23 % under measured


def test_flat_cost_never_saturates_by_growth() -> None:
    assert scaling.saturation_nodes(scaling.Line(0.01, 0.0, None), 1.0, 2.0) == pytest.approx(200)
    assert scaling.saturation_nodes(scaling.Line(0.0, 0.0, None), 1.0, 2.0) is None


def test_negative_intercept_is_clamped_and_broken_runs_left_out() -> None:
    pts = [_point(20), _point(50), _point(100)]
    pts[0].cpu_per_agent = -0.0005  # idle subtraction noise on a small size
    broken = scaling.Point(70, 70, 0.01, None, None, 0.02, "fail", invalid="no request")
    sw = scaling.analyse("x", [*pts, broken], cores=2)
    assert sw.cpu_fit and sw.cpu_fit.intercept == 0.0 and sw.cpu_fit.slope > 0
    assert [p.nodes for p in sw.fitted] == [20, 50, 100] and len(sw.points) == 4
    assert any("70 nodes left out of the fit: no request" in n for n in sw.notes)
    assert "70 nodes fail (not fitted)" in sw.lines()[0]


def test_idle_cpu_is_taken_off_the_capacity() -> None:
    idle = 0.25
    pts = [_point(n) for n in (20, 50, 100)]
    for p in pts:
        p.cpu_cores = (p.cpu_cores or 0) + idle
    sw = scaling.analyse("x", pts, cores=2.0)
    assert sw.idle_cores == pytest.approx(idle)
    assert sw.saturation_nodes == pytest.approx((-A + math.sqrt(A * A + 4 * B * 1.75)) / (2 * B))
    assert sw.total_cpu(sw.saturation_nodes or 0) == pytest.approx(2.0)


def test_a_run_whose_agents_did_not_sync_unrefused_is_kept_out_of_the_fit():
    from loadtest.gate.scaling import invalid_reason

    def summary(synced: int, throttled: int = 0) -> dict:
        return {
            "measurements": {
                "client": {
                    "requests": 100,
                    "agents": {"agents_synced": synced, "agents_to_sync": 50},
                },
                "apiserver": {"requests": {"throttled_429": throttled, "errors_5xx": 0}},
            }
        }

    assert invalid_reason(summary(50)) == ""
    assert invalid_reason(summary(10)) == (
        "only 10 of 50 (20%) agents synced, and the API server refused nothing"
    )
    # the server turned them away: that is the measurement, and the point stays in the fit
    assert invalid_reason(summary(10, throttled=300)) == ""
    down = summary(10)
    down["measurements"]["apiserver"]["harness_access"] = {"scrapes": 20, "failed": 15}
    assert invalid_reason(down).startswith("the API server stopped answering (15 of 20")
    assert "no request" in invalid_reason({"measurements": {"client": {"requests": 0}}})


def test_a_point_below_idle_is_not_fitted_and_says_why() -> None:
    pts = [_point(20), _point(50), _point(100)]
    pts[0].cpu_per_agent = None
    pts[0].cpu_not_measurable = "API server CPU above idle not measurable: 0.1 < 0.2 idle"
    sw = scaling.analyse("x", pts, cores=2)
    assert sw.cpu_fit and sw.cpu_fit.intercept == pytest.approx(A)  # from 50 and 100 alone
    assert "20 nodes: API server CPU above idle not measurable: 0.1 < 0.2 idle" in sw.notes
