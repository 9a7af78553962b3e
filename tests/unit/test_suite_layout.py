"""The suite collects as one pytest session, and the test directories are
not packages (no __init__.py), so pytest imports each test file under its
basename: two test files with the same name in different directories stop
the whole collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_unique_basename() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py") if "fixtures" not in p.parts)
    assert [n for n, c in names.items() if c > 1] == []
    assert len(names) > 50  # the glob found the suite
