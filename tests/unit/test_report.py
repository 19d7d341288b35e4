"""Reports render as one offline file and contain their plots."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from loadtest import compare, report, scaling
from loadtest.cli import build_parser, main

RUNS = Path(__file__).resolve().parent.parent / "fixtures" / "runs"
IMG = re.compile(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"')


def _copy(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    shutil.copytree(RUNS / name, d)
    return d


def test_run_report_has_its_plots_and_names_the_cause(tmp_path: Path) -> None:
    d = _copy(tmp_path, "telemetry-v2")
    text = report.write_run_report(d).read_text()
    assert len(IMG.findall(text)) == 4  # latency vs agents, 429/APF, CPU, DNS
    assert "http" not in text.replace("http-equiv", "")  # nothing fetched when opened
    cause = json.loads((d / "report.json").read_text())["cause"]
    assert any(c.startswith("SLO api-latency-mutating") for c in cause)
    assert any(c.startswith("requests LIST pods [cluster]: ") for c in cause)
    assert any("telemetry-agent/2.0.0" in c and "shared-serviceaccount" in c for c in cause)
    assert any(c.startswith("APF priority level workload-low") for c in cause)


def test_comparison_report(tmp_path: Path) -> None:
    c = compare.compare_runs([RUNS / "telemetry-v1"], [RUNS / "telemetry-v2"],
                             compare.parse_budgets(compare.DEFAULT_BUDGETS))
    text = report.write_comparison_report(c, tmp_path).read_text()
    assert len(IMG.findall(text)) == 2
    assert "FAIL" in text and "apiserver_cpu:+10%" in text


def test_sweep_report(tmp_path: Path) -> None:
    pts = [scaling.Point(n, n, 0.01 * n + 1e-4 * n * n, 0.01 + 1e-4 * n, 100.0 * n,
                         0.1 + 1e-3 * n * n, "pass" if n < 100 else "fail") for n in (10, 50, 100)]
    sw = scaling.analyse("telemetry-v2", pts, cores=2)
    text = report.write_sweep_report(sw, tmp_path).read_text()
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
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"compare", "compare-results", "report", "sweep", "incident"} <= set(sub)
