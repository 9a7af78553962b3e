"""Lifecycle hooks on the REAL lab, through the CLI: the shipped store-and-load
hook (playbooks/hooks/carry-state.yml at after_boot) keeps a file written on
the old node on its replacement; the hook steps are in the journal
(``rollout show --output json``); a SIGKILL of the controller while a hook
runs, then ``rollout resume``, converges with the file carried over.

The pool's group_vars get the hooks for this module only (restored after it),
and ``rollout replace NODE --force`` replaces one node on the image it runs,
so no bake is needed. Every test leaves the pool as it found it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout.backends.lab import nodes as lab_nodes
from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import Running, assert_pool_healthy, cli, cli_json, pool

pytestmark = pytest.mark.functional

STATE = "/var/lib/rollout-state/state.txt"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hooked(lab: LabHandle) -> Iterator[LabHandle]:
    """The web pool with the store-and-load hook at after_boot. The test
    project's playbooks/ is a symlink out of it (which the loader refuses for
    a hook), so the shipped hooks are copied into the project's hooks/."""
    path = lab.project / "inventories" / "lab" / "group_vars" / "web.yml"
    original = path.read_text()
    shutil.copytree(REPO / "playbooks" / "hooks", lab.project / "hooks")
    data = yaml.safe_load(original)
    data["rollout"]["hooks"] = {"after_boot": {
        "playbook": "hooks/carry-state.yml", "timeout": "3m", "vars": {"state_path": STATE}}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        yield lab
    finally:
        path.write_text(original)
        shutil.rmtree(lab.project / "hooks")


def _ssh(lab: LabHandle, node: str, command: str) -> str:
    proc = lab_nodes.ssh_run(lab_nodes.ssh_target(lab.context, node), command)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _write_state(lab: LabHandle) -> tuple[str, str, set[str]]:
    """A token written on the first node of the pool: (node, token, the others)."""
    nodes = [n["name"] for n in assert_pool_healthy(lab)]
    token = secrets.token_hex(8)
    _ssh(lab, nodes[0], f"mkdir -p {Path(STATE).parent} && echo {token} > {STATE} && sync")
    return nodes[0], token, set(nodes[1:])


def _replacement(lab: LabHandle, old: str, others: set[str]) -> str:
    after = {n["name"] for n in assert_pool_healthy(lab)}
    assert old not in after and others <= after, (old, others, after)
    (new,) = after - others
    return new


def _hook_steps(lab: LabHandle, rollout_id: str) -> list[dict[str, Any]]:
    detail = cli_json(lab, "show", rollout_id)
    return [s for s in detail["steps"] if s["kind"] == "hook"]


def test_store_and_load_hooks_keep_a_file_across_replacement(hooked: LabHandle) -> None:
    lab = hooked
    old, token, others = _write_state(lab)
    proc = cli(lab, "replace", old, "--role", "web", "--force", "--output", "json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    rollout_id = next(e["rollout_id"] for e in events if e["event"] == "rollout_started")
    new = _replacement(lab, old, others)
    assert _ssh(lab, new, f"cat {STATE}") == token
    steps = _hook_steps(lab, rollout_id)
    assert [(s["detail"], s["node"], s["ok"]) for s in steps] == [("after_boot", new, True)]


def test_sigkill_during_a_hook_then_resume_converges(hooked: LabHandle) -> None:
    lab = hooked
    old, token, others = _write_state(lab)
    run = Running(lab, "replace", old, "--role", "web", "--force")
    try:
        started = run.wait_for(lambda e: e.get("event") == "step_started"
                               and e.get("step") == "hook", timeout=600)
        os.kill(run.proc.pid, signal.SIGKILL)
    finally:
        code = run.finish(timeout=60)
    assert code == -signal.SIGKILL
    rollout_id = started["rollout_id"]
    resumed = cli(lab, "resume", "--role", "web", timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    new = _replacement(lab, old, others)
    assert _ssh(lab, new, f"cat {STATE}") == token
    steps = _hook_steps(lab, rollout_id)
    # The killed hook's step never finished; the resumed controller ran it again.
    assert steps[0]["ok"] is None and steps[-1]["ok"] is True, steps
    assert {s["detail"] for s in steps} == {"after_boot"}
    assert cli_json(lab, "show", rollout_id)["status"] == "succeeded"
    assert {n["name"] for n in pool(lab)} == others | {new}
