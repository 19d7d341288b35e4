"""pytest fixtures and options: a session-wide cluster the harness creates (or reuses).

Enable with `pytest_plugins = ["loadtest.verdict.pytest_plugin"]`. Options:
  --loadtest-provider local|kind   which provider creates the cluster (default local)
  --loadtest-cluster NAME          cluster name (default loadtest-pytest)
  --loadtest-keep-cluster          leave the cluster running after the session (and reuse it)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loadtest.clusters import Cluster, get_provider


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("loadtest")
    g.addoption("--loadtest-provider", default="local", choices=["local", "kind"])
    g.addoption("--loadtest-cluster", default="loadtest-pytest")
    g.addoption("--loadtest-keep-cluster", action="store_true")
    g.addoption(
        "--loadtest-results",
        default="",
        help="results folder for loadtest/verdict/pytest_verdict.py",
    )
    g.addoption("--loadtest-slo", default="", help="SLO file overriding the defaults")


@pytest.fixture(scope="session")
def loadtest_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster created by the harness for this session; removed after unless kept."""
    opt = request.config.getoption
    provider = get_provider(opt("--loadtest-provider"))
    name = opt("--loadtest-cluster")
    keep = opt("--loadtest-keep-cluster")
    existing = provider.get(name)
    if existing is not None and keep:
        yield existing
        return
    if existing is not None:
        provider.delete(name)  # a leftover of a crashed session: start clean
    cluster = provider.create(name)
    try:
        yield cluster
    finally:
        if not keep:
            provider.delete(name)
