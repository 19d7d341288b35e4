import json

import pytest

from loadtest.agents.runner import AgentRun, locust_command, merge_agent_stats
from loadtest.errors import ConfigError


def test_locust_command_is_bounded_and_names_profile(tmp_path):
    cmd = locust_command(
        AgentRun("telemetry-v2", agents=10, duration_s=30), tmp_path / "c.json", tmp_path
    )
    assert cmd[cmd.index("-t") + 1] == "30s" and "--headless" in cmd
    assert cmd[cmd.index("--agent-profile") + 1] == "telemetry-v2"
    steps = locust_command(
        AgentRun("kubelet-like", 5, 10, shape="steps", steps="5:10"), tmp_path / "c.json", tmp_path
    )
    assert steps[steps.index("-f") + 1].endswith("steps.py") and "5:10" in steps


def test_bad_runs_are_refused_before_locust(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        locust_command(AgentRun("nope", 1, 1), tmp_path / "c", tmp_path)
    with pytest.raises(ConfigError, match="must be positive"):
        locust_command(AgentRun("kubelet-like", 0, 1), tmp_path / "c", tmp_path)


def test_per_process_counters_merge(tmp_path):
    a = {
        "requests": {"LIST pods [node]": 2},
        "relists_410": 1,
        "watch_first_event_ms": {"count": 2, "p99": 5.0},
    }
    b = {
        "requests": {"LIST pods [node]": 3, "WATCH pods [node]": 1},
        "relists_410": 0,
        "watch_first_event_ms": {"count": 1, "p99": 9.0},
    }
    (tmp_path / "agents.1.json").write_text(json.dumps(a))
    (tmp_path / "agents.2.json").write_text(json.dumps(b))
    m = merge_agent_stats(tmp_path)
    assert m["requests"] == {"LIST pods [node]": 5, "WATCH pods [node]": 1}
    assert m["relists_410"] == 1
    assert m["watch_first_event_ms"] == {"count": 3, "p99": 9.0}
