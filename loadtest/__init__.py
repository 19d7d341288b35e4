"""loadtest: reproduce Kubernetes control-plane saturation from per-node agents.

The public surface is small; modules behind it may change.
"""

from loadtest.clusters import Cluster, ClusterProvider, get_provider, require_load_allowed
from loadtest.errors import (
    ClusterError,
    CommandError,
    ConfigError,
    LoadtestError,
    ToolsMissing,
)

__all__ = [
    "Cluster",
    "ClusterError",
    "ClusterProvider",
    "CommandError",
    "ConfigError",
    "LoadtestError",
    "ToolsMissing",
    "get_provider",
    "require_load_allowed",
]
