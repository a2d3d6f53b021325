"""tests/conftest.py's ``need``: a missing prerequisite skips locally and fails under CI=true."""

from __future__ import annotations

import pytest

from tests import conftest


def test_need_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="no such data"):
        conftest.need("no such data")
    with pytest.raises(pytest.skip.Exception, match="'synmed_no_such_module'.*pip install it"):
        conftest.need_module("synmed_no_such_module", "pip install it")


def test_need_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="no such data .CI=true: the test rig must"):
        conftest.need("no such data")
    with pytest.raises(pytest.fail.Exception, match="'synmed_no_such_module'.*CI=true"):
        conftest.need_module("synmed_no_such_module", "pip install it")


def test_need_module_returns_the_module() -> None:
    assert conftest.need_module("json", "stdlib").dumps([1]) == "[1]"
