"""`loadtest learn`: an audit log in, the agent's profile out (synthetic logs, no cluster)."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loadtest.agents.learn import learn, parse_events, read_audit_log, write
from loadtest.agents.profile import load_profile
from loadtest.cli import main as cli
from loadtest.errors import ConfigError

T0 = 1_750_000_000.0
_ids = itertools.count()


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(
    t: float,
    verb: str,
    uri: str,
    resource: str,
    *,
    ua: str = "telemetry-agent/3.0",
    user: str = "system:serviceaccount:tel:agent",
    cred: str | None = None,
    duration: float = 0.01,
    stages: tuple[str, ...] = ("RequestReceived", "ResponseComplete"),
    impersonate: str | None = None,
    namespace: str | None = None,
    group: str = "",
) -> list[dict]:
    """One request's audit events (one per stage), as kube-apiserver writes them."""
    audit_id = f"id-{next(_ids)}"
    ref = {"resource": resource, "apiVersion": "v1"}
    if group:
        ref.update(apiGroup=group)
    if namespace:
        ref["namespace"] = namespace
    u: dict = {"username": user, "groups": ["system:serviceaccounts", "system:authenticated"]}
    if cred:
        u["extra"] = {"authentication.kubernetes.io/credential-id": [f"JTI={cred}"]}
    out = []
    for stage in stages:
        ev = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": audit_id,
            "stage": stage,
            "requestURI": uri,
            "verb": verb,
            "user": u,
            "sourceIPs": ["10.0.0.7"],
            "userAgent": ua,
            "objectRef": ref,
            "requestReceivedTimestamp": _ts(t),
            "stageTimestamp": _ts(t + (duration if stage == "ResponseComplete" else 0)),
        }
        if impersonate:
            ev["impersonatedUser"] = {"username": impersonate}
        out.append(ev)
    return out


def agent_traffic(i: int, span: float = 120, **kw) -> list[dict]:
    """A telemetry agent on node-i: a node-local pod informer and a 10 s +-20 % nodes poll."""
    rng = random.Random(i)
    node = f"node-{i}"
    t = T0 + i * 0.3
    evs = event(
        t,
        "list",
        f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node}&limit=500&resourceVersion=0",
        "pods",
        **kw,
    )
    evs += event(
        t + 0.02,
        "watch",
        f"/api/v1/pods?allowWatchBookmarks=true&fieldSelector="
        f"spec.nodeName%3D{node}&resourceVersion=123&timeoutSeconds="
        f"{rng.randint(300, 599)}&watch=true",
        "pods",
        duration=span,
        stages=("RequestReceived", "ResponseStarted"),
        **kw,
    )
    p = t + rng.random() * 10
    while p < T0 + span:
        evs += event(p, "list", "/api/v1/nodes", "nodes", duration=0.05, **kw)
        p += 0.05 + 10 * (1 + 0.2 * (2 * rng.random() - 1))
    evs += event(t + 1, "get", f"/api/v1/nodes/{node}", "nodes", **kw)
    return evs


def others() -> list[dict]:
    """Traffic of other clients: controllers, a kubectl user, a second agent version."""
    evs = []
    for k in range(20):
        evs += event(
            T0 + k,
            "list",
            "/api/v1/pods?limit=500&resourceVersion=0",
            "pods",
            ua="kube-controller-manager/v1.33.13",
            user="system:kube-controller-manager",
        )
        evs += event(
            T0 + k,
            "watch",
            "/api/v1/nodes?watch=true",
            "nodes",
            ua="kubectl/v1.33.13",
            user="alice",
        )
        evs += event(
            T0 + k,
            "list",
            "/api/v1/services",
            "services",
            ua="telemetry-agent/2.0",
            user="system:serviceaccount:tel:agent",
        )
    return evs


def log_file(tmp_path: Path, events: list[dict]) -> Path:
    events = sorted(events, key=lambda e: e["stageTimestamp"])
    p = tmp_path / "audit.log"
    p.write_text("".join(json.dumps(e) + "\n" for e in events))
    return p


