"""The write-ahead journal, on SQLite (the default) or PostgreSQL.

The controller records its intent (a ``steps`` row) durably before every side
effect, and the outcome after it. Replacement phases, the waits that make up a
rollout's irreducible time (boot, smoke, lb_rise, drain, soak) and the
progress events are kept too, so ``rollout status``, ``history``, ``show`` and
``plan`` read everything from here, and ``resume`` reconciles from it.

**Fencing.** A write for a pool whose lease this process holds (see
:meth:`Journal.hold`; :class:`rollout.store.lease.Lease` registers itself when
acquired) checks, in the same transaction, that the lease's epoch is still
ours, and raises :class:`rollout.errors.FencedOut` naming the new holder if
not. An intent is also refused when the lease is lost locally (not renewed
within its TTL minus the safety margin), so no driver call follows it.

One connection per store, short transactions. A failed write raises
:class:`rollout.errors.JournalError`: the rollout stops rather than act
unrecorded. ``fault`` is a hook called with the operation's name before each
write; tests make it raise to simulate a full disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, func, select, text, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from rollout.clock import SystemClock
from rollout.core.state import Replacement, RolloutState, Wait
from rollout.errors import (
    FencedOut,
    JournalUnavailable,
    JournalUnusable,
    NotFoundError,
    RolloutError,
)
from rollout.events import Event
from rollout.protocols import Clock
from rollout.state_url import StateUrl, parse_state_url, sqlite_url
from rollout.store import codec, migrate
from rollout.store.database import Database, reason
from rollout.store.file_locks import busy_error
from rollout.store.lease_table import Fence, Holder, LeaseStatus, LeaseTable, check_fence
from rollout.store.reads import JournalReads, Record, Step
from rollout.store.requests import OperatorRequests
from rollout.store.schema import SCHEMA_VERSION, events, replacements, rollouts, steps, waits

__all__ = ["SCHEMA_VERSION", "Holding", "Journal", "Record", "Step"]

#: ``(step id, ok, error, at, duration)``: the outcome of a step.
Finished = tuple[int, bool, str, float, float]
#: A step's intent: (replacement index, kind, node, at, detail).
Intent = tuple[int | None, str, str, float, str]


class Holding(Protocol):
    """A held lease, as the journal fences writes with it."""

    @property
    def key(self) -> str: ...

    @property
    def fence(self) -> Fence: ...

    @property
    def lost(self) -> bool: ...


class Journal(JournalReads, OperatorRequests):
    """The state store: rollouts, steps, waits, events and the pools' leases.

    ``location`` is a SQLite file (a Path, or a str without ``://``) or a state
    URL (a :class:`StateUrl` or its text, see :mod:`rollout.state_url`);
    :func:`rollout.store.stores.open_store` is the usual way in."""

    def __init__(self, location: Path | str | StateUrl, *,
                 fault: Callable[[str], None] | None = None, durable: bool = True,
                 retry_budget: float = 10.0, clock: Clock | None = None,
                 read_only: bool = False, busy_timeout: float = 10.0) -> None:
        """``durable=False`` skips the fsyncs: for tests only, never for a rollout.
        ``busy_timeout``: how long a SQLite write waits for another writer's
        lock before :class:`JournalBusy` names that writer.
        ``read_only=True`` (the dashboard): the engine refuses every write, and a
        store that is missing or not at the newest schema is refused, not made."""
        if isinstance(location, StateUrl):
            url = location
        elif isinstance(location, str) and "://" in location:
            url = parse_state_url(location)
        else:
            url = sqlite_url(Path(location))
        self.url: StateUrl = url
        self.path: Path | None = url.path
        self.clock: Clock = clock or SystemClock()
        if read_only and url.path is not None and not url.path.is_file():
            raise NotFoundError(f"{url.path}: no journal yet",
                                hint="it is created by the first rollout command")
        self._db = Database(url, durable=durable, fault=fault, retry_budget=retry_budget,
                            read_only=read_only, busy_timeout=busy_timeout)
        self.leases = LeaseTable(self._db)
        self._saved: dict[str, tuple[str, dict[int, Replacement]]] = {}
        self._pools: dict[str, str] = {}  # rollout id -> pool key, for the fences
        self._held: dict[str, Holding] = {}
        self._put_rep = _upsert_replacement(self._db)
        try:
            if read_only:
                migrate.check_current(self._db)
            else:
                migrate.upgrade(self._db)
        except (SQLAlchemyError, OSError) as exc:
            self._db.close()
            raise self._open_error(exc) from None
        except BaseException:
            self._db.close()
            raise

    def _open_error(self, exc: SQLAlchemyError | OSError) -> RolloutError:
        where = self.where
        if isinstance(exc, OSError):
            return JournalUnusable(f"{where}: cannot open the journal: {exc}",
                                   hint="check the data directory's permissions and space")
        if self.path is not None and self._db.busy(exc):
            return busy_error(self.path, "open it")
        if self.path is None and isinstance(exc, OperationalError):
            return JournalUnavailable(
                f"{where}: cannot reach the state store: {reason(exc)}",
                hint="check the server, the URL, and the password (PGPASSFILE or the "
                "libpq environment); nothing was done",
            )
        if self.path is None:
            return JournalUnusable(
                f"{where}: cannot set up the state store's schema: {reason(exc)}",
                hint="the database user needs CREATE on the database (or its schema)",
            )
        return JournalUnusable(
            f"{where}: not a usable rollout journal ({reason(exc)})",
            hint=f"move it aside (mv {where} {where}.bad) and run again; "
            "unfinished rollouts in it are then unknown, so run `rollout reap` after",
        )

    @property
    def fault(self) -> Callable[[str], None] | None:
        """The hook called with each write's name first (tests: a full disk)."""
        return self._db.fault

    @fault.setter
    def fault(self, hook: Callable[[str], None] | None) -> None:
        self._db.fault = hook

    @property
    def where(self) -> str:
        """The store in messages: the file, or the URL with its password masked."""
        return self._db.where

    @property
    def display_url(self) -> str:
        """The store's URL with any password masked."""
        return self.url.display

    def close(self) -> None:
        self._db.close()

    def pragma(self, name: str) -> Any:
        """SQLite only: a PRAGMA's value on the store's own connection."""
        return self._db.transact(f"pragma {name}", lambda c: c.execute(
            text(f"PRAGMA {name}")).scalar(), write=False)

    # --- fencing ------------------------------------------------------------------------

    def hold(self, holding: Holding) -> None:
        """Fence this process's writes for ``holding.key``'s pool with it."""
        self._held[holding.key] = holding

    def drop(self, holding: Holding) -> None:
        if self._held.get(holding.key) is holding:
            del self._held[holding.key]

    def _holding(self, conn: Connection, rollout_id: str | None) -> Holding | None:
        if not self._held:
            return None
        if rollout_id is None:  # reap's steps: the one pool this process holds
            return next(iter(self._held.values())) if len(self._held) == 1 else None
        key = self._pools.get(rollout_id)
        if key is None:
            row = conn.execute(select(rollouts.c.env, rollouts.c.role)
                               .where(rollouts.c.id == rollout_id)).first()
            if row is None:
                return None
            key = self._pools[rollout_id] = f"{row.env}/{row.role}"
        return self._held.get(key)

    def _fenced(self, conn: Connection, rollout_id: str | None, *,
                intent: bool = False) -> int | None:
        """Check our lease of the rollout's pool, if we hold one; its epoch."""
        holding = self._holding(conn, rollout_id)
        if holding is None:
            return None
        fence = holding.fence
        check_fence(conn, fence)  # first: if someone took over, name them
        if intent and holding.lost:
            # Worded as the controller's own check (Controller._lost): one
            # condition, one message, whichever layer sees it first.
            raise FencedOut(
                f"pool {fence.key}: this controller ({fence.holder}) lost its lease (epoch "
                f"{fence.epoch}): it was not renewed in time, so it counts as lost; it "
                "stopped before acting",
                hint="check `rollout status`, then `rollout resume` once the pool is free",
            )
        return fence.epoch

    # --- writing ----------------------------------------------------------------------

    def create(self, state: RolloutState, *, pid: int | None = None,
               host: str | None = None) -> None:
        self._pools[state.id] = f"{state.env}/{state.role}"

        def write(conn: Connection) -> None:
            self._fenced(conn, state.id)
            seq = select(func.coalesce(func.max(rollouts.c.seq), 0) + 1).scalar_subquery()
            conn.execute(rollouts.insert().values(**codec.rollout_values(state, pid, host),
                                                  seq=seq))
            if state.replacements:
                conn.execute(self._put_rep, [codec.replacement_values(state.id, r)
                                             for r in state.replacements])

        self._db.transact("create rollout", write)
        self._saved[state.id] = (codec.state_json(state),
                                 {r.index: r for r in state.replacements})

    def save(self, state: RolloutState) -> None:
        """Write what changed since the last save of this rollout."""
        self.commit(state)

    def commit(self, state: RolloutState, *, waits: tuple[Wait, ...] = (),
               events: tuple[Event, ...] = (), finished: Sequence[Finished] = ()) -> None:
        """In ONE transaction (one fsync): the outcomes of finished steps
        (``(step id, ok, error, at, duration)``), what changed in ``state`` since
        its last save, and waits and events. A controller collecting many
        outcomes at once (a 100-node batch) pays one fsync, not four per step."""
        self.decided(state, waits=waits, events=events, finished=finished)

    def decided(self, state: RolloutState, *, waits: tuple[Wait, ...] = (),
                events: tuple[Event, ...] = (), finished: Sequence[Finished] = (),
                intents: Sequence[Intent] = (), started: tuple[Event, ...] = ()) -> list[int]:
        """As :meth:`commit`, plus the intents ``(index, kind, node, at, detail)``
        of the decision's actions and their events (as :meth:`begin_steps`), all
        in one transaction: a decision and its intents cost one fsync, not two.
        Fenced as an intent when there is one: a controller whose lease counts
        as lost writes neither (its successor decides again from the world).
        Returns the intents' step ids."""
        blob = codec.state_json(state)
        last_blob, last_reps = self._saved.get(state.id, ("", {}))
        # Unchanged replacements are the very same objects (the core copies the
        # tuple, not its items), so the identity test skips ``==`` on nearly all.
        changed = [r for r in state.replacements
                   if (last := last_reps.get(r.index)) is not r and last != r]
        unchanged = blob == last_blob and not changed and state.id in self._saved
        if unchanged and not waits and not events and not finished and not intents:
            return []

        def write(conn: Connection) -> list[int]:
            epoch = self._fenced(conn, state.id, intent=bool(intents))
            ids = self._insert_intents(conn, state.id, epoch, intents)
            if finished:
                _finish(conn, finished)
            if not unchanged:
                conn.execute(update(rollouts).where(rollouts.c.id == state.id).values(
                    status=state.status.value, finished_at=state.finished_at, state_json=blob))
                if changed:
                    conn.execute(self._put_rep, [codec.replacement_values(state.id, r)
                                                 for r in changed])
            _insert_records(conn, state.id, waits, (*events, *started))
            return ids

        ids = self._db.transact("save state", write)
        self._saved[state.id] = (blob, {r.index: r for r in state.replacements})
        return ids

    def claim(self, rollout_id: str, pid: int, host: str) -> None:
        """Record which process drives the rollout now (on resume)."""
        def write(conn: Connection) -> None:
            self._fenced(conn, rollout_id)
            conn.execute(update(rollouts).where(rollouts.c.id == rollout_id)
                         .values(pid=pid, host=host))

        self._db.transact("claim rollout", write)

    def begin_step(self, rollout_id: str | None, index: int | None, kind: str, node: str,
                   at: float, detail: str = "") -> int:
        """Record an intent before its side effect; returns the step's id."""
        return self._intents(f"intent {kind}", rollout_id, [(index, kind, node, at, detail)],
                             ())[0]

    def begin_steps(self, rollout_id: str | None,
                    intents: Sequence[tuple[int | None, str, str, float, str]],
                    events: tuple[Event, ...] = ()) -> list[int]:
        """Record several intents ``(index, kind, node, at, detail)`` (and events)
        in one transaction, before any of their side effects; their step ids."""
        if not intents and not events:
            return []
        return self._intents("intents", rollout_id, intents, events)

    def _intents(self, op: str, rollout_id: str | None,
                 intents: Sequence[tuple[int | None, str, str, float, str]],
                 events: tuple[Event, ...]) -> list[int]:
        def write(conn: Connection) -> list[int]:
            epoch = self._fenced(conn, rollout_id, intent=True)
            ids = self._insert_intents(conn, rollout_id, epoch, intents)
            if rollout_id is not None:
                _insert_records(conn, rollout_id, (), events)
            return ids

        return self._db.transact(op, write)

    @staticmethod
    def _insert_intents(conn: Connection, rollout_id: str | None, epoch: int | None,
                        intents: Sequence[Intent]) -> list[int]:
        if not intents:
            return []
        rows = conn.execute(
            steps.insert().returning(steps.c.id, sort_by_parameter_order=True),
            [{"rollout_id": rollout_id, "idx": index, "kind": kind, "node": node,
              "detail": detail, "started_at": at, "epoch": epoch}
             for index, kind, node, at, detail in intents])
        return [int(r[0]) for r in rows]

    def finish_step(self, step_id: int, ok: bool, error: str, at: float,
                    duration: float) -> None:
        def write(conn: Connection) -> None:
            row = conn.execute(select(steps.c.rollout_id).where(steps.c.id == step_id)).first()
            self._fenced(conn, row.rollout_id if row is not None else None)
            _finish(conn, [(step_id, ok, error, at, duration)])

        self._db.transact("outcome", write)

    def record(self, rollout_id: str, waits: tuple[Wait, ...] = (),
               events: tuple[Event, ...] = ()) -> None:
        if not waits and not events:
            return

        def write(conn: Connection) -> None:
            self._fenced(conn, rollout_id)
            _insert_records(conn, rollout_id, waits, events)

        self._db.transact("waits and events", write)

    # --- leases -----------------------------------------------------------------------

    def lease_status(self, key: str) -> LeaseStatus | None:
        """Holder, host, PID, epoch and expiry of a pool's lease (``rollout
        status``), judged by the store's clock; None when nobody holds it."""
        return self.leases.status(key, self.clock.now())

    def force_release(self, key: str, *, by: str) -> Holder | None:
        """Release a pool's lease for an operator who knows its holder is dead
        (``rollout unlock --force``), fencing that holder out and journaling a
        ``lease_force_released`` event. Returns the old holder, or None if the
        lease was free."""
        return self.leases.force_release(key, by, self.clock.now())

    # --- reading ------------------------------------------------------------------------


def _upsert_replacement(db: Database) -> Any:
    insert = db.insert(replacements)
    keys = {"rollout_id", "idx"}
    return insert.on_conflict_do_update(
        index_elements=sorted(keys),
        set_={c.name: insert.excluded[c.name] for c in replacements.c if c.name not in keys},
    )


_FINISH = update(steps).where(steps.c.id == bindparam("b_id")).values(
    finished_at=bindparam("b_at"), ok=bindparam("b_ok"), error=bindparam("b_error"),
    duration=bindparam("b_duration"))


def _finish(conn: Connection, finished: Sequence[Finished]) -> None:
    conn.execute(_FINISH, [{"b_id": step_id, "b_ok": int(ok), "b_error": error or None,
                            "b_at": at, "b_duration": duration}
                           for step_id, ok, error, at, duration in finished])


def _insert_records(conn: Connection, rollout_id: str, wait_rows: tuple[Wait, ...],
                    event_rows: tuple[Event, ...]) -> None:
    if wait_rows:
        conn.execute(waits.insert(), [
            {"rollout_id": rollout_id, "idx": w.index, "kind": w.kind, "seconds": w.seconds,
             "at": w.at} for w in wait_rows])
    if event_rows:
        conn.execute(events.insert(), [
            {"rollout_id": e.rollout_id or None, "at": e.at, "kind": e.kind,
             "body": e.to_json()} for e in event_rows])
