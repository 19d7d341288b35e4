"""What a run does (the run's config), apart from the job that does it, so a run record can
name it without importing the run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from loadtest.config import InventorySpec, Strict


class RunConfig(Strict):
    """What a run does; every field has a sensible default, flags override."""

    version: Literal[1] = 1
    profile: str = "telemetry-v1"
    agents: int = Field(default=100, ge=1)
    duration_s: float = Field(default=90, gt=0)
    spawn_rate: float = Field(default=50, gt=0)
    shape: Literal["fixed", "rollout", "steps"] = "fixed"
    steps: str = ""
    processes: int = Field(default=1, ge=1)
    inventory: InventorySpec = InventorySpec(nodes=100, pods_per_node=10)
    scrape_interval_s: float = Field(default=5, gt=0)
    # The idle baseline (probes running, no agent): the API servers' CPU once it is steady
    # over this window after seeding, waiting at most idle_max_s; 0 takes none.
    idle_window_s: float = Field(default=15, ge=0)
    idle_max_s: float = Field(default=90, ge=0)
    dns_rate_hz: float = Field(default=10, gt=0)
    # DNS caches hide failures at first: keep probing at least this long after a change.
    dns_min_probe_s: float = Field(default=60, ge=0)  # 2 x measurements.dns.CACHE_TTL_S
    propagation_check: bool = True
    # Restart CoreDNS this many seconds into the load: a CoreDNS that starts while its
    # initial LISTs cannot complete serves SERVFAIL for what it does not know yet.
    restart_dns_at_s: float | None = Field(default=None, ge=0)
    slo_file: str = ""
    # remote Locust workers (loadtest worker) or N worker pods in the cluster under test
    workers: int = Field(default=0, ge=0)
    master_bind: str = ""
    workers_in_cluster: int = Field(default=0, ge=0)
    worker_image: str = ""
