"""Fault injection for the crash tests: kill the controller inside the
window between a side effect and its recorded outcome.

``ROLLOUT_FAULT_KILL_AFTER_EFFECT=INDEX:KIND[:NTH]`` makes the controller
SIGKILL itself right after the driver call of the NTH (default 1st) step of
kind KIND (``launch``, ``lb_add``, ``lb_set_admin``, ...) of replacement
INDEX returns, before its outcome is committed. The journal then holds the
intent without an outcome while the effect has happened: the hard case a
write-ahead journal must reconcile on ``resume``. Unset, nothing changes.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable

from rollout.core.state import Action, Outcome
from rollout.errors import ConfigError

ENV_VAR = "ROLLOUT_FAULT_KILL_AFTER_EFFECT"

_SPEC = re.compile(r"(\d+):([a-z_]+)(?::(\d+))?")

AfterEffect = Callable[[Action, Outcome], None]


def kill_after_effect(spec: str, kill: Callable[[], None] | None = None) -> AfterEffect:
    """The hook for ``spec`` (``INDEX:KIND[:NTH]``); ``kill`` defaults to SIGKILL
    of this process."""
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ConfigError(f"{ENV_VAR}={spec!r}: want INDEX:KIND[:NTH], e.g. 0:lb_add or "
                          "0:lb_set_admin:2", hint=f"fix or unset {ENV_VAR}")
    index, kind, nth = int(match[1]), match[2], int(match[3] or 1)
    seen: Counter[tuple[int | None, str]] = Counter()
    lock = threading.Lock()

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def hook(action: Action, outcome: Outcome) -> None:
        if action.index != index or action.kind != kind or not outcome.ok:
            return
        with lock:
            seen[(action.index, action.kind)] += 1
            hit = seen[(action.index, action.kind)] == nth
        if hit:
            (kill or die)()

    return hook


def from_environment() -> AfterEffect | None:
    spec = os.environ.get(ENV_VAR)
    return kill_after_effect(spec) if spec else None
