from pathlib import Path

import pytest

from loadtest import toolchain
from loadtest.errors import ConfigError, ToolsMissing


def test_pinned_toolchain_names_every_component():
    comps = {c.name: c for c in toolchain.load_components()}
    assert set(comps) == {
        "kubernetes",
        "etcd",
        "coredns",
        "kwok",
        "kind",
        "cni-plugins",
        "crictl",
        "refagent",
        "dnsprobe",
    }
    k8s = comps["kubernetes"]
    assert k8s.version.startswith("v1.33.")
    assert "kube-apiserver" in k8s.binaries and "kubelet" in k8s.binaries
    # the version ldflags carry the pinned version, or binaries report v0.0.0
    assert f"-X k8s.io/component-base/version.gitVersion={k8s.version}" in k8s.ldflags
    assert comps["etcd"].binaries == ("etcd",)
    assert comps["kwok"].binaries == ("kwok", "kwokctl")


def test_wrapper_modules_pin_the_same_versions():
    for c in toolchain.load_components():
        gomod = (c.module_dir / "go.mod").read_text()
        assert c.version in gomod, f"{c.module_dir}/go.mod does not pin {c.version}"
        assert (c.module_dir / "go.sum").exists()


@pytest.mark.parametrize(
    ("pkg", "name"),
    [
        ("go.etcd.io/etcd/server/v3", "server"),
        ("sigs.k8s.io/kwok/cmd/kwokctl", "kwokctl"),
        ("github.com/coredns/coredns", "coredns"),
        ("example.com/tool/v2/", "tool"),
    ],
)
def test_go_binary_name(pkg, name):
    assert toolchain._go_binary_name(pkg) == name


def test_missing_binary_tells_to_run_make_tools(tmp_path, monkeypatch):
    monkeypatch.setenv("LOADTEST_CACHE", str(tmp_path))
    with pytest.raises(ToolsMissing, match="run `make tools`"):
        toolchain.binary("kube-apiserver")


def test_fingerprint_changes_with_version(monkeypatch):
    c = toolchain.load_components()[0]
    other = toolchain.Component(**{**c.__dict__, "version": c.version + "-x"})
    assert c.fingerprint() != other.fingerprint()


def test_malformed_toolchain_file_is_a_config_error(tmp_path: Path):
    bad = tmp_path / "t.toml"
    bad.write_text('[kubernetes]\nversion = "v1"\n')
    with pytest.raises(ConfigError, match=r"\[kubernetes\]"):
        toolchain.load_components(bad)
    bad.write_text("not toml = = =")
    with pytest.raises(ConfigError, match="t.toml"):
        toolchain.load_components(bad)


def test_unknown_component_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LOADTEST_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="unknown tool component"):
        toolchain.build(["kubernetes", "nope"], log=lambda _: None)