def test_learns_informer_poll_and_identity_and_keeps_only_the_agents_traffic(tmp_path):
    evs = [e for i in range(6) for e in agent_traffic(i, cred=f"tok-{i}")] + others()
    reqs = read_audit_log(log_file(tmp_path, evs))
    learned = learn(reqs, r"^telemetry-agent/3\.", "telemetry-v3", source="audit.log")
    p = learned.profile
    assert learned.agents == 6 and learned.clients == 6
    assert p.identity == "shared-serviceaccount"
    assert p.user_agent == "telemetry-agent/3.0"
    assert [(w.resource, w.scope) for w in p.watches] == [("pods", "node")]
    w = p.watches[0]
    assert (w.list_resource_version, w.page_size, w.bookmarks, w.watch_list) == (
        "0",
        500,
        True,
        False,
    )
    assert w.field_selector == ""
    assert 250 <= w.timeout_seconds <= 310 and 0.6 <= w.timeout_jitter <= 1.3
    assert [(q.resource, q.scope) for q in p.polls] == [("nodes", "cluster")]
    q = p.polls[0]
    assert (q.list_resource_version, q.page_size) == ("", 0)
    assert q.interval_seconds == pytest.approx(10, rel=0.1)
    assert 0.1 <= q.jitter <= 0.3
    # only the agent's own requests: other user agents are counted, never modelled
    assert learned.other_requests == 60
    assert learned.left_out == {"GET nodes": 6}
    assert (
        learned.used
        == sum(
            1
            for e in evs
            if e["stage"] == "RequestReceived" and e["userAgent"].startswith("telemetry-agent/3")
        )
        - 6
    )


def test_learned_file_loads_and_says_where_it_came_from(tmp_path):
    evs = [e for i in range(3) for e in agent_traffic(i, cred=f"tok-{i}")] + others()
    learned = learn(
        read_audit_log(log_file(tmp_path, evs)), "telemetry-agent/3", "tel-v3", source="audit.log"
    )
    out = write(learned, tmp_path / "profiles" / "tel-v3.yaml")
    assert load_profile(out) == learned.profile
    text = out.read_text()
    assert "# Learned by `loadtest learn` from audit.log" in text
    assert "# user agent pattern: telemetry-agent/3" in text
    assert "# agents seen: 3" in text
    assert "# Requests it cannot model (left out), with counts:\n#        3  GET nodes\n" in text
    assert "content_type: json" in text


def test_each_request_counts_once_whatever_stages_the_log_has():
    evs = (
        event(T0, "list", "/api/v1/pods", "pods", stages=("RequestReceived",))
        + event(
            T0 + 1, "list", "/api/v1/pods", "pods", stages=("RequestReceived", "ResponseComplete")
        )
        + event(T0 + 2, "list", "/api/v1/pods", "pods", stages=("ResponseComplete",))
    )
    reqs = parse_events(json.dumps(e) for e in evs)
    assert len(reqs) == 3
    assert [r.end is not None for r in reqs] == [False, True, True]


def test_identity_kinds():
    def ident(kw):
        evs = [e for i in range(3) for e in agent_traffic(i, **kw(i))]
        return learn(parse_events(json.dumps(e) for e in evs), "telemetry", "x").profile.identity

    assert (
        ident(kw=lambda i: {"user": f"system:serviceaccount:tel:agent-{i}"})
        == "serviceaccount-per-agent"
    )
    assert ident(kw=lambda i: {"user": "admin", "impersonate": f"agent-{i}"}) == "impersonate"


def test_agents_sharing_one_credential_are_told_apart_by_node():
    evs = [e for i in range(4) for e in agent_traffic(i, span=300)]  # no credential ids
    learned = learn(parse_events(json.dumps(e) for e in evs), "telemetry", "x")
    assert learned.agents == 4 and learned.clients == 1
    assert learned.profile.watches[0].scope == "node"
    # the four pollers' LISTs interleave in one stream: the period comes from the rate
    assert learned.profile.polls[0].interval_seconds == pytest.approx(10, rel=0.15)
    assert any("shared one credential" in n for n in learned.notes)


