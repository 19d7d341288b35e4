"""The run record: summary.json, typed and versioned.

What a run was (environment, config, the profile and SLOs as resolved at run time, cluster,
inventory, stages), what it measured and its verdict. The top level is typed and refuses
unknown keys; each measurement's summary is its module's model, typed where readers look
and open beyond (the module's further detail is kept as written). A record of an older
schema is migrated where that is trivial, otherwise refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadtest.agents.profile import AgentProfile, load_profile
from loadtest.config import describe
from loadtest.errors import ConfigError, LoadtestError
from loadtest.measurements.apiserver import ApiServerSummary
from loadtest.measurements.base import InOrder
from loadtest.measurements.bystander import RoleSummary
from loadtest.measurements.client import ClientSummary
from loadtest.measurements.coredns import CorednsSummary
from loadtest.measurements.dns import DnsSummary
from loadtest.measurements.machine import MachineSummary
from loadtest.run.config import RunConfig

# 1: `version`, no recorded profile. 2: `schema_version`, the profile as run.
SCHEMA_VERSION: Literal[2] = 2
FILE = "summary.json"


class Measurements(InOrder):
    """One optional field per measurement, named as the measurement names itself."""

    model_config = ConfigDict(extra="forbid")

    apiserver: ApiServerSummary | None = None
    coredns: CorednsSummary | None = None
    dns: DnsSummary | None = None
    client: ClientSummary | None = None
    bystander: RoleSummary | None = None
    break_glass: RoleSummary | None = None
    machine: MachineSummary | None = None  # the host's CPU: what the API server competes with


class SloRow(BaseModel):
    """One SLO's outcome as recorded (slo.SLOResult's fields)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    status: Literal["pass", "fail", "error"]
    expected: str = ""
    measured: str = ""
    violations: list[str] = []


class RunRecord(BaseModel):
    """A run as recorded; written after every stage, so every stage's part is optional."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = SCHEMA_VERSION
    environment: dict[str, Any] = {}
    config: RunConfig | None = None
    # as resolved at run time: reports judge an old run by these, not today's files
    profile: AgentProfile | None = None
    slos: dict[str, Any] | None = None  # slo.SLOSpec's dump (slo.in_force parses it)
    cluster: dict[str, Any] = {}
    inventory: dict[str, Any] = {}
    stages: dict[str, dict[str, Any]] = {}
    measurements: Measurements = Field(default_factory=Measurements)
    slo: list[SloRow] = []
    verdict: Literal["pass", "fail"] | None = None
    warnings: list[str] = []
    failed: str | None = None
    interrupted: bool = False
    rebuilt_from_raw: bool = False

    @property
    def agents(self) -> int:
        return self.config.agents if self.config else 0


def _migrate(data: dict[str, Any], source: str) -> dict[str, Any]:
    """An older record brought to SCHEMA_VERSION, or one line saying why it cannot be."""
    version = data.get("schema_version", data.get("version"))
    if version == 1:  # same fields but the version's name; no recorded profile
        data = {k: v for k, v in data.items() if k != "version"}
        version = SCHEMA_VERSION
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"{source}: run record schema {version!r}, this harness reads "
            f"{SCHEMA_VERSION} (and migrates 1)"
        )
    return {**data, "schema_version": SCHEMA_VERSION}


def parse(data: object, source: str = FILE) -> RunRecord:
    """A record from its JSON form (any supported schema); a problem is one line."""
    if not isinstance(data, dict) or not ({"version", "schema_version"} & data.keys()):
        raise ConfigError(f"{source}: not a run record (no schema_version)")
    try:
        return RunRecord.model_validate(_migrate(data, source))
    except ValidationError as e:
        raise ConfigError(describe(e, f"{source}: not a run record")) from None


# What readers take: a record, or a summary's dict (validated into one on the way in).
RecordLike = RunRecord | dict[str, Any]


def coerce(summary: RecordLike) -> RunRecord:
    """A record, or a summary's dict (partial, unversioned: as tests and rebuilds hold it)."""
    if isinstance(summary, RunRecord):
        return summary
    return parse({"schema_version": SCHEMA_VERSION, **summary}, "summary")


def run_profile(record: RunRecord) -> tuple[AgentProfile | None, str]:
    """The profile the run ran, and a note when it is not the recorded one: a record
    without it (schema 1) falls back to today's profile of that name, saying so."""
    if record.profile is not None:
        return record.profile, ""
    name = record.config.profile if record.config else ""
    try:
        return load_profile(name), (
            f"profile {name}: not recorded by the run, read from today's profiles/"
        )
    except LoadtestError:
        return None, f"profile {name or '?'}: not recorded by the run, and not found here"


def load_record(run_dir: Path) -> RunRecord:
    p = Path(run_dir) / FILE
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: not a run record: {e}") from None
    return parse(data, str(p))


def as_dict(record: RunRecord) -> dict[str, Any]:
    """The JSON form; a part not recorded (None) is left out, as the summary always did,
    and a measurement's summary is written as it was read or made: only the keys it has."""
    d = {k: v for k, v in record.model_dump().items() if v is not None}
    m = record.measurements.model_dump(exclude_unset=True)
    d["measurements"] = {k: v for k, v in m.items() if v is not None}
    return d


def write_record(run_dir: Path, record: RunRecord) -> Path:
    p = Path(run_dir) / FILE
    tmp = p.with_suffix(".tmp")
    # default=str: a measurement's summary may hold a value JSON has no type for
    tmp.write_text(json.dumps(as_dict(record), indent=2, default=str))
    tmp.replace(p)  # never a half-written record
    return p


def write_summary(run_dir: Path, summary: RecordLike) -> Path:
    """summary.json, validated as a run record (a dict is one in the making)."""
    return write_record(run_dir, coerce(summary))


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run record's JSON form, for readers not yet typed (`load_record` is the typed one);
    an older schema is migrated or refused in one line."""
    return as_dict(load_record(run_dir))
