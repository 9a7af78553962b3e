"""The controller's actions in flight, and what a stopping controller does not
wait for.

A stop request (SIGINT/SIGTERM) restores every in-flight replacement. A
replacement whose smoke test is running would stay busy until that test
ended, which is up to ``timeouts.smoke`` when a node answers one byte a
second. The test's verdict no longer matters (the replacement is being
restored, and a smoke test changes nothing on the node), so the controller
stops waiting for it: its step is journaled as abandoned and the replacement
is free for the restore at once. The smoke runner's thread ends by the
runner's own bound (its subprocess group is killed at ``timeouts.smoke``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

from rollout.core.state import Action, Outcome, RolloutState, RunSmoke
from rollout.events import Event, StepFinished
from rollout.protocols import Clock
from rollout.store.journal import Journal

ABANDONED = "abandoned: the rollout is stopping"


@dataclass
class Flight:
    """One action in flight and the id of its journaled intent."""

    action: Action
    step_id: int


def abandon_smokes(state: RolloutState, inflight: dict[futures.Future[Outcome], Flight],
                   journal: Journal, clock: Clock, on_event: Callable[[Event], None]) -> bool:
    """Drop the running smoke tests from ``inflight`` (journaled as failed
    steps, in one transaction); True when there were any."""
    smokes = [f for f, flight in inflight.items()
              if isinstance(flight.action, RunSmoke) and not f.done()]
    if not smokes:
        return False
    now = clock.now()
    finished = []
    events: list[Event] = []
    for future in smokes:
        flight = inflight.pop(future)
        finished.append((flight.step_id, False, ABANDONED, now, 0.0))
        events.append(StepFinished(state.id, now, index=flight.action.index,
                                   node=flight.action.node.name, step=flight.action.kind,
                                   ok=False, duration=0.0, error=ABANDONED))
    journal.commit(state, events=tuple(events), finished=finished)
    for event in events:
        on_event(event)
    return True
