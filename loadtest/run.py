"""The main job behind `make loadtest`: cluster -> checks -> results folder.

Today it runs end to end on what exists: it ensures a cluster the harness created, checks
that the API server and cluster DNS serve, scrapes the API server's metrics, and writes a
results folder with an environment fingerprint. Stages still to come (inventory, agents,
SLO verdict) are listed in the summary as not run, never reported as passed.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from loadtest import toolchain
from loadtest.clusters import require_load_allowed
from loadtest.clusters.base import Cluster, ClusterProvider, http_client
from loadtest.errors import ClusterError

RESULTS_VERSION = 1
PENDING_STAGES = {
    "inventory": "not run: seeding is not built yet",
    "agents": "not run: Locust agents are not built yet",
    "slo": "not run: SLO assertions are not built yet",
}


def environment() -> dict[str, object]:
    """Where a run happened, so results from different machines are never compared blindly."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=toolchain.REPO_ROOT).stdout.strip()
    except OSError:
        commit = ""
    import os

    return {"host": platform.node(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "platform": platform.platform(), "commit": commit,
            "tools": toolchain.versions()}


def check_cluster(cluster: Cluster) -> dict[str, object]:
    """Readiness, DNS and metrics as the harness sees them; raises ClusterError if unreachable."""
    from loadtest.clusters.local import dns_query

    checks: dict[str, object] = {}
    try:
        with http_client(cluster, timeout=5) as c:
            t0 = time.monotonic()
            r = c.get("/readyz")
            checks["readyz"] = {"status": r.status_code,
                                "seconds": round(time.monotonic() - t0, 4)}
            m = c.get("/metrics")
            checks["apiserver_metrics_bytes"] = len(m.content)
            checks["apiserver_request_total_series"] = sum(
                1 for line in m.text.splitlines() if line.startswith("apiserver_request_total{"))
    except Exception as e:  # noqa: BLE001 - any transport failure means unreachable
        raise ClusterError(f"cannot reach the API server of {cluster.name!r} at "
                           f"{cluster.server}: {type(e).__name__}: {e}") from e
    if cluster.dns:
        t0 = time.monotonic()
        ans = dns_query(cluster.dns, "kubernetes.default.svc.cluster.local.")
        checks["dns"] = {"answer": [str(rr) for rrset in ans.answer for rr in rrset],
                         "seconds": round(time.monotonic() - t0, 4)}
    return checks


def run_main_job(provider: ClusterProvider, cluster_name: str, keep: bool, out_dir: Path,
                 log: Callable[[str], None]) -> int:
    provider_name = provider.name
    run_dir = out_dir / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True, exist_ok=True)
    created = False
    cluster = provider.get(cluster_name)
    if cluster is None:
        log(f"creating {provider_name} cluster {cluster_name!r}")
        cluster = provider.create(cluster_name)
        created = True
    else:
        log(f"reusing {provider_name} cluster {cluster_name!r}")
    try:
        require_load_allowed(cluster, allow_existing=False)
        checks = check_cluster(cluster)
        summary = {"version": RESULTS_VERSION, "environment": environment(),
                   "cluster": cluster.redacted(), "checks": checks, "stages": PENDING_STAGES,
                   "verdict": "incomplete: only cluster checks ran"}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        log(f"cluster checks passed: {json.dumps(checks)}")
        for stage, why in PENDING_STAGES.items():
            log(f"{stage}: {why}")
        log(f"results in {run_dir}")
        return 0
    finally:
        if created and not keep:
            log(f"removing {provider_name} cluster {cluster_name!r}")
            provider.delete(cluster_name)
