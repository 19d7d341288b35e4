"""Who the agents are to the API server, and the least-privilege RBAC that lets them read.

- shared-serviceaccount: one ServiceAccount token for all agents, as a DaemonSet really has.
- impersonate: the harness's credentials with Impersonate-User per agent
  (system:serviceaccount:loadtest-agents:agent-N), so APF and audit see N identities.
- serviceaccount-per-agent: a ServiceAccount and TokenRequest token per agent.
Tokens live only in memory; they never reach logs, reports or results.
"""

from __future__ import annotations

from typing import Any

import httpx

from loadtest.agents.agent import Endpoint, ssl_context
from loadtest.agents.profile import AgentProfile
from loadtest.clusters.base import Cluster, apply_object, http_client
from loadtest.errors import ClusterError

NAMESPACE = "loadtest-agents"
SHARED_SA = "telemetry-agent"
ROLE = "loadtest-agent-reader"
GROUP = f"system:serviceaccounts:{NAMESPACE}"
TOKEN_SECONDS = 6 * 3600


def rbac_rules(profile: AgentProfile) -> list[dict[str, Any]]:
    """Only get/list/watch, only on the resources the profile reads."""
    by_group: dict[str, set[str]] = {}
    for t in [*profile.watches, *profile.polls]:
        by_group.setdefault(t.group, set()).add(t.resource)
    return [
        {"apiGroups": [g], "resources": sorted(r), "verbs": ["get", "list", "watch"]}
        for g, r in sorted(by_group.items())
    ]


def _apply(c: httpx.Client, collection: str, obj: dict[str, Any]) -> None:
    """Server-side apply (RBAC rules may change between profiles); a refusal is one line."""
    try:
        apply_object(c, collection, obj)
    except ClusterError as e:
        raise ClusterError(f"setting up agent identity: {e}") from None


def ensure_rbac(cluster: Cluster, profile: AgentProfile) -> None:
    """Namespace, shared ServiceAccount, reader ClusterRole bound to every SA of the namespace."""
    ensure_rbac_rules(cluster, rbac_rules(profile))


def ensure_rbac_rules(cluster: Cluster, rules: list[dict[str, Any]]) -> None:
    """The same, with the reader role's rules given (record: a profile not yet known)."""
    with http_client(cluster) as c:
        _apply(
            c,
            "/api/v1/namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": NAMESPACE, "labels": {"loadtest.io/agents": "true"}},
            },
        )
        _apply(c, f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", _sa(SHARED_SA))
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        _apply(
            c,
            f"{rbac}/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": ROLE},
                "rules": rules,
            },
        )
        _apply(
            c,
            f"{rbac}/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": ROLE},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": ROLE,
                },
                "subjects": [
                    {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": GROUP}
                ],
            },
        )


def _sa(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": NAMESPACE},
    }


def request_token(cluster: Cluster, sa: str) -> str:
    with http_client(cluster) as c:
        if sa != SHARED_SA:
            _apply(c, f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", _sa(sa))
        r = c.post(
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{sa}/token",
            json={"spec": {"expirationSeconds": TOKEN_SECONDS}},
        )
    if r.status_code != 201:
        raise ClusterError(
            f"TokenRequest for {NAMESPACE}/{sa}: HTTP {r.status_code}: {r.text[:200]}"
        )
    return str(r.json()["status"]["token"])


class Identities:
    """Hands each agent its Endpoint; one TLS context per process, tokens cached in memory."""

    def __init__(
        self, cluster: Cluster, profile: AgentProfile, shared_token: str | None = None
    ) -> None:
        self.cluster = cluster
        self.mode = profile.identity
        with_cert = self.mode == "impersonate"
        self._ctx = ssl_context(
            cluster.ca_file,
            cluster.client_cert if with_cert else None,
            cluster.client_key if with_cert else None,
            cluster.insecure,
        )
        self._shared = shared_token  # a remote worker gets it from the master

    def endpoint(self, index: int) -> Endpoint:
        if self.mode == "impersonate":
            headers = {
                "Impersonate-User": f"system:serviceaccount:{NAMESPACE}:agent-{index}",
                "Impersonate-Group": ["system:serviceaccounts", GROUP, "system:authenticated"],
            }
        elif self.mode == "shared-serviceaccount":
            if self._shared is None:
                self._shared = request_token(self.cluster, SHARED_SA)
            headers = {"Authorization": f"Bearer {self._shared}"}
        else:
            headers = {"Authorization": f"Bearer {request_token(self.cluster, f'agent-{index}')}"}
        return Endpoint(self.cluster.server, self._ctx, headers)  # type: ignore[arg-type]
