"""What the rollout commands do, as plain functions over a :class:`Workspace`.

The CLI packs options and calls these; a Jenkins step or a test can call them
directly. Everything is validated before the first side effect: the pool's
settings and overrides, the target image, the promotion rule. Then the pool's
lease is taken and the controller runs under it.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rollout import names
from rollout.app.workspace import PoolDrivers, Workspace
from rollout.clock import SystemClock
from rollout.config import Pool
from rollout.engine.controller import Controller, RolloutResult
from rollout.engine.reap import ReapReport
from rollout.errors import ConfigError, NotFoundError
from rollout.events import Event
from rollout.fsio import write_atomic
from rollout.model import Image
from rollout.protocols import Clock, ImageStore
from rollout.store.journal import Journal
from rollout.store.lease import Lease

EventSink = Callable[[Event], None]

#: Pool settings that ``rollout run`` may override on the command line.
OVERRIDABLE = (
    "strategy", "batch_size", "max_unavailable", "min_healthy", "canary", "soak",
    "failure_budget", "standby", "ready", "smoke", "lb_up", "drain", "progress_deadline",
)


@dataclass(frozen=True)
class Session:
    """A pool's drivers, journal and clock, ready to build a controller."""

    ws: Workspace
    drivers: PoolDrivers
    journal: Journal
    clock: Clock

    @property
    def pool(self) -> Pool:
        return self.drivers.pool

    def controller(self, *, on_event: EventSink, stop_requested: Callable[[], bool],
                   lease: Lease | None = None) -> Controller:
        return Controller(
            pool=self.pool, provider=self.drivers.provider, lb=self.drivers.lb,
            smoke=self.drivers.smoke, journal=self.journal, clock=self.clock,
            on_event=on_event, stop_requested=stop_requested, lease=lease,
        )

    @contextmanager
    def lease(self, *, wait: bool = False, timeout: float | None = None) -> Iterator[Lease]:
        lease = Lease(self.journal, f"{self.pool.env}/{self.pool.role}", ttl=30.0)
        with lease.acquire(wait=wait, timeout=timeout):
            yield lease


def open_journal(ws: Workspace) -> Journal:
    ws.data.ensure_root()
    return Journal(ws.data.journal)


def open_session(ws: Workspace, role: str, *, overrides: Mapping[str, Any] | None = None,
                 clock: Clock | None = None) -> Session:
    """Validate the pool (with overrides) and build its drivers. No side effects
    beyond opening the journal."""
    pool = ws.pool(role)
    if overrides:
        unknown = sorted(set(overrides) - set(OVERRIDABLE))
        if unknown:
            raise ConfigError(f"cannot override {', '.join(unknown)} on the command line")
        settings = pool.settings.with_overrides(
            f"{pool.source} with command-line overrides", **overrides)
        pool = replace(pool, settings=settings)
        ws = _with_pool(ws, pool)
    drivers = ws.drivers(pool.role)
    return Session(ws=ws, drivers=drivers, journal=open_journal(ws), clock=clock or SystemClock())


def _with_pool(ws: Workspace, pool: Pool) -> Workspace:
    pools = dict(ws.env.pools)
    pools[pool.role] = pool
    return replace(ws, env=replace(ws.env, pools=pools))


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


def check_promotion(session: Session, image: Image) -> None:
    """Refuse an image the pool's promotion rule does not allow (exit 2)."""
    rule = session.pool.settings.require_promotion_from
    if rule is None:
        return
    from rollout.core.promotion import check_promotion as check

    check(image.manifest, session.pool.env, require_promotion_from=rule,
          promotion_order=session.ws.env.settings.promotion_order)


