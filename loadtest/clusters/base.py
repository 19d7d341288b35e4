"""The Cluster handle every later stage takes, and the provider protocol that yields it."""

from __future__ import annotations

import json
import re
import ssl
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from loadtest.errors import ClusterError

if TYPE_CHECKING:
    from loadtest.clusters.kubeconfig import Credentials


@dataclass(frozen=True)
class Cluster:
    """A running cluster as the harness sees it: where to talk, with what, and what to scrape.

    Credentials are file paths (or a token) taken from the kubeconfig; the token is never
    printed (see `redacted`).
    """

    name: str
    provider: str
    kubeconfig: Path
    context: str
    server: str
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    token: str | None = field(default=None, repr=False)
    # the kubeconfig's insecure-skip-tls-verify: the API server's certificate is not checked
    insecure: bool = False
    # (host, port) of the cluster DNS as the harness can reach it, if it can ...
    dns: tuple[str, int] | None = None
    # ... from inside this container's network namespace (kind), or from the host (None).
    dns_via_container: str | None = None
    # Named metrics endpoints: "apiserver" (needs the credentials), "coredns", ...
    metrics: dict[str, str] = field(default_factory=dict)
    # Load may only go to clusters the harness created, or to ones the user opted in.
    created_by_harness: bool = True

    def to_json(self) -> str:
        d = asdict(self)
        d["kubeconfig"] = str(self.kubeconfig)
        d["token"] = None  # never persisted
        return json.dumps(d, indent=2)

    @classmethod
    def from_credentials(
        cls,
        creds: Credentials,
        *,
        name: str,
        provider: str,
        kubeconfig: Path,
        created_by_harness: bool,
        metrics: dict[str, str] | None = None,
        **extra: Any,
    ) -> Cluster:
        """The handle of a cluster whose kubeconfig was read: every provider's one way from
        credentials to a Cluster (the API server's metrics beside any others given)."""
        return cls(
            name=name,
            provider=provider,
            kubeconfig=kubeconfig,
            context=creds.context,
            server=creds.server,
            ca_file=creds.ca_file,
            client_cert=creds.client_cert,
            client_key=creds.client_key,
            token=creds.token,
            insecure=creds.insecure,
            metrics={"apiserver": creds.server + "/metrics", **(metrics or {})},
            created_by_harness=created_by_harness,
            **extra,
        )

    @classmethod
    def from_json(cls, text: str) -> Cluster:
        d = json.loads(text)
        d["kubeconfig"] = Path(d["kubeconfig"])
        if d.get("dns"):
            d["dns"] = (d["dns"][0], int(d["dns"][1]))
        return cls(**d)

    def redacted(self) -> dict[str, object]:
        """A summary safe for logs and reports: no token, paths only."""
        d = json.loads(self.to_json())
        d.pop("token", None)
        return d


def check_name(name: str, max_len: int) -> None:
    """Cluster names become DNS labels, container and directory names: keep them plain."""
    if not re.fullmatch(rf"[a-z0-9]([-a-z0-9]{{0,{max_len - 2}}}[a-z0-9])?", name):
        raise ClusterError(
            f"invalid cluster name {name!r}: use lowercase letters, digits "
            f"and '-', at most {max_len} characters"
        )


class ClusterProvider(Protocol):
    """What every provider (local, kind, existing) offers; the CLI and fixtures use only this."""

    name: str

    def create(self, cluster_name: str) -> Cluster:
        """Bring a new cluster up and return when it is ready; nothing is left on failure."""
        ...

    def get(self, cluster_name: str) -> Cluster | None:
        """The handle of an existing cluster of this provider, or None."""
        ...

    def list(self) -> list[str]:
        """Names of the clusters of this provider."""
        ...

    def delete(self, cluster_name: str) -> None:
        """Remove the cluster and everything it left; deleting twice is safe."""
        ...


