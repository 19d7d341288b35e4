"""Seeding a production-shaped inventory into a real control plane."""

import pytest

from loadtest.cli.main import main
from loadtest.clusters import Cluster
from loadtest.clusters.base import http_client
from loadtest.config import InventorySpec
from loadtest.inventory import padding
from loadtest.inventory.seed import LABEL, Seeder

pytestmark = pytest.mark.integration

SPEC = InventorySpec(
    name="inv-it",
    nodes=50,
    pods_per_node=10,
    namespaces=5,
    services_per_namespace=2,
    configmaps_per_namespace=2,
)


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


def test_bad_input_is_one_line_and_creates_nothing(loadtest_cluster: Cluster, tmp_path, capsys):
    spec = InventorySpec(name="inv-bad")
    seeder = Seeder(loadtest_cluster, spec, progress=False, log=lambda _: None)
    bad = tmp_path / "inv.yaml"
    bad.write_text("name: inv-bad\nnodes: 3\nreplicas: 2\n")
    for argv in (["--nodes", "-5"], ["--file", str(bad)]):
        assert main(["seed", "--name", loadtest_cluster.name, "--inventory", "inv-bad", *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:")
    assert seeder.counts() == {
        "namespaces": 0,
        "nodes": 0,
        "pods": 0,
        "services": 0,
        "configmaps": 0,
    }


def test_seeded_lists_compress_like_real_objects(loadtest_cluster: Cluster):
    """The real API server's gzip (level 1, over 128 KiB) of cluster-wide LISTs of seeded
    pods and nodes, once KWOK has written their status: within the band of a real cluster's
    LISTs (padding.list_band). With one repeated character as padding, a pod LIST
    compressed ~16x (shared/DESIGN.md)."""
    spec = InventorySpec(name="inv-gzip", nodes=30, pods_per_node=10, namespaces=3)
    seeder = Seeder(loadtest_cluster, spec, progress=False, log=lambda _: None)
    seeder.seed()
    try:
        seeder.wait_ready(timeout=180)
        params = {"labelSelector": f"{LABEL}={spec.name}", "resourceVersion": "0"}
        with http_client(loadtest_cluster, timeout=60) as c:
            for resource, kind in (("pods", "pod"), ("nodes", "node")):
                low, high = padding.list_band(kind)
                for accept in ("application/json", "application/vnd.kubernetes.protobuf"):
                    size = padding.get_sizes(c, f"/api/v1/{resource}", params, accept)
                    assert size.gzipped, (resource, accept, size.decoded)
                    assert low <= size.ratio <= high, (resource, accept, size)
    finally:
        seeder.delete()
