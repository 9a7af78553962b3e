"""One connection to the state store, its transactions, and what differs
between SQLite and PostgreSQL (everything else is shared SQLAlchemy Core).

- **Transactions.** :meth:`Database.transact` runs a function in one short
  transaction on the store's single connection (guarded by a lock: the lease
  heartbeat and the controller's workers share it). On SQLite a write
  transaction starts with ``BEGIN IMMEDIATE``, so writers queue on the file
  lock instead of failing half-way; WAL mode and ``synchronous=FULL`` make each
  commit durable. On PostgreSQL a commit is durable by the server's settings.
- **Retries.** On PostgreSQL a lost connection (a server restart, a network
  cut) is retried with a fresh connection for up to ``retry_budget`` seconds,
  but only while nothing can have been committed: a failure at COMMIT itself
  leaves the outcome unknown and raises :class:`JournalUnavailable` at once,
  like an exhausted budget. The controller then stops; ``resume`` reconciles.
- **Time.** Lease expiry on PostgreSQL is decided by the server's clock
  (``clock_timestamp()``), never the controllers'; a SQLite store lives on
  one host, whose clock (the lease's injected clock) is used throughout.
- **Migration lock.** First opens and upgrades are serialised: a
  ``pg_advisory_lock`` on PostgreSQL, an ``flock`` on ``JOURNAL.lock`` next to
  the SQLite file.
- **Read-only.** ``read_only=True`` (the dashboard) opens a SQLite file with
  ``mode=ro`` and ``PRAGMA query_only``, and a PostgreSQL session as ``READ
  ONLY``: the engine itself refuses any write, and nothing is created (no
  file, no lock file, no schema).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Connection, Double, Table, cast, create_engine, event, extract, func
from sqlalchemy import literal as sql_literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from rollout.errors import JournalError, JournalUnavailable, JournalUnusable
from rollout.paths import PRIVATE_DIR, PRIVATE_FILE
from rollout.state_url import Engine, StateUrl
from rollout.store.file_locks import busy_error, is_locked_error

T = TypeVar("T")

#: The advisory lock key that serialises migrations on one PostgreSQL database.
_MIGRATION_LOCK = 0x726F6C6C6F7574  # "rollout"


class Database:
    """The store's connection. ``where`` names it in messages (a file, or the
    URL with its password masked)."""

    def __init__(self, url: StateUrl, *, durable: bool = True,
                 fault: Callable[[str], None] | None = None, retry_budget: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep, read_only: bool = False,
                 busy_timeout: float = 10.0) -> None:
        self.url = url
        self.read_only = read_only
        self.fault = fault
        self.retry_budget = retry_budget
        self._sleep = sleep
        self.where = str(url.path) if url.path is not None else url.display
        self._lock = threading.RLock()
        self._immediate = False
        self._conn: Connection | None = None
        if url.engine is Engine.SQLITE:
            assert url.path is not None
            target: str | URL = url.url
            if read_only:
                # A URI so that SQLite opens the file read-only and never creates it.
                target = f"sqlite:///file:{quote(str(url.path))}?mode=ro&uri=true"
            else:
                _private_file(url.path)
            self.engine = create_engine(target, connect_args={
                "timeout": busy_timeout, "isolation_level": None, "check_same_thread": False,
            })
            self._sqlite_events(durable)
        else:
            args: dict[str, Any] = {"application_name": "rollout"}
            if "connect_timeout" not in url.url.query:
                args["connect_timeout"] = 5
            self.engine = create_engine(url.url, connect_args=args, pool_size=2)
            event.listen(self.engine, "connect", _pg_session)
            if not durable:
                event.listen(self.engine, "connect", _pg_not_durable)
            if read_only:
                event.listen(self.engine, "connect", _pg_read_only)

    @property
    def postgres(self) -> bool:
        return self.url.engine is Engine.POSTGRESQL

    def _sqlite_events(self, durable: bool) -> None:
        def on_connect(dbapi_conn: Any, record: Any) -> None:
            cur = dbapi_conn.cursor()
            if self.read_only:
                cur.execute("PRAGMA query_only=ON")
            else:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
                cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        def on_begin(conn: Connection) -> None:
            # pysqlite's own transaction handling is off (isolation_level=None):
            # we say when a transaction starts, and whether it writes.
            immediate = self._immediate and not self.read_only
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        event.listen(self.engine, "connect", on_connect)
        event.listen(self.engine, "begin", on_begin)

    # --- transactions -------------------------------------------------------------------

    def transact(self, op: str, fn: Callable[[Connection], T], *, write: bool = True) -> T:
        """``fn(connection)`` in one transaction, committed on return. Errors
        raised by ``fn`` itself (a RolloutError such as FencedOut) pass through
        after the rollback; database errors become JournalError (a write),
        JournalUnusable (a read) or JournalUnavailable (unreachable)."""
        deadline = time.monotonic() + self.retry_budget
        delay = 0.05
        with self._lock:
            while True:
                try:
                    return self._attempt(op, fn, write)
                except _Retry as retry:
                    if time.monotonic() + delay > deadline:
                        raise JournalUnavailable(
                            f"{self.where}: the state store is unreachable ({op}): "
                            f"{reason(retry.error)} (retried for {self.retry_budget:g}s)",
                            hint="check the server and the network; once it answers, "
                            "`rollout resume` reconciles the pool",
                        ) from None
                    self._sleep(delay)
                    delay = min(delay * 2, 1.0)

    def _attempt(self, op: str, fn: Callable[[Connection], T], write: bool) -> T:
        try:
            if write and self.fault is not None:
                self.fault(op)
            conn = self._connection()
            self._immediate = write
            trans = conn.begin()
        except (SQLAlchemyError, OSError) as exc:
            raise self._failure(op, exc, write) from None
        try:
            result = fn(conn)
        except BaseException as exc:
            self._rollback(trans)
            if isinstance(exc, SQLAlchemyError | OSError):
                raise self._failure(op, exc, write) from None
            raise
        try:
            trans.commit()
        except SQLAlchemyError as exc:
            self._rollback(trans)
            if self._transient(exc):
                self._drop()
                raise JournalUnavailable(
                    f"{self.where}: the connection to the state store broke while "
                    f"committing ({op}): {reason(exc)}; the write may or may not have landed",
                    hint="once the store answers, `rollout resume` reconciles the pool "
                    "against what it holds",
                ) from None
            raise self._failure(op, exc, write) from None
        return result

    def _failure(self, op: str, exc: BaseException, write: bool) -> Exception:
        if isinstance(exc, SQLAlchemyError) and self._transient(exc):
            self._drop()
            return _Retry(exc)
        if self.busy(exc):
            assert self.url.path is not None
            return busy_error(self.url.path, op)
        if write:
            return JournalError(
                f"{self.where}: cannot write the journal ({op}): {reason(exc)}",
                hint="free disk space or fix the file's permissions, then "
                "`rollout resume` to reconcile",
            )
        return JournalUnusable(f"{self.where}: cannot read the journal: {reason(exc)}",
                               hint="check the file; if it is damaged, move it aside")

    def _transient(self, exc: SQLAlchemyError) -> bool:
        """Whether a fresh connection may succeed: on PostgreSQL a dropped
        connection, a refused one, a serialisation failure or a deadlock."""
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        return self.postgres and isinstance(exc, OperationalError | InterfaceError)

    def busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` is SQLite's "database is locked": another process kept
        the file's write lock past the busy timeout (not damage, not a full disk)."""
        return (not self.postgres and isinstance(exc, OperationalError)
                and is_locked_error(reason(exc)))

    def _rollback(self, trans: Any) -> None:
        try:
            if trans.is_active:
                trans.rollback()
        except SQLAlchemyError:
            self._drop()

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(SQLAlchemyError):
                conn.invalidate()
                conn.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with suppress(SQLAlchemyError):
                    self._conn.close()
                self._conn = None
            self.engine.dispose()

    # --- what differs between the engines -------------------------------------------------

    def insert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """The dialect's INSERT, which has ``on_conflict_do_update/nothing``."""
        if self.postgres:
            return postgresql.insert(table)
        return sqlite.insert(table)

    def now_sql(self, host_now: float) -> ColumnElement[float]:
        """The time lease expiry is judged by, as SQL: the PostgreSQL server's
        clock, or on SQLite the host clock's ``host_now``."""
        if self.postgres:
            return cast(extract("epoch", func.clock_timestamp()), Double)
        return sql_literal(host_now, Double)

    @contextmanager
    def migration_lock(self) -> Iterator[Connection]:
        """A connection of its own, holding the lock that serialises schema
        upgrades between processes (and hosts, on PostgreSQL)."""
        with self._lock:
            if self.postgres:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})")
                    conn.commit()
                    try:
                        yield conn
                    finally:
                        if conn.in_transaction():
                            conn.rollback()
                        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})")
                        conn.commit()
                return
            path = self.url.path
            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
            fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._immediate = True
                with self.engine.connect() as conn:
                    yield conn
            finally:
                os.close(fd)  # closing it drops the flock