def run_rollout(ws: Workspace, role: str, *, version: str | None = None,
                image_id: str | None = None, overrides: Mapping[str, Any] | None = None,
                wait_lock: bool = False, junit: Path | None = None,
                metrics_file: Path | None = None, on_event: EventSink = lambda e: None,
                stop_requested: Callable[[], bool] = lambda: False,
                clock: Clock | None = None, allow_below_floor: bool = False) -> RolloutResult:
    """Roll the pool of ``role`` onto the target image.

    A plan that would leave fewer nodes in service than the pool's floor is
    refused (ConfigError, exit 2) unless ``allow_below_floor``, which lowers
    the floor to the plan's lowest step for this rollout only."""
    session = open_session(ws, role, overrides=overrides, clock=clock)
    target = resolve_target(session.drivers.images, role, version=version, image_id=image_id)
    check_promotion(session, target)
    from rollout.app.plan import plan_for_session

    plan = plan_for_session(session, target)
    if plan.breaches_floor:
        if not allow_below_floor:
            raise ConfigError(
                f"refusing to run: {plan.floor_message()}",
                hint=f"see `rollout plan --role {role}`; bring the pool back to full "
                "strength first, or pass --allow-below-floor to accept the lower capacity",
            )
        session = open_session(ws, role, overrides={**(overrides or {}),
                                                    **plan.below_floor_overrides()},
                               clock=clock)
    started = time.time()
    result: RolloutResult | None = None
    previous = _latest_id(session)
    try:
        with session.lease(wait=wait_lock) as lease:
            controller = session.controller(on_event=on_event, stop_requested=stop_requested,
                                            lease=lease)
            result = controller.run(target)
        after_success(session, target, result)
        return result
    finally:
        # A run that failed or halted raised instead of returning its result;
        # its id is the newest in the journal, unless it never started (the
        # lock was held, an unfinished rollout): then there is nothing to report.
        rid = result.id if result else _latest_id(session)
        if rid == previous:
            rid = None
        if junit is not None and rid:
            write_junit(session, rid, junit)
        if metrics_file is not None and rid:
            write_rollout_metrics(session, rid, metrics_file, started)


def resume_rollout(ws: Workspace, *, role: str | None = None, rollout_id: str | None = None,
                   wait_lock: bool = False, on_event: EventSink = lambda e: None,
                   stop_requested: Callable[[], bool] = lambda: False) -> RolloutResult:
    session, rid = _session_for(ws, role, rollout_id)
    with session.lease(wait=wait_lock) as lease:
        result = session.controller(on_event=on_event, stop_requested=stop_requested,
                                    lease=lease).resume(rid)
    after_success(session, session.journal.get(result.id).target, result)
    return result


def abort_rollout(ws: Workspace, *, role: str | None = None, rollout_id: str | None = None,
                  wait_lock: bool = False, on_event: EventSink = lambda e: None,
                  stop_requested: Callable[[], bool] = lambda: False) -> RolloutResult:
    session, rid = _session_for(ws, role, rollout_id)
    with session.lease(wait=wait_lock) as lease:
        return session.controller(on_event=on_event, stop_requested=stop_requested,
                                  lease=lease).abort(rid)


def reap_pool(ws: Workspace, role: str, *, dry_run: bool = False, wait_lock: bool = False,
              on_event: EventSink = lambda e: None) -> ReapReport:
    session = open_session(ws, role)
    with session.lease(wait=wait_lock) as lease:
        return session.controller(on_event=on_event, stop_requested=lambda: False,
                                  lease=lease).reap(dry_run=dry_run)


def _session_for(ws: Workspace, role: str | None,
                 rollout_id: str | None) -> tuple[Session, str | None]:
    if rollout_id is not None:
        names.rollout_id(rollout_id, "ROLLOUT_ID")
        journal = open_journal(ws)
        try:
            state = journal.get(rollout_id)
        finally:
            journal.close()
        if state.env != ws.env.name:
            raise ConfigError(
                f"rollout {rollout_id} belongs to environment {state.env!r}, not "
                f"{ws.env.name!r}", hint=f"pass --env {state.env}")
        if role is not None and role != state.role:
            raise ConfigError(f"rollout {rollout_id} is of role {state.role!r}, not {role!r}")
        role = state.role
    if role is None:
        raise ConfigError("name the pool with --role ROLE, or give a rollout ID")
    return open_session(ws, role), rollout_id


def _latest_id(session: Session) -> str | None:
    records = session.journal.history(session.pool.env, session.pool.role, limit=1)
    return records[0].state.id if records else None


def new_nodes(session: Session, rollout_id: str) -> list[str]:
    state = session.journal.get(rollout_id)
    return [r.new_name for r in state.replacements if r.new_name]


