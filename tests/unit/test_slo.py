import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import config
from loadtest.errors import ConfigError
from loadtest.measurements import apiserver, dns
from loadtest.run.record import write_summary
from loadtest.verdict import slo
from tests.unit.conftest import load_recorded


def _recorded_summary() -> dict:
    api = apiserver.summarize(load_recorded("apiserver-telemetry-v2.jsonl.gz"))
    return {
        "measurements": {
            "apiserver": api,
            "dns": dns.summarize(load_recorded("dns-telemetry-v2.jsonl.gz")),
            "client": {"requests": 100, "failures": 0, "by_name": []},
        }
    }


def _by_name(results):
    return {r.name: r for r in results}


def test_defaults_are_the_kubernetes_and_clusterloader_slos():
    s = slo.SLOSpec()
    assert (
        s.api.mutating_p99_s,
        s.api.read_resource_p99_s,
        s.api.read_namespace_p99_s,
        s.api.read_cluster_p99_s,
    ) == (1, 1, 5, 30)
    assert (s.dns.error_ratio_max, s.dns.p50_ms, s.dns.p99_ms) == (0.001, 20, 100)


def test_recorded_saturated_run_fails_where_it_saturated():
    r = _by_name(slo.evaluate(_recorded_summary(), slo.SLOSpec()))
    assert r["api-latency-mutating"].status == "fail"
    assert any("PUT leases scope=resource" in v for v in r["api-latency-mutating"].violations)
    assert r["api-errors"].status == "fail" and "2 of" in r["api-errors"].measured
    assert r["dns-errors"].status == "pass"


def test_a_tight_override_names_verb_resource_and_scope():
    spec = config.parse(slo.SLOSpec, {"api": {"read_cluster_p99_s": 1}}, "test")
    r = _by_name(slo.evaluate(_recorded_summary(), spec))["api-latency-read-cluster"]
    assert r.status == "fail"
    assert "LIST pods scope=cluster" in r.message and "expected p99 <= 1s" in r.message


def test_missing_measurement_is_an_error_not_a_pass():
    r = _by_name(
        slo.evaluate(
            {
                "measurements": {
                    "apiserver": {"error": "no scrapes"},
                    "dns": {"error": "probe died"},
                }
            },
            slo.SLOSpec(),
        )
    )
    assert (
        r["api-latency-mutating"].status == "error"
        and "no scrapes" in r["api-latency-mutating"].message
    )
    assert r["dns-latency-p99"].status == "error"


def test_bad_slo_file_is_one_line(tmp_path):
    f = tmp_path / "slo.yaml"
    f.write_text("api:\n  mutating_p99_s: -1\n  nope: 3\n")
    with pytest.raises(ConfigError, match=r"api.mutating_p99_s: .*; api.nope: Extra inputs"):
        slo.load_slos(f)


def _verdict_pytest(results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    verdict = Path(slo.__file__).with_name("pytest_verdict.py")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "loadtest.verdict.pytest_plugin",
            "-q",
            "-p",
            "no:cacheprovider",
            str(verdict),
            "--loadtest-results",
            str(results),
            *args,
        ],
        capture_output=True,
        text=True,
    )


def test_verdict_pytest_fails_violations_and_errors_broken_measurements(tmp_path):
    s = _recorded_summary()
    s["measurements"]["dns"] = {"error": "probe died"}
    write_summary(tmp_path, s)
    r = _verdict_pytest(tmp_path)
    assert r.returncode == 1
    assert "FAILED" in r.stdout and "test_slo[api-errors]" in r.stdout
    assert "ERROR" in r.stdout and "test_slo[dns-errors]" in r.stdout
    assert "MeasurementBroken" in r.stdout


def _slo(measurements: dict, name: str) -> slo.SLOResult | None:
    """The named SLO's result for a summary with these measurements (None: not judged)."""
    return {r.name: r for r in slo.evaluate({"measurements": measurements}, slo.SLOSpec())}.get(
        name
    )


def _records(ms: list[float], statuses: list[int]) -> list[dict]:
    return [
        {"t": 1000.0 + i, "ms": m, "status": s}
        for i, (m, s) in enumerate(zip(ms, statuses, strict=True))
    ]


