"""The Service a run creates during the load to time its DNS propagation.

Made by server-side apply (field manager `loadtest`), labelled `loadtest.io/probe=true`, and
removed at the end of the run and by `loadtest seed --delete`, so the inventory does not grow
a Service per run. Found by label, not remembered: deleting twice is safe, and a crashed
run's leftovers go with the next cleanup.
"""

from __future__ import annotations

import httpx

from loadtest.clusters.base import Cluster, apply_object, http_client, response_message
from loadtest.errors import ClusterError

LABEL = "loadtest.io/probe"
NAMESPACE = "default"


def create(cluster: Cluster, name: str) -> str:
    """Apply the probe Service `name`; returns the name DNS should come to serve for it."""
    with http_client(cluster) as c:
        apply_object(
            c,
            f"/api/v1/namespaces/{NAMESPACE}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL: "true"}},
                "spec": {"ports": [{"port": 80, "protocol": "TCP"}]},
            },
        )
    return f"{name}.{NAMESPACE}.svc.cluster.local."


def delete_all(cluster: Cluster) -> list[str]:
    """Delete every probe Service in the cluster (by label); returns namespace/name of each.
    A refusal or no answer is a one-line ClusterError."""
    what = "removing probe Services"
    try:
        with http_client(cluster) as c:
            r = c.get("/api/v1/services", params={"labelSelector": f"{LABEL}=true"})
            if r.status_code != 200:
                raise ClusterError(f"{what}: LIST: HTTP {r.status_code}: {response_message(r)}")
            gone = []
            for item in r.json().get("items") or []:
                ns, name = item["metadata"]["namespace"], item["metadata"]["name"]
                d = c.delete(f"/api/v1/namespaces/{ns}/services/{name}")
                if d.status_code not in (200, 202, 404):
                    raise ClusterError(
                        f"{what}: DELETE {ns}/{name}: HTTP {d.status_code}: {response_message(d)}"
                    )
                gone.append(f"{ns}/{name}")
    except httpx.HTTPError as e:
        raise ClusterError(f"{what}: no answer: {type(e).__name__}: {e}") from None
    return gone
