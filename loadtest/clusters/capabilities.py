"""What a provider can do beyond the ClusterProvider protocol, one small protocol each.

The main job asks `isinstance(provider, RestartsDNS)` and the like, and never names a
provider: each provider implements what its clusters have.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from loadtest.clusters.base import Cluster


@runtime_checkable
class RunsFakeNodesBeside(Protocol):
    """Clusters with no KWOK controller of their own (kind): the harness runs one beside the
    cluster, on the host, so the seeded fake nodes turn Ready and their pods Running."""

    def ensure_fake_nodes(self, cluster: Cluster) -> int:
        """Start that KWOK controller unless it runs already; returns its pid."""
        ...


@runtime_checkable
class ProbesDNSInNamespace(Protocol):
    """Cluster DNS reachable only inside the cluster's network (kind): the node-side probe
    runs in the network namespace of a node. Without this, it runs on the host."""

    def dns_netns_pid(self, cluster: Cluster) -> int:
        """A pid whose network namespace the DNS probe enters."""
        ...


@runtime_checkable
class RunsPods(Protocol):
    """Clusters whose real nodes run pods (kind): the run's DNS is what a pod sees, through
    the pod's resolver, and the images of the harness's own pods reach the nodes without a
    registry. Without this, DNS is probed from the node side only."""

    def load_image(self, cluster_name: str, image: str) -> None:
        """Make a local image (in this machine's Docker) available to the cluster's nodes."""
        ...


@runtime_checkable
class RestartsDNS(Protocol):
    """Providers that can restart the cluster DNS (as a rollout or an OOM kill would)."""

    def restart_dns(self, cluster_name: str) -> None: ...


@runtime_checkable
class BudgetsApiserverMemory(Protocol):
    """Providers that can give the API server a memory budget (local: a cgroup), and say
    what it used of it."""

    # bytes the API server may use; None: this provider instance sets no budget
    apiserver_memory: int | None

    def apiserver_memory_usage(
        self, cluster_name: str, reset: bool = False
    ) -> dict[str, int | None] | None:
        """OOM kills and the peak charge since the last reset (then starts it over); None
        when the cluster's API server has no budget."""
        ...


@runtime_checkable
class LimitsApiserverCpu(Protocol):
    """Providers that can give the API server a CPU quota (local: cgroup cpu.max)."""

    def apiserver_cpu_quota(self, cluster_name: str) -> float | None:
        """The quota in cores of that cluster's API server; None when it has none."""
        ...
