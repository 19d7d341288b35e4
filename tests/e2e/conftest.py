"""e2e tier: real kind clusters. Runs only with `--loadtest-provider kind` (make test-e2e),
so a plain `pytest` or `make test` never starts Docker containers."""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--loadtest-provider") == "kind":
        return
    skip = pytest.mark.skip(
        reason="e2e needs a kind cluster: run `make test-e2e` "
        "(pytest -m e2e --loadtest-provider kind)"
    )
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)