def client_options(cluster: Cluster, timeout: float = 10.0) -> dict[str, Any]:
    """httpx client options for talking to the cluster's API server with its credentials."""
    headers = {"Authorization": f"Bearer {cluster.token}"} if cluster.token else {}
    verify = ssl.create_default_context(cafile=cluster.ca_file)
    if cluster.insecure:
        verify.check_hostname = False
        verify.verify_mode = ssl.CERT_NONE
    if cluster.client_cert:
        verify.load_cert_chain(cluster.client_cert, cluster.client_key)
    return {"base_url": cluster.server, "headers": headers, "verify": verify, "timeout": timeout}


def http_client(cluster: Cluster, timeout: float = 10.0, **kwargs: Any) -> httpx.Client:
    """A blocking httpx client for the cluster's API server."""
    return httpx.Client(**{**client_options(cluster, timeout), **kwargs})


def async_http_client(cluster: Cluster, timeout: float = 30.0, **kwargs: Any) -> httpx.AsyncClient:
    """An asyncio httpx client for the cluster's API server (HTTP/2 when asked)."""
    return httpx.AsyncClient(**{**client_options(cluster, timeout), **kwargs})


# The field manager of everything the harness applies (RBAC, APF, probe objects): who owns a
# field is then visible in managedFields, and a rerun takes back only what is ours.
FIELD_MANAGER = "loadtest"


def response_message(r: httpx.Response) -> str:
    """An error response's message (a Status' `message`, else the body), on one line."""
    try:
        body = r.json()
        text = str(body.get("message", r.text)) if isinstance(body, dict) else r.text
    except ValueError:
        text = r.text
    return " ".join(text.split())[:300]


def apply_object(
    c: httpx.Client, collection: str, obj: dict[str, Any], dry_run: bool = False
) -> dict[str, Any]:
    """Server-side apply one of the harness's own objects (it needs apiVersion and kind) as
    field manager `loadtest`, taking over fields another manager set (force). Returns the
    object as the API server has it; a refusal or no answer is a one-line ClusterError."""
    name = obj["metadata"]["name"]
    what = f"{obj.get('kind', '?')} {name}"
    params = {"fieldManager": FIELD_MANAGER, "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    try:
        r = c.patch(
            f"{collection}/{name}",
            content=json.dumps(obj),
            params=params,
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
    except httpx.HTTPError as e:
        raise ClusterError(f"apply {what}: no answer: {type(e).__name__}: {e}") from None
    if r.status_code not in (200, 201):
        raise ClusterError(f"apply {what}: HTTP {r.status_code}: {response_message(r)}")
    return dict(r.json())


def unreachable(cluster: Cluster, e: Exception) -> ClusterError:
    return ClusterError(
        f"cannot reach the API server of {cluster.name!r} at "
        f"{cluster.server}: {type(e).__name__}: {e}"
    )


def not_ready(cluster: Cluster, r: httpx.Response) -> ClusterError:
    # /readyz lists every check, one per line; the failing ones ("[-]...") say why.
    failing = [ln[3:].strip() for ln in r.text.splitlines() if ln.startswith("[-]")]
    why = "; ".join(failing) or " ".join(r.text.split())[:200]
    return ClusterError(
        f"API server of {cluster.name!r} is not ready: /readyz {r.status_code} {why}"
    )


# How long a control plane that answers "not ready" is asked again. Readiness flaps on a busy
# machine: kube-apiserver's etcd-readiness check fails while etcd's fsync stalls (it did in CI
# seconds after a kind cluster was made and had passed its own wait).
READY_WITHIN = 30.0


def wait_ready(c: httpx.Client, cluster: Cluster, within: float = READY_WITHIN) -> float:
    """Seconds the /readyz that answered 200 took. No answer fails at once, in one line;
    "not ready" is asked again each second for `within` s, then fails with its last answer.
    Not `wait.until`: it takes every exception for "not yet", and no answer must not wait."""
    deadline = time.monotonic() + within
    while True:
        t0 = time.monotonic()
        try:
            r = c.get("/readyz")
        except httpx.HTTPError as e:
            raise unreachable(cluster, e) from None
        if r.status_code == 200:
            return time.monotonic() - t0
        if time.monotonic() >= deadline:
            raise not_ready(cluster, r)
        time.sleep(1.0)
