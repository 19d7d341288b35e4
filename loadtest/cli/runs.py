"""What the commands that make measured runs share (the gate's, breakpoint): their
arguments, one bounded main-job run, a results folder that bad input takes away again, and
the check that a growing inventory did not already grow past its first size."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from loadtest.cli.common import cluster_target_args, log, make_provider
from loadtest.clusters.base import http_client
from loadtest.config import InventorySpec
from loadtest.errors import LoadtestError
from loadtest.run.job import MainJob, RunConfig


@contextmanager
def out_dir(root: Path, label: str) -> Iterator[Path]:
    """A new folder for a command's results. A command that fails before any run wrote a
    summary into it (a bad kubeconfig, no such cluster) takes it away again, with any of
    its parents it made: bad input leaves nothing behind."""
    made = [p for p in (root, *root.parents) if not p.exists()]  # innermost first
    d = root / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{label}"
    d.mkdir(parents=True, exist_ok=True)
    try:
        yield d
    except BaseException:
        if not any(d.rglob("summary.json")):
            shutil.rmtree(d, ignore_errors=True)
            for p in made:
                try:
                    p.rmdir()
                except OSError:
                    break
        raise


def measured_run(
    args: argparse.Namespace,
    nodes: int,
    agents: int,
    profile: str,
    out_root: Path,
    log_to: Callable[[str], None] = log,
) -> MainJob:
    """One bounded main-job run on the named cluster, the inventory at `nodes`."""
    cfg = RunConfig(
        profile=profile,
        agents=agents,
        duration_s=args.duration,
        spawn_rate=args.spawn_rate,
        inventory=InventorySpec(nodes=nodes, pods_per_node=args.pods_per_node),
        propagation_check=args.propagation,
        slo_file=args.slo or "",
        restart_dns_at_s=args.restart_dns_at_s,
    )
    return MainJob(
        make_provider(args),
        args.name,
        cfg,
        out_root,
        log_to,
        allow_existing=args.allow_existing_cluster,
    )


# Real nodes a harness cluster has besides KWOK's (kind's HA config has the most).
REAL_NODES_MAX = 5


def refuse_grown_inventory(args: argparse.Namespace, smallest: int) -> None:
    """A sweep's inventory only grows: on a cluster seeded bigger than its smallest size,
    that size would measure the bigger one. Refuse before any run."""
    cluster = make_provider(args).get(args.name)
    if cluster is None:
        return
    try:
        with http_client(cluster) as c:
            r = c.get("/api/v1/nodes", params={"limit": "1"})
    except httpx.HTTPError:
        return  # the run's own check names an unreachable cluster, in one line
    if r.status_code != 200:
        return
    body = r.json()
    n = len(body.get("items", [])) + int(body.get("metadata", {}).get("remainingItemCount") or 0)
    if n > smallest + REAL_NODES_MAX:
        raise LoadtestError(
            f"cluster {args.name!r} already has {n} nodes, more than the "
            f"smallest size {smallest}: use a fresh cluster (loadtest cluster "
            f"down --provider {args.provider} --name {args.name})"
        )


def load_args(p: argparse.ArgumentParser, agents: bool = True) -> None:
    """The arguments of every command that makes measured runs."""
    cluster_target_args(p)
    p.set_defaults(name="gate")
    if agents:
        p.add_argument("--agents", type=int, default=20, help="agents per run")
        p.add_argument("--nodes", type=int, default=20, help="inventory: fake nodes")
    p.add_argument("--pods-per-node", type=int, default=10)
    p.add_argument("--duration", type=float, default=30, help="seconds of load per run")
    p.add_argument("--spawn-rate", type=float, default=50)
    p.add_argument(
        "--propagation",
        action="store_true",
        help="also time a new Service's DNS propagation (adds ~60 s per run)",
    )
    p.add_argument(
        "--restart-dns-at",
        type=float,
        dest="restart_dns_at_s",
        help="restart CoreDNS this many seconds into each run's load (how DNS "
        "breaks in an incident: a CoreDNS that cannot sync)",
    )
    p.add_argument("--slo", help="SLO file overriding the defaults (e.g. for a busy machine)")
    p.add_argument("--out", type=Path, default=Path("results"))