def write_junit(session: Session, rollout_id: str, path: Path) -> Path:
    """One JUnit file with the smoke suites of every node this rollout started
    (what Jenkins' ``junit`` step publishes). Written even when none ran."""
    evidence = session.ws.data.evidence / session.pool.env / session.pool.role
    root = ET.Element("testsuites", name=f"rollout {rollout_id}")
    for node in new_nodes(session, rollout_id):
        source = evidence / f"{node}.xml"
        if not source.is_file():
            continue
        try:
            tree = ET.parse(source)
        except ET.ParseError:
            continue
        found = tree.getroot()
        suites = [found] if found.tag == "testsuite" else list(found.iter("testsuite"))
        for suite in suites:
            suite.set("name", f"smoke {session.pool.role} on {node}")
            root.append(suite)
    # Published by CI (another user, often): not private like the data directory.
    write_atomic(path, ET.tostring(root, encoding="utf-8", xml_declaration=True), mode=0o644)
    return path


def write_rollout_metrics(session: Session, rollout_id: str, path: Path,
                          started: float) -> None:
    from rollout.app.metrics import RolloutMetrics, record_rollout

    state = session.journal.get(rollout_id)
    finished = state.finished_at or time.time()
    record_rollout(path, RolloutMetrics(
        env=state.env, role=state.role, outcome=str(state.status),
        duration=max(0.0, finished - state.started_at),
        nodes_replaced=sum(1 for r in state.replacements if str(r.phase) == "done"),
        restores=sum(1 for r in state.replacements if str(r.phase) == "restored"),
        finished_at=finished,
    ))


def after_success(session: Session, image: Image, result: RolloutResult) -> None:
    """What a finished, successful rollout leaves behind: the evidence in the
    image store, and (AWS) the launch template pointing at the new image."""
    if str(result.status) != "succeeded":
        return
    record_evidence(session, image, result)
    hook = getattr(session.drivers.provider, "on_rollout_succeeded", None)
    if hook is not None and result.replaced:
        hook(image)


def build_image(ws: Workspace, role: str, version: str, *, parent: str | None = None,
                extra_vars: Mapping[str, str] | None = None, smoke: bool = True,
                on_event: Callable[[str], None] = lambda m: None,
                cancel: Callable[[], bool] = lambda: False) -> Image:
    """Bake ``role``: on the lab (a directory image) or, when the environment's
    pool of that role runs on AWS, an AMI. Validated before anything starts."""
    names.name(role, "role", "--role")
    names.version(version, "--version")
    pool = ws.env.pools.get(role)
    store = ws.image_store(role)
    parent_image = store.get(names.image_id(parent, "--parent")) if parent else None
    if pool is not None and pool.settings.provider == "aws":
        from rollout.backends.aws.bake import bake_ami
        from rollout.drivers.smoke import TestinfraSmokeRunner

        aws = pool.settings.aws
        assert aws is not None  # PoolSettings guarantees it for provider aws
        runner = None
        if smoke:
            from rollout.backends.aws.ec2 import ssh_target_for

            runner = TestinfraSmokeRunner(
                project=ws.project, pool_settings=pool.settings,
                ssh_for=lambda node: ssh_target_for(node, aws),
                evidence_dir=ws.data.evidence / "bakes", timeout=pool.settings.timeouts.smoke)
        return bake_ami(ws.project, aws, role, version, smoke=runner, log_dir=ws.data.logs,
                        parent=parent_image, extra_vars=extra_vars, cancel=cancel,
                        on_event=on_event)
    from rollout.backends.lab.bake import bake

    return bake(ws.project, ws.env, ws.data, role, version, parent=parent_image,
                extra_vars=extra_vars or {}, smoke=smoke, on_event=on_event)


def record_evidence(session: Session, image: Image, result: RolloutResult) -> None:
    """After a successful rollout, note in the image store that the image passed
    this environment, with the rollout id and the JUnit files as evidence."""
    update = getattr(session.drivers.images, "update_manifest", None)
    if update is None or str(result.status) != "succeeded" or not result.replaced:
        return
    from rollout.core.promotion import record_pass

    evidence = session.ws.data.evidence / session.pool.env / session.pool.role
    junits = [str(evidence / f"{n}.xml") for n in new_nodes(session, result.id)
              if (evidence / f"{n}.xml").is_file()]
    summary = f"{len(result.replaced)} node(s) passed the smoke gate in rollout {result.id}"
    with suppress(NotFoundError):  # an image deleted meanwhile has no evidence to keep
        update(image.id, lambda m: record_pass(m, session.pool.env, result.id, junits, summary,
                                               at=time.time()))
