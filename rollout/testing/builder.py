"""An in-memory :class:`rollout.protocols.Builder` and Ansible stand-in, for
testing the bake pipeline (or code that drives it) without machines.

``FakeBuilder`` keeps what a real builder would leave behind where a test can
look at it: ``running`` (builders that exist), ``captured`` (images made but
not registered) and ``store`` (registered images). A step can be made to fail
(``fail``) or be interrupted (``interrupt``) once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from rollout.drivers.ansible import PlaybookFailed, PlaybookResult, TaskFailure
from rollout.errors import BakeError, ConfigError
from rollout.model import BakeRequest, Image, Node, NodeState, SshTarget, VaultOptions
from rollout.testing.fakes import FakeClock, FakeImageStore

STEPS = ("check", "start", "capture", "register", "discard")


class FakeBuilder:
    """Builders are names ``bake-<n>``; ``addresses`` hands out 10.99.0.x."""

    playbook_timeout = 60.0

    def __init__(self, store: FakeImageStore | None = None, *, clock: FakeClock | None = None,
                 boot_time: float = 5.0) -> None:
        self.store = store or FakeImageStore()
        self.clock = clock or FakeClock()
        self.boot_time = boot_time
        self.running: set[str] = set()
        self.captured: dict[str, Image] = {}
        self.calls: list[str] = []
        self._failures: dict[str, BaseException] = {}
        self._counter = itertools.count(1)

    def fail(self, step: str, error: BaseException | None = None) -> None:
        """Make ``step`` raise ``error`` (a BakeError by default) once."""
        assert step in STEPS, step
        self._failures[step] = error or BakeError(f"fake builder: {step} failed")

    def interrupt(self, step: str) -> None:
        """Make ``step`` raise KeyboardInterrupt once (a second Ctrl-C)."""
        self.fail(step, KeyboardInterrupt())

    def _step(self, step: str) -> None:
        self.calls.append(step)
        error = self._failures.pop(step, None)
        if error is not None:
            raise error

    def check(self, request: BakeRequest) -> str:
        self._step("check")
        if request.parent is not None and request.parent.location == "":
            raise ConfigError(f"parent image {request.parent.id}: no location")
        return "fake-base"

    def start(self, request: BakeRequest, cancel: Callable[[], bool]) -> Node:
        name = f"bake-{next(self._counter)}"
        self.running.add(name)  # it exists from the first call on, as a real one would
        self._step("start")
        self.clock.sleep(self.boot_time)
        return Node(name=name, address=f"10.99.0.{len(self.running)}", role=request.role,
                    env="bake", image_id=request.image_id, image_version=request.version,
                    state=NodeState.RUNNING, created_at=self.clock.now())

    def ssh(self, node: Node) -> SshTarget:
        return SshTarget(host=node.address)

    def capture(self, node: Node, image: Image) -> Image:
        self._step("capture")
        self.running.discard(node.name)
        captured = replace(image, location=f"/fake/images/{image.id}")
        self.captured[image.id] = captured
        return captured

    def register(self, image: Image) -> Image:
        self._step("register")
        self.captured.pop(image.id, None)
        return self.store.add(image)

    def discard(self) -> list[str]:
        self._step("discard")
        self.running.clear()
        self.captured.clear()
        return []


class FakePlaybook:
    """Stands in for ``rollout.drivers.ansible.run_playbook``: records each call,
    then succeeds, fails a task (``fail_task``) or raises KeyboardInterrupt."""

    def __init__(self, clock: FakeClock | None = None, duration: float = 10.0) -> None:
        self.clock = clock or FakeClock()
        self.duration = duration
        self.calls: list[dict[str, object]] = []
        self.failing: TaskFailure | None = None
        self.interrupting = False
        self.during: Callable[[], None] | None = None  # runs mid-play (e.g. a signal)

    def fail_task(self, task: str, output: str) -> None:
        self.failing = TaskFailure(task=task, host="builder", output=output)

    def __call__(
        self, project: Path, playbook: str, hosts: dict[str, SshTarget],
        extravars: dict[str, object], *, log_dir: Path,
        cancel: Callable[[], bool] | None = None, timeout: float | None = None,
        on_task: Callable[[str], None] | None = None, log_name: str | None = None,
        group: str | None = None, vault: VaultOptions | None = None,
        inventory: Path | None = None, member_of: Sequence[str] = (),
    ) -> PlaybookResult:
        self.calls.append({"playbook": playbook, "hosts": dict(hosts),
                           "extravars": dict(extravars), "group": group})
        if on_task is not None:
            on_task("base : packages")
        if self.during is not None:
            self.during()
        self.clock.sleep(self.duration)
        stats = {"ok": {h: 5 for h in hosts}, "changed": {h: 2 for h in hosts},
                 "failures": {}}
        if self.interrupting:
            raise KeyboardInterrupt
        canceled = cancel is not None and cancel()
        if self.failing is not None or canceled:
            result = PlaybookResult(
                status="canceled" if canceled else "failed", rc=2, stats=stats,
                duration=self.duration, failure=None if canceled else self.failing)
            raise PlaybookFailed(f"{playbook}: {result.describe()}", result)
        return PlaybookResult(status="successful", rc=0, stats=stats, duration=self.duration)
