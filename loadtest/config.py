"""Config is data: pydantic models validated at the edge, typed inside.

Every model forbids unknown fields and carries a `version`; loading reports every error with
the file and the field path, on one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadtest.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


def describe(e: ValidationError, source: str) -> str:
    """All of a ValidationError's problems on one line, each as field: message."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top)"
        parts.append(f"{loc}: {err['msg']}")
    return f"{source}: " + "; ".join(parts)


def parse(model: type[M], data: object, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, source)) from None


def load(model: type[M], path: Path) -> M:
    """Load a YAML (or JSON) file into `model`; any problem is one ConfigError line."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    return parse(model, data, str(path))


class InventorySpec(Strict):
    """A production-shaped object inventory. Sizes are approximate JSON bytes per object."""

    version: Literal[1] = 1
    name: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
    nodes: int = Field(default=100, ge=0, le=100_000)
    pods_per_node: int = Field(default=10, ge=0, le=500)
    namespaces: int = Field(default=10, ge=1, le=10_000)
    services_per_namespace: int = Field(default=5, ge=0, le=10_000)
    configmaps_per_namespace: int = Field(default=5, ge=0, le=10_000)
    pod_bytes: int = Field(default=5_000, ge=1_000, le=1_000_000)
    node_bytes: int = Field(default=12_000, ge=2_000, le=1_000_000)
    configmap_bytes: int = Field(default=2_000, ge=100, le=1_000_000)

    @property
    def pods(self) -> int:
        return self.nodes * self.pods_per_node
