import gzip
import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_recorded(name: str) -> list[dict]:
    """A raw stream recorded from a real run (tests/fixtures/*.jsonl.gz)."""
    with gzip.open(FIXTURES / name, "rt") as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def recorded():
    return load_recorded
