"""A "local" component (the project's own Go code: refagent) rebuilds when its sources change."""

from loadtest import toolchain


def test_local_fingerprint_follows_go_sources(tmp_path, monkeypatch):
    (tmp_path / "clusters" / "toolchain").mkdir(parents=True)
    monkeypatch.setattr(toolchain, "TOOLCHAIN_DIR", tmp_path / "clusters" / "toolchain")
    mod = tmp_path / "agents-go"
    mod.mkdir()
    (mod / "go.mod").write_text("module loadtest.local/x\n")
    (mod / "go.sum").write_text("")
    (mod / "main.go").write_text("package main\n")
    local = toolchain.Component("x", "local", "../../agents-go", ("loadtest.local/x",))
    pinned = toolchain.Component("x", "v1.0.0", "../../agents-go", ("loadtest.local/x",))
    before, before_pinned = local.fingerprint(), pinned.fingerprint()
    (mod / "main.go").write_text("package main\n\nfunc main() {}\n")
    assert local.fingerprint() != before
    assert pinned.fingerprint() == before_pinned  # pinned modules: go.mod/go.sum only


def test_refagent_is_a_local_component():
    c = {c.name: c for c in toolchain.load_components()}["refagent"]
    assert c.version == "local" and c.binaries == ("refagent",)
    assert (c.module_dir / "go.mod").read_text().count("k8s.io/client-go v0.33.13") == 1
