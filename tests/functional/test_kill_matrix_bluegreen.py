"""The kill matrix's blue-green cells: SIGKILL a blue-green `rollout run` at
its own boundaries, then `rollout resume`, under load; the pool must end all
blue or all green, with 0 failed requests, and `resume` must say which side
it chose (``side_chosen``).

On the 2-node blue-green lab (``bg_lab``). CI runs three cells:

- just after the stage of green node #0 was committed (``lb_stage``): resume
  keeps blue and carries on with the green pool;
- inside the switch's effect→outcome window: the controller SIGKILLs itself
  right after the switch's LB call returned, before its outcome is committed
  (ROLLOUT_FAULT_KILL_AFTER_EFFECT=0:lb_switch, see rollout.app.faults);
  resume completes the switch to green only if every green node is UP;
- during the warm wait (just after ``traffic_switched``): resume keeps green
  and retires blue after the rest of ``scale_down_delay``.

The exhaustive variant (ROLLOUT_KILL_MATRIX_FULL=1) kills just after and
inside every step of every replacement of a blue-green run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import pytest

from rollout.app.faults import ENV_VAR as FAULT_VAR
from rollout.backends.lab.images import LabImageStore
from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load
from tests.functional.rollout_cli import ROLE, TARGETS, command, ensure_image
from tests.functional.test_kill_matrix import boundaries, show, wait_converged

pytestmark = pytest.mark.functional

SIZE = 2
RATE = 200
#: Long enough for a kill to land inside the warm wait, short enough for CI.
DELAY = "4s"

Event = dict[str, Any]


@dataclass(frozen=True)
class Cell:
    """Where to kill: a step just after its outcome was committed (``after``),
    inside its effect window (``window``), or on an event (``event``)."""

    name: str
    index: int = 0
    kind: str = ""
    nth: int = 1
    window: bool = False
    event: str = ""

    def hit(self, event: Event, seen: dict[str, int]) -> bool:
        if self.event:
            return event.get("event") == self.event
        if (event.get("event") == "step_finished" and event.get("ok")
                and event.get("index") == self.index and event.get("step") == self.kind):
            seen[self.kind] = seen.get(self.kind, 0) + 1
            return seen[self.kind] == self.nth
        return False


CI_CELLS = (
    Cell("just after #0 lb_stage", kind="lb_stage"),
    Cell("inside the switch (#0 lb_switch)", kind="lb_switch", window=True),
    Cell("during the warm wait", event="traffic_switched"),
)


def run_args(lab: LabHandle, version: str) -> list[str]:
    return command(lab, "run", "--role", ROLE, "--version", version, "--strategy",
                   "blue_green", "--scale-down-delay", DELAY, "--output", "json")


def images(lab: LabHandle) -> dict[str, str]:
    """Version -> image id of the two targets (baked if missing)."""
    for version in TARGETS:
        ensure_image(lab, version)
    store = LabImageStore(lab.data)
    return {v: store.by_version(ROLE, v).id for v in TARGETS}


def pool_image(lab: LabHandle) -> str | None:
    found = {n.image_id for n in lab.status().nodes if n.role == ROLE}
    return found.pop() if len(found) == 1 else None


def kill(lab: LabHandle, version: str, cell: Cell) -> tuple[str, str]:
    """Start a blue-green run and SIGKILL it at ``cell``: (its id, '') or, when
    it ended by itself first, (its id, how it ended)."""
    env = os.environ | ({FAULT_VAR: f"{cell.index}:{cell.kind}:{cell.nth}"}
                        if cell.window else {})
    proc = subprocess.Popen(run_args(lab, version), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    rollout_id, seen = "", dict[str, int]()
    try:
        for line in proc.stdout:
            event = json.loads(line)
            rollout_id = event.get("rollout_id") or rollout_id
            if not cell.window and cell.hit(event, seen):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=120)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
    ended = "" if proc.returncode == -signal.SIGKILL else (
        f"the rollout exited {proc.returncode}: {err.strip()[-300:]}")
    return rollout_id, ended


def heal(lab: LabHandle, version: str) -> None:
    """After a failed cell: abort what is unfinished, converge the lab, and put
    the pool on one image, so the next cell starts from a healthy pool."""
    subprocess.run(command(lab, "abort", "--role", ROLE), capture_output=True, timeout=300)
    lab.up()
    if pool_image(lab) is None:
        subprocess.run(command(lab, "run", "--role", ROLE, "--version", version),
                       capture_output=True, timeout=600)


def kill_cell(lab: LabHandle, ids: dict[str, str], cell: Cell) -> tuple[str, list[str]]:
    """One cell: (the side resume chose first, what keeps it from converging)."""
    blue = pool_image(lab)
    assert blue is not None, "the pool is not on one image before the cell"
    version = next(v for v, i in ids.items() if i != blue)
    with Load(lab.frontend, concurrency=4, rate=RATE) as load:
        rollout_id, ended = kill(lab, version, cell)
        if ended:
            return "-", [f"not reached: {ended}"]
        resume = subprocess.run(command(lab, "resume", "--role", ROLE, "--output", "json"),
                                capture_output=True, text=True, timeout=600)
        events = [json.loads(x) for x in resume.stdout.splitlines() if x.strip()]
        sides = [e for e in events if e.get("event") == "side_chosen"]
        status = show(lab, rollout_id)["status"]
        # Green won only when the rollout succeeded; every other end is blue.
        want = ids[version] if status == "succeeded" else blue
        problems = wait_converged(lab, want, size=SIZE)
    report = load.report
    if not sides:
        problems.insert(0, f"resume chose no side: {resume.stdout[-800:]}")
    elif sides[-1]["side"] != ("green" if want == ids[version] else "blue"):
        problems.append(f"resume chose {sides[-1]['side']} last, but the rollout "
                        f"is {status}")
    if resume.returncode not in (0, 1):  # 1: failed and restored to blue
        problems.insert(0, f"resume exited {resume.returncode}: {resume.stderr[-500:]}")
    if report.requests == 0 or report.failed:
        problems.append(f"{report.failed} of {report.requests} requests failed: "
                        f"{dict(report.statuses)} {dict(report.error_kinds)}")
    first = f"{sides[0]['side']}: {sides[0]['reason']}" if sides else "-"
    return first, problems


def run_cells(lab: LabHandle, cells: tuple[Cell, ...] | list[Cell]) -> None:
    ids = images(lab)
    rows, failures = [], []
    for cell in cells:
        started = time.monotonic()
        side, problems = kill_cell(lab, ids, cell)
        if problems:
            failures.append(f"{cell.name}: {'; '.join(problems)}")
            heal(lab, TARGETS[0])
        rows.append(f"| {cell.name} | {time.monotonic() - started:.1f}s | {side} | "
                    f"{'; '.join(problems) or 'converged'} |")
    print("\n| killed | cell took | resume chose first | result |\n|---|---|---|---|\n"
          + "\n".join(rows))
    assert not failures, "\n".join(failures)


def test_kill_a_blue_green_run_at_its_boundaries_then_resume_ends_on_one_side(
        bg_lab: LabHandle) -> None:
    run_cells(bg_lab, CI_CELLS)


def _every_boundary(lab: LabHandle, ids: dict[str, str]) -> list[Cell]:
    blue = pool_image(lab)
    version = next(v for v, i in ids.items() if i != blue)
    proc = subprocess.run(run_args(lab, version), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    finished = [json.loads(x) for x in proc.stdout.splitlines() if '"rollout_finished"' in x]
    found = boundaries(show(lab, finished[-1]["rollout_id"]), list(range(SIZE)))
    cells = [Cell(f"{'inside' if window else 'after'} {b}", b.index, b.kind, b.nth, window)
             for window in (False, True) for b in found]
    return [*cells, Cell("during the warm wait", event="traffic_switched")]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ROLLOUT_KILL_MATRIX_FULL") != "1",
                    reason="the exhaustive blue-green kill matrix: set ROLLOUT_KILL_MATRIX_FULL=1")
def test_kill_a_blue_green_run_at_every_boundary_then_resume_ends_on_one_side(
        bg_lab: LabHandle) -> None:
    run_cells(bg_lab, _every_boundary(bg_lab, images(bg_lab)))
