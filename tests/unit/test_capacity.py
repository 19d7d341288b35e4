"""The capacity model's pure parts: unit costs, queueing, the first SLO to break, targets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from loadtest import config
from loadtest.errors import ConfigError
from loadtest.gate import capacity
from loadtest.gate.target import TargetSpec, load_target, translate

U_BYTE, U_EVENT, IDLE = 2e-8, 4e-5, 0.1  # CPU-s per byte, per event; idle cores


def _run(n: int, cores: float = 1.6) -> capacity.RunSample:
    """A run of n agents on n nodes, each listing n*3 pods of ~5 KB every 60 s and seeing
    2 watch events a second: work and CPU consistent with the unit costs above."""
    lb = n * (1000 + n * 3 * 5000 / 60)  # LIST bytes per second, whole server
    ev = n * 2.0
    rng = np.random.default_rng(n)
    intervals = [
        (IDLE, {"list_bytes": 0.0, "watch_events": 0.0, "watches": 0.0, "requests": 1.0})
    ] * 3
    for _ in range(6):
        f = {
            "list_bytes": lb * rng.uniform(0.6, 1.4),
            "watch_events": ev * rng.uniform(0.8, 1.2),
            "watches": float(n),
            "requests": n / 20,
        }
        intervals.append((IDLE + U_BYTE * f["list_bytes"] + U_EVENT * f["watch_events"], f))
    cpu = IDLE + U_BYTE * lb + U_EVENT * ev
    rho = cpu / cores
    return capacity.RunSample(
        nodes=n,
        agents=n,
        pods_per_node=3,
        pod_bytes=5000,
        node_bytes=12000,
        load_s=90,
        cpu_busy=cpu,
        work={"list_bytes": lb, "watch_events": ev, "watches": float(n), "requests": n / 20},
        background={"list_bytes": 0.0, "watch_events": 0.0, "watches": 0.0, "requests": 1.0},
        intervals=intervals,
        p99={"mutating": 0.02 / (1 - rho), "read-cluster": (0.2 + 0.004 * n) / (1 - rho)},
        list_bytes_by_resource={"pods": lb * 0.8, "nodes": lb * 0.2},
        rss_bytes=3e8 + 1e6 * n,
        seats_per_agent=0.01,
        level_seats=100,
        verdict="pass",
    )


def test_nnls_recovers_known_costs_and_never_goes_negative() -> None:
    rng = np.random.default_rng(1)
    x = np.column_stack([np.ones(40), rng.uniform(0, 1, 40), rng.uniform(0, 1, 40)])
    y = x @ np.array([0.1, 0.5, 0.0]) - 0.05 * x[:, 2] + rng.normal(0, 1e-3, 40)
    coef = capacity.nnls(x, y)
    assert coef[1] == pytest.approx(0.5, abs=0.01) and coef[2] >= 0


def test_unit_costs_from_scrape_windows() -> None:
    u = capacity.fit_unit_costs([_run(50), _run(100)], cores=1.6)
    assert u.idle_cores == pytest.approx(IDLE, rel=0.05)
    assert u.per_unit["list_bytes"] == pytest.approx(U_BYTE, rel=0.1)
    assert u.per_unit["watch_events"] == pytest.approx(U_EVENT, rel=0.2)


def test_saturated_windows_are_left_out_of_the_fit() -> None:
    r = _run(100)
    r.intervals.append(
        (1.6, {"list_bytes": 1e9, "watch_events": 0.0, "watches": 100.0, "requests": 5.0})
    )  # pinned: what it costs is not measured
    u = capacity.fit_unit_costs([_run(50), r], cores=1.6)
    assert u.per_unit["list_bytes"] == pytest.approx(U_BYTE, rel=0.1)


def test_forecast_from_small_runs_finds_the_knee_where_the_truth_is() -> None:
    """Fit on 50 and 100 nodes; the runs' own law puts rho = 1 where the forecast does, and
    the mutating SLO (1 s) breaks just before it: 0.02/(1-rho) > 1 at rho > 0.98."""
    m = capacity.fit_model([_run(50), _run(100)], cores=1.6)
    fc = m.forecast(capacity.Capacity(cores=1.6))
    truth = next(
        n for n in range(100, 5000) if IDLE + U_BYTE * n * (1000 + n * 250) + U_EVENT * 2 * n >= 1.6
    )
    assert fc.saturation_nodes is not None
    assert fc.saturation_nodes == pytest.approx(truth, rel=0.05)
    assert fc.slo in ("mutating", "break-glass", "read-cluster", "throttled")
    assert fc.nodes is not None and fc.nodes <= fc.saturation_nodes * 1.02
    assert fc.nodes == pytest.approx(truth, rel=0.1)
    # latency is queueing near the knee: far above the polynomial a fit would give
    near = [r for r in fc.curve if 0.9 < (r["rho"] or 0) < 0.99]
    assert near and all((r["p99_mutating"] or 0) > 0.02 / 0.1 * 0.99 for r in near)


def test_more_cores_carry_the_knee_out_as_the_law_says() -> None:
    m = capacity.fit_model([_run(50), _run(100)], cores=1.6)
    one = m.forecast(capacity.Capacity(cores=1.0)).saturation_nodes
    two = m.forecast(capacity.Capacity(cores=2.0)).saturation_nodes
    assert one and two and two > one
    # total demand ~ N^2 above idle: the knee moves as sqrt of the cores above idle
    assert two / one == pytest.approx(math.sqrt((2.0 - IDLE) / (1.0 - IDLE)), rel=0.08)


def test_a_quota_on_a_shared_machine_gets_what_the_rest_leaves() -> None:
    """The rest of the machine (etcd, KWOK, the harness) takes 0.2 + 0.004 cores a node: a
    1.4-core quota on 2 cores is the quota up to 100 nodes, then what the rest leaves. The
    knee then comes where demand meets 2 - others(N), before the quota alone would put it."""
    runs = [_run(50), _run(100)]
    for r in runs:
        r.others_cores = 0.2 + 0.004 * r.nodes
    m = capacity.fit_model(runs, cores=1.4, machine_cores=2.0)
    assert m.others is not None and m.others(300) == pytest.approx(1.4, rel=0.01)
    shared = capacity.Capacity(cores=1.4, machine_cores=2.0)
    assert m.available(50, shared) == pytest.approx(1.4)
    assert m.available(300, shared) == pytest.approx(0.6, rel=0.02)
    alone = m.forecast(capacity.Capacity(cores=1.4)).saturation_nodes
    beside = m.forecast(shared).saturation_nodes
    assert alone and beside and beside < alone
    truth = next(
        n
        for n in range(100, 5000)
        if IDLE + U_BYTE * n * (1000 + n * 250) + U_EVENT * 2 * n >= min(1.4, 1.8 - 0.004 * n)
    )
    assert beside == pytest.approx(truth, rel=0.05)
    # runs without the machine measured: the quota alone, as before
    assert capacity.fit_model([_run(50), _run(100)], 1.4, 2.0).available(300, shared) == 1.4


def test_the_clusters_own_work_grows_with_the_inventory() -> None:
    """Node Leases are renewed every 10 s: the background requests grow with N, and the
    forecast carries that growth instead of holding the fit's mean flat."""
    runs = [_run(50), _run(100)]
    for r in runs:
        r.background = {**r.background, "requests": r.nodes / 10}
    m = capacity.fit_model(runs, cores=1.6)
    assert m.work["requests"].background(1000) == pytest.approx(100, rel=0.01)
    _, work = m.demand(1000, capacity.Scaling(), capacity.Capacity(cores=1.6))
    assert work["requests"] >= 100


