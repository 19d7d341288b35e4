"""The harness's own objects on a real API server: server-side applied by field manager
`loadtest`, every answer checked (a refusal is one line, or a warning the run records), probe
Services removed after the run and by `seed --delete`, and `mitigate --fresh-cluster` from
no cluster at all."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from loadtest.agents.identity import ROLE, ensure_rbac
from loadtest.agents.profile import load_profile
from loadtest.cli.main import main
from loadtest.clusters import Cluster, get_provider, http_client
from loadtest.clusters.base import FIELD_MANAGER, apply_object
from loadtest.config import InventorySpec
from loadtest.errors import ClusterError
from loadtest.gate import mitigation
from loadtest.measurements import bystander, probe_service
from loadtest.run.job import BREAK_GLASS_FS, MainJob, RunConfig, ensure_break_glass
from loadtest.run.record import read_summary, write_summary

pytestmark = pytest.mark.integration

RBAC = "/apis/rbac.authorization.k8s.io/v1"
FS = "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas"
# Loose enough that a light run on a busy machine breaks none of them.
LOOSE_SLOS = """api: {mutating_p99_s: 30, read_resource_p99_s: 30, read_namespace_p99_s: 30,
      read_cluster_p99_s: 60, throttled_ratio_max: 1, errors_5xx_ratio_max: 1}
