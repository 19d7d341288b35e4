"""`make bench-workers`: agents per worker core on Locust's master/worker engine.

One local cluster (bench-i17-workers) whose API server audits every get/list/watch, one
inventory; then for each profile, one after the other: a master and W `loadtest worker`
processes on loopback run A agents. Each worker's CPU (utime+stime from /proc) is read
when all have connected and again near the end: agents per core = agents per worker /
(CPU seconds / wall seconds) over that window (spawning included). After the run, the API
server's own view (audit events of the agents' user agent, by verb) is set beside the sum
of the workers' request counters by verb: they should be equal, but for requests still in
flight when the run stopped (completed by the API server after the agents were told to stop).

    python benchmarks/bench_workers.py [--agents 300] [--workers 2] [--duration 60]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import log, table, write_result  # noqa: E402
from loadtest.agents.profile import load_profile  # noqa: E402
from loadtest.agents.runner import AgentRun, LocalWorkers, run_agents  # noqa: E402
from loadtest.clusters import get_provider  # noqa: E402
from loadtest.config import InventorySpec  # noqa: E402
from loadtest.inventory.seed import LABEL, Seeder  # noqa: E402

NAME = "bench-i17-workers"
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    verbs: [get, list, watch]
  - level: None
"""
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


class SampledWorkers(LocalWorkers):
    """Local workers whose CPU is read when the master says all connected, and at `end_s`."""

    def __init__(self, n: int, log_dir: Path, end_s: float) -> None:
        super().__init__(n, log_dir)
        self.end_s = end_s
        self.samples: list[tuple[float, list[float]]] = []
        self.connected_at = self.stopped_at = 0.0
        self.timer: threading.Timer | None = None

    def sample(self) -> None:
        with contextlib.suppress(OSError):  # a worker gone: no figure rather than a wrong one
            self.samples.append((time.monotonic(), [cpu_s(p.pid) for p in self.procs]))

    def on_log(self, line: str) -> None:
        if line.startswith("stopping the agents"):  # the master's word, forwarded at once
            self.stopped_at = time.time()
        if self.timer is None and "connected after" in line:
            self.sample()
            self.timer = threading.Timer(self.end_s, self.sample)
            self.timer.start()

    def stop(self) -> None:
        if self.timer:
            self.timer.cancel()
        super().stop()


def audited_by_verb(
    audit: Path, since: int, user_agent: str, stop_at: float
) -> tuple[Counter[str], Counter[str]]:
    """Distinct agent requests the API server saw, by verb (its audit log from `since`),
    and of those (watches aside) the ones it completed after the master stopped the agents
    at `stop_at` (epoch seconds). Agents count a request when its answer is read, so a
    stopped agent may never count those."""
    seen: dict[str, str] = {}
    late: dict[str, str] = {}
    prefix = user_agent.split("/")[0] + "/"
    with audit.open("rb") as f:
        f.seek(since)
        for line in f:
            ev = json.loads(line)
            if not ev.get("userAgent", "").startswith(prefix):
                continue
            verb = seen[ev["auditID"]] = ev["verb"].upper()
            if verb != "WATCH" and _epoch(ev["stageTimestamp"]) > stop_at:
                late[ev["auditID"]] = verb
    return Counter(seen.values()), Counter(late.values())


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def by_verb(requests: dict[str, int]) -> Counter[str]:
    """The agents' counters ("LIST pods [node]": n) summed by verb."""
    out: Counter[str] = Counter()
    for name, n in requests.items():
        out[name.split()[0].replace("POLL", "LIST")] += n
    return out


