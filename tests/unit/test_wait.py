import pytest

from loadtest.wait import WaitTimeout, until


def test_until_returns_first_truthy_value():
    calls = iter([None, 0, ValueError("x"), "ok"])

    def check():
        v = next(calls)
        if isinstance(v, Exception):
            raise v
        return v

    assert until(check, "thing", timeout=5, interval=0) == "ok"


def test_until_timeout_names_what_and_last_error():
    def check():
        raise RuntimeError("connection refused")

    with pytest.raises(WaitTimeout, match=r"waiting for the api.*connection refused"):
        until(check, "the api", timeout=0.05, interval=0.01)
