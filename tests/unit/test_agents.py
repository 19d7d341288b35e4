import random
from collections import Counter

import pytest

from loadtest import config
from loadtest.agents.agent import (
    Agent,
    AgentStats,
    BackoffTimer,
    Endpoint,
    ssl_context,
    target_path,
)
from loadtest.agents.identity import rbac_rules
from loadtest.agents.profile import AgentProfile, Backoff, Poll, Watch, load_profile
from loadtest.agents.shapes import parse_steps, rollout_tick, rollout_users
from loadtest.agents.slots import IndexPool
from loadtest.errors import ConfigError


@pytest.mark.parametrize("name", ["kubelet-like", "telemetry-v1", "telemetry-v2"])
def test_shipped_profiles_load(name):
    assert load_profile(name).name == name


def test_telemetry_v2_is_the_incident_pattern():
    p = load_profile("telemetry-v2")
    assert {(x.resource, x.scope, x.list_resource_version, x.page_size) for x in p.polls} == {
        ("pods", "cluster", "", 0),
        ("nodes", "cluster", "", 0),
    }


def test_node_scope_selects_the_agents_own_objects():
    assert target_path(Watch(resource="pods", scope="node"), "n1") == (
        "/api/v1/pods",
        {"fieldSelector": "spec.nodeName=n1"},
    )
    assert target_path(Watch(resource="nodes", scope="node"), "n1") == (
        "/api/v1/nodes",
        {"fieldSelector": "metadata.name=n1"},
    )
    path, params = target_path(
        Poll(
            resource="endpointslices",
            group="discovery.k8s.io",
            scope="namespace",
            namespace="ns",
            label_selector="a=b",
            field_selector="metadata.name=x",
            interval_seconds=5,
        ),
        "n1",
    )
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
        config.parse(
            AgentProfile,
            {"name": "x", "watches": [{"resource": "pods", "scope": "namespace"}]},
            "t",
        )


def test_backoff_grows_to_cap_and_resets():
    b = BackoffTimer(Backoff(initial_seconds=1, max_seconds=8, factor=2, jitter=0))
    assert [b.next() for _ in range(5)] == [1, 2, 4, 8, 8]
    b.reset()
    assert b.next() == 1


@pytest.mark.parametrize("jitter", [1.0, 0.25])
def test_backoff_jitter_spreads_within_its_bounds(jitter):
    """client-go's jittered backoff: each delay uniform in [d, d * (1 + jitter)]."""
    random.seed(7)
    j = BackoffTimer(Backoff(initial_seconds=1, max_seconds=100, factor=2, jitter=jitter))
    draws = []
    for _ in range(2000):
        j.reset()
        draws.append(j.next())
    assert all(1 <= d <= 1 + jitter for d in draws)
    # spread over the whole interval, not one value: each tenth of it gets 5-15 % of draws
    tenths = Counter(min(int((d - 1) / jitter * 10), 9) for d in draws)
    assert sorted(tenths) == list(range(10))
    assert all(100 <= n <= 300 for n in tenths.values()), tenths
    # and the second delay of each run is jittered around the doubled base
    j.reset()
    j.next()
    assert 2 <= j.next() <= 2 * (1 + jitter)


def test_rbac_is_read_only_on_what_the_profile_reads():
    rules = rbac_rules(load_profile("telemetry-v2"))
    assert rules == [
        {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]}
    ]


def test_step_shapes_parse_and_refuse_garbage():
    assert parse_steps("100:60, 200:30") == [(100, 60.0), (200, 30.0)]
    for bad in ("100", "a:1", "10:0", "-1:5"):
        with pytest.raises(ConfigError, match="bad --steps entry"):
            parse_steps(bad)


def test_rollout_ramps_at_its_rate_then_holds_and_ends():
    assert [rollout_users(100, 10, t) for t in (0, 0.5, 1, 2.55, 9.99, 10, 11, 500)] == [
        0,
        5,
        10,
        25,
        99,
        100,
        100,
        100,
    ]
    ramp = [rollout_users(1000, 2.5, t) for t in range(0, 401)]
    assert ramp == sorted(ramp) and ramp[-1] == 1000 and ramp[4] == 10
    assert rollout_tick(100, 10, 3, run_time=60) == (30, 10)
    assert rollout_tick(100, 10, 61, run_time=60) is None
    assert rollout_tick(100, 10, 1e6, run_time=0) == (100, 10)  # no -t: holds forever
    with pytest.raises(ConfigError, match="ramp rate must be positive"):
        rollout_users(10, 0, 1)


def test_agent_indexes_are_distinct_and_freed_ones_come_back_first():
    pool = IndexPool()
    assert [pool.take() for _ in range(5)] == [0, 1, 2, 3, 4]
    pool.give(3)
    pool.give(1)
    pool.give(1)  # a repeated release must not hand index 1 to two agents
    pool.give(42)  # nor may one that was never out enter the pool
    assert [pool.take() for _ in range(4)] == [1, 3, 5, 6]
    assert pool.in_use == 7


def _agent(profile: AgentProfile) -> Agent:
    # No request is made: an HTTPClient connects on first use.
    ep = Endpoint("https://127.0.0.1:1", ssl_context(None), {})
    return Agent(profile, "n1", ep, lambda **_: None, AgentStats())


def test_an_agent_is_synced_once_every_watch_has_listed_and_relists_do_not_count():
    agent = _agent(
        AgentProfile(
            name="x",
            watches=[Watch(resource="pods", scope="node"), Watch(resource="nodes", scope="node")],
        )
    )
    agent._mark_synced(0)
    agent._mark_synced(0)  # the pods informer relisted (410) before nodes ever listed
    assert agent.stats.agents_synced == 0
    agent._mark_synced(1)
    assert agent.stats.agents_synced == 1
    agent._mark_synced(0)
    agent._mark_synced(1)
    assert agent.stats.agents_synced == 1
