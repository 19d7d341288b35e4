"""CPU per pod create, harness and API server, by request set-up (part of bench-seed's story).

Creates K seeder pods (bound to a node that does not exist, so KWOK and the scheduler stay
out) with the seeder's client (httpx, asyncio) over HTTP/2 (few connections, many streams)
and HTTP/1.1 (a connection per request in flight), and with the API server's cheaper paths
(`fieldValidation=Ignore`: no strict decode for unknown/duplicate fields; a protobuf
response, which the seeder never reads). Reports CPU per request of this process (the
harness) and of kube-apiserver and etcd.

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

from benchmarks.common import (  # noqa: E402
    create_cluster,
    delete_cluster,
    log,
    state_dir,
    table,
    write_result,
)
from loadtest.clusters.base import Cluster, async_http_client  # noqa: E402
from loadtest.config import InventorySpec  # noqa: E402
from loadtest.inventory.seed import LABEL, pod_manifest  # noqa: E402
from loadtest.measurements import host  # noqa: E402

H2 = {"http2": True, "limits": httpx.Limits(max_connections=8)}
PROTO = "application/vnd.kubernetes.protobuf"
# label -> (client options, query parameters, extra headers)
MODES: dict[str, tuple[dict[str, Any], dict[str, str], dict[str, str]]] = {
    "http2 x8 (seeder today)": (H2, {}, {}),
    "http1.1 x48": ({"http2": False, "limits": httpx.Limits(max_connections=48)}, {}, {}),
    "http2 x8 + fieldValidation=Ignore": (H2, {"fieldValidation": "Ignore"}, {}),
    "http2 x8 + Ignore + protobuf reply": (
        H2,
        {"fieldValidation": "Ignore"},
        {"Accept": f"{PROTO}, application/json"},
    ),
}


SPEC = InventorySpec(name="client", nodes=1, pods_per_node=1)


def pod(prefix: str, i: int) -> bytes:
    m = pod_manifest(SPEC, i)
    m["metadata"] |= {"name": f"{prefix}-{i}", "namespace": "default"}
    m["spec"]["nodeName"] = "no-such-node"
    return json.dumps(m, separators=(",", ":")).encode()


async def create_many(
    cluster: Cluster,
    opts: dict[str, Any],
    params: dict[str, str],
    headers: dict[str, str],
    prefix: str,
    count: int,
    concurrency: int,
) -> None:
    names = iter(range(count))
    async with async_http_client(cluster, timeout=60, **opts) as c:

        async def worker() -> None:
            for i in names:
                r = await c.post(
                    "/api/v1/namespaces/default/pods",
                    content=pod(prefix, i),
                    params=params,
                    headers={"Content-Type": "application/json", **headers},
                )
                if r.status_code not in (201, 409):
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def delete_all(cluster: Cluster) -> None:
    async with async_http_client(cluster, timeout=120) as c:
        await c.delete(
            "/api/v1/namespaces/default/pods",
            params={"labelSelector": LABEL, "gracePeriodSeconds": "0"},
        )


async def wait_default_sa(cluster: Cluster) -> None:
    async with async_http_client(cluster, timeout=10) as c:
        for _ in range(120):
            if (await c.get("/api/v1/namespaces/default/serviceaccounts/default")).is_success:
                return
            await asyncio.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, default=48)
    a = ap.parse_args(argv)
    name = "bench-client"
    cluster = create_cluster(name, kwokctl_flags=["--disable", "kube-scheduler"])
    rows, runs = [], []
    pids = host.cluster_pids(state_dir(name))
    try:
        asyncio.run(wait_default_sa(cluster))
        for k, (label, (opts, params, headers)) in enumerate(MODES.items()):
            load = host.load_average()[0]
            s0, c0, t0 = host.snapshot(pids), host.self_cpu_seconds(), time.monotonic()
            asyncio.run(
                create_many(cluster, opts, params, headers, f"m{k}", a.count, a.concurrency)
            )
            cpu, wall = host.self_cpu_seconds() - c0, time.monotonic() - t0
            cp = host.cpu_delta(s0, host.snapshot(pids))
            run = {
                "mode": label,
                "requests": a.count,
                "cpu_seconds": round(cpu, 3),
                "wall_seconds": round(wall, 2),
                "cpu_ms_per_request": 1000 * cpu / a.count,
                "apiserver_cpu_ms_per_request": 1000 * cp.get("kube-apiserver", 0) / a.count,
                "etcd_cpu_ms_per_request": 1000 * cp.get("etcd", 0) / a.count,
                "requests_per_second": a.count / wall,
                "load1": load,
                "control_plane": cp,
            }
            runs.append(run)
            rows.append(
                [
                    label,
                    a.count,
                    run["cpu_ms_per_request"],
                    run["apiserver_cpu_ms_per_request"],
                    run["etcd_cpu_ms_per_request"],
                    run["requests_per_second"],
                    load,
                ]
            )
            log(f"{label}: {run}")
            asyncio.run(delete_all(cluster))
    finally:
        delete_cluster(name)
    print(
        table(
            rows,
            [
                "client",
                "creates",
                "harness ms/req",
                "apiserver ms/req",
                "etcd ms/req",
                "req/s",
                "load1",
            ],
        )
    )
    write_result("bench-client", {"runs": runs, "concurrency": a.concurrency})
    return 0


if __name__ == "__main__":
    sys.exit(main())
