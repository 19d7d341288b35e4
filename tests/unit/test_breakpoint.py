"""The break-point search's logic, against a fake cluster whose SLOs break at a known size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.config import InventorySpec
from loadtest.gate import breakpoint as bp


def _fake(true_break: int, calls: list[int]) -> bp.Runner:
    def run(n: int, agents: int, phase: str) -> bp.Step:
        calls.append(n)
        ok = n < true_break
        return bp.Step(
            n,
            agents,
            phase,
            "pass" if ok else "fail",
            [] if ok else ["api-latency-mutating"],
            None if ok else "api-latency-mutating",
        )

    return run


def _search(
    tmp: Path, true_break: int, forecast: float | None, **bounds: object
) -> tuple[bp.Search, list[int]]:
    calls: list[int] = []
    s = bp.Search("telemetry-v2", 1.0, bp.Bounds(**bounds))  # type: ignore[arg-type]
    bp.search(s, _fake(true_break, calls), lambda _steps: {"nodes": forecast}, tmp, lambda _m: None)
    return s, calls


@pytest.mark.parametrize("forecast", [500.0, 300.0, 900.0, None])
def test_bracket_within_ten_percent_whatever_the_forecast(
    tmp_path: Path, forecast: float | None
) -> None:
    s, calls = _search(tmp_path, 520, forecast, min_nodes=20, max_nodes=5000, max_steps=20)
    lo, hi = bp.bracket(s.steps)
    assert lo is not None and hi is not None and lo < 520 <= hi
    assert hi <= lo * s.bounds.done_ratio()
    assert calls[:2] == [20, 40]  # the fit sizes come first
    data = json.loads((tmp_path / "breakpoint.json").read_text())
    assert data["bracket"] == [lo, hi] and data["stopped"] == "bracket found"
    assert data["steps"][-1]["failed_slos"] or any(st["failed_slos"] for st in data["steps"])


def test_a_good_forecast_saves_steps(tmp_path: Path) -> None:
    _, good = _search(tmp_path, 520, 520.0, min_nodes=20, max_nodes=5000, max_steps=20)
    _, none = _search(tmp_path, 520, None, min_nodes=20, max_nodes=5000, max_steps=20)
    assert len(good) < len(none)


def test_ladder_only_grows_until_the_first_failure(tmp_path: Path) -> None:
    s, calls = _search(tmp_path, 520, 500.0, min_nodes=20, max_nodes=5000, max_steps=20)
    first_fail = next(i for i, st in enumerate(s.steps) if st.verdict == "fail")
    assert calls[: first_fail + 1] == sorted(calls[: first_fail + 1])


def test_bounded_in_steps(tmp_path: Path) -> None:
    s, calls = _search(tmp_path, 10**6, 500.0, min_nodes=20, max_nodes=10**7, max_steps=4)
    assert len(calls) == 4 and "step bound" in s.stopped
    assert json.loads((tmp_path / "breakpoint.json").read_text())["bracket"] == [max(calls), None]


def test_no_failure_below_max_nodes_leaves_the_top_null(tmp_path: Path) -> None:
    s, calls = _search(tmp_path, 10**6, 100.0, min_nodes=20, max_nodes=150, max_steps=20)
    assert max(calls) == 150 and bp.bracket(s.steps) == (150, None)
    assert s.stopped == "nothing left within the bounds"


def test_failing_at_the_floor_leaves_the_bottom_null(tmp_path: Path) -> None:
    s, calls = _search(tmp_path, 5, 100.0, min_nodes=20, max_nodes=150, max_steps=20)
    assert bp.bracket(s.steps) == (None, 20)


def test_bounded_in_time(tmp_path: Path) -> None:
    calls: list[int] = []
    s = bp.Search("p", 1.0, bp.Bounds(min_nodes=20, max_nodes=5000, max_seconds=0.0))
    bp.search(s, _fake(520, calls), lambda _s: None, tmp_path, lambda _m: None)
    assert calls == [20] and "time bound" in s.stopped  # the first step is always taken


def test_forecast_error_against_the_bracket_middle() -> None:
    assert bp.forecast_error({"nodes": 550}, 450, 600) == pytest.approx(550 / 525 - 1)
    assert bp.forecast_error({"nodes": None}, 450, 600) is None
    assert bp.forecast_error({"nodes": 550}, 450, None) is None


def test_surplus_is_what_a_bigger_inventory_has_beyond_a_smaller_one() -> None:
    from loadtest.inventory import seed as inv

    small = InventorySpec(nodes=3, pods_per_node=2)
    extra = bp.surplus(small, 5)
    big = small.model_copy(update={"nodes": 5})
    want = {n for k, _, _, n in inv.plan(big) if k.name in ("pods", "nodes")} - {
        n for k, _, _, n in inv.plan(small) if k.name in ("pods", "nodes")
    }
    assert {name for _, _, name in extra} == want
    assert [p for p, _, _ in extra][-1] == "/api/v1/nodes"  # pods go before their nodes


def test_a_failure_at_the_floor_ends_the_search_there(tmp_path: Path) -> None:
    s, calls = _search(tmp_path, 1, 100.0, min_nodes=20, max_nodes=150)
    assert calls == [20] and s.predicted is not None


def test_report_shows_the_ladder_and_the_forecast_against_the_measurement(tmp_path: Path) -> None:
    from loadtest.report.breakpoint import write_breakpoint_report

    _search(tmp_path, 520, 500.0, min_nodes=20, max_nodes=5000, max_steps=20)
    html = write_breakpoint_report(tmp_path).read_text()
    assert "api-latency-mutating" in html and "forecast off by" in html
    assert "data:image/png;base64" in html


def test_the_forecast_waits_for_two_passing_sizes(tmp_path: Path) -> None:
    """Fit sizes 20 and 40, the break at 30: bisection finds a second passing size (28)
    before the forecast is made from both."""
    seen: list[list[int]] = []
    s = bp.Search("p", 1.0, bp.Bounds(min_nodes=20, max_nodes=5000, max_steps=20))

    def forecaster(st: list[bp.Step]) -> dict[str, int]:
        seen.append([x.nodes for x in st])
        return {"nodes": 31}

    bp.search(s, _fake(30, []), forecaster, tmp_path, lambda _m: None)
    assert seen == [[20, 28]] and s.predicted and s.predicted["made_after_steps"] == 3


def test_a_step_the_harness_could_not_measure_stops_the_search(tmp_path: Path) -> None:
    calls: list[int] = []

    def run(n: int, agents: int, phase: str) -> bp.Step:
        calls.append(n)
        if n == 40:
            return bp.Step(n, agents, phase, "error", ["run-error: timed out waiting for KWOK"])
        return bp.Step(n, agents, phase, "pass")

    s = bp.Search("p", 1.0, bp.Bounds(min_nodes=20, max_nodes=500))
    bp.search(s, run, lambda _s: None, tmp_path, lambda _m: None)
    assert calls == [20, 40] and bp.bracket(s.steps) == (20, None)
    assert "could not be measured: run-error: timed out waiting for KWOK" in s.stopped


def test_step_from_run_tells_an_error_before_load_from_a_failure_under_it(tmp_path: Path) -> None:
    from loadtest.run.record import write_summary

    base = {"config": {"agents": 5, "inventory": {"nodes": 5}}, "failed": "boom"}
    write_summary(tmp_path, {**base, "stages": {"cluster": {}}})
    assert bp.step_from_run(tmp_path, "fit", None).verdict == "error"
    write_summary(tmp_path, {**base, "stages": {"measurements-started": {}}})
    assert bp.step_from_run(tmp_path, "fit", None).verdict == "fail"


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    from loadtest.cli import main as cli

    bad = tmp_path / "target.yaml"
    bad.write_text("version: 1\napiserver: {cores: -1}\n")
    out = tmp_path / "results"
    assert cli.main(["breakpoint", "--target", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "apiserver.cores" in err
    assert (
        cli.main(["breakpoint", "--min-nodes", "50", "--max-nodes", "10", "--out", str(out)]) == 1
    )
    assert "--min-nodes 50 must be >= 1 and below --max-nodes 10" in capsys.readouterr().err
    assert not out.exists()
