"""The sweep and incident commands over recorded runs (the runner is swapped for a fake)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtest.cli import gate as cli_gate
from loadtest.cli import runs as cli_runs
from loadtest.cli.main import main

RUNS = Path(__file__).resolve().parent.parent / "fixtures" / "runs"


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    """Each 'run' is the recorded telemetry-v2 run, resized; it fails from 50 nodes on."""
    sizes: list[int] = []

    def runner(args: object, nodes: int, agents: int) -> Callable[[str, Path], Path]:
        def run(profile: str, out_root: Path) -> Path:
            d = tmp_path / "fake" / f"{nodes:05d}"
            shutil.copytree(RUNS / "telemetry-v2", d)
            s = json.loads((d / "summary.json").read_text())
            s["config"]["inventory"]["nodes"], s["config"]["agents"] = nodes, agents
            s["verdict"] = "fail" if nodes >= 50 else "pass"
            # recorded before runs took an idle window: give it one below its load's CPU
            s["measurements"]["apiserver"]["idle"] = {"cpu_cores": 0.05, "settled": True}
            s["slo"] = [r | {"status": "pass"} for r in s["slo"]] if nodes < 50 else s["slo"]
            (d / "summary.json").write_text(json.dumps(s))
            sizes.append(nodes)
            return d

        return run

    monkeypatch.setattr(cli_gate, "_runner", runner)
    return sizes


def test_incident_reproduced(fake_runs: list[int], tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "incident",
            "--small",
            "10",
            "--large",
            "50",
            "--between",
            "20",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0 and fake_runs == [10, 20, 50]
    out_dir = next((tmp_path / "out").glob("*-incident-telemetry-v2"))
    sweep = json.loads((out_dir / "sweep.json").read_text())
    assert [p["verdict"] for p in sweep["points"]] == ["pass", "pass", "fail"]
    assert len(sweep["checks"]) == 3  # three sizes: the fit of two predicts the third
    html = (out_dir / "report.html").read_text()
    assert "Cause at 50 nodes" in html and "telemetry-agent/2.0.0" in html
    assert (
        "sweep telemetry-v2: 10 nodes pass, 20 nodes pass, 50 nodes fail" in capsys.readouterr().out
    )


def test_incident_not_reproduced_exits_1(fake_runs: list[int], tmp_path: Path) -> None:
    assert main(["incident", "--small", "60", "--large", "80", "--out", str(tmp_path)]) == 1


def test_sweep_sizes_are_validated(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--sizes", "50"])
    assert "at least two positive sizes" in capsys.readouterr().err


def test_grown_inventory_check_leaves_an_unreachable_cluster_to_the_run(
    fake_runs: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster whose API server is gone is not refused (nor a traceback) by the pre-check:
    the run's own check names it in one line."""
    from loadtest.clusters.base import Cluster
    from loadtest.clusters.local import free_port

    dead = Cluster(
        name="gone",
        provider="local",
        kubeconfig=tmp_path / "kc",
        context="",
        server=f"https://127.0.0.1:{free_port()}",
    )  # nothing listens there

    class Provider:
        def get(self, name: str) -> Cluster:
            return dead

    monkeypatch.setattr(cli_runs, "make_provider", lambda args: Provider())
    rc = main(["sweep", "--sizes", "10,20", "--out", str(tmp_path / "out")])
    assert rc == 0 and fake_runs == [10, 20]


def test_sweep_draws_the_list_slo_in_force(fake_runs: list[int], tmp_path: Path) -> None:
    """Without --slo-list-p99 the fit's SLO line is the cluster-scope read SLO of --slo."""
    slo_file = tmp_path / "slo.yaml"
    slo_file.write_text("api: {read_cluster_p99_s: 12}\n")
    main(["sweep", "--sizes", "10,20", "--slo", str(slo_file), "--out", str(tmp_path / "o")])
    sweep = json.loads(next((tmp_path / "o").glob("*/sweep.json")).read_text())
    assert sweep["slo_list_p99_s"] == 12
