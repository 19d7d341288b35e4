"""Remote workers' pure parts: what the master sends, what a worker makes of it, the ledger."""

import stat
from pathlib import Path

import pytest

from loadtest.agents.identity import NAMESPACE
from loadtest.agents.profile import load_profile
from loadtest.agents.remote import Greeter, Ledger, materialize, worker_payload
from loadtest.agents.runner import (
    AgentRun,
    add_counters,
    locust_command,
    split_host_port,
    worker_command,
)
from loadtest.clusters.base import Cluster
from loadtest.errors import ConfigError


def _cluster(tmp_path: Path) -> Cluster:
    for name, text in (("ca", "CA PEM"), ("crt", "ADMIN CERT"), ("key", "ADMIN KEY")):
        (tmp_path / name).write_text(text)
    return Cluster(
        name="c",
        provider="local",
        kubeconfig=tmp_path / "kubeconfig",
        context="ctx",
        server="https://127.0.0.1:6443",
        ca_file=str(tmp_path / "ca"),
        client_cert=str(tmp_path / "crt"),
        client_key=str(tmp_path / "key"),
    )


def test_shared_serviceaccount_workers_get_only_the_agents_token(tmp_path):
    profile = load_profile("kubelet-like").model_copy(update={"identity": "shared-serviceaccount"})
    p = worker_payload(_cluster(tmp_path), profile, ["n0", "n1"], False, shared_token="SA")
    assert p["creds"] == {"ca": "CA PEM", "shared_token": "SA"}
    assert "ADMIN" not in repr(p)


def test_impersonating_workers_get_the_client_credentials_in_a_private_dir(tmp_path):
    profile = load_profile("kubelet-like").model_copy(update={"identity": "impersonate"})
    p = worker_payload(_cluster(tmp_path), profile, ["n0"], True)
    w = materialize(p, api_server="https://10.96.0.1:443")
    try:
        c = w.cluster
        assert c.client_key is not None
        assert c.server == "https://10.96.0.1:443" and w.nodes == ["n0"] and w.decode
        assert Path(c.client_key).read_text() == "ADMIN KEY"
        assert stat.S_IMODE(Path(c.client_key).stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(c.client_key).parent.stat().st_mode) == 0o700
        assert w.profile == profile
        assert "ADMIN" not in c.to_json()  # paths only
    finally:
        w.close()
    assert not Path(c.client_key).exists()


def test_ledger_counts_a_lost_workers_agents_once_and_frees_their_indexes():
    led = Ledger(add_counters)
    for k in range(4):
        led.granted(k, "a" if k % 2 else "b")
    led.report("a", {"agents_started": 2, "requests": {"LIST": 2}})
    led.report("b", {"agents_started": 2, "requests": {"LIST": 3}})
    assert led.missing("a", 12.34) == [1, 3]
    assert led.missing("a", 13.0) is None  # noticed again: not counted twice
    led.returned(0)
    s = led.summary(expected=2)
    assert s["agents_started"] == 4 and s["requests"] == {"LIST": 5}
    w = s["workers"]
    assert w["lost"] == [{"worker": "a", "at_s": 12.3, "agents": 2, "indexes": [1, 3]}]
    assert w["agents_lost"] == 2 and w["seen"] == 2
    assert w["by_worker"]["b"] == {"agents_started": 2, "agents_synced": 0, "requests": 3}
    assert led.owner == {2: "b"}


