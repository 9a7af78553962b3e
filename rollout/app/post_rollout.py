"""After a failed post-rollout window (``rollout.post_rollout``): the pool
goes back to the image the rollout replaced, through its normal safe path,
under the lease the ``run`` still holds.

The core fails the rollout and journals the image to return to
(:mod:`rollout.core.window`); this module starts the rollback (a rollout of
kind ``rollback``, which runs no window of its own), then records on the
original rollout that it was rolled back and by which rollout. Killed before
the rollback started, ``rollout rollback --role R`` takes the pool to the same
image (:func:`rollout.core.rollback.rollback_target`).
"""

from __future__ import annotations

from collections.abc import Callable

from rollout.app.session import Session, resolve_target
from rollout.core.state import RolloutStatus
from rollout.core.window import rolled_back
from rollout.engine.controller import RolloutResult
from rollout.errors import RolloutFailed
from rollout.model import Image

#: Runs the rollback rollout (with the same checks as ``rollout run``).
Run = Callable[[Image], RolloutResult]


def roll_back_if_due(session: Session, rollout_id: str, run: Run) -> None:
    """Roll back after ``rollout_id``'s failed window, if its pool asks for it;
    then raise RolloutFailed (exit 1) saying so. Returns when nothing is due."""
    state = session.journal.get(rollout_id)
    w = state.window
    if (state.status is not RolloutStatus.FAILED or not w.failed or not w.rollback_to
            or w.rolled_back_by or not state.settings.post_rollout.rollback):
        return
    where = f"rollout {state.id} of {state.env}/{state.role}"
    image = resolve_target(session.drivers.images, state.role, version=None,
                           image_id=w.rollback_to)
    try:
        result = run(image)
    except RolloutFailed as exc:
        raise RolloutFailed(
            f"{where}: its post-rollout window failed ({w.failed}), and the rollback to "
            f"{image.id} failed too: {exc.message}", hint=exc.hint) from exc
    marked, event = rolled_back(state, result.id, session.clock.now())
    session.journal.commit(marked, events=(event,))
    session.on_event(event)
    raise RolloutFailed(
        f"{where} failed its post-rollout window: {w.failed}; rolled back to {image.id} "
        f"by rollout {result.id}", hint=f"see `rollout show {state.id}`")


__all__ = ["roll_back_if_due"]
