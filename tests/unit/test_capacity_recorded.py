"""The capacity model on recorded runs: a telemetry-v2 search on the local provider
(2 cores, load average 17-20 from other work; 60 s runs, 3 pods per node): 50 and 71 nodes
passed, 84 failed DNS p99, 100 failed the mutating and break-glass SLOs."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from loadtest.gate import capacity, forecast

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "breakpoint"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("recorded")
    out = {}
    for d in FIX.glob("telemetry-v2-*"):
        dst = root / d.name
        shutil.copytree(d, dst)
        gz = dst / "raw" / "apiserver.jsonl.gz"
        with gzip.open(gz, "rt") as f:
            (dst / "raw" / "apiserver.jsonl").write_text(f.read())
        gz.unlink()
        out[int(d.name.rsplit("-", 1)[1])] = dst
    return out


def test_work_grows_with_the_cluster_and_cpu_with_it(runs: dict[int, Path]) -> None:
    s = {n: capacity.sample_from_run(d) for n, d in runs.items()}
    assert s[50].work["list_bytes"] < s[71].work["list_bytes"] < s[100].work["list_bytes"]
    assert s[50].cpu_busy < s[71].cpu_busy < s[100].cpu_busy  # type: ignore[operator]
    assert all(len(x.intervals) >= 8 for x in s.values())  # 5 s scrapes, 60 s runs
    assert s[100].p99["mutating"] > 1.0 > s[50].p99["mutating"]  # what failed at 100


def test_forecast_from_the_passing_sizes_lands_between_pass_and_failure(
    runs: dict[int, Path],
) -> None:
    fc = forecast.forecast_from_runs([runs[50], runs[71]], cores=1.6)
    assert fc["slo"] in ("mutating", "break-glass")  # the SLOs that failed at 100 nodes
    assert 71 < fc["nodes"] < 100 * 1.25
    assert all(
        u is None or u >= 0
        for u in capacity.fit_model(
            [capacity.sample_from_run(runs[50]), capacity.sample_from_run(runs[71])], 1.6
        ).unit.per_unit.values()
    )
    assert any("cores for the API server (given)" in a for a in fc["assumptions"])


def test_one_size_cannot_see_growth(runs: dict[int, Path]) -> None:
    """Why the search waits for two passing sizes: from 50 nodes alone every law is flat."""
    one = forecast.forecast_from_runs([runs[50]], cores=1.6)["nodes"]
    two = forecast.forecast_from_runs([runs[50], runs[71]], cores=1.6)["nodes"]
    assert one > 3 * two


def test_recorded_search_brackets_the_break() -> None:
    data = json.loads((FIX / "breakpoint.json").read_text())
    assert data["bracket"] == [71, 84]
    assert [s["verdict"] for s in data["steps"]] == ["pass", "fail", "pass", "fail"]
