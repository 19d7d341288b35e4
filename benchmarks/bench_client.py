"""Harness CPU per create request, by HTTP client set-up (part of `make bench-seed`'s story).

Creates the same K pods-sized ConfigMaps with the seeder's client (httpx, asyncio) over
HTTP/2 (few connections, many streams) and over HTTP/1.1 (one connection per request in
flight), and reports this process's CPU per request: the harness's own cost per object.

    python benchmarks/bench_client.py --count 1500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks.common import create_cluster, delete_cluster, log, table, write_result  # noqa: E402
from loadtest.clusters.base import Cluster, async_http_client  # noqa: E402
from loadtest.measurements import host  # noqa: E402

MODES: dict[str, dict[str, Any]] = {
    "http2, 8 connections": {"http2": True, "limits": httpx.Limits(max_connections=8)},
    "http2, 1 connection": {"http2": True, "limits": httpx.Limits(max_connections=1)},
    "http1.1, 48 connections": {"http2": False, "limits": httpx.Limits(max_connections=48)},
}


async def create_many(cluster: Cluster, mode: dict[str, Any], prefix: str, count: int,
                      concurrency: int) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"b": "1"}},
            "data": {"x": "y" * 5000}}  # the size of a seeded pod
    names = iter(range(count))
    async with async_http_client(cluster, timeout=60, **mode) as c:
        async def worker() -> None:
            for i in names:
                b = json.dumps({**body, "metadata": {**body["metadata"], "name": f"{prefix}-{i}"}},
                               separators=(",", ":")).encode()
                r = await c.post("/api/v1/namespaces/default/configmaps", content=b,
                                 headers={"Content-Type": "application/json"})
                if r.status_code not in (201, 409):
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await c.delete("/api/v1/namespaces/default/configmaps", params={"labelSelector": "b=1"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, default=48)
    a = ap.parse_args(argv)
    name = "bench-client"
    cluster = create_cluster(name, kwokctl_flags=["--disable", "kube-scheduler"])
    rows, runs = [], []
    try:
        for k, (label, mode) in enumerate(MODES.items()):
            load = host.load_average()[0]
            c0, t0 = host.self_cpu_seconds(), time.monotonic()
            asyncio.run(create_many(cluster, mode, f"m{k}", a.count, a.concurrency))
            cpu, wall = host.self_cpu_seconds() - c0, time.monotonic() - t0
            run = {"mode": label, "requests": a.count, "cpu_seconds": round(cpu, 3),
                   "wall_seconds": round(wall, 2), "cpu_ms_per_request": 1000 * cpu / a.count,
                   "requests_per_second": a.count / wall, "load1": load}
            runs.append(run)
            rows.append([label, a.count, run["cpu_ms_per_request"], run["requests_per_second"],
                         load])
            log(f"{label}: {run}")
    finally:
        delete_cluster(name)
    print(table(rows, ["client", "creates", "harness CPU ms/req", "req/s", "load1"]))
    write_result("bench-client", {"runs": runs, "concurrency": a.concurrency})
    return 0


if __name__ == "__main__":
    sys.exit(main())
