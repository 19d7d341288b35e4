"""Everyone else while the agents run: another tenant, and the operator's break-glass path.

Two roles, each timed at the client in its own process (like the DNS probe, so the harness's
own pauses are not counted as API latency):
- bystander: a ServiceAccount of another namespace (APF's suggested `service-accounts`
  FlowSchema puts it in workload-low, where unconfined agents land too) LISTs its namespace's
  configmaps at a fixed rate: what the agents do to other tenants, and what a mitigation
  gives back;
- break-glass: the harness's own admin identity (exempt from APF) PATCHes an annotation, the
  write `kubectl rollout undo` makes: evidence that an operator could still roll back.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtest.clusters.base import Cluster, apply_object, http_client
from loadtest.errors import ClusterError
from loadtest.measurements.base import Ticker
from loadtest.results import JsonlWriter, read_jsonl

NAMESPACE = "loadtest-bystander"
USER = f"system:serviceaccount:{NAMESPACE}:app"
GROUPS = ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}",
          "system:authenticated"]
CONFIGMAPS = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
ROLLBACK_TARGET = "rollback-target"


@dataclass(frozen=True)
class Role:
    name: str  # the measurement's key in the summary
    user: str | None  # impersonated; None: the harness's own (break-glass) identity
    method: str
    path: str
    what: str


BYSTANDER = Role("bystander", USER, "GET", CONFIGMAPS, "namespace LIST of another tenant")
BREAK_GLASS = Role("break_glass", None, "PATCH", f"{CONFIGMAPS}/{ROLLBACK_TARGET}",
                   "break-glass PATCH (as a rollback writes)")
ROLES = {r.name: r for r in (BYSTANDER, BREAK_GLASS)}


def ensure_objects(cluster: Cluster) -> None:
    """The bystander may list configmaps in its own namespace, nothing else; the break-glass
    role patches one configmap there. Server-side applied; a refusal is a one-line error
    (without them both roles would only measure their own 403s)."""
    rbac = "rbac.authorization.k8s.io"
    with http_client(cluster) as c:
        for coll, obj in (
            ("/api/v1/namespaces",
             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            (CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": ROLLBACK_TARGET, "namespace": NAMESPACE}}),
            (f"/apis/{rbac}/v1/namespaces/{NAMESPACE}/roles",
             {"apiVersion": f"{rbac}/v1", "kind": "Role",
              "metadata": {"name": "reader", "namespace": NAMESPACE}, "rules": [
                  {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}),
            (f"/apis/{rbac}/v1/namespaces/{NAMESPACE}/rolebindings",
             {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding",
              "metadata": {"name": "reader", "namespace": NAMESPACE},
              "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "reader"},
              "subjects": [{"kind": "User", "apiGroup": rbac, "name": USER}]}),
        ):
            try:
                apply_object(c, coll, obj)
            except ClusterError as e:
                raise ClusterError(f"setting up the bystander and break-glass roles: {e}") \
                    from None


class Bystander:
    """One role's requests at a fixed rate, from start to gather."""

    def __init__(self, cluster: Cluster, cluster_json: Path, raw: Path,
                 rate_hz: float = 5.0, role: Role = BYSTANDER) -> None:
        self.cluster = cluster
        self.raw = raw
        self.role = role
        self.name = role.name
        self.cmd = [sys.executable, "-m", "loadtest.measurements.bystander",
                    "--cluster-json", str(cluster_json), "--rate", str(rate_hz),
                    "--out", str(raw), "--role", role.name]
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        ensure_objects(self.cluster)
        self._proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, text=True,
                                      cwd=Path(__file__).resolve().parents[2])

    def gather(self) -> dict[str, Any]:
        if self._proc is not None and self._proc.stdin:
            self._proc.stdin.close()  # EOF: stop
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return summarize(read_jsonl(self.raw), self.role)


def summarize(records: list[dict[str, Any]], role: Role = BYSTANDER) -> dict[str, Any]:
    if not records:
        return {"error": f"the {role.name} role recorded nothing"}
    ok = sorted(r["ms"] for r in records if r["status"] == 200)
    throttled = sum(1 for r in records if r["status"] == 429)
    errors = sum(1 for r in records if r["status"] != 200)
    return {"user": role.user or "the harness's admin identity", "what": role.what,
            "count": len(records), "errors": errors, "throttled_429": throttled,
            "p50_ms": ok[len(ok) // 2] if ok else None,
            "p99_ms": ok[min(len(ok) - 1, int(0.99 * len(ok)))] if ok else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="loadtest-bystander")
    ap.add_argument("--cluster-json", type=Path, required=True)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-s", type=float, default=6 * 3600)
    ap.add_argument("--role", choices=sorted(ROLES), default=BYSTANDER.name)
    a = ap.parse_args(argv)
    role = ROLES[a.role]
    cluster = Cluster.from_json(a.cluster_json.read_text())
    writer = JsonlWriter(a.out)
    # one Impersonate-Group header per group (httpx sends repeated pairs as given)
    headers = ([("Impersonate-User", role.user)] + [("Impersonate-Group", g) for g in GROUPS]
               if role.user else [])
    client = http_client(cluster, timeout=60)

    def tick() -> None:
        t0 = time.perf_counter()
        try:
            if role.method == "GET":
                r = client.get(role.path, params={"limit": "10"}, headers=headers)
            else:
                patch = {"metadata": {"annotations": {"loadtest/rolled-back-at": str(t0)}}}
                r = client.patch(role.path, content=json.dumps(patch), headers=[
                    *headers, ("Content-Type", "application/merge-patch+json")])
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
