"""The data directory is private: a 0700 root, 0600 files, umask 077 in the CLI.

The journal holds every pool's settings (``aws.user_data`` included), so
nothing in the data directory may be readable by other users.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.backends.lab.records import LabContext, NodeRecord, lab_lock, write_record
from rollout.config import LabSettings
from rollout.fsio import write_atomic, write_json_atomic
from rollout.paths import DataDir
from rollout.store.journal import Journal
from tests.inputs.corpus import REPO, run_cli


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _loose(root: Path) -> list[str]:
    """Everything under ``root`` that another user could read or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if _mode(path) & 0o077:
            found.append(f"{path.relative_to(root)}: {oct(_mode(path))}")
    return found


@pytest.fixture
def lax_umask() -> Iterator[None]:
    """The usual 022, so a private mode must come from the code, not the test."""
    saved = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(saved)


def test_the_cli_makes_a_private_data_dir(tmp_path: Path, lax_umask: None) -> None:
    data = tmp_path / "data"
    outcome = run_cli(["--project", str(REPO), "history"], data)
    assert outcome.code == 0, outcome.output
    assert (data / "journal.sqlite").is_file()
    assert _mode(data) == 0o700
    assert _loose(data) == []


def test_the_cli_tightens_a_data_dir_made_world_readable(tmp_path: Path,
                                                         lax_umask: None) -> None:
    data = tmp_path / "data"
    Journal(data / "journal.sqlite").close()
    os.chmod(data, 0o755)
    os.chmod(data / "journal.sqlite", 0o644)
    outcome = run_cli(["--project", str(REPO), "history"], data)
    assert outcome.code == 0, outcome.output
    assert _mode(data) == 0o700
    assert _mode(data / "journal.sqlite") == 0o600


def test_the_cli_restores_the_callers_umask(tmp_path: Path, lax_umask: None) -> None:
    run_cli(["--project", str(REPO), "history"], tmp_path / "data")
    current = os.umask(0o022)
    assert current == 0o022


def test_a_crash_report_is_private(tmp_path: Path, lax_umask: None,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from rollout.app import workspace

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("a bug")

    # The one way to reach the catch-all from outside: a bug below the CLI.
    monkeypatch.setattr(workspace.Workspace, "open", broken)
    data = tmp_path / "data"
    outcome = run_cli(["--project", str(REPO), "history"], data)
    assert outcome.code == 70, outcome.output
    reports = list((data / "logs").glob("crash-*.txt"))
    assert len(reports) == 1 and "a bug" in reports[0].read_text()
    assert _loose(data) == []


def test_files_written_atomically_are_private_by_default(tmp_path: Path,
                                                         lax_umask: None) -> None:
    write_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "b.json", {"a": 1})
    write_atomic(tmp_path / "c.prom", "x", mode=0o644)  # a report meant for others
    assert [_mode(tmp_path / n) for n in ("a.txt", "b.json", "c.prom")] == [0o600, 0o600, 0o644]


def test_the_journal_is_private_whatever_the_umask(tmp_path: Path, lax_umask: None) -> None:
    journal = Journal(tmp_path / "d" / "journal.sqlite")
    journal.close()
    assert _mode(tmp_path / "d") == 0o700
    files = sorted((tmp_path / "d").iterdir())
    assert files and all(_mode(p) == 0o600 for p in files), [(p, oct(_mode(p))) for p in files]


def test_ensure_makes_every_directory_private(tmp_path: Path, lax_umask: None) -> None:
    data = DataDir(tmp_path / "data").ensure()
    assert _mode(data.root) == 0o700
    assert _loose(data.root) == []


def test_lab_records_and_lock_are_private(tmp_path: Path, lax_umask: None) -> None:
    lab = LabContext(DataDir(tmp_path / "data"), LabSettings())
    with lab_lock(lab):
        pass
    write_record(lab, NodeRecord(
        name="web-1", address="10.231.0.5", role="web", env="lab", image_id="web-1",
        image_version="1.0.0", rollout_id=None, created_at=0.0, pid=None, writable=False,
        image_dir="/nonexistent",
    ))
    assert _mode(lab.data.lab / "lock") == 0o600
    assert _mode(lab.node_dir("web-1") / "record.json") == 0o600
    assert _mode(lab.data.lab) == 0o700


def test_the_systemd_example_sets_a_private_umask() -> None:
    unit = (REPO / "examples/systemd/rollout-phoenix@.service").read_text()
    umasks = [line for line in unit.splitlines() if line.startswith("UMask=")]
    assert umasks == ["UMask=0077"]
