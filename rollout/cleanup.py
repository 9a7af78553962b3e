"""Cleanup that finishes even when a second Ctrl-C or SIGTERM arrives meanwhile.

The CLI's stop handler turns a second signal into ``KeyboardInterrupt``,
which could otherwise cut a cleanup short and leave a builder or a node
running: exactly what the cleanup is for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def shielded(step: Callable[[], T]) -> T:
    """Run ``step`` to its end. A ``KeyboardInterrupt`` raised during it runs it
    again (``step`` must be idempotent) and is re-raised once it has finished."""
    pending: KeyboardInterrupt | None = None
    while True:
        try:
            result = step()
            break
        except KeyboardInterrupt as exc:
            pending = exc
    if pending is not None:
        raise pending
    return result
