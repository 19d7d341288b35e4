"""`loadtest record`'s process handling and agent credentials (no cluster)."""

import os
import time

import pytest
import yaml

from loadtest.agents.record import Recording, _run_agents, agent_kubeconfig
from loadtest.clusters.base import Cluster
from loadtest.errors import ConfigError


def test_agents_are_stopped_at_the_deadline_and_see_their_pods_environment(tmp_path):
    envs = [{**os.environ, "NODE_NAME": f"n{i}"} for i in range(3)]
    t0 = time.monotonic()
    failed = _run_agents(
        ["sh", "-c", 'echo "$NODE_NAME"; exec sleep 60'], envs, tmp_path, 1.0, log=lambda _: None
    )
    assert failed is None
    assert time.monotonic() - t0 < 8  # terminated, not waited for
    assert [(tmp_path / f"agent-{i}.log").read_text() for i in range(3)] == ["n0\n", "n1\n", "n2\n"]


def test_an_agent_that_fails_early_is_reported_with_its_exit_code(tmp_path):
    envs = [dict(os.environ)] * 2
    assert _run_agents(["sh", "-c", "exit 3"], envs, tmp_path, 30, log=lambda _: None) == (0, 3)


def test_a_missing_command_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot run 'no-such-agent-x'"):
        _run_agents(["no-such-agent-x"], [dict(os.environ)], tmp_path, 1, log=lambda _: None)


def test_agent_kubeconfig_carries_server_ca_and_token():
    c = Cluster(
        name="rec",
        provider="local",
        kubeconfig=None,  # type: ignore[arg-type]
        context="",
        server="https://127.0.0.1:6443",
        ca_file="/ca.crt",
    )
    doc = yaml.safe_load(agent_kubeconfig(c, "tok"))
    assert doc["clusters"][0]["cluster"] == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority": "/ca.crt",
    }
    assert doc["users"][0]["user"] == {"token": "tok"}


@pytest.mark.parametrize(
    "bad", [dict(command=[]), dict(nodes=0), dict(duration_s=0), dict(name="Bad Name")]
)
def test_recording_checks_its_bounds(bad):
    args = {"name": "x", "nodes": 2, "command": ["true"], **bad}
    with pytest.raises(ConfigError):
        Recording(**args).check()


def test_cli_record_takes_the_command_after_double_dash():
    from loadtest.cli.main import build_parser

    a = build_parser().parse_args(
        ["record", "--name", "x", "--nodes", "3", "--", "refagent", "--profile", "p", "--name", "y"]
    )
    assert (a.name, a.nodes, a.command) == (
        "x",
        3,
        ["--", "refagent", "--profile", "p", "--name", "y"],
    )
