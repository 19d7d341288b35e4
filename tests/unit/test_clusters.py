from pathlib import Path

import pytest

from loadtest.clusters import Cluster, get_provider, require_load_allowed
from loadtest.clusters.existing import ExistingProvider
from loadtest.errors import ClusterError, ConfigError


def _cluster(**kw) -> Cluster:
    base = dict(
        name="x",
        provider="local",
        kubeconfig=Path("/k"),
        context="c",
        server="https://127.0.0.1:1",
        token="t0ken",
        dns=("127.0.0.1", 53),
        metrics={"apiserver": "https://127.0.0.1:1/metrics"},
    )
    return Cluster(**{**base, **kw})


def test_handle_round_trips_without_its_token():
    c = _cluster()
    back = Cluster.from_json(c.to_json())
    assert back.dns == ("127.0.0.1", 53) and back.kubeconfig == Path("/k")
    assert back.token is None
    assert "t0ken" not in c.to_json() and "t0ken" not in repr(c)
    assert "token" not in c.redacted()


def test_load_needs_opt_in_for_clusters_not_created_by_harness():
    require_load_allowed(_cluster(), allow_existing=False)
    foreign = _cluster(created_by_harness=False)
    with pytest.raises(ClusterError, match="--allow-existing-cluster"):
        require_load_allowed(foreign, allow_existing=False)
    require_load_allowed(foreign, allow_existing=True)


def test_existing_provider_never_creates_or_deletes(tmp_path):
    p = ExistingProvider(tmp_path / "none")
    with pytest.raises(ClusterError, match="never creates"):
        p.create("a")
    with pytest.raises(ClusterError, match="never deletes"):
        p.delete("a")
    assert p.list() == []


def test_unknown_provider_is_a_config_error():
    with pytest.raises(ConfigError, match="'nope'"):
        get_provider("nope")


def test_local_provider_refuses_bad_names_before_doing_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("LOADTEST_CACHE", str(tmp_path))
    with pytest.raises(ClusterError, match="invalid cluster name"):
        get_provider("local").create("Bad_Name")
    assert not (tmp_path / "local").exists()


def test_check_cluster_says_unreachable_in_one_line_and_lets_bugs_through(monkeypatch):
    from loadtest.run import job as run

    dead = _cluster(server="https://127.0.0.1:1")
    with pytest.raises(ClusterError, match="cannot reach the API server") as e:
        run.check_cluster(dead)
    assert "\n" not in str(e.value)

    def broken(*_a, **_k):
        raise TypeError("a bug, not an unreachable server")

    monkeypatch.setattr(run, "http_client", broken)
    with pytest.raises(TypeError):
        run.check_cluster(dead)


def test_a_flapping_readyz_is_asked_again_and_a_lasting_one_fails_in_one_line(monkeypatch):
    import httpx

    from loadtest.clusters import base

    monkeypatch.setattr(base.time, "sleep", lambda _s: None)
    answers = iter([500, 500, 200])

    def flapping(_req):
        return httpx.Response(next(answers), text="[-]etcd-readiness failed")

    with httpx.Client(transport=httpx.MockTransport(flapping), base_url="https://x") as c:
        assert base.wait_ready(c, _cluster()) >= 0
    assert next(answers, None) is None  # asked three times

    def never(_req):
        return httpx.Response(500, text="[+]ping ok\n[-]etcd-readiness failed: reason withheld\n")

    c = httpx.Client(transport=httpx.MockTransport(never), base_url="https://x")
    with c, pytest.raises(ClusterError, match="not ready: /readyz 500") as e:
        base.wait_ready(c, _cluster(), within=0.05)
    assert str(e.value).endswith("/readyz 500 etcd-readiness failed: reason withheld")
