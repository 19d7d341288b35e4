"""Everyone else: a bystander workload's reads while the agents run.

A ServiceAccount of another namespace (so APF's suggested `service-accounts` FlowSchema puts
it in workload-low, where unconfined agents land too) LISTs a namespace's configmaps at a
fixed rate; latency, status and 429s show what the agents do to other tenants, and what a
mitigation gives back. Runs in its own process, like the DNS probe, so the harness's own
pauses are not counted as API latency.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from loadtest.clusters.base import Cluster, http_client
from loadtest.measurements.base import Ticker
from loadtest.results import JsonlWriter, read_jsonl

NAMESPACE = "loadtest-bystander"
USER = f"system:serviceaccount:{NAMESPACE}:app"
GROUPS = ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}",
          "system:authenticated"]
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps"


def ensure_rbac(cluster: Cluster) -> None:
    """The bystander may list configmaps in its own namespace, nothing else."""
    with http_client(cluster) as c:
        for coll, obj in (
            ("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}),
            (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/roles",
             {"metadata": {"name": "reader"}, "rules": [
                 {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}),
            (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings",
             {"metadata": {"name": "reader"},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                          "name": "reader"},
              "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                            "name": USER}]}),
        ):
            c.post(coll, json=obj)  # 409 on a rerun is fine


class Bystander:
    name = "bystander"

    def __init__(self, cluster: Cluster, cluster_json: Path, raw: Path,
                 rate_hz: float = 5.0) -> None:
        self.cluster = cluster
        self.raw = raw
        self.cmd = [sys.executable, "-m", "loadtest.measurements.bystander",
                    "--cluster-json", str(cluster_json), "--rate", str(rate_hz),
                    "--out", str(raw)]
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        ensure_rbac(self.cluster)
        self._proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, text=True,
                                      cwd=Path(__file__).resolve().parents[2])

    def gather(self) -> dict[str, Any]:
        if self._proc is not None and self._proc.stdin:
            self._proc.stdin.close()  # EOF: stop
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return summarize(read_jsonl(self.raw))


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not records:
        return {"error": "the bystander recorded nothing"}
    ok = sorted(r["ms"] for r in records if r["status"] == 200)
    throttled = sum(1 for r in records if r["status"] == 429)
    errors = sum(1 for r in records if r["status"] != 200)
    return {"user": USER, "count": len(records), "errors": errors, "throttled_429": throttled,
            "p50_ms": ok[len(ok) // 2] if ok else None,
            "p99_ms": ok[min(len(ok) - 1, int(0.99 * len(ok)))] if ok else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="loadtest-bystander")
    ap.add_argument("--cluster-json", type=Path, required=True)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-s", type=float, default=6 * 3600)
    a = ap.parse_args(argv)
    cluster = Cluster.from_json(a.cluster_json.read_text())
    writer = JsonlWriter(a.out)
    client = http_client(cluster, timeout=60, headers={"Impersonate-User": USER})

    def tick() -> None:
        t0 = time.perf_counter()
        try:
            # one Impersonate-Group header per group (httpx sends repeated pairs as given)
            r = client.get(PATH, params={"limit": "10"},
                           headers=[("Impersonate-Group", g) for g in GROUPS])
            status = r.status_code
        except httpx.HTTPError:
            status = 0
        writer.write({"t": time.time(), "ms": (time.perf_counter() - t0) * 1000,
                      "status": status})

    ticker = Ticker(1.0 / a.rate, tick, "bystander")
    ticker.start()
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait(a.max_s)
    ticker.stop()
    writer.close()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