def one(
    cluster: Any, audit: Path, profile: str, args: argparse.Namespace, selector: str, out: Path
) -> dict[str, Any]:
    since = audit.stat().st_size
    window = max(args.duration - 5, 5)
    pool = SampledWorkers(args.workers, out / "workers", end_s=window)

    def on(line: str) -> None:
        log(line)
        pool.on_log(line)

    run = AgentRun(
        profile,
        agents=args.agents,
        duration_s=args.duration,
        spawn_rate=args.spawn_rate,
        workers=args.workers,
        master_bind=f"127.0.0.1:{args.port}",
        node_selector=selector,
    )
    merged = run_agents(cluster, run, out, on, pool)
    time.sleep(3)  # the API server writes a watch's audit event when the watch ends
    seen, in_flight = audited_by_verb(
        audit, since, load_profile(profile).user_agent, pool.stopped_at
    )
    requests = merged.get("requests", {})
    sent = by_verb(requests if isinstance(requests, dict) else {})
    # equal, but for requests the server finished after the agents were stopped
    match = all(0 <= seen[v] - sent[v] <= in_flight[v] for v in set(seen) | set(sent))
    per_core = None
    if len(pool.samples) == 2:
        (t1, c1), (t2, c2) = pool.samples
        cores = [(b - a) / (t2 - t1) for a, b in zip(c1, c2, strict=True)]
        per_worker = args.agents / args.workers
        per_core = {
            "worker_cores": [round(c, 3) for c in cores],
            "agents_per_core": round(per_worker / max(sum(cores) / len(cores), 1e-6)),
            "window_s": round(t2 - t1, 1),
        }
    return {
        "profile": profile,
        "agents": args.agents,
        "workers": args.workers,
        "sent_by_verb": dict(sent),
        "apiserver_by_verb": dict(seen),
        "in_flight_at_stop": dict(in_flight),
        "exact": sent == seen,
        "match": match,
        "cpu": per_core,
        "workers_summary": merged.get("workers"),
        "agents_synced": merged.get("agents_synced"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--spawn-rate", type=float, default=50)
    ap.add_argument("--nodes", type=int, default=300)
    ap.add_argument("--pods-per-node", type=int, default=3)
    ap.add_argument("--profiles", default="kubelet-like,telemetry-v2")
    ap.add_argument("--port", type=int, default=15557, help="the master's port on loopback")
    ap.add_argument("--keep-cluster", action="store_true")
    args = ap.parse_args()
    d = Path(f"/tmp/{NAME}")
    d.mkdir(exist_ok=True)
    policy, audit = d / "audit-policy.yaml", d / "audit.log"
    policy.write_text(AUDIT_POLICY)
    provider = get_provider(
        "local", apiserver_args={"audit-policy-file": str(policy), "audit-log-path": str(audit)}
    )
    if provider.get(NAME) is not None:
        provider.delete(NAME)
    cluster = provider.create(NAME)
    rows, results = [], []
    try:
        spec = InventorySpec(
            name="bench-workers", nodes=args.nodes, pods_per_node=args.pods_per_node, namespaces=2
        )
        seeder = Seeder(cluster, spec, progress=False, log=log)
        seeder.seed()
        seeder.wait_ready(timeout=300)
        for profile in args.profiles.split(","):
            log(
                f"{profile}: {args.agents} agents on {args.workers} workers, "
                f"{args.duration:.0f}s; load {os.getloadavg()[0]:.1f}"
            )
            r = one(cluster, audit, profile, args, f"{LABEL}={spec.name}", d / profile)
            r["load_average"] = os.getloadavg()
            results.append(r)
            cpu = r["cpu"] or {}
            rows.append(
                [
                    profile,
                    args.agents,
                    args.workers,
                    cpu.get("agents_per_core", "-"),
                    json.dumps(r["sent_by_verb"]),
                    json.dumps(r["apiserver_by_verb"]),
                    json.dumps(r["in_flight_at_stop"]),
                    ("yes" if r["exact"] else "yes, but in flight") if r["match"] else "NO",
                ]
            )
    finally:
        if not args.keep_cluster:
            provider.delete(NAME)
    print(
        table(
            rows,
            [
                "profile",
                "agents",
                "workers",
                "agents/core",
                "workers sent",
                "API server saw",
                "in flight at stop",
                "equal",
            ],
        )
    )
    write_result("workers", {"args": vars(args), "results": results})
    return 0 if all(r["match"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
