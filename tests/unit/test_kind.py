"""The kind provider's pure parts, and the OCI runtime wrapper's spec filtering."""

import importlib.machinery
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from loadtest.clusters import get_provider
from loadtest.clusters.kind import CREATED_BY, HOST, PATCHES_IN_NODE, KindProvider
from loadtest.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_default_config_is_one_control_plane_and_two_workers():
    conf = KindProvider()._kind_config()
    assert [n["role"] for n in conf["nodes"]] == ["control-plane", "worker", "worker"]
    assert conf["networking"]["apiServerAddress"] == HOST
    assert all(n["labels"][CREATED_BY[0]] == CREATED_BY[1] for n in conf["nodes"])
    patch = yaml.safe_load(conf["nodes"][0]["kubeadmConfigPatches"][0])
    args = patch["apiServer"]["extraArgs"]
    assert args["max-requests-inflight"] == "400"
    assert args["max-mutating-requests-inflight"] == "200"
    assert args["enable-priority-and-fairness"] == "true"
    assert not any(k.startswith("audit") for k in args)


def test_ha_config_has_three_control_planes():
    conf = KindProvider(config="ha")._kind_config()
    assert [n["role"] for n in conf["nodes"]].count("control-plane") == 3


def test_per_run_apiserver_flags_become_a_kubeadm_patch():
    p = get_provider(
        "kind",
        apiserver_args={"max-requests-inflight": "50"},
        feature_gates="ConsistentListFromCache=false",
        apiserver_port=7443,
    )
    assert isinstance(p, KindProvider)
    conf = p._kind_config()
    assert conf["networking"]["apiServerPort"] == 7443
    patch = yaml.safe_load(conf["kubeadmConfigPatches"][-1])
    assert patch["kind"] == "ClusterConfiguration"
    assert patch["apiServer"]["extraArgs"] == {
        "max-requests-inflight": "50",
        "feature-gates": "ConsistentListFromCache=false",
    }


@pytest.mark.parametrize("config", ["default", "ha"])
def test_a_memory_budget_is_a_kubeadm_patch_on_every_api_server(config, tmp_path):
    p = KindProvider(config=config, apiserver_memory=2 * 2**30)
    patches = p._write_patches(tmp_path / "patches")
    assert patches is not None
    pod = yaml.safe_load((patches / "kube-apiserver+strategic.yaml").read_text())
    assert pod["spec"]["containers"] == [
        {"name": "kube-apiserver", "resources": {"limits": {"memory": str(2 * 2**30)}}}
    ]
    conf = p._kind_config(patches)
    planes = [n for n in conf["nodes"] if n["role"] == "control-plane"]
    for node in planes:  # init or join, each control plane reads the mounted patches
        assert {"hostPath": str(patches), "containerPath": PATCHES_IN_NODE, "readOnly": True} in (
            node["extraMounts"]
        )
        kinds = {yaml.safe_load(x)["kind"]: yaml.safe_load(x) for x in node["kubeadmConfigPatches"]}
        for k in ("InitConfiguration", "JoinConfiguration"):
            assert kinds[k]["patches"] == {"directory": PATCHES_IN_NODE}
    assert all("extraMounts" not in n for n in conf["nodes"] if n["role"] != "control-plane")
    assert KindProvider(config=config)._write_patches(tmp_path / "none") is None


def test_unknown_config_names_the_known_ones():
    with pytest.raises(ConfigError, match="default"):
        KindProvider(config="nope")


def _wrapper():
    path = REPO / "clusters" / "docker" / "loadtest-runc"
    loader = importlib.machinery.SourceFileLoader("loadtest_runc", str(path))
    spec = importlib.util.spec_from_loader("loadtest_runc", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _run_wrapper(monkeypatch, tmp_path, argv, bnd="000001fffeffffff"):
    mod = _wrapper()
    monkeypatch.setattr(mod, "host_bounding_set", lambda: int(bnd, 16))
    calls = []
    monkeypatch.setattr(mod.os, "execv", lambda path, args: calls.append(args))
    mod.main(["loadtest-runc", *argv])
    return calls


ALL = ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"]


def test_wrapper_filters_bundle_config_on_create(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {"process": {"capabilities": {k: ALL for k in ("bounding", "effective", "permitted")}}}
        )
    )
    calls = _run_wrapper(
        monkeypatch,
        tmp_path,
        ["--root", "/r", "--log", "/l", "create", "--bundle", str(tmp_path), "id"],
    )
    caps = json.loads((tmp_path / "config.json").read_text())["process"]["capabilities"]
    assert caps["bounding"] == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert calls[0][1:] == [
        "--root",
        "/r",
        "--log",
        "/l",
        "create",
        "--bundle",
        str(tmp_path),
        "id",
    ]


def test_wrapper_filters_exec_process_file(monkeypatch, tmp_path):
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["true"], "capabilities": {"effective": ALL}}))
    _run_wrapper(monkeypatch, tmp_path, ["exec", "--process", str(proc), "--detach", "id"])
    assert json.loads(proc.read_text())["capabilities"]["effective"] == [
        "CAP_CHOWN",
        "CAP_SYS_ADMIN",
    ]


def test_wrapper_leaves_specs_alone_when_the_host_has_every_cap(monkeypatch, tmp_path):
    before = json.dumps({"process": {"capabilities": {"bounding": ALL}}})
    (tmp_path / "config.json").write_text(before)
    _run_wrapper(monkeypatch, tmp_path, ["run", "-b", str(tmp_path), "id"], bnd="000001ffffffffff")
    assert (tmp_path / "config.json").read_text() == before
