"""The one bake pipeline, over a :class:`rollout.protocols.Builder`.

Steps, in order; everything is validated before the first side effect, and
``Builder.discard`` runs whatever happens::

    validate      the extra vars (one validator for every backend), then
                  Builder.check: parent, base, root, programs
    requirements  the project's requirements.yml (roles, collections) installed
                  with ansible-galaxy, before any builder exists
    start         Builder.start boots the builder and waits for SSH
    playbook      playbooks/bake.yml (facts, roles/base, then roles/<role>) over
                  SSH; extra vars through a private file, never a command line
    smoke gate    the SmokeRunner against the builder, unless smoke is off
    capture       Builder.capture turns the builder's disk into the image
    register      Builder.register makes it visible: from here on it counts
    discard       (finally) the builder and anything unregistered are removed

A failure names the step: a failing task is named with the host's output, a
failing smoke gate with its summary. A stop request (``cancel``: the CLI's
SIGINT/SIGTERM flag) is honoured between steps and inside the builder's waits
and the play, and raises :class:`~rollout.errors.Interrupted`; a
``KeyboardInterrupt`` is re-raised after the same cleanup. In every failure
case nothing is registered and no builder is left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from rollout.bake.manifest import bake_manifest
from rollout.bake.request import PLAYBOOK, check_extra_vars
from rollout.cleanup import shielded
from rollout.config import PoolSettings
from rollout.drivers import ansible, ansible_galaxy
from rollout.drivers.ansible import PlaybookFailed
from rollout.drivers.smoke import TestinfraSmokeRunner
from rollout.errors import BakeError, DriverError, Interrupted
from rollout.model import BakeRequest, Image, Node, SmokeResult, SshTarget, VaultOptions
from rollout.protocols import Builder, Clock, SmokeRunner

_log = logging.getLogger(__name__)

Say = Callable[[str], None]


class PlaybookRun(Protocol):
    """What the pipeline reads of a finished play (``ansible.PlaybookResult``)."""

    @property
    def stats(self) -> dict[str, dict[str, int]]: ...

    @property
    def log_path(self) -> Path | None: ...


class RunPlaybook(Protocol):
    """The seam where Ansible runs: :func:`rollout.drivers.ansible.run_playbook`'s
    shape. It raises ``PlaybookFailed`` (a BakeError) when the play fails."""

    def __call__(
        self,
        project: Path,
        playbook: str,
        hosts: dict[str, SshTarget],
        extravars: dict[str, object],
        *,
        log_dir: Path,
        cancel: Callable[[], bool] | None = None,
        timeout: float | None = None,
        on_task: Callable[[str], None] | None = None,
        log_name: str | None = None,
        group: str | None = None,
        vault: VaultOptions | None = None,
        inventory: Path | None = None,
        member_of: Sequence[str] = (),
    ) -> PlaybookRun: ...


class InstallRequirements(Protocol):
    """The seam where ansible-galaxy runs:
    :func:`rollout.drivers.ansible_galaxy.install_requirements`'s shape."""

    def __call__(self, project: Path, log_dir: Path) -> list[str]: ...


def testinfra_gate(
    project: Path, settings: PoolSettings, ssh_for: Callable[[Node], SshTarget],
    evidence_dir: Path,
) -> SmokeRunner:
    """The usual smoke gate of a bake: the pool's HTTP checks and testinfra
    suite against the builder, evidence (JUnit, log) in ``evidence_dir``."""
    return TestinfraSmokeRunner(project=project, pool_settings=settings, ssh_for=ssh_for,
                                evidence_dir=evidence_dir, timeout=settings.timeouts.smoke)


def _never() -> bool:
    return False


def _quiet(_message: str) -> None:
    return None


def bake(
    builder: Builder,
    request: BakeRequest,
    *,
    smoke: SmokeRunner | None,
    log_dir: Path,
    clock: Clock,
    cancel: Callable[[], bool] = _never,
    on_event: Say = _quiet,
    run_playbook: RunPlaybook = ansible.run_playbook,
    install_requirements: InstallRequirements = ansible_galaxy.install_requirements,
) -> Image:
    """Bake and register the image ``request`` asks for; see the module doc.

    ``smoke`` is the gate (None, or ``request.smoke`` False: no gate, and the
    image is registered unverified). Raises ConfigError/NotFoundError/
    EnvironmentProblem before any side effect for a bad request, BakeError when
    a step fails, Interrupted when ``cancel`` asked to stop.
    """
    what = f"bake of {request.role} {request.version}"
    check_extra_vars(request.extra_vars)
    base = builder.check(request)
    for command in install_requirements(request.project, log_dir):
        on_event(f"requirements: {command}")
    gate = smoke if request.smoke else None
    try:
        image = _steps(builder, request, base, gate, log_dir, clock, cancel, on_event,
                       run_playbook, what)
    except BaseException as exc:
        problems = _discard(builder, on_event, what)
        left = ("the builder could not be removed: " + "; ".join(problems)) if problems \
            else "the builder was removed"
        if isinstance(exc, Interrupted):
            raise Interrupted(f"{what} interrupted; {left} and nothing registered") from None
        if isinstance(exc, KeyboardInterrupt):
            on_event(f"{what} interrupted; {left} and nothing registered")
            raise
        if isinstance(exc, DriverError):
            raise BakeError(f"{what} failed: {exc.message}", hint=exc.hint) from exc
        raise
    problems = _discard(builder, on_event, what)
    if problems:
        raise BakeError(
            f"{what}: image {image.id} is registered but the cleanup failed: "
            + "; ".join(problems),
            hint="remove the builder by hand (the message names it)",
        )
    return image


