"""A throwaway PostgreSQL cluster for tests and benchmarks.

Debian's server binaries (``/usr/lib/postgresql/N/bin``) run as an
unprivileged user: ``postgres`` if the system has it, else ``nobody`` (when we
are root; otherwise as ourselves). The cluster lives in a fresh directory
owned by that user and listens only on a unix socket in that directory
(``listen_addresses=''``), so it collides with nothing else on the machine.
The superuser role is ``rollout``, trusted on the socket.

    with PostgresCluster.start() as pg:
        url = pg.create_database("t1")     # postgresql+psycopg://rollout@/t1?host=...
        ...
        pg.restart()                       # pg_ctl restart -m fast

:func:`skip_reason` says why a cluster cannot start here (no binaries), for
a test to skip with.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

_ROLE = "rollout"


def find_bindir() -> Path | None:
    """The newest installed server's bin directory, if any."""
    root = Path("/usr/lib/postgresql")
    found = sorted((p for p in root.glob("*/bin") if (p / "initdb").is_file()),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def skip_reason() -> str | None:
    """Why a throwaway cluster cannot run here, or None."""
    if find_bindir() is None:
        return ("PostgreSQL server binaries not found under /usr/lib/postgresql "
                "(apt install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is missing: cannot run PostgreSQL as an unprivileged user"
    return None


def _server_user() -> str | None:
    """Whom to run the server as: None means ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


class PostgresCluster:
    """A running cluster; :meth:`stop` (or leaving the ``with``) removes it."""

    def __init__(self, root: Path, bindir: Path, user: str | None, fsync: bool) -> None:
        self.root = root
        self.bindir = bindir
        self.user = user
        self.fsync = fsync
        self.data = root / "data"
        self.socket_dir = root
        self.log = root / "server.log"

    @classmethod
    def start(cls, *, fsync: bool = False) -> PostgresCluster:
        """initdb and start a cluster. ``fsync=False`` (tests) trades crash
        safety for speed; benchmarks pass True to measure real commits."""
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(skip_reason() or "no PostgreSQL")
        user = _server_user()
        # Not under pytest's tmp_path: its parents are private to root, and the
        # server user must reach the socket directory. The path stays short
        # (a unix socket path is limited to 107 bytes).
        root = Path(tempfile.mkdtemp(prefix="rollout-pg-"))
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chmod(root, 0o700)
        cluster = cls(root, bindir, user, fsync)
        try:
            cluster._run("initdb", "-D", str(cluster.data), "-U", _ROLE, "-A", "trust",
                         "-E", "UTF8", "--no-sync", "--no-instructions")
            cluster._pg_ctl("start", "-w", "-t", "60", "-l", str(cluster.log), "-o",
                            cluster._options())
        except BaseException:
            cluster._remove()
            raise
        return cluster

    def _options(self) -> str:
        opts = ["-c listen_addresses=''", f"-k {self.socket_dir}", "-c max_connections=100"]
        if not self.fsync:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        return " ".join(opts)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root,
                              timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args[:1])} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}\n{log}")

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), *args)

    def url(self, database: str = "postgres") -> str:
        """A state-store URL for ``database`` over the cluster's socket."""
        return f"postgresql+psycopg://{_ROLE}@/{database}?host={self.socket_dir}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host=str(self.socket_dir), user=_ROLE, dbname=database,
                               autocommit=True)

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def restart(self) -> None:
        """Stop (fast: connections are cut) and start again, waiting until up."""
        self._pg_ctl("restart", "-m", "fast", "-w", "-t", "60", "-l", str(self.log), "-o",
                     self._options())

    def stop_server(self) -> None:
        """Stop the server but keep the cluster, to start it again later."""
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")

    def start_server(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log), "-o", self._options())

    def stop(self) -> None:
        """Stop the server (by its PID file, through pg_ctl) and remove the cluster."""
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists():
            try:
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30")
            except (RuntimeError, subprocess.TimeoutExpired):
                # pg_ctl could not stop it: signal the postmaster we started ourselves.
                with suppress(OSError, ValueError, IndexError):
                    os.kill(int(pidfile.read_text().split()[0]), signal.SIGQUIT)
        self._remove()

    def _remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
