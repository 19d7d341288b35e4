import base64
import os
import ssl
import sys
from pathlib import Path

import pytest
import yaml

from loadtest.clusters import kubeconfig
from loadtest.clusters.base import client_options
from loadtest.clusters.existing import ExistingProvider
from loadtest.errors import ConfigError


def _write(tmp_path: Path, doc: dict, name: str = "kubeconfig") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def _doc(user: dict, cluster: dict | None = None) -> dict:
    return {
        "current-context": "a",
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "u"}},
            {"name": "b", "context": {"cluster": "c", "user": "missing"}},
        ],
        "clusters": [
            {
                "name": "c",
                "cluster": cluster
                or {"server": "https://127.0.0.1:6443/", "certificate-authority": "ca.crt"},
            }
        ],
        "users": [{"name": "u", "user": user}],
    }


def test_reads_relative_files_and_strips_server_slash(tmp_path):
    for f in ("ca.crt", "a.crt", "a.key"):
        (tmp_path / f).write_text("PEM")
    p = _write(tmp_path, _doc({"client-certificate": "a.crt", "client-key": "a.key"}))
    c = kubeconfig.read(p)
    assert c.server == "https://127.0.0.1:6443"
    assert c.ca_file == str(tmp_path / "ca.crt")
    assert c.client_cert == str(tmp_path / "a.crt")
    assert c.token is None and not c.insecure


def test_inline_data_is_written_privately_and_outlives_the_loader(tmp_path):
    data = base64.b64encode(b"PEM").decode()
    p = _write(
        tmp_path,
        _doc({"token": "s3cret"}, {"server": "https://x", "certificate-authority-data": data}),
    )
    c = kubeconfig.read(p, data_dir=tmp_path / "d")
    assert c.ca_file == str(tmp_path / "d" / "a-ca.crt")
    assert Path(c.ca_file).read_bytes() == b"PEM"
    assert Path(c.ca_file).stat().st_mode & 0o777 == 0o600
    assert c.token == "s3cret"
    assert "s3cret" not in repr(c)
    # the loader caches its temporary files by content: a second read still gets its own
    assert kubeconfig.read(p, data_dir=tmp_path / "e").ca_file == str(tmp_path / "e" / "a-ca.crt")


def test_kubeconfig_list_is_merged_first_definition_and_current_context_win(tmp_path):
    one = _write(
        tmp_path,
        {
            "current-context": "a",
            "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": "https://one"}}],
            "users": [{"name": "u", "user": {"token": "t1"}}],
        },
        "one",
    )
    two = _write(
        tmp_path,
        {
            "current-context": "b",
            "contexts": [{"name": "b", "context": {"cluster": "c", "user": "u2"}}],
            "clusters": [{"name": "c", "cluster": {"server": "https://two"}}],
            "users": [{"name": "u2", "user": {"token": "t2"}}],
        },
        "two",
    )
    spec = f"{one}{os.pathsep}{tmp_path / 'absent'}{os.pathsep}{two}"
    assert kubeconfig.contexts(spec) == ["a", "b"]
    a = kubeconfig.read(spec)  # current-context of the first file that sets one
    assert (a.context, a.server, a.token, a.source) == ("a", "https://one", "t1", one)
    b = kubeconfig.read(spec, "b")  # context from file two, cluster "c" as file one defines it
    assert (b.server, b.token, b.source) == ("https://one", "t2", two)


def test_context_choice_and_insecure_applied_to_the_client(tmp_path, monkeypatch):
    doc = _doc({"token": "t"})
    doc["clusters"].append(
        {"name": "i", "cluster": {"server": "https://127.0.0.2", "insecure-skip-tls-verify": True}}
    )
    doc["contexts"].append({"name": "ins", "context": {"cluster": "i", "user": "u"}})
    (tmp_path / "ca.crt").write_text("PEM")
    p = _write(tmp_path, doc)
    monkeypatch.setenv("KUBECONFIG", str(p))
    monkeypatch.setenv("LOADTEST_CACHE", str(tmp_path / "cache"))
    prov = ExistingProvider()
    cluster = prov.get("ins")
    assert cluster is not None and cluster.server == "https://127.0.0.2" and cluster.insecure
    verify = client_options(cluster)["verify"]
    assert verify.verify_mode == ssl.CERT_NONE and not verify.check_hostname
    assert prov.get("zzz") is None  # no such context: not an error, just absent
    assert not kubeconfig.read(p).insecure


def test_exec_plugin_gives_the_token(tmp_path):
    script = tmp_path / "cred.py"
    script.write_text(
        "import json\nprint(json.dumps({'apiVersion': "
        "'client.authentication.k8s.io/v1', 'kind': 'ExecCredential', "
        "'status': {'token': 'from-plugin'}}))\n"
    )
    p = _write(
        tmp_path,
        _doc(
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(script)],
                    "interactiveMode": "Never",
                }
            },
            {"server": "https://x"},
        ),
    )
    assert kubeconfig.read(p).token == "from-plugin"


def test_exec_plugin_that_fails_is_one_line(tmp_path):
    p = _write(
        tmp_path,
        _doc(
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "false",
                    "interactiveMode": "Never",
                }
            },
            {"server": "https://x"},
        ),
    )
    with pytest.raises(ConfigError, match="plugin gave no token") as e:
        kubeconfig.read(p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "not a kubeconfig"),
        ("contexts: {a: 1}\n", "contexts must be a list"),
        ("contexts: [a, b]\n", "contexts must be a list of named mappings"),
        ("clusters: [\n  {name: c\n", "cannot read"),
    ],
)
def test_malformed_kubeconfig_is_a_one_line_error_not_a_missing_context(tmp_path, text, message):
    (tmp_path / "junk").write_text(text)
    with pytest.raises(ConfigError, match=message) as e:
        ExistingProvider(tmp_path / "junk").get("a")
    assert "\n" not in str(e.value)


def test_errors_are_one_line_and_name_the_problem(tmp_path):
    (tmp_path / "ca.crt").write_text("PEM")
    p = _write(tmp_path, _doc({}))
    with pytest.raises(ConfigError, match="no entry named 'missing' in users"):
        kubeconfig.read(p, "b")
    with pytest.raises(kubeconfig.NoSuchContext, match="no entry named 'zzz' in contexts"):
        kubeconfig.read(p, "zzz")
    p2 = _write(
        tmp_path,
        _doc({"token": "t"}, {"server": "https://x", "certificate-authority": "nope.crt"}),
        "k2",
    )
    with pytest.raises(ConfigError, match="File does not exist"):
        kubeconfig.read(p2)
    with pytest.raises(ConfigError, match="cannot read"):
        kubeconfig.read(tmp_path / "absent")
