"""Every case of the bad-input corpus (tests/inputs/) through the real CLI entry
point: the documented exit code, a message naming the file and key (or the
option), no traceback, and nothing created outside the data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inputs.corpus import REPO, Case, cases, check, lay_data, lay_project, run_cli

CASES = cases()


def test_the_corpus_has_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_with_its_code_and_names_the_place(case: Case, tmp_path: Path) -> None:
    project = lay_project(case, REPO, tmp_path / "project")
    data = lay_data(case, tmp_path / "data")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    outcome = run_cli(["--project", str(project), *case.argv], data)
    problems = check(case, outcome, project, data)
    assert not problems, f"{case.name} ({case.what}): {problems}\n{outcome.output}"
    # Nothing but the journal (opened to read) may appear in the data directory.
    after = sorted(p.relative_to(data) for p in data.rglob("*"))
    added = [p for p in after if p not in before and not p.name.startswith("journal.sqlite")]
    assert added in ([], [Path("logs")]), f"{case.name} created {added}"
    assert not (data / "logs").exists() or not any((data / "logs").iterdir()), \
        f"{case.name} wrote a crash report"
