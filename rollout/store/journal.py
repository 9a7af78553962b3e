"""The write-ahead journal: SQLite in WAL mode with ``synchronous=FULL``.

The controller records its intent (a ``steps`` row) and fsyncs it before every
side effect, and the outcome after it. Replacement phases, the waits that make
up a rollout's irreducible time (boot, smoke, lb_rise, drain, soak) and the
progress events are kept too, so ``rollout status``, ``history`` and ``show``
read everything from here, and ``resume`` reconciles from it.

One connection per process, short transactions. A failed write raises
:class:`rollout.errors.JournalError`: the rollout stops rather than act
unrecorded. ``fault`` is a hook called with the operation's name before each
write; tests make it raise to simulate a full disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout.config import PoolSettings
from rollout.core.state import (
    Counters,
    Phase,
    Replacement,
    RestoreReason,
    RolloutState,
    RolloutStatus,
    Soak,
    Wait,
)
from rollout.errors import JournalError, JournalUnusable, NotFoundError
from rollout.events import Event, from_dict
from rollout.model import Image
from rollout.paths import PRIVATE_DIR, PRIVATE_FILE

SCHEMA_VERSION = 2

_SCHEMA_1 = """
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY, env TEXT NOT NULL, role TEXT NOT NULL,
    target_image_id TEXT NOT NULL, target_version TEXT NOT NULL, target_json TEXT NOT NULL,
    previous_images TEXT NOT NULL, strategy TEXT NOT NULL, settings_json TEXT NOT NULL,
    status TEXT NOT NULL, pid INTEGER, host TEXT,
    started_at REAL NOT NULL, finished_at REAL, state_json TEXT NOT NULL
);
CREATE INDEX rollouts_pool ON rollouts (env, role, started_at);
CREATE TABLE replacements (
    rollout_id TEXT NOT NULL REFERENCES rollouts (id), idx INTEGER NOT NULL,
    batch INTEGER NOT NULL, old_name TEXT NOT NULL, old_target TEXT NOT NULL,
    old_image_id TEXT NOT NULL, new_name TEXT NOT NULL, new_target TEXT NOT NULL,
    phase TEXT NOT NULL, phase_started REAL NOT NULL, attempt INTEGER NOT NULL,
    error TEXT, restore_reason TEXT, retries INTEGER NOT NULL, retry_at REAL NOT NULL,
    drain_timed_out INTEGER NOT NULL, waiting TEXT NOT NULL, entered_json TEXT NOT NULL,
    PRIMARY KEY (rollout_id, idx)
);
CREATE TABLE steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT, idx INTEGER,
    kind TEXT NOT NULL, node TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL, finished_at REAL, ok INTEGER, error TEXT, duration REAL
);
CREATE INDEX steps_rollout ON steps (rollout_id, id);
CREATE TABLE waits (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL, idx INTEGER,
    kind TEXT NOT NULL, seconds REAL NOT NULL, at REAL NOT NULL
);
CREATE INDEX waits_rollout ON waits (rollout_id, kind);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT, at REAL NOT NULL,
    kind TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX events_rollout ON events (rollout_id, id);