def test_an_idle_servers_latency_never_falls_with_n() -> None:
    """Two small runs whose p99s fall with N (noise) give a flat law at the lower, not one
    that reaches 0 a little further on and lets no latency SLO break before saturation."""
    small, big = _run(50), _run(100)
    small.p99 = {**small.p99, "mutating": 0.6}
    big.p99 = {**big.p99, "mutating": 0.3}
    m = capacity.fit_model([small, big], cores=1.6)
    law = m.base_latency["mutating"]
    assert law.slope == 0 and law(1000) == pytest.approx(law(50)) and 0.1 < law(50) < 0.3


def test_replicas_share_the_load_and_memory_can_break_first() -> None:
    m = capacity.fit_model([_run(50), _run(100)], cores=1.6)
    one = m.forecast(capacity.Capacity(cores=1.6)).nodes
    three = m.forecast(capacity.Capacity(cores=1.6, replicas=3)).nodes
    assert one and three and three > 1.5 * one
    tight = m.forecast(capacity.Capacity(cores=1.6, memory_bytes=3.5e8))
    assert tight.slo == "memory" and tight.nodes and tight.nodes < one


def test_a_cost_not_measurable_is_not_fitted() -> None:
    runs = [_run(50), _run(100)]
    for r in runs:
        for i, (c, f) in enumerate(r.intervals):
            r.intervals[i] = (c, {**f, "watches": 7.0})  # never varied
    assert capacity.fit_unit_costs(runs, 1.6).per_unit["watches"] is None


def test_target_validated_with_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text(
        "version: 1\napiserver: {replicas: 0, cores: 8, memory: lots}\n"
        "etcd: {separate: maybe}\nkubernetes: {version: latest}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_target(bad)
    msg = str(e.value)
    for field in ("apiserver.replicas", "apiserver.memory", "etcd.separate", "kubernetes.version"):
        assert field in msg


def test_target_translation_names_each_assumption() -> None:
    t = config.parse(
        TargetSpec,
        {
            "apiserver": {"replicas": 3, "cores": 8, "memory": "32Gi"},
            "etcd": {"separate": False},
            "kubernetes": {"version": "v1.30.4"},
            "inventory": {"nodes": 5000, "pods_per_node": 30, "pod_bytes": 10000},
        },
        "test",
    )
    cap, sc, notes = translate(
        t,
        {"pods_per_node": 3, "pod_bytes": 5000, "node_bytes": 12000, "consistent_cache": True},
        pods_share=0.8,
    )
    assert cap.replicas == 3 and cap.cores < 8 and cap.memory_bytes == 32 * 2**30
    assert sc.list_bytes == pytest.approx(0.8 * 10 * 2 + 0.2) and sc.list_cost > 1
    text = " ".join(notes)
    for word in (
        "etcd shares",
        "load balancer",
        "32Gi",
        "ConsistentListFromCache",
        "per-core speed",
        "pods per node",
    ):
        assert word in text
