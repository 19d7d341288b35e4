"""One small error hierarchy: every failure the harness reports is a LoadtestError.

The CLI turns these into one clear line and an exit code; library code never exits.
"""

from __future__ import annotations

from collections.abc import Sequence


class LoadtestError(Exception):
    """Base of every error the harness raises on purpose."""


class ConfigError(LoadtestError):
    """Bad input: a config file, a profile, a flag. The message names what and where."""


class ToolsMissing(LoadtestError):
    """A binary of the toolchain has not been built yet."""


class ClusterError(LoadtestError):
    """A cluster cannot be created, found, reached or removed."""


class CommandError(LoadtestError):
    """A subprocess failed; carries the command and the tail of its output."""

    def __init__(self, what: str, cmd: Sequence[str], returncode: int, output: str) -> None:
        self.what = what
        self.cmd = list(cmd)
        self.returncode = returncode
        self.output = output
        super().__init__(f"{what} failed (exit {returncode}): {' '.join(self.cmd)}")

    def details(self, lines: int = 40) -> str:
        """The last lines of the command's output, for showing under the one-line error."""
        return "\n".join(self.output.rstrip().splitlines()[-lines:])
