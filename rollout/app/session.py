"""The session: the one way a command holds a pool.

Every command that runs a controller (run, resume, abort, phoenix, replace,
reap) and every read of a pool's journal (plan) goes through a
:class:`Session`::

    with Session(ws, "web", on_event=print) as session:   # opens the journal
        with session.lease(wait=False):                     # the pool's lock
            result = session.run(image)                     # controller + post-run
    # the lease is released, then the journal is closed, whatever happened

A session validates the pool (with any command-line overrides) and builds its
drivers when it is created, before any side effect; entering it opens the
journal, leaving it closes it. :meth:`Session.run`, :meth:`Session.resume` and
:meth:`Session.abort` need the lease and share one post-run path, which runs
while the lease is still held: after a success that replaced nodes, the
evidence goes into the image store and the provider's
:meth:`~rollout.protocols.Provider.on_rollout_succeeded` hook runs; then,
success or not, the JUnit and metrics files the command asked for are written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from rollout import names
from rollout.app import faults, reports
from rollout.app.notify import Notifier
from rollout.app.workspace import PoolDrivers, Workspace
from rollout.clock import SystemClock
from rollout.config import Pool
from rollout.core.promotion import check_promotion
from rollout.core.state import RolloutStatus
from rollout.doorbell import socket_path
from rollout.drivers.hooks import AnsibleHookRunner
from rollout.engine.controller import GATHER, Controller, RolloutResult
from rollout.engine.doorbell import Doorbell
from rollout.engine.reap import ReapReport
from rollout.errors import ConfigError, RolloutError
from rollout.events import AnalysisVerdict, Event
from rollout.model import Image
from rollout.protocols import Clock, ImageStore
from rollout.state_url import StateUrl
from rollout.store.journal import Journal
from rollout.store.lease import Lease
from rollout.store.stores import ENV_VAR, open_store, resolve_url

EventSink = Callable[[Event], None]

#: Pool settings that ``rollout run`` (and ``plan``) may override on the command line.
OVERRIDABLE = (
    "strategy", "batch_size", "max_unavailable", "min_healthy", "canary", "soak",
    "failure_budget", "analysis", "standby", "ready", "smoke", "lb_up", "drain",
    "progress_deadline",
    "scale_down_delay", "canary_weight",
)


@dataclass(frozen=True)
class Reports:
    """Files a command asked for besides the journal (``rollout run --junit
    --metrics-file``); written by the post-run path, success or not."""

    junit: Path | None = None
    metrics_file: Path | None = None


def state_url(ws: Workspace) -> StateUrl:
    """Where the journal and the leases live, the one place that decides it:
    ``--state URL`` (:attr:`Workspace.state`), else ``ROLLOUT_STATE_URL``, else
    the inventory's ``rollout_env.state``, else the SQLite file in the data
    directory. A password belongs in ``PGPASSFILE``, the libpq environment or
    ``ROLLOUT_STATE_URL``, never on the command line, where ``ps`` shows it to
    every user of the host: ``--state`` with one is refused."""
    if ws.state:
        url = resolve_url(ws.state, ws.data.journal, "--state")
        if url.url.password is not None or "password" in url.url.query:
            raise ConfigError(
                f"--state {url.display}: a password on the command line is visible to "
                "every user of this host",
                hint=f"leave it out of the URL and put it in PGPASSFILE (~/.pgpass) or "
                f"PGPASSWORD, or pass the whole URL in {ENV_VAR}",
            )
        return url
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return resolve_url(from_env, ws.data.journal, ENV_VAR)
    return resolve_url(ws.env.settings.state, ws.data.journal,
                       f"{ws.env.inventory}: rollout_env.state")


def open_journal(ws: Workspace) -> Journal:
    """The workspace's state store (see :func:`state_url`), opened, its schema
    created or upgraded as needed. The data directory is created either way:
    logs, evidence and images live there whatever holds the journal."""
    ws.data.ensure_root()
    return open_store(state_url(ws))


def with_overrides(pool: Pool, overrides: Mapping[str, Any]) -> Pool:
    """``pool`` with command-line overrides of its settings, re-validated."""
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ConfigError(f"cannot override {', '.join(unknown)} on the command line")
    settings = pool.settings.with_overrides(f"{pool.source} with command-line overrides",
                                            **overrides)
    return replace(pool, settings=settings)


def resolve_target(images: ImageStore, role: str, *, version: str | None,
                   image_id: str | None) -> Image:
    """``--image`` wins, then ``--version``, else the role's newest image."""
    if image_id and version:
        raise ConfigError("pass --version or --image, not both")
    if image_id:
        image = images.get(names.image_id(image_id, "--image"))
        if image.role != role:
            raise ConfigError(
                f"--image {image_id}: that image is of role {image.role!r}, not {role!r}")
        return image
    if version:
        return images.by_version(role, names.version(version, "--version"))
    return images.latest(role)


