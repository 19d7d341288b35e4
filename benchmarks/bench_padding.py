"""`make bench-padding`: what the seeded objects' padding does to a cluster-wide LIST.

1. gzip level 1 ratios (decoded / compressed) of real objects: Kubernetes' own testdata (a
   GKE node and a Deployment's pod, read from the Go module cache the toolchain build
   filled; never copied into the repository) and, with `--kind NAME`, the kube-system pods
   and the nodes of a kind cluster; then of seeded objects padded the old way (one repeated
   character) and the new way (loadtest/inventory/padding.py).
2. On one local cluster, two inventories side by side, `old` and `new` (the same spec, each
   object Running under KWOK). Rounds of LISTs alternate old / new / none: cluster-wide pods
   and nodes LISTs by label selector, resourceVersion=0 (the watch cache, as informers do),
   JSON and protobuf, Accept-Encoding gzip. Per LIST: bytes on the wire (gzip) and decoded,
   from the responses and from apiserver_response_sizes, and kube-apiserver CPU seconds
   (process_cpu_seconds_total from /metrics; /proc too). The `none` selector matches nothing:
   what walking the cache costs, paid the same by both.

    python benchmarks/bench_padding.py --nodes 100 --pods-per-node 20 --lists 10 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    create_cluster,
    delete_cluster,
    log,
    state_dir,
    table,
    write_result,
)
from loadtest.clusters.base import Cluster, http_client  # noqa: E402
from loadtest.config import InventorySpec  # noqa: E402
from loadtest.errors import ClusterError  # noqa: E402
from loadtest.inventory import padding  # noqa: E402
from loadtest.inventory import seed as inventory
from loadtest.inventory.seed import LABEL, Seeder, node_manifest, pod_manifest  # noqa: E402
from loadtest.measurements import (
    host,  # noqa: E402
    metrics,
)

CLUSTER = "bench-padding"
FORMATS = {"json": "application/json", "protobuf": "application/vnd.kubernetes.protobuf"}
# Real objects in the Go module cache (relative to it), by kind.
TESTDATA = {
    "node": "k8s.io/apimachinery@*/pkg/util/managedfields/node.yaml",
    "pod": "k8s.io/apiserver@*/pkg/endpoints/handlers/responsewriters/testdata/pod.json",
}


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@contextlib.contextmanager
def old_padding() -> Iterator[None]:
    """The inventory as it was: padding of one repeated character, digests of one number
    written in 64 hex digits (mostly zeros)."""
    filler, digest = padding.filler, inventory._digest

    def zeros(text: str) -> str:
        return f"sha256:{int(''.join(c for c in text if c.isdigit()) or 0):064x}"

    padding.filler = lambda key, size, fresh: "x" * size
    inventory._digest = zeros
    try:
        yield
    finally:
        padding.filler, inventory._digest = filler, digest


# --- 1. ratios of real and seeded objects (no cluster needed) -------------------------------


def _modcache() -> Path:
    env = os.environ.get("GOMODCACHE") or os.path.join(
        os.environ.get("GOPATH") or os.path.expanduser("~/go"), "pkg", "mod"
    )
    return Path(env)


def testdata_samples() -> list[dict[str, Any]]:
    out = []
    for kind, pattern in TESTDATA.items():
        paths = sorted(glob.glob(str(_modcache() / pattern)))
        if not paths:
            log(f"no {pattern} in {_modcache()}: skipped")
            continue
        obj = yaml.safe_load(Path(paths[-1]).read_text())
        body = _compact(obj)
        out.append(
            {
                "source": f"testdata {Path(paths[-1]).relative_to(_modcache())}",
                "kind": kind,
                "objects": 1,
                "bytes": len(body),
                "ratio_object": round(padding.gzip_ratio(body), 2),
                "ratio_list": None,
            }
        )
    return out


def kind_samples(name: str) -> list[dict[str, Any]]:
    """kube-system pods and all nodes of a kind cluster: real objects with managedFields,
    status, images. Ratios computed here with zlib level 1 (lists this small are not gzipped
    by the server)."""
    from loadtest.clusters.kind import KindProvider

    cluster = KindProvider().get(name)
    if cluster is None:
        raise ClusterError(f"no kind cluster {name!r}")
    out = []
    with http_client(cluster, timeout=30) as c:
        for kind, path in (
            ("pod", "/api/v1/namespaces/kube-system/pods"),
            ("node", "/api/v1/nodes"),
        ):
            r = c.get(path)
            r.raise_for_status()
            body = r.json()
            items = body["items"]
            per = [padding.gzip_ratio(_compact(o)) for o in items]
            pb = c.get(path, headers={"Accept": FORMATS["protobuf"]})
            pb.raise_for_status()
            out.append(
                {
                    "source": f"kind {name} {path}",
                    "kind": kind,
                    "objects": len(items),
                    "bytes": round(statistics.median(len(_compact(o)) for o in items)),
                    "ratio_object": round(statistics.median(per), 2),
                    "ratio_list": round(padding.gzip_ratio(r.content), 2),
                    "ratio_list_protobuf": round(padding.gzip_ratio(pb.content), 2),
                }
            )
    return out


def seeded_samples(spec: InventorySpec) -> list[dict[str, Any]]:
    """Seeded objects as created (the server adds managedFields, status, uid on top)."""
    out = []
    for label, ctx in (("old", old_padding()), ("new", contextlib.nullcontext())):
        with ctx:
            pods = sorted(
                (pod_manifest(spec, p) for p in range(spec.pods)),
                key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]),
            )
            nodes = [node_manifest(spec, i) for i in range(spec.nodes)]
        for kind, objs in (("pod", pods), ("node", nodes)):
            out.append(
                {
                    "source": f"seeded, {label} padding",
                    "kind": kind,
                    "objects": len(objs),
                    "bytes": len(_compact(objs[0])),
                    "ratio_object": round(padding.gzip_ratio(_compact(objs[0])), 2),
                    "ratio_list": round(padding.gzip_ratio(_compact({"items": objs})), 2),
                }
            )
    return out


# --- 2. LIST cost on a real API server -------------------------------------------------------


def _apiserver_pid(name: str) -> dict[int, str]:
    return {p: c for p, c in host.cluster_pids(state_dir(name)).items() if c == "kube-apiserver"}


def _scrape(c: Any) -> dict[tuple[str, metrics.Labels], float]:
    text = c.get("/metrics").text
    return metrics.index(
        metrics.parse(text, ["process_cpu_seconds_total", "apiserver_response_sizes"])
    )


def list_batch(
    cluster: Cluster, pids: dict[int, str], resource: str, selector: str, accept: str, lists: int
) -> dict[str, Any]:
    """`lists` LISTs one after the other; the API server's CPU and bytes per LIST."""
    params = {"labelSelector": selector, "resourceVersion": "0"}
    with http_client(cluster, timeout=120) as c:
        m0 = _scrape(c)
        p0, t0 = host.snapshot(pids), time.monotonic()
        sizes = [padding.get_sizes(c, f"/api/v1/{resource}", params, accept) for _ in range(lists)]
        p1, t1 = host.snapshot(pids), time.monotonic()
        m1 = _scrape(c)
    cpu_metrics = metrics.counter_delta(m0, m1, "process_cpu_seconds_total").get((), 0.0)
    by = ("verb", "resource")
    resp_sum = metrics.counter_delta(m0, m1, "apiserver_response_sizes_sum", by)
    resp_n = metrics.counter_delta(m0, m1, "apiserver_response_sizes_count", by)
    key = ("LIST", resource)
    last = sizes[-1]
    return {
        "lists": lists,
        "seconds": round(t1 - t0, 2),
        "cpu_ms_per_list_proc": round(
            1000 * host.cpu_delta(p0, p1).get("kube-apiserver", 0.0) / lists, 1
        ),
        # includes the two /metrics scrapes around the batch
        "cpu_ms_per_list_metrics": round(1000 * cpu_metrics / lists, 1),
        "wire_bytes": statistics.median(s.wire for s in sizes),
        "decoded_bytes": statistics.median(s.decoded for s in sizes),
        "gzipped": all(s.gzipped for s in sizes),
        "ratio_server": round(last.ratio, 2),
        "ratio_zlib1": round(padding.gzip_ratio(last.body), 2),
        "apiserver_response_sizes_mean": round(resp_sum.get(key, 0.0) / resp_n[key])
        if resp_n.get(key)
        else None,
    }


