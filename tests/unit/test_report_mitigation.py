"""The mitigation check's report: both variants side by side, with plots, from its folder."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.cli.main import main
from loadtest.report.mitigation import write_mitigation_report
from tests.unit.test_report import IMG


def _run(d: Path, bystander_ms: float, glass_ms: float, throttled: int) -> Path:
    (d / "raw").mkdir(parents=True)
    for role, ms, bad in (("bystander", bystander_ms, throttled), ("break_glass", glass_ms, 0)):
        lines = [
            {"t": 100.0 + i * 0.2, "ms": ms, "status": 429 if i < bad else 200} for i in range(50)
        ]
        (d / "raw" / f"{role}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return d


def _view(p99: float, slos: list[str], agents_429: int) -> dict:
    return {
        "others_p99_s": p99,
        "others_429": 0,
        "others_apf_wait_p99_s": p99 / 2,
        "mutating_p99_s": 0.2,
        "break_glass_p99_s": 0.03,
        "break_glass_failed": 0,
        "dns_error_rate": 0.0,
        "agents_throttled_429": agents_429,
        "agents_apf_rejected": agents_429,
        "others_slos_failed": slos,
    }


def test_mitigation_report_side_by_side_with_plots(tmp_path: Path, capsys) -> None:
    m = tmp_path / "run" / "mitigation"
    without = _run(m / "without" / "r1", 800.0, 30.0, 5)
    with_ = _run(m / "with" / "r1", 40.0, 25.0, 0)
    (m / "apf.yaml").write_text("kind: FlowSchema\nmetadata:\n  name: loadtest-agents\n")
    (m / "comparison.json").write_text(
        json.dumps(
            {
                "verdict": "mitigation holds",
                "reasons": ["others' SLOs held"],
                "runs": {
                    "without": [_view(0.8, ["others-latency"], 0)],
                    "with": [_view(0.04, [], 31)],
                },
                "run_dirs": {"without": [str(without)], "with": [str(with_)]},
            }
        )
    )
    assert main(["report", str(m)]) == 0
    text = (m / "report.html").read_text()
    assert write_mitigation_report(m).read_text() == text
    assert len(IMG.findall(text)) == 3  # p99 bars, bystander and break-glass timelines
    assert "Mitigation check: mitigation holds" in text
    assert "others-latency" in text and "loadtest-agents" in text
    row = text[text.index("other tenant&#x27;s LIST p99") :]
    assert row.index("0.8") < row.index("0.04")  # without, then with


def test_mitigate_by_profile_takes_the_newest_run_or_says_what_to_run(
    tmp_path: Path, capsys
) -> None:
    from loadtest.results import latest_run

    for stamp in ("20260101T000000Z", "20260102T000000Z"):
        d = tmp_path / f"{stamp}-telemetry-v2"
        d.mkdir()
        (d / "summary.json").write_text("{}")
    assert latest_run(tmp_path, "telemetry-v2").name == "20260102T000000Z-telemetry-v2"
    rc = main(["mitigate", "--profile", "telemetry-v9", "--out", str(tmp_path)])
    assert rc == 1
    assert "no run of profile 'telemetry-v9'" in capsys.readouterr().err
