"""The run record: typed, versioned, and what the reports judge an old run by."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from loadtest.agents.profile import AgentProfile, Poll, load_profile
from loadtest.errors import ConfigError
from loadtest.gate import compare
from loadtest.report.run import write_run_report
from loadtest.run.config import RunConfig
from loadtest.run.record import (
    SCHEMA_VERSION,
    Measurements,
    RunRecord,
    as_dict,
    load_record,
    read_summary,
    run_profile,
    write_record,
    write_summary,
)
from loadtest.verdict import slo

RUNS = Path(__file__).resolve().parent.parent / "fixtures" / "runs"


def _copy(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    shutil.copytree(RUNS / name, d)
    return d


def _one_line(e: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_a_record_round_trips(tmp_path: Path) -> None:
    rec = RunRecord(
        environment={"cpus": 2},
        config=RunConfig(agents=7),
        profile=load_profile("kubelet-like"),
        slos=slo.SLOSpec(dns=slo.DnsSLO(p99_ms=150)).model_dump(),
        measurements=Measurements(apiserver={"latency": []}, dns={"p99_ms": 3.0}),
        slo=[{"name": "dns-p99", "status": "pass", "expected": "<= 150 ms", "measured": "3 ms"}],
        verdict="pass",
    )
    write_record(tmp_path, rec)
    assert json.loads((tmp_path / "summary.json").read_text())["schema_version"] == 2
    back = load_record(tmp_path)
    assert back == rec
    assert (
        as_dict(back)["measurements"]["dns"] == {"p99_ms": 3.0}
        and back.config
        and back.config.agents == 7
    )
    assert slo.in_force(back).dns.p99_ms == 150
    # the untyped readers see the same, with the parts not measured left out
    assert "coredns" not in read_summary(tmp_path)["measurements"]


def test_a_schema_1_record_is_migrated() -> None:
    rec = load_record(RUNS / "telemetry-v1")  # written with "version": 1, no profile
    assert rec.schema_version == SCHEMA_VERSION and rec.profile is None
    assert rec.config and rec.config.profile == "telemetry-v1"
    assert rec.measurements.apiserver and rec.verdict in ("pass", "fail")


@pytest.mark.parametrize("version", [0, 3, "x"])
def test_an_unknown_schema_is_refused_in_one_line(tmp_path: Path, version: object) -> None:
    s = json.loads((RUNS / "telemetry-v1" / "summary.json").read_text())
    (tmp_path / "summary.json").write_text(json.dumps({**s, "version": version}))
    with pytest.raises(ConfigError) as e:
        load_record(tmp_path)
    assert _one_line(e) == (
        f"{tmp_path / 'summary.json'}: run record schema {version!r}, "
        "this harness reads 2 (and migrates 1)"
    )


@pytest.mark.parametrize(
    "text",
    ['{"name": "not a run"}', "[1, 2]", "{not json", '{"schema_version": 2, "measurement": {}}'],
)
def test_a_foreign_file_is_one_line(tmp_path: Path, text: str) -> None:
    (tmp_path / "summary.json").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_record(tmp_path)
    assert _one_line(e).startswith(f"{tmp_path / 'summary.json'}: not a run record")


def test_write_summary_refuses_what_is_not_a_record(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="measurements.dsn: Extra inputs"):
        write_summary(tmp_path, {"measurements": {"dsn": {}}})
    assert not (tmp_path / "summary.json").exists()


def _recorded_elsewhere() -> AgentProfile:
    """A profile that is in no profiles/ file: only the record knows it."""
    return AgentProfile(
        name="gone-from-profiles",
        user_agent="recorded-agent/9.9",
        identity="impersonate",
        polls=[Poll(resource="pods", interval_seconds=600)],
    )


def test_the_run_report_uses_the_recorded_profile(tmp_path: Path) -> None:
    d = _copy(tmp_path, "telemetry-v2")
    s = json.loads((d / "summary.json").read_text())
    s["profile"] = _recorded_elsewhere().model_dump()
    s["config"]["profile"] = "gone-from-profiles"
    (d / "summary.json").write_text(json.dumps(s))
    write_run_report(d)
    cause = json.loads((d / "report.json").read_text())["cause"]
    line = next(c for c in cause if c.startswith("sent by"))
    assert line == (
        "sent by 50 agents with profile gone-from-profiles: user agent "
        "'recorded-agent/9.9', identity impersonate"
    )
    # and the comparison judges the run's length by the recorded profile's poll (600 s)
    notes = compare.compare_runs([d], [d], []).notes
    assert any("shorter than its 600s poll interval" in n for n in notes)


def test_a_record_without_a_profile_falls_back_by_name_and_says_so(tmp_path: Path) -> None:
    rec = load_record(RUNS / "telemetry-v2")
    profile, note = run_profile(rec)
    assert profile == load_profile("telemetry-v2")
    assert note == "profile telemetry-v2: not recorded by the run, read from today's profiles/"
    gone = rec.model_copy(update={"config": RunConfig(profile="gone-from-profiles")})
    assert run_profile(gone) == (
        None,
        "profile gone-from-profiles: not recorded by the run, and not found here",
    )


def test_the_run_records_its_profile_and_slos_as_resolved(tmp_path: Path) -> None:
    from typing import cast

    import yaml

    from loadtest.clusters.base import ClusterProvider
    from loadtest.run.job import MainJob

    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(_recorded_elsewhere().model_dump()))
    job = MainJob(
        cast(ClusterProvider, None), "c1", RunConfig(profile=str(f)), tmp_path, log=lambda _: None
    )
    f.unlink()  # what the run ran is in the record, whatever happens to the file
    job._dir = tmp_path
    job.save()
    rec = load_record(tmp_path)
    assert rec.profile == _recorded_elsewhere()
    assert rec.slos == slo.SLOSpec().model_dump()


def test_dns_min_probe_default_is_twice_the_cache_ttl() -> None:
    from loadtest.measurements.dns import CACHE_TTL_S

    assert RunConfig().dns_min_probe_s == 2 * CACHE_TTL_S  # run_config cannot import dns


@pytest.mark.parametrize("path", sorted(RUNS.parent.glob("*/*/summary.json")), ids=str)
def test_typed_summaries_write_back_what_they_read(path: Path) -> None:
    """Each measurement's summary is its module's model, typed where readers look: read
    and written back, the JSON is the one recorded, key for key and value for value."""
    data = json.loads(path.read_text())
    rec = load_record(path.parent)
    assert rec.measurements.apiserver and rec.measurements.apiserver.latency is not None
    assert as_dict(rec)["measurements"] == data["measurements"]
    assert json.dumps(as_dict(rec)["measurements"]) == json.dumps(data["measurements"])


def test_a_profile_file_labels_its_run_by_name(tmp_path: Path) -> None:
    from loadtest.results import new_run_dir

    d = new_run_dir(tmp_path, str(tmp_path / "profiles" / "hammer.yaml"))
    assert d.parent == tmp_path and d.name.endswith("-hammer") and (d / "raw").is_dir()
