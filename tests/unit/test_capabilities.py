"""Providers by capability: each provider offers what its clusters have, and the main job
asks for a capability, never for a provider by name."""

import ast
from pathlib import Path

import pytest

from loadtest.clusters import get_provider
from loadtest.clusters.base import Cluster
from loadtest.clusters.capabilities import (
    BudgetsApiserverMemory,
    ProbesDNSInNamespace,
    RestartsDNS,
    RunsFakeNodesBeside,
    RunsPods,
)
from loadtest.run import job as run
from loadtest.run.job import MainJob, RunConfig

CAPABILITIES = (
    RunsFakeNodesBeside,
    ProbesDNSInNamespace,
    RunsPods,
    RestartsDNS,
    BudgetsApiserverMemory,
)


@pytest.mark.parametrize(
    ("provider", "has"),
    [
        ("local", {RestartsDNS, BudgetsApiserverMemory}),
        (
            "kind",
            {
                RunsFakeNodesBeside,
                ProbesDNSInNamespace,
                RunsPods,
                RestartsDNS,
                BudgetsApiserverMemory,
            },
        ),
        ("existing", set()),
    ],
)
def test_each_provider_offers_what_its_clusters_have(provider, has, tmp_path):
    options = {"kubeconfig_path": tmp_path / "none"} if provider == "existing" else {}
    p = get_provider(provider, **options)
    assert {c for c in CAPABILITIES if isinstance(p, c)} == has


def test_the_main_job_names_no_provider():
    tree = ast.parse(Path(run.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {
        m
        for m in imported
        if m
        and m.startswith(
            ("loadtest.clusters.kind", "loadtest.clusters.local", "loadtest.clusters.existing")
        )
    }
    probes = [
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id in ("getattr", "hasattr")
    ]
    assert probes == []
    compared = [
        c.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare)
        for c in (n.left, *n.comparators)
        if isinstance(c, ast.Constant) and c.value in ("kind", "local", "existing")
    ]
    assert compared == []


class _Provider:
    """A provider with no cluster behind it: only what the job asks of it is recorded."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def create(self, cluster_name: str) -> Cluster:
        raise AssertionError("not in this test")

    def get(self, cluster_name: str) -> Cluster | None:
        return None

    def list(self) -> list[str]:
        return []

    def delete(self, cluster_name: str) -> None:
        pass


class _RestartingProvider(_Provider):
    apiserver_memory = 2**30

    def restart_dns(self, cluster_name: str) -> None:
        self.calls.append(("restart_dns", cluster_name))

    def apiserver_memory_usage(
        self, cluster_name: str, reset: bool = False
    ) -> dict[str, int | None] | None:
        self.calls.append(("usage", reset))
        return {"apiserver_oom_kills": 0, "apiserver_memory_peak_bytes": 5}


def _job(provider: _Provider, tmp_path: Path, logged: list[str]) -> MainJob:
    return MainJob(provider, "c1", RunConfig(), tmp_path, logged.append)


def test_the_job_uses_a_capability_where_the_provider_has_it(tmp_path):
    logged: list[str] = []
    p = _RestartingProvider()
    job = _job(p, tmp_path, logged)
    changed: list[float] = []
    job._restart_dns(changed)
    assert p.calls == [("restart_dns", "c1")] and len(changed) == 1
    assert "dns-restarted" in job.summary["stages"]
    assert job._memory_budget() == 2**30
    assert job._apiserver_memory(reset=True) == {
        "apiserver_oom_kills": 0,
        "apiserver_memory_peak_bytes": 5,
    }
    assert p.calls[-1] == ("usage", True)


def test_the_job_goes_on_without_a_capability(tmp_path):
    logged: list[str] = []
    job = _job(_Provider(), tmp_path, logged)
    changed: list[float] = []
    job._restart_dns(changed)
    assert changed == [] and "dns-restarted" not in job.summary["stages"]
    assert logged == ["warning: provider fake cannot restart cluster DNS"]
    assert job._memory_budget() is None and job._apiserver_memory() is None
