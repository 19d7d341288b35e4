"""`make bench-seed`: how fast the seeder fills a local control plane, and where time goes.

For each variant: a fresh local cluster (bench-seed-<variant>), one seed of N nodes x M pods,
CPU seconds per component (harness, kube-apiserver, etcd, KWOK, controller manager,
scheduler) across the create phase and across KWOK bringing everything Running, RSS at the
end, and the pod creation rate. The extrapolation to the 5,000 x 30 goal assumes the pod
phase stays CPU-bound at the measured CPU per pod (stated in the output).

    python benchmarks/bench_seed.py --nodes 200 --pods-per-node 30 --variants baseline,tuned
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    create_cluster,
    delete_cluster,
    log,
    state_dir,
    table,
    write_result,
)
from loadtest.config import InventorySpec  # noqa: E402
from loadtest.errors import ClusterError  # noqa: E402
from loadtest.inventory.seed import Seeder, expected_counts  # noqa: E402
from loadtest.measurements import host  # noqa: E402

GOAL_NODES, GOAL_PODS, GOAL_SECONDS = 5_000, 150_000, 300
GiB = 1 << 30

# What an expert tries on a 2-core box, beyond the harness's own concurrency.
VARIANTS: dict[str, dict[str, Any]] = {
    # the local provider as `loadtest cluster up` makes it
    "baseline": {"apiserver_args": {}, "kwokctl_flags": []},
    # pods carry nodeName: the scheduler only burns CPU watching them; client QPS limits
    # of KCM/KWOK would throttle EndpointSlice and status updates; more inflight slots.
    # KWOK marks pods Running with 4 workers by default: latency-bound under load.
    "tuned": {
        "apiserver_args": {
            "max-requests-inflight": "1000",
            "max-mutating-requests-inflight": "1000",
        },
        "kwokctl_flags": ["--disable", "kube-scheduler", "--disable-qps-limits"],
        "kwok_options": {"podPlayStageParallelism": 64, "nodePlayStageParallelism": 16},
    },
    # tuned, and no controller manager at all (no EndpointSlices: shows KCM's share).
    "no-kcm": {
        "apiserver_args": {
            "max-requests-inflight": "1000",
            "max-mutating-requests-inflight": "1000",
        },
        "kwokctl_flags": [
            "--disable",
            "kube-scheduler",
            "--disable",
            "kube-controller-manager",
            "--disable-qps-limits",
        ],
        "kwok_options": {"podPlayStageParallelism": 64, "nodePlayStageParallelism": 16},
    },
}


def run_variant(variant: str, spec: InventorySpec, concurrency: int, wait: float) -> dict[str, Any]:
    name = f"bench-seed-{variant}"
    conf = VARIANTS[variant]
    load_before = os.getloadavg()
    create_cluster(
        name, conf["apiserver_args"], conf["kwokctl_flags"], kwok_options=conf.get("kwok_options")
    )
    try:
        cluster = _get(name)
        pids = host.cluster_pids(state_dir(name))
        seeder = Seeder(cluster, spec, concurrency=concurrency, log=log, progress=False)
        snap0, self0, t0 = host.snapshot(pids), host.self_cpu_seconds(), time.monotonic()
        result = seeder.seed()
        snap1, self1, t1 = host.snapshot(pids), host.self_cpu_seconds(), time.monotonic()
        try:
            ready: dict[str, Any] = seeder.wait_ready(timeout=wait)
        except ClusterError as e:  # a bounded run still reports what it got
            ready = {"timed_out": str(e)}
        snap2, self2, t2 = host.snapshot(pids), host.self_cpu_seconds(), time.monotonic()
        time.sleep(5)  # let KWOK/KCM settle, then read memory
        snap3 = host.snapshot(pids)
        counts = seeder.counts()
        create_cpu = host.cpu_delta(snap0, snap1) | {"harness": round(self1 - self0, 3)}
        ready_cpu = host.cpu_delta(snap1, snap2) | {"harness": round(self2 - self1, 3)}
        etcd_db = sum(f.stat().st_size for f in state_dir(name).rglob("etcd/member/snap/db"))
    finally:
        delete_cluster(name)
    created = result.total_created
    pods = result.created.get("pods", 0)
    pod_s = result.phase_seconds.get("pods", 0.0)
    return {
        "variant": variant,
        "config": conf,
        "concurrency": concurrency,
        "spec": spec.model_dump(),
        "objects_created": result.created,
        "counts": counts,
        "expected": expected_counts(spec),
        "ready": ready,
        "create_seconds": round(t1 - t0, 2),
        "ready_after_create_seconds": round(t2 - t1, 2),
        "phase_seconds": result.phase_seconds,
        "objects_per_second": round(created / (t1 - t0), 1),
        "pods_per_second": round(pods / pod_s, 1) if pod_s else 0.0,
        "cpu_seconds_create": create_cpu,
        "cpu_seconds_until_ready": ready_cpu,
        "cpu_ms_per_object": {
            k: round(1000 * v / max(created, 1), 3) for k, v in create_cpu.items()
        },
        "rss_bytes": {k: s.rss_bytes for k, s in snap3.items()},
        "rss_bytes_empty": {k: s.rss_bytes for k, s in snap0.items()},
        "etcd_db_bytes": etcd_db,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def _get(name: str) -> Any:
    from loadtest.clusters.local import LocalProvider

    c = LocalProvider().get(name)
    assert c is not None
    return c


def extrapolate(r: dict[str, Any], spec: InventorySpec) -> dict[str, Any]:
    """The goal's time if the seed stays CPU-bound at the measured CPU per object, on 2 cores.

    Work done while creating and while KWOK catches up both count: the machine has to
    absorb both. Memory grows linearly in objects (watch cache + etcd hold every object),
    fitted through the origin from the RSS above each component's empty-cluster baseline.
    """
    created = sum(r["objects_created"].values())
    cpu = sum(r["cpu_seconds_create"].values()) + sum(r["cpu_seconds_until_ready"].values())
    cpu_per_obj = cpu / max(created, 1)
    goal_objects = GOAL_NODES + GOAL_PODS
    cpu_bound_s = goal_objects * cpu_per_obj / (os.cpu_count() or 2)
    wall_s = goal_objects * (r["create_seconds"] + r["ready_after_create_seconds"]) / created
    grow = {
        c: (r["rss_bytes"].get(c, 0) - r["rss_bytes_empty"].get(c, 0)) / max(created, 1)
        for c in ("kube-apiserver", "etcd", "kwok-controller", "kube-controller-manager")
    }
    per_obj = sum(max(v, 0.0) for v in grow.values())
    base = sum(r["rss_bytes_empty"].values())
    fit = int((24 * GiB - base) / per_obj) if per_obj > 0 else 0
    return {
        "cpu_ms_per_object_all_components": round(1000 * cpu_per_obj, 3),
        "rss_bytes_per_object": {k: round(v) for k, v in grow.items()},
        "objects_fitting_24GiB_linear": fit,
        "goal_objects": goal_objects,
        "goal_seconds_at_measured_rate": round(wall_s),
        "goal_seconds_if_both_cores_fully_used": round(cpu_bound_s),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--pods-per-node", type=int, default=30)
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=48)
    ap.add_argument(
        "--variants", default="baseline,tuned", help=f"comma-separated, of {sorted(VARIANTS)}"
    )
    ap.add_argument("--wait", type=float, default=600, help="seconds to wait for KWOK")
    a = ap.parse_args(argv)
    spec = InventorySpec(
        name="bench", nodes=a.nodes, pods_per_node=a.pods_per_node, namespaces=a.namespaces
    )
    runs = []
    for v in a.variants.split(","):
        log(
            f"variant {v}: {a.nodes} nodes x {a.pods_per_node} pods, concurrency "
            f"{a.concurrency}; load {os.getloadavg()}"
        )
        r = run_variant(v, spec, a.concurrency, a.wait)
        r["extrapolation"] = extrapolate(r, spec)
        runs.append(r)
    comps = [
        "harness",
        "kube-apiserver",
        "etcd",
        "kwok-controller",
        "kube-controller-manager",
        "kube-scheduler",
        "coredns",
    ]
    print(
        table(
            [
                [
                    r["variant"],
                    sum(r["objects_created"].values()),
                    r["create_seconds"],
                    r["objects_per_second"],
                    r["pods_per_second"],
                    r["ready_after_create_seconds"],
                    r["extrapolation"]["goal_seconds_at_measured_rate"],
                    r["extrapolation"]["goal_seconds_if_both_cores_fully_used"],
                    f"{r['load_average_before'][0]:.1f}->{r['load_average_after'][0]:.1f}",
                ]
                for r in runs
            ],
            [
                "variant",
                "objects",
                "create s",
                "obj/s",
                "pods/s",
                "ready +s",
                "goal s (rate)",
                "goal s (2 cores)",
                "load1",
            ],
        )
    )
    print()
    print("CPU seconds while creating (and until all Running):")
    print(
        table(
            [
                [
                    r["variant"],
                    *[
                        f"{r['cpu_seconds_create'].get(c, 0):.1f} "
                        f"(+{r['cpu_seconds_until_ready'].get(c, 0):.1f})"
                        for c in comps
                    ],
                ]
                for r in runs
            ],
            ["variant", *comps],
        )
    )
    print()
    print("RSS MiB at the end:")
    print(
        table(
            [
                [
                    r["variant"],
                    *[r["rss_bytes"].get(c, 0) / (1 << 20) for c in comps],
                    r["etcd_db_bytes"] / (1 << 20),
                ]
                for r in runs
            ],
            ["variant", *comps, "etcd db"],
        )
    )
    write_result("bench-seed", {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
