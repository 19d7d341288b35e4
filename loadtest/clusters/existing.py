"""Any cluster reachable by a kubeconfig context. Never creates or deletes anything.

Its handles are marked `created_by_harness=False`: load goes to them only when the user
opts in explicitly (see `loadtest.clusters.require_load_allowed`).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from loadtest import kubeconfig, toolchain
from loadtest.clusters.base import Cluster
from loadtest.errors import ClusterError, ConfigError


def default_kubeconfig() -> Path:
    env = os.environ.get("KUBECONFIG", "")
    return Path(env.split(os.pathsep)[0]) if env else Path.home() / ".kube" / "config"


class ExistingProvider:
    name = "existing"

    def __init__(self, kubeconfig_path: Path | None = None) -> None:
        self.kubeconfig = Path(kubeconfig_path or default_kubeconfig())

    def create(self, cluster_name: str) -> Cluster:
        raise ClusterError("the existing provider never creates clusters; "
                           "use --provider local or kind, or name a kubeconfig context")

    def get(self, cluster_name: str) -> Cluster | None:
        """`cluster_name` is a context of the kubeconfig ('' for its current context)."""
        try:
            creds = kubeconfig.read(self.kubeconfig, cluster_name or None,
                                    data_dir=toolchain.cache_dir() / "existing")
        except ConfigError as e:
            if "no entry named" in str(e):
                return None
            raise
        return Cluster(name=creds.context, provider=self.name, kubeconfig=self.kubeconfig,
                       context=creds.context, server=creds.server, ca_file=creds.ca_file,
                       client_cert=creds.client_cert, client_key=creds.client_key,
                       token=creds.token, metrics={"apiserver": creds.server + "/metrics"},
                       created_by_harness=False)

    def list(self) -> list[str]:
        try:
            doc = yaml.safe_load(self.kubeconfig.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return []
        return [c.get("name", "") for c in doc.get("contexts") or []]

    def delete(self, cluster_name: str) -> None:
        raise ClusterError("the existing provider never deletes clusters")
