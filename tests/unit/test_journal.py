"""The SQLite journal: durability settings, round trips, queries, failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rollout.core.batches import Plan
from rollout.core.decide import new_state
from rollout.core.state import Counters, Phase, RolloutState, RolloutStatus, Soak, Wait
from rollout.errors import JournalError, NotFoundError
from rollout.events import PhaseChanged
from rollout.store.journal import SCHEMA_VERSION, Journal
from rollout.testing import FakeWorld, pool_settings


def _state(rollout_id: str = "r00000001", started: float = 100.0) -> RolloutState:
    world = FakeWorld.create(2)
    plan = Plan(batches=((world.provider.live()[0],), (world.provider.live()[1],)),
                skipped=(), canary=True)
    return new_state(rollout_id, "lab", "web", world.new, pool_settings(pool_size=2), plan,
                     started)


def test_wal_and_full_sync(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    assert journal.pragma("journal_mode") == "wal"
    assert journal.pragma("synchronous") == 2  # FULL
    with sqlite3.connect(tmp_path / "j.sqlite") as conn:
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_state_round_trips_and_only_changes_are_written(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    state = _state()
    journal.create(state, pid=42, host="h")
    rep = state.replacements[0]
    from dataclasses import replace

    later = replace(
        state.with_replacement(replace(rep, phase=Phase.STANDBY, new_target="10.0.0.9",
                                       entered={"launching": 1.0})),
        soak=Soak(0, 5.0, {"10.0.0.9": Counters(10, 1, 0)}), batches_done=frozenset({0}),
    )
    journal.save(later)
    again = Journal(path).get(state.id)  # another process reads it back
    assert again == later
    assert again.settings == state.settings and again.target == state.target


def test_queries(tmp_path: Path) -> None:
    from dataclasses import replace

    journal = Journal(tmp_path / "j.sqlite")
    first = _state("r00000001", 100.0)
    journal.create(first)
    journal.save(replace(first, status=RolloutStatus.SUCCEEDED, finished_at=110.0))
    second = _state("r00000002", 200.0)
    journal.create(second)
    assert journal.unfinished("lab", "web") == second
    assert journal.unfinished("lab", "db") is None
    assert [r.state.id for r in journal.history()] == ["r00000002", "r00000001"]
    assert [r.state.id for r in journal.history(role="web", limit=1)] == ["r00000002"]
    with pytest.raises(NotFoundError, match="r99"):
        journal.get("r99")


def test_steps_waits_events_and_overhead(tmp_path: Path) -> None:
    from dataclasses import replace

    journal = Journal(tmp_path / "j.sqlite")
    state = _state()
    journal.create(state)
    step = journal.begin_step(state.id, 0, "launch", "web-x-0", 100.0, "web-2.0.0")
    assert journal.steps(state.id)[0].ok is None  # intent recorded, outcome not yet
    journal.finish_step(step, True, "", 101.0, 1.0)
    assert journal.steps(state.id)[0].ok is True
    journal.record(state.id, waits=(Wait(0, "boot", 4.0, 104.0), Wait(0, "smoke", 2.0, 106.0),
                                    Wait(None, "soak", 3.0, 109.0)),
                   events=(PhaseChanged(state.id, 101.0, index=0, phase="booting"),))
    assert journal.wait_totals(state.id) == {"boot": 4.0, "smoke": 2.0, "soak": 3.0}
    assert journal.wait_samples("boot", "lab", "web") == [4.0]
    assert [e.kind for e in journal.events(state.id)] == ["phase_changed"]
    assert journal.overhead(state.id) is None  # still running
    journal.save(replace(state, status=RolloutStatus.SUCCEEDED, finished_at=109.9))
    assert journal.overhead(state.id) == pytest.approx(9.9 / 9.0)


def test_a_failing_write_raises_journal_error(tmp_path: Path) -> None:
    def full(op: str) -> None:
        raise OSError(28, "No space left on device")

    journal = Journal(tmp_path / "j.sqlite", fault=full)
    with pytest.raises(JournalError, match=r"j\.sqlite.*No space left") as err:
        journal.create(_state())
    assert "resume" in str(err.value)


def test_a_corrupt_file_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match=r"j\.sqlite: not a usable") as err:
        Journal(path)
    assert "mv" in str(err.value)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(JournalError, match="newer"):
        Journal(path)


def test_a_decision_and_its_intents_are_one_transaction(tmp_path: Path) -> None:
    """The controller journals a decision and the intents of its actions with
    ``decided``: one write, so a failure leaves neither (not a state that moved
    on without the intents of its actions), and a success holds both."""
    from dataclasses import replace

    path = tmp_path / "j.sqlite"
    writes: list[str] = []
    journal = Journal(path, fault=writes.append)
    state = _state()
    journal.create(state)
    moved = state.with_replacement(replace(state.replacements[0], phase=Phase.LAUNCHING))
    intents = [(0, "launch", "web-new-0", 5.0, "web-2.0.0")]

    def full(op: str) -> None:
        raise OSError(28, "No space left on device")

    journal.fault = full
    with pytest.raises(JournalError):
        journal.decided(moved, intents=intents)
    journal.fault = writes.append
    reader = Journal(path)
    assert reader.get(state.id).replacements[0].phase is Phase.PENDING
    assert reader.steps(state.id) == []

    writes.clear()
    ids = journal.decided(moved, intents=intents)
    assert len(writes) == 1  # one transaction, one fsync
    assert reader.get(state.id).replacements[0].phase is Phase.LAUNCHING
    assert [(s.id, s.kind, s.node) for s in reader.steps(state.id)] == [
        (ids[0], "launch", "web-new-0")]