class Session:
    """One command's hold on one pool: its drivers, journal, lease and clock."""

    def __init__(self, ws: Workspace, role: str, *, overrides: Mapping[str, Any] | None = None,
                 clock: Clock | None = None, on_event: EventSink = lambda e: None,
                 stop_requested: Callable[[], bool] = lambda: False,
                 reports: Reports | None = None) -> None:
        pool = ws.pool(role)
        if overrides:
            pool = with_overrides(pool, overrides)
            ws = ws.with_pool(pool)
        self.ws = ws
        self.drivers: PoolDrivers = ws.drivers(pool.role)
        self.clock: Clock = clock or SystemClock()
        # The doorbell waits on real time: only a session on the system clock has one.
        self.real_time = clock is None
        # The pool's webhooks hear the same events as the caller's sink.
        self.notifier = (Notifier(pool.settings.notify, f"{pool.env}/{pool.role}")
                         if pool.settings.notify else None)
        self.on_event = on_event if self.notifier is None else _tee(on_event, self.notifier)
        self.stop_requested = stop_requested
        self.reports = reports or Reports()
        self._journal: Journal | None = None
        self._lease: Lease | None = None

    # --- the journal and the lease ------------------------------------------------

    def __enter__(self) -> Session:
        self._journal = open_journal(self.ws)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()
        if self.notifier is not None:
            self.notifier.close()

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise RuntimeError("the session is not open: use `with Session(...) as session`")
        return self._journal

    @property
    def pool(self) -> Pool:
        return self.drivers.pool

    @property
    def lease_key(self) -> str:
        return f"{self.pool.env}/{self.pool.role}"

    @contextmanager
    def lease(self, *, wait: bool = False, timeout: float | None = None) -> Iterator[Lease]:
        """Hold the pool's lease (LockHeldError, exit 3, when another holds it
        and ``wait`` is false); released on the way out."""
        lease = Lease(self.journal, self.lease_key, ttl=self.pool.settings.lease_ttl)
        with lease.acquire(wait=wait, timeout=timeout):
            self._lease = lease
            # The pool's request log (the dark-launch gate's) is bound only
            # by the lease's holder: one reader per pool.
            source = self.drivers.requests
            try:
                if source is not None:
                    source.open()
                yield lease
            finally:
                if source is not None:
                    source.close()
                self._lease = None

    def override(self, overrides: Mapping[str, Any]) -> None:
        """Change the pool's settings for this session (``--allow-below-floor``).
        Only before the lease is taken: a running controller keeps its settings."""
        if self._lease is not None:
            raise RuntimeError("settings cannot change while the lease is held")
        pool = with_overrides(self.pool, overrides)
        self.ws = self.ws.with_pool(pool)
        self.drivers = replace(self.drivers, pool=pool)

    # --- checks -------------------------------------------------------------------

    def check_promotion(self, image: Image) -> None:
        """Refuse an image the pool's promotion rule does not allow (exit 2)."""
        check_promotion(image.manifest, self.pool.env,
                        require_promotion_from=self.pool.settings.require_promotion_from,
                        promotion_order=self.ws.env.settings.promotion_order)

    # --- running the controller -----------------------------------------------------

    def controller(self, doorbell: Doorbell | None = None) -> Controller:
        """A controller of the pool under the held lease (hearing ``doorbell``)."""
        if self._lease is None:
            raise RuntimeError("take the pool's lease first: `with session.lease():`")
        d = self.drivers
        hooks = AnsibleHookRunner(
            self.ws.project, self.pool.role, d.provider.ssh, log_dir=self.ws.data.logs,
            store_root=self.ws.data.root / "hooks", inventory=self.ws.env.path,
            vault=self.ws.vault)
        on_event = self.on_event if doorbell is None else _tee(self.on_event, doorbell.publish)
        return Controller(pool=self.pool, provider=d.provider, lb=d.lb, smoke=d.smoke,
                          journal=self.journal, clock=self.clock, on_event=on_event,
                          stop_requested=self.stop_requested, lease=self._lease, hooks=hooks,
                          analyzer=d.analyzer, shadow=d.shadow,
                          after_effect=faults.from_environment(), doorbell=doorbell,
                          gather=GATHER if self.real_time else 0.0)

    def doorbell(self) -> Doorbell | None:
        """The pool's doorbell, listening, for `rollout rollback`'s fast client
        (:mod:`rollout.entry`); None when the socket cannot be had."""
        path = socket_path(self.ws.data.root, self.pool.env, self.pool.role)
        if path is None or not self.real_time:
            return None
        expect = {"env": self.pool.env, "role": self.pool.role,
                  "project": str(self.ws.project),
                  "state": self.ws.state or os.environ.get(ENV_VAR) or None}
        bell = Doorbell(path, expect)
        return bell if bell.start() else None

    def run(self, target: Image, *, only: list[str] | None = None,
            kind: str = "rollout") -> RolloutResult:
        """Roll the pool onto ``target`` (``only``: just these nodes)."""
        return self._conclude(lambda c: c.run(target, only=only, kind=kind))

    def resume(self, rollout_id: str | None = None) -> RolloutResult:
        return self._conclude(lambda c: c.resume(rollout_id))

    def abort(self, rollout_id: str | None = None) -> RolloutResult:
        return self._conclude(lambda c: c.abort(rollout_id))

    def rollback(self, rollout_id: str | None = None) -> RolloutResult:
        return self._conclude(lambda c: c.rollback(rollout_id))

    def reap(self, *, dry_run: bool = False) -> ReapReport:
        return self.controller().reap(dry_run=dry_run)

    def _conclude(self, start: Callable[[Controller], RolloutResult]) -> RolloutResult:
        """Run the controller, then the one post-run path, still under the lease."""
        before = self._latest_id()
        result: RolloutResult | None = None
        try:
            result = self._drive(start)
            if result.status is RolloutStatus.SUCCEEDED and result.replaced:
                state = self.journal.get(result.id)
                reports.record_evidence(self.drivers.images, self.ws.data, state,
                                        replaced=len(result.replaced), now=self.clock.now())
                self.drivers.provider.on_rollout_succeeded(state.target)
            return result
        finally:
            # A run that failed or halted raised instead of returning; its id is
            # the newest in the journal unless it never started (the lock was
            # held, an unfinished rollout): then there is nothing to report.
            rid = result.id if result is not None else self._latest_id()
            self._write_reports(None if result is None and rid == before else rid)

    def _drive(self, start: Callable[[Controller], RolloutResult]) -> RolloutResult:
        """Run the controller, hearing the pool's doorbell while it runs; its
        clients hear the end before the post-run work."""
        bell = self.doorbell()
        result: RolloutResult | None = None
        try:
            result = start(self.controller(bell))
            return result
        finally:
            if bell is not None:
                rid = result.id if result is not None else self._latest_id()
                if rid is not None:
                    bell.finish(self.journal, rid, self.clock.now())
                bell.close()

    def _write_reports(self, rollout_id: str | None) -> None:
        if rollout_id is None or (self.reports.junit is None
                                  and self.reports.metrics_file is None):
            return
        try:
            state = self.journal.get(rollout_id)
        except RolloutError:
            return
        if self.reports.junit is not None:
            reports.write_junit(self.ws.data, state, self.reports.junit)
        if self.reports.metrics_file is not None:
            verdicts = [(e.analysis, e.verdict) for e in self.journal.events(state.id)
                        if isinstance(e, AnalysisVerdict)]
            reports.write_metrics(state, self.reports.metrics_file, now=self.clock.now(),
                                  verdicts=verdicts)

    def _latest_id(self) -> str | None:
        records = self.journal.history(self.pool.env, self.pool.role, limit=1)
        return records[0].state.id if records else None


def _tee(first: EventSink, second: EventSink) -> EventSink:
    def both(event: Event) -> None:
        first(event)
        second(event)

    return both


__all__ = ["OVERRIDABLE", "EventSink", "Reports", "Session", "open_journal",
           "resolve_target", "state_url", "with_overrides"]
