"""Reading a kubeconfig into what the harness needs: server, CA and client credentials.

Only static credentials are supported (client certificates or a bearer token); inline
`*-data` fields are written to private files so httpx and ssl can load them.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from loadtest.errors import ConfigError


@dataclass(frozen=True)
class Credentials:
    context: str
    server: str
    ca_file: str | None
    client_cert: str | None
    client_key: str | None
    token: str | None = field(default=None, repr=False)
    insecure: bool = False


def read(path: Path, context: str | None = None, data_dir: Path | None = None) -> Credentials:
    """Resolve `context` (default: current-context) of the kubeconfig at `path`."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:  # YAML's messages span lines: keep one
        raise ConfigError(f"kubeconfig {path}: cannot read: {' '.join(str(e).split())}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path}: not a kubeconfig (expected a mapping)")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ConfigError(f"kubeconfig {path}: no context given and no current-context set")
    ctx = _named(doc, "contexts", ctx_name, path).get("context", {})
    cluster = _named(doc, "clusters", ctx.get("cluster", ""), path).get("cluster", {})
    user = _named(doc, "users", ctx.get("user", ""), path).get("user", {}) or {}
    if not cluster.get("server"):
        raise ConfigError(f"kubeconfig {path}: context {ctx_name!r} has no server")
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(f"kubeconfig {path}: context {ctx_name!r} uses an exec/auth-provider "
                          "plugin; give a kubeconfig with a client certificate or token")
    base = Path(path).resolve().parent
    out_dir = data_dir or base
    return Credentials(
        context=ctx_name,
        server=cluster["server"].rstrip("/"),
        ca_file=_file(cluster, "certificate-authority", base, out_dir, f"{ctx_name}-ca.crt"),
        client_cert=_file(user, "client-certificate", base, out_dir, f"{ctx_name}-client.crt"),
        client_key=_file(user, "client-key", base, out_dir, f"{ctx_name}-client.key"),
        token=user.get("token") or _token_file(user, base),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
    )


def _named(doc: dict, section: str, name: str, path: Path) -> dict:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise ConfigError(f"kubeconfig {path}: no entry named {name!r} in {section}")


def _file(section: dict, key: str, base: Path, out_dir: Path, fname: str) -> str | None:
    if section.get(key):
        return str((base / section[key]).resolve())
    data = section.get(f"{key}-data")
    if not data:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / fname
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data))
    return str(p)


def _token_file(user: dict, base: Path) -> str | None:
    tf = user.get("tokenFile")
    return (base / tf).read_text().strip() if tf else None