CREATE TABLE leases (
    key TEXT PRIMARY KEY, holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start TEXT NOT NULL DEFAULT '', acquired_at REAL NOT NULL, expires_at REAL NOT NULL
);
"""

#: Schema migrations: MIGRATIONS[n] brings a version n database to version n + 1.
def _statements(script: str) -> Callable[[sqlite3.Connection], None]:
    # executescript() would commit the migration's transaction half-way.
    def run(conn: sqlite3.Connection) -> None:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)

    return run


# Version 2: how many new nodes a replacement gave up on because they failed to boot.
_SCHEMA_2 = """
ALTER TABLE replacements ADD COLUMN relaunches INTEGER NOT NULL DEFAULT 0
"""

MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _statements(_SCHEMA_1),
    1: _statements(_SCHEMA_2),
}

_REPLACEMENT_COLUMNS = (
    "rollout_id", "idx", "batch", "old_name", "old_target", "old_image_id", "new_name",
    "new_target", "phase", "phase_started", "attempt", "error", "restore_reason", "retries",
    "retry_at", "drain_timed_out", "waiting", "entered_json", "relaunches",
)
_PUT_REPLACEMENT = (
    f"INSERT OR REPLACE INTO replacements ({', '.join(_REPLACEMENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _REPLACEMENT_COLUMNS)})"
)


@dataclass(frozen=True)
class Step:
    """One recorded side effect: the intent, and the outcome once known."""

    id: int
    rollout_id: str | None
    index: int | None
    kind: str
    node: str
    started_at: float
    finished_at: float | None
    ok: bool | None  # None: the intent was recorded, the outcome never was
    error: str | None
    duration: float | None
    detail: str = ""


@dataclass(frozen=True)
class Record:
    """A rollout as ``history`` lists it: the state and who ran it."""

    state: RolloutState
    pid: int | None
    host: str | None


class Journal:
    def __init__(self, path: Path, *, fault: Callable[[str], None] | None = None,
                 durable: bool = True) -> None:
        """``durable=False`` skips the fsyncs: for tests only, never for a rollout."""
        self.path = Path(path)
        self.fault = fault
        self._lock = threading.RLock()
        self._saved: dict[str, tuple[str, dict[int, Replacement]]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
            # Created private before SQLite opens it: SQLite gives the -wal and
            # -shm files the database file's mode, and the journal holds the
            # pools' settings (aws.user_data included). One made by an older
            # version (0644) is tightened.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
            try:
                if os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, PRIVATE_FILE)
            finally:
                os.close(fd)
            self._conn = sqlite3.connect(
                str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise JournalUnusable(
                f"{self.path}: not a usable rollout journal ({exc})",
                hint=f"move it aside (mv {self.path} {self.path}.bad) and run again; "
                "unfinished rollouts in it are then unknown, so run `rollout reap` after",
            ) from None
        except OSError as exc:
            raise JournalUnusable(f"{self.path}: cannot open the journal: {exc}",
                               hint="check the data directory's permissions and space") from None

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise JournalUnusable(
                f"{self.path}: journal schema {version} is newer than this rollout "
                f"understands ({SCHEMA_VERSION})", hint="upgrade rollout",
            )
        while version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[version](conn)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version VALUES (?)", (version + 1,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            version += 1

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- writing ----------------------------------------------------------------

    @contextmanager
    def write(self, op: str) -> Iterator[sqlite3.Connection]:
        """One short, durable transaction. Every failure becomes JournalError."""
        with self._lock:
            try:
                if self.fault is not None:
                    self.fault(op)
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                raise JournalError(
                    f"{self.path}: cannot write the journal ({op}): {exc}",
                    hint="free disk space or fix the file's permissions, then "
                    "`rollout resume` to reconcile",
                ) from None

    def create(self, state: RolloutState, *, pid: int | None = None,
               host: str | None = None) -> None:
        with self.write("create rollout") as conn:
            conn.execute(
                "INSERT INTO rollouts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (state.id, state.env, state.role, state.target.id, state.target.version,
                 json.dumps(dataclasses.asdict(state.target)),
                 json.dumps(list(state.previous_images)), state.settings.strategy,
                 state.settings.model_dump_json(), state.status.value, pid, host,
                 state.started_at, state.finished_at, _state_json(state)),
            )
            for rep in state.replacements:
                _put_replacement(conn, state.id, rep)
        self._saved[state.id] = (_state_json(state), {r.index: r for r in state.replacements})

    def save(self, state: RolloutState) -> None:
        """Write what changed since the last save of this rollout."""
        self.commit(state)

    def commit(self, state: RolloutState, *, waits: tuple[Wait, ...] = (),
               events: tuple[Event, ...] = (),
               finished: Sequence[tuple[int, bool, str, float, float]] = ()) -> None:
        """In ONE transaction (one fsync): the outcomes of finished steps
        (``(step id, ok, error, at, duration)``), what changed in ``state`` since
        its last save, and waits and events. A controller collecting many
        outcomes at once (a 100-node batch) pays one fsync, not four per step."""
        blob = _state_json(state)
        last_blob, last_reps = self._saved.get(state.id, ("", {}))
        # Unchanged replacements are the very same objects (the core copies the
        # tuple, not its items), so the identity test skips ``==`` on nearly all.
        changed = [r for r in state.replacements
                   if (last := last_reps.get(r.index)) is not r and last != r]
        unchanged = blob == last_blob and not changed and state.id in self._saved
        if unchanged and not waits and not events and not finished:
            return
        with self.write("save state") as conn:
            if finished:
                conn.executemany(
                    "UPDATE steps SET finished_at=?, ok=?, error=?, duration=? WHERE id=?",
                    [(at, int(ok), error or None, duration, step_id)
                     for step_id, ok, error, at, duration in finished],
                )
            if not unchanged:
                conn.execute(
                    "UPDATE rollouts SET status=?, finished_at=?, state_json=? WHERE id=?",
                    (state.status.value, state.finished_at, blob, state.id),
                )
                for rep in changed:
                    _put_replacement(conn, state.id, rep)
            _insert_records(conn, state.id, waits, events)
        self._saved[state.id] = (blob, {r.index: r for r in state.replacements})

    def claim(self, rollout_id: str, pid: int, host: str) -> None:
        """Record which process drives the rollout now (on resume)."""
        with self.write("claim rollout") as conn:
            conn.execute("UPDATE rollouts SET pid=?, host=? WHERE id=?", (pid, host, rollout_id))

    def begin_step(self, rollout_id: str | None, index: int | None, kind: str, node: str,
                   at: float, detail: str = "") -> int:
        """Record an intent before its side effect; returns the step's id."""
        with self.write(f"intent {kind}") as conn:
            cur = conn.execute(
                "INSERT INTO steps (rollout_id, idx, kind, node, detail, started_at) "
                "VALUES (?,?,?,?,?,?)", (rollout_id, index, kind, node, detail, at),
            )
            return int(cur.lastrowid or 0)

    def begin_steps(self, rollout_id: str | None,
                    intents: Sequence[tuple[int | None, str, str, float, str]],
                    events: tuple[Event, ...] = ()) -> list[int]:
        """Record several intents ``(index, kind, node, at, detail)`` (and events)
        in one transaction, before any of their side effects; their step ids."""
        if not intents and not events:
            return []
        with self.write("intents") as conn:
            ids = []
            for index, kind, node, at, detail in intents:
                cur = conn.execute(
                    "INSERT INTO steps (rollout_id, idx, kind, node, detail, started_at) "
                    "VALUES (?,?,?,?,?,?)", (rollout_id, index, kind, node, detail, at),
                )
                ids.append(int(cur.lastrowid or 0))
            if rollout_id is not None:
                _insert_records(conn, rollout_id, (), events)
            return ids

    def finish_step(self, step_id: int, ok: bool, error: str, at: float,
                    duration: float) -> None:
        with self.write("outcome") as conn:
            conn.execute(
                "UPDATE steps SET finished_at=?, ok=?, error=?, duration=? WHERE id=?",
                (at, int(ok), error or None, duration, step_id),
            )

    def record(self, rollout_id: str, waits: tuple[Wait, ...] = (),
               events: tuple[Event, ...] = ()) -> None:
        if not waits and not events:
            return
        with self.write("waits and events") as conn:
            _insert_records(conn, rollout_id, waits, events)

    # --- reading ----------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cur = self._conn.execute(sql, args)
                cur.row_factory = sqlite3.Row
                return list(cur.fetchall())
            except sqlite3.Error as exc:
                raise JournalUnusable(f"{self.path}: cannot read the journal: {exc}",
                                   hint="check the file; if it is damaged, move it aside") from None

    def get(self, rollout_id: str) -> RolloutState:
        rows = self._query("SELECT * FROM rollouts WHERE id=?", (rollout_id,))
        if not rows:
            raise NotFoundError(f"{self.path}: no rollout {rollout_id!r}",
                                hint="list rollouts with `rollout history`")
        return self._load(rows[0])

    def unfinished(self, env: str, role: str) -> RolloutState | None:
        """The pool's running, halted or interrupted rollout, if any."""
        statuses = [s.value for s in RolloutStatus if s.unfinished]
        rows = self._query(
            f"SELECT * FROM rollouts WHERE env=? AND role=? AND status IN "
            f"({','.join('?' * len(statuses))}) ORDER BY started_at DESC LIMIT 1",
            (env, role, *statuses),
        )
        return self._load(rows[0]) if rows else None

    def history(self, env: str | None = None, role: str | None = None,
                limit: int = 20) -> list[Record]:
        """The newest rollouts first."""
        rows = self._query(
            "SELECT * FROM rollouts WHERE (? IS NULL OR env=?) AND (? IS NULL OR role=?) "
            "ORDER BY started_at DESC, rowid DESC LIMIT ?", (env, env, role, role, limit),
        )
        return [Record(self._load(r), r["pid"], r["host"]) for r in rows]

    def rollouts(self, env: str, role: str) -> list[RolloutState]:
        """Every rollout of the pool, oldest first (for reap)."""
        rows = self._query("SELECT * FROM rollouts WHERE env=? AND role=? ORDER BY started_at",
                           (env, role))
        return [self._load(r) for r in rows]

    def steps(self, rollout_id: str | None) -> list[Step]:
        rows = self._query("SELECT * FROM steps WHERE rollout_id IS ? ORDER BY id",
                           (rollout_id,))
        return [Step(r["id"], r["rollout_id"], r["idx"], r["kind"], r["node"], r["started_at"],
                     r["finished_at"], None if r["ok"] is None else bool(r["ok"]), r["error"],
                     r["duration"], r["detail"]) for r in rows]

    def events(self, rollout_id: str) -> list[Event]:
        rows = self._query("SELECT body FROM events WHERE rollout_id=? ORDER BY id",
                           (rollout_id,))
        return [from_dict(json.loads(r["body"])) for r in rows]

    def wait_totals(self, rollout_id: str) -> dict[str, float]:
        """Seconds spent in each kind of irreducible wait (boot, smoke, lb_rise,
        drain, soak), summed over the rollout's replacements."""
        rows = self._query("SELECT kind, SUM(seconds) AS s FROM waits WHERE rollout_id=? "
                           "GROUP BY kind", (rollout_id,))
        return {r["kind"]: float(r["s"]) for r in rows}

    def wait_samples(self, kind: str, env: str, role: str, limit: int = 50) -> list[float]:
        """Recent waits of one kind in a pool, newest first: input for ETAs."""
        rows = self._query(
            "SELECT w.seconds FROM waits w JOIN rollouts r ON r.id = w.rollout_id "
            "WHERE w.kind=? AND r.env=? AND r.role=? ORDER BY w.id DESC LIMIT ?",
            (kind, env, role, limit),
        )
        return [float(r["seconds"]) for r in rows]

    def overhead(self, rollout_id: str,
                 kinds: tuple[str, ...] = ("boot", "smoke", "lb_rise", "drain", "soak"),
                 ) -> float | None:
        """Wall time ÷ the sum of the irreducible waits (goal ≤ 1.10), or None
        while the rollout runs or when it waited for nothing."""
        state = self.get(rollout_id)
        waits = sum(v for k, v in self.wait_totals(rollout_id).items() if k in kinds)
        if state.finished_at is None or waits <= 0:
            return None
        return (state.finished_at - state.started_at) / waits

    def _load(self, row: sqlite3.Row) -> RolloutState:
        try:
            extra = json.loads(row["state_json"])
            reps = self._query("SELECT * FROM replacements WHERE rollout_id=? ORDER BY idx",
                               (row["id"],))
            soak = extra.get("soak")
            state = RolloutState(
                id=row["id"], env=row["env"], role=row["role"],
                target=Image(**json.loads(row["target_json"])),
                settings=PoolSettings.model_validate_json(row["settings_json"]),
                replacements=tuple(_replacement(r) for r in reps),
                started_at=row["started_at"], status=RolloutStatus(row["status"]),
                finished_at=row["finished_at"], last_progress=extra["last_progress"],
                soak=None if soak is None else Soak(
                    soak["batch"], soak["started"],
                    {t: Counters(*c) for t, c in soak["baseline"].items()},
                ),
                soaked=extra["soaked"], stopping=extra["stopping"], aborting=extra["aborting"],
                failing=extra["failing"], halted=extra["halted"],
                batches_done=frozenset(extra["batches_done"]),
                skipped_nodes=tuple(extra["skipped_nodes"]),
                previous_images=tuple(json.loads(row["previous_images"])),
                message=extra["message"], kind=extra.get("kind", "rollout"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalUnusable(
                f"{self.path}: rollout {row['id']} cannot be read back ({exc!r})",
                hint="the journal was written by another version or edited by hand",
            ) from None
        self._saved[state.id] = (_state_json(state), {r.index: r for r in state.replacements})
        return state


def _state_json(state: RolloutState) -> str:
    soak = state.soak
    # status and finished_at have columns of their own; they are in here too so
    # that a change of either alone is seen as a change by save().
    return json.dumps({
        "status": state.status.value, "finished_at": state.finished_at,
        "last_progress": state.last_progress,
        "soak": None if soak is None else {
            "batch": soak.batch, "started": soak.started,
            "baseline": {t: [c.total, c.http_5xx, c.check_downs]
                         for t, c in soak.baseline.items()},
        },
        "soaked": state.soaked, "stopping": state.stopping, "aborting": state.aborting,
        "failing": state.failing, "halted": state.halted,
        "batches_done": sorted(state.batches_done),
        "skipped_nodes": list(state.skipped_nodes), "message": state.message,
        "kind": state.kind,
    }, sort_keys=True)


def _insert_records(conn: sqlite3.Connection, rollout_id: str, waits: tuple[Wait, ...],
                    events: tuple[Event, ...]) -> None:
    if waits:
        conn.executemany(
            "INSERT INTO waits (rollout_id, idx, kind, seconds, at) VALUES (?,?,?,?,?)",
            [(rollout_id, w.index, w.kind, w.seconds, w.at) for w in waits],
        )
    if events:
        conn.executemany(
            "INSERT INTO events (rollout_id, at, kind, body) VALUES (?,?,?,?)",
            [(e.rollout_id or None, e.at, e.kind, e.to_json()) for e in events],
        )


def _put_replacement(conn: sqlite3.Connection, rollout_id: str, r: Replacement) -> None:
    conn.execute(
        _PUT_REPLACEMENT,
        (rollout_id, r.index, r.batch, r.old_name, r.old_target, r.old_image_id, r.new_name,
         r.new_target, r.phase.value, r.phase_started, r.attempt, r.error,
         r.restore_reason.value if r.restore_reason else None, r.retries, r.retry_at,
         int(r.drain_timed_out), r.waiting, json.dumps(dict(r.entered), sort_keys=True),
         r.relaunches),
    )


def _replacement(row: sqlite3.Row) -> Replacement:
    reason = row["restore_reason"]
    return Replacement(
        index=row["idx"], batch=row["batch"], old_name=row["old_name"],
        old_target=row["old_target"], old_image_id=row["old_image_id"],
        new_name=row["new_name"], phase=Phase(row["phase"]), phase_started=row["phase_started"],
        attempt=row["attempt"], new_target=row["new_target"], error=row["error"],
        restore_reason=RestoreReason(reason) if reason else None, retries=row["retries"],
        retry_at=row["retry_at"], drain_timed_out=bool(row["drain_timed_out"]),
        waiting=row["waiting"], entered=json.loads(row["entered_json"]),
        relaunches=row["relaunches"],
    )