class _Retry(Exception):
    def __init__(self, error: SQLAlchemyError) -> None:
        super().__init__(str(error))
        self.error = error


def _private_file(path: Path) -> None:
    """Create the SQLite file private (0600, in a 0700 directory) before SQLite
    opens it: SQLite gives the -wal and -shm files the database file's mode, and
    the journal holds the pools' settings (aws.user_data included). A file made
    by an older version (0644) is tightened."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def reason(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's statement dump and links."""
    source: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    text = str(source).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: A session idle inside a transaction for this long is ended by the server.
#: Our transactions are short (milliseconds between their statements), so only
#: a frozen controller (SIGSTOP, a debugger, a paused VM) stays that long; its
#: row locks would otherwise block every other controller's lease and journal
#: writes until it runs again. When it thaws, its next statement finds the
#: connection gone, it retries on a new one and is fenced out if the pool was
#: taken over meanwhile.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 10_000
#: How long a statement waits for a row lock before failing (then retried).
LOCK_TIMEOUT_MS = 30_000


def _pg_session(dbapi_conn: Any, record: Any) -> None:
    with dbapi_conn.cursor() as cur:
        cur.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_TIMEOUT_MS}")
        cur.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
    dbapi_conn.commit()


def _pg_read_only(dbapi_conn: Any, record: Any) -> None:
    # Every transaction of the session is read-only: the server refuses writes.
    with dbapi_conn.cursor() as cur:
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    dbapi_conn.commit()


def _pg_not_durable(dbapi_conn: Any, record: Any) -> None:
    # Tests and benches only: commits return before the WAL reaches the disk.
    with dbapi_conn.cursor() as cur:
        cur.execute("SET synchronous_commit TO off")
    dbapi_conn.commit()
