"""Typed errors and the exit codes they map to.

Code below the CLI raises these; only ``rollout.cli`` turns them into a message
and an exit code. Every message names the file, key or node involved and says
what to do next.

| code | meaning                                                        |
|------|----------------------------------------------------------------|
| 0    | success (or nothing to do)                                     |
| 1    | the rollout failed and the pool was restored                   |
| 2    | usage or configuration error; nothing was touched              |
| 3    | the pool is locked, or has an unfinished rollout               |
| 4    | the rollout halted and could not fully restore: see the journal|
| 5    | an environment problem: not root, a missing program, I/O error |
| 70   | internal error: a traceback was written to the data directory  |
| 130  | interrupted (SIGINT/SIGTERM); the pool was left in a safe state|
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED_RESTORED = 1
    USAGE = 2
    LOCKED = 3
    HALTED = 4
    ENVIRONMENT = 5
    INTERNAL = 70
    INTERRUPTED = 130


class RolloutError(Exception):
    """Base of every error the CLI knows how to report."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(RolloutError):
    """Bad input: a file, key, name or argument. Raised before any side effect."""

    exit_code = ExitCode.USAGE


class NotFoundError(ConfigError):
    """An unknown role, image, version, node or rollout id."""


class NothingToDo(RolloutError):
    """The command had nothing to do (``resume`` with no unfinished rollout):
    not an error, so exit 0, but the caller is told why nothing happened."""

    exit_code = ExitCode.OK


class LockHeldError(RolloutError):
    """Another controller holds the pool's lease."""

    exit_code = ExitCode.LOCKED


class FencedOut(LockHeldError):
    """A journal write was refused: this controller no longer holds the epoch
    of the pool's lease it writes under (another controller took it over, or
    the lease was not renewed in time). The controller stops before acting."""


class JournalBusy(LockHeldError):
    """A SQLite journal's write lock stayed held by another process past the
    busy timeout (for example a controller frozen mid-write). Nothing was
    written; the message names the process."""


class UnfinishedRolloutError(RolloutError):
    """The pool has a rollout that must be resumed or aborted first."""

    exit_code = ExitCode.LOCKED


class EnvironmentProblem(RolloutError):
    """The machine cannot do this: not root, a program missing, disk full."""

    exit_code = ExitCode.ENVIRONMENT


class DriverError(RolloutError):
    """A provider, load balancer, smoke runner or builder failed an operation."""

    exit_code = ExitCode.HALTED


class TransientError(DriverError):
    """A driver call failed in a way that may pass by itself: a socket that
    refuses or times out, a network error, throttling. Observation retries it
    on the next pass (bounded by the rollout's deadlines); any other error of
    an observation stops the loop at once."""


class HookFailed(DriverError):
    """A lifecycle hook's playbook failed or ran past its timeout."""


class BakeError(RolloutError):
    """An image bake failed; no image was registered and no builder is left."""

    exit_code = ExitCode.FAILED_RESTORED


class JournalError(RolloutError):
    """A journal write failed. The rollout stops rather than act unrecorded."""

    exit_code = ExitCode.HALTED


class JournalUnavailable(JournalError):
    """The state store could not be reached within the retry budget (a
    PostgreSQL server restarting, a network cut). Transient: nothing was
    written by the failed call; ``rollout resume`` reconciles once it is back."""


class JournalUnusable(JournalError):
    """The journal cannot be opened or read back (a corrupt file, a newer
    schema): nothing was done, so this is an environment problem, not a halt."""

    exit_code = ExitCode.ENVIRONMENT


class RolloutFailed(RolloutError):
    """The rollout failed and every touched node was restored."""

    exit_code = ExitCode.FAILED_RESTORED


class RolloutHalted(RolloutError):
    """The rollout stopped and could not restore everything; resume or abort."""

    exit_code = ExitCode.HALTED


class Interrupted(RolloutError):
    """A signal asked us to stop; the in-flight node was brought to a safe state."""

    exit_code = ExitCode.INTERRUPTED