def test_break_glass_fails_on_one_failed_rollback_write_or_a_slow_p99():
    from loadtest.measurements import bystander

    def verdict(records):
        return _slo(
            {"break_glass": bystander.summarize(records, bystander.BREAK_GLASS)}, "break-glass"
        )

    assert verdict(_records([20.0] * 100, [200] * 100)).status == "pass"
    one_failed = verdict(_records([20.0] * 100, [200] * 99 + [0]))
    assert one_failed.status == "fail" and "1 failed of 100" in one_failed.measured
    slow = verdict(_records([20.0] * 90 + [1500.0] * 10, [200] * 100))
    assert slow.status == "fail" and "1.5s" in slow.measured
    assert verdict([]).status == "error"


def test_a_run_whose_agents_did_not_sync_fails_as_load_not_applied():
    def result(synced: int, to_sync: int):
        client = {
            "requests": 10,
            "failures": 0,
            "by_name": [],
            "agents": {"agents_synced": synced, "agents_to_sync": to_sync},
        }
        return _slo({"client": client}, "agents-synced")

    assert result(95, 100).status == "pass"
    low = result(40, 100)
    assert low.status == "fail" and low.measured == "40 of 100 (40%)"
    assert result(0, 0) is None  # no watches in the profile: nothing to sync


def test_api_availability_fails_when_scrapes_of_the_exempt_identity_fail():
    def result(failed: int, errors: list[str]):
        api = {
            "error": "fewer than two successful scrapes",
            "harness_access": {"scrapes": 21, "failed": failed, "errors": errors},
        }
        return _slo({"apiserver": api}, "api-availability")

    assert result(0, []).status == "pass"
    down = result(17, ["ConnectError: [Errno 111] Connection refused"])
    assert down.status == "fail" and down.measured.startswith("17 of 21 scrapes failed; Conn")


def test_a_probe_service_that_could_not_be_made_is_a_propagation_error():
    s = _recorded_summary()
    s["measurements"]["dns"]["propagation_error"] = (
        "could not create the probe Service: apply Service lt-x: HTTP 403: quota"
    )
    r = _by_name(slo.evaluate(s, slo.SLOSpec()))
    assert r["dns-propagation"].status == "error"
    assert "HTTP 403: quota" in r["dns-propagation"].measured


def test_slos_in_force_are_the_recorded_ones_then_the_file(tmp_path):
    f = tmp_path / "slo.yaml"
    f.write_text("dns: {p99_ms: 300}\n")
    assert slo.in_force({"config": {"slo_file": str(f)}}).dns.p99_ms == 300
    recorded = slo.SLOSpec(dns=slo.DnsSLO(p99_ms=150)).model_dump()
    assert slo.in_force({"slos": recorded, "config": {"slo_file": str(f)}}).dns.p99_ms == 150
    assert slo.in_force({}).dns.p99_ms == 100


def test_verdict_judges_by_the_recorded_slos_unless_a_file_is_given(tmp_path):
    """The recorded run fails api-errors and api-latency-mutating by today's defaults and
    was run with looser ones: re-judged, it passes by what it ran with (its SLO file is gone
    since); a file given now still wins."""
    s = _recorded_summary()
    judged = _by_name(slo.evaluate(s, slo.SLOSpec()))
    assert judged["api-errors"].status == judged["api-latency-mutating"].status == "fail"
    loose = slo.SLOSpec(api=slo.ApiSLO(errors_5xx_ratio_max=1.0, mutating_p99_s=3600))
    s["slos"] = loose.model_dump()
    s["config"] = {"slo_file": str(tmp_path / "gone.yaml")}
    write_summary(tmp_path, s)
    r = _verdict_pytest(tmp_path)
    assert r.returncode == 0 and "12 passed" in r.stdout, r.stdout
    strict = tmp_path / "strict.yaml"
    strict.write_text("api:\n  errors_5xx_ratio_max: 0.001\n")
    r = _verdict_pytest(tmp_path, "--loadtest-slo", str(strict))
    assert r.returncode == 1 and "FAILED" in r.stdout and "test_slo[api-errors]" in r.stdout
