"""Reading a kubeconfig into what the harness needs: server, CA and client credentials.

The kubernetes client's own loader does the reading, so kubeconfigs work as kubectl reads
them: KUBECONFIG-style lists of files merged, relative paths resolved against the file that
names them, token files, exec credential plugins (run once: the harness takes one token or
client certificate per read) and `insecure-skip-tls-verify`. Inline `*-data` fields are
written to private files so httpx and ssl can load them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import Configuration
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

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
    source: Path | None = None  # the file that defines the context


class NoSuchContext(ConfigError):
    """The kubeconfig is fine but has no context of that name."""


def default_spec() -> str:
    """$KUBECONFIG (a list of files, as kubectl reads it) or ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def paths(spec: str | Path) -> list[Path]:
    """The files of a KUBECONFIG-style list, in order."""
    return [Path(p).expanduser() for p in str(spec).split(os.pathsep) if p]


def contexts(spec: str | Path) -> list[str]:
    """Names of the contexts of the merged kubeconfig."""
    return [str(n.value.get("name", "")) for n in _merged(spec)["contexts"]]


def read(spec: str | Path, context: str | None = None, data_dir: Path | None = None) -> Credentials:
    """Resolve `context` (default: current-context) of the kubeconfig at `spec`, a file or a
    KUBECONFIG-style list of files."""
    merged = _merged(spec)
    ctx_name = context or _current_context(spec)
    if not ctx_name:
        raise ConfigError(f"kubeconfig {spec}: no context given and no current-context set")
    ctx_node = next((n for n in merged["contexts"] if n.value.get("name") == ctx_name), None)
    if ctx_node is None:
        raise NoSuchContext(f"kubeconfig {spec}: no entry named {ctx_name!r} in contexts")
    ctx = ctx_node.value.get("context") or {}
    for section, key in (("clusters", "cluster"), ("users", "user")):
        if ctx.get(key) and not any(n.value.get("name") == ctx[key] for n in merged[section]):
            raise ConfigError(f"kubeconfig {spec}: no entry named {ctx[key]!r} in {section}")
    cfg = Configuration()
    try:
        KubeConfigLoader(
            merged, active_context=ctx_name, config_base_path=None, temp_file_path=_tmp_dir()
        ).load_and_set(cfg)
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"kubeconfig {spec}: context {ctx_name!r}: {_one_line(e)}") from e
    if not cfg.host or cfg.host == Configuration().host:
        raise ConfigError(f"kubeconfig {spec}: context {ctx_name!r} has no server")
    user = next(
        (
            n.value.get("user") or {}
            for n in merged["users"]
            if n.value.get("name") == ctx.get("user")
        ),
        {},
    )
    auth = str(cfg.api_key.get("authorization", ""))
    if auth and not auth.startswith("Bearer "):
        raise ConfigError(
            f"kubeconfig {spec}: context {ctx_name!r} uses basic auth; give a "
            "client certificate, a token or an exec plugin"
        )
    token = auth.removeprefix("Bearer ").strip() or None
    if ("exec" in user or "auth-provider" in user) and not (token or cfg.cert_file):
        raise ConfigError(
            f"kubeconfig {spec}: context {ctx_name!r}: its exec/auth-provider "
            "plugin gave no token or client certificate (see the log above)"
        )
    source = Path(ctx_node.path) if ctx_node.path else None
    out_dir = data_dir or (source.resolve().parent if source else Path.cwd())
    return Credentials(
        context=ctx_name,
        server=cfg.host,
        ca_file=_kept(cfg.ssl_ca_cert, out_dir, f"{ctx_name}-ca.crt"),
        client_cert=_kept(cfg.cert_file, out_dir, f"{ctx_name}-client.crt"),
        client_key=_kept(cfg.key_file, out_dir, f"{ctx_name}-client.key"),
        token=token,
        insecure=not cfg.verify_ssl,
        source=source,
    )


def _merged(spec: str | Path) -> Any:
    """The kubeconfig files merged as kubectl does (first definition of a name wins)."""
    files = paths(spec)
    if not any(p.exists() for p in files):
        raise ConfigError(f"kubeconfig {spec}: cannot read: no such file")
    for p in files:
        if p.exists():
            _check_document(p)
    try:
        merged = KubeConfigMerger(os.pathsep.join(map(str, files))).config
    except (ConfigException, OSError, yaml.YAMLError, AttributeError, TypeError) as e:
        raise ConfigError(f"kubeconfig {spec}: cannot read: {_one_line(e)}") from e
    return merged


def _check_document(p: Path) -> None:
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"kubeconfig {p}: cannot read: {_one_line(e)}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {p}: not a kubeconfig (expected a mapping)")
    for section in ("clusters", "contexts", "users"):
        items = doc.get(section) or []
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and i.get("name") for i in items
        ):
            raise ConfigError(
                f"kubeconfig {p}: not a kubeconfig ({section} must be a list of named mappings)"
            )


def _current_context(spec: str | Path) -> str | None:
    # kubectl takes current-context from the first file that sets it; the client's merger
    # would take the last.
    for p in paths(spec):
        if p.exists():
            cur = (yaml.safe_load(p.read_text()) or {}).get("current-context")
            if cur:
                return str(cur)
    return None


_TMP: list[str] = []


def _tmp_dir() -> str:
    """One private directory per process for the loader's temporary files (it reuses them by
    content and removes them at exit)."""
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="loadtest-kubeconfig-"))
        atexit.register(shutil.rmtree, _TMP[0], True)
    return _TMP[0]


def _kept(path: str | None, out_dir: Path, fname: str) -> str | None:
    """A file the kubeconfig names stays where it is; one the loader wrote from inline data
    (removed when this process exits) is copied to a private file that outlives it."""
    if not path:
        return None
    if not _TMP or Path(path).parent != Path(_TMP[0]):
        return str(Path(path).resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / fname
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(Path(path).read_bytes())
    return str(dest)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