def test_master_command_waits_bounded_for_its_workers(tmp_path):
    cmd = locust_command(
        AgentRun("kubelet-like", 10, 30, workers=3, master_bind="10.0.0.1:5557", workers_wait_s=45),
        tmp_path / "c.json",
        tmp_path,
    )
    assert cmd[cmd.index("--master-bind-host") + 1] == "10.0.0.1"
    assert cmd[cmd.index("--master-bind-port") + 1] == "5557"
    assert cmd[cmd.index("--expect-workers") + 1] == "3"
    assert cmd[cmd.index("--expect-workers-max-wait") + 1] == "45"
    with pytest.raises(ConfigError, match="--master-bind"):
        locust_command(AgentRun("kubelet-like", 1, 1, workers=2), tmp_path / "c", tmp_path)
    with pytest.raises(ConfigError, match="exclude"):
        locust_command(
            AgentRun("kubelet-like", 1, 1, workers=2, master_bind="h:1", processes=2),
            tmp_path / "c",
            tmp_path,
        )


def test_worker_command_takes_nothing_but_the_master():
    cmd = worker_command("[::1]:5557", "https://10.96.0.1:443")
    assert cmd[cmd.index("--master-host") + 1] == "::1" and "--worker" in cmd
    assert cmd[-2:] == ["--worker-api-server", "https://10.96.0.1:443"]
    assert not any("cluster" in x for x in cmd)
    for bad in ("host", "host:", ":5557", "host:99999"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            split_host_port(bad)


def test_cli_takes_the_worker_flags_for_agents_run_and_worker():
    from loadtest.cli.main import build_parser, run_config

    p = build_parser()
    a = p.parse_args(["agents", "--workers", "2", "--master-bind", "127.0.0.1:5557"])
    assert (a.workers, a.master_bind, a.workers_in_cluster) == (2, "127.0.0.1:5557", None)
    r = p.parse_args(["run", "--workers-in-cluster", "3", "--worker-image", "reg/img:1"])
    cfg = run_config(r)
    assert (cfg.workers_in_cluster, cfg.worker_image, cfg.workers) == (3, "reg/img:1", 0)
    w = p.parse_args(["worker", "--master", "10.0.0.5:5557", "--api-server", "in-cluster"])
    assert (w.master, w.api_server) == ("10.0.0.5:5557", "in-cluster")


def test_in_cluster_workers_need_an_image_and_an_address_off_kind(tmp_path):
    from loadtest.agents.pods import in_cluster_workers, manifests

    c = _cluster(tmp_path)
    c = Cluster(**{**c.__dict__, "provider": "existing"})
    run = AgentRun("kubelet-like", 10, 30)
    with pytest.raises(ConfigError, match="--worker-image"):
        in_cluster_workers(c, run, 2, None, print)
    with pytest.raises(ConfigError, match="--master-bind"):
        in_cluster_workers(c, run, 2, "reg/img:1", print)
    bound, pool = in_cluster_workers(
        c, AgentRun("kubelet-like", 10, 30, master_bind="h:1"), 2, "reg/img:1", print
    )
    assert (bound.workers, bound.master_bind, pool.pull) == (2, "h:1", "IfNotPresent")
    ns, sa, dep = manifests(2, "reg/img:1", "IfNotPresent", "h:1")
    assert sa["automountServiceAccountToken"] is False and ns["metadata"]["name"] != NAMESPACE
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2 and spec["serviceAccountName"] == sa["metadata"]["name"]
    assert spec["containers"][0]["args"] == ["--master", "h:1", "--api-server", "in-cluster"]


class FakeRunner:
    def __init__(self):
        self.handlers, self.sent = {}, []

    def register_message(self, msg_type, listener):
        self.handlers[msg_type] = listener

    def send_message(self, msg_type, data=None, client_id=None):
        self.sent.append((msg_type, data, client_id))


class Msg:
    def __init__(self, node_id):
        self.node_id, self.data = node_id, {}


def test_a_hello_before_the_setup_is_answered_once_it_exists():
    runner = FakeRunner()
    g = Greeter(runner, "hello", "setup")
    runner.handlers["hello"](Msg("w1"))  # a worker connected while the master prepares
    assert runner.sent == []
    g.ready({"x": 1})
    runner.handlers["hello"](Msg("w2"))
    assert runner.sent == [("setup", {"x": 1}, "w1"), ("setup", {"x": 1}, "w2")]
