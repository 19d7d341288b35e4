"""Agent behaviour as versioned data: what one agent (one per node) lists, watches and polls.

Defaults follow client-go's reflector, so a profile that says little behaves like an
informer: initial LIST with resourceVersion="0" and limit=500, WATCH from the list's
resourceVersion with bookmarks and a 5-10 minute server timeout, relist on 410 Gone,
exponential backoff (0.8 s doubling to 30 s, full jitter) on errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from loadtest import config
from loadtest.config import Strict

PROFILES_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"

Scope = Literal["node", "namespace", "cluster"]


class Backoff(Strict):
    initial_seconds: float = Field(default=0.8, gt=0)
    max_seconds: float = Field(default=30.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=1.0, ge=0, le=1)


class Target(Strict):
    """Which objects a watch or poll asks for."""

    resource: str = Field(pattern=r"^[a-z][a-z0-9.]*$")
    group: str = ""  # "" is the core group
    api_version: str = "v1"
    # node: only this agent's node's objects (spec.nodeName for pods, metadata.name for nodes)
    scope: Scope = "cluster"
    namespace: str | None = None
    label_selector: str = ""
    field_selector: str = ""
    # "" is a consistent read (etcd before 1.31, watch cache after); "0" any cached version.
    list_resource_version: Literal["", "0"] = "0"
    page_size: int = Field(default=500, ge=0)  # 0: no limit (one response)
    content_type: Literal["json", "protobuf"] = "json"

    @model_validator(mode="after")
    def _namespace_scope_needs_namespace(self) -> Target:
        if self.scope == "namespace" and not self.namespace:
            raise ValueError("scope 'namespace' needs a namespace")
        if self.scope == "node" and self.resource not in ("pods", "nodes", "events"):
            raise ValueError("scope 'node' is defined for pods, nodes and events only")
        return self

    @property
    def label(self) -> str:
        """Stable request-name suffix, e.g. 'pods [node]'."""
        return f"{self.resource} [{self.scope}]"


class Watch(Target):
    bookmarks: bool = True
    # client-go picks a random timeout in [5, 10) minutes per watch.
    timeout_seconds: int = Field(default=300, ge=1, le=3600)
    timeout_jitter: float = Field(default=1.0, ge=0)
    # WatchList: one watch with sendInitialEvents=true replaces the initial LIST.
    watch_list: bool = False
    # Informer resync replays the cache locally: no API cost; kept for fidelity of intent.
    resync_seconds: int = Field(default=0, ge=0)


class Poll(Target):
    interval_seconds: float = Field(gt=0)
    jitter: float = Field(default=0.1, ge=0, le=1)


class AgentProfile(Strict):
    version: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    description: str = ""
    user_agent: str = "loadtest-agent/0"
    identity: Literal["shared-serviceaccount", "impersonate", "serviceaccount-per-agent"] = (
        "shared-serviceaccount"
    )
    watches: list[Watch] = []
    polls: list[Poll] = []
    backoff: Backoff = Backoff()

    @model_validator(mode="after")
    def _does_something(self) -> AgentProfile:
        if not self.watches and not self.polls:
            raise ValueError("a profile needs at least one watch or poll")
        return self


def load_profile(name_or_path: str | Path) -> AgentProfile:
    """A profile by file path, or by name from profiles/ (e.g. 'telemetry-v2')."""
    p = Path(name_or_path)
    if not p.exists() and not p.suffix:
        p = PROFILES_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        known = ", ".join(sorted(x.stem for x in PROFILES_DIR.glob("*.yaml")))
        raise config.ConfigError(f"profile {str(name_or_path)!r} not found (known: {known})")
    return config.load(AgentProfile, p)
