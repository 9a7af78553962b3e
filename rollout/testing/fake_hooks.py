"""A fake hook runner: lifecycle hooks that take virtual time and fail as told.

    hooks = FakeHookRunner(clock, duration=1.0)
    hooks.fail(HookPoint.AFTER_BOOT, times=1)       # the next after_boot hook fails
    hooks.fail(HookPoint.BEFORE_DRAIN, node="web-0")  # every one about web-0 fails
    ...
    hooks.runs  # [(point, node name, passed), ...] in the order they ran
"""

from __future__ import annotations

import threading

from rollout.errors import HookFailed
from rollout.hooks import HookCall, HookPoint
from rollout.protocols import HookRunner
from rollout.testing.clock import FakeClock
from rollout.testing.rules import FailureRule, take_rule

#: The node name recorded for a hook on the controller.
CONTROLLER = "controller"


class FakeHookRunner(HookRunner):
    """Runs no playbook: records each call, sleeps ``duration`` virtual seconds
    (``slow`` seconds for the points in ``slow_at``) and fails as injected."""

    def __init__(self, clock: FakeClock, duration: float = 0.5) -> None:
        self.clock = clock
        self.duration = duration
        self.slow: dict[HookPoint, float] = {}
        self.runs: list[tuple[HookPoint, str, bool]] = []
        self.calls: list[HookCall] = []
        self._rules: list[FailureRule] = []
        self._lock = threading.Lock()

    def fail(self, point: HookPoint, *, node: str | None = None, times: int | None = None,
             error: str = "task 'fake' failed") -> None:
        """Fail the hooks at ``point`` (about ``node`` only, if given);
        ``times`` None: always."""
        with self._lock:
            self._rules.append(FailureRule(point.value, times, node, None, error))

    def take(self, point: HookPoint, seconds: float) -> None:
        """Make every hook at ``point`` take ``seconds`` (past its timeout, say)."""
        self.slow[point] = seconds

    def run(self, call: HookCall) -> None:
        self.clock.sleep(self.slow.get(call.point, self.duration))
        name = call.node.name if call.node is not None else CONTROLLER
        with self._lock:
            rule = take_rule(self._rules, call.point.value, name, call.image.id)
            self.runs.append((call.point, name, rule is None))
            self.calls.append(call)
        if rule is not None:
            raise HookFailed(f"{call.point.value} hook {call.hook.playbook}: {rule.error}")

    def points(self, node: str | None = None) -> list[str]:
        """The points that ran (about ``node`` only, if given), in order."""
        return [p.value for p, n, _ok in self.runs if node is None or n == node]
