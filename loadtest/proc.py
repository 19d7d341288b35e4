"""Running subprocesses so a failure always carries the command and its output."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from loadtest.errors import CommandError


def run(
    cmd: Sequence[str | Path],
    what: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    input: str | None = None,
) -> str:
    """Run to completion; return its stdout, or raise CommandError naming `what` (with stdout
    and stderr). Callers parse what is returned, so stderr stays out of it: kubectl printed a
    websocket warning ("Unknown stream id 1") after an exec's output and failed CI's test."""
    args = [str(c) for c in cmd]
    try:
        r = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as e:
        out = "".join(
            (x or b"").decode() if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr)
        )
        raise CommandError(f"{what} (timed out after {timeout:.0f}s)", args, -1, out) from e
    except FileNotFoundError as e:
        raise CommandError(what, args, 127, str(e)) from e
    if r.returncode != 0:
        raise CommandError(what, args, r.returncode, r.stdout + r.stderr)
    return r.stdout


def stop_pidfile(pidfile: Path, grace: float = 10) -> None:
    """Stop the process group a pidfile names (TERM, then KILL after `grace`); idempotent."""
    if not pidfile.exists():
        return
    try:
        pid = int(pidfile.read_text())
    except ValueError:
        return
    stop_group(pid, grace)
    pidfile.unlink(missing_ok=True)


def stop_group(pid: int, grace: float = 10) -> None:
    """TERM the process group led by `pid`, KILL it after `grace` seconds."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True
