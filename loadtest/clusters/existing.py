"""Any cluster reachable by a kubeconfig context. Never creates or deletes anything.

Its handles are marked `created_by_harness=False`: load goes to them only when the user
opts in explicitly (see `loadtest.clusters.require_load_allowed`).
"""

from __future__ import annotations

from pathlib import Path

from loadtest import toolchain
from loadtest.clusters import kubeconfig
from loadtest.clusters.base import Cluster
from loadtest.errors import ClusterError, ConfigError


class ExistingProvider:
    name = "existing"

    def __init__(self, kubeconfig_path: Path | None = None) -> None:
        # a file or a KUBECONFIG-style list of files
        self.kubeconfig = str(kubeconfig_path or kubeconfig.default_spec())

    def create(self, cluster_name: str) -> Cluster:
        raise ClusterError(
            "the existing provider never creates clusters; "
            "use --provider local or kind, or name a kubeconfig context"
        )

    def get(self, cluster_name: str) -> Cluster | None:
        """`cluster_name` is a context of the kubeconfig ('' for its current context); None
        when there is no such context. A kubeconfig that cannot be read is a ConfigError."""
        try:
            creds = kubeconfig.read(
                self.kubeconfig, cluster_name or None, data_dir=toolchain.cache_dir() / "existing"
            )
        except kubeconfig.NoSuchContext:
            return None
        return Cluster.from_credentials(
            creds,
            name=creds.context,
            provider=self.name,
            kubeconfig=creds.source or Path(self.kubeconfig),
            created_by_harness=False,
        )

    def list(self) -> list[str]:
        try:
            return kubeconfig.contexts(self.kubeconfig)
        except ConfigError:
            return []

    def delete(self, cluster_name: str) -> None:
        raise ClusterError("the existing provider never deletes clusters")