def server_side(
    spec: InventorySpec, lists: int, rounds: int, wait: float, formats: list[str]
) -> dict[str, Any]:
    create_cluster(
        CLUSTER,
        {"max-requests-inflight": "1000", "max-mutating-requests-inflight": "1000"},
        ["--disable", "kube-scheduler", "--disable-qps-limits"],
        kwok_options={"podPlayStageParallelism": 64, "nodePlayStageParallelism": 16},
    )
    try:
        from loadtest.clusters.local import LocalProvider

        cluster = LocalProvider().get(CLUSTER)
        assert cluster is not None
        seeded = {}
        for label, ctx in (("old", old_padding()), ("new", contextlib.nullcontext())):
            s = spec.model_copy(update={"name": label})
            seeder = Seeder(cluster, s, log=log, progress=False)
            with ctx:
                seeded[label] = seeder.seed().created
            seeder.wait_ready(timeout=wait)
        time.sleep(10)  # let KWOK's status writes settle
        pids = _apiserver_pid(CLUSTER)
        runs: list[dict[str, Any]] = []
        for rnd in range(rounds):
            for resource in ("pods", "nodes"):
                for fmt in formats:
                    for label in ("old", "new", "none"):
                        r = list_batch(
                            cluster, pids, resource, f"{LABEL}={label}", FORMATS[fmt], lists
                        )
                        runs.append(
                            {
                                "round": rnd + 1,
                                "resource": resource,
                                "format": fmt,
                                "padding": label,
                                **r,
                            }
                        )
                        log(
                            f"round {rnd + 1} {resource} {fmt} {label}: "
                            f"{r['cpu_ms_per_list_proc']} ms/LIST, "
                            f"{r['wire_bytes']:,} B wire, {r['decoded_bytes']:,} B decoded"
                        )
        return {"seeded": seeded, "runs": runs}
    finally:
        delete_cluster(CLUSTER)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median over rounds per resource, format and padding."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["resource"], r["format"], r["padding"]), []).append(r)
    out = []
    for (res, fmt, pad), rs in groups.items():
        out.append(
            {
                "resource": res,
                "format": fmt,
                "padding": pad,
                **{
                    k: statistics.median(r[k] for r in rs)
                    for k in (
                        "cpu_ms_per_list_proc",
                        "cpu_ms_per_list_metrics",
                        "wire_bytes",
                        "decoded_bytes",
                        "ratio_server",
                        "ratio_zlib1",
                    )
                },
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--pods-per-node", type=int, default=20)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--lists", type=int, default=10, help="LISTs per batch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", default="json,protobuf")
    ap.add_argument("--kind", default="", help="a kind cluster to sample real objects from")
    ap.add_argument("--samples-only", action="store_true", help="no local cluster")
    ap.add_argument("--wait", type=float, default=600, help="seconds to wait for KWOK")
    a = ap.parse_args(argv)
    spec = InventorySpec(
        name="bench", nodes=a.nodes, pods_per_node=a.pods_per_node, namespaces=a.namespaces
    )
    load_before = os.getloadavg()
    samples = testdata_samples() + (kind_samples(a.kind) if a.kind else [])
    samples += seeded_samples(spec.model_copy(update={"nodes": min(a.nodes, 50)}))
    print("gzip level 1 ratios (zlib; decoded / compressed):")
    print(
        table(
            [
                [
                    s["source"],
                    s["kind"],
                    s["objects"],
                    s["bytes"],
                    s["ratio_object"],
                    s["ratio_list"] if s["ratio_list"] is not None else "-",
                ]
                for s in samples
            ],
            ["source", "kind", "objects", "bytes (one)", "ratio one", "ratio list"],
        )
    )
    result: dict[str, Any] = {
        "spec": spec.model_dump(),
        "samples": samples,
        "targets": {
            "object": padding.RATIOS,
            "list": padding.LIST_RATIOS,
            "list_tolerance": padding.LIST_TOLERANCE,
        },
    }
    if not a.samples_only:
        server = server_side(spec, a.lists, a.rounds, a.wait, a.formats.split(","))
        result |= server | {"summary": summarize(server["runs"])}
        print()
        print(
            f"Cluster-wide LISTs by label selector, RV=0, Accept-Encoding gzip; median of "
            f"{a.rounds} rounds x {a.lists} LISTs; {spec.pods} pods / {spec.nodes} nodes "
            "per inventory:"
        )
        print(
            table(
                [
                    [
                        s["resource"],
                        s["format"],
                        s["padding"],
                        s["cpu_ms_per_list_proc"],
                        s["cpu_ms_per_list_metrics"],
                        s["wire_bytes"],
                        s["decoded_bytes"],
                        s["ratio_server"],
                        s["ratio_zlib1"],
                    ]
                    for s in result["summary"]
                ],
                [
                    "resource",
                    "format",
                    "padding",
                    "apiserver CPU ms/LIST (/proc)",
                    "(/metrics)",
                    "wire B",
                    "decoded B",
                    "ratio (server)",
                    "ratio (zlib 1)",
                ],
            )
        )
    result["load_average_before"] = load_before
    result["load_average_after"] = os.getloadavg()
    print(f"\nload average before {load_before}, after {result['load_average_after']}")
    write_result("bench-padding", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
