"""The state-store protocol and the one function that opens a store.

:class:`StateStore` is what the engine, the application and the CLI use:
the journal (rollouts, intents and outcomes of steps, waits, events), the
pools' leases, and the history that ``status``, ``history``, ``show`` and
``plan`` read. One implementation, :class:`rollout.store.journal.Journal`,
serves both engines through SQLAlchemy Core; the URL picks the engine:

    store = open_store("postgresql://rollout@db.internal/rollout")
    store = open_store(f"sqlite:///{data_dir}/journal.sqlite")   # the default

Log or show :attr:`StateStore.display_url`, never the URL itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from rollout.core.state import RolloutState, Wait
from rollout.errors import ConfigError
from rollout.events import Event
from rollout.state_url import StateUrl, parse_state_url, sqlite_url
from rollout.store.journal import Finished, Holding, Intent, Journal, Record, Step
from rollout.store.lease_table import Holder, LeaseStatus, LeaseTable

ENV_VAR = "ROLLOUT_STATE_URL"


class StateStore(Protocol):
    """The journal, the leases and the history, on whichever engine."""

    url: StateUrl
    leases: LeaseTable

    @property
    def display_url(self) -> str: ...

    def close(self) -> None: ...

    # The journal. Writes for a held pool are fenced (FencedOut).
    def hold(self, holding: Holding) -> None: ...
    def drop(self, holding: Holding) -> None: ...
    def create(self, state: RolloutState, *, pid: int | None = None,
               host: str | None = None) -> None: ...
    def save(self, state: RolloutState) -> None: ...
    def commit(self, state: RolloutState, *, waits: tuple[Wait, ...] = (),
               events: tuple[Event, ...] = (), finished: Sequence[Finished] = ()) -> None: ...
    def decided(self, state: RolloutState, *, waits: tuple[Wait, ...] = (),
                events: tuple[Event, ...] = (), finished: Sequence[Finished] = (),
                intents: Sequence[Intent] = (), started: tuple[Event, ...] = ()
                ) -> list[int]: ...
    def claim(self, rollout_id: str, pid: int, host: str) -> None: ...
    def begin_step(self, rollout_id: str | None, index: int | None, kind: str, node: str,
                   at: float, detail: str = "") -> int: ...
    def begin_steps(self, rollout_id: str | None,
                    intents: Sequence[tuple[int | None, str, str, float, str]],
                    events: tuple[Event, ...] = ()) -> list[int]: ...
    def finish_step(self, step_id: int, ok: bool, error: str, at: float,
                    duration: float) -> None: ...
    def record(self, rollout_id: str, waits: tuple[Wait, ...] = (),
               events: tuple[Event, ...] = ()) -> None: ...

    # Leases, for status and the operator.
    def lease_status(self, key: str) -> LeaseStatus | None: ...
    def force_release(self, key: str, *, by: str) -> Holder | None: ...

    # History.
    def get(self, rollout_id: str) -> RolloutState: ...
    def unfinished(self, env: str, role: str) -> RolloutState | None: ...
    def history(self, env: str | None = None, role: str | None = None,
                limit: int = 20) -> list[Record]: ...
    def rollouts(self, env: str, role: str) -> list[RolloutState]: ...
    def steps(self, rollout_id: str | None) -> list[Step]: ...
    def events(self, rollout_id: str | None) -> list[Event]: ...
    def wait_totals(self, rollout_id: str) -> dict[str, float]: ...
    def wait_samples(self, kind: str, env: str, role: str, limit: int = 50) -> list[float]: ...
    def overhead(self, rollout_id: str,
                 kinds: tuple[str, ...] = ("boot", "smoke", "lb_rise", "drain", "soak"),
                 ) -> float | None: ...


def resolve_url(url: str | None, default: Path, where: str = "--state") -> StateUrl:
    """The store to use: ``url`` (from ``--state``, ``ROLLOUT_STATE_URL`` or the
    inventory's ``rollout_env.state``, in that order, as the caller found it),
    else the SQLite file ``default``. A bad URL is a ConfigError naming ``where``."""
    if not url:
        return sqlite_url(default)
    try:
        return parse_state_url(url)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}",
                          hint="see the README's section on shared state") from None


def open_store(url: str | StateUrl, *, durable: bool = True,
               retry_budget: float = 10.0) -> Journal:
    """Open (creating or upgrading the schema as needed) the store at ``url``.
    Credentials come from the URL, ``PGPASSFILE`` or the libpq environment."""
    if isinstance(url, str):
        try:
            url = parse_state_url(url)
        except ValueError as exc:
            raise ConfigError(f"state URL: {exc}") from None
    return Journal(url, durable=durable, retry_budget=retry_budget)
