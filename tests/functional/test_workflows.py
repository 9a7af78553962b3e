"""The operator workflows on the REAL lab, through the CLI where it matters:
plan changes nothing, run --junit/--metrics-file write their files, phoenix
--max-age 0s replaces every node on the same image, replace NODE --force
replaces exactly that node, promote shows up in `rollout images`, and a data
volume survives the replacement of its node (and goes back on restore).

Every test leaves the pool as it found it: 4 nodes on one image, all UP.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rollout.app.replace import replace_node
from rollout.app.workspace import Workspace
from rollout.backends.lab import nodes as lab_nodes
from rollout.backends.lab.images import LabImageStore
from rollout.backends.lab.provider import LabProvider
from rollout.errors import DriverError, NotFoundError
from rollout.model import Image, LaunchSpec, NodeState
from rollout.testing.lab import LabHandle

pytestmark = pytest.mark.functional

ROLLOUT = str(Path(sys.executable).with_name("rollout"))
VERSION = "3.8.0"


def cli(lab: LabHandle, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLOUT_PROJECT": str(lab.project),
           "ROLLOUT_DATA_DIR": str(lab.data.root), "ROLLOUT_ENV": "lab"}
    proc = subprocess.run([ROLLOUT, *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"rollout {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def last_json(proc: subprocess.CompletedProcess[str], event: str) -> dict[str, Any]:
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            if data.get("event") == event:
                return dict(data)
    raise AssertionError(f"no {event} event in:\n{proc.stdout[-3000:]}")


def snapshot(lab: LabHandle) -> list[tuple[str, str, str, str]]:
    return sorted((n.name, n.image_id, n.lb_state, n.state) for n in lab.status().nodes
                  if n.role == "web")


def assert_healthy(lab: LabHandle) -> list[tuple[str, str, str, str]]:
    snap = snapshot(lab)
    assert len(snap) == 4, snap
    assert len({s[1] for s in snap}) == 1, snap
    assert all(s[2] == "up" and s[3] == "running" for s in snap), snap
    return snap


@pytest.fixture(scope="module")
def target(lab: LabHandle) -> Image:
    """An image the pool does not run yet (baked once per data directory)."""
    store = LabImageStore(lab.data)
    try:
        return store.by_version("web", VERSION)
    except NotFoundError:
        from rollout.backends.lab.builder import bake_on_lab

        return bake_on_lab(lab.project, lab.env, lab.data, "web", VERSION)


def test_plan_changes_nothing_then_run_writes_junit_and_metrics(
        lab: LabHandle, target: Image, tmp_path: Path) -> None:
    before = assert_healthy(lab)
    on_target = [s[0] for s in before if s[1] == target.id]
    plan = last_json(cli(lab, "plan", "--role", "web", "--image", target.id, "--output",
                         "json"), "plan")
    assert snapshot(lab) == before
    assert sorted(plan["replace"]) == sorted(s[0] for s in before if s[1] != target.id)
    assert plan["skipped"] == sorted(on_target)
    assert plan["floor"] == 4 and plan["in_service"] == 4 and not plan["breaches_floor"]
    assert [n for b in plan["batches"] for n in b] == plan["replace"]
    assert plan["eta_seconds"] > 0 and set(plan["eta_source"]) == {
        "boot", "smoke", "lb_rise", "drain"}
    text = cli(lab, "plan", "--role", "web", "--image", target.id).stdout
    assert "nothing is changed" in text and "ETA" in text
    assert snapshot(lab) == before

    junit, metrics = tmp_path / "reports" / "lab.xml", tmp_path / "rollout.prom"
    cli(lab, "run", "--role", "web", "--image", target.id, "--junit", str(junit),
        "--metrics-file", str(metrics))
    after = assert_healthy(lab)
    assert {s[1] for s in after} == {target.id}
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert len(suites) == len(plan["replace"])
    assert all(int(s.get("failures", "0")) == 0 and int(s.get("tests", "0")) > 0
               for s in suites)
    prom = metrics.read_text()
    assert 'outcome="succeeded"' in prom and 'role="web"' in prom
    assert "# TYPE" in prom

    images = json.loads(cli(lab, "images", "--role", "web", "--output", "json").stdout)
    mine = next(i for i in images if i["id"] == target.id)
    if plan["replace"]:
        assert "lab" in mine["passed_envs"]
    cli(lab, "promote", target.id, "--to", "staging", "--by", "tester")
    images = json.loads(cli(lab, "images", "--role", "web", "--output", "json").stdout)
    assert "staging" in next(i for i in images if i["id"] == target.id)["promoted_to"]


def test_phoenix_max_age_zero_replaces_every_node_on_the_same_image(lab: LabHandle) -> None:
    before = assert_healthy(lab)
    report = last_json(cli(lab, "phoenix", "--role", "web", "--max-age", "0s", "--output",
                           "json"), "phoenix_report")
    assert report["status"] == "replaced"
    after = assert_healthy(lab)
    assert {s[0] for s in after}.isdisjoint({s[0] for s in before})
    assert {s[1] for s in after} == {before[0][1]}

    # From cron: nothing is due right after, and a spent budget is a skip (exit 0).
    again = cli(lab, "phoenix", "--role", "web", "--max-age", "1h")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    spent = cli(lab, "phoenix", "--role", "web", "--max-age", "0s", "--max-per-day", "4")
    assert spent.returncode == 0 and "skipped: the per-day budget is spent" in spent.stdout
    assert snapshot(lab) == after


def test_replace_force_replaces_exactly_that_node(lab: LabHandle) -> None:
    before = assert_healthy(lab)
    victim, others = before[0][0], {s[0] for s in before[1:]}

    kept = last_json(cli(lab, "replace", victim, "--output", "json"), "replace_report")
    assert kept["smoke_passed"] and not kept["replaced"]
    assert snapshot(lab) == before
    forensics = Path(kept["forensics"])
    assert (forensics / "summary.json").is_file() and (forensics / "journal.txt").is_file()

    done = last_json(cli(lab, "replace", victim, "--force", "--output", "json"),
                     "replace_report")
    assert done["replaced"]
    after = assert_healthy(lab)
    names = {s[0] for s in after}
    assert victim not in names and others <= names and len(names - others) == 1
    assert {s[1] for s in after} == {before[0][1]}


def volume_workspace(lab: LabHandle) -> Workspace:
    """The web pool with a data volume at /var/lib/data (replaced in place)."""
    ws = Workspace.open(lab.project, "lab", lab.data.root)
    pool = ws.pool("web")
    settings = pool.settings.with_overrides(
        "test", strategy="in_place", max_unavailable=1, min_healthy=3, soak=0)
    settings = settings.model_copy(update={"volume": "/var/lib/data"})
    pools = {**ws.env.pools, "web": replace(pool, settings=settings)}
    return replace(ws, env=replace(ws.env, pools=pools))


def ssh(lab: LabHandle, node: str, command: str) -> str:
    proc = lab_nodes.ssh_run(lab_nodes.ssh_target(lab.context, node), command)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_data_volume_survives_the_replacement_and_goes_back_on_restore(
        lab: LabHandle) -> None:
    ws = volume_workspace(lab)
    first = assert_healthy(lab)[0][0]
    with_volume = replace_node(ws, first, role="web", force=True)
    assert with_volume.result is not None
    assert_healthy(lab)
    records = {r.name: r for r in lab_nodes.list_nodes(lab.context)}
    holder = next(n for n, r in records.items() if r.volume_dir and r.role == "web")
    token = secrets.token_hex(8)
    ssh(lab, holder, f"echo {token} > /var/lib/data/marker && sync")

    moved = replace_node(ws, holder, role="web", force=True)
    assert moved.result is not None
    records = {r.name: r for r in lab_nodes.list_nodes(lab.context)}
    assert holder not in records
    new = next(n for n, r in records.items() if r.volume_dir and r.role == "web")
    assert ssh(lab, new, "cat /var/lib/data/marker") == token
    assert assert_healthy(lab)

    # Restore, at the provider: the volume cannot be taken while the new
    # machine runs, and goes back to the old node once that one is gone.
    provider = LabProvider(lab.context, ws.pool("web"), LabImageStore(lab.data))
    old = next(n for n in provider.list() if n.name == new)
    image = LabImageStore(lab.data).get(old.image_id)
    provider.stop(old)
    try:
        spec = LaunchSpec(name=f"{new[:40]}-v", role="web", env="lab", image=image,
                          volume_from=new)
        launched = provider.launch(spec)
        assert lab_nodes.read_record(lab.context, launched.name).volume_dir == (
            records[new].volume_dir)
        with pytest.raises(DriverError, match="mounted by"):
            lab_nodes.start_node(lab.context, new, Path(image.location), role="web",
                                 env="lab", image_id=image.id, image_version=image.version)
        provider.destroy(launched)
        provider.finish_removal(launched)  # a destroy finishes in a second step
        restarted = provider.start(old)
        assert restarted.state is NodeState.RUNNING
        lab_nodes.wait_ssh(lab.context, new, 30.0)
        assert ssh(lab, new, "cat /var/lib/data/marker") == token
    finally:
        lab.up()  # restarts the old node if a step failed and waits until all are UP
    assert_healthy(lab)
