"""State-store URLs: which engine keeps the journal and the leases.

| URL                                   | engine                                   |
|---------------------------------------|------------------------------------------|
| ``sqlite:///relative/or/absolute``    | SQLite file (the default, one host)      |
| ``postgresql://user@host:5432/db``    | PostgreSQL through psycopg 3 (shared)    |
| ``postgresql+psycopg://...``          | the same, spelt out                      |

A PostgreSQL URL may leave out the password, the host or everything else:
libpq fills them from ``PGPASSFILE`` (``~/.pgpass``), ``PGHOST``, ``PGUSER``
and the rest of its environment. A password in the URL is accepted but never
shown: :attr:`StateUrl.display` masks it, and messages and logs use that.

Pure parsing, no I/O, so :mod:`rollout.config` can validate an inventory's
``rollout_env.state`` with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

_MASK = "***"


class Engine(Enum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class StateUrl:
    """A parsed, validated state-store URL."""

    engine: Engine
    url: URL  # with the driver SQLAlchemy must use (postgresql+psycopg)

    @property
    def display(self) -> str:
        """The URL with any password masked: safe for messages and logs."""
        url = self.url
        if "password" in url.query:
            url = url.update_query_dict({"password": _MASK})
        shown: str = url.render_as_string(hide_password=True)
        return shown.replace("postgresql+psycopg://", "postgresql://", 1)

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL."""
        if self.engine is Engine.SQLITE and self.url.database:
            return Path(self.url.database)
        return None


def sqlite_url(path: Path) -> StateUrl:
    """The URL of a SQLite journal file."""
    return StateUrl(Engine.SQLITE, URL.create("sqlite", database=str(path)))


def parse_state_url(text: str) -> StateUrl:
    """Parse ``text``; ValueError (with the password masked) if it is not a
    state URL rollout can use."""
    try:
        url = make_url(text)
    except ArgumentError:
        raise ValueError(
            f"not a URL ({_masked_text(text)!r}); use sqlite:///path or "
            "postgresql://user@host/database"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if not url.database or url.database == ":memory:":
            raise ValueError("a sqlite URL needs a file: sqlite:///path/to/journal.sqlite")
        if url.host or url.username or url.password:
            raise ValueError("a sqlite URL names a local file: sqlite:///path (three slashes)")
        return StateUrl(Engine.SQLITE, url.set(drivername="sqlite"))
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return StateUrl(Engine.POSTGRESQL, url.set(drivername="postgresql+psycopg"))
    shown = StateUrl(Engine.POSTGRESQL, url).display
    raise ValueError(
        f"unsupported state URL {shown!r}: use sqlite:///path or postgresql://... "
        "(postgresql+psycopg://...; other drivers are not supported)"
    )


def _masked_text(text: str) -> str:
    """Best effort for a string that does not even parse: hide user:password@."""
    scheme, sep, rest = text.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://{_MASK}@{rest.split('@', 1)[1]}"
    return text
