"""Reports render as one offline file and contain their plots."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from loadtest.cli import gate as cli_gate
from loadtest.cli.main import build_parser, main
from loadtest.gate import compare, scaling
from loadtest.report.comparison import interval_errors, write_comparison_report
from loadtest.report.run import write_run_report
from loadtest.report.sweep import write_sweep_report

RUNS = Path(__file__).resolve().parent.parent / "fixtures" / "runs"
IMG = re.compile(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"')


def _copy(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    shutil.copytree(RUNS / name, d)
    return d


def test_run_report_has_its_plots_and_names_the_cause(tmp_path: Path) -> None:
    d = _copy(tmp_path, "telemetry-v2")
    text = write_run_report(d).read_text()
    assert len(IMG.findall(text)) == 4  # latency vs agents, 429/APF, CPU, DNS
    assert "http" not in text.replace("http-equiv", "")  # nothing fetched when opened
    cause = json.loads((d / "report.json").read_text())["cause"]
    assert any(c.startswith("SLO api-latency-mutating") for c in cause)
    assert any(c.startswith("requests LIST pods [cluster]: ") for c in cause)
    assert any("telemetry-agent/2.0.0" in c and "shared-serviceaccount" in c for c in cause)
    assert any(c.startswith("APF priority level workload-low") for c in cause)


def test_comparison_report(tmp_path: Path) -> None:
    c = compare.compare_runs(
        [RUNS / "telemetry-v1"],
        [RUNS / "telemetry-v2"],
        compare.parse_budgets(compare.DEFAULT_BUDGETS),
    )
    text = write_comparison_report(c, tmp_path).read_text()
    assert len(IMG.findall(text)) == 2
    assert "FAIL" in text and "apiserver_cpu:+10%" in text


def test_sweep_report(tmp_path: Path) -> None:
    pts = [
        scaling.Point(
            n,
            n,
            0.01 * n + 1e-4 * n * n,
            0.01 + 1e-4 * n,
            100.0 * n,
            0.1 + 1e-3 * n * n,
            "pass" if n < 100 else "fail",
        )
        for n in (10, 50, 100)
    ]
    sw = scaling.analyse("telemetry-v2", pts, cores=2)
    text = write_sweep_report(sw, tmp_path).read_text()
    assert len(IMG.findall(text)) == 1
    assert "How cost grew with node count" in text and "x10.0 for x10.0 nodes" in text


def test_cli_compare_results_and_report(tmp_path: Path, capsys) -> None:
    v1, v2 = _copy(tmp_path, "telemetry-v1"), _copy(tmp_path, "telemetry-v2")
    out = tmp_path / "cmp"
    assert main(["compare-results", str(v1), str(v2), "--out", str(out)]) == 1
    assert capsys.readouterr().out.startswith("verdict: FAIL")
    assert json.loads((out / "comparison.json").read_text())["verdict"] == "fail"
    assert main(["report", str(out)]) == 0  # rebuilt from comparison.json
    assert main(["report", str(v2)]) == 0 and (v2 / "report.html").exists()
    assert main(["compare-results", str(v1), str(v2), "--budget", "cpu:+1%"]) == 1
    assert "unknown metric 'cpu'" in capsys.readouterr().err


def test_gate_commands_are_registered() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"compare", "compare-results", "report", "sweep", "incident"} <= set(sub.choices)


def _comparison(rounds: int, **series: tuple[list[float], list[float]]) -> compare.Comparison:
    def vals(i: int, side: int) -> compare.Values:
        v: compare.Values = dict.fromkeys(compare.METRICS)
        v.update({k: s[side][i] for k, s in series.items()})
        return v

    metrics = compare.compare_values(
        [vals(i, 0) for i in range(rounds)], [vals(i, 1) for i in range(rounds)]
    )
    return compare.Comparison(
        "a", "b", rounds, compare.INTERVAL, metrics, [], [], {"baseline": [], "candidate": []}
    )


def test_comparison_report_draws_any_interval(tmp_path: Path) -> None:
    """Around a negative mean (cores above idle), across zero, and one round: all draw."""
    c = _comparison(
        2,
        apiserver_cpu_per_agent=([-0.02, -0.01], [0.01, 0.03]),
        p99_list=([1.0, 1.0], [0.5, 1.8]),
        apiserver_cpu=([1.0, 1.2], [0.9, 1.0]),
    )
    text = write_comparison_report(c, tmp_path).read_text()
    assert len(IMG.findall(text)) == 2
    one = _comparison(1, apiserver_cpu_per_agent=([-0.02], [0.01]), p99_list=([1.0], [2.0]))
    assert len(IMG.findall(write_comparison_report(one, tmp_path).read_text())) == 2


def test_interval_errors_are_never_negative() -> None:
    lo, hi = interval_errors(
        [-50.0, 10.0, 5.0, 0.0], [(-0.2, -0.8), (-0.5, 0.7), (None, None), (float("nan"), 1.0)]
    )
    assert lo == [pytest.approx(30.0), 60.0, 0.0, 0.0]
    assert hi == [pytest.approx(30.0), 60.0, 0.0, 0.0]
    assert min(lo + hi) >= 0


def test_a_report_that_cannot_be_drawn_does_not_hide_the_verdict(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> Path:
        raise ValueError("'xerr' must not contain\nnegative values")

    monkeypatch.setattr(cli_gate, "write_comparison_report", broken)
    out = tmp_path / "cmp"
    rc = main(
        [
            "compare-results",
            str(RUNS / "telemetry-v1"),
            str(RUNS / "telemetry-v2"),
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1 and captured.out.startswith("verdict: FAIL")
    assert json.loads((out / "comparison.json").read_text())["verdict"] == "fail"
    warnings = [x for x in captured.err.splitlines() if "report not drawn" in x]
    assert warnings == [
        "loadtest: warning: report not drawn: ValueError: 'xerr' must not contain negative values"
    ]
    # `report` itself: the same failure is its answer, one line and exit 1
    monkeypatch.setattr(cli_gate, "write_run_report", broken)
    assert main(["report", str(_copy(tmp_path, "telemetry-v2"))]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: report not drawn: ValueError: 'xerr' must not contain negative values"
    ]


def test_run_report_draws_the_slo_lines_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.axes import Axes

    from loadtest.verdict.slo import DnsSLO, SLOSpec

    lines: list[tuple[float, str]] = []
    real = Axes.axhline

    def spy(self: Axes, y: float = 0, *args: object, **kw: object) -> object:
        lines.append((y, str(kw.get("label", ""))))
        return real(self, y, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Axes, "axhline", spy)
    d = _copy(tmp_path, "telemetry-v2")
    s = json.loads((d / "summary.json").read_text())
    s["slos"] = SLOSpec(dns=DnsSLO(p99_ms=250)).model_dump()
    (d / "summary.json").write_text(json.dumps(s))
    write_run_report(d)
    assert (250.0, "SLO p99 250 ms") in lines
    assert not any(y == 100 for y, _ in lines)
