"""The KWOK controller that makes fake nodes look alive, where the provider has none.

The local provider's kwokctl runs one already. Beside a kind cluster the harness runs the
`kwok` binary on the host with the cluster's kubeconfig, managing only nodes annotated
`kwok.x-k8s.io/node=fake` (so real kind nodes are left alone), with KWOK's default node and
pod stages (Ready nodes, Running pods, leases).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from loadtest import toolchain
from loadtest.clusters.base import Cluster
from loadtest.errors import CommandError
from loadtest.inventory.seed import KWOK_ANNOTATION
from loadtest.proc import alive, stop_pidfile

# A kubelet's node Lease: 40 s, renewed every quarter of it (10 s), one PUT per node every 10 s:
# the write load (and the Lease watch events) a real cluster of that size has. kwokctl's own
# default is 200 s (a renewal every 50 s per node: five times fewer).
NODE_LEASE_DURATION_S = 40


def ensure_beside(cluster: Cluster, state_dir: Path) -> int:
    """Start KWOK for `cluster` unless it already runs; returns its pid."""
    pidfile = state_dir / "kwok.pid"
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text())
            if alive(pid):
                return pid
        except ValueError:
            pass
    state_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(toolchain.binary("kwok")),
        "--kubeconfig",
        str(cluster.kubeconfig),
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
        f"--node-lease-duration-seconds={NODE_LEASE_DURATION_S}",
        # its own health/metrics server, on loopback only
        "--server-address=127.0.0.1:0",
    ]
    with (state_dir / "kwok.log").open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        proc.wait(timeout=2)  # an immediate exit is a configuration error
    except subprocess.TimeoutExpired:
        pidfile.write_text(str(proc.pid))
        return proc.pid
    raise CommandError(
        "kwok beside the cluster",
        cmd,
        proc.returncode or -1,
        (state_dir / "kwok.log").read_text()[-2000:],
    )


def stop_beside(state_dir: Path) -> None:
    stop_pidfile(state_dir / "kwok.pid")
