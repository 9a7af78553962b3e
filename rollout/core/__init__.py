"""The pure decision core of a rollout: state types, batch planning, decisions.

Nothing in this package does I/O or reads the clock: :func:`decide` takes the
state, an observation of the world and the time, and returns the next state and
the actions to take. :mod:`rollout.engine.controller` performs them.
"""

from rollout.core.batches import CapacityStep, Plan, capacity_steps, plan_batches, pool_nodes
from rollout.core.decide import (
    Decision,
    apply_outcome,
    decide,
    halt,
    new_state,
    request_abort,
    request_stop,
    resume_state,
    wants_probe,
)
from rollout.core.state import (
    Action,
    Outcome,
    Phase,
    Replacement,
    RestoreReason,
    RolloutState,
    RolloutStatus,
    Strategy,
    Wait,
    World,
)

__all__ = [
    "Action",
    "CapacityStep",
    "Decision",
    "Outcome",
    "Phase",
    "Plan",
    "Replacement",
    "RestoreReason",
    "RolloutState",
    "RolloutStatus",
    "Strategy",
    "Wait",
    "World",
    "apply_outcome",
    "capacity_steps",
    "decide",
    "halt",
    "new_state",
    "plan_batches",
    "pool_nodes",
    "request_abort",
    "request_stop",
    "resume_state",
    "wants_probe",
]