def _steps(
    builder: Builder, request: BakeRequest, base: str, gate: SmokeRunner | None,
    log_dir: Path, clock: Clock, cancel: Callable[[], bool], say: Say,
    run_playbook: RunPlaybook, what: str,
) -> Image:
    def checkpoint() -> None:
        if cancel():
            raise Interrupted(f"{what} interrupted")

    started_at = clock.now()
    checkpoint()
    node = builder.start(request, cancel)
    checkpoint()
    result = _playbook(builder, request, node, log_dir, cancel, say, run_playbook, what)
    checkpoint()
    verdict = _smoke_gate(gate, request, node, started_at, say, what)
    checkpoint()
    manifest = bake_manifest(
        request, base=base, builder=node, started_at=started_at,
        bake_seconds=clock.now() - started_at, stats=result.stats, log=result.log_path,
        smoke=verdict,
    )
    image = Image(
        id=request.image_id, role=request.role, version=request.version,
        created_at=started_at, parent=request.parent.id if request.parent else None,
        verified=verdict is not None, manifest=manifest,
    )
    say(f"capturing image {image.id} from builder {node.name}")
    captured = builder.capture(node, image)
    checkpoint()
    registered = builder.register(captured)
    say(f"registered image {registered.id} in {clock.now() - started_at:.1f}s")
    return registered


def _playbook(
    builder: Builder, request: BakeRequest, node: Node, log_dir: Path,
    cancel: Callable[[], bool], say: Say, run_playbook: RunPlaybook, what: str,
) -> PlaybookRun:
    extravars: dict[str, object] = {
        **request.extra_vars,
        "rollout_role": request.role,
        "rollout_image_version": request.version,
        "rollout_image_id": request.image_id,
        "rollout_gather_facts": request.gather_facts,
        "rollout_gather_subset": list(request.gather_subset) or ["all"],
    }
    say(f"running {PLAYBOOK} (roles base, {request.role}) on builder {node.name}")
    try:
        # The playbook targets the group "builder", on every backend. With the
        # environment's inventory, the builder is also a member of the role's
        # group: the role sees the group_vars (vault files too) a node would.
        return run_playbook(
            request.project, PLAYBOOK, {node.name: builder.ssh(node)}, extravars,
            log_dir=log_dir, cancel=cancel, timeout=builder.playbook_timeout,
            on_task=lambda task: say(f"task: {task}"), log_name=f"bake-{request.image_id}",
            group="builder", vault=request.vault, inventory=request.inventory,
            member_of=(request.role,) if request.inventory is not None else (),
        )
    except PlaybookFailed as exc:
        if cancel():  # the play was canceled because we were asked to stop
            raise Interrupted(f"{what} interrupted") from None
        raise BakeError(
            f"{what} failed: {exc.result.describe()}",
            hint="fix the role (or the extra vars) and bake again; nothing was registered",
        ) from None


def _smoke_gate(
    gate: SmokeRunner | None, request: BakeRequest, node: Node, started_at: float,
    say: Say, what: str,
) -> SmokeResult | None:
    if gate is None:
        return None
    say(f"smoke-testing builder {node.name}")
    candidate = Image(id=request.image_id, role=request.role, version=request.version,
                      created_at=started_at,
                      parent=request.parent.id if request.parent else None)
    verdict = gate.run(node, candidate)
    if not verdict.passed:
        where = verdict.junit_path or "the smoke evidence"
        raise BakeError(
            f"{what}: the smoke gate failed on builder {node.name}: {verdict.summary}",
            hint=f"see {where}; fix the role (or the smoke suite) and bake again; "
            "nothing was registered",
        )
    return verdict


def _discard(builder: Builder, say: Say, what: str) -> list[str]:
    """``builder.discard()``, finished even when a second interrupt arrives
    meanwhile (re-raised once the cleanup is done); problems are reported."""
    problems: list[str] = []

    def discard() -> None:
        problems[:] = builder.discard()
        for problem in problems:
            _log.error("%s cleanup: %s", what, problem)
            say(f"cleanup after the {what}: {problem}")

    shielded(discard)
    return problems
