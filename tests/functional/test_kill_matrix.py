"""The kill matrix: SIGKILL the controller just after every step boundary, then
`rollout resume`, under load; the pool must converge every time.

The boundaries are not hard-coded: a complete rollout runs first and its
journal (``rollout show ID --output json``) lists the steps of replacement 0 in
order, e.g. launch, smoke, lb_add, lb_set_admin (drain), lb_set_admin (maint),
lb_remove, destroy. A boundary is (step kind, its n-th occurrence in that
replacement). For each one a fresh ``rollout run --output json`` is watched;
the moment it prints ``step_finished`` for that boundary it gets SIGKILL, and
``rollout resume`` must finish the job. Converged means: the pool's full size,
every node on the target image, no node outside the pool (no orphan), every
node UP (none left drained or in maintenance), every non-empty LB slot pointing
at a running node of the pool, one slot per node, the rollout ``succeeded``,
and 0 failed requests from a load that runs throughout.

The default test kills in replacement 0 only (about 3 minutes each way):
on SQLite just after each outcome was committed, and on PostgreSQL inside
each effect→outcome window (the controller SIGKILLs itself after the driver call returned and
before its outcome is committed, through ROLLOUT_FAULT_KILL_AFTER_EFFECT).
The exhaustive variants kill at every boundary of every replacement (about 10 minutes); CI
skips it unless ROLLOUT_KILL_MATRIX_FULL=1::

    ROLLOUT_KILL_MATRIX_FULL=1 ROLLOUT_LAB_BRIDGE=rtst9 ROLLOUT_LAB_SUBNET=10.231.9.0/24 \\
      ROLLOUT_LAB_PORT=18909 .venv/bin/pytest tests/functional/test_kill_matrix.py -m slow -s

Set ROLLOUT_KILL_MATRIX_REPORT=PATH to also write the table (markdown) there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rollout.app.faults import ENV_VAR as FAULT_VAR
from rollout.backends.lab import haproxy_process
from rollout.backends.lab.images import LabImageStore
from rollout.drivers.haproxy.config import is_empty
from rollout.store.stores import ENV_VAR
from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load
from rollout.testing.postgres import PostgresCluster

pytestmark = pytest.mark.functional

ROLE = "web"
BACKEND = "web"
POOL_SIZE = 4
SECOND_VERSION = "1.0.1-km"  # the other image the matrix rolls back and forth to
RATE = 300  # requests per second: steady, and leaves CPU for the nodes
# The inventory's pacing (canary 1, then batches of 1). Batches of 3 halve the
# time per cell, but on a busy 2-core host parallel boots more often end
# "degraded" (an early-boot unit fails), which restores instead of converging.
PACING: tuple[str, ...] = ()
# A new node that failed to boot says nothing about the kill: the cell is retried.
BOOT_FAILURES = ("not ready within timeouts.ready", "will not become ready")


@dataclass(frozen=True)
class Boundary:
    index: int  # the replacement
    kind: str  # the step kind
    nth: int  # its n-th occurrence within that replacement

    def __str__(self) -> str:
        return f"#{self.index} {self.kind}" + (f" ({self.nth})" if self.nth > 1 else "")


def cli(lab: LabHandle, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "rollout"), "--project", str(lab.project),
            "--data-dir", str(lab.data.root), *args]


def show(lab: LabHandle, rollout_id: str) -> dict[str, Any]:
    proc = subprocess.run(cli(lab, "show", rollout_id, "--output", "json"),
                          capture_output=True, text=True, check=True, timeout=60)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def pool_problems(lab: LabHandle, image_id: str, size: int = POOL_SIZE) -> list[str]:
    """What keeps the pool (of ``size`` nodes) from being converged on
    ``image_id`` (empty: converged)."""
    st = lab.status()
    problems = [f"builder left running: {b}" for b in st.builders]
    pool = [n for n in st.nodes if n.role == ROLE]
    if len(pool) != size:
        problems.append(f"{len(pool)} nodes, want {size}: {[n.name for n in pool]}")
    for n in pool:
        if n.image_id != image_id:
            problems.append(f"{n.name} runs image {n.image_id}, want {image_id}")
        if n.state != "running":
            problems.append(f"{n.name} is {n.state}")
        if n.slot is None:
            problems.append(f"orphan: {n.name} is in no LB slot")
        elif n.lb_state != "up":
            problems.append(f"{n.name} is {n.lb_state} in the LB (slot {n.slot})")
    addresses = {n.address for n in pool if n.state == "running"}
    runtime = haproxy_process.runtime(lab.data)
    stats = {r.svname: r for r in runtime.show_stat(BACKEND)}
    held: Counter[str] = Counter()
    for row in runtime.show_servers_state(BACKEND):
        status = stats[row.srv_name].status
        if is_empty(row.srv_addr, row.srv_port):
            if status != "MAINT":
                problems.append(f"empty slot {row.srv_name} is {status}, not MAINT")
            continue
        held[row.srv_addr] += 1
        if row.srv_addr not in addresses:
            problems.append(f"slot {row.srv_name} ({status}) points at {row.srv_addr}, "
                            "no running node of the pool")
    problems += [f"{a} is in {c} slots" for a, c in held.items() if c > 1]
    return problems


def wait_converged(lab: LabHandle, image_id: str, timeout: float = 30.0,
                   size: int = POOL_SIZE) -> list[str]:
    """Poll (HAProxy's checks take a moment after a resume) until converged."""
    deadline = time.monotonic() + timeout
    while (problems := pool_problems(lab, image_id, size)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return problems


def current_image(lab: LabHandle) -> str:
    current = {n.image_id for n in lab.status().nodes}
    assert len(current) == 1, f"the pool is not on one image: {current}"
    return current.pop()


def image_pair(lab: LabHandle) -> tuple[str, str]:
    """The pool's image and SECOND_VERSION's (baked if missing): the matrix rolls
    between these two only (the data dir may hold broken images of other tests)."""
    store = LabImageStore(lab.data)
    if not any(i.version == SECOND_VERSION for i in store.list(ROLE)):
        subprocess.run(cli(lab, "build", "--role", ROLE, "--version", SECOND_VERSION),
                       check=True, capture_output=True, timeout=300)
    second = store.by_version(ROLE, SECOND_VERSION).id
    home = current_image(lab)
    return (store.oldest(ROLE).id if home == second else home), second


def other_image(lab: LabHandle, pair: tuple[str, str]) -> str:
    return pair[1] if current_image(lab) == pair[0] else pair[0]


def run_to_completion(lab: LabHandle, image_id: str) -> dict[str, Any]:
    proc = subprocess.run(cli(lab, "run", "--role", ROLE, "--image", image_id, *PACING,
                              "--output", "json"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    finished = [json.loads(x) for x in proc.stdout.splitlines() if '"rollout_finished"' in x]
    return show(lab, finished[-1]["rollout_id"])


def boundaries(journal: dict[str, Any], indexes: list[int]) -> list[Boundary]:
    """Every step boundary of the given replacements, in journal order."""
    found: list[Boundary] = []
    for rep in journal["replacements"]:
        if rep["index"] not in indexes:
            continue
        seen: Counter[str] = Counter()
        for step in journal["steps"]:
            if step["node"] in (rep["old"], rep["new"]) and step["ok"]:
                seen[step["kind"]] += 1
                found.append(Boundary(rep["index"], step["kind"], seen[step["kind"]]))
    return found


def kill_after(lab: LabHandle, image_id: str, at: Boundary) -> tuple[str, float, str]:
    """Start a rollout, SIGKILL it right after ``at``: (its id, seconds it ran, '');
    or, when it ended by itself before the boundary, the last line it printed."""
    started = time.monotonic()
    proc = subprocess.Popen(cli(lab, "run", "--role", ROLE, "--image", image_id,
                                *PACING, "--output", "json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    rollout_id, count = "", 0
    try:
        for line in proc.stdout:
            event = json.loads(line)
            rollout_id = event.get("rollout_id") or rollout_id
            if (event.get("event") == "step_finished" and event.get("ok")
                    and event.get("index") == at.index and event.get("step") == at.kind):
                count += 1
                if count == at.nth:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
    ended = "" if proc.returncode == -signal.SIGKILL else (
        f"the rollout exited {proc.returncode}: {err.strip()[-300:]}")
    return rollout_id, time.monotonic() - started, ended


def kill_in_effect(lab: LabHandle, image_id: str, at: Boundary) -> tuple[str, float, str]:
    """Start a rollout that SIGKILLs itself inside ``at``'s effect→outcome
    window: right after the driver call returned, before its outcome is
    committed (rollout.app.faults). Same return as :func:`kill_after`."""
    started = time.monotonic()
    env = os.environ | {FAULT_VAR: f"{at.index}:{at.kind}:{at.nth}"}
    proc = subprocess.run(cli(lab, "run", "--role", ROLE, "--image", image_id, *PACING,
                              "--output", "json"), capture_output=True, text=True,
                          timeout=300, env=env)
    ids = [json.loads(x).get("rollout_id") for x in proc.stdout.splitlines() if x.strip()]
    rollout_id = next((i for i in reversed(ids) if i), "")
    ended = "" if proc.returncode == -signal.SIGKILL else (
        f"the rollout exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return rollout_id, time.monotonic() - started, ended


def heal(lab: LabHandle, pair: tuple[str, str]) -> None:
    """After a failed cell: abort what is unfinished, converge the lab and put the
    whole pool on one image of the pair, so the next cell (and the next test)
    start from a healthy pool."""
    subprocess.run(cli(lab, "abort", "--role", ROLE), capture_output=True, timeout=300)
    lab.up()
    for _ in range(2):
        if len({n.image_id for n in lab.status().nodes}) == 1:
            return
        subprocess.run(cli(lab, "run", "--role", ROLE, "--image", pair[0], *PACING),
                       capture_output=True, timeout=300)


def kill_cell(lab: LabHandle, pair: tuple[str, str], cell: Boundary,
              window: bool = False) -> tuple[str, ...]:
    """One cell of the matrix: (ran, resume took, failed/requests, problems).
    ``window``: kill inside the effect→outcome window rather than after the
    outcome was committed."""
    target = other_image(lab, pair)
    with Load(lab.status().frontend, concurrency=4, rate=RATE) as load:
        rollout_id, ran, ended = (kill_in_effect if window else kill_after)(lab, target, cell)
        if ended:  # the rollout finished or failed on its own: not a kill verdict
            return f"{ran:.1f}s", "-", "-", f"RETRY: not reached: {ended}"
        started = time.monotonic()
        resume = subprocess.run(cli(lab, "resume", "--role", ROLE), capture_output=True,
                                text=True, timeout=300)
        problems = wait_converged(lab, target)
        took = time.monotonic() - started
    report = load.report
    journal = show(lab, rollout_id)
    status = journal["status"]
    boot = next((r["error"] for r in journal["replacements"]
                 if any(b in (r["error"] or "") for b in BOOT_FAILURES)), None)
    if boot and not report.failed:
        return f"{ran:.1f}s", f"{took:.1f}s", f"0/{report.requests}", f"RETRY: {boot}"
    if resume.returncode != 0:
        problems.insert(0, f"resume exited {resume.returncode}: {resume.stderr[-500:]}")
    if status != "succeeded":
        problems.append(f"rollout {rollout_id} is {status}")
    if report.failed:
        problems.append(f"{report.failed} of {report.requests} requests failed: "
                        f"{dict(report.statuses)} {dict(report.error_kinds)}")
    return (f"{ran:.1f}s", f"{took:.1f}s", f"{report.failed}/{report.requests}",
            "; ".join(problems))


def run_matrix(lab: LabHandle, indexes: list[int], window: bool = False) -> None:
    lab.up()
    pair = image_pair(lab)
    journal = run_to_completion(lab, other_image(lab, pair))
    cells = boundaries(journal, indexes)
    kinds = {b.kind for b in cells}
    assert cells and {"launch", "smoke", "lb_add", "destroy"} <= kinds, cells
    rows: list[tuple[str, ...]] = []
    failures: list[str] = []
    try:
        for cell in cells:
            # A rollout that ends by itself before the boundary, or a new node
            # that fails to boot (seen on a busy host: an early-boot unit fails
            # and systemd is "degraded"), says nothing about the kill: the pool
            # was restored; heal and try that cell once more.
            for attempt in (1, 2):
                row = kill_cell(lab, pair, cell, window)
                if row[-1]:
                    heal(lab, pair)
                if attempt == 2 or not row[-1].startswith("RETRY"):
                    break
                rows.append((str(cell), *row))
            rows.append((str(cell), *row[:-1], row[-1] or "converged"))
            if row[-1]:
                failures.append(f"{cell}: {row[-1]}")
    finally:
        where = "killed inside the effect of" if window else "killed just after"
        table = [f"| {where} | ran | resume to converged | failed/requests | result |",
                 "|---|---|---|---|---|"]
        table += ["| " + " | ".join(r).replace("\n", " ") + " |" for r in rows]
        print("\n" + "\n".join(table))
        if path := os.environ.get("ROLLOUT_KILL_MATRIX_REPORT"):
            Path(path).write_text("\n".join(table) + "\n")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("engine", "window"), [("sqlite", False), ("postgresql", True)],
                         ids=["sqlite-after-commit", "postgresql-effect-window"])
def test_kill_at_every_step_of_a_replacement_then_resume_converges(
        lab: LabHandle, engine: str, window: bool, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Replacement 0's boundaries, twice, to keep CI short:
    - with the data directory's SQLite journal, killed just after each
      outcome was committed;
    - with the journal and leases in PostgreSQL (every controller and resume
      this test starts inherits ROLLOUT_STATE_URL), killed inside each
      effect→outcome window: the journal holds only the intent of an effect
      that happened, and ``resume`` must reconcile it.
    The exhaustive variants below run both kinds on every replacement."""
    if engine == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        monkeypatch.setenv(ENV_VAR, cluster.create_database(f"km{uuid.uuid4().hex[:8]}"))
    else:
        monkeypatch.delenv(ENV_VAR, raising=False)
    run_matrix(lab, [0], window=window)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ROLLOUT_KILL_MATRIX_FULL") != "1",
                    reason="the exhaustive kill matrix (~10 min): set ROLLOUT_KILL_MATRIX_FULL=1")
def test_kill_after_every_step_of_every_replacement_then_resume_converges(
        lab: LabHandle) -> None:
    run_matrix(lab, list(range(POOL_SIZE)))


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ROLLOUT_KILL_MATRIX_FULL") != "1",
                    reason="the exhaustive effect-window matrix (~10 min): "
                    "set ROLLOUT_KILL_MATRIX_FULL=1")
def test_kill_inside_every_effect_of_every_replacement_then_resume_converges(
        lab: LabHandle) -> None:
    run_matrix(lab, list(range(POOL_SIZE)), window=True)
