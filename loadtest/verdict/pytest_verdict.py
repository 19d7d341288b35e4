"""The SLO verdict as pytest: one test per SLO over a results folder.

    pytest -p loadtest.verdict.pytest_plugin loadtest/verdict/pytest_verdict.py \
        --loadtest-results DIR [--loadtest-slo FILE]

Without --loadtest-slo the SLOs in force are those the run recorded (slo.in_force).

A violated SLO fails its test, with what was expected, what was measured, and for which
verb, resource and scope; an SLO whose measurement is missing or broken is an error.
The exit code serves CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.run.record import load_record
from loadtest.verdict import slo


class MeasurementBroken(Exception):
    """The data an SLO needs was not measured."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "slo_result" not in metafunc.fixturenames:
        return
    results = metafunc.config.getoption("--loadtest-results")
    if not results:
        raise pytest.UsageError("loadtest/verdict/pytest_verdict.py needs --loadtest-results DIR")
    slo_file = metafunc.config.getoption("--loadtest-slo")
    record = load_record(Path(results))
    # An SLO file given now overrides; else the SLOs the run recorded (an old run is judged by
    # what it ran with, not by today's defaults or today's copy of its file).
    spec = slo.load_slos(Path(slo_file)) if slo_file else slo.in_force(record)
    evaluated = slo.evaluate(record, spec)
    metafunc.parametrize("slo_result", evaluated, ids=[r.name for r in evaluated], indirect=True)


@pytest.fixture
def slo_result(request: pytest.FixtureRequest) -> slo.SLOResult:
    result: slo.SLOResult = request.param
    if result.status == "error":
        raise MeasurementBroken(result.message)
    return result


def test_slo(slo_result: slo.SLOResult) -> None:
    assert slo_result.status == "pass", slo_result.message
