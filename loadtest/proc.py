"""Running subprocesses so a failure always carries the command and its output."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from loadtest.errors import CommandError


def run(cmd: Sequence[str | Path], what: str, *, env: Mapping[str, str] | None = None,
        timeout: float = 300, input: str | None = None) -> str:
    """Run to completion; return stdout+stderr, or raise CommandError naming `what`."""
    args = [str(c) for c in cmd]
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input,
                           env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise CommandError(f"{what} (timed out after {timeout:.0f}s)", args, -1, out) from e
    except FileNotFoundError as e:
        raise CommandError(what, args, 127, str(e)) from e
    output = r.stdout + r.stderr
    if r.returncode != 0:
        raise CommandError(what, args, r.returncode, output)
    return output