def test_node_scoped_nodes_list_is_a_collection_request_though_objectref_names_the_node():
    evs = []
    for i in range(2):
        for k in range(3):
            ev = event(
                T0 + 5 * k + i,
                "list",
                f"/api/v1/nodes?fieldSelector=metadata.name%3Dn{i}",
                "nodes",
                cred=f"c{i}",
            )
            for e in ev:  # kube-apiserver puts the selected name into objectRef
                e["objectRef"]["name"] = f"n{i}"
            evs += ev
    one = event(T0, "list", "/api/v1/nodes/n0", "nodes", cred="c0")  # a one-object path
    for e in one:
        e["objectRef"]["name"] = "n0"
    evs += one
    learned = learn(parse_events(json.dumps(e) for e in evs), "telemetry", "x")
    assert [(p.resource, p.scope) for p in learned.profile.polls] == [("nodes", "node")]
    assert learned.left_out == {"LIST nodes (one object)": 1}


def test_a_fixed_node_named_by_every_client_is_a_field_selector_not_node_scope():
    evs = [
        e
        for i in range(3)
        for e in event(
            T0 + i,
            "watch",
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dmaster&watch=true",
            "pods",
            cred=f"c{i}",
        )
    ]
    w = learn(parse_events(json.dumps(e) for e in evs), "telemetry", "x").profile.watches[0]
    assert (w.scope, w.field_selector) == ("cluster", "spec.nodeName=master")


def test_watch_list_namespaces_and_selectors():
    evs = event(
        T0,
        "watch",
        "/apis/apps/v1/namespaces/prod/deployments?labelSelector=app%3Dweb"
        "&resourceVersionMatch=NotOlderThan&sendInitialEvents=true"
        "&allowWatchBookmarks=true&timeoutSeconds=400&watch=true",
        "deployments",
        namespace="prod",
        group="apps",
        cred="a",
    )
    w = learn(parse_events(json.dumps(e) for e in evs), "telemetry", "x").profile.watches[0]
    assert (w.group, w.resource, w.scope, w.namespace, w.label_selector, w.watch_list) == (
        "apps",
        "deployments",
        "namespace",
        "prod",
        "app=web",
        True,
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not JSON"),
        ('{"kind": "Event", "stage": "ResponseComplete"}', "line 2: audit event without auditID"),
        ('{"kind": "EventList"}', "line 2: not an audit.k8s.io Event"),
    ],
)
def test_malformed_log_is_one_line_naming_the_line(tmp_path, line, message):
    good = json.dumps(event(T0, "list", "/api/v1/pods", "pods")[0])
    p = tmp_path / "audit.log"
    p.write_text(f"{good}\n{line}\n{good}\n")
    with pytest.raises(ConfigError) as e:
        read_audit_log(p)
    assert str(e.value).startswith(f"{p}: {message}")
    assert "\n" not in str(e.value)


def test_no_matching_requests_is_a_clear_error():
    reqs = parse_events(json.dumps(e) for e in others())
    with pytest.raises(ConfigError, match="no requests with a user agent matching 'nope'"):
        learn(reqs, "nope", "x")


def test_cli_learn_writes_the_profile_and_errors_in_one_line(tmp_path, capsys):
    log = log_file(tmp_path, [e for i in range(2) for e in agent_traffic(i, cred=str(i))])
    out = tmp_path / "learned.yaml"
    assert (
        cli.main(
            [
                "learn",
                "--audit-log",
                str(log),
                "--user-agent",
                "telemetry-agent",
                "--name",
                "tel-v3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert load_profile(out).name == "tel-v3"
    log.write_text("garbage\n")
    assert (
        cli.main(
            [
                "learn",
                "--audit-log",
                str(log),
                "--user-agent",
                "x",
                "--name",
                "y",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {log}: line 1: not JSON (Expecting value)"
