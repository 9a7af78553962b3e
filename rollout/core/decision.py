"""The working copy of one decision pass: :class:`Pass` and what every phase
handler shares (look a node up, move a replacement, emit an action, wait,
fail, restore, count capacity), and the :class:`Decision` it ends in.

Nothing here does I/O: the pass works on copies of the replacements, and
:mod:`rollout.core.decide` turns it into the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from rollout.core.batches import floor
from rollout.core.state import (
    Action,
    AttachVolume,
    DestroyNode,
    FinishRemoval,
    JoinGroup,
    Phase,
    Replacement,
    RestoreReason,
    RolloutState,
    Strategy,
    Wait,
    World,
    placeholder,
)
from rollout.events import (
    Event,
    PhaseChanged,
    ReplacementFailed,
    Waiting,
)
from rollout.model import FailureKind, Member, Node, NodeState, Readiness, Setup

# Phases in which the old node is (being) taken out of service.
_OLD_OUT = {
    Strategy.SURGE: {Phase.DRAINING, Phase.STANDBY, Phase.RETIRING},
    Strategy.BLUE_GREEN: {Phase.WARM, Phase.RETIRING},
    Strategy.IN_PLACE: {
        Phase.DRAINING, Phase.PARKING, Phase.LAUNCHING, Phase.BOOTING, Phase.SMOKING,
        Phase.ADDING, Phase.RISING, Phase.STANDBY, Phase.RETIRING,
    },
}


def node_name(role: str, rollout_id: str, index: int, attempt: int) -> str:
    """The deterministic name of a replacement's new node, so a launch after a
    crash finds the node the first launch made instead of making another."""
    suffix = f"-{attempt}" if attempt else ""
    return f"{role[:40]}-{rollout_id[-8:]}-{index}{suffix}"


@dataclass(frozen=True)
class Decision:
    """The core's answer: the new state, the actions to perform (each on a
    different replacement, so they may run concurrently), events and waits."""

    state: RolloutState
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    waits: tuple[Wait, ...] = ()


class Pass:
    def __init__(
        self, state: RolloutState, world: World, now: float, busy: frozenset[int] = frozenset()
    ) -> None:
        self.state = state
        self.reps = list(state.replacements)
        self.world = world
        self.now = now
        self.busy = busy
        self.settings = state.settings
        self.timeouts = state.settings.timeouts
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.waits: list[Wait] = []
        self.progressed = False
        self.failing = state.failing
        self.halted = state.halted
        self.parked: set[int] = set()
        self.soak = state.soak
        self.soaked = state.soaked
        self.batches_done = state.batches_done
        self.hooks_done = state.hooks_done
        self.bg = state.blue_green  # blue-green only (rollout.core.bluegreen)
        self.held: set[int] = set()  # replacements that wait for a switch this pass
        self.gate = state.gate  # canary steps and pause gates (rollout.core.canary)
        self.window = state.window  # the post-rollout window (rollout.core.window)
        old_out = _OLD_OUT[state.strategy]  # looked up once: this runs per outcome
        out = {r.old_target for r in self.reps if r.phase in old_out}
        self.in_service = sum(
            1 for t, m in world.members.items() if m.in_service and t not in out
        )
        self.need = floor(state.settings)

    # --- helpers ---------------------------------------------------------------

    def node(self, name: str) -> Node | None:
        """The node, unless it is gone or going (destroyed, its removal unfinished)."""
        node = self.world.nodes.get(name)
        if node is None or node.state in (NodeState.GONE, NodeState.REMOVING):
            return None
        return node

    def gone(self, i: int, name: str) -> bool:
        """True once node ``name`` is fully gone; otherwise emit the next step
        of its removal: destroy it, or finish a removal destroy began."""
        node = self.world.nodes.get(name)
        if node is None or node.state is NodeState.GONE:
            return True
        if node.state is NodeState.REMOVING:
            return self.act(i, FinishRemoval, node)
        return self.act(i, DestroyNode, node)

    def setup(self, i: int, node: Node, probe: Readiness | None) -> bool:
        """Emit the setup step the probe names (False); True when it names none."""
        if probe is None or probe.ready or probe.setup is None:
            return True
        return self.act(i, _SETUP[probe.setup], node)

    def member(self, target: str) -> Member | None:
        return self.world.members.get(target) if target else None

    def old_node(self, rep: Replacement) -> Node:
        return self.node(rep.old_name) or placeholder(rep.old_name, rep.old_target, self.state)

    def set(self, i: int, **changes: object) -> Replacement:
        self.reps[i] = replace(self.reps[i], **changes)  # type: ignore[arg-type]
        return self.reps[i]

    def move(self, i: int, phase: Phase) -> None:
        rep = self.reps[i]
        entered = dict(rep.entered)
        entered[phase.value] = self.now
        self.set(i, phase=phase, phase_started=self.now, entered=entered, waiting="")
        self.progressed = True
        self.events.append(PhaseChanged(
            self.state.id, self.now, index=i, old_node=rep.old_name, new_node=rep.new_name,
            phase=phase.value, previous=rep.phase.value,
        ))

    def act(self, i: int, action: Callable[..., Action], node: Node, **extra: object) -> bool:
        rep = self.reps[i]
        self.actions.append(action(index=i, attempt=rep.attempt, phase=rep.phase, node=node,
                                   **extra))
        return False

    def wait_for(self, i: int, reason: str, deadline: float | None = None) -> bool:
        rep = self.reps[i]
        if rep.waiting != reason:
            self.set(i, waiting=reason)
            node = rep.new_name if rep.phase in _NEW_SIDE else rep.old_name
            self.events.append(Waiting(
                self.state.id, self.now, index=i, node=node, reason=reason, deadline=deadline
            ))
        return False

    def record(self, i: int | None, kind: str, since: float) -> None:
        self.waits.append(Wait(i, kind, max(0.0, self.now - since), self.now))

    def since(self, rep: Replacement, phase: Phase) -> float:
        return rep.entered.get(phase.value, rep.phase_started)

    def fail(self, i: int, kind: FailureKind, error: str) -> bool:
        rep = self.reps[i]
        self.events.append(ReplacementFailed(
            self.state.id, self.now, index=i, old_node=rep.old_name, new_node=rep.new_name,
            phase=rep.phase.value, error=error, failure_kind=kind,
        ))
        self.restore(i, RestoreReason.FAILED, error)
        self.set(i, failure=kind)
        return True

    def restore(self, i: int, reason: RestoreReason, error: str | None = None) -> None:
        """Send replacement ``i`` back to its old node (PENDING ones are skipped)."""
        rep = self.reps[i]
        if rep.phase is Phase.PENDING and reason is not RestoreReason.INTERRUPTED:
            self.move(i, Phase.SKIPPED)
        elif rep.phase is Phase.RESTORING:
            if rep.restore_reason is RestoreReason.INTERRUPTED:
                self.set(i, restore_reason=reason)  # an abort: do not retry afterwards
        elif rep.active and rep.phase is not Phase.RETIRING:
            self.move(i, Phase.RESTORING)
            self.set(i, restore_reason=reason, error=error or rep.error, retries=0, retry_at=0.0)

    def halt(self, reason: str) -> bool:
        self.halted = self.halted or reason
        return False

    def capacity_for(self, i: int) -> bool:
        """Whether taking replacement ``i``'s old node out keeps the floor; if so,
        the node is counted out at once so that the next check sees it."""
        member = self.member(self.reps[i].old_target)
        cost = 1 if member is not None and member.in_service else 0
        if self.in_service - cost < self.need:
            self.wait_for(i, f"capacity: {self.in_service} in service, at least "
                             f"{self.need} must stay (min_healthy/max_unavailable)")
            return False
        self.in_service -= cost
        return True


_SETUP: dict[Setup, Callable[..., Action]] = {
    Setup.ATTACH_VOLUME: AttachVolume,
    Setup.JOIN_GROUP: JoinGroup,
}

_NEW_SIDE = {Phase.LAUNCHING, Phase.BOOTING, Phase.RELAUNCHING, Phase.SMOKING, Phase.ADDING,
             Phase.RISING}
