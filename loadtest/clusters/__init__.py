"""Cluster providers (local, kind, existing) behind one protocol, and the load-safety rule."""

from __future__ import annotations

from typing import Any

from loadtest.clusters.base import Cluster, ClusterProvider, http_client
from loadtest.errors import ClusterError, ConfigError

PROVIDERS = ("local", "kind", "existing")


def get_provider(name: str, **options: Any) -> ClusterProvider:
    """The provider called `name`, built with its own options (unknown ones are errors)."""
    if name == "local":
        from loadtest.clusters.local import LocalProvider

        return LocalProvider(**options)
    if name == "kind":
        from loadtest.clusters.kind import KindProvider

        return KindProvider(**options)
    if name == "existing":
        from loadtest.clusters.existing import ExistingProvider

        return ExistingProvider(**options)
    raise ConfigError(f"provider {name!r} is not available (choose from: local, kind, existing)")


def require_load_allowed(cluster: Cluster, allow_existing: bool) -> None:
    """Refuse to point load at a cluster the harness did not create, unless opted in."""
    if not cluster.created_by_harness and not allow_existing:
        raise ClusterError(
            f"cluster {cluster.name!r} ({cluster.server}) was not created by loadtest; "
            "pass --allow-existing-cluster to send load to it on purpose"
        )


__all__ = [
    "PROVIDERS",
    "Cluster",
    "ClusterProvider",
    "get_provider",
    "http_client",
    "require_load_allowed",
]
