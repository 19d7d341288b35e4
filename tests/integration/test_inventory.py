"""Seeding a production-shaped inventory into a real control plane."""

import pytest

from loadtest.cli import main
from loadtest.clusters import Cluster
from loadtest.config import InventorySpec
from loadtest.inventory import Seeder

pytestmark = pytest.mark.integration

SPEC = InventorySpec(name="inv-it", nodes=50, pods_per_node=10, namespaces=5,
                     services_per_namespace=2, configmaps_per_namespace=2)


def test_seed_is_exact_ready_idempotent_and_removable(loadtest_cluster: Cluster):
    seeder = Seeder(loadtest_cluster, SPEC, progress=False, log=lambda _: None)
    first = seeder.seed()
    assert first.created["nodes"] == 50 and first.created["pods"] == 500
    assert seeder.wait_ready(timeout=180) == {"nodes_ready": 50, "pods_running": 500}
    want = {"namespaces": 5, "nodes": 50, "pods": 500, "services": 10, "configmaps": 10}
    assert seeder.counts() == want
    again = seeder.seed()  # a rerun reaches the target without duplicates
    assert again.total_created == 0 and seeder.counts() == want
    seeder.delete()
    assert seeder.counts() == dict.fromkeys(want, 0)
    seeder.delete()  # twice is safe
    assert seeder.counts() == dict.fromkeys(want, 0)


def test_bad_input_is_one_line_and_creates_nothing(loadtest_cluster: Cluster, tmp_path,
                                                   capsys):
    spec = InventorySpec(name="inv-bad")
    seeder = Seeder(loadtest_cluster, spec, progress=False, log=lambda _: None)
    bad = tmp_path / "inv.yaml"
    bad.write_text("name: inv-bad\nnodes: 3\nreplicas: 2\n")
    for argv in (["--nodes", "-5"], ["--file", str(bad)]):
        assert main(["seed", "--name", loadtest_cluster.name, "--inventory", "inv-bad",
                     *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:")
    assert seeder.counts() == {"namespaces": 0, "nodes": 0, "pods": 0, "services": 0,
                               "configmaps": 0}
