"""One decision pass over the replacements: the handler of each phase.

A handler reads the observed world, and either moves the replacement to its
next phase (returns True, so the next handler runs in the same pass), emits at
most one action, or waits (both return False). Nothing here does I/O: the pass
works on copies and :meth:`Pass.decision` returns the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from rollout.core.state import (
    Action,
    AddMember,
    AttachVolume,
    DestroyNode,
    FinishRemoval,
    JoinGroup,
    Launch,
    Phase,
    RemoveMember,
    Replacement,
    RestoreReason,
    RolloutState,
    RunSmoke,
    SetAdmin,
    StartNode,
    StopNode,
    Strategy,
    Wait,
    World,
    placeholder,
)
from rollout.events import (
    Event,
    NodeRelaunched,
    PhaseChanged,
    ReplacementDone,
    ReplacementFailed,
    ReplacementRestored,
    Waiting,
)
from rollout.model import Admin, Health, LaunchSpec, Member, Node, NodeState, Readiness, Setup

# Phases in which the old node is (being) taken out of service.
_OLD_OUT = {
    Strategy.SURGE: {Phase.DRAINING, Phase.STANDBY, Phase.RETIRING},
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
        old_out = _OLD_OUT[state.strategy]  # looked up once: this runs per outcome
        out = {r.old_target for r in self.reps if r.phase in old_out}
        self.in_service = sum(
            1 for t, m in world.members.items() if m.in_service and t not in out
        )
        floor = state.settings.floor
        self.need = max(floor, state.settings.pool_size - state.settings.max_unavailable)

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

    def fail(self, i: int, error: str) -> bool:
        rep = self.reps[i]
        self.events.append(ReplacementFailed(
            self.state.id, self.now, index=i, old_node=rep.old_name, new_node=rep.new_name,
            phase=rep.phase.value, error=error,
        ))
        self.restore(i, RestoreReason.FAILED, error)
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

    # --- forward phases ----------------------------------------------------------

    def advance(self, i: int) -> None:
        for _ in range(16):
            rep = self.reps[i]
            if i in self.busy or rep.phase.terminal or rep.phase is Phase.PENDING:
                return
            if self.halted:
                return
            if not _HANDLERS[rep.phase](self, i, rep):
                return

    def launching(self, i: int, rep: Replacement) -> bool:
        new = self.node(rep.new_name)
        if new is not None:
            self.set(i, new_target=new.lb_target)
            self.move(i, Phase.BOOTING)
            return True
        spec = LaunchSpec(
            name=rep.new_name, role=self.state.role, env=self.state.env,
            image=self.state.target, rollout_id=self.state.id,
            volume_from=rep.old_name if self.settings.volume else None,
        )
        return self.act(i, Launch, placeholder(rep.new_name, "", self.state), spec=spec)

    def booting(self, i: int, rep: Replacement) -> bool:
        if self.node(rep.new_name) is None:
            return self.fail(i, f"new node {rep.new_name} disappeared while booting")
        probe = self.world.readiness.get(rep.new_name)
        if probe is not None and probe.ready:
            self.record(i, "boot", self.since(rep, Phase.LAUNCHING))
            self.move(i, Phase.SMOKING)
            return True
        deadline = rep.phase_started + self.timeouts.ready
        error = None
        if probe is not None and probe.failed:
            error = f"new node {rep.new_name} will not become ready: {probe.detail}"
        elif self.now > deadline:
            detail = f" ({probe.detail})" if probe is not None and probe.detail else ""
            error = (f"new node {rep.new_name} was not ready within "
                     f"timeouts.ready {self.timeouts.ready:g}s{detail}")
        if error is None:
            new = self.node(rep.new_name)
            if new is not None and not self.setup(i, new, probe):
                return False
            return self.wait_for(i, f"{rep.new_name} booting", deadline)
        if rep.relaunches < self.settings.boot_retries:
            # A machine that fails to boot says nothing about the image yet
            # (clouds and busy hosts do this): try another before failing.
            self.events.append(NodeRelaunched(
                self.state.id, self.now, index=i, old_node=rep.old_name,
                failed_node=rep.new_name, reason=error))
            self.move(i, Phase.RELAUNCHING)
            self.set(i, error=error)
            return True
        return self.fail(i, error)

    def relaunching(self, i: int, rep: Replacement) -> bool:
        """Destroy the new node that failed to boot, then launch another under a
        new name (attempt + 1). Journaled as any phase: a crash here resumes here."""
        if not self.gone(i, rep.new_name):
            return False
        attempt = rep.attempt + 1
        self.set(i, attempt=attempt, relaunches=rep.relaunches + 1, new_target="", error=None,
                 new_name=node_name(self.state.role, self.state.id, i, attempt))
        self.move(i, Phase.LAUNCHING)
        return True

    def smoking(self, i: int, rep: Replacement) -> bool:
        new = self.node(rep.new_name)
        if new is None:
            return self.fail(i, f"new node {rep.new_name} disappeared before its smoke test")
        return self.act(i, RunSmoke, new, image=self.state.target)

    def adding(self, i: int, rep: Replacement) -> bool:
        new = self.node(rep.new_name)
        if new is None:
            return self.fail(i, f"new node {rep.new_name} disappeared before joining the LB")
        member = self.member(new.lb_target)
        if member is not None and member.admin is Admin.READY:
            self.move(i, Phase.RISING)
            return True
        if member is not None:
            return self.act(i, SetAdmin, new, admin=Admin.READY)
        return self.act(i, AddMember, new)

    def rising(self, i: int, rep: Replacement) -> bool:
        new = self.node(rep.new_name)
        if new is None:
            return self.fail(i, f"new node {rep.new_name} disappeared while joining the LB")
        member = self.member(new.lb_target)
        if member is None:
            return self.act(i, AddMember, new)
        if member.admin is not Admin.READY:
            return self.act(i, SetAdmin, new, admin=Admin.READY)
        if member.health is Health.UP:
            if "up" not in rep.entered:
                self.record(i, "lb_rise", self.since(rep, Phase.ADDING))
                rep = self.set(i, entered={**rep.entered, "up": self.now})
            if self.state.strategy is Strategy.IN_PLACE:
                self.move(i, Phase.STANDBY)
                return True
            if not self.capacity_for(i):
                return False
            self.move(i, Phase.DRAINING)
            return True
        deadline = rep.phase_started + self.timeouts.lb_up
        if self.now > deadline:
            return self.fail(i, f"new node {rep.new_name} was not UP in the LB within "
                                f"timeouts.lb_up {self.timeouts.lb_up:g}s "
                                f"(health {member.health})")
        return self.wait_for(i, f"{rep.new_name} rising in the LB", deadline)

    def draining(self, i: int, rep: Replacement) -> bool:
        after = Phase.STANDBY if self.state.strategy is Strategy.SURGE else Phase.PARKING
        member = self.member(rep.old_target)
        if member is not None and member.admin is Admin.READY:
            return self.act(i, SetAdmin, self.old_node(rep), admin=Admin.DRAIN)
        if member is not None and member.admin is Admin.DRAIN and member.sessions > 0:
            deadline = rep.phase_started + self.timeouts.drain
            if self.now <= deadline:
                return self.wait_for(i, f"draining {rep.old_name}", deadline)
            self.set(i, drain_timed_out=True)
        self.record(i, "drain", rep.phase_started)
        self.move(i, after)
        return True

    def park(self, i: int, rep: Replacement, stop: bool) -> bool:
        """Old node to MAINT (and stopped if asked); True once it is so."""
        member = self.member(rep.old_target)
        if member is not None and member.admin is not Admin.MAINT:
            return self.act(i, SetAdmin, self.old_node(rep), admin=Admin.MAINT)
        old = self.node(rep.old_name)
        if stop and old is not None and old.state in (NodeState.RUNNING, NodeState.PENDING):
            return self.act(i, StopNode, old)
        return True

    def parking(self, i: int, rep: Replacement) -> bool:
        if not self.park(i, rep, stop=True):
            return False
        self.move(i, Phase.LAUNCHING)
        return True

    def standby(self, i: int, rep: Replacement) -> bool:
        stop = self.state.strategy is Strategy.IN_PLACE or self.settings.standby == "stopped"
        if self.park(i, rep, stop):
            self.parked.add(i)
        return False

    def retiring(self, i: int, rep: Replacement) -> bool:
        if self.now < rep.retry_at:
            return self.wait_for(i, f"retrying the retirement of {rep.old_name}")
        if self.member(rep.old_target) is not None:
            return self.act(i, RemoveMember, self.old_node(rep))
        if not self.gone(i, rep.old_name):
            return False
        self.move(i, Phase.DONE)
        self.events.append(ReplacementDone(
            self.state.id, self.now, index=i, old_node=rep.old_name, new_node=rep.new_name,
            drain_timed_out=rep.drain_timed_out,
        ))
        return False

    # --- restore -------------------------------------------------------------------

    def take_out_new(self, i: int, rep: Replacement) -> bool:
        """Drain, remove and destroy the new node; True once it is gone from
        the LB and the provider (otherwise one action or a wait was emitted)."""
        new = self.node(rep.new_name)
        target = rep.new_target or (new.lb_target if new is not None else "")
        new_member = self.member(target)
        new_ref = new or placeholder(rep.new_name, target, self.state)
        if new_member is not None:
            if new_member.admin is Admin.READY:
                self.set(i, entered={**rep.entered, "restore_drain": self.now})
                return self.act(i, SetAdmin, new_ref, admin=Admin.DRAIN)
            since = rep.entered.get("restore_drain", self.now)
            busy = new_member.admin is Admin.DRAIN and new_member.sessions > 0
            if busy and self.now - since <= self.timeouts.drain:
                return self.wait_for(i, f"draining {rep.new_name}")
            return self.act(i, RemoveMember, new_ref)
        return self.gone(i, rep.new_name)

    def restoring(self, i: int, rep: Replacement) -> bool:
        """Old node back in service first, then the new one out: capacity never dips."""
        if self.now < rep.retry_at:
            return self.wait_for(i, f"retrying the restore of {rep.old_name}")
        t = self.timeouts
        deadline = rep.phase_started + t.ready + t.lb_up + t.drain + t.smoke
        if self.now > deadline:
            took = deadline - rep.phase_started
            return self.halt(f"could not restore {rep.old_name} within {took:g}s"
                             f" (last: {rep.waiting or 'no progress'})")
        old = self.node(rep.old_name)
        if old is None:
            return self.halt(f"old node {rep.old_name} is gone, so it cannot be put back; "
                             f"new node {rep.new_name} was left as it is")
        if old.state is NodeState.STOPPED:
            # A data volume is on the new node now: that node must be out and
            # gone before the old one starts and takes its volume back.
            if self.settings.volume and not self.take_out_new(i, rep):
                return False
            return self.act(i, StartNode, old)
        member = self.member(rep.old_target)
        if member is None or member.admin is not Admin.READY:
            probe = self.world.readiness.get(rep.old_name)
            if not self.setup(i, old, probe):
                return False
            if probe is None or not probe.ready:
                return self.wait_for(i, f"{rep.old_name} starting again", deadline)
            if member is None:
                return self.act(i, AddMember, old)
            return self.act(i, SetAdmin, old, admin=Admin.READY)
        if member.health is not Health.UP:
            return self.wait_for(i, f"{rep.old_name} back in the LB, waiting for UP", deadline)
        if not self.take_out_new(i, rep):
            return False
        self.events.append(ReplacementRestored(
            self.state.id, self.now, index=i, old_node=rep.old_name, new_node=rep.new_name,
            reason=(rep.restore_reason or RestoreReason.FAILED).value,
        ))
        if rep.restore_reason is RestoreReason.INTERRUPTED:
            # A signal is no failure: start again from scratch on resume.
            self.move(i, Phase.PENDING)
            attempt = rep.attempt + 1
            self.set(i, attempt=attempt, restore_reason=None, error=None, new_target="",
                     entered={}, retries=0, retry_at=0.0, drain_timed_out=False,
                     new_name=node_name(self.state.role, self.state.id, i, attempt))
        else:
            self.move(i, Phase.RESTORED)
        return False


_SETUP: dict[Setup, Callable[..., Action]] = {
    Setup.ATTACH_VOLUME: AttachVolume,
    Setup.JOIN_GROUP: JoinGroup,
}

_NEW_SIDE = {Phase.LAUNCHING, Phase.BOOTING, Phase.RELAUNCHING, Phase.SMOKING, Phase.ADDING,
             Phase.RISING}

_HANDLERS: dict[Phase, Callable[[Pass, int, Replacement], bool]] = {
    Phase.LAUNCHING: Pass.launching,
    Phase.BOOTING: Pass.booting,
    Phase.RELAUNCHING: Pass.relaunching,
    Phase.SMOKING: Pass.smoking,
    Phase.ADDING: Pass.adding,
    Phase.RISING: Pass.rising,
    Phase.DRAINING: Pass.draining,
    Phase.PARKING: Pass.parking,
    Phase.STANDBY: Pass.standby,
    Phase.RETIRING: Pass.retiring,
    Phase.RESTORING: Pass.restoring,
}
