"""Fixtures of the functional tests on top of the shared lab (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import assert_pool_healthy


@pytest.fixture
def healthy(lab: LabHandle) -> Iterator[LabHandle]:
    """The pool is healthy before the test; and after it, whatever it did."""
    assert_pool_healthy(lab)
    yield lab
    assert_pool_healthy(lab)
