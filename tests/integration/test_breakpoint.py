"""The break-point search end to end on tiny sizes against real local control planes.

SLO files decide the outcome, not the machine's speed: one that no run can meet (LIST p99
of a microsecond) fails at the floor; one that any run meets climbs the ladder to its
bounds. Each search gets a fresh cluster of its own (a search refuses a grown inventory).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.cli import main as cli
from loadtest.clusters import Cluster, get_provider
from loadtest.config import InventorySpec
from loadtest.gate import breakpoint as bp
from loadtest.inventory.seed import Seeder, expected_counts
from loadtest.run.record import read_summary

pytestmark = pytest.mark.integration

LOOSE = """version: 1
api: {mutating_p99_s: 600, read_resource_p99_s: 600, read_namespace_p99_s: 600,
      read_cluster_p99_s: 600, throttled_ratio_max: 1, errors_5xx_ratio_max: 1}
dns: {error_ratio_max: 1, p50_ms: 600000, p99_ms: 600000, propagation_s_max: 600}
client: {failure_ratio_max: 1, synced_ratio_min: 0}
"""


def _search(name: str, tmp: Path, slo: str, *flags: str) -> tuple[int, dict]:
    (tmp / "slo.yaml").write_text(slo)
    provider = get_provider("local")
    if provider.get(name):
        provider.delete(name)
    try:
        rc = cli.main(
            [
                "breakpoint",
                "--provider",
                "local",
                "--name",
                name,
                "--profile",
                "telemetry-v2",
                "--duration",
                "20",
                "--pods-per-node",
                "2",
                "--slo",
                str(tmp / "slo.yaml"),
                "--out",
                str(tmp / "out"),
                *flags,
            ]
        )
    finally:
        provider.delete(name)
    (found,) = (tmp / "out").glob("*-breakpoint-telemetry-v2/breakpoint.json")
    return rc, json.loads(found.read_text())


def _check_steps(data: dict) -> None:
    """Every step a full run kept under DIR, its failed SLOs those of its verdict."""
    for s in data["steps"]:
        summary = read_summary(Path(s["run_dir"]))
        assert summary["config"]["inventory"]["nodes"] == s["nodes"]
        assert summary["measurements"]["client"]["requests"] > 0
        failed = [r["name"] for r in summary["slo"] if r["status"] != "pass"]
        assert s["failed_slos"] == failed and s["verdict"] == summary["verdict"]
        assert (Path(s["run_dir"]) / "report.html").exists()


def test_an_slo_no_run_meets_fails_at_the_floor(request, tmp_path: Path) -> None:
    name = request.config.getoption("--loadtest-cluster") + "-bp-tight"
    tight = LOOSE.replace("read_cluster_p99_s: 600", "read_cluster_p99_s: 0.000001")
    rc, data = _search(name, tmp_path, tight, "--min-nodes", "4", "--max-nodes", "16")
    assert rc == 1  # no bracket: nothing passed
    assert data["bracket"] == [None, 4] and len(data["steps"]) == 1
    assert data["steps"][0]["first_failed"] == "api-latency-read-cluster"
    assert data["stopped"] == "nothing left within the bounds"
    _check_steps(data)
    assert (Path(data["steps"][0]["run_dir"]).parent.parent / "report.html").exists()


def test_a_loose_slo_climbs_one_growing_inventory_within_its_bounds(
    request, tmp_path: Path
) -> None:
    """Latency and ratios loosened; break-glass still wants no failed write (not
    configurable), so on a loaded machine a step may fail on it: then the search must
    bisect or stop as the rules say. Without a failure it climbs to its step bound."""
    name = request.config.getoption("--loadtest-cluster") + "-bp-loose"
    rc, data = _search(
        name, tmp_path, LOOSE, "--min-nodes", "4", "--max-nodes", "40", "--max-steps", "4"
    )
    steps = data["steps"]
    sizes = [s["nodes"] for s in steps]
    assert sizes[0] == 4 and steps[0]["phase"] == "fit" and len(sizes) <= 4
    first_fail = next((i for i, s in enumerate(steps) if s["verdict"] == "fail"), len(steps))
    assert sizes[: first_fail + 1] == sorted(sizes[: first_fail + 1])  # the ladder only grows
    _check_steps(data)
    if first_fail == len(steps):  # nothing failed: fit, fit, ladder... to the step bound
        assert sizes[:2] == [4, 8] and len(sizes) == 4
        assert data["bracket"] == [sizes[-1], None]
        # the 4th step may land on --max-nodes itself (CI, stop 14: 4, 8, ..., 40)
        assert "step bound" in data["stopped"] or (
            sizes[-1] == 40 and "nothing left" in data["stopped"]
        )
        assert data["predicted"] is not None and "assumptions" in data["predicted"]
        assert [s["phase"] for s in steps][:3] == ["fit", "fit", "ladder"]
    else:
        lo, hi = data["bracket"]
        assert hi == min(s["nodes"] for s in steps if s["verdict"] == "fail")
        assert lo is None or lo < hi
    assert rc == (0 if all(x is not None for x in data["bracket"]) else 1)


def test_trimming_leaves_exactly_the_smaller_inventory(loadtest_cluster: Cluster) -> None:
    big = InventorySpec(
        name="bp-trim",
        nodes=6,
        pods_per_node=2,
        namespaces=2,
        services_per_namespace=1,
        configmaps_per_namespace=1,
    )
    small = big.model_copy(update={"nodes": 4})
    seeder = Seeder(loadtest_cluster, big, log=lambda _: None, progress=False)
    seeder.seed()
    try:
        assert bp.trim(loadtest_cluster, small, 6) == 2 + 4
        counts = Seeder(loadtest_cluster, small, log=lambda _: None).counts()
        assert {k: counts[k] for k in ("nodes", "pods")} == {
            k: expected_counts(small)[k] for k in ("nodes", "pods")
        }
        assert bp.trim(loadtest_cluster, small, 6) == 0  # twice is safe
    finally:
        seeder.delete()