dns: {error_ratio_max: 1, p50_ms: 10000, p99_ms: 10000, propagation_s_max: 600}
client: {failure_ratio_max: 1, synced_ratio_min: 0}
"""


def _managers(obj: dict[str, Any]) -> set[str]:
    return {m["manager"] for m in obj["metadata"].get("managedFields", [])}


def _as_serviceaccount(cluster: Cluster, name: str, rules: list[dict[str, Any]]) -> Cluster:
    """The cluster as a ServiceAccount of its own (not system:masters) allowed `rules`."""
    ns = "gate-it-identities"
    rb = "rbac.authorization.k8s.io"
    with http_client(cluster) as c:
        apply_object(
            c,
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        )
        apply_object(
            c,
            f"/api/v1/namespaces/{ns}/serviceaccounts",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": ns},
            },
        )
        apply_object(
            c,
            f"{RBAC}/clusterroles",
            {
                "apiVersion": f"{rb}/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": rules,
            },
        )
        apply_object(
            c,
            f"{RBAC}/clusterrolebindings",
            {
                "apiVersion": f"{rb}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": rb, "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
            },
        )
        r = c.post(
            f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
            json={"spec": {"expirationSeconds": 3600}},
        )
        assert r.status_code == 201, r.text
    return dataclasses.replace(
        cluster, token=r.json()["status"]["token"], client_cert=None, client_key=None
    )


ALL_FLOWSCHEMAS = [
    {
        "apiGroups": ["flowcontrol.apiserver.k8s.io"],
        "resources": ["flowschemas"],
        "verbs": ["get", "create", "patch", "update"],
    }
]


def test_break_glass_is_said_exempt_only_when_the_flowschema_was_taken(
    loadtest_cluster: Cluster,
) -> None:
    warnings: list[str] = []
    refused = _as_serviceaccount(loadtest_cluster, "gate-it-nobody", [])
    said = ensure_break_glass(refused, warnings.append)
    assert "exempt via" not in said and "NOT exempt" in said, said
    assert len(warnings) == 1 and "HTTP 403" in warnings[0] and "\n" not in warnings[0]
    allowed = _as_serviceaccount(loadtest_cluster, "gate-it-operator", ALL_FLOWSCHEMAS)
    try:
        warnings.clear()
        said = ensure_break_glass(allowed, warnings.append)
        assert said.endswith(f"-> exempt via FlowSchema {BREAK_GLASS_FS}") and not warnings
        with http_client(loadtest_cluster) as c:
            fs = c.get(f"{FS}/{BREAK_GLASS_FS}").json()
        assert fs["spec"]["priorityLevelConfiguration"]["name"] == "exempt"
        assert FIELD_MANAGER in _managers(fs)
        # twice is fine: the apply is idempotent
        assert ensure_break_glass(allowed, warnings.append) == said and not warnings
    finally:
        with http_client(loadtest_cluster) as c:  # it maps every ServiceAccount to exempt
            c.delete(f"{FS}/{BREAK_GLASS_FS}")


def test_bystander_setup_is_applied_and_a_refusal_is_one_line(loadtest_cluster: Cluster) -> None:
    bystander.ensure_objects(loadtest_cluster)
    bystander.ensure_objects(loadtest_cluster)  # a rerun: no 409 to ignore
    with http_client(loadtest_cluster) as c:
        assert c.get(f"{bystander.CONFIGMAPS}/{bystander.ROLLBACK_TARGET}").status_code == 200
        role = c.get(f"{RBAC}/namespaces/{bystander.NAMESPACE}/roles/reader").json()
    assert FIELD_MANAGER in _managers(role)  # (an object that owns no field has no entry)
    with pytest.raises(ClusterError) as e:
        bystander.ensure_objects(_as_serviceaccount(loadtest_cluster, "gate-it-nobody", []))
    assert "HTTP 403" in str(e.value) and "\n" not in str(e.value)


def test_agent_rbac_is_applied_and_follows_the_profile(loadtest_cluster: Cluster) -> None:
    ensure_rbac(loadtest_cluster, load_profile("telemetry-v2"))
    ensure_rbac(loadtest_cluster, load_profile("kubelet-like"))
    with http_client(loadtest_cluster) as c:
        role = c.get(f"{RBAC}/clusterroles/{ROLE}").json()
    assert FIELD_MANAGER in _managers(role)
    wanted = {
        r
        for t in [*load_profile("kubelet-like").watches, *load_profile("kubelet-like").polls]
        for r in [t.resource]
    }
    assert {r for rule in role["rules"] for r in rule["resources"]} == wanted


def _probe_services(cluster: Cluster) -> list[str]:
    with http_client(cluster) as c:
        r = c.get("/api/v1/services", params={"labelSelector": f"{probe_service.LABEL}=true"})
    return [i["metadata"]["name"] for i in r.json()["items"]]


def _small_run(cluster: Cluster, out: Path, slo_file: Path) -> Path:
    cfg = RunConfig(
        profile="kubelet-like",
        agents=3,
        duration_s=9,
        spawn_rate=10,
        inventory=InventorySpec(
            name="gate-it",
            nodes=3,
            pods_per_node=1,
            namespaces=1,
            services_per_namespace=1,
            configmaps_per_namespace=1,
        ),
        dns_min_probe_s=4,
        scrape_interval_s=2,
        slo_file=str(slo_file),
    )
    return MainJob(get_provider("local"), cluster.name, cfg, out, log=lambda _: None).execute()


def test_probe_services_are_removed_and_a_refused_one_is_an_slo_error(
    loadtest_cluster: Cluster, tmp_path: Path
) -> None:
    slo_file = tmp_path / "slo.yaml"
    slo_file.write_text(LOOSE_SLOS)
    quota = "/api/v1/namespaces/default/resourcequotas"
    with http_client(loadtest_cluster) as c:
        apply_object(
            c,
            quota,
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "gate-it-no-services"},
                "spec": {"hard": {"services": "0"}},
            },
        )
    try:
        refused = read_summary(_small_run(loadtest_cluster, tmp_path / "refused", slo_file))
    finally:
        with http_client(loadtest_cluster) as c:
            c.delete(f"{quota}/gate-it-no-services")
    prop = {r["name"]: r for r in refused["slo"]}["dns-propagation"]
    assert prop["status"] == "error" and "could not create the probe Service" in prop["measured"]
    assert any("probe Service" in w for w in refused.get("warnings", []))

    ok = read_summary(_small_run(loadtest_cluster, tmp_path / "ok", slo_file))
    assert ok["measurements"]["dns"]["propagation"][0]["seconds"] is not None
    assert {r["name"]: r for r in ok["slo"]}["dns-propagation"]["status"] == "pass"
    assert _probe_services(loadtest_cluster) == []  # removed at the end of the run

    probe_service.create(loadtest_cluster, "lt-propagation-left-over")  # a crashed run's
    assert _probe_services(loadtest_cluster) == ["lt-propagation-left-over"]
    assert (
        main(
            [
                "seed",
                "--provider",
                "local",
                "--name",
                loadtest_cluster.name,
                "--inventory",
                "gate-it",
                "--delete",
            ]
        )
        == 0
    )
    assert _probe_services(loadtest_cluster) == []


def test_mitigate_fresh_cluster_needs_no_cluster_and_judges_every_round(
    request: pytest.FixtureRequest, tmp_path: Path, capsys
) -> None:
    name = f"{request.config.getoption('--loadtest-cluster')}-fresh"[:30]
    provider = get_provider("local")
    provider.delete(name)  # a leftover of a crashed session
    slo_file = tmp_path / "slo.yaml"
    slo_file.write_text(LOOSE_SLOS)
    failing = tmp_path / "failing-run"
    (failing / "raw").mkdir(parents=True)
    cfg = RunConfig(
        profile="kubelet-like",
        agents=3,
        duration_s=6,
        spawn_rate=10,
        inventory=InventorySpec(name="gate-fresh", nodes=3, pods_per_node=1, namespaces=1),
        dns_min_probe_s=0,
        propagation_check=False,
        slo_file=str(slo_file),
    )
    write_summary(
        failing,
        {
            "config": cfg.model_dump(),
            "verdict": "fail",
            "environment": {"cpus": 2},
            "measurements": {},
        },
    )
    assert provider.get(name) is None
    try:
        rc = main(
            [
                "mitigate",
                "--from",
                str(failing),
                "--provider",
                "local",
                "--name",
                name,
                "--rerun",
                "--fresh-cluster",
                "--rounds",
                "1",
            ]
        )
    finally:
        provider.delete(name)
    data = json.loads((failing / "mitigation" / "comparison.json").read_text())
    # nothing broke without the objects in so light a run: nothing was shown either way
    assert data["verdict"] == mitigation.INCONCLUSIVE, data["reasons"]
    assert rc == 1 and [r["round"] for r in data["rounds"]] == [1]
    assert {v: len(d) for v, d in data["run_dirs"].items()} == {"without": 1, "with": 1}
    assert "mitigation inconclusive" in capsys.readouterr().err
