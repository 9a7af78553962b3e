"""What a failed replacement failed at (FailureKind): set by the core where it
fails one, carried by the ReplacementFailed event, kept by the journal (which
still reads rows written before the kind existed)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from rollout.core.batches import plan_batches
from rollout.core.decide import apply_outcome, decide, new_state
from rollout.core.state import Launch, Outcome, Phase, RolloutState, RunSmoke, World
from rollout.events import ReplacementFailed, from_dict
from rollout.model import Admin, FailureKind, Health, Member, Node, NodeState, SmokeResult
from rollout.store.journal import SCHEMA_VERSION, Journal
from rollout.testing import image, pool_settings

OLD, NEW = image(version="1"), image(version="2")
T0 = 1000.0


def _node(name: str, addr: str, img: str = OLD.id,
          state: NodeState = NodeState.RUNNING) -> Node:
    return Node(name, addr, "web", "lab", img, "", state, 0.0)


OLDS = [_node(f"web-{i}", f"10.0.0.{i}") for i in range(3)]
UP = [Member(f"s{i}", n.lb_target, Admin.READY, Health.UP) for i, n in enumerate(OLDS)]


def _start(phase: Phase, **settings: Any) -> RolloutState:
    s = pool_settings(pool_size=3, boot_retries=0, **settings)
    state = new_state("r0000abcd", "lab", "web", NEW, s, plan_batches(OLDS, NEW, s), T0)
    rep = replace(state.replacements[0], phase=phase, phase_started=T0)
    return state.with_replacement(rep)


def _new(state: RolloutState, node_state: NodeState = NodeState.RUNNING) -> Node:
    return _node(state.replacements[0].new_name, "10.0.1.1", NEW.id, node_state)


def _failed_kinds(events: tuple[Any, ...]) -> list[FailureKind | None]:
    return [e.failure_kind for e in events if isinstance(e, ReplacementFailed)]


def test_a_failed_smoke_is_of_kind_smoke() -> None:
    state = _start(Phase.SMOKING)
    action = RunSmoke(0, 0, Phase.SMOKING, _new(state), image=NEW)
    d = apply_outcome(state, action, Outcome(True, 1.0, smoke=SmokeResult(False, 1.0, "1 failed")),
                      T0 + 1)
    assert d.state.replacements[0].failure is FailureKind.SMOKE
    assert _failed_kinds(d.events) == [FailureKind.SMOKE]


def test_a_smoke_past_its_timeout_is_of_kind_smoke() -> None:
    state = _start(Phase.SMOKING, smoke=10)
    action = RunSmoke(0, 0, Phase.SMOKING, _new(state), image=NEW)
    d = apply_outcome(state, action, Outcome(True, 11.0, smoke=SmokeResult(True, 11.0, "ok")),
                      T0 + 11)
    assert d.state.replacements[0].failure is FailureKind.SMOKE


def test_a_boot_timeout_is_of_kind_boot() -> None:
    state = _start(Phase.BOOTING)
    new = _new(state, NodeState.PENDING)
    d = decide(state, World.of([*OLDS, new], UP), T0 + 61)
    assert d.state.replacements[0].failure is FailureKind.BOOT
    assert _failed_kinds(d.events) == [FailureKind.BOOT]


def test_a_failed_driver_call_is_of_kind_driver() -> None:
    state = _start(Phase.LAUNCHING)
    action = Launch(0, 0, Phase.LAUNCHING, _new(state))
    d = apply_outcome(state, action, Outcome(False, 0.1, error="quota"), T0 + 1)
    assert d.state.replacements[0].failure is FailureKind.DRIVER


def test_a_node_that_never_comes_up_in_the_lb_is_of_kind_lb() -> None:
    state = _start(Phase.RISING)
    new = _new(state)
    members = [*UP, Member("s9", new.lb_target, Admin.READY, Health.DOWN)]
    d = decide(state, World.of([*OLDS, new], members), T0 + 31)
    assert d.state.replacements[0].failure is FailureKind.LB


def test_a_vanished_node_is_of_kind_gone() -> None:
    state = _start(Phase.SMOKING)
    d = decide(state, World.of(OLDS, UP), T0 + 1)
    assert d.state.replacements[0].failure is FailureKind.GONE


def test_the_event_round_trips_through_its_json() -> None:
    event = ReplacementFailed("r1", 1.0, index=0, old_node="a", new_node="b", phase="smoking",
                              error="x", failure_kind=FailureKind.SMOKE)
    assert '"failure_kind": "smoke"' in event.to_json()
    assert from_dict(event.to_dict()) == event
    older = {k: v for k, v in event.to_dict().items() if k != "failure_kind"}
    assert from_dict(older) == replace(event, failure_kind=None)


def test_the_journal_keeps_the_kind(tmp_path: Path) -> None:
    state = _start(Phase.RESTORED)
    rep = replace(state.replacements[0], failure=FailureKind.BOOT, error="not ready")
    state = state.with_replacement(rep)
    journal = Journal(tmp_path / "j.sqlite", durable=False)
    journal.create(state)
    assert Journal(tmp_path / "j.sqlite").get(state.id).replacements[0].failure is (
        FailureKind.BOOT)


def test_a_journal_from_before_the_kind_reads_back_without_one(tmp_path: Path) -> None:
    state = _start(Phase.RESTORED)
    current = tmp_path / "now.sqlite"
    Journal(current, durable=False).create(state)
    # The same rollout in a version-2 journal: the tables as version 2 made
    # them (the recorded schema of that release), the rows without the new column.
    old = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(old, isolation_level=None)
    conn.executescript((Path(__file__).parent / "fixtures" / "journal-schema-2.sql").read_text())
    conn.execute("DELETE FROM rollouts")
    conn.execute("DELETE FROM replacements")
    conn.execute("ATTACH DATABASE ? AS now", (str(current),))
    for table in ("rollouts", "replacements"):
        columns = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
        assert "failure_kind" not in columns
        conn.execute(f"INSERT INTO main.{table} SELECT {', '.join(columns)} FROM now.{table}")
    conn.execute("DETACH DATABASE now")
    conn.close()

    journal = Journal(old)  # migrates to the current schema
    again = journal.get(state.id)
    journal.close()
    assert again == state and again.replacements[0].failure is None
    with sqlite3.connect(old) as check:
        assert check.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
