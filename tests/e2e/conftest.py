"""e2e tier: real kind clusters. Runs only with `--loadtest-provider kind` (make test-e2e),
so a plain `pytest` or `make test` never starts Docker containers."""

import pytest

# The incident replay saturates this machine for ~13 minutes (a thousand fake nodes and
# their agents against a 2 GiB API server). It runs last: the kind cluster the other modules
# share sits through it otherwise, its controllers starved, and the CoreDNS rollout after it
# did not finish within the harness's 30 s (stop 21's CI).
LAST = ("test_incident.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name in LAST)  # stable: the rest keep their order
    if config.getoption("--loadtest-provider") == "kind":
        return
    skip = pytest.mark.skip(
        reason="e2e needs a kind cluster: run `make test-e2e` "
        "(pytest -m e2e --loadtest-provider kind)"
    )
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)
