from typing import Any

import pytest

from loadtest.errors import ConfigError
from loadtest.gate import mitigation


def test_shares_give_the_asked_fraction_of_the_server():
    for fraction in (0.05, 0.1, 0.25):
        ncs = mitigation.shares_for(fraction)
        got = ncs / (mitigation.DEFAULT_SHARES_SUM + ncs)
        assert fraction <= got < fraction + 0.01


def test_flowschema_matches_every_agent_identity_and_queues_by_user():
    pl, fs = mitigation.objects(mitigation.Plan(shares_of_server=0.1))
    assert pl["spec"]["limited"]["nominalConcurrencyShares"] == 28
    assert pl["spec"]["limited"]["limitResponse"]["type"] == "Queue"
    spec = fs["spec"]
    assert spec["priorityLevelConfiguration"]["name"] == pl["metadata"]["name"]
    assert spec["distinguisherMethod"] == {"type": "ByUser"}
    subjects = spec["rules"][0]["subjects"]
    assert {
        "kind": "Group",
        "group": {"name": "system:serviceaccounts:loadtest-agents"},
    } in subjects
    # before the suggested workload-low (9000) and global-default (9900) schemas
    assert spec["matchingPrecedence"] < 9000


def test_plan_from_recorded_results_says_why(recorded):
    from loadtest.measurements import apiserver

    summary = {
        "config": {"profile": "telemetry-v2"},
        "verdict": "fail",
        "measurements": {
            "apiserver": apiserver.summarize(recorded("apiserver-telemetry-v2.jsonl.gz"))
        },
    }
    objs, why = mitigation.from_results(summary)
    assert len(objs) == 2 and "telemetry-v2" in why and "verdict fail" in why


def test_bad_share_is_refused():
    with pytest.raises(ConfigError, match="between 0 and 1"):
        mitigation.Plan(shares_of_server=1.5)


def test_verdict_holds_only_when_others_keep_their_slos():
    bad = {
        "others_slos_failed": ["dns-errors"],
        "harness_access_degraded": False,
        "agents_throttled_429": 0,
    }
    good = {"others_slos_failed": [], "harness_access_degraded": False, "agents_throttled_429": 120}
    v, reasons = mitigation.verdict(bad, good)
    assert v == "mitigation holds" and "dns-errors" in reasons[0] and "120" in reasons[0]
    v, reasons = mitigation.verdict(bad, bad)
    assert v == "mitigation does not hold" and "dns-errors" in reasons[0]
    v, _ = mitigation.verdict(bad, {**good, "harness_access_degraded": True})
    assert v == "mitigation does not hold"


def test_others_view_separates_agents_from_everyone_else():
    summary = {
        "slo": [
            {"name": "dns-errors", "status": "fail"},
            {"name": "client-failures", "status": "fail"},
        ],
        "measurements": {
            "apiserver": {
                "apf": {
                    "rejected": [
                        {"priority_level": "loadtest-agents", "count": 7},
                        {"priority_level": "workload-low", "count": 2},
                    ],
                    "wait": [
                        {"priority_level": "workload-high", "p99": 0.5},
                        {"priority_level": "loadtest-agents", "p99": 9.0},
                    ],
                }
            }
        },
    }
    v = mitigation.others_view(summary)
    assert v["others_slos_failed"] == ["dns-errors"]
    assert v["others_apf_rejected"] == 2 and v["agents_apf_rejected"] == 7
    assert v["others_apf_wait_p99_s"] == 0.5


def test_share_is_derived_from_the_servers_seats_and_cores():
    def ncs(cpus: int, limits: dict[str, float]) -> tuple[int, str]:
        summary = {
            "environment": {"cpus": cpus},
            "measurements": {"apiserver": {"apf": {"nominal_limit_seats": limits}}},
        }
        (pl, _), why = mitigation.from_results(summary)
        return pl["spec"]["limited"]["nominalConcurrencyShares"], why

    n, why = ncs(
        2,
        {
            "workload-low": 245.0,
            "global-default": 49.0,
            "system": 74.0,
            "workload-high": 98.0,
            "node-high": 98.0,
            "leader-election": 25.0,
            "catch-all": 13.0,
            "exempt": 0.0,
        },
    )  # 602 seats
    assert n == 1 and "1 seat(s) for the agents = half of 2 cores, of 602 server seats" in why
    n, why = ncs(64, {})  # 32 seats of the default 600: 5.3 % of the server
    assert n == mitigation.shares_for(32 / 600) and "kube-apiserver default" in why


