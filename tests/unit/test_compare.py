"""Comparison statistics and budget rules, on recorded results and on known numbers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from loadtest.errors import ConfigError
from loadtest.gate import compare

RUNS = Path(__file__).resolve().parent.parent / "fixtures" / "runs"
V1, V2 = RUNS / "telemetry-v1", RUNS / "telemetry-v2"


@pytest.mark.parametrize(
    ("text", "kind", "limit"),
    [
        ("apiserver_cpu:+10%", "relative", 0.10),
        ("p99_list:20%", "relative", 0.20),  # pytest-benchmark's form: an increase
        ("p99_list:+0.5", "absolute", 0.5),
        ("dns_p99_ms:<=100", "ceiling", 100.0),
        (" bytes_per_agent_s : +2.5% ", "relative", 0.025),
    ],
)
def test_parse_budget(text: str, kind: str, limit: float) -> None:
    b = compare.parse_budget(text)
    assert (b.kind, b.limit) == (kind, pytest.approx(limit))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("apiserver_cpu", "expected METRIC:+N%"),
        ("apiserver_cpu:-10%", "expected METRIC:+N%"),
        ("apiserver_cpu:+ten%", "expected METRIC:+N%"),
        ("cpu:+10%", "unknown metric 'cpu' (known: requests_per_agent_s"),
        ("dns_p99_ms:<=10%", "a ceiling is absolute"),
    ],
)
def test_bad_budget_is_one_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        compare.parse_budget(text)
    assert says in str(e.value)
    assert "\n" not in str(e.value)


def test_parse_budgets_reports_every_bad_rule() -> None:
    with pytest.raises(ConfigError) as e:
        compare.parse_budgets(["x:+1%", "apiserver_cpu:+10%", "p99_list"])
    assert len(str(e.value).splitlines()) == 2


def test_t_interval_known_answer() -> None:
    iv = compare.Interval.of([1.0, 2.0, 3.0])
    half = 4.303 / math.sqrt(3)  # t(0.975, df=2) * stdev 1 / sqrt(n)
    assert (iv.mean, iv.low, iv.high) == (2.0, pytest.approx(2 - half), pytest.approx(2 + half))
    assert compare.Interval.of([5.0]).low is None
    assert compare.t975(100) == 1.96


def _vals(**kw: float) -> compare.Values:
    v: compare.Values = dict.fromkeys(compare.METRICS)
    v.update(kw)
    return v


def test_paired_differences_cancel_drift() -> None:
    # Drift moves both sides by the same amount each round; the pairing keeps it out.
    base = [_vals(apiserver_cpu=x) for x in (1.0, 2.0, 3.0)]
    cand = [_vals(apiserver_cpu=x * 1 + 0.5) for x in (1.0, 2.0, 3.0)]
    c = compare.compare_values(base, cand)["apiserver_cpu"]
    assert c.diff.mean == pytest.approx(0.5)
    assert c.diff.low == pytest.approx(0.5) and c.diff.high == pytest.approx(0.5)
    assert c.relative == pytest.approx(0.25)
    assert "p99_list" not in compare.compare_values(base, cand)  # measured on neither side


def _mc(base: list[float], cand: list[float]) -> compare.MetricComparison:
    return compare.compare_values(
        [_vals(p99_list=x) for x in base], [_vals(p99_list=y) for y in cand]
    )["p99_list"]


def test_budget_verdicts_and_reasons() -> None:
    rel = compare.parse_budget("p99_list:+20%")
    clear = compare.check_budget(rel, _mc([1.0, 1.1, 0.9], [2.0, 2.1, 1.9]))
    assert clear.status == "fail" and "over budget in all of the 95% interval" in clear.reason
    noisy = compare.check_budget(rel, _mc([1.0, 1.0, 1.0], [1.0, 2.5, 1.0]))
    assert noisy.status == "fail" and "likely, not certain" in noisy.reason
    ok = compare.check_budget(rel, _mc([1.0, 1.0], [1.1, 1.1]))
    assert ok.status == "pass" and "+10.0%" in ok.reason
    one = compare.check_budget(compare.parse_budget("p99_list:+0.1"), _mc([1.0], [1.5]))
    assert one.status == "fail" and "one round" in one.reason
    ceiling = compare.check_budget(compare.parse_budget("p99_list:<=2"), _mc([9.0], [1.5]))
    assert ceiling.status == "pass"
    missing = compare.check_budget(rel, None)
    assert missing.status == "error"


def test_run_costs_of_a_recorded_run() -> None:
    v, notes = compare.run_costs(V2)
    # 122 agent requests from 50 agents over Locust's load window
    window = compare.load_window(V2)
    assert window is not None
    assert v["requests_per_agent_s"] == pytest.approx(122 / 50 / (window[1] - window[0]))
    assert v["p99_list"] == pytest.approx(28.77, rel=1e-3)
    assert v["bytes_per_agent_s"] and v["bytes_per_agent_s"] > 1000
    assert 0 < (v["apiserver_cpu"] or 0) < 2
    assert v["apf_seats_per_agent"] is None and any("raw/apiserver.jsonl" in n for n in notes)


def test_compare_recorded_runs_fails_the_incident_candidate() -> None:
    budgets = compare.parse_budgets(compare.DEFAULT_BUDGETS)
    c = compare.compare_runs([V1], [V2], budgets)
    assert c.verdict == "fail"
    assert {b.budget: b.status for b in c.budgets} == {
        "apiserver_cpu:+10%": "fail",
        "p99_list:+20%": "fail",
    }
    assert c.warnings == []  # same machine, tools, cluster and inventory
    assert c.to_json()["verdict"] == "fail"
    assert c.lines()[0].startswith("verdict: FAIL (telemetry-v2 vs telemetry-v1, 1 round")


def test_environment_difference_is_a_warning(tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(V2, other)
    s = json.loads((other / "summary.json").read_text())
    s["environment"]["cpus"] = 8
    s["config"]["inventory"]["nodes"] = 5000
    (other / "summary.json").write_text(json.dumps(s))
    c = compare.compare_runs([V1], [other], [])
    assert any(w.startswith("environments differ in cpus: 2, 8") for w in c.warnings)
    assert any("environments differ in inventory" in w for w in c.warnings)


def test_rounds_must_pair(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rounds differ"):
        compare.compare_runs([V1, V1], [V2], [])
    assert compare.run_dirs(RUNS) == [V1, V2]
    with pytest.raises(ConfigError, match="no summary.json"):
        compare.run_dirs(tmp_path)


def test_interleave_alternates_who_goes_first(tmp_path: Path, monkeypatch) -> None:
    """ABBA: drift within a round favours each side as often (A,B,A,B would always favour
    the second)."""
    order: list[str] = []
    # One load reading per run, in order: the worst of them is the one reported.
    loads = iter(
        [(0.5, 0.4, 0.3), (3.25, 1, 1), (1.0, 1, 1), (0.2, 1, 1), (2.0, 1, 1), (0.1, 1, 1)]
    )
    monkeypatch.setattr(compare.os, "getloadavg", lambda: next(loads))

    def fake_run(profile: str, out_root: Path) -> Path:
        order.append(profile)
        return out_root / f"{len(order)}-{profile}"

    a, b, machine = compare.interleave("A", "B", 3, tmp_path, fake_run, lambda _: None)
    assert order == ["A", "B", "B", "A", "A", "B"]
    assert [p.name for p in a] == ["1-A", "4-A", "5-A"]  # paired by round, whatever the order
    assert [p.name for p in b] == ["2-B", "3-B", "6-B"]
    assert [(x["round"], x["profile"], x["loadavg_1m"]) for x in machine["samples"]] == [
        (1, "A", 0.5),
        (1, "B", 3.25),
        (2, "B", 1.0),
        (2, "A", 0.2),
        (3, "A", 2.0),
        (3, "B", 0.1),
    ]
    assert machine["loadavg_1m_max"] == 3.25
    assert machine["schedule"].startswith("ABBA") and "(AB BA AB;" in machine["schedule"]


def test_comparison_says_its_order(tmp_path: Path) -> None:
    c = compare.compare_runs([V1], [V2], [], schedule=compare.schedule_text(2))
    assert any(line.startswith("  order: ABBA") for line in c.lines())
    assert c.to_json()["schedule"].startswith("ABBA")
    given = compare.compare_runs([V1], [V2], [])
    assert "order of the runs not known" in given.schedule


def test_relative_change_is_worse_when_positive_even_below_zero() -> None:
    """Cores above idle can be negative; the change is taken against its magnitude, and the
    interval stays ordered (low <= relative <= high)."""
    mc = compare.compare_values(
        [_vals(apiserver_cpu_per_agent=x) for x in (-0.02, -0.01)],
        [_vals(apiserver_cpu_per_agent=x) for x in (0.01, 0.03)],
    )["apiserver_cpu_per_agent"]
    assert mc.relative is not None and mc.relative > 0  # the candidate costs more
    lo, hi = mc.relative_bounds()
    assert lo is not None and hi is not None and lo <= mc.relative <= hi


def test_cost_below_idle_is_not_measurable(tmp_path: Path) -> None:
    assert compare.above_idle(0.5, {"cpu_cores": 0.1}, 10) == (pytest.approx(0.04), "")
    value, why = compare.above_idle(0.2, {"cpu_cores": 0.3}, 10)
    assert value is None and why == (
        "API server CPU above idle not measurable: 0.200 cores under load < 0.300 idle"
    )
    assert compare.above_idle(0.2, None, 10)[1].endswith("the run has no idle window")
    # a recorded run whose idle window was busier than its load: no number, and why
    run = tmp_path / "run"
    shutil.copytree(V2, run)
    s = json.loads((run / "summary.json").read_text())
    s["measurements"]["apiserver"]["idle"] = {"cpu_cores": 5.0, "settled": True}
    (run / "summary.json").write_text(json.dumps(s))
    v, notes = compare.run_costs(run)
    assert v["apiserver_cpu"] and v["apiserver_cpu_per_agent"] is None
    assert any("above idle not measurable" in n for n in notes)
    # ... and a comparison leaves the metric out instead of comparing nonsense
    base = tmp_path / "base"
    shutil.copytree(V2, base)
    s["measurements"]["apiserver"]["idle"] = {"cpu_cores": 0.0, "settled": True}
    (base / "summary.json").write_text(json.dumps(s))
    assert compare.run_costs(base)[0]["apiserver_cpu_per_agent"]
    assert "apiserver_cpu_per_agent" not in compare.compare_runs([base], [run], []).metrics


def test_runs_benchmarks_and_compare_share_one_environment() -> None:
    from benchmarks import common
    from loadtest import results

    env = results.environment()
    assert common.environment is results.environment
    assert {*results.COMPARABLE, "commit", "dirty", "load_average", "tools"} <= env.keys()
    assert len(env["load_average"]) == 3 and isinstance(env["dirty"], bool)
    flat = compare.fingerprint({"environment": env})
    assert {k: flat[k] for k in results.COMPARABLE} == {k: env[k] for k in results.COMPARABLE}
