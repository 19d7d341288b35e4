"""Everyone else while the agents run: another tenant, and the operator's break-glass path.

Two roles, each timed at the client in its own process (like the DNS probe, so the harness's
own pauses are not counted as API latency):
- bystander: a ServiceAccount of another namespace (APF's suggested `service-accounts`
  FlowSchema puts it in workload-low, where unconfined agents land too) LISTs its namespace's
  configmaps at a fixed rate: what the agents do to other tenants, and what a mitigation
  gives back;
- break-glass: the harness's own admin identity (exempt from APF) PATCHes an annotation, the
  write `kubectl rollout undo` makes: evidence that an operator could still roll back.

Both are open-loop (openloop.py): a request every 1/rate s whatever the answers, timed from
its scheduled time; a timeout (10 s by default, twice the namespace-LIST SLO) or a slot that
found every worker busy is a failure. The pool is sized from the role's SLO threshold, so a
server within the SLO never leaves a slot unsent.
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
from loadtest.measurements import openloop
from loadtest.measurements.openloop import OpenLoopSummary
from loadtest.results import JsonlWriter, read_jsonl

NAMESPACE = "loadtest-bystander"
USER = f"system:serviceaccount:{NAMESPACE}:app"
GROUPS = ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated"]
CONFIGMAPS = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
ROLLBACK_TARGET = "rollback-target"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Role:
    name: str  # the measurement's key in the summary
    user: str | None  # impersonated; None: the harness's own (break-glass) identity
    method: str
    path: str
    what: str


BYSTANDER = Role(
    "bystander",
    USER,
    "GET",
    CONFIGMAPS,
    "namespace LIST of another tenant",
)
BREAK_GLASS = Role(
    "break_glass",
    None,
    "PATCH",
    f"{CONFIGMAPS}/{ROLLBACK_TARGET}",
    "break-glass PATCH (as a rollback writes)",
)
ROLES = {r.name: r for r in (BYSTANDER, BREAK_GLASS)}


def ensure_objects(cluster: Cluster) -> None:
    """The bystander may list configmaps in its own namespace, nothing else; the break-glass
    role patches one configmap there. Server-side applied; a refusal is a one-line error
    (without them both roles would only measure their own 403s)."""
    rbac = "rbac.authorization.k8s.io"
    with http_client(cluster) as c:
        for coll, obj in (
            (
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            ),
            (
                CONFIGMAPS,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": ROLLBACK_TARGET, "namespace": NAMESPACE},
                },
            ),
            (
                f"/apis/{rbac}/v1/namespaces/{NAMESPACE}/roles",
                {
                    "apiVersion": f"{rbac}/v1",
                    "kind": "Role",
                    "metadata": {"name": "reader", "namespace": NAMESPACE},
                    "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
                },
            ),
            (
                f"/apis/{rbac}/v1/namespaces/{NAMESPACE}/rolebindings",
                {
                    "apiVersion": f"{rbac}/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "reader", "namespace": NAMESPACE},
                    "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "reader"},
                    "subjects": [{"kind": "User", "apiGroup": rbac, "name": USER}],
                },
            ),
        ):
            try:
                apply_object(c, coll, obj)
            except ClusterError as e:
                raise ClusterError(f"setting up the bystander and break-glass roles: {e}") from None


class Bystander:
    """One role's requests at a fixed rate, from start to gather."""

    def __init__(
        self,
        cluster: Cluster,
        cluster_json: Path,
        raw: Path,
        rate_hz: float = 5.0,
        role: Role = BYSTANDER,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.cluster = cluster
        self.raw = raw
        self.role = role
        self.name = role.name
        self.cmd = [
            sys.executable,
            "-m",
            "loadtest.measurements.bystander",
            "--cluster-json",
            str(cluster_json),
            "--rate",
            str(rate_hz),
            "--out",
            str(raw),
            "--role",
            role.name,
            "--timeout",
            str(timeout_s),
        ]
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        ensure_objects(self.cluster)
        self._proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2]
        )

    def gather(self) -> dict[str, Any]:
        if self._proc is not None and self._proc.stdin:
            self._proc.stdin.close()  # EOF: stop
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return summarize(read_jsonl(self.raw), self.role)


class RoleSummary(OpenLoopSummary):
    """What `summarize` returns: the bystander's and break-glass's."""

    user: str = ""
    throttled_429: int = 0


def summarize(records: list[dict[str, Any]], role: Role = BYSTANDER) -> dict[str, Any]:
    """Every scheduled slot's outcome and latency from schedule, failures included (pure)."""
    slots = read_slots(records)
    if not slots.slots:
        return {"error": f"the {role.name} role recorded nothing"}
    out = openloop.summarize_slots(slots)
    return {
        "user": role.user or "the harness's admin identity",
        "what": role.what,
        **out,
        "throttled_429": out["failed_by_cause"].get("http 429", 0),
    }


def read_slots(records: list[dict[str, Any]]) -> openloop.Slots:
    """A role's scheduled slots from its raw stream (pure)."""
    return openloop.read_slots(_upgrade(records), TIMEOUT_S)


def _upgrade(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of the closed-loop probe of before (no scheduled times) read as before: one
    slot each, at its own time; what a stall held back was never recorded."""
    if any("k" in r or "event" in r for r in records):
        return records
    return [
        {
            "k": i,
            "sched": r["t"],
            "ms": r["ms"],
            "status": r["status"],
            "cause": _cause(r["status"]) if r["status"] else openloop.TRANSPORT,
        }
        for i, r in enumerate(records)
    ]


def _cause(status: int) -> str | None:
    return None if status == 200 else f"http {status}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="loadtest-bystander")
    ap.add_argument("--cluster-json", type=Path, required=True)
    openloop.add_probe_args(ap, 5.0, TIMEOUT_S)
    ap.add_argument("--role", choices=sorted(ROLES), default=BYSTANDER.name)
    a = ap.parse_args(argv)
    role = ROLES[a.role]
    cluster = Cluster.from_json(a.cluster_json.read_text())
    writer = JsonlWriter(a.out)
    # one Impersonate-Group header per group (httpx sends repeated pairs as given)
    headers = (
        [("Impersonate-User", role.user)] + [("Impersonate-Group", g) for g in GROUPS]
        if role.user
        else []
    )
    client = http_client(cluster, timeout=a.timeout)

    def send(k: int) -> dict[str, Any]:
        try:
            if role.method == "GET":
                r = client.get(role.path, params={"limit": "10"}, headers=headers)
            else:
                patch = {"metadata": {"annotations": {"loadtest/rolled-back-at": str(time.time())}}}
                r = client.patch(
                    role.path,
                    content=json.dumps(patch),
                    headers=[*headers, ("Content-Type", "application/merge-patch+json")],
                )
        except httpx.TimeoutException:
            return {"cause": openloop.TIMEOUT}
        except httpx.HTTPError as e:
            return {"cause": openloop.TRANSPORT, "detail": f"{type(e).__name__}: {e}"[:200]}
        return {"status": r.status_code, "cause": _cause(r.status_code)}

    loop = openloop.OpenLoop(
        a.rate,
        send,
        writer.write,
        timeout_s=a.timeout,
        workers=a.workers or openloop.pool_size(a.rate, a.timeout),
        info={"role": role.name},
        name=role.name,
    )
    loop.start()
    done = threading.Event()

    def until_stdin_closes() -> None:  # the parent closes it to stop the probe
        sys.stdin.read()
        done.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    done.wait(a.max_s)
    loop.stop()
    writer.close()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
