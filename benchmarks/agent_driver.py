"""Drive N Python agents directly on gevent (no Locust), and report this process's CPU and RSS.

Run as its own process by bench_agents.py, so the CPU measured is the generator's alone:

    python benchmarks/agent_driver.py --cluster-json C --profile P --agents N --duration S \
        [--ramp-per-second R] [--decode] --out result.json

Phases: `ramp` (agents starting: TLS handshakes, initial LISTs), then `steady` (every agent
synced; watches open, events and polls flowing). CPU is taken from getrusage at each edge.
`--list-bench K` instead runs K sequential LISTs of the profile's first poll from one agent
(CPU per LIST, decoded or streamed).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest import processes  # noqa: E402
from loadtest.agents.agent import Agent, AgentStats  # noqa: E402
from loadtest.agents.identity import Identities, ensure_rbac  # noqa: E402
from loadtest.agents.profile import load_profile  # noqa: E402
from loadtest.clusters.base import Cluster, http_client  # noqa: E402


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_bytes() -> int:
    got = processes.cpu_rss(os.getpid())
    return got[1] if got else 0


def list_nodes(cluster: Cluster, selector: str) -> list[str]:
    # One setup LIST, as refagent's --node-selector makes.
    with http_client(cluster, timeout=60) as c:
        r = c.get("/api/v1/nodes", params={"labelSelector": selector})
        r.raise_for_status()
    return sorted(i["metadata"]["name"] for i in r.json()["items"])


def _noop(**_: Any) -> None:
    pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster-json", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--duration", type=float, default=60, help="seconds of steady state")
    ap.add_argument("--ramp-per-second", type=float, default=200)
    ap.add_argument("--sync-timeout", type=float, default=300)
    ap.add_argument("--node-selector", default="type=kwok")
    ap.add_argument("--decode", action="store_true")
    ap.add_argument("--list-bench", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    cluster = Cluster.from_json(Path(a.cluster_json).read_text())
    profile = load_profile(a.profile)
    ensure_rbac(cluster, profile)
    identities = Identities(cluster, profile)
    nodes = list_nodes(cluster, a.node_selector)
    stats = AgentStats()
    out: dict[str, Any] = {
        "agents": a.agents,
        "profile": profile.name,
        "decode": a.decode,
        "nodes": len(nodes),
        "rss_bytes_start": rss_bytes(),
    }

    if a.list_bench:
        agent = Agent(profile, nodes[0], identities.endpoint(0), _noop, stats, a.decode)
        target = profile.polls[0]
        agent.list(target, target.list_resource_version)  # connection and TLS set-up
        c0, t0 = cpu(), time.monotonic()
        for _ in range(a.list_bench):
            agent.list(target, target.list_resource_version)
        out |= {
            "lists": a.list_bench,
            "cpu_seconds": cpu() - c0,
            "wall_seconds": time.monotonic() - t0,
            "cpu_ms_per_list": 1000 * (cpu() - c0) / a.list_bench,
            "bytes_per_list": stats.bytes[f"LIST {target.label}"] / (a.list_bench + 1),
        }
        agent.stop()
        Path(a.out).write_text(json.dumps(out, indent=2))
        return 0

    agents = []
    c0, t0 = cpu(), time.monotonic()
    for i in range(a.agents):
        ag = Agent(profile, nodes[i % len(nodes)], identities.endpoint(i), _noop, stats, a.decode)
        ag.start()
        agents.append(ag)
        gevent.sleep(1 / a.ramp_per_second)
    deadline = time.monotonic() + a.sync_timeout
    want = a.agents if profile.watches else 0
    while stats.agents_synced < want and time.monotonic() < deadline:
        gevent.sleep(0.2)
    c1, t1 = cpu(), time.monotonic()
    req1 = sum(stats.requests.values())
    ev1 = sum(stats.events.values())
    gevent.sleep(a.duration)
    c2, t2 = cpu(), time.monotonic()
    req2 = sum(stats.requests.values())
    ev2 = sum(stats.events.values())
    out |= {
        "synced": stats.agents_synced,
        "ramp": {"seconds": t1 - t0, "cpu_seconds": c1 - c0, "requests": req1},
        "steady": {
            "seconds": t2 - t1,
            "cpu_seconds": c2 - c1,
            "requests": req2 - req1,
            "events": ev2 - ev1,
            "cpu_fraction": (c2 - c1) / (t2 - t1),
        },
        "rss_bytes_end": rss_bytes(),
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "cpu_seconds_total": c2 - c0,
        "requests_total": req2,
    }
    for ag in agents:
        gevent.spawn(ag.stop)
    gevent.sleep(2)
    out["stats"] = stats.as_dict()
    Path(a.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
