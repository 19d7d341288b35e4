import pytest

from loadtest.cli.main import main


def test_tools_missing_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOADTEST_CACHE", str(tmp_path))
    rc = main(["cluster", "up", "--provider", "local", "--name", "t"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("error:") and "make tools" in err[0]
    assert not (tmp_path / "local" / "t").exists()


def test_bad_flag_value_is_rejected(capsys):
    with pytest.raises(SystemExit) as e:
        main(["cluster", "up", "--apiserver-arg", "novalue"])
    assert e.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_down_of_unknown_cluster_is_safe(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOADTEST_CACHE", str(tmp_path))
    assert main(["cluster", "down", "--name", "ghost"]) == 0
    assert main(["cluster", "down", "--name", "ghost"]) == 0
    assert "nothing to do" in capsys.readouterr().err
