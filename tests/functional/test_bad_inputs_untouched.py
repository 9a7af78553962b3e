"""The bad-input corpus against the LIVE lab: every case runs with a project
copy of the running lab (the case's files laid over it) and a data directory
that reaches the live lab (its HAProxy socket, node records and images are
symlinked in), so a command that slipped past validation WOULD touch the lab.
Each must exit with its documented code, and the lab's nodes and LB states
(`rollout lab status --output json`) must be identical before and after.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import cli
from tests.inputs.corpus import cases, check, lay_data, lay_project, run_cli

pytestmark = pytest.mark.functional

LAB_CASES = [c for c in cases() if c.lab]


def _status(lab: LabHandle) -> list[dict[str, Any]]:
    """What `rollout lab status --output json` lists as nodes (in-process: 49
    subprocesses would cost a minute)."""
    nodes: list[dict[str, Any]] = lab.status().to_json()["nodes"]
    return sorted(nodes, key=lambda n: n["name"])


def test_lab_status_json_is_what_we_compare(lab: LabHandle) -> None:
    proc = cli(lab, "lab", "status", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)["nodes"], key=lambda n: n["name"]) == _status(lab)


def _reaching_data_dir(lab: LabHandle, dest: Path) -> Path:
    """A data dir holding the case's files, linked to the live lab's state."""
    dest.mkdir(parents=True)
    for name in ("lab", "base", "evidence"):
        source = lab.data.root / name
        if source.exists():
            (dest / name).symlink_to(source.resolve())
    images = dest / "images"
    images.mkdir()
    for image in lab.data.images.iterdir():
        if not image.name.startswith("."):
            (images / image.name).symlink_to(image.resolve())
    return dest


def test_no_bad_input_touches_the_live_lab(lab: LabHandle, tmp_path: Path) -> None:
    before = _status(lab)
    assert before, "the lab has no nodes"
    failures = []
    for case in LAB_CASES:
        where = tmp_path / case.name
        project = lay_project(case, lab.project, where / "project")
        data = lay_data(case, _reaching_data_dir(lab, where / "data"))
        outcome = run_cli(["--project", str(project), *case.argv], data)
        problems = check(case, outcome, project, data)
        if problems:
            failures.append(f"{case.name}: {problems}: {outcome.output[:300]}")
        now = _status(lab)
        if now != before:
            failures.append(f"{case.name} changed the lab: {before} -> {now}")
            before = now
    assert not failures, "\n".join(failures)
    assert len(LAB_CASES) >= 20
