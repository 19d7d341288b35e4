"""Every command, taken from the parser (a new one is covered without editing this file):
`--help` works, and bad input (flags, folders, kubeconfigs) is one line that leaves nothing
behind."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from loadtest.cli.main import build_parser, main

RUNS = Path(__file__).resolve().parent.parent / "fixtures" / "runs"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = sorted(_subparsers())
# Arguments a command needs before it gets to the input under test. A new command that
# needs some fails below with argparse's exit 2 until it is given them here.
REQUIRED: dict[str, list[str]] = {
    "cluster": ["up"],
    "compare": ["--baseline", "telemetry-v1", "--candidate", "telemetry-v2"],
    "mitigate": ["--from", "{run}"],
}


def _has(cmd: str, flag: str) -> bool:
    return any(flag in a.option_strings for a in _subparsers()[cmd]._actions)


def _folder_args(cmd: str) -> list[str]:
    """The positional arguments of a command that are paths (results folders)."""
    return [a.dest for a in _subparsers()[cmd]._actions if not a.option_strings and a.type is Path]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (so a default results/ would show) and a private cache."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("LOADTEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return tmp_path


def _one_line_error(capsys: pytest.CaptureFixture[str], rc: int, want_rc: int = 1) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == want_rc, err
    assert len(err) == 1, err
    return err[0]


def test_every_command_is_tested() -> None:
    assert {
        "run",
        "compare",
        "compare-results",
        "mitigate",
        "report",
        "summarize",
        "verdict",
        "seed",
        "sweep",
        "incident",
    } <= set(COMMANDS)


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(c in out for c in COMMANDS)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_works(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: loadtest {cmd}")


@pytest.mark.parametrize("cmd", COMMANDS)
def test_bad_flag_is_one_line(cmd: str, place: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _tree(place)
    with pytest.raises(SystemExit) as e:
        main([cmd, "--no-such-flag"])
    line = _one_line_error(capsys, int(e.value.code or 0), want_rc=2)
    assert "error:" in line and "--help" in line
    assert _tree(place) == before


FOLDER_COMMANDS = [c for c in COMMANDS if _folder_args(c)] + ["mitigate"]


def _folder_argv(cmd: str, folder: Path) -> list[str]:
    if cmd == "mitigate":
        return ["mitigate", "--from", str(folder)]
    return [cmd, *[str(folder)] * len(_folder_args(cmd))]


@pytest.mark.parametrize("kind", ["missing", "foreign"])
@pytest.mark.parametrize("cmd", FOLDER_COMMANDS)
def test_missing_or_foreign_folder_is_one_line(
    cmd: str, kind: str, place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert {"summarize", "verdict", "report", "compare-results"} <= set(FOLDER_COMMANDS)
    folder = place / "cwd" / "nope"
    if kind == "foreign":
        folder.mkdir()
        (folder / "notes.txt").write_text("not a run\n")
        (folder / "sub").mkdir()
    before = _tree(place)
    line = _one_line_error(capsys, main(_folder_argv(cmd, folder)))
    assert line.startswith("error:") and "Traceback" not in line
    assert _tree(place) == before


KUBECONFIG_COMMANDS = [c for c in COMMANDS if _has(c, "--kubeconfig")]
BAD_KUBECONFIGS = {
    "missing": None,
    "not yaml": "clusters: [\n  - name: x\n    cluster: {server: https://127.0.0.1:1\n",
    "not a mapping": "- just\n- a list\n",
    "no such context": "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_KUBECONFIGS))
@pytest.mark.parametrize("cmd", KUBECONFIG_COMMANDS)
def test_bad_kubeconfig_is_one_line_and_leaves_nothing(
    cmd: str, kind: str, place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert {"run", "compare", "seed", "agents", "mitigate", "sweep"} <= set(KUBECONFIG_COMMANDS)
    run = place / "run"
    shutil.copytree(RUNS / "telemetry-v2", run)
    kc = place / "kubeconfig"
    text = BAD_KUBECONFIGS[kind]
    if text is not None:
        kc.write_text(text)
    argv = [
        cmd,
        *[a.format(run=run) for a in REQUIRED.get(cmd, [])],
        "--provider",
        "existing",
        "--kubeconfig",
        str(kc),
    ]
    if _has(cmd, "--out"):
        argv += ["--out", str(place / "cwd" / "results")]
    before = _tree(place)
    line = _one_line_error(capsys, main(argv))
    assert line.startswith("error:") and "Traceback" not in line
    assert _tree(place) == before  # no results folder, nothing in the run's folder


@pytest.mark.parametrize("cmd", ["run", "compare", "sweep", "incident"])
def test_a_run_that_reached_no_cluster_leaves_no_results_folder(
    cmd: str, place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No toolchain in the cache: the first run cannot create its cluster. Neither the run
    folder nor the comparison's or sweep's folder (nor results/ itself) stays behind."""
    argv = [
        cmd,
        *REQUIRED.get(cmd, []),
        "--provider",
        "local",
        "--name",
        "gate-unit-none",
        "--out",
        str(place / "cwd" / "results"),
    ]
    before = _tree(place)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "make tools" in err[-1], err
    assert _tree(place) == before
