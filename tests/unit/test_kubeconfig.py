import base64
from pathlib import Path

import pytest
import yaml

from loadtest import kubeconfig
from loadtest.errors import ConfigError


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "kubeconfig"
    p.write_text(yaml.safe_dump(doc))
    return p


def _doc(user: dict, cluster: dict | None = None) -> dict:
    return {
        "current-context": "a",
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}},
                     {"name": "b", "context": {"cluster": "c", "user": "missing"}}],
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443/",
                                                           "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": user}],
    }


def test_reads_relative_files_and_strips_server_slash(tmp_path):
    p = _write(tmp_path, _doc({"client-certificate": "a.crt", "client-key": "a.key"}))
    c = kubeconfig.read(p)
    assert c.server == "https://127.0.0.1:6443"
    assert c.ca_file == str(tmp_path / "ca.crt")
    assert c.client_cert == str(tmp_path / "a.crt")
    assert c.token is None


def test_inline_data_is_written_privately(tmp_path):
    data = base64.b64encode(b"PEM").decode()
    p = _write(tmp_path, _doc({"token": "s3cret"},
                              {"server": "https://x", "certificate-authority-data": data}))
    c = kubeconfig.read(p, data_dir=tmp_path / "d")
    assert Path(c.ca_file).read_bytes() == b"PEM"
    assert Path(c.ca_file).stat().st_mode & 0o777 == 0o600
    assert c.token == "s3cret"
    assert "s3cret" not in repr(c)


def test_errors_are_one_line_and_name_the_problem(tmp_path):
    p = _write(tmp_path, _doc({}))
    with pytest.raises(ConfigError, match="no entry named 'missing' in users"):
        kubeconfig.read(p, "b")
    with pytest.raises(ConfigError, match="no entry named 'zzz' in contexts"):
        kubeconfig.read(p, "zzz")
    p2 = _write(tmp_path, _doc({"exec": {"command": "aws"}}))
    with pytest.raises(ConfigError, match="exec/auth-provider"):
        kubeconfig.read(p2)
    (tmp_path / "junk").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="not a kubeconfig"):
        kubeconfig.read(tmp_path / "junk")
    with pytest.raises(ConfigError, match="cannot read"):
        kubeconfig.read(tmp_path / "absent")
