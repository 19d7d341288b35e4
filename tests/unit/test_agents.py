import random

import pytest

from loadtest import config
from loadtest.agents.agent import BackoffTimer, target_path
from loadtest.agents.identity import rbac_rules
from loadtest.agents.profile import AgentProfile, Backoff, Poll, Watch, load_profile
from loadtest.agents.shapes import parse_steps
from loadtest.errors import ConfigError


@pytest.mark.parametrize("name", ["kubelet-like", "telemetry-v1", "telemetry-v2"])
def test_shipped_profiles_load(name):
    assert load_profile(name).name == name


def test_telemetry_v2_is_the_incident_pattern():
    p = load_profile("telemetry-v2")
    assert {(x.resource, x.scope, x.list_resource_version, x.page_size) for x in p.polls} == {
        ("pods", "cluster", "", 0), ("nodes", "cluster", "", 0)}


def test_node_scope_selects_the_agents_own_objects():
    assert target_path(Watch(resource="pods", scope="node"), "n1") == (
        "/api/v1/pods", {"fieldSelector": "spec.nodeName=n1"})
    assert target_path(Watch(resource="nodes", scope="node"), "n1") == (
        "/api/v1/nodes", {"fieldSelector": "metadata.name=n1"})
    path, params = target_path(
        Poll(resource="endpointslices", group="discovery.k8s.io", scope="namespace",
             namespace="ns", label_selector="a=b", field_selector="metadata.name=x",
             interval_seconds=5), "n1")
    assert path == "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices"
    assert params == {"fieldSelector": "metadata.name=x", "labelSelector": "a=b"}


def test_bad_profiles_name_file_and_field(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("version: 1\nname: x\nwatches:\n  - resource: pods\n    scope: galaxy\n")
    with pytest.raises(ConfigError, match=r"p.yaml: watches.0.scope: Input should be"):
        load_profile(f)
    f.write_text("version: 2\nname: x\nwatches: [{resource: pods}]\n")
    with pytest.raises(ConfigError, match=r"version: Input should be 1"):
        load_profile(f)
    f.write_text("version: 1\nname: x\n")
    with pytest.raises(ConfigError, match="at least one watch or poll"):
        load_profile(f)
    f.write_text("version: 1\nname: x\npolls: [{resource: pods, interval_seconds: 0}]\n")
    with pytest.raises(ConfigError, match=r"polls.0.interval_seconds"):
        load_profile(f)
    with pytest.raises(ConfigError, match="not found .*known: .*telemetry-v2"):
        load_profile("no-such-profile")
    with pytest.raises(ConfigError, match="scope 'namespace' needs a namespace"):
        config.parse(AgentProfile, {"name": "x", "watches": [{"resource": "pods",
                                                              "scope": "namespace"}]}, "t")


def test_backoff_grows_to_cap_and_resets():
    random.seed(1)
    b = BackoffTimer(Backoff(initial_seconds=1, max_seconds=8, factor=2, jitter=0))
    assert [b.next() for _ in range(5)] == [1, 2, 4, 8, 8]
    b.reset()
    assert b.next() == 1
    j = BackoffTimer(Backoff(initial_seconds=1, max_seconds=100, factor=2, jitter=1))
    assert all(1 <= j.next() <= 2 for _ in range(1))


def test_rbac_is_read_only_on_what_the_profile_reads():
    rules = rbac_rules(load_profile("telemetry-v2"))
    assert rules == [{"apiGroups": [""], "resources": ["nodes", "pods"],
                      "verbs": ["get", "list", "watch"]}]


def test_step_shapes_parse_and_refuse_garbage():
    assert parse_steps("100:60, 200:30") == [(100, 60.0), (200, 30.0)]
    for bad in ("100", "a:1", "10:0", "-1:5"):
        with pytest.raises(ConfigError, match="bad --steps entry"):
            parse_steps(bad)