HARMED = {
    "others_slos_failed": ["others-latency"],
    "harness_access_degraded": False,
    "break_glass_failed": 0,
    "agents_throttled_429": 0,
}
FINE = {
    "others_slos_failed": [],
    "harness_access_degraded": False,
    "break_glass_failed": 0,
    "agents_throttled_429": 40,
}


def test_every_round_is_judged():
    v, reasons, rounds = mitigation.judge([HARMED, HARMED], [FINE, FINE])
    assert v == mitigation.HOLDS and [r["verdict"] for r in rounds] == [mitigation.HOLDS] * 2
    # a mitigation that fails in any round does not hold, whatever the last round said
    v, reasons, _ = mitigation.judge([HARMED, HARMED], [HARMED, FINE])
    assert v == mitigation.FAILS and reasons[0].startswith("round 1/2: mitigation does not")
    # nothing broke without the objects: nothing was shown
    v, reasons, _ = mitigation.judge([FINE], [FINE])
    assert v == mitigation.INCONCLUSIVE and "nothing broke without the objects" in reasons[0]
    v, _, _ = mitigation.judge([HARMED, FINE], [FINE, FINE])
    assert v == mitigation.INCONCLUSIVE
    with pytest.raises(ConfigError, match="rounds differ"):
        mitigation.judge([HARMED], [])


def test_break_glass_failures_alone_are_harm():
    v, reasons = mitigation.verdict({**FINE, "break_glass_failed": 12}, FINE)
    assert v == mitigation.HOLDS and "12 rollback PATCHes failed" in reasons[0]


def test_others_mutating_latency_counts_every_mutating_verb():
    def row(verb: str, p99: float) -> dict:
        return {
            "verb": verb,
            "p99_worst_window": p99,
            "metric": "apiserver_request_sli_duration_seconds",
        }

    summary = {
        "measurements": {
            "apiserver": {
                "latency": [
                    row("PATCH", 0.2),
                    row("APPLY", 0.7),
                    row("DELETECOLLECTION", 1.5),
                    row("LIST", 9.0),
                ]
            }
        }
    }
    assert mitigation.others_view(summary)["mutating_p99_s"] == 1.5


def test_rerun_alternates_who_goes_first_and_keeps_each_round_paired(monkeypatch, tmp_path):
    """Runs in ABBA order (as compare's), the objects applied exactly for the "with" runs,
    and round i of one side judged against round i of the other."""
    events: list[str] = []

    class Job:
        def __init__(self, provider, name, cfg, out, log):
            self.out = out

        def execute(self):
            events.append(f"run {self.out.name}")
            return self.out / str(sum(e.startswith("run") for e in events))

    monkeypatch.setattr(mitigation, "MainJob", Job)
    monkeypatch.setattr(mitigation, "apply", lambda cluster, objs: events.append("apply"))
    monkeypatch.setattr(mitigation, "remove", lambda cluster: events.append("remove"))
    monkeypatch.setattr(mitigation, "load_record", lambda run_dir: run_dir)
    monkeypatch.setattr(mitigation, "others_view", lambda run_dir: {"dir": run_dir.name})
    judged: dict[str, list[dict[str, str]]] = {}

    def judge(without, with_):
        judged.update(without=without, with_=with_)
        return mitigation.INCONCLUSIVE, [], []

    monkeypatch.setattr(mitigation, "judge", judge)
    lines: list[str] = []
    # no provider, cluster or config is touched: the job, apply and remove are stand-ins
    anything: Any = None
    mitigation.rerun(anything, "c", anything, [], anything, tmp_path, 3, False, False, lines.append)
    runs = [e for e in events if e.startswith("run")]
    assert runs == [f"run {v}" for v in ("without", "with", "with", "without", "without", "with")]
    # before every run its side's state: removed before "without", applied before "with"
    for i, e in enumerate(events):
        if e.startswith("run"):
            assert events[i - 1] == ("apply" if e == "run with" else "remove")
    assert [v["dir"] for v in judged["without"]] == ["1", "4", "5"]
    assert [v["dir"] for v in judged["with_"]] == ["2", "3", "6"]
    assert "AB BA AB" in (tmp_path / "comparison.json").read_text()
    assert any("(AB BA AB; A without, B with)" in x for x in lines)
