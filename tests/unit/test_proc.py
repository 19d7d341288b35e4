import sys

import pytest

from loadtest.errors import CommandError
from loadtest.proc import run

# A result on stdout and a warning on stderr, as kubectl exec printed in CI
# ("Unknown stream id 1, discarding message" after the output it was asked for).
NOISY = (
    "import sys; print('answer', flush=True); print('E1202 warning', file=sys.stderr, flush=True)"
)


def test_run_returns_stdout_only():
    assert run([sys.executable, "-c", NOISY], "noisy") == "answer\n"


def test_a_failure_carries_the_command_and_both_streams():
    with pytest.raises(CommandError, match="noisy and failing failed .exit 3.") as e:
        run([sys.executable, "-c", NOISY + "; sys.exit(3)"], "noisy and failing")
    assert "answer" in e.value.output and "E1202 warning" in e.value.output


def test_a_timeout_carries_both_streams():
    with pytest.raises(CommandError, match="timed out after 2s") as e:
        run([sys.executable, "-c", NOISY + "; import time; time.sleep(30)"], "slow", timeout=2)
    assert "answer" in e.value.output and "E1202 warning" in e.value.output
